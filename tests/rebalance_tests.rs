//! End-to-end tests of the update rules in specs and sweeps, of `nequil rebalance` and of
//! `model.init_from`: the rebalanced initialization keeps the loss and balances the noise, a run
//! starts from it, and bad input exits with status 2, names the key or tensor and writes nothing.

use nequil::lab::io::{read_safetensors, write_safetensors};
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::bin;

fn tmp(name: &str) -> PathBuf {
    common::scratch("rebal", name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A ReLU MLP with biases on a noisy linear teacher; `{TRAIN}` and `{MODEL}` are filled in.
const SPEC: &str = r#"seed = 5
[model]
kind = "mlp"
widths = [4, 8, 2]
bias = true
{MODEL}
[data]
target = "linear"
noise_cov = { scalar = 0.5 }
[train]
lr = 0.02
batch_size = 4
steps = 300
{TRAIN}
[probes]
every = 100
eval_samples = 256
[probes.charges]
symmetries = ["neuron.0.*"]
"#;

fn spec(model: &str, train: &str) -> String {
    SPEC.replace("{MODEL}", model).replace("{TRAIN}", train)
}

fn run(dir: &Path, name: &str, text: &str) -> Output {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    bin()
        .args(["run", s(&p), "--out", s(&dir.join(name)), "--quiet"])
        .output()
        .unwrap()
}

/// The first data row of a metrics.csv as (header, values).
fn row(csv: &str, i: usize) -> (Vec<String>, Vec<f64>) {
    let mut lines = csv.lines();
    let header = lines.next().unwrap().split(',').map(str::to_string).collect();
    let vals = lines.nth(i).unwrap().split(',').map(|v| v.parse().unwrap()).collect();
    (header, vals)
}

fn col(h: &[String], v: &[f64], name: &str) -> f64 {
    v[h.iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name}"))]
}

#[test]
fn every_optimizer_runs_from_a_spec_and_its_defaults_are_resolved() {
    let d = tmp("opts");
    let mut finals = vec![];
    for (name, train, resolved_has) in [
        ("sgd", "", vec!["optimizer = \"sgd\""]),
        (
            "momentum",
            "optimizer = \"momentum\"",
            vec!["momentum = 0.9", "dampening = 0.0"],
        ),
        (
            "nesterov",
            "optimizer = \"nesterov\"\nmomentum = 0.5",
            vec!["momentum = 0.5"],
        ),
        (
            "adam",
            "optimizer = \"adam\"",
            vec!["betas = [0.9, 0.999]", "eps = 0.00000001"],
        ),
        (
            "adamw",
            "optimizer = \"adamw\"\nbetas = [0.8, 0.99]\nweight_decay = 0.01",
            vec!["betas = [0.8, 0.99]"],
        ),
    ] {
        let o = run(&d, name, &spec("", train));
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let resolved = std::fs::read_to_string(d.join(name).join("spec.toml")).unwrap();
        for want in resolved_has {
            assert!(
                resolved.contains(want),
                "{name}: resolved spec lacks `{want}`:\n{resolved}"
            );
        }
        // The resolved spec runs again to the same weights.
        let again = run(&d, &format!("{name}-again"), &resolved);
        assert!(again.status.success());
        let w = std::fs::read(d.join(name).join("final.safetensors")).unwrap();
        assert_eq!(
            w,
            std::fs::read(d.join(format!("{name}-again/final.safetensors"))).unwrap()
        );
        // Under Adam the charge instrument measures C and Tr[AΣ] but claims no law.
        let csv = std::fs::read_to_string(d.join(name).join("metrics.csv")).unwrap();
        let (h, v) = row(&csv, 2);
        let c_star = col(&h, &v, "neuron.0.0/C_star");
        assert!(col(&h, &v, "neuron.0.0/C").is_finite());
        assert_eq!(c_star.is_nan(), name.starts_with("adam"), "{name}: C* = {c_star}");
        finals.push(w);
    }
    for i in 0..finals.len() {
        for j in 0..i {
            assert_ne!(finals[i], finals[j], "two optimizers gave the same weights");
        }
    }
}

#[test]
fn bad_optimizer_keys_exit_2_and_name_the_key() {
    let d = tmp("badopt");
    let cases = [
        (
            "optimizer = \"sgdm\"",
            vec!["train.optimizer", "sgd", "momentum", "nesterov", "adam", "adamw"],
        ),
        ("momentum = 0.9", vec!["train.momentum", "\"sgd\""]),
        ("optimizer = \"momentum\"\nbetas = [0.9, 0.99]", vec!["train.betas"]),
        ("optimizer = \"adam\"\ndampening = 0.1", vec!["train.dampening"]),
        (
            "optimizer = \"nesterov\"\ndampening = 0.1",
            vec!["train.dampening", "Nesterov"],
        ),
        (
            "optimizer = \"momentum\"\nmomentum = 1.0",
            vec!["train.momentum", "[0, 1)"],
        ),
        ("optimizer = \"adam\"\nbetas = [0.9, 1.5]", vec!["train.betas"]),
        ("optimizer = \"adamw\"\neps = -1.0", vec!["train.eps"]),
        ("optimizer = \"adam\"\nbetas = [0.9]", vec!["train.betas"]),
    ];
    for (i, (train, keys)) in cases.iter().enumerate() {
        let name = format!("case{i}");
        let o = run(&d, &name, &spec("", train));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        for k in keys {
            assert!(err.contains(k), "case {i}: message does not name `{k}`: {err}");
        }
        assert!(!d.join(&name).exists(), "case {i}: output directory was created");
    }
}

#[test]
fn rebalance_keeps_the_loss_balances_the_noise_and_a_run_starts_there() {
    let d = tmp("rebal");
    // The spec whose initialization is rebalanced: momentum, so the effective step is η/(1 − β).
    let base = spec("", "optimizer = \"momentum\"\nmomentum = 0.5");
    std::fs::write(d.join("base.toml"), &base).unwrap();
    let o = bin()
        .args([
            "rebalance",
            s(&d.join("base.toml")),
            "--out",
            s(&d.join("rb.safetensors")),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["optimizer"], "momentum");
    // ρ = 1/(1 − β) = 2: the equilibrium of the effective step.
    assert!((rep["effective_eta"].as_f64().unwrap() - 0.04).abs() < 1e-15, "{rep}");
    let (lb, la) = (
        rep["loss_before"].as_f64().unwrap(),
        rep["loss_after"].as_f64().unwrap(),
    );
    assert!((la - lb).abs() <= 1e-12 * lb, "loss {lb} → {la}");
    let t = read_safetensors(&d.join("rb.safetensors")).unwrap();
    assert_eq!(t["layers.0.weight"].0, vec![8, 4]);
    assert_eq!(t["layers.1.bias"].0, vec![2]);

    // The same spec from the original init and from the rebalanced one (relative path).
    let o0 = run(&d, "orig", &base);
    assert!(o0.status.success());
    let o1 = run(
        &d,
        "from",
        &spec(
            "init_from = \"rb.safetensors\"",
            "optimizer = \"momentum\"\nmomentum = 0.5",
        ),
    );
    assert!(o1.status.success(), "{}", String::from_utf8_lossy(&o1.stderr));
    let (h0, v0) = row(&std::fs::read_to_string(d.join("orig/metrics.csv")).unwrap(), 0);
    let (h1, v1) = row(&std::fs::read_to_string(d.join("from/metrics.csv")).unwrap(), 0);
    // Step 0, on the same evaluation sample the statistics were taken on: the same loss, and
    // every neuron's noise imbalance is zero to rounding where it was not before.
    let (l0, l1) = (col(&h0, &v0, "loss"), col(&h1, &v1, "loss"));
    assert!((l0 - l1).abs() <= 1e-12 * l0, "loss {l0} vs {l1}");
    let mut before = 0.0f64;
    let mut after = 0.0f64;
    for k in 0..8 {
        before = before.max(col(&h0, &v0, &format!("neuron.0.{k}/tr_a_sigma")).abs());
        after = after.max(col(&h1, &v1, &format!("neuron.0.{k}/tr_a_sigma")).abs());
        // The probe's C* of momentum's law is where the solver put the charge.
        let c = col(&h1, &v1, &format!("neuron.0.{k}/C"));
        let cs = col(&h1, &v1, &format!("neuron.0.{k}/C_star"));
        assert!((c - cs).abs() <= 1e-8 * (1.0 + c.abs()), "neuron {k}: C {c}, C* {cs}");
    }
    assert!(after <= 1e-9 * before, "largest |Tr[AΣ]|: {before} → {after}");
}

#[test]
fn init_from_errors_exit_2_name_the_tensor_and_write_nothing() {
    let d = tmp("initfrom");
    let good = d.join("good.safetensors");
    let w = vec![0.1; 32];
    let b = vec![0.0; 8];
    let u = vec![0.1; 16];
    let c = vec![0.0; 2];
    let full = vec![
        ("layers.0.weight".to_string(), vec![8, 4], w.as_slice()),
        ("layers.0.bias".to_string(), vec![8], b.as_slice()),
        ("layers.1.weight".to_string(), vec![2, 8], u.as_slice()),
        ("layers.1.bias".to_string(), vec![2], c.as_slice()),
    ];
    write_safetensors(&good, &full, None).unwrap();
    let o = run(&d, "ok", &spec("init_from = \"good.safetensors\"", ""));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let missing = d.join("missing.safetensors");
    write_safetensors(&missing, &full[..3], None).unwrap();
    let wrong = d.join("wrong.safetensors");
    let mut bad = full.clone();
    bad[2].1 = vec![8, 2];
    write_safetensors(&wrong, &bad, None).unwrap();
    let nan = d.join("nan.safetensors");
    let mut wn = w.clone();
    wn[3] = f64::NAN;
    let mut bn = full.clone();
    bn[0].2 = &wn;
    write_safetensors(&nan, &bn, None).unwrap();
    for (i, (file, words)) in [
        (
            "missing.safetensors",
            vec!["model.init_from", "missing tensor `layers.1.bias`"],
        ),
        (
            "wrong.safetensors",
            vec!["model.init_from", "`layers.1.weight`", "[8, 2]", "[2, 8]"],
        ),
        (
            "nan.safetensors",
            vec!["model.init_from", "`layers.0.weight`", "non-finite"],
        ),
        ("absent.safetensors", vec!["model.init_from", "absent.safetensors"]),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("case{i}");
        let o = run(&d, &name, &spec(&format!("init_from = \"{file}\""), ""));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        for w in words {
            assert!(err.contains(w), "{file}: message lacks `{w}`: {err}");
        }
        assert!(!d.join(&name).exists(), "{file}: output directory was created");
    }
}

#[test]
fn rebalance_refuses_what_has_no_law_and_writes_nothing() {
    let d = tmp("refuse");
    for (i, (train, args, words)) in [
        ("optimizer = \"adam\"", vec![], vec!["train.optimizer", "adam"]),
        ("", vec!["--lr=-1"], vec!["--lr"]),
        ("", vec!["--samples", "0"], vec!["--samples"]),
        ("optimizer = \"gd\"", vec![], vec!["train.optimizer"]),
    ]
    .iter()
    .enumerate()
    {
        let p = d.join(format!("s{i}.toml"));
        std::fs::write(&p, spec("", train)).unwrap();
        let out = d.join(format!("o{i}.safetensors"));
        let o = bin()
            .args(["rebalance", s(&p), "--out", s(&out)])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        for w in words {
            assert!(err.contains(w), "case {i}: message lacks `{w}`: {err}");
        }
        assert!(!out.exists());
    }
}

#[test]
fn sweeps_sweep_the_optimizer() {
    let d = tmp("sweep");
    let text = format!(
        "{}\n[sweep]\n\"train.optimizer\" = [\"sgd\", \"momentum\", \"adam\"]\n",
        spec("", "").replace("steps = 300", "steps = 50")
    );
    std::fs::write(d.join("sweep.toml"), text).unwrap();
    let o = bin()
        .args([
            "sweep",
            s(&d.join("sweep.toml")),
            "--out",
            s(&d.join("out")),
            "--jobs",
            "2",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (i, name) in ["sgd", "momentum", "adam"].iter().enumerate() {
        let r = std::fs::read_to_string(d.join(format!("out/runs/run-000{i}/spec.toml"))).unwrap();
        assert!(r.contains(&format!("optimizer = \"{name}\"")), "{r}");
    }
}
