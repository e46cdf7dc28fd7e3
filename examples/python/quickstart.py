# %% [markdown]
# # nequil quickstart: a PyTorch loop with the monitor, then the rebalanced weights
#
# A small ReLU net trained with SGD in PyTorch. `nequil.torch.Monitor` watches every symmetry
# of the net (one rescaling per hidden neuron): its charge `C`, its noise imbalance `Tr[AΣ]` and
# the distance `C − C*` to the noise equilibrium the theory predicts. With weight decay the
# charges relax toward that equilibrium during training; `nequil.equilibrium` then moves the
# trained weights to it exactly, without changing the function. (This file is also
# `quickstart.ipynb`; the cells are the same.)

# %%
import os

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import nequil
import nequil.torch as nt

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)  # a net this small runs fastest on one thread
torch.manual_seed(0)
LR, BATCH, WD, STEPS = 0.05, 16, 5e-3, 3000

x = torch.randn(512, 8)
teacher = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
with torch.no_grad():
    y = teacher(x) + 0.3 * torch.randn(512, 1)
net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))

# %% [markdown]
# Train with the monitor: one line to set up, one call per step. The loss convention is nequil's
# (`‖f(x) − y‖²` per sample, no ½); PyTorch's SGD `weight_decay` is 2γ for the `γ‖θ‖²` in the
# loss.

# %%
monitor = nt.Monitor(net, x, y, lr=LR, batch_size=BATCH, weight_decay=WD, every=50)
opt = torch.optim.SGD(net.parameters(), lr=LR, weight_decay=2 * WD)
g = torch.Generator().manual_seed(1)
monitor.step(0)
for step in range(1, STEPS + 1):
    idx = torch.randint(0, 512, (BATCH,), generator=g)
    opt.zero_grad()
    ((net(x[idx]) - y[idx]) ** 2).sum(-1).mean().backward()
    opt.step()
    monitor.step(step)
h = monitor.history
names = [c[: -len("/C_minus_C_star")] for c in monitor.columns if c.startswith("neuron.") and c.endswith("/C_minus_C_star")]
dist = np.array([np.abs(h[f"{n}/C_minus_C_star"]) for n in names])
print(f"{len(names)} neuron symmetries; mean |C − C*|: {dist[:, 0].mean():.3e} at step 0 → {dist[:, -1].mean():.3e} at step {STEPS}")

# %% [markdown]
# The distance to the predicted equilibrium over training (median and quartiles over neurons).

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
q = np.percentile(dist, [25, 50, 75], axis=0)
ax.fill_between(h["step"], q[0], q[2], alpha=0.3, label="quartiles over neurons")
ax.plot(h["step"], q[1], label="median")
ax.set_yscale("log")
ax.set_xlabel("SGD step")
ax.set_ylabel("|C − C*|")
ax.set_title("Neuron charges relax to the noise equilibrium")
ax.legend()
fig.tight_layout()
fig.savefig(os.environ.get("QUICKSTART_FIGURE", "quickstart.png"), dpi=100)

# %% [markdown]
# Rebalance: the noise equilibrium of every symmetry at the trained weights, applied. The
# outputs do not change (a rescaling symmetry), the noise imbalance vanishes.

# %%
model = nequil.Model.from_torch(net)
eq = nequil.equilibrium(model, net, x, y, lr=LR, batch_size=BATCH, weight_decay=WD)
print(eq)
with torch.no_grad():
    before = net(x).clone()
net.load_state_dict({k: torch.from_numpy(v) for k, v in eq.rebalanced.items()})
with torch.no_grad():
    after = net(x)
change = (after - before).abs().max().item() / before.abs().max().item()
print(f"max |f_rebalanced − f| / max |f| = {change:.1e}")
assert change <= 1e-12, change
assert eq.totals["applied"] == len(names)
