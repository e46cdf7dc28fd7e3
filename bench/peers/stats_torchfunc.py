"""Peer baseline: per-parameter per-sample gradient mean and variance of a transformer block with
torch.func (vmap over grad), f64, CPU, in chunks (BackPACK has no attention). The model is
bench/specs/transformer-stats.toml's: sequences [16, 32], a residual (LayerNorm, 4-head
self-attention), a residual (LayerNorm, Linear 64, ReLU, Linear 32), a mean over the sequence, a
linear head with 4 outputs. Per-sample loss ||f(x) - y||^2, as nequil's.
usage: stats_torchfunc.py [N] [CHUNK] [SEED]"""
import sys, time, torch
from torch.func import functional_call, vmap, grad

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 250
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
torch.manual_seed(seed)
dt = torch.float64
nn = torch.nn
T, E = 16, 32


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


class SelfAttention(nn.MultiheadAttention):
    def forward(self, x):
        return super().forward(x, x, x, need_weights=False)[0]


class MeanPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=1)


model = nn.Sequential(
    Residual(nn.LayerNorm(E), SelfAttention(E, 4, batch_first=True)),
    Residual(nn.LayerNorm(E), nn.Linear(E, 64), nn.ReLU(), nn.Linear(64, E)),
    MeanPool(), nn.Linear(E, 4)).to(dt)
x = torch.randn(N, T, E, dtype=dt)
y = torch.randn(N, 4, dtype=dt)
params = {k: v.detach() for k, v in model.named_parameters()}


def loss1(p, xi, yi):
    out = functional_call(model, p, (xi.unsqueeze(0),))
    return ((out - yi.unsqueeze(0)) ** 2).sum()


g1 = vmap(grad(loss1), in_dims=(None, 0, 0))
t0 = time.perf_counter()
s1 = {k: torch.zeros_like(v) for k, v in params.items()}
s2 = {k: torch.zeros_like(v) for k, v in params.items()}
for i in range(0, N, chunk):
    g = g1(params, x[i:i + chunk], y[i:i + chunk])
    for k in params:
        s1[k] += g[k].sum(0)
        s2[k] += (g[k] ** 2).sum(0)
var = {k: s2[k] / N - (s1[k] / N) ** 2 for k in params}
el = time.perf_counter() - t0
print(f"torchfunc-stats N={N} chunk={chunk} time_s={el:.4f} var_sum={float(sum(v.sum() for v in var.values())):.6e}")
