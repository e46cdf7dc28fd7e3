//! Every file type of the paper's reproduction round-trips (written, read back, equal), and
//! reading is strict: a missing, unknown or malformed field is an error naming the file and the
//! field.

use nequil::lab::files::{read_json, write_json};
use nequil_paper::files::{Check, ExperimentSummary, Figure, Panel, ReportEntry, Role, Series, Style};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nequil-paper-files-{}-{name}", std::process::id()));
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

fn check(claim: &str, pass: bool) -> Check {
    Check {
        claim: claim.into(),
        theory: "0.25".into(),
        measured: "0.2511".into(),
        tolerance: "± 0.006".into(),
        derivation: "3 standard errors over 6 seeds".into(),
        pass,
    }
}

fn figure() -> Figure {
    Figure {
        title: "t".into(),
        columns: 2,
        panels: vec![
            Panel::xy(
                "p",
                "x",
                "y",
                vec![Series::new(
                    "s",
                    Role::Other(3),
                    Style::Dashed,
                    vec![0.0, 1.0, 2.0],
                    vec![1.5, f64::NEG_INFINITY, 1e-310],
                )],
                true,
                false,
            ),
            Panel::heatmap("h", 1, 2, vec![0.25, -3.0], true),
        ],
    }
}

#[test]
fn every_file_type_round_trips() {
    let d = tmp("round-trip");
    round_trip(
        &d,
        "experiment.json",
        &ExperimentSummary {
            name: "fig1".into(),
            title: "Fig. 1".into(),
            claim: "c".into(),
            passed: 1,
            failed: 1,
            checks: vec![check("a", true), check("b", false)],
            settings: vec![("η".into(), "0.05".into())],
            notes: vec!["n".into()],
            seconds: 1.5,
        },
    );
    round_trip(&d, "figure.json", &figure());
    round_trip(
        &d,
        "entry.json",
        &ReportEntry {
            name: "fig1".into(),
            group: "The paper".into(),
            title: "Fig. 1".into(),
            claim: "c".into(),
            figure_png: "fig1/figure.png".into(),
            figure_svg: "fig1/figure.svg".into(),
            checks: vec![check("a", true)],
            settings: vec![("k".into(), "v".into())],
            notes: vec![],
            seconds: 2.0,
        },
    );
    round_trip(&d, "check.json", &check("c", true));
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
    let ex = ExperimentSummary {
        name: "x".into(),
        title: "x".into(),
        claim: "x".into(),
        passed: 1,
        failed: 0,
        checks: vec![check("a", true)],
        settings: vec![],
        notes: vec![],
        seconds: 1.0,
    };
    let e = without(&d, "experiment.json", &ex, "/checks/0", "pass");
    assert!(e.contains("checks[0]") && e.contains("`pass`"), "{e}");
    let e = without(&d, "figure.json", &figure(), "/panels/0", "x_label");
    assert!(e.contains("panels[0]") && e.contains("`x_label`"), "{e}");
}

#[test]
fn an_experiment_summary_must_count_its_checks() {
    let d = tmp("counts");
    // An experiment summary whose counts disagree with its checks.
    let ex = d.join("experiment.json");
    let mut s = ExperimentSummary {
        name: "x".into(),
        title: "x".into(),
        claim: "x".into(),
        passed: 1,
        failed: 0,
        checks: vec![check("a", false)],
        settings: vec![],
        notes: vec![],
        seconds: 1.0,
    };
    write_json(&ex, &s).unwrap();
    let e = ExperimentSummary::read(&ex).unwrap_err().to_string();
    assert!(e.contains("passed"), "{e}");
    s.passed = 0;
    s.failed = 1;
    write_json(&ex, &s).unwrap();
    assert_eq!(ExperimentSummary::read(&ex).unwrap(), s);
}
