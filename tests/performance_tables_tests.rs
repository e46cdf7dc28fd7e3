//! The measured tables of the book's performance page (`docs/src/performance.md`) agree with the
//! result files of their sittings.
//!
//! A table directly after the line `<!-- results: bench/results/FILE.json -->` is checked against
//! that file (written by `python3 bench/compare.py --json FILE`): every number of the table is
//! recomputed from the file's raw measurements (medians over rounds, ratios pair by pair, as
//! `compare.py` computes them) and must equal the shown value to the digits shown (within half a
//! unit of the last digit shown: the shown value is the computed one rounded, so any edit of a
//! shown digit fails). The section the table is in must carry the file's date.
//!
//! A table in a dated section ("## … YYYY-MM-DD") without a result file must be marked
//! `<!-- transcribed: … -->`, so that no measured table is left unmarked, and every result file
//! under `bench/results/` must be shown by some table. A transcribed table has no file to check
//! against, but its ratios must agree with the times beside them: a column headed `A / B`, where
//! `A` and `B` head columns of the same table, must hold A's time over B's in every row where the
//! three cells have numbers, to the rounding of all three.

use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn page() -> String {
    let path = root().join("docs/src/performance.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A markdown table directly after a marker comment: the comment's text, the heading of the
/// section it is in, and the table's rows split into trimmed cells (the separator row dropped).
struct Marked {
    marker: String,
    heading: String,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// Every table of `text`, with the comment line directly before it ("" when there is none) and
/// the last `## ` heading above it.
fn tables(text: &str) -> Vec<Marked> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let (mut heading, mut in_fence) = (String::new(), false);
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("```") {
            in_fence = !in_fence;
        }
        if !in_fence && line.starts_with("## ") {
            heading = line.to_string();
        }
        if !in_fence && line.starts_with('|') {
            let marker = if i > 0 && lines[i - 1].starts_with("<!--") {
                lines[i - 1].to_string()
            } else {
                String::new()
            };
            let mut rows = Vec::new();
            while i < lines.len() && lines[i].starts_with('|') {
                let c = cells(lines[i]);
                if !c
                    .iter()
                    .all(|x| !x.is_empty() && x.chars().all(|ch| ch == '-' || ch == ':'))
                {
                    rows.push(c);
                }
                i += 1;
            }
            out.push(Marked {
                marker,
                heading: heading.clone(),
                rows,
            });
            continue;
        }
        i += 1;
    }
    out
}

/// The median as Python's `statistics.median` takes it (the mean of the two middle values for an
/// even count).
fn median(v: &[f64]) -> f64 {
    assert!(!v.is_empty(), "median of no values");
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// The decimal number at the start of `cell` and its count of digits after the point.
fn leading_number(cell: &str) -> Option<(f64, i32)> {
    let num: String = cell
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    let value = num.parse().ok()?;
    let decimals = num.split('.').nth(1).map_or(0, |d| d.len() as i32);
    Some((value, decimals))
}

/// Whether `shown` is `value` rounded to the digits shown: |shown − value| ≤ half a unit of the
/// last digit (with a relative 1e-12 for the binary representation of both).
fn agrees(cell: &str, value: f64, errors: &mut Vec<String>, what: &str) {
    match leading_number(cell) {
        None => errors.push(format!("{what}: no number in {cell:?} (the result file gives {value})")),
        Some((shown, decimals)) => {
            let half_unit = 0.5 * 10f64.powi(-decimals);
            if (shown - value).abs() > half_unit + 1e-12 * value.abs() {
                errors.push(format!(
                    "{what}: the table shows {cell:?}, the result file gives {value}"
                ));
            }
        }
    }
}

fn floats(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("result file: no array {key}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("result file: {key} holds {x}")))
        .collect()
}

/// Checks the table of `compare.py --only simd` against its result: one row per workload, in the
/// file's order; the default path's and the portable path's median CPU time (per step for the
/// training loops, in µs; per call for the noise workload, in s); the median and the range of
/// the per-round ratios portable / default.
fn check_simd(rows: &[Vec<String>], simd: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let default = simd["default_path"].as_str().unwrap_or("?");
    let workloads = simd["workloads"].as_array().expect("result file: simd.workloads");
    let header = &rows[0];
    if header.get(1).map(String::as_str) != Some(&format!("default path ({default})")) {
        errors.push(format!(
            "header {header:?}: the result file's default path is {default}"
        ));
    }
    if rows.len() - 1 != workloads.len() {
        errors.push(format!(
            "{} rows, the result file has {} workloads",
            rows.len() - 1,
            workloads.len()
        ));
    }
    for (row, w) in rows[1..].iter().zip(workloads) {
        let label = w["label"].as_str().unwrap_or("?");
        if row.len() != 5 {
            errors.push(format!("row {row:?}: 5 cells expected"));
            continue;
        }
        if row[0] != label {
            errors.push(format!("row {:?}: the result file's workload is {label:?}", row[0]));
        }
        let unit = w["unit"].as_str().unwrap_or("?");
        let steps = w["steps"].as_f64().expect("result file: steps");
        let scale = if unit == "s" { 1.0 } else { 1e6 / steps };
        let (d, p) = (floats(w, "default_cpu_s"), floats(w, "portable_cpu_s"));
        if d.len() != p.len() {
            errors.push(format!("{label}: unpaired rounds ({} and {})", d.len(), p.len()));
        }
        let ratios: Vec<f64> = d.iter().zip(&p).map(|(d, p)| p / d).collect();
        for (cell, what, value) in [
            (&row[1], "default path", scale * median(&d)),
            (&row[2], "portable", scale * median(&p)),
            (&row[3], "ratio", median(&ratios)),
        ] {
            agrees(cell, value, &mut errors, &format!("{label}, {what}"));
        }
        for cell in &row[1..3] {
            if !cell.ends_with(unit) {
                errors.push(format!("{label}: {cell:?} is not in {unit}"));
            }
        }
        let range: Vec<&str> = row[4].split('–').collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if range.len() != 2 {
            errors.push(format!("{label}: range {:?} is not min–max", row[4]));
        } else {
            agrees(range[0], lo, &mut errors, &format!("{label}, smallest ratio"));
            agrees(range[1], hi, &mut errors, &format!("{label}, largest ratio"));
        }
    }
    errors
}

/// All disagreements between one marked table and its result file.
fn check(table: &Marked, file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let result: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut errors = Vec::new();
    let date = result["date"].as_str().unwrap_or("?");
    if !table.heading.contains(date) {
        errors.push(format!(
            "section {:?} does not carry the sitting's date {date}",
            table.heading
        ));
    }
    if !result["simd"].is_null() {
        errors.extend(check_simd(&table.rows, &result["simd"]));
    } else {
        errors.push("no workload of the result file has a table check".to_string());
    }
    errors
}

fn result_path(marker: &str) -> Option<&str> {
    marker
        .strip_prefix("<!-- results: ")
        .and_then(|m| m.strip_suffix(" -->"))
        .map(str::trim)
}

/// A cell's time in seconds and the half unit of its last digit, in seconds: "1.247 s",
/// "8.25 ms", "4.54 µs", or a bare number (its unit is the table's, the same in both columns).
fn time(cell: &str) -> Option<(f64, f64)> {
    let (value, decimals) = leading_number(cell)?;
    let rest = cell[cell
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(cell.len())..]
        .trim_start();
    let scale = if rest.starts_with("ms") {
        1e-3
    } else if rest.starts_with("µs") {
        1e-6
    } else {
        1.0
    };
    Some((value * scale, 0.5 * 10f64.powi(-decimals) * scale))
}

/// The ratio columns of a transcribed table that disagree with the times they divide.
fn check_ratios(rows: &[Vec<String>]) -> Vec<String> {
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| h == name);
    let mut errors = Vec::new();
    for (c, h) in header.iter().enumerate() {
        let Some((a, b)) = h.split_once(" / ") else { continue };
        let (Some(ca), Some(cb)) = (col(a), col(b)) else {
            continue;
        };
        for row in &rows[1..] {
            let (Some(&(ta, ha)), Some(&(tb, hb)), Some((r, dr))) = (
                time(&row[ca]).as_ref(),
                time(&row[cb]).as_ref(),
                leading_number(row[c].trim_start_matches("**")),
            ) else {
                continue;
            };
            let (lo, hi) = ((ta - ha) / (tb + hb), (ta + ha) / (tb - hb));
            let half = 0.5 * 10f64.powi(-dr);
            if r + half < lo * (1.0 - 1e-12) || r - half > hi * (1.0 + 1e-12) {
                errors.push(format!(
                    "{:?}: {h} shows {:?}, but {:?} / {:?} lies in [{lo:.4}, {hi:.4}]",
                    row[0], row[c], row[ca], row[cb]
                ));
            }
        }
    }
    errors
}

#[test]
fn transcribed_ratios_agree_with_their_times() {
    let text = page();
    let mut checked = 0;
    for table in tables(&text) {
        if table.marker.starts_with("<!-- transcribed: ") {
            let errors = check_ratios(&table.rows);
            assert!(errors.is_empty(), "{}:\n{}", table.heading, errors.join("\n"));
            checked += 1;
        }
    }
    assert!(checked > 0, "no transcribed table");
    // The check can fail: a ratio moved by one in its last digit is outside the rounding.
    let rows = vec![
        vec![
            "workload".into(),
            "peer".into(),
            "nequil".into(),
            "peer / nequil".into(),
        ],
        vec!["w".into(), "14.52".into(), "9.20".into(), "1.59×".into()],
    ];
    assert_eq!(check_ratios(&rows).len(), 1);
    let rows = vec![
        rows[0].clone(),
        vec!["w".into(), "1.247 s".into(), "8.25 ms".into(), "151.3×".into()],
    ];
    assert!(check_ratios(&rows).is_empty(), "{:?}", check_ratios(&rows));
}

#[test]
fn every_checked_table_agrees_with_its_result_file() {
    let text = page();
    let mut checked = 0;
    for table in tables(&text) {
        let Some(rel) = result_path(&table.marker) else {
            continue;
        };
        let errors = check(&table, &root().join(rel));
        assert!(errors.is_empty(), "{rel}:\n{}", errors.join("\n"));
        checked += 1;
    }
    assert!(checked > 0, "no table of performance.md names a result file");
}

#[test]
fn an_edited_number_fails_the_check() {
    let text = page();
    let table = tables(&text)
        .into_iter()
        .find(|t| result_path(&t.marker).is_some())
        .expect("a checked table");
    let file = root().join(result_path(&table.marker).unwrap());
    for (r, c) in [(1, 1), (1, 2), (1, 3), (table.rows.len() - 1, 3)] {
        let mut edited = Marked {
            marker: table.marker.clone(),
            heading: table.heading.clone(),
            rows: table.rows.clone(),
        };
        // Raise the last digit of the number by one.
        let cell = &mut edited.rows[r][c];
        let (value, decimals) = leading_number(cell).expect("a number");
        let unit = 10f64.powi(-decimals);
        let old = format!("{value:.*}", decimals as usize);
        assert!(cell.starts_with(&old), "{cell:?}");
        *cell = cell.replacen(&old, &format!("{:.*}", decimals as usize, value + unit), 1);
        assert!(
            !check(&edited, &file).is_empty(),
            "row {r} column {c} edited to {:?} passed",
            edited.rows[r][c]
        );
    }
    let mut undated = Marked {
        marker: table.marker.clone(),
        heading: "## Somewhere".into(),
        rows: table.rows.clone(),
    };
    assert!(!check(&undated, &file).is_empty());
    undated.rows.pop();
    undated.heading = table.heading.clone();
    assert!(!check(&undated, &file).is_empty(), "a missing row passed");
}

#[test]
fn every_measured_table_is_checked_or_marked_transcribed() {
    let text = page();
    let dated = |h: &str| {
        h.as_bytes().windows(10).any(|w| {
            w.iter().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    *b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
        })
    };
    for table in tables(&text) {
        if dated(&table.heading) {
            assert!(
                result_path(&table.marker).is_some() || table.marker.starts_with("<!-- transcribed: "),
                "a table in {:?} has neither a result file nor a transcribed mark: {:?}",
                table.heading,
                table.rows.first()
            );
        }
    }
    let shown: Vec<String> = tables(&text)
        .iter()
        .filter_map(|t| result_path(&t.marker).map(str::to_string))
        .collect();
    let dir = root().join("bench/results");
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            let rel = format!("bench/results/{name}");
            assert!(shown.contains(&rel), "{rel} is shown by no table of performance.md");
        }
    }
}

#[test]
fn median_is_pythons() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert_eq!(leading_number("0.944 µs/step"), Some((0.944, 3)));
    assert_eq!(leading_number("1.25"), Some((1.25, 2)));
}

/// The README's performance table quotes the book's: every ratio it shows (`1.58×`, a range
/// `2.62–3.25×`, `41% of its memory`) must be a ratio of a table in `performance.md`, to the
/// digits shown, so the README cannot keep a number the book has dropped or changed.
#[test]
fn the_readme_quotes_only_ratios_of_the_book() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Performance")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README.md has a ## Performance section");
    let book = page();
    // Every "x.yz×" in the book's tables, as written.
    let mut shown = std::collections::BTreeSet::new();
    for table in tables(&book) {
        for row in &table.rows {
            for cell in row {
                for word in cell.replace('*', "").split_whitespace() {
                    if let Some(num) = word.strip_suffix('×') {
                        shown.insert(num.to_string());
                    }
                }
            }
        }
    }
    let mut quoted = 0;
    let mut missing = Vec::new();
    for line in section.lines().filter(|l| l.starts_with('|')) {
        for cell in cells(line).iter().skip(1) {
            for word in cell.replace('*', "").split_whitespace() {
                let word = word.trim_start_matches('(');
                let Some(ratio) = word.strip_suffix('×') else { continue };
                for num in ratio.split('–') {
                    quoted += 1;
                    if !shown.contains(num) {
                        missing.push(format!("{num}× (README: {line})"));
                    }
                }
            }
        }
    }
    assert!(
        quoted >= 5,
        "the README's performance table quotes {quoted} ratios; the parser lost them"
    );
    assert!(
        missing.is_empty(),
        "ratios in the README that no table of performance.md shows:\n{}",
        missing.join("\n")
    );
}
