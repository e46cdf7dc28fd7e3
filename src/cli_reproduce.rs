//! `nequil reproduce` and `nequil list`.

use crate::cli_run::progress_bar;
use crate::plot;
use crate::report::{write_report, CheckRow, ReportEntry};
use clap::Args;
use nequil::lab::experiments::{catalog, Ctx, Experiment, Outcome};
use nequil::lab::io::write_atomic;
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
    plot::render(&o.figure, &dir.join("figure.svg"), &dir.join("figure.png"))?;
    Ok(())
}

/// Report entries for every known experiment with a summary in `out` (this run's and earlier
/// ones), in catalog order.
fn gather(out: &Path) -> Vec<ReportEntry> {
    let mut entries = vec![];
    for e in catalog() {
        let Ok(text) = std::fs::read_to_string(out.join(e.name).join("summary.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
        let checks = v["checks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| CheckRow {
                        claim: s(&c["claim"]),
                        theory: s(&c["theory"]),
                        measured: s(&c["measured"]),
                        tolerance: s(&c["tolerance"]),
                        derivation: s(&c["derivation"]),
                        pass: c["pass"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let settings = v["settings"]
            .as_array()
            .map(|a| a.iter().map(|kv| (s(&kv[0]), s(&kv[1]))).collect())
            .unwrap_or_default();
        let notes = v["notes"]
            .as_array()
            .map(|a| a.iter().map(s).collect())
            .unwrap_or_default();
        let has_fig = out.join(e.name).join("figure.png").exists();
        entries.push(ReportEntry {
            name: e.name.to_string(),
            title: e.title.to_string(),
            claim: e.claim.to_string(),
            figure_png: if has_fig {
                format!("{}/figure.png", e.name)
            } else {
                String::new()
            },
            figure_svg: if has_fig {
                format!("{}/figure.svg", e.name)
            } else {
                String::new()
            },
            checks,
            settings,
            notes,
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
        });
    }
    entries
}

fn write_failure(dir: &Path, e: &Experiment, err: &nequil::Error, secs: f64) -> nequil::Result<()> {
    std::fs::create_dir_all(dir).map_err(|er| nequil::Error::Io(format!("cannot create {}: {er}", dir.display())))?;
    let _ = std::fs::remove_file(dir.join("figure.png"));
    let summary = json!({
        "name": e.name, "title": e.title, "claim": e.claim, "passed": 0, "failed": 1,
        "checks": [{
            "claim": "the experiment ran to completion", "theory": "completes", "measured": err.to_string(),
            "tolerance": "—", "derivation": "an error stopped the experiment", "pass": false
        }],
        "settings": [], "notes": [format!("error: {err}")], "seconds": secs,
    });
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).expect("json").as_bytes(),
    )
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
                write_failure(&dir, e, &err, secs)?;
            }
        }
    }
    let entries = gather(&a.out);
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
