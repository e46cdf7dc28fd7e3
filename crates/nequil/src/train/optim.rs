//! Update rules: SGD, heavy-ball and Nesterov momentum, Adam and AdamW, in PyTorch's conventions
//! (book `spec-reference.md#optimizers`), with their state in buffers allocated once.
//!
//! The loss carries `γ‖θ‖²`, so its gradient carries `2γθ`: PyTorch's `weight_decay` argument is
//! `2γ` for every rule here. For SGD, momentum, Nesterov and Adam the term is added to the batch
//! gradient before anything else (`g = ĝ + 2γθ`, PyTorch's coupled L2 decay); for AdamW it is
//! decoupled, `θ ← (1 − 2ηγ)θ` before the Adam step (`torch.optim.AdamW(weight_decay = 2γ)`).
//!
//! * SGD / GD: `θ ← (1 − 2ηγ)θ − ηĝ`.
//! * Momentum (`torch.optim.SGD(momentum = β, dampening = τ)`): `v ← βv + (1 − τ)g` (the first
//!   step sets `v = g`), `θ ← θ − ηv`.
//! * Nesterov (`nesterov = True`, τ = 0): the same `v`, then `θ ← θ − η(g + βv)`.
//! * Adam (`torch.optim.Adam(betas = (β₁, β₂), eps = ε)`): with `k` the number of Adam steps so
//!   far (1 at the first), `m ← β₁m + (1 − β₁)g`, `s ← β₂s + (1 − β₂)g²`,
//!   `θ ← θ − (η/(1 − β₁ᵏ)) m / (√s/√(1 − β₂ᵏ) + ε)` (bias correction as PyTorch computes it).
//! * AdamW: `θ ← (1 − 2ηγ)θ`, then the Adam step on `g = ĝ`.

use crate::core::equilibrium::{FlowParams, Time};
use crate::core::symmetry::Momentum;
use crate::simd::{multiversion, Isa};
use crate::{invalid, Result};

/// An update rule and its hyperparameters (see the module docs for the formulas).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Optimizer {
    /// `θ ← (1 − 2ηγ)θ − ηĝ` (SGD on batches, GD on the full dataset).
    #[default]
    Sgd,
    /// Heavy-ball or Nesterov momentum ([`Momentum`]).
    Momentum(Momentum),
    /// Adam, or AdamW when `decoupled`.
    Adam {
        /// β₁, the first moment's decay.
        beta1: f64,
        /// β₂, the second moment's decay.
        beta2: f64,
        /// ε, added to `√ŝ`.
        eps: f64,
        /// AdamW's decoupled weight decay.
        decoupled: bool,
    },
}

impl Optimizer {
    /// The name used in specs: `sgd`, `momentum`, `nesterov`, `adam`, `adamw`.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Momentum(m) if m.nesterov => "nesterov",
            Optimizer::Momentum(_) => "momentum",
            Optimizer::Adam { decoupled: false, .. } => "adam",
            Optimizer::Adam { decoupled: true, .. } => "adamw",
        }
    }

    /// The momentum rule, if this is momentum or Nesterov.
    pub fn momentum(&self) -> Option<&Momentum> {
        match self {
            Optimizer::Momentum(m) => Some(m),
            _ => None,
        }
    }

    /// The flow whose root is the noise equilibrium under this rule (book `theory/momentum.md`):
    /// SGD's for [`Optimizer::Sgd`], SGD's at the effective step `ηρ` for momentum
    /// ([`FlowParams::momentum`]), and `None` for Adam (no law is claimed).
    pub fn flow_params(&self, eta: f64, batch: usize, gamma: f64, time: Time) -> Option<FlowParams> {
        match self {
            Optimizer::Sgd => Some(FlowParams {
                eta,
                batch,
                gamma,
                time,
                mean_weight: 1.0,
            }),
            Optimizer::Momentum(m) => Some(FlowParams::momentum(m, eta, batch, gamma, time)),
            Optimizer::Adam { .. } => None,
        }
    }

    /// Checks the hyperparameters; errors name the spec keys (`train.momentum`, …).
    pub fn validate(&self) -> Result<()> {
        let unit = |v: f64| v.is_finite() && (0.0..1.0).contains(&v);
        match *self {
            Optimizer::Sgd => Ok(()),
            Optimizer::Momentum(m) => {
                if !unit(m.beta) {
                    return Err(invalid!("train.momentum: must lie in [0, 1), got {}", m.beta));
                }
                if !(m.dampening.is_finite() && (0.0..=1.0).contains(&m.dampening)) {
                    return Err(invalid!("train.dampening: must lie in [0, 1], got {}", m.dampening));
                }
                if m.nesterov && m.dampening != 0.0 {
                    return Err(invalid!(
                        "train.dampening: Nesterov momentum needs zero dampening (as in PyTorch), got {}",
                        m.dampening
                    ));
                }
                if m.nesterov && m.beta == 0.0 {
                    return Err(invalid!(
                        "train.momentum: Nesterov momentum needs a momentum > 0 (as in PyTorch)"
                    ));
                }
                Ok(())
            }
            Optimizer::Adam { beta1, beta2, eps, .. } => {
                if !unit(beta1) || !unit(beta2) {
                    return Err(invalid!("train.betas: both must lie in [0, 1), got [{beta1}, {beta2}]"));
                }
                if !(eps.is_finite() && eps > 0.0) {
                    return Err(invalid!("train.eps: must be finite and > 0, got {eps}"));
                }
                Ok(())
            }
        }
    }
}

/// The state of an [`Optimizer`]: buffers of length P, allocated once.
#[derive(Clone, Debug, Default)]
pub struct OptimState {
    /// Momentum's velocity `v`, or Adam's first moment `m` (empty for SGD).
    pub buf: Vec<f64>,
    /// Adam's second moment `s` (empty otherwise).
    pub sq: Vec<f64>,
    /// Updates made so far (Adam's bias-correction exponent is `steps + 1` for the next one).
    pub steps: u64,
}

impl OptimState {
    /// Zeroed state for `opt` on `p` parameters.
    pub fn new(opt: &Optimizer, p: usize) -> Self {
        let (nb, ns) = match opt {
            Optimizer::Sgd => (0, 0),
            Optimizer::Momentum(_) => (p, 0),
            Optimizer::Adam { .. } => (p, p),
        };
        OptimState {
            buf: vec![0.0; nb],
            sq: vec![0.0; ns],
            steps: 0,
        }
    }

    /// One update of θ from the batch gradient `g` (without the weight-decay term) at learning
    /// rate `lr` and weight decay γ (loss `γ‖θ‖²`). Returns whether every new parameter is finite.
    /// Allocates nothing.
    pub fn update(&mut self, opt: &Optimizer, theta: &mut [f64], g: &[f64], lr: f64, gamma: f64) -> bool {
        let first = self.steps == 0;
        self.steps += 1;
        let wd2 = 2.0 * gamma;
        match *opt {
            Optimizer::Sgd => sgd_update(theta, g, 1.0 - 2.0 * lr * gamma, lr),
            Optimizer::Momentum(m) => {
                let damp = if first { 1.0 } else { 1.0 - m.dampening };
                momentum_update(theta, g, &mut self.buf, wd2, lr, m.beta, damp, m.nesterov)
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                decoupled,
            } => {
                let k = self.steps as f64;
                let bc1 = 1.0 - beta1.powf(k);
                let bc2 = 1.0 - beta2.powf(k);
                adam_update(
                    theta,
                    g,
                    &mut self.buf,
                    &mut self.sq,
                    AdamStep {
                        lr,
                        wd2,
                        beta1,
                        beta2,
                        eps,
                        step_size: lr / bc1,
                        bc2_sqrt: bc2.sqrt(),
                        decoupled,
                    },
                )
            }
        }
    }
}

#[inline(always)]
fn sgd_update_body(theta: &mut [f64], g: &[f64], decay: f64, lr: f64) -> bool {
    let n = theta.len().min(g.len());
    let (theta, g) = (&mut theta[..n], &g[..n]);
    let mut acc = [0.0f64; 16];
    let mut tc = theta.chunks_exact_mut(16);
    let mut gc = g.chunks_exact(16);
    for (t, gv) in (&mut tc).zip(&mut gc) {
        for j in 0..16 {
            let v = decay * t[j] - lr * gv[j];
            t[j] = v;
            acc[j] += v * 0.0;
        }
    }
    let mut rest = 0.0;
    for (t, gv) in tc.into_remainder().iter_mut().zip(gc.remainder()) {
        let v = decay * *t - lr * gv;
        *t = v;
        rest += v * 0.0;
    }
    acc.iter().sum::<f64>() + rest == 0.0
}

multiversion! {
    /// [`sgd_update`] on a given path.
    pub(crate) fn sgd_update_with(theta: &mut [f64], g: &[f64], decay: f64, lr: f64) -> bool = sgd_update_body;
}

/// `θ ← decay·θ − lr·g` in one pass, returning whether every new value is finite. The check
/// adds `0·v` (0 for finite `v`, NaN for ±∞ and NaN) into sixteen independent lanes, so it
/// vectorizes with the update and costs no extra pass over θ. Compiled for the process's
/// [`crate::simd`] path; nothing is fused, so every path gives the same bits. Covers the shorter
/// of the two slices.
#[inline]
pub fn sgd_update(theta: &mut [f64], g: &[f64], decay: f64, lr: f64) -> bool {
    sgd_update_with(Isa::active(), theta, g, decay, lr)
}

/// `d = g + 2γθ`, `v ← βv + damp·d`, `θ ← θ − η(v or d + βv)`; whether θ stayed finite (the `0·x`
/// trick of [`sgd_update`]).
#[allow(clippy::too_many_arguments)]
fn momentum_update(
    theta: &mut [f64],
    g: &[f64],
    buf: &mut [f64],
    wd2: f64,
    lr: f64,
    beta: f64,
    damp: f64,
    nesterov: bool,
) -> bool {
    let n = theta.len().min(g.len()).min(buf.len());
    let mut acc = 0.0;
    for ((t, gi), b) in theta[..n].iter_mut().zip(&g[..n]).zip(&mut buf[..n]) {
        let d = gi + wd2 * *t;
        let v = beta * *b + damp * d;
        *b = v;
        let dir = if nesterov { d + beta * v } else { v };
        let nt = *t - lr * dir;
        *t = nt;
        acc += nt * 0.0;
    }
    acc == 0.0
}

/// The scalars of one Adam step.
#[derive(Clone, Copy)]
struct AdamStep {
    lr: f64,
    wd2: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// `η/(1 − β₁ᵏ)`.
    step_size: f64,
    /// `√(1 − β₂ᵏ)`.
    bc2_sqrt: f64,
    decoupled: bool,
}

fn adam_update(theta: &mut [f64], g: &[f64], m: &mut [f64], s: &mut [f64], a: AdamStep) -> bool {
    let n = theta.len().min(g.len()).min(m.len()).min(s.len());
    let decay = 1.0 - a.lr * a.wd2;
    let mut acc = 0.0;
    for (((t, gi), mi), si) in theta[..n].iter_mut().zip(&g[..n]).zip(&mut m[..n]).zip(&mut s[..n]) {
        let (th, gr) = if a.decoupled {
            (*t * decay, *gi)
        } else {
            (*t, gi + a.wd2 * *t)
        };
        let mv = a.beta1 * *mi + (1.0 - a.beta1) * gr;
        let sv = a.beta2 * *si + (1.0 - a.beta2) * gr * gr;
        *mi = mv;
        *si = sv;
        let denom = sv.sqrt() / a.bc2_sqrt + a.eps;
        let nt = th - a.step_size * (mv / denom);
        *t = nt;
        acc += nt * 0.0;
    }
    acc == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_update_on_every_path() {
        use crate::core::rng::Rng;
        let mut r = Rng::new(5);
        for n in [0usize, 1, 7, 16, 33, 100] {
            let mut theta = vec![0.0; n];
            let mut g = vec![0.0; n];
            r.fill_normal(&mut theta);
            r.fill_normal(&mut g);
            let (decay, lr) = (0.999, 0.01);
            let want: Vec<f64> = theta.iter().zip(&g).map(|(t, gv)| decay * t - lr * gv).collect();
            for isa in Isa::all() {
                let mut t = theta.clone();
                assert!(sgd_update_with(isa, &mut t, &g, decay, lr));
                // Nothing is fused: the same bits as the scalar formula on every path.
                assert_eq!(t, want, "{} n={n}", isa.path());
                for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    for at in [0, n / 2, n.saturating_sub(1)] {
                        if n == 0 {
                            continue;
                        }
                        let mut t = theta.clone();
                        let mut gb = g.clone();
                        gb[at] = bad;
                        assert!(
                            !sgd_update_with(isa, &mut t, &gb, decay, lr),
                            "{} {bad} at {at}",
                            isa.path()
                        );
                    }
                }
            }
        }
        let mut t = [1.0, 2.0];
        assert!(sgd_update(&mut t, &[1.0, 1.0], 1.0, 0.5));
        assert_eq!(t, [0.5, 1.5]);
    }

    #[test]
    fn names_and_validation() {
        assert_eq!(Optimizer::Sgd.name(), "sgd");
        assert_eq!(Optimizer::Momentum(Momentum::nesterov(0.9)).name(), "nesterov");
        let bad = Optimizer::Momentum(Momentum {
            beta: 0.9,
            dampening: 0.1,
            nesterov: true,
        });
        assert!(bad.validate().unwrap_err().to_string().contains("train.dampening"));
        assert!(Optimizer::Momentum(Momentum::heavy_ball(1.0))
            .validate()
            .unwrap_err()
            .to_string()
            .contains("train.momentum"));
        let adam = |b1, b2, eps| Optimizer::Adam {
            beta1: b1,
            beta2: b2,
            eps,
            decoupled: false,
        };
        assert!(adam(0.9, 1.0, 1e-8)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("train.betas"));
        assert!(adam(0.9, 0.999, 0.0)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("train.eps"));
        assert!(adam(0.9, 0.999, 1e-8).validate().is_ok());
    }

    #[test]
    fn a_non_finite_update_is_reported() {
        for opt in [
            Optimizer::Momentum(Momentum::heavy_ball(0.5)),
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                decoupled: true,
            },
        ] {
            let mut st = OptimState::new(&opt, 3);
            let mut theta = [1.0, 2.0, 3.0];
            assert!(st.update(&opt, &mut theta, &[0.1, 0.2, 0.3], 0.1, 0.0));
            assert!(!st.update(&opt, &mut theta, &[0.1, f64::NAN, 0.3], 0.1, 0.0));
        }
    }
}
