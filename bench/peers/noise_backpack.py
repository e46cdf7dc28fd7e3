"""Peer baseline: per-parameter per-sample gradient variance of a ReLU MLP with BackPACK
(SumGradSquared plus the gradient), in chunks, then the per-neuron rescaling imbalance
Tr[A_k Sigma] of every hidden neuron from it: for neuron k of hidden layer l, the variances of its
incoming weights and bias minus those of its outgoing weights. The model and data are
noise_torch.py's (PyTorch's default init, x, y ~ N(0, 1)); per-sample loss ||f(x) - y||^2. f64, CPU.
usage: noise_backpack.py D_IN HIDDEN N [CHUNK] [SEED]"""
import sys, time, warnings, torch
from backpack import backpack, extend
from backpack.extensions import SumGradSquared

D, H, N = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
chunk = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
warnings.filterwarnings("ignore")
torch.manual_seed(seed)
dt = torch.float64
nn = torch.nn
model = extend(nn.Sequential(nn.Linear(D, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, 10)).to(dt))
lossf = extend(nn.MSELoss(reduction="sum"))
x = torch.randn(N, D, dtype=dt)
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
# params: W0, b0, W1, b1, W2, b2 (weights [out, in]).
imb = [var[2 * l].sum(1) + var[2 * l + 1] - var[2 * l + 2].sum(0) for l in range(2)]
el = time.perf_counter() - t0
print(f"backpack-noise D={D} H={H} N={N} threads={torch.get_num_threads()} time_s={el:.4f} "
      f"imbalance_sum={float(imb[0].sum()):.6e} imbalance_0={float(imb[0][0]):.6e} "
      f"var_sum={float(sum(v.sum() for v in var)):.6e}")
