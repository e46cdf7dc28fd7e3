#!/usr/bin/env python3
"""A CNN and a transformer block built in PyTorch, through `nequil equilibrium`, and back.

For each of two models built with `nn.Sequential` in PyTorch (f64):

* a ReLU CNN on 1x8x8 images: Conv2d, ReLU, MaxPool2d, Conv2d, ReLU, AvgPool2d, Flatten, Linear;
* a one-block transformer on sequences [T=6, E=8]: a residual (LayerNorm, causal multi-head
  self-attention with 2 heads), a residual (LayerNorm, Linear, ReLU, Linear), a mean over the
  sequence and a linear head;

it trains a few hundred SGD steps on a noisy teacher, saves the state dict with safetensors and
the data with NumPy, writes the same model as a `[model]` table (`kind = "sequential"`), runs
`nequil equilibrium ... --json --out rebalanced.safetensors --stats stats.safetensors`, loads the
rebalanced weights back into the same module and checks, in PyTorch:

* the outputs are unchanged: max |f_rebalanced - f| / max |f| <= 1e-12;
* Tr[A_k Sigma] of every applied symmetry (channel and neuron rescalings, LayerNorm features,
  attention's per-dimension query/key and value/output rescalings) is ~0 at the rebalanced weights
  (<= 1e-8 of its parts), from far from zero before;
* nequil's per-sample gradient statistics (the per-parameter mean and variance over the samples)
  equal PyTorch's (torch.func.vmap(grad)) to 1e-10 relative, and so does the loss.

Prerequisites: PyTorch, NumPy and safetensors (bench/setup-peers.sh installs them into
~/.nequil-peers), and the nequil binary: $NEQUIL if set, otherwise `cargo run --release --quiet --`.

Usage: python examples/torch_layers.py [cnn|transformer|all] [WORKDIR]
"""

import json
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
from torch.func import functional_call, grad, vmap

torch.set_default_dtype(torch.float64)
REPO = Path(__file__).resolve().parent.parent
N, LR, BATCH, STEPS, SEED = 256, 0.02, 16, 300, 0


class Residual(nn.Sequential):
    """x + F(x); its children are named {i}.{j}, as nequil's `residual` layer."""

    def forward(self, x):
        return x + super().forward(x)


class SelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention applied as attn(x, x, x) (batch first), optionally causal; the
    parameters keep their names (in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias)."""

    def __init__(self, e, heads, causal):
        super().__init__(e, heads, batch_first=True)
        self.causal = causal

    def forward(self, x):
        t = x.shape[1]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1) if self.causal else None
        return super().forward(x, x, x, need_weights=False, attn_mask=mask)[0]


class MeanPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=1)


def cnn():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 3),
    )
    toml = """[model]
kind = "sequential"
input = [1, 8, 8]
layers = [
  { type = "conv2d", out_channels = 4, kernel = 3, padding = 1 },
  { type = "relu" },
  { type = "max-pool2d", kernel = 2 },
  { type = "conv2d", out_channels = 6, kernel = 3, padding = 1 },
  { type = "relu" },
  { type = "avg-pool2d", kernel = 2 },
  { type = "flatten" },
  { type = "linear", out_features = 3 },
]
"""
    return net, toml, (1, 8, 8), 3


def transformer():
    t, e = 6, 8
    net = nn.Sequential(
        Residual(nn.LayerNorm(e), SelfAttention(e, 2, causal=True)),
        Residual(nn.LayerNorm(e), nn.Linear(e, 16), nn.ReLU(), nn.Linear(16, e)),
        MeanPool(),
        nn.Linear(e, 2),
    )
    toml = """[model]
kind = "sequential"
input = [6, 8]
layers = [
  { type = "residual", layers = [{ type = "layer-norm" }, { type = "self-attention", heads = 2, causal = true }] },
  { type = "residual", layers = [{ type = "layer-norm" }, { type = "linear", out_features = 16 }, { type = "relu" }, { type = "linear", out_features = 8 }] },
  { type = "mean-pool" },
  { type = "linear", out_features = 2 },
]
"""
    return net, toml, (t, e), 2


def loss_fn(out, y):
    """nequil's convention: per-sample loss ||f(x) - y||^2 (no 1/2), mean over the batch."""
    return ((out - y) ** 2).sum(-1).mean()


def nequil_cmd():
    if os.environ.get("NEQUIL"):
        return [os.environ["NEQUIL"]]
    return ["cargo", "run", "--release", "--quiet", "--manifest-path", str(REPO / "Cargo.toml"), "--"]


def per_sample_stats(net, x, y):
    """Per-parameter mean and variance (weight 1/n) of the per-sample gradients, by name."""
    params = {k: v.detach() for k, v in net.named_parameters()}

    def sample_loss(p, xi, yi):
        return loss_fn(functional_call(net, p, (xi[None],)), yi[None])

    g = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    return {k: (v.mean(0), v.var(0, correction=0)) for k, v in g.items()}


def run(name, work):
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    net, toml, shape, d_out = {"cnn": cnn, "transformer": transformer}[name]()
    net.eval()  # no dropout anywhere; eval keeps attention on its reference path
    teacher, _, _, _ = {"cnn": cnn, "transformer": transformer}[name]()
    x = torch.randn(N, *shape)
    with torch.no_grad():
        y = teacher(x) + 0.3 * torch.randn(N, d_out)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    for _ in range(STEPS):
        idx = torch.randint(0, N, (BATCH,))
        opt.zero_grad()
        loss_fn(net(x[idx]), y[idx]).backward()
        opt.step()
    with torch.no_grad():
        f0 = net(x)
        loss0 = loss_fn(f0, y).item()
    print(f"[{name}] trained {STEPS} SGD steps in PyTorch (lr {LR}, batch {BATCH}); loss {loss0:.6f}")

    work.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(work / "weights.safetensors"))
    np.save(work / "x.npy", x.numpy())
    np.save(work / "y.npy", y.numpy())
    (work / "model.toml").write_text(toml)
    cmd = nequil_cmd() + [
        "equilibrium", "--model", str(work / "model.toml"), "--weights", str(work / "weights.safetensors"),
        "--x", str(work / "x.npy"), "--y", str(work / "y.npy"), "--lr", str(LR), "--batch-size", str(BATCH),
        "--out", str(work / "rebalanced.safetensors"), "--stats", str(work / "stats.safetensors"), "--json",
    ]
    print("$", " ".join(shlex.quote(c) for c in cmd[len(nequil_cmd()):]))
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"nequil failed ({res.returncode}):\n{res.stderr}")
    report = json.loads(res.stdout)
    print(f"[{name}] nequil: {report['summary']}")
    for f in report["families"]:
        print(f"[{name}]   family {f['name']}: residual {f['residual']:.3e}, distance to its equilibrium {f['distance']}")

    # Statistics: nequil's against torch.func's, per parameter.
    ours = load_file(str(work / "stats.safetensors"))
    theirs = per_sample_stats(net, x, y)
    worst = 0.0
    for k, (m, v) in theirs.items():
        for kind, ref in (("mean", m), ("var", v)):
            got = ours[f"{kind}.{k}"]
            scale = ref.abs().max().item() + 1e-300
            worst = max(worst, (got - ref).abs().max().item() / scale)
    print(f"[{name}] per-sample gradient mean and variance, nequil vs torch.func: max relative difference {worst:.2e}")
    assert worst <= 1e-10, worst
    assert abs(report["loss_before"] - loss0) <= 1e-12 * loss0, (report["loss_before"], loss0)

    # The rebalanced weights back into the same module: same function.
    net.load_state_dict({k: v for k, v in load_file(str(work / "rebalanced.safetensors")).items()})
    with torch.no_grad():
        f1 = net(x)
    rel = ((f1 - f0).abs().max() / f0.abs().max()).item()
    print(f"[{name}] outputs after rebalancing: max |f_rebalanced - f| / max |f| = {rel:.2e}")
    assert rel <= 1e-12, rel

    applied = [r for r in report["rows"] if r["applied"]]
    parts = lambda r, s: r[f"tr_a_sigma_pos{s}"] - r[f"tr_a_sigma_neg{s}"]
    before = max(abs(r["tr_a_sigma"]) / parts(r, "") for r in applied)
    after = max(abs(r["tr_a_sigma_after"]) / parts(r, "_after") for r in applied)
    kinds = sorted({r["name"].split(".")[0] for r in applied})
    print(f"[{name}] {len(applied)} applied symmetries ({', '.join(kinds)}): "
          f"max |Tr[A_k Sigma]| / parts {before:.3e} -> {after:.3e}")
    assert after <= 1e-8, after
    return True


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="nequil-torch-layers-"))
    names = ["cnn", "transformer"] if which == "all" else [which]
    for n in names:
        run(n, work / n)
    print(f"OK (files in {work})")


if __name__ == "__main__":
    main()
