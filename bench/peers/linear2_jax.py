"""Peer baseline: online SGD on a two-layer linear net y ≈ U W x with JAX, the whole loop compiled
(jit + lax.scan, sampling inside with jax.random). x ~ N(0, diag(phi·I, (2−phi)·I)) (halves of D),
y = x + eps, eps ~ N(0, I); per-sample loss ‖UWx − y‖², batch mean; fan-in Gaussian init
W ~ N(0, 1/D), U ~ N(0, 1/H). f64, CPU. A warm-up call compiles (same shapes, same step count);
the printed time covers the second, timed call only (no compilation).
usage: linear2_jax.py D H S ETA STEPS [PHI] [SEED]"""
import sys, time
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
D, H, S = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
eta, steps = float(sys.argv[4]), int(sys.argv[5])
phi = float(sys.argv[6]) if len(sys.argv) > 6 else 0.25
seed = int(sys.argv[7]) if len(sys.argv) > 7 else 0
dt = jnp.float64
scale = jnp.sqrt(jnp.concatenate([jnp.full((D // 2,), phi, dt), jnp.full((D - D // 2,), 2.0 - phi, dt)]))
kw, ku, kd = jax.random.split(jax.random.PRNGKey(seed), 3)
W0 = jax.random.normal(kw, (H, D), dt) / D ** 0.5
U0 = jax.random.normal(ku, (D, H), dt) / H ** 0.5

def loss_fn(p, x, y):
    W, U = p
    return jnp.mean(jnp.sum((x @ W.T @ U.T - y) ** 2, axis=1))

def step(carry, _):
    p, key = carry
    key, k1, k2 = jax.random.split(key, 3)
    x = jax.random.normal(k1, (S, D), dt) * scale
    y = x + jax.random.normal(k2, (S, D), dt)
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    p = jax.tree_util.tree_map(lambda a, b: a - eta * b, p, g)
    return (p, key), loss

@jax.jit
def train(p, key):
    (p, key), losses = jax.lax.scan(step, (p, key), None, length=steps)
    return p, losses[-1]

jax.block_until_ready(train((W0, U0), kd))  # warm-up: compilation
t0 = time.perf_counter()
(W, U), last = jax.block_until_ready(train((W0, U0), kd))
el = time.perf_counter() - t0
print(f"jax-jit D={D} H={H} S={S} steps={steps} time_s={el:.4f} us_per_step={1e6 * el / steps:.3f} "
      f"final_batch_loss={float(last):.6e} norm2_W={float(jnp.sum(W * W)):.6e} norm2_U={float(jnp.sum(U * U)):.6e}")
