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
/// `y`: `n × d_y`, [`Model::d_y`]), in chunks of `ws.batch`. Each layer adds its block of the second moment
/// ([`Layer::grad_sq`](crate::core::layers::Layer::grad_sq)) from its inputs and output gradients.
pub fn grad_stats(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize, ws: &mut Workspace) -> GradStats {
    let p = model.n_params();
    let (dx, dy) = (model.d_in(), model.d_y());
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
    let (dx, dy) = (model.d_in(), model.d_y());
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
    let (dx, dy) = (model.d_in(), model.d_y());
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

/// The noise imbalance `Tr[A_kΣ]` of the rescaling symmetry of every hidden neuron of a dense
/// chain (an MLP with or without biases, or a deep linear chain), by quadratic forms only, without
/// the per-parameter variance. Neuron `k` of hidden layer `l` has `A_k = +1` on its incoming
/// weights (row k of `W_l`, and `b_l[k]`) and `−1` on its outgoing weights (column k of
/// `W_{l+1}`), so `Tr[A_kΣ] = Σ_{in} Var(g_p) − Σ_{out} Var(g_p)`. The per-sample gradient of row
/// k of `W_l` is `δ_{ik} a_i`, so its summed square is `δ_{ik}² (‖a_i‖² + 1_bias)`; that of
/// column k of `W_{l+1}` is `h_{ik}² ‖δ'_i‖²` (`h` the neuron's output, `δ'` the next layer's output
/// gradient). One forward and backward pass per chunk (the mean gradient is the ordinary
/// backward), plus `O(n · width)` for the norms. Returns one vector per hidden layer (length
/// `h_l`), population covariance (weight `1/n`) as [`grad_stats`]. Errors if the model is not a
/// dense chain.
pub fn neuron_imbalances(
    model: &Model,
    theta: &[f64],
    x: &[f64],
    y: &[f64],
    n: usize,
    ws: &mut Workspace,
) -> crate::Result<Vec<Vec<f64>>> {
    let chain = model.chain()?;
    let widths = chain.widths().to_vec();
    let depth = chain.depth();
    let p = model.n_params();
    let (dx, dy) = (model.d_in(), model.d_y());
    // Per linear layer l: Σ_i δ_{ik}² (‖a_i‖² + bias) over its outputs k, and Σ_i a_{ik}² ‖δ_i‖²
    // over its inputs k.
    let mut inc: Vec<Vec<f64>> = (0..depth).map(|l| vec![0.0; widths[l + 1]]).collect();
    let mut out: Vec<Vec<f64>> = (0..depth).map(|l| vec![0.0; widths[l]]).collect();
    let mut mean = vec![0.0; p];
    let mut g = vec![0.0; p];
    let mut rn = vec![];
    let mut dn = vec![];
    for_chunks(n, ws.batch, |i0, b| {
        let xb = &x[i0 * dx..(i0 + b) * dx];
        model.loss_grad(theta, xb, &y[i0 * dy..(i0 + b) * dy], b, &mut g, ws);
        for (mv, gv) in mean.iter_mut().zip(&g) {
            *mv += b as f64 * gv;
        }
        let mut l = 0;
        for_layers(model, theta, xb, ws, |_, _, f, d, _| {
            let (din, dout) = (widths[l], widths[l + 1]);
            let bias = if chain.bias_offset(l).is_some() { 1.0 } else { 0.0 };
            rn.clear();
            rn.extend(
                f.x[..b * din]
                    .chunks_exact(din)
                    .map(|a| crate::core::linalg::dot(a, a) + bias),
            );
            dn.clear();
            dn.extend(d[..b * dout].chunks_exact(dout).map(|r| crate::core::linalg::dot(r, r)));
            for i in 0..b {
                let (di, ai) = (&d[i * dout..(i + 1) * dout], &f.x[i * din..(i + 1) * din]);
                for (acc, v) in inc[l].iter_mut().zip(di) {
                    *acc += v * v * rn[i];
                }
                for (acc, v) in out[l].iter_mut().zip(ai) {
                    *acc += v * v * dn[i];
                }
            }
            l += 1;
        });
    });
    let inv = 1.0 / n as f64;
    mean.iter_mut().for_each(|v| *v *= inv);
    Ok((0..depth - 1)
        .map(|l| {
            let (din, h, hn) = (widths[l], widths[l + 1], widths[l + 2]);
            let (w0, w1) = (chain.weight_offset(l), chain.weight_offset(l + 1));
            (0..h)
                .map(|k| {
                    let mut m_in: f64 = mean[w0 + k * din..w0 + (k + 1) * din].iter().map(|v| v * v).sum();
                    if let Some(bo) = chain.bias_offset(l) {
                        m_in += mean[bo + k] * mean[bo + k];
                    }
                    let m_out: f64 = (0..hn).map(|j| mean[w1 + j * h + k].powi(2)).sum();
                    (inc[l][k] * inv - m_in) - (out[l + 1][k] * inv - m_out)
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::Activation;
    use crate::core::models::Init;
    use crate::core::rng::Rng;

    /// The quadratic-form imbalances equal the per-neuron sums of the per-parameter variances of
    /// `grad_stats` (the same numbers summed in another order: relative 1e-10 of the parts).
    #[test]
    fn neuron_imbalances_match_the_variance_sums() {
        for (widths, bias, act) in [
            (vec![7, 5, 6, 3], true, Activation::Relu),
            (vec![4, 6, 2], false, Activation::Tanh),
            (vec![3, 4, 4, 3], false, Activation::Identity),
        ] {
            let model = Model::mlp(&widths, act, bias).unwrap();
            let chain = model.chain().unwrap();
            let mut r = Rng::new(3);
            let theta = model.init(&Init::Kaiming, &mut r).unwrap();
            let n = 23;
            let mut x = vec![0.0; n * widths[0]];
            let mut y = vec![0.0; n * widths[widths.len() - 1]];
            r.fill_normal(&mut x);
            r.fill_normal(&mut y);
            let mut ws = model.workspace(5);
            let got = neuron_imbalances(&model, &theta, &x, &y, n, &mut ws).unwrap();
            let var = grad_stats(&model, &theta, &x, &y, n, &mut ws).variance();
            assert_eq!(got.len(), widths.len() - 2);
            for (l, imb) in got.iter().enumerate() {
                let (din, h, hn) = (widths[l], widths[l + 1], widths[l + 2]);
                let (w0, w1) = (chain.weight_offset(l), chain.weight_offset(l + 1));
                for (k, &v) in imb.iter().enumerate() {
                    let mut inc: f64 = var[w0 + k * din..w0 + (k + 1) * din].iter().sum();
                    if let Some(bo) = chain.bias_offset(l) {
                        inc += var[bo + k];
                    }
                    let out: f64 = (0..hn).map(|j| var[w1 + j * h + k]).sum();
                    let want = inc - out;
                    assert!(
                        (v - want).abs() <= 1e-10 * (inc.abs() + out.abs()),
                        "{widths:?} layer {l} neuron {k}: {v} vs {want}"
                    );
                }
            }
        }
    }
}
