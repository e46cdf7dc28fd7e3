#!/usr/bin/env python3
"""From PyTorch and NumPy to `nequil equilibrium` and back.

Trains a small ReLU MLP (8-32-32-1, f64, biases) with SGD in PyTorch, saves its state dict with
safetensors and the data with NumPy, asks `nequil equilibrium` for the noise equilibrium of every
neuron-rescaling symmetry, loads the rebalanced weights back into the same `nn.Module` and checks,
in PyTorch:

* the outputs are unchanged (max relative difference <= 1e-10) and so is the loss;
* the per-neuron noise imbalance Tr[A_k Sigma] (per-sample gradients by torch.func.vmap(grad)),
  which is far from zero after training, is ~0 at the rebalanced weights (gamma = 0);
* nequil's Tr[A_k Sigma] and loss agree with PyTorch's (two independent implementations).

Prerequisites: PyTorch, NumPy and safetensors, e.g.
    python3 -m venv ~/.nequil-peers && ~/.nequil-peers/bin/pip install torch numpy safetensors
(or bench/setup-peers.sh, which also installs JAX), and the nequil binary: $NEQUIL if set, otherwise
`cargo run --release --quiet --` in this repository.

Usage: python examples/pytorch_bridge.py [WORKDIR]   (default: a fresh temporary directory)
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

WIDTHS = [8, 32, 32, 1]
N, LR, BATCH, STEPS, SEED = 512, 0.05, 16, 400, 0


class MLP(nn.Module):
    """ReLU MLP whose state-dict names match nequil's layout: layers.{l}.weight [out, in], layers.{l}.bias."""

    def __init__(self, widths):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x):
        for l, layer in enumerate(self.layers):
            x = layer(x)
            if l < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def loss_fn(out, y):
    """nequil's convention: per-sample loss ||f(x) - y||^2 (no 1/2), mean over the batch."""
    return ((out - y) ** 2).sum(-1).mean()


def neuron_imbalance(net, x, y):
    """Tr[A_k Sigma] and its parts Tr[A_k+ Sigma] - Tr[A_k- Sigma] for every hidden neuron k.

    A_k = +1 on the neuron's incoming weight row and bias, -1 on its outgoing weight column;
    Sigma is the per-sample gradient covariance with weight 1/n, so only its diagonal enters.
    """
    params = {k: v.detach() for k, v in net.named_parameters()}

    def sample_loss(p, xi, yi):
        return loss_fn(functional_call(net, p, (xi[None],)), yi[None])

    g = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    var = {k: v.var(dim=0, correction=0) for k, v in g.items()}
    out = []
    for l in range(len(net.layers) - 1):
        up = var[f"layers.{l}.weight"].sum(1) + var[f"layers.{l}.bias"]
        down = var[f"layers.{l + 1}.weight"].sum(0)
        out.append((up - down, up + down))
    tr = torch.cat([t for t, _ in out])
    parts = torch.cat([p for _, p in out])
    return tr, parts


def nequil_command():
    if os.environ.get("NEQUIL"):
        return shlex.split(os.environ["NEQUIL"])
    return ["cargo", "run", "--release", "--quiet", "--manifest-path", str(REPO / "Cargo.toml"), "--"]


def main():
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="nequil-bridge-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    # Synthetic regression data: a random tanh teacher plus label noise.
    x = torch.randn(N, WIDTHS[0])
    teacher = torch.randn(WIDTHS[0], 16) / WIDTHS[0] ** 0.5
    y = torch.tanh(x @ teacher) @ torch.randn(16, 1) / 4.0 + 0.1 * torch.randn(N, 1)

    net = MLP(WIDTHS)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    for _ in range(STEPS):
        idx = torch.randint(0, N, (BATCH,))  # batches drawn with replacement, as nequil assumes
        opt.zero_grad()
        loss_fn(net(x[idx]), y[idx]).backward()
        opt.step()
    with torch.no_grad():
        f0 = net(x)
        loss0 = loss_fn(f0, y).item()
    print(f"trained {WIDTHS} ReLU MLP in PyTorch: {STEPS} SGD steps, lr {LR}, batch {BATCH}; loss {loss0:.6f}")

    # Hand over: weights by state-dict name (safetensors), data as .npy, the model as TOML.
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(work / "weights.safetensors"))
    np.save(work / "x.npy", x.numpy())
    np.save(work / "y.npy", y.numpy())
    (work / "model.toml").write_text(
        '[model]\nkind = "mlp"\nwidths = [%s]\nactivation = "relu"\nbias = true\n' % ", ".join(map(str, WIDTHS))
    )
    cmd = nequil_command() + [
        "equilibrium",
        "--model", str(work / "model.toml"),
        "--weights", str(work / "weights.safetensors"),
        "--x", str(work / "x.npy"),
        "--y", str(work / "y.npy"),
        "--lr", str(LR),
        "--batch-size", str(BATCH),
        "--out", str(work / "rebalanced.safetensors"),
        "--json",
    ]  # fmt: skip
    print("$", " ".join(shlex.quote(c) for c in cmd[len(nequil_command()) :]).replace(str(work), "$WORK"))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"nequil equilibrium failed (exit {proc.returncode}):\n{proc.stderr}")
    report = json.loads(proc.stdout)
    rows = [r for r in report["rows"] if r["kind"]["kind"] == "neuron_rescaling"]
    status = {}
    for r in rows:
        status[r["status"]] = status.get(r["status"], 0) + 1
    print(f"nequil: {report['model']}; {len(report['rows'])} symmetries; neuron rows by status: {status}")
    print(f"nequil: {report['summary']}")

    # Load the rebalanced weights back into the same module.
    tr0, parts0 = neuron_imbalance(net, x, y)
    net.load_state_dict(load_file(str(work / "rebalanced.safetensors")))
    with torch.no_grad():
        f1 = net(x)
        loss1 = loss_fn(f1, y).item()
    tr1, parts1 = neuron_imbalance(net, x, y)

    out_rel = ((f1 - f0).abs().max() / f0.abs().max()).item()
    loss_rel = abs(loss1 - loss0) / loss0
    print(f"outputs: max |f_rebalanced - f| / max |f| = {out_rel:.2e}")
    print(f"loss:    {loss0:.15f} -> {loss1:.15f} (relative change {loss_rel:.2e})")

    # Cross-check nequil against PyTorch at the trained weights.
    ours = torch.tensor([r["tr_a_sigma"] for r in rows])
    agree = ((ours - tr0).abs().max() / parts0.max()).item()
    print(f"nequil vs PyTorch: Tr[A_k Sigma] agree to {agree:.2e} (relative to the largest part); "
          f"loss {report['loss_before']:.15f} vs {loss0:.15f}")

    conv = torch.tensor([r["status"] == "converged" for r in rows])
    rel0 = tr0.abs() / parts0.clamp_min(1e-300)
    rel1 = tr1.abs() / parts1.clamp_min(1e-300)
    h = WIDTHS[1]
    print("per-neuron noise imbalance |Tr[A_k Sigma]| / (Tr[A_k+ Sigma] - Tr[A_k- Sigma]), balanced neurons:")
    print(f"  {'layer':<8}{'neurons':>8}{'median before':>16}{'max before':>14}{'max after':>14}")
    for l, sl in enumerate([slice(0, h), slice(h, None)]):
        c = conv[sl]
        b, a = rel0[sl][c], rel1[sl][c]
        print(f"  {l:<8}{int(c.sum()):>8}{b.median().item():>16.3e}{b.max().item():>14.3e}{a.max().item():>14.3e}")
    print(f"total sum_k |Tr[A_k Sigma]| over balanced neurons: {tr0[conv].abs().sum().item():.4e} -> "
          f"{tr1[conv].abs().sum().item():.4e}")
    others = [(r["name"], r["status"], r["note"]) for r in rows if r["status"] != "converged"]
    for name, st, note in others:
        print(f"  left unchanged: {name} ({st}): {note}")

    assert out_rel <= 1e-10, out_rel
    assert loss_rel <= 1e-10, loss_rel
    assert agree <= 1e-9, agree
    assert int(conv.sum()) >= len(rows) // 2
    assert rel0[conv].max() > 1e-3, "the trained weights were already balanced?"
    assert rel1[conv].max() <= 1e-8, rel1[conv].max()
    print(f"OK (files in {work})")


if __name__ == "__main__":
    main()
