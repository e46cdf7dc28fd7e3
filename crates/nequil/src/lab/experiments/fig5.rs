//! Fig. 5: per-layer norms of a deep linear net under SGD. The corrected Theorem 5.4
//! (book `theory/closed-forms.md#deep-linear`, `theory/closed-forms.md#deep-linear`) predicts that at the noise equilibrium all intermediate layers share one
//! norm, `‖W_i‖² = d c²`, while the input and output layers are set by the input and output noise.
//!
//! Synthetic setting (the paper uses MNIST with unstated depth and width): depth 4, widths
//! [6, 6, 6, 6, 6], Σ_x = diag(0.5·I₃, 1.5·I₃), Σ_ε = diag(3, 1, …, 1), y = x + ε, online SGD
//! with S = 1 at two learning rates, from equal initial norms (Kaiming) and from unequal ones
//! (per-layer standard deviations 0.2, 0.6, 0.3, 0.5). Every run has the same seed, so both
//! initializations see the same data stream. With `--mnist DIR` a deep linear net is also trained
//! on MNIST (regression onto one-hot labels) and its layer norms are shown.

use super::common::{fmt, log_of, tail_mean, Check, Ctx};
use super::plan::{base_spec, Details, Plan, PlannedRun, Results, RunResult};
use crate::core::data::{Cov, Dataset, Gaussian, Source, Target};
use crate::core::equilibrium::deep_linear_equilibrium;
use crate::core::linalg::Dense;
use crate::lab::files::{Figure, Panel, Role, Series, Style};
use crate::lab::spec::{CovSpec, InitName, ModelKind, TargetKind};
use crate::Result;

const D: usize = 6;
const DEPTH: usize = 4;
const SEED: u64 = 0;
const ETA_B: f64 = 0.004;
const ETA_S: f64 = 0.002;
const MNIST_WIDTHS: [usize; 5] = [784, 32, 32, 32, 10];

fn base(full: bool) -> u64 {
    if full {
        3_000_000
    } else {
        800_000
    }
}

fn mnist_steps(full: bool) -> u64 {
    if full {
        60_000
    } else {
        15_000
    }
}

fn noise() -> Vec<f64> {
    let mut noise = vec![1.0; D];
    noise[0] = 3.0;
    noise
}

fn dist() -> Result<Gaussian> {
    Gaussian::new(D, D, Cov::phi(D, 0.5), Target::Identity, Some(Cov::Diag(noise())))
}

fn name(unequal: bool, eta: f64) -> String {
    format!("{}/eta={eta}", if unequal { "unequal" } else { "equal" })
}

/// The plan.
pub fn plan(ctx: &Ctx) -> Result<Plan> {
    let mut p = Plan::new();
    for unequal in [false, true] {
        for (eta, steps) in [(ETA_B, base(ctx.full)), (ETA_S, 2 * base(ctx.full))] {
            let mut s = base_spec(SEED, ModelKind::Linear, &[D; DEPTH + 1], steps);
            s.data.x_cov = Some(CovSpec::Phi(0.5));
            s.data.noise_cov = Some(CovSpec::Diag(noise()));
            s.train.lr = Some(eta);
            if unequal {
                s.model.init = InitName::Std;
                s.model.init_std = Some(vec![0.2, 0.6, 0.3, 0.5]);
            }
            s.probes.every = Some((steps / 500).max(1));
            s.probes.eval_samples = 64;
            p.add(PlannedRun::new(name(unequal, eta), s))?;
        }
    }
    if let Some(dir) = &ctx.mnist {
        let (images, labels) = crate::lab::io::load_mnist(dir, true, Some(20_000))?;
        let n = labels.len();
        let mut y = vec![0.0; n * 10];
        for (i, &l) in labels.iter().enumerate() {
            y[i * 10 + l as usize] = 1.0;
        }
        let data = Dataset::new(n, 784, 10, images.data, y)?;
        let steps = mnist_steps(ctx.full);
        let mut s = base_spec(SEED, ModelKind::Linear, &MNIST_WIDTHS, steps);
        // The spec's data are replaced by MNIST; its [data] only has to fit the model.
        s.data.target = TargetKind::Linear;
        s.model.init = InitName::Xavier;
        s.train.batch_size = 16;
        s.train.lr = Some(0.01);
        // The loss column is evaluated on the whole training set: a sparse log.
        s.probes.every = Some((steps / 50).max(1));
        p.add(
            PlannedRun::new("mnist", s)
                .source(Source::Fixed {
                    data,
                    replacement: true,
                    dist: None,
                })
                .cost(16),
        )?;
    }
    Ok(p)
}

/// The squared Frobenius norm of each layer over the log.
fn layer_norms(run: &RunResult) -> Result<Vec<Vec<f64>>> {
    (0..DEPTH)
        .map(|l| run.column(&format!("norm2.layers.{l}.weight")))
        .collect()
}

/// Time averages (mean, standard error of batch means) of each layer's norm over the last 30%.
fn tails(run: &RunResult) -> Result<Vec<(f64, f64)>> {
    Ok(layer_norms(run)?.iter().map(|n| tail_mean(n, 0.3)).collect())
}

fn predicted() -> Result<Vec<f64>> {
    let g = dist()?;
    Ok(deep_linear_equilibrium(
        &[D; DEPTH + 1],
        &Dense::eye(D),
        &g.x_second_moment(),
        &g.noise_second_moment(),
    )?
    .predicted_norms2)
}

/// The checks.
pub fn checks(r: &Results) -> Result<Vec<Check>> {
    let pred = predicted()?;
    let mut checks = vec![];
    let t = |unequal: bool, eta: f64| -> Result<Vec<(f64, f64)>> { tails(r.run(&name(unequal, eta))?) };
    let (eb, es, ub, us) = (t(false, ETA_B)?, t(false, ETA_S)?, t(true, ETA_B)?, t(true, ETA_S)?);
    for (label, b, s) in [("equal", &eb, &es), ("unequal", &ub, &us)] {
        // Intermediate layers share one norm.
        let (m1, m2) = (s[1], s[2]);
        let bias = ((b[1].0 - b[2].0) - (m1.0 - m2.0)).abs();
        checks.push(Check::close(
            &format!("{label} initial norms: the intermediate layers converge to one norm (‖W₂‖² − ‖W₃‖², η = {ETA_S})"),
            0.0,
            m1.0 - m2.0,
            3.0 * (m1.1 * m1.1 + m2.1 * m2.1).sqrt() + bias,
            "3 standard errors of the difference of time averages plus its change from η = 0.004 to 0.002 (finite-η bias bound)",
        ));
        let mut worst: f64 = 0.0;
        for l in 0..DEPTH {
            let tol = 3.0 * s[l].1 + (b[l].0 - s[l].0).abs();
            worst = worst.max((s[l].0 - pred[l]).abs() / tol);
        }
        checks.push(Check::at_most(
            &format!("{label} initial norms: every layer's ‖W_l‖² matches the corrected Thm 5.4 (largest |x − theory| / tolerance)"),
            1.0,
            worst,
            "per layer: 3 standard errors of the time average plus |x(η = 0.004) − x(η = 0.002)|, the most a finite-η bias shrinking at least like √η can leave",
        ));
    }
    let mut worst_init: f64 = 0.0;
    for l in 0..DEPTH {
        let (a, b) = (es[l], us[l]);
        worst_init = worst_init.max((a.0 - b.0).abs() / (3.0 * (a.1 * a.1 + b.1 * b.1).sqrt()));
    }
    checks.push(Check::at_most(
        "robust to initialization: equal and unequal starts end at the same layer norms (largest difference in units of 3 combined standard errors)",
        1.0,
        worst_init,
        "the noise equilibrium is unique (Thm 4.3), so the initial charges are forgotten",
    ));
    if r.has("mnist") {
        let m = r.run("mnist")?;
        let norms = layer_norms(m)?;
        let spread = |i: usize| {
            let n: Vec<f64> = norms.iter().map(|c| c[i]).collect();
            (n[1] - n[2]).abs().max((n[2] - n[3]).abs()) / ((n[1] + n[2] + n[3]) / 3.0)
        };
        let (s0, s1) = (spread(0), spread(norms[0].len() - 1));
        checks.push(Check::at_most(
            "MNIST: the intermediate layers' norms move together (final relative spread over initial)",
            0.5,
            s1 / s0.max(1e-12),
            "direction of the claim; MNIST is not at a noise-equilibrium global minimum in this budget, so only the trend is tested",
        ));
    }
    Ok(checks)
}

/// The figure.
pub fn figure(r: &Results) -> Result<Figure> {
    let pred = predicted()?;
    let mut panels = vec![];
    for (title, unequal) in [
        ("equal initial norms (Kaiming)", false),
        ("unequal initial norms", true),
    ] {
        let run = r.run(&name(unequal, ETA_S))?;
        let (t, norms) = (run.column("t")?, layer_norms(run)?);
        let stride = (t.len() / 120).max(1);
        let mut series = vec![];
        for (l, n) in norms.iter().enumerate() {
            let role = if l == 0 { Role::Sgd } else { Role::Other(l as u8) };
            series.push(Series::new(
                format!("‖W{}‖² (SGD)", l + 1),
                role,
                Style::Markers,
                t.iter().step_by(stride).cloned().collect(),
                n.iter().step_by(stride).cloned().collect(),
            ));
        }
        let t_end = t[t.len() - 1];
        for (l, p) in pred.iter().enumerate() {
            series.push(Series::new(
                if l == 0 {
                    "corrected Thm 5.4".to_string()
                } else {
                    format!("theory ‖W{}‖²", l + 1)
                },
                Role::Theory,
                Style::Line,
                vec![0.0, t_end],
                vec![*p, *p],
            ));
        }
        panels.push(Panel::xy(
            &format!("depth 4, {title}, η = {ETA_S}"),
            "t = η · steps",
            "squared Frobenius norm",
            series,
            false,
            true,
        ));
    }
    if r.has("mnist") {
        let m = r.run("mnist")?;
        let (step, norms) = (m.column("step")?, layer_norms(m)?);
        let series = norms
            .iter()
            .enumerate()
            .map(|(l, n)| {
                Series::new(
                    format!("‖W{}‖²", l + 1),
                    if l == 0 { Role::Sgd } else { Role::Other(l as u8) },
                    Style::Markers,
                    step.clone(),
                    n.clone(),
                )
            })
            .collect();
        panels.push(Panel::xy(
            "MNIST, widths [784, 32, 32, 32, 10]",
            "iteration",
            "squared Frobenius norm",
            series,
            false,
            true,
        ));
    }
    Ok(Figure {
        title: "Fig. 5: deep linear net — intermediate layers share one norm".into(),
        columns: 2,
        panels,
    })
}

/// Settings, notes and logs.
pub fn details(r: &Results) -> Result<Details> {
    let pred = predicted()?;
    let (es, us) = (tails(r.run(&name(false, ETA_S))?)?, tails(r.run(&name(true, ETA_S))?)?);
    let mut notes = vec![
        "Both initializations see the same data stream, and their trajectories synchronize: after the transient the runs coincide to rounding, the strongest form of forgetting the initialization.".to_string(),
        format!(
            "Predicted ‖W_l‖² (corrected Thm 5.4): {}; measured at η = {ETA_S} (equal init): {}.",
            pred.iter().map(|v| fmt(*v)).collect::<Vec<_>>().join(", "),
            es.iter().map(|v| fmt(v.0)).collect::<Vec<_>>().join(", ")
        ),
    ];
    let mut settings = vec![
        (
            "model".into(),
            format!("deep linear, widths {:?}, no biases", [D; DEPTH + 1]),
        ),
        (
            "data".into(),
            "online x ~ N(0, diag(0.5·I₃, 1.5·I₃)), y = x + ε, Σ_ε = diag(3, 1, 1, 1, 1, 1)".into(),
        ),
        (
            "SGD".into(),
            format!(
                "S = 1, η = {ETA_B} ({} steps) and η = {ETA_S} ({} steps); averages over the last 30%",
                base(r.full),
                2 * base(r.full)
            ),
        ),
        (
            "inits".into(),
            "Kaiming (equal norms) and per-layer std 0.2, 0.6, 0.3, 0.5".into(),
        ),
        ("seed".into(), format!("{SEED} for every run")),
    ];
    if r.has("mnist") {
        let m = r.run("mnist")?;
        let norms = layer_norms(m)?;
        let spread = |i: usize| {
            let n: Vec<f64> = norms.iter().map(|c| c[i]).collect();
            (n[1] - n[2]).abs().max((n[2] - n[3]).abs()) / ((n[1] + n[2] + n[3]) / 3.0)
        };
        notes.push(format!(
            "MNIST: relative spread of the intermediate layer norms {} at the start, {} at the end.",
            fmt(spread(0)),
            fmt(spread(norms[0].len() - 1))
        ));
        settings.push((
            "MNIST".into(),
            format!(
                "first 20 000 training images, one-hot targets, widths {MNIST_WIDTHS:?}, Xavier init, S = 16, η = 0.01, {} steps",
                mnist_steps(r.full)
            ),
        ));
    }
    let rows = (0..DEPTH)
        .map(|l| vec![(l + 1) as f64, pred[l], es[l].0, es[l].1, us[l].0, us[l].1])
        .collect();
    Ok(Details {
        settings,
        notes,
        logs: vec![(
            "layers".into(),
            log_of(
                &[
                    "layer",
                    "theory",
                    "equal_init",
                    "equal_init_se",
                    "unequal_init",
                    "unequal_init_se",
                ],
                rows,
            ),
        )],
    })
}
