//! Figures as data: what an experiment wants drawn, independent of how it is drawn.
//!
//! The library describes panels, series and heatmaps; the `nequil` command renders them to SVG
//! and PNG. Colours follow [`Role`], so SGD and GD look the same in every figure, and theory is
//! always drawn as lines, simulation as markers.

use serde::{Deserialize, Serialize};

/// What a series represents; the renderer maps each role to one fixed colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Stochastic gradient descent.
    Sgd,
    /// SGD with weight decay.
    SgdWd,
    /// (Full-batch) gradient descent, or gradient flow.
    Gd,
    /// GD with weight decay.
    GdWd,
    /// A theory prediction.
    Theory,
    /// Anything else; the index picks a colour from a secondary palette.
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

/// One named set of points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Colour role.
    pub role: Role,
    /// Drawing style.
    pub style: Style,
    /// Abscissae.
    pub x: Vec<f64>,
    /// Ordinates (same length as `x`; non-finite points are skipped when drawing).
    pub y: Vec<f64>,
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
        }
    }
}

/// What a panel shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
        values: Vec<f64>,
        /// Colour scale symmetric around zero (diverging palette) rather than min..max.
        symmetric: bool,
    },
}

/// One panel of a figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// A figure: panels laid out in a grid with `columns` panels per row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Figure title.
    pub title: String,
    /// Panels per row.
    pub columns: usize,
    /// The panels, row by row.
    pub panels: Vec<Panel>,
}
