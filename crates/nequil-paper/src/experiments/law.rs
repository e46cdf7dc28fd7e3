//! The law of balance (book `theory/closed-forms.md#scalar-uw`): for ℓ = (u w x − y)² the charge C = u² − w² decays as
//! exp(−4(γ + (η/S) Var[r x]) t), with r = u w x − y.
//!
//! Setting (not in the paper, fixed here): x ~ N(0, 1), y = x + ε with ε ~ N(0, 1); start at
//! u = 2, w = 1/2 (so u w = 1 is already a global minimum and C₀ = 3.75). Along the run,
//! Var[r x] = 2(u w − 1)² + σ_ε² exactly (Gaussian moments), evaluated before every update by a
//! probe that watches every step ([`LawProbe`]).

use super::common::{fmt, log_of, mean_se, Check, Ctx};
use super::plan::{base_spec, full_batch, Details, Plan, PlannedRun, Results};
use crate::files::{Figure, Panel, Role, Series, Style};
use nequil::lab::spec::{CovSpec, ModelKind};
use nequil::train::{Probe, ProbeCtx, StepCtx};
use nequil::Result;

/// The seed of every run (data stream; the start is fixed).
const SEED: u64 = 11;
const SEGMENTS: u64 = 40;

struct Setting {
    eta: f64,
    s: usize,
    gamma: f64,
    steps: u64,
    gd: bool,
}

fn settings(full: bool) -> Vec<Setting> {
    // Longer runs would drive |C| below the floating-point range; `--full` adds a smaller η instead.
    let mut v = vec![
        Setting {
            eta: 0.01,
            s: 1,
            gamma: 0.0,
            steps: 25_000,
            gd: false,
        },
        Setting {
            eta: 0.005,
            s: 1,
            gamma: 0.0,
            steps: 60_000,
            gd: false,
        },
        Setting {
            eta: 0.02,
            s: 4,
            gamma: 0.0,
            steps: 25_000,
            gd: false,
        },
        Setting {
            eta: 0.01,
            s: 1,
            gamma: 0.005,
            steps: 20_000,
            gd: false,
        },
        Setting {
            eta: 0.01,
            s: 1,
            gamma: 0.0,
            steps: 5_000,
            gd: true,
        },
    ];
    if full {
        v.insert(
            2,
            Setting {
                eta: 0.0025,
                s: 1,
                gamma: 0.0,
                steps: 240_000,
                gd: false,
            },
        );
    }
    v
}

fn name(st: &Setting) -> String {
    if st.gd {
        format!("gd/eta={}", st.eta)
    } else {
        format!("sgd/eta={}/S={}/gamma={}", st.eta, st.s, st.gamma)
    }
}

/// Integrates the law along the run, update by update (θ = [w, u]): columns `C` (= u² − w²),
/// `predicted_log_decrement` (Σ η · 4(γ + (η/S) Var[r x]) at the θ before each update),
/// `bias_bound` (Σ of the per-step terms the law omits: the mean-gradient part 4η²(E[rx])² and
/// the second-order term 8η⁴E[m⁴] ≤ 24η⁴(E m²)²) and `eta2_term` (Σ η²|ĝᵀAĝ|, the only change of
/// C under GD).
pub struct LawProbe {
    s: usize,
    pred: f64,
    bias: f64,
    eta2: f64,
}

impl LawProbe {
    /// For batch size `s`.
    pub fn new(s: usize) -> Self {
        LawProbe {
            s,
            pred: 0.0,
            bias: 0.0,
            eta2: 0.0,
        }
    }
}

impl Probe for LawProbe {
    fn columns(&self) -> Vec<String> {
        ["C", "predicted_log_decrement", "bias_bound", "eta2_term"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> Result<()> {
        let th = ctx.theta;
        out.extend([th[1] * th[1] - th[0] * th[0], self.pred, self.bias, self.eta2]);
        Ok(())
    }
    fn observes_steps(&self) -> bool {
        true
    }
    fn on_step(&mut self, st: &StepCtx<'_>) -> Result<()> {
        let (th, eta, s) = (st.theta_before, st.lr, self.s as f64);
        let p = th[0] * th[1] - 1.0;
        let var_rx = 2.0 * p * p + 1.0;
        // The law's instantaneous rate, times the time increment η.
        self.pred += eta * 4.0 * (st.weight_decay + eta / s * var_rx);
        let em2 = var_rx / s + p * p;
        self.bias += 4.0 * eta * eta * p * p + 24.0 * eta.powi(4) * em2 * em2;
        let g = st.grad;
        self.eta2 += eta * eta * (g[1] * g[1] - g[0] * g[0]).abs();
        Ok(())
    }
}

/// The plan.
pub fn plan(ctx: &Ctx) -> Result<Plan> {
    let mut p = Plan::new();
    for st in settings(ctx.full) {
        let mut s = base_spec(SEED, ModelKind::Linear, &[1, 1, 1], st.steps);
        s.data.noise_cov = Some(CovSpec::Scalar(1.0));
        s.train.lr = Some(st.eta);
        s.train.batch_size = st.s;
        s.train.weight_decay = st.gamma;
        if st.gd {
            full_batch(&mut s, 1000);
        }
        s.probes.every = Some((st.steps / SEGMENTS).max(1));
        s.probes.eval_samples = 256;
        p.add(
            PlannedRun::new(name(&st), s)
                .theta0(vec![0.5, 2.0])
                .probe(LawProbe::new(st.s))
                .cost(if st.gd { 1000 } else { st.s as u64 }),
        )?;
    }
    Ok(p)
}

/// The checks.
pub fn checks(r: &Results) -> Result<Vec<Check>> {
    let mut checks = vec![];
    for st in settings(r.full) {
        let run = r.run(&name(&st))?;
        let (t, c) = (run.column("t")?, run.column("C")?);
        let pred = run.column("predicted_log_decrement")?;
        let c0 = c[0];
        let last = c.len() - 1;
        if st.gd {
            let bound = run.column("eta2_term")?[last] / c0.abs() + 1e-12;
            checks.push(Check::at_most(
                "GD conserves u² − w² up to its η² term (relative change over the run)",
                bound,
                (c[last] - c0).abs() / c0,
                "bound: the summed |η²ĝᵀAĝ| of the run over |C₀| (GD's only change of C; it vanishes at the empirical minimum), plus 1e-12 of rounding",
            ));
            continue;
        }
        // Per segment: measured minus predicted log-decrement; independent increments.
        let diffs: Vec<f64> = (1..t.len())
            .map(|j| {
                let meas = (c[j - 1].abs() / c[j].abs()).ln();
                meas - (pred[j] - pred[j - 1])
            })
            .collect();
        let (_, se) = mean_se(&diffs);
        let n = diffs.len() as f64;
        let t_end = t[last];
        let measured_rate = (c0.abs() / c[last].abs()).ln() / t_end;
        let theory_rate = pred[last] / t_end;
        let bias = run.column("bias_bound")?[last];
        checks.push(Check::close(
            &format!("decay rate of u² − w² (per unit t), η = {}, S = {}, γ = {}", st.eta, st.s, st.gamma),
            theory_rate,
            measured_rate,
            (3.0 * se * n + bias) / t_end,
            &format!(
                "3 standard errors of the summed per-segment residuals ({} segments) plus the bound {} on the terms the law omits (mean-gradient part and second order in η), per unit t",
                diffs.len(),
                fmt(bias / t_end)
            ),
        ));
    }
    Ok(checks)
}

fn label(st: &Setting) -> String {
    if st.gd {
        format!("GD (N = 1000), η = {}", st.eta)
    } else {
        format!("SGD η = {}, S = {}, γ = {}", st.eta, st.s, st.gamma)
    }
}

/// The figure.
pub fn figure(r: &Results) -> Result<Figure> {
    let mut series = vec![];
    for st in settings(r.full).iter() {
        let run = r.run(&name(st))?;
        let (t, c) = (run.column("t")?, run.column("C")?);
        // One colour per method; the settings of SGD differ by their marks.
        let role = if st.gd {
            Role::Gd
        } else if st.gamma > 0.0 {
            Role::SgdWd
        } else {
            Role::Sgd
        };
        series.push(Series::new(
            label(st),
            role,
            Style::Markers,
            t.clone(),
            c.iter().map(|v| v.abs()).collect(),
        ));
        if !st.gd {
            let pred = run.column("predicted_log_decrement")?;
            series.push(Series::new(
                format!("theory, η = {}, S = {}, γ = {}", st.eta, st.s, st.gamma),
                Role::Theory,
                Style::Line,
                t,
                pred.iter().map(|d| c[0] * (-d).exp()).collect(),
            ));
        }
    }
    Ok(Figure {
        title: "Law of balance: |u² − w²| decays exponentially under SGD, stays under GD".into(),
        columns: 1,
        panels: vec![Panel::xy(
            "scalar model ℓ = (u w x − y)², x ~ N(0,1), y = x + ε, Var ε = 1",
            "t = η · steps",
            "|C| = |u² − w²| (log scale)",
            series,
            false,
            true,
        )],
    })
}

/// Settings, notes and logs.
pub fn details(r: &Results) -> Result<Details> {
    let mut logs = vec![];
    for (i, st) in settings(r.full).iter().enumerate() {
        let run = r.run(&name(st))?;
        let cols = ["t", "C", "predicted_log_decrement"];
        let data: Vec<Vec<f64>> = cols.iter().map(|c| run.column(c)).collect::<Result<_>>()?;
        let rows = (0..data[0].len())
            .map(|j| data.iter().map(|c| c[j]).collect())
            .collect();
        logs.push((format!("run{i}"), log_of(&cols, rows)));
    }
    Ok(Details {
        settings: vec![
            (
                "model".into(),
                "scalar u·w (linear widths [1, 1, 1]), per-sample loss (u w x − y)²".into(),
            ),
            (
                "data".into(),
                "online x ~ N(0, 1), y = x + ε, ε ~ N(0, 1); GD on 1000 fixed samples".into(),
            ),
            ("init".into(), "u = 2, w = 0.5 (u w = 1, C₀ = 3.75)".into()),
            (
                "runs".into(),
                settings(r.full).iter().map(label).collect::<Vec<_>>().join("; "),
            ),
            ("seed".into(), format!("{SEED} (data and batches)")),
            (
                "theory".into(),
                "rate 4(γ + (η/S) Var[r x]) with Var[r x] = 2(uw − 1)² + 1 at the current θ, integrated along the run"
                    .into(),
            ),
        ],
        notes: vec![],
        logs,
    })
}
