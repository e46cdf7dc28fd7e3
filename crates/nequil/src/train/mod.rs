//! Training: learning-rate schedules, the allocation-free step (SGD, GD, momentum, Nesterov, Adam,
//! AdamW: [`optim`]), the trainer loop and its probes.
//!
//! An SGD update is `θ ← (1 − 2ηγ) θ − η ĝ`, where `ĝ` is the mean gradient of the per-sample loss
//! `‖f(x) − y‖²` over the batch (the gradient of `L + γ‖θ‖²` is `∇L + 2γθ`); it and the other rules
//! are in [`optim`] ([`sgd_update`], [`OptimState::update`]). SGD draws a batch of
//! `S` samples per step; GD uses the whole fixed dataset every step. Continuous time is
//! `t = Σ_k η_k` (`= η · steps` at a constant rate).

pub mod optim;
pub mod probe;
pub use optim::{sgd_update, OptimState, Optimizer};
pub use probe::{Probe, ProbeCtx, Schedule, StepCtx};

use crate::core::data::{Batcher, Source};
use crate::core::models::{Model, Workspace};
use crate::core::rng::Rng;
use crate::error::panic_message;
use crate::simd::{multiversion, Isa};
use crate::{invalid, Error, Result};

/// Learning-rate schedule η(step).
#[derive(Clone, Debug, PartialEq)]
pub enum LrSchedule {
    /// η constant.
    Constant(f64),
    /// η rises linearly, `η · min(1, (step + 1)/warmup_steps)`, then stays at `η`.
    LinearWarmup {
        /// Length of the ramp.
        warmup_steps: u64,
        /// Final learning rate.
        lr: f64,
    },
    /// `values[i]` for `boundaries[i−1] ≤ step < boundaries[i]`; `values.len() = boundaries.len() + 1`.
    /// The paper's warmup (Fig. 4) is `boundaries = [5000]`, `values = [0.001, 0.008]`.
    Piecewise {
        /// Steps at which the rate changes, increasing.
        boundaries: Vec<u64>,
        /// The rates, one more than the boundaries.
        values: Vec<f64>,
    },
}

impl LrSchedule {
    /// η at update number `step` (0-based).
    #[inline]
    pub fn lr(&self, step: u64) -> f64 {
        match self {
            LrSchedule::Constant(l) => *l,
            LrSchedule::LinearWarmup { warmup_steps, lr } => {
                lr * (((step + 1) as f64) / (*warmup_steps).max(1) as f64).min(1.0)
            }
            LrSchedule::Piecewise { boundaries, values } => {
                let i = boundaries.partition_point(|&b| b <= step);
                values[i]
            }
        }
    }

    /// Checks the schedule; errors name the spec keys.
    pub fn validate(&self) -> Result<()> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        match self {
            LrSchedule::Constant(l) | LrSchedule::LinearWarmup { lr: l, .. } if !ok(*l) => {
                Err(invalid!("train.lr: learning rate must be finite and > 0, got {l}"))
            }
            LrSchedule::LinearWarmup { warmup_steps: 0, .. } => Err(invalid!("train.warmup_steps: must be ≥ 1")),
            LrSchedule::Piecewise { boundaries, values } => {
                if values.len() != boundaries.len() + 1 {
                    return Err(invalid!(
                        "train.values: piecewise schedule needs one more value than boundaries ({} boundaries, {} values)",
                        boundaries.len(),
                        values.len()
                    ));
                }
                if boundaries.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(invalid!("train.boundaries: must be strictly increasing"));
                }
                if let Some(v) = values.iter().find(|v| !ok(**v)) {
                    return Err(invalid!("train.values: learning rates must be finite and > 0, got {v}"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Batch selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batching {
    /// SGD with batch size S.
    Sgd(usize),
    /// Full-batch GD on a fixed dataset.
    Full,
}

/// Everything that defines a training run apart from the model and the data.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Number of updates.
    pub steps: u64,
    /// SGD batch size or full batch.
    pub batching: Batching,
    /// Learning-rate schedule.
    pub lr: LrSchedule,
    /// Weight decay γ (the loss carries `γ‖θ‖²`).
    pub weight_decay: f64,
    /// The update rule ([`Optimizer::Sgd`] for SGD and GD).
    pub optimizer: Optimizer,
    /// When the core columns and probes are recorded.
    pub schedule: Schedule,
    /// Size of the fixed-seed population sample used as evaluation set for online data.
    pub eval_samples: usize,
    /// Seed of the data stream (batches) and of the evaluation sample.
    pub seed: u64,
}

/// A run's log: named columns, one row per recorded step (written as CSV by
/// `lab::files::log_csv`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Log {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of values, each as long as `columns`.
    pub rows: Vec<Vec<f64>>,
}

impl Log {
    /// The values of one column, if present.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let j = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(|r| r[j]).collect())
    }
    /// The last value of a column, if present.
    pub fn last(&self, name: &str) -> Option<f64> {
        let j = self.columns.iter().position(|c| c == name)?;
        self.rows.last().map(|r| r[j])
    }
}

/// The allocation-free inner loop: batch buffers, workspace, gradient and data stream.
pub struct Stepper {
    ws: Workspace,
    grad: Vec<f64>,
    xb: Vec<f64>,
    yb: Vec<f64>,
    batcher: Batcher,
    rng: Rng,
    batching: Batching,
    weight_decay: f64,
    opt: Optimizer,
    state: OptimState,
}

impl Stepper {
    /// Buffers for `model` trained on `source`; the data stream is seeded by `seed`.
    pub fn new(model: &Model, source: &Source, batching: Batching, weight_decay: f64, seed: u64) -> Result<Self> {
        let b = match (batching, source) {
            (Batching::Sgd(0), _) => return Err(invalid!("train.batch_size: must be ≥ 1")),
            (Batching::Sgd(s), Source::Fixed { data, .. }) if s > data.n => {
                return Err(invalid!(
                    "train.batch_size: {s} is larger than the fixed dataset ({} samples)",
                    data.n
                ))
            }
            (Batching::Sgd(s), _) => s,
            (Batching::Full, Source::Fixed { data, .. }) => data.n,
            (Batching::Full, Source::Online(_)) => {
                return Err(invalid!(
                    "train.optimizer: full-batch GD needs a fixed dataset (data.mode = \"fixed\")"
                ))
            }
        };
        if model.d_in() != source.d_x() || model.d_y() != source.d_y() {
            return Err(invalid!(
                "model.widths: the model maps {} → {}, the data are {} → {}",
                model.d_in(),
                model.d_y(),
                source.d_x(),
                source.d_y()
            ));
        }
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(invalid!(
                "train.weight_decay: must be finite and ≥ 0, got {weight_decay}"
            ));
        }
        let mut rng = Rng::derive(seed, "batches");
        let batcher = Batcher::new(source, &mut rng);
        let full = batching == Batching::Full;
        Ok(Stepper {
            ws: model.workspace(b),
            grad: vec![0.0; model.n_params()],
            xb: if full { Vec::new() } else { vec![0.0; b * model.d_in()] },
            yb: if full { Vec::new() } else { vec![0.0; b * model.d_y()] },
            batcher,
            rng,
            batching,
            weight_decay,
            opt: Optimizer::Sgd,
            state: OptimState::default(),
        })
    }

    /// The same stepper with another update rule; its state (velocity, moments) is allocated here,
    /// once, and starts at zero.
    pub fn with_optimizer(mut self, opt: Optimizer) -> Result<Self> {
        opt.validate()?;
        self.state = OptimState::new(&opt, self.grad.len());
        self.opt = opt;
        Ok(self)
    }

    /// The update rule.
    pub fn optimizer(&self) -> &Optimizer {
        &self.opt
    }

    /// The optimizer's state: momentum's velocity or Adam's moments, and the updates made.
    pub fn state(&self) -> &OptimState {
        &self.state
    }

    /// The gradient `ĝ` of the last step's batch (without the weight-decay term).
    pub fn last_grad(&self) -> &[f64] {
        &self.grad
    }

    /// One update with learning rate `lr` (`θ ← (1 − 2ηγ)θ − η ĝ` for SGD; the rule of
    /// [`Stepper::with_optimizer`] otherwise). Returns the batch loss (before the update). `step`
    /// is only used to name the step in a divergence error. Allocates nothing.
    pub fn step(&mut self, model: &Model, source: &mut Source, theta: &mut [f64], lr: f64, step: u64) -> Result<f64> {
        let loss = match (self.batching, &*source) {
            (Batching::Full, Source::Fixed { data, .. }) => {
                model.loss_grad(theta, &data.x, &data.y, data.n, &mut self.grad, &mut self.ws)
            }
            (Batching::Sgd(b), _) => {
                self.batcher.next(source, &mut self.rng, &mut self.xb, &mut self.yb, b);
                model.loss_grad(theta, &self.xb, &self.yb, b, &mut self.grad, &mut self.ws)
            }
            _ => unreachable!("checked in Stepper::new"),
        };
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step,
                what: format!("batch loss is {loss}"),
            });
        }
        if !self.state.update(&self.opt, theta, &self.grad, lr, self.weight_decay) {
            return Err(Error::Diverged {
                step: step + 1,
                what: "a parameter became non-finite".into(),
            });
        }
        Ok(loss)
    }
}

#[inline(always)]
fn all_finite_body(v: &[f64]) -> bool {
    let mut acc = [0.0f64; 16];
    let mut it = v.chunks_exact(16);
    for c in &mut it {
        for j in 0..16 {
            acc[j] += c[j] * 0.0;
        }
    }
    let rest: f64 = it.remainder().iter().map(|x| x * 0.0).sum();
    acc.iter().sum::<f64>() + rest == 0.0
}

multiversion! {
    /// [`all_finite`] on a given path.
    pub(crate) fn all_finite_with(v: &[f64]) -> bool = all_finite_body;
}

/// Whether every value is finite (`0·v` summed in sixteen independent lanes, so it vectorizes;
/// compiled for the process's [`crate::simd`] path).
#[inline]
pub fn all_finite(v: &[f64]) -> bool {
    all_finite_with(Isa::active(), v)
}

/// The outcome of a run: final θ, the log, and the error that stopped it, if any.
#[derive(Debug)]
pub struct RunOutcome {
    /// θ after the last completed update.
    pub theta: Vec<f64>,
    /// The log up to the last recorded step.
    pub log: Log,
    /// Updates completed.
    pub steps_done: u64,
    /// `Some` if the run stopped early: [`Error::Diverged`], or [`Error::ProbeFailed`] when an
    /// instrument failed (the log then ends at the last complete row).
    pub error: Option<Error>,
    /// Size of the evaluation set used by the `loss` column.
    pub eval_n: usize,
}

/// Runs a probe's method, turning a panic into an error (`panicked: …`), so that a probe with a
/// bug fails its run like any failing probe instead of taking the process down.
fn guarded(f: impl FnOnce() -> Result<()>) -> Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        // Named and placed by `probe_failed`.
        Err(Error::ProbeFailed {
            probe: String::new(),
            step: 0,
            error: format!("panicked: {}", panic_message(&*panic)),
        })
    })
}

/// [`Error::ProbeFailed`] for probe `p` failing with `e` after `step` updates.
fn probe_failed(p: &dyn Probe, step: u64, e: Error) -> Error {
    let error = match e {
        Error::Invalid(m) | Error::Io(m) | Error::ProbeFailed { error: m, .. } => m,
        e => e.to_string(),
    };
    Error::ProbeFailed {
        probe: p.name(),
        step,
        error,
    }
}

/// The evaluation set: the training set for fixed data, a fixed-seed population sample otherwise.
pub fn eval_set(source: &Source, n_online: usize, seed: u64) -> (Vec<f64>, Vec<f64>, usize) {
    match source {
        Source::Fixed { data, .. } => (data.x.clone(), data.y.clone(), data.n),
        Source::Online(g) => {
            let mut g = g.clone();
            let mut rng = Rng::derive(seed, "eval");
            let ds = g.dataset(&mut rng, n_online);
            (ds.x, ds.y, ds.n)
        }
    }
}

/// Trains `theta` in place and returns the log. Core columns, recorded at every scheduled step:
/// `step`, `t` (= Σ η), `lr`, `batch_loss` (mean batch loss of the updates since the previous row;
/// `nan` at step 0), `loss` (mean loss on the evaluation set, without the weight-decay term), and
/// `norm2.<block>` (squared norm of each parameter block). Probes add their columns after these.
/// `progress(done)` is called about every 1% of the steps.
pub fn train(
    model: &Model,
    source: &mut Source,
    theta: Vec<f64>,
    cfg: &TrainConfig,
    probes: &mut [Box<dyn Probe>],
    progress: &mut dyn FnMut(u64),
) -> Result<RunOutcome> {
    cfg.lr.validate()?;
    if theta.len() != model.n_params() {
        return Err(invalid!(
            "theta has {} entries, the model has {} parameters",
            theta.len(),
            model.n_params()
        ));
    }
    let mut theta = theta;
    let mut stepper =
        Stepper::new(model, source, cfg.batching, cfg.weight_decay, cfg.seed)?.with_optimizer(cfg.optimizer)?;
    let mut rec = Recorder::new(model, source, cfg, probes);
    let mut watch = Watchers::new(cfg, probes, &theta, stepper.state());
    let tick = (cfg.steps / 100).max(1);
    let mut t = 0.0;
    let mut step = 0u64;
    let mut error = None;
    loop {
        if rec.due(step) {
            // A failed instrument ends the run as a divergence does.
            if let Err(e) = rec.record(step, t, &theta, stepper.state(), source, probes) {
                error = Some(e);
                break;
            }
        }
        if step == cfg.steps {
            break;
        }
        let lr = cfg.lr.lr(step);
        watch.before(&theta, stepper.state());
        let loss = match stepper.step(model, source, &mut theta, lr, step) {
            Ok(l) => l,
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        rec.add_batch_loss(loss);
        if let Err(e) = watch.after(probes, step, lr, loss, &theta, stepper.last_grad()) {
            // The update was applied: it counts as done.
            error = Some(e);
            step += 1;
            break;
        }
        t += lr;
        step += 1;
        if step.is_multiple_of(tick) {
            progress(step);
        }
    }
    Ok(RunOutcome {
        theta,
        eval_n: rec.eval_n,
        log: rec.log,
        steps_done: step,
        error,
    })
}

/// What [`train`] records: the log's columns, the steps that get a row (the run's schedule and the
/// probes' own), the evaluation set, the batch losses since the last row, and the assembly of each
/// row (the core columns, then each probe's values, `nan` where a probe is not due).
struct Recorder<'a> {
    model: &'a Model,
    cfg: &'a TrainConfig,
    log: Log,
    /// The steps that get a row, sorted, without repeats.
    rows_at: Vec<u64>,
    /// The next entry of `rows_at`.
    next_row: usize,
    /// Each probe's own steps (`None`: every row).
    probe_steps: Vec<Option<Vec<u64>>>,
    eval_x: Vec<f64>,
    eval_y: Vec<f64>,
    eval_n: usize,
    eval_ws: Workspace,
    /// `S`, or the dataset size `N` for full-batch GD.
    batch_size: usize,
    /// Sum and count of the batch losses since the last row.
    loss_acc: f64,
    loss_cnt: u64,
}

impl<'a> Recorder<'a> {
    fn new(model: &'a Model, source: &Source, cfg: &'a TrainConfig, probes: &[Box<dyn Probe>]) -> Self {
        let (eval_x, eval_y, eval_n) = eval_set(source, cfg.eval_samples.max(1), cfg.seed);
        let eval_ws = model.workspace(eval_n.clamp(1, 1024));
        let batch_size = match cfg.batching {
            Batching::Sgd(s) => s,
            Batching::Full => eval_n,
        };
        let mut columns: Vec<String> = ["step", "t", "lr", "batch_loss", "loss"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for b in model.layout().blocks() {
            columns.push(format!("norm2.{}", b.name));
        }
        let mut probe_steps = Vec::new();
        for p in probes {
            columns.extend(p.columns());
            probe_steps.push(p.schedule().map(|s| s.steps(cfg.steps)));
        }
        let mut rows_at = cfg.schedule.steps(cfg.steps);
        for s in probe_steps.iter().flatten() {
            rows_at.extend(s);
        }
        rows_at.sort_unstable();
        rows_at.dedup();
        Recorder {
            model,
            cfg,
            log: Log {
                columns,
                rows: Vec::with_capacity(rows_at.len()),
            },
            rows_at,
            next_row: 0,
            probe_steps,
            eval_x,
            eval_y,
            eval_n,
            eval_ws,
            batch_size,
            loss_acc: 0.0,
            loss_cnt: 0,
        }
    }

    /// Whether the log gets a row after `step` updates.
    fn due(&self, step: u64) -> bool {
        self.rows_at.get(self.next_row) == Some(&step)
    }

    /// Counts the loss of one batch into the next row's `batch_loss`.
    fn add_batch_loss(&mut self, loss: f64) {
        self.loss_acc += loss;
        self.loss_cnt += 1;
    }

    /// Appends the row of `step` (θ after `step` updates, at time `t`; `state` is the optimizer's).
    /// When a probe fails, the incomplete row is dropped (the rows before it stay) and the error
    /// is [`Error::ProbeFailed`].
    fn record(
        &mut self,
        step: u64,
        t: f64,
        theta: &[f64],
        state: &OptimState,
        source: &Source,
        probes: &mut [Box<dyn Probe>],
    ) -> Result<()> {
        let (model, cfg) = (self.model, self.cfg);
        let mut row = Vec::with_capacity(self.log.columns.len());
        let lr = cfg.lr.lr(step);
        row.extend([step as f64, t, lr]);
        row.push(if self.loss_cnt > 0 {
            self.loss_acc / self.loss_cnt as f64
        } else {
            f64::NAN
        });
        row.push(model.loss_chunked(theta, &self.eval_x, &self.eval_y, self.eval_n, &mut self.eval_ws));
        row.extend(model.layout().block_norms2(theta));
        let ctx = ProbeCtx {
            step,
            t,
            lr,
            batch_size: self.batch_size,
            weight_decay: cfg.weight_decay,
            optimizer: &cfg.optimizer,
            velocity: if cfg.optimizer.momentum().is_some() {
                &state.buf
            } else {
                &[]
            },
            model,
            theta,
            eval_x: &self.eval_x,
            eval_y: &self.eval_y,
            eval_n: self.eval_n,
            source,
        };
        for (p, own) in probes.iter_mut().zip(&self.probe_steps) {
            let n = p.columns().len();
            if own.as_ref().is_none_or(|s| s.binary_search(&step).is_ok()) {
                let before = row.len();
                guarded(|| p.record(&ctx, &mut row))
                    .and_then(|()| {
                        if row.len() == before + n {
                            Ok(())
                        } else {
                            Err(Error::Numerical(format!(
                                "wrote {} values for {n} columns",
                                row.len() - before
                            )))
                        }
                    })
                    .map_err(|e| probe_failed(p.as_ref(), step, e))?;
            } else {
                row.extend(std::iter::repeat_n(f64::NAN, n));
            }
        }
        self.log.rows.push(row);
        self.loss_acc = 0.0;
        self.loss_cnt = 0;
        self.next_row += 1;
        Ok(())
    }
}

/// The probes of [`train`] that watch every update ([`Probe::observes_steps`]), with θ and
/// momentum's velocity as they were before the update. When no probe watches, nothing is copied
/// or called per step.
struct Watchers<'a> {
    cfg: &'a TrainConfig,
    /// Indices of the watching probes.
    idx: Vec<usize>,
    theta_before: Vec<f64>,
    /// Empty unless a probe watches and the rule is momentum.
    velocity_before: Vec<f64>,
}

impl<'a> Watchers<'a> {
    fn new(cfg: &'a TrainConfig, probes: &[Box<dyn Probe>], theta: &[f64], state: &OptimState) -> Self {
        let idx: Vec<usize> = (0..probes.len()).filter(|&i| probes[i].observes_steps()).collect();
        let theta_before = if idx.is_empty() { Vec::new() } else { theta.to_vec() };
        let velocity_before = if idx.is_empty() || cfg.optimizer.momentum().is_none() {
            Vec::new()
        } else {
            state.buf.clone()
        };
        Watchers {
            cfg,
            idx,
            theta_before,
            velocity_before,
        }
    }

    /// Copies θ and the velocity before an update (when a probe watches).
    fn before(&mut self, theta: &[f64], state: &OptimState) {
        if self.idx.is_empty() {
            return;
        }
        self.theta_before.copy_from_slice(theta);
        if !self.velocity_before.is_empty() {
            self.velocity_before.copy_from_slice(&state.buf);
        }
    }

    /// Shows update `step` (rate `lr`, batch loss `batch_loss`, θ after it, the batch gradient) to
    /// each watching probe, in order; the first failure is [`Error::ProbeFailed`] at `step + 1`.
    fn after(
        &self,
        probes: &mut [Box<dyn Probe>],
        step: u64,
        lr: f64,
        batch_loss: f64,
        theta_after: &[f64],
        grad: &[f64],
    ) -> Result<()> {
        if self.idx.is_empty() {
            return Ok(());
        }
        let sc = StepCtx {
            step,
            lr,
            weight_decay: self.cfg.weight_decay,
            optimizer: &self.cfg.optimizer,
            velocity_before: &self.velocity_before,
            batch_loss,
            theta_before: &self.theta_before,
            theta_after,
            grad,
        };
        for &i in &self.idx {
            guarded(|| probes[i].on_step(&sc)).map_err(|e| probe_failed(probes[i].as_ref(), step + 1, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_finite_on_every_path() {
        let mut r = Rng::new(5);
        for n in [0usize, 1, 7, 16, 33, 100] {
            let mut v = vec![0.0; n];
            r.fill_normal(&mut v);
            for isa in Isa::all() {
                assert!(all_finite_with(isa, &v), "{} n={n}", isa.path());
                for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    for at in [0, n / 2, n.saturating_sub(1)] {
                        if n == 0 {
                            continue;
                        }
                        let mut t = v.clone();
                        t[at] = bad;
                        assert!(!all_finite_with(isa, &t), "{} {bad} at {at}", isa.path());
                    }
                }
            }
        }
        assert!(all_finite(&[0.5, 1.5]) && !all_finite(&[f64::NAN]));
    }

    #[test]
    fn schedules() {
        let p = LrSchedule::Piecewise {
            boundaries: vec![5000],
            values: vec![0.001, 0.008],
        };
        assert_eq!(p.lr(0), 0.001);
        assert_eq!(p.lr(4999), 0.001);
        assert_eq!(p.lr(5000), 0.008);
        let w = LrSchedule::LinearWarmup {
            warmup_steps: 10,
            lr: 1.0,
        };
        assert_eq!(w.lr(0), 0.1);
        assert_eq!(w.lr(9), 1.0);
        assert_eq!(w.lr(100), 1.0);
        assert!(LrSchedule::Piecewise {
            boundaries: vec![5],
            values: vec![1.0]
        }
        .validate()
        .is_err());
        assert!(LrSchedule::Constant(-1.0).validate().is_err());
    }

    /// Watches every update and checks it against the update rule.
    struct Watch {
        steps: u64,
    }

    impl Probe for Watch {
        fn columns(&self) -> Vec<String> {
            vec!["watched".into()]
        }
        fn record(&mut self, _: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
            out.push(self.steps as f64);
            Ok(())
        }
        fn observes_steps(&self) -> bool {
            true
        }
        fn on_step(&mut self, s: &StepCtx<'_>) -> Result<()> {
            assert_eq!(s.step, self.steps);
            let decay = 1.0 - 2.0 * s.lr * s.weight_decay;
            for ((b, a), g) in s.theta_before.iter().zip(s.theta_after).zip(s.grad) {
                assert!((a - (decay * b - s.lr * g)).abs() <= 1e-12 * (1.0 + b.abs()));
            }
            self.steps += 1;
            Ok(())
        }
        fn summary(&self) -> Vec<(String, Vec<f64>)> {
            vec![("steps".into(), vec![self.steps as f64])]
        }
    }

    /// Fails (or panics) when recording at step `at`.
    struct FailsAt {
        at: u64,
        panic: bool,
    }

    impl Probe for FailsAt {
        fn name(&self) -> String {
            "fails-at".into()
        }
        fn columns(&self) -> Vec<String> {
            vec!["x".into(), "y".into()]
        }
        fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
            out.push(1.0);
            if ctx.step == self.at {
                assert!(!self.panic, "probe bug at step {}", ctx.step);
                return Err(Error::Numerical("overflow".into()));
            }
            out.push(2.0);
            Ok(())
        }
    }

    #[test]
    fn a_failing_probe_stops_the_run_at_its_row() {
        use crate::core::data::{Cov, Gaussian, Target};
        use crate::core::models::Init;
        let model = Model::linear(&[3, 4, 2]).unwrap();
        let g = Gaussian::new(
            3,
            2,
            Cov::Scalar(1.0),
            Target::random_linear(3, 2, &mut Rng::new(1)),
            None,
        )
        .unwrap();
        let cfg = TrainConfig {
            steps: 50,
            batching: Batching::Sgd(2),
            lr: LrSchedule::Constant(0.01),
            weight_decay: 0.0,
            schedule: Schedule::Every(10),
            eval_samples: 8,
            seed: 4,
            optimizer: Optimizer::Sgd,
        };
        for panic in [false, true] {
            let mut source = Source::Online(g.clone());
            let theta = model.init(&Init::Kaiming, &mut Rng::new(2)).unwrap();
            let mut probes: Vec<Box<dyn Probe>> = vec![Box::new(FailsAt { at: 30, panic })];
            let out = train(&model, &mut source, theta, &cfg, &mut probes, &mut |_| {}).unwrap();
            assert_eq!(
                out.log.column("step").unwrap(),
                vec![0.0, 10.0, 20.0],
                "rows before the failure"
            );
            assert_eq!(out.steps_done, 30);
            match out.error {
                Some(Error::ProbeFailed { probe, step, error }) => {
                    assert_eq!((probe.as_str(), step), ("fails-at", 30));
                    let want = if panic {
                        "panicked: probe bug at step 30"
                    } else {
                        "numerical failure: overflow"
                    };
                    assert_eq!(error, want);
                }
                e => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn observers_see_every_update() {
        use crate::core::data::{Cov, Gaussian, Target};
        use crate::core::models::Init;
        let model = Model::linear(&[3, 4, 2]).unwrap();
        let g = Gaussian::new(
            3,
            2,
            Cov::Scalar(1.0),
            Target::random_linear(3, 2, &mut Rng::new(1)),
            None,
        )
        .unwrap();
        let mut source = Source::Online(g);
        let theta = model.init(&Init::Kaiming, &mut Rng::new(2)).unwrap();
        let cfg = TrainConfig {
            steps: 57,
            batching: Batching::Sgd(3),
            lr: LrSchedule::Constant(0.05),
            weight_decay: 0.01,
            optimizer: Optimizer::Sgd,
            schedule: Schedule::Steps(vec![10, 20, 500]),
            eval_samples: 16,
            seed: 4,
        };
        let mut probes: Vec<Box<dyn Probe>> = vec![Box::new(Watch { steps: 0 })];
        let out = train(&model, &mut source, theta, &cfg, &mut probes, &mut |_| {}).unwrap();
        assert_eq!(out.log.column("step").unwrap(), vec![0.0, 10.0, 20.0, 57.0]);
        assert_eq!(out.log.column("watched").unwrap(), vec![0.0, 10.0, 20.0, 57.0]);
        assert_eq!(probes[0].summary()[0].1, vec![57.0]);
    }
}
