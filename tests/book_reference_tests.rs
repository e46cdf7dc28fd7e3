//! The book documents the whole command line and every JSON file the binary writes.
//!
//! * Flags: the binary is asked (`nequil --help` for its commands, `nequil CMD --help` for each
//!   command's flags), not read; every long flag must be a row of its command's table in
//!   `docs/src/commands.md` (section `{#CMD}`), with its short form if it has one, and every row
//!   must be a flag of `--help`.
//! * JSON: each file is produced by a small run of the command that writes it, and every field
//!   name in it (recursively, through objects and arrays of objects) must appear, backticked, in
//!   the section of the book that documents that file. Maps whose keys are data (the log's last
//!   row `final`, a sweep run's swept values `params`) are checked as fields, not their keys.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn page(rel: &str) -> String {
    let p = root().join("docs/src").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The text between the heading with anchor `{#anchor}` and the next heading of the same or a
/// higher level.
fn section(text: &str, anchor: &str, page: &str) -> String {
    let start = text
        .find(&format!("{{#{anchor}}}"))
        .unwrap_or_else(|| panic!("no section {{#{anchor}}} in {page}"));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let level = text[line_start..].chars().take_while(|&c| c == '#').count();
    let rest = &text[start..];
    let mut in_fence = false;
    let mut end = rest.len();
    let mut pos = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if pos > 0 && !in_fence && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            end = pos;
            break;
        }
        pos += line.len();
    }
    rest[..end].to_string()
}

fn help(args: &[&str]) -> String {
    let out = common::bin().args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "nequil {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The visible commands of `nequil --help` (the "Commands:" list, without `help`).
fn commands() -> Vec<String> {
    let h = help(&[]);
    let list = h
        .split("Commands:")
        .nth(1)
        .expect("a Commands: list")
        .split("\n\n")
        .next()
        .unwrap();
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The flags of `--help` text, long and short, without `--help`, `-h` and `--version`.
fn flags_of_help(h: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in h.lines() {
        let t = line.trim_start();
        // An option line: `-o, --out <OUT>` or `--full`.
        let t = match t.strip_prefix('-') {
            Some(r) if !r.starts_with('-') => {
                let short: String = r.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
                if short.len() == 1 && short != "h" && r[1..].starts_with(", --") {
                    out.insert(format!("-{short}"));
                }
                r.split_once(", ").map_or("", |(_, b)| b)
            }
            _ => t,
        };
        if let Some(r) = t.strip_prefix("--") {
            let name: String = r
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() && name != "help" && name != "version" {
                out.insert(format!("--{name}"));
            }
        }
    }
    out
}

/// The flags documented in the first column of the tables of `text`: every backticked `--flag`
/// and short `-f`.
fn flags_of_table(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap_or("");
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                let b = part.as_bytes();
                if b.len() == 2 && b[0] == b'-' && b[1].is_ascii_alphabetic() {
                    out.insert(part.to_string());
                }
                if let Some(r) = part.strip_prefix("--") {
                    let name: String = r
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect();
                    out.insert(format!("--{name}"));
                }
            }
        }
    }
    out
}

#[test]
fn every_flag_of_every_command_is_in_the_book() {
    let book = page("commands.md");
    let cmds = commands();
    for expected in [
        "run",
        "reproduce",
        "list",
        "sweep",
        "slurm",
        "merge",
        "equilibrium",
        "rebalance",
    ] {
        assert!(
            cmds.iter().any(|c| c == expected),
            "`nequil --help` lists no `{expected}`: {cmds:?}"
        );
    }
    let mut problems = Vec::new();
    for cmd in &cmds {
        let have = flags_of_help(&help(&[cmd]));
        let doc = flags_of_table(&section(&book, cmd, "commands.md"));
        for f in have.difference(&doc) {
            problems.push(format!(
                "`nequil {cmd} {f}` is not documented in docs/src/commands.md#{cmd}"
            ));
        }
        for f in doc.difference(&have) {
            problems.push(format!(
                "docs/src/commands.md#{cmd} documents `{f}`, which `nequil {cmd} --help` does not have"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_flag_readers_see_what_they_should() {
    let h = "Options:\n  -o, --out <OUT>  Output\n      --retry-failed  Rerun\n  -h, --help  Print help\n";
    let f: Vec<String> = flags_of_help(h).into_iter().collect();
    assert_eq!(f, ["--out", "--retry-failed", "-o"]);
    let t = "| flag | meaning |\n|---|---|\n| `--out DIR`, `-o` | x `--not-this` |\n| `--x-key KEY` | y |\n";
    let f: Vec<String> = flags_of_table(t).into_iter().collect();
    assert_eq!(f, ["--out", "--x-key", "-o"]);
}

// ---------------------------------------------------------------------------------------------
// JSON files.

/// Every field name of `v`, recursively; the children of the fields named in `data_keys` (maps
/// whose keys are data) are not descended into.
fn fields(v: &serde_json::Value, data_keys: &[&str], out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.insert(k.clone());
                if !data_keys.contains(&k.as_str()) {
                    fields(x, data_keys, out);
                }
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                fields(x, data_keys, out);
            }
        }
        _ => {}
    }
}

fn read_json(p: &Path) -> serde_json::Value {
    let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every field of `json` appears backticked in section `{#anchor}` of `page_name`.
fn assert_documented(what: &str, json: &serde_json::Value, data_keys: &[&str], page_name: &str, anchor: &str) -> usize {
    let text = section(&page(page_name), anchor, page_name);
    let mut names = BTreeSet::new();
    fields(json, data_keys, &mut names);
    assert!(!names.is_empty(), "{what}: no fields");
    let missing: Vec<&String> = names.iter().filter(|n| !text.contains(&format!("`{n}`"))).collect();
    assert!(
        missing.is_empty(),
        "{what}: the fields {missing:?} are not documented in docs/src/{page_name}#{anchor}"
    );
    names.len()
}

fn run_ok(args: &[&str], dir: &Path) -> String {
    let out = common::bin().args(args).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "nequil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A little `.npy` file of f64 values, row-major.
fn write_npy(path: &Path, shape: &[usize], data: &[f64]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    for v in data {
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// A small two-layer linear net: neuron rescalings, a layer-pair rescaling and a double-rotation
/// family, so that every kind of row and field of the equilibrium report appears.
const SPEC: &str = r#"seed = 3
[model]
kind = "linear"
widths = [3, 4, 3]
[data]
x_cov = { phi = 0.5 }
noise_cov = { scalar = 0.1 }
[train]
batch_size = 4
lr = 0.01
steps = 200
[probes]
log_points = 4
eval_samples = 64
"#;

#[test]
fn every_field_of_run_and_sweep_outputs_is_in_the_book() {
    let d = common::scratch("book-reference", "run");
    std::fs::write(d.join("spec.toml"), SPEC).unwrap();
    run_ok(&["run", "spec.toml", "--out", "r", "--quiet"], &d);
    // A run's summary.json; a diverged run's adds the fields of `error`.
    assert_documented(
        "run: summary.json",
        &read_json(&d.join("r/summary.json")),
        &["final"],
        "spec-reference.md",
        "outputs",
    );
    let diverging = SPEC.replace("lr = 0.01", "lr = 1e6");
    std::fs::write(d.join("div.toml"), diverging).unwrap();
    let out = common::bin()
        .args(["run", "div.toml", "--out", "dv", "--quiet"])
        .current_dir(&d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the spec diverges");
    let div = read_json(&d.join("dv/summary.json"));
    assert!(div["error"].is_object(), "a divergence's error: {div}");
    assert_documented(
        "run: summary.json of a diverged run",
        &div,
        &["final"],
        "spec-reference.md",
        "outputs",
    );

    // A sweep: each run's params.json and status.json (the run files are those of `run`).
    let sweep = format!("{SPEC}[sweep]\nseed = [0, 1]\n");
    std::fs::write(d.join("sweep.toml"), sweep).unwrap();
    run_ok(&["sweep", "sweep.toml", "--out", "sw", "--quiet"], &d);
    for f in ["params.json", "status.json"] {
        assert_documented(
            &format!("sweep: {f}"),
            &read_json(&d.join("sw/runs/run-0000").join(f)),
            &["params"],
            "sweeps.md",
            "layout",
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn every_field_of_equilibrium_and_rebalance_json_is_in_the_book() {
    let d = common::scratch("book-reference", "equilibrium");
    std::fs::write(d.join("spec.toml"), SPEC).unwrap();
    run_ok(&["run", "spec.toml", "--out", "r", "--quiet"], &d);
    // Data from a fixed deterministic pattern: 32 samples of 3 inputs, 3 targets.
    let n = 32;
    let x: Vec<f64> = (0..n * 3).map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0).collect();
    let y: Vec<f64> = (0..n * 3).map(|i| ((i * 53 % 97) as f64 / 48.0) - 1.0).collect();
    write_npy(&d.join("x.npy"), &[n, 3], &x);
    write_npy(&d.join("y.npy"), &[n, 3], &y);
    let eq = run_ok(
        &[
            "equilibrium",
            "--model",
            "spec.toml",
            "--weights",
            "r/final.safetensors",
            "--x",
            "x.npy",
            "--y",
            "y.npy",
            "--lr",
            "0.05",
            "--batch-size",
            "4",
            "--json",
        ],
        &d,
    );
    let eq: serde_json::Value = serde_json::from_str(&eq).unwrap();
    for part in ["rows", "families"] {
        assert!(
            eq[part].as_array().is_some_and(|r| !r.is_empty()),
            "the report has {part}: {eq}"
        );
    }
    assert_documented("equilibrium --json", &eq, &[], "pytorch.md", "json");
    let rb = run_ok(&["rebalance", "spec.toml", "--out", "rb.safetensors", "--json"], &d);
    let rb: serde_json::Value = serde_json::from_str(&rb).unwrap();
    assert_documented("rebalance --json", &rb, &[], "rebalance.md", "json");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn every_field_of_reproduce_json_is_in_the_book() {
    // law-of-balance: the quickest experiment (about a second).
    let d = common::scratch("book-reference", "reproduce");
    run_ok(&["reproduce", "law-of-balance", "--out", "out", "--quiet"], &d);
    let e = d.join("out/law-of-balance");
    assert_documented(
        "reproduce: summary.json",
        &read_json(&e.join("summary.json")),
        &[],
        "commands.md",
        "reproduce-files",
    );
    assert_documented(
        "reproduce: figure.json",
        &read_json(&e.join("figure.json")),
        &[],
        "commands.md",
        "reproduce-files",
    );
    std::fs::remove_dir_all(&d).unwrap();
}
