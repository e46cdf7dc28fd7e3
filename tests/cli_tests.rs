//! End-to-end tests of `nequil run`: outputs, determinism, clear errors with exit status 2 and
//! nothing written, divergence with exit status 1 and the log kept, data from `.npy` files, and
//! the SIMD paths (`NEQUIL_SIMD`); and of `nequil reproduce`: typed summaries and figures, logs and
//! the report.

use std::path::{Path, PathBuf};

mod common;
use common::bin;

fn tmp(name: &str) -> PathBuf {
    common::scratch("cli", name)
}

const SPEC: &str = r#"
seed = 3
[model]
kind = "linear"
widths = [4, 6, 4]
[data]
x_cov = { phi = 0.5 }
noise_cov = { scalar = 1.0 }
[train]
lr = 0.01
steps = 2000
[probes]
every = 500
"#;

fn run(dir: &Path, spec: &str, out: &str) -> std::process::Output {
    let p = dir.join("spec.in.toml");
    std::fs::write(&p, spec).unwrap();
    bin()
        .args([
            "run",
            p.to_str().unwrap(),
            "--out",
            dir.join(out).to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap()
}

#[test]
fn run_writes_all_outputs_deterministically() {
    let d = tmp("ok");
    let a = run(&d, SPEC, "a");
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = run(&d, SPEC, "b");
    assert!(b.status.success());
    for f in ["spec.toml", "metrics.csv", "final.safetensors", "summary.json"] {
        let x = std::fs::read(d.join("a").join(f)).unwrap();
        let y = std::fs::read(d.join("b").join(f)).unwrap();
        assert_eq!(x, y, "{f} differs between two runs of the same spec");
    }
    let csv = std::fs::read_to_string(d.join("a/metrics.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert_eq!(
        header,
        "step,t,lr,batch_loss,loss,norm2.layers.0.weight,norm2.layers.1.weight"
    );
    assert_eq!(csv.lines().count(), 1 + 5, "rows at 0, 500, 1000, 1500, 2000");
    // The resolved spec has defaults filled in and parses again.
    let resolved = std::fs::read_to_string(d.join("a/spec.toml")).unwrap();
    assert!(
        resolved.contains("optimizer = \"sgd\"") && resolved.contains("batch_size = 1"),
        "{resolved}"
    );
    let again = run(&d, &resolved, "c");
    assert!(again.status.success());
    assert_eq!(
        std::fs::read(d.join("a/final.safetensors")).unwrap(),
        std::fs::read(d.join("c/final.safetensors")).unwrap()
    );
    // Weights: the documented names and shapes.
    let t = nequil::lab::io::read_safetensors(&d.join("a/final.safetensors")).unwrap();
    assert_eq!(t["layers.0.weight"].0, vec![6, 4]);
    assert_eq!(t["layers.1.weight"].0, vec![4, 6]);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("a/summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "ok");
    assert_eq!(s["steps_done"], 2000);
}

#[test]
fn bad_specs_exit_2_name_the_key_and_write_nothing() {
    let d = tmp("bad");
    let cases = [
        (
            SPEC.replace("lr = 0.01", "lr = 0.01\nlearning_rate = 3"),
            "learning_rate",
        ),
        (SPEC.replace("steps = 2000", "steps = \"many\""), "steps"),
        (
            SPEC.replace("widths = [4, 6, 4]", "widths = [4, 0, 4]"),
            "model.widths[1]",
        ),
        (SPEC.replace("widths = [4, 6, 4]", "widths = [4, -6, 4]"), "widths"),
        (
            SPEC.replace("[data]", "[data]\nmode = \"fixed\"\nn = 10")
                .replace("lr = 0.01", "lr = 0.01\nbatch_size = 11"),
            "train.batch_size",
        ),
        (SPEC.replace("lr = 0.01", "lr = -0.01"), "train.lr"),
        (
            SPEC.replace("kind = \"linear\"", "kind = \"transformer\""),
            "model.kind",
        ),
        (
            SPEC.replace("x_cov = { phi = 0.5 }", "x_cov = { diag = [1.0, 2.0] }"),
            "data.x_cov",
        ),
        (
            SPEC.replace("[train]", "[train]\noptimizer = \"gd\""),
            "train.optimizer",
        ),
        (
            SPEC.replace("[data]", "[data]\ntarget = \"model-teacher\"\nteacher_hidden = 8"),
            "data.teacher_hidden",
        ),
        (
            SPEC.replace("[data]", "[data]\ntarget = \"model-teacher\"\nmode = \"population\""),
            "data.mode",
        ),
        (
            SPEC.replace("[data]", "[data]\ntarget = \"cnn-teacher\""),
            "data.target",
        ),
    ];
    for (i, (spec, key)) in cases.iter().enumerate() {
        let out = format!("out{i}");
        let o = run(&d, spec, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        assert!(err.contains(key), "case {i}: message does not name `{key}`: {err}");
        assert!(!d.join(&out).exists(), "case {i}: output directory was created");
    }
    let o = bin()
        .args([
            "run",
            d.join("missing.toml").to_str().unwrap(),
            "--out",
            d.join("x").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.toml"));
}

#[test]
fn divergence_names_the_step_and_keeps_the_log() {
    let d = tmp("div");
    let spec = SPEC
        .replace("lr = 0.01", "lr = 3.0")
        .replace("every = 500", "every = 1");
    let o = run(&d, &spec, "r");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("diverged at step"), "{err}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("r/summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "diverged");
    let step = s["error"]["step"].as_u64().unwrap();
    assert!(step > 0 && step < 2000);
    let csv = std::fs::read_to_string(d.join("r/metrics.csv")).unwrap();
    assert!(csv.lines().count() > 2);
    assert!(!d.join("r/final.safetensors").exists());
}

#[test]
fn trains_on_npy_arrays_and_rejects_nan() {
    use nequil::lab::io::{write_npy, NdArray};
    let d = tmp("npy");
    let n = 64;
    let mut rng = nequil::core::rng::Rng::new(1);
    let x: Vec<f64> = (0..n * 3).map(|_| rng.normal()).collect();
    let y: Vec<f64> = (0..n).map(|i| x[i * 3] - 0.5 * x[i * 3 + 2]).collect();
    write_npy(&d.join("x.npy"), &NdArray::new(vec![n, 3], x.clone()).unwrap()).unwrap();
    write_npy(&d.join("y.npy"), &NdArray::new(vec![n], y).unwrap()).unwrap();
    let spec = r#"
[model]
kind = "mlp"
widths = [3, 8, 1]
activation = "relu"
bias = true
[data]
source = "npy"
mode = "fixed"
x_path = "x.npy"
y_path = "y.npy"
[train]
batch_size = 8
lr = 0.05
steps = 400
"#;
    let o = run(&d, spec, "r");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("r/summary.json")).unwrap()).unwrap();
    let l0: f64 = std::fs::read_to_string(d.join("r/metrics.csv"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        s["final"]["loss"].as_f64().unwrap() < 0.5 * l0,
        "training on the arrays reduced the loss"
    );
    let mut xb = x;
    xb[7] = f64::NAN;
    write_npy(&d.join("x.npy"), &NdArray::new(vec![n, 3], xb).unwrap()).unwrap();
    let o = run(&d, spec, "bad");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("non-finite"));
    assert!(!d.join("bad").exists());
}

/// The header and the last row of a `metrics.csv`, as a name → value lookup.
fn last_row(csv: &str) -> (Vec<String>, Vec<f64>) {
    let header: Vec<String> = csv.lines().next().unwrap().split(',').map(String::from).collect();
    let last: Vec<f64> = csv
        .lines()
        .last()
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    (header, last)
}

#[test]
fn instruments_are_logged_and_agree_with_the_saved_weights() {
    let d = tmp("instruments");
    let spec = format!(
        "{SPEC}[probes.charges]\nsymmetries = [\"layer_pair.0\", \"neuron.0.2\"]\n[probes.hessian]\nevery = 1000\n\
         [probes.sharpness]\n[probes.equilibrium]\n"
    );
    let o = run(&d, &spec, "a");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(d.join("a/metrics.csv")).unwrap();
    let (header, last) = last_row(&csv);
    let core = "step,t,lr,batch_loss,loss,norm2.layers.0.weight,norm2.layers.1.weight";
    let charges = ["layer_pair.0", "neuron.0.2"]
        .iter()
        .flat_map(|n| ["C", "tr_a_sigma", "drift", "C_star", "C_minus_C_star"].map(|c| format!("{n}/{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let rest = "hess_trace,hess_trace_se,lambda_max,eta_lambda_max,lambda_max_residual,lanczos_iterations,\
                lanczos_converged,paper_sharpness,pred_norm2_U,pred_norm2_W,alignment_residual,\
                dist_to_equilibrium,pred_paper_sharpness";
    assert_eq!(header.join(","), format!("{core},{charges},{rest}"));
    assert_eq!(
        csv.lines().count(),
        1 + 5,
        "instrument schedules fall on the run's rows"
    );
    let get = |name: &str| last[header.iter().position(|h| h == name).unwrap()];

    // Recompute from final.safetensors: W = layers.0.weight (6 × 4), U = layers.1.weight (4 × 6).
    let t = nequil::lab::io::read_safetensors(&d.join("a/final.safetensors")).unwrap();
    let (w, u) = (&t["layers.0.weight"].1, &t["layers.1.weight"].1);
    let w2: f64 = w.iter().map(|v| v * v).sum();
    let u2: f64 = u.iter().map(|v| v * v).sum();
    let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{what}: {a} vs {b}");
    close(get("layer_pair.0/C"), w2 - u2, "layer-pair charge ‖W‖² − ‖U‖²");
    let w_row2: f64 = w[8..12].iter().map(|v| v * v).sum();
    let u_col2: f64 = (0..4).map(|o| u[o * 6 + 2].powi(2)).sum();
    close(
        get("neuron.0.2/C"),
        w_row2 - u_col2,
        "neuron charge ‖W[2,:]‖² − ‖U[:,2]‖²",
    );
    // Paper sharpness d_y Tr[WΣ_xWᵀ] + ‖U‖² TrΣ_x, Σ_x = diag(0.5, 0.5, 1.5, 1.5) (phi = 0.5).
    let sx = [0.5, 0.5, 1.5, 1.5];
    let wsw: f64 = (0..6)
        .map(|i| (0..4).map(|j| sx[j] * w[i * 4 + j].powi(2)).sum::<f64>())
        .sum();
    close(get("paper_sharpness"), 4.0 * wsw + u2 * 4.0, "paper sharpness");
    close(
        get("hess_trace"),
        2.0 * get("paper_sharpness"),
        "Hessian trace = 2 × paper sharpness",
    );
    close(get("eta_lambda_max"), 0.01 * get("lambda_max"), "η·λ_max");
    assert!(get("lambda_max") > 0.0 && get("dist_to_equilibrium").is_finite());
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("a/summary.json")).unwrap()).unwrap();
    assert_eq!(s["final"]["paper_sharpness"].as_f64(), Some(get("paper_sharpness")));

    // The resolved spec (instrument defaults filled in) runs again to the same log.
    let resolved = std::fs::read_to_string(d.join("a/spec.toml")).unwrap();
    assert!(
        resolved.contains("[probes.hessian]") && resolved.contains("lanczos_iter = 80"),
        "{resolved}"
    );
    let again = run(&d, &resolved, "b");
    assert!(again.status.success());
    assert_eq!(std::fs::read(d.join("b/metrics.csv")).unwrap(), csv.as_bytes());
}

#[test]
fn instruments_example_runs() {
    let d = tmp("instruments-example");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/linear2-instruments.toml");
    let text = std::fs::read_to_string(example).unwrap();
    assert!(text.contains("steps = 300000"));
    let o = run(&d, &text.replace("steps = 300000", "steps = 3000"), "r");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (header, last) = last_row(&std::fs::read_to_string(d.join("r/metrics.csv")).unwrap());
    for c in [
        "layer_pair.0/C",
        "layer_pair.0/C_minus_C_star",
        "hess_trace",
        "eta_lambda_max",
        "paper_sharpness",
        "dist_to_equilibrium",
    ] {
        let i = header
            .iter()
            .position(|h| h == c)
            .unwrap_or_else(|| panic!("no column {c}"));
        assert!(last[i].is_finite(), "{c} = {}", last[i]);
    }
}

#[test]
fn bad_instrument_tables_exit_2_name_the_key_and_write_nothing() {
    let d = tmp("bad-instruments");
    let cases = [
        (
            format!("{SPEC}[probes.charges]\nsymmetries = [\"neuron.0.9\"]\n"),
            "probes.charges.symmetries",
        ),
        (
            format!("{}[probes.sharpness]\n", SPEC.replace("[4, 6, 4]", "[4, 6, 6, 4]")),
            "probes.sharpness",
        ),
        (format!("{SPEC}[probes.hessian]\nlanczos = 3\n"), "lanczos"),
        (
            format!("{SPEC}[probes.equilibrium]\ndata = \"exact\"\n"),
            "probes.equilibrium.data",
        ),
        (
            format!(
                "{}[probes.equilibrium]\n",
                SPEC.replace("kind = \"linear\"", "kind = \"mlp\"")
            ),
            "probes.equilibrium",
        ),
    ];
    for (i, (spec, key)) in cases.iter().enumerate() {
        let out = format!("out{i}");
        let o = run(&d, spec, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        assert!(err.contains(key), "case {i}: message does not name `{key}`: {err}");
        assert!(!d.join(&out).exists(), "case {i}: output directory was created");
    }
}

/// Models too large for memory are refused before anything is allocated: exit 2, quickly, with
/// the widths, the parameter count or the bytes, and nothing written; through `nequil run`,
/// `nequil sweep` and `nequil equilibrium`.
#[test]
fn models_too_large_for_memory_are_refused_up_front() {
    let d = tmp("huge");
    for (widths, says) in [
        ("[100000, 100000, 100000]", "20000000000 parameters"),
        ("[3000000000, 3000000000, 10]", "[3000000000, 3000000000, 10]"),
    ] {
        let spec = SPEC.replace("widths = [4, 6, 4]", &format!("widths = {widths}"));
        let t = std::time::Instant::now();
        let o = run(&d, &spec, "huge-out");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(t.elapsed().as_secs_f64() < 1.0, "took {:?}", t.elapsed());
        assert!(
            err.contains("model.widths") && err.contains(widths) && err.contains(says),
            "{err}"
        );
        assert!(!d.join("huge-out").exists(), "nothing is written");
        // The same through a sweep (every run is built before anything runs) ...
        let sweep = format!("{spec}\n[sweep]\nseed = [0, 1]\n");
        std::fs::write(d.join("sweep.toml"), &sweep).unwrap();
        let o = bin()
            .args(["sweep", d.join("sweep.toml").to_str().unwrap(), "--out"])
            .arg(d.join("huge-sweep"))
            .arg("--quiet")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(widths), "{err}");
        assert!(!d.join("huge-sweep").exists(), "nothing is written");
        // ... and through `nequil equilibrium` (the model file is read first).
        std::fs::write(
            d.join("model.toml"),
            format!("[model]\nkind = \"linear\"\nwidths = {widths}\n"),
        )
        .unwrap();
        let o = bin()
            .args(["equilibrium", "--model"])
            .arg(d.join("model.toml"))
            .args([
                "--weights",
                "w.safetensors",
                "--x",
                "x.npy",
                "--y",
                "y.npy",
                "--lr",
                "0.1",
                "--batch-size",
                "1",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(widths) && err.contains("model.toml"), "{err}");
    }
}

#[test]
fn reproduce_writes_typed_files_and_a_report() {
    use nequil::lab::files::read_json;
    use nequil_paper::files::{ExperimentSummary, Figure};
    let d = tmp("reproduce");
    let out = d.join("out");
    let reproduce = |name: &str| {
        bin()
            .args([
                "reproduce",
                name,
                "--quiet",
                "--jobs",
                "2",
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let o = reproduce("law-of-balance");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = out.join("law-of-balance");
    let s = ExperimentSummary::read(&dir.join("summary.json")).unwrap();
    assert!(s.passed > 0 && s.failed == 0, "{s:?}");
    let f: Figure = read_json(&dir.join("figure.json")).unwrap();
    assert!(!f.panels.is_empty());
    let log = std::fs::read_to_string(dir.join("run0.csv")).unwrap();
    assert!(log.starts_with("t,C,predicted_log_decrement\n"), "{log}");
    for name in ["figure.svg", "figure.png"] {
        assert!(dir.join(name).exists(), "{name}");
    }
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("law-of-balance"));
    // The report reads every summary in the directory; a broken one is an error (exit 2) naming
    // the file and the field.
    let p = dir.join("summary.json");
    let text = std::fs::read_to_string(&p).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object_mut().unwrap().remove("checks");
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    let o = reproduce("fig8-convergence");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("law-of-balance") && err.contains("summary.json") && err.contains("`checks`"),
        "{err}"
    );
}

#[test]
fn bad_simd_paths_exit_2_naming_the_variable() {
    let o = bin().arg("list").env("NEQUIL_SIMD", "bogus").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("NEQUIL_SIMD=bogus") && err.contains("portable"), "{err}");
    assert!(o.stdout.is_empty());
    // A path the CPU lacks is refused the same way; the portable one always runs.
    let o = bin().arg("simd").env("NEQUIL_SIMD", "portable").output().unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("active portable\nsupported portable"), "{out}");
    for p in ["avx2", "avx512"] {
        let o = bin().arg("list").env("NEQUIL_SIMD", p).output().unwrap();
        if out.split_whitespace().any(|w| w == p) {
            assert!(o.status.success(), "{p}");
        } else {
            assert_eq!(o.status.code(), Some(2), "{p}");
            assert!(String::from_utf8_lossy(&o.stderr).contains("does not support"));
        }
    }
}

#[test]
fn linear_runs_are_bit_identical_on_the_portable_and_avx2_paths() {
    // Nothing but tanh fuses on the avx2 path, so a linear model's run is the same bit for bit.
    let o = bin().arg("simd").output().unwrap();
    let supported = String::from_utf8_lossy(&o.stdout).to_string();
    if !supported
        .lines()
        .any(|l| l.starts_with("supported") && l.contains("avx2"))
    {
        return;
    }
    let d = tmp("simd");
    let p = d.join("spec.in.toml");
    std::fs::write(&p, SPEC).unwrap();
    for path in ["portable", "avx2"] {
        let o = bin()
            .args(["run", p.to_str().unwrap(), "--quiet", "--out"])
            .arg(d.join(path))
            .env("NEQUIL_SIMD", path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{path}: {}", String::from_utf8_lossy(&o.stderr));
    }
    for f in ["metrics.csv", "final.safetensors"] {
        let a = std::fs::read(d.join("portable").join(f)).unwrap();
        let b = std::fs::read(d.join("avx2").join(f)).unwrap();
        assert_eq!(a, b, "{f} differs between the portable and avx2 paths");
    }
}

/// `--threads N` (and `train.threads`) changes no result: the run directory's weights and log are
/// byte-identical to one thread's on a model whose products are split (64-256-64, batch 32); the
/// resolved spec records the choice; `--threads 0` is bad input.
#[test]
fn threads_change_no_result() {
    let d = tmp("threads");
    let spec = r#"
seed = 5
[model]
kind = "mlp"
widths = [64, 256, 64]
bias = true
[data]
noise_cov = { scalar = 0.1 }
[train]
lr = 0.02
batch_size = 32
steps = 60
[probes]
every = 20
eval_samples = 256
"#;
    let p = d.join("spec.in.toml");
    std::fs::write(&p, spec).unwrap();
    let go = |out: &str, extra: &[&str]| {
        bin()
            .args([
                "run",
                p.to_str().unwrap(),
                "--out",
                d.join(out).to_str().unwrap(),
                "--quiet",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let one = go("one", &[]);
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let two = go("two", &["--threads", "2"]);
    assert!(two.status.success(), "{}", String::from_utf8_lossy(&two.stderr));
    for f in ["metrics.csv", "final.safetensors"] {
        assert_eq!(
            std::fs::read(d.join("one").join(f)).unwrap(),
            std::fs::read(d.join("two").join(f)).unwrap(),
            "{f} differs with --threads 2"
        );
    }
    let resolved = std::fs::read_to_string(d.join("two/spec.toml")).unwrap();
    assert!(resolved.contains("threads = 2"), "{resolved}");
    assert!(!std::fs::read_to_string(d.join("one/spec.toml"))
        .unwrap()
        .contains("threads"));
    let bad = go("bad", &["--threads", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--threads"));
}

/// `nequil reproduce --paper`: names by unique prefix, an unknown or ambiguous name refused with
/// exit 2 before anything runs, `--paper` with `--full` refused, and `--estimate` printing the
/// time of each chosen experiment without running it (nothing is written).
#[test]
fn reproduce_paper_arguments_and_estimate() {
    let d = tmp("reproduce-paper");
    let out = d.join("out");
    let o = bin()
        .args([
            "reproduce",
            "--paper",
            "--estimate",
            "fig8",
            "fig5",
            "--jobs",
            "2",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("estimated time (rough, 2 cores)"), "{text}");
    // Catalog order, full names from the prefixes.
    let (i5, i8) = (
        text.find("fig5-deep-linear").unwrap(),
        text.find("fig8-convergence").unwrap(),
    );
    assert!(i5 < i8, "{text}");
    assert!(!out.exists(), "--estimate writes nothing");
    for (args, needle) in [
        (vec!["--paper", "nosuch"], "unknown experiment `nosuch`"),
        (vec!["--paper", "fig"], "ambiguous"),
        (vec!["--paper", "--full", "fig8"], "cannot be used with"),
    ] {
        let o = bin()
            .arg("reproduce")
            .args(&args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?}: nothing is written");
    }
}

/// `model.loss = "cross-entropy"` end to end: Gaussian inputs labelled by the argmax of a linear
/// teacher (a fixed dataset), a ReLU classifier with the charges and the Hessian instruments, and
/// the same run from `.npy` labels; the log's loss is the cross-entropy of the final weights.
#[test]
fn cross_entropy_runs_with_every_general_instrument() {
    let d = tmp("xent");
    let spec = r#"
seed = 5
[model]
kind = "mlp"
widths = [4, 8, 3]
bias = true
loss = "cross-entropy"
[data]
mode = "fixed"
n = 64
target = "linear"
noise_cov = { scalar = 0.5 }
[train]
lr = 0.1
batch_size = 8
steps = 400
[probes]
every = 200
[probes.charges]
symmetries = ["neuron.0.*"]
[probes.hessian]
lanczos_iter = 40
"#;
    let o = run(&d, spec, "a");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resolved = std::fs::read_to_string(d.join("a/spec.toml")).unwrap();
    assert!(resolved.contains("loss = \"cross-entropy\""), "{resolved}");
    let csv = std::fs::read_to_string(d.join("a/metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for col in [
        "loss",
        "neuron.0.0/C",
        "neuron.0.0/tr_a_sigma",
        "hess_trace",
        "lambda_max",
    ] {
        assert!(header.contains(&col), "no column {col}: {header:?}");
    }
    let last: Vec<f64> = csv
        .lines()
        .last()
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let loss = last[header.iter().position(|c| *c == "loss").unwrap()];
    // Three classes: a trained classifier is below the uniform guess's log 3.
    assert!(loss.is_finite() && loss > 0.0 && loss < 3f64.ln(), "loss {loss}");

    // The same classifier from label files: ints in a `.npy`, checked.
    use nequil::lab::io::{write_npy, NdArray};
    let n = 32;
    let mut rng = nequil::Rng::new(4);
    let mut x = vec![0.0; n * 4];
    rng.fill_normal(&mut x);
    let labels: Vec<f64> = (0..n).map(|i| (i % 3) as f64).collect();
    write_npy(&d.join("x.npy"), &NdArray::new(vec![n, 4], x).unwrap()).unwrap();
    write_npy(&d.join("y.npy"), &NdArray::new(vec![n], labels.clone()).unwrap()).unwrap();
    let files = r#"
[model]
kind = "mlp"
widths = [4, 8, 3]
loss = "cross-entropy"
[data]
source = "npy"
mode = "fixed"
x_path = "x.npy"
y_path = "y.npy"
[train]
lr = 0.1
batch_size = 4
steps = 50
"#;
    let o = run(&d, files, "b");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // --loss overrides the spec: the same files as MSE targets need [n, 3], so they are refused.
    let p = d.join("spec.in.toml");
    let o = bin()
        .args([
            "run",
            p.to_str().unwrap(),
            "--out",
            d.join("c").to_str().unwrap(),
            "--quiet",
            "--loss",
            "mse",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("[32, 3]"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!d.join("c").join("metrics.csv").exists());
}

/// Bad losses and labels: exit status 2, the key or file named, nothing written.
#[test]
fn cross_entropy_errors_name_the_key() {
    let d = tmp("xent_err");
    use nequil::lab::io::{write_npy, NdArray};
    write_npy(&d.join("x.npy"), &NdArray::new(vec![3, 2], vec![0.0; 6]).unwrap()).unwrap();
    write_npy(&d.join("y.npy"), &NdArray::new(vec![3], vec![0.0, 2.0, 1.5]).unwrap()).unwrap();
    write_npy(
        &d.join("y_big.npy"),
        &NdArray::new(vec![3], vec![0.0, 2.0, 3.0]).unwrap(),
    )
    .unwrap();
    let base = |loss: &str, y: &str, extra: &str| {
        format!(
            "[model]\nkind = \"mlp\"\nwidths = [2, 3, 3]\nloss = \"{loss}\"\n[data]\nsource = \"npy\"\nmode = \"fixed\"\nx_path = \"x.npy\"\ny_path = \"{y}\"\n[train]\nlr = 0.1\nsteps = 5\n{extra}"
        )
    };
    let cases = [
        (base("hinge", "y.npy", ""), vec!["model.loss", "hinge", "cross-entropy"]),
        (base("cross-entropy", "y.npy", ""), vec!["data.y_path", "y.npy", "sample 2", "not an integer"]),
        (base("cross-entropy", "y_big.npy", ""), vec!["data.y_path", "sample 2", "out of range", "0..3"]),
        (
            "[model]\nkind = \"linear\"\nwidths = [2, 3, 2]\nloss = \"cross-entropy\"\n[data]\nmode = \"fixed\"\nn = 8\ntarget = \"linear\"\n[train]\nlr = 0.1\nsteps = 5\n[probes.sharpness]\n".to_string(),
            vec!["probes.sharpness", "cross-entropy"],
        ),
        (
            "[model]\nkind = \"mlp\"\nwidths = [2, 3, 3]\nloss = \"cross-entropy\"\n[data]\ntarget = \"linear\"\n[train]\nlr = 0.1\nsteps = 5\n".to_string(),
            vec!["data.mode", "fixed"],
        ),
        (
            "[model]\nkind = \"mlp\"\nwidths = [2, 3, 1]\nloss = \"cross-entropy\"\n[data]\nmode = \"fixed\"\nn = 4\ntarget = \"linear\"\n[train]\nlr = 0.1\nsteps = 5\n".to_string(),
            vec!["model.loss", "at least 2 logits"],
        ),
    ];
    for (i, (spec, needles)) in cases.iter().enumerate() {
        let out = format!("o{i}");
        let o = run(&d, spec, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        for n in needles {
            assert!(err.contains(n), "case {i}: no `{n}` in {err}");
        }
        assert!(!d.join(&out).exists(), "case {i} wrote its output directory");
    }
    let p = d.join("spec.in.toml");
    std::fs::write(&p, base("mse", "y.npy", "")).unwrap();
    let o = bin()
        .args([
            "run",
            p.to_str().unwrap(),
            "--out",
            d.join("z").to_str().unwrap(),
            "--loss",
            "hinge",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--loss"));
}
