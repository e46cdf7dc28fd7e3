//! Beyond the paper (b): the weights feeding a LayerNorm. With `ε = 0` the normalization gives
//! the same output when its whole input is scaled, so the parameters `θ_0 = (W, b)` of the layer
//! before it are scale invariant (catalog `scale.0`, `A = I` on them): every per-sample gradient
//! is orthogonal to `θ_0`, and one step changes `C = ‖θ_0‖²` by exactly
//! `C' = (1 − 2ηγ)² C + η²‖ĝ_0‖²` (the law Net-A and Net-B obey in Fig. 7).
//!
//! * Without weight decay (γ = 0) the norm never decreases under SGD, at every update.
//! * With weight decay it settles where the expected change vanishes. On the orbit `θ_0 → e^λθ_0`
//!   the gradient scales as `e^{−λ}`, so `E[ΔC] = −κC + η²q` with `κ = 4ηγ − 4η²γ²` and
//!   `q = ‖∇_0L‖² + Tr[Σ_0]/S` gives the equilibrium `C* = η √(qC/κ)` on the current orbit (the
//!   charge probe's discrete `C_star`). Stationarity makes `κ·mean(C) = η²·mean(q)` exact in
//!   expectation, i.e. `mean(C) = mean(C*²/C)`; `mean(C*)` differs from it only by the
//!   fluctuations of `C*/C` (second order), which the check measures and adds to its tolerance.
//!
//! Setting: x ~ N(0, I₈), `N` = 512 fixed samples, a random teacher of the same architecture plus
//! label noise; SGD with S = 1 on them, so Σ computed on the samples is SGD's exact noise.

use super::common::{fmt, log_of, mean_se, tail_batch_mean, Check, Ctx};
use super::plan::{sequential_spec, Details, Plan, PlannedRun, Results, RunResult};
use crate::files::{Figure, Panel, Role, Series, Style};
use nequil::core::layers::{LayerNormConfig, LinearConfig, ReluConfig};
use nequil::core::symmetry::catalog::catalog_symmetry;
use nequil::instruments::{ChargeProbe, StepChargeProbe};
use nequil::lab::spec::{CovSpec, DataMode, LayerSpec, Spec, TargetKind};
use nequil::Result;

const D: usize = 8;
const H: usize = 16;
const N: usize = 512;
const NOISE: f64 = 0.25;
const ETA: f64 = 0.02;
/// Weight decay of the second regime.
const GAMMA: f64 = 0.01;
/// The scale-invariant block's symmetry in the catalog.
const SYM: &str = "scale.0";
/// Fraction of the run averaged over, and its batch means.
const TAIL: f64 = 0.5;
const BATCHES: usize = 10;

/// (seeds, steps).
fn sizes(full: bool) -> (u64, u64) {
    if full {
        (16, 200_000)
    } else {
        (8, 50_000)
    }
}

fn layers() -> Vec<LayerSpec> {
    vec![
        LayerSpec::Linear(LinearConfig {
            out_features: H,
            bias: true,
        }),
        LayerSpec::LayerNorm(LayerNormConfig { eps: 0.0, affine: true }),
        LayerSpec::Relu(ReluConfig {}),
        LayerSpec::Linear(LinearConfig {
            out_features: 1,
            bias: true,
        }),
    ]
}

fn name(gamma: f64, seed: u64) -> String {
    format!("gamma={gamma}/seed={seed}")
}

fn spec(seed: u64, gamma: f64, full: bool) -> Spec {
    let (_, steps) = sizes(full);
    let mut s = sequential_spec(seed, &[D], layers(), steps);
    s.data.target = TargetKind::ModelTeacher;
    s.data.noise_cov = Some(CovSpec::Scalar(NOISE));
    s.data.mode = DataMode::Fixed;
    s.data.n = Some(N);
    s.train.lr = Some(ETA);
    s.train.weight_decay = gamma;
    s.probes.every = Some((steps / 500).max(1));
    s
}

/// The plan: γ = 0 and γ = [`GAMMA`], each seed from the same initialization and data.
pub fn plan(ctx: &Ctx) -> Result<Plan> {
    let (seeds, _) = sizes(ctx.full);
    let mut p = Plan::new();
    for gamma in [0.0, GAMMA] {
        for seed in 0..seeds {
            let s = spec(seed, gamma, ctx.full);
            let model = s.model.build_model()?;
            let sym = catalog_symmetry(&model, SYM)?;
            p.add(
                PlannedRun::new(name(gamma, seed), s)
                    .probe(StepChargeProbe::new(vec![(SYM.into(), sym.generator.clone())])?)
                    .probe(ChargeProbe::new(vec![sym]).discrete()),
            )?;
        }
    }
    Ok(p)
}

fn col(run: &RunResult, c: &str) -> Result<Vec<f64>> {
    run.column(&format!("{SYM}/{c}"))
}

/// One weight-decay run's tail: time-averages of C, C* and C*²/C with batch-means standard errors.
struct Tail {
    c: (f64, f64),
    c_star: (f64, f64),
    exact: (f64, f64),
    /// C at the start of the run.
    c0: f64,
}

fn tail(run: &RunResult) -> Result<Tail> {
    let (c, cs) = (col(run, "C")?, col(run, "C_star")?);
    let exact: Vec<f64> = c.iter().zip(&cs).map(|(a, b)| b * b / a).collect();
    Ok(Tail {
        c: tail_batch_mean(&c, TAIL, BATCHES),
        c_star: tail_batch_mean(&cs, TAIL, BATCHES),
        exact: tail_batch_mean(&exact, TAIL, BATCHES),
        c0: c[0],
    })
}

fn worst(r: &Results, gammas: &[f64], key: &str, largest: bool) -> Result<f64> {
    let (seeds, _) = sizes(r.full);
    let mut out = if largest { f64::NEG_INFINITY } else { f64::INFINITY };
    for &g in gammas {
        for seed in 0..seeds {
            let v = r.run(&name(g, seed))?.value(&format!("{SYM}/{key}"))?;
            out = if largest { out.max(v) } else { out.min(v) };
        }
    }
    Ok(out)
}

/// The checks.
pub fn checks(r: &Results) -> Result<Vec<Check>> {
    let (seeds, _) = sizes(r.full);
    let rounding = 8.0 * f64::EPSILON;
    let growth: Vec<f64> = (0..seeds)
        .map(|s| {
            let c = col(r.run(&name(0.0, s))?, "C")?;
            Ok(c[c.len() - 1] / c[0] - 1.0)
        })
        .collect::<Result<_>>()?;
    let (mgr, segr) = mean_se(&growth);
    let tails: Vec<Tail> = (0..seeds)
        .map(|s| tail(r.run(&name(GAMMA, s))?))
        .collect::<Result<_>>()?;
    // Per seed: mean(C)/mean(C*) − 1 and mean(C)/mean(C*²/C) − 1; the scatter over seeds is
    // the noise, the gap between the two predictions the second-order term.
    let rel: Vec<f64> = tails.iter().map(|t| t.c.0 / t.c_star.0 - 1.0).collect();
    let rel_exact: Vec<f64> = tails.iter().map(|t| t.c.0 / t.exact.0 - 1.0).collect();
    let second: f64 = tails
        .iter()
        .map(|t| ((t.exact.0 - t.c_star.0) / t.c_star.0).abs())
        .fold(0.0, f64::max);
    let (mr, ser) = mean_se(&rel);
    let (me, see) = mean_se(&rel_exact);
    let moved: f64 = tails
        .iter()
        .map(|t| (t.c0 - t.c.0).abs() / t.c.1)
        .fold(f64::INFINITY, f64::min);
    let mean_c = tails.iter().map(|t| t.c.0).sum::<f64>() / seeds as f64;
    let mean_cs = tails.iter().map(|t| t.c_star.0).sum::<f64>() / seeds as f64;
    let pct = (TAIL * 100.0) as u32;
    Ok(vec![
        Check::at_least(
            "γ = 0: the squared norm of the weights feeding the LayerNorm never decreases under SGD (min relative change per update, all seeds)",
            -rounding,
            worst(r, &[0.0], "min_rel_change", false)?,
            "exact: every per-sample gradient is orthogonal to θ₀ (ε = 0 scale invariance), so Δ‖θ₀‖² = η²‖ĝ₀‖² ≥ 0; 8 machine epsilons of rounding",
        ),
        Check::at_most(
            "Exact identity ‖θ₀'‖² = (1 − 2ηγ)²‖θ₀‖² + η²‖ĝ₀‖² at every update (max error relative to ‖θ‖², γ = 0 and γ > 0, all seeds)",
            1e-12,
            worst(r, &[0.0, GAMMA], "max_identity_error", true)?,
            "float rounding",
        ),
        Check::at_least(
            "γ = 0: SGD's noise grows the norm: mean growth of ‖θ₀‖²/‖θ₀(0)‖² over its standard error",
            3.0,
            mgr / segr,
            &format!(
                "k = 3 standard errors over {seeds} seeds (growth {} ± {}); with label noise the gradient noise never vanishes",
                fmt(mgr),
                fmt(segr)
            ),
        ),
        Check::close(
            &format!("γ = {GAMMA}: the norm settles at the predicted equilibrium: time-averaged ‖θ₀‖² over time-averaged C* − 1 (mean over seeds)"),
            0.0,
            mr,
            3.0 * ser + second,
            &format!(
                "C* = η√(qC/κ) is the charge probe's discrete-time equilibrium on the current orbit; both averaged over the last {pct}% of the run (mean ‖θ₀‖² {}, mean C* {}). Tolerance: 3 standard errors over {seeds} seeds ({}) plus the largest second-order gap |mean(C*²/C) − mean(C*)|/mean(C*) between the exact stationarity condition and mean(C*) ({})",
                fmt(mean_c),
                fmt(mean_cs),
                fmt(3.0 * ser),
                fmt(second)
            ),
        ),
        Check::close(
            &format!("γ = {GAMMA}: exact stationarity κ·mean(C) = η²·mean(q): time-averaged ‖θ₀‖² over time-averaged C*²/C − 1 (mean over seeds)"),
            0.0,
            me,
            3.0 * see,
            &format!("k = 3 standard errors over {seeds} seeds: the expected change per step vanishes on average once C is stationary, exactly (no small-η approximation)"),
        ),
        Check::at_least(
            &format!("γ = {GAMMA}: the norm moved to its equilibrium from the initialization: |‖θ₀(0)‖² − time-averaged ‖θ₀‖²| over the tail's standard error (smallest over seeds)"),
            3.0,
            moved,
            &format!("k = 3 batch-means standard errors ({BATCHES} batches of the last {pct}%)"),
        ),
    ])
}

/// The figure.
pub fn figure(r: &Results) -> Result<Figure> {
    let (seeds, _) = sizes(r.full);
    let mut free = vec![];
    for s in 0..seeds {
        let run = r.run(&name(0.0, s))?;
        free.push(Series::new(
            format!("seed {s}"),
            if s == 0 { Role::Sgd } else { Role::Other(s as u8) },
            Style::Line,
            run.column("t")?,
            col(run, "C")?,
        ));
    }
    let run = r.run(&name(GAMMA, 0))?;
    let t = run.column("t")?;
    let (c, cs) = (col(run, "C")?, col(run, "C_star")?);
    let t0 = tail(run)?;
    let t_end = t[t.len() - 1];
    let wd = vec![
        Series::new(
            "C* on the current orbit (discrete time)",
            Role::Theory,
            Style::Markers,
            t.clone(),
            cs,
        ),
        Series::new("SGD ‖θ₀‖²", Role::SgdWd, Style::Line, t.clone(), c),
        Series::new(
            "tail average of C*",
            Role::Other(3),
            Style::Dashed,
            vec![t_end * (1.0 - TAIL), t_end],
            vec![t0.c_star.0, t0.c_star.0],
        ),
    ];
    let tails: Vec<Tail> = (0..seeds)
        .map(|s| tail(r.run(&name(GAMMA, s))?))
        .collect::<Result<_>>()?;
    let xs: Vec<f64> = tails.iter().map(|t| t.c_star.0).collect();
    let ys: Vec<f64> = tails.iter().map(|t| t.c.0).collect();
    let lo = xs.iter().chain(&ys).cloned().fold(f64::INFINITY, f64::min) * 0.95;
    let hi = xs.iter().chain(&ys).cloned().fold(0.0, f64::max) * 1.05;
    Ok(Figure {
        title: "Beyond the paper (b): the weights feeding a LayerNorm (ε = 0) under SGD".into(),
        columns: 3,
        panels: vec![
            Panel::xy(
                "γ = 0: ‖θ₀‖² never decreases (every seed)",
                "t = η · steps",
                "‖θ₀‖² (weights and bias feeding the LayerNorm)",
                free,
                false,
                false,
            ),
            Panel::xy(
                &format!("γ = {GAMMA}: ‖θ₀‖² settles at the noise equilibrium (seed 0)"),
                "t = η · steps",
                "‖θ₀‖²",
                wd,
                false,
                true,
            ),
            Panel::xy(
                "time averages over the tail, every seed",
                "mean C* (prediction)",
                "mean ‖θ₀‖² (SGD)",
                vec![
                    Series::new("y = x", Role::Theory, Style::Line, vec![lo, hi], vec![lo, hi]),
                    Series::new("seeds", Role::SgdWd, Style::Markers, xs, ys),
                ],
                false,
                false,
            ),
        ],
    })
}

/// Settings, notes and logs.
pub fn details(r: &Results) -> Result<Details> {
    let (seeds, steps) = sizes(r.full);
    let mut rows = vec![];
    for s in 0..seeds {
        let t = tail(r.run(&name(GAMMA, s))?)?;
        rows.push(vec![
            s as f64, t.c0, t.c.0, t.c.1, t.c_star.0, t.c_star.1, t.exact.0, t.exact.1,
        ]);
    }
    let mut logs = vec![(
        "weight_decay_tails".to_string(),
        log_of(
            &[
                "seed",
                "c_initial",
                "c_tail",
                "c_tail_se",
                "c_star_tail",
                "c_star_tail_se",
                "c_star2_over_c_tail",
                "c_star2_over_c_tail_se",
            ],
            rows,
        ),
    )];
    for gamma in [0.0, GAMMA] {
        let run = r.run(&name(gamma, 0))?;
        let cols = ["t", "loss", "scale.0/C", "scale.0/C_star", "scale.0/tr_a_sigma"];
        let data: Vec<Vec<f64>> = cols.iter().map(|c| run.column(c)).collect::<Result<_>>()?;
        let rows = (0..data[0].len())
            .map(|j| data.iter().map(|c| c[j]).collect())
            .collect();
        logs.push((
            format!("gamma_{gamma}_seed0"),
            log_of(&["t", "loss", "norm2_theta0", "c_star", "tr_sigma0"], rows),
        ));
    }
    Ok(Details {
        settings: vec![
            (
                "model".into(),
                format!("input [{D}] → linear {H} (bias) → LayerNorm (ε = 0, affine) → ReLU → linear 1; Kaiming init; θ₀ = (0.weight, 0.bias), catalog `{SYM}`"),
            ),
            (
                "data".into(),
                format!("N = {N} fixed samples, x ~ N(0, I₈), y = f(x; θ_T) + ε with a random teacher of the same architecture (data.target = \"model-teacher\"), Var ε = {NOISE}"),
            ),
            (
                "SGD".into(),
                format!("S = 1 from the N samples (with replacement), η = {ETA}, {steps} steps; γ = 0 and γ = {GAMMA} (weight decay on every parameter)"),
            ),
            ("seeds".into(), format!("{seeds} per γ; the two regimes share each seed's teacher, data and initialization")),
            (
                "averages".into(),
                format!("last {}% of each run, standard errors from {BATCHES} batch means; the relaxation time of ‖θ₀‖² near the equilibrium is 1/(8γ) = {} in t", (TAIL * 100.0) as u32, fmt(1.0 / (8.0 * GAMMA))),
            ),
        ],
        notes: vec![
            "The exact law needs ε = 0: with PyTorch's default ε = 10⁻⁵ the block is only approximately scale invariant and the catalog does not list the symmetry.".into(),
        ],
        logs,
    })
}
