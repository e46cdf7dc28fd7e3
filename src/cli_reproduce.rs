//! `nequil reproduce` and `nequil list`.

use crate::cli_run::progress_bar;
use crate::plot;
use crate::report::{write_report, ReportEntry};
use clap::Args;
use nequil::lab::experiments::{catalog, Ctx, Experiment, Outcome};
use nequil::lab::files::{log_csv, write_json, Check, ExperimentSummary};
use nequil::lab::io::write_atomic;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
    for e in catalog() {
        println!("{:<26} {}\n{:<26} claim: {}\n", e.name, e.title, "", e.claim);
    }
    Ok(ExitCode::SUCCESS)
}

fn write_outcome(dir: &Path, e: &Experiment, o: &Outcome, secs: f64) -> nequil::Result<()> {
    std::fs::create_dir_all(dir).map_err(|er| nequil::Error::Io(format!("cannot create {}: {er}", dir.display())))?;
    for (n, log) in &o.logs {
        write_atomic(&dir.join(format!("{n}.csv")), log_csv(log).as_bytes())?;
    }
    let passed = o.checks.iter().filter(|c| c.pass).count();
    let summary = ExperimentSummary {
        name: e.name.into(),
        title: e.title.into(),
        claim: e.claim.into(),
        passed,
        failed: o.checks.len() - passed,
        checks: o.checks.clone(),
        settings: o.settings.clone(),
        notes: o.notes.clone(),
        seconds: secs,
    };
    write_json(&dir.join("summary.json"), &summary)?;
    write_json(&dir.join("figure.json"), &o.figure)?;
    plot::render(&o.figure, &dir.join("figure.svg"), &dir.join("figure.png"))?;
    Ok(())
}

/// Report entries for every known experiment with a summary in `out` (this run's and earlier
/// ones), in catalog order. A summary that cannot be read is an error naming the file and the
/// field.
fn gather(out: &Path) -> nequil::Result<Vec<ReportEntry>> {
    let mut entries = vec![];
    for e in catalog() {
        let path = out.join(e.name).join("summary.json");
        if !path.exists() {
            continue;
        }
        let s = ExperimentSummary::read(&path)?;
        let has_fig = out.join(e.name).join("figure.png").exists();
        let fig = |ext: &str| {
            if has_fig {
                format!("{}/figure.{ext}", e.name)
            } else {
                String::new()
            }
        };
        entries.push(ReportEntry {
            name: e.name.to_string(),
            title: e.title.to_string(),
            claim: e.claim.to_string(),
            figure_png: fig("png"),
            figure_svg: fig("svg"),
            checks: s.checks,
            settings: s.settings,
            notes: s.notes,
            seconds: s.seconds,
        });
    }
    Ok(entries)
}

fn write_failure(dir: &Path, e: &Experiment, err: &nequil::Error, secs: f64) -> nequil::Result<()> {
    std::fs::create_dir_all(dir).map_err(|er| nequil::Error::Io(format!("cannot create {}: {er}", dir.display())))?;
    let _ = std::fs::remove_file(dir.join("figure.png"));
    let summary = ExperimentSummary {
        name: e.name.into(),
        title: e.title.into(),
        claim: e.claim.into(),
        passed: 0,
        failed: 1,
        checks: vec![Check {
            claim: "the experiment ran to completion".into(),
            theory: "completes".into(),
            measured: err.to_string(),
            tolerance: "—".into(),
            derivation: "an error stopped the experiment".into(),
            pass: false,
        }],
        settings: vec![],
        notes: vec![format!("error: {err}")],
        seconds: secs,
    };
    write_json(&dir.join("summary.json"), &summary)
}

pub fn reproduce(a: ReproduceArgs) -> nequil::Result<ExitCode> {
    let all = catalog();
    for n in &a.names {
        if !all.iter().any(|e| e.name == n) {
            let names: Vec<&str> = all.iter().map(|e| e.name).collect();
            return Err(nequil::Error::Invalid(format!(
                "unknown experiment `{n}`; known: {}",
                names.join(", ")
            )));
        }
    }
    if let Some(dir) = &a.mnist {
        if !dir.is_dir() {
            return Err(nequil::Error::Invalid(format!(
                "--mnist: {} is not a directory",
                dir.display()
            )));
        }
    }
    if a.jobs == Some(0) {
        return Err(nequil::Error::Invalid("--jobs: must be ≥ 1".into()));
    }
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|e| a.names.is_empty() || a.names.iter().any(|n| n == e.name))
        .collect();
    std::fs::create_dir_all(&a.out)
        .map_err(|e| nequil::Error::Io(format!("cannot create {}: {e}", a.out.display())))?;
    let mut failed_checks = 0;
    let mut errors = 0;
    for e in &chosen {
        let mut ctx = Ctx::new(a.full, jobs);
        ctx.mnist = a.mnist.clone();
        let pb = progress_bar(1000, e.name, a.quiet);
        let start = Instant::now();
        let result = std::thread::scope(|s| {
            let h = s.spawn(|| e.run(&ctx));
            while !h.is_finished() {
                let (d, t) = ctx.progress();
                pb.set_length(t);
                pb.set_position(d.min(t));
                std::thread::sleep(Duration::from_millis(100));
            }
            h.join().expect("experiment thread panicked")
        });
        pb.finish_and_clear();
        let secs = start.elapsed().as_secs_f64();
        let dir = a.out.join(e.name);
        match result {
            Ok(o) => {
                write_outcome(&dir, e, &o, secs)?;
                let failed: Vec<_> = o.checks.iter().filter(|c| !c.pass).collect();
                failed_checks += failed.len();
                if !a.quiet {
                    eprintln!(
                        "{:<26} {:>6.1} s  {}/{} checks pass",
                        e.name,
                        secs,
                        o.checks.len() - failed.len(),
                        o.checks.len()
                    );
                    for c in failed {
                        eprintln!(
                            "    FAIL: {} (theory {}, measured {}, tolerance {})",
                            c.claim, c.theory, c.measured, c.tolerance
                        );
                    }
                }
            }
            Err(err) => {
                errors += 1;
                eprintln!("{:<26} error: {err}", e.name);
                write_failure(&dir, e, &err, secs)?;
            }
        }
    }
    let entries = gather(&a.out)?;
    write_report(&a.out, &entries)?;
    if !a.quiet {
        eprintln!("wrote {}", a.out.join("report.html").display());
    }
    Ok(if errors > 0 || failed_checks > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
