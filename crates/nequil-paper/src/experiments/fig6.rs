//! Fig. 6 (and Fig. 9): representations of two-layer nets under SGD and GD. Theorem 5.2 predicts
//! that at the noise equilibrium the (normalized) first-layer pre-activation covariance
//! `W Σ̄_x Wᵀ` matches `Uᵀ Σ̄_ε U`; GD has no such force. The measure is the cosine similarity of
//! the two flattened h × h matrices.
//!
//! Settings (paper: x ∈ ℝ⁴⁰ isotropic, Var ε₁ = 5, other noise variances 1, 10⁴ iterations):
//! autoencoding y = x + ε, width 40, no biases, Kaiming init; SGD online with S = 1, η = 0.002;
//! GD on 500 fixed samples with η = 0.05 for the same time t = η·steps. Every run has
//! [`SEEDS`] seeds; SGD and GD of one seed start from the same initialization, so the checks use
//! the paired differences over seeds.

use super::common::{cosine, fmt, log_of, mean_se, Check, Ctx};
use super::plan::{base_spec, full_batch, Details, Plan, PlannedRun, Results};
use crate::files::{Figure, Panel, Role, Series, Style};
use nequil::core::linalg::Dense;
use nequil::lab::spec::{ActivationName, CovSpec, ModelKind};
use nequil::train::{Probe, ProbeCtx};
use nequil::Result;

const D: usize = 40;
const H: usize = 40;
/// SGD learning rate. With the loss ‖f − y‖² summed over 40 outputs, η = 0.01 with S = 1 diverges
/// for ReLU and swish; the similarity grows as η shrinks (0.005 → 0.002 is shown).
const ETA: f64 = 0.002;
/// The larger SGD step of the tanh comparison.
const ETA_BIG: f64 = 0.005;
const ETA_GD: f64 = 0.05;
/// Seeds per run.
const SEEDS: u64 = 3;
const ACTS: [(ActivationName, &str); 4] = [
    (ActivationName::Tanh, "tanh"),
    (ActivationName::Relu, "ReLU"),
    (ActivationName::LeakyRelu, "leaky ReLU"),
    (ActivationName::Swish, "swish"),
];

fn sgd_steps(full: bool) -> u64 {
    if full {
        200_000
    } else {
        20_000
    }
}

/// The steps that reach SGD's t = ETA · `n_sgd` at the step `eta`.
fn steps_at(n_sgd: u64, eta: f64) -> u64 {
    (n_sgd as f64 * ETA / eta).round() as u64
}

fn noise() -> Vec<f64> {
    let mut n = vec![1.0; D];
    n[0] = 5.0;
    n
}

/// `W Σ̄_x Wᵀ` and `Uᵀ Σ̄_ε U` (Σ_x = I, so Σ̄_x = I/d).
fn matrices(theta: &[f64]) -> (Dense, Dense) {
    let noise = noise();
    let w = Dense::from_slice(H, D, &theta[..H * D]);
    let u = Dense::from_slice(D, H, &theta[H * D..]);
    let tr: f64 = noise.iter().sum();
    let m_w = w.mul(&w.t()).scale(1.0 / D as f64);
    let m_u = u
        .t()
        .mul(&Dense::diag(&noise.iter().map(|v| v / tr).collect::<Vec<_>>()))
        .mul(&u);
    (m_w, m_u)
}

fn similarity(theta: &[f64]) -> f64 {
    let (a, b) = matrices(theta);
    cosine(&a.data, &b.data)
}

/// Column `cos`: the cosine similarity of `W Σ̄_x Wᵀ` and `Uᵀ Σ̄_ε U`.
struct SimilarityProbe;

impl Probe for SimilarityProbe {
    fn columns(&self) -> Vec<String> {
        vec!["cos".into()]
    }
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        out.push(similarity(ctx.theta));
        Ok(())
    }
}

fn name(act: &str, kind: &str, seed: u64) -> String {
    format!("{act}/{kind}/seed={seed}")
}

/// The runs of each activation: (kind, η, GD).
fn kinds(act: ActivationName) -> Vec<(&'static str, f64, bool)> {
    let mut v = vec![("sgd", ETA, false), ("gd", ETA_GD, true)];
    if act == ActivationName::Tanh {
        v.push(("sgd_big_eta", ETA_BIG, false));
    }
    v
}

/// The plan.
pub fn plan(ctx: &Ctx) -> Result<Plan> {
    let n_sgd = sgd_steps(ctx.full);
    let mut p = Plan::new();
    for (act, label) in ACTS {
        for (kind, eta, gd) in kinds(act) {
            for seed in 0..SEEDS {
                // Every run to the same t = η·steps as SGD at η = ETA.
                let n = steps_at(n_sgd, eta);
                let mut s = base_spec(seed, ModelKind::Mlp, &[D, H, D], n);
                s.model.activation = Some(act);
                if act == ActivationName::LeakyRelu {
                    s.model.leaky_slope = Some(0.1);
                }
                s.data.noise_cov = Some(CovSpec::Diag(noise()));
                s.train.lr = Some(eta);
                if gd {
                    full_batch(&mut s, 500);
                }
                s.probes.every = Some((n / 40).max(1));
                s.probes.eval_samples = 64;
                p.add(
                    PlannedRun::new(name(label, kind, seed), s)
                        .probe(SimilarityProbe)
                        .cost(if gd { 25 } else { 1 }),
                )?;
            }
        }
    }
    Ok(p)
}

/// Final similarities of one kind of run, one per seed.
fn finals(r: &Results, act: &str, kind: &str) -> Result<Vec<f64>> {
    (0..SEEDS)
        .map(|seed| r.run(&name(act, kind, seed))?.last("cos"))
        .collect()
}

/// Mean and standard error over seeds of the paired differences a − b.
fn paired(a: &[f64], b: &[f64]) -> (f64, f64) {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    mean_se(&d)
}

/// The checks.
pub fn checks(r: &Results) -> Result<Vec<Check>> {
    let mut checks = vec![];
    for (_, act) in ACTS {
        let (s, g) = (finals(r, act, "sgd")?, finals(r, act, "gd")?);
        let (m, se) = paired(&s, &g);
        checks.push(Check::at_least(
            &format!("{act}: SGD's similarity of W Σ̄_x Wᵀ and Uᵀ Σ̄_ε U exceeds GD's: mean paired difference over its standard error"),
            3.0,
            m / se,
            &format!(
                "k = 3 standard errors over {SEEDS} seeds (difference {} ± {}; SGD and GD of a seed share the initialization): SGD aligns, GD does not",
                fmt(m),
                fmt(se)
            ),
        ));
    }
    let (small, big) = (finals(r, "tanh", "sgd")?, finals(r, "tanh", "sgd_big_eta")?);
    let (m, se) = paired(&small, &big);
    checks.push(Check::at_least(
        &format!("tanh: a smaller SGD step gives a higher similarity: mean paired difference (η = {ETA} minus η = {ETA_BIG}) over its standard error"),
        3.0,
        m / se,
        &format!(
            "k = 3 standard errors over {SEEDS} seeds (difference {} ± {}): the equilibrium of Thm 5.2 is the small-η limit; finite η biases it (book `theory/closed-forms.md#two-layer-recipe` shows the same trend)",
            fmt(m),
            fmt(se)
        ),
    ));
    let init: Vec<f64> = (0..SEEDS)
        .map(|seed| Ok(r.run(&name("tanh", "sgd", seed))?.column("cos")?[0]))
        .collect::<Result<_>>()?;
    let (m, se) = paired(&small, &init);
    checks.push(Check::at_least(
        "tanh: SGD increases the similarity above its value at initialization: mean paired difference over its standard error",
        3.0,
        m / se,
        &format!("k = 3 standard errors over {SEEDS} seeds (increase {} ± {})", fmt(m), fmt(se)),
    ));
    Ok(checks)
}

/// The figure (seed 0).
pub fn figure(r: &Results) -> Result<Figure> {
    let heat = |title: &str, m: &Dense| Panel::heatmap(title, m.rows, m.cols, m.data.clone(), true);
    let (s0, g0) = (r.run(&name("tanh", "sgd", 0))?, r.run(&name("tanh", "gd", 0))?);
    let (sw, su) = matrices(&s0.theta);
    let (gw, gu) = matrices(&g0.theta);
    let mut sim = [vec![], vec![], vec![]];
    for (_, act) in ACTS {
        let (s, g) = (finals(r, act, "sgd")?, finals(r, act, "gd")?);
        sim[0].push(mean_se(&s).0);
        sim[1].push(mean_se(&g).0);
        sim[2].push(r.run(&name(act, "sgd", 0))?.column("cos")?[0]);
    }
    let x: Vec<f64> = (0..ACTS.len()).map(|i| i as f64).collect();
    let panels = vec![
        heat("tanh, SGD: W Σ̄_x Wᵀ", &sw),
        heat("tanh, SGD: Uᵀ Σ̄_ε U", &su),
        heat("tanh, GD: W Σ̄_x Wᵀ", &gw),
        heat("tanh, GD: Uᵀ Σ̄_ε U", &gu),
        Panel::xy(
            "tanh: similarity over time",
            "t = η · steps",
            "cosine(W Σ̄_x Wᵀ, Uᵀ Σ̄_ε U)",
            vec![
                Series::new("SGD", Role::Sgd, Style::Markers, s0.column("t")?, s0.column("cos")?),
                Series::new("GD", Role::Gd, Style::Markers, g0.column("t")?, g0.column("cos")?),
            ],
            false,
            false,
        ),
        Panel::xy(
            &format!("final similarity by activation, mean over {SEEDS} seeds (0 tanh, 1 ReLU, 2 leaky ReLU, 3 swish)"),
            "activation index",
            "cosine similarity",
            vec![
                Series::new("SGD", Role::Sgd, Style::Markers, x.clone(), sim[0].clone()),
                Series::new("GD", Role::Gd, Style::Markers, x.clone(), sim[1].clone()),
                Series::new(
                    "at initialization (seed 0)",
                    Role::Other(3),
                    Style::Markers,
                    x,
                    sim[2].clone(),
                ),
            ],
            false,
            false,
        ),
    ];
    Ok(Figure {
        title: "Fig. 6/9: representations under SGD vs GD".into(),
        columns: 2,
        panels,
    })
}

/// Settings, notes and logs.
pub fn details(r: &Results) -> Result<Details> {
    let mut rows = vec![];
    let mut text = vec![];
    for (i, (_, act)) in ACTS.iter().enumerate() {
        let (s, g) = (finals(r, act, "sgd")?, finals(r, act, "gd")?);
        for seed in 0..SEEDS as usize {
            rows.push(vec![i as f64, seed as f64, s[seed], g[seed]]);
        }
        let ((ms, ses), (mg, seg)) = (mean_se(&s), mean_se(&g));
        text.push(format!("{act} {} ± {} / {} ± {}", fmt(ms), fmt(ses), fmt(mg), fmt(seg)));
    }
    let (mb, seb) = mean_se(&finals(r, "tanh", "sgd_big_eta")?);
    Ok(Details {
        settings: vec![
            ("model".into(), format!("two-layer MLP [{D}, {H}, {D}], no biases, Kaiming init; tanh (Fig. 6), ReLU, leaky ReLU (slope 0.1), swish (Fig. 9)")),
            ("data".into(), "x ~ N(0, I₄₀), y = x + ε, ε ~ N(0, diag(5, 1, …, 1))".into()),
            ("SGD".into(), format!("online, S = 1, η = {ETA}, {} steps (and η = {ETA_BIG} for tanh, {} steps: the same t = {})", sgd_steps(r.full), steps_at(sgd_steps(r.full), ETA_BIG), fmt(ETA * sgd_steps(r.full) as f64))),
            ("GD".into(), format!("500 fixed samples, η = {ETA_GD}, {} steps (the same t)", steps_at(sgd_steps(r.full), ETA_GD))),
            ("seeds".into(), format!("{SEEDS} per run (0 … {}); SGD and GD of a seed share the initialization", SEEDS - 1)),
            ("measure".into(), "cosine similarity of the flattened matrices W Σ̄_x Wᵀ and Uᵀ Σ̄_ε U (Σ̄ = Σ/TrΣ)".into()),
        ],
        notes: vec![format!(
            "Final similarities, mean ± standard error over {SEEDS} seeds (SGD / GD): {}; tanh SGD at η = {ETA_BIG}: {} ± {}.",
            text.join(", "),
            fmt(mb),
            fmt(seb)
        )],
        logs: vec![("similarity".into(), log_of(&["activation", "seed", "cos_sgd", "cos_gd"], rows))],
    })
}
