"""Shared fixtures: the `nequil` command to compare against, and small data sets.

The command is `$NEQUIL` when set, else `target/release/nequil` of the checkout these tests sit
in; the comparisons with it are skipped (with the reason) when neither exists.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def nequil_bin():
    env = os.environ.get("NEQUIL")
    if env:
        return env
    p = REPO / "target" / "release" / "nequil"
    return str(p) if p.exists() else None


@pytest.fixture(scope="session")
def cli():
    """Runs the command: cli(args...) → CompletedProcess (text); fails the test on a bad exit."""
    exe = nequil_bin()
    if exe is None:
        pytest.skip("no nequil binary: set NEQUIL or build target/release/nequil")

    def call(*args, check=True):
        r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"nequil {' '.join(map(str, args))} exited {r.returncode}:\n{r.stderr}")
        return r

    return call


def teacher_data(n, d_in, d_out, seed=0):
    """Inputs x ~ N(0, I) and targets from a fixed nonlinear teacher with label noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in))
    w = rng.normal(size=(d_in, d_out)) / np.sqrt(d_in)
    y = np.tanh(x @ w) + 0.3 * rng.normal(size=(n, d_out))
    return x, y


@pytest.fixture
def mlp_case(tmp_path):
    """A ReLU MLP 6-12-8-2 with biases, its initial weights, data, and the same as files for the
    command: model.toml, weights.safetensors (written by the command's own `run`), x.npy, y.npy."""
    import nequil

    table = {"kind": "mlp", "widths": [6, 12, 8, 2], "bias": True}
    model = nequil.Model(table)
    params = model.init(seed=3)
    x, y = teacher_data(200, 6, 2, seed=1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "model.toml").write_text(
        '[model]\nkind = "mlp"\nwidths = [6, 12, 8, 2]\nbias = true\n'
    )
    return model, params, x, y, tmp_path


def write_safetensors(path, params):
    """A state dict of float64 arrays as a safetensors file (the format's header and raw data:
    no dependency on the safetensors package)."""
    header = {}
    offset = 0
    blobs = []
    for name, arr in params.items():
        a = np.ascontiguousarray(arr, dtype="<f8")
        header[name] = {"dtype": "F64", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """A safetensors file of F64 tensors as a dict of arrays."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F64", info
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(body[a:b], dtype="<f8").reshape(info["shape"]).copy()
    return out


def read_csv(path):
    """metrics.csv as column → float64 array (the command writes numbers that read back exactly)."""
    lines = Path(path).read_text().splitlines()
    cols = lines[0].split(",")
    rows = [[float(v) for v in line.split(",")] for line in lines[1:]]
    arr = np.array(rows, dtype=np.float64).reshape(len(rows), len(cols))
    return {c: arr[:, j] for j, c in enumerate(cols)}
