#!/usr/bin/env python3
"""nequil's update rules against torch.optim, step for step.

For each rule (SGD, momentum, dampened momentum, Nesterov, Adam, AdamW) a ReLU MLP 4 -> 8 -> 2
with biases (f64) is trained for STEPS full-batch steps on a fixed noisy dataset, once by
`nequil run` and once by PyTorch from the same initial weights:

* nequil: a spec with `model.init_from` (the initial weights, saved with safetensors), the data
  from .npy files, `batch_size = N` drawn without replacement (every step sees the whole dataset,
  in a shuffled order), `train.weight_decay = GAMMA`;
* PyTorch: `torch.optim.SGD/Adam/AdamW(..., weight_decay = 2 * GAMMA)` on the loss
  mean_i ||f(x_i) - y_i||^2 (no 1/2): the loss carries GAMMA ||theta||^2, whose gradient is
  2 GAMMA theta, which is PyTorch's weight_decay.

It checks that the final weights agree to 1e-10 relative (the sums over the dataset are taken in
another order, so the trajectories differ by rounding only).

Prerequisites: PyTorch, NumPy and safetensors (bench/setup-peers.sh installs them into
~/.nequil-peers), and the nequil binary: $NEQUIL if set, otherwise `cargo run --release --quiet --`.

Usage: python examples/torch_optimizers.py [WORKDIR]
"""

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

torch.set_default_dtype(torch.float64)
REPO = Path(__file__).resolve().parent.parent
N, LR, STEPS, GAMMA = 32, 0.02, 100, 0.005

RULES = [
    ("sgd", {}, lambda p: torch.optim.SGD(p, lr=LR, weight_decay=2 * GAMMA)),
    ("momentum", {"momentum": 0.9}, lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9, weight_decay=2 * GAMMA)),
    (
        "momentum",
        {"momentum": 0.8, "dampening": 0.3},
        lambda p: torch.optim.SGD(p, lr=LR, momentum=0.8, dampening=0.3, weight_decay=2 * GAMMA),
    ),
    (
        "nesterov",
        {"momentum": 0.9},
        lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9, nesterov=True, weight_decay=2 * GAMMA),
    ),
    ("adam", {}, lambda p: torch.optim.Adam(p, lr=LR, weight_decay=2 * GAMMA)),
    (
        "adamw",
        {"betas": [0.8, 0.99], "eps": 1e-6},
        lambda p: torch.optim.AdamW(p, lr=LR, betas=(0.8, 0.99), eps=1e-6, weight_decay=2 * GAMMA),
    ),
]


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 8), nn.Linear(8, 2)])

    def forward(self, x):
        return self.layers[1](torch.relu(self.layers[0](x)))


def nequil_cmd():
    if os.environ.get("NEQUIL"):
        return shlex.split(os.environ["NEQUIL"])
    return ["cargo", "run", "--release", "--quiet", "--manifest-path", str(REPO / "Cargo.toml"), "--"]


def toml_value(v):
    if isinstance(v, list):
        return "[" + ", ".join(repr(float(x)) for x in v) + "]"
    return repr(float(v))


def main():
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="nequil-optim-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 4))
    y = x @ rng.standard_normal((4, 2)) / 2 + 0.3 * rng.standard_normal((N, 2))
    np.save(work / "x.npy", x)
    np.save(work / "y.npy", y)
    torch.manual_seed(0)
    init = Mlp()
    save_file({k: v.detach().contiguous() for k, v in init.state_dict().items()}, str(work / "init.safetensors"))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    worst = 0.0
    for i, (name, keys, make) in enumerate(RULES):
        extra = "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items())
        spec = f"""seed = 1
[model]
kind = "mlp"
widths = [4, 8, 2]
bias = true
init_from = "init.safetensors"
[data]
source = "npy"
mode = "fixed"
x_path = "x.npy"
y_path = "y.npy"
replacement = false
[train]
optimizer = "{name}"
{extra}batch_size = {N}
lr = {LR}
steps = {STEPS}
weight_decay = {GAMMA}
[probes]
every = {STEPS}
"""
        (work / f"rule{i}.toml").write_text(spec)
        out = work / f"run{i}"
        subprocess.run(nequil_cmd() + ["run", str(work / f"rule{i}.toml"), "--out", str(out), "--quiet"], check=True)
        ours = load_file(str(out / "final.safetensors"))
        net = Mlp()
        net.load_state_dict(init.state_dict())
        opt = make(net.parameters())
        for _ in range(STEPS):
            opt.zero_grad()
            loss = ((net(xt) - yt) ** 2).sum(dim=1).mean()
            loss.backward()
            opt.step()
        theirs = net.state_dict()
        scale = max(t.abs().max().item() for t in theirs.values())
        diff = max((ours[k] - theirs[k]).abs().max().item() for k in theirs) / scale
        moved = max((init.state_dict()[k] - theirs[k]).abs().max().item() for k in theirs) / scale
        print(f"{name} {keys}: max |nequil - torch| / max|theta| = {diff:.2e} (the weights moved {moved:.2e})")
        assert moved > 1e-3, f"{name}: the weights hardly moved"
        assert diff < 1e-10, f"{name}: nequil and torch.optim differ by {diff:.2e}"
        worst = max(worst, diff)
    print(f"all {len(RULES)} rules agree with torch.optim to {worst:.2e} (relative)")


if __name__ == "__main__":
    main()
