//! `nequil reproduce` and `nequil list`.

use crate::cli_run::progress_bar;
use clap::Args;
use nequil::experiments::{catalog, Ctx, Outcome};
use nequil::io::write_atomic;
use serde_json::json;
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
}

pub fn list() -> nequil::Result<ExitCode> {
    for e in catalog() {
        println!("{:<26} {}\n{:<26} claim: {}\n", e.name, e.title, "", e.claim);
    }
    Ok(ExitCode::SUCCESS)
}

fn write_outcome(dir: &Path, name: &str, title: &str, claim: &str, o: &Outcome, secs: f64) -> nequil::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| nequil::Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    for (n, log) in &o.logs {
        write_atomic(&dir.join(format!("{n}.csv")), log.to_csv().as_bytes())?;
    }
    let passed = o.checks.iter().filter(|c| c.pass).count();
    let summary = json!({
        "name": name,
        "title": title,
        "claim": claim,
        "passed": passed,
        "failed": o.checks.len() - passed,
        "checks": o.checks,
        "settings": o.settings,
        "notes": o.notes,
        "seconds": secs,
    });
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).expect("json").as_bytes(),
    )?;
    write_atomic(
        &dir.join("figure.json"),
        serde_json::to_string(&o.figure).expect("json").as_bytes(),
    )?;
    Ok(())
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
        let ctx = Ctx::new(a.full, jobs);
        let pb = progress_bar(1000, e.name, a.quiet);
        let start = Instant::now();
        let result = std::thread::scope(|s| {
            let h = s.spawn(|| (e.run)(&ctx));
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
                write_outcome(&dir, e.name, e.title, e.claim, &o, secs)?;
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
            }
        }
    }
    if !a.quiet {
        eprintln!("wrote {}", a.out.display());
    }
    Ok(if errors > 0 || failed_checks > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
