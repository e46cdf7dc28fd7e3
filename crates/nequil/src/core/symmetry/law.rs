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
//!   (book `theory/constants.md#noether-flow-constant`; the paper's Eq. 7 writes σ² = η/(2S) where
//!   2σ² is consistent).
//! * **Momentum** ([`Momentum`], book `theory/momentum.md`): heavy-ball and Nesterov momentum in
//!   PyTorch's convention. Given the velocity `v`, one step changes the charge by exactly
//!   `C' − C = −2η(2aγC + b θᵀAv) + η² dᵀAd` with the update direction `d = a(ĝ + 2γθ) + b v`;
//!   averaged over the velocity's stationary noise the drift is SGD's with the effective step
//!   `ηρ`, `ρ = a + b(1 − τ)/(1 − β)` (`= 1/(1 − β)` without dampening), and the mean-gradient and
//!   `γ²` terms weighted by [`Momentum::mean_weight`].

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

/// Heavy-ball or Nesterov momentum as `torch.optim.SGD(momentum = β, dampening = τ, nesterov)`
/// runs it, with the weight-decay gradient `2γθ` added to the batch gradient (PyTorch's
/// `weight_decay = 2γ`): `g = ĝ + 2γθ`, `v ← βv + (1 − τ)g` (the first step sets `v = g`),
/// `θ ← θ − η d` with `d = v` (heavy ball) or `d = g + βv` (Nesterov, which needs τ = 0).
///
/// Written in the velocity before the step, `d = a g + b v_old` with `(a, b)` from
/// [`Momentum::direction`]. Because every per-sample gradient is orthogonal to `Aθ`,
/// `θᵀA d = 2aγC + b θᵀAv_old` exactly, which gives the exact per-step law
/// ([`Momentum::expected_step_drift`]); averaging over the velocity's stationary noise gives the
/// continuous law ([`Momentum::continuous_drift`]) and the stationary per-step law
/// ([`Momentum::stationary_step_drift`]). Derivation: book `theory/momentum.md`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Momentum {
    /// The momentum coefficient β ∈ [0, 1).
    pub beta: f64,
    /// The dampening τ ∈ [0, 1] (PyTorch's `dampening`; 0 by default).
    pub dampening: f64,
    /// Nesterov's variant.
    pub nesterov: bool,
}

impl Momentum {
    /// Heavy ball with coefficient β, no dampening.
    pub fn heavy_ball(beta: f64) -> Self {
        Momentum {
            beta,
            dampening: 0.0,
            nesterov: false,
        }
    }
    /// Nesterov momentum with coefficient β.
    pub fn nesterov(beta: f64) -> Self {
        Momentum {
            beta,
            dampening: 0.0,
            nesterov: true,
        }
    }
    /// `(a, b)` with `d = a g + b v_old` for a step; `first` is the first step of a run (PyTorch
    /// sets `v = g` then, without dampening; `v_old = 0`).
    pub fn direction(&self, first: bool) -> (f64, f64) {
        let alpha = if first { 1.0 } else { 1.0 - self.dampening };
        if self.nesterov {
            (1.0 + self.beta * alpha, self.beta * self.beta)
        } else {
            (alpha, self.beta)
        }
    }
    /// The effective-step factor `ρ = a + b(1 − τ)/(1 − β)`: a constant gradient `g` moves θ by
    /// `ηρ g` per step once the velocity is stationary. `1/(1 − β)` without dampening (both
    /// variants); 1 at β = 0.
    pub fn rate(&self) -> f64 {
        let (a, b) = self.direction(false);
        a + b * (1.0 - self.dampening) / (1.0 - self.beta)
    }
    /// The weight `f = 1 + 2b(1 − τ)/((1 − β)²ρ)` of the mean-gradient and `γ²` terms of the
    /// stationary per-step law relative to SGD's: `(1 + β)/(1 − β)` for heavy ball, `(1 − β + 2β²)/(1 − β)` for
    /// Nesterov (no dampening), 1 at β = 0.
    pub fn mean_weight(&self) -> f64 {
        let (_, b) = self.direction(false);
        let om = 1.0 - self.beta;
        1.0 + 2.0 * b * (1.0 - self.dampening) / (om * om * self.rate())
    }
    /// The exact expected change of the charge in one step, given the state `(θ, v)`:
    /// `E[ΔC | θ, v] = −2η(2aγC + bP) + η²(a²(∇LᵀA∇L + Tr[AΣ]/S + 4γ²C) + 2ab(vᵀA∇L + 2γP) + b²Q)`
    /// with `P = θᵀAv`, `Q = vᵀAv`, `(a, b)` = [`Momentum::direction`]`(first)`, for a batch of S
    /// samples drawn with replacement. `nb` holds C, `Tr[AΣ]` and `∇LᵀA∇L` at θ.
    #[allow(clippy::too_many_arguments)]
    pub fn expected_step_drift(
        &self,
        nb: &NoiseBalance,
        eta: f64,
        batch: usize,
        gamma: f64,
        first: bool,
        p: f64,
        q: f64,
        v_a_grad: f64,
    ) -> f64 {
        let (a, b) = self.direction(first);
        let c = nb.c;
        let dad = a * a * (nb.grad_quad + nb.tr_a_sigma / batch as f64 + 4.0 * gamma * gamma * c)
            + 2.0 * a * b * (v_a_grad + 2.0 * gamma * p)
            + b * b * q;
        -2.0 * eta * (2.0 * a * gamma * c + b * p) + eta * eta * dad
    }
    /// The continuous-time drift per unit time `t = η·steps`: `Ċ = ρ(−4γC + (ηρ/S)Tr[AΣ])`, SGD's
    /// law with the effective step `ηρ`, run `ρ` times faster.
    pub fn continuous_drift(&self, nb: &NoiseBalance, eta: f64, batch: usize, gamma: f64) -> f64 {
        let r = self.rate();
        r * nb.continuous_drift(eta * r, batch, gamma)
    }
    /// The expected change per step once the velocity is stationary:
    /// `E[ΔC] = −4ηργC + (ηρ)²(Tr[AΣ]/S + f(∇LᵀA∇L + 4γ²C))`, f = [`Momentum::mean_weight`].
    /// At β = 0 this is SGD's exact [`NoiseBalance::expected_step_drift`].
    pub fn stationary_step_drift(&self, nb: &NoiseBalance, eta: f64, batch: usize, gamma: f64) -> f64 {
        let e = eta * self.rate();
        let f = self.mean_weight();
        -4.0 * e * gamma * nb.c
            + e * e * (nb.tr_a_sigma / batch as f64 + f * (nb.grad_quad + 4.0 * gamma * gamma * nb.c))
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
    let (dx, dy) = (model.d_in(), model.d_y());
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
