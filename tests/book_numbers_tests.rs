//! Numbers that the README and the book quote in prose from a run are checked against the run.
//!
//! Each check names a sentence of a page with `{}` where a number stands, runs the command the
//! page describes, and compares every quoted number q with the computed value v:
//! `|q − v| ≤ ½·10^(−d) + RTOL·|v|`, where d is the number of decimals q is printed with (the
//! page rounds; half a unit of its last digit is the rounding) and [`RTOL`] the difference between
//! SIMD paths (`docs/src/robustness.md#transcripts` derives it).

use std::path::{Path, PathBuf};

mod common;

/// Relative difference allowed between SIMD paths for the linear runs of at most N = 10⁶ steps
/// (the bound of `docs/src/robustness.md#transcripts`: products of at most k = 20 terms rounded
/// differently each step, not amplified, N·k·ε = 10⁶ × 20 × 1.1e-16 = 2.2e-9; rounded up).
const RTOL: f64 = 1e-8;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Decimals of a printed number (`12.53` → 2, `35` → 0).
fn decimals(s: &str) -> i32 {
    s.split_once('.').map_or(0, |(_, f)| f.len() as i32)
}

/// The printed numbers at the `{}` of `template` in `text` (every literal part must match
/// exactly; whitespace runs, line breaks included, count as one space).
fn quoted(text: &str, template: &str) -> Option<Vec<String>> {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = norm(text);
    let template = norm(template);
    let parts: Vec<&str> = template.split("{}").collect();
    let mut from = 0;
    while let Some(i) = text[from..].find(parts[0]) {
        let start = from + i;
        let mut pos = start + parts[0].len();
        let mut nums = Vec::new();
        let mut ok = true;
        for lit in &parts[1..] {
            let n = text[pos..]
                .char_indices()
                .take_while(|(_, c)| c.is_ascii_digit() || *c == '.')
                .count();
            let num = text[pos..pos + n].trim_end_matches('.');
            if num.is_empty() || !text[pos + num.len()..].starts_with(lit) {
                ok = false;
                break;
            }
            nums.push(num.to_string());
            pos += num.len() + lit.len();
        }
        if ok {
            return Some(nums);
        }
        from = start + parts[0].len().max(1);
    }
    None
}

/// Checks that `page` says `template` with the numbers `values`, each within half a unit of its
/// last printed digit plus [`RTOL`]; the failures are pushed onto `problems`.
fn check(problems: &mut Vec<String>, page: &str, template: &str, values: &[f64]) {
    let Some(nums) = quoted(&read(page), template) else {
        problems.push(format!("{page}: no sentence of the form {template:?}"));
        return;
    };
    assert_eq!(nums.len(), values.len(), "{template}");
    for (q, &v) in nums.iter().zip(values) {
        let p: f64 = q.parse().unwrap();
        let tol = 0.5 * 10f64.powi(-decimals(q)) * (1.0 + 1e-12) + RTOL * v.abs();
        if (p - v).abs() > tol {
            problems.push(format!(
                "{page}: {template:?} quotes {q} where the run gives {v} (tolerance {tol:.3e})"
            ));
        }
    }
}

/// Runs `spec` (a path relative to the repository root, or TOML text written to `name.toml`),
/// returning the run directory.
fn run(dir: &Path, name: &str, spec_text: &str) -> PathBuf {
    std::fs::write(dir.join(format!("{name}.toml")), spec_text).unwrap();
    let out = dir.join(name);
    let o = common::bin()
        .arg("run")
        .arg(dir.join(format!("{name}.toml")))
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// `spec` with `from` replaced by `to` (which must be there: a changed example fails loudly).
fn edit(spec: &str, from: &str, to: &str) -> String {
    assert!(spec.contains(from), "the example spec has no `{from}`");
    spec.replace(from, to)
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

/// The final value of a column, from `summary.json`'s `final`.
fn last(s: &serde_json::Value, column: &str) -> f64 {
    s["final"][column]
        .as_f64()
        .unwrap_or_else(|| panic!("no final {column}"))
}

/// The header and the first data row of `metrics.csv`.
fn first_row(run: &Path) -> (Vec<String>, Vec<f64>) {
    let t = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = t.lines();
    let head: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    let row = lines
        .next()
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap_or(f64::NAN))
        .collect();
    (head, row)
}

fn col(head: &[String], row: &[f64], name: &str) -> f64 {
    row[head.iter().position(|h| h == name).unwrap()]
}

/// The closed form of the worked example at `UW = I`: `‖U*‖² = 5 (√φ + √(2−φ))`,
/// `‖W*‖² = 5 (1/√φ + 1/√(2−φ))` (`docs/src/theory/closed-forms.md#worked-example`).
fn at_identity(phi: f64) -> (f64, f64) {
    let (a, b) = (phi.sqrt(), (2.0 - phi).sqrt());
    (5.0 * (a + b), 5.0 * (1.0 / a + 1.0 / b))
}

const W: &str = "norm2.layers.0.weight";
const U: &str = "norm2.layers.1.weight";

#[test]
fn the_worked_example_numbers_come_from_its_runs() {
    let dir = common::scratch("book-numbers", "worked");
    let spec = read("examples/linear2-instruments.toml");
    let plain = read("examples/linear2-autoencoder.toml");
    let ex = run(&dir, "example", &spec);
    let s = summary(&ex);
    let (head, row0) = first_row(&ex);
    let (w0, u0) = (col(&head, &row0, W), col(&head, &row0, U));
    let (w, u) = (last(&s, W), last(&s, U));
    let (pw, pu) = (last(&s, "pred_norm2_W"), last(&s, "pred_norm2_U"));
    let dist = last(&s, "dist_to_equilibrium");
    let (iu, iw) = at_identity(0.25);
    let mut problems = Vec::new();

    // "within 2 %": the equilibrium instrument's relative distance, below the quoted percentage.
    for (page, t) in [
        (
            "README.md",
            "SGD has carried them to within {} % of the noise equilibrium",
        ),
        (
            "docs/src/getting-started.md",
            "SGD has moved the layer norms to within {} % of the noise equilibrium",
        ),
        (
            "docs/src/theory/closed-forms.md",
            "SGD sits within about {} % of the one for its own product",
        ),
    ] {
        match quoted(&read(page), t) {
            Some(q) => {
                let pct: f64 = q[0].parse().unwrap();
                if dist * 100.0 > pct {
                    problems.push(format!(
                        "{page}: says within {pct} %, dist_to_equilibrium is {:.3} %",
                        dist * 100.0
                    ));
                }
            }
            None => problems.push(format!("{page}: no sentence {t:?}")),
        }
    }
    check(
        &mut problems,
        "README.md",
        "The layers started at ‖W‖² = {} and ‖U‖² = {};",
        &[w0, u0],
    );
    check(
        &mut problems,
        "README.md",
        "noise equilibrium that Theorem 5.2 predicts ({} and {})",
        &[pw, pu],
    );
    check(
        &mut problems,
        "docs/src/getting-started.md",
        "(‖W‖² {} against {}, ‖U‖² {} against {}), although the initialization started far from it ({} and {}). At the exact global minimum `UW = I` the same theorem gives {} and {};",
        &[w, pw, u, pu, w0, u0, iw, iu],
    );
    // 35 columns with every instrument, 7 without.
    let (plain_head, _) = first_row(&run(&dir, "plain", &plain));
    check(
        &mut problems,
        "docs/src/getting-started.md",
        "It writes {} columns instead of {},",
        &[head.len() as f64, plain_head.len() as f64],
    );

    // The worked example's table: the example, a smaller step for longer, and φ = 1.
    let small_eta = run(
        &dir,
        "eta",
        &edit(
            &edit(&spec, "lr = 0.01", "lr = 0.003"),
            "steps = 300000",
            "steps = 1000000",
        ),
    );
    let iso = run(&dir, "phi1", &edit(&spec, "phi = 0.25", "phi = 1.0"));
    let (s2, s3) = (summary(&small_eta), summary(&iso));
    let (iu1, iw1) = at_identity(1.0);
    let row = |s: &serde_json::Value, iu: f64, iw: f64| {
        [
            iu,
            last(s, "pred_norm2_U"),
            last(s, U),
            iw,
            last(s, "pred_norm2_W"),
            last(s, W),
        ]
    };
    check(
        &mut problems,
        "docs/src/theory/closed-forms.md",
        "| φ = 0.25, η = 0.01, 300 000 steps (the example) | {} | {} | {} | {} | {} | {} |",
        &row(&s, iu, iw),
    );
    check(
        &mut problems,
        "docs/src/theory/closed-forms.md",
        "| φ = 0.25, η = 0.003, 1 000 000 steps | {} | {} | {} | {} | {} | {} |",
        &row(&s2, iu, iw),
    );
    check(
        &mut problems,
        "docs/src/theory/closed-forms.md",
        "| φ = 1, η = 0.01, 300 000 steps | {} | {} | {} | {} | {} | {} |",
        &row(&s3, iu1, iw1),
    );
    check(
        &mut problems,
        "docs/src/theory/closed-forms.md",
        "The norm ratio ‖W‖²/‖U‖² moves toward the theory's {} as η decreases — {} at η = 0.01, {} at η = 0.003",
        &[iw / iu, w / u, last(&s2, W) / last(&s2, U)],
    );

    // GD from the same initialization: full batch on 2 048 fixed samples, 20 000 steps.
    let mut gd_spec = edit(&plain, "mode = \"online\"", "mode = \"fixed\"\nn = 2048");
    for (from, to) in [
        ("optimizer = \"sgd\"", "optimizer = \"gd\""),
        ("batch_size = 1", "batch_size = 2048"),
        ("steps = 300000", "steps = 20000"),
    ] {
        gd_spec = edit(&gd_spec, from, to);
    }
    let gd = run(&dir, "gd", &gd_spec);
    let (gh, g0) = first_row(&gd);
    let g = summary(&gd);
    assert_eq!(
        (col(&gh, &g0, W), col(&gh, &g0, U)),
        (w0, u0),
        "GD starts from the SGD run's initialization"
    );
    let template = "ends elsewhere, at ‖U‖² = {} and ‖W‖² = {}: its matrix charge stays where the initialization put it (‖W‖² − ‖U‖² = {} at the start and at the end)";
    for charge in [w0 - u0, last(&g, W) - last(&g, U)] {
        check(
            &mut problems,
            "docs/src/theory/closed-forms.md",
            template,
            &[last(&g, U), last(&g, W), charge],
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_template_reader_finds_numbers_and_only_them() {
    let text = "the norms (12.53 and\n9.08), then 3 and 4.";
    assert_eq!(quoted(text, "norms ({} and {})").unwrap(), ["12.53", "9.08"]);
    assert_eq!(quoted(text, "then {} and {}.").unwrap(), ["3", "4"]);
    assert!(quoted(text, "norms ({} or {})").is_none());
    let mut p = Vec::new();
    // 12.53 stands for [12.525, 12.535]: 12.534 passes, 12.536 does not.
    check(&mut p, "README.md", "Theorem 5.2 predicts ({} and", &[12.534]);
    let n = p.len();
    check(&mut p, "README.md", "Theorem 5.2 predicts ({} and", &[12.536]);
    assert_eq!(p.len(), n + 1, "{p:?}");
}

/// `nequil rebalance SPEC --out W` in `dir`; its standard output.
fn rebalance(dir: &Path, name: &str, spec_text: &str) -> String {
    std::fs::write(dir.join(format!("{name}.toml")), spec_text).unwrap();
    let o = common::bin()
        .current_dir(dir)
        .args(["rebalance", &format!("{name}.toml"), "--out"])
        .arg(format!("{name}.safetensors"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn the_rebalance_page_numbers_come_from_its_runs() {
    let dir = common::scratch("book-numbers", "rebalance");
    let plain = read("examples/linear2-autoencoder.toml");
    let mut problems = Vec::new();
    // The rebalanced start of the first run's spec: its layer norms at step 0 (one step is
    // enough for the first row of the log).
    rebalance(&dir, "rebalanced", &plain);
    let from = edit(
        &edit(&plain, "init = \"kaiming\"", "init_from = \"rebalanced.safetensors\""),
        "steps = 300000",
        "steps = 1",
    );
    let (h, r) = first_row(&run(&dir, "from", &from));
    let (h0, r0) = first_row(&run(&dir, "orig", &edit(&plain, "steps = 300000", "steps = 1")));
    check(
        &mut problems,
        "docs/src/rebalance.md",
        "with the layer norms moved from {} and {} to {} and {}.",
        &[col(&h0, &r0, W), col(&h0, &r0, U), col(&h, &r, W), col(&h, &r, U)],
    );
    // ‖B − I‖ of the rotation family for hidden widths 10 and 8: the table's row `rotation.0`.
    let distance = |width: &str| {
        let spec = edit(&plain, "widths = [10, 20, 10]", &format!("widths = [10, {width}, 10]"));
        let out = rebalance(&dir, &format!("w{width}"), &spec);
        let row = out
            .lines()
            .find(|l| l.starts_with("rotation.0 "))
            .unwrap_or_else(|| panic!("no rotation.0 row:\n{out}"));
        let v: Vec<&str> = row.split_whitespace().collect();
        v[4].parse::<f64>().unwrap_or_else(|_| panic!("‖B − I‖ of {row:?}"))
    };
    check(
        &mut problems,
        "docs/src/rebalance.md",
        "the same command reports a finite `‖B − I‖` ({} and {})",
        &[distance("10"), distance("8")],
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}
