//! Every file type of the library round-trips (written, read back, equal), and reading is strict: a missing,
//! unknown or malformed field is an error naming the file and the field.

use nequil::lab::files::{
    log_csv, read_json, write_json, Divergence, ParamBlock, RunError, RunParams, RunState, RunStatus, RunSummary,
};
use nequil::lab::runner::{run_spec, write_run_dir};
use nequil::lab::spec::Spec;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nequil-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(dir: &Path, file: &str, v: &T) {
    let p = dir.join(file);
    write_json(&p, v).unwrap();
    let back: T = read_json(&p).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(&back, v, "{file} did not round-trip");
}

fn summary() -> RunSummary {
    RunSummary {
        status: RunState::Diverged,
        error: Some(RunError::Diverged(Divergence {
            step: 17,
            what: "batch loss is inf".into(),
        })),
        steps_done: 17,
        model: "linear [2, 3, 2]".into(),
        n_params: 12,
        parameters: vec![
            ParamBlock {
                name: "layers.0.weight".into(),
                shape: vec![3, 2],
            },
            ParamBlock {
                name: "layers.1.weight".into(),
                shape: vec![2, 3],
            },
        ],
        eval_samples: 64,
        final_row: vec![
            ("step".into(), 17.0),
            ("t".into(), 0.17),
            ("batch_loss".into(), f64::NAN),
            ("loss".into(), f64::INFINITY),
            ("norm2.layers.0.weight".into(), 0.1 + 0.2),
        ],
        conventions: RunSummary::CONVENTIONS.into(),
    }
}

#[test]
fn every_file_type_round_trips() {
    let d = tmp("round-trip");
    let mut s = summary();
    // NaN ≠ NaN for f64, so RunSummary compares numbers bit for bit.
    round_trip(&d, "summary.json", &s);
    s.status = RunState::Failed;
    s.error = Some(RunError::Failed("numerical failure: x".into()));
    round_trip(&d, "summary-failed.json", &s);
    s.status = RunState::Ok;
    s.error = None;
    s.final_row.clear();
    round_trip(&d, "summary-ok.json", &s);
    round_trip(
        &d,
        "status.json",
        &RunStatus {
            status: RunState::Diverged,
            error: Some("training diverged at step 3: batch loss is NaN".into()),
            seconds: 0.125,
        },
    );
    round_trip(
        &d,
        "params.json",
        &RunParams {
            id: "run-0003".into(),
            index: 3,
            params: vec![
                ("train.lr".into(), serde_json::json!(0.01)),
                ("model.widths".into(), serde_json::json!([2, 3, 2])),
                ("data.target".into(), serde_json::json!("identity")),
            ],
        },
    );
}

#[test]
fn params_keep_their_order() {
    let p = RunParams {
        id: "run-0000".into(),
        index: 0,
        params: vec![("z".into(), serde_json::json!(1)), ("a".into(), serde_json::json!(2))],
    };
    let text = serde_json::to_string(&p).unwrap();
    assert!(text.find("\"z\"").unwrap() < text.find("\"a\"").unwrap(), "{text}");
    let e = nequil::lab::files::parse_json::<RunParams>(r#"{"id": "r", "index": 0, "params": {"a": 1, "a": 2}}"#)
        .unwrap_err();
    assert!(e.contains("params") && e.contains("twice"), "{e}");
}

/// Writes `value` with one field removed (by a JSON pointer to its parent object) and returns
/// the error of reading it back.
fn without<T: Serialize + DeserializeOwned>(dir: &Path, file: &str, value: &T, parent: &str, field: &str) -> String {
    let mut v = serde_json::to_value(value).unwrap();
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(field)
        .unwrap();
    let p = dir.join(file);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    match read_json::<T>(&p) {
        Ok(_) => panic!("{file} without `{field}` was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_field_is_an_error_naming_the_file_and_the_field() {
    let d = tmp("missing");
    let s = summary();
    for field in ["status", "error", "steps_done", "final", "conventions"] {
        let e = without(&d, "summary.json", &s, "", field);
        assert!(
            e.contains("summary.json") && e.contains(&format!("`{field}`")),
            "{field}: {e}"
        );
    }
    let e = without(&d, "summary.json", &s, "/parameters/1", "shape");
    assert!(e.contains("parameters[1]") && e.contains("`shape`"), "{e}");
    let st = RunStatus {
        status: RunState::Ok,
        error: None,
        seconds: 1.0,
    };
    for field in ["error", "seconds"] {
        let e = without(&d, "status.json", &st, "", field);
        assert!(e.contains("status.json") && e.contains(&format!("`{field}`")), "{e}");
    }
}

#[test]
fn unknown_and_malformed_fields_are_errors() {
    let d = tmp("malformed");
    let p = d.join("status.json");
    std::fs::write(&p, r#"{"status": "ok", "error": null, "seconds": 1, "extra": 2}"#).unwrap();
    let e = read_json::<RunStatus>(&p).unwrap_err().to_string();
    assert!(e.contains("status.json") && e.contains("extra"), "{e}");
    std::fs::write(&p, r#"{"status": "fine", "error": null, "seconds": 1}"#).unwrap();
    let e = read_json::<RunStatus>(&p).unwrap_err().to_string();
    assert!(e.contains("status") && e.contains("fine"), "{e}");
    std::fs::write(&p, r#"{"status": "ok", "error": null, "seconds": "soon"}"#).unwrap();
    let e = read_json::<RunStatus>(&p).unwrap_err().to_string();
    assert!(e.contains("seconds"), "{e}");
}

#[test]
fn a_run_directory_reads_back() {
    let d = tmp("run");
    let spec = Spec::from_toml(
        r#"
seed = 3
[model]
kind = "linear"
widths = [2, 3, 2]
[data]
noise_cov = { scalar = 0.5 }
[train]
lr = 0.05
steps = 200
[probes]
every = 50
eval_samples = 32
"#,
    )
    .unwrap();
    let (model, out) = run_spec(&spec, Path::new("."), &mut [], &mut |_, _| {}).unwrap();
    write_run_dir(&d, &spec, &model, &out).unwrap();
    let s: RunSummary = read_json(&d.join("summary.json")).unwrap();
    assert_eq!(s.status, RunState::Ok);
    assert_eq!(s.steps_done, 200);
    let cols: Vec<&str> = s.final_row.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(cols, out.log.columns.iter().map(String::as_str).collect::<Vec<_>>());
    let last = out.log.rows.last().unwrap();
    for ((_, v), w) in s.final_row.iter().zip(last) {
        assert!(v.to_bits() == w.to_bits() || (v.is_nan() && w.is_nan()));
    }
    let csv = std::fs::read_to_string(d.join("metrics.csv")).unwrap();
    assert_eq!(csv, log_csv(&out.log));
}
