//! The paper's sharpness for linear networks, and the exact Hessian trace it stands for.
//!
//! For a deep linear network `f(x) = W_{D−1} ⋯ W_0 x` and the loss `L(θ) = E‖f(x) − y‖²` (no ½;
//! population or dataset mean), write `A_l = W_{D−1} ⋯ W_{l+1}` and `B_l = W_{l−1} ⋯ W_0`. The
//! Hessian is `2 E[JᵀJ] + 2 E[Σ_k r_k ∇²f_k]` with `r = f(x) − y`. Since `f` is linear in each
//! `W_l` separately, every `∇²f_k` has a zero diagonal, so at **every** θ (not only at minima)
//!
//! `Tr ∇²L(θ) = 2 E‖J‖_F² = 2 Σ_l ‖A_l‖_F² Tr[B_l Σ_x B_lᵀ]`, with `Σ_x = E[xxᵀ]`.
//!
//! For the two-layer net `U W` (U: `d_y × d`, W: `d × d_x`) this is
//! `Tr ∇²L = 2 (d_y Tr[W Σ_x Wᵀ] + ‖U‖_F² Tr Σ_x)`. The paper's sharpness (Prop. 5.3),
//! `S(θ) = d_y Tr[W Σ_x Wᵀ] + ‖U‖_F² Tr Σ_x`, is therefore **half** the true Hessian trace
//! (its Appendix B.5 drops the factor 2 of the squared loss; book `theory/constants.md#sharpness-convention`):
//! `S(θ) =` [`PAPER_SHARPNESS_FACTOR`]` · Tr ∇²L(θ)`.

use crate::core::linalg::{gemm_nn, Dense};
use crate::core::models::Model;
use crate::{invalid, Result};

/// `S_paper(θ) = PAPER_SHARPNESS_FACTOR · Tr ∇²L(θ)` for `L = E‖UWx − y‖²`: the paper's
/// sharpness is half the true Hessian trace.
pub const PAPER_SHARPNESS_FACTOR: f64 = 0.5;

fn linear_widths(model: &Model, theta: &[f64], x_moment: &Dense) -> Result<crate::core::models::DenseChain> {
    model
        .loss_kind()
        .mse_only("sharpness (the closed-form Hessian trace of a linear network)")?;
    let m = match model.as_linear_chain() {
        Some(m) => m,
        None => {
            return Err(invalid!(
                "sharpness: needs a linear network (identity activation, no biases), got {}",
                model.describe()
            ))
        }
    };
    if theta.len() != model.n_params() {
        return Err(invalid!(
            "sharpness: θ has {} entries, the model has {}",
            theta.len(),
            model.n_params()
        ));
    }
    let d0 = m.widths()[0];
    if x_moment.rows != d0 || x_moment.cols != d0 {
        return Err(invalid!(
            "sharpness: Σ_x is {}×{}, expected {d0}×{d0}",
            x_moment.rows,
            x_moment.cols
        ));
    }
    Ok(m)
}

/// `Tr[M Σ Mᵀ]` for `M` (`r × c`, row-major) and symmetric `Σ` (`c × c`).
fn quad_trace(mat: &[f64], r: usize, c: usize, sigma: &Dense) -> f64 {
    let mut ms = vec![0.0; r * c];
    gemm_nn(&mut ms, mat, &sigma.data, r, c, c, false);
    ms.iter().zip(mat).map(|(a, b)| a * b).sum()
}

/// The paper's sharpness `S(θ) = d_y Tr[W Σ_x Wᵀ] + ‖U‖_F² Tr Σ_x` of a two-layer linear network
/// `U W` (an [`DenseChain`](crate::core::models::DenseChain) with widths `[d_x, d, d_y]`, identity activation, no
/// biases; `W = layers.0.weight`, `U = layers.1.weight`), for input second moment
/// `x_moment = Σ_x = E[xxᵀ]`. Paper convention: this is **half** the true Hessian trace of
/// `E‖UWx − y‖²` (see the module docs); [`linear_hessian_trace`] gives the true trace.
pub fn paper_sharpness(model: &Model, theta: &[f64], x_moment: &Dense) -> Result<f64> {
    let m = linear_widths(model, theta, x_moment)?;
    if m.depth() != 2 {
        return Err(invalid!(
            "paper sharpness: defined for two-layer nets U W, got depth {}",
            m.depth()
        ));
    }
    let w = m.widths();
    let (dx, d, dy) = (w[0], w[1], w[2]);
    let wm = &theta[m.weight_offset(0)..m.weight_offset(0) + d * dx];
    let um = &theta[m.weight_offset(1)..m.weight_offset(1) + dy * d];
    let u2: f64 = um.iter().map(|v| v * v).sum();
    Ok(dy as f64 * quad_trace(wm, d, dx, x_moment) + u2 * x_moment.trace())
}

/// The exact trace of the Hessian of `L(θ) = E‖W_{D−1}⋯W_0 x − y‖²` (no ½, no weight decay) for a
/// deep linear network of any depth, `2 Σ_l ‖A_l‖_F² Tr[B_l Σ_x B_lᵀ]` (module docs), valid at
/// every θ. `x_moment` is `Σ_x = E[xxᵀ]` (the population moment, or a dataset's `XᵀX/n` for
/// the dataset's mean loss). For two layers it equals `2 ·` [`paper_sharpness`].
pub fn linear_hessian_trace(model: &Model, theta: &[f64], x_moment: &Dense) -> Result<f64> {
    let m = linear_widths(model, theta, x_moment)?;
    let w = m.widths();
    let d = m.depth();
    let d0 = w[0];
    let wl = |l: usize| &theta[m.weight_offset(l)..m.weight_offset(l) + w[l] * w[l + 1]];
    // Tr[B_l Σ B_lᵀ] by the forward recursion B_{l+1} = W_l B_l.
    let mut b = {
        let mut id = vec![0.0; d0 * d0];
        (0..d0).for_each(|i| id[i * d0 + i] = 1.0);
        id
    };
    let mut tb = Vec::with_capacity(d);
    for l in 0..d {
        tb.push(quad_trace(&b, w[l], d0, x_moment));
        if l + 1 < d {
            let mut next = vec![0.0; w[l + 1] * d0];
            gemm_nn(&mut next, wl(l), &b, w[l + 1], d0, w[l], false);
            b = next;
        }
    }
    // ‖A_l‖² by the backward recursion A_{l−1} = A_l W_l.
    let dd = w[d];
    let mut a = {
        let mut id = vec![0.0; dd * dd];
        (0..dd).for_each(|i| id[i * dd + i] = 1.0);
        id
    };
    let mut total = 0.0;
    for l in (0..d).rev() {
        let a2: f64 = a.iter().map(|v| v * v).sum();
        total += a2 * tb[l];
        if l > 0 {
            let mut next = vec![0.0; dd * w[l]];
            gemm_nn(&mut next, &a, wl(l), dd, w[l], w[l + 1], false);
            a = next;
        }
    }
    Ok(2.0 * total)
}
