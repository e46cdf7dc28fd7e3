//! Beyond the paper: a rebalanced initialization instead of warmup.
//!
//! The paper explains warmup (Fig. 4, book `theory/sharpness.md#warmup-experiment`): from a sharp
//! initialization SGD's noise first walks the symmetry's orbit to the flatter noise equilibrium,
//! and only then is a large step safe. The solver can make that walk at once
//! ([`nequil::lab::rebalance::rebalance_spec`]): the same function and loss, the noise of every
//! neuron rescaling balanced. This experiment asks whether that makes warmup unnecessary.
//!
//! Subjects: the rank-1 factorization of Fig. 4 (linear [100, 1, 100], y = x + ε, Σ_x = Σ_ε = I,
//! online, S = 10) at η = 0.008, whose Kaiming initialization diverges without warmup; and a ReLU
//! MLP [50, 2, 50] with biases on the same data at η = 0.05, where the same happens. Each runs from
//! Kaiming at the large η (no warmup), with the paper's kind of warmup (a small η for 5000 steps),
//! and from the rebalanced Kaiming initialization at the large η (no warmup), for [`SEEDS`] seeds.
//!
//! Checks (what is derived): the rebalanced initialization has the same loss (relative 1e-12), its
//! noise is balanced, and for the rank-1 net its sharpness is the closed-form equilibrium's
//! (Theorem 5.2 on the same samples). Whether the runs train, their loss against the warmup run's
//! and their stability margin η·λ_max over time are measured and reported as found.

use super::common::{fmt, log_of, mean_se, Check, Ctx};
use super::plan::{base_spec, Details, Plan, PlannedRun, Results, RunResult};
use crate::files::{Figure, Mark, Panel, Role, Series, Style};
use nequil::core::equilibrium::{sharpness_paper, two_layer_equilibrium_empirical, two_layer_factors};
use nequil::core::linalg::Dense;
use nequil::lab::rebalance::{rebalance_spec, RebalanceOptions, SpecRebalance};
use nequil::lab::spec::{instruments::DataChoice, CovSpec, HessianSpec, ModelKind, ScheduleName, Spec, TwoLayerSpec};
use nequil::{Error, Result};
use std::path::Path;

/// Seeds per subject and setting.
const SEEDS: u64 = 4;
/// Steps of the warmup phase.
const SWITCH: u64 = 5000;
/// Samples the rebalancing statistics (and every run's evaluation set) are taken on.
const EVAL: usize = 2048;

fn steps(full: bool) -> u64 {
    if full {
        60_000
    } else {
        20_000
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Subject {
    Rank1,
    Relu,
}

const SUBJECTS: [Subject; 2] = [Subject::Rank1, Subject::Relu];

impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::Rank1 => "rank1",
            Subject::Relu => "relu",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Subject::Rank1 => "rank-1 factorization [100, 1, 100]",
            Subject::Relu => "ReLU MLP [50, 2, 50] with biases",
        }
    }
    /// The large learning rate, and the warmup's small one.
    fn etas(self) -> (f64, f64) {
        match self {
            Subject::Rank1 => (0.008, 0.001),
            Subject::Relu => (0.05, 0.005),
        }
    }
    /// Steps between records of λ_max.
    fn hessian_every(self) -> u64 {
        match self {
            Subject::Rank1 => 250,
            Subject::Relu => 500,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Setting {
    /// Kaiming, the large η from the start.
    Constant,
    /// Kaiming, the small η for [`SWITCH`] steps, then the large one.
    Warmup,
    /// The rebalanced Kaiming initialization, the large η from the start.
    Rebalanced,
}

const SETTINGS: [(Setting, &str); 3] = [
    (Setting::Constant, "kaiming_constant"),
    (Setting::Warmup, "kaiming_warmup"),
    (Setting::Rebalanced, "rebalanced_constant"),
];

fn name(s: Subject, label: &str, seed: u64) -> String {
    format!("{}/{label}/seed={seed}", s.label())
}

/// The spec of a subject and setting (the rebalanced setting's spec is the constant one; its θ₀
/// is set by the plan).
fn spec(s: Subject, setting: Setting, seed: u64, n: u64) -> Spec {
    let mut spec = match s {
        Subject::Rank1 => base_spec(seed, ModelKind::Linear, &[100, 1, 100], n),
        Subject::Relu => {
            let mut sp = base_spec(seed, ModelKind::Mlp, &[50, 2, 50], n);
            sp.model.bias = true;
            sp
        }
    };
    let (eta, small) = s.etas();
    spec.data.noise_cov = Some(CovSpec::Scalar(1.0));
    spec.train.batch_size = 10;
    spec.train.lr = Some(eta);
    if setting == Setting::Warmup {
        spec.train.schedule = ScheduleName::Piecewise;
        spec.train.lr = None;
        spec.train.boundaries = Some(vec![SWITCH]);
        spec.train.values = Some(vec![small, eta]);
    }
    spec.probes.every = Some(100);
    spec.probes.eval_samples = EVAL;
    let data = match s {
        Subject::Rank1 => DataChoice::Population,
        Subject::Relu => DataChoice::Eval,
    };
    if s == Subject::Rank1 {
        spec.probes.sharpness = Some(TwoLayerSpec {
            data: DataChoice::Population,
            ..TwoLayerSpec::default()
        });
    }
    spec.probes.hessian = Some(HessianSpec {
        every: Some(s.hessian_every()),
        trace: false,
        data,
        max_samples: (s == Subject::Relu).then_some(512),
        ..HessianSpec::default()
    });
    spec
}

/// The rebalanced initialization of a subject's seed: the constant setting's spec (its Kaiming
/// draw, its η, S and data) through [`rebalance_spec`].
fn rebalanced(s: Subject, seed: u64, n: u64) -> Result<SpecRebalance> {
    rebalance_spec(
        &spec(s, Setting::Constant, seed, n),
        Path::new("."),
        &RebalanceOptions::default(),
    )
}

/// The plan.
pub fn plan(ctx: &Ctx) -> Result<Plan> {
    let n = steps(ctx.full);
    let mut p = Plan::new();
    for s in SUBJECTS {
        for (setting, label) in SETTINGS {
            for seed in 0..SEEDS {
                let mut run = PlannedRun::new(name(s, label, seed), spec(s, setting, seed, n)).cost(10);
                if setting == Setting::Rebalanced {
                    run = run.theta0(rebalanced(s, seed, n)?.report.theta);
                }
                p.add(run)?;
            }
        }
    }
    Ok(p)
}

fn per_seed<T>(f: impl Fn(u64) -> Result<T>) -> Result<Vec<T>> {
    (0..SEEDS).map(f).collect()
}

/// The paper's sharpness `S = d_y‖W‖² + ‖U‖² Tr Σ_x` (Σ_x = I) of a rank-1 θ.
fn rank1_sharpness(run: &RunResult, theta: &[f64]) -> Result<f64> {
    let chain = run
        .model
        .as_chain()
        .ok_or_else(|| Error::Numerical("rebalanced-init: the rank-1 model is not a chain".into()))?;
    let (u, w) = two_layer_factors(&chain, theta)?;
    Ok(sharpness_paper(&u, &w, &Dense::eye(100)))
}

/// The closed-form (Theorem 5.2) equilibrium's sharpness on the orbit of the Kaiming draw, from
/// the same samples, η and S as the rebalancing, against the rebalanced θ's.
fn rank1_sharpness_pair(r: &Results, seed: u64) -> Result<(f64, f64)> {
    let n = steps(r.full);
    let rb = rebalanced(Subject::Rank1, seed, n)?;
    let run = r.outcome(&name(Subject::Rank1, "rebalanced_constant", seed))?;
    let chain = run
        .model
        .as_chain()
        .ok_or_else(|| Error::Numerical("rebalanced-init: the rank-1 model is not a chain".into()))?;
    let (eta, _) = Subject::Rank1.etas();
    let eq = two_layer_equilibrium_empirical(&chain, &rb.built.theta0, &rb.x, &rb.y, rb.report.n, eta, 10, 0.0)?;
    Ok((
        rank1_sharpness(run, &eq.theta_star)?,
        rank1_sharpness(run, &rb.report.theta)?,
    ))
}

/// The relative change of the loss under rebalancing, and the relative noise imbalance left
/// (Σ_k|Tr[A_kΣ]| over Σ_k of its parts), over the applied neurons.
fn balance(s: Subject, seed: u64, n: u64) -> Result<(f64, f64)> {
    let rb = rebalanced(s, seed, n)?;
    let r = &rb.report;
    let dl = (r.loss_after - r.loss_before).abs() / r.loss_before;
    let t = &r.totals;
    Ok((dl, t.imbalance_after / t.noise_after))
}

/// Mean of a column over the rows at or after `from` (finite values only).
fn mean_from(run: &RunResult, col: &str, from: f64) -> Result<f64> {
    let (st, v) = (run.column("step")?, run.column(col)?);
    let vals: Vec<f64> = st
        .iter()
        .zip(&v)
        .filter(|(s, x)| **s >= from && x.is_finite())
        .map(|p| *p.1)
        .collect();
    Ok(vals.iter().sum::<f64>() / vals.len().max(1) as f64)
}

/// The value of a column at a step (a recorded row), NaN if none.
fn at(run: &RunResult, col: &str, step: u64) -> Result<f64> {
    let (st, v) = (run.column("step")?, run.column(col)?);
    Ok(st
        .iter()
        .zip(&v)
        .find(|(s, x)| **s >= step as f64 && x.is_finite())
        .map_or(f64::NAN, |p| *p.1))
}

/// The checks.
pub fn checks(r: &Results) -> Result<Vec<Check>> {
    let n = steps(r.full);
    let mut checks = vec![];
    for s in SUBJECTS {
        let bal = per_seed(|seed| balance(s, seed, n))?;
        let dl = bal.iter().map(|b| b.0).fold(0.0, f64::max);
        checks.push(Check::at_most(
            &format!(
                "{}: the rebalanced initialization has the loss of the Kaiming draw (largest relative change over {SEEDS} seeds, on the {EVAL} samples of the statistics)",
                s.title()
            ),
            1e-12,
            dl,
            "an exponential symmetry leaves the loss unchanged exactly; what is left is rounding (a few ulps of the loss, ≈ 1e-16 relative)",
        ));
        let imb = bal.iter().map(|b| b.1).fold(0.0, f64::max);
        checks.push(Check::at_most(
            &format!(
                "{}: at the rebalanced initialization every neuron's noise is balanced, Σ|Tr[A_kΣ]| / Σ(Tr[A₊Σ] − Tr[A₋Σ]) (largest over {SEEDS} seeds)",
                s.title()
            ),
            1e-10,
            imb,
            "the solver stops at a relative imbalance of 1e-12 per neuron (γ = 0: the equilibrium is Tr[AΣ] = 0); 1e-10 allows for the recomputation of the statistics at the new point",
        ));
    }
    let pairs = per_seed(|seed| rank1_sharpness_pair(r, seed))?;
    let worst = pairs.iter().map(|(cf, rb)| (rb - cf).abs() / cf).fold(0.0, f64::max);
    checks.push(Check::at_most(
        &format!(
            "rank-1: the sharpness S = d_y‖W‖² + ‖U‖² Tr Σ_x of the rebalanced initialization equals the Theorem 5.2 closed-form equilibrium's on the same orbit and samples (largest relative difference over {SEEDS} seeds; seed 0: {} vs {})",
            fmt(pairs[0].1),
            fmt(pairs[0].0)
        ),
        1e-10,
        worst,
        "two independent computations of one point: the 1-D root of the neuron's noise balance (relative residual 1e-12) and the closed form's eigendecompositions; for hidden width 1 the double rotation is the neuron rescaling, so they must agree to rounding",
    ));
    Ok(checks)
}

/// The figure (seed 0).
pub fn figure(r: &Results) -> Result<Figure> {
    let n = steps(r.full) as f64;
    // Every run is SGD (one colour), told apart by its mark; Kaiming at the large step and with
    // warmup have fig4-warmup's marks.
    let marks = [Mark::Triangle, Mark::Circle, Mark::OpenSquare];
    let legends = [
        "Kaiming, large η (no warmup)",
        "Kaiming, warmup",
        "rebalanced, large η (no warmup)",
    ];
    let mut sharp = vec![];
    let mut loss_panels = vec![];
    let mut margin = vec![Series::new(
        "stability threshold 2 (of GD)",
        Role::Theory,
        Style::Dashed,
        vec![0.0, n],
        vec![2.0, 2.0],
    )];
    for s in SUBJECTS {
        let mut loss = vec![];
        // The loss panels start after step 0: there every run has the same loss (the
        // rebalancing keeps the function), far above the rest, and would set the range; the
        // axis label gives it.
        let mut at_start = vec![];
        for (i, (_, label)) in SETTINGS.iter().enumerate() {
            let run = r.outcome(&name(s, label, 0))?;
            let (st, l) = (run.column("step")?, run.column("loss")?);
            at_start.extend(st.iter().zip(&l).filter(|p| *p.0 == 0.0).map(|p| *p.1));
            let (x, y): (Vec<f64>, Vec<f64>) = st
                .iter()
                .zip(&l)
                .filter(|p| *p.0 > 0.0 && p.1.is_finite() && *p.1 < 1e6)
                .map(|(a, b)| (*a, *b))
                .unzip();
            let diverged = |s: Series| s.with_mark(marks[i]).diverged_at(run.diverged_at(), |s| s as f64);
            loss.push(diverged(Series::new(legends[i], Role::Sgd, Style::Markers, x, y)));
            if s == Subject::Rank1 {
                let sh = run.column("paper_sharpness")?;
                let (x, y): (Vec<f64>, Vec<f64>) = st
                    .iter()
                    .zip(&sh)
                    .take_while(|p| p.1.is_finite() && *p.1 < 1e12)
                    .map(|(a, b)| (*a, *b))
                    .unzip();
                sharp.push(diverged(Series::new(legends[i], Role::Sgd, Style::Markers, x, y)));
            }
            if *label != "kaiming_constant" {
                let (lam, lr) = (run.column("lambda_max")?, run.column("lr")?);
                let (x, y): (Vec<f64>, Vec<f64>) = st
                    .iter()
                    .zip(lam.iter().zip(&lr))
                    .filter(|(_, (l, _))| l.is_finite())
                    .map(|(a, (l, e))| (*a, l * e))
                    .unzip();
                // The second subject in the secondary palette, with the same marks.
                margin.push(
                    Series::new(
                        format!("{}: {}", s.label(), legends[i]),
                        if s == Subject::Rank1 { Role::Sgd } else { Role::Other(3) },
                        Style::Markers,
                        x,
                        y,
                    )
                    .with_mark(marks[i]),
                );
            }
        }
        let (lo, hi) = at_start
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
        let start = if hi - lo <= 1e-9 * hi.abs() {
            fmt(lo)
        } else {
            format!("{} to {}", fmt(lo), fmt(hi))
        };
        loss_panels.push(Panel::xy(
            &format!("loss, {} (seed 0)", s.title()),
            &format!("iteration (from the first record after step 0, where every run's loss is {start})"),
            "loss on the evaluation sample",
            loss,
            false,
            false,
        ));
    }
    sharp.push(Series::new(
        "noise equilibrium at the global minimum, S* = 200",
        Role::Theory,
        Style::Line,
        vec![0.0, n],
        vec![200.0, 200.0],
    ));
    let mut panels = vec![Panel::xy(
        "sharpness, rank-1 factorization (seed 0)",
        "iteration",
        "S(θ) = d_y‖W‖² + ‖U‖² Tr Σ_x (log scale)",
        sharp,
        false,
        true,
    )];
    panels.push(Panel::xy(
        "stability margin (seed 0)",
        "iteration",
        "η·λ_max (scheduled η; log scale)",
        margin,
        false,
        true,
    ));
    panels.extend(loss_panels);
    Ok(Figure {
        title: "A rebalanced initialization instead of warmup".into(),
        columns: 2,
        panels,
    })
}

/// Settings, notes and logs.
pub fn details(r: &Results) -> Result<Details> {
    let n = steps(r.full);
    let mut notes = vec![];
    let mut logs = vec![];
    for s in SUBJECTS {
        let (eta, small) = s.etas();
        let done =
            |label: &str| -> Result<Vec<u64>> { per_seed(|seed| Ok(r.outcome(&name(s, label, seed))?.steps_done)) };
        let trained = |v: &[u64]| v.iter().filter(|d| **d == n).count();
        let (kc, kw, rb) = (
            done("kaiming_constant")?,
            done("kaiming_warmup")?,
            done("rebalanced_constant")?,
        );
        notes.push(format!(
            "{} at η = {eta}: runs that completed {n} steps — Kaiming without warmup {}/{SEEDS} (steps done: {}), Kaiming with warmup ({small} for {SWITCH} steps) {}/{SEEDS}, rebalanced without warmup {}/{SEEDS} (steps done: {}).",
            s.title(),
            trained(&kc),
            kc.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            trained(&kw),
            trained(&rb),
            rb.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
        ));
        // Margins at the start and at the end, the loss early and at the end (seeds that trained).
        let ok = |label: &str| -> Result<Vec<&RunResult>> {
            Ok((0..SEEDS)
                .map(|seed| r.outcome(&name(s, label, seed)))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .filter(|run| run.error.is_none())
                .collect())
        };
        let stat = |runs: &[&RunResult], f: &dyn Fn(&RunResult) -> Result<f64>| -> Result<String> {
            if runs.is_empty() {
                return Ok("—".into());
            }
            let v = runs.iter().map(|run| f(run)).collect::<Result<Vec<f64>>>()?;
            let (m, se) = mean_se(&v);
            Ok(if v.len() > 1 {
                format!("{} ± {}", fmt(m), fmt(se))
            } else {
                fmt(m)
            })
        };
        let (warm, rebal) = (ok("kaiming_warmup")?, ok("rebalanced_constant")?);
        let lam0 = |label: &str| -> Result<String> {
            let v = per_seed(|seed| at(r.outcome(&name(s, label, seed))?, "lambda_max", 0))?;
            let (m, se) = mean_se(&v);
            Ok(format!("{} ± {}", fmt(eta * m), fmt(eta * se)))
        };
        notes.push(format!(
            "{}: stability margin η·λ_max at η = {eta} ({}), mean ± standard error over seeds: at the Kaiming draw {}, at the rebalanced initialization {}; at the end, warmup {}, rebalanced {}.",
            s.title(),
            match s {
                Subject::Rank1 => "population Hessian",
                Subject::Relu => "Hessian of the first 512 evaluation samples",
            },
            lam0("kaiming_warmup")?,
            lam0("rebalanced_constant")?,
            stat(&warm, &|run| Ok(eta * mean_from(run, "lambda_max", 0.75 * n as f64)?))?,
            stat(&rebal, &|run| Ok(eta * mean_from(run, "lambda_max", 0.75 * n as f64)?))?,
        ));
        notes.push(format!(
            "{}: loss on the evaluation sample at step 1000 — warmup {}, rebalanced {}; at step {SWITCH} — warmup {}, rebalanced {}; mean over the last quarter — warmup {}, rebalanced {} (seeds that trained).",
            s.title(),
            stat(&warm, &|run| at(run, "loss", 1000))?,
            stat(&rebal, &|run| at(run, "loss", 1000))?,
            stat(&warm, &|run| at(run, "loss", SWITCH))?,
            stat(&rebal, &|run| at(run, "loss", SWITCH))?,
            stat(&warm, &|run| mean_from(run, "loss", 0.75 * n as f64))?,
            stat(&rebal, &|run| mean_from(run, "loss", 0.75 * n as f64))?,
        ));
        for (_, label) in SETTINGS {
            let run = r.outcome(&name(s, label, 0))?;
            let mut cols = vec!["step", "lr", "loss", "lambda_max"];
            if s == Subject::Rank1 {
                cols.push("paper_sharpness");
            }
            let data: Vec<Vec<f64>> = cols.iter().map(|c| run.column(c)).collect::<Result<_>>()?;
            let rows = (0..data[0].len())
                .map(|i| data.iter().map(|c| c[i]).collect())
                .collect();
            logs.push((format!("{}-{label}", s.label()), log_of(&cols, rows)));
        }
    }
    let pairs = per_seed(|seed| rank1_sharpness_pair(r, seed))?;
    let kaiming_s = per_seed(|seed| {
        at(
            r.outcome(&name(Subject::Rank1, "kaiming_warmup", seed))?,
            "paper_sharpness",
            0,
        )
    })?;
    notes.push(format!(
        "rank-1 sharpness S at the Kaiming draw {} against {} at its rebalanced point (mean over seeds); the noise equilibrium at the global minimum has S* = 200: rebalancing flattens the initialization on its own orbit, it does not move it toward the minimum.",
        fmt(mean_se(&kaiming_s).0),
        fmt(mean_se(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).0)
    ));
    Ok(Details {
        settings: vec![
            ("rank-1".into(), "linear [100, 1, 100], Kaiming fan-in init (U ~ N(0, 1), W ~ N(0, 1/100)); η = 0.008, warmup 0.001 for 5000 steps".into()),
            ("ReLU".into(), "MLP [50, 2, 50], ReLU, biases, Kaiming fan-in init; η = 0.05, warmup 0.005 for 5000 steps".into()),
            ("data".into(), "online, x ~ N(0, I), y = x + ε, ε ~ N(0, I); S = 10; γ = 0".into()),
            ("rebalancing".into(), format!("nequil rebalance on the run's {EVAL}-sample evaluation set at the large η and S = 10 (continuous time): every neuron rescaling at its noise equilibrium")),
            ("steps".into(), format!("{n} per run; {SEEDS} seeds per subject and setting")),
            ("λ_max".into(), "Lanczos on exact Hessian-vector products; rank-1: population Hessian every 250 steps; ReLU: the first 512 evaluation samples every 500 steps".into()),
        ],
        notes,
        logs,
    })
}
