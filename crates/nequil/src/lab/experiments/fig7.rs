//! Fig. 7 (Appendix A.1): the scale-invariant two-layer tanh nets Net-A (global scale invariance)
//! and Net-B (each layer scale invariant) under SGD and GD. With γ = 0 an update adds exactly
//! η²‖ĝ_A‖² to each invariant charge: the total ‖θ‖² for both nets, and ‖W‖², ‖U‖² separately for
//! Net-B. Net-A's layer norms are not charges and may move either way.
//!
//! Settings (the paper says only "simple linear Gaussian data"): x ~ N(0, I₈), y = V x + ε with a
//! random teacher V ∈ ℝ^{1×8}, Var ε = 0.1; widths [8, 16, 1], Kaiming init; SGD S = 1 online, GD
//! on 500 fixed samples; η = 0.05.

use super::common::{fmt, log_of, par_map, sgd_or_gd_source, Check, Ctx, Outcome};
use super::figure::{Figure, Panel, Role, Series, Style};
use crate::core::data::{Cov, Gaussian, Target};
use crate::core::models::{Init, Model, ScaleKind};
use crate::core::rng::Rng;
use crate::train::{Batching, Stepper};
use crate::Result;

struct Run {
    kind: ScaleKind,
    gd: bool,
}

struct Trace {
    t: Vec<f64>,
    w2: Vec<f64>,
    u2: Vec<f64>,
    /// min over steps of the relative change of (total, ‖W‖², ‖U‖²).
    min_rel: [f64; 3],
    /// max over steps of |Δ‖θ‖² − η²‖ĝ‖²| / ‖θ‖².
    identity_err: f64,
}

const D: usize = 8;
const H: usize = 16;
const ETA: f64 = 0.05;

fn simulate(r: &Run, steps: u64, ctx: &Ctx) -> Result<Trace> {
    let model = Model::scale_net(r.kind, D, H, 1)?;
    let g = Gaussian::new(
        D,
        1,
        Cov::Scalar(1.0),
        Target::random_linear(D, 1, &mut Rng::new(21)),
        Some(Cov::Scalar(0.1)),
    )?;
    let mut source = sgd_or_gd_source(g, r.gd, 500, &mut Rng::new(22));
    let batching = if r.gd { Batching::Full } else { Batching::Sgd(1) };
    let mut st = Stepper::new(&model, &source, batching, 0.0, 23)?;
    let mut theta = model.init(&Init::Kaiming, &mut Rng::new(24))?;
    let nw = D * H;
    let norms = |th: &[f64]| {
        let w: f64 = th[..nw].iter().map(|v| v * v).sum();
        let u: f64 = th[nw..].iter().map(|v| v * v).sum();
        (w, u)
    };
    let every = (steps / 300).max(1);
    let (w0, u0) = norms(&theta);
    let mut tr = Trace {
        t: vec![0.0],
        w2: vec![w0],
        u2: vec![u0],
        min_rel: [f64::INFINITY; 3],
        identity_err: 0.0,
    };
    let (mut w_prev, mut u_prev) = (w0, u0);
    for k in 0..steps {
        st.step(&model, &mut source, &mut theta, ETA, k)?;
        let (w, u) = norms(&theta);
        let g2: f64 = st.last_grad().iter().map(|v| v * v).sum();
        let n_prev = w_prev + u_prev;
        tr.min_rel[0] = tr.min_rel[0].min((w + u - n_prev) / n_prev);
        tr.min_rel[1] = tr.min_rel[1].min((w - w_prev) / w_prev);
        tr.min_rel[2] = tr.min_rel[2].min((u - u_prev) / u_prev);
        tr.identity_err = tr.identity_err.max(((w + u - n_prev) - ETA * ETA * g2).abs() / n_prev);
        (w_prev, u_prev) = (w, u);
        if (k + 1) % every == 0 {
            tr.t.push((k + 1) as f64 * ETA);
            tr.w2.push(w);
            tr.u2.push(u);
            ctx.advance(every);
        }
    }
    Ok(tr)
}

/// Runs the experiment.
pub fn run(ctx: &Ctx) -> Result<Outcome> {
    let steps: u64 = if ctx.full { 40_000 } else { 10_000 };
    let runs = [
        Run {
            kind: ScaleKind::NetA,
            gd: false,
        },
        Run {
            kind: ScaleKind::NetA,
            gd: true,
        },
        Run {
            kind: ScaleKind::NetB,
            gd: false,
        },
        Run {
            kind: ScaleKind::NetB,
            gd: true,
        },
    ];
    ctx.set_total(steps * runs.len() as u64);
    let traces: Vec<Trace> = par_map(ctx.jobs, &runs, |r| simulate(r, steps, ctx))
        .into_iter()
        .collect::<Result<_>>()?;
    let rounding = 8.0 * f64::EPSILON;
    let growth = |tr: &Trace| (tr.w2.last().unwrap() + tr.u2.last().unwrap()) / (tr.w2[0] + tr.u2[0]) - 1.0;
    let mut checks = vec![];
    for (name, sgd, gd) in [("Net-A", &traces[0], &traces[1]), ("Net-B", &traces[2], &traces[3])] {
        checks.push(Check::at_least(
            &format!("{name}, SGD: the total norm ‖θ‖² never decreases (min relative step change)"),
            -rounding,
            sgd.min_rel[0],
            "exact: Δ‖θ‖² = η²‖ĝ‖² ≥ 0; 8 machine epsilons of rounding",
        ));
        checks.push(Check::at_least(
            &format!("{name}: SGD grows ‖θ‖² far more than GD (growth ratio)"),
            10.0,
            growth(sgd) / growth(gd).max(f64::MIN_POSITIVE),
            "GD's growth η∫‖∇L‖²dt vanishes at a minimum; SGD's includes the gradient noise",
        ));
        checks.push(Check::at_most(
            &format!("{name}: exact identity Δ‖θ‖² = η²‖ĝ‖² (max error relative to ‖θ‖², SGD and GD)"),
            1e-12,
            sgd.identity_err.max(gd.identity_err),
            "float rounding",
        ));
    }
    checks.push(Check::at_least(
        "Net-B, SGD: ‖W‖² and ‖U‖² each never decrease (min relative step change of either)",
        -rounding,
        traces[2].min_rel[1].min(traces[2].min_rel[2]),
        "exact: each layer is a separate scale symmetry, Δ‖W‖² = η²‖ĝ_W‖², Δ‖U‖² = η²‖ĝ_U‖²",
    ));
    let mut panels = vec![];
    for (name, sgd, gd) in [("Net-A", &traces[0], &traces[1]), ("Net-B", &traces[2], &traces[3])] {
        let tot = |tr: &Trace| tr.w2.iter().zip(&tr.u2).map(|(a, b)| a + b).collect::<Vec<_>>();
        panels.push(Panel::xy(
            &format!("{name}: total norm"),
            "t = η · steps",
            "‖θ‖²",
            vec![
                Series::new("SGD", Role::Sgd, Style::Markers, sgd.t.clone(), tot(sgd)),
                Series::new("GD", Role::Gd, Style::Markers, gd.t.clone(), tot(gd)),
            ],
            false,
            false,
        ));
        panels.push(Panel::xy(
            &format!("{name}: layer norms"),
            "t = η · steps",
            "squared Frobenius norm",
            vec![
                Series::new(
                    "SGD ‖W‖² (1st layer)",
                    Role::Sgd,
                    Style::Markers,
                    sgd.t.clone(),
                    sgd.w2.clone(),
                ),
                Series::new(
                    "SGD ‖U‖² (2nd layer)",
                    Role::Other(1),
                    Style::Markers,
                    sgd.t.clone(),
                    sgd.u2.clone(),
                ),
                Series::new("GD ‖W‖²", Role::Gd, Style::Markers, gd.t.clone(), gd.w2.clone()),
                Series::new("GD ‖U‖²", Role::GdWd, Style::Markers, gd.t.clone(), gd.u2.clone()),
            ],
            false,
            false,
        ));
    }
    let names = ["net_a_sgd", "net_a_gd", "net_b_sgd", "net_b_gd"];
    let logs = traces
        .iter()
        .zip(names)
        .map(|(tr, n)| {
            let rows = (0..tr.t.len()).map(|j| vec![tr.t[j], tr.w2[j], tr.u2[j]]).collect();
            (n.to_string(), log_of(&["t", "norm2_w", "norm2_u"], rows))
        })
        .collect();
    Ok(Outcome {
        checks,
        figure: Figure {
            title: "Fig. 7: Net-A and Net-B norms under SGD and GD".into(),
            columns: 2,
            panels,
        },
        settings: vec![
            (
                "models".into(),
                format!(
                    "Net-A: f = U tanh(Wx/‖U‖)/‖W‖; Net-B: f = U tanh(Wx/‖W‖)/‖U‖; widths [{D}, {H}, 1], Kaiming init"
                ),
            ),
            (
                "data".into(),
                "x ~ N(0, I₈), y = V x + ε, V random N(0, 1/8), Var ε = 0.1".into(),
            ),
            (
                "optimizers".into(),
                format!("SGD online S = 1; GD on 500 fixed samples; η = {ETA}, {steps} steps, γ = 0"),
            ),
        ],
        logs,
        notes: vec![format!(
            "Growth of ‖θ‖²: Net-A SGD {}, GD {}; Net-B SGD {}, GD {}.",
            fmt(growth(&traces[0])),
            fmt(growth(&traces[1])),
            fmt(growth(&traces[2])),
            fmt(growth(&traces[3]))
        )],
    })
}
