//! A probe that watches every update: the exact per-step law of a Noether charge.
//!
//! For an exponential symmetry with generator `A` every per-sample gradient is orthogonal to
//! `Aθ`, so one update `θ' = (1 − 2ηγ)θ − η ĝ` changes the charge `C = θᵀAθ` by exactly
//! `C' = (1 − 2ηγ)² C + η² ĝᵀAĝ` (book `theory/law-of-motion.md#expected-discrete-drift`), up to rounding. With `A` positive
//! semi-definite and γ = 0 the charge never decreases (e.g. `‖θ‖²` under scale invariance).

use crate::core::footprint::{Footprint, F64};
use crate::core::models::Model;
use crate::core::symmetry::generator::Generator;
use crate::train::{Optimizer, Probe, ProbeCtx, StepCtx};
use crate::{invalid, Result};

/// Watches every update ([`Probe::observes_steps`]) and reports, per named generator, at the end
/// of the run ([`Probe::summary`]):
///
/// * `{name}/min_rel_change`: the smallest per-step change `(C' − C)/|C|` over all updates
///   (`+∞` if no update was made);
/// * `{name}/max_identity_error`: the largest `|C' − (1 − 2ηγ)²C − η² ĝᵀAĝ| / ‖θ‖²` over all
///   updates (`‖θ‖²` is the scale of `C` for a generator with eigenvalues in `[−1, 1]`);
/// * `{name}/steps`: the number of updates watched.
///
/// and at the rows of the log a column `{name}/majorant`: a bound `B ≥ |C|` that holds at every
/// step, `B' = (1 − 2ηγ)² B + η²|ĝᵀAĝ|` from `B = |C(θ₀)|` (e.g. how far weight decay has
/// driven a charge toward 0 under GD, whatever the η² terms did on the way).
///
/// Under momentum or Nesterov the identity is the exact step of the `(θ, v)` system,
/// `C' = C − 2η(2aγC + b θᵀAv) + η² dᵀAd` with `d = a(ĝ + 2γθ) + bv` (book
/// `theory/momentum.md#exact-step`), and the majorant is `nan`; under Adam the probe stops the run
/// with an error (no such law).
///
/// Each update costs a few passes over θ.
pub struct StepChargeProbe {
    gens: Vec<(String, Generator)>,
    min_rel: Vec<f64>,
    max_err: Vec<f64>,
    majorant: Vec<f64>,
    steps: u64,
    /// Momentum's update direction of the current step (allocated at the first).
    dir: Vec<f64>,
}

impl StepChargeProbe {
    /// A probe for the named generators (all of the model's dimension).
    pub fn new(gens: Vec<(String, Generator)>) -> Result<Self> {
        if let Some((n, _)) = gens.iter().find(|(_, g)| g.dim() != gens[0].1.dim()) {
            return Err(invalid!("step charge probe: generator `{n}` has another dimension"));
        }
        let k = gens.len();
        Ok(StepChargeProbe {
            gens,
            min_rel: vec![f64::INFINITY; k],
            max_err: vec![0.0; k],
            majorant: vec![f64::NAN; k],
            steps: 0,
            dir: vec![],
        })
    }
}

impl Probe for StepChargeProbe {
    fn name(&self) -> String {
        "step charges".into()
    }
    fn columns(&self) -> Vec<String> {
        self.gens.iter().map(|(n, _)| format!("{n}/majorant")).collect()
    }
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        for (j, (_, a)) in self.gens.iter().enumerate() {
            if self.majorant[j].is_nan() && a.dim() == ctx.theta.len() {
                self.majorant[j] = a.charge(ctx.theta).abs();
            }
            out.push(self.majorant[j]);
        }
        Ok(())
    }
    fn observes_steps(&self) -> bool {
        true
    }
    /// Its `k` generators (`P` values each for diagonal ones; their stored values otherwise) with
    /// their names and handles, its three running values per generator (`3k`) and momentum's
    /// update direction (`P`), in `f64` values (× 8 bytes).
    fn footprint(&self, model: &Model, _eval_n: usize) -> Footprint {
        let gens: u128 = self.gens.iter().map(|(_, g)| super::charges::generator_values(g)).sum();
        let k = self.gens.len() as u128;
        let names: u128 = self.gens.iter().map(|(n, _)| n.len() as u128).sum();
        let mut f = Footprint::of("the generators", gens + 3 * k, F64);
        f.add(
            "their names and handles",
            names + k * std::mem::size_of::<(String, Generator)>() as u128,
            1,
        );
        f.add("momentum's update direction (P)", model.n_params() as u128, F64);
        f
    }
    fn on_step(&mut self, s: &StepCtx<'_>) -> Result<()> {
        let n2: f64 = s.theta_before.iter().map(|v| v * v).sum();
        let decay = 1.0 - 2.0 * s.lr * s.weight_decay;
        let momentum = match s.optimizer {
            Optimizer::Sgd => None,
            Optimizer::Momentum(m) => Some(*m),
            Optimizer::Adam { .. } => {
                return Err(invalid!(
                    "step charge probe: the exact per-step law holds for SGD, GD, momentum and Nesterov; \
                     Adam's preconditioned step is not orthogonal to Aθ"
                ))
            }
        };
        if let Some(m) = momentum {
            // d = a(ĝ + 2γθ) + b v_old, the direction the step took (θ_after = θ_before − η d).
            let (a, b) = m.direction(s.step == 0);
            let first = s.step == 0 || s.velocity_before.len() != s.theta_before.len();
            self.dir.resize(s.theta_before.len(), 0.0);
            for (i, d) in self.dir.iter_mut().enumerate() {
                let v = if first { 0.0 } else { s.velocity_before[i] };
                *d = a * (s.grad[i] + 2.0 * s.weight_decay * s.theta_before[i]) + b * v;
            }
        }
        for (j, (_, a)) in self.gens.iter().enumerate() {
            if a.dim() != s.theta_before.len() {
                return Err(invalid!(
                    "step charge probe: generator of dimension {}, θ has {} entries",
                    a.dim(),
                    s.theta_before.len()
                ));
            }
            let c0 = a.charge(s.theta_before);
            let c1 = a.charge(s.theta_after);
            let predicted = match momentum {
                None => {
                    let eta2_term = s.lr * s.lr * a.quad(s.grad);
                    if self.majorant[j].is_nan() {
                        self.majorant[j] = c0.abs();
                    }
                    self.majorant[j] = decay * decay * self.majorant[j] + eta2_term.abs();
                    decay * decay * c0 + eta2_term
                }
                Some(m) => {
                    // θᵀA d = 2aγC + b θᵀAv_old, because ĝ ⟂ Aθ (book `theory/momentum.md#exact-step`).
                    let (ca, cb) = m.direction(s.step == 0);
                    let p = if s.velocity_before.len() == s.theta_before.len() && s.step > 0 {
                        a.bilinear(s.theta_before, s.velocity_before)
                    } else {
                        0.0
                    };
                    self.majorant[j] = f64::NAN;
                    c0 - 2.0 * s.lr * (2.0 * ca * s.weight_decay * c0 + cb * p) + s.lr * s.lr * a.quad(&self.dir)
                }
            };
            self.min_rel[j] = self.min_rel[j].min((c1 - c0) / c0.abs());
            self.max_err[j] = self.max_err[j].max((c1 - predicted).abs() / n2);
        }
        self.steps += 1;
        Ok(())
    }
    fn summary(&self) -> Vec<(String, Vec<f64>)> {
        let mut out = vec![];
        for (j, (name, _)) in self.gens.iter().enumerate() {
            out.push((format!("{name}/min_rel_change"), vec![self.min_rel[j]]));
            out.push((format!("{name}/max_identity_error"), vec![self.max_err[j]]));
            out.push((format!("{name}/steps"), vec![self.steps as f64]));
        }
        out
    }
}
