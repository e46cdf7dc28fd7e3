//! The report of [`rebalance`](super::rebalance()) for people and programs: the table that
//! `nequil equilibrium` prints (also `str()` of the Python result) and its JSON form, written once
//! here so that every front end prints the same thing.

use super::orbit::{SolveStatus, Time};
use super::rebalance::RebalanceReport;
use serde_json::json;
use std::fmt;

fn rel_change(after: f64, before: f64) -> f64 {
    let d = (after - before).abs();
    if before != 0.0 {
        d / before.abs()
    } else {
        d
    }
}

/// The name of a solver status in reports (`converged`, `plus_infinity`, …).
pub fn status_name(s: SolveStatus) -> &'static str {
    match s {
        SolveStatus::Converged => "converged",
        SolveStatus::PlusInfinity => "plus_infinity",
        SolveStatus::MinusInfinity => "minus_infinity",
        SolveStatus::Degenerate => "degenerate",
        SolveStatus::NotConverged => "not_converged",
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4e}")
    } else if v > 0.0 {
        "+inf".into()
    } else if v < 0.0 {
        "-inf".into()
    } else {
        "nan".into()
    }
}

/// A JSON number, or a string for non-finite values (JSON has no NaN).
fn json_num(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else {
        json!(format!("{v}"))
    }
}

impl RebalanceReport {
    /// The largest relative loss change: at the joint rebalanced θ and at each row's own-orbit
    /// point.
    pub fn max_rel_loss_change(&self) -> f64 {
        self.rows
            .iter()
            .map(|row| rel_change(row.loss_after, row.loss_before))
            .fold(rel_change(self.loss_after, self.loss_before), f64::max)
    }

    /// The closing line of the table: counts, the loss before and after, the total noise
    /// imbalance and drift over the applied rows; `wrote` (a file name) is appended as
    /// `; wrote {wrote}`.
    pub fn summary_line(&self, wrote: Option<&str>) -> String {
        let t = &self.totals;
        let rel = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let mut s = format!(
            "summary: {} symmetries, {} applied; loss {:.10e} → {:.10e}, max |loss after − loss before|/loss = {:.2e}; \
             total noise imbalance Σ_k|Tr[A_kΣ]| over the applied rows {:.4e} → {:.4e} ({:.2e} → {:.2e} of its parts); \
             Σ_k|drift_k| {:.4e} → {:.4e}",
            self.rows.len(),
            t.applied,
            self.loss_before,
            self.loss_after,
            self.max_rel_loss_change(),
            t.imbalance_before,
            t.imbalance_after,
            rel(t.imbalance_before, t.noise_before),
            rel(t.imbalance_after, t.noise_after),
            t.drift_before,
            t.drift_after,
        );
        if let Some(p) = wrote {
            s.push_str(&format!("; wrote {p}"));
        }
        s
    }

    /// The table `nequil equilibrium` prints: a header line, one row per symmetry, the matrix
    /// families, the notes and the [summary line](RebalanceReport::summary_line).
    pub fn table(&self, wrote: Option<&str>) -> String {
        let r = self;
        let mut s = String::new();
        s.push_str(&format!(
            "model: {}; eta = {}, S = {}, gamma = {}, {} time, n = {}\n",
            r.model,
            r.eta,
            r.batch,
            r.gamma,
            if r.time == Time::Discrete {
                "discrete"
            } else {
                "continuous"
            },
            r.n
        ));
        let header = [
            "symmetry",
            "C",
            "Tr[AΣ]",
            "λ*",
            "C*",
            "Tr[AΣ] after",
            "loss before",
            "loss after",
            "applied",
            "status",
            "note",
        ];
        let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for row in &r.rows {
            cells.push(vec![
                row.name.clone(),
                num(row.c),
                num(row.tr_a_sigma),
                num(row.lambda_star),
                num(row.c_star),
                num(row.tr_a_sigma_after),
                format!("{:.10e}", row.loss_before),
                format!("{:.10e}", row.loss_after),
                if row.applied { "yes" } else { "no" }.into(),
                status_name(row.status).into(),
                row.note.clone().unwrap_or_default(),
            ]);
        }
        let ncol = header.len();
        let widths: Vec<usize> = (0..ncol)
            .map(|c| cells.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &cells {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c == ncol - 1 {
                    line.push_str(cell);
                } else if c == 0 || c >= ncol - 3 {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                    line.push_str("  ");
                }
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        if !r.families.is_empty() {
            s.push_str("matrix families (every symmetric generator at once; reported, not applied):\n");
            let w = r
                .families
                .iter()
                .map(|f| f.name.chars().count())
                .max()
                .unwrap_or(6)
                .max(6);
            s.push_str(&format!(
                "{:<w$}  {:>4}  {:>10}  {:>14}  {:>10}  note\n",
                "family", "dim", "residual", "residual after", "‖B − I‖"
            ));
            for f in &r.families {
                s.push_str(&format!(
                    "{:<w$}  {:>4}  {:>10}  {:>14}  {:>10}  {}\n",
                    f.name,
                    f.dim,
                    num(f.residual),
                    num(f.residual_after),
                    num(f.distance),
                    f.note.clone().unwrap_or_default()
                ));
            }
        }
        for note in &r.notes {
            s.push_str(&format!("note: {note}\n"));
        }
        s.push_str(&self.summary_line(wrote));
        s.push('\n');
        s
    }

    /// The report as the JSON object of `nequil equilibrium --json` (less the file names the
    /// command adds): `model`, `eta`, `batch_size`, `weight_decay`, `time`, `n`, `loss_before`,
    /// `loss_after`, `max_rel_loss_change`, `totals`, `sweeps`, `notes`, `rows`, `families` and
    /// `summary`; a non-finite λ*, C*, distance or loss is the string `"inf"`, `"-inf"` or `"NaN"`.
    pub fn to_json(&self) -> serde_json::Value {
        let r = self;
        let rows: Vec<serde_json::Value> = r
            .rows
            .iter()
            .map(|row| {
                let mut v = serde_json::to_value(row).expect("row serializes");
                v["lambda_star"] = json_num(row.lambda_star);
                v["c_star"] = json_num(row.c_star);
                v
            })
            .collect();
        json!({
            "model": r.model,
            "eta": r.eta,
            "batch_size": r.batch,
            "weight_decay": r.gamma,
            "time": r.time,
            "n": r.n,
            "loss_before": r.loss_before,
            "loss_after": r.loss_after,
            "max_rel_loss_change": r.max_rel_loss_change(),
            "totals": r.totals,
            "sweeps": r.sweeps,
            "notes": r.notes,
            "rows": rows,
            "families": r.families.iter().map(|f| {
                let mut v = serde_json::to_value(f).expect("family row serializes");
                v["distance"] = json_num(f.distance);
                v["loss_at_equilibrium"] = json_num(f.loss_at_equilibrium);
                v
            }).collect::<Vec<_>>(),
            "summary": r.summary_line(None),
        })
    }
}

/// The [table](RebalanceReport::table), without a file name in its summary line.
impl fmt::Display for RebalanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table(None))
    }
}
