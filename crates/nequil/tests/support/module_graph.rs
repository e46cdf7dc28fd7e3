//! The graph of imports between a crate's modules, read from its source, and its cycles.
//!
//! A node is a module at most two levels below the crate root (`lab::runner`, `core::models`,
//! `experiments::plan`, `plot`): a deeper module belongs to its ancestor at level two, and the
//! crate root itself is left out. An edge `a → b` means that code in a file of `a` names a path
//! into `b` (`crate::b::…`, `super::…`, `self::…`, or a child module's name), in a `use`
//! statement or inline. Paths through a module's re-exports (`crate::train::Optimizer`, re-exported
//! from `train::optim`) lead to the module that defines the item; the re-exports themselves
//! (`pub use child::…` in a parent) are the parent's front door, not a dependency of it. Comments
//! are ignored, and inside an inline module (`mod tests { … }`) `super` is the file's own module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path below the crate root (`["lab", "runner"]`).
type ModPath = Vec<String>;

/// The modules of a crate and the imports between its nodes.
pub struct ModuleGraph {
    /// Every module that has a file of its own (inline modules are not modules here).
    modules: BTreeSet<ModPath>,
    /// Per module: the names it re-exports (`pub use`) and the full paths they stand for.
    reexports: BTreeMap<ModPath, BTreeMap<String, ModPath>>,
    /// Node → nodes it imports from, with one file and path as the witness of each edge.
    pub edges: BTreeMap<String, BTreeMap<String, String>>,
}

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

/// The module of a source file: `lab/io/mod.rs` → `lab::io`, `lib.rs` → the root.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_string());
    }
    parts
}

/// The node of a module: its first two segments, `None` for the root.
fn node(m: &[String]) -> Option<String> {
    if m.is_empty() {
        None
    } else {
        Some(m[..m.len().min(2)].join("::"))
    }
}

/// The code of a file without comments, and with `super::` inside inline modules written as
/// `self::` (there it names the file's own module).
fn code(text: &str) -> String {
    let mut out = vec![];
    // Indentation of the inline modules we are inside.
    let mut inline: Vec<usize> = vec![];
    for line in text.lines() {
        let mut l = match line.find("//") {
            Some(i) => line[..i].to_string(),
            None => line.to_string(),
        };
        let indent = line.len() - line.trim_start().len();
        if let Some(&k) = inline.last() {
            if line.trim_end() == format!("{}}}", " ".repeat(k)) {
                inline.pop();
            }
        }
        if !inline.is_empty() {
            l = l.replace("super::", "self::");
        }
        let t = l.trim();
        let t = t
            .strip_prefix("pub ")
            .or_else(|| t.strip_prefix("pub(crate) "))
            .unwrap_or(t);
        if t.starts_with("mod ") && t.ends_with('{') {
            inline.push(indent);
        }
        out.push(l);
    }
    out.join("\n")
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Expands a use tree (`a::{b, c::{d, e}}`, `a::*`, `a as b`) into its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    // Split off a leading path up to a top-level `{`.
    if let Some(open) = tree.find('{') {
        let prefix: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let close = tree.rfind('}').unwrap_or(tree.len());
        let inner = &tree[open + 1..close.max(open + 1)];
        let mut parts = vec![];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&inner[start..]);
        let mut out = vec![];
        for p in parts.into_iter().filter(|p| !p.trim().is_empty()) {
            for rest in expand(p) {
                let mut full = prefix.clone();
                full.extend(rest);
                out.push(full);
            }
        }
        out
    } else {
        let t = tree.split(" as ").next().unwrap_or(tree);
        vec![t
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()]
    }
}

impl ModuleGraph {
    /// The graph of the crate whose sources are in `src`.
    pub fn of(src: &Path) -> ModuleGraph {
        let mut files = vec![];
        rust_files(src, &mut files);
        files.sort();
        let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(src, f)).collect();
        let texts: Vec<(ModPath, String, String)> = files
            .iter()
            .map(|f| {
                let m = module_of(src, f);
                let c = code(&std::fs::read_to_string(f).unwrap());
                (m, c, f.strip_prefix(src).unwrap().display().to_string())
            })
            .collect();
        let mut g = ModuleGraph {
            modules,
            reexports: BTreeMap::new(),
            edges: BTreeMap::new(),
        };
        // Re-exports first: `pub use …;` statements of every module, as absolute paths.
        for (m, c, _) in &texts {
            for stmt in use_statements(c).into_iter().filter(|(public, _)| *public) {
                for p in expand(&stmt.1) {
                    if let Some(abs) = g.absolute(m, &p) {
                        // The name a path binds: its last segment (`a::b as c` binds `b` here:
                        // renamed re-exports are not followed).
                        let name = p.last().cloned().unwrap_or_default();
                        if name != "*" && !name.is_empty() {
                            g.reexports.entry(m.clone()).or_default().insert(name, abs);
                        }
                    }
                }
            }
        }
        for (m, c, file) in &texts {
            let Some(from) = node(m) else { continue };
            let mut paths: Vec<Vec<String>> = vec![];
            let mut rest = c.clone();
            // `use` statements, without a parent's re-exports of its own children.
            for (public, tree) in use_statements(c) {
                for p in expand(&tree) {
                    let own_child = p.first().is_some_and(|s| s == "self" || g.is_child(m, s)) && p.len() > 1;
                    if !(public && own_child) {
                        paths.push(p);
                    }
                }
                rest = rest.replacen(&tree, "", 1);
            }
            // Inline paths.
            paths.extend(inline_paths(&rest, |s| g.is_child(m, s)));
            for p in paths {
                let Some(abs) = g.absolute(m, &p) else { continue };
                let target = g.resolve(&abs, 0);
                if let Some(to) = node(&target) {
                    if to != from {
                        g.edges
                            .entry(from.clone())
                            .or_default()
                            .entry(to)
                            .or_insert_with(|| format!("{file}: {}", p.join("::")));
                    }
                }
            }
        }
        g
    }

    fn is_child(&self, m: &[String], name: &str) -> bool {
        let mut c = m.to_vec();
        c.push(name.to_string());
        self.modules.contains(&c)
    }

    /// The absolute form of a path written in module `m` (`None` for an external crate).
    fn absolute(&self, m: &[String], p: &[String]) -> Option<ModPath> {
        let first = p.first()?;
        let (mut base, mut i): (ModPath, usize) = match first.as_str() {
            "crate" => (vec![], 1),
            "self" => (m.to_vec(), 1),
            "super" => (m.to_vec(), 0),
            s if self.is_child(m, s) => (m.to_vec(), 0),
            _ => return None,
        };
        while p.get(i).is_some_and(|s| s == "super") {
            base.pop();
            i += 1;
        }
        base.extend(p[i..].iter().cloned());
        Some(base)
    }

    /// The module a path leads to, through re-exports.
    fn resolve(&self, p: &[String], depth: usize) -> ModPath {
        let mut k = p.len();
        while k > 0 && !self.modules.contains(&p[..k]) {
            k -= 1;
        }
        let module = p[..k].to_vec();
        if depth < 8 {
            if let Some(name) = p.get(k) {
                if let Some(target) = self.reexports.get(&module).and_then(|r| r.get(name)) {
                    let mut t = target.clone();
                    t.extend(p[k + 1..].iter().cloned());
                    return self.resolve(&t, depth + 1);
                }
            }
        }
        module
    }

    /// Every cycle's nodes, one cycle per strongly connected component with more than one node.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        // Tarjan's algorithm.
        struct St<'a> {
            g: &'a BTreeMap<String, BTreeMap<String, String>>,
            index: BTreeMap<String, usize>,
            low: BTreeMap<String, usize>,
            stack: Vec<String>,
            on: BTreeSet<String>,
            next: usize,
            out: Vec<Vec<String>>,
        }
        fn visit(s: &mut St<'_>, v: &str) {
            s.index.insert(v.into(), s.next);
            s.low.insert(v.into(), s.next);
            s.next += 1;
            s.stack.push(v.into());
            s.on.insert(v.into());
            let succ: Vec<String> = s.g.get(v).map(|m| m.keys().cloned().collect()).unwrap_or_default();
            for w in succ {
                if !s.index.contains_key(&w) {
                    visit(s, &w);
                    let l = s.low[&w].min(s.low[v]);
                    s.low.insert(v.into(), l);
                } else if s.on.contains(&w) {
                    let l = s.index[&w].min(s.low[v]);
                    s.low.insert(v.into(), l);
                }
            }
            if s.low[v] == s.index[v] {
                let mut comp = vec![];
                loop {
                    let w = s.stack.pop().unwrap();
                    s.on.remove(&w);
                    let done = w == v;
                    comp.push(w);
                    if done {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    s.out.push(comp);
                }
            }
        }
        let mut s = St {
            g: &self.edges,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: vec![],
            on: BTreeSet::new(),
            next: 0,
            out: vec![],
        };
        let nodes: Vec<String> = self.edges.keys().cloned().collect();
        for v in nodes {
            if !s.index.contains_key(&v) {
                visit(&mut s, &v);
            }
        }
        s.out
    }

    /// A cycle printed with the import that makes each of its edges (`a → b (file: path)`).
    pub fn describe(&self, comp: &[String]) -> String {
        let inside: BTreeSet<&String> = comp.iter().collect();
        let mut lines = vec![];
        for a in comp {
            for (b, why) in self.edges.get(a).into_iter().flatten() {
                if inside.contains(b) {
                    lines.push(format!("  {a} → {b}   ({why})"));
                }
            }
        }
        format!("{{{}}}:\n{}", comp.join(", "), lines.join("\n"))
    }
}

/// The `use` statements of a file: (public, tree).
fn use_statements(c: &str) -> Vec<(bool, String)> {
    let mut out = vec![];
    let mut i = 0;
    while let Some(k) = c[i..].find("use ") {
        let at = i + k;
        let line_start = c[..at].rfind('\n').map_or(0, |n| n + 1);
        let prefix = c[line_start..at].trim();
        let starts_statement = c[..at].chars().last().is_none_or(|ch| !ident_char(ch));
        let public = prefix.starts_with("pub");
        if starts_statement && (prefix.is_empty() || prefix.starts_with("pub")) {
            if let Some(end) = c[at..].find(';') {
                out.push((public, c[at + 4..at + end].to_string()));
                i = at + end;
                continue;
            }
        }
        i = at + 4;
    }
    out
}

/// Paths in code that start with `crate::`, `super::`, `self::` or a child module's name.
fn inline_paths(c: &str, is_child: impl Fn(&str) -> bool) -> Vec<Vec<String>> {
    let chars: Vec<char> = c.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c0 = chars[i];
        let prev = if i == 0 { ' ' } else { chars[i - 1] };
        if ident_char(c0) && !ident_char(prev) && prev != ':' && prev != '$' && prev != '.' {
            let mut j = i;
            let mut segs = vec![];
            loop {
                let s = j;
                while j < chars.len() && ident_char(chars[j]) {
                    j += 1;
                }
                if s == j {
                    break;
                }
                segs.push(chars[s..j].iter().collect::<String>());
                if j + 1 < chars.len() && chars[j] == ':' && chars[j + 1] == ':' {
                    j += 2;
                } else {
                    break;
                }
            }
            if segs.len() > 1 {
                let f = segs[0].as_str();
                if f == "crate" || f == "super" || f == "self" || is_child(f) {
                    out.push(segs);
                }
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}
