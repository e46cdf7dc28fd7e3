//! `nequil reproduce` as a function: the chosen experiments of the paper run one after the other
//! into a directory, each with its logs, `summary.json`, `figure.json`, `figure.svg` and
//! `figure.png`, then `report.html` over every experiment found there. The command and the
//! Python package's `nequil.reproduce` both call [`reproduce_into`]; each shows the progress of
//! the running experiment its own way ([`Progress`]).

use crate::experiments::{catalog, Ctx, Experiment, Outcome};
use crate::files::{Check, ExperimentSummary, ReportEntry};
use crate::plot;
use crate::report::write_report;
use nequil::lab::files::{log_csv, write_json};
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

/// Where [`reproduce_into`] reports the progress of the experiment that runs (the command draws a
/// progress bar; [`Silent`] shows nothing). Called from the thread that called
/// [`reproduce_into`], about ten times a second while an experiment runs.
pub trait Progress {
    /// The experiment `name` starts.
    fn start(&mut self, name: &str);
    /// `done` of `total` units of its work are finished (SGD steps × cost over its runs).
    fn update(&mut self, done: u64, total: u64);
    /// It ended (finished or failed), before its line of results is printed.
    fn finish(&mut self);
}

/// No progress display.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _name: &str) {}
    fn update(&mut self, _done: u64, _total: u64) {}
    fn finish(&mut self) {}
}

/// The size of a reproduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// The quick defaults (`nequil reproduce`).
    Quick,
    /// Larger sizes, more seeds and longer runs (`--full`).
    Full,
    /// The paper's own settings where it states them, `--full` elsewhere (`--paper`).
    Paper,
}

impl Tier {
    /// The context of one experiment at this tier.
    pub fn ctx(self, jobs: usize) -> Ctx {
        match self {
            Tier::Quick => Ctx::new(false, jobs),
            Tier::Full => Ctx::new(true, jobs),
            Tier::Paper => Ctx::paper(jobs),
        }
    }
}

/// The experiments named in `names`, in catalog order (all when empty). A name is an experiment's
/// full name or a prefix of exactly one (`fig8` for `fig8-convergence`); an unknown or ambiguous
/// name is an error listing the known ones.
pub fn choose(names: &[String]) -> nequil::Result<Vec<Experiment>> {
    let all = catalog();
    let mut wanted: Vec<&str> = vec![];
    for n in names {
        let exact = all.iter().find(|e| e.name == n);
        let prefixed: Vec<&Experiment> = all.iter().filter(|e| e.name.starts_with(n.as_str())).collect();
        let hit = match (exact, prefixed.as_slice()) {
            (Some(e), _) => e.name,
            (None, [e]) => e.name,
            (None, []) => {
                let known: Vec<&str> = all.iter().map(|e| e.name).collect();
                return Err(nequil::Error::Invalid(format!(
                    "unknown experiment `{n}`; known: {}",
                    known.join(", ")
                )));
            }
            (None, many) => {
                let m: Vec<&str> = many.iter().map(|e| e.name).collect();
                return Err(nequil::Error::Invalid(format!(
                    "experiment `{n}` is ambiguous: it starts {}",
                    m.join(", ")
                )));
            }
        };
        wanted.push(hit);
    }
    Ok(all
        .into_iter()
        .filter(|e| wanted.is_empty() || wanted.contains(&e.name))
        .collect())
}

/// A rough estimate of each chosen experiment's wall time in seconds at `tier` on `jobs` cores
/// ([`Plan::estimated_seconds`](crate::experiments::Plan::estimated_seconds)), from its plan
/// (nothing runs).
pub fn estimate(experiments: &[Experiment], tier: Tier, jobs: usize, mnist: Option<&Path>) -> nequil::Result<Vec<f64>> {
    experiments
        .iter()
        .map(|e| {
            let mut ctx = tier.ctx(jobs);
            ctx.mnist = mnist.map(Path::to_path_buf);
            Ok((e.plan)(&ctx)?.estimated_seconds(jobs))
        })
        .collect()
}

/// A duration in seconds for people: `42 s`, `12 min`, `2.3 h`.
pub fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Runs the experiments named in `names` (all when empty; see [`choose`]: an unknown name is an
/// error listing the known ones, before anything runs) into `out` at `tier`; `jobs` worker
/// threads for the independent runs inside an experiment (default: all cores); `mnist` a
/// directory with the MNIST IDX files for fig5-deep-linear. The running experiment's progress
/// goes to `progress`; one line per experiment on stderr unless `quiet`. An experiment that fails
/// is recorded as a failed check (the others still run). Returns the summary of each experiment run, in catalog
/// order; `report.html` covers every experiment with a summary in `out`.
///
/// At [`Tier::Full`] and [`Tier::Paper`] each experiment records its finished runs in
/// `out/<experiment>/runs/` and loads those already there with the same fingerprint instead of
/// running them again ([`record`](crate::experiments::record)), so that a killed run continues
/// where it stopped; the records are kept afterwards. `fresh` deletes an experiment's records
/// before it runs (every run runs again).
pub fn reproduce_into(
    out: &Path,
    names: &[String],
    tier: Tier,
    jobs: Option<usize>,
    mnist: Option<PathBuf>,
    quiet: bool,
    fresh: bool,
    progress: &mut dyn Progress,
) -> nequil::Result<Vec<ExperimentSummary>> {
    let chosen = choose(names)?;
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
    // Bad MNIST files are bad input: refused (exit 2) before anything runs or is written.
    if let Some(dir) = &mnist {
        if chosen.iter().any(|e| e.name == "fig5-deep-linear") {
            crate::experiments::mnist_dataset(dir)?;
        }
    }
    if tier != Tier::Quick && !quiet {
        let est = estimate(&chosen, tier, jobs, mnist.as_deref())?;
        eprintln!(
            "estimated time (rough, {jobs} core{}): {} in all",
            if jobs == 1 { "" } else { "s" },
            human_seconds(est.iter().sum())
        );
        for (e, s) in chosen.iter().zip(&est) {
            eprintln!("    {:<26} {}", e.name, human_seconds(*s));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| nequil::Error::Io(format!("cannot create {}: {e}", out.display())))?;
    let mut summaries = vec![];
    for e in &chosen {
        let mut ctx = tier.ctx(jobs);
        ctx.mnist = mnist.clone();
        let runs_dir = out.join(e.name).join("runs");
        if fresh && runs_dir.exists() {
            std::fs::remove_dir_all(&runs_dir)
                .map_err(|er| nequil::Error::Io(format!("cannot remove {}: {er}", runs_dir.display())))?;
        }
        if tier != Tier::Quick {
            ctx.runs_dir = Some(runs_dir.clone());
        }
        progress.start(e.name);
        let start = Instant::now();
        let result = std::thread::scope(|s| {
            let h = s.spawn(|| e.run(&ctx));
            while !h.is_finished() {
                let (d, t) = ctx.progress();
                progress.update(d.min(t), t);
                std::thread::sleep(Duration::from_millis(100));
            }
            h.join()
        });
        progress.finish();
        let secs = start.elapsed().as_secs_f64();
        let dir = out.join(e.name);
        let result = result.unwrap_or_else(|p| {
            Err(nequil::Error::Numerical(format!(
                "the experiment panicked (a bug): {}",
                nequil::error::panic_message(&*p)
            )))
        });
        match result {
            Ok(o) => {
                let summary = write_outcome(&dir, e, &o, secs)?;
                if !quiet {
                    if o.resumed > 0 {
                        eprintln!(
                            "{}: resumed {} of {} runs from {}",
                            e.name,
                            o.resumed,
                            o.runs,
                            runs_dir.display()
                        );
                    }
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
