//! Experiments as plans run by the engine.
//!
//! An experiment is four functions:
//!
//! 1. `plan(ctx) -> Plan`: named runs, each a [`Spec`] built in code (its seed derives the
//!    initialization, the data and the batches) plus the probes the experiment needs beyond the
//!    spec's own instruments;
//! 2. [`simulate`](super::simulate)`(plan, ctx) -> Results`: every run through
//!    [`run_spec_with`](nequil::lab::runner::run_spec_with), the training path of `nequil run`
//!    and of sweeps, in parallel;
//! 3. `checks(&Results) -> Vec<Check>`: the paper's claims against the runs;
//! 4. `figure(&Results) -> Figure` and `details(&Results) -> Details` (settings, notes, logs).
//!
//! Results are looked up by name: a run by its name in the plan, a column of its log by the
//! column's name, an aggregate of a probe by the name the probe gave it. A lookup that fails is
//! an error naming what is missing, never a default.

use super::common::Ctx;
use nequil::core::data::Source;
use nequil::core::models::Model;
use nequil::lab::spec::{
    DataMode, DataSource, DataSpec, InitName, LayerSpec, ModelKind, ModelSpec, OptimizerName, ProbeSpec, ScheduleName,
    Spec, TargetKind, TrainSpec,
};
use nequil::train::{Log, Probe};
use nequil::{Error, Result};
use std::collections::BTreeMap;

/// One named run of a plan.
pub struct PlannedRun {
    /// The run's name, unique in its plan (`sgd/phi=0.4`).
    pub name: String,
    /// What to run.
    pub spec: Spec,
    /// An initial θ in place of the spec's initialization draw
    /// ([`Overrides::theta0`](nequil::lab::runner::Overrides::theta0)).
    pub theta0: Option<Vec<f64>>,
    /// Data in place of the spec's `[data]`
    /// ([`Overrides::source`](nequil::lab::runner::Overrides::source)).
    pub source: Option<Source>,
    /// Probes beyond the spec's instruments; their columns come after the spec's, and their
    /// [`Probe::summary`] values land in [`RunResult::summary`].
    pub probes: Vec<Box<dyn Probe>>,
    /// Work units per step, for the progress bar (e.g. the samples a step touches).
    pub cost: u64,
}

impl PlannedRun {
    /// A run of `spec`, with nothing overridden and no extra probes.
    pub fn new(name: impl Into<String>, spec: Spec) -> Self {
        PlannedRun {
            name: name.into(),
            spec,
            theta0: None,
            source: None,
            probes: vec![],
            cost: 1,
        }
    }
    /// Starts from `theta0` instead of the spec's initialization.
    pub fn theta0(mut self, theta0: Vec<f64>) -> Self {
        self.theta0 = Some(theta0);
        self
    }
    /// Trains on `source` instead of the spec's data.
    pub fn source(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }
    /// Adds a probe.
    pub fn probe(mut self, p: impl Probe + 'static) -> Self {
        self.probes.push(Box::new(p));
        self
    }
    /// Work units per step, for progress.
    pub fn cost(mut self, c: u64) -> Self {
        self.cost = c.max(1);
        self
    }
}

/// The runs of an experiment, by name, in the order given.
#[derive(Default)]
pub struct Plan {
    runs: Vec<PlannedRun>,
}

impl Plan {
    /// An empty plan.
    pub fn new() -> Self {
        Plan::default()
    }
    /// Adds a run; a name given twice is an error.
    pub fn add(&mut self, run: PlannedRun) -> Result<()> {
        if self.runs.iter().any(|r| r.name == run.name) {
            return Err(Error::Invalid(format!("plan: run `{}` given twice", run.name)));
        }
        self.runs.push(run);
        Ok(())
    }
    /// The runs, in the order given.
    pub fn runs(&self) -> &[PlannedRun] {
        &self.runs
    }
    /// The runs, moved out (for [`simulate`](super::simulate)).
    pub(crate) fn into_runs(self) -> Vec<PlannedRun> {
        self.runs
    }
    /// The names of the runs, in the order given.
    pub fn names(&self) -> Vec<&str> {
        self.runs.iter().map(|r| r.name.as_str()).collect()
    }
    /// Steps × cost over all runs: the total work [`simulate`](super::simulate) reports to the
    /// progress bar.
    pub fn work(&self) -> u64 {
        self.runs.iter().map(|r| r.spec.train.steps * r.cost).sum()
    }
    /// A rough estimate of the wall time of [`simulate`](super::simulate) in seconds on `jobs`
    /// cores: per run, steps × (a fixed 1.5 µs per step, what a tiny model's step costs, plus the
    /// 6·S·P floating-point operations of a forward and backward pass over S samples of a
    /// P-parameter model at 2·min(S, 8) GFLOP/s: matrix–vector work at S = 1 runs at about 2
    /// GFLOP/s on one core, matrix–matrix work from S ≈ 8 on at about 16, both measured on a 2-core
    /// AVX2 machine), the runs spread evenly over the cores. Probes, evaluations and sequential
    /// models whose shapes do not build are not counted, so it is a lower estimate for experiments
    /// whose instruments dominate.
    pub fn estimated_seconds(&self, jobs: usize) -> f64 {
        let per_run: Vec<f64> = self
            .runs
            .iter()
            .map(|r| {
                let p = r.spec.model.build_model().map_or(0, |m| m.n_params()) as f64;
                let s = r.spec.train.batch_size as f64;
                r.spec.train.steps as f64 * (1.5e-6 + 6.0 * s * p / (2e9 * s.min(8.0)))
            })
            .collect();
        let total: f64 = per_run.iter().sum();
        let longest = per_run.iter().cloned().fold(0.0, f64::max);
        // Runs are independent: the wall time is at least the longest run and at least the total
        // over the cores the runs can use.
        (total / jobs.clamp(1, self.runs.len().max(1)) as f64).max(longest)
    }
}

/// What one run produced.
#[derive(Debug)]
pub struct RunResult {
    /// The run's name.
    pub name: String,
    /// Its spec.
    pub spec: Spec,
    /// The model the spec built.
    pub model: Model,
    /// The log: the core columns (`step`, `t`, `lr`, `batch_loss`, `loss`, `norm2.<block>`),
    /// then the spec's instruments, then the plan's probes.
    pub log: Log,
    /// θ after the last completed update.
    pub theta: Vec<f64>,
    /// Updates completed.
    pub steps_done: u64,
    /// The error that stopped the run early (e.g. divergence), if any.
    pub error: Option<Error>,
    /// The probes' end-of-run values ([`Probe::summary`]), by name.
    pub summary: BTreeMap<String, Vec<f64>>,
}

impl RunResult {
    fn missing(&self, what: &str, name: &str) -> Error {
        Error::Numerical(format!("experiment run `{}` has no {what} `{name}`", self.name))
    }
    /// A column of the log.
    pub fn column(&self, name: &str) -> Result<Vec<f64>> {
        self.log.column(name).ok_or_else(|| self.missing("log column", name))
    }
    /// The log's columns `cols`, in that order, as a log of their own (an experiment's CSV), each
    /// named `rename(column)`.
    pub fn select(&self, cols: &[String], rename: impl Fn(&str) -> String) -> Result<Log> {
        let data: Vec<Vec<f64>> = cols.iter().map(|c| self.column(c)).collect::<Result<_>>()?;
        let n = data.first().map_or(0, |c| c.len());
        Ok(Log {
            columns: cols.iter().map(|c| rename(c)).collect(),
            rows: (0..n).map(|j| data.iter().map(|c| c[j]).collect()).collect(),
        })
    }
    /// The last value of a column.
    pub fn last(&self, name: &str) -> Result<f64> {
        self.log.last(name).ok_or_else(|| self.missing("log column", name))
    }
    /// A probe's end-of-run values.
    pub fn values(&self, name: &str) -> Result<&[f64]> {
        self.summary
            .get(name)
            .map(|v| v.as_slice())
            .ok_or_else(|| self.missing("probe summary", name))
    }
    /// A probe's end-of-run scalar.
    pub fn value(&self, name: &str) -> Result<f64> {
        match self.values(name)? {
            [v] => Ok(*v),
            v => Err(Error::Numerical(format!(
                "experiment run `{}`: probe summary `{name}` has {} values, expected one",
                self.name,
                v.len()
            ))),
        }
    }
    /// The step at which the run diverged, if it did.
    pub fn diverged_at(&self) -> Option<u64> {
        match &self.error {
            Some(Error::Diverged { step, .. }) => Some(*step),
            _ => None,
        }
    }
}

/// The runs of a plan after [`simulate`](super::simulate), by name.
#[derive(Debug)]
pub struct Results {
    /// Whether the plan was made for `--full` (or `--paper`, which implies it).
    pub full: bool,
    /// Whether the plan was made for `--paper`.
    pub paper: bool,
    runs: BTreeMap<String, RunResult>,
    resumed: usize,
}

impl Results {
    /// How many runs [`simulate`](super::simulate) loaded from their records instead of running
    /// them (0 without [`Ctx::runs_dir`]).
    pub fn resumed(&self) -> usize {
        self.resumed
    }
    /// How many runs the plan had.
    pub fn len(&self) -> usize {
        self.runs.len()
    }
    /// Whether the plan had no runs.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
    /// A completed run: an error if there is no run of that name, or if it stopped early.
    pub fn run(&self, name: &str) -> Result<&RunResult> {
        let r = self.outcome(name)?;
        match &r.error {
            None => Ok(r),
            Some(e) => Err(Error::Numerical(format!("experiment run `{name}` stopped: {e}"))),
        }
    }
    /// A run, whether it completed or stopped early (e.g. one expected to diverge).
    pub fn outcome(&self, name: &str) -> Result<&RunResult> {
        self.runs
            .get(name)
            .ok_or_else(|| Error::Numerical(format!("experiment: no run named `{name}`")))
    }
    /// Whether the plan had a run of that name.
    pub fn has(&self, name: &str) -> bool {
        self.runs.contains_key(name)
    }
    /// Every run, by name.
    pub fn runs(&self) -> impl Iterator<Item = &RunResult> {
        self.runs.values()
    }
    /// The results of a plan made with `ctx`: `runs` by name, `resumed` of them loaded from
    /// their records ([`simulate`](super::simulate)).
    pub(crate) fn new(ctx: &Ctx, runs: BTreeMap<String, RunResult>, resumed: usize) -> Results {
        Results {
            full: ctx.full,
            paper: ctx.paper,
            runs,
            resumed,
        }
    }
}

/// Settings, notes and logs of an experiment, for its report.
#[derive(Clone, Debug, Default)]
pub struct Details {
    /// Settings used (including those the paper does not state), as key–value pairs.
    pub settings: Vec<(String, String)>,
    /// Remarks for the reader (e.g. a known finite-η bias).
    pub notes: Vec<String>,
    /// Named logs, written as `<name>.csv`.
    pub logs: Vec<(String, Log)>,
}

/// A run spec with every table at its default, as the experiments start from it: seed `seed`,
/// a `kind` model of `widths` with Kaiming init and no biases, online Gaussian data `x ~ N(0, I)`
/// with the identity target and no label noise, SGD with S = 1 and constant η = 0.01 for `steps`
/// steps, no weight decay, the log recorded at 200 log-spaced steps on 2048 evaluation samples.
pub fn base_spec(seed: u64, kind: ModelKind, widths: &[usize], steps: u64) -> Spec {
    Spec {
        seed,
        model: ModelSpec {
            kind,
            widths: widths.to_vec(),
            input: None,
            layers: None,
            activation: None,
            leaky_slope: None,
            bias: false,
            init: InitName::Kaiming,
            init_std: None,
            init_from: None,
            loss: None,
        },
        data: DataSpec {
            source: DataSource::Gaussian,
            mode: DataMode::Online,
            n: None,
            replacement: true,
            x_cov: None,
            target: TargetKind::Identity,
            teacher: None,
            teacher_hidden: None,
            noise_cov: None,
            x_path: None,
            y_path: None,
            npz_path: None,
            x_key: None,
            y_key: None,
        },
        train: TrainSpec {
            optimizer: OptimizerName::Sgd,
            momentum: None,
            dampening: None,
            betas: None,
            eps: None,
            batch_size: 1,
            steps,
            lr: Some(0.01),
            schedule: ScheduleName::Constant,
            warmup_steps: None,
            boundaries: None,
            values: None,
            weight_decay: 0.0,
            threads: 1,
        },
        probes: ProbeSpec::default(),
    }
}

/// [`base_spec`] for a `kind = "sequential"` stack: per-sample input shape `input`, the `layers`
/// in order, Kaiming init; everything else as [`base_spec`] (online Gaussian inputs, reshaped to
/// `input`, with the identity target; set `data.target` to fit the output).
pub fn sequential_spec(seed: u64, input: &[usize], layers: Vec<LayerSpec>, steps: u64) -> Spec {
    let mut s = base_spec(seed, ModelKind::Sequential, &[], steps);
    s.model.input = Some(input.to_vec());
    s.model.layers = Some(layers);
    s
}

/// Makes `spec` full-batch GD on `n` samples drawn once from its distribution.
pub fn full_batch(spec: &mut Spec, n: usize) {
    spec.data.mode = DataMode::Fixed;
    spec.data.n = Some(n);
    spec.train.optimizer = OptimizerName::Gd;
}

/// Makes `spec` full-batch GD on the population gradient ([`DataMode::Population`]).
pub fn population_gd(spec: &mut Spec) {
    spec.data.mode = DataMode::Population;
    spec.data.n = None;
    spec.train.optimizer = OptimizerName::Gd;
}
