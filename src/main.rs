//! The `nequil` command. See `nequil --help` and the README.

mod cli_bench;
mod cli_equilibrium;
mod cli_rebalance;
mod cli_reproduce;
mod cli_run;
mod cli_sweep;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// nequil: parameter symmetry and the noise equilibrium of SGD.
///
/// Trains the paper's model families with instruments, asks the theory about a model's
/// symmetries and noise equilibrium, and reproduces the paper's figures.
#[derive(Parser)]
#[command(name = "nequil", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model as a TOML spec says; write spec.toml, metrics.csv, final.safetensors and
    /// summary.json into the output directory.
    Run(cli_run::RunArgs),
    /// Re-run the paper's figures (all, or the named ones): theory beside simulation, with
    /// checks, logs, plots and DIR/report.html.
    Reproduce(cli_reproduce::ReproduceArgs),
    /// Name and describe every experiment of `reproduce`.
    List,
    /// Run a grid of runs (a spec with a sweep table) in parallel into DIR/runs/RUN-ID/;
    /// resumable, and shardable with --shard I/N or a Slurm job array.
    Sweep(cli_sweep::SweepArgs),
    /// Print a Slurm job-array batch script that runs a sweep, one shard per array task.
    Slurm(cli_sweep::SlurmArgs),
    /// Gather the runs of sweep or shard directories into one table (runs.csv).
    Merge(cli_sweep::MergeArgs),
    /// The noise equilibrium of every symmetry of a trained model (weights from PyTorch or
    /// nequil, data from NumPy): a table of charges, noise imbalances and λ*, and with --out the
    /// rebalanced weights (same function, same loss, balanced noise).
    Equilibrium(cli_equilibrium::EquilibriumArgs),
    /// Move a spec's initialization to its noise equilibrium (same function, same loss) and write
    /// it as weights; `model.init_from` starts a run from them.
    Rebalance(cli_rebalance::RebalanceArgs),
    /// Benchmarks behind bench/compare.py (training loop, GEMM rate, per-sample noise).
    #[command(hide = true)]
    Bench(cli_bench::BenchArgs),
    /// The SIMD path in use and the paths this CPU supports, one line each: `active NAME` and
    /// `supported NAME…` (for scripts; `NEQUIL_SIMD` chooses among them).
    #[command(hide = true)]
    Simd,
}

/// Exit status 2 for bad input (spec, flags, files), 1 for a run that failed (e.g. diverged).
pub(crate) fn exit_for(e: &nequil::Error) -> ExitCode {
    match e {
        nequil::Error::Invalid(_) | nequil::Error::Io(_) => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

/// Ignores SIGXFSZ, so that a write past the file size limit (`ulimit -f`) fails with an error
/// (EFBIG: a clear message, the temporary file removed) instead of killing the process midway.
/// The C library's `signal`, which the standard library already links.
#[cfg(all(unix, not(any(target_arch = "mips", target_arch = "mips64"))))]
fn ignore_file_size_signal() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    // SIGXFSZ is 25 on Linux (x86, Arm, RISC-V) and the BSDs/macOS; SIG_IGN is 1.
    const SIGXFSZ: i32 = 25;
    const SIG_IGN: usize = 1;
    // SAFETY: installing SIG_IGN runs no code in a signal handler, and nothing else in the
    // process handles SIGXFSZ.
    unsafe {
        signal(SIGXFSZ, SIG_IGN);
    }
}

#[cfg(not(all(unix, not(any(target_arch = "mips", target_arch = "mips64")))))]
fn ignore_file_size_signal() {}

fn main() -> ExitCode {
    ignore_file_size_signal();
    // The SIMD path is chosen before anything runs: a NEQUIL_SIMD the CPU cannot honour is bad
    // input.
    // So is a NEQUIL_MAX_MEMORY that is not a byte count.
    if let Err(e) = nequil::simd::init().and_then(|_| nequil::lab::resources::init()) {
        eprintln!("nequil: error: {e}");
        return exit_for(&e);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cli_run::run(a),
        Command::Reproduce(a) => cli_reproduce::reproduce(a),
        Command::List => cli_reproduce::list(),
        Command::Sweep(a) => cli_sweep::sweep(a),
        Command::Slurm(a) => cli_sweep::slurm(a),
        Command::Merge(a) => cli_sweep::merge(a),
        Command::Equilibrium(a) => cli_equilibrium::equilibrium(a),
        Command::Rebalance(a) => cli_rebalance::rebalance(a),
        Command::Bench(a) => cli_bench::bench(a),
        Command::Simd => simd(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nequil: error: {e}");
            exit_for(&e)
        }
    }
}

/// `nequil simd`: the active SIMD path and the supported ones.
fn simd() -> nequil::Result<ExitCode> {
    use nequil::simd;
    let names: Vec<&str> = simd::supported().into_iter().map(|p| p.name()).collect();
    println!("active {}", simd::active());
    println!("supported {}", names.join(" "));
    Ok(ExitCode::SUCCESS)
}
