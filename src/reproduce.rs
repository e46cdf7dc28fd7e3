//! `nequil reproduce` as a function: the chosen experiments of the paper run one after the other
//! into a directory, each with its logs, `summary.json`, `figure.json`, `figure.svg` and
//! `figure.png`, then `report.html` over every experiment found there. The command and the
//! Python package's `nequil.reproduce` both call [`reproduce_into`].

use crate::plot;
use crate::progress_bar;
use crate::report::{write_report, ReportEntry};
use nequil::lab::experiments::{catalog, Ctx, Experiment, Outcome};
use nequil::lab::files::{log_csv, write_json, Check, ExperimentSummary};
use nequil::lab::io::write_atomic;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn write_outcome(dir: &Path, e: &Experiment, o: &Outcome, secs: f64) -> nequil::Result<ExperimentSummary> {
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
    Ok(summary)
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
            group: e.group.heading().to_string(),
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

fn write_failure(dir: &Path, e: &Experiment, err: &nequil::Error, secs: f64) -> nequil::Result<ExperimentSummary> {
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
    write_json(&dir.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Runs the experiments named in `names` (all when empty; an unknown name is an error listing the
/// known ones, before anything runs) into `out`: the quick defaults, or the paper's scale with
/// `full`; `jobs` worker threads for the independent runs inside an experiment (default: all
/// cores); `mnist` a directory with the MNIST IDX files for fig5-deep-linear. Progress bars and
/// one line per experiment on stderr unless `quiet`. An experiment that fails is recorded as a
/// failed check (the others still run). Returns the summary of each experiment run, in catalog
/// order; `report.html` covers every experiment with a summary in `out`.
pub fn reproduce_into(
    out: &Path,
    names: &[String],
    full: bool,
    jobs: Option<usize>,
    mnist: Option<PathBuf>,
    quiet: bool,
) -> nequil::Result<Vec<ExperimentSummary>> {
    let all = catalog();
    for n in names {
        if !all.iter().any(|e| e.name == n) {
            let known: Vec<&str> = all.iter().map(|e| e.name).collect();
            return Err(nequil::Error::Invalid(format!(
                "unknown experiment `{n}`; known: {}",
                known.join(", ")
            )));
        }
    }
    if let Some(dir) = &mnist {
        if !dir.is_dir() {
            return Err(nequil::Error::Invalid(format!(
                "--mnist: {} is not a directory",
                dir.display()
            )));
        }
    }
    if jobs == Some(0) {
        return Err(nequil::Error::Invalid("--jobs: must be ≥ 1".into()));
    }
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|e| names.is_empty() || names.iter().any(|n| n == e.name))
        .collect();
    // Bad MNIST files are bad input: refused (exit 2) before anything runs or is written.
    if let Some(dir) = &mnist {
        if chosen.iter().any(|e| e.name == "fig5-deep-linear") {
            nequil::lab::experiments::mnist_dataset(dir)?;
        }
    }
    std::fs::create_dir_all(out).map_err(|e| nequil::Error::Io(format!("cannot create {}: {e}", out.display())))?;
    let mut summaries = vec![];
    for e in &chosen {
        let mut ctx = Ctx::new(full, jobs);
        ctx.mnist = mnist.clone();
        let pb = progress_bar(1000, e.name, quiet);
        let start = Instant::now();
        let result = std::thread::scope(|s| {
            let h = s.spawn(|| e.run(&ctx));
            while !h.is_finished() {
                let (d, t) = ctx.progress();
                pb.set_length(t);
                pb.set_position(d.min(t));
                std::thread::sleep(Duration::from_millis(100));
            }
            h.join()
        });
        pb.finish_and_clear();
        let secs = start.elapsed().as_secs_f64();
        let dir = out.join(e.name);
        let result = result.unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(nequil::Error::Numerical(format!(
                "the experiment panicked (a bug): {msg}"
            )))
        });
        match result {
            Ok(o) => {
                let summary = write_outcome(&dir, e, &o, secs)?;
                if !quiet {
                    eprintln!(
                        "{:<26} {:>6.1} s  {}/{} checks pass",
                        e.name,
                        secs,
                        summary.passed,
                        o.checks.len()
                    );
                    for c in o.checks.iter().filter(|c| !c.pass) {
                        eprintln!(
                            "    FAIL: {} (theory {}, measured {}, tolerance {})",
                            c.claim, c.theory, c.measured, c.tolerance
                        );
                    }
                }
                summaries.push(summary);
            }
            Err(err) => {
                eprintln!("{:<26} error: {err}", e.name);
                summaries.push(write_failure(&dir, e, &err, secs)?);
            }
        }
    }
    let entries = gather(out)?;
    write_report(out, &entries)?;
    if !quiet {
        eprintln!("wrote {}", out.join("report.html").display());
    }
    Ok(summaries)
}
