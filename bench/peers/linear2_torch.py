"""Peer baseline: online SGD on a two-layer linear net y ≈ U W x, the way a PyTorch user writes it
(eager mode, a plain training loop: sample with torch.randn, loss.backward(), manual SGD update).
x ~ N(0, diag(phi·I, (2−phi)·I)) (halves of D), y = x + eps, eps ~ N(0, I); per-sample loss
‖UWx − y‖², batch mean; fan-in Gaussian init W ~ N(0, 1/D), U ~ N(0, 1/H). f64, CPU.
The printed time covers the training loop only (not imports or set-up).
usage: linear2_torch.py D H S ETA STEPS [PHI] [SEED]"""
import sys, time, torch
D, H, S = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
eta, steps = float(sys.argv[4]), int(sys.argv[5])
phi = float(sys.argv[6]) if len(sys.argv) > 6 else 0.25
seed = int(sys.argv[7]) if len(sys.argv) > 7 else 0
torch.manual_seed(seed)
dt = torch.float64
scale = torch.cat([torch.full((D // 2,), phi, dtype=dt), torch.full((D - D // 2,), 2.0 - phi, dtype=dt)]).sqrt()
W = (torch.randn(H, D, dtype=dt) / D ** 0.5).requires_grad_()
U = (torch.randn(D, H, dtype=dt) / H ** 0.5).requires_grad_()
t0 = time.perf_counter()
for _ in range(steps):
    x = torch.randn(S, D, dtype=dt) * scale
    y = x + torch.randn(S, D, dtype=dt)
    loss = ((x @ W.T @ U.T - y) ** 2).sum(1).mean()
    loss.backward()
    with torch.no_grad():
        W -= eta * W.grad
        U -= eta * U.grad
        W.grad = None
        U.grad = None
el = time.perf_counter() - t0
print(f"torch-eager D={D} H={H} S={S} steps={steps} time_s={el:.4f} us_per_step={1e6 * el / steps:.3f} "
      f"final_batch_loss={float(loss):.6e} norm2_W={float((W * W).sum()):.6e} norm2_U={float((U * U).sum()):.6e}")
