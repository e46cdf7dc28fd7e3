//! Fig. 3: norm balance of the two-layer linear autoencoder against the input anisotropy φ_x.
//!
//! Setting (book `theory/closed-forms.md#two-layer-recipe`; the paper's Fig. 3 uses d = 100, hidden 2000, η = 0.1, S = 100): y =
//! x + ε ∈ ℝ^d, `Σ_x = diag(φ·I_{d/2}, (2 − φ)·I_{d/2})`, `Σ_ε = I`, Kaiming init. At the global
//! minimum (UW = I, γ = 0) Theorem 5.2 with §6 constants gives ‖U*‖² = (d/2)(√φ + √(2−φ)),
//! ‖W*‖² = (d/2)(1/√φ + 1/√(2−φ)), so ‖W*‖²/‖U*‖² = 1/√(φ(2−φ)): balanced only at φ = 1.
//! SGD is run at two learning rates (η and η/4); the gap to the theory at η/4 must be within the
//! run's statistical error plus the bias that the change from η to η/4 implies. GD with weight decay follows the
//! population gradient (a `d`-sample dataset with exactly the population second moment).

use super::common::{fmt, log_of, par_map, population_dataset, simulate, tail_mean, Check, Ctx, Outcome};
use super::figure::{Figure, Panel, Role, Series, Style};
use crate::core::data::{Cov, Gaussian, Source, Target};
use crate::core::equilibrium::{two_layer_equilibrium_gaussian, two_layer_theta};
use crate::core::linalg::Dense;
use crate::core::models::{Init, Model};
use crate::core::rng::Rng;
use crate::train::{Batching, LrSchedule, Schedule};
use crate::Result;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sgd,
    SgdWd,
    GdWd,
}

struct Run {
    phi: f64,
    kind: Kind,
    eta: f64,
    steps: u64,
}

struct Res {
    ratio: (f64, f64),
    sharp: (f64, f64),
    /// GD+WD: the predicted bound on |‖W‖² − ‖U‖²|/‖θ‖² left at the end, e^{−4γt}|C₀|/‖θ‖².
    bound: f64,
}

const WD_SGD: f64 = 1e-4;
const WD_GD: f64 = 1e-3;

fn dist(d: usize, phi: f64) -> Result<Gaussian> {
    Gaussian::new(d, d, Cov::phi(d, phi), Target::Identity, Some(Cov::Scalar(1.0)))
}

fn one(r: &Run, d: usize, h: usize, ctx: &Ctx) -> Result<Res> {
    let model = Model::linear(&[d, h, d])?;
    let g = dist(d, r.phi)?;
    let sx = g.x_second_moment();
    let (mut source, batching, gamma, weight) = match r.kind {
        Kind::GdWd => {
            let data = population_dataset(&g)?;
            (
                Source::Fixed {
                    data,
                    replacement: true,
                    dist: Some(g),
                },
                Batching::Full,
                WD_GD,
                d as u64,
            )
        }
        Kind::Sgd => (Source::Online(g), Batching::Sgd(1), 0.0, 1),
        Kind::SgdWd => (Source::Online(g), Batching::Sgd(1), WD_SGD, 1),
    };
    let theta0 = model.init(&Init::Kaiming, &mut Rng::new(31))?;
    let at = Schedule::Every((r.steps / 1000).max(1)).steps(r.steps);
    let (mut ratios, mut sharps) = (vec![], vec![]);
    let nw = h * d;
    let c0 = {
        let w2: f64 = theta0[..nw].iter().map(|v| v * v).sum();
        let u2: f64 = theta0[nw..].iter().map(|v| v * v).sum();
        (w2 - u2).abs() / (w2 + u2)
    };
    simulate(
        &model,
        &mut source,
        batching,
        &LrSchedule::Constant(r.eta),
        gamma,
        32,
        theta0,
        &at,
        ctx,
        weight,
        |_, th| {
            let w = Dense::from_slice(h, d, &th[..nw]);
            let u = Dense::from_slice(d, h, &th[nw..]);
            ratios.push(w.frob2() / u.frob2());
            sharps.push(crate::core::equilibrium::sharpness_paper(&u, &w, &sx));
        },
    )?;
    let t = r.eta * r.steps as f64;
    Ok(Res {
        ratio: tail_mean(&ratios, 0.3),
        sharp: tail_mean(&sharps, 0.3),
        bound: (-4.0 * gamma * t).exp() * c0,
    })
}

/// The Theorem 5.2 prediction at the global minimum UW = I: (ratio ‖W*‖²/‖U*‖², sharpness S*),
/// computed by the library's closed form (not the formula above, which it is tested against).
fn theory(d: usize, h: usize, phi: f64) -> Result<(f64, f64)> {
    let mlp = Model::linear(&[d, h, d])?.chain()?;
    let mut u = Dense::zeros(d, h);
    let mut w = Dense::zeros(h, d);
    for i in 0..d {
        *u.at_mut(i, i) = 1.0;
        *w.at_mut(i, i) = 1.0;
    }
    let theta = two_layer_theta(&mlp, &u, &w);
    let eq = two_layer_equilibrium_gaussian(&mlp, &theta, &dist(d, phi)?, 1.0, 1, 0.0)?;
    Ok((eq.w_star_norm2 / eq.u_star_norm2, eq.sharpness_star))
}

/// Runs the experiment.
pub fn run(ctx: &Ctx) -> Result<Outcome> {
    // `--full` samples φ more finely. A larger d needs a proportionally smaller η (the bias grows
    // with η·d): at d = 20 with these η the φ = 1.6 point exceeded its tolerance (1.8×).
    let (d, h, base) = (10, 20, 300_000u64);
    let phis: Vec<f64> = if ctx.full {
        (0..13).map(|i| 0.1 + 0.15 * i as f64).collect()
    } else {
        vec![0.1, 0.4, 0.7, 1.0, 1.3, 1.6, 1.9]
    };
    let (eta_b, eta_s) = (0.01, 0.0025);
    let mut runs = vec![];
    for &phi in &phis {
        runs.push(Run {
            phi,
            kind: Kind::Sgd,
            eta: eta_b,
            steps: base,
        });
        runs.push(Run {
            phi,
            kind: Kind::Sgd,
            eta: eta_s,
            steps: base * 16,
        });
        runs.push(Run {
            phi,
            kind: Kind::SgdWd,
            eta: eta_b,
            steps: base,
        });
        runs.push(Run {
            phi,
            kind: Kind::GdWd,
            eta: 0.05,
            steps: base / 3,
        });
    }
    ctx.set_total(
        runs.iter()
            .map(|r| r.steps * if r.kind == Kind::GdWd { d as u64 } else { 1 })
            .sum(),
    );
    let res: Vec<Res> = par_map(ctx.jobs, &runs, |r| one(r, d, h, ctx))
        .into_iter()
        .collect::<Result<_>>()?;
    let th: Vec<(f64, f64)> = phis.iter().map(|&p| theory(d, h, p)).collect::<Result<_>>()?;
    let get = |i: usize, k: usize| &res[4 * i + k];
    let mut checks = vec![];
    let i1 = phis
        .iter()
        .position(|&p| (p - 1.0).abs() < 1e-12)
        .expect("φ = 1 in the grid");
    let r1 = get(i1, 1).ratio;
    let b1 = 0.5 * (get(i1, 0).ratio.0 - 1.0).abs();
    checks.push(Check::close(
        "SGD is norm-balanced at φ_x = 1: ‖W‖²/‖U‖² (η = 0.0025)",
        1.0,
        r1.0,
        3.0 * r1.1 + b1,
        "3 standard errors of the time average (batch means) plus half the gap at η = 0.01 (a finite-η bias shrinking at least like √η; see the per-φ check)",
    ));
    for &i in &[0, phis.len() - 1] {
        let r = get(i, 1).ratio.0;
        checks.push(Check::at_least(
            &format!(
                "SGD is not balanced at φ_x = {}: ‖W‖²/‖U‖² − 1 exceeds half the predicted {}",
                phis[i],
                fmt(th[i].0 - 1.0)
            ),
            0.5 * (th[i].0 - 1.0),
            r - 1.0,
            "direction of the claim, with half the predicted imbalance as margin",
        ));
    }
    // If the gap to the theory is a finite-η bias that shrinks at least like √η, it at least halves
    // from η_b to η_s = η_b/4; a wrong theory (a gap that does not vanish with η) fails this.
    let gap = |b: (f64, f64), s: (f64, f64), th: f64| (s.0 - th).abs() / (3.0 * s.1 + 0.5 * (b.0 - th).abs());
    let mut worst: f64 = 0.0;
    let mut worst_phi = 0.0;
    let (mut err_b, mut err_s) = (0.0, 0.0);
    for (i, &phi) in phis.iter().enumerate() {
        let z = gap(get(i, 0).ratio, get(i, 1).ratio, th[i].0);
        if z > worst {
            worst = z;
            worst_phi = phi;
        }
        err_b += (get(i, 0).ratio.0 - th[i].0).abs();
        err_s += (get(i, 1).ratio.0 - th[i].0).abs();
    }
    checks.push(Check::at_most(
        &format!("SGD (η = 0.0025) matches 1/√(φ(2−φ)) at every φ: largest |x − theory| / tolerance (at φ = {worst_phi})"),
        1.0,
        worst,
        "tolerance per φ: 3 standard errors of the time average plus half the gap at η = 0.01, i.e. the gap must at least halve when η is quartered (a finite-η bias shrinking at least like √η); a theory off by an η-independent amount fails",
    ));
    checks.push(Check::at_most(
        "the finite-η gap shrinks with η: Σ_φ|ratio − theory| at η = 0.0025 over that at η = 0.01",
        1.0,
        err_s / err_b,
        "the gap is the O(η) bias of the discrete noise equilibrium (book `theory/closed-forms.md#two-layer-recipe`)",
    ));
    let mut worst_wd: f64 = 0.0;
    for i in 0..phis.len() {
        let (a, b) = (get(i, 0).ratio, get(i, 2).ratio);
        worst_wd = worst_wd.max((a.0 - b.0).abs() / (3.0 * (a.1 * a.1 + b.1 * b.1).sqrt()));
    }
    checks.push(Check::at_most(
        "SGD with weight decay 1e-4 ≈ SGD: largest |difference of ratios| in units of 3 combined standard errors",
        1.0,
        worst_wd,
        "the shift γS/η = 0.01 of Γ̃ is far below the data term (≈ d), so the two equilibria coincide to within noise",
    ));
    let gd_dev = (0..phis.len())
        .map(|i| (get(i, 3).ratio.0 - 1.0).abs())
        .fold(0.0, f64::max);
    let gd_bound = (0..phis.len()).map(|i| 2.0 * get(i, 3).bound).fold(0.0, f64::max) + 1e-9;
    checks.push(Check::at_most(
        "GD with weight decay is always norm-balanced: largest |‖W‖²/‖U‖² − 1| over φ",
        gd_bound.max(1e-3),
        gd_dev,
        "under GD the charge ‖W‖² − ‖U‖² decays as e^{−4γt} (γ = 1e-3, η² terms vanish at the minimum): bound 2e^{−4γt}|C₀|/‖θ₀‖², at least 1e-3",
    ));
    // Sharpness.
    let worst_s = (0..phis.len())
        .map(|i| gap(get(i, 0).sharp, get(i, 1).sharp, th[i].1))
        .fold(0.0, f64::max);
    checks.push(Check::at_most(
        "SGD's sharpness (η = 0.0025) matches S(θ*) at every φ: largest |x − theory| / tolerance",
        1.0,
        worst_s,
        "as for the ratio",
    ));
    // Figure.
    let fine: Vec<f64> = (0..=90).map(|i| 0.1 + 1.8 * i as f64 / 90.0).collect();
    let th_fine: Vec<(f64, f64)> = fine.iter().map(|&p| theory(d, h, p)).collect::<Result<_>>()?;
    let col = |k: usize, f: fn(&Res) -> f64| (0..phis.len()).map(|i| f(get(i, k))).collect::<Vec<_>>();
    let ratio_panel = Panel::xy(
        "norm balance",
        "φ_x (input variance of the first half; the second half has 2 − φ_x)",
        "‖W‖² / ‖U‖²",
        vec![
            Series::new(
                "theory 1/√(φ(2−φ)) (Thm 5.2)",
                Role::Theory,
                Style::Line,
                fine.clone(),
                th_fine.iter().map(|t| t.0).collect(),
            ),
            Series::new(
                format!("SGD η = {eta_b}"),
                Role::Sgd,
                Style::Markers,
                phis.to_vec(),
                col(0, |r| r.ratio.0),
            ),
            Series::new(
                format!("SGD η = {eta_s}"),
                Role::Other(4),
                Style::Markers,
                phis.to_vec(),
                col(1, |r| r.ratio.0),
            ),
            Series::new(
                format!("SGD + WD {WD_SGD}"),
                Role::SgdWd,
                Style::Markers,
                phis.to_vec(),
                col(2, |r| r.ratio.0),
            ),
            Series::new(
                format!("GD + WD {WD_GD}"),
                Role::GdWd,
                Style::Markers,
                phis.to_vec(),
                col(3, |r| r.ratio.0),
            ),
        ],
        false,
        false,
    );
    let sharp_panel = Panel::xy(
        "sharpness of the converged solutions",
        "φ_x",
        "S = d_y Tr[WΣ_xWᵀ] + ‖U‖² Tr Σ_x (paper convention = ½ Hessian trace)",
        vec![
            Series::new(
                "theory S(θ*)",
                Role::Theory,
                Style::Line,
                fine.clone(),
                th_fine.iter().map(|t| t.1).collect(),
            ),
            Series::new(
                format!("SGD η = {eta_b}"),
                Role::Sgd,
                Style::Markers,
                phis.to_vec(),
                col(0, |r| r.sharp.0),
            ),
            Series::new(
                format!("SGD η = {eta_s}"),
                Role::Other(4),
                Style::Markers,
                phis.to_vec(),
                col(1, |r| r.sharp.0),
            ),
            Series::new(
                format!("SGD + WD {WD_SGD}"),
                Role::SgdWd,
                Style::Markers,
                phis.to_vec(),
                col(2, |r| r.sharp.0),
            ),
            Series::new(
                format!("GD + WD {WD_GD}"),
                Role::GdWd,
                Style::Markers,
                phis.to_vec(),
                col(3, |r| r.sharp.0),
            ),
        ],
        false,
        false,
    );
    let rows = (0..phis.len())
        .map(|i| {
            let mut r = vec![phis[i], th[i].0, th[i].1];
            for k in 0..4 {
                r.extend([get(i, k).ratio.0, get(i, k).ratio.1, get(i, k).sharp.0]);
            }
            r
        })
        .collect();
    let cols = [
        "phi",
        "theory_ratio",
        "theory_sharpness",
        "sgd_ratio",
        "sgd_ratio_se",
        "sgd_sharpness",
        "sgd_small_eta_ratio",
        "sgd_small_eta_ratio_se",
        "sgd_small_eta_sharpness",
        "sgd_wd_ratio",
        "sgd_wd_ratio_se",
        "sgd_wd_sharpness",
        "gd_wd_ratio",
        "gd_wd_ratio_se",
        "gd_wd_sharpness",
    ];
    Ok(Outcome {
        checks,
        figure: Figure { title: "Fig. 3: norm balance only at φ_x = 1; GD + WD always balanced".into(), columns: 2, panels: vec![ratio_panel, sharp_panel] },
        settings: vec![
            ("model".into(), format!("linear [{d}, {h}, {d}], Kaiming init (same for every run)")),
            ("data".into(), "online, Σ_x = diag(φ·I, (2 − φ)·I), y = x + ε, Σ_ε = I".into()),
            ("SGD".into(), format!("S = 1, η = {eta_b} ({base} steps) and η = {eta_s} ({} steps, the same noise time η·t·η); averages over the last 30% of each run", 16 * base)),
            ("SGD + WD".into(), format!("γ = {WD_SGD}, η = {eta_b}")),
            ("GD + WD".into(), format!("population gradient, γ = {WD_GD}, η = 0.05, {} steps", base / 3)),
            ("scale".into(), "the paper's d = 100, hidden 2000 is not run (hours on 2 cores); the theory is dimension-free in this ratio".into()),
        ],
        logs: vec![("by_phi".into(), log_of(&cols, rows))],
        notes: vec![format!(
            "Finite-η bias of the ratio, |x − theory| at η = 0.01 over that at η = 0.0025, by φ: {}. A purely first-order bias would give 4; the smaller values show higher-order (or slower) terms at these step sizes, and it changes sign between η values near φ ≈ 0.55 and 1.45, so the tolerance assumes only that the gap shrinks at least like √η.",
            (0..phis.len())
                .map(|i| format!("{} → {}", phis[i], fmt((get(i, 0).ratio.0 - th[i].0).abs() / (get(i, 1).ratio.0 - th[i].0).abs())))
                .collect::<Vec<_>>()
                .join(", ")
        )],
    })
}
