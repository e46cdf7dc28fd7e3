//! The book's transcripts run: every fenced shell block (info string `sh`, `bash`, `console` or
//! `shell`) of `README.md` and `docs/src/**/*.md` is executed, and the ```text block that follows
//! it, if any, is compared with what the commands print. A block is skipped only when one of the
//! comment lines directly above its opening fence is `<!-- not run: REASON -->` with a reason.
//! The conventions are the book's ("Transcripts that run" in `docs/src/robustness.md`):
//!
//! * The blocks of one page run in order, each as `bash -eu -o pipefail`, in one fresh directory
//!   per page that holds copies of `examples/` and `bench/specs/`; the `nequil` binary under test
//!   is first on `PATH`. Standard error is merged into standard output.
//! * The set-up lines of [`SETUP`] (building the binary, putting it on `PATH`) are satisfied by
//!   the test and not run.
//! * In the shown output, a line that is exactly `...` stands for any number of lines, and
//!   `[..]` inside a line for any part of it (times, paths). A number is compared exactly, as
//!   text, unless a comment line `<!-- transcript: rtol=R, atol=A — REASON -->` above the block
//!   allows a difference `A + R·|number|` for every number of its output, with the reason.
//! * A command that is meant to fail is written `CMD || echo "exit status $?"`, which shows and
//!   checks its exit status; any other failing command fails the block.
//!
//! There is one test per page, so a failure names the page; `every_page_is_listed` keeps the list
//! complete.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SHELL_LANGS: &[&str] = &["sh", "bash", "console", "shell"];

/// Lines of a shell block that the test satisfies itself instead of running them: the binary is
/// the one `cargo test` built, and it is first on `PATH`.
const SETUP: &[&str] = &[
    "cargo build --release",
    "cargo build --release && export PATH=\"$PWD/target/release:$PATH\"",
    "export PATH=\"$PWD/target/release:$PATH\"",
];

/// Directories of the repository that a page's directory gets a copy of.
const COPIED: &[&str] = &["examples", "bench/specs"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One fenced shell block of a page.
#[derive(Debug, Clone)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    lang: String,
    code: String,
    /// The reason of a `<!-- not run: … -->` marker.
    not_run: Option<String>,
    /// Tolerance for the numbers of the output, from `<!-- transcript: rtol=…, atol=… -->`.
    tol: Tol,
    /// The ```text block directly after it (blank lines between are allowed), and its line.
    expected: Option<(usize, String)>,
}

/// The value of a `<!-- key: value -->` comment line, if `line` is one.
fn comment<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let inner = line.trim().strip_prefix("<!--")?.strip_suffix("-->")?.trim();
    inner.strip_prefix(key)?.strip_prefix(':').map(str::trim)
}

/// The fence of an opening or closing line: its backtick count and info string.
fn fence(line: &str) -> Option<(usize, &str)> {
    let t = line.trim_start();
    let n = t.chars().take_while(|&c| c == '`').count();
    (n >= 3).then(|| (n, t[n..].trim()))
}

/// Every fenced block of `text`: (opening line index, backticks, info, body lines).
fn fenced(text: &str) -> Vec<(usize, String, Vec<String>, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some((n, info)) = fence(lines[i]) {
            let lang = info.split([' ', ',', '{']).next().unwrap_or("").to_string();
            let mut j = i + 1;
            while j < lines.len() && !matches!(fence(lines[j]), Some((m, "")) if m >= n) {
                j += 1;
            }
            let body = lines[i + 1..j.min(lines.len())].iter().map(|s| s.to_string()).collect();
            out.push((i, lang, body, j));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn blocks(text: &str, page: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let all = fenced(text);
    let mut out = Vec::new();
    for (k, (start, lang, body, end)) in all.iter().enumerate() {
        if !SHELL_LANGS.contains(&lang.as_str()) {
            continue;
        }
        // The comment lines directly above the fence.
        let mut not_run = None;
        let mut tol = Tol::EXACT;
        let mut a = *start;
        while a > 0 && lines[a - 1].trim_start().starts_with("<!--") {
            a -= 1;
            let l = lines[a];
            if let Some(reason) = comment(l, "not run") {
                assert!(
                    !reason.is_empty(),
                    "{page}:{}: a `not run` marker needs a reason",
                    a + 1
                );
                not_run = Some(reason.to_string());
            }
            if let Some(v) = comment(l, "transcript") {
                let (setting, reason) = v
                    .split_once('—')
                    .unwrap_or_else(|| panic!("{page}:{}: `transcript: rtol=R — REASON` needs a reason", a + 1));
                assert!(
                    !reason.trim().is_empty(),
                    "{page}:{}: a tolerance needs a reason",
                    a + 1
                );
                for part in setting.split([',', ' ']).filter(|p| !p.is_empty()) {
                    let (key, value) = part.split_once('=').unwrap_or((part, ""));
                    let value: f64 = value
                        .parse()
                        .ok()
                        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                        .unwrap_or_else(|| {
                            panic!(
                                "{page}:{}: expected `rtol=NUMBER` or `atol=NUMBER`, got {part:?}",
                                a + 1
                            )
                        });
                    match key {
                        "rtol" => tol.rel = value,
                        "atol" => tol.abs = value,
                        _ => panic!("{page}:{}: unknown setting {key:?}", a + 1),
                    }
                }
            }
        }
        let expected = all.get(k + 1).and_then(|(s, l, b, _)| {
            let between_blank = lines
                .get(end + 1..*s)
                .is_some_and(|b| b.iter().all(|l| l.trim().is_empty()));
            (l == "text" && between_blank).then(|| (s + 1, b.join("\n")))
        });
        out.push(Block {
            line: start + 1,
            lang: lang.clone(),
            code: body.join("\n"),
            not_run,
            tol,
            expected,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Matching shown output against printed output.

/// How printed numbers may differ from shown ones: `|shown − printed| ≤ abs + rel·max(|shown|,
/// |printed|)`; exact (as text) when both are 0.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tol {
    rel: f64,
    abs: f64,
}

impl Tol {
    const EXACT: Tol = Tol { rel: 0.0, abs: 0.0 };
}

#[derive(Debug)]
enum Tok {
    Lit(String),
    Any,
    Num(String),
}

/// The length of the number at the start of `s` (a `-`, digits, a fraction, an exponent), or 0.
fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let d0 = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == d0 {
        return 0;
    }
    if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i + 1 < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'-' || b[j] == b'+') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}

/// Whether a number may start at byte `i` of `s`: not inside a word (`fig3`, `layers.0`).
fn number_starts(s: &str, i: usize) -> bool {
    let prev = s[..i].chars().next_back();
    !matches!(prev, Some(c) if c.is_alphanumeric() || c == '_')
}

fn tokens(pattern: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < pattern.len() {
        let rest = &pattern[i..];
        if rest.starts_with("[..]") {
            out.push(Tok::Lit(std::mem::take(&mut lit)));
            out.push(Tok::Any);
            i += 4;
            continue;
        }
        let n = if number_starts(pattern, i) { number_len(rest) } else { 0 };
        if n > 0 {
            out.push(Tok::Lit(std::mem::take(&mut lit)));
            out.push(Tok::Num(rest[..n].to_string()));
            i += n;
            continue;
        }
        let c = rest.chars().next().unwrap();
        lit.push(c);
        i += c.len_utf8();
    }
    out.push(Tok::Lit(lit));
    out
}

fn numbers_agree(expected: &str, actual: &str, tol: Tol) -> bool {
    if expected == actual {
        return true;
    }
    if tol == Tol::EXACT {
        return false;
    }
    match (expected.parse::<f64>(), actual.parse::<f64>()) {
        (Ok(e), Ok(a)) => (e - a).abs() <= tol.abs + tol.rel * e.abs().max(a.abs()),
        _ => false,
    }
}

fn match_toks(toks: &[Tok], s: &str, tol: Tol) -> bool {
    match toks.split_first() {
        None => s.is_empty(),
        Some((Tok::Lit(l), rest)) => s.strip_prefix(l.as_str()).is_some_and(|r| match_toks(rest, r, tol)),
        Some((Tok::Any, rest)) => s
            .char_indices()
            .map(|(i, _)| i)
            .chain([s.len()])
            .any(|i| match_toks(rest, &s[i..], tol)),
        Some((Tok::Num(e), rest)) => {
            let n = number_len(s);
            n > 0 && numbers_agree(e, &s[..n], tol) && match_toks(rest, &s[n..], tol)
        }
    }
}

fn line_matches(pattern: &str, line: &str, tol: Tol) -> bool {
    pattern == line || match_toks(&tokens(pattern), line, tol)
}

/// Whether `actual` (lines) matches `expected` (lines, `...` eliding any number of lines).
fn lines_match(expected: &[&str], actual: &[&str], tol: Tol) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"...", rest)) => (0..=actual.len()).any(|k| lines_match(rest, &actual[k..], tol)),
        Some((p, rest)) => {
            !actual.is_empty() && line_matches(p, actual[0], tol) && lines_match(rest, &actual[1..], tol)
        }
    }
}

/// A line diff of `expected` against `actual` (longest common subsequence of matching lines).
fn diff(expected: &[&str], actual: &[&str], tol: Tol) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut l = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if expected[i] == "..." || line_matches(expected[i], actual[j], tol) {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n
            && j < m
            && (expected[i] == "..." || line_matches(expected[i], actual[j], tol))
            && l[i][j] == l[i + 1][j + 1] + 1
        {
            out += &format!("   {}\n", actual[j]);
            i += 1;
            j += 1;
        } else if i < n && (j == m || l[i + 1][j] >= l[i][j + 1]) {
            out += &format!(" - {}\n", expected[i]);
            i += 1;
        } else {
            out += &format!(" + {}\n", actual[j]);
            j += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Running a page.

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// A fresh directory for `page` with copies of [`COPIED`].
fn page_dir(page: &str) -> PathBuf {
    let name: String = page
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    let d = std::env::temp_dir().join(format!("nequil-transcripts-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for c in COPIED {
        copy_dir(&root().join(c), &d.join(c));
    }
    d
}

/// The script a block runs: [`SETUP`] lines replaced by a no-op.
fn script(code: &str) -> String {
    let mut s = String::from("exec 2>&1\nset -eu -o pipefail\n");
    for line in code.lines() {
        if SETUP.contains(&line.trim()) {
            s += ": set-up satisfied by the test\n";
        } else {
            s += line;
            s += "\n";
        }
    }
    s
}

fn run_block(dir: &Path, b: &Block) -> (bool, String) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_nequil")).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(script(&b.code))
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null());
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
        "NEQUIL_MAX_MEMORY",
    ] {
        c.env_remove(v);
    }
    let out = c.output().expect("bash runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

/// Runs every block of `page` (relative to the repository root); the failures, each with the
/// page, the line, the commands and a diff.
fn check_page(page: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(page)).unwrap();
    let blocks = blocks(&text, page);
    let mut failures = Vec::new();
    if blocks.iter().all(|b| b.not_run.is_some()) {
        return failures;
    }
    let dir = page_dir(page);
    for b in blocks.iter().filter(|b| b.not_run.is_none()) {
        let (ok, output) = run_block(&dir, b);
        let head = format!(
            "{page}:{}: ```{} block\n{}\n",
            b.line,
            b.lang,
            b.code
                .lines()
                .map(|l| format!("    $ {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        if !ok {
            failures.push(format!(
                "{head}  failed (a command exited with an error; a command meant to fail is \
                 written `CMD || echo \"exit status $?\"`, a block that cannot run here is \
                 marked `<!-- not run: REASON -->`). Output:\n{output}"
            ));
            continue;
        }
        if let Some((line, expected)) = &b.expected {
            let e: Vec<&str> = expected.lines().collect();
            let a: Vec<&str> = output.trim_end_matches('\n').lines().collect();
            if !lines_match(&e, &a, b.tol) {
                failures.push(format!(
                    "{head}  printed something else than the text block at line {line} \
                     (- shown, + printed{}):\n{}",
                    if b.tol != Tol::EXACT {
                        format!("; numbers within rtol {:e}, atol {:e}", b.tol.rel, b.tol.abs)
                    } else {
                        String::new()
                    },
                    diff(&e, &a, b.tol)
                ));
            }
        }
    }
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    failures
}

fn assert_page(page: &str) {
    let failures = check_page(page);
    assert!(
        failures.is_empty(),
        "{} transcript(s) of {page} failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every page of the book and the README, relative to the repository root, sorted.
fn all_pages() -> Vec<String> {
    fn walk(d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                let rel = p.strip_prefix(root()).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = vec!["README.md".to_string()];
    walk(&root().join("docs/src"), &mut out);
    out.sort();
    out
}

macro_rules! pages {
    ($($name:ident => $page:expr,)*) => {
        const PAGES: &[&str] = &[$($page),*];
        $(
            #[test]
            fn $name() {
                assert_page($page);
            }
        )*
    };
}

pages! {
    readme => "README.md",
    summary => "docs/src/SUMMARY.md",
    citations => "docs/src/citations.md",
    clusters => "docs/src/clusters.md",
    commands => "docs/src/commands.md",
    getting_started => "docs/src/getting-started.md",
    instruments => "docs/src/instruments.md",
    introduction => "docs/src/introduction.md",
    performance => "docs/src/performance.md",
    python => "docs/src/python.md",
    pytorch => "docs/src/pytorch.md",
    rebalance => "docs/src/rebalance.md",
    reproducing => "docs/src/reproducing.md",
    robustness => "docs/src/robustness.md",
    spec_reference => "docs/src/spec-reference.md",
    sweeps => "docs/src/sweeps.md",
    troubleshooting => "docs/src/troubleshooting.md",
    theory_index => "docs/src/theory/index.md",
    theory_conventions => "docs/src/theory/conventions.md",
    theory_symmetries => "docs/src/theory/symmetries.md",
    theory_law_of_motion => "docs/src/theory/law-of-motion.md",
    theory_equilibrium => "docs/src/theory/equilibrium.md",
    theory_closed_forms => "docs/src/theory/closed-forms.md",
    theory_sharpness => "docs/src/theory/sharpness.md",
    theory_momentum => "docs/src/theory/momentum.md",
    theory_constants => "docs/src/theory/constants.md",
    theory_layers => "docs/src/theory/layers.md",
}

#[test]
fn every_page_is_listed() {
    let mut listed: Vec<String> = PAGES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        listed,
        all_pages(),
        "the pages of this test and the book's pages differ: add a line to `pages!`"
    );
}

// ---------------------------------------------------------------------------------------------
// The runner itself.

#[test]
fn the_runner_finds_markers_and_output() {
    let page = "intro\n\n<!-- not run: needs a cluster -->\n```sh\nsbatch x\n```\n\n\
                <!-- transcript: rtol=1e-9 — a reason -->\n```bash\necho 1.0\n```\n\n```text\n1\n```\n\
                ```console\nls\n```\nprose\n```text\nnot its output\n```\n";
    let b = blocks(page, "p");
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].not_run.as_deref(), Some("needs a cluster"));
    assert_eq!(b[0].line, 4);
    assert!(b[1].not_run.is_none());
    assert_eq!(b[1].tol, Tol { rel: 1e-9, abs: 0.0 });
    assert_eq!(b[1].expected.as_ref().unwrap().1, "1");
    assert!(b[2].expected.is_none(), "prose between: not its output");
}

#[test]
fn the_matcher_elides_only_what_is_marked() {
    let r = |rel: f64| Tol { rel, abs: 0.0 };
    let m = |e: &str, a: &str, tol: Tol| {
        let e: Vec<&str> = e.lines().collect();
        let a: Vec<&str> = a.lines().collect();
        lines_match(&e, &a, tol)
    };
    assert!(m("a\n...\nd", "a\nb\nc\nd", Tol::EXACT));
    assert!(m("a\n...\nd", "a\nd", Tol::EXACT));
    assert!(!m("a\n...\nd", "a\nb", Tol::EXACT));
    assert!(m("took [..] s; loss 1.5", "took 0.3 s; loss 1.5", Tol::EXACT));
    assert!(!m("took [..] s; loss 1.5", "took 0.3 s; loss 1.6", Tol::EXACT));
    // Numbers are exact unless a tolerance is given, and then only within it.
    assert!(!m("loss 12.488823", "loss 12.488824", Tol::EXACT));
    assert!(m("loss 12.488823", "loss 12.488824", r(1e-7)));
    assert!(!m("loss 12.488823", "loss 12.488843", r(1e-7)));
    assert!(m(
        "norm2.layers.0.weight\": 1e-3,",
        "norm2.layers.0.weight\": 0.001,",
        r(1e-12)
    ));
    // Digits inside words are text, compared exactly.
    assert!(!m("fig3", "fig4", r(0.5)));
    assert!(m("x = -2, y", "x = -2.0000000001, y", r(1e-9)));
    // Signs belong to numbers; an absolute tolerance covers rounding noise around zero.
    let noise = Tol { rel: 1e-4, abs: 1e-9 };
    assert!(m("C* -2.1316e-14 x", "C* 1.4211e-14 x", noise));
    assert!(!m("C* -2.1316e-14 x", "C* 1.4211e-14 x", r(1e-4)));
    assert!(!m("-2.4867e-1", "2.4867e-1", noise));
    assert!(m("run-0002", "run-0002", noise));
    assert!(!m("run-0002", "run-0003", noise));
}

#[test]
fn the_diff_shows_what_was_expected_and_what_was_printed() {
    let d = diff(&["a", "wrote x", "c"], &["a", "saved x", "c"], Tol::EXACT);
    assert_eq!(d, "   a\n - wrote x\n + saved x\n   c\n");
}
