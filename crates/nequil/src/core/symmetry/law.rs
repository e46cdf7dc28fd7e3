//! The law of motion of a Noether charge under SGD (book `theory/law-of-motion.md#noether-flow`, `theory/law-of-motion.md#expected-discrete-drift`, `theory/constants.md#constants`).
//!
//! Conventions: per-sample loss `ℓ = ‖f(x) − y‖²` (no ½), `Σ` the per-sample gradient covariance
//! over the data (weight `1/n`), a batch of S samples drawn with replacement, weight decay
//! `γ‖θ‖²` in the loss so that one step is `θ ← (1 − 2ηγ)θ − ηĝ`, and continuous time `t = η·steps`.
//!
//! * **Exact per-step identity** ([`charge_after_step`]): because `ĝᵀAθ = 0` for every batch,
//!   `C_{t+1} = (1 − 2ηγ)² C_t + η² ĝᵀAĝ`, up to float rounding.
//! * **Expected discrete drift** ([`NoiseBalance::expected_step_drift`]):
//!   `E[ΔC] = η²(∇LᵀA∇L + Tr[AΣ]/S) − 4ηγC + 4η²γ²C` (Theorem D.1 with weight decay).
//! * **Continuous drift** ([`NoiseBalance::continuous_drift`]): `Ċ = −4γC + (η/S) Tr[AΣ]`
//!   (§6.1; the paper's Eq. 7 writes σ² = η/(2S) where 2σ² is consistent).

use super::generator::Generator;
use crate::core::linalg::Dense;
use crate::core::models::Model;
use crate::core::stats::{grad_stats, per_sample_grads, GradStats};
use crate::{invalid, Result};
use serde::Serialize;

/// The exact charge after one step, `(1 − 2ηγ)² C_t + η² ĝᵀAĝ`, given `C_t` and `q = ĝᵀAĝ` for the
/// batch gradient `ĝ` used in the step (see the module docs).
#[inline]
pub fn charge_after_step(c: f64, q: f64, eta: f64, gamma: f64) -> f64 {
    let k = 1.0 - 2.0 * eta * gamma;
    k * k * c + eta * eta * q
}

/// The charge and the noise imbalance of one symmetry at θ, over a data set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NoiseBalance {
    /// The charge `C = θᵀAθ`.
    pub c: f64,
    /// The noise imbalance `Tr[AΣ]` (per-sample covariance, weight `1/n`).
    pub tr_a_sigma: f64,
    /// `Tr[A₊Σ] ≥ 0`: the noise in A's positive eigenspace (pushes C up).
    pub tr_a_sigma_pos: f64,
    /// `Tr[A₋Σ] ≤ 0`: the noise in A's negative eigenspace (pushes C down).
    pub tr_a_sigma_neg: f64,
    /// `∇LᵀA∇L`, the mean-gradient ("GD") term of the discrete drift.
    pub grad_quad: f64,
    /// Number of samples.
    pub n: usize,
}

impl NoiseBalance {
    /// From the per-parameter statistics of [`grad_stats`]; the generator must be diagonal.
    pub fn from_stats(gen: &Generator, theta: &[f64], stats: &GradStats) -> Result<Self> {
        let a = gen
            .as_diagonal()
            .ok_or_else(|| invalid!("noise balance from per-parameter statistics needs a diagonal generator"))?;
        if a.len() != stats.mean.len() || theta.len() != a.len() {
            return Err(invalid!(
                "noise balance: generator, θ and statistics have different lengths"
            ));
        }
        let (mut pos, mut neg, mut gq, mut c) = (0.0, 0.0, 0.0, 0.0);
        for p in 0..a.len() {
            if a[p] == 0.0 {
                continue;
            }
            let m = stats.mean[p];
            let var = stats.second_moment[p] - m * m;
            let t = a[p] * var;
            if a[p] > 0.0 {
                pos += t
            } else {
                neg += t
            }
            gq += a[p] * m * m;
            c += a[p] * theta[p] * theta[p];
        }
        Ok(NoiseBalance {
            c,
            tr_a_sigma: pos + neg,
            tr_a_sigma_pos: pos,
            tr_a_sigma_neg: neg,
            grad_quad: gq,
            n: stats.n,
        })
    }

    /// From the `n × P` matrix of per-sample gradients ([`per_sample_grads`]); any generator.
    /// Works in A's eigenbasis: `Tr[AΣ] = Σ_j μ_j Var_i(n_jᵀg_i)`.
    pub fn from_grads(gen: &Generator, theta: &[f64], grads: &Dense) -> Result<Self> {
        let p = grads.cols;
        if gen.dim() != p || theta.len() != p {
            return Err(invalid!(
                "noise balance: generator, θ and gradients have different lengths"
            ));
        }
        let n = grads.rows;
        if n == 0 {
            return Err(invalid!("noise balance: no samples"));
        }
        let (mut pos, mut neg, mut gq) = (0.0, 0.0, 0.0);
        for e in gen.spectrum() {
            let (mut m, mut m2) = (0.0, 0.0);
            for i in 0..n {
                let v = e.project(&grads.data[i * p..(i + 1) * p]);
                m += v;
                m2 += v * v;
            }
            m /= n as f64;
            m2 /= n as f64;
            let t = e.mu * (m2 - m * m);
            if e.mu > 0.0 {
                pos += t
            } else {
                neg += t
            }
            gq += e.mu * m * m;
        }
        Ok(NoiseBalance {
            c: gen.charge(theta),
            tr_a_sigma: pos + neg,
            tr_a_sigma_pos: pos,
            tr_a_sigma_neg: neg,
            grad_quad: gq,
            n,
        })
    }

    /// Computes the balance of `gen` at θ on the `n` samples `(x, y)`: through [`grad_stats`]
    /// for a diagonal generator (no per-sample gradients are stored), through
    /// [`per_sample_grads`] otherwise.
    pub fn compute(model: &Model, theta: &[f64], gen: &Generator, x: &[f64], y: &[f64], n: usize) -> Result<Self> {
        check_data(model, theta, x, y, n)?;
        if gen.as_diagonal().is_some() {
            let mut ws = model.workspace(n.min(256));
            let st = grad_stats(model, theta, x, y, n, &mut ws);
            Self::from_stats(gen, theta, &st)
        } else {
            let g = per_sample_grads(model, theta, x, y, n);
            Self::from_grads(gen, theta, &g)
        }
    }

    /// The continuous-time drift `Ċ = −4γC + (η/S) Tr[AΣ]` (per unit time `t = η·steps`).
    pub fn continuous_drift(&self, eta: f64, batch: usize, gamma: f64) -> f64 {
        -4.0 * gamma * self.c + eta / batch as f64 * self.tr_a_sigma
    }

    /// The exact expected change per step, `E[ΔC] = η²(∇LᵀA∇L + Tr[AΣ]/S) − 4ηγC + 4η²γ²C`, for a
    /// batch of S samples drawn with replacement from the same data.
    pub fn expected_step_drift(&self, eta: f64, batch: usize, gamma: f64) -> f64 {
        eta * eta * (self.grad_quad + self.tr_a_sigma / batch as f64) - 4.0 * eta * gamma * self.c
            + 4.0 * eta * eta * gamma * gamma * self.c
    }
}

/// Checks θ and the data for shape and finiteness.
pub(crate) fn check_data(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize) -> Result<()> {
    let p = model.n_params();
    if theta.len() != p {
        return Err(invalid!("θ has {} entries, the model has {p} parameters", theta.len()));
    }
    if let Some(i) = theta.iter().position(|v| !v.is_finite()) {
        return Err(invalid!("θ[{i}] is not finite"));
    }
    if n == 0 {
        return Err(invalid!("data: no samples"));
    }
    let (dx, dy) = (model.d_in(), model.d_out());
    if x.len() < n * dx || y.len() < n * dy {
        return Err(invalid!(
            "data: {n} samples need {}×{dx} inputs and {}×{dy} targets, got {} and {} values",
            n,
            n,
            x.len(),
            y.len()
        ));
    }
    if let Some(i) = x[..n * dx].iter().position(|v| !v.is_finite()) {
        return Err(invalid!("data: input of sample {} is not finite", i / dx));
    }
    if let Some(i) = y[..n * dy].iter().position(|v| !v.is_finite()) {
        return Err(invalid!("data: target of sample {} is not finite", i / dy));
    }
    Ok(())
}
