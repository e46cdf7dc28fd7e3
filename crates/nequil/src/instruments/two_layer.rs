//! A probe that tracks the distance of a two-layer linear net to its predicted matrix noise
//! equilibrium (Thm 5.2 with the constants of book `theory/constants.md#two-layer-linear-net`, closed form of `theory/closed-forms.md#two-layer-recipe`) during training
//! (see [`crate::train::Probe`]).
//!
//! At each scheduled step the probe takes the current product `V = UW`, computes the
//! orbit-invariant moments `Γ̃_W`, `Γ̃_U` (exact Gaussian moments, or sample averages over the
//! evaluation set), and solves [`two_layer_equilibrium`] with the run's current learning rate η,
//! batch size S and weight decay γ. The prediction moves with `V`; the distance tells how far the
//! factorization `(U, W)` is from the equilibrium of its own orbit.

use crate::core::data::{Source, Target};
use crate::core::equilibrium::two_layer::{two_layer_equilibrium, TwoLayerEquilibrium, TwoLayerGammas};
use crate::core::footprint::{Footprint, F64};
use crate::core::models::{DenseChain, Model};
use crate::train::{Probe, ProbeCtx, Schedule};
use crate::{invalid, Error, Result};

/// Where the moments `Γ'_W = E[‖r‖²xxᵀ]`, `Γ'_U = E[‖x‖²rrᵀ]`, `M = E[rxᵀ]` and `Σ_x` come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MomentSource {
    /// [`MomentSource::Population`] for online Gaussian data with an identity or linear teacher,
    /// [`MomentSource::Eval`] otherwise (fixed data: the training set, which is what SGD samples).
    #[default]
    Auto,
    /// The probe context's evaluation set (the training set for fixed data, a fixed-seed
    /// population sample for online data).
    Eval,
    /// The exact moments of the source's Gaussian distribution (Isserlis); needs a known
    /// distribution with an identity or linear teacher.
    Population,
}

/// Whether `source` has a Gaussian distribution with a teacher whose two-layer moments are exact.
pub fn has_exact_two_layer_moments(source: &Source) -> bool {
    source
        .distribution()
        .is_some_and(|g| matches!(g.target(), Target::Identity | Target::Linear(_)))
}

/// The model as a two-layer linear net without biases, or an error naming what it is.
pub fn as_two_layer_linear(model: &Model) -> Result<DenseChain> {
    model
        .loss_kind()
        .mse_only("the two-layer linear net's closed forms (Theorem 5.2, the paper's sharpness)")?;
    match model.as_linear_chain() {
        Some(m) if m.depth() == 2 => Ok(m),
        _ => Err(invalid!(
            "needs a two-layer linear net U W (kind = \"linear\" with widths = [d_x, h, d_y]), got {}",
            model.describe()
        )),
    }
}

/// Records, for a two-layer linear net `f(x) = UWx` (`W = layers.0.weight`, `U = layers.1.weight`),
/// five columns:
///
/// * `pred_norm2_U`, `pred_norm2_W`: the predicted `‖U*‖_F²`, `‖W*‖_F²` at the equilibrium of the
///   current orbit (F-invariant);
/// * `alignment_residual`: `‖WΓ̃_WWᵀ − UᵀΓ̃_UU‖_F / ‖WΓ̃_WWᵀ‖_F` now (0 at the equilibrium);
/// * `dist_to_equilibrium`: the relative distance of `(‖U‖², ‖W‖²)` to the prediction,
///   `√((‖U‖² − ‖U*‖²)² + (‖W‖² − ‖W*‖²)²) / √(‖U*‖⁴ + ‖W*‖⁴)`;
/// * `pred_paper_sharpness`: the paper-convention sharpness `S(θ*)` at the predicted point (half
///   the Hessian trace; compare with [`crate::instruments::PaperSharpnessProbe`]).
///
/// η, S and γ are the context's learning rate, batch size and weight decay (`Γ̃ = Γ' − … + (γS/η)I`).
/// When the closed form does not exist at a step (`Γ̃_W` or `Γ̃_U` not positive definite: no
/// gradient noise in some direction and no weight decay, e.g. noiseless labels at the minimum)
/// the columns are `nan` for that step and training goes on.
#[derive(Clone, Debug, Default)]
pub struct TwoLayerEquilibriumProbe {
    moments: MomentSource,
    schedule: Option<Schedule>,
}

impl TwoLayerEquilibriumProbe {
    /// A probe with [`MomentSource::Auto`] on the run's schedule.
    pub fn new() -> Self {
        Self::default()
    }
    /// Where the moments come from.
    pub fn with_moments(mut self, moments: MomentSource) -> Self {
        self.moments = moments;
        self
    }
    /// Records only at the steps of `schedule` (instead of every row of the run's log).
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// The equilibrium the probe predicts in context `ctx` (the same computation as a record).
    pub fn predict(&self, ctx: &ProbeCtx<'_>) -> Result<TwoLayerEquilibrium> {
        let mlp = as_two_layer_linear(ctx.model).map_err(|e| invalid!("equilibrium probe: {}", msg(&e)))?;
        let population = match self.moments {
            MomentSource::Auto => matches!(ctx.source, Source::Online(_)) && has_exact_two_layer_moments(ctx.source),
            MomentSource::Eval => false,
            MomentSource::Population => true,
        };
        let (u, w) = crate::core::equilibrium::two_layer::two_layer_factors(&mlp, ctx.theta)?;
        let v = u.mul(&w);
        let g = if population {
            let dist = ctx.source.distribution().ok_or_else(|| {
                invalid!("equilibrium probe: exact moments asked for, but the data distribution is unknown")
            })?;
            TwoLayerGammas::from_distribution(&v, dist)?
        } else {
            TwoLayerGammas::empirical(&v, ctx.eval_x, ctx.eval_y, ctx.eval_n)?
        };
        two_layer_equilibrium(&mlp, ctx.theta, &g, ctx.lr, ctx.batch_size.max(1), ctx.weight_decay)
    }
}

fn msg(e: &Error) -> String {
    match e {
        Error::Invalid(m) | Error::Io(m) | Error::Numerical(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The relative distance of `(‖U‖², ‖W‖²)` to `(‖U*‖², ‖W*‖²)` (the `dist_to_equilibrium` column).
pub fn norm_distance(eq: &TwoLayerEquilibrium) -> f64 {
    let du = eq.u_norm2 - eq.u_star_norm2;
    let dw = eq.w_norm2 - eq.w_star_norm2;
    (du * du + dw * dw).sqrt() / (eq.u_star_norm2.powi(2) + eq.w_star_norm2.powi(2)).sqrt()
}

impl Probe for TwoLayerEquilibriumProbe {
    fn name(&self) -> String {
        "probes.equilibrium".into()
    }
    fn columns(&self) -> Vec<String> {
        [
            "pred_norm2_U",
            "pred_norm2_W",
            "alignment_residual",
            "dist_to_equilibrium",
            "pred_paper_sharpness",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        match self.predict(ctx) {
            Ok(eq) => out.extend([
                eq.u_star_norm2,
                eq.w_star_norm2,
                eq.residual,
                norm_distance(&eq),
                eq.sharpness_star,
            ]),
            Err(Error::Numerical(_)) => out.extend([f64::NAN; 5]),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    fn footprint(&self, model: &Model, eval_n: usize) -> Footprint {
        two_layer_footprint(model, eval_n)
    }
}

/// What a [`TwoLayerEquilibriumProbe`] allocates on a two-layer linear net `U W` (`d_y × h`,
/// `h × d_x`, `P = h (d_x + d_y)`) with `n` evaluation samples, in `f64` values (× 8 bytes): the
/// factors, the solution `U*`, `W*` and θ* (`6P`); the `d_x × d_x` and `d_y × d_y` moments and
/// their powers (`12 (d_x² + d_y²)`, with `V` and its products, `d_x d_y` each); the thin SVDs'
/// `h × k` factors (`3 h k`, `k = min(d_x, d_y)`); and the residuals of the evaluation set
/// (`n (d_x + 2 d_y)`). Nothing for a model that is not a two-layer linear net (the probe refuses
/// it).
pub fn two_layer_footprint(model: &Model, eval_n: usize) -> Footprint {
    let Ok(c) = as_two_layer_linear(model) else {
        return Footprint::new();
    };
    let w = c.widths();
    let (dx, h, dy) = (w[0] as u128, w[1] as u128, w[2] as u128);
    let (p, n, k) = (model.n_params() as u128, eval_n as u128, dx.min(dy));
    let mut f = Footprint::new();
    f.add("the factors U, W, their solution and θ* (6 × P)", 6 * p, F64);
    f.add(
        format!("the moments over d_x = {dx} and d_y = {dy} and their powers"),
        12 * (dx * dx + dy * dy) + 4 * dx * dy,
        F64,
    );
    f.add(
        format!("the SVDs' factors over the hidden layer of width {h}"),
        3 * h * k,
        F64,
    );
    f.add(
        format!("the residuals of {n} evaluation samples"),
        n * (dx + 2 * dy),
        F64,
    );
    f
}
