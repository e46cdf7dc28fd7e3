//! Beyond the paper: momentum and Adam.
//!
//! The paper's law is SGD's. Under heavy-ball momentum the book derives (`theory/momentum.md`)
//! that the charge follows SGD's law at the effective step η/(1 − β); under Adam no law is
//! claimed. Subjects: a two-layer linear net [8, 4, 2] and a ReLU MLP [8, 16, 2] with biases, on a
//! noisy linear teacher (online, S = 1), each under SGD (η), heavy-ball momentum (η, β = 0.9) and
//! Adam (its usual η = 10⁻³), with weight decay γ = 0.02 (where the equilibrium depends on the
//! step) and without (where it is Tr[AΣ] = 0 for every neuron), for [`SEEDS`] seeds.
//!
//! Checked (derived), with weight decay: under SGD and under momentum the layer pair's charge
//! ‖W‖² − ‖U‖² (time average over the second half) settles at the charge instrument's C* — SGD's
//! law at η, momentum's at η/(1 − β) — and under momentum away from SGD's law at the bare η.
//! Measured and reported: under Adam, where the charge settles; and without weight decay, how far
//! each neuron stays from its noise balance under SGD (at η/(1 − β), the same law as momentum),
//! momentum and Adam.

use super::common::{fmt, mean_se, Check, Ctx};
use super::plan::{base_spec, Details, Plan, PlannedRun, Results, RunResult};
use crate::files::{Figure, Panel, Role, Series, Style};
use nequil::core::equilibrium::{FlowParams, OrbitFlow};
use nequil::core::stats::grad_stats;
use nequil::core::symmetry::{catalog, catalog_symmetry, NoiseBalance, SymmetryKind};
use nequil::lab::spec::{ChargesSpec, CovSpec, ModelKind, OptimizerName, Spec, TargetKind};
use nequil::train::{eval_set, Probe, ProbeCtx};
use nequil::{Error, Result};
use std::path::Path;

/// Seeds per subject, optimizer and weight decay.
const SEEDS: u64 = 4;
/// Momentum β.
const BETA: f64 = 0.9;
/// Adam's learning rate.
const ADAM_LR: f64 = 1e-3;
/// Weight decay γ of the runs with weight decay.
const GAMMA: f64 = 0.02;
/// Evaluation samples (the statistics of the instruments).
const EVAL: usize = 1024;
/// Records per run.
const RECORDS: u64 = 400;
/// The charge the checks use.
const PAIR: &str = "layer_pair.0";

/// η of SGD and momentum, and the number of steps: the effective time η·steps/(1 − β) = 2000
/// (about a hundred relaxation times of the charge under momentum; SGD's time η·steps = 200 is
/// still some sixteen times 1/(4γ)).
fn eta_steps(full: bool) -> (f64, u64) {
    if full {
        (0.001, 200_000)
    } else {
        (0.002, 100_000)
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Subject {
    Linear,
    Relu,
}

const SUBJECTS: [Subject; 2] = [Subject::Linear, Subject::Relu];

impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::Linear => "linear",
            Subject::Relu => "relu",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Subject::Linear => "two-layer linear net [8, 4, 2]",
            Subject::Relu => "ReLU MLP [8, 16, 2] with biases",
        }
    }
}

const OPTS: [(OptimizerName, &str, Role); 3] = [
    (OptimizerName::Sgd, "SGD", Role::Sgd),
    (OptimizerName::Momentum, "momentum β = 0.9", Role::Momentum),
    (OptimizerName::Adam, "Adam", Role::Adam),
];

fn name(s: Subject, opt: OptimizerName, wd: bool, seed: u64) -> String {
    format!("{}/{opt}/{}/seed={seed}", s.label(), if wd { "wd" } else { "no-wd" })
}

fn spec(s: Subject, opt: OptimizerName, wd: bool, seed: u64, full: bool) -> Spec {
    let (eta, n) = eta_steps(full);
    let mut spec = match s {
        Subject::Linear => base_spec(seed, ModelKind::Linear, &[8, 4, 2], n),
        Subject::Relu => {
            let mut sp = base_spec(seed, ModelKind::Mlp, &[8, 16, 2], n);
            sp.model.bias = true;
            sp
        }
    };
    spec.data.target = TargetKind::Linear;
    spec.data.noise_cov = Some(CovSpec::Scalar(1.0));
    spec.train.optimizer = opt;
    spec.train.lr = Some(match opt {
        OptimizerName::Adam => ADAM_LR,
        // Without weight decay SGD runs at momentum's effective step: the same law, the same time.
        OptimizerName::Sgd if !wd => eta / (1.0 - BETA),
        _ => eta,
    });
    if opt == OptimizerName::Momentum {
        spec.train.momentum = Some(BETA);
    }
    spec.train.weight_decay = if wd { GAMMA } else { 0.0 };
    spec.probes.every = Some(n / RECORDS);
    spec.probes.eval_samples = EVAL;
    spec.probes.charges = Some(ChargesSpec {
        symmetries: vec![PAIR.into()],
        ..ChargesSpec::default()
    });
    spec
}

/// Records `imbalance`: the mean over the hidden neurons (those with gradient noise) of the
/// relative noise imbalance `Tr[A_kΣ] / (Tr[A_{k+}Σ] − Tr[A_{k−}Σ])` on the evaluation set,
/// `abs_imbalance`, the mean of its absolute value, and `abs_lambda`, the mean of `|λ*_k|`: how
/// far (in the log of the rescaling factor) each neuron is from the point of its orbit where its
/// noise balances (`Tr[A_kΣ] = 0`, the equilibrium without weight decay, whatever the step).
struct ImbalanceProbe {
    gens: Vec<nequil::core::symmetry::Generator>,
}

impl ImbalanceProbe {
    fn new(model: &nequil::core::models::Model) -> Self {
        ImbalanceProbe {
            gens: catalog(model)
                .symmetries
                .into_iter()
                .filter(|s| matches!(s.kind, SymmetryKind::NeuronRescaling { .. }))
                .map(|s| s.generator)
                .collect(),
        }
    }
}

impl Probe for ImbalanceProbe {
    fn columns(&self) -> Vec<String> {
        vec!["imbalance".into(), "abs_imbalance".into(), "abs_lambda".into()]
    }
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        let mut ws = ctx.model.workspace(ctx.eval_n.clamp(1, 256));
        let st = grad_stats(ctx.model, ctx.theta, ctx.eval_x, ctx.eval_y, ctx.eval_n, &mut ws);
        // γ = 0: the balance point Tr[AΣ] = 0 does not depend on η or S.
        let balance = FlowParams::continuous(1.0, 1, 0.0);
        let (mut sum, mut abs, mut lam, mut k) = (0.0, 0.0, 0.0, 0usize);
        for g in &self.gens {
            let nb = NoiseBalance::from_stats(g, ctx.theta, &st)?;
            let parts = nb.tr_a_sigma_pos - nb.tr_a_sigma_neg;
            let l = OrbitFlow::from_stats(g, ctx.theta, &st, &balance)?.solve().lambda;
            if parts > 0.0 && l.is_finite() {
                sum += nb.tr_a_sigma / parts;
                abs += (nb.tr_a_sigma / parts).abs();
                lam += l.abs();
                k += 1;
            }
        }
        let k = k.max(1) as f64;
        out.extend([sum / k, abs / k, lam / k]);
        Ok(())
    }
}

/// The plan.
pub fn plan(ctx: &Ctx) -> Result<Plan> {
    let mut p = Plan::new();
    for s in SUBJECTS {
        for wd in [true, false] {
            for (opt, _, _) in OPTS {
                for seed in 0..SEEDS {
                    let sp = spec(s, opt, wd, seed, ctx.full);
                    let probe = ImbalanceProbe::new(&sp.model.build_model()?);
                    p.add(PlannedRun::new(name(s, opt, wd, seed), sp).probe(probe))?;
                }
            }
        }
    }
    Ok(p)
}

/// Second-half time averages of C and of the instrument's C*.
fn settle(run: &RunResult) -> Result<(f64, f64)> {
    let c = run.column(&format!("{PAIR}/C"))?;
    let cs = run.column(&format!("{PAIR}/C_star"))?;
    let h = c.len() / 2;
    let m = |v: &[f64]| v[h..].iter().sum::<f64>() / (v.len() - h) as f64;
    Ok((m(&c), m(&cs)))
}

/// SGD's C* at the bare step η on the final θ's orbit (the run's evaluation set).
fn bare_c_star(run: &RunResult) -> Result<f64> {
    let built = run.spec.build(Path::new("."))?;
    let (x, y, n) = eval_set(&built.source, EVAL, run.spec.seed);
    let mut ws = run.model.workspace(256);
    let st = grad_stats(&run.model, &run.theta, &x, &y, n, &mut ws);
    let sym = catalog_symmetry(&run.model, PAIR)?;
    let t = &run.spec.train;
    let eta =
        t.lr.ok_or_else(|| Error::Numerical("beyond-optimizers: constant η expected".into()))?;
    let params = FlowParams::continuous(eta, t.batch_size, t.weight_decay);
    Ok(OrbitFlow::from_stats(&sym.generator, &run.theta, &st, &params)?
        .solve()
        .c_star)
}

fn per_seed<T>(f: impl Fn(u64) -> Result<T>) -> Result<Vec<T>> {
    (0..SEEDS).map(f).collect()
}

/// The checks.
pub fn checks(r: &Results) -> Result<Vec<Check>> {
    let mut checks = vec![];
    for s in SUBJECTS {
        {
            let wd = true;
            for (opt, label, _) in OPTS.iter().take(2) {
                let gaps = per_seed(|seed| {
                    let (c, cs) = settle(r.run(&name(s, *opt, wd, seed))?)?;
                    Ok(c - cs)
                })?;
                let (g, se) = mean_se(&gaps);
                let law = if *opt == OptimizerName::Momentum {
                    "momentum's law: SGD's at the effective step η/(1 − β)"
                } else {
                    "SGD's law"
                };
                checks.push(Check::close(
                    &format!(
                        "{}, {label}, γ = {}: the layer pair's charge ‖W‖² − ‖U‖² settles at C* of {law} (second-half time averages, C − C*, mean over {SEEDS} seeds)",
                        s.title(),
                        if wd { GAMMA } else { 0.0 }
                    ),
                    0.0,
                    g,
                    3.0 * se,
                    &format!(
                        "k = 3 standard errors over {SEEDS} independent seeds (± {}); the law's next correction, of relative order η_eff·λ, is below that at this step (book theory/momentum.md#validity)",
                        fmt(se)
                    ),
                ));
            }
            {
                // The effective step matters: SGD's law at the bare η is far off.
                let (c, cb): (Vec<f64>, Vec<f64>) = per_seed(|seed| {
                    let run = r.run(&name(s, OptimizerName::Momentum, true, seed))?;
                    Ok((settle(run)?.0, bare_c_star(run)?))
                })?
                .into_iter()
                .unzip();
                let d: Vec<f64> = c.iter().zip(&cb).map(|(a, b)| a - b).collect();
                let (m, se) = mean_se(&d);
                checks.push(Check::at_least(
                    &format!(
                        "{}, momentum, γ = {GAMMA}: the charge is not where SGD's law at the bare η would put it, |C − C*(η)| in standard errors over {SEEDS} seeds (C = {}, C*(η) = {})",
                        s.title(),
                        fmt(mean_se(&c).0),
                        fmt(mean_se(&cb).0)
                    ),
                    3.0,
                    m.abs() / se,
                    "with weight decay 4γC* = (η_eff/S)Tr[AΣ] depends on the step: η_eff = 10η moves C* by much more than the seeds' scatter",
                ));
            }
        }
    }
    Ok(checks)
}

/// The figure (seed 0).
pub fn figure(r: &Results) -> Result<Figure> {
    let mut panels = vec![];
    for s in SUBJECTS {
        let mut charge = vec![];
        for (opt, label, role) in OPTS {
            let run = r.run(&name(s, opt, true, 0))?;
            let (st, c) = (run.column("step")?, run.column(&format!("{PAIR}/C"))?);
            charge.push(Series::new(label, role, Style::Markers, st.clone(), c));
            if opt != OptimizerName::Adam {
                let cs = run.column(&format!("{PAIR}/C_star"))?;
                charge.push(Series::new(
                    format!(
                        "C* ({})",
                        if opt == OptimizerName::Sgd {
                            "η"
                        } else {
                            "η/(1 − β)"
                        }
                    ),
                    if opt == OptimizerName::Sgd {
                        Role::Theory
                    } else {
                        Role::Other(4)
                    },
                    Style::Line,
                    st,
                    cs,
                ));
            }
        }
        panels.push(Panel::xy(
            &format!("{}, γ = {GAMMA}: layer-pair charge", s.title()),
            "iteration",
            "C = ‖W‖² − ‖U‖²",
            charge,
            false,
            false,
        ));
        let mut imb = vec![];
        for (opt, label, role) in OPTS {
            let run = r.run(&name(s, opt, false, 0))?;
            let (st, v) = (run.column("step")?, run.column("abs_lambda")?);
            let label = if opt == OptimizerName::Sgd {
                "SGD at η/(1 − β)"
            } else {
                label
            };
            imb.push(Series::new(label, role, Style::Markers, st, v));
        }
        panels.push(Panel::xy(
            &format!("{}, γ = 0: distance of the neurons to their noise balance", s.title()),
            "iteration",
            "mean_k |λ*_k| (log of the rescaling to Tr[A_kΣ] = 0; log scale)",
            imb,
            false,
            true,
        ));
    }
    Ok(Figure {
        title: "Momentum settles at the law of the effective step; Adam, measured".into(),
        columns: 2,
        panels,
    })
}

/// Settings, notes and logs.
pub fn details(r: &Results) -> Result<Details> {
    let (eta, n) = eta_steps(r.full);
    let mut notes = vec![];
    let mut logs = vec![];
    for s in SUBJECTS {
        // Where the charge settles, under each optimizer, with weight decay.
        let mut parts = vec![];
        for (opt, label, _) in OPTS {
            let v = per_seed(|seed| settle(r.run(&name(s, opt, true, seed))?))?;
            let (c, se) = mean_se(&v.iter().map(|p| p.0).collect::<Vec<_>>());
            let cs = mean_se(&v.iter().map(|p| p.1).collect::<Vec<_>>()).0;
            parts.push(if opt == OptimizerName::Adam {
                format!("{label} C = {} ± {} (no law)", fmt(c), fmt(se))
            } else {
                format!("{label} C = {} ± {} (C* = {})", fmt(c), fmt(se), fmt(cs))
            });
        }
        notes.push(format!(
            "{}, γ = {GAMMA}: the layer pair's charge settles at {} (second-half averages, mean ± standard error over {SEEDS} seeds).",
            s.title(),
            parts.join("; ")
        ));
        // The per-neuron noise balance, at the start and over the second half, without weight decay.
        let mut parts = vec![];
        for (opt, label, _) in OPTS {
            let v = per_seed(|seed| {
                let run = r.run(&name(s, opt, false, seed))?;
                let (a, sg, l) = (
                    run.column("abs_imbalance")?,
                    run.column("imbalance")?,
                    run.column("abs_lambda")?,
                );
                let h = a.len() / 2;
                let m = |x: &[f64]| x[h..].iter().sum::<f64>() / (x.len() - h) as f64;
                Ok([l[0], m(&l), a[0], m(&a), m(&sg)])
            })?;
            let f = |i: usize| mean_se(&v.iter().map(|p| p[i]).collect::<Vec<_>>());
            let pm = |i: usize| format!("{} ± {}", fmt(f(i).0), fmt(f(i).1));
            let label = if opt == OptimizerName::Sgd {
                "SGD at η/(1 − β)"
            } else {
                label
            };
            parts.push(format!(
                "{label}: mean |λ*_k| {} at the start, {} over the second half; mean |relative imbalance| {} at the start, {} over the second half (signed {})",
                fmt(f(0).0),
                pm(1),
                fmt(f(2).0),
                pm(3),
                pm(4)
            ));
        }
        notes.push(format!(
            "{}, γ = 0, each neuron's distance |λ*_k| to the point of its orbit where its noise balances (Tr[A_kΣ] = 0) and its relative imbalance Tr[A_kΣ]/(Tr[A_k+Σ] − Tr[A_k−Σ]), means over the neurons with noise and over {SEEDS} seeds: {}. For SGD and momentum the balance is the derived equilibrium (what is left is the fluctuation of the charges at finite η); for Adam this is a measurement.",
            s.title(),
            parts.join("; ")
        ));
        for (opt, _, _) in OPTS {
            for wd in [true, false] {
                let run = r.run(&name(s, opt, wd, 0))?;
                let cols = [
                    "step".to_string(),
                    "loss".to_string(),
                    format!("{PAIR}/C"),
                    format!("{PAIR}/C_star"),
                    "imbalance".to_string(),
                    "abs_imbalance".to_string(),
                    "abs_lambda".to_string(),
                ];
                logs.push((
                    format!("{}-{opt}-{}", s.label(), if wd { "wd" } else { "no-wd" }),
                    run.select(&cols, str::to_string)?,
                ));
            }
        }
    }
    Ok(Details {
        settings: vec![
            ("models".into(), "linear [8, 4, 2] (no biases); ReLU MLP [8, 16, 2] with biases; Kaiming fan-in init".into()),
            ("data".into(), "online, x ~ N(0, I), y = Vx + ε with a random teacher V ~ N(0, 1/8) per seed, ε ~ N(0, I); S = 1".into()),
            ("optimizers".into(), format!("SGD η = {eta} (γ = {GAMMA}) or η/(1 − β) = {} (γ = 0); heavy-ball momentum η = {eta}, β = {BETA} (η_eff = {}); Adam η = {ADAM_LR}, betas (0.9, 0.999), ε = 1e-8 (weight decay as L2 in the gradient)", fmt(eta / (1.0 - BETA)), fmt(eta / (1.0 - BETA)))),
            ("weight decay".into(), format!("γ = {GAMMA} (loss + γ‖θ‖²; PyTorch weight_decay = {}), and γ = 0", 2.0 * GAMMA)),
            ("steps".into(), format!("{n} per run, {RECORDS} records; averages over the second half; {SEEDS} seeds")),
            ("instrument".into(), format!("[probes.charges] on {PAIR} ({EVAL} evaluation samples): C and C* of the run's optimizer's law")),
        ],
        notes,
        logs,
    })
}
