//! Fig. 7 (Appendix A.1): the scale-invariant two-layer tanh nets Net-A (global scale invariance)
//! and Net-B (each layer scale invariant) under SGD and GD. With γ = 0 an update adds exactly
//! η²‖ĝ_A‖² to each invariant charge: the total ‖θ‖² for both nets, and ‖W‖², ‖U‖² separately for
//! Net-B. Net-A's layer norms are not charges and may move either way.
//!
//! Settings (the paper says only "simple linear Gaussian data"): x ~ N(0, I₈), y = V x + ε with a
//! random teacher V ∈ ℝ^{1×8} drawn from the seed, Var ε = 0.1; widths [8, 16, 1], Kaiming init;
//! SGD S = 1 online, GD on 500 fixed samples; η = 0.05. Every run has [`SEEDS`] seeds.

use super::common::{fmt, log_of, mean_se, ones_on, Check, Ctx};
use super::plan::{base_spec, full_batch, Details, Plan, PlannedRun, Results};
use crate::files::{Figure, Mark, Panel, Role, Series, Style};
use nequil::instruments::StepChargeProbe;
use nequil::lab::spec::{CovSpec, ModelKind, TargetKind};
use nequil::Result;

const D: usize = 8;
const H: usize = 16;
const ETA: f64 = 0.05;
/// Seeds per run (teacher, data, initialization and batches).
const SEEDS: u64 = 3;
const NETS: [(&str, ModelKind); 2] = [("Net-A", ModelKind::NetA), ("Net-B", ModelKind::NetB)];

fn steps(full: bool) -> u64 {
    if full {
        40_000
    } else {
        10_000
    }
}

fn name(net: &str, gd: bool, seed: u64) -> String {
    format!("{net}/{}/seed={seed}", if gd { "gd" } else { "sgd" })
}

/// The plan.
pub fn plan(ctx: &Ctx) -> Result<Plan> {
    let mut p = Plan::new();
    let n = steps(ctx.full);
    let nw = D * H;
    let np = nw + H;
    for (net, kind) in NETS {
        for gd in [false, true] {
            for seed in 0..SEEDS {
                let mut s = base_spec(seed, kind, &[D, H, 1], n);
                s.data.target = TargetKind::Linear;
                s.data.noise_cov = Some(CovSpec::Scalar(0.1));
                s.train.lr = Some(ETA);
                if gd {
                    full_batch(&mut s, 500);
                }
                s.probes.every = Some((n / 300).max(1));
                s.probes.eval_samples = 256;
                let probe = StepChargeProbe::new(vec![
                    ("total".into(), ones_on(np, 0..np)),
                    ("W".into(), ones_on(np, 0..nw)),
                    ("U".into(), ones_on(np, nw..np)),
                ])?;
                p.add(
                    PlannedRun::new(name(net, gd, seed), s)
                        .probe(probe)
                        .cost(if gd { 500 } else { 1 }),
                )?;
            }
        }
    }
    Ok(p)
}

/// Growth of the total norm ‖θ_end‖²/‖θ₀‖² − 1, one value per seed.
fn growths(r: &Results, net: &str, gd: bool) -> Result<Vec<f64>> {
    (0..SEEDS)
        .map(|seed| {
            let run = r.run(&name(net, gd, seed))?;
            let total = |i: usize| -> Result<f64> {
                Ok(run.column("norm2.layers.0.weight")?[i] + run.column("norm2.layers.1.weight")?[i])
            };
            let last = run.log.rows.len() - 1;
            Ok(total(last)? / total(0)? - 1.0)
        })
        .collect()
}

fn worst(r: &Results, net: &str, gd: &[bool], key: &str, largest: bool) -> Result<f64> {
    let mut out = if largest { f64::NEG_INFINITY } else { f64::INFINITY };
    for &g in gd {
        for seed in 0..SEEDS {
            let v = r.run(&name(net, g, seed))?.value(key)?;
            out = if largest { out.max(v) } else { out.min(v) };
        }
    }
    Ok(out)
}

/// The checks.
pub fn checks(r: &Results) -> Result<Vec<Check>> {
    let rounding = 8.0 * f64::EPSILON;
    let mut checks = vec![];
    for (net, _) in NETS {
        checks.push(Check::at_least(
            &format!("{net}, SGD: the total norm ‖θ‖² never decreases (min relative step change, all seeds)"),
            -rounding,
            worst(r, net, &[false], "total/min_rel_change", false)?,
            "exact: Δ‖θ‖² = η²‖ĝ‖² ≥ 0; 8 machine epsilons of rounding",
        ));
        let (ms, ses) = mean_se(&growths(r, net, false)?);
        let (mg, seg) = mean_se(&growths(r, net, true)?);
        checks.push(Check::at_least(
            &format!("{net}: SGD grows ‖θ‖² more than GD: (mean SGD growth − mean GD growth) over its standard error"),
            3.0,
            (ms - mg) / (ses * ses + seg * seg).sqrt(),
            &format!(
                "3 standard errors over {SEEDS} seeds (growth of ‖θ‖²/‖θ₀‖²: SGD {} ± {}, GD {} ± {}): GD's growth η∫‖∇L‖²dt vanishes at a minimum, SGD's includes the gradient noise",
                fmt(ms),
                fmt(ses),
                fmt(mg),
                fmt(seg)
            ),
        ));
        checks.push(Check::at_most(
            &format!("{net}: exact identity Δ‖θ‖² = η²‖ĝ‖² at every step (max error relative to ‖θ‖², SGD and GD, all seeds)"),
            1e-12,
            worst(r, net, &[false, true], "total/max_identity_error", true)?,
            "float rounding",
        ));
    }
    checks.push(Check::at_least(
        "Net-B, SGD: ‖W‖² and ‖U‖² each never decrease (min relative step change of either, all seeds)",
        -rounding,
        worst(r, "Net-B", &[false], "W/min_rel_change", false)?.min(worst(
            r,
            "Net-B",
            &[false],
            "U/min_rel_change",
            false,
        )?),
        "exact: each layer is a separate scale symmetry, Δ‖W‖² = η²‖ĝ_W‖², Δ‖U‖² = η²‖ĝ_U‖²",
    ));
    checks.push(Check::at_most(
        "Net-B: exact identities Δ‖W‖² = η²‖ĝ_W‖² and Δ‖U‖² = η²‖ĝ_U‖² at every step (max error relative to ‖θ‖², SGD and GD)",
        1e-12,
        worst(r, "Net-B", &[false, true], "W/max_identity_error", true)?.max(worst(
            r,
            "Net-B",
            &[false, true],
            "U/max_identity_error",
            true,
        )?),
        "float rounding",
    ));
    Ok(checks)
}

/// The figure (seed 0).
pub fn figure(r: &Results) -> Result<Figure> {
    let mut panels = vec![];
    for (net, _) in NETS {
        let (sgd, gd) = (r.run(&name(net, false, 0))?, r.run(&name(net, true, 0))?);
        let tot = |run: &super::plan::RunResult| -> Result<Vec<f64>> {
            let w = run.column("norm2.layers.0.weight")?;
            let u = run.column("norm2.layers.1.weight")?;
            Ok(w.iter().zip(&u).map(|(a, b)| a + b).collect())
        };
        panels.push(Panel::xy(
            &format!("{net}: total norm"),
            "t = η · steps",
            "‖θ‖²",
            vec![
                Series::new("SGD", Role::Sgd, Style::Markers, sgd.column("t")?, tot(sgd)?),
                Series::new("GD", Role::Gd, Style::Markers, gd.column("t")?, tot(gd)?),
            ],
            false,
            false,
        ));
        panels.push(Panel::xy(
            &format!("{net}: layer norms"),
            "t = η · steps",
            "squared Frobenius norm",
            vec![
                Series::new(
                    "SGD ‖W‖² (1st layer)",
                    Role::Sgd,
                    Style::Markers,
                    sgd.column("t")?,
                    sgd.column("norm2.layers.0.weight")?,
                ),
                Series::new(
                    "SGD ‖U‖² (2nd layer)",
                    Role::Sgd,
                    Style::Markers,
                    sgd.column("t")?,
                    sgd.column("norm2.layers.1.weight")?,
                )
                .with_mark(Mark::OpenSquare),
                Series::new(
                    "GD ‖W‖²",
                    Role::Gd,
                    Style::Markers,
                    gd.column("t")?,
                    gd.column("norm2.layers.0.weight")?,
                ),
                Series::new(
                    "GD ‖U‖²",
                    Role::Gd,
                    Style::Markers,
                    gd.column("t")?,
                    gd.column("norm2.layers.1.weight")?,
                )
                .with_mark(Mark::OpenSquare),
            ],
            false,
            false,
        ));
    }
    Ok(Figure {
        title: "Fig. 7: Net-A and Net-B norms under SGD and GD".into(),
        columns: 2,
        panels,
    })
}

/// Settings, notes and logs.
pub fn details(r: &Results) -> Result<Details> {
    let mut logs = vec![];
    let mut notes = vec![];
    for (net, _) in NETS {
        for gd in [false, true] {
            let run = r.run(&name(net, gd, 0))?;
            let cols = ["t", "norm2.layers.0.weight", "norm2.layers.1.weight"];
            let data: Vec<Vec<f64>> = cols.iter().map(|c| run.column(c)).collect::<Result<_>>()?;
            let rows = (0..data[0].len())
                .map(|j| data.iter().map(|c| c[j]).collect())
                .collect();
            let file = format!(
                "{}_{}",
                net.to_lowercase().replace('-', "_"),
                if gd { "gd" } else { "sgd" }
            );
            logs.push((file, log_of(&["t", "norm2_w", "norm2_u"], rows)));
        }
        let (ms, ses) = mean_se(&growths(r, net, false)?);
        let (mg, seg) = mean_se(&growths(r, net, true)?);
        notes.push(format!(
            "{net}: growth of ‖θ‖²/‖θ₀‖² over {SEEDS} seeds: SGD {} ± {}, GD {} ± {}.",
            fmt(ms),
            fmt(ses),
            fmt(mg),
            fmt(seg)
        ));
    }
    Ok(Details {
        settings: vec![
            (
                "models".into(),
                format!(
                    "Net-A: f = U tanh(Wx/‖U‖)/‖W‖; Net-B: f = U tanh(Wx/‖W‖)/‖U‖; widths [{D}, {H}, 1], Kaiming init"
                ),
            ),
            (
                "data".into(),
                "x ~ N(0, I₈), y = V x + ε, V random N(0, 1/8) from the seed, Var ε = 0.1".into(),
            ),
            (
                "optimizers".into(),
                format!(
                    "SGD online S = 1; GD on 500 fixed samples; η = {ETA}, {} steps, γ = 0",
                    steps(r.full)
                ),
            ),
            (
                "seeds".into(),
                format!("{SEEDS} per net and optimizer (0 … {})", SEEDS - 1),
            ),
        ],
        notes,
        logs,
    })
}
