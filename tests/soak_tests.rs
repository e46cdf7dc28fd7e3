//! A bounded soak test: a sweep killed with SIGKILL at random moments and restarted in a loop
//! until it is done ends with every run present once and identical, byte for byte, to the same
//! sweep run without interruption.
//!
//! Each attempt waits for an observable state of the sweep (the `started` and `ok` lines it
//! prints for every run when its stderr is not a terminal: a run's lock is held, or its
//! `status.json` is on disk), then for a random delay, then kills it. The moments are drawn from
//! `NEQUIL_SOAK_SEED` (default: from the clock; printed); `NEQUIL_SOAK_SECONDS` bounds the killing
//! (default 60; after it, the sweep is let finish). Between attempts, every run recorded finished
//! must already be complete and identical to the reference: nothing is ever half-written.

use nequil::core::rng::Rng;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

mod common;
use common::bin;

/// 16 runs of a few hundred milliseconds each (2 at a time).
const SWEEP: &str = r#"seed = 0
[model]
kind = "linear"
widths = [3, 5, 3]
[data]
x_cov = { phi = 0.5 }
noise_cov = { scalar = 0.5 }
[train]
lr = 0.01
steps = 400000
[probes]
every = 100000
eval_samples = 128
[sweep]
"train.lr" = [0.01, 0.02]
"train.batch_size" = [1, 2]
seed = [0, 1, 2, 3]
"#;

/// The files of a finished run that are results (status.json holds a wall-clock time).
const RESULT_FILES: [&str; 5] = [
    "params.json",
    "spec.toml",
    "metrics.csv",
    "final.safetensors",
    "summary.json",
];

fn ids() -> Vec<String> {
    (0..16).map(|i| format!("run-{i:04}")).collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Lines of a child's stderr as they come.
fn lines(child: &mut std::process::Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every run with a status.json must be complete and identical to the reference.
fn finished_runs_are_complete(out: &Path, reference: &Path) -> usize {
    let mut n = 0;
    for id in ids() {
        let dir = out.join("runs").join(&id);
        if !dir.join("status.json").exists() {
            continue;
        }
        n += 1;
        for f in RESULT_FILES {
            let a = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{id}/{f} of a finished run: {e}"));
            let b = std::fs::read(reference.join("runs").join(&id).join(f)).unwrap();
            assert!(a == b, "{id}/{f} differs from the uninterrupted sweep");
        }
    }
    n
}

#[test]
fn a_sweep_killed_at_random_moments_ends_identical_to_an_uninterrupted_one() {
    let seed = std::env::var("NEQUIL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    let budget: f64 = std::env::var("NEQUIL_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60.0);
    println!("soak: seed {seed} (NEQUIL_SOAK_SEED), killing for up to {budget} s (NEQUIL_SOAK_SECONDS)");
    let d: PathBuf = std::env::temp_dir().join(format!("nequil-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let spec = d.join("sweep.toml");
    std::fs::write(&spec, SWEEP).unwrap();
    let reference = d.join("reference");
    let t = Instant::now();
    let o = bin()
        .arg("sweep")
        .arg(&spec)
        .arg("--out")
        .arg(&reference)
        .args(["--jobs", "2", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_time = t.elapsed().as_secs_f64() / 8.0; // 16 runs, 2 at a time
    println!("soak: the uninterrupted sweep took {:.1} s", t.elapsed().as_secs_f64());

    let mut r = Rng::new(seed);
    let start = Instant::now();
    let (mut kills, mut attempts, mut rounds) = (0, 0, 0);
    // Rounds of the whole sweep, each killed until done, for as long as the budget lasts.
    while rounds == 0 || start.elapsed().as_secs_f64() < budget {
        rounds += 1;
        let out = d.join(format!("out-{rounds}"));
        let mut finished_at_kills = vec![];
        loop {
            attempts += 1;
            assert!(attempts < 5000, "the sweep never finished");
            let mut child = bin()
                .arg("sweep")
                .arg(&spec)
                .arg("--out")
                .arg(&out)
                .args(["--jobs", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let rx = lines(&mut child);
            let killing = start.elapsed().as_secs_f64() < budget;
            if killing {
                // The observable state to wait for: the k-th run event of this attempt (`started`
                // or `ok`), or none at all (a kill while the sweep starts up), then a random
                // delay of up to one run's time.
                let k = r.below(6);
                let mut seen = 0;
                let mut ended = false;
                while seen < k {
                    match rx.recv_timeout(Duration::from_secs(120)) {
                        Ok(l) if l.ends_with(": started") || l.contains(": ok in ") => seen += 1,
                        Ok(_) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            ended = true;
                            break;
                        }
                        Err(RecvTimeoutError::Timeout) => panic!("no progress in 120 s"),
                    }
                }
                if !ended {
                    std::thread::sleep(Duration::from_secs_f64(r.uniform() * run_time));
                    if child.try_wait().unwrap().is_none() {
                        child.kill().unwrap(); // SIGKILL
                        kills += 1;
                    }
                }
            }
            let status = child.wait().unwrap();
            let done = finished_runs_are_complete(&out, &reference);
            if status.success() {
                assert_eq!(done, 16, "the sweep ended with every run finished");
                break;
            }
            assert!(
                killing && status.code().is_none(),
                "a sweep that was not killed failed: {status}"
            );
            finished_at_kills.push(done);
        }
        println!("soak: round {rounds}: finished runs at each kill {finished_at_kills:?}");
        // Every run present once, identical to the uninterrupted sweep; no lock, no temporary file.
        assert_eq!(
            entries(&out.join("runs")),
            ids(),
            "every run present exactly once, no lock left"
        );
        for id in ids() {
            let dir = out.join("runs").join(&id);
            let mut names = entries(&dir);
            names.retain(|n| n != "status.json");
            let mut expected: Vec<String> = RESULT_FILES.iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(names, expected, "{id}: only its files, no temporary one");
            for f in RESULT_FILES {
                assert_eq!(
                    std::fs::read(dir.join(f)).unwrap(),
                    std::fs::read(reference.join("runs").join(&id).join(f)).unwrap(),
                    "{id}/{f}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&out);
    }
    println!(
        "soak: {kills} kills in {attempts} attempts, {rounds} rounds, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        kills >= 3,
        "too few kills to test anything ({kills}); the runs are too short"
    );
    let _ = std::fs::remove_dir_all(&d);
}
