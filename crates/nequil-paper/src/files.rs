//! The files of the paper's reproduction, as types: the checks of an experiment, its
//! `summary.json` ([`ExperimentSummary`]), its `figure.json` ([`Figure`]: panels of series, by
//! role and style) and a row of the report ([`ReportEntry`]).
//!
//! They follow the conventions of every JSON file of the project ([`nequil::lab::files`]):
//! numbers that read back to the same bits, non-finite values as `"NaN"`, `"inf"`, `"-inf"`,
//! strict reading that names the file and the field, atomic writes.

use nequil::lab::files::{num, nums, read_json};
use nequil::{io_err, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One claim compared between theory and measurement: a row of an experiment's checks, of its
/// `summary.json` and of the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// The claim in words.
    pub claim: String,
    /// The theory value (formatted; may be a bound such as "≥ 0").
    pub theory: String,
    /// The measured value (formatted).
    pub measured: String,
    /// The tolerance (formatted; "—" for a bound).
    pub tolerance: String,
    /// How the tolerance was derived (standard errors over seeds, finite-η bias, rounding).
    pub derivation: String,
    /// Whether the claim holds within the tolerance.
    pub pass: bool,
}

impl Check {
    /// `|measured − theory| ≤ tol`.
    pub fn close(claim: &str, theory: f64, measured: f64, tol: f64, derivation: &str) -> Check {
        Check {
            claim: claim.into(),
            theory: fmt(theory),
            measured: fmt(measured),
            tolerance: format!("± {}", fmt(tol)),
            derivation: derivation.into(),
            pass: (measured - theory).abs() <= tol,
        }
    }
    /// `measured ≥ bound`.
    pub fn at_least(claim: &str, bound: f64, measured: f64, derivation: &str) -> Check {
        Check {
            claim: claim.into(),
            theory: format!("≥ {}", fmt(bound)),
            measured: fmt(measured),
            tolerance: "—".into(),
            derivation: derivation.into(),
            pass: measured >= bound,
        }
    }
    /// `measured ≤ bound`.
    pub fn at_most(claim: &str, bound: f64, measured: f64, derivation: &str) -> Check {
        Check {
            claim: claim.into(),
            theory: format!("≤ {}", fmt(bound)),
            measured: fmt(measured),
            tolerance: "—".into(),
            derivation: derivation.into(),
            pass: measured <= bound,
        }
    }
}

/// Formats a number compactly for tables (4 significant digits).
pub fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".into()
        } else {
            s.to_string()
        }
    }
}

/// `summary.json` of an experiment (`nequil reproduce`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSummary {
    /// Short name (`fig1-scale-invariance`), also the directory name.
    pub name: String,
    /// One-line title.
    pub title: String,
    /// The paper's claim, in one sentence.
    pub claim: String,
    /// Number of checks that pass.
    pub passed: usize,
    /// Number of checks that fail.
    pub failed: usize,
    /// The checks.
    pub checks: Vec<Check>,
    /// Settings (including those the paper does not state) as `[key, value]` pairs, in display
    /// order.
    pub settings: Vec<(String, String)>,
    /// Remarks for the reader.
    pub notes: Vec<String>,
    /// Wall-clock seconds the experiment took (informational).
    #[serde(with = "num")]
    pub seconds: f64,
}

impl ExperimentSummary {
    /// Reads an experiment's `summary.json`; beyond the fields, `passed` and `failed` must
    /// count the checks.
    pub fn read(path: &Path) -> Result<ExperimentSummary> {
        let s: ExperimentSummary = read_json(path)?;
        let passed = s.checks.iter().filter(|c| c.pass).count();
        if s.passed != passed || s.failed != s.checks.len() - passed {
            return Err(io_err!(
                "{}: fields `passed`/`failed` ({}/{}) do not count the checks ({passed} pass, {} fail)",
                path.display(),
                s.passed,
                s.failed,
                s.checks.len() - passed
            ));
        }
        Ok(s)
    }
}

/// One experiment as the reproduction report shows it (a row of its summary table and a
/// section).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportEntry {
    /// Short identifier (also the figure directory name), e.g. `fig2-matrix-factorization`.
    pub name: String,
    /// The heading of the group it belongs to (`The paper`, `Beyond the paper`); consecutive
    /// entries of one group are shown under one heading, an empty group under none.
    pub group: String,
    /// Human title.
    pub title: String,
    /// The paper's claim the experiment tests, in one sentence.
    pub claim: String,
    /// Path of the figure's PNG relative to the report directory (empty: no figure).
    pub figure_png: String,
    /// Path of the figure's SVG relative to the report directory (empty: none).
    pub figure_svg: String,
    /// Theory-versus-measurement checks.
    pub checks: Vec<Check>,
    /// Settings (key, value), in display order.
    pub settings: Vec<(String, String)>,
    /// Free-text notes (caveats, observations).
    pub notes: Vec<String>,
    /// Wall-clock run time in seconds.
    #[serde(with = "num")]
    pub seconds: f64,
}

impl ReportEntry {
    /// Number of passed checks.
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|c| c.pass).count()
    }
    /// Number of failed checks.
    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }
}

// ---------------------------------------------------------------------------------------------
// Figures (`figure.json`).

/// What a series represents; the renderer maps each role to one fixed colour, the same in every
/// figure: one colour per method (SGD blue, GD red, momentum cyan, Adam green, theory black).
/// A method's variants (weight decay, another learning rate or initialization) keep its colour
/// and differ by their [`Mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Stochastic gradient descent.
    Sgd,
    /// SGD with weight decay (SGD's colour; open square marks unless the series names its mark).
    SgdWd,
    /// (Full-batch) gradient descent, or gradient flow.
    Gd,
    /// GD with weight decay (GD's colour; open square marks unless the series names its mark).
    GdWd,
    /// SGD with heavy-ball momentum.
    Momentum,
    /// Adam (or AdamW).
    Adam,
    /// A theory prediction.
    Theory,
    /// Anything that is not a method (a layer, a matrix entry, a reference quantity); the index
    /// picks a colour from a secondary palette that shares no colour with the methods.
    Other(u8),
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Style {
    /// A line (theory, or dense trajectories).
    Line,
    /// Markers only (measured points).
    Markers,
    /// A dashed line (references, e.g. a stability threshold).
    Dashed,
}

/// The shape of a series' markers. Filled marks are drawn first and hollow ones (larger, so
/// that a filled mark under them still shows) on top.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mark {
    /// A filled disc (radius 3 px).
    Circle,
    /// A filled square (6 px a side).
    Square,
    /// A filled upward triangle.
    Triangle,
    /// A filled diamond.
    Diamond,
    /// An open circle (radius 5 px).
    Ring,
    /// An open square (10 px a side).
    OpenSquare,
    /// An open upward triangle.
    OpenTriangle,
    /// An open diamond.
    OpenDiamond,
}

impl Mark {
    /// Every mark, in the order the renderer hands them out to series of one colour: filled
    /// and hollow in turn, so that two series of one colour whose points coincide both show.
    pub const ALL: [Mark; 8] = [
        Mark::Circle,
        Mark::OpenSquare,
        Mark::Triangle,
        Mark::Ring,
        Mark::Diamond,
        Mark::OpenTriangle,
        Mark::Square,
        Mark::OpenDiamond,
    ];
    /// Whether the mark is an outline (drawn above the filled marks).
    pub fn hollow(self) -> bool {
        matches!(
            self,
            Mark::Ring | Mark::OpenSquare | Mark::OpenTriangle | Mark::OpenDiamond
        )
    }
}

/// Where a run diverged: the renderer draws a cross (×) at `x` on the top edge of the plot and
/// adds "diverged at step N" to the series' legend entry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Divergence {
    /// The update at which the run stopped (the `step` of [`nequil::Error::Diverged`]).
    pub step: u64,
    /// The abscissa of that update, in the unit of the panel's x label (the step itself when
    /// the x axis counts iterations, η·step when it is the time t).
    #[serde(with = "num")]
    pub x: f64,
}

/// One named set of points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Colour role.
    pub role: Role,
    /// Drawing style.
    pub style: Style,
    /// Abscissae, in the unit of the panel's x label.
    #[serde(with = "nums")]
    pub x: Vec<f64>,
    /// Ordinates (same length as `x`; non-finite points are skipped when drawing).
    #[serde(with = "nums")]
    pub y: Vec<f64>,
    /// The markers' shape; absent: the role's own (an open square for weight decay, else a
    /// disc), or
    /// the next free one when a series of the same colour earlier in the panel has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<Mark>,
    /// Where the run diverged, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<Divergence>,
}

impl Series {
    /// A series from points.
    pub fn new(label: impl Into<String>, role: Role, style: Style, x: Vec<f64>, y: Vec<f64>) -> Self {
        Series {
            label: label.into(),
            role,
            style,
            x,
            y,
            mark: None,
            diverged: None,
        }
    }
    /// The same series with markers of shape `mark`.
    pub fn with_mark(mut self, mark: Mark) -> Self {
        self.mark = Some(mark);
        self
    }
    /// The same series, marked as a run that diverged at update `step` (abscissa `x`); `None`
    /// leaves it as it is.
    pub fn diverged_at(mut self, step: Option<u64>, x: impl Fn(u64) -> f64) -> Self {
        self.diverged = step.map(|step| Divergence { step, x: x(step) });
        self
    }
}

/// What a panel shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum PanelKind {
    /// x–y plot of several series.
    Xy {
        /// The series.
        series: Vec<Series>,
        /// Logarithmic x axis.
        log_x: bool,
        /// Logarithmic y axis.
        log_y: bool,
    },
    /// A matrix as a heatmap (row-major values), with a colour bar.
    Heatmap {
        /// Number of rows.
        rows: usize,
        /// Number of columns.
        cols: usize,
        /// Row-major values.
        #[serde(with = "nums")]
        values: Vec<f64>,
        /// Colour scale symmetric around zero (diverging palette) rather than min..max.
        symmetric: bool,
    },
}

/// One panel of a figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// Panel title.
    pub title: String,
    /// x-axis label, with units or conventions.
    pub x_label: String,
    /// y-axis label, with units or conventions.
    pub y_label: String,
    /// The content.
    pub kind: PanelKind,
}

impl Panel {
    /// An x–y panel.
    pub fn xy(title: &str, x_label: &str, y_label: &str, series: Vec<Series>, log_x: bool, log_y: bool) -> Self {
        Panel {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            kind: PanelKind::Xy { series, log_x, log_y },
        }
    }
    /// A heatmap panel.
    pub fn heatmap(title: &str, rows: usize, cols: usize, values: Vec<f64>, symmetric: bool) -> Self {
        Panel {
            title: title.into(),
            x_label: "column".into(),
            y_label: "row".into(),
            kind: PanelKind::Heatmap {
                rows,
                cols,
                values,
                symmetric,
            },
        }
    }
}

/// `figure.json` of an experiment: what it wants drawn, independent of how it is drawn. Panels
/// are laid out in a grid with `columns` panels per row. Colours follow [`Role`], so SGD and GD
/// look the same in every figure; theory is drawn as lines, simulation as markers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// Figure title.
    pub title: String,
    /// Panels per row.
    pub columns: usize,
    /// The panels, row by row.
    pub panels: Vec<Panel>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use nequil::lab::files::parse_json;

    fn same_bits(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn non_finite_numbers_round_trip_in_json() {
        let v = vec![1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e-310];
        let s = Series::new("s", Role::Sgd, Style::Line, v.clone(), v.clone());
        let back: Series = parse_json(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!(same_bits(&back.x, &v) && same_bits(&back.y, &v));
        let e = parse_json::<Series>(r#"{"label":"s","role":"sgd","style":"line","x":["nan"],"y":[]}"#).unwrap_err();
        assert!(e.contains("x[0]"), "{e}");
    }
}
