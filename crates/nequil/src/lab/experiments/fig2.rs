//! Fig. 2 (Appendix A.2): matrix factorization with different label-noise covariances. Under SGD
//! the matrix charge `WWᵀ − UᵀU` moves until the alignment condition of Theorem 5.2 (with §6
//! constants) holds: `W Γ̃_W Wᵀ = Uᵀ Γ̃_U U`; GD keeps the charge of its initialization.
//!
//! Setting (paper: d_x = d_y = 30, hidden 40, x ~ N(0, I), y = x + ε; η, S, steps and init not
//! stated): Kaiming init shared by all runs; each run has its own diagonal Σ_ε with entries
//! drawn log-uniformly in [0.25, 4]; SGD online with S = 1, η = 0.001; GD follows the population
//! gradient (a 30-sample dataset with exactly the population second moment) from the same init.
//! The prediction θ* is computed in closed form from each run's final product UW.

use super::common::{log_of, par_map, population_dataset, simulate, Check, Ctx, Outcome};
use super::figure::{Figure, Panel, Role, Series, Style};
use crate::core::data::{Cov, Gaussian, Source, Target};
use crate::core::equilibrium::{two_layer_equilibrium_gaussian, two_layer_factors, TwoLayerGammas};

use crate::core::linalg::Dense;
use crate::core::models::{Init, Model};
use crate::core::rng::Rng;
use crate::train::{Batching, LrSchedule, Schedule};
use crate::Result;

const D: usize = 30;
const H: usize = 40;
const ETA: f64 = 0.001;
const ETA_GD: f64 = 0.05;
/// The Δ entries shown in the middle panel: (i, j) pairs of the h × h matrix.
const ENTRIES: [(usize, usize); 10] = [
    (0, 0),
    (1, 1),
    (2, 2),
    (0, 1),
    (0, 2),
    (1, 2),
    (3, 3),
    (3, 4),
    (5, 6),
    (7, 7),
];

/// GD steps covering the same time t = η·steps as `steps` SGD steps.
fn gd_steps(steps: u64) -> u64 {
    (steps as f64 * ETA / ETA_GD).round() as u64
}

struct Run {
    noise: Vec<f64>,
    gd: bool,
}

struct Res {
    steps: Vec<f64>,
    loss: Vec<f64>,
    entries: Vec<[f64; 10]>,
    rel_residual: Vec<f64>,
    /// ‖mean Δ‖/mean ‖WΓ̃_WWᵀ‖ over the second half (SGD) or at the end (GD).
    avg_residual: f64,
    rel_distance: f64,
    diag_wtw: Vec<f64>,
    diag_wtw_star: Vec<f64>,
}

fn one(r: &Run, steps: u64, ctx: &Ctx) -> Result<Res> {
    let model = Model::linear(&[D, H, D])?;
    let mlp = model.chain()?;
    let g = Gaussian::new(
        D,
        D,
        Cov::Scalar(1.0),
        Target::Identity,
        Some(Cov::Diag(r.noise.clone())),
    )?;
    let (mut source, batching, eta, n) = if r.gd {
        let data = population_dataset(&g)?;
        (
            Source::Fixed {
                data,
                replacement: true,
                dist: Some(g.clone()),
            },
            Batching::Full,
            ETA_GD,
            gd_steps(steps),
        )
    } else {
        (Source::Online(g.clone()), Batching::Sgd(1), ETA, steps)
    };
    let theta0 = model.init(&Init::Kaiming, &mut Rng::new(71))?;
    let mut at = Schedule::LogSpaced(60).steps(n);
    at.extend(
        Schedule::Every((n / 400).max(1))
            .steps(n)
            .into_iter()
            .filter(|&s| 2 * s >= n),
    );
    at.sort_unstable();
    at.dedup();
    let mut res = Res {
        steps: vec![],
        loss: vec![],
        entries: vec![],
        rel_residual: vec![],
        avg_residual: 0.0,
        rel_distance: 0.0,
        diag_wtw: vec![],
        diag_wtw_star: vec![],
    };
    let (sx, se) = (g.x_second_moment(), g.noise_second_moment());
    let mut err = None;
    let (mut sum_delta, mut sum_a, mut sum_wtw, mut sum_uut, mut sum_v, mut cnt) = (
        Dense::zeros(H, H),
        0.0,
        Dense::zeros(D, D),
        Dense::zeros(D, D),
        Dense::zeros(D, D),
        0.0,
    );
    let weight = if r.gd { D as u64 } else { 1 };
    simulate(
        &model,
        &mut source,
        batching,
        &LrSchedule::Constant(eta),
        0.0,
        72,
        theta0,
        &at,
        ctx,
        weight,
        |k, th| {
            let Ok((u, w)) = two_layer_factors(&mlp, th) else {
                return;
            };
            let v = u.mul(&w);
            let gam = match TwoLayerGammas::gaussian(&v, &Dense::eye(D), &sx, &se).and_then(|gm| gm.tilde(ETA, 1, 0.0))
            {
                Ok(x) => x,
                Err(e) => {
                    err = Some(e);
                    return;
                }
            };
            let a = w.mul(&gam.0).mul(&w.t());
            let b = u.t().mul(&gam.1).mul(&u);
            let delta = b.add_scaled(-1.0, &a);
            let dm = v.add_scaled(-1.0, &Dense::eye(D));
            res.steps.push((k + 1) as f64 * eta / ETA);
            res.loss.push(dm.frob2() + se.trace());
            res.entries.push(ENTRIES.map(|(i, j)| delta.at(i, j)));
            res.rel_residual.push(delta.frob2().sqrt() / a.frob2().sqrt());
            if 2 * k >= n && (!r.gd || k == n) {
                sum_delta = sum_delta.add_scaled(1.0, &delta);
                sum_a += a.frob2().sqrt();
                sum_wtw = sum_wtw.add_scaled(1.0, &w.t().mul(&w));
                sum_uut = sum_uut.add_scaled(1.0, &u.mul(&u.t()));
                sum_v = sum_v.add_scaled(1.0, &v);
                cnt += 1.0;
            }
        },
    )?;
    if let Some(e) = err {
        return Err(e);
    }
    res.avg_residual = sum_delta.frob2().sqrt() / sum_a;
    // The prediction depends only on the product: factor the time-averaged product as U = [V̄ 0],
    // W = [I; 0] and compare the F-invariant matrices WᵀW and UUᵀ.
    let vbar = sum_v.scale(1.0 / cnt);
    let mut u0 = Dense::zeros(D, H);
    let mut w0 = Dense::zeros(H, D);
    for i in 0..D {
        for j in 0..D {
            *u0.at_mut(i, j) = vbar.at(i, j);
        }
        *w0.at_mut(i, i) = 1.0;
    }
    let eq = two_layer_equilibrium_gaussian(
        &mlp,
        &crate::core::equilibrium::two_layer_theta(&mlp, &u0, &w0),
        &g,
        ETA,
        1,
        0.0,
    )?;
    let ws = Dense::from_slice(H, D, &eq.w_star);
    let us = Dense::from_slice(D, H, &eq.u_star);
    let (m, ms) = (sum_wtw.scale(1.0 / cnt), ws.t().mul(&ws));
    let (q, qs) = (sum_uut.scale(1.0 / cnt), us.mul(&us.t()));
    res.rel_distance =
        ((m.add_scaled(-1.0, &ms).frob2() + q.add_scaled(-1.0, &qs).frob2()) / (ms.frob2() + qs.frob2())).sqrt();
    res.diag_wtw = (0..D).map(|i| m.at(i, i)).collect();
    res.diag_wtw_star = (0..D).map(|i| ms.at(i, i)).collect();
    Ok(res)
}

/// Runs the experiment.
pub fn run(ctx: &Ctx) -> Result<Outcome> {
    let (k, steps) = if ctx.full { (10, 2_000_000u64) } else { (5, 400_000u64) };
    let mut rng = Rng::new(70);
    let mut runs = vec![];
    for _ in 0..k {
        let noise: Vec<f64> = (0..D)
            .map(|_| (4f64.ln() * (2.0 * rng.uniform() - 1.0)).exp())
            .collect();
        runs.push(Run {
            noise: noise.clone(),
            gd: false,
        });
        runs.push(Run { noise, gd: true });
    }
    ctx.set_total(k as u64 * (steps + gd_steps(steps) * D as u64));
    let res: Vec<Res> = par_map(ctx.jobs, &runs, |r| one(r, steps, ctx))
        .into_iter()
        .collect::<Result<_>>()?;
    let mut checks = vec![];
    let (mut worst_ratio, mut worst_res, mut best_gd_res) = (f64::INFINITY, 0.0f64, f64::INFINITY);
    for i in 0..k {
        let (s, g) = (&res[2 * i], &res[2 * i + 1]);
        worst_ratio = worst_ratio.min(g.rel_distance / s.rel_distance);
        worst_res = worst_res.max(s.avg_residual / s.rel_residual[0]);
        best_gd_res = best_gd_res.min(g.avg_residual / g.rel_residual[0]);
    }
    checks.push(Check::at_most(
        "SGD drives every entry of Δ = UᵀΓ̃_UU − WΓ̃_WWᵀ to zero: ‖time-averaged Δ‖ / ‖WΓ̃_WWᵀ‖ over the second half, relative to its initial value (worst run)",
        0.1,
        worst_res,
        "direction of the claim with a factor-10 margin; single snapshots fluctuate around zero with the SGD noise, so Δ is averaged over time",
    ));
    checks.push(Check::at_least(
        "GD does not align: final relative residual over initial (best run)",
        0.5,
        best_gd_res,
        "GD conserves WWᵀ − UᵀU up to η² terms, so the residual stays of the order of its initial value",
    ));
    checks.push(Check::at_least(
        "GD's final solutions are more than ten times farther from the Thm 5.2 prediction than SGD's (smallest ratio of relative distances over runs; F-invariant WᵀW and UUᵀ)",
        10.0,
        worst_ratio,
        "the paper's claim (Fig. 2 right): 'more than an order of magnitude'",
    ));
    let (s0, g0) = (&res[0], &res[1]);
    let loss_panel = Panel::xy(
        "loss (run 1)",
        "SGD-equivalent iteration + 1 (GD: η_GD/η × steps)",
        "population loss E‖UWx − y‖²",
        vec![
            Series::new("SGD", Role::Sgd, Style::Markers, s0.steps.clone(), s0.loss.clone()),
            Series::new("GD", Role::Gd, Style::Markers, g0.steps.clone(), g0.loss.clone()),
        ],
        true,
        true,
    );
    let mut ent = vec![];
    for (j, (a, b)) in ENTRIES.iter().enumerate() {
        ent.push(Series::new(
            format!("SGD Δ[{a},{b}]"),
            if j == 0 { Role::Sgd } else { Role::Other(j as u8) },
            Style::Markers,
            s0.steps.clone(),
            s0.entries.iter().map(|e| e[j]).collect(),
        ));
    }
    ent.push(Series::new(
        "GD Δ[0,0]",
        Role::Gd,
        Style::Markers,
        g0.steps.clone(),
        g0.entries.iter().map(|e| e[0]).collect(),
    ));
    ent.push(Series::new(
        "theory: Δ = 0",
        Role::Theory,
        Style::Line,
        vec![1.0, steps as f64],
        vec![0.0, 0.0],
    ));
    let entries_panel = Panel::xy(
        "entries of Δ = UᵀΓ̃_UU − WΓ̃_WWᵀ (run 1)",
        "SGD-equivalent iteration",
        "Δ_ij",
        ent,
        true,
        false,
    );
    let (mut sx, mut sy, mut gx, mut gy) = (vec![], vec![], vec![], vec![]);
    for i in 0..k {
        sx.extend(res[2 * i].diag_wtw_star.iter());
        sy.extend(res[2 * i].diag_wtw.iter());
        gx.extend(res[2 * i + 1].diag_wtw_star.iter());
        gy.extend(res[2 * i + 1].diag_wtw.iter());
    }
    let lo = sx
        .iter()
        .chain(&gx)
        .chain(&sy)
        .chain(&gy)
        .cloned()
        .fold(f64::INFINITY, f64::min);
    let hi = sx.iter().chain(&gx).chain(&sy).chain(&gy).cloned().fold(0.0, f64::max);
    let scatter = Panel::xy(
        "converged solutions vs Thm 5.2 (all runs)",
        "predicted diag(W*ᵀW*)",
        "measured diag(WᵀW)",
        vec![
            Series::new("y = x", Role::Theory, Style::Line, vec![lo, hi], vec![lo, hi]),
            Series::new("SGD", Role::Sgd, Style::Markers, sx, sy),
            Series::new("GD", Role::Gd, Style::Markers, gx, gy),
        ],
        false,
        false,
    );
    let rows = (0..k)
        .map(|i| vec![i as f64, res[2 * i].rel_distance, res[2 * i + 1].rel_distance])
        .collect();
    Ok(Outcome {
        checks,
        figure: Figure { title: "Fig. 2: SGD reaches the Thm 5.2 alignment, GD does not".into(), columns: 3, panels: vec![loss_panel, entries_panel, scatter] },
        settings: vec![
            ("model".into(), format!("linear [{D}, {H}, {D}], Kaiming init (same for all runs)")),
            ("data".into(), "online x ~ N(0, I), y = x + ε, Σ_ε diagonal, entries log-uniform in [0.25, 4], one draw per run".into()),
            ("SGD".into(), format!("S = 1, η = {ETA}, {steps} steps")),
            ("GD".into(), format!("population gradient, η = {ETA_GD}, {} steps (same time t = η·steps as SGD)", gd_steps(steps))),
            ("runs".into(), format!("{k} label-noise covariances")),
            ("distance".into(), "‖(WᵀW, UUᵀ) − (W*ᵀW*, U*U*ᵀ)‖_F / ‖(W*ᵀW*, U*U*ᵀ)‖_F (invariant under the free rotation of the hidden layer); SGD values time-averaged over the second half of the run, prediction from the time-averaged product".into()),
        ],
        logs: vec![("distances".into(), log_of(&["run", "sgd_rel_distance", "gd_rel_distance"], rows))],
        notes: vec![
            "At d = 30 the finite-η bias is large: with η = 0.005 SGD's ‖W‖² sat about 30% above the prediction (off-diagonal structure still within 5%); η = 0.001 brings it to a few percent. The per-sample curvature scales with ‖x‖² ≈ d, so the step that counts as small shrinks with the dimension.".into(),
        ],
    })
}
