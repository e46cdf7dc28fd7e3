//! End-to-end tests of the run lock of `nequil sweep` (`OUT/runs/<id>.lock`): two copies of one
//! shard in one directory share the work and never run a run twice; a run locked by a live
//! process is skipped (exit status 0) and left unfinished; a lock left by a SIGKILLed process does
//! not block a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::bin;

fn tmp(name: &str) -> PathBuf {
    common::scratch("lock", name)
}

/// A sweep of 8 runs of a tiny linear net, `steps` SGD steps each.
fn write_spec(dir: &Path, steps: u64) -> PathBuf {
    let p = dir.join("sweep.in.toml");
    std::fs::write(
        &p,
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
every = {}
eval_samples = 256
[sweep]
"train.lr" = [0.01, 0.02]
seed = [0, 1, 2, 3]
"#,
            steps / 4
        ),
    )
    .unwrap();
    p
}

fn ids() -> Vec<String> {
    (0..8).map(|i| format!("run-{i:04}")).collect()
}

fn sweep_cmd(spec: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.arg("sweep").arg(spec).arg("--out").arg(out).args(extra);
    c
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "exit {:?}: {err}", o.status.code());
    err
}

/// Run directories under OUT/runs, sorted.
fn run_dirs(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("runs"))
        .map(|rd| {
            rd.map(|e| e.unwrap())
                .filter(|e| e.file_type().unwrap().is_dir())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Lock files under OUT/runs.
fn lock_files(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("runs"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs started and not finished: params.json without status.json.
fn in_progress(out: &Path) -> Vec<String> {
    run_dirs(out)
        .into_iter()
        .filter(|id| {
            let r = out.join("runs").join(id);
            r.join("params.json").exists() && !r.join("status.json").exists()
        })
        .collect()
}

/// Every result file of every run is the same in both directories, and status ok.
fn same_results(a: &Path, b: &Path) {
    for id in ids() {
        for f in [
            "params.json",
            "spec.toml",
            "metrics.csv",
            "final.safetensors",
            "summary.json",
        ] {
            let x = std::fs::read(a.join("runs").join(&id).join(f)).unwrap();
            let y = std::fs::read(b.join("runs").join(&id).join(f)).unwrap();
            assert!(x == y, "{id}/{f} differs between {} and {}", a.display(), b.display());
        }
        let st = std::fs::read_to_string(b.join("runs").join(&id).join("status.json")).unwrap();
        assert!(st.contains("\"ok\""), "{id}: {st}");
    }
}

/// The counts of the final line of `nequil sweep`: (finished before, now, held).
fn summary(stderr: &str) -> (usize, usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.contains(" now") && l.contains("finished before"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    let num_before = |key: &str| -> usize {
        match line.find(key) {
            Some(at) => {
                let head = line[..at].trim_end();
                let digits: String = head
                    .chars()
                    .rev()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                digits.parse().unwrap_or_else(|_| panic!("`{key}` in {line}"))
            }
            None => 0,
        }
    };
    (
        num_before(" finished before"),
        num_before(" now"),
        num_before(" held by another process"),
    )
}

/// Polls `cond` every 2 ms while `child` runs; panics when the child ends first or after 60 s.
fn wait_until(child: &mut Child, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before {what}; make the runs longer"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn two_copies_of_one_shard_share_the_runs_and_never_run_one_twice() {
    let d = tmp("two");
    // 8 runs of about 0.3–0.5 s each.
    let p = write_spec(&d, 1_500_000);
    let reference = d.join("reference");
    ok(&sweep_cmd(&p, &reference, &["--jobs", "2", "--quiet"]).output().unwrap());
    assert_eq!(run_dirs(&reference), ids());
    assert!(lock_files(&reference).is_empty(), "{:?}", lock_files(&reference));

    let out = d.join("out");
    let spawn = || {
        sweep_cmd(&p, &out, &["--jobs", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Observe every incarnation of every run directory: a run executed twice would be deleted and
    // created again (a new params.json file).
    let mut seen: BTreeMap<String, BTreeSet<(u64, u64)>> = BTreeMap::new();
    let observe = |seen: &mut BTreeMap<String, BTreeSet<(u64, u64)>>| {
        for id in run_dirs(&out) {
            if let Ok(m) = std::fs::metadata(out.join("runs").join(&id).join("params.json")) {
                seen.entry(id).or_default().insert((m.dev(), m.ino()));
            }
        }
    };
    let mut a = spawn();
    // The second copy starts while the first is in the middle of a run.
    wait_until(&mut a, "a run was in progress", || {
        observe(&mut seen);
        !in_progress(&out).is_empty()
    });
    let mut b = spawn();
    while a.try_wait().unwrap().is_none() || b.try_wait().unwrap().is_none() {
        observe(&mut seen);
        std::thread::sleep(Duration::from_millis(2));
    }
    let (ea, eb) = (ok(&a.wait_with_output().unwrap()), ok(&b.wait_with_output().unwrap()));
    let (sa, sb) = (summary(&ea), summary(&eb));
    assert_eq!(
        sa.1 + sb.1,
        8,
        "every run executed exactly once: {sa:?} {sb:?}\n{ea}\n{eb}"
    );
    assert!(sb.1 >= 1, "the second copy ran none of the runs: {sb:?}\n{eb}");
    assert!(
        sa.2 + sb.2 >= 1,
        "the copies never met at a locked run: {sa:?} {sb:?}\n{ea}\n{eb}"
    );
    assert!(
        eb.contains("another process is running it") || ea.contains("another process is running it"),
        "{ea}\n{eb}"
    );
    for (id, incarnations) in &seen {
        assert_eq!(incarnations.len(), 1, "{id} was started {} times", incarnations.len());
    }
    assert_eq!(run_dirs(&out), ids(), "every run present exactly once");
    assert!(lock_files(&out).is_empty(), "locks left: {:?}", lock_files(&out));
    same_results(&reference, &out);
}

#[test]
fn a_run_held_by_a_live_process_is_skipped_and_left_unfinished() {
    let d = tmp("held");
    let p = write_spec(&d, 4000);
    let out = d.join("out");
    std::fs::create_dir_all(out.join("runs")).unwrap();
    std::fs::copy(&p, out.join("sweep.toml")).unwrap();
    // This test process holds run-0002's lock, as another sweep would while running it.
    let lock = std::fs::File::create(out.join("runs/run-0002.lock")).unwrap();
    lock.lock().unwrap();
    let err = ok(&sweep_cmd(&p, &out, &["--jobs", "2"]).output().unwrap());
    assert_eq!(summary(&err), (0, 7, 1), "{err}");
    assert!(err.contains("run-0002: another process is running it"), "{err}");
    assert!(!out.join("runs/run-0002").exists(), "a held run must not be touched");
    assert!(
        out.join("runs/run-0002.lock").exists(),
        "another process's lock must stay"
    );
    // merge sees it as missing until its holder is done (and skips the lock file).
    let o = bin().arg("merge").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 missing"));
    let o = bin().arg("merge").arg(&out).arg("--allow-incomplete").output().unwrap();
    ok(&o);
    let table = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert!(
        table.lines().nth(3).unwrap().starts_with("run-0002,0.01,2,missing,"),
        "{table}"
    );
    // Held while it has started: an unfinished directory of a live holder is not deleted either.
    std::fs::create_dir_all(out.join("runs/run-0002")).unwrap();
    std::fs::write(out.join("runs/run-0002/params.json"), "{}").unwrap();
    let err = ok(&sweep_cmd(&p, &out, &[]).output().unwrap());
    assert_eq!(summary(&err), (7, 0, 1), "{err}");
    assert!(out.join("runs/run-0002/params.json").exists());
    // Released: the next start runs it.
    drop(lock);
    let err = ok(&sweep_cmd(&p, &out, &[]).output().unwrap());
    assert_eq!(summary(&err), (7, 1, 0), "{err}");
    assert_eq!(run_dirs(&out), ids());
    assert!(lock_files(&out).is_empty(), "{:?}", lock_files(&out));
    let reference = d.join("reference");
    ok(&sweep_cmd(&p, &reference, &["--quiet"]).output().unwrap());
    same_results(&reference, &out);
}

#[test]
fn a_lock_left_by_a_killed_process_does_not_block_a_restart() {
    let d = tmp("stale");
    // 8 runs of about 0.3–0.5 s each (one at a time).
    let p = write_spec(&d, 1_500_000);
    let out = d.join("out");
    let mut child = sweep_cmd(&p, &out, &["--jobs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // A run in progress: the sweep prints `run-0003 (…): started` once it holds the run's lock
    // (which names the process by then). Wait for that line, not for time to pass.
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    let victim = std::io::BufRead::lines(err)
        .map(|l| l.unwrap())
        .find(|l| l.ends_with(": started"))
        .and_then(|l| {
            l.strip_prefix("nequil: ")
                .and_then(|r| r.split(' ').next())
                .map(String::from)
        })
        .expect("the sweep ended before a run started");
    let holder = std::fs::read_to_string(out.join("runs").join(format!("{victim}.lock"))).unwrap();
    assert!(holder.starts_with(&format!("{pid}@")), "{holder}");
    child.kill().unwrap(); // SIGKILL: the lock file stays behind, the kernel drops the lock
    child.wait().unwrap();
    assert!(out.join("runs").join(format!("{victim}.lock")).exists());
    assert!(!out.join("runs").join(&victim).join("status.json").exists());
    let finished_before = ids()
        .iter()
        .filter(|id| out.join("runs").join(id).join("status.json").exists())
        .count();
    assert!(finished_before < 8);

    let err = ok(&sweep_cmd(&p, &out, &["--jobs", "2"]).output().unwrap());
    assert_eq!(
        summary(&err),
        (finished_before, 8 - finished_before, 0),
        "the stale lock of {victim} must be taken over:\n{err}"
    );
    assert_eq!(run_dirs(&out), ids());
    assert!(lock_files(&out).is_empty(), "{:?}", lock_files(&out));
    let reference = d.join("reference");
    ok(&sweep_cmd(&p, &reference, &["--jobs", "2", "--quiet"]).output().unwrap());
    same_results(&reference, &out);
}
