//! `nequil reproduce` and `nequil list`.

use crate::progress::Bars;
use clap::Args;
use nequil_paper::experiments::catalog;
use nequil_paper::reproduce::{choose, estimate, human_seconds, reproduce_into, Tier};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nequil reproduce`.
#[derive(Args)]
pub struct ReproduceArgs {
    /// Experiments to run (default: all; see `nequil list`): full names or unique prefixes (`fig8`).
    names: Vec<String>,
    /// Output directory.
    #[arg(long, short, default_value = "nequil-out")]
    out: PathBuf,
    /// Larger sizes, more seeds and longer runs (slower) instead of the quick defaults.
    #[arg(long, conflicts_with = "paper")]
    full: bool,
    /// The paper's own settings where it states them (`--full` elsewhere); prints an estimate of
    /// its time first.
    #[arg(long)]
    paper: bool,
    /// With `--full` or `--paper`: delete the records of finished runs in `<out>/<experiment>/runs/`
    /// first, so that every run runs again (by default the runs recorded there with the same
    /// fingerprint are loaded instead: an interrupted run resumes, a finished one only re-renders).
    #[arg(long)]
    fresh: bool,
    /// Print the estimated time of the chosen experiments at the chosen tier and exit.
    #[arg(long)]
    estimate: bool,
    /// Worker threads for the independent runs inside an experiment (default: all cores).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
    /// A directory with the MNIST IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]);
    /// fig5-deep-linear then also trains a deep linear net on MNIST.
    #[arg(long)]
    mnist: Option<PathBuf>,
}

pub fn list() -> nequil::Result<ExitCode> {
    let mut group = None;
    for e in catalog() {
        if group != Some(e.group) {
            println!("== {}\n", e.group.heading());
            group = Some(e.group);
        }
        println!("{:<26} {}\n{:<26} claim: {}\n", e.name, e.title, "", e.claim);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn reproduce(a: ReproduceArgs) -> nequil::Result<ExitCode> {
    let tier = match (a.paper, a.full) {
        (true, _) => Tier::Paper,
        (false, true) => Tier::Full,
        (false, false) => Tier::Quick,
    };
    if a.estimate {
        let chosen = choose(&a.names)?;
        if a.jobs == Some(0) {
            return Err(nequil::Error::Invalid("--jobs: must be ≥ 1".into()));
        }
        let jobs = a
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let est = estimate(&chosen, tier, jobs, a.mnist.as_deref())?;
        println!(
            "estimated time (rough, {jobs} cores): {} in all",
            human_seconds(est.iter().sum())
        );
        for (e, s) in chosen.iter().zip(&est) {
            println!("    {:<26} {}", e.name, human_seconds(*s));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let summaries = reproduce_into(
        &a.out,
        &a.names,
        tier,
        a.jobs,
        a.mnist.clone(),
        a.quiet,
        a.fresh,
        &mut Bars::new(a.quiet),
    )?;
    Ok(if summaries.iter().any(|s| s.failed > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
