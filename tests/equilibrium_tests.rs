//! End-to-end tests of `nequil equilibrium`: weights and data from files, the rebalanced weights
//! (same function, same loss, balanced noise, recomputed from scratch), the JSON and text reports,
//! and bad inputs (exit status 2, the file/tensor/key named, nothing written).

use nequil::core::models::Model;
use nequil::core::rng::Rng;
use nequil::core::stats::grad_stats;
use nequil::core::symmetry::{catalog, SymmetryKind};
use nequil::lab::io::{load_weights, named_tensors, save_weights};
use nequil::lab::io::{read_safetensors, write_npy, write_npz, write_safetensors, NdArray};
use nequil::lab::spec::load_model;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::bin;

fn tmp(name: &str) -> PathBuf {
    common::scratch("equil", name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const N: usize = 160;
const D_IN: usize = 4;
const D_OUT: usize = 2;

const MODEL: &str = r#"
[model]
kind = "mlp"
widths = [4, 8, 6, 2]
activation = "relu"
bias = true
"#;

/// A run spec on the `.npy` data of [`write_data`]: a ReLU MLP with biases, trained briefly.
fn run_spec() -> String {
    format!(
        r#"seed = 7
{MODEL}
[data]
source = "npy"
mode = "fixed"
x_path = "x.npy"
y_path = "y.npy"
[train]
lr = 0.02
batch_size = 4
steps = 400
[probes]
every = 200
"#
    )
}

/// Writes `x.npy` (`N × 4`, Gaussian) and `y.npy` (`N × 2`, a nonlinear function plus noise).
fn write_data(dir: &Path) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(11);
    let x: Vec<f64> = (0..N * D_IN).map(|_| rng.normal()).collect();
    let mut y = vec![0.0; N * D_OUT];
    for i in 0..N {
        let r = &x[i * D_IN..(i + 1) * D_IN];
        y[i * D_OUT] = (r[0] - 0.5 * r[1]).max(0.0) + 0.3 * r[2] + 0.1 * rng.normal();
        y[i * D_OUT + 1] = (r[3] * r[0]).tanh() - 0.2 * r[1] + 0.1 * rng.normal();
    }
    write_npy(&dir.join("x.npy"), &NdArray::new(vec![N, D_IN], x.clone()).unwrap()).unwrap();
    write_npy(&dir.join("y.npy"), &NdArray::new(vec![N, D_OUT], y.clone()).unwrap()).unwrap();
    (x, y)
}

/// Trains the model with `nequil run` into `dir/run`; returns the path of its final weights.
fn train(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("spec.toml"), run_spec()).unwrap();
    let o = bin()
        .args([
            "run",
            s(&dir.join("spec.toml")),
            "--out",
            s(&dir.join("run")),
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    dir.join("run/final.safetensors")
}

fn equilibrium(args: &[&str]) -> Output {
    bin().arg("equilibrium").args(args).output().unwrap()
}

fn outputs(model: &Model, theta: &[f64], x: &[f64]) -> Vec<f64> {
    let mut ws = model.workspace(N);
    model.forward(theta, x, N, &mut ws);
    ws.output()[..N * model.d_out()].to_vec()
}

#[test]
fn safetensors_round_trip_is_bit_identical() {
    let d = tmp("roundtrip");
    let model = load_model_text(&d, MODEL);
    let mut rng = Rng::new(3);
    let mut theta: Vec<f64> = (0..model.n_params()).map(|_| rng.normal() * 1e3).collect();
    // Awkward values survive too: signed zero, subnormals, extremes, values with every mantissa bit.
    let specials = [
        -0.0,
        f64::MIN_POSITIVE / 3.0,
        -f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        1.0 / 3.0,
        -std::f64::consts::PI,
    ];
    theta[..specials.len()].copy_from_slice(&specials);
    let p = d.join("w.safetensors");
    save_weights(&p, &model, &theta).unwrap();
    let back = load_weights(&p, &model).unwrap();
    assert_eq!(back.len(), theta.len());
    for (a, b) in theta.iter().zip(&back) {
        assert_eq!(a.to_bits(), b.to_bits());
    }
    let t = read_safetensors(&p).unwrap();
    for (name, shape, data) in named_tensors(&model, &theta) {
        assert_eq!(t[&name].0, shape, "{name}");
        assert!(
            t[&name].1.iter().zip(data).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}"
        );
    }
    // Writing what was read gives the same bytes.
    let q = d.join("w2.safetensors");
    save_weights(&q, &model, &back).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&q).unwrap());
}

fn load_model_text(dir: &Path, text: &str) -> Model {
    let p = dir.join("model.toml");
    std::fs::write(&p, text).unwrap();
    load_model(&p).unwrap()
}

#[test]
fn rebalanced_weights_keep_the_function_and_balance_the_noise() {
    let d = tmp("main");
    let (x, y) = write_data(&d);
    let w = train(&d);
    let out = d.join("rebalanced.safetensors");
    // A full run spec as the model file.
    let o = equilibrium(&[
        "--model",
        s(&d.join("spec.toml")),
        "--weights",
        s(&w),
        "--x",
        s(&d.join("x.npy")),
        "--y",
        s(&d.join("y.npy")),
        "--lr",
        "0.02",
        "--batch-size",
        "4",
        "--out",
        s(&out),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json output parses");
    let model = load_model(&d.join("spec.toml")).unwrap();
    let cat = catalog(&model);
    let rows = rep["rows"].as_array().unwrap();
    assert_eq!(rows.len(), cat.symmetries.len());
    assert_eq!(rep["n"], N);
    assert!(rep["max_rel_loss_change"].as_f64().unwrap() <= 1e-12);

    let theta = load_weights(&w, &model).unwrap();
    let theta_r = load_weights(&out, &model).unwrap();
    assert_ne!(theta, theta_r, "the rebalanced weights moved");
    // Same names, shapes and dtype (f64) as the input.
    let (a, b) = (read_safetensors(&w).unwrap(), read_safetensors(&out).unwrap());
    assert_eq!(
        a.iter().map(|(k, v)| (k, &v.0)).collect::<Vec<_>>(),
        b.iter().map(|(k, v)| (k, &v.0)).collect::<Vec<_>>()
    );
    let bytes = std::fs::read(&out).unwrap();
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + hlen]).unwrap();
    assert!(header.contains("\"F64\"") && !header.contains("\"F32\""), "{header}");

    // The same function: outputs and loss, to 1e-12 relative.
    let (f0, f1) = (outputs(&model, &theta, &x), outputs(&model, &theta_r, &x));
    let scale = f0.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = f0.iter().zip(&f1).fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
    assert!(diff <= 1e-12 * scale, "outputs differ by {diff} (scale {scale})");
    let mut ws = model.workspace(N);
    let (l0, l1) = (
        model.loss_chunked(&theta, &x, &y, N, &mut ws),
        model.loss_chunked(&theta_r, &x, &y, N, &mut ws),
    );
    assert!((l1 - l0).abs() <= 1e-12 * l0, "loss {l0} -> {l1}");
    assert!((rep["loss_before"].as_f64().unwrap() - l0).abs() <= 1e-12 * l0);

    // The noise imbalance of every neuron, recomputed from scratch at the rebalanced weights.
    let before = grad_stats(&model, &theta, &x, &y, N, &mut ws);
    let after = grad_stats(&model, &theta_r, &x, &y, N, &mut ws);
    let mut balanced = 0;
    let mut imbalance_before = 0.0;
    for (sym, row) in cat.symmetries.iter().zip(rows) {
        assert_eq!(row["name"], sym.name.as_str());
        let SymmetryKind::NeuronRescaling { .. } = sym.kind else {
            continue;
        };
        let a = sym.generator.as_diagonal().unwrap();
        let tr = |st: &nequil::core::stats::GradStats| {
            let var = st.variance();
            let t: f64 = a.iter().zip(&var).map(|(ai, v)| ai * v).sum();
            let parts: f64 = a.iter().zip(&var).map(|(ai, v)| ai.abs() * v).sum();
            (t, parts)
        };
        let (t0, _) = tr(&before);
        let (t1, parts1) = tr(&after);
        assert!((row["tr_a_sigma"].as_f64().unwrap() - t0).abs() <= 1e-10 * t0.abs().max(1e-300));
        match row["status"].as_str().unwrap() {
            "converged" => {
                assert_eq!(row["applied"], true);
                assert!(
                    t1.abs() <= 1e-8 * parts1,
                    "{}: Tr[AΣ] = {t1:e} at the rebalanced θ, parts {parts1:e}",
                    sym.name
                );
                balanced += 1;
                imbalance_before += t0.abs();
            }
            // A dead ReLU neuron: no noise on either side, left unchanged.
            "degenerate" => assert!(t0 == 0.0 && t1 == 0.0 && row["applied"] == false),
            // A neuron whose incoming (or outgoing) weights get no gradient noise: λ* = ±∞.
            st => {
                assert!(st.ends_with("infinity"), "{}: {st}", sym.name);
                assert_eq!(row["lambda_star"].as_str().unwrap().trim_start_matches('-'), "inf");
                assert!(row["note"].as_str().unwrap().contains("unchanged"));
            }
        }
    }
    assert!(balanced >= 10, "only {balanced} neurons balanced");
    assert!(imbalance_before > 0.0, "nothing to rebalance");
    let totals = &rep["totals"];
    assert!(totals["imbalance_after"].as_f64().unwrap() <= 1e-8 * totals["noise_after"].as_f64().unwrap());
    assert!(totals["imbalance_before"].as_f64().unwrap() > 1e-3 * totals["noise_before"].as_f64().unwrap());
}

#[test]
fn text_report_npz_data_weight_decay_and_discrete_time() {
    let d = tmp("text");
    let (x, y) = write_data(&d);
    let w = train(&d);
    let xa = NdArray::new(vec![N, D_IN], x).unwrap();
    let ya = NdArray::new(vec![N, D_OUT], y).unwrap();
    write_npz(&d.join("d.npz"), &[("inputs", &xa), ("targets", &ya)]).unwrap();
    std::fs::write(d.join("model.toml"), MODEL).unwrap();
    let base = |extra: &[&str]| {
        let mut v = vec![
            "--model".to_string(),
            s(&d.join("model.toml")).into(),
            "--weights".into(),
            s(&w).into(),
            "--npz".into(),
            s(&d.join("d.npz")).into(),
            "--x-key".into(),
            "inputs".into(),
            "--y-key".into(),
            "targets".into(),
            "--lr".into(),
            "0.02".into(),
            "--batch-size".into(),
            "4".into(),
        ];
        v.extend(extra.iter().map(|e| e.to_string()));
        v
    };
    let o = bin().arg("equilibrium").args(base(&[])).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // --threads changes nothing in the report (the library's threads tests check the split
    // statistics bit for bit on shapes large enough to be split).
    let o2 = bin()
        .arg("equilibrium")
        .args(base(&["--threads", "2"]))
        .output()
        .unwrap();
    assert!(o2.status.success(), "{}", String::from_utf8_lossy(&o2.stderr));
    assert_eq!(o2.stdout, o.stdout, "--threads 2 changed the report");
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("symmetry") && lines[1].contains("λ*"), "{text}");
    assert!(text.contains("neuron.0.0") && text.contains("neuron.1.5") && text.contains("layer_pair.1"));
    let summary = lines.last().unwrap();
    assert!(summary.starts_with("summary:") && summary.contains("max |loss after − loss before|/loss"));
    // Aligned: the first numeric columns (C, Tr[AΣ], λ*) end at the same place on every line.
    let ends = |l: &str| -> Vec<usize> {
        let c: Vec<char> = l.chars().collect();
        let mut v = vec![];
        for i in 1..c.len() {
            if !c[i - 1].is_whitespace() && c[i].is_whitespace() {
                v.push(i);
            }
        }
        v[1..4].to_vec()
    };
    let table: Vec<&str> = lines
        .iter()
        .skip(1)
        .take_while(|l| !l.starts_with("note") && !l.starts_with("summary"))
        .copied()
        .collect();
    assert_eq!(table.len(), 1 + 8 + 6 + 2, "{text}");
    for l in &table {
        assert_eq!(ends(l), ends(table[0]), "misaligned: {l}");
    }

    // Weight decay and discrete time: the drift (what the equilibrium zeroes) vanishes after.
    for extra in [
        &["--weight-decay", "0.001"][..],
        &["--discrete"][..],
        &["--discrete", "--weight-decay", "0.01"][..],
    ] {
        let mut args = base(extra);
        args.push("--json".into());
        let o = bin().arg("equilibrium").args(&args).output().unwrap();
        assert!(o.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let t = &rep["totals"];
        let (d0, d1) = (t["drift_before"].as_f64().unwrap(), t["drift_after"].as_f64().unwrap());
        assert!(t["applied"].as_u64().unwrap() >= 10, "{extra:?}");
        assert!(d1 <= 1e-8 * d0, "{extra:?}: Σ|drift| {d0:e} -> {d1:e}");
        assert!(rep["max_rel_loss_change"].as_f64().unwrap() <= 1e-12, "{extra:?}");
        let time = if extra.contains(&"--discrete") {
            "discrete"
        } else {
            "continuous"
        };
        assert_eq!(rep["time"], time);
    }
}

#[test]
fn bad_inputs_exit_2_name_the_culprit_and_write_nothing() {
    let d = tmp("bad");
    let (x, y) = write_data(&d);
    std::fs::write(d.join("model.toml"), MODEL).unwrap();
    let model = load_model(&d.join("model.toml")).unwrap();
    let theta = model
        .init(&nequil::core::models::Init::Kaiming, &mut Rng::new(5))
        .unwrap();
    let good = d.join("good.safetensors");
    save_weights(&good, &model, &theta).unwrap();
    let tensors = named_tensors(&model, &theta);
    let write = |name: &str, t: &[(String, Vec<usize>, &[f64])]| {
        let p = d.join(name);
        write_safetensors(&p, t, None).unwrap();
        p
    };
    write(
        "missing.safetensors",
        &tensors
            .iter()
            .filter(|t| t.0 != "layers.1.bias")
            .cloned()
            .collect::<Vec<_>>(),
    );
    let extra_data = [1.0, 2.0];
    let mut with_extra = tensors.clone();
    with_extra.push(("layers.3.weight".into(), vec![2], &extra_data[..]));
    write("extra.safetensors", &with_extra);
    let mut transposed = tensors.clone();
    transposed[0].1 = vec![4, 8];
    write("shape.safetensors", &transposed);
    let mut nan_theta = theta.clone();
    nan_theta[3] = f64::NAN;
    let nan_w = d.join("nanw.safetensors");
    save_weights(&nan_w, &model, &nan_theta).unwrap();
    let mut xn = x.clone();
    xn[5 * D_IN + 2] = f64::NAN;
    write_npy(&d.join("xnan.npy"), &NdArray::new(vec![N, D_IN], xn).unwrap()).unwrap();
    write_npy(
        &d.join("x3.npy"),
        &NdArray::new(vec![N, 3], x[..N * 3].to_vec()).unwrap(),
    )
    .unwrap();
    write_npy(
        &d.join("yshort.npy"),
        &NdArray::new(vec![N - 1, D_OUT], y[..(N - 1) * D_OUT].to_vec()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("badkey.toml"),
        MODEL.replace("bias = true", "bias = true\nbiases = 1"),
    )
    .unwrap();
    std::fs::write(d.join("badkind.toml"), MODEL.replace("\"mlp\"", "\"transformer\"")).unwrap();
    std::fs::write(d.join("nomodel.toml"), "[train]\nlr = 0.1\n").unwrap();
    let xa = NdArray::new(vec![N, D_IN], x.clone()).unwrap();
    write_npz(&d.join("d.npz"), &[("x", &xa)]).unwrap();

    let out = d.join("out.safetensors");
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    let std_args = |model: &str, weights: &str, xf: &str, yf: &str| -> Vec<String> {
        [
            "--model",
            model,
            "--weights",
            weights,
            "--x",
            xf,
            "--y",
            yf,
            "--lr",
            "0.02",
            "--batch-size",
            "4",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let (m, g, xg, yg) = (p("model.toml"), p("good.safetensors"), p("x.npy"), p("y.npy"));
    let mut cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            std_args(&m, &p("missing.safetensors"), &xg, &yg),
            vec!["missing.safetensors", "missing tensor `layers.1.bias`"],
        ),
        (
            std_args(&m, &p("extra.safetensors"), &xg, &yg),
            vec!["extra.safetensors", "unexpected tensor `layers.3.weight`"],
        ),
        (
            std_args(&m, &p("shape.safetensors"), &xg, &yg),
            vec![
                "shape.safetensors",
                "`layers.0.weight` has shape [4, 8], expected [8, 4]",
            ],
        ),
        (
            std_args(&m, &p("nanw.safetensors"), &xg, &yg),
            vec!["nanw.safetensors", "layers.0.weight", "non-finite"],
        ),
        (
            std_args(&m, &p("nothere.safetensors"), &xg, &yg),
            vec!["nothere.safetensors"],
        ),
        (
            std_args(&m, &g, &p("xnan.npy"), &yg),
            vec!["xnan.npy", "non-finite", "sample 5, feature 2"],
        ),
        (
            std_args(&m, &g, &p("x3.npy"), &yg),
            vec!["x3.npy", "[160, 3]", "[n, 4]"],
        ),
        (
            std_args(&m, &g, &xg, &p("yshort.npy")),
            vec!["yshort.npy", "[159, 2]", "[160, 2]"],
        ),
        (std_args(&p("badkey.toml"), &g, &xg, &yg), vec!["badkey.toml", "biases"]),
        (
            std_args(&p("badkind.toml"), &g, &xg, &yg),
            vec!["badkind.toml", "model.kind", "transformer"],
        ),
        (
            std_args(&p("nomodel.toml"), &g, &xg, &yg),
            vec!["nomodel.toml", "[model]"],
        ),
        (std_args(&p("nofile.toml"), &g, &xg, &yg), vec!["nofile.toml"]),
    ];
    let mut lr0 = std_args(&m, &g, &xg, &yg);
    lr0[9] = "0".into();
    cases.push((lr0, vec!["--lr"]));
    cases.push((
        [
            "--model",
            &m,
            "--weights",
            &g,
            "--npz",
            &p("d.npz"),
            "--lr",
            "0.02",
            "--batch-size",
            "4",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        vec!["d.npz", "no array `y`", "x"],
    ));
    for (i, (mut args, needles)) in cases.into_iter().enumerate() {
        args.extend(["--out".to_string(), s(&out).to_string()]);
        let o = bin().arg("equilibrium").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        for n in needles {
            assert!(err.contains(n), "case {i}: the message does not say `{n}`: {err}");
        }
        assert!(o.stdout.is_empty(), "case {i}: printed a report");
        assert!(!out.exists(), "case {i}: the --out file was created");
        let leftovers: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("out.safetensors"))
            .collect();
        assert!(leftovers.is_empty(), "case {i}: temporary files left behind");
    }
    // The good inputs work (and only then is the file written).
    let mut args = std_args(&m, &g, &xg, &yg);
    args.extend(["--out".to_string(), s(&out).to_string()]);
    let o = bin().arg("equilibrium").args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
}

/// `nequil equilibrium --loss cross-entropy`: integer labels from a `.npy`, the report's losses
/// are the cross-entropy before and after (equal to rounding: the rebalanced weights compute the
/// same logits), and the rebalanced weights balance the noise of every applied neuron.
#[test]
fn equilibrium_with_cross_entropy_labels() {
    let d = tmp("xent");
    std::fs::write(
        d.join("model.toml"),
        "[model]\nkind = \"mlp\"\nwidths = [4, 8, 3]\nbias = true\n",
    )
    .unwrap();
    let model = load_model(&d.join("model.toml"))
        .unwrap()
        .with_loss(nequil::Loss::CrossEntropy, "loss")
        .unwrap();
    let mut rng = Rng::new(21);
    let n = 96;
    let mut x = vec![0.0; n * D_IN];
    rng.fill_normal(&mut x);
    let y: Vec<f64> = (0..n).map(|_| rng.below(3) as f64).collect();
    write_npy(&d.join("x.npy"), &NdArray::new(vec![n, D_IN], x.clone()).unwrap()).unwrap();
    write_npy(&d.join("y.npy"), &NdArray::new(vec![n], y.clone()).unwrap()).unwrap();
    let theta = model.init(&nequil::Init::Kaiming, &mut Rng::new(22)).unwrap();
    save_weights(&d.join("w.safetensors"), &model, &theta).unwrap();
    let args = |loss: &str, out: &str| {
        bin()
            .args([
                "equilibrium",
                "--model",
                s(&d.join("model.toml")),
                "--weights",
                s(&d.join("w.safetensors")),
                "--x",
                s(&d.join("x.npy")),
                "--y",
                s(&d.join("y.npy")),
                "--lr",
                "0.05",
                "--batch-size",
                "8",
                "--json",
                "--loss",
                loss,
                "--out",
                s(&d.join(out)),
            ])
            .output()
            .unwrap()
    };
    let o = args("cross-entropy", "r.safetensors");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let l0 = grad_stats(&model, &theta, &x, &y, n, &mut model.workspace(32)).loss;
    assert!((rep["loss_before"].as_f64().unwrap() - l0).abs() <= 1e-12 * l0);
    let theta1 = load_weights(&d.join("r.safetensors"), &model).unwrap();
    let l1 = grad_stats(&model, &theta1, &x, &y, n, &mut model.workspace(32)).loss;
    assert!((l1 - l0).abs() <= 1e-10 * l0, "loss {l0} -> {l1}");
    // The labels are no MSE targets: `--loss mse` (the model file's) refuses them by shape.
    let o = args("mse", "m.safetensors");
    assert_eq!(o.status.code(), Some(2));
    assert!(!d.join("m.safetensors").exists());
}
