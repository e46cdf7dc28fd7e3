"""Peer baseline: the top Hessian eigenvalue (power iteration) and the Hutchinson trace of a ReLU
MLP D_IN-H-H-10 with biases with PyHessian, on N samples in one batch, at the loss
L = (1/N) sum_i ||f(x_i) - y_i||^2. PyTorch's default init, x, y ~ N(0, 1), f64, CPU.
It first writes the weights (safetensors, names layers.{l}.weight / layers.{l}.bias) and the data
(npz with x and y) into OUT_DIR, so that nequil works on the same model, weights and data.
The printed time covers the eigenvalue and the trace only.
usage: hessian_pyhessian.py D_IN HIDDEN N OUT_DIR [TOL] [SEED]"""
import os, sys, time, warnings
import numpy as np
import torch
from safetensors.torch import save_file
from pyhessian import hessian

ph = sys.modules["pyhessian.hessian"]  # the module (the package exports the class by that name)

# Count the Hessian-vector products (PyHessian does not report its iterations).
HVPS = [0]
_hvp = ph.hessian_vector_product


def counted(*a, **k):
    HVPS[0] += 1
    return _hvp(*a, **k)


ph.hessian_vector_product = counted

D, H, N, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tol = float(sys.argv[5]) if len(sys.argv) > 5 else 1e-3
seed = int(sys.argv[6]) if len(sys.argv) > 6 else 0
warnings.filterwarnings("ignore")
torch.manual_seed(seed)
# PyHessian draws its vectors with the default dtype.
torch.set_default_dtype(torch.float64)
nn = torch.nn
model = nn.Sequential(nn.Linear(D, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, 10))
x = torch.randn(N, D)
y = torch.randn(N, 10)
os.makedirs(out, exist_ok=True)
lin = [m for m in model if isinstance(m, nn.Linear)]
tensors = {}
for l, m in enumerate(lin):
    tensors[f"layers.{l}.weight"] = m.weight.detach().contiguous()
    tensors[f"layers.{l}.bias"] = m.bias.detach().contiguous()
save_file(tensors, os.path.join(out, "weights.safetensors"))
np.savez(os.path.join(out, "data.npz"), x=x.numpy(), y=y.numpy())


def criterion(f, t):
    return ((f - t) ** 2).sum(1).mean()


t0 = time.perf_counter()
hc = hessian(model, criterion, data=(x, y), cuda=False)
eig, _ = hc.eigenvalues(maxIter=100, tol=tol, top_n=1)
t1 = time.perf_counter()
eig_hvps = HVPS[0]
tr = hc.trace(maxIter=100, tol=tol)
t2 = time.perf_counter()
print(f"pyhessian N={N} threads={torch.get_num_threads()} time_s={t2 - t0:.4f} eig_s={t1 - t0:.4f} "
      f"trace_s={t2 - t1:.4f} lambda_max={eig[0]:.9e} eig_hvps={eig_hvps} trace={float(np.mean(tr)):.6e} "
      f"trace_probes={len(tr)}")
