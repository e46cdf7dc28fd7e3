//! The reproduction report: one static, self-contained HTML page (inline CSS, no JavaScript,
//! no external URLs) presenting every experiment with its figure, checks, settings and notes.
//!
//! The page opens with a verdict banner and a summary table (one row per experiment, linking to
//! its section, failed checks counted and highlighted), so a reader sees at a glance whether the
//! reproduction holds, then one section per experiment. Experiments come in groups (the paper's
//! figures, then "Beyond the paper"): each group has a heading row in the table and a heading
//! above its sections. Every piece of text is HTML-escaped;
//! figure paths are relative to the report's directory.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use nequil::lab::io::write_atomic;
use nequil::{io_err, Result};

use crate::files::ReportEntry;

/// Writes `dir/report.html` (creating `dir` if needed), atomically: a reader, or a browser
/// reloading it, sees the previous report or the complete new one.
pub fn write_report(dir: &Path, experiments: &[ReportEntry]) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| io_err!("cannot create directory {}: {e}", dir.display()))?;
    write_atomic(&dir.join("report.html"), render_html(experiments).as_bytes())
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// A relative path as a URL: segments percent-encoded, `/` kept; then HTML-escaped.
fn url_attr(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.replace('\\', "/").bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    escape(&out)
}

/// Wall-clock seconds as "0.42 s", "12.3 s" or "2 min 05 s".
fn format_seconds(s: f64) -> String {
    if !(s.is_finite() && s >= 0.0) {
        "—".into()
    } else if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        let total = s.round() as u64;
        format!("{} min {:02} s", total / 60, total % 60)
    }
}

/// Unique HTML ids made of `[A-Za-z0-9_-]`, one per experiment.
fn anchors(experiments: &[ReportEntry]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    experiments
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let base: String = e
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let base = if base.trim_matches('-').is_empty() {
                format!("experiment-{}", i + 1)
            } else {
                base
            };
            let mut id = format!("exp-{base}");
            let mut k = 2;
            while !seen.insert(id.clone()) {
                id = format!("exp-{base}-{k}");
                k += 1;
            }
            id
        })
        .collect()
}

const CSS: &str = r#"
:root { --pass: #1a7f37; --pass-bg: #e9f7ee; --fail: #c62828; --fail-bg: #fdecea; --muted: #5f6b76;
        --line: #d8dee4; --head: #f3f5f7; }
* { box-sizing: border-box; }
body { margin: 0; background: #fafbfc; color: #1f2328; line-height: 1.45;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, sans-serif; }
main { max-width: 1480px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 0; }
h3 { font-size: 15px; margin: 18px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
a { color: #0b62c4; }
code, .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.verdict { display: flex; gap: 14px; align-items: center; padding: 14px 18px; border-radius: 8px; margin: 14px 0 18px;
           font-size: 17px; font-weight: 600; border: 1px solid; }
.verdict.ok { background: var(--pass-bg); color: var(--pass); border-color: #a6dfb6; }
.verdict.bad { background: var(--fail-bg); color: var(--fail); border-color: #f2b8b5; }
.verdict .big { font-size: 26px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border: 1px solid var(--line); padding: 6px 10px; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.fail td { background: var(--fail-bg); }
tr.fail td:first-child { box-shadow: inset 4px 0 0 var(--fail); }
.badge { display: inline-block; min-width: 52px; text-align: center; padding: 1px 8px; border-radius: 10px;
         font-weight: 700; font-size: 12px; letter-spacing: .03em; color: #fff; }
.badge.pass { background: var(--pass); }
.badge.fail { background: var(--fail); }
.badge.none { background: #8c959f; }
section.exp { background: #fff; border: 1px solid var(--line); border-radius: 8px; margin: 26px 0; padding: 18px 22px; }
section.exp.has-fail { border-left: 6px solid var(--fail); }
.exp-head { display: flex; justify-content: space-between; align-items: baseline; gap: 16px; flex-wrap: wrap; }
.exp-head .name { color: var(--muted); font-weight: 400; font-size: 14px; margin-left: 8px; }
.meta { color: var(--muted); font-size: 14px; white-space: nowrap; }
.claim { margin: 8px 0 12px; font-size: 16px; }
figure { margin: 8px 0 4px; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.nofig { padding: 28px; text-align: center; color: var(--muted); border: 1px dashed var(--line); }
.cols { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 24px; }
@media (max-width: 900px) { .cols { grid-template-columns: minmax(0, 1fr); } }
table.kv th { width: 38%; font-weight: 500; }
ul.notes { margin: 0; padding-left: 20px; }
.empty { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 13px; margin-top: 32px; }
tr.group th { background: #e8edf2; font-size: 15px; }
h2.group { font-size: 23px; margin: 40px 0 0; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
"#;

/// The whole report page.
pub fn render_html(experiments: &[ReportEntry]) -> String {
    let ids = anchors(experiments);
    let total_checks: usize = experiments.iter().map(|e| e.checks.len()).sum();
    let failed: usize = experiments.iter().map(ReportEntry::failed).sum();
    let passed = total_checks - failed;
    let failing_experiments = experiments.iter().filter(|e| e.failed() > 0).count();
    let seconds: f64 = experiments.iter().map(|e| e.seconds).filter(|s| s.is_finite()).sum();

    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str("<title>nequil — reproduction report</title>\n<style>");
    h.push_str(CSS);
    h.push_str("</style>\n</head>\n<body>\n<main>\n");
    h.push_str("<h1>Parameter symmetry and noise equilibrium of SGD — reproduction report</h1>\n");
    let _ = writeln!(
        h,
        "<p class=\"sub\">{} experiment{}, {} check{}, total run time {}. Generated by nequil {}.</p>",
        experiments.len(),
        plural(experiments.len()),
        total_checks,
        plural(total_checks),
        format_seconds(seconds),
        escape(env!("CARGO_PKG_VERSION")),
    );

    // Verdict banner.
    if failed == 0 {
        let _ = writeln!(
            h,
            "<div class=\"verdict ok\" id=\"verdict\"><span class=\"big\">✓</span><span>All {total_checks} \
             check{} passed.</span></div>",
            plural(total_checks)
        );
    } else {
        let _ = writeln!(
            h,
            "<div class=\"verdict bad\" id=\"verdict\"><span class=\"big\">✗</span><span>{failed} of \
             {total_checks} check{} FAILED, in {failing_experiments} experiment{}; {passed} passed.</span></div>",
            plural(total_checks),
            plural(failing_experiments)
        );
    }

    // Summary table.
    h.push_str("<table class=\"summary\">\n<thead><tr><th>Status</th><th>Experiment</th><th>Claim</th>");
    h.push_str("<th>Passed</th><th>Failed</th><th>Run time</th></tr></thead>\n<tbody>\n");
    if experiments.is_empty() {
        h.push_str("<tr><td colspan=\"6\" class=\"empty\">No experiments.</td></tr>\n");
    }
    let groups = group_ids(experiments);
    for ((e, id), g) in experiments.iter().zip(&ids).zip(&groups) {
        if let Some(gid) = g {
            let _ = writeln!(
                h,
                "<tr class=\"group\"><th colspan=\"6\"><a href=\"#{gid}\">{}</a></th></tr>",
                escape(&e.group)
            );
        }
        let (p, f) = (e.passed(), e.failed());
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td><a href=\"#{id}\">{}</a><br><code>{}</code></td><td>{}</td>\
             <td class=\"num\">{p} / {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            if f > 0 { " class=\"fail\"" } else { "" },
            status_badge(e),
            escape(&display_title(e)),
            escape(&e.name),
            escape(&e.claim),
            e.checks.len(),
            if f > 0 {
                format!("<strong>{f}</strong>")
            } else {
                "0".into()
            },
            format_seconds(e.seconds),
        );
    }
    h.push_str("</tbody>\n</table>\n");

    for ((e, id), g) in experiments.iter().zip(&ids).zip(&groups) {
        if let Some(gid) = g {
            let _ = writeln!(h, "<h2 class=\"group\" id=\"{gid}\">{}</h2>", escape(&e.group));
        }
        write_section(&mut h, e, id);
    }

    h.push_str("<footer>Checks compare a theory value with a measured value within the stated tolerance; ");
    h.push_str("each tolerance is derived as its row says, never tuned to pass. ");
    h.push_str("Figures: click for the SVG.</footer>\n</main>\n</body>\n</html>\n");
    h
}

/// For each experiment, the id of the group heading that opens before it: `Some` where a
/// non-empty group starts (the first entry, or one whose group differs from the entry before),
/// `None` elsewhere. Ids are `group-` and the group's letters and digits, made unique.
fn group_ids(experiments: &[ReportEntry]) -> Vec<Option<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut prev: Option<&str> = None;
    experiments
        .iter()
        .map(|e| {
            let starts = !e.group.trim().is_empty() && prev != Some(e.group.as_str());
            prev = Some(e.group.as_str());
            starts.then(|| {
                let base: String = e
                    .group
                    .to_lowercase()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                let mut id = format!("group-{base}");
                let mut k = 2;
                while !seen.insert(id.clone()) {
                    id = format!("group-{base}-{k}");
                    k += 1;
                }
                id
            })
        })
        .collect()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn display_title(e: &ReportEntry) -> String {
    if e.title.trim().is_empty() {
        e.name.clone()
    } else {
        e.title.clone()
    }
}

fn status_badge(e: &ReportEntry) -> &'static str {
    if e.checks.is_empty() {
        "<span class=\"badge none\">NO CHECKS</span>"
    } else if e.failed() > 0 {
        "<span class=\"badge fail\">FAIL</span>"
    } else {
        "<span class=\"badge pass\">PASS</span>"
    }
}

fn write_section(h: &mut String, e: &ReportEntry, id: &str) {
    let (p, f) = (e.passed(), e.failed());
    let _ = writeln!(
        h,
        "<section class=\"exp{}\" id=\"{id}\">",
        if f > 0 { " has-fail" } else { "" }
    );
    let _ = writeln!(
        h,
        "<div class=\"exp-head\"><h2>{} {}<span class=\"name\"><code>{}</code></span></h2>\
         <span class=\"meta\">{p}/{} checks passed{} · run time {} · <a href=\"#verdict\">top</a></span></div>",
        status_badge(e),
        escape(&display_title(e)),
        escape(&e.name),
        e.checks.len(),
        if f > 0 {
            format!(", <strong style=\"color:var(--fail)\">{f} failed</strong>")
        } else {
            String::new()
        },
        format_seconds(e.seconds),
    );
    if !e.claim.trim().is_empty() {
        let _ = writeln!(h, "<p class=\"claim\"><strong>Claim.</strong> {}</p>", escape(&e.claim));
    }

    // Figure.
    if e.figure_png.trim().is_empty() {
        h.push_str("<div class=\"nofig\">No figure for this experiment.</div>\n");
    } else {
        let alt = format!("Figure for {}: {}", e.name, display_title(e));
        let img = format!(
            "<img src=\"{}\" alt=\"{}\" loading=\"eager\">",
            url_attr(&e.figure_png),
            escape(&alt)
        );
        h.push_str("<figure>");
        if e.figure_svg.trim().is_empty() {
            h.push_str(&img);
            h.push_str("</figure>\n");
        } else {
            let svg = url_attr(&e.figure_svg);
            let _ = writeln!(
                h,
                "<a href=\"{svg}\">{img}</a><figcaption>{} — <a href=\"{svg}\">SVG version</a></figcaption></figure>",
                escape(&display_title(e))
            );
        }
    }

    // Checks.
    h.push_str("<h3>Checks</h3>\n");
    if e.checks.is_empty() {
        h.push_str("<p class=\"empty\">No checks for this experiment.</p>\n");
    } else {
        h.push_str("<table class=\"checks\">\n<thead><tr><th>Result</th><th>Claim</th><th>Theory</th>");
        h.push_str("<th>Measured</th><th>Tolerance</th><th>How the tolerance was derived</th></tr></thead>\n<tbody>\n");
        for c in &e.checks {
            let _ = writeln!(
                h,
                "<tr class=\"check {}\"><td><span class=\"badge {}\">{}</span></td><td>{}</td><td class=\"num mono\">{}</td>\
                 <td class=\"num mono\">{}</td><td class=\"num mono\">{}</td><td>{}</td></tr>",
                if c.pass { "pass" } else { "fail" },
                if c.pass { "pass" } else { "fail" },
                if c.pass { "PASS" } else { "FAIL" },
                escape(&c.claim),
                escape(&c.theory),
                escape(&c.measured),
                escape(&c.tolerance),
                escape(&c.derivation),
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }

    // Settings and notes side by side.
    h.push_str("<div class=\"cols\">\n<div>\n<h3>Settings</h3>\n");
    if e.settings.is_empty() {
        h.push_str("<p class=\"empty\">No settings recorded.</p>\n");
    } else {
        h.push_str("<table class=\"kv\">\n<tbody>\n");
        for (k, v) in &e.settings {
            let _ = writeln!(
                h,
                "<tr><th>{}</th><td class=\"mono\">{}</td></tr>",
                escape(k),
                escape(v)
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</div>\n<div>\n<h3>Notes</h3>\n");
    if e.notes.is_empty() {
        h.push_str("<p class=\"empty\">No notes.</p>\n");
    } else {
        h.push_str("<ul class=\"notes\">\n");
        for n in &e.notes {
            let _ = writeln!(h, "<li>{}</li>", escape(n));
        }
        h.push_str("</ul>\n");
    }
    let _ = writeln!(h, "<p class=\"meta\">Run time: {}</p>", format_seconds(e.seconds));
    h.push_str("</div>\n</div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(claim: &str, pass: bool) -> crate::files::Check {
        crate::files::Check {
            claim: claim.into(),
            theory: "1.000".into(),
            measured: if pass { "1.002".into() } else { "1.300".into() },
            tolerance: "± 0.01".into(),
            derivation: "3 standard errors over 8 seeds".into(),
            pass,
        }
    }

    fn entries() -> Vec<ReportEntry> {
        vec![
            ReportEntry {
                name: "fig1-balance".into(),
                group: "The paper".into(),
                title: "Noise balances the layers".into(),
                claim: "SGD drives ‖u‖² − ‖w‖² to its noise equilibrium.".into(),
                figure_png: "fig1-balance/figure.png".into(),
                figure_svg: "fig1-balance/figure.svg".into(),
                checks: vec![check("C(θ) converges", true), check("λ* matches", true)],
                settings: vec![("η".into(), "0.01".into()), ("batch".into(), "8".into())],
                notes: vec!["Gaussian data".into()],
                seconds: 1.5,
            },
            ReportEntry {
                name: "fig2 <script>alert(1)</script>".into(),
                group: "Beyond <the> paper".into(),
                title: "Bad <script>alert('x')</script> & co".into(),
                claim: "a < b && c > d".into(),
                figure_png: "fig 2/figure.png".into(),
                figure_svg: String::new(),
                checks: vec![
                    check("passes", true),
                    check("fails <b>loudly</b>", false),
                    check("fails too", false),
                ],
                settings: vec![("<k>".into(), "\"v\"".into())],
                notes: vec![],
                seconds: 125.0,
            },
            ReportEntry {
                name: "empty".into(),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn report_lists_every_experiment_and_links_its_figure() {
        let html = render_html(&entries());
        assert!(html.starts_with("<!DOCTYPE html>"));
        for id in ["exp-fig1-balance", "exp-fig2--script-alert-1---script-", "exp-empty"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "missing section {id}");
            assert!(html.contains(&format!("href=\"#{id}\"")), "missing summary link {id}");
        }
        assert!(html.contains("Noise balances the layers"));
        assert!(html.contains("<img src=\"fig1-balance/figure.png\" alt=\"Figure for fig1-balance"));
        assert!(html.contains("href=\"fig1-balance/figure.svg\""));
        assert!(html.contains("src=\"fig%202/figure.png\""));
        assert!(html.contains("No figure for this experiment."));
        assert!(html.contains("<td class=\"mono\">0.01</td>"));
        assert!(html.contains("Gaussian data"));
        assert!(html.contains("2 min 05 s"));
        // Self-contained: no scripts, no external resources.
        assert!(!html.contains("<script"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn report_escapes_all_text() {
        let html = render_html(&entries());
        assert!(!html.contains("<script>"));
        assert!(html.contains("Bad &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
        assert!(html.contains("a &lt; b &amp;&amp; c &gt; d"));
        assert!(html.contains("fails &lt;b&gt;loudly&lt;/b&gt;"));
        assert!(html.contains("<th>&lt;k&gt;</th><td class=\"mono\">&quot;v&quot;</td>"));
        assert_eq!(escape("<&>\"'"), "&lt;&amp;&gt;&quot;&#39;");
    }

    #[test]
    fn failed_checks_are_marked_and_counted() {
        let html = render_html(&entries());
        assert!(html.contains("2 of 5 checks FAILED, in 1 experiment; 3 passed."));
        assert!(html.contains("class=\"verdict bad\""));
        assert_eq!(
            html.matches("<tr class=\"check fail\"><td><span class=\"badge fail\">FAIL</span>")
                .count(),
            2
        );
        assert_eq!(
            html.matches("<tr class=\"check pass\"><td><span class=\"badge pass\">PASS</span>")
                .count(),
            3
        );
        // Summary row of the failing experiment is highlighted and shows its count.
        assert!(
            html.contains("<tr class=\"fail\"><td><span class=\"badge fail\">FAIL</span></td><td><a href=\"#exp-fig2")
        );
        assert!(html.contains("<td class=\"num\">1 / 3</td><td class=\"num\"><strong>2</strong></td>"));
        assert!(html.contains("<section class=\"exp has-fail\""));
        assert!(html.contains("NO CHECKS"));

        let ok = render_html(&entries()[..1]);
        assert!(ok.contains("All 2 checks passed."));
        assert!(!ok.contains("FAIL"));
    }

    #[test]
    fn write_report_creates_the_file() {
        let dir = std::env::temp_dir().join(format!("nequil-report-test-{}", std::process::id()));
        write_report(&dir, &entries()).unwrap();
        let html = fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(html.contains("fig1-balance"));
        let empty = render_html(&[]);
        assert!(empty.contains("No experiments.") && empty.contains("All 0 checks passed."));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn groups_get_one_heading_each() {
        let html = render_html(&entries());
        // A heading row in the summary table and a heading above the sections, per group.
        assert_eq!(html.matches("<tr class=\"group\">").count(), 2);
        assert!(html.contains("<h2 class=\"group\" id=\"group-the-paper\">The paper</h2>"));
        assert!(html.contains("<h2 class=\"group\" id=\"group-beyond--the--paper\">Beyond &lt;the&gt; paper</h2>"));
        assert!(html.contains("href=\"#group-the-paper\""));
        // The heading comes before its first section; an entry without a group gets none.
        let head = html.find("id=\"group-beyond--the--paper\"").unwrap();
        let section = html.find("<section class=\"exp has-fail\"").unwrap();
        assert!(head < section);
        assert_eq!(html.matches("<h2 class=\"group\"").count(), 2);
    }

    #[test]
    fn seconds_are_readable() {
        assert_eq!(format_seconds(0.4219), "0.42 s");
        assert_eq!(format_seconds(12.34), "12.3 s");
        assert_eq!(format_seconds(f64::NAN), "—");
    }
}
