//! Curvature probes for training runs: Hessian trace, top eigenvalue and stability margin, and
//! the paper's sharpness.
//!
//! All of them measure the Hessian of the mean loss `L(θ) = (1/n) Σ ‖f(x_i) − y_i‖²` (no ½) on the
//! samples chosen by [`CurvatureData`], without weight decay unless
//! `with_weight_decay(true)` is set (then `H + 2γI`: the trace gains `2γP`, every eigenvalue `2γ`).
//! They are expensive: give them a sparse [`Schedule`].

use crate::core::curvature::trace;
use crate::core::curvature::HessianOp;
use crate::core::curvature::{data_moments, PopulationHessian};
use crate::core::curvature::{lanczos, LanczosOptions, Which};
use crate::core::curvature::{linear_hessian_trace, paper_sharpness};
use crate::core::curvature::{EmpiricalHessian, HvpOptions, HvpWorkspace};
use crate::core::data::{Source, Target};
use crate::core::footprint::{Footprint, BOOKKEEPING, F64};
use crate::core::models::{Loss, Model};
use crate::core::rng::Rng;
use crate::train::{Probe, ProbeCtx, Schedule};
use crate::{invalid, Result};

/// Which Hessian a curvature probe measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CurvatureData {
    /// The exact population Hessian ([`PopulationHessian`]) when the data are online Gaussian with
    /// an identity or linear teacher and the model is a deep linear network; otherwise the
    /// evaluation set, as [`CurvatureData::Eval`].
    #[default]
    Auto,
    /// The probe context's evaluation set: the full training set for fixed data, a fixed-seed
    /// population sample for online data (optionally only its first `max_samples` samples).
    Eval,
    /// The exact population Hessian of the source's distribution; an error at record time if
    /// there is none or the model is not a deep linear network.
    Population,
}

/// Settings and buffers shared by the Hessian probes.
#[derive(Clone, Debug, Default)]
struct Common {
    data: CurvatureData,
    max_samples: Option<usize>,
    hvp: HvpOptions,
    schedule: Option<Schedule>,
    weight_decay: bool,
    ws: Option<HvpWorkspace>,
}

/// A deep linear chain scored by the mean-squared error: its Hessian and trace have closed forms.
fn is_linear(model: &Model) -> bool {
    model.loss_kind() == Loss::Mse && model.as_linear_chain().is_some()
}

fn linear_teacher_online(ctx: &ProbeCtx<'_>) -> bool {
    let linear_teacher = matches!(
        ctx.source,
        Source::Online(g) if matches!(g.target(), Target::Identity | Target::Linear(_))
    );
    is_linear(ctx.model) && linear_teacher
}

impl Common {
    /// Runs `f` on the Hessian operator chosen by `self.data`.
    fn with_op<R>(&mut self, ctx: &ProbeCtx<'_>, f: impl FnOnce(&mut dyn HessianOp) -> Result<R>) -> Result<R> {
        let population = match self.data {
            CurvatureData::Auto => linear_teacher_online(ctx),
            CurvatureData::Eval => false,
            CurvatureData::Population => true,
        };
        if population {
            let dist = ctx.source.distribution().ok_or_else(|| {
                invalid!("curvature probe: population Hessian asked for, but the data distribution is unknown")
            })?;
            let mut op = PopulationHessian::from_gaussian(ctx.model, ctx.theta, dist)?;
            return f(&mut op);
        }
        let n = self.eval_n(ctx);
        if self.ws.as_ref().is_none_or(|w| !w.matches(ctx.model)) {
            self.ws = Some(HvpWorkspace::new(ctx.model, self.hvp.clone()));
        }
        let ws = self.ws.as_mut().expect("workspace");
        let mut op = EmpiricalHessian::new(ctx.model, ctx.theta, ctx.eval_x, ctx.eval_y, n, ws)?;
        f(&mut op)
    }

    /// Number of evaluation samples used.
    fn eval_n(&self, ctx: &ProbeCtx<'_>) -> usize {
        self.max_samples.map_or(ctx.eval_n, |m| m.min(ctx.eval_n))
    }

    /// For a deep linear network the trace has a closed form in `Σ_x` alone
    /// ([`linear_hessian_trace`]): the population moment on the population route, the evaluation
    /// set's `XᵀX/n` otherwise. `None` for other models.
    fn linear_trace(&self, ctx: &ProbeCtx<'_>) -> Result<Option<f64>> {
        if !is_linear(ctx.model) {
            return Ok(None);
        }
        let population = match self.data {
            CurvatureData::Auto => matches!(ctx.source, Source::Online(_)),
            CurvatureData::Eval => false,
            CurvatureData::Population => true,
        };
        let sx = if population {
            ctx.source
                .distribution()
                .ok_or_else(|| {
                    invalid!("curvature probe: population Hessian asked for, but the data distribution is unknown")
                })?
                .x_second_moment()
        } else {
            data_moments(
                ctx.eval_x,
                ctx.eval_y,
                self.eval_n(ctx),
                ctx.model.d_in(),
                ctx.model.d_out(),
            )?
            .0
        };
        linear_hessian_trace(ctx.model, ctx.theta, &sx).map(Some)
    }

    /// What the Hessian operator allocates (see [`curvature_footprint`]), plus `vectors` vectors
    /// of `P` values the method holds.
    fn footprint(&self, model: &Model, eval_n: usize, method: &str, vectors: u128) -> Footprint {
        let n = self.max_samples.map_or(eval_n, |m| m.min(eval_n));
        let mut f = curvature_footprint(model, self.data, &self.hvp, n);
        f.add(method, vectors.saturating_mul(model.n_params() as u128), F64);
        f
    }

    fn shift(&self, ctx: &ProbeCtx<'_>) -> f64 {
        if self.weight_decay {
            2.0 * ctx.weight_decay
        } else {
            0.0
        }
    }
}

/// What a curvature probe's Hessian operator allocates on `model` over `n` evaluation samples:
/// the empirical operator's buffers ([`HvpWorkspace::footprint`]) or, for a deep linear network
/// whose data may take the population route ([`CurvatureData::Auto`], [`CurvatureData::Population`]),
/// the population operator's, whichever is larger. The population operator
/// ([`PopulationHessian`]) holds, for widths `w_0 … w_D`, its products and their directional
/// derivatives over the input and output sides, `6 Σ_l w_l (w_0 + w_D)` values, the moments
/// `Σ_x` and `E[yxᵀ]` (`3 w_0² + 2 w_D w_0`) and a copy of θ (`P`), in `f64` values (× 8 bytes).
pub fn curvature_footprint(model: &Model, data: CurvatureData, hvp: &HvpOptions, n: usize) -> Footprint {
    let eval = HvpWorkspace::footprint(model, hvp, n);
    match model.as_linear_chain().filter(|_| model.loss_kind() == Loss::Mse) {
        Some(c) if data != CurvatureData::Eval => {
            let w = c.widths();
            let (d0, dd) = (w[0] as u128, w[w.len() - 1] as u128);
            let sum: u128 = w.iter().map(|&v| v as u128).sum();
            let values = 6 * sum * (d0 + dd) + 3 * d0 * d0 + 2 * dd * d0 + model.n_params() as u128;
            let pop = Footprint::of("the population Hessian's products and moments", values, F64);
            if pop.total() > eval.total() {
                pop
            } else {
                eval
            }
        }
        _ => eval,
    }
}

/// What the closed-form trace of a deep linear network ([`linear_hessian_trace`]) allocates, with
/// `Σ_x` and the evaluation set's moments ([`data_moments`]): for widths `w_0 … w_D`, the moments
/// (`w_0² + w_0 w_D + w_D²`) and two products at a time in each recursion
/// (`2 max_l w_l · max(w_0, w_D)`), in `f64` values (× 8 bytes), and the chain's description
/// ([`BOOKKEEPING`] / 4: one string and three short lists).
pub fn linear_trace_footprint(widths: &[usize]) -> Footprint {
    let (d0, dd) = (widths[0] as u128, widths[widths.len() - 1] as u128);
    let wide = widths.iter().copied().max().unwrap_or(0) as u128;
    let mut f = Footprint::of(
        "the closed-form trace's moments and products",
        d0 * d0 + d0 * dd + dd * dd + 2 * wide * d0.max(dd),
        F64,
    );
    f.add("the chain's description", BOOKKEEPING / 4, 1);
    f
}

macro_rules! common_builders {
    () => {
        /// Records only at the steps of `schedule` (instead of every row of the run's log).
        pub fn with_schedule(mut self, schedule: Schedule) -> Self {
            self.common.schedule = Some(schedule);
            self
        }
        /// Which Hessian to measure (default [`CurvatureData::Auto`]).
        pub fn with_data(mut self, data: CurvatureData) -> Self {
            self.common.data = data;
            self
        }
        /// Uses at most the first `n` samples of the evaluation set (default: all of them).
        pub fn with_max_samples(mut self, n: usize) -> Self {
            self.common.max_samples = Some(n);
            self
        }
        /// Tuning of the Hessian-vector products (chunk size, threads, forward cache).
        pub fn with_hvp(mut self, opts: HvpOptions) -> Self {
            self.common.hvp = opts;
            self.common.ws = None;
            self
        }
        /// Whether to include weight decay, i.e. measure `H + 2γI` with the run's γ (default false).
        pub fn with_weight_decay(mut self, include: bool) -> Self {
            self.common.weight_decay = include;
            self
        }
    };
}

/// Probe of the Hessian trace: columns `hess_trace` and `hess_trace_se` (its standard error; 0
/// when exact). For deep linear networks the exact closed form [`linear_hessian_trace`] (population
/// `Σ_x` for online data under [`CurvatureData::Auto`], whatever the teacher, since the trace
/// depends on `Σ_x` only); otherwise exact (P products) when `P ≤ exact_max` (default 512), else
/// Hutchinson with `probes` Rademacher probes (default 32) from a generator seeded by `seed` and
/// the step.
#[derive(Clone, Debug)]
pub struct HessianTraceProbe {
    common: Common,
    exact_max: usize,
    probes: usize,
    seed: u64,
}

impl Default for HessianTraceProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl HessianTraceProbe {
    /// A trace probe with the defaults: exact up to P = 512, else 32 Hutchinson probes, seed 0,
    /// [`CurvatureData::Auto`], the run's schedule, no weight decay.
    pub fn new() -> Self {
        HessianTraceProbe {
            common: Common::default(),
            exact_max: 512,
            probes: 32,
            seed: 0,
        }
    }
    common_builders!();
    /// The trace is exact (P products) when `P ≤ p`.
    pub fn with_exact_max(mut self, p: usize) -> Self {
        self.exact_max = p;
        self
    }
    /// Number of Hutchinson probes (at least 2) when the trace is not exact.
    pub fn with_probes(mut self, m: usize) -> Self {
        self.probes = m;
        self
    }
    /// Seed of the Hutchinson probes (combined with the step, so every record is reproducible).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl Probe for HessianTraceProbe {
    fn name(&self) -> String {
        "probes.hessian.trace".into()
    }
    fn columns(&self) -> Vec<String> {
        vec!["hess_trace".into(), "hess_trace_se".into()]
    }
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        let shift = self.common.shift(ctx) * ctx.model.n_params() as f64;
        if let Some(t) = self.common.linear_trace(ctx)? {
            out.push(t + shift);
            out.push(0.0);
            return Ok(());
        }
        let (exact_max, probes) = (self.exact_max, self.probes);
        let mut rng = Rng::derive(self.seed, &format!("hutchinson-{}", ctx.step));
        let est = self.common.with_op(ctx, |op| trace(op, exact_max, probes, &mut rng))?;
        out.push(est.estimate + shift);
        out.push(est.std_error);
        Ok(())
    }
    fn schedule(&self) -> Option<&Schedule> {
        self.common.schedule.as_ref()
    }
    /// The closed form's moments for a deep linear network ([`linear_trace_footprint`]); else the
    /// Hessian operator and two vectors of `P` values (exact: `e_j` and `He_j`; Hutchinson: `z`
    /// and `Hz`).
    fn footprint(&self, model: &Model, eval_n: usize) -> Footprint {
        match model.as_linear_chain().filter(|_| model.loss_kind() == Loss::Mse) {
            Some(c) => linear_trace_footprint(c.widths()),
            None => self
                .common
                .footprint(model, eval_n, "probe vectors and their products (2 × P)", 2),
        }
    }
}

/// Probe of the top Hessian eigenvalue by [`lanczos`]: columns `lambda_max`, `eta_lambda_max`
/// (the stability margin `η·λ_max` with the current learning rate; GD on a quadratic is stable
/// for `η·λ_max < 2`), `lambda_max_residual` (`‖Hv − λv‖`), `lanczos_iterations` and
/// `lanczos_converged` (1 or 0).
#[derive(Clone, Debug)]
pub struct TopEigenProbe {
    common: Common,
    lanczos: LanczosOptions,
}

impl Default for TopEigenProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl TopEigenProbe {
    /// A top-eigenvalue probe with the default [`LanczosOptions`] (k = 1, largest, at most 80
    /// steps, tol 1e-6, seed 0), [`CurvatureData::Auto`], the run's schedule, no weight decay.
    pub fn new() -> Self {
        TopEigenProbe {
            common: Common::default(),
            lanczos: LanczosOptions::default(),
        }
    }
    common_builders!();
    /// Lanczos settings (`k` and `which` are forced to 1 and [`Which::Largest`]).
    pub fn with_lanczos(mut self, opts: LanczosOptions) -> Self {
        self.lanczos = LanczosOptions {
            k: 1,
            which: Which::Largest,
            ..opts
        };
        self
    }
}

impl Probe for TopEigenProbe {
    fn name(&self) -> String {
        "probes.hessian.top_eigen".into()
    }
    fn columns(&self) -> Vec<String> {
        [
            "lambda_max",
            "eta_lambda_max",
            "lambda_max_residual",
            "lanczos_iterations",
            "lanczos_converged",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        let opts = self.lanczos.clone();
        let r = self.common.with_op(ctx, |op| lanczos(op, &opts))?;
        let lam = r.values[0] + self.common.shift(ctx);
        out.push(lam);
        out.push(ctx.lr * lam);
        out.push(r.residuals[0]);
        out.push(r.iterations as f64);
        out.push(if r.converged { 1.0 } else { 0.0 });
        Ok(())
    }
    fn schedule(&self) -> Option<&Schedule> {
        self.common.schedule.as_ref()
    }
    /// The Hessian operator, Lanczos' Krylov basis (`m · P` values for `m = min(max(lanczos_iter,
    /// 1), P)` steps, reserved at the start), its work vector and Ritz vector (`2P`) and the
    /// tridiagonal matrix's eigenproblem (`4 m²`), in `f64` values (× 8 bytes).
    fn footprint(&self, model: &Model, eval_n: usize) -> Footprint {
        let p = model.n_params();
        let m = self.lanczos.max_iter.clamp(self.lanczos.k.max(1), p.max(1)) as u128;
        let mut f = self.common.footprint(
            model,
            eval_n,
            "probes.hessian.lanczos_iter: the Krylov basis and two vectors",
            m + 2,
        );
        f.add("the tridiagonal eigenproblem", 4 * m * m, F64);
        f
    }
}

/// Probe of the paper's sharpness `S(θ) = d_y Tr[W Σ_x Wᵀ] + ‖U‖_F² Tr Σ_x` of a two-layer
/// linear network (column `paper_sharpness`; paper convention, **half** the true Hessian trace,
/// see [`paper_sharpness`]). `Σ_x` is the exact second moment for online data (and for
/// [`CurvatureData::Population`]), else the evaluation set's `XᵀX/n`.
#[derive(Clone, Debug, Default)]
pub struct PaperSharpnessProbe {
    data: CurvatureData,
    schedule: Option<Schedule>,
}

impl PaperSharpnessProbe {
    /// A sharpness probe with [`CurvatureData::Auto`] and the run's schedule.
    pub fn new() -> Self {
        Self::default()
    }
    /// Records only at the steps of `schedule`.
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = Some(schedule);
        self
    }
    /// Where `Σ_x` comes from ([`CurvatureData::Eval`] forces the evaluation set's moment).
    pub fn with_data(mut self, data: CurvatureData) -> Self {
        self.data = data;
        self
    }
}

impl Probe for PaperSharpnessProbe {
    fn name(&self) -> String {
        "probes.sharpness".into()
    }
    fn columns(&self) -> Vec<String> {
        vec!["paper_sharpness".into()]
    }
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        let population = match self.data {
            CurvatureData::Auto => matches!(ctx.source, Source::Online(_)),
            CurvatureData::Eval => false,
            CurvatureData::Population => true,
        };
        let sx = if population {
            ctx.source
                .distribution()
                .ok_or_else(|| invalid!("paper_sharpness: the data distribution is unknown"))?
                .x_second_moment()
        } else {
            data_moments(ctx.eval_x, ctx.eval_y, ctx.eval_n, ctx.model.d_in(), ctx.model.d_out())?.0
        };
        out.push(paper_sharpness(ctx.model, ctx.theta, &sx)?);
        Ok(())
    }
    fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }
    /// `Σ_x` (`d_x²`) with the evaluation set's cross moment (`d_y d_x`), and the product `W Σ_x`
    /// (`h d_x` for the hidden width h), in `f64` values (× 8 bytes), and the chain's
    /// description ([`BOOKKEEPING`] / 4: one string and three short lists).
    fn footprint(&self, model: &Model, _eval_n: usize) -> Footprint {
        let (dx, dy) = (model.d_in() as u128, model.d_out() as u128);
        let h = model
            .as_linear_chain()
            .map_or(0, |c| c.widths().get(1).copied().unwrap_or(0)) as u128;
        let mut f = Footprint::of("Σ_x, the cross moment and W Σ_x", dx * dx + dx * dy + h * dx, F64);
        f.add("the chain's description", BOOKKEEPING / 4, 1);
        f
    }
}
