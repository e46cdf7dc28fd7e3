//! Fig. 1: a 2-D scale-invariant loss. The model is Net-A with widths [1, 1, 1], so θ = (w, u) ∈ ℝ²
//! and f(x) = u tanh(w x/|u|)/|w| depends on θ only through its direction: the loss is constant on
//! rays, its gradient is tangent to circles, and gradient flow keeps ‖θ‖ fixed. A discrete step
//! adds η²‖ĝ‖² to ‖θ‖² exactly, so SGD (and, by a vanishing amount, GD) moves outward.
//!
//! Settings (not in the paper): x ~ N(0, 1), y = 0.5 x + ε, Var ε = 0.25; θ₀ = (1, 0.6).

use super::common::{fmt, log_of, par_map, sgd_or_gd_source, Check, Ctx, Outcome};
use super::figure::{Figure, Panel, Role, Series, Style};
use crate::core::data::{Cov, Gaussian, Target};
use crate::core::linalg::Dense;
use crate::core::models::{Model, ScaleKind};
use crate::core::rng::Rng;
use crate::train::{Batching, Stepper};
use crate::Result;

struct Run {
    gd: bool,
    eta: f64,
    steps: u64,
}

struct Trace {
    t: Vec<f64>,
    th: Vec<[f64; 2]>,
    /// min over steps of ‖θ_{t+1}‖² − ‖θ_t‖², relative to ‖θ_t‖².
    min_rel_increase: f64,
    /// max over steps of |Δ‖θ‖² − η²‖ĝ‖²| / ‖θ_t‖².
    max_identity_err: f64,
}

fn simulate(r: &Run, ctx: &Ctx) -> Result<Trace> {
    let model = Model::scale_net(ScaleKind::NetA, 1, 1, 1)?;
    let g = Gaussian::new(
        1,
        1,
        Cov::Scalar(1.0),
        Target::Linear(Dense::from_slice(1, 1, &[0.5])),
        Some(Cov::Scalar(0.25)),
    )?;
    let mut source = sgd_or_gd_source(g, r.gd, 1000, &mut Rng::new(5));
    let batching = if r.gd { Batching::Full } else { Batching::Sgd(1) };
    let mut st = Stepper::new(&model, &source, batching, 0.0, 7)?;
    let mut theta = vec![1.0, 0.6];
    let every = (r.steps / 400).max(1);
    let mut tr = Trace {
        t: vec![0.0],
        th: vec![[theta[0], theta[1]]],
        min_rel_increase: f64::INFINITY,
        max_identity_err: 0.0,
    };
    for k in 0..r.steps {
        let n0 = theta[0] * theta[0] + theta[1] * theta[1];
        st.step(&model, &mut source, &mut theta, r.eta, k)?;
        let n1 = theta[0] * theta[0] + theta[1] * theta[1];
        let g2: f64 = st.last_grad().iter().map(|v| v * v).sum();
        tr.min_rel_increase = tr.min_rel_increase.min((n1 - n0) / n0);
        tr.max_identity_err = tr.max_identity_err.max(((n1 - n0) - r.eta * r.eta * g2).abs() / n0);
        if (k + 1) % every == 0 {
            tr.t.push((k + 1) as f64 * r.eta);
            tr.th.push([theta[0], theta[1]]);
            ctx.advance(every);
        }
    }
    Ok(tr)
}

fn growth(tr: &Trace) -> f64 {
    let n = |p: &[f64; 2]| p[0] * p[0] + p[1] * p[1];
    n(tr.th.last().unwrap()) / n(&tr.th[0]) - 1.0
}

/// Runs the experiment.
pub fn run(ctx: &Ctx) -> Result<Outcome> {
    let scale = if ctx.full { 4 } else { 1 };
    let t_end = 200.0 * scale as f64;
    let runs = [
        Run {
            gd: false,
            eta: 0.05,
            steps: (t_end / 0.05) as u64,
        },
        Run {
            gd: true,
            eta: 0.05,
            steps: (t_end / 0.05) as u64,
        },
        Run {
            gd: true,
            eta: 0.0125,
            steps: (t_end / 0.0125) as u64,
        },
    ];
    ctx.set_total(runs.iter().map(|r| r.steps).sum());
    let traces: Vec<Trace> = par_map(ctx.jobs, &runs, |r| simulate(r, ctx))
        .into_iter()
        .collect::<Result<_>>()?;
    let (sgd, gd, gd_small) = (&traces[0], &traces[1], &traces[2]);
    let rounding = 8.0 * f64::EPSILON;
    let checks = vec![
        Check::at_least(
            "SGD: ‖θ‖² never decreases (min over all steps of Δ‖θ‖²/‖θ‖²)",
            -rounding,
            sgd.min_rel_increase,
            "exact: Δ‖θ‖² = η²‖ĝ‖² ≥ 0 for a scale-invariant loss; tolerance 8 machine epsilons of rounding",
        ),
        Check::at_most(
            "exact identity ‖θ_{t+1}‖² = ‖θ_t‖² + η²‖ĝ_t‖² (max error relative to ‖θ‖², SGD and GD)",
            1e-12,
            sgd.max_identity_err
                .max(gd.max_identity_err)
                .max(gd_small.max_identity_err),
            "float rounding of a handful of operations on numbers of size ‖θ‖²",
        ),
        Check::at_least(
            "SGD moves outward much more than GD at the same η (growth of ‖θ‖², SGD / GD)",
            10.0,
            growth(sgd) / growth(gd),
            "GD's growth is η∫‖∇L‖²dt, which vanishes near a minimum; SGD's is η∫E‖ĝ‖²dt, which includes the noise",
        ),
        Check::close(
            "GD → gradient flow: at fixed t the growth of ‖θ‖² shrinks linearly in η (ratio for η/4 vs η)",
            0.25,
            growth(gd_small) / growth(gd),
            0.05,
            "the growth is η∫‖∇L‖²dt + O(η²); the O(η) change of the trajectory itself allows ±0.05",
        ),
    ];
    let circle = |r2: f64| {
        let r = r2.sqrt();
        let a: Vec<f64> = (0..=200).map(|i| i as f64 / 200.0 * std::f64::consts::TAU).collect();
        (
            a.iter().map(|a| r * a.cos()).collect::<Vec<_>>(),
            a.iter().map(|a| r * a.sin()).collect::<Vec<_>>(),
        )
    };
    let (cx, cy) = circle(1.36);
    let xs = |tr: &Trace| tr.th.iter().map(|p| p[0]).collect::<Vec<_>>();
    let ys = |tr: &Trace| tr.th.iter().map(|p| p[1]).collect::<Vec<_>>();
    let n2 = |tr: &Trace| tr.th.iter().map(|p| p[0] * p[0] + p[1] * p[1]).collect::<Vec<_>>();
    let plane = Panel::xy(
        "trajectories in the plane θ = (w, u)",
        "w",
        "u",
        vec![
            Series::new(
                "gradient flow orbit (circle ‖θ‖ = ‖θ₀‖)",
                Role::Theory,
                Style::Line,
                cx,
                cy,
            ),
            Series::new("SGD, η = 0.05", Role::Sgd, Style::Markers, xs(sgd), ys(sgd)),
            Series::new("GD, η = 0.05", Role::Gd, Style::Markers, xs(gd), ys(gd)),
        ],
        false,
        false,
    );
    let norms = Panel::xy(
        "squared norm over time",
        "t = η · steps",
        "‖θ‖²",
        vec![
            Series::new(
                "gradient flow: ‖θ₀‖²",
                Role::Theory,
                Style::Line,
                vec![0.0, t_end],
                vec![1.36, 1.36],
            ),
            Series::new("SGD, η = 0.05", Role::Sgd, Style::Markers, sgd.t.clone(), n2(sgd)),
            Series::new("GD, η = 0.05", Role::Gd, Style::Markers, gd.t.clone(), n2(gd)),
            Series::new(
                "GD, η = 0.0125",
                Role::GdWd,
                Style::Markers,
                gd_small.t.clone(),
                n2(gd_small),
            ),
        ],
        false,
        false,
    );
    let logs = traces
        .iter()
        .zip(["sgd", "gd", "gd_small_eta"])
        .map(|(tr, name)| {
            let rows = (0..tr.t.len())
                .map(|j| vec![tr.t[j], tr.th[j][0], tr.th[j][1]])
                .collect();
            (name.to_string(), log_of(&["t", "w", "u"], rows))
        })
        .collect();
    Ok(Outcome {
        checks,
        figure: Figure {
            title: "Fig. 1: scale invariance — GF stays on its circle, SGD moves outward".into(),
            columns: 2,
            panels: vec![plane, norms],
        },
        settings: vec![
            (
                "model".into(),
                "Net-A with widths [1, 1, 1]: f(x) = u tanh(w x/|u|)/|w|, θ = (w, u)".into(),
            ),
            (
                "data".into(),
                "x ~ N(0, 1), y = 0.5 x + ε, Var ε = 0.25; SGD online with S = 1, GD on 1000 fixed samples".into(),
            ),
            ("init".into(), "θ₀ = (1, 0.6), ‖θ₀‖² = 1.36".into()),
            (
                "schedule".into(),
                format!("η = 0.05 (SGD, GD) and 0.0125 (GD), t = {t_end}"),
            ),
        ],
        logs,
        notes: vec![format!(
            "Growth of ‖θ‖² over the run: SGD {}, GD(η = 0.05) {}, GD(η = 0.0125) {}.",
            fmt(growth(sgd)),
            fmt(growth(gd)),
            fmt(growth(gd_small))
        )],
    })
}
