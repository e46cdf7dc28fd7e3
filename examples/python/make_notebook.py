#!/usr/bin/env python3
"""Writes quickstart.ipynb from quickstart.py: one cell per `# %%` block (`# %% [markdown]` blocks
become markdown cells, their leading `# ` removed), no outputs. The notebook is generated so that
the script and the notebook never drift; the test suite checks that it is up to date.

Usage: python examples/python/make_notebook.py [--check]
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cells(source):
    out = []
    kind, lines = None, []

    def flush():
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.splitlines())
        cell = {"cell_type": kind, "metadata": {}, "source": text.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)

    for line in source.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    return out


def notebook():
    nb = {
        "cells": cells((HERE / "quickstart.py").read_text()),
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"cell-{i}"
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    target = HERE / "quickstart.ipynb"
    text = notebook()
    if "--check" in sys.argv:
        if not target.exists() or target.read_text() != text:
            sys.exit(f"{target} is out of date: run python {Path(__file__).name}")
    else:
        target.write_text(text)
