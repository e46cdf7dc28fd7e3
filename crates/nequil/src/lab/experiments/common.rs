//! Shared machinery of the experiments: checks, outcomes, progress, parallel runs.

use super::figure::Figure;
use crate::train::Log;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// One claim compared between theory and measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// The claim in words.
    pub claim: String,
    /// The theory value (formatted; may be a bound such as "≥ 0").
    pub theory: String,
    /// The measured value (formatted).
    pub measured: String,
    /// The tolerance (formatted).
    pub tolerance: String,
    /// How the tolerance was derived.
    pub derivation: String,
    /// Whether the claim holds within the tolerance.
    pub pass: bool,
}

impl Check {
    /// `|measured − theory| ≤ tol`.
    pub fn close(claim: &str, theory: f64, measured: f64, tol: f64, derivation: &str) -> Check {
        Check {
            claim: claim.into(),
            theory: fmt(theory),
            measured: fmt(measured),
            tolerance: format!("± {}", fmt(tol)),
            derivation: derivation.into(),
            pass: (measured - theory).abs() <= tol,
        }
    }
    /// `measured ≥ bound` (or `>` with `strict`).
    pub fn at_least(claim: &str, bound: f64, measured: f64, derivation: &str) -> Check {
        Check {
            claim: claim.into(),
            theory: format!("≥ {}", fmt(bound)),
            measured: fmt(measured),
            tolerance: "—".into(),
            derivation: derivation.into(),
            pass: measured >= bound,
        }
    }
    /// `measured ≤ bound`.
    pub fn at_most(claim: &str, bound: f64, measured: f64, derivation: &str) -> Check {
        Check {
            claim: claim.into(),
            theory: format!("≤ {}", fmt(bound)),
            measured: fmt(measured),
            tolerance: "—".into(),
            derivation: derivation.into(),
            pass: measured <= bound,
        }
    }
}

/// Formats a number compactly for tables (4 significant digits).
pub fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".into()
        } else {
            s.to_string()
        }
    }
}

/// What an experiment returns.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The checks of the paper's claims.
    pub checks: Vec<Check>,
    /// The figure.
    pub figure: Figure,
    /// Settings used (including those the paper does not state), as key–value pairs.
    pub settings: Vec<(String, String)>,
    /// Named logs, written as `<name>.csv`.
    #[serde(skip)]
    pub logs: Vec<(String, Log)>,
    /// Remarks for the reader (e.g. a known finite-η bias).
    pub notes: Vec<String>,
}

/// Run context: scale, parallelism and progress counters (read by the command's progress bar).
#[derive(Debug)]
pub struct Ctx {
    /// Paper scale (`--full`) instead of the quick defaults.
    pub full: bool,
    /// Worker threads for independent runs.
    pub jobs: usize,
    /// A directory with MNIST IDX files, for the experiments that can use real data.
    pub mnist: Option<std::path::PathBuf>,
    done: AtomicU64,
    total: AtomicU64,
}

impl Ctx {
    /// A context.
    pub fn new(full: bool, jobs: usize) -> Self {
        Ctx {
            full,
            jobs: jobs.max(1),
            mnist: None,
            done: AtomicU64::new(0),
            total: AtomicU64::new(1),
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

/// Maps `f` over `items` on up to `jobs` threads, keeping the order. Each item is one independent
/// run; results are identical to a sequential map because every run carries its own seed.
pub fn par_map<T: Sync, R: Send>(jobs: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(&items[i]);
                out.lock().expect("no poisoned lock")[i] = Some(r);
            });
        }
    });
    out.into_inner()
        .expect("lock")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
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

/// Runs `steps` updates of `model` from `theta` and calls `record(step, θ)` at every step in
/// `at` (sorted; step 0 is before the first update). Progress is reported to `ctx` as work units of
/// `weight` per step. Returns the final θ, or the error that stopped the run.
#[allow(clippy::too_many_arguments)]
pub fn simulate(
    model: &crate::core::models::Model,
    source: &mut crate::core::data::Source,
    batching: crate::train::Batching,
    lr: &crate::train::LrSchedule,
    gamma: f64,
    seed: u64,
    mut theta: Vec<f64>,
    at: &[u64],
    ctx: &Ctx,
    weight: u64,
    mut record: impl FnMut(u64, &[f64]),
) -> crate::Result<Vec<f64>> {
    let mut st = crate::train::Stepper::new(model, source, batching, gamma, seed)?;
    let steps = at.last().copied().unwrap_or(0);
    let mut next = 0;
    let mut since = 0u64;
    for k in 0..=steps {
        if next < at.len() && at[next] == k {
            record(k, &theta);
            next += 1;
        }
        if k == steps {
            break;
        }
        st.step(model, source, &mut theta, lr.lr(k), k)?;
        since += 1;
        if since == 1000 {
            ctx.advance(1000 * weight);
            since = 0;
        }
    }
    ctx.advance(since * weight);
    Ok(theta)
}

/// A noiseless dataset whose empirical second moment is exactly `E[xxᵀ]` of `dist` and whose
/// targets are the teacher's: rows `x_k = √d (Σ_x^{1/2})_{·k}`, `y_k = V x_k`. Full-batch GD on
/// it follows the population gradient of the linear-teacher problem exactly (the label noise
/// only adds the constant `Tr Σ_ε` to the loss), at the cost of `d_x` samples per step.
pub fn population_dataset(dist: &crate::core::data::Gaussian) -> crate::Result<crate::core::data::Dataset> {
    use crate::core::data::Target;
    let d = dist.d_x();
    let root = crate::core::linalg::sym_fn(&dist.x_second_moment(), |l| l.max(0.0).sqrt())?;
    let v = match dist.target() {
        Target::Identity => crate::core::linalg::Dense::eye(d),
        Target::Linear(m) => m.clone(),
        Target::Tanh { .. } => return Err(crate::invalid!("population dataset: needs a linear teacher")),
    };
    let s = (d as f64).sqrt();
    let x = root.t().scale(s); // row k = √d · column k of Σ^{1/2} (symmetric)
    let y = x.mul(&v.t());
    crate::core::data::Dataset::new(d, d, dist.d_y(), x.data, y.data)
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

/// The data source of an SGD-versus-GD comparison: online samples from `g` for SGD, or for GD a
/// fixed dataset of `n` samples drawn once from `g` with `data_rng`.
pub fn sgd_or_gd_source(
    mut g: crate::core::data::Gaussian,
    gd: bool,
    n: usize,
    data_rng: &mut crate::core::rng::Rng,
) -> crate::core::data::Source {
    if gd {
        let data = g.dataset(data_rng, n);
        crate::core::data::Source::Fixed {
            data,
            replacement: true,
            dist: Some(g),
        }
    } else {
        crate::core::data::Source::Online(g)
    }
}
