//! Resuming an experiment from the records of its finished runs ([`Ctx::runs_dir`]): a second
//! simulation of the same plan loads every run and gets the same results bit for bit (log, θ,
//! probe summaries, updates done, the divergence); a run whose spec changed, or whose record was
//! cut short, runs again; a record for a run the plan does not have is ignored.

use nequil::core::data::{Dataset, Source};
use nequil::lab::spec::ModelKind;
use nequil::train::{Probe, ProbeCtx};
use nequil_paper::experiments::plan::base_spec;
use nequil_paper::experiments::record::file_name;
use nequil_paper::experiments::{simulate, Ctx, Plan, PlannedRun, Results, RunResult};
use std::path::{Path, PathBuf};

/// A probe whose column is NaN on every other row and whose summary sums θ₀ over the rows (a
/// value that depends on the whole run) and carries the non-finite values a record must keep.
struct Odd {
    rows: u64,
    sum: f64,
}

impl Probe for Odd {
    fn columns(&self) -> Vec<String> {
        vec!["odd".into()]
    }
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> nequil::Result<()> {
        self.rows += 1;
        self.sum += ctx.theta[0];
        out.push(if self.rows.is_multiple_of(2) {
            f64::NAN
        } else {
            ctx.theta[0]
        });
        Ok(())
    }
    fn summary(&self) -> Vec<(String, Vec<f64>)> {
        vec![
            ("odd.sum".into(), vec![self.sum]),
            (
                "odd.special".into(),
                vec![f64::NAN, f64::NEG_INFINITY, -0.0, self.rows as f64],
            ),
        ]
    }
}

const OK: &str = "sgd/eta=0.01";
const DIVERGES: &str = "sgd/eta=5";
const FIXED: &str = "fixed data%16";

/// Three runs of a 3→3 linear net: one with the probe, one that diverges (η = 5 on unit-variance
/// inputs), one on a fixed data set of 16 samples from a given θ₀. `lr_ok` is the first run's η.
fn plan(lr_ok: f64) -> Plan {
    let mut p = Plan::new();
    let mut s = base_spec(1, ModelKind::Linear, &[3, 3], 400);
    s.train.lr = Some(lr_ok);
    p.add(PlannedRun::new(OK, s).probe(Odd { rows: 0, sum: 0.0 })).unwrap();
    let mut s = base_spec(2, ModelKind::Linear, &[3, 3], 400);
    s.train.lr = Some(5.0);
    p.add(PlannedRun::new(DIVERGES, s)).unwrap();
    let mut s = base_spec(3, ModelKind::Linear, &[3, 3], 300);
    s.data.target = nequil::lab::spec::TargetKind::Linear;
    let n = 16;
    let x: Vec<f64> = (0..n * 3).map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0).collect();
    let y: Vec<f64> = x.iter().map(|v| 0.5 * v).collect();
    let data = Dataset::new(n, 3, 3, x, y).unwrap();
    p.add(
        PlannedRun::new(FIXED, s)
            .theta0(vec![0.1, 0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0, 0.3])
            .source(Source::Fixed {
                data,
                replacement: true,
                dist: None,
            })
            .cost(16),
    )
    .unwrap();
    p
}

fn simulate_in(dir: &Path, lr_ok: f64) -> (Results, Ctx) {
    let mut ctx = Ctx::new(false, 2);
    ctx.runs_dir = Some(dir.to_path_buf());
    let r = simulate(plan(lr_ok), &ctx).unwrap();
    (r, ctx)
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The two results of a run are the same bit for bit.
fn assert_same(a: &RunResult, b: &RunResult) {
    let n = &a.name;
    assert_eq!(a.name, b.name);
    assert_eq!(a.spec, b.spec, "{n}: spec");
    assert_eq!(a.model.n_params(), b.model.n_params(), "{n}: model");
    assert_eq!(a.log.columns, b.log.columns, "{n}: columns");
    assert_eq!(a.log.rows.len(), b.log.rows.len(), "{n}: rows");
    for (i, (ra, rb)) in a.log.rows.iter().zip(&b.log.rows).enumerate() {
        assert_eq!(bits(ra), bits(rb), "{n}: log row {i}");
    }
    assert_eq!(bits(&a.theta), bits(&b.theta), "{n}: θ");
    assert_eq!(a.steps_done, b.steps_done, "{n}: steps done");
    assert_eq!(a.error, b.error, "{n}: error");
    assert_eq!(a.diverged_at(), b.diverged_at(), "{n}: divergence");
    assert_eq!(
        a.summary.keys().collect::<Vec<_>>(),
        b.summary.keys().collect::<Vec<_>>(),
        "{n}: summary names"
    );
    for (k, v) in &a.summary {
        assert_eq!(bits(v), bits(&b.summary[k]), "{n}: summary {k}");
    }
}

fn assert_all_same(a: &Results, b: &Results) {
    assert_eq!(a.len(), b.len());
    for r in a.runs() {
        assert_same(r, b.outcome(&r.name).unwrap());
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nequil-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_second_simulation_loads_every_run_bit_for_bit() {
    let dir = scratch("plan");
    // The plan does what the test needs: a divergence, a NaN in a log, a probe summary.
    let reference = simulate(plan(0.01), &Ctx::new(false, 1)).unwrap();
    assert_eq!(reference.resumed(), 0);
    assert!(reference.outcome(DIVERGES).unwrap().diverged_at().is_some());
    assert!(reference.outcome(OK).unwrap().error.is_none());
    assert!(reference.outcome(FIXED).unwrap().error.is_none());
    let ok = reference.outcome(OK).unwrap();
    assert!(ok.column("odd").unwrap().iter().any(|v| v.is_nan()));
    assert!(ok.value("odd.sum").unwrap().is_finite());
    assert!(!dir.exists(), "nothing is written without a runs directory");

    let (first, _) = simulate_in(&dir, 0.01);
    assert_eq!(first.resumed(), 0);
    assert_all_same(&reference, &first);
    for name in [OK, DIVERGES, FIXED] {
        assert!(dir.join(file_name(name)).is_file(), "{name} recorded");
    }

    // Everything loaded, the same bit for bit, and the progress counter full.
    let (second, ctx) = simulate_in(&dir, 0.01);
    assert_eq!(second.resumed(), 3);
    assert_all_same(&reference, &second);
    let (done, total) = ctx.progress();
    assert_eq!(done, total, "a loaded run counts its whole work");

    // A record for a run the plan does not have (a copy of a real one, and garbage) is ignored.
    std::fs::copy(dir.join(file_name(OK)), dir.join(file_name("not/in/plan"))).unwrap();
    std::fs::write(dir.join(file_name("junk")), "{").unwrap();
    // A changed spec changes the fingerprint: that run runs again, the others load.
    let (changed, _) = simulate_in(&dir, 0.02);
    assert_eq!(changed.resumed(), 2);
    let fresh = simulate(plan(0.02), &Ctx::new(false, 1)).unwrap();
    assert_all_same(&fresh, &changed);
    assert_ne!(
        bits(&changed.outcome(OK).unwrap().theta),
        bits(&reference.outcome(OK).unwrap().theta),
        "η changed the run"
    );

    // A record cut short (a file damaged after a kill) is run again, without an error; so is the
    // record that now belongs to η = 0.02.
    let p = dir.join(file_name(FIXED));
    let text = std::fs::read(&p).unwrap();
    std::fs::write(&p, &text[..text.len() / 2]).unwrap();
    let (repaired, _) = simulate_in(&dir, 0.01);
    assert_eq!(repaired.resumed(), 1, "only the diverged run's record still fits");
    assert_all_same(&reference, &repaired);
    let (again, _) = simulate_in(&dir, 0.01);
    assert_eq!(again.resumed(), 3, "the reruns rewrote their records");
    assert_all_same(&reference, &again);
    std::fs::remove_dir_all(&dir).unwrap();
}
