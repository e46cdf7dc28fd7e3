//! A plan run by the engine: every run through the training path of `nequil run` and of
//! sweeps, in parallel, each recorded and resumed from its record when the context says where
//! ([`record`]). It sits apart from [`plan`](super::plan), whose types both it and [`record`]
//! use, so that neither of those two imports the other.

use super::common::Ctx;
use super::plan::{Plan, Results, RunResult};
use super::record;
use nequil::core::parallel::par_map_owned;
use nequil::lab::runner::{run_spec_with, Overrides};
use nequil::Error;
use nequil::Result;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs every run of `plan` through [`run_spec_with`] on up to `ctx.jobs` threads and reports
/// progress to `ctx`. A run that diverges or stops is recorded with its error (the checks decide
/// whether that was expected); a spec that cannot be built or a probe that fails is an error of
/// the whole experiment.
///
/// With [`Ctx::runs_dir`] set, each finished run (completed or stopped by a divergence) is
/// written there as a record, and a run whose record is there with the same fingerprint is
/// loaded instead of run ([`record`] describes both): the results are the same
/// bit for bit, and [`Results::resumed`] counts the runs loaded. A record that cannot be written
/// is an error of the experiment.
pub fn simulate(plan: Plan, ctx: &Ctx) -> Result<Results> {
    ctx.set_total(plan.work());
    if let Some(dir) = &ctx.runs_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let loaded = AtomicUsize::new(0);
    let name_error = |name: &str, e: Error| match e {
        Error::Invalid(m) => Error::Invalid(format!("run `{name}`: {m}")),
        Error::Numerical(m) => Error::Numerical(format!("run `{name}`: {m}")),
        e => e,
    };
    let results = par_map_owned(ctx.jobs, plan.into_runs(), |mut r| {
        let total = r.spec.train.steps * r.cost;
        // The record's path and the run's fingerprint, taken before the overrides move out.
        let record = match &ctx.runs_dir {
            Some(dir) => Some((dir.join(record::file_name(&r.name)), record::fingerprint(&r)?)),
            None => None,
        };
        if let Some(rec) = record.as_ref().and_then(|(path, fp)| record::load(path, *fp, &r.name)) {
            let model = r.spec.model.build_model().map_err(|e| name_error(&r.name, e))?;
            ctx.advance(total);
            loaded.fetch_add(1, Ordering::Relaxed);
            return Ok(RunResult {
                name: r.name,
                spec: r.spec,
                model,
                log: rec.log,
                theta: rec.theta,
                steps_done: rec.steps_done,
                error: rec.error,
                summary: rec.summary,
            });
        }
        let mut reported = 0u64;
        let over = Overrides {
            theta0: r.theta0.take(),
            source: r.source.take(),
        };
        let out = run_spec_with(&r.spec, Path::new("."), over, &mut r.probes, &mut |d, _| {
            let w = d * r.cost;
            ctx.advance(w.saturating_sub(reported));
            reported = reported.max(w);
        });
        ctx.advance(total.saturating_sub(reported));
        let (model, out) = out.map_err(|e| name_error(&r.name, e))?;
        // An experiment's instruments are part of its measurement: one that fails fails the
        // experiment (a divergence is recorded, for the checks to judge).
        if let Some(e @ Error::ProbeFailed { .. }) = &out.error {
            return Err(Error::Numerical(format!("run `{}`: {e}", r.name)));
        }
        let mut summary = BTreeMap::new();
        for p in &r.probes {
            for (k, v) in p.summary() {
                if summary.insert(k.clone(), v).is_some() {
                    return Err(Error::Numerical(format!(
                        "run `{}`: two probes report a summary value `{k}`",
                        r.name
                    )));
                }
            }
        }
        let result = RunResult {
            name: r.name,
            spec: r.spec,
            model,
            log: out.log,
            theta: out.theta,
            steps_done: out.steps_done,
            error: out.error,
            summary,
        };
        if let Some((path, fp)) = &record {
            record::save(path, *fp, &result)?;
        }
        Ok(result)
    });
    let mut runs = BTreeMap::new();
    for r in results {
        let r = r?;
        runs.insert(r.name.clone(), r);
    }
    Ok(Results::new(ctx, runs, loaded.into_inner()))
}
