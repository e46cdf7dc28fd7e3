//! `nequil run SPEC.toml --out DIR`.

use crate::progress::progress_bar;
use clap::Args;
use nequil::lab::runner::{check_writable, run_spec, write_run_dir};
use nequil::lab::spec::Spec;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `nequil run`.
#[derive(Args)]
pub struct RunArgs {
    /// The run specification (TOML; every key in the book, docs/src/spec-reference.md).
    spec: PathBuf,
    /// Output directory (created if missing; existing run files in it are replaced).
    #[arg(long, short)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Threads for the run's large products, in place of the spec's `train.threads` (the
    /// results are bit-identical for every count).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// The per-sample loss, in place of the spec's `model.loss`: `mse` (‖f(x) − y‖², summed over
    /// outputs) or `cross-entropy` (logits and integer class labels).
    #[arg(long, value_name = "LOSS")]
    loss: Option<String>,
}

pub fn run(a: RunArgs) -> nequil::Result<ExitCode> {
    let mut spec = Spec::from_file(&a.spec)?;
    if let Some(t) = a.threads {
        spec.train.threads = t.into();
    }
    if let Some(l) = &a.loss {
        spec.model.loss = Some(nequil::lab::spec::LossName::parse(l, "--loss")?);
    }
    // Before hours of training: the output directory must be writable (nothing is left there).
    check_writable(&a.out)?;
    let base = a.spec.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let pb = progress_bar(spec.train.steps, "training", a.quiet);
    let start = Instant::now();
    // The spec's [probes.*] instruments are built and run by run_spec; no extra probes here.
    let (model, out) = run_spec(&spec, &base, &mut [], &mut |d, _| pb.set_position(d))?;
    pb.finish_and_clear();
    write_run_dir(&a.out, &spec, &model, &out)?;
    let secs = start.elapsed().as_secs_f64();
    match &out.error {
        None => {
            if !a.quiet {
                eprintln!(
                    "nequil: {} steps in {:.2} s ({:.2} µs/step); final loss {:.6}; wrote {}",
                    out.steps_done,
                    secs,
                    1e6 * secs / out.steps_done.max(1) as f64,
                    out.log.last("loss").unwrap_or(f64::NAN),
                    a.out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => {
            eprintln!(
                "nequil: error: {e}; the log up to that step is in {}",
                a.out.join("metrics.csv").display()
            );
            Ok(ExitCode::from(1))
        }
    }
}
