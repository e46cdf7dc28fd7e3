//! A probe that tracks the noise balance of whole double-rotation families during training (see
//! [`crate::core::equilibrium::matrix_family`]).

use crate::core::equilibrium::{family_balance, Time};
use crate::core::symmetry::MatrixFamily;
use crate::train::{Probe, ProbeCtx, Schedule};
use crate::Result;

/// Records, for each family, four columns computed on the run's evaluation set:
///
/// * `{name}/charge`: `‖Q − K‖_F`, the size of the matrix charge (its member `M` has charge
///   `Tr[M(Q − K)]`);
/// * `{name}/drift`: `‖D‖_F`, the matrix drift `D = −4γ(Q − K) + (η/S)(Γ₊ − Γ₋)` per unit time
///   (or the expected change per step with [`FamilyProbe::discrete`]);
/// * `{name}/residual`: `‖D‖_F` relative to the size of its terms (0 at the equilibrium; the
///   alignment residual);
/// * `{name}/distance`: `‖B − I‖_F` for the member `B` that moves θ to the equilibrium of its orbit
///   (0 there, ∞ when the orbit has none).
///
/// η, S and γ are the context's learning rate, batch size and weight decay. Under momentum the
/// law is SGD's at the effective step `ηρ` (discrete time: the stationary per-step law; book
/// `theory/momentum.md`); under Adam only `charge` is recorded and the rest is `nan`. Each record runs one
/// per-sample backward pass per evaluation sample and family.
pub struct FamilyProbe {
    families: Vec<MatrixFamily>,
    time: Time,
    schedule: Option<Schedule>,
}

impl FamilyProbe {
    /// A probe for the given families.
    pub fn new(families: Vec<MatrixFamily>) -> Self {
        FamilyProbe {
            families,
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

impl Probe for FamilyProbe {
    fn name(&self) -> String {
        "probes.charges.families".into()
    }
    fn columns(&self) -> Vec<String> {
        self.families
            .iter()
            .flat_map(|f| ["charge", "drift", "residual", "distance"].map(|c| format!("{}/{c}", f.name)))
            .collect()
    }

    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        let (eta, batch, gamma) = (ctx.lr, ctx.batch_size.max(1), ctx.weight_decay);
        let Some(params) = ctx.optimizer.flow_params(eta, batch, gamma, self.time) else {
            // No law is claimed under Adam: the charge is measured, the rest is nan.
            for f in &self.families {
                let m = crate::core::equilibrium::family_moments(
                    ctx.model, f, ctx.theta, ctx.eval_x, ctx.eval_y, ctx.eval_n,
                )?;
                out.extend([m.q.add_scaled(-1.0, &m.k).frob2().sqrt(), f64::NAN, f64::NAN, f64::NAN]);
            }
            return Ok(());
        };
        for f in &self.families {
            let b = family_balance(ctx.model, f, ctx.theta, ctx.eval_x, ctx.eval_y, ctx.eval_n, &params)?;
            let charge = b.moments.q.add_scaled(-1.0, &b.moments.k).frob2().sqrt();
            out.extend([charge, b.drift.frob2().sqrt(), b.residual, b.distance]);
        }
        Ok(())
    }

    fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }
}
