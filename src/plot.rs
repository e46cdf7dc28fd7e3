//! Rendering a library [`Figure`] (figures as data) to SVG and PNG files.
//!
//! One drawing routine serves both backends: `plotters`' SVG backend writes into a string and
//! its bitmap backend into an RGB buffer that the `png` crate encodes, so the two files always
//! show the same thing. Text is rasterised with `ab_glyph` from the DejaVu Sans font bundled in
//! `assets/fonts/` (no system font library); the SVG names the generic `sans-serif` family.
//!
//! Conventions a reader can rely on in every figure:
//!
//! * colours are fixed per [`Role`] ([`role_color`]): SGD blue, SGD+WD cyan, GD red, GD+WD
//!   orange, theory black, `Other(i)` from a secondary palette;
//! * [`Style::Line`] is a solid line, [`Style::Dashed`] a dashed line, [`Style::Markers`] small
//!   filled circles; every x–y panel has a legend, placed in the emptiest corner;
//! * non-finite points are skipped (lines break there); on a log axis non-positive values are
//!   skipped too, and the legend says how many were omitted;
//! * axis ranges cover the drawable data with 5 % padding (log axes: 5 % of the decades);
//!   a constant series gets a range of ±10 % (±1 around zero, ±½ decade on a log axis);
//! * heatmaps draw row 0 at the top, with a colour bar: diverging blue–white–red centred on zero
//!   when `symmetric`, viridis from min to max otherwise; non-finite cells are grey; matrices
//!   larger than 200 × 200 are shown as block means (the panel title says so);
//! * anything with nothing to draw (no panels, no series, all points non-finite, a heatmap whose
//!   size does not match its values) is drawn as an empty panel reading "no data".

use std::fs;
use std::io::BufWriter;
use std::path::Path;
use std::sync::OnceLock;

use nequil::lab::experiments::{Figure, Panel, PanelKind, Role, Series, Style};
use nequil::{io_err, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// The font family name every text element uses; the bundled font is registered under it.
const FONT: &str = "sans-serif";
/// DejaVu Sans (Bitstream Vera license; see `assets/fonts/`).
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Width of one panel column in pixels (three columns make a ~1400 px wide PNG).
const PANEL_W: u32 = 470;
/// Height of one panel row in pixels.
const PANEL_H: u32 = 370;
/// Height of the band holding the figure title.
const TITLE_H: u32 = 50;
/// The narrowest figure, so that a one-panel figure is not cramped.
const MIN_W: u32 = 640;
/// More columns than this are wrapped onto further rows.
const MAX_COLUMNS: usize = 6;
/// Heatmaps with more rows or columns than this are drawn as block means.
const MAX_CELLS_PER_AXIS: usize = 200;

const TITLE_SIZE: f64 = 24.0;
const PANEL_TITLE_SIZE: f64 = 17.0;
const AXIS_DESC_SIZE: f64 = 15.0;
const TICK_SIZE: f64 = 12.0;
const LEGEND_SIZE: f64 = 13.0;

const NO_DATA: &str = "no data";
const MISSING_CELL: RGBColor = RGBColor(0xd0, 0xd0, 0xd0);

/// Renders `fig` to an SVG file and a PNG file (parent directories are created).
pub fn render(fig: &Figure, svg_path: &Path, png_path: &Path) -> Result<()> {
    let svg = render_svg(fig)?;
    write_file(svg_path, svg.as_bytes())?;
    let png = render_png(fig)?;
    write_file(png_path, &png)
}

/// The figure as an SVG document.
pub fn render_svg(fig: &Figure) -> Result<String> {
    register_bundled_font()?;
    let (w, h) = figure_size(fig);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        draw_figure(&root, fig).map_err(|e| io_err!("drawing figure '{}' as SVG: {e}", fig.title))?;
        root.present()
            .map_err(|e| io_err!("drawing figure '{}' as SVG: {e}", fig.title))?;
    }
    Ok(svg)
}

/// The figure as the bytes of an 8-bit RGB PNG image.
pub fn render_png(fig: &Figure) -> Result<Vec<u8>> {
    register_bundled_font()?;
    let (w, h) = figure_size(fig);
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw_figure(&root, fig).map_err(|e| io_err!("drawing figure '{}' as PNG: {e}", fig.title))?;
        root.present()
            .map_err(|e| io_err!("drawing figure '{}' as PNG: {e}", fig.title))?;
    }
    encode_png(&rgb, w, h).map_err(|e| io_err!("encoding figure '{}' as PNG: {e}", fig.title))
}

/// The fixed colour of a role, identical in every figure.
pub fn role_color(role: Role) -> RGBColor {
    /// Secondary palette for `Role::Other(i)` (matplotlib's tab10 minus the role colours).
    const OTHER: [RGBColor; 6] = [
        RGBColor(0x2c, 0xa0, 0x2c), // green
        RGBColor(0x94, 0x67, 0xbd), // purple
        RGBColor(0x8c, 0x56, 0x4b), // brown
        RGBColor(0xe3, 0x77, 0xc2), // pink
        RGBColor(0x7f, 0x7f, 0x7f), // grey
        RGBColor(0xbc, 0xbd, 0x22), // olive
    ];
    match role {
        Role::Sgd => RGBColor(0x1f, 0x77, 0xb4),
        Role::SgdWd => RGBColor(0x17, 0xbe, 0xcf),
        Role::Gd => RGBColor(0xd6, 0x27, 0x28),
        Role::GdWd => RGBColor(0xff, 0x7f, 0x0e),
        Role::Theory => RGBColor(0, 0, 0),
        Role::Other(i) => OTHER[i as usize % OTHER.len()],
    }
}

fn register_bundled_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()) {
        Ok(())
    } else {
        Err(io_err!(
            "the bundled font assets/fonts/DejaVuSans.ttf could not be parsed"
        ))
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| io_err!("cannot create directory {}: {e}", dir.display()))?;
    }
    fs::write(path, bytes).map_err(|e| io_err!("cannot write {}: {e}", path.display()))
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(BufWriter::new(&mut out), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

/// Columns and rows of the panel grid.
fn grid(fig: &Figure) -> (usize, usize) {
    let n = fig.panels.len().max(1);
    let cols = fig.columns.clamp(1, MAX_COLUMNS).min(n);
    (cols, n.div_ceil(cols))
}

/// Figure size in pixels: `PANEL_W` per column, `PANEL_H` per row, plus the title band.
fn figure_size(fig: &Figure) -> (u32, u32) {
    let (cols, rows) = grid(fig);
    ((cols as u32 * PANEL_W).max(MIN_W), TITLE_H + rows as u32 * PANEL_H)
}

type DrawResult<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_figure<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (title_area, body) = root.split_vertically(TITLE_H);
    let (w, h) = title_area.dim_in_pixel();
    let (title, size) = fit_text(&title_area, &fig.title, TITLE_SIZE, w.saturating_sub(20))?;
    let style = TextStyle::from((FONT, size).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Center));
    title_area.draw_text(&title, &style, (w as i32 / 2, h as i32 / 2 + 2))?;

    if fig.panels.is_empty() {
        return draw_no_data(&body);
    }
    let (cols, rows) = grid(fig);
    let areas = body.split_evenly((rows, cols));
    for (panel, area) in fig.panels.iter().zip(areas.iter()) {
        draw_panel(area, panel)?;
    }
    Ok(())
}

/// The largest font size (from `max` down to 10 px) at which `text` fits in `width` pixels,
/// truncating with an ellipsis when even the smallest does not fit.
fn fit_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    max: f64,
    width: u32,
) -> std::result::Result<(String, f64), DrawingAreaErrorKind<DB::ErrorType>> {
    let min = 10.0;
    let mut size = max;
    loop {
        let (w, _) = area.estimate_text_size(text, &TextStyle::from((FONT, size).into_font()))?;
        if w <= width {
            return Ok((text.to_string(), size));
        }
        if size <= min {
            break;
        }
        size = (size - 1.0).max(min);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut keep = chars.len();
    while keep > 0 {
        keep -= 1;
        let candidate: String = chars[..keep].iter().collect::<String>() + "…";
        let (w, _) = area.estimate_text_size(&candidate, &TextStyle::from((FONT, min).into_font()))?;
        if w <= width {
            return Ok((candidate, min));
        }
    }
    Ok((String::new(), min))
}

fn no_data_style() -> TextStyle<'static> {
    const GREY: RGBColor = RGBColor(0x80, 0x80, 0x80);
    TextStyle::from((FONT, 18).into_font())
        .color(&GREY)
        .pos(Pos::new(HPos::Center, VPos::Center))
}

/// An empty framed box reading "no data".
fn draw_no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    area.draw(&Rectangle::new(
        [(10, 10), (w - 10, h - 10)],
        BLACK.mix(0.3).stroke_width(1),
    ))?;
    area.draw_text(NO_DATA, &no_data_style(), (w / 2, h / 2))
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> DrawResult<DB> {
    let area = area.margin(4, 6, 8, 14);
    let mut title = panel.title.clone();
    if let PanelKind::Heatmap { rows, cols, .. } = &panel.kind {
        let (br, bc) = block_size(*rows, *cols);
        if br * bc > 1 {
            title = format!("{title} ({br}×{bc} block means)");
        }
    }
    let inner = if title.trim().is_empty() {
        area.margin(10, 0, 0, 0)
    } else {
        let (w, _) = area.dim_in_pixel();
        let (text, size) = fit_text(&area, &title, PANEL_TITLE_SIZE, w.saturating_sub(8))?;
        area.titled(&text, (FONT, size).into_font().color(&BLACK))?
    };
    match &panel.kind {
        PanelKind::Xy { series, log_x, log_y } => draw_xy(&inner, panel, series, *log_x, *log_y),
        PanelKind::Heatmap {
            rows,
            cols,
            values,
            symmetric,
        } => draw_heatmap(&inner, panel, *rows, *cols, values, *symmetric),
    }
}

// ---------------------------------------------------------------------------------------------
// Axes: ranges, ticks and tick labels
// ---------------------------------------------------------------------------------------------

/// One axis, in drawing coordinates (log10 of the value on a log axis).
#[derive(Clone, Debug)]
struct Axis {
    log: bool,
    lo: f64,
    hi: f64,
    /// Labelled ticks (drawing coordinates).
    ticks: Vec<f64>,
    /// Unlabelled light grid lines (drawing coordinates).
    minor: Vec<f64>,
    /// Linear tick spacing (for the number of decimals); unused on log axes.
    step: f64,
}

impl Axis {
    /// Whether a data value can be drawn on this kind of axis.
    fn drawable(v: f64, log: bool) -> bool {
        v.is_finite() && (!log || v > 0.0)
    }

    /// Drawing coordinate of a drawable data value.
    fn to_draw(v: f64, log: bool) -> f64 {
        if log {
            v.log10()
        } else {
            v
        }
    }

    /// An axis covering `values` (drawing coordinates, all finite) with padding.
    fn fit(values: impl IntoIterator<Item = f64>, log: bool) -> Axis {
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            min = min.min(v);
            max = max.max(v);
        }
        let (lo, hi) = if min > max {
            (0.0, 1.0) // nothing to draw: [0, 1], or [1, 10] on a log axis
        } else {
            let span = max - min;
            let scale = min.abs().max(max.abs());
            if span <= 1e-12 * scale || span <= f64::MIN_POSITIVE {
                let c = 0.5 * min + 0.5 * max;
                let half = if log {
                    0.5
                } else if c.abs() > 1e-300 {
                    0.1 * c.abs()
                } else {
                    1.0
                };
                (c - half, c + half)
            } else if span.is_finite() {
                (min - 0.05 * span, max + 0.05 * span)
            } else {
                (min, max)
            }
        };
        let (mut lo, mut hi) = (lo.clamp(-f64::MAX, f64::MAX), hi.clamp(-f64::MAX, f64::MAX));
        if log {
            lo = lo.max(-300.0);
            hi = hi.min(300.0).max(lo + 1e-6);
        }
        Axis::with_range(lo, hi, log)
    }

    /// An axis over exactly `[lo, hi]` (drawing coordinates).
    fn with_range(lo: f64, hi: f64, log: bool) -> Axis {
        if log {
            let (ticks, minor) = log_ticks(lo, hi);
            Axis {
                log,
                lo,
                hi,
                ticks,
                minor,
                step: 1.0,
            }
        } else {
            let (ticks, step) = linear_ticks(lo, hi, 6);
            Axis {
                log,
                lo,
                hi,
                ticks,
                minor: Vec::new(),
                step,
            }
        }
    }

    /// Position of a drawing coordinate in `[0, 1]` along the axis.
    fn frac(&self, t: f64) -> f64 {
        let span = self.hi - self.lo;
        if span > 0.0 && span.is_finite() {
            (t - self.lo) / span
        } else {
            0.5
        }
    }

    /// The tick label at drawing coordinate `t`.
    fn label(&self, t: f64) -> String {
        if self.log {
            format_sig(10f64.powf(t))
        } else {
            format_linear(t, self.step)
        }
    }
}

/// A linear coordinate over `[lo, hi]` with explicit labelled ticks and light grid lines.
///
/// (plotters' `WithKeyPoints` over `f64` cannot take custom label formatters in 0.3.7.)
struct AxisCoord {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl AxisCoord {
    fn new(lo: f64, hi: f64, bold: Vec<f64>, light: Vec<f64>) -> Self {
        AxisCoord { lo, hi, bold, light }
    }
}

impl Ranged for AxisCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        let f = if span > 0.0 && span.is_finite() {
            (value - self.lo) / span
        } else {
            0.5
        };
        let px = f64::from(limit.0) + f * (f64::from(limit.1) - f64::from(limit.0));
        // Far outside the plot only happens for non-finite input; keep pixel arithmetic safe.
        if px.is_finite() {
            px.clamp(-1e6, 1e6).round() as i32
        } else {
            limit.0
        }
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// A "nice" step (1, 2, 2.5 or 5 times a power of ten) at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= raw * (1.0 - 1e-9) {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Ticks at multiples of a nice step within `[lo, hi]`, about `target` of them.
fn linear_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return (Vec::new(), 1.0);
    }
    let step = nice_step(span / target as f64);
    let first = (lo / step).ceil();
    let mut ticks = Vec::new();
    for k in 0..(4 * target + 4) {
        let v = (first + k as f64) * step;
        if v > hi + 1e-9 * step {
            break;
        }
        // Snap values that are zero up to rounding.
        ticks.push(if v.abs() < 1e-9 * step { 0.0 } else { v });
    }
    (ticks, step)
}

/// Ticks for a log axis over `[lo, hi]` (log10 units): decades when the range spans several,
/// 1-2-5 or 1…9 multiples when it spans about one, else linear ticks in value space.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (d0, d1) = (lo.ceil() as i64, hi.floor() as i64);
    let decades = (d1 - d0 + 1).max(0);
    if decades >= 3 {
        let every = (decades + 6) / 7;
        let ticks = (d0..=d1)
            .filter(|d| d.rem_euclid(every) == 0)
            .map(|d| d as f64)
            .collect();
        let mut minor = Vec::new();
        if decades <= 12 {
            for d in (lo.floor() as i64)..=(hi.ceil() as i64) {
                for m in 2..=9 {
                    let t = d as f64 + (m as f64).log10();
                    if t >= lo && t <= hi {
                        minor.push(t);
                    }
                }
            }
        }
        if every > 1 {
            minor.extend((d0..=d1).filter(|d| d.rem_euclid(every) != 0).map(|d| d as f64));
        }
        return (ticks, minor);
    }
    let multiples = |ms: &[u32]| -> Vec<f64> {
        let mut out = Vec::new();
        for d in (lo.floor() as i64)..=(hi.ceil() as i64) {
            for &m in ms {
                let t = d as f64 + f64::from(m).log10();
                if t >= lo - 1e-12 && t <= hi + 1e-12 {
                    out.push(t);
                }
            }
        }
        out
    };
    let all: Vec<f64> = multiples(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let coarse = multiples(&[1, 2, 5]);
    if coarse.len() >= 3 {
        let minor = all
            .into_iter()
            .filter(|t| !coarse.iter().any(|c| (c - t).abs() < 1e-12))
            .collect();
        return (coarse, minor);
    }
    if all.len() >= 3 {
        return (all, Vec::new());
    }
    // Less than a factor of ~3: linear ticks in value space.
    let (vlo, vhi) = (10f64.powf(lo), 10f64.powf(hi));
    let (vt, _) = linear_ticks(vlo, vhi, 4);
    (
        vt.into_iter().filter(|v| *v > 0.0).map(f64::log10).collect(),
        Vec::new(),
    )
}

/// Trims trailing zeros (and a trailing point) of a decimal or of a mantissa in `1.50e-4`.
fn trim_number(s: &str) -> String {
    let (mantissa, exp) = match s.find('e') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let mantissa = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    format!("{mantissa}{exp}")
}

/// Decimals needed to write multiples of `step` exactly (up to 12).
fn step_decimals(step: f64) -> usize {
    for d in 0..=12 {
        let s = step * 10f64.powi(d as i32);
        if (s - s.round()).abs() <= 1e-6 * s.abs().max(1.0) {
            return d;
        }
    }
    12
}

/// A linear-axis tick label: as many decimals as the tick step needs; scientific notation for
/// magnitudes ≥ 1e5 or < 1e-3.
fn format_linear(v: f64, step: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v.abs() <= 1e-9 * step.abs() || v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let decimals = step_decimals(step);
    if !(1e-3..1e5).contains(&a) {
        // Mantissa digits: down to the step's leading digit, plus the step's own (2.5 → 1).
        let step_exp = step.abs().log10().floor();
        let step_mantissa_decimals = step_decimals(step.abs() / 10f64.powf(step_exp)) as f64;
        let digits = (a.log10().floor() - step_exp + step_mantissa_decimals).clamp(0.0, 8.0);
        trim_number(&format!("{:.*e}", digits as usize, v))
    } else {
        trim_number(&format!("{:.*}", decimals, v))
    }
}

/// A value with three significant digits (log-axis labels, colour-bar extremes).
fn format_sig(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let decimals = (2.0 - a.log10().floor()).clamp(0.0, 10.0) as usize;
        trim_number(&format!("{:.*}", decimals, v))
    } else {
        trim_number(&format!("{v:.2e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// x–y panels
// ---------------------------------------------------------------------------------------------

/// A series reduced to drawing coordinates; `None` marks a skipped point (lines break there).
struct Prepared<'a> {
    series: &'a Series,
    points: Vec<Option<(f64, f64)>>,
    /// Points with finite coordinates that a log axis could not show (≤ 0).
    non_positive: usize,
    drawn: usize,
}

fn prepare(series: &Series, log_x: bool, log_y: bool) -> Prepared<'_> {
    let mut non_positive = 0;
    let mut drawn = 0;
    let n = series.x.len().min(series.y.len());
    let points = (0..n)
        .map(|i| {
            let (x, y) = (series.x[i], series.y[i]);
            if Axis::drawable(x, log_x) && Axis::drawable(y, log_y) {
                drawn += 1;
                Some((Axis::to_draw(x, log_x), Axis::to_draw(y, log_y)))
            } else {
                if x.is_finite() && y.is_finite() {
                    non_positive += 1;
                }
                None
            }
        })
        .collect();
    Prepared {
        series,
        points,
        non_positive,
        drawn,
    }
}

impl Prepared<'_> {
    /// Runs of consecutive drawable points.
    fn segments(&self) -> Vec<Vec<(f64, f64)>> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        for p in &self.points {
            match p {
                Some(p) => cur.push(*p),
                None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
                None => {}
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    fn legend_label(&self, log_x: bool, log_y: bool) -> String {
        let mut label = if self.series.label.trim().is_empty() {
            "(unnamed)".to_string()
        } else {
            self.series.label.clone()
        };
        if self.drawn == 0 {
            label.push_str(" (no data)");
        } else if self.non_positive > 0 && (log_x || log_y) {
            label.push_str(&format!(" ({} pts ≤ 0 omitted)", self.non_positive));
        }
        label
    }
}

fn line_style(role: Role) -> ShapeStyle {
    role_color(role).stroke_width(2)
}

/// The corner whose legend-sized box holds the fewest drawn points (lines sampled densely).
fn legend_corner(prepared: &[Prepared], x: &Axis, y: &Axis, box_w: f64, box_h: f64) -> SeriesLabelPosition {
    let corners = [
        (SeriesLabelPosition::UpperRight, (1.0 - box_w, 1.0), (1.0 - box_h, 1.0)),
        (SeriesLabelPosition::UpperLeft, (0.0, box_w), (1.0 - box_h, 1.0)),
        (SeriesLabelPosition::LowerRight, (1.0 - box_w, 1.0), (0.0, box_h)),
        (SeriesLabelPosition::LowerLeft, (0.0, box_w), (0.0, box_h)),
    ];
    let mut counts = [0usize; 4];
    let mut count = |fx: f64, fy: f64| {
        for (k, (_, (x0, x1), (y0, y1))) in corners.iter().enumerate() {
            if fx >= *x0 && fx <= *x1 && fy >= *y0 && fy <= *y1 {
                counts[k] += 1;
            }
        }
    };
    for p in prepared {
        let lines = p.series.style != Style::Markers;
        for seg in p.segments() {
            for (i, &(px, py)) in seg.iter().enumerate() {
                count(x.frac(px), y.frac(py));
                if lines && i + 1 < seg.len() {
                    let (qx, qy) = seg[i + 1];
                    for s in 1..8 {
                        let f = s as f64 / 8.0;
                        count(x.frac(px + f * (qx - px)), y.frac(py + f * (qy - py)));
                    }
                }
            }
        }
    }
    let best = (0..4).min_by_key(|&k| counts[k]).unwrap_or(0);
    corners[best].0.clone()
}

fn draw_xy<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    series: &[Series],
    log_x: bool,
    log_y: bool,
) -> DrawResult<DB> {
    let prepared: Vec<Prepared> = series.iter().map(|s| prepare(s, log_x, log_y)).collect();
    let pts = || prepared.iter().flat_map(|p| p.points.iter().flatten());
    let x = Axis::fit(pts().map(|p| p.0), log_x);
    let y = Axis::fit(pts().map(|p| p.1), log_y);
    let any_drawn = prepared.iter().any(|p| p.drawn > 0);

    let mut chart = ChartBuilder::on(area)
        .margin_right(6)
        .x_label_area_size(46)
        .y_label_area_size(66)
        .build_cartesian_2d(
            AxisCoord::new(x.lo, x.hi, x.ticks.clone(), x.minor.clone()),
            AxisCoord::new(y.lo, y.hi, y.ticks.clone(), y.minor.clone()),
        )?;
    let x_fmt = |v: &f64| x.label(*v);
    let y_fmt = |v: &f64| y.label(*v);
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .axis_desc_style((FONT, AXIS_DESC_SIZE))
        .label_style((FONT, TICK_SIZE))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.05))
        .axis_style(BLACK.mix(0.8))
        .draw()?;

    for p in &prepared {
        let role = p.series.role;
        let color = role_color(role);
        match p.series.style {
            Style::Markers => {
                chart.draw_series(p.points.iter().flatten().map(|&q| Circle::new(q, 3, color.filled())))?;
            }
            Style::Line | Style::Dashed => {
                for seg in p.segments() {
                    if seg.len() == 1 {
                        // An isolated point of a line would otherwise be invisible.
                        chart.draw_series(std::iter::once(Circle::new(seg[0], 2, color.filled())))?;
                    } else if p.series.style == Style::Line {
                        chart.draw_series(LineSeries::new(seg, line_style(role)))?;
                    } else {
                        chart.draw_series(DashedLineSeries::new(seg, 8, 5, line_style(role)))?;
                    }
                }
            }
        }
    }
    if !any_drawn {
        let centre = (0.5 * (x.lo + x.hi), 0.5 * (y.lo + y.hi));
        chart.draw_series(std::iter::once(Text::new(NO_DATA, centre, no_data_style())))?;
    }
    if prepared.is_empty() {
        return Ok(());
    }

    // Legend entries, in series order.
    let labels: Vec<String> = prepared.iter().map(|p| p.legend_label(log_x, log_y)).collect();
    for (p, label) in prepared.iter().zip(&labels) {
        let (style, role) = (p.series.style, p.series.role);
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label(label.as_str())
            .legend(move |(lx, ly)| {
                // One element type for every style; the unused parts are transparent.
                let (stroke, dot) = (line_style(role), role_color(role).filled());
                let hidden = ShapeStyle::from(&TRANSPARENT);
                let (a, b, line, radius, dot) = match style {
                    Style::Line => ((0, 22), (22, 22), stroke, 0, hidden),
                    Style::Dashed => ((0, 8), (13, 22), stroke, 0, hidden),
                    Style::Markers => ((0, 0), (0, 0), hidden, 4, dot),
                };
                EmptyElement::at((lx, ly))
                    + PathElement::new(vec![(a.0, 0), (a.1, 0)], line)
                    + PathElement::new(vec![(b.0, 0), (b.1, 0)], line)
                    + Circle::new((11, 0), radius, dot)
            });
    }
    let (pw, ph) = chart.plotting_area().dim_in_pixel();
    let mut text_w = 0u32;
    for label in &labels {
        text_w = text_w.max(
            area.estimate_text_size(label, &TextStyle::from((FONT, LEGEND_SIZE).into_font()))?
                .0,
        );
    }
    let box_w = (f64::from(text_w) + 50.0) / f64::from(pw.max(1));
    let box_h = (labels.len() as f64 * 19.0 + 16.0) / f64::from(ph.max(1));
    chart
        .configure_series_labels()
        .position(legend_corner(&prepared, &x, &y, box_w, box_h))
        .margin(8)
        .legend_area_size(28)
        .label_font((FONT, LEGEND_SIZE))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
}

// ---------------------------------------------------------------------------------------------
// Heatmaps
// ---------------------------------------------------------------------------------------------

/// Block size (rows, columns) that brings a matrix down to at most `MAX_CELLS_PER_AXIS` cells a side.
fn block_size(rows: usize, cols: usize) -> (usize, usize) {
    (
        rows.div_ceil(MAX_CELLS_PER_AXIS).max(1),
        cols.div_ceil(MAX_CELLS_PER_AXIS).max(1),
    )
}

/// Means of the finite values in each block (NaN where a block has none).
fn block_means(rows: usize, cols: usize, values: &[f64]) -> (usize, usize, Vec<f64>) {
    let (br, bc) = block_size(rows, cols);
    if br * bc == 1 {
        return (rows, cols, values.to_vec());
    }
    let (r2, c2) = (rows.div_ceil(br), cols.div_ceil(bc));
    let mut sum = vec![0.0; r2 * c2];
    let mut cnt = vec![0usize; r2 * c2];
    for r in 0..rows {
        for c in 0..cols {
            let v = values[r * cols + c];
            if v.is_finite() {
                let k = (r / br) * c2 + c / bc;
                sum[k] += v;
                cnt[k] += 1;
            }
        }
    }
    let means = sum
        .iter()
        .zip(&cnt)
        .map(|(s, &n)| if n > 0 { s / n as f64 } else { f64::NAN })
        .collect();
    (r2, c2, means)
}

/// Linear interpolation in a table of evenly spaced colour anchors, `t` in `[0, 1]`.
fn interpolate(anchors: &[(u8, u8, u8)], t: f64) -> RGBColor {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.5 };
    let pos = t * (anchors.len() - 1) as f64;
    let i = (pos.floor() as usize).min(anchors.len() - 2);
    let f = pos - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + f * (f64::from(b) - f64::from(a))).round() as u8;
    let (a, b) = (anchors[i], anchors[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Diverging blue–white–red (ColorBrewer RdBu, reversed, with a white centre).
const DIVERGING: [(u8, u8, u8); 9] = [
    (0x21, 0x66, 0xac),
    (0x43, 0x93, 0xc3),
    (0x92, 0xc5, 0xde),
    (0xd1, 0xe5, 0xf0),
    (0xff, 0xff, 0xff),
    (0xfd, 0xdb, 0xc7),
    (0xf4, 0xa5, 0x82),
    (0xd6, 0x60, 0x4d),
    (0xb2, 0x18, 0x2b),
];

/// Viridis (sequential, perceptually uniform).
const SEQUENTIAL: [(u8, u8, u8); 10] = [
    (0x44, 0x01, 0x54),
    (0x48, 0x28, 0x78),
    (0x3e, 0x49, 0x89),
    (0x31, 0x68, 0x8e),
    (0x26, 0x82, 0x8e),
    (0x1f, 0x9e, 0x89),
    (0x35, 0xb7, 0x79),
    (0x6e, 0xce, 0x58),
    (0xb5, 0xde, 0x2b),
    (0xfd, 0xe7, 0x25),
];

/// The colour scale of a heatmap: value range and palette.
struct ColorScale {
    lo: f64,
    hi: f64,
    symmetric: bool,
}

impl ColorScale {
    /// `None` when no value is finite.
    fn fit(values: &[f64], symmetric: bool) -> Option<ColorScale> {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (min, max) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        if min > max {
            return None;
        }
        let (lo, hi) = if symmetric {
            let m = min.abs().max(max.abs());
            let m = if m > 0.0 { m } else { 1.0 };
            (-m, m)
        } else if max - min <= 1e-12 * min.abs().max(max.abs()) {
            let c = 0.5 * min + 0.5 * max;
            let half = if c.abs() > 1e-300 { 0.1 * c.abs() } else { 1.0 };
            (c - half, c + half)
        } else {
            (min, max)
        };
        Some(ColorScale {
            lo: lo.clamp(-f64::MAX, f64::MAX),
            hi: hi.clamp(-f64::MAX, f64::MAX),
            symmetric,
        })
    }

    fn color(&self, v: f64) -> RGBColor {
        if !v.is_finite() {
            return MISSING_CELL;
        }
        let span = self.hi - self.lo;
        let t = if span > 0.0 && span.is_finite() {
            (v - self.lo) / span
        } else {
            0.5
        };
        if self.symmetric {
            interpolate(&DIVERGING, t)
        } else {
            interpolate(&SEQUENTIAL, t)
        }
    }
}

/// About `target` integer tick positions in `0..n` (1, 2, 5, 10, … apart).
fn index_ticks(n: usize, target: usize) -> Vec<usize> {
    let step = nice_step(n as f64 / target as f64).round().max(1.0) as usize;
    (0..n).step_by(step).collect()
}

fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    rows: usize,
    cols: usize,
    values: &[f64],
    symmetric: bool,
) -> DrawResult<DB> {
    if rows == 0 || cols == 0 || rows.checked_mul(cols) != Some(values.len()) {
        return draw_no_data(area);
    }
    let (rows, cols, values) = block_means(rows, cols, values);
    let Some(scale) = ColorScale::fit(&values, symmetric) else {
        return draw_no_data(area);
    };
    let (w, _) = area.dim_in_pixel();
    let (main, bar) = area.split_horizontally(w.saturating_sub(92));

    // Cell (r, c) is centred on (c, −r): row 0 at the top, tick labels at cell centres.
    let (br, bc) = block_size(rows, cols);
    let x_ticks: Vec<f64> = index_ticks(cols, 6).into_iter().map(|c| c as f64).collect();
    let y_ticks: Vec<f64> = index_ticks(rows, 6).into_iter().map(|r| -(r as f64)).collect();
    let mut chart = ChartBuilder::on(&main)
        .x_label_area_size(46)
        .y_label_area_size(56)
        .build_cartesian_2d(
            AxisCoord::new(-0.5, cols as f64 - 0.5, x_ticks, Vec::new()),
            AxisCoord::new(-(rows as f64) + 0.5, 0.5, y_ticks, Vec::new()),
        )?;
    let x_fmt = |v: &f64| format!("{}", (v.round() as i64) * bc as i64);
    let y_fmt = |v: &f64| format!("{}", (-v.round() as i64) * br as i64);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .axis_desc_style((FONT, AXIS_DESC_SIZE))
        .label_style((FONT, TICK_SIZE))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .axis_style(BLACK.mix(0.8))
        .draw()?;
    chart.draw_series((0..rows).flat_map(|r| {
        let (values, scale) = (&values, &scale);
        (0..cols).map(move |c| {
            let (x, y) = (c as f64, -(r as f64));
            Rectangle::new(
                [(x - 0.5, y + 0.5), (x + 0.5, y - 0.5)],
                scale.color(values[r * cols + c]).filled(),
            )
        })
    }))?;

    // Colour bar, aligned with the matrix.
    let (_, py) = chart.plotting_area().get_pixel_range();
    let (_, by) = bar.get_pixel_range();
    let (top, bottom) = (py.start - by.start, py.end - 1 - by.start);
    let (x0, x1) = (12, 30);
    if bottom <= top {
        return Ok(());
    }
    let height = f64::from(bottom - top);
    for yy in top..=bottom {
        let v = scale.hi - f64::from(yy - top) / height * (scale.hi - scale.lo);
        bar.draw(&Rectangle::new([(x0, yy), (x1, yy + 1)], scale.color(v).filled()))?;
    }
    bar.draw(&Rectangle::new(
        [(x0, top), (x1, bottom)],
        BLACK.mix(0.6).stroke_width(1),
    ))?;
    let label_style = TextStyle::from((FONT, TICK_SIZE).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let (ticks, step) = linear_ticks(scale.lo, scale.hi, 5);
    for t in ticks {
        let yy = top + ((scale.hi - t) / (scale.hi - scale.lo) * height).round() as i32;
        bar.draw(&PathElement::new(vec![(x1, yy), (x1 + 4, yy)], BLACK.stroke_width(1)))?;
        bar.draw_text(&format_linear(t, step), &label_style, (x1 + 7, yy))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_clean() {
        assert_eq!(format_linear(0.30000000000000004, 0.1), "0.3");
        assert_eq!(format_linear(0.25, 0.25), "0.25");
        assert_eq!(format_linear(2.0, 0.5), "2");
        assert_eq!(format_linear(1e-17, 0.2), "0");
        assert_eq!(format_linear(1.5e-4, 5e-5), "1.5e-4");
        assert_eq!(format_linear(2e6, 5e5), "2e6");
        assert_eq!(format_linear(-1.25e6, 2.5e5), "-1.25e6");
        assert_eq!(format_sig(1e-4), "1e-4");
        assert_eq!(format_sig(10f64.powf(2f64.log10() - 3.0)), "0.002");
        assert_eq!(format_sig(100.0), "100");
        assert_eq!(format_sig(2.5e7), "2.5e7");
    }

    #[test]
    fn axes_pad_and_handle_degenerate_ranges() {
        let a = Axis::fit([0.0, 10.0], false);
        assert!((a.lo + 0.5).abs() < 1e-12 && (a.hi - 10.5).abs() < 1e-12);
        assert_eq!(a.ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let c = Axis::fit([3.0, 3.0], false);
        assert!(c.lo < 3.0 && c.hi > 3.0 && !c.ticks.is_empty());
        let z = Axis::fit([0.0], false);
        assert_eq!((z.lo, z.hi), (-1.0, 1.0));
        let e = Axis::fit(std::iter::empty(), true);
        assert_eq!((e.lo, e.hi), (0.0, 1.0));
        let l = Axis::fit([-5.0, 0.0], true);
        assert_eq!(
            l.ticks.iter().map(|t| l.label(*t)).collect::<Vec<_>>(),
            ["1e-5", "1e-4", "0.001", "0.01", "0.1", "1"]
        );
        let narrow = Axis::fit([2f64.log10(), 5f64.log10()], true);
        assert!(narrow.ticks.len() >= 2, "{narrow:?}");
        let tiny = Axis::fit([1f64.log10(), 1.05f64.log10()], true);
        assert!(tiny.ticks.len() >= 2, "{tiny:?}");
        let huge = Axis::fit([-1e308, 1e308], false);
        assert!(huge.lo.is_finite() && huge.hi.is_finite() && huge.lo < huge.hi);
    }

    /// A figure exercising every panel kind, style and role, plus the awkward cases.
    pub(crate) fn demo_figure() -> Figure {
        let t: Vec<f64> = (0..60).map(|i| i as f64 * 0.5).collect();
        let decay = |a: f64, noise: f64| -> Vec<f64> {
            t.iter()
                .enumerate()
                .map(|(i, t)| (-a * t).exp() * (1.0 + noise * ((i * 7919) % 13) as f64 / 13.0))
                .collect()
        };
        let theory = Series::new(
            "theory  C* = η tr Σ / 4γ",
            Role::Theory,
            Style::Line,
            t.clone(),
            decay(0.2, 0.0),
        );
        let sgd = Series::new("SGD (η = 0.1)", Role::Sgd, Style::Markers, t.clone(), decay(0.2, 0.3));
        let sgd_wd = Series::new("SGD + WD", Role::SgdWd, Style::Markers, t.clone(), decay(0.3, 0.2));
        let gd = Series::new("GD", Role::Gd, Style::Line, t.clone(), decay(0.05, 0.0));
        let gd_wd = Series::new("GD + WD", Role::GdWd, Style::Line, t.clone(), decay(0.1, 0.0));
        let threshold = Series::new(
            "stability 2/η",
            Role::Other(0),
            Style::Dashed,
            vec![0.0, 30.0],
            vec![0.5, 0.5],
        );
        let mut with_gaps = decay(0.1, 0.1);
        with_gaps[10] = f64::NAN;
        with_gaps[20] = f64::INFINITY;
        with_gaps[30] = -1.0;
        with_gaps[31] = 0.0;
        let gappy = Series::new("with NaN, ∞, ≤ 0", Role::Other(1), Style::Line, t.clone(), with_gaps);
        let lr: Vec<f64> = (0..9).map(|k| 10f64.powf(-4.0 + 0.5 * k as f64)).collect();
        let c_star: Vec<f64> = lr.iter().map(|l| 3.0 * l).collect();
        let measured: Vec<f64> = lr
            .iter()
            .enumerate()
            .map(|(k, l)| 3.0 * l * (1.0 + 0.1 * (k as f64 - 4.0) / 4.0))
            .collect();
        let n = 12;
        let sym: Vec<f64> = (0..n * n)
            .map(|k| ((k / n) as f64 - (k % n) as f64) / n as f64 * if k % 5 == 0 { -1.0 } else { 1.0 })
            .collect();
        let mut seq: Vec<f64> = (0..6 * 9).map(|k| (k as f64).sqrt()).collect();
        seq[3] = f64::NAN;
        Figure {
            title: "Demo — every panel kind: ‖u‖² − ‖w‖², θ*, λ, Σ".into(),
            columns: 3,
            panels: vec![
                Panel::xy(
                    "Trajectories (log y)",
                    "time t = η·step",
                    "C(θ_t)",
                    vec![sgd, sgd_wd, gd, gd_wd, theory.clone(), threshold],
                    false,
                    true,
                ),
                Panel::xy(
                    "Equilibrium vs learning rate (log–log)",
                    "learning rate η",
                    "C*",
                    vec![
                        Series::new("measured", Role::Sgd, Style::Markers, lr.clone(), measured),
                        Series::new("theory", Role::Theory, Style::Line, lr, c_star),
                    ],
                    true,
                    true,
                ),
                Panel::xy(
                    "Gaps: NaN, inf and ≤ 0 on a log axis",
                    "t",
                    "value",
                    vec![gappy],
                    false,
                    true,
                ),
                Panel::heatmap("Symmetric matrix (diverging)", n, n, sym, true),
                Panel::heatmap("Sequential 6 × 9 with a NaN cell", 6, 9, seq, false),
                Panel::xy(
                    "Degenerate: constant values",
                    "x",
                    "y",
                    vec![Series::new(
                        "constant",
                        Role::Gd,
                        Style::Markers,
                        vec![2.0; 5],
                        vec![7.0; 5],
                    )],
                    false,
                    false,
                ),
                Panel::xy(
                    "Empty panel",
                    "x label of empty",
                    "y label of empty",
                    vec![],
                    false,
                    false,
                ),
                Panel::xy(
                    "All NaN",
                    "x",
                    "y",
                    vec![Series::new(
                        "all NaN",
                        Role::Sgd,
                        Style::Line,
                        vec![f64::NAN; 3],
                        vec![1.0, 2.0, 3.0],
                    )],
                    true,
                    false,
                ),
                Panel::heatmap("Mismatched heatmap", 3, 3, vec![1.0; 4], false),
            ],
        }
    }

    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("decodable PNG header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("decodable PNG data");
        (info.width, info.height)
    }

    #[test]
    fn renders_every_panel_kind_to_png_and_svg() {
        let fig = demo_figure();
        let dir = std::env::temp_dir().join(format!("nequil-plot-test-{}", std::process::id()));
        let (svg_path, png_path) = (dir.join("a/figure.svg"), dir.join("a/figure.png"));
        render(&fig, &svg_path, &png_path).unwrap();
        let png = fs::read(&png_path).unwrap();
        let (w, h) = png_size(&png);
        assert_eq!((w, h), (3 * PANEL_W, TITLE_H + 3 * PANEL_H));
        assert!((1300..1500).contains(&w));
        let svg = fs::read_to_string(&svg_path).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "Demo — every panel kind",
            "time t = η·step",
            "C(θ_t)",
            "learning rate η",
            "SGD (η = 0.1)",
            "SGD + WD",
            "GD + WD",
            "stability 2/η",
            "theory  C* = η tr Σ / 4γ",
            "with NaN, ∞, ≤ 0 (2 pts ≤ 0 omitted)",
            "all NaN (no data)",
            "x label of empty",
            "y label of empty",
            "no data",
            "column",
            "row",
            "1e-4",
        ] {
            assert!(svg.contains(text), "SVG lacks {text:?}");
        }
        // Fixed role colours appear in the SVG.
        for colour in ["#1F77B4", "#17BECF", "#D62728", "#FF7F0E"] {
            assert!(svg.to_uppercase().contains(colour), "SVG lacks colour {colour}");
        }
        // The PNG is not blank: it has plenty of non-white pixels of the SGD colour.
        let decoder = png::Decoder::new(std::io::Cursor::new(&png[..]));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut buf).unwrap();
        let blue = buf.chunks(3).filter(|p| p == &[0x1f, 0x77, 0xb4]).count();
        assert!(blue > 100, "only {blue} SGD-blue pixels");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn never_panics_on_empty_or_odd_figures() {
        let odd = |panels: Vec<Panel>, columns: usize| Figure {
            title: String::new(),
            columns,
            panels,
        };
        let huge = Series::new(
            "huge",
            Role::Other(3),
            Style::Line,
            vec![-1e308, 1e308],
            vec![f64::MAX, -f64::MAX],
        );
        let tiny = Series::new(
            "tiny",
            Role::Other(200),
            Style::Markers,
            vec![5e-324, 1e-323],
            vec![1e-320, 1e-320],
        );
        let one = Series::new("", Role::Sgd, Style::Dashed, vec![1.0], vec![1.0]);
        let ragged = Series::new("ragged", Role::Gd, Style::Line, vec![1.0, 2.0, 3.0], vec![1.0]);
        let figures = [
            odd(vec![], 0),
            odd(vec![], 3),
            odd(vec![Panel::xy("", "", "", vec![], true, true)], 0),
            odd(
                vec![Panel::xy("t", "x", "y", vec![huge.clone(), tiny.clone()], false, false)],
                1,
            ),
            odd(
                vec![Panel::xy("t", "x", "y", vec![huge, tiny, one, ragged], true, true)],
                2,
            ),
            odd(
                vec![
                    Panel::heatmap("z", 0, 0, vec![], true),
                    Panel::heatmap("n", 2, 2, vec![f64::NAN; 4], false),
                ],
                9,
            ),
            odd(
                vec![
                    Panel::heatmap("const", 2, 3, vec![0.0; 6], false),
                    Panel::heatmap("c", 1, 1, vec![0.0], true),
                ],
                2,
            ),
            odd(
                vec![Panel::heatmap("big", 450, 3, (0..1350).map(f64::from).collect(), false)],
                1,
            ),
            odd(
                vec![Panel::xy(
                    &"a very long title ".repeat(30),
                    "x",
                    "y",
                    vec![],
                    false,
                    false,
                )],
                3,
            ),
        ];
        for fig in &figures {
            let svg = render_svg(fig).unwrap();
            assert!(svg.contains("</svg>"));
            let png = render_png(fig).unwrap();
            let (w, h) = png_size(&png);
            assert_eq!((w, h), figure_size(fig));
        }
        assert!(render_svg(&figures[0]).unwrap().contains("no data"));
        assert!(render_svg(&figures[7]).unwrap().contains("(3×1 block means)"));
    }

    /// Writes the demo figure and a demo report to `$NEQUIL_DEMO_DIR` (default: a temporary
    /// directory) for looking at them and for `.ci/browser-check.sh`:
    /// `cargo test --release -- --ignored write_demo_report`.
    #[test]
    #[ignore]
    fn write_demo_report() {
        use crate::report::{write_report, ReportEntry};
        use nequil::lab::files::Check;
        let dir = std::env::var_os("NEQUIL_DEMO_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("nequil-demo-report"));
        let fig = demo_figure();
        render(&fig, &dir.join("demo/figure.svg"), &dir.join("demo/figure.png")).unwrap();
        let small = Figure {
            title: "One panel".into(),
            columns: 3,
            panels: vec![fig.panels[1].clone()],
        };
        render(&small, &dir.join("small/figure.svg"), &dir.join("small/figure.png")).unwrap();
        let row = |claim: &str, pass: bool| Check {
            claim: claim.into(),
            theory: "0.2500".into(),
            measured: if pass { "0.2511".into() } else { "0.3120".into() },
            tolerance: "± 0.0060".into(),
            derivation: "3 × standard error over 16 seeds + O(η) bias bound".into(),
            pass,
        };
        let entries = vec![
            ReportEntry {
                name: "demo".into(),
                title: "Every panel kind".into(),
                claim: "The renderer draws lines, markers, dashes, log axes and heatmaps legibly.".into(),
                figure_png: "demo/figure.png".into(),
                figure_svg: "demo/figure.svg".into(),
                checks: vec![
                    row("C(θ) reaches C* = η tr Σ / 4γ", true),
                    row("λ* from the 1-D solve", true),
                ],
                settings: vec![
                    ("η".into(), "0.1".into()),
                    ("γ".into(), "1e-3".into()),
                    ("seeds".into(), "16".into()),
                ],
                notes: vec!["Synthetic data for the renderer's demo.".into()],
                seconds: 3.25,
            },
            ReportEntry {
                name: "small <b>".into(),
                title: "A failing <script>alert(1)</script> experiment".into(),
                claim: "Shows how a failed check looks.".into(),
                figure_png: "small/figure.png".into(),
                figure_svg: "small/figure.svg".into(),
                checks: vec![row("passes", true), row("fails on purpose", false)],
                settings: vec![("batch".into(), "8".into())],
                notes: vec![],
                seconds: 75.0,
            },
        ];
        write_report(&dir, &entries).unwrap();
        eprintln!("demo report: {}", dir.join("report.html").display());
    }

    #[test]
    fn role_colours_are_fixed() {
        assert_eq!(role_color(Role::Sgd), RGBColor(0x1f, 0x77, 0xb4));
        assert_eq!(role_color(Role::Gd), RGBColor(0xd6, 0x27, 0x28));
        assert_eq!(role_color(Role::Theory), RGBColor(0, 0, 0));
        assert_eq!(role_color(Role::Other(0)), role_color(Role::Other(6)));
        assert_ne!(role_color(Role::Other(0)), role_color(Role::Other(1)));
    }
}
