//! The library's layers, checked on its source and manifest: each top-level module imports only
//! the ones below it (core < train < instruments < lab), no core module touches files, there is no
//! cycle of imports between its modules, it never uses the paper's crate (`nequil-paper` builds on
//! the library, never the other way round), and it depends on no plotting, terminal or
//! argument-parsing crate.

#[path = "support/module_graph.rs"]
mod module_graph;

use module_graph::ModuleGraph;
use std::path::{Path, PathBuf};

const LAYERS: [&str; 4] = ["core", "train", "instruments", "lab"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code of a file without comments (doc comments may mention anything).
fn code(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_module_imports_one_above_it() {
    let mut bad = vec![];
    for (rank, layer) in LAYERS.iter().enumerate() {
        let mut files = vec![];
        rust_files(&src().join(layer), &mut files);
        assert!(!files.is_empty(), "src/{layer} has no files");
        for f in files {
            let c = code(&f);
            for above in &LAYERS[rank + 1..] {
                for pat in [
                    format!("crate::{above}::"),
                    format!("crate::{above}}}"),
                    format!("crate::{{{above}"),
                ] {
                    if c.contains(&pat) {
                        bad.push(format!("{} uses {pat}", f.display()));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "imports against the layering:\n{}", bad.join("\n"));
}

#[test]
fn no_core_module_reads_or_writes_files() {
    let mut files = vec![];
    rust_files(&src().join("core"), &mut files);
    let mut bad = vec![];
    for f in files {
        let c = code(&f);
        for pat in [
            "std::fs",
            "File::",
            "OpenOptions",
            "std::io::Write",
            "std::io::Read",
            "read_to_string",
            "std::env",
        ] {
            if c.contains(pat) {
                bad.push(format!("{} uses {pat}", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "file access in the core:\n{}", bad.join("\n"));
}

#[test]
fn no_cycle_of_imports_between_modules() {
    let g = ModuleGraph::of(&src());
    // The graph is not empty: the runner imports the spec, sweeps import the runner.
    assert!(g.edges.get("lab::runner").is_some_and(|e| e.contains_key("lab::spec")));
    assert!(g.edges.get("lab::sweep").is_some_and(|e| e.contains_key("lab::runner")));
    let cycles = g.cycles();
    assert!(
        cycles.is_empty(),
        "cycles of imports between modules:\n{}",
        cycles.iter().map(|c| g.describe(c)).collect::<Vec<_>>().join("\n")
    );
}

/// A manifest without its comments.
fn manifest() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .unwrap()
        .lines()
        .map(|l| match l.find('#') {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_library_never_uses_the_paper_crate() {
    let mut bad = vec![];
    if manifest().contains("nequil-paper") || manifest().contains("nequil_paper") {
        bad.push("Cargo.toml names nequil-paper".to_string());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    for dir in ["src", "benches", "tests"] {
        if root.join(dir).is_dir() {
            rust_files(&root.join(dir), &mut files);
        }
    }
    for f in files.into_iter().filter(|f| !f.ends_with("layering_tests.rs")) {
        if code(&f).contains("nequil_paper") {
            bad.push(format!("{} uses nequil_paper", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "the library depends on the paper's crate:\n{}",
        bad.join("\n")
    );
}

/// Crates that draw figures, drive a terminal or parse command lines: the command's and the
/// paper crate's business, never the library's.
const DENIED: [&str; 6] = ["clap", "indicatif", "plotters", "png", "ab_glyph", "console"];

#[test]
fn the_library_depends_on_no_plotting_terminal_or_argument_parsing_crate() {
    let m: toml::Table = toml::from_str(&manifest()).unwrap();
    // [dependencies] and every [target.'…'.dependencies]; a renamed dependency by its package.
    let mut tables = vec![m
        .get("dependencies")
        .and_then(|d| d.as_table())
        .expect("[dependencies]")];
    if let Some(targets) = m.get("target").and_then(|t| t.as_table()) {
        for t in targets.values() {
            if let Some(d) = t.get("dependencies").and_then(|d| d.as_table()) {
                tables.push(d);
            }
        }
    }
    let mut names = vec![];
    for t in tables {
        for (key, v) in t {
            let package = v.get("package").and_then(|p| p.as_str()).unwrap_or(key);
            names.push(package.replace('-', "_"));
        }
    }
    assert!(
        names.iter().any(|n| n == "faer"),
        "the manifest was not read: {names:?}"
    );
    let bad: Vec<&String> = names.iter().filter(|n| DENIED.contains(&n.as_str())).collect();
    assert!(bad.is_empty(), "the library depends on {bad:?}");
}
