//! A probe that tracks Noether charges during training (see [`crate::train::Probe`]).

use crate::core::equilibrium::{FlowParams, OrbitFlow, Time};
use crate::core::stats::{grad_stats, per_sample_grads};
use crate::core::symmetry::catalog::{catalog, Symmetry};
use crate::core::symmetry::generator::Generator;
use crate::core::symmetry::law::NoiseBalance;
use crate::train::{Probe, ProbeCtx, Schedule};
use crate::Result;

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
/// η, S and γ are the context's learning rate, batch size and weight decay. Diagonal generators
/// need one pass of [`grad_stats`]; others materialise the per-sample gradients (small models).
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
        let params = FlowParams {
            eta: ctx.lr,
            batch: ctx.batch_size.max(1),
            gamma: ctx.weight_decay,
            time: self.time,
        };
        let need_stats = self.syms.iter().any(|(_, g)| g.as_diagonal().is_some());
        let need_grads = self.syms.iter().any(|(_, g)| g.as_diagonal().is_none());
        let stats = need_stats.then(|| {
            let mut ws = model.workspace(n.clamp(1, 256));
            grad_stats(model, theta, ctx.eval_x, ctx.eval_y, n, &mut ws)
        });
        let grads = need_grads.then(|| per_sample_grads(model, theta, ctx.eval_x, ctx.eval_y, n));
        for (_, g) in &self.syms {
            let (nb, flow) = match (&stats, &grads, g.as_diagonal()) {
                (Some(st), _, Some(_)) => (
                    NoiseBalance::from_stats(g, theta, st)?,
                    OrbitFlow::from_stats(g, theta, st, &params)?,
                ),
                (_, Some(gr), _) => (
                    NoiseBalance::from_grads(g, theta, gr)?,
                    OrbitFlow::from_grads(g, theta, gr, &params)?,
                ),
                _ => unreachable!("statistics computed for every generator kind present"),
            };
            let drift = match self.time {
                Time::Continuous => nb.continuous_drift(params.eta, params.batch, params.gamma),
                Time::Discrete => nb.expected_step_drift(params.eta, params.batch, params.gamma),
            };
            let sol = flow.solve();
            out.extend([nb.c, nb.tr_a_sigma, drift, sol.c_star, nb.c - sol.c_star]);
        }
        Ok(())
    }

    fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }
}
