//! `nequil reproduce` and `nequil list`.

use clap::Args;
use nequil::lab::experiments::catalog;
use nequil_cli::reproduce::reproduce_into;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `nequil reproduce`.
#[derive(Args)]
pub struct ReproduceArgs {
    /// Experiments to run (default: all; see `nequil list`).
    names: Vec<String>,
    /// Output directory.
    #[arg(long, short, default_value = "nequil-out")]
    out: PathBuf,
    /// The paper's scale where it is known (slower) instead of the quick defaults.
    #[arg(long)]
    full: bool,
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
    let summaries = reproduce_into(&a.out, &a.names, a.full, a.jobs, a.mnist.clone(), a.quiet)?;
    Ok(if summaries.iter().any(|s| s.failed > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
