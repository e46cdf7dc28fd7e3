//! The paper crate's structure, checked on its source and manifest: no cycle of imports between
//! its modules (the check of the library's layering test, on this crate), and no terminal or
//! argument-parsing crate among its dependencies (progress goes through
//! `nequil_paper::reproduce::Progress`, which the command implements).

#[path = "../../nequil/tests/support/module_graph.rs"]
mod module_graph;

use module_graph::ModuleGraph;
use std::path::Path;

#[test]
fn no_cycle_of_imports_between_modules() {
    let g = ModuleGraph::of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    // The graph is not empty: `simulate` uses the records, and the records the plan's types.
    assert!(g
        .edges
        .get("experiments::simulation")
        .is_some_and(|e| e.contains_key("experiments::record") && e.contains_key("experiments::plan")));
    assert!(g
        .edges
        .get("experiments::record")
        .is_some_and(|e| e.contains_key("experiments::plan")));
    let cycles = g.cycles();
    assert!(
        cycles.is_empty(),
        "cycles of imports between modules:\n{}",
        cycles.iter().map(|c| g.describe(c)).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_terminal_or_argument_parsing_dependency() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = text
        .split("[dependencies]")
        .nth(1)
        .expect("[dependencies]")
        .split("\n[")
        .next()
        .unwrap();
    let names: Vec<&str> = deps
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split('=').next().map(str::trim))
        .collect();
    assert!(names.contains(&"nequil"), "the manifest was not read: {names:?}");
    for denied in ["clap", "indicatif", "console"] {
        assert!(!names.contains(&denied), "nequil-paper depends on {denied}");
    }
}
