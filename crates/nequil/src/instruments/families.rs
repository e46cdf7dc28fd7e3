//! A probe that tracks the noise balance of whole double-rotation families during training (see
//! [`crate::core::equilibrium::matrix_family`]).

use crate::core::equilibrium::{family_balance, Time};
use crate::core::footprint::{Footprint, F64};
use crate::core::models::Model;
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

    fn footprint(&self, model: &Model, _eval_n: usize) -> Footprint {
        family_footprint(model, &self.families)
    }
}

/// What a [`FamilyProbe`] over `families` of `model` allocates, in `f64` values (× 8 bytes): the
/// families' index vectors, kept for the run (`Σ_f v_f · d_f` for `v_f` vectors of dimension
/// `d_f`), and, for the largest family (they are solved one at a time), the solve of
/// [`crate::core::equilibrium::family_balance`]: about `16 d²` values in `d × d` matrices (the
/// moments `Q`, `K`, `Γ±`, their means, `X`, `Y`, the drift, the eigen-decompositions, `B` and its
/// inverse), the per-sample sums `v · d`, a per-sample gradient and the moved θ (`2P`) and a model
/// workspace for one sample.
pub fn family_footprint(model: &Model, families: &[MatrixFamily]) -> Footprint {
    let p = model.n_params() as u128;
    let vecs = |f: &MatrixFamily| (f.plus.len() + f.minus.len()) as u128 * f.dim as u128;
    let mut out = Footprint::of(
        "the families' index vectors",
        families.iter().map(vecs).sum::<u128>(),
        F64,
    );
    if let Some(big) = families.iter().max_by_key(|f| (f.dim as u128).pow(2) * 16 + vecs(f)) {
        let d = big.dim as u128;
        out.add(
            format!("{}: 16 matrices of {d} × {d} and the per-sample sums", big.name),
            16 * d * d + vecs(big),
            F64,
        );
        out.add("a per-sample gradient and the moved θ (2 × P)", 2 * p, F64);
        out.extend(model.footprint(1));
    }
    out
}
