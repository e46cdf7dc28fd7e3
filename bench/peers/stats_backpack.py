"""Peer baseline: per-parameter per-sample gradient mean and variance of a CNN with BackPACK
(SumGradSquared plus the gradient), f64, CPU, in chunks. The model is bench/specs/cnn-stats.toml's:
1x28x28 inputs, conv 16 and 32 channels 3x3 (padding 1), ReLU, 2x2 max-pooling, linear head 10.
Per-sample loss ||f(x) - y||^2 (MSELoss(reduction="sum")), as nequil's.
usage: stats_backpack.py [N] [CHUNK] [SEED]"""
import sys, time, torch
from backpack import backpack, extend
from backpack.extensions import SumGradSquared

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
torch.manual_seed(seed)
dt = torch.float64
nn = torch.nn
model = extend(nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(32 * 7 * 7, 10)).to(dt))
lossf = extend(nn.MSELoss(reduction="sum"))
x = torch.randn(N, 1, 28, 28, dtype=dt)
y = torch.randn(N, 10, dtype=dt)
params = list(model.parameters())
t0 = time.perf_counter()
s1 = [torch.zeros_like(p) for p in params]
s2 = [torch.zeros_like(p) for p in params]
for i in range(0, N, chunk):
    model.zero_grad()
    loss = lossf(model(x[i:i + chunk]), y[i:i + chunk])
    with backpack(SumGradSquared()):
        loss.backward()
    for k, p in enumerate(params):
        s1[k] += p.grad
        s2[k] += p.sum_grad_squared
var = [b / N - (a / N) ** 2 for a, b in zip(s1, s2)]
el = time.perf_counter() - t0
print(f"backpack-stats N={N} chunk={chunk} time_s={el:.4f} var_sum={float(sum(v.sum() for v in var)):.6e}")
