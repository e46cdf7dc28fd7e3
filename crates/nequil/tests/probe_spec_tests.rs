//! Instruments from a run spec (`[probes.charges]`, `[probes.hessian]`, `[probes.sharpness]`,
//! `[probes.equilibrium]`): the documented columns, values recomputed independently from the
//! final weights, own schedules, validation that names the key, and the caller's extra probes.

use nequil::core::curvature::{hessian_spectrum, PopulationHessian};
use nequil::core::equilibrium::two_layer_equilibrium_gaussian;
use nequil::core::models::Model;
use nequil::core::stats::per_sample_grads;
use nequil::lab::runner::run_spec;
use nequil::lab::spec::Spec;
use nequil::lab::sweep::Sweep;
use nequil::train::{eval_set, Log, Probe, ProbeCtx, RunOutcome};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const LINEAR2: &str = r#"
seed = 5
[model]
kind = "linear"
widths = [4, 6, 3]
[data]
x_cov = { phi = 0.5 }
noise_cov = { scalar = 0.5 }
target = "linear"
[train]
lr = 0.02
batch_size = 2
steps = 3000
weight_decay = 0.001
[probes]
every = 1000
eval_samples = 512
"#;

const ALL: &str = "[probes.charges]\n[probes.hessian]\n[probes.sharpness]\n[probes.equilibrium]\n";

fn run(text: &str) -> (Spec, RunOutcome) {
    let spec = Spec::from_toml(text).unwrap();
    let (_, out) = run_spec(&spec, Path::new("."), &mut [], &mut |_, _| {}).unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    (spec, out)
}

fn col(log: &Log, name: &str) -> Vec<f64> {
    log.column(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", log.columns))
}

fn close(a: f64, b: f64, rel: f64, what: &str) {
    assert!(
        (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300),
        "{what}: {a} vs {b} (rel {rel})"
    );
}

/// `(W, U)` of a two-layer net as row-major slices (`W = layers.0.weight`, `U = layers.1.weight`).
fn factors<'a>(model: &Model, theta: &'a [f64]) -> (&'a [f64], &'a [f64]) {
    let l = model.layout();
    (
        &theta[l.block("layers.0.weight").unwrap().range()],
        &theta[l.block("layers.1.weight").unwrap().range()],
    )
}

/// The diagonal generator of `neuron.0.k` (k = None: `layer_pair.0`) of a two-layer net, by hand.
fn rescaling_diag(model: &Model, h: usize, d_x: usize, d_y: usize, k: Option<usize>) -> Vec<f64> {
    let l = model.layout();
    let (wo, uo) = (
        l.block("layers.0.weight").unwrap().range().start,
        l.block("layers.1.weight").unwrap().range().start,
    );
    let mut a = vec![0.0; model.n_params()];
    for i in 0..h {
        if k.is_none_or(|k| k == i) {
            (0..d_x).for_each(|j| a[wo + i * d_x + j] = 1.0);
            (0..d_y).for_each(|o| a[uo + o * h + i] = -1.0);
        }
    }
    a
}

#[test]
fn two_layer_instruments_log_the_documented_columns_with_the_right_values() {
    let (spec, out) = run(&format!("{LINEAR2}{ALL}"));
    let built = spec.build(Path::new(".")).unwrap();
    let model = &built.model;
    let (d_x, h, d_y) = (4, 6, 3);
    let (eta, s, gamma) = (0.02, 2.0, 0.001);

    // Columns: core, then charges (neurons, then the layer pair), Hessian, sharpness, equilibrium.
    let mut want: Vec<String> = "step,t,lr,batch_loss,loss,norm2.layers.0.weight,norm2.layers.1.weight"
        .split(',')
        .map(String::from)
        .collect();
    let syms: Vec<String> = (0..h)
        .map(|k| format!("neuron.0.{k}"))
        .chain(["layer_pair.0".to_string()])
        .collect();
    for n in &syms {
        for c in ["C", "tr_a_sigma", "drift", "C_star", "C_minus_C_star"] {
            want.push(format!("{n}/{c}"));
        }
    }
    want.extend(
        "hess_trace,hess_trace_se,lambda_max,eta_lambda_max,lambda_max_residual,lanczos_iterations,\
         lanczos_converged,paper_sharpness,pred_norm2_U,pred_norm2_W,alignment_residual,dist_to_equilibrium,\
         pred_paper_sharpness"
            .split(',')
            .map(String::from),
    );
    assert_eq!(out.log.columns, want);
    assert_eq!(col(&out.log, "step"), vec![0.0, 1000.0, 2000.0, 3000.0]);

    // Every row: the drift is the documented formula, and it points toward C* (Thm 4.3:
    // C − C* and Ċ have opposite signs).
    for n in &syms {
        let (c, tr, drift, cs, cmc) = (
            col(&out.log, &format!("{n}/C")),
            col(&out.log, &format!("{n}/tr_a_sigma")),
            col(&out.log, &format!("{n}/drift")),
            col(&out.log, &format!("{n}/C_star")),
            col(&out.log, &format!("{n}/C_minus_C_star")),
        );
        for r in 0..c.len() {
            close(drift[r], -4.0 * gamma * c[r] + eta / s * tr[r], 1e-12, "drift formula");
            close(cmc[r], c[r] - cs[r], 1e-12, "C − C*");
            assert!(cs[r].is_finite(), "{n}: weight decay makes C* finite");
            assert!(
                drift[r] * cmc[r] <= 0.0 || cmc[r].abs() < 1e-9 * c[r].abs().max(1.0),
                "{n} row {r}: drift {} and C − C* {} have the same sign",
                drift[r],
                cmc[r]
            );
        }
    }

    // Last row against the final weights, recomputed by hand.
    let theta = &out.theta;
    let last = |name: &str| out.log.last(name).unwrap();
    let (w, u) = factors(model, theta);
    let (ex, ey, en) = eval_set(&built.source, spec.probes.eval_samples, spec.seed);
    let g = per_sample_grads(model, theta, &ex, &ey, en);
    let p = model.n_params();
    let mean: Vec<f64> = (0..p)
        .map(|j| (0..en).map(|i| g.at(i, j)).sum::<f64>() / en as f64)
        .collect();
    for (k, n) in syms.iter().enumerate() {
        let a = rescaling_diag(model, h, d_x, d_y, (k < h).then_some(k));
        let c: f64 = theta.iter().zip(&a).map(|(t, a)| a * t * t).sum();
        close(last(&format!("{n}/C")), c, 1e-12, &format!("{n}/C"));
        let quad = |v: &dyn Fn(usize) -> f64| (0..p).map(|j| a[j] * v(j) * v(j)).sum::<f64>();
        let tr = (0..en).map(|i| quad(&|j| g.at(i, j))).sum::<f64>() / en as f64 - quad(&|j| mean[j]);
        close(last(&format!("{n}/tr_a_sigma")), tr, 1e-9, &format!("{n}/tr_a_sigma"));
    }
    // The layer pair is the sum of the neurons.
    let sum: f64 = (0..h).map(|k| last(&format!("neuron.0.{k}/C"))).sum();
    close(last("layer_pair.0/C"), sum, 1e-12, "layer pair = Σ neurons");

    // Paper sharpness S = d_y Tr[WΣ_xWᵀ] + ‖U‖² TrΣ_x with Σ_x = diag(0.5, 0.5, 1.5, 1.5).
    let sx = [0.5, 0.5, 1.5, 1.5];
    let wsw: f64 = (0..h)
        .map(|i| (0..d_x).map(|j| sx[j] * w[i * d_x + j].powi(2)).sum::<f64>())
        .sum();
    let u2: f64 = u.iter().map(|v| v * v).sum();
    let sharp = d_y as f64 * wsw + u2 * sx.iter().sum::<f64>();
    close(last("paper_sharpness"), sharp, 1e-12, "paper sharpness");

    // Hessian: the exact population Hessian (online Gaussian data, linear teacher).
    let dist = built.source.distribution().unwrap();
    let mut pop = PopulationHessian::from_gaussian(model, theta, dist).unwrap();
    let (vals, _) = hessian_spectrum(&mut pop).unwrap();
    let lmax = vals.iter().cloned().fold(f64::MIN, f64::max);
    let tr_h: f64 = vals.iter().sum();
    close(last("hess_trace"), tr_h, 1e-10, "Hessian trace");
    close(last("hess_trace"), 2.0 * sharp, 1e-12, "trace = 2 × paper sharpness");
    assert_eq!(last("hess_trace_se"), 0.0);
    close(last("lambda_max"), lmax, 1e-8, "λ_max");
    close(last("eta_lambda_max"), eta * last("lambda_max"), 1e-15, "η·λ_max");
    assert_eq!(last("lanczos_converged"), 1.0);

    // Equilibrium: the same as calling the closed form directly on the final weights.
    let mlp = model.as_chain().unwrap();
    let eq = two_layer_equilibrium_gaussian(&mlp, theta, dist, eta, 2, gamma).unwrap();
    close(last("pred_norm2_U"), eq.u_star_norm2, 1e-12, "‖U*‖²");
    close(last("pred_norm2_W"), eq.w_star_norm2, 1e-12, "‖W*‖²");
    close(last("alignment_residual"), eq.residual, 1e-12, "alignment residual");
    close(last("pred_paper_sharpness"), eq.sharpness_star, 1e-12, "S(θ*)");
    let w2: f64 = w.iter().map(|v| v * v).sum();
    let dist_eq = ((u2 - eq.u_star_norm2).powi(2) + (w2 - eq.w_star_norm2).powi(2)).sqrt()
        / (eq.u_star_norm2.powi(2) + eq.w_star_norm2.powi(2)).sqrt();
    close(
        last("dist_to_equilibrium"),
        dist_eq,
        1e-12,
        "distance to the equilibrium",
    );
}

#[test]
fn instruments_keep_their_own_schedules() {
    let text = format!(
        "{LINEAR2}[probes.hessian]\ntop_eigen = false\nlog_points = 3\n[probes.charges]\nsymmetries = [\"layer_pair.*\"]\n"
    );
    let (_, out) = run(&text);
    // Log-spaced hessian steps 0, 54, 3000 join the run's 0, 1000, 2000, 3000.
    assert_eq!(col(&out.log, "step"), vec![0.0, 54.0, 1000.0, 2000.0, 3000.0]);
    let tr = col(&out.log, "hess_trace");
    let finite: Vec<bool> = tr.iter().map(|v| v.is_finite()).collect();
    assert_eq!(finite, vec![true, true, false, false, true], "{tr:?}");
    assert!(col(&out.log, "layer_pair.0/C").iter().all(|v| v.is_finite()));
    assert!(!out
        .log
        .columns
        .iter()
        .any(|c| c.starts_with("neuron.") || c == "lambda_max"));
}

#[test]
fn mlp_charges_in_discrete_time_and_an_empirical_hessian() {
    let text = r#"
seed = 2
[model]
kind = "mlp"
widths = [3, 5, 2]
activation = "relu"
bias = true
[data]
mode = "fixed"
n = 64
target = "tanh-teacher"
[train]
lr = 0.05
batch_size = 4
steps = 500
weight_decay = 0.01
[probes]
every = 250
[probes.charges]
symmetries = ["neuron.0.1", "neuron.0.*", "layer_pair.0"]
time = "discrete"
[probes.hessian]
"#;
    let (spec, out) = run(text);
    let built = spec.build(Path::new(".")).unwrap();
    let model = &built.model;
    let names: Vec<&str> = out.log.columns.iter().filter_map(|c| c.strip_suffix("/C")).collect();
    assert_eq!(
        names,
        [
            "neuron.0.1",
            "neuron.0.0",
            "neuron.0.2",
            "neuron.0.3",
            "neuron.0.4",
            "layer_pair.0"
        ],
        "requested order, duplicates once"
    );
    // Discrete drift E[ΔC] = η²(∇LᵀA∇L + Tr[AΣ]/S) − 4ηγC + 4η²γ²C, by hand, on the training set.
    let (eta, s, gamma) = (0.05, 4.0, 0.01);
    let theta = &out.theta;
    let (ex, ey, en) = eval_set(&built.source, 1, spec.seed);
    assert_eq!(en, 64, "fixed data: the evaluation set is the training set");
    let g = per_sample_grads(model, theta, &ex, &ey, en);
    let p = model.n_params();
    let mean: Vec<f64> = (0..p)
        .map(|j| (0..en).map(|i| g.at(i, j)).sum::<f64>() / en as f64)
        .collect();
    let sym = nequil::core::symmetry::catalog_symmetry(model, "neuron.0.3").unwrap();
    let a = sym.generator.as_diagonal().unwrap().to_vec();
    // Neuron 3: +1 on row 3 of W (3 inputs) and on b_0[3], −1 on column 3 of U.
    assert_eq!(a.iter().filter(|v| **v == 1.0).count(), 4);
    assert_eq!(a.iter().filter(|v| **v == -1.0).count(), 2);
    let c: f64 = theta.iter().zip(&a).map(|(t, a)| a * t * t).sum();
    let quad = |v: &dyn Fn(usize) -> f64| (0..p).map(|j| a[j] * v(j) * v(j)).sum::<f64>();
    let mean_quad = quad(&|j| mean[j]);
    let tr = (0..en).map(|i| quad(&|j| g.at(i, j))).sum::<f64>() / en as f64 - mean_quad;
    let drift = eta * eta * (mean_quad + tr / s) - 4.0 * eta * gamma * c + 4.0 * eta * eta * gamma * gamma * c;
    close(out.log.last("neuron.0.3/C").unwrap(), c, 1e-12, "C");
    close(out.log.last("neuron.0.3/drift").unwrap(), drift, 1e-9, "discrete drift");
    // Empirical Hessian on the training set (P = 32 ≤ 512: exact trace).
    assert_eq!(out.log.last("hess_trace_se"), Some(0.0));
    let lmax = out.log.last("lambda_max").unwrap();
    assert!(lmax.is_finite() && lmax > 0.0);
    close(out.log.last("eta_lambda_max").unwrap(), eta * lmax, 1e-15, "η·λ_max");
}

#[test]
fn net_b_charges_grow_without_weight_decay() {
    let text = r#"
[model]
kind = "net-b"
widths = [3, 4, 2]
[data]
target = "linear"
[train]
lr = 0.05
steps = 300
[probes]
every = 100
eval_samples = 256
[probes.charges]
"#;
    let (spec, out) = run(text);
    let model = spec.build(Path::new(".")).unwrap().model;
    let (w, _) = factors(&model, &out.theta);
    let w2: f64 = w.iter().map(|v| v * v).sum();
    close(out.log.last("scale.layers.0.weight/C").unwrap(), w2, 1e-12, "C = ‖W‖²");
    for n in ["scale.layers.0.weight", "scale.layers.1.weight"] {
        for v in col(&out.log, &format!("{n}/drift")) {
            assert!(v >= 0.0, "A ⪰ 0 and γ = 0: the charge can only grow ({v})");
        }
        // No weight decay and A ⪰ 0: the equilibrium is at infinity (λ* = +∞).
        assert_eq!(out.log.last(&format!("{n}/C_star")), Some(f64::INFINITY));
    }
}

#[test]
fn resolved_spec_fills_instrument_defaults_and_parses_again() {
    let spec = Spec::from_toml(&format!("{LINEAR2}{ALL}")).unwrap();
    let resolved = spec.resolved_toml();
    for s in [
        "[probes.charges]",
        "symmetries = [\"all\"]",
        "time = \"continuous\"",
        "[probes.hessian]",
        "top_eigen = true",
        "lanczos_iter = 80",
        "[probes.sharpness]",
        "[probes.equilibrium]",
        "data = \"auto\"",
    ] {
        assert!(resolved.contains(s), "`{s}` missing from\n{resolved}");
    }
    assert_eq!(Spec::from_toml(&resolved).unwrap(), spec);
}

#[test]
fn bad_instrument_tables_are_refused_at_build_naming_the_key() {
    let mlp = LINEAR2.replace("kind = \"linear\"", "kind = \"mlp\"");
    let tanh_teacher = LINEAR2.replace("target = \"linear\"", "target = \"tanh-teacher\"");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{LINEAR2}[probes.charges]\nsymmetries = [\"neuron.9.9\"]\n"),
            "probes.charges.symmetries",
            "neuron.0.0 … neuron.0.5, layer_pair.0",
        ),
        (
            format!("{LINEAR2}[probes.charges]\nsymmetries = [\"rotation.*\"]\n"),
            "probes.charges.symmetries",
            "rotation.*",
        ),
        (
            format!("{LINEAR2}[probes.charges]\nsymmetries = []\n"),
            "probes.charges.symmetries",
            "empty",
        ),
        (
            format!("{LINEAR2}[probes.charges]\ntime = \"sde\"\n"),
            "probes.charges.time",
            "discrete",
        ),
        (
            format!("{LINEAR2}[probes.charges]\nevery = 10\nlog_points = 5\n"),
            "probes.charges",
            "not both",
        ),
        (
            format!("{LINEAR2}[probes.equilibrium]\nevery = 0\n"),
            "probes.equilibrium.every",
            "≥ 1",
        ),
        (
            format!("{LINEAR2}[probes.sharpness]\nlog_points = 1\n"),
            "probes.sharpness.log_points",
            "≥ 2",
        ),
        (
            format!("{LINEAR2}[probes.hessian]\ntrace = false\ntop_eigen = false\n"),
            "probes.hessian",
            "records nothing",
        ),
        (
            format!("{LINEAR2}[probes.hessian]\nhutchinson = 1\n"),
            "probes.hessian.hutchinson",
            "≥ 2",
        ),
        (
            format!("{LINEAR2}[probes.hessian]\nlanczos_tol = 0.0\n"),
            "probes.hessian.lanczos_tol",
            "> 0",
        ),
        (
            format!("{LINEAR2}[probes.hessian]\ndata = \"all\"\n"),
            "probes.hessian.data",
            "population",
        ),
        (
            format!("{tanh_teacher}[probes.hessian]\ndata = \"population\"\n"),
            "probes.hessian.data",
            "non-linear teacher",
        ),
        (
            format!("{mlp}[probes.hessian]\ndata = \"population\"\n"),
            "probes.hessian.data",
            "deep linear",
        ),
        (
            format!("{mlp}[probes.sharpness]\n"),
            "probes.sharpness",
            "two-layer linear",
        ),
        (
            format!("{mlp}[probes.equilibrium]\n"),
            "probes.equilibrium",
            "two-layer linear",
        ),
        (
            format!("{}[probes.equilibrium]\n", LINEAR2.replace("[4, 6, 3]", "[4, 6, 5, 3]")),
            "probes.equilibrium",
            "two-layer linear",
        ),
        (
            format!("{tanh_teacher}[probes.equilibrium]\ndata = \"population\"\n"),
            "probes.equilibrium.data",
            "non-linear teacher",
        ),
        (
            format!(
                "{}[probes.charges]\n",
                mlp.replace("kind = \"mlp\"", "kind = \"mlp\"\nactivation = \"tanh\"")
            ),
            "probes.charges",
            "tanh",
        ),
        (
            format!(
                "{}[probes.charges]\n",
                LINEAR2
                    .replace("[4, 6, 3]", "[100, 2000, 100]")
                    .replace("x_cov = { phi = 0.5 }", "")
            ),
            "probes.charges.symmetries",
            "layer_pair.*",
        ),
    ];
    for (text, key, detail) in &cases {
        // A value outside a key's fixed set is refused by the parser, others when the spec is built.
        let err = match Spec::from_toml(text) {
            Err(e) => e.to_string(),
            Ok(spec) => spec
                .build(Path::new("."))
                .err()
                .unwrap_or_else(|| panic!("{key}: accepted"))
                .to_string(),
        };
        assert!(err.contains(key), "message does not name `{key}`: {err}");
        assert!(err.contains(detail), "message for `{key}` lacks `{detail}`: {err}");
    }
    // Unknown keys inside an instrument table are refused by the parser, with the key's name.
    for (table, bad) in [
        ("charges", "symmetry"),
        ("hessian", "top_eigenvalue"),
        ("sharpness", "every_k"),
        ("equilibrium", "moments"),
    ] {
        let err = Spec::from_toml(&format!("{LINEAR2}[probes.{table}]\n{bad} = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(bad), "{err}");
    }
    // Sweeps build every run up front, instruments included.
    let sweep = Sweep::from_toml(&format!(
        "{LINEAR2}[probes.hessian]\n[sweep]\n\"probes.hessian.lanczos_iter\" = [10, 0]\n"
    ))
    .unwrap();
    let err = sweep.prepare(Path::new("."), 1).unwrap_err().to_string();
    assert!(err.contains("probes.hessian.lanczos_iter"), "{err}");
}

/// Counts its records; shares the count with the test.
struct Counter(Arc<AtomicUsize>);

impl Probe for Counter {
    fn columns(&self) -> Vec<String> {
        vec!["extra".into()]
    }
    fn record(&mut self, ctx: &ProbeCtx<'_>, out: &mut Vec<f64>) -> nequil::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        out.push(ctx.step as f64);
        Ok(())
    }
}

#[test]
fn extra_probes_come_after_the_instruments_and_return_to_the_caller() {
    let spec = Spec::from_toml(&format!("{LINEAR2}[probes.sharpness]\n")).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let mut extra: Vec<Box<dyn Probe>> = vec![Box::new(Counter(count.clone()))];
    let (_, out) = run_spec(&spec, Path::new("."), &mut extra, &mut |_, _| {}).unwrap();
    let n = out.log.columns.len();
    assert_eq!(&out.log.columns[n - 2..], ["paper_sharpness", "extra"]);
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert_eq!(extra[0].columns(), ["extra"], "the caller's probe is handed back");
}
