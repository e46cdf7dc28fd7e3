//! Shared machinery of the experiments: outcomes, progress, statistics.

use crate::files::Figure;
use nequil::train::Log;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::files::{fmt, Check};

/// What an experiment returns.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The checks of the paper's claims.
    pub checks: Vec<Check>,
    /// The figure.
    pub figure: Figure,
    /// Settings used (including those the paper does not state), as key–value pairs.
    pub settings: Vec<(String, String)>,
    /// Named logs, written as `<name>.csv`.
    pub logs: Vec<(String, Log)>,
    /// Remarks for the reader (e.g. a known finite-η bias).
    pub notes: Vec<String>,
    /// Runs loaded from their records instead of run ([`Ctx::runs_dir`]).
    pub resumed: usize,
    /// Runs in the experiment's plan.
    pub runs: usize,
}

/// Run context: scale, parallelism and progress counters (read by the command's progress bar).
#[derive(Debug)]
pub struct Ctx {
    /// The larger sizes (`--full`, and `--paper`, which implies it) instead of the quick defaults.
    pub full: bool,
    /// The paper's own settings where it states them (`--paper`): experiments without settings of
    /// their own for this tier run at their `--full` sizes.
    pub paper: bool,
    /// Worker threads for independent runs.
    pub jobs: usize,
    /// A directory with MNIST IDX files, for the experiments that can use real data.
    pub mnist: Option<std::path::PathBuf>,
    /// Where finished runs are recorded and looked up, so that an interrupted experiment resumes
    /// at run granularity ([`record`](super::record)); `None` (the default) runs every run and
    /// writes nothing.
    pub runs_dir: Option<std::path::PathBuf>,
    done: AtomicU64,
    total: AtomicU64,
}

impl Ctx {
    /// A context: the quick defaults, or `--full` with `full`; see [`Ctx::paper`].
    pub fn new(full: bool, jobs: usize) -> Self {
        Ctx {
            full,
            paper: false,
            jobs: jobs.max(1),
            mnist: None,
            runs_dir: None,
            done: AtomicU64::new(0),
            total: AtomicU64::new(1),
        }
    }
    /// A context for the paper's own settings (`--paper`; implies `full`).
    pub fn paper(jobs: usize) -> Self {
        Ctx {
            paper: true,
            ..Ctx::new(true, jobs)
        }
    }
    /// Declares the total amount of work (e.g. SGD steps over all runs).
    pub fn set_total(&self, n: u64) {
        self.total.store(n.max(1), Ordering::Relaxed);
    }
    /// Adds completed work.
    pub fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    /// `(done, total)`.
    pub fn progress(&self) -> (u64, u64) {
        (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed))
    }
}

/// Mean and standard error of the mean.
pub fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, (var / n).sqrt())
}

/// Cosine similarity of two equally long vectors (flattened matrices).
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let ab: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let aa: f64 = a.iter().map(|x| x * x).sum();
    let bb: f64 = b.iter().map(|x| x * x).sum();
    ab / (aa * bb).sqrt()
}

/// A log from column names and rows.
pub fn log_of(columns: &[&str], rows: Vec<Vec<f64>>) -> Log {
    Log {
        columns: columns.iter().map(|s| s.to_string()).collect(),
        rows,
    }
}

/// Batch means of the last `frac` of a series (10 batches) and their standard error: a
/// time-average with an error bar that respects autocorrelation.
pub fn tail_mean(v: &[f64], frac: f64) -> (f64, f64) {
    let n = v.len();
    let start = n - ((n as f64 * frac) as usize).max(10).min(n);
    let tail = &v[start..];
    let b = (tail.len() / 10).max(1);
    let means: Vec<f64> = tail.chunks(b).map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
    mean_se(&means)
}

/// The time-average of the last `frac` of a series and its standard error from exactly
/// `batches` equal batch means (the oldest `len mod batches` values of the tail are dropped): with
/// batches longer than the correlation time, the mean over its standard error is t-distributed
/// with `batches − 1` degrees of freedom around the true mean.
pub fn tail_batch_mean(v: &[f64], frac: f64, batches: usize) -> (f64, f64) {
    let n = v.len();
    let len = ((n as f64 * frac) as usize).clamp(batches.min(n), n);
    let b = (len / batches.max(1)).max(1);
    let tail = &v[n - b * (len / b)..];
    let means: Vec<f64> = tail.chunks(b).map(|c| c.iter().sum::<f64>() / c.len() as f64).collect();
    mean_se(&means)
}

/// Records chosen entries of θ as columns `theta[i]` (e.g. the two coordinates of a 2-D model).
pub struct ThetaProbe {
    indices: Vec<usize>,
}

impl ThetaProbe {
    /// A probe of the entries `indices` of the flat θ.
    pub fn new(indices: Vec<usize>) -> Self {
        ThetaProbe { indices }
    }
}

impl nequil::train::Probe for ThetaProbe {
    fn columns(&self) -> Vec<String> {
        self.indices.iter().map(|i| format!("theta[{i}]")).collect()
    }
    fn record(&mut self, ctx: &nequil::train::ProbeCtx<'_>, out: &mut Vec<f64>) -> nequil::Result<()> {
        for &i in &self.indices {
            let v = *ctx
                .theta
                .get(i)
                .ok_or_else(|| nequil::invalid!("theta probe: index {i} beyond the {} parameters", ctx.theta.len()))?;
            out.push(v);
        }
        Ok(())
    }
}

/// The diagonal generator with ones on `range` of a θ of length `p` (the squared norm of that
/// part of θ as a charge).
pub fn ones_on(p: usize, range: std::ops::Range<usize>) -> nequil::core::symmetry::generator::Generator {
    let mut a = vec![0.0; p];
    a[range].fill(1.0);
    nequil::core::symmetry::generator::Generator::Diagonal(a)
}
