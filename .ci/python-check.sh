#!/usr/bin/env bash
# The Python package in CI: builds the abi3 wheel with maturin, installs it into a fresh virtual
# environment and, on a PATH without cargo, imports it and runs the pytest suite (python/tests);
# then the PyTorch tests, the quickstart script and notebook (executed headless with nbclient)
# and the monitor's overhead measurement, with PyTorch from a virtual environment kept outside
# the repository.
#
#   .ci/python-check.sh            (after `cargo build --release`: the comparisons call target/release/nequil)
#
# Virtual environments, created when missing and reused after that (both outside the repo):
#   $NEQUIL_PY     (default ~/.nequil-py): maturin, the build tool (a few MB).
#   $NEQUIL_PEERS  (default ~/.nequil-peers, shared with bench/setup-peers.sh): torch, numpy,
#                  safetensors, matplotlib, nbclient, ipykernel (PyTorch is large: minutes, once).
# The fresh test environment sees the PyTorch environment's packages through a .pth file, after
# its own (the wheel just built, numpy, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools=${NEQUIL_PY:-$HOME/.nequil-py}
peers=${NEQUIL_PEERS:-$HOME/.nequil-peers}

if ! "$tools/bin/maturin" --version 2>/dev/null | grep -q '^maturin 1\.'; then
  echo "creating $tools with maturin"
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q "maturin>=1.9,<2"
fi

echo "-- building the wheel (maturin build --release)"
rm -rf target/wheels
start=$(date +%s)
"$tools/bin/maturin" build --release --quiet -m python/Cargo.toml -o target/wheels
wheel=$(ls target/wheels/nequil-*-cp39-abi3-*.whl)
echo "built $(basename "$wheel") in $(( $(date +%s) - start )) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
venv=$work/venv
python3 -m venv "$venv"
"$venv/bin/pip" install -q "$wheel" pytest
# A PATH without cargo (nor rustc): the installed wheel needs neither.
clean_path="$venv/bin:/usr/local/bin:/usr/bin:/bin"
if env PATH="$clean_path" sh -c 'command -v cargo' >/dev/null; then
  echo "cargo is on the clean PATH ($clean_path): the check would prove nothing"; exit 1
fi
run() { (cd "$work" && env PATH="$clean_path" NEQUIL="$root/target/release/nequil" "$@"); }
run python -c 'import nequil; print("import nequil:", nequil.__version__, nequil.simd())'

echo "-- pytest (NumPy API; PyTorch tests skip here)"
run python -m pytest -q -p no:cacheprovider "$root/python/tests"

echo "-- PyTorch: tests, quickstart script and notebook, monitor overhead"
need="torch numpy safetensors matplotlib nbclient nbformat ipykernel"
if ! "$peers/bin/python" -c "import torch, numpy, safetensors, matplotlib, nbclient, nbformat, ipykernel" 2>/dev/null; then
  echo "installing $need into $peers (PyTorch is large: minutes, once)"
  [ -x "$peers/bin/python" ] || python3 -m venv "$peers"
  "$peers/bin/pip" install -q $need
fi
site=$("$peers/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
own=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$site" > "$own/zz-nequil-peers.pth"
run python -c 'import torch, nequil; print("torch", torch.__version__, "with nequil", nequil.__version__)'
run python -m pytest -q -p no:cacheprovider "$root/python/tests/test_torch.py"
run env QUICKSTART_FIGURE="$work/quickstart.png" python "$root/examples/python/quickstart.py" | tail -n 2
run python - "$root/examples/python/quickstart.ipynb" <<'PY'
import sys, time
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
start = time.time()
NotebookClient(nb, timeout=900, kernel_name="python3").execute()
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
assert not errors, errors
images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
assert images >= 1, "the notebook drew no figure"
print(f"quickstart.ipynb: {len(nb.cells)} cells executed headless in {time.time() - start:.0f} s, {images} figure(s)")
PY
run python "$root/examples/python/monitor_overhead.py" 2000 3
