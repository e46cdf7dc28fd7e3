//! A probe that tracks Noether charges during training (see [`crate::train::Probe`]).

use crate::core::equilibrium::{OrbitFlow, Time};
use crate::core::footprint::{Footprint, F64};
use crate::core::linalg::Dense;
use crate::core::models::Model;
use crate::core::stats::{grad_stats, per_sample_grads};
use crate::core::symmetry::catalog::{catalog, Symmetry};
use crate::core::symmetry::generator::Generator;
use crate::core::symmetry::law::NoiseBalance;
use crate::train::{Optimizer, Probe, ProbeCtx, Schedule};
use crate::Result;

/// The mean of each column of the `n × P` per-sample gradients: `∇L`.
fn column_means(g: &Dense) -> Vec<f64> {
    let mut m = vec![0.0; g.cols];
    for i in 0..g.rows {
        for (a, v) in m.iter_mut().zip(&g.data[i * g.cols..(i + 1) * g.cols]) {
            *a += v;
        }
    }
    let inv = 1.0 / g.rows.max(1) as f64;
    m.iter_mut().for_each(|a| *a *= inv);
    m
}

/// Records, for each symmetry of interest, five columns computed on the run's evaluation set:
///
/// * `{name}/C`: the charge `C = θᵀAθ`;
/// * `{name}/tr_a_sigma`: the noise imbalance `Tr[AΣ]` (per-sample covariance);
/// * `{name}/drift`: the predicted drift, `Ċ = −4γC + (η/S)Tr[AΣ]` per unit time
///   (continuous, the default) or `E[ΔC] = η²(∇LᵀA∇L + Tr[AΣ]/S) − 4ηγC + 4η²γ²C` per step
///   ([`ChargeProbe::discrete`]);
/// * `{name}/C_star`: the predicted equilibrium charge on the current orbit (this symmetry alone);
/// * `{name}/C_minus_C_star`: the distance `C − C*` (±∞ if λ* is infinite).
///
/// η, S and γ are the context's learning rate, batch size and weight decay, and the law is the
/// run's optimizer's (book `theory/momentum.md`): under momentum or Nesterov
/// ([`crate::core::symmetry::Momentum`]) the continuous drift is `ρ(−4γC + (ηρ/S)Tr[AΣ])` per unit
/// time `t = η·steps` and C* is SGD's at the effective step `ηρ`; in discrete time the drift is
/// the exact `E[ΔC | θ, v]` given the run's velocity and C* the stationary per-step law's. Under
/// Adam no law is claimed: `drift`, `C_star` and `C_minus_C_star` are `nan` (C and `Tr[AΣ]` are
/// measured as always). Diagonal generators need one pass of [`grad_stats`]; others materialise
/// the per-sample gradients (small models).
pub struct ChargeProbe {
    syms: Vec<(String, Generator)>,
    time: Time,
    schedule: Option<Schedule>,
}

impl ChargeProbe {
    /// A probe for the given symmetries.
    pub fn new(syms: Vec<Symmetry>) -> Self {
        ChargeProbe {
            syms: syms.into_iter().map(|s| (s.name, s.generator)).collect(),
            time: Time::Continuous,
            schedule: None,
        }
    }
    /// A probe for every symmetry in the model's catalog.
    pub fn from_catalog(model: &crate::core::models::Model) -> Self {
        Self::new(catalog(model).symmetries)
    }
    /// A probe for named generators.
    pub fn from_generators(syms: Vec<(String, Generator)>) -> Self {
        ChargeProbe {
            syms,
            time: Time::Continuous,
            schedule: None,
        }
    }
    /// Use the discrete-time drift and equilibrium.
    pub fn discrete(mut self) -> Self {
        self.time = Time::Discrete;
        self
    }
    /// Run on this schedule instead of every row of the log.
    pub fn with_schedule(mut self, s: Schedule) -> Self {
        self.schedule = Some(s);
        self
    }

    /// The footprint of a probe for `k` catalog symmetries of `model` (diagonal generators) on
    /// `eval_n` samples, before their generators exist: see [`charge_footprint`].
    pub fn catalog_footprint(model: &Model, k: usize, eval_n: usize) -> Footprint {
        charge_footprint(
            model,
            eval_n,
            (k as u128).saturating_mul(model.n_params() as u128),
            true,
            false,
        )
    }
}

/// What a [`ChargeProbe`] allocates, in `f64` values (× 8 bytes), with `P` parameters and `n`
/// evaluation samples:
///
/// * its generators, `gen_values` (`k · P` for `k` diagonal generators), kept for the run, and
///   the catalog's derivation they are built from (supports and index vectors, `4P`);
/// * with a diagonal generator, one pass of [`grad_stats`]: a model workspace for chunks of
///   `min(n, 256)` ([`Model::footprint`]) and the mean gradient, second moment and one gradient
///   (`3P`), plus the mean gradient's copy under momentum (`P`);
/// * with another generator, the per-sample gradients (`n · P`, [`per_sample_grads`]) with a
///   workspace for one sample, and their column means (`P`).
pub fn charge_footprint(model: &Model, eval_n: usize, gen_values: u128, diagonal: bool, other: bool) -> Footprint {
    let p = model.n_params() as u128;
    let n = eval_n.max(1);
    let mut f = Footprint::of("generators of the selected symmetries", gen_values, F64);
    f.add(
        "the catalog's derivation (supports and index vectors, 4 × P)",
        4 * p,
        F64,
    );
    if diagonal {
        f.extend(model.footprint(n.min(256)));
        f.add(
            "gradient statistics (mean, second moment, a gradient and a copy: 4 × P)",
            4 * p,
            F64,
        );
    }
    if other {
        f.add(
            format!("per-sample gradients ({n} × {p}) and their mean"),
            (n as u128 + 1) * p,
            F64,
        );
        f.extend(model.footprint(1));
    }
    f
}

impl Probe for ChargeProbe {
    fn name(&self) -> String {
        "probes.charges".into()
    }
    fn columns(&self) -> Vec<String> {
        let mut c = vec![];
        for (name, _) in &self.syms {
            for col in ["C", "tr_a_sigma", "drift", "C_star", "C_minus_C_star"] {
                c.push(format!("{name}/{col}"));
            }
        }
        c
    }

    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        let (model, theta, n) = (ctx.model, ctx.theta, ctx.eval_n);
        let (eta, batch, gamma) = (ctx.lr, ctx.batch_size.max(1), ctx.weight_decay);
        // The law of the run's optimizer: SGD's, momentum's (effective step ηρ), or none (Adam).
        let params = ctx.optimizer.flow_params(eta, batch, gamma, self.time);
        let need_stats = self.syms.iter().any(|(_, g)| g.as_diagonal().is_some());
        let need_grads = self.syms.iter().any(|(_, g)| g.as_diagonal().is_none());
        let stats = need_stats.then(|| {
            let mut ws = model.workspace(n.clamp(1, 256));
            grad_stats(model, theta, ctx.eval_x, ctx.eval_y, n, &mut ws)
        });
        let grads = need_grads.then(|| per_sample_grads(model, theta, ctx.eval_x, ctx.eval_y, n));
        // The mean gradient ∇L on the evaluation set (for momentum's exact per-step law).
        let mean_grad: Option<Vec<f64>> = match (ctx.optimizer, self.time) {
            (Optimizer::Momentum(_), Time::Discrete) => Some(match (&stats, &grads) {
                (Some(st), _) => st.mean.clone(),
                (_, Some(gr)) => column_means(gr),
                _ => unreachable!("statistics computed for every generator kind present"),
            }),
            _ => None,
        };
        for (_, g) in &self.syms {
            let (nb, flow) = match (&stats, &grads, g.as_diagonal()) {
                (Some(st), _, Some(_)) => (
                    NoiseBalance::from_stats(g, theta, st)?,
                    params.map(|p| OrbitFlow::from_stats(g, theta, st, &p)).transpose()?,
                ),
                (_, Some(gr), _) => (
                    NoiseBalance::from_grads(g, theta, gr)?,
                    params.map(|p| OrbitFlow::from_grads(g, theta, gr, &p)).transpose()?,
                ),
                _ => unreachable!("statistics computed for every generator kind present"),
            };
            let drift = match (ctx.optimizer, self.time) {
                (Optimizer::Sgd, Time::Continuous) => nb.continuous_drift(eta, batch, gamma),
                (Optimizer::Sgd, Time::Discrete) => nb.expected_step_drift(eta, batch, gamma),
                (Optimizer::Momentum(m), Time::Continuous) => m.continuous_drift(&nb, eta, batch, gamma),
                (Optimizer::Momentum(m), Time::Discrete) => {
                    let v = ctx.velocity;
                    let first = ctx.step == 0 || v.len() != theta.len();
                    let (p, q, vg) = if first {
                        (0.0, 0.0, 0.0)
                    } else {
                        let mg = mean_grad.as_deref().expect("computed for momentum in discrete time");
                        (g.bilinear(theta, v), g.quad(v), g.bilinear(v, mg))
                    };
                    m.expected_step_drift(&nb, eta, batch, gamma, first, p, q, vg)
                }
                (Optimizer::Adam { .. }, _) => f64::NAN,
            };
            let c_star = flow.map_or(f64::NAN, |f| f.solve().c_star);
            out.extend([nb.c, nb.tr_a_sigma, drift, c_star, nb.c - c_star]);
        }
        Ok(())
    }

    fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    fn footprint(&self, model: &Model, eval_n: usize) -> Footprint {
        let values: u128 = self.syms.iter().map(|(_, g)| generator_values(g)).sum();
        let diagonal = self.syms.iter().any(|(_, g)| g.as_diagonal().is_some());
        let other = self.syms.iter().any(|(_, g)| g.as_diagonal().is_none());
        charge_footprint(model, eval_n, values, diagonal, other)
    }
}

/// Values a generator holds: `P` for a diagonal, `P²` for a dense one, its indices and blocks for
/// a block-sparse one.
pub(crate) fn generator_values(g: &Generator) -> u128 {
    match g {
        Generator::Diagonal(a) => a.len() as u128,
        Generator::Dense(a) => a.data.len() as u128,
        Generator::BlockSparse(b) => {
            b.mats().iter().map(|m| m.data.len() as u128).sum::<u128>()
                + b.blocks().iter().map(|s| s.indices.len() as u128).sum::<u128>()
        }
    }
}
