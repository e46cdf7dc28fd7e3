#!/usr/bin/env python3
"""The cost of nequil.torch.Monitor in a PyTorch training loop.

The MLP of examples/pytorch_bridge.py (8-32-32-1, ReLU, biases, f64) trained with SGD (lr 0.05,
batch 16) on 512 samples, with the monitor recording every symmetry (64 neuron rescalings and 2
layer pairs) on all 512 samples every 50 steps, against the same loop without it. The two loops
alternate, `REPEATS` times each, and the medians are compared (alternating spreads a loaded
machine's slow spells over both). Prints the loop's time per step, the monitor's time per
record and its overhead: the time spent inside `monitor.step` (reading the parameters and
recording) as a percentage of the loop's time without the monitor. That figure is the monitor's
own cost; the difference of the two loops' wall-clock times is printed too, but on a shared
machine it scatters by more than the cost itself.

Usage: python examples/python/monitor_overhead.py [STEPS] [REPEATS]   (default 2000, 5)
"""

import statistics
import sys
import time

import torch
from torch import nn

import nequil
import nequil.torch as nt

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
N, LR, BATCH, EVERY = 512, 0.05, 16, 50


class MLP(nn.Module):
    """The bridge example's net: layers.{l}.weight [out, in], ReLU in forward."""

    def __init__(self, widths):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x):
        for l, layer in enumerate(self.layers):
            x = layer(x)
            if l < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def loop(net, x, y, monitor):
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    if monitor:
        monitor.step(0)
    for step in range(1, STEPS + 1):
        idx = torch.randint(0, N, (BATCH,), generator=g)
        opt.zero_grad()
        ((net(x[idx]) - y[idx]) ** 2).sum(-1).mean().backward()
        opt.step()
        if monitor:
            monitor.step(step)
    return time.perf_counter() - start


def main():
    torch.manual_seed(0)
    x = torch.randn(N, 8)
    y = (x[:, :1] * x[:, 1:2]).tanh() + 0.3 * torch.randn(N, 1)
    model = nequil.Model({"kind": "mlp", "widths": [8, 32, 32, 1], "bias": True})
    plain, watched, inside, per_record = [], [], [], []
    for _ in range(REPEATS):
        net = MLP([8, 32, 32, 1])
        plain.append(loop(net, x, y, None))
        net = MLP([8, 32, 32, 1])
        mon = nt.Monitor(net, x, y, lr=LR, batch_size=BATCH, every=EVERY, model=model)
        watched.append(loop(net, x, y, mon))
        inside.append(mon.seconds)
        per_record.append(mon.seconds / len(mon.history["step"]))
    p, w = statistics.median(plain), statistics.median(watched)
    overhead = 100 * statistics.median(inside) / p
    print(f"loop: {1e3 * p / STEPS:.3f} ms/step without the monitor, {1e3 * w / STEPS:.3f} ms/step with it "
          f"(wall-clock difference {100 * (w - p) / p:+.1f}%); monitor every {EVERY} steps, "
          f"{len(mon.columns) - 2} columns, {1e3 * statistics.median(per_record):.2f} ms per record")
    print(f"monitor overhead: {overhead:.1f}% of the loop's time (time inside monitor.step; medians of "
          f"{REPEATS} alternating runs of {STEPS} steps)")


if __name__ == "__main__":
    main()
