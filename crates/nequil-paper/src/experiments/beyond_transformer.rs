//! Beyond the paper (c): the attention heads of a one-block transformer. Per head, replacing
//! `W_q → B W_q`, `W_k → B⁻ᵀ W_k` leaves every attention logit unchanged, and
//! `W_v → B W_v`, `W_o → W_o B⁻¹` every output; with `B = e^{λM}`, `M` symmetric, each is a
//! matrix family of exponential symmetries (catalog `qk.{label}.{h}`, `vo.{label}.{h}`). Their
//! matrix charge `Q − K` moves by exactly `(1 − 2ηγ)²(Q − K) + η²(Σ_plus ĝ_v ĝ_vᵀ − Σ_minus ĝ_u ĝ_uᵀ)`
//! per step, with expectation `−κ(Q − K) + η²((G₊ − G₋) + (Γ₊ − Γ₋)/S)`, `κ = 4ηγ − 4η²γ²` (book
//! `theory/layers.md#matrix-family`): a stationary SGD averages the per-step imbalance
//! `D = S(G₊ − G₋) + (Γ₊ − Γ₋) − (Sκ/η²)(Q − K)` to the zero matrix, the family's noise
//! equilibrium (without weight decay, the alignment `W_K Γ_K W_Kᵀ = W_Q Γ_Q W_Qᵀ` of the head's
//! gradient noise). GD from the same initialization has no noise to move `Q − K`; SGD and GD are
//! compared at equal t = η·steps (GD's whole run: a full-batch step costs N SGD steps), and SGD's
//! balance is tested on its own much longer run.
//!
//! A small weight decay γ = 10⁻³ runs in both: without it the QK charges kept growing slowly under
//! SGD (the logits drift along directions the loss barely sees), so their imbalance had no
//! stationary time average to test; with it every charge is stationary after t ≈ 1/(4γ).
//!
//! Setting: sequences `[T, E] = [4, 6]` of Gaussian tokens, a random teacher of the same
//! architecture plus label noise, `N` = 1024 fixed samples shared by SGD and GD (so Σ on them is
//! SGD's exact noise); the model has fewer parameters than samples, so the residuals keep their
//! noise instead of interpolating.

use super::common::{fmt, log_of, mean_se, tail_batch_mean, Check, Ctx};
use super::plan::{full_batch, sequential_spec, Details, Plan, PlannedRun, Results, RunResult};
use crate::files::{Figure, Panel, Role, Series, Style};
use nequil::core::equilibrium::families_moments;
use nequil::core::layers::{
    LayerNormConfig, LinearConfig, MeanPoolConfig, ReluConfig, ResidualConfig, SelfAttentionConfig,
};
use nequil::core::linalg::Dense;
use nequil::core::models::Model;
use nequil::core::symmetry::catalog::catalog;
use nequil::core::symmetry::generator::Generator;
use nequil::core::symmetry::MatrixFamily;
use nequil::instruments::StepChargeProbe;
use nequil::lab::spec::{CovSpec, DataMode, LayerSpec, Spec, TargetKind};
use nequil::train::{Probe, ProbeCtx};
use nequil::{Error, Result};

/// Sequence length and embedding width.
const T: usize = 4;
const E: usize = 6;
const HEADS: usize = 2;
/// Head dimension d = E / heads.
const DH: usize = E / HEADS;
const N: usize = 1024;
const NOISE: f64 = 0.5;
const ETA: f64 = 0.01;
const ETA_GD: f64 = 0.05;
/// SGD's batch size S.
const S: usize = 1;
/// Weight decay γ of every run.
const GAMMA: f64 = 0.001;
const TAIL: f64 = 0.5;
const BATCHES: usize = 10;

/// (seeds, SGD steps, GD steps).
fn sizes(full: bool) -> (u64, u64, u64) {
    if full {
        (8, 2_000_000, 3_000)
    } else {
        (4, 400_000, 1_000)
    }
}

/// The SGD step at which SGD and GD are compared: GD's whole run, t = η_GD · GD steps, in SGD's
/// steps (t/η).
fn equal_t_step(full: bool) -> u64 {
    let (_, _, gd_steps) = sizes(full);
    (ETA_GD * gd_steps as f64 / ETA).round() as u64
}

/// SGD's recording interval: half the equal-t step, so that t = η_GD · GD steps is recorded
/// (160 records quick, 267 `--full`).
fn sgd_every(full: bool) -> u64 {
    equal_t_step(full) / 2
}

fn layers() -> Vec<LayerSpec> {
    vec![
        LayerSpec::Residual(ResidualConfig {
            layers: vec![
                LayerSpec::LayerNorm(LayerNormConfig {
                    eps: 1e-5,
                    affine: true,
                }),
                LayerSpec::SelfAttention(SelfAttentionConfig {
                    heads: HEADS,
                    causal: false,
                    bias: true,
                }),
            ],
        }),
        LayerSpec::Residual(ResidualConfig {
            layers: vec![
                LayerSpec::LayerNorm(LayerNormConfig {
                    eps: 1e-5,
                    affine: true,
                }),
                LayerSpec::Linear(LinearConfig {
                    out_features: 8,
                    bias: true,
                }),
                LayerSpec::Relu(ReluConfig {}),
                LayerSpec::Linear(LinearConfig {
                    out_features: E,
                    bias: true,
                }),
            ],
        }),
        LayerSpec::MeanPool(MeanPoolConfig {}),
        LayerSpec::Linear(LinearConfig {
            out_features: 1,
            bias: true,
        }),
    ]
}

fn name(gd: bool, seed: u64) -> String {
    format!("{}/seed={seed}", if gd { "gd" } else { "sgd" })
}

/// The head families of the catalog, `qk.*` then `vo.*`.
fn families(model: &Model) -> Result<Vec<MatrixFamily>> {
    let mut fams: Vec<MatrixFamily> = catalog(model)
        .families
        .into_iter()
        .filter(|f| f.name.starts_with("qk.") || f.name.starts_with("vo."))
        .collect();
    fams.sort_by(|a, b| a.name.cmp(&b.name));
    if fams.len() != 2 * HEADS {
        return Err(Error::Numerical(format!(
            "beyond-transformer: expected {} head families in the catalog, found {}",
            2 * HEADS,
            fams.len()
        )));
    }
    Ok(fams)
}

/// The upper-triangle entries `(i, j)`, `i ≤ j`, of a d × d symmetric matrix.
fn upper(d: usize) -> Vec<(usize, usize)> {
    (0..d).flat_map(|i| (i..d).map(move |j| (i, j))).collect()
}

/// At its schedule, per head family f on the run's evaluation set (the training set), in units of
/// η²/S with SGD's η, S and the run's γ: the per-step imbalance
/// `D = Y − X = S(G₊ − G₋) + (Γ₊ − Γ₋) − c(Q − K)`, `c = 4Sγ(1 − ηγ)/η` (the expected change of
/// `Q − K` per step over η²/S), with `X = cQ + SG₋ + Γ₋`, `Y = cK + SG₊ + Γ₊`. Columns: the entries
/// of `D` (`{f}/step[i,j]`), its relative size `‖D‖_F / (‖X‖_F + ‖Y‖_F)` (`{f}/rho_step`), the same
/// without the mean-gradient terms (`{f}/rho`, the continuous-time alignment residual), the scale
/// `‖X‖_F + ‖Y‖_F` (`{f}/noise`), the charge `‖Q − K‖_F` (`{f}/charge`) and the weight decay's
/// share `c(‖Q‖_F + ‖K‖_F) / (c(‖Q‖_F + ‖K‖_F) + ‖Γ₊‖_F + ‖Γ₋‖_F)` of the balance (`{f}/decay_share`).
struct HeadProbe {
    families: Vec<MatrixFamily>,
}

impl Probe for HeadProbe {
    fn columns(&self) -> Vec<String> {
        let mut c = vec![];
        for f in &self.families {
            for k in ["rho", "rho_step", "noise", "charge", "decay_share"] {
                c.push(format!("{}/{k}", f.name));
            }
            for (i, j) in upper(f.dim) {
                c.push(format!("{}/step[{i},{j}]", f.name));
            }
        }
        c
    }
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        let ms = families_moments(ctx.model, &self.families, ctx.theta, ctx.eval_x, ctx.eval_y, ctx.eval_n)?;
        let s = S as f64;
        let c = 4.0 * s * ctx.weight_decay * (1.0 - ETA * ctx.weight_decay) / ETA;
        for (f, m) in self.families.iter().zip(ms) {
            let x_cont = m.q.scale(c).add_scaled(1.0, &m.gamma_minus);
            let y_cont = m.k.scale(c).add_scaled(1.0, &m.gamma_plus);
            let x = x_cont.add_scaled(s, &m.mean_minus);
            let y = y_cont.add_scaled(s, &m.mean_plus);
            let d = y.add_scaled(-1.0, &x);
            let scale = x.frob2().sqrt() + y.frob2().sqrt();
            let scale_cont = x_cont.frob2().sqrt() + y_cont.frob2().sqrt();
            out.extend([
                y_cont.add_scaled(-1.0, &x_cont).frob2().sqrt() / scale_cont,
                d.frob2().sqrt() / scale,
                scale,
                m.q.add_scaled(-1.0, &m.k).frob2().sqrt(),
                {
                    let decay = c * (m.q.frob2().sqrt() + m.k.frob2().sqrt());
                    decay / (decay + m.gamma_plus.frob2().sqrt() + m.gamma_minus.frob2().sqrt())
                },
            ]);
            out.extend(upper(f.dim).into_iter().map(|(i, j)| d.at(i, j)));
        }
        Ok(())
    }
}

/// Members of each family whose charge the step probe follows: a diagonal one `M = e_0 e_0ᵀ` and
/// a rotation `M = e_0 e_1ᵀ + e_1 e_0ᵀ`.
fn members(model: &Model, fams: &[MatrixFamily]) -> Result<Vec<(String, Generator)>> {
    let p = model.n_params();
    let mut out = vec![];
    for f in fams {
        let mut m = Dense::zeros(f.dim, f.dim);
        *m.at_mut(0, 0) = 1.0;
        out.push((format!("{}.0", f.name), f.generator(p, &m)?));
        let mut m = Dense::zeros(f.dim, f.dim);
        *m.at_mut(0, 1) = 1.0;
        *m.at_mut(1, 0) = 1.0;
        out.push((format!("{}.rot01", f.name), f.generator(p, &m)?));
    }
    Ok(out)
}

fn spec(seed: u64, gd: bool, full: bool) -> Spec {
    let (_, steps, gd_steps) = sizes(full);
    let mut s = sequential_spec(seed, &[T, E], layers(), if gd { gd_steps } else { steps });
    s.data.target = TargetKind::ModelTeacher;
    s.data.noise_cov = Some(CovSpec::Scalar(NOISE));
    s.data.mode = DataMode::Fixed;
    s.data.n = Some(N);
    s.train.weight_decay = GAMMA;
    if gd {
        full_batch(&mut s, N);
        s.train.lr = Some(ETA_GD);
        s.probes.every = Some((gd_steps / 50).max(1));
    } else {
        s.train.lr = Some(ETA);
        s.train.batch_size = S;
        s.probes.every = Some(sgd_every(full));
    }
    s
}

/// The plan.
pub fn plan(ctx: &Ctx) -> Result<Plan> {
    let (seeds, _, _) = sizes(ctx.full);
    let mut p = Plan::new();
    for seed in 0..seeds {
        for gd in [false, true] {
            let s = spec(seed, gd, ctx.full);
            let model = s.model.build_model()?;
            let fams = families(&model)?;
            p.add(
                PlannedRun::new(name(gd, seed), s)
                    .probe(StepChargeProbe::new(members(&model, &fams)?)?)
                    .probe(HeadProbe { families: fams })
                    .cost(if gd { N as u64 } else { S as u64 }),
            )?;
        }
    }
    Ok(p)
}

/// The family names of a run's model.
fn family_names(run: &RunResult) -> Result<Vec<(String, usize)>> {
    Ok(families(&run.model)?.into_iter().map(|f| (f.name, f.dim)).collect())
}

/// One SGD run's family over the tail: the batch-means t-statistics of every entry of the
/// per-step imbalance, and `‖time-averaged imbalance‖_F / time-averaged scale`.
struct FamilyTail {
    z: Vec<f64>,
    rho_bar: f64,
}

fn family_tail(run: &RunResult, f: &str, d: usize) -> Result<FamilyTail> {
    let (scale, _) = tail_batch_mean(&run.column(&format!("{f}/noise"))?, TAIL, BATCHES);
    let mut z = vec![];
    let mut norm2 = 0.0;
    for (i, j) in upper(d) {
        let (m, se) = tail_batch_mean(&run.column(&format!("{f}/step[{i},{j}]"))?, TAIL, BATCHES);
        z.push(m / se);
        norm2 += if i == j { m * m } else { 2.0 * m * m };
    }
    Ok(FamilyTail {
        z,
        rho_bar: norm2.sqrt() / scale,
    })
}

/// The row of an SGD run recorded at `step`.
fn sgd_row_at(run: &RunResult, step: u64) -> Result<usize> {
    run.column("step")?
        .iter()
        .position(|&s| s == step as f64)
        .ok_or_else(|| Error::Numerical(format!("beyond-transformer: SGD has no record at step {step}")))
}

struct Measured {
    /// Per (seed, family): mean over the entries of z².
    z2: Vec<f64>,
    /// Per seed: GD's mean over families of ρ̃_f at the end of its run, t = η_GD · GD steps, minus
    /// SGD's at the same t.
    gap: Vec<f64>,
    /// Per seed: (SGD mean ρ̃_f at GD's final t, GD final mean ρ̃_f, initial mean ρ_f, SGD mean of the
    /// tail-averaged ρ̄_f).
    per_seed: Vec<(f64, f64, f64, f64)>,
    /// Per seed and family: (SGD ρ̄_f over the tail, GD ρ̃_f at its final t, SGD ρ̃_f at that t).
    per_family: Vec<(f64, f64, f64)>,
    identity_error: f64,
}

fn measure(r: &Results) -> Result<Measured> {
    let (seeds, _, _) = sizes(r.full);
    let mut m = Measured {
        z2: vec![],
        gap: vec![],
        per_seed: vec![],
        per_family: vec![],
        identity_error: 0.0,
    };
    for seed in 0..seeds {
        let (sgd, gd) = (r.run(&name(false, seed))?, r.run(&name(true, seed))?);
        let fams = family_names(sgd)?;
        let at = sgd_row_at(sgd, equal_t_step(r.full))?;
        let (mut s_mean, mut g_mean, mut i_mean, mut tail_mean) = (0.0, 0.0, 0.0, 0.0);
        for (f, d) in &fams {
            let t = family_tail(sgd, f, *d)?;
            m.z2.push(t.z.iter().map(|z| z * z).sum::<f64>() / t.z.len() as f64);
            let g = gd.last(&format!("{f}/rho_step"))?;
            let se = sgd.column(&format!("{f}/rho_step"))?[at];
            let k = fams.len() as f64;
            s_mean += se / k;
            g_mean += g / k;
            i_mean += gd.column(&format!("{f}/rho"))?[0] / k;
            tail_mean += t.rho_bar / k;
            m.per_family.push((t.rho_bar, g, se));
        }
        m.gap.push(g_mean - s_mean);
        m.per_seed.push((s_mean, g_mean, i_mean, tail_mean));
        for run in [sgd, gd] {
            for (key, v) in &run.summary {
                if key.ends_with("/max_identity_error") {
                    m.identity_error = m.identity_error.max(v[0]);
                }
            }
        }
    }
    Ok(m)
}

/// The checks.
pub fn checks(r: &Results) -> Result<Vec<Check>> {
    let (seeds, _, _) = sizes(r.full);
    let m = measure(r)?;
    let pairs = m.z2.len();
    let entries = DH * (DH + 1) / 2;
    let nu = (BATCHES - 1) as f64;
    let ez2 = nu / (nu - 2.0);
    let var_z2 = 3.0 * nu * nu / ((nu - 2.0) * (nu - 4.0)) - ez2 * ez2;
    let bound = ez2 + 3.0 * (var_z2 / pairs as f64).sqrt();
    let mean_z2 = m.z2.iter().sum::<f64>() / pairs as f64;
    let (mg, seg) = mean_se(&m.gap);
    let mean_of = |f: fn(&(f64, f64, f64, f64)) -> f64| m.per_seed.iter().map(f).sum::<f64>() / seeds as f64;
    let t_eq = equal_t_step(r.full) as f64 * ETA;
    let pct = (TAIL * 100.0) as u32;
    Ok(vec![
        Check::at_most(
            "SGD balances the gradient noise of every head's QK and VO family: mean over seeds × families × entries of z² = (tail-averaged entry of D = S(G₊ − G₋) + (Γ₊ − Γ₋) − c(Q − K) / its standard error)²",
            bound,
            mean_z2,
            &format!(
                "D is the exact expected change of Q − K per step over η²/S (c = 4Sγ(1 − ηγ)/η from the weight decay), so a stationary SGD averages every entry to 0. Each entry is averaged over the last {pct}% of the run with a standard error from {BATCHES} batch means: at balance z is t-distributed with ν = {}, E[z²] = ν/(ν − 2) = {}; bound: that plus 3 standard deviations of z² over {pairs} independent (seed, family) pairs, as if the {entries} entries of a family were one value ({})",
                BATCHES - 1,
                fmt(ez2),
                fmt((var_z2 / pairs as f64).sqrt())
            ),
        ),
        Check::at_least(
            &format!("GD does not align the heads, SGD does, at equal t = η·steps = {}: (GD's mean over families of ρ̃_f − SGD's, per seed) over its standard error; ρ̃ = ‖D‖_F / (‖X‖_F + ‖Y‖_F) at the state reached, with SGD's η and S for both", fmt(t_eq)),
            3.0,
            mg / seg,
            &format!(
                "k = 3 standard errors over {seeds} seeds of the paired difference (same teacher, data and initialization; GD at η = {ETA_GD} for {} steps, SGD at η = {ETA} for {} of its steps): SGD {}, GD {} (at initialization {}), difference {} ± {}. SGD's noise moves Q − K at the rate (η/S)Tr[·Σ]; GD moves it only through weight decay (e^(−4γt) = {} over this t) and η² terms. SGD's later tail average is {}",
                fmt(t_eq / ETA_GD),
                fmt(t_eq / ETA),
                fmt(mean_of(|p| p.0)),
                fmt(mean_of(|p| p.1)),
                fmt(mean_of(|p| p.2)),
                fmt(mg),
                fmt(seg),
                fmt((-4.0 * GAMMA * t_eq).exp()),
                fmt(mean_of(|p| p.3))
            ),
        ),
        Check::at_most(
            "Exact per-step law of the head charges: C_M' = (1 − 2ηγ)²C_M + η² ĝᵀA_Mĝ for the members M = e₀e₀ᵀ and M = e₀e₁ᵀ + e₁e₀ᵀ of every family, at every update (max error relative to ‖θ‖², SGD and GD, all seeds)",
            1e-12,
            m.identity_error,
            "float rounding: every per-sample gradient is orthogonal to A_Mθ, so the first-order term vanishes identically",
        ),
    ])
}

/// Means of consecutive windows of `w` rows: (x of the window's last row, mean of y).
fn windows(x: &[f64], y: &[f64], w: usize) -> (Vec<f64>, Vec<f64>) {
    x.chunks(w)
        .zip(y.chunks(w))
        .map(|(xs, ys)| (xs[xs.len() - 1], ys.iter().sum::<f64>() / ys.len() as f64))
        .unzip()
}

/// The figure (seed 0; time on a log axis from the first record after t = 0).
pub fn figure(r: &Results) -> Result<Figure> {
    let (sgd, gd) = (r.run(&name(false, 0))?, r.run(&name(true, 0))?);
    let (ts, tg) = (sgd.column("t")?, gd.column("t")?);
    let mut res = vec![];
    let mut charges = vec![];
    for (k, (f, _)) in family_names(sgd)?.iter().enumerate() {
        // One colour per family; SGD as markers, GD as lines.
        let (role_s, role_g) = (Role::Other(k as u8), Role::Other(k as u8));
        let rho = sgd.column(&format!("{f}/rho"))?;
        // Every record up to the equal-t comparison and the next ten, means of 10 records after.
        let early = 12.min(ts.len());
        let (mut x, mut y) = (ts[1..early].to_vec(), rho[1..early].to_vec());
        let (xl, yl) = windows(&ts[early..], &rho[early..], 10);
        x.extend(xl);
        y.extend(yl);
        res.push(Series::new(
            format!("{f}, SGD (records up to t = {}, then means of 10)", fmt(ts[early - 1])),
            role_s,
            Style::Markers,
            x,
            y,
        ));
        res.push(Series::new(
            format!("{f}, GD"),
            role_g,
            Style::Line,
            tg[1..].to_vec(),
            gd.column(&format!("{f}/rho"))?[1..].to_vec(),
        ));
        charges.push(Series::new(
            format!("{f}, SGD"),
            role_s,
            Style::Markers,
            ts[1..].to_vec(),
            sgd.column(&format!("{f}/charge"))?[1..].to_vec(),
        ));
        charges.push(Series::new(
            format!("{f}, GD"),
            role_g,
            Style::Line,
            tg[1..].to_vec(),
            gd.column(&format!("{f}/charge"))?[1..].to_vec(),
        ));
    }
    let m = measure(r)?;
    let idx: Vec<f64> = (0..m.per_family.len()).map(|i| i as f64).collect();
    let pick = |f: fn(&(f64, f64, f64)) -> f64| m.per_family.iter().map(f).collect::<Vec<f64>>();
    let t_eq = fmt(equal_t_step(r.full) as f64 * ETA);
    let (_, steps, _) = sizes(r.full);
    let t_end = steps as f64 * ETA;
    Ok(Figure {
        title: "Beyond the paper (c): per-head QK and VO noise alignment of a transformer block, SGD against GD".into(),
        columns: 3,
        panels: vec![
            Panel::xy(
                "alignment residual per head family (seed 0; markers SGD, lines GD)",
                "t = η · steps",
                "‖Y − X‖/(‖X‖ + ‖Y‖), mean-gradient terms left out",
                res,
                true,
                false,
            ),
            Panel::xy(
                "matrix charges ‖Q − K‖_F (seed 0; markers SGD, lines GD)",
                "t = η · steps",
                "‖Q − K‖_F",
                charges,
                true,
                false,
            ),
            Panel::xy(
                &format!(
                    "imbalance ρ̃ at equal t = {t_eq}, and SGD's average over t = {}–{}",
                    fmt((1.0 - TAIL) * t_end),
                    fmt(t_end)
                ),
                "seed × 4 + family (qk.0.1.0, qk.0.1.1, vo.0.1.0, vo.0.1.1)",
                "relative imbalance",
                vec![
                    Series::new(
                        format!("GD at t = {t_eq} (drawn 0.2 left)"),
                        Role::Gd,
                        Style::Markers,
                        idx.iter().map(|i| i - 0.2).collect(),
                        pick(|p| p.1),
                    ),
                    Series::new(
                        format!("SGD at t = {t_eq} (drawn 0.2 right)"),
                        Role::Sgd,
                        Style::Markers,
                        idx.iter().map(|i| i + 0.2).collect(),
                        pick(|p| p.2),
                    ),
                    Series::new(
                        format!(
                            "SGD, time average over t = {}–{}",
                            fmt((1.0 - TAIL) * t_end),
                            fmt(t_end)
                        ),
                        Role::Sgd,
                        Style::Markers,
                        idx,
                        pick(|p| p.0),
                    ),
                ],
                false,
                true,
            ),
        ],
    })
}

/// Mean over seeds and the families whose name starts with `prefix` of the SGD tail average of
/// the weight decay's share of the balance.
fn decay_share(r: &Results, prefix: &str) -> Result<f64> {
    let (seeds, _, _) = sizes(r.full);
    let mut v = vec![];
    for seed in 0..seeds {
        let run = r.run(&name(false, seed))?;
        for (f, _) in family_names(run)? {
            if f.starts_with(prefix) {
                v.push(tail_batch_mean(&run.column(&format!("{f}/decay_share"))?, TAIL, BATCHES).0);
            }
        }
    }
    Ok(v.iter().sum::<f64>() / v.len().max(1) as f64)
}

/// Settings, notes and logs.
pub fn details(r: &Results) -> Result<Details> {
    let (seeds, steps, gd_steps) = sizes(r.full);
    let m = measure(r)?;
    let rows = m
        .per_family
        .iter()
        .zip(&m.z2)
        .enumerate()
        .map(|(i, (p, z2))| vec![(i / (2 * HEADS)) as f64, (i % (2 * HEADS)) as f64, p.0, p.2, p.1, *z2])
        .collect();
    let mut logs = vec![(
        "per_family".to_string(),
        log_of(
            &[
                "seed",
                "family",
                "sgd_rho_bar_tail",
                "sgd_rho_step_equal_t",
                "gd_rho_step_end",
                "sgd_mean_z2",
            ],
            rows,
        ),
    )];
    for gd in [false, true] {
        let run = r.run(&name(gd, 0))?;
        let mut cols = vec!["t".to_string(), "loss".to_string()];
        for (f, _) in family_names(run)? {
            for c in ["rho", "rho_step", "noise", "charge"] {
                cols.push(format!("{f}/{c}"));
            }
        }
        let log = run.select(&cols, |c| c.replace(['/', '.'], "_"))?;
        logs.push((format!("{}_seed0", if gd { "gd" } else { "sgd" }), log));
    }
    Ok(Details {
        settings: vec![
            (
                "model".into(),
                format!("input [{T}, {E}] → residual(LayerNorm, self-attention {HEADS} heads of dimension {DH}) → residual(LayerNorm, linear 8, ReLU, linear {E}) → mean over the sequence → linear 1; Kaiming init"),
            ),
            (
                "data".into(),
                format!("N = {N} fixed samples, tokens x ~ N(0, I) reshaped to [{T}, {E}], y = f(x; θ_T) + ε with a random teacher of the same architecture (data.target = \"model-teacher\"), Var ε = {NOISE}"),
            ),
            ("SGD".into(), format!("S = {S} from the N samples (with replacement), η = {ETA}, {steps} steps, weight decay γ = {GAMMA}")),
            ("GD".into(), format!("full batch on the same N samples, η = {ETA_GD}, {gd_steps} steps, γ = {GAMMA}, from the same initialization")),
            ("seeds".into(), format!("{seeds} (each: teacher, data, initialization; shared by its SGD and GD runs)")),
            ("families".into(), "qk.0.1.h and vo.0.1.h (the attention layer is child 1 of residual block 0), Γ± and G± on the N samples".into()),
        ],
        notes: vec![
            format!(
                "The balance is between gradient noise and weight decay: over the SGD tails the decay term c(‖Q‖ + ‖K‖) makes up {} of the scale of the QK families and {} of the VO families (mean over seeds; the rest is the noise Γ±).",
                fmt(decay_share(r, "qk.")?),
                fmt(decay_share(r, "vo.")?)
            ),
            format!(
                "Without weight decay the VO families balance as well, but the QK charges keep growing slowly (the attention logits drift along directions the loss barely sees), so their time-averaged imbalance does not vanish on this time scale (see the book's reproducing page). γ = {GAMMA} makes every charge stationary within t ≈ 1/(4γ) = {}."
                , fmt(1.0 / (4.0 * GAMMA))
            ),
            format!(
                "SGD and GD are compared at equal t = {} (GD's whole run; a full-batch step costs N = {N} SGD steps, so GD does not run to SGD's t = {}). From {} at initialization, the mean imbalance ρ̃ falls to {} under SGD by then, and only to {} under GD, whose Q − K moves only through weight decay (e^(−4γt) = {} over this t) and η² terms; SGD goes on to {} (its tail average). At its own stationary point (t ≫ 1/(4γ)) GD would reach Q = K, the balance of the weights, not of the noise; that limit is not run here.",
                fmt(ETA_GD * gd_steps as f64),
                fmt(ETA * steps as f64),
                fmt(m.per_seed.iter().map(|p| p.2).sum::<f64>() / seeds as f64),
                fmt(m.per_seed.iter().map(|p| p.0).sum::<f64>() / seeds as f64),
                fmt(m.per_seed.iter().map(|p| p.1).sum::<f64>() / seeds as f64),
                fmt((-4.0 * GAMMA * ETA_GD * gd_steps as f64).exp()),
                fmt(m.per_seed.iter().map(|p| p.3).sum::<f64>() / seeds as f64)
            ),
        ],
        logs,
    })
}
