//! Exact per-sample gradient statistics, without materialising the `n × P` matrix of per-sample
//! gradients unless asked.
//!
//! After one forward and backward pass over a chunk of samples, each layer computes its block of
//! the statistics from its inputs and output gradients ([`crate::core::layers::Layer::grad_sq`],
//! [`crate::core::layers::Layer::grad_quad`]). For a dense layer with inputs `a_i` and
//! back-propagated output gradients `δ_i`, the per-sample weight gradient is `δ_i a_iᵀ`, so
//! * the mean gradient is one GEMM (the ordinary backward pass);
//! * the per-parameter second moment `E[(∇ℓ_i)_p²]` is one GEMM of the element-wise squares,
//!   `(δ⊙δ)ᵀ(a⊙a)`;
//! * for a diagonal `D`, the per-sample quadratic form `g_iᵀ D g_i` is
//!   `Σ_j δ_ij² [(a_i⊙a_i)ᵀ D_lᵀ]_j` per layer, again one GEMM.
//!
//! Conventions: `g_i = ∇_θ ℓ(θ, (x_i, y_i))` is the gradient of the per-sample loss `‖f(x_i) − y_i‖²`
//! (no ½, no batch factor). Means and covariances are over the `n` given samples with weight `1/n`
//! (the population convention of book `theory/conventions.md#noise-covariance`: `Σ = E[ggᵀ] − E[g]E[g]ᵀ`, not the unbiased `1/(n−1)`).
//! Data are processed in chunks of the workspace's batch size, so memory stays at one chunk.

use crate::core::layers::Fwd;
use crate::core::linalg::{gemm_tn, Dense};
use crate::core::models::{for_chunks, Model, Node, Workspace};

/// Mean loss, mean gradient and per-parameter second moment of the per-sample gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct GradStats {
    /// Number of samples n.
    pub n: usize,
    /// Mean loss `(1/n) Σ ℓ_i`.
    pub loss: f64,
    /// Mean gradient `∇L = (1/n) Σ g_i`.
    pub mean: Vec<f64>,
    /// Per-parameter second moment `(1/n) Σ g_{i,p}²`.
    pub second_moment: Vec<f64>,
}

impl GradStats {
    /// Per-parameter variance `diag Σ = E[g_p²] − (E g_p)²`.
    pub fn variance(&self) -> Vec<f64> {
        self.second_moment
            .iter()
            .zip(&self.mean)
            .map(|(s, m)| s - m * m)
            .collect()
    }
    /// `Tr[D Σ] = Σ_p D_p Var(g_p)` for a diagonal `D`.
    pub fn trace_diag_cov(&self, d: &[f64]) -> f64 {
        self.second_moment
            .iter()
            .zip(&self.mean)
            .zip(d)
            .map(|((s, m), dp)| dp * (s - m * m))
            .sum()
    }
}

/// The gradient of the single-sample loss `ℓ(θ, (x, y))`, computed by a batch-of-one pass.
/// This is the naive reference that the batched statistics are tested against.
pub fn sample_grad(model: &Model, theta: &[f64], x: &[f64], y: &[f64], g: &mut [f64], ws: &mut Workspace) -> f64 {
    model.loss_grad(theta, x, y, 1, g, ws)
}

/// Mean loss, mean gradient and per-parameter second moment over `n` samples (`x`: `n × d_in`,
/// `y`: `n × d_out`), in chunks of `ws.batch`. Each layer adds its block of the second moment
/// ([`Layer::grad_sq`](crate::core::layers::Layer::grad_sq)) from its inputs and output gradients.
pub fn grad_stats(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize, ws: &mut Workspace) -> GradStats {
    let p = model.n_params();
    let (dx, dy) = (model.d_in(), model.d_out());
    let mut mean = vec![0.0; p];
    let mut sm = vec![0.0; p];
    let mut g = vec![0.0; p];
    let mut loss = 0.0;
    for_chunks(n, ws.batch, |i0, b| {
        let xb = &x[i0 * dx..(i0 + b) * dx];
        loss += b as f64 * model.loss_grad(theta, xb, &y[i0 * dy..(i0 + b) * dy], b, &mut g, ws);
        for (mv, gv) in mean.iter_mut().zip(&g) {
            *mv += b as f64 * gv;
        }
        for_layers(model, theta, xb, ws, |node, pl, f, d, scratch| {
            node.layer().grad_sq(pl, f, d, b, &mut sm[node.range()], scratch);
        });
    });
    let inv = 1.0 / n as f64;
    mean.iter_mut().for_each(|v| *v *= inv);
    sm.iter_mut().for_each(|v| *v *= inv);
    GradStats {
        n,
        loss: loss * inv,
        mean,
        second_moment: sm,
    }
}

/// Calls `f(node, θ_node, fwd, δ_out, scratch)` for every layer with parameters, after a forward
/// and backward pass over the chunk `x` left in `ws`.
fn for_layers(
    model: &Model,
    theta: &[f64],
    x: &[f64],
    ws: &mut Workspace,
    mut f: impl FnMut(&Node, &[f64], Fwd<'_>, &[f64], &mut [f64]),
) {
    for (k, node) in model.nodes().iter().enumerate() {
        if node.range().is_empty() {
            continue;
        }
        let fw = Fwd {
            x: if k == 0 { x } else { &ws.out[k - 1][..] },
            y: &ws.out[k],
            saved: &ws.saved[k],
        };
        f(node, &theta[node.range()], fw, &ws.delta[k], &mut ws.scratch);
    }
}

/// Per-sample quadratic forms `q_i = g_iᵀ D g_i` for a diagonal `D` (given as its diagonal,
/// length P), written into `out` (length n).
pub fn quad_forms(
    model: &Model,
    theta: &[f64],
    x: &[f64],
    y: &[f64],
    n: usize,
    diag: &[f64],
    out: &mut [f64],
    ws: &mut Workspace,
) {
    let p = model.n_params();
    assert_eq!(diag.len(), p, "quad_forms: diagonal has the wrong length");
    let (dx, dy) = (model.d_in(), model.d_out());
    let mut g = vec![0.0; p];
    for_chunks(n, ws.batch, |i0, b| {
        let xb = &x[i0 * dx..(i0 + b) * dx];
        model.loss_grad(theta, xb, &y[i0 * dy..(i0 + b) * dy], b, &mut g, ws);
        let q = &mut out[i0..i0 + b];
        q.fill(0.0);
        for_layers(model, theta, xb, ws, |node, pl, f, d, scratch| {
            node.layer().grad_quad(pl, f, d, b, &diag[node.range()], q, scratch);
        });
    });
}

/// The full matrix of per-sample gradients, `n × P` (row i is `g_i`). Use only when `n·P` is small.
pub fn per_sample_grads(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize) -> Dense {
    let p = model.n_params();
    let (dx, dy) = (model.d_in(), model.d_out());
    let mut out = Dense::zeros(n, p);
    let mut ws1 = model.workspace(1);
    for i in 0..n {
        sample_grad(
            model,
            theta,
            &x[i * dx..(i + 1) * dx],
            &y[i * dy..(i + 1) * dy],
            &mut out.data[i * p..(i + 1) * p],
            &mut ws1,
        );
    }
    out
}

/// The per-sample gradient covariance `Σ = (1/n) Σ_i g_i g_iᵀ − ḡ ḡᵀ` (`P × P`) and the mean `ḡ`.
/// Use only when `P` is small.
pub fn covariance(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize) -> (Dense, Vec<f64>) {
    let g = per_sample_grads(model, theta, x, y, n);
    let p = g.cols;
    let mut mean = vec![0.0; p];
    for row in g.data.chunks_exact(p) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / n as f64;
        }
    }
    let mut cov = Dense::zeros(p, p);
    gemm_tn(&mut cov.data, &g.data, &g.data, p, p, n, 1.0 / n as f64, false);
    for i in 0..p {
        for j in 0..p {
            cov.data[i * p + j] -= mean[i] * mean[j];
        }
    }
    (cov, mean)
}
