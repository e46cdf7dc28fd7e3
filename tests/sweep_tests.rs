//! End-to-end tests of `nequil sweep`, `nequil slurm` and `nequil merge`: resuming after a real
//! SIGKILL, shards (flags, Slurm variables, a generated batch script) merging to the same table as
//! one unsharded sweep, diverging runs recorded without stopping the sweep, bad sweep keys.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::bin;

fn tmp(name: &str) -> PathBuf {
    common::scratch("sweep", name)
}

/// A tiny linear net; `every` sets the log rows, `sweep` the [sweep] table.
fn spec(steps: u64, every: u64, sweep: &str) -> String {
    format!(
        r#"
seed = 0
[model]
kind = "linear"
widths = [2, 3, 2]
[data]
x_cov = {{ phi = 0.5 }}
noise_cov = {{ scalar = 0.5 }}
[train]
lr = 0.01
steps = {steps}
[probes]
every = {every}
eval_samples = 256
[sweep]
{sweep}
"#
    )
}

fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn sweep(spec: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("sweep")
        .arg(spec)
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .args(extra)
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn merge(dirs: &[&Path], extra: &[&str]) -> Output {
    bin()
        .arg("merge")
        .args(dirs)
        .arg("--quiet")
        .args(extra)
        .output()
        .unwrap()
}

/// Run directory names under OUT/runs, sorted.
fn run_dirs(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(out.join("runs")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

fn has_status(out: &Path, id: &str) -> bool {
    out.join("runs").join(id).join("status.json").exists()
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every file of a run except status.json (which holds the wall-clock time).
const RESULT_FILES: [&str; 5] = [
    "params.json",
    "spec.toml",
    "metrics.csv",
    "final.safetensors",
    "summary.json",
];

fn same_results(a: &Path, b: &Path, id: &str) {
    for f in RESULT_FILES {
        let x = std::fs::read(a.join("runs").join(id).join(f)).unwrap();
        let y = std::fs::read(b.join("runs").join(id).join(f)).unwrap();
        assert!(x == y, "{id}/{f} differs between {} and {}", a.display(), b.display());
    }
}

#[test]
fn resumes_after_sigkill_with_identical_results() {
    let d = tmp("kill");
    // 8 runs of about 0.3–0.5 s each (one at a time).
    let steps = 2_000_000;
    let p = write_spec(
        &d,
        "sweep.in.toml",
        &spec(steps, 500_000, "\"train.lr\" = [0.01, 0.02]\nseed = [0, 1, 2, 3]"),
    );
    let reference = d.join("reference");
    ok(&sweep(&p, &reference, &["--jobs", "2"]));
    let ids: Vec<String> = (0..8).map(|i| format!("run-{i:04}")).collect();
    assert_eq!(run_dirs(&reference), ids);

    let out = d.join("out");
    // Without --quiet and without a terminal, the sweep prints a line when a run starts (its lock
    // held) and when it is recorded (its status.json on disk): wait for two runs recorded and a
    // third started, then kill. Five runs would have to finish between that line and the kill for
    // the sweep to end first.
    let mut child = bin()
        .arg("sweep")
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .args(["--jobs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut recorded = 0;
    for line in std::io::BufRead::lines(err) {
        let line = line.unwrap();
        if line.contains(": ok in ") {
            recorded += 1;
        }
        if recorded >= 2 && line.ends_with(": started") {
            break;
        }
    }
    assert_eq!(recorded, 2, "the sweep ended before it could be killed");
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let dirs = run_dirs(&out);
    let finished: Vec<String> = dirs.iter().filter(|id| has_status(&out, id)).cloned().collect();
    assert!(finished.len() < 8, "the sweep finished before the kill");
    let before: Vec<Vec<u8>> = finished
        .iter()
        .map(|id| std::fs::read(out.join("runs").join(id).join("status.json")).unwrap())
        .collect();
    // Also a run that crashed while writing: partial files and a temporary file, no status.
    let crashed = out.join("runs/run-0007");
    std::fs::create_dir_all(&crashed).unwrap();
    std::fs::write(crashed.join("metrics.csv"), "step,t,lr\n0,0,").unwrap();
    std::fs::write(crashed.join(".final.safetensors.999.0.tmp"), [1u8, 2, 3]).unwrap();

    ok(&sweep(&p, &out, &["--jobs", "2"]));
    assert_eq!(run_dirs(&out), ids, "every run present exactly once");
    for (id, st) in finished.iter().zip(&before) {
        let now = std::fs::read(out.join("runs").join(id).join("status.json")).unwrap();
        assert_eq!(&now, st, "{id} had finished before the kill and must not run again");
    }
    for id in &ids {
        let r = out.join("runs").join(id);
        assert_eq!(json(&r.join("status.json"))["status"], "ok", "{id}");
        let s = json(&r.join("summary.json"));
        assert_eq!(s["status"], "ok");
        assert_eq!(s["steps_done"], steps);
        let csv = std::fs::read_to_string(r.join("metrics.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 5, "{id}: rows at 0, 0.5M, 1M, 1.5M, 2M");
        let t = nequil::lab::io::read_safetensors(&r.join("final.safetensors")).unwrap();
        assert_eq!(t["layers.0.weight"].0, vec![3, 2]);
        let names: Vec<String> = std::fs::read_dir(&r)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with('.')),
            "{id}: leftover files {names:?}"
        );
        same_results(&reference, &out, id);
    }
    // A third start has nothing to do.
    let o = bin().arg("sweep").arg(&p).arg("--out").arg(&out).output().unwrap();
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("8 already finished, 0 to run"), "{err}");
    // A different sweep into the same directory is refused, and nothing is touched.
    let p2 = write_spec(
        &d,
        "other.toml",
        &spec(steps, 500_000, "\"train.lr\" = [0.01, 0.03]\nseed = [0, 1, 2, 3]"),
    );
    let o = sweep(&p2, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("different sweep") && err.contains("train.lr"), "{err}");
    // Not a sweep directory.
    std::fs::write(d.join("junk.txt"), "x").unwrap();
    let o = sweep(&p, &d, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a sweep directory"));
}

const GRID: &str = "\"train.lr\" = [0.01, 0.02, 0.03]\nseed = [0, 1]";

#[test]
fn shards_merge_to_the_unsharded_table() {
    let d = tmp("shards");
    let p = write_spec(&d, "s.toml", &spec(3000, 1000, GRID));
    let (all, s0, s1) = (d.join("all"), d.join("s0"), d.join("s1"));
    ok(&sweep(&p, &all, &["--jobs", "2"]));
    ok(&sweep(&p, &s0, &["--shard", "0/2"]));
    ok(&sweep(&p, &s1, &["--shard", "1/2", "--jobs", "2"]));
    assert_eq!(run_dirs(&s0), ["run-0000", "run-0002", "run-0004"]);
    assert_eq!(run_dirs(&s1), ["run-0001", "run-0003", "run-0005"]);

    ok(&merge(&[&all], &[]));
    let table = std::fs::read_to_string(all.join("runs.csv")).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "id,train.lr,seed,status,step,t,lr,batch_loss,loss,norm2.layers.0.weight,norm2.layers.1.weight,error"
    );
    assert_eq!(lines.len(), 7);
    assert!(lines[3].starts_with("run-0002,0.02,0,ok,3000,"), "{}", lines[3]);
    let merged = d.join("merged.csv");
    ok(&merge(&[&s1, &s0], &["--out", merged.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&merged).unwrap(), table);

    // The Slurm variables select the same shard as --shard.
    let e1 = d.join("env1");
    let o = bin()
        .arg("sweep")
        .arg(&p)
        .arg("--out")
        .arg(&e1)
        .arg("--quiet")
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(run_dirs(&e1), run_dirs(&s1));
    for id in run_dirs(&s1) {
        same_results(&s1, &e1, &id);
    }
    // MIN/MAX instead of COUNT: tasks 1..3 of a 1-3 array are shards 0..2 of 3.
    let e2 = d.join("env2");
    let o = bin()
        .arg("sweep")
        .arg(&p)
        .arg("--out")
        .arg(&e2)
        .arg("--quiet")
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_MAX", "3")
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(run_dirs(&e2), ["run-0001", "run-0004"]);
    // Two shards started at the same moment into one shared directory.
    let shared = d.join("shared");
    let children: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|s| {
            bin()
                .arg("sweep")
                .arg(&p)
                .arg("--out")
                .arg(&shared)
                .args(["--quiet", "--shard", s])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap());
    }
    ok(&merge(&[&shared], &[]));
    assert_eq!(std::fs::read_to_string(shared.join("runs.csv")).unwrap(), table);

    // Bad shards: exit 2, nothing run.
    for (args, envs, what) in [
        (vec!["--shard", "2/2"], vec![], "out of range"),
        (vec!["--shard", "a/2"], vec![], "I/N"),
        (vec!["--shard", "0/0"], vec![], "≥ 1"),
        (
            vec![],
            vec![("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "2")],
            "SLURM",
        ),
        (vec![], vec![("SLURM_ARRAY_TASK_ID", "0")], "SLURM_ARRAY_TASK_COUNT"),
    ] {
        let bad = d.join("bad");
        let o = bin()
            .arg("sweep")
            .arg(&p)
            .arg("--out")
            .arg(&bad)
            .args(&args)
            .envs(envs)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
        assert!(!bad.exists());
    }

    // Merge refuses inconsistent inputs.
    let refuse = |dirs: &[&Path], extra: &[&str], what: &str| {
        let o = merge(dirs, extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(what), "expected `{what}` in: {err}");
    };
    refuse(&[&s0], &[], "3 missing");
    ok(&merge(
        &[&s0],
        &["--allow-incomplete", "--out", d.join("part.csv").to_str().unwrap()],
    ));
    let part = std::fs::read_to_string(d.join("part.csv")).unwrap();
    assert!(
        part.lines().nth(2).unwrap().starts_with("run-0001,0.01,1,missing,"),
        "{part}"
    );
    let other = d.join("other");
    ok(&sweep(
        &write_spec(&d, "o.toml", &spec(3000, 1000, "seed = [0, 1]")),
        &other,
        &[],
    ));
    refuse(&[&all, &other], &[], "different sweeps");
    // The same run with different results in two directories.
    let copy = d.join("copy");
    copy_dir(&s0, &copy);
    let sp = copy.join("runs/run-0002/summary.json");
    let text = std::fs::read_to_string(&sp).unwrap();
    std::fs::write(&sp, text.replacen("\"steps_done\": 3000", "\"steps_done\": 2999", 1)).unwrap();
    refuse(&[&s0, &s1, &copy], &[], "run-0002 has different results");
    // A run directory without status.json is unfinished.
    copy_dir(&s0, &copy);
    std::fs::remove_file(copy.join("runs/run-0004/status.json")).unwrap();
    refuse(&[&copy, &s1], &[], "1 unfinished");
    ok(&merge(&[&copy, &s1], &["--allow-incomplete"]));
    let t = std::fs::read_to_string(copy.join("runs.csv")).unwrap();
    assert!(
        t.lines().nth(5).unwrap().starts_with("run-0004,0.03,0,unfinished,"),
        "{t}"
    );
    // …but a finished copy elsewhere completes it.
    ok(&merge(
        &[&copy, &s0, &s1],
        &["--out", d.join("m2.csv").to_str().unwrap()],
    ));
    assert_eq!(std::fs::read_to_string(d.join("m2.csv")).unwrap(), table);
}

/// Eight shards started at once into one new directory, 50 times: each time every shard exits 0
/// and every run executes exactly once. (Before directory initialisation was race-free, a shard
/// that inspected the new directory just after a sibling had created `runs/` and locked a run
/// refused it as "not a sweep directory".) The children are spawned back to back, so they start
/// nearly together; the test does not depend on how they interleave, only exercises it.
#[test]
fn eight_shards_started_together_into_a_new_directory_run_every_run_once() {
    const SHARDS: usize = 8;
    const ROUNDS: usize = 50;
    let d = tmp("together");
    // 16 runs of 20 steps: two per shard.
    let p = write_spec(
        &d,
        "s.toml",
        &spec(20, 10, "\"train.lr\" = [0.01, 0.02]\nseed = [0, 1, 2, 3, 4, 5, 6, 7]"),
    );
    let ids: Vec<String> = (0..16).map(|i| format!("run-{i:04}")).collect();
    for round in 0..ROUNDS {
        let out = d.join(format!("round-{round}"));
        let children: Vec<_> = (0..SHARDS)
            .map(|i| {
                bin()
                    .arg("sweep")
                    .arg(&p)
                    .arg("--out")
                    .arg(&out)
                    .args(["--jobs", "1", "--shard", &format!("{i}/{SHARDS}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (i, c) in children.into_iter().enumerate() {
            let o = c.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success(),
                "round {round}, shard {i}/{SHARDS}: exit {:?}: {err}",
                o.status.code()
            );
            // Its two runs, both executed by it, none before.
            assert!(
                err.contains(&format!(
                    "shard {i}/{SHARDS}: 2 runs (0 finished before, 2 now): 2 ok, 0 diverged, 0 failed"
                )),
                "round {round}, shard {i}/{SHARDS}: {err}"
            );
        }
        assert_eq!(
            run_dirs(&out),
            ids,
            "round {round}: every run present once, no lock left"
        );
        for id in &ids {
            let st = json(&out.join("runs").join(id).join("status.json"));
            assert_eq!(st["status"], "ok", "round {round}, {id}: {st}");
        }
        // The sweep is complete: merge refuses a sweep with unfinished or missing runs.
        ok(&merge(&[&out], &[]));
        assert_eq!(
            std::fs::read_to_string(out.join("runs.csv")).unwrap().lines().count(),
            17
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn slurm_script_is_valid_and_runs_the_shards() {
    let d = tmp("slurm");
    let p = write_spec(&d, "s.toml", &spec(2000, 1000, GRID));
    let out = d.join("out dir"); // a space: the script must quote paths
    let o = bin()
        .arg("slurm")
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .args([
            "--tasks",
            "3",
            "--time",
            "00:10:00",
            "--cpus",
            "2",
            "--mem",
            "1G",
            "--partition",
            "short",
        ])
        .output()
        .unwrap();
    ok(&o);
    let script = String::from_utf8(o.stdout).unwrap();
    for needle in [
        "#!/bin/bash",
        "#SBATCH --array=0-2\n",
        "#SBATCH --cpus-per-task=2\n",
        "#SBATCH --time=00:10:00\n",
        "#SBATCH --mem=1G\n",
        "#SBATCH --partition=short\n",
        "--shard \"${SLURM_ARRAY_TASK_ID}/3\"",
        "--jobs 2",
        &format!("OUT='{}'", out.display()),
    ] {
        assert!(script.contains(needle), "missing `{needle}` in:\n{script}");
    }
    let sp = d.join("job.sh");
    std::fs::write(&sp, &script).unwrap();
    let o = Command::new("bash").arg("-n").arg(&sp).output().unwrap();
    ok(&o);
    // Run the array by hand: each task, then one task again (nothing left to do).
    for task in ["0", "1", "2", "1"] {
        let o = Command::new("bash")
            .arg(&sp)
            .env("SLURM_ARRAY_TASK_ID", task)
            .env_remove("SLURM_ARRAY_TASK_COUNT")
            .output()
            .unwrap();
        ok(&o);
    }
    assert_eq!(run_dirs(&out).len(), 6);
    ok(&merge(&[&out], &[]));
    let all = d.join("all");
    ok(&sweep(&p, &all, &[]));
    ok(&merge(&[&all], &[]));
    assert_eq!(
        std::fs::read_to_string(out.join("runs.csv")).unwrap(),
        std::fs::read_to_string(all.join("runs.csv")).unwrap()
    );
    // The example sweep is valid (24 runs).
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sweep-linear2.toml");
    let o = bin()
        .arg("slurm")
        .arg(&example)
        .arg("--out")
        .arg(d.join("ex"))
        .output()
        .unwrap();
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("#SBATCH --array=0-23\n"));
    // Bad values: exit 2, no script.
    for (args, what) in [
        (vec!["--tasks", "0"], "--tasks"),
        (vec!["--tasks", "7"], "6 runs"),
        (vec!["--time", "soon"], "--time"),
        (vec!["--partition", "a b"], "--partition"),
    ] {
        let o = bin()
            .arg("slurm")
            .arg(&p)
            .arg("--out")
            .arg(&out)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty());
        assert!(String::from_utf8_lossy(&o.stderr).contains(what), "{args:?}");
    }
}

#[test]
fn diverging_runs_are_recorded_and_the_sweep_goes_on() {
    let d = tmp("diverge");
    let p = write_spec(
        &d,
        "s.toml",
        &spec(2000, 1, "\"train.lr\" = [0.01, 5.0]\nseed = [0, 1]"),
    );
    let out = d.join("out");
    let o = bin()
        .arg("sweep")
        .arg(&p)
        .arg("--out")
        .arg(&out)
        .args(["--jobs", "2"])
        .output()
        .unwrap();
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("run-0002 (train.lr = 5.0, seed = 0): diverged"), "{err}");
    assert!(err.contains("2 ok, 2 diverged, 0 failed"), "{err}");
    for (id, status) in [
        ("run-0000", "ok"),
        ("run-0001", "ok"),
        ("run-0002", "diverged"),
        ("run-0003", "diverged"),
    ] {
        let st = json(&out.join("runs").join(id).join("status.json"));
        assert_eq!(st["status"], status, "{id}");
        if status == "diverged" {
            assert!(st["error"].as_str().unwrap().contains("diverged at step"), "{st}");
            assert!(!out.join("runs").join(id).join("final.safetensors").exists());
            assert_eq!(
                json(&out.join("runs").join(id).join("summary.json"))["status"],
                "diverged"
            );
        } else {
            assert!(st["error"].is_null());
        }
    }
    ok(&merge(&[&out], &[]));
    let t = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let row = t.lines().nth(3).unwrap();
    assert!(
        row.starts_with("run-0002,5.0,0,diverged,") && row.contains("diverged at step"),
        "{row}"
    );
    // Recorded failures are results: kept on resume, rerun with --retry-failed.
    let sp = out.join("runs/run-0003/status.json");
    std::fs::write(&sp, r#"{"status": "diverged", "error": "marker", "seconds": 0}"#).unwrap();
    ok(&sweep(&p, &out, &[]));
    assert_eq!(json(&sp)["error"], "marker");
    ok(&sweep(&p, &out, &["--retry-failed"]));
    let st = json(&sp);
    assert_eq!(st["status"], "diverged");
    assert!(st["error"].as_str().unwrap().contains("diverged at step"));
}

#[test]
fn bad_sweep_keys_exit_2_name_the_key_and_run_nothing() {
    let d = tmp("badkeys");
    let cases = [
        ("\"train.learning_rate\" = [0.1, 0.2]", "train.learning_rate"),
        ("\"modle.kind\" = [\"mlp\"]", "modle"),
        ("\"train.steps\" = [100, \"many\"]", "train.steps"),
        ("\"model.widths\" = [[2, 3, 2], [2, 0, 2]]", "model.widths"),
        ("\"data.x_cov.phi\" = [0.5, 3.0]", "data.x_cov.phi"),
        ("\"train.lr\" = 0.1", "train.lr"),
        ("\"model.kind.x\" = [1]", "model.kind"),
        ("\"train.batch_size\" = [1, 0]", "train.batch_size"),
        ("", "[sweep]"),
    ];
    for (i, (sweep_table, key)) in cases.iter().enumerate() {
        let mut text = spec(100, 50, sweep_table);
        if sweep_table.is_empty() {
            text = text.replace("[sweep]", "");
        }
        let p = write_spec(&d, &format!("s{i}.toml"), &text);
        let out = d.join(format!("out{i}"));
        let o = sweep(&p, &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        assert!(err.contains(key), "case {i}: message does not name `{key}`: {err}");
        assert!(!out.exists(), "case {i}: the output directory was created");
        let o = bin().arg("slurm").arg(&p).arg("--out").arg(&out).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "slurm, case {i}");
        assert!(o.stdout.is_empty());
    }
}
