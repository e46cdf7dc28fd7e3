//! The library's layers, checked on its source: each top-level module imports only the ones
//! below it (core < train < instruments < lab), and no core module touches files.

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
