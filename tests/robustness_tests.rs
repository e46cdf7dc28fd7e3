//! Runs that end badly, and outputs that cannot be written, end cleanly:
//!
//! * an instrument that fails mid-run ends the run as a divergence does (exit 1, the log up to the
//!   last complete row, a summary naming the instrument, the step and the error; in a sweep the
//!   run is recorded `failed` with that error);
//! * a full disk (a file size limit, `ulimit -f`) gives a clear error, leaves nothing half-written
//!   and the same command completes once there is room, for `nequil run`, `nequil sweep` and
//!   `nequil equilibrium`;
//! * an output directory on a read-only path gives a clear error before anything runs;
//! * models and data too large for memory are refused up front, through every command;
//! * every file the project writes goes through the atomic writer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::bin;

fn tmp(name: &str) -> PathBuf {
    common::scratch("robust", name)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Every file under `dir` (relative paths, sorted) with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
    }
    let mut out = vec![];
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn names(dir: &Path) -> Vec<String> {
    files(dir).into_iter().map(|(n, _)| n).collect()
}

// ---------------------------------------------------------------------------------------------
// A failing instrument.

/// A two-layer linear net whose matrix family is tracked at every step; at step 10 the learning
/// rate jumps to `jump`. With 1e100 the update throws θ to ~1e100 (finite), where the loss is still
/// finite (~1e200) but the per-sample gradients' second moments overflow: the family probe fails
/// at the row of step 11 with "non-finite gradients". With 0.01 nothing happens.
fn probe_spec(jump: &str, sweep: &str) -> String {
    format!(
        r#"seed = 0
[model]
kind = "linear"
widths = [3, 4, 3]
[data]
mode = "fixed"
n = 32
[train]
batch_size = 4
schedule = "piecewise"
boundaries = [10]
values = [0.01, {jump}]
steps = 20
[probes]
every = 1
[probes.charges]
symmetries = []
families = ["all"]
{sweep}"#
    )
}

fn csv_rows(p: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(p).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    (header, rows)
}

#[test]
fn a_failing_instrument_ends_the_run_like_a_divergence() {
    let d = tmp("probe");
    std::fs::write(d.join("fail.toml"), probe_spec("1e100", "")).unwrap();
    std::fs::write(d.join("calm.toml"), probe_spec("0.01", "")).unwrap();
    let o = bin()
        .arg("run")
        .arg(d.join("fail.toml"))
        .arg("--out")
        .arg(d.join("fail"))
        .arg("--quiet")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("probe probes.charges.families failed at step 11"), "{err}");
    assert!(err.contains("metrics.csv"), "{err}");
    let s = json(&d.join("fail/summary.json"));
    assert_eq!(s["status"], "failed");
    assert_eq!(s["error"]["probe"], "probes.charges.families");
    assert_eq!(s["error"]["step"], 11);
    assert!(s["error"]["error"].as_str().unwrap().contains("non-finite"), "{s}");
    assert_eq!(s["steps_done"], 11);
    assert!(
        !d.join("fail/final.safetensors").exists(),
        "no final weights, as on divergence"
    );
    // The log up to the last complete row: steps 0..=10, the same numbers as a run without the
    // jump; at step 10 (whose lr column is the rate of the next update) the state's columns
    // (step, t, losses, norms, charges) are the same and those that involve η differ.
    let calm = bin()
        .arg("run")
        .arg(d.join("calm.toml"))
        .arg("--out")
        .arg(d.join("calm"))
        .arg("--quiet")
        .output()
        .unwrap();
    assert_eq!(calm.status.code(), Some(0), "{}", stderr(&calm));
    let (h, rows) = csv_rows(&d.join("fail/metrics.csv"));
    let (hc, calm_rows) = csv_rows(&d.join("calm/metrics.csv"));
    assert_eq!(h, hc);
    assert_eq!(rows.len(), 11, "rows at steps 0..=10");
    let lr = h.iter().position(|c| c == "lr").unwrap();
    let state =
        |c: &str| ["step", "t", "batch_loss", "loss"].contains(&c) || c.starts_with("norm2.") || c.ends_with("/charge");
    for (k, (r, c)) in rows.iter().zip(&calm_rows).enumerate() {
        assert_eq!(r[0], k.to_string());
        for j in 0..r.len() {
            if k < 10 || state(&h[j]) {
                assert_eq!(r[j], c[j], "step {k}, column {}", h[j]);
            }
        }
    }
    assert_eq!(rows[10][lr], "1e100");
    // The family columns were finite up to the failure.
    let charge = h.iter().position(|c| c.ends_with("/charge")).unwrap();
    assert!(rows.iter().all(|r| r[charge].parse::<f64>().unwrap().is_finite()));
}

#[test]
fn in_a_sweep_a_failing_instrument_is_recorded_failed() {
    let d = tmp("probe-sweep");
    std::fs::write(
        d.join("sweep.toml"),
        probe_spec("0.01", "[sweep]\n\"train.values\" = [[0.01, 0.01], [0.01, 1e100]]\n"),
    )
    .unwrap();
    let out = d.join("out");
    let o = bin()
        .arg("sweep")
        .arg(d.join("sweep.toml"))
        .arg("--out")
        .arg(&out)
        .args(["--jobs", "1"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "a failed run: {err}");
    assert_eq!(json(&out.join("runs/run-0000/status.json"))["status"], "ok");
    let st = json(&out.join("runs/run-0001/status.json"));
    assert_eq!(st["status"], "failed");
    let msg = st["error"].as_str().unwrap();
    assert!(
        msg.contains("probe probes.charges.families failed at step 11") && msg.contains("non-finite"),
        "{msg}"
    );
    assert!(err.contains("run-0001") && err.contains("failed"), "{err}");
    let s = json(&out.join("runs/run-0001/summary.json"));
    assert_eq!(s["error"]["probe"], "probes.charges.families");
    assert_eq!(s["error"]["step"], 11);
    assert_eq!(csv_rows(&out.join("runs/run-0001/metrics.csv")).1.len(), 11);
    // Kept as a result: a restart does not run it again; merge lists it with its error.
    let before = files(&out.join("runs/run-0001"));
    let o = bin()
        .arg("sweep")
        .arg(d.join("sweep.toml"))
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(files(&out.join("runs/run-0001")), before);
    let o = bin().arg("merge").arg(&out).arg("--quiet").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let row = table.lines().find(|l| l.starts_with("run-0001,")).unwrap();
    assert!(
        row.contains(",failed,") && row.contains("probe probes.charges.families failed at step 11"),
        "{row}"
    );
}

// ---------------------------------------------------------------------------------------------
// A full disk.

/// `nequil ARGS` under a file size limit of `blocks` (of 512 bytes for `sh`'s `ulimit -f`).
fn limited(blocks: u64, args: &[&std::ffi::OsStr]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -f {blocks} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_nequil"))
        .args(args);
    for v in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "NEQUIL_MAX_MEMORY"] {
        c.env_remove(v);
    }
    c.output().unwrap()
}

/// A linear net whose final weights (100·250 + 250·100 values, 400 kB) exceed a 100-block file
/// size limit (50 kB under dash, 100 kB under bash), while its other files are a few kB.
fn big_weights_spec(seed: u64, sweep: &str) -> String {
    format!(
        "seed = {seed}\n[model]\nkind = \"linear\"\nwidths = [100, 250, 100]\n[data]\nx_cov = {{ phi = 0.5 }}\n\
         [train]\nlr = 0.001\nsteps = 20\n[probes]\nevery = 10\neval_samples = 16\n{sweep}"
    )
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[test]
fn a_full_disk_leaves_nothing_half_written_and_a_rerun_completes() {
    let d = tmp("disk");
    let spec = d.join("spec.toml");
    std::fs::write(&spec, big_weights_spec(0, "")).unwrap();
    let out = d.join("run");
    let args = [os("run"), spec.as_os_str(), os("--out"), out.as_os_str(), os("--quiet")];
    let o = limited(100, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "a clear error, not a signal: {err}");
    assert!(
        err.contains("final.safetensors") && err.contains("File too large"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written: {:?}", names(&d));
    // With room, the same command completes.
    let o = bin().args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        names(&out),
        ["final.safetensors", "metrics.csv", "spec.toml", "summary.json"]
    );
    let t = nequil::lab::io::read_safetensors(&out.join("final.safetensors")).unwrap();
    assert_eq!(t["layers.0.weight"].0, vec![250, 100]);

    // Over an earlier run: its four files stay as they were, and no temporary file is left.
    let before = files(&out);
    std::fs::write(&spec, big_weights_spec(1, "")).unwrap();
    let o = limited(100, &args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(files(&out), before, "the earlier run's files are untouched");
    let o = bin().args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_ne!(files(&out), before, "the new seed's run replaced them");
}

#[test]
fn a_full_disk_leaves_a_sweep_resumable() {
    let d = tmp("disk-sweep");
    let spec = d.join("sweep.toml");
    std::fs::write(&spec, big_weights_spec(0, "[sweep]\nseed = [0, 1, 2]\n")).unwrap();
    let reference = d.join("reference");
    let o = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--out")
        .arg(&reference)
        .arg("--quiet")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = d.join("out");
    let args = [
        os("sweep"),
        spec.as_os_str(),
        os("--out"),
        out.as_os_str(),
        os("--jobs"),
        os("1"),
    ];
    let o = limited(100, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("could not record the run") && err.contains("File too large"),
        "{err}"
    );
    // Each run that could not be written is left unfinished, with nothing in it.
    for id in ["run-0000", "run-0001", "run-0002"] {
        assert!(!out.join("runs").join(id).exists(), "{id}: {:?}", names(&out));
    }
    assert_eq!(names(&out), ["sweep.toml"], "no lock or temporary file left");
    let o = bin().args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for id in ["run-0000", "run-0001", "run-0002"] {
        for f in [
            "params.json",
            "spec.toml",
            "metrics.csv",
            "final.safetensors",
            "summary.json",
        ] {
            let (a, b) = (
                reference.join("runs").join(id).join(f),
                out.join("runs").join(id).join(f),
            );
            assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{id}/{f}");
        }
    }
}

#[test]
fn a_full_disk_leaves_no_rebalanced_weights() {
    let d = tmp("disk-eq");
    std::fs::write(
        d.join("model.toml"),
        "[model]\nkind = \"linear\"\nwidths = [40, 300, 40]\n",
    )
    .unwrap();
    let model = nequil::lab::spec::load_model(&d.join("model.toml")).unwrap();
    let theta = model
        .init(
            &nequil::core::models::Init::Kaiming,
            &mut nequil::core::rng::Rng::new(1),
        )
        .unwrap();
    nequil::lab::io::save_weights(&d.join("w.safetensors"), &model, &theta).unwrap();
    let mut r = nequil::core::rng::Rng::new(2);
    let mut x = vec![0.0; 16 * 40];
    r.fill_normal(&mut x);
    let x = nequil::lab::io::NdArray::new(vec![16, 40], x).unwrap();
    nequil::lab::io::write_npy(&d.join("x.npy"), &x).unwrap();
    nequil::lab::io::write_npy(&d.join("y.npy"), &x).unwrap();
    let out = d.join("r.safetensors");
    let p = |f: &str| d.join(f).into_os_string();
    let (m, w, xs, ys) = (p("model.toml"), p("w.safetensors"), p("x.npy"), p("y.npy"));
    let args = [
        os("equilibrium"),
        os("--model"),
        &m,
        os("--weights"),
        &w,
        os("--x"),
        &xs,
        os("--y"),
        &ys,
        os("--lr"),
        os("0.01"),
        os("--batch-size"),
        os("4"),
        os("--out"),
        out.as_os_str(),
    ];
    let before = names(&d);
    let o = limited(100, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("r.safetensors") && err.contains("File too large"), "{err}");
    assert_eq!(names(&d), before, "nothing written");
    let o = bin().args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(nequil::lab::io::read_safetensors(&out).is_ok());
}

// ---------------------------------------------------------------------------------------------
// A read-only output directory.

/// A directory no file can be created in: a temporary one without write permission, or (where
/// permissions do not stop this process, as root) a directory of sysfs.
fn read_only_dir(d: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let ro = d.join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::File::create(ro.join("probe")).is_err() {
        return ro;
    }
    let _ = std::fs::remove_file(ro.join("probe"));
    let sys = PathBuf::from("/sys/kernel");
    assert!(
        std::fs::File::create(sys.join("nequil-probe")).is_err(),
        "no read-only directory found for this test"
    );
    sys
}

#[test]
fn an_output_directory_on_a_read_only_path_is_a_clear_error() {
    let d = tmp("ro");
    let ro = read_only_dir(&d);
    let spec = d.join("spec.toml");
    std::fs::write(&spec, big_weights_spec(0, "")).unwrap();
    let out = ro.join("nequil-out");
    let t = std::time::Instant::now();
    let o = bin().arg("run").arg(&spec).arg("--out").arg(&out).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&out.display().to_string()) && err.contains("cannot write"),
        "{err}"
    );
    assert!(err.contains("Permission denied") || err.contains("Read-only"), "{err}");
    assert!(t.elapsed().as_secs_f64() < 5.0, "refused before training");
    assert!(!out.exists());

    std::fs::write(&spec, big_weights_spec(0, "[sweep]\nseed = [0, 1]\n")).unwrap();
    let o = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&out.display().to_string()), "{err}");
    assert!(!out.exists());

    let o = bin()
        .args(["reproduce", "fig1-scale-invariance", "--quiet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&out.display().to_string()), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Too large for memory.

fn small_spec(extra_model: &str, data: &str, probes: &str) -> String {
    format!(
        "seed = 0\n[model]\nkind = \"linear\"\n{extra_model}\n[data]\n{data}\n[train]\nlr = 0.01\nsteps = 100\n\
         [probes]\n{probes}\n"
    )
}

/// Data, evaluation samples, logs and teachers too large for memory are refused before anything
/// is allocated, each naming its key (the model itself is small in every case).
#[test]
fn data_logs_and_teachers_too_large_for_memory_are_refused_up_front() {
    let d = tmp("huge-data");
    let cases = [
        (
            small_spec(
                "widths = [4, 6, 4]",
                "mode = \"fixed\"\nn = 1000000000000",
                "every = 10",
            ),
            "data.n",
        ),
        (
            small_spec("widths = [4, 6, 4]", "", "every = 10\neval_samples = 1000000000000000"),
            "probes.eval_samples",
        ),
        (
            small_spec("widths = [4, 6, 4]", "", "every = 1").replace("steps = 100", "steps = 1000000000000"),
            "probes.every",
        ),
        (
            small_spec("widths = [100000, 1, 100000]", "target = \"linear\"", "every = 10"),
            "data.target",
        ),
        (
            small_spec(
                "widths = [4, 6, 4]",
                "target = \"tanh-teacher\"\nteacher_hidden = 1000000000000",
                "every = 10",
            ),
            "data.teacher_hidden",
        ),
        (
            small_spec("widths = [100000, 1, 100000]", "mode = \"population\"", "every = 10"),
            "population",
        ),
    ];
    for (i, (spec, key)) in cases.iter().enumerate() {
        std::fs::write(d.join("spec.toml"), spec).unwrap();
        let out = d.join(format!("out{i}"));
        let t = std::time::Instant::now();
        let o = bin()
            .arg("run")
            .arg(d.join("spec.toml"))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        assert!(
            err.contains(key) && err.contains("of memory") && err.contains("available"),
            "case {i}: {err}"
        );
        assert!(t.elapsed().as_secs_f64() < 5.0, "case {i}: took {:?}", t.elapsed());
        assert!(!out.exists(), "case {i}");
    }
}

/// A sweep whose grid holds one model too large is refused before any run starts, naming the run;
/// one whose runs fit alone but not `--jobs` at a time is refused naming `--jobs`; a cap on the
/// memory (NEQUIL_MAX_MEMORY) is honoured, and a malformed cap is bad input.
#[test]
fn sweeps_too_large_for_memory_are_refused_before_any_run() {
    let d = tmp("huge-sweep");
    let base = small_spec("widths = [4, 6, 4]", "", "every = 10");
    std::fs::write(
        d.join("one.toml"),
        format!("{base}[sweep]\n\"model.widths\" = [[4, 6, 4], [100000, 100000, 100000]]\n"),
    )
    .unwrap();
    let out = d.join("out");
    let o = bin()
        .arg("sweep")
        .arg(d.join("one.toml"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("run-0001") && err.contains("20000000000 parameters"),
        "{err}"
    );
    assert!(!out.exists(), "no run started");

    // 16 M parameters: 4 copies are 512 MiB. Under a 1 GiB cap one run fits, three at once do not.
    let wide = small_spec("widths = [4000, 2000, 4000]", "", "every = 100\neval_samples = 16")
        .replace("steps = 100", "steps = 1");
    std::fs::write(d.join("wide.toml"), format!("{wide}[sweep]\nseed = [0, 1, 2]\n")).unwrap();
    let o = bin()
        .env("NEQUIL_MAX_MEMORY", "1G")
        .arg("sweep")
        .arg(d.join("wide.toml"))
        .arg("--out")
        .arg(&out)
        .args(["--jobs", "3"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    // About 514 MB each (4 × 8 bytes × 16 M, and small buffers): two fit in 1 GiB.
    assert!(
        err.contains("--jobs 3") && err.contains("run at most 2 at a time"),
        "{err}"
    );
    assert!(!out.exists());
    // The cap applies to one run too.
    std::fs::write(d.join("wide-run.toml"), &wide).unwrap();
    let o = bin()
        .env("NEQUIL_MAX_MEMORY", "256M")
        .arg("run")
        .arg(d.join("wide-run.toml"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("16000000 parameters") && err.contains("268.4 MB is available"),
        "{err}"
    );
    assert!(!out.exists());
    let o = bin().env("NEQUIL_MAX_MEMORY", "lots").arg("list").output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("NEQUIL_MAX_MEMORY") && err.contains("lots"), "{err}");
}

/// The same models through `nequil equilibrium` under a memory cap: refused with the model file
/// named.
#[test]
fn a_memory_cap_refuses_an_equilibrium_model_up_front() {
    let d = tmp("huge-eq");
    std::fs::write(
        d.join("model.toml"),
        "[model]\nkind = \"linear\"\nwidths = [2000, 2000, 2000]\n",
    )
    .unwrap();
    let o = bin()
        .env("NEQUIL_MAX_MEMORY", "100M")
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
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("model.toml") && err.contains("8000000 parameters") && err.contains("of memory"),
        "{err}"
    );
}

/// A sequential model (no `model.widths`) whose probes would need far more memory than a 64 MiB
/// cap: a double rotation over a hidden layer of 20 000 (`[probes.charges] families`: d × d
/// matrices), Lanczos' Krylov basis over 400 000 parameters (`[probes.hessian]`), and the
/// equilibrium analysis's 2 001 catalog generators of a narrower ReLU net. `run`, `sweep` and `equilibrium` refuse each
/// up front with exit 2, naming the probe (its spec key) and its bytes, and write nothing; the
/// commands return at once instead of growing (a refused run allocates none of it).
#[test]
fn probes_too_large_for_memory_are_refused_on_sequential_models() {
    let d = tmp("huge-probes");
    let model = |width: usize, hidden: &str| {
        format!(
            "[model]\nkind = \"sequential\"\ninput = [10]\nlayers = [{{ type = \"linear\", out_features = {width}, bias = false }}, \
             {hidden}{{ type = \"linear\", out_features = 10, bias = false }}]\n"
        )
    };
    let spec = |probes: &str| {
        format!(
            "seed = 0\n{}[data]\n[train]\nlr = 0.01\nsteps = 10\n[probes]\nevery = 5\neval_samples = 16\n{probes}",
            model(20000, "")
        )
    };
    let cases = [
        (
            spec("[probes.charges]\nsymmetries = []\nfamilies = [\"all\"]\n"),
            ["probes.charges.families", "rotation.0", "20000 × 20000"],
        ),
        (
            spec("[probes.hessian]\ntrace = false\n"),
            ["probes.hessian.top_eigen", "the Krylov basis", "262.4 MB"],
        ),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        std::fs::write(d.join(format!("run{i}.toml")), text).unwrap();
        std::fs::write(
            d.join(format!("sweep{i}.toml")),
            format!("{text}[sweep]\nseed = [0, 1]\n"),
        )
        .unwrap();
        for cmd in ["run", "sweep"] {
            let out = d.join(format!("out-{cmd}-{i}"));
            let o = bin()
                .env("NEQUIL_MAX_MEMORY", "64M")
                .arg(cmd)
                .arg(d.join(format!("{cmd}{i}.toml")))
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap();
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd} {i}: {err}");
            for n in needles {
                assert!(err.contains(n), "{cmd} {i}: `{n}` not in: {err}");
            }
            assert!(err.contains("67.1 MB is available"), "{cmd} {i}: {err}");
            assert!(!out.exists(), "{cmd} {i}: nothing written");
        }
    }
    // The equilibrium analysis of a ReLU net with 2 000 hidden neurons (its buffers fit): one
    // generator of P = 40 000 values per hidden neuron, refused before the weights and data are read.
    std::fs::write(d.join("model.toml"), model(2000, "{ type = \"relu\" }, ")).unwrap();
    let rebalanced = d.join("rebalanced.safetensors");
    let o = bin()
        .env("NEQUIL_MAX_MEMORY", "64M")
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
        .arg("--out")
        .arg(&rebalanced)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("model.toml")
            && err.contains("the equilibrium analysis: the catalog's 2001 generators of 40000 values 640.3 MB"),
        "{err}"
    );
    assert!(!rebalanced.exists());
}

// ---------------------------------------------------------------------------------------------
// Atomic writes everywhere.

/// No code outside the atomic writer creates or writes a file directly (`fs::write`,
/// `File::create`): every output is written to a temporary name and renamed. Test modules are
/// exempt.
#[test]
fn every_output_goes_through_the_atomic_writer() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut offenders = vec![];
    let mut stack = vec![root.join("src"), root.join("crates/nequil/src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // Code before the file's test module.
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (i, line) in code.lines().enumerate() {
                let l = line.trim_start();
                if l.starts_with("//") {
                    continue;
                }
                for bad in ["fs::write(", "File::create(", ".append(true)", "OpenOptions::new()"] {
                    if l.contains(bad) {
                        offenders.push(format!("{}:{}: {l}", p.strip_prefix(&root).unwrap().display(), i + 1));
                    }
                }
            }
        }
    }
    // The writer itself, the writability check (an empty file, removed at once) and the run
    // locks (not outputs: advisory locks, removed when the run is recorded).
    let allowed = [
        "crates/nequil/src/lab/io/mod.rs",
        "crates/nequil/src/lab/runner.rs",
        "crates/nequil/src/lab/sweep.rs",
    ];
    offenders.retain(|o| !allowed.iter().any(|a| o.starts_with(a)));
    assert!(offenders.is_empty(), "direct writes:\n{}", offenders.join("\n"));
}
