//! Executing a spec and writing a run directory (`nequil run`).
//!
//! A run directory holds `spec.toml` (resolved, defaults filled in), `metrics.csv` (the log),
//! `final.safetensors` (final θ with PyTorch names and shapes, `f64`) and `summary.json`
//! ([`RunSummary`]). Every
//! file is written atomically (temporary name, then rename). Outputs are a deterministic function
//! of the spec: no wall-clock times are written, so the same spec and seed give bit-identical files.

use crate::core::data::Source;
use crate::core::models::Model;
use crate::core::parallel::with_threads;
use crate::lab::files::{log_csv, to_json, Divergence, ParamBlock, ProbeFailure, RunError, RunState, RunSummary};
use crate::lab::io::{weights_bytes, write_atomic_all};
use crate::lab::spec::Spec;
use crate::train::{train, Probe, ProbeCtx, RunOutcome};
use crate::{invalid, io_err, Error, Result};
use serde_json::json;
use std::path::Path;

/// Runs a spec: builds it (all validation happens here, before anything is written), then trains
/// with the spec's instruments ([`Spec::probes`], the `[probes.*]` tables) followed by `extra`
/// probes (their columns come last; the caller keeps them, with their state, afterwards).
/// `base` resolves relative data paths. `progress(done, total)` is called about every 1%.
/// Training uses `train.threads` threads for its large products
/// ([`crate::core::parallel::with_threads`]; bit-identical to one thread), or the pool of an
/// enclosing `with_threads` call when there is one.
pub fn run_spec(
    spec: &Spec,
    base: &Path,
    extra: &mut [Box<dyn Probe>],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Model, RunOutcome)> {
    run_spec_with(spec, base, Overrides::default(), extra, progress)
}

/// What a caller may put in place of what a spec builds, for runs whose start or data no spec
/// table describes: an experiment that starts from a chosen point of the orbit, or trains on
/// MNIST read from IDX files. Everything else (model, schedule, seed of the batches, probes)
/// still comes from the spec.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Initial θ in place of the spec's `model.init` draw: one finite value per parameter, in
    /// layout order.
    pub theta0: Option<Vec<f64>>,
    /// The data in place of the spec's `[data]` (its dimensions must match the model; the
    /// spec's instruments are checked against it).
    pub source: Option<Source>,
}

/// [`run_spec`] with [`Overrides`]: the one training path of `nequil run`, sweeps and the
/// experiments.
pub fn run_spec_with(
    spec: &Spec,
    base: &Path,
    over: Overrides,
    extra: &mut [Box<dyn Probe>],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Model, RunOutcome)> {
    let mut built = spec.build(base)?;
    if let Some(theta0) = over.theta0 {
        if theta0.len() != built.model.n_params() {
            return Err(invalid!(
                "initial θ: {} values given, the model {} has {} parameters",
                theta0.len(),
                built.model.describe(),
                built.model.n_params()
            ));
        }
        if let Some(i) = theta0.iter().position(|v| !v.is_finite()) {
            return Err(invalid!("initial θ: value {i} is not finite ({})", theta0[i]));
        }
        built.theta0 = theta0;
    }
    if let Some(source) = over.source {
        crate::lab::spec::instruments::validate(&spec.probes, &built.model, &source, spec.seed)?;
        built.source = source;
    }
    let mut probes = spec.probes(&built)?;
    let n_own = probes.len();
    // Borrow the caller's probes for the run (train takes one slice), then hand them back.
    for p in extra.iter_mut() {
        probes.push(std::mem::replace(p, Box::new(Lent)));
    }
    let mut source = built.source;
    let total = built.config.steps;
    // Inside a caller's pool (`--threads`, a sweep's spare cores) that pool is used instead.
    let out = with_threads(spec.train.threads, || {
        train(
            &built.model,
            &mut source,
            built.theta0,
            &built.config,
            &mut probes,
            &mut |d| progress(d, total),
        )
    });
    for (slot, p) in extra.iter_mut().zip(probes.drain(n_own..)) {
        *slot = p;
    }
    Ok((built.model, out?))
}

/// Stands in for a caller's probe while [`run_spec`] holds it; never recorded.
struct Lent;

impl Probe for Lent {
    fn columns(&self) -> Vec<String> {
        vec![]
    }
    fn record(&mut self, _: &ProbeCtx<'_>, _: &mut Vec<f64>) -> Result<()> {
        Ok(())
    }
}

/// The `summary.json` of a run ([`RunSummary`]).
pub fn run_summary(model: &Model, out: &RunOutcome) -> RunSummary {
    let final_row = match out.log.rows.last() {
        Some(r) => out.log.columns.iter().cloned().zip(r.iter().copied()).collect(),
        None => vec![],
    };
    let (status, error) = match &out.error {
        None => (RunState::Ok, None),
        Some(Error::Diverged { step, what }) => (
            RunState::Diverged,
            Some(RunError::Diverged(Divergence {
                step: *step,
                what: what.clone(),
            })),
        ),
        Some(Error::ProbeFailed { probe, step, error }) => (
            RunState::Failed,
            Some(RunError::Probe(ProbeFailure {
                probe: probe.clone(),
                step: *step,
                error: error.clone(),
            })),
        ),
        Some(e) => (RunState::Failed, Some(RunError::Failed(e.to_string()))),
    };
    RunSummary {
        status,
        error,
        steps_done: out.steps_done,
        model: model.describe(),
        n_params: model.n_params(),
        parameters: model
            .layout()
            .blocks()
            .iter()
            .map(|b| ParamBlock {
                name: b.name.clone(),
                shape: b.shape.clone(),
            })
            .collect(),
        eval_samples: out.eval_n,
        final_row,
        conventions: RunSummary::CONVENTIONS.into(),
    }
}

/// Writes a run directory for a finished (or stopped) run: `spec.toml`, `metrics.csv`,
/// `final.safetensors` and `summary.json`, all or nothing ([`write_atomic_all`]): when one cannot
/// be written (a full disk, a file size limit, a read-only directory) none is, the files of an
/// earlier run in `dir` stay as they were, and a directory created here is removed again. When the
/// run stopped early (divergence, a failed instrument) the log up to that step and a summary
/// saying why are written, but no final weights.
pub fn write_run_dir(dir: &Path, spec: &Spec, model: &Model, out: &RunOutcome) -> Result<()> {
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    let result = (|| {
        let mut files: Vec<(&str, Vec<u8>)> = vec![
            ("spec.toml", spec.resolved_toml().into_bytes()),
            ("metrics.csv", log_csv(&out.log).into_bytes()),
        ];
        if out.error.is_none() {
            files.push(("final.safetensors", weights_bytes(model, &out.theta)?));
        }
        files.push(("summary.json", to_json(&run_summary(model, out))?.into_bytes()));
        let paths: Vec<std::path::PathBuf> = files.iter().map(|(f, _)| dir.join(f)).collect();
        let pairs: Vec<(&Path, &[u8])> = paths
            .iter()
            .map(|p| p.as_path())
            .zip(files.iter().map(|(_, b)| b.as_slice()))
            .collect();
        write_atomic_all(&pairs)
    })();
    match result {
        Ok(()) => {
            if out.error.is_some() {
                let _ = std::fs::remove_file(dir.join("final.safetensors"));
            }
            Ok(())
        }
        Err(e) => {
            if created {
                // Empty again (every temporary file is gone): leave no trace of the attempt.
                let _ = std::fs::remove_dir(dir);
            }
            Err(e)
        }
    }
}

/// Checks, before a run, that its output directory can be written: `dir` if it exists, else its
/// nearest existing ancestor, where it would be created. A temporary file is created there and
/// removed at once, so nothing is left. The error names the directory and the reason (read-only
/// file system, permission denied, not a directory).
pub fn check_writable(dir: &Path) -> Result<()> {
    let mut at = dir;
    while !at.as_os_str().is_empty() && !at.exists() {
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    let at = if at.as_os_str().is_empty() { Path::new(".") } else { at };
    if !at.is_dir() {
        return Err(io_err!(
            "cannot create {}: {} is not a directory",
            dir.display(),
            at.display()
        ));
    }
    let probe = at.join(format!(".nequil-write-check.{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(io_err!(
            "cannot write to {}: {e}{}",
            dir.display(),
            if at == dir {
                String::new()
            } else {
                format!(" (in {})", at.display())
            }
        )),
    }
}

/// A JSON number, or a string for non-finite values (JSON has no NaN).
pub fn json_num(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else {
        json!(format!("{v}"))
    }
}
