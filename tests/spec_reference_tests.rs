//! The spec reference in the book (`docs/src/spec-reference.md`, section "Every key") is complete:
//! every key the parser accepts is documented, and every documented key is accepted.
//!
//! The parser is asked, not read: a spec with an unknown key `zzz_not_a_key` in one table is
//! refused with the list of the keys that table accepts ("unknown field …, expected one of …"),
//! and that list must equal the table's documented keys. The same for the forms of a
//! second-moment matrix (`data.x_cov = { … }`) against the book's table of forms.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const UNKNOWN: &str = "zzz_not_a_key";

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/spec-reference.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text between the heading with anchor `{#from}` and the next heading of the same level.
fn section<'a>(text: &'a str, from: &str) -> &'a str {
    let start = text
        .find(&format!("{{#{from}}}"))
        .unwrap_or_else(|| panic!("no section {{#{from}}} in the spec reference"));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let level = text[line_start..].chars().take_while(|&c| c == '#').count();
    let rest = &text[start..];
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| {
            let hashes = rest[i..].chars().take_while(|&c| c == '#').count();
            hashes > 0 && hashes <= level && rest[i..].chars().nth(hashes) == Some(' ')
        })
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The first backticked word of every table row of `text`.
fn first_column(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect()
}

/// Documented keys directly inside `table` ("" for the top level): `data.x_cov` gives `x_cov`
/// for "data"; `probes.charges` gives `charges` for "probes" and its own keys for
/// "probes.charges".
fn documented(table: &str) -> BTreeSet<String> {
    let text = reference();
    let keys = first_column(section(&text, "keys"));
    let mut out = BTreeSet::new();
    let is_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.".contains(c))
    };
    for key in keys.into_iter().filter(|k| is_key(k)) {
        let (parent, name) = match key.rfind('.') {
            Some(i) => (&key[..i], &key[i + 1..]),
            None => ("", key.as_str()),
        };
        if parent == table {
            out.insert(name.to_string());
        }
        // A key `a.b` means the table `a` exists in its parent too.
        let mut prefix = String::new();
        for part in key.split('.') {
            let parent = prefix.clone();
            prefix = if prefix.is_empty() {
                part.to_string()
            } else {
                format!("{prefix}.{part}")
            };
            if parent == table && prefix != key {
                out.insert(part.to_string());
            }
        }
    }
    out
}

fn tmp(name: &str) -> PathBuf {
    common::scratch("specref", name)
}

/// A valid spec with every table present, `extra` inserted into `table`.
fn spec_with(table: &str, extra: &str) -> String {
    let tables = [
        ("", "seed = 0"),
        ("model", "kind = \"linear\"\nwidths = [2, 3, 2]"),
        ("data", "x_cov = { phi = 0.5 }"),
        ("train", "lr = 0.01\nsteps = 10"),
        ("probes", "log_points = 2"),
        ("probes.charges", ""),
        ("probes.hessian", ""),
        ("probes.sharpness", ""),
        ("probes.equilibrium", ""),
    ];
    let mut out = String::new();
    for (name, body) in tables {
        if !name.is_empty() {
            out.push_str(&format!("[{name}]\n"));
        }
        out.push_str(body);
        out.push('\n');
        if name == table {
            out.push_str(extra);
            out.push('\n');
        }
    }
    out
}

/// What `nequil run` says about a spec (it must refuse it with status 2).
fn refusal(name: &str, spec: &str) -> String {
    let dir = tmp(name);
    let path = dir.join("spec.toml");
    std::fs::write(&path, spec).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nequil"))
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--quiet")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "spec was not refused:\n{spec}\n{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    stderr
}

/// The backticked names after "expected one of" (or "expected `x`") in a serde message.
fn expected(stderr: &str) -> BTreeSet<String> {
    let at = stderr
        .find("expected one of")
        .or_else(|| stderr.find("expected `"))
        .unwrap_or_else(|| panic!("no list of accepted keys in:\n{stderr}"));
    let line = stderr[at..].lines().next().unwrap_or("");
    line.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

#[test]
fn the_spec_reference_documents_exactly_the_keys_the_parser_accepts() {
    // The minimal spec itself is valid, so that each refusal below is about the unknown key.
    let dir = tmp("valid");
    let path = dir.join("spec.toml");
    std::fs::write(&path, spec_with("", "")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nequil"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);

    let mut problems = Vec::new();
    for table in [
        "",
        "model",
        "data",
        "train",
        "probes",
        "probes.charges",
        "probes.hessian",
        "probes.sharpness",
        "probes.equilibrium",
    ] {
        let stderr = refusal(&table.replace('.', "-"), &spec_with(table, &format!("{UNKNOWN} = 1")));
        assert!(
            stderr.contains(UNKNOWN),
            "the refusal does not name the unknown key:\n{stderr}"
        );
        let accepted = expected(&stderr);
        let docs = documented(table);
        let name = if table.is_empty() { "the top level" } else { table };
        for k in accepted.difference(&docs) {
            problems.push(format!(
                "{name}: the parser accepts `{k}`, the spec reference does not document it"
            ));
        }
        for k in docs.difference(&accepted) {
            problems.push(format!(
                "{name}: the spec reference documents `{k}`, the parser refuses it"
            ));
        }
    }

    // The forms of a second-moment matrix.
    let text = reference();
    let forms: BTreeSet<String> = first_column(section(&text, "covariances"))
        .iter()
        .filter_map(|f| f.trim_start_matches("{ ").split([' ', '=']).next().map(str::to_string))
        .collect();
    let spec = spec_with("", "").replace("x_cov = { phi = 0.5 }", &format!("x_cov = {{ {UNKNOWN} = 1 }}"));
    let accepted = expected(&refusal("cov", &spec));
    if accepted != forms {
        problems.push(format!(
            "second-moment forms: the parser accepts {accepted:?}, the spec reference documents {forms:?}"
        ));
    }

    assert!(
        problems.is_empty(),
        "docs/src/spec-reference.md is out of step with the parser:\n{}",
        problems.join("\n")
    );
}

/// The fields a layer kind's table accepts, from the parser's refusal of an unknown one
/// ("unknown field …, expected one of `a`, `b`", "expected `a`" or "there are no fields").
fn layer_fields(kind: &str) -> BTreeSet<String> {
    let text = format!("type = \"{kind}\"\n{UNKNOWN} = 1\n");
    let err = toml::from_str::<nequil::core::layers::LayerConfig>(&text)
        .expect_err("an unknown field must be refused")
        .to_string();
    assert!(
        err.contains(UNKNOWN),
        "{kind}: the refusal does not name the unknown key:\n{err}"
    );
    if err.contains("there are no fields") {
        return BTreeSet::new();
    }
    expected(&err)
}

/// The documented layer kinds (first cell of the `#sequential` table, several per row possible)
/// with the keys of each (the backticked names of the second cell outside parentheses).
fn documented_layers() -> Vec<(String, BTreeSet<String>)> {
    let text = reference();
    let mut out = vec![];
    for line in section(&text, "sequential").lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (kinds, keys) = (cells[1], cells.get(2).copied().unwrap_or(""));
        if kinds == "`type`" {
            continue; // the header
        }
        let mut bare = String::new();
        let mut depth = 0;
        for c in keys.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                c if depth == 0 => bare.push(c),
                _ => {}
            }
        }
        let keys: BTreeSet<String> = bare.split('`').skip(1).step_by(2).map(str::to_string).collect();
        for k in kinds.split('`').skip(1).step_by(2) {
            out.push((k.to_string(), keys.clone()));
        }
    }
    out
}

/// The quoted names of the Python dict literal `name = {` … `}` in `python/nequil/torch.py`
/// (its keys: the first string of each line).
fn python_table(source: &str, name: &str) -> BTreeSet<String> {
    let start = source
        .find(&format!("\n{name}"))
        .unwrap_or_else(|| panic!("python/nequil/torch.py has no table {name}"));
    let body = &source[start..];
    let open = body.find('{').expect("a dict literal");
    let close = body.find('}').expect("a dict literal");
    body[open + 1..close]
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next().map(str::to_string))
        .collect()
}

#[test]
fn every_registered_layer_kind_is_documented_and_mapped_from_torch() {
    let kinds: BTreeSet<String> = nequil::core::layers::LayerConfig::KINDS
        .iter()
        .map(|k| k.to_string())
        .collect();
    let mut problems = Vec::new();

    // (ii) The spec reference's table of layer types: every kind, its keys exactly.
    let docs = documented_layers();
    let documented: BTreeSet<String> = docs.iter().map(|(k, _)| k.clone()).collect();
    for k in kinds.difference(&documented) {
        problems.push(format!(
            "layer kind `{k}` is registered, the spec reference does not document it"
        ));
    }
    for k in documented.difference(&kinds) {
        problems.push(format!(
            "the spec reference documents layer kind `{k}`, the registry has none"
        ));
    }
    for (k, keys) in docs.iter().filter(|(k, _)| kinds.contains(k)) {
        let accepted = layer_fields(k);
        if &accepted != keys {
            problems.push(format!(
                "layer kind `{k}`: the parser accepts {accepted:?}, the spec reference documents {keys:?}"
            ));
        }
    }

    // (i) The PyTorch adapter: every kind mapped (and emitted) or listed as having no counterpart.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/nequil/torch.py");
    let py = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mapped = python_table(&py, "_TORCH_KINDS");
    let none = python_table(&py, "_NO_TORCH");
    for k in &kinds {
        if !mapped.contains(k) && !none.contains(k) {
            problems.push(format!(
                "layer kind `{k}`: neither in python/nequil/torch.py's _TORCH_KINDS nor in _NO_TORCH"
            ));
        }
    }
    for k in mapped.union(&none) {
        if !kinds.contains(k) {
            problems.push(format!(
                "python/nequil/torch.py lists `{k}`, the registry has no such kind"
            ));
        }
    }
    // Each mapped kind is emitted by the adapter: its quoted name occurs outside the table too.
    let quoted = |k: &str| py.matches(&format!("\"{k}\"")).count();
    for k in mapped.difference(&none) {
        if quoted(k) < 2 {
            problems.push(format!(
                "python/nequil/torch.py maps `{k}` in _TORCH_KINDS but never emits it"
            ));
        }
    }
    assert!(
        !mapped.is_empty() && problems.is_empty(),
        "the layer registry, the spec reference and the PyTorch adapter disagree:\n{}",
        problems.join("\n")
    );
}
