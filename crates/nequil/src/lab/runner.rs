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
use crate::lab::io::{read_safetensors, safetensors_bytes, write_atomic, write_atomic_all, Tensors};
use crate::lab::spec::Spec;
use crate::train::{train, Probe, ProbeCtx, RunOutcome};
use crate::{invalid, io_err, Error, Result};
use serde_json::json;
use std::collections::BTreeMap;
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

/// The tensors of θ as `(name, shape, values)` in layout order.
pub fn named_tensors<'a>(model: &Model, theta: &'a [f64]) -> Vec<(String, Vec<usize>, &'a [f64])> {
    model
        .layout()
        .blocks()
        .iter()
        .map(|b| (b.name.clone(), b.shape.clone(), &theta[b.range()]))
        .collect()
}

/// Writes θ as safetensors (`f64`, PyTorch names and `[out, in]` shapes; metadata `format = pt`).
pub fn save_weights(path: &Path, model: &Model, theta: &[f64]) -> Result<()> {
    write_atomic(path, &weights_bytes(model, theta)?)
}

/// The bytes [`save_weights`] writes.
pub fn weights_bytes(model: &Model, theta: &[f64]) -> Result<Vec<u8>> {
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("nequil.model".to_string(), model.describe());
    safetensors_bytes(&named_tensors(model, theta), Some(meta))
}

/// Reads θ for `model` from a safetensors file, by PyTorch state-dict name: the file written by
/// [`save_weights`], or `safetensors.torch.save_file(net.state_dict(), path)` for an `nn.Module`
/// whose `nn.Linear` layers sit in an `nn.ModuleList` named `layers` (`layers.{l}.weight` is
/// `[out, in]`, `layers.{l}.bias` is `[out]`; Net-A/Net-B: `layers.0.weight` is W,
/// `layers.1.weight` is U). `F64`, `F32`, `F16` and `BF16` tensors are read as `f64`.
///
/// Every tensor of the layout must be present with its shape, no other tensor may be present, and
/// every value must be finite. An error names the file and lists every missing, unexpected and
/// misshapen tensor (expected vs got), or the first non-finite value.
pub fn load_weights(path: &Path, model: &Model) -> Result<Vec<f64>> {
    let tensors = read_safetensors(path)?;
    theta_from_tensors(&format!("weights {}", path.display()), &tensors, model)
}

/// θ for `model` from tensors by PyTorch state-dict name (`name → (shape, values)`), with the
/// checks and messages of [`load_weights`]: every tensor of the layout present with its shape, no
/// other tensor, every value finite. `what` begins every message (`weights w.safetensors`,
/// `params`).
pub fn theta_from_tensors(what: &str, tensors: &Tensors, model: &Model) -> Result<Vec<f64>> {
    let layout = model.layout();
    let mut problems = vec![];
    for b in layout.blocks() {
        match tensors.get(&b.name) {
            None => problems.push(format!("missing tensor `{}` (expected shape {:?})", b.name, b.shape)),
            Some((shape, _)) if *shape != b.shape => problems.push(format!(
                "tensor `{}` has shape {shape:?}, expected {:?}",
                b.name, b.shape
            )),
            Some(_) => {}
        }
    }
    for (name, (shape, _)) in tensors {
        if layout.find(name).is_none() {
            problems.push(format!("unexpected tensor `{name}` (shape {shape:?})"));
        }
    }
    if !problems.is_empty() {
        let expected: Vec<String> = layout
            .blocks()
            .iter()
            .map(|b| format!("{} {:?}", b.name, b.shape))
            .collect();
        return Err(invalid!(
            "{what}: {} (the model {} has exactly: {})",
            problems.join("; "),
            model.describe(),
            expected.join(", ")
        ));
    }
    let mut theta = vec![0.0; layout.len()];
    for b in layout.blocks() {
        let data = &tensors[&b.name].1;
        if data.len() != b.range().len() {
            return Err(invalid!(
                "{what}: tensor `{}` holds {} values, its shape {:?} needs {}",
                b.name,
                data.len(),
                b.shape,
                b.range().len()
            ));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(invalid!(
                "{what}: tensor `{}` has a non-finite value ({}) at flat index {i}",
                b.name,
                data[i]
            ));
        }
        theta[b.range()].copy_from_slice(data);
    }
    Ok(theta)
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
