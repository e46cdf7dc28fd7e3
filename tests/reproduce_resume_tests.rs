//! `nequil reproduce --full` resumes: finished runs are recorded in `<out>/<experiment>/runs/`, a
//! second invocation loads them (and says so) and writes the same logs, figure and checks byte
//! for byte; `--fresh` runs everything again; a run killed midway continues from its records to
//! the same outputs as an uninterrupted run; the quick tier records nothing.

mod common;

use common::{bin, scratch};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn reproduce(out: &Path, name: &str, extra: &[&str]) -> Output {
    let o = bin()
        .args(["reproduce", name, "--jobs", "2", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The records in a runs directory (the `.json` files; a temporary file of an interrupted write
/// is hidden and ends in `.tmp`).
fn records(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| {
            let n = e.as_ref().unwrap().file_name().to_string_lossy().into_owned();
            n.ends_with(".json") && !n.starts_with('.')
        })
        .count()
    })
}

/// The experiment's outputs that must not change: every log, the figure, and the summary without
/// its wall time.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".csv") || n == "figure.json" || n == "figure.svg"
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    let mut summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    summary.as_object_mut().unwrap().remove("seconds");
    files.push(("summary.json".into(), serde_json::to_vec(&summary).unwrap()));
    files.sort();
    files
}

fn assert_same_outputs(a: &[(String, Vec<u8>)], b: &[(String, Vec<u8>)]) {
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(
        a.len() > 3,
        "logs, figure and summary: {:?}",
        a.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(b) {
        assert!(x == y, "{name} differs");
    }
}

#[test]
fn a_second_full_run_resumes_every_run_and_fresh_reruns() {
    const NAME: &str = "law-of-balance";
    let d = scratch("resume", "full");
    let out = d.join("out");
    let first = reproduce(&out, NAME, &["--full"]);
    assert!(!stderr(&first).contains("resumed"), "{}", stderr(&first));
    let runs = out.join(NAME).join("runs");
    let n = records(&runs);
    assert!(n > 1, "records in {}", runs.display());
    let kept = outputs(&out.join(NAME));

    let second = reproduce(&out, NAME, &["--full"]);
    let want = format!("{NAME}: resumed {n} of {n} runs from {}", runs.display());
    assert!(stderr(&second).contains(&want), "{}", stderr(&second));
    assert_same_outputs(&kept, &outputs(&out.join(NAME)));

    let fresh = reproduce(&out, NAME, &["--full", "--fresh"]);
    assert!(!stderr(&fresh).contains("resumed"), "{}", stderr(&fresh));
    assert_eq!(records(&runs), n, "--fresh records its runs again");
    assert_same_outputs(&kept, &outputs(&out.join(NAME)));

    // The quick tier neither records nor resumes.
    let quick = d.join("quick");
    let o = reproduce(&quick, NAME, &[]);
    assert!(!stderr(&o).contains("resumed"));
    assert!(!quick.join(NAME).join("runs").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_killed_full_run_continues_to_the_same_outputs() {
    const NAME: &str = "fig8-convergence";
    let d = scratch("resume", "kill");
    let whole = d.join("whole");
    reproduce(&whole, NAME, &["--full", "--quiet"]);
    let n = records(&whole.join(NAME).join("runs"));

    // Killed once its first record is on disk.
    let out = d.join("killed");
    let runs = out.join(NAME).join("runs");
    let mut child = bin()
        .args(["reproduce", NAME, "--full", "--quiet", "--jobs", "2", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while records(&runs) == 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "no record appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before writing a record"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let k = records(&runs);
    eprintln!("killed with {k} of {n} runs recorded");
    assert!(k >= 1 && k <= n, "{k} of {n} records after the kill");

    let o = reproduce(&out, NAME, &["--full"]);
    let want = format!("{NAME}: resumed {k} of {n} runs");
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    assert_eq!(records(&runs), n);
    assert_same_outputs(&outputs(&whole.join(NAME)), &outputs(&out.join(NAME)));
    std::fs::remove_dir_all(&d).unwrap();
}
