//! `nequil sweep`, `nequil slurm` and `nequil merge`: grids of runs on one machine or a Slurm
//! cluster, and the table that gathers them.

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nequil::lab::io::write_atomic;
use nequil::lab::sweep::{
    describe, jobs_that_fit, lock_path, merge as merge_dirs, run_sweep, Shard, Sweep, SweepEvent, SweepOptions,
};
use nequil::{Error, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Arguments of `nequil sweep`.
#[derive(Args)]
pub struct SweepArgs {
    /// The sweep spec: a run spec plus a sweep table of dotted keys and arrays of values.
    spec: PathBuf,
    /// Output directory: DIR/sweep.toml and one DIR/runs/RUN-ID/ per run. Running again into the same
    /// directory resumes: finished runs are skipped, unfinished ones restarted.
    #[arg(long, short)]
    out: PathBuf,
    /// Runs at a time (default: all cores, or fewer when that many runs would not fit in memory
    /// together). Each run gets the cores the others leave: ⌊cores / runs at a time⌋ threads
    /// (bit-identical results whatever the count).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Run only the runs whose index i has i % N == I. Without it, a Slurm array task takes its
    /// shard from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (or _MIN/_MAX); otherwise all runs.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Rerun runs recorded as failed or diverged (by default they are kept as results).
    #[arg(long)]
    retry_failed: bool,
    /// No progress bar and no messages (errors are still printed).
    #[arg(long, short)]
    quiet: bool,
}

/// Arguments of `nequil slurm`.
#[derive(Args)]
pub struct SlurmArgs {
    /// The sweep spec (validated now, so that errors show before submission).
    spec: PathBuf,
    /// Output directory of the sweep, shared by all array tasks (on a shared filesystem).
    #[arg(long, short)]
    out: PathBuf,
    /// Array tasks (shards) (default: one per run, at most 100).
    #[arg(long)]
    tasks: Option<usize>,
    /// Time limit per task (#SBATCH --time), e.g. 01:30:00 or 1-00:00:00.
    #[arg(long, value_name = "HH:MM:SS")]
    time: Option<String>,
    /// CPUs per task (#SBATCH --cpus-per-task); each task runs that many runs at a time.
    #[arg(long, default_value_t = 1)]
    cpus: usize,
    /// Memory per task (#SBATCH --mem), e.g. 4G.
    #[arg(long)]
    mem: Option<String>,
    /// Partition (#SBATCH --partition).
    #[arg(long)]
    partition: Option<String>,
    /// Job name (#SBATCH --job-name).
    #[arg(long, default_value = "nequil-sweep")]
    job_name: String,
}

/// Arguments of `nequil merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// Sweep or shard output directories (all of one sweep).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// The table to write (default: DIR/runs.csv for the first directory).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Write the table even if runs are unfinished or missing (their status says which).
    #[arg(long)]
    allow_incomplete: bool,
    /// No messages.
    #[arg(long, short)]
    quiet: bool,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn spec_base(spec: &Path) -> PathBuf {
    spec.parent().map(|p| p.to_path_buf()).unwrap_or_default()
}

fn axes_summary(sweep: &Sweep) -> String {
    sweep
        .axes()
        .iter()
        .map(|a| format!("{} × {}", a.key, a.values.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn sweep(a: SweepArgs) -> Result<ExitCode> {
    if a.jobs == Some(0) {
        return Err(Error::Invalid("--jobs: must be ≥ 1".into()));
    }
    let shard = match &a.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::from_env(|k| std::env::var(k).ok())?.unwrap_or(Shard::ALL),
    };
    let sweep = Sweep::from_file(&a.spec)?;
    let runs = sweep.prepare(&spec_base(&a.spec), a.jobs.unwrap_or_else(default_jobs))?;
    // By default as many runs at a time as there are cores and as fit in memory together; an
    // explicit --jobs that does not fit is refused (by run_sweep, before anything is written).
    let jobs = a
        .jobs
        .unwrap_or_else(|| default_jobs().min(jobs_that_fit(runs.iter().filter(|r| shard.contains(r.index)))));
    let opts = SweepOptions {
        jobs,
        cores: default_jobs(),
        shard,
        retry_failed: a.retry_failed,
    };
    // Hidden until the plan is known (then drawn on stderr, unless quiet or not a terminal).
    let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:20}] {msg} {elapsed} ETA {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_prefix("sweep");
    let (done, running, bad, pending_n) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let message = || {
        format!(
            "runs {}/{}, {} running, {} failed",
            done.load(Ordering::Relaxed),
            pending_n.load(Ordering::Relaxed),
            running.load(Ordering::Relaxed),
            bad.load(Ordering::Relaxed)
        )
    };
    let shard_label = if shard == Shard::ALL {
        String::new()
    } else {
        format!("shard {shard}: ")
    };
    // Without a terminal (a Slurm log, a pipe) there is no progress bar: one line per run as it
    // starts (its lock is held) and as it ends (its status.json is on disk) instead.
    let log_lines = !a.quiet && !std::io::stderr().is_terminal();
    let events = |e: SweepEvent<'_>| match e {
        SweepEvent::Planned {
            in_shard,
            skipped,
            pending,
            pending_steps,
        } => {
            pending_n.store(pending, Ordering::Relaxed);
            if !a.quiet {
                eprintln!(
                    "nequil: sweep of {} runs ({}); {shard_label}{in_shard} runs, {skipped} already finished, \
                     {pending} to run, {} at a time",
                    sweep.len(),
                    axes_summary(&sweep),
                    jobs.min(pending.max(1))
                );
            }
            pb.set_length(pending_steps);
            pb.set_message(message());
            if !a.quiet {
                pb.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
        SweepEvent::Started(run) => {
            running.fetch_add(1, Ordering::Relaxed);
            if log_lines {
                eprintln!("nequil: {} ({}): started", run.id, describe(&run.params));
            }
            pb.set_message(message());
        }
        SweepEvent::Steps(d) => pb.inc(d),
        SweepEvent::Finished(run, st) => {
            running.fetch_sub(1, Ordering::Relaxed);
            done.fetch_add(1, Ordering::Relaxed);
            if st.is_ok() && log_lines {
                eprintln!(
                    "nequil: {} ({}): ok in {:.2} s",
                    run.id,
                    describe(&run.params),
                    st.seconds
                );
            }
            if !st.is_ok() {
                bad.fetch_add(1, Ordering::Relaxed);
                if !a.quiet {
                    pb.suspend(|| {
                        eprintln!(
                            "nequil: {} ({}): {}: {}",
                            run.id,
                            describe(&run.params),
                            st.status,
                            st.error.as_deref().unwrap_or("")
                        )
                    });
                }
            }
            pb.set_message(message());
        }
        SweepEvent::Unrecorded(run, err) => {
            running.fetch_sub(1, Ordering::Relaxed);
            pb.suspend(|| eprintln!("nequil: {}: could not record the run: {err}", run.id));
        }
        // Left to another process: off the bar and the count of runs to do here.
        SweepEvent::Held(run) | SweepEvent::FinishedElsewhere(run, _) => {
            pb.dec_length(run.spec.train.steps);
            pending_n.fetch_sub(1, Ordering::Relaxed);
            if !a.quiet && matches!(e, SweepEvent::Held(_)) {
                let lock = lock_path(&a.out.join("runs"), &run.id);
                // The holder notes its pid@host in the file (absent while it is being written).
                let holder = std::fs::read_to_string(&lock)
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                pb.suspend(|| {
                    eprintln!(
                        "nequil: {}: another process is running it{holder}: its lock {} is held; skipped",
                        run.id,
                        lock.display()
                    )
                });
            }
            pb.set_message(message());
        }
    };
    let report = run_sweep(&sweep, &runs, &spec_base(&a.spec), &a.out, &opts, &events);
    pb.finish_and_clear();
    let report = report?;
    if !a.quiet {
        let held = if report.held > 0 {
            format!(", {} held by another process", report.held)
        } else {
            String::new()
        };
        eprintln!(
            "nequil: {shard_label}{} runs ({} finished before, {} now{held}): {} ok, {} diverged, {} failed; wrote {}",
            report.in_shard,
            report.skipped,
            report.ran,
            report.ok,
            report.diverged,
            report.failed,
            a.out.join("runs").display()
        );
        if shard == Shard::ALL {
            eprintln!("nequil: gather them with `nequil merge {}`", a.out.display());
        }
    }
    Ok(if report.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Single-quotes a string for the shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn check_chars(flag: &str, v: &str, ok: impl Fn(char) -> bool, example: &str) -> Result<()> {
    if v.is_empty() || !v.chars().all(ok) {
        return Err(Error::Invalid(format!(
            "{flag}: unexpected value \"{v}\" (e.g. {example})"
        )));
    }
    Ok(())
}

/// Slurm time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn check_time(t: &str) -> Result<()> {
    let bad = || {
        Error::Invalid(format!(
            "--time: expected a Slurm time limit such as 01:30:00 or 2-00:00:00, got \"{t}\""
        ))
    };
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let num = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if days.is_some_and(|d| !num(d)) {
        return Err(bad());
    }
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() > 3 || !parts.iter().all(|p| num(p)) {
        return Err(bad());
    }
    Ok(())
}

pub fn slurm(a: SlurmArgs) -> Result<ExitCode> {
    if a.cpus == 0 {
        return Err(Error::Invalid("--cpus: must be ≥ 1".into()));
    }
    if let Some(t) = &a.time {
        check_time(t)?;
    }
    if let Some(m) = &a.mem {
        check_chars("--mem", m, |c| c.is_ascii_alphanumeric(), "4G or 500M")?;
    }
    if let Some(p) = &a.partition {
        check_chars(
            "--partition",
            p,
            |c| c.is_ascii_alphanumeric() || "_-.,".contains(c),
            "compute",
        )?;
    }
    check_chars(
        "--job-name",
        &a.job_name,
        |c| c.is_ascii_alphanumeric() || "_-.".contains(c),
        "nequil-sweep",
    )?;
    let sweep = Sweep::from_file(&a.spec)?;
    sweep.prepare(&spec_base(&a.spec), default_jobs())?;
    let n = sweep.len();
    let tasks = a.tasks.unwrap_or(n.min(100));
    if tasks == 0 || tasks > n {
        return Err(Error::Invalid(format!(
            "--tasks: must be between 1 and the sweep's {n} runs, got {tasks}"
        )));
    }
    let abs = |p: &Path, what: &str| {
        std::path::absolute(p).map_err(|e| Error::Io(format!("cannot resolve {what} {}: {e}", p.display())))
    };
    let spec =
        std::fs::canonicalize(&a.spec).map_err(|e| Error::Io(format!("cannot resolve {}: {e}", a.spec.display())))?;
    let out = abs(&a.out, "--out")?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| Error::Io(format!("cannot locate the nequil binary: {e}")))?;
    let (spec, out, exe) = (
        spec.to_string_lossy().to_string(),
        out.to_string_lossy().to_string(),
        exe.to_string_lossy().to_string(),
    );
    let per = n.div_ceil(tasks);
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!(
        "# nequil sweep as a Slurm job array: {n} runs ({}) in {tasks} tasks of at most {per} runs.\n",
        axes_summary(&sweep)
    ));
    s.push_str("# Submit: sbatch THIS_FILE. Task I runs the runs with index % N == I into one shared directory.\n");
    s.push_str("# Resumable: submitting the array again skips finished runs and restarts unfinished ones\n");
    s.push_str("# (a run being run by a live task is locked and left to it). When every task is done:\n");
    s.push_str(&format!("#   {} merge {}\n", sh_quote(&exe), sh_quote(&out)));
    s.push_str(&format!("#SBATCH --job-name={}\n", a.job_name));
    s.push_str(&format!("#SBATCH --array=0-{}\n", tasks - 1));
    s.push_str("#SBATCH --ntasks=1\n");
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", a.cpus));
    if let Some(t) = &a.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(m) = &a.mem {
        s.push_str(&format!("#SBATCH --mem={m}\n"));
    }
    if let Some(p) = &a.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    s.push_str("#SBATCH --output=slurm-%x-%A_%a.out\n\n");
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!("NEQUIL=${{NEQUIL:-{}}}\n", sh_quote(&exe)));
    s.push_str(&format!("SPEC={}\n", sh_quote(&spec)));
    s.push_str(&format!("OUT={}\n", sh_quote(&out)));
    s.push_str(&format!(
        "exec \"$NEQUIL\" sweep \"$SPEC\" --out \"$OUT\" --shard \"${{SLURM_ARRAY_TASK_ID}}/{tasks}\" --jobs {}\n",
        a.cpus
    ));
    print!("{s}");
    Ok(ExitCode::SUCCESS)
}

pub fn merge(a: MergeArgs) -> Result<ExitCode> {
    let m = merge_dirs(&a.dirs, a.allow_incomplete)?;
    let out = a.out.unwrap_or_else(|| a.dirs[0].join("runs.csv"));
    write_atomic(&out, m.csv.as_bytes())?;
    if !a.quiet {
        eprintln!(
            "nequil: {} runs from {} director{}: {} ok, {} diverged, {} failed{}; wrote {}",
            m.total,
            a.dirs.len(),
            if a.dirs.len() == 1 { "y" } else { "ies" },
            m.ok,
            m.diverged,
            m.failed,
            if m.unfinished.is_empty() && m.missing.is_empty() {
                String::new()
            } else {
                format!(", {} unfinished, {} missing", m.unfinished.len(), m.missing.len())
            },
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
