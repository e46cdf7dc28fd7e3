//! Rendering a library [`Figure`] (figures as data) to SVG and PNG files.
//!
//! One drawing routine serves both backends: `plotters`' SVG backend writes into a string and
//! its bitmap backend into an RGB buffer that the `png` crate encodes, so the two files always
//! show the same thing. Text is rasterised with `ab_glyph` from the DejaVu Sans font bundled in
//! `assets/fonts/` (no system font library); the SVG names the generic `sans-serif` family.
//!
//! Conventions a reader can rely on in every figure:
//!
//! * one colour per method, fixed per [`Role`] ([`role_color`]) and the same in every figure:
//!   SGD blue, GD red, momentum cyan, Adam green, theory black; a method with weight decay keeps
//!   the method's colour; `Other(i)` (layers, entries, reference quantities) comes from a
//!   secondary palette that shares no colour with the methods; a legend label that begins with a
//!   method's name (`SGD …`, `GD …`, `momentum …`, `Adam …`, `theory …`) is drawn in that
//!   method's colour, and a panel of one model's parts (layers, channels, matrix entries),
//!   coloured by part, names the part first (`ρ_0, SGD`);
//! * [`Style::Line`] is a solid line, [`Style::Dashed`] a dashed line, [`Style::Markers`] marks
//!   of a [`Mark`] shape: series of one colour in a panel never share a shape (weight decay is an
//!   open square unless the series says otherwise); every x–y panel has a legend, placed in the
//!   emptiest corner;
//! * z-order: dashed lines at the back, then lines, then filled marks (the series with the most
//!   points first, so that a sparse series lies on a dense one), then hollow marks, then the
//!   theory's lines and dashes on top;
//! * a run that diverged ([`Series::diverged`]) gets a cross (×) on the top edge of the plot at
//!   its divergence step, and "diverged at step N (×)" in its legend entry;
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

use crate::files::{Figure, Mark, Panel, PanelKind, Role, Series, Style};
use nequil::{io_err, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::{CoordTranslate, Shift};
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
    let plan = plan(fig);
    let (w, h) = planned_size(fig, &plan);
    let mut svg = String::new();
    let mut layouts = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        draw_figure(&root, fig, SVG_METRICS, &plan, &mut layouts)
            .map_err(|e| io_err!("drawing figure '{}' as SVG: {e}", fig.title))?;
        root.present()
            .map_err(|e| io_err!("drawing figure '{}' as SVG: {e}", fig.title))?;
    }
    // Labels are text elements laid out by the viewer (sub- and superscripts as tspans).
    let labels: String = layouts.iter().flat_map(|l| &l.svg).map(|t| format!("{t}\n")).collect();
    let end = svg.rfind("</svg>").unwrap_or(svg.len());
    svg.insert_str(end, &labels);
    Ok(svg)
}

/// The figure as the bytes of an 8-bit RGB PNG image.
pub fn render_png(fig: &Figure) -> Result<Vec<u8>> {
    let (rgb, (w, h), _) = render_rgb(fig)?;
    encode_png(&rgb, w, h).map_err(|e| io_err!("encoding figure '{}' as PNG: {e}", fig.title))
}

/// An RGB image: its pixels, its size, and where each panel put its plot, data, legend and text.
type Rendered = (Vec<u8>, (u32, u32), Vec<PanelLayout>);

/// The figure as an RGB buffer of its size, with its layout.
fn render_rgb(fig: &Figure) -> Result<Rendered> {
    render_rgb_with(fig, PNG_METRICS)
}

/// The figure as an RGB buffer, drawn with the metrics `m` (the PNG's, or with `m.ids` the
/// identification colours of the layout tests).
fn render_rgb_with(fig: &Figure, m: Metrics) -> Result<Rendered> {
    register_bundled_font()?;
    let plan = plan(fig);
    let (w, h) = planned_size(fig, &plan);
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    let mut layouts = Vec::new();
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw_figure(&root, fig, m, &plan, &mut layouts)
            .map_err(|e| io_err!("drawing figure '{}' as PNG: {e}", fig.title))?;
        root.present()
            .map_err(|e| io_err!("drawing figure '{}' as PNG: {e}", fig.title))?;
    }
    Ok((rgb, (w, h), layouts))
}

/// Secondary palette for `Role::Other(i)`: matplotlib's tab10 without the methods' colours.
const OTHER: [RGBColor; 6] = [
    RGBColor(0xff, 0x7f, 0x0e), // orange
    RGBColor(0x94, 0x67, 0xbd), // purple
    RGBColor(0x8c, 0x56, 0x4b), // brown
    RGBColor(0xe3, 0x77, 0xc2), // pink
    RGBColor(0x7f, 0x7f, 0x7f), // grey
    RGBColor(0xbc, 0xbd, 0x22), // olive
];

/// The fixed colour of a role, identical in every figure: one colour per method (a method with
/// weight decay has the method's colour), none of them in the secondary palette of `Other(i)`.
pub fn role_color(role: Role) -> RGBColor {
    match role {
        Role::Sgd | Role::SgdWd => RGBColor(0x1f, 0x77, 0xb4), // blue
        Role::Gd | Role::GdWd => RGBColor(0xd6, 0x27, 0x28),   // red
        Role::Momentum => RGBColor(0x17, 0xbe, 0xcf),          // cyan
        Role::Adam => RGBColor(0x2c, 0xa0, 0x2c),              // green
        Role::Theory => RGBColor(0, 0, 0),
        Role::Other(i) => OTHER[i as usize % OTHER.len()],
    }
}

/// The marks of a panel's series: a series' own [`Series::mark`], else its role's (an open
/// square for weight decay, a disc otherwise), else the first shape that no other series of its colour in
/// the panel has; so two series of one colour never share a shape while there are shapes left.
fn assign_marks(series: &[Series]) -> Vec<Mark> {
    let colour = |s: &Series| role_color(s.role);
    let own = |s: &Series| {
        if matches!(s.role, Role::SgdWd | Role::GdWd) {
            Mark::OpenSquare
        } else {
            Mark::Circle
        }
    };
    let markers = |s: &Series| s.style == Style::Markers;
    // Explicit marks first, then weight decay's open square, then the rest in order.
    let mut marks: Vec<Option<Mark>> = series.iter().map(|s| s.mark).collect();
    let mut taken: Vec<(RGBColor, Mark)> = series
        .iter()
        .filter(|s| markers(s))
        .filter_map(|s| s.mark.map(|m| (colour(s), m)))
        .collect();
    for wd_pass in [true, false] {
        for (k, s) in series.iter().enumerate() {
            let is_wd = own(s) == Mark::OpenSquare;
            if marks[k].is_some() || (wd_pass && !is_wd) {
                continue;
            }
            let c = colour(s);
            let free = |m: &Mark| !taken.contains(&(c, *m));
            let m = if free(&own(s)) {
                own(s)
            } else {
                Mark::ALL.into_iter().find(free).unwrap_or(own(s))
            };
            if markers(s) {
                taken.push((c, m));
            }
            marks[k] = Some(m);
        }
    }
    marks.into_iter().map(|m| m.unwrap_or(Mark::Circle)).collect()
}

/// The dash pattern (dash, gap in pixels) of each series that is a line: `None` solid. A
/// [`Style::Dashed`] series has (8, 5); a [`Style::Line`] series is solid unless a line of its
/// colour came before it in the panel, then it takes the next of dotted (2, 4), long dashes
/// (14, 4) and dash-dot-like (4, 8), so that two lines of one method stay apart.
fn assign_dashes(series: &[Series]) -> Vec<Option<(u32, u32)>> {
    const VARIANTS: [(u32, u32); 3] = [(2, 4), (14, 4), (4, 8)];
    let mut seen: Vec<(RGBColor, usize)> = Vec::new();
    series
        .iter()
        .map(|s| match s.style {
            Style::Markers => None,
            Style::Dashed => Some((8, 5)),
            Style::Line => {
                let c = role_color(s.role);
                let n = match seen.iter_mut().find(|(sc, _)| *sc == c) {
                    Some((_, n)) => {
                        *n += 1;
                        *n - 1
                    }
                    None => {
                        seen.push((c, 1));
                        0
                    }
                };
                n.checked_sub(1).map(|v| VARIANTS[v % VARIANTS.len()])
            }
        })
        .collect()
}

/// Draws a mark centred at `at` (pixels of `area`).
fn draw_mark<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    mark: Mark,
    colour: RGBColor,
) -> DrawResult<DB> {
    let fill = colour.filled();
    let line = colour.stroke_width(2);
    let path = |pts: &[(i32, i32)]| {
        let mut v: Vec<(i32, i32)> = pts.iter().map(|(dx, dy)| (x + dx, y + dy)).collect();
        v.push(v[0]);
        v
    };
    match mark {
        Mark::Circle => area.draw(&Circle::new((x, y), 3, fill)),
        Mark::Square => area.draw(&Rectangle::new([(x - 3, y - 3), (x + 3, y + 3)], fill)),
        Mark::Triangle => area.draw(&Polygon::new(path(&[(0, -4), (4, 3), (-4, 3)]), fill)),
        Mark::Diamond => area.draw(&Polygon::new(path(&[(0, -4), (4, 0), (0, 4), (-4, 0)]), fill)),
        Mark::Ring => area.draw(&Circle::new((x, y), 5, line)),
        Mark::OpenSquare => area.draw(&Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], line)),
        Mark::OpenTriangle => area.draw(&PathElement::new(path(&[(0, -6), (6, 4), (-6, 4)]), line)),
        Mark::OpenDiamond => area.draw(&PathElement::new(path(&[(0, -6), (6, 0), (0, 6), (-6, 0)]), line)),
    }
}

/// The reach of a mark around its centre, in pixels (for keeping legends off it).
fn mark_reach(mark: Mark) -> f64 {
    if mark.hollow() {
        7.0
    } else {
        4.0
    }
}

/// Draws the cross (×) of a divergence centred at `at` (pixels of `area`).
fn draw_divergence<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    colour: RGBColor,
) -> DrawResult<DB> {
    let r = DIVERGENCE_ARM;
    let style = colour.stroke_width(3);
    area.draw(&PathElement::new(vec![(x - r, y - r), (x + r, y + r)], style))?;
    area.draw(&PathElement::new(vec![(x - r, y + r), (x + r, y - r)], style))
}

/// Half the width of a divergence cross, in pixels.
const DIVERGENCE_ARM: i32 = 6;

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
    nequil::lab::io::write_atomic(path, bytes)
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(BufWriter::new(&mut out), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // Figures are mostly flat colour: per-row filters and strong deflate make them several
        // times smaller for the report and the book.
        enc.set_compression(png::Compression::Best);
        enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
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

/// Figure size in pixels: `PANEL_W` per column, `PANEL_H` per row plus the height of the
/// legends placed under the plots of that row, plus the title band.
#[cfg(test)]
fn figure_size(fig: &Figure) -> (u32, u32) {
    planned_size(fig, &plan(fig))
}

fn planned_size(fig: &Figure, plan: &Plan) -> (u32, u32) {
    let (cols, _) = grid(fig);
    let rows: u32 = plan.row_extra.iter().map(|e| PANEL_H + e).sum();
    ((cols as u32 * PANEL_W).max(MIN_W), TITLE_H + rows.max(PANEL_H))
}

/// How a figure makes room for legends that do not fit inside their plots: the extra height of
/// each row of panels, and the band each such panel keeps under its plot for the legend.
#[derive(Clone, Debug)]
struct Plan {
    row_extra: Vec<u32>,
    bands: Vec<Option<f64>>,
}

/// Lays the figure out once at the plain size: every legend that finds no place inside its
/// plot gets a band under it, and its row grows by that band, so that plots keep their height.
fn plan(fig: &Figure) -> Plan {
    let (cols, rows) = grid(fig);
    let mut plan = Plan {
        row_extra: vec![0; rows],
        bands: vec![None; fig.panels.len()],
    };
    if register_bundled_font().is_err() {
        return plan;
    }
    let (w, h) = planned_size(fig, &plan);
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    let mut layouts = Vec::new();
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        if draw_figure(&root, fig, PNG_METRICS, &plan, &mut layouts).is_err() {
            return plan;
        }
    }
    // layouts[0] is the figure title; the panels follow in order.
    for (k, l) in layouts.iter().skip(1).enumerate() {
        if let (Some(legend), false) = (l.legend, l.legend_inside) {
            let band = (legend.y1 - legend.y0 + 8.0).ceil();
            plan.bands[k] = Some(band);
            plan.row_extra[k / cols] = plan.row_extra[k / cols].max(band as u32);
        }
    }
    plan
}

type DrawResult<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A rectangle in backend pixels, `[x0, x1) × [y0, y1)`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rect {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Rect {
    fn new(x0: f64, y0: f64, x1: f64, y1: f64) -> Rect {
        Rect { x0, y0, x1, y1 }
    }

    /// The pixel rectangle of a drawing area.
    fn of<DB: DrawingBackend, CT: CoordTranslate>(area: &DrawingArea<DB, CT>) -> Rect {
        let (xs, ys) = area.get_pixel_range();
        Rect::new(
            f64::from(xs.start),
            f64::from(ys.start),
            f64::from(xs.end),
            f64::from(ys.end),
        )
    }

    fn contains(&self, (x, y): (f64, f64)) -> bool {
        x >= self.x0 && x < self.x1 && y >= self.y0 && y < self.y1
    }

    fn inflate(&self, d: f64) -> Rect {
        Rect::new(self.x0 - d, self.y0 - d, self.x1 + d, self.y1 + d)
    }

    /// Whether `inner` lies inside this rectangle, allowing `slack` pixels of rounding.
    fn holds(&self, inner: &Rect, slack: f64) -> bool {
        inner.x0 >= self.x0 - slack
            && inner.x1 <= self.x1 + slack
            && inner.y0 >= self.y0 - slack
            && inner.y1 <= self.y1 + slack
    }
}

/// Where a panel put things, in backend pixels: what the layout tests check (legends never over
/// data, text never outside its panel).
#[derive(Clone, Debug, Default)]
#[cfg_attr(not(test), allow(dead_code))] // read by the layout tests
struct PanelLayout {
    /// The panel's own area.
    panel: Option<Rect>,
    /// The plotting area of an x–y panel.
    plot: Option<Rect>,
    /// The legend box, if any.
    legend: Option<Rect>,
    /// Whether the legend sits inside the plotting area (where no data comes near).
    legend_inside: bool,
    /// Every drawn data point, and points sampled every 2 px along drawn lines.
    data: Vec<(f64, f64)>,
    /// Titles, axis descriptions and legend labels: the text and its box.
    texts: Vec<(String, Rect)>,
    /// SVG only: the `<text>` elements of those labels, added to the document after drawing.
    svg: Vec<String>,
    /// The series of an x–y panel, in the panel's order.
    series: Vec<SeriesLayout>,
    /// The axes of an x–y panel and what they had to hold.
    axes: Option<AxesLayout>,
    /// A heatmap's colour scale (lo, hi) and the range of its finite values (min, max).
    scale: Option<((f64, f64), (f64, f64))>,
}

/// The x and y axes of an x–y panel, every drawn point and the abscissae of the divergence
/// crosses, in drawing coordinates (for the layout tests).
#[derive(Clone, Debug)]
#[cfg_attr(not(test), allow(dead_code))] // read by the layout tests
struct AxesLayout {
    x: Axis,
    y: Axis,
    points: Vec<(f64, f64)>,
    crosses: Vec<f64>,
}

/// How one series of an x–y panel was drawn (for the layout tests).
#[derive(Clone, Debug)]
#[cfg_attr(not(test), allow(dead_code))] // read by the layout tests
struct SeriesLayout {
    /// The legend entry's text.
    legend: String,
    /// The series' colour.
    colour: RGBColor,
    style: Style,
    mark: Mark,
    /// The dash pattern of a line (`None`: solid, or markers).
    dash: Option<(u32, u32)>,
    /// Points drawn.
    drawn: usize,
    /// The divergence step and where its cross was drawn (backend pixels).
    diverged: Option<(u64, (f64, f64))>,
}

// ---------------------------------------------------------------------------------------------
// Text: sub- and superscripts and accents, laid out by the renderer
// ---------------------------------------------------------------------------------------------
//
// Labels use a small notation that the renderer lays out itself, so that it reads the same in
// the PNG (glyphs rasterised from the bundled font, which places every glyph at its advance and
// cannot stack a combining accent on its base) and in the SVG:
//
// * `_x`, `_max`, `_ij`, `_ε`: a subscript of lower-case letters and digits; `_U`: one capital
//   (so `Γ̃_UU` is Γ̃ with subscript U, then U), or a method name (`_GD`, `_SGD`, `_WD`, `_GF`);
//   `_{…}` for anything else; `_` before anything else is a plain underscore;
// * `^{…}` or `^c`: a superscript;
// * a combining macron or overline (U+0304, U+0305), tilde (U+0303), circumflex (U+0302) or dot
//   (U+0307) after a character: an accent drawn over it (Σ̄, Γ̃); other combining marks are
//   dropped.

/// How a backend shows text of font size `size`: an em is `em × size` pixels and the bundled
/// font's advances scale by `advance`; `raster` says whether labels are rasterised here from the
/// font's outlines (PNG) or written as text elements for the viewer to lay out (SVG).
#[derive(Clone, Copy, Debug)]
struct Metrics {
    em: f64,
    advance: f64,
    raster: bool,
    /// For the layout tests: paint the k-th series of every x–y panel in [`id_colour`]`(k)`, so
    /// that the pixels each series keeps after everything is drawn can be counted.
    ids: bool,
}

/// PNG labels are rasterised here with ab_glyph at a pixel height of `size` (DejaVu Sans:
/// ascent 1901 + descent 483 = 2384 units for an em of 2048), glyph by glyph with side bearings
/// and kerning. (plotters' own bitmap text, used for tick labels, drops side bearings, which
/// overlaps `Tr` and `Wᵀ]` and cannot stack an accent on its letter.)
const PNG_METRICS: Metrics = Metrics {
    em: 2048.0 / 2384.0,
    advance: 1.0,
    raster: true,
    ids: false,
};

/// plotters writes SVG text with `font-size = size / 1.24`; labels are measured (to fit them) as
/// if the viewer's sans-serif were DejaVu Sans at that size.
const SVG_METRICS: Metrics = Metrics {
    em: 1.0 / 1.24,
    advance: (1.0 / 1.24) / (2048.0 / 2384.0),
    raster: false,
    ids: false,
};

/// The identification colour of a panel's k-th series (k < 256): no grey (grid lines, text),
/// and blends with white never reach another one (their green and blue channels differ).
#[cfg_attr(not(test), allow(dead_code))]
fn id_colour(k: usize) -> RGBColor {
    RGBColor(k as u8, 0x3c, 0xa5)
}

/// Size of sub- and superscripts relative to the text.
const SCRIPT_SCALE: f64 = 0.72;
/// Line box above and below the baseline, in ems (room for accents over capitals and for
/// subscripts).
const LINE_ASCENT: f64 = 1.06;
const LINE_DESCENT: f64 = 0.42;
/// The smallest font size text is shrunk to before it is wrapped or shortened.
const MIN_TEXT_SIZE: f64 = 10.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Base,
    Sub,
    Sup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accent {
    Bar,
    Tilde,
    Hat,
    Dot,
}

impl Accent {
    /// The combining character (for SVG text, which the viewer lays out).
    fn combining_mark(self) -> char {
        match self {
            Accent::Bar => '\u{0304}',
            Accent::Tilde => '\u{0303}',
            Accent::Hat => '\u{0302}',
            Accent::Dot => '\u{0307}',
        }
    }

    /// The font's spacing (non-combining) form of the accent.
    fn spacing_mark(self) -> &'static str {
        match self {
            Accent::Bar => "\u{00af}",
            Accent::Tilde => "\u{02dc}",
            Accent::Hat => "\u{02c6}",
            Accent::Dot => "\u{02d9}",
        }
    }
}

/// A run of text at one level, or one accented character.
#[derive(Clone, Debug, PartialEq)]
struct Piece {
    text: String,
    level: Level,
    accent: Option<Accent>,
}

/// `Some(accent)` for a combining mark the renderer draws, `Some(None)` for one it drops, `None`
/// for a character that is not a combining mark.
fn combining(c: char) -> Option<Option<Accent>> {
    match c {
        '\u{0304}' | '\u{0305}' => Some(Some(Accent::Bar)),
        '\u{0303}' => Some(Some(Accent::Tilde)),
        '\u{0302}' => Some(Some(Accent::Hat)),
        '\u{0307}' => Some(Some(Accent::Dot)),
        '\u{0300}'..='\u{036f}' | '\u{20d0}'..='\u{20ff}' => Some(None),
        _ => None,
    }
}

/// Characters a subscript run continues with: lower-case Latin and Greek letters and digits.
fn subscript_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || ('\u{03b1}'..='\u{03c9}').contains(&c) || "ϵϑϕϱϖ".contains(c)
}

/// How many characters after `_` at `chars[j..]` form the subscript (0: a plain underscore).
fn subscript_len(chars: &[char], j: usize) -> usize {
    let Some(&c) = chars.get(j) else { return 0 };
    let marks = |k: usize| chars[k..].iter().take_while(|c| combining(**c).is_some()).count();
    if c.is_uppercase() {
        for name in ["SGD", "GD", "WD", "GF"] {
            let n = name.chars().count();
            let matches = chars.len() >= j + n && chars[j..j + n].iter().copied().eq(name.chars());
            if matches && !chars.get(j + n).is_some_and(|c| c.is_alphanumeric()) {
                return n;
            }
        }
        return 1 + marks(j + 1);
    }
    let mut k = j;
    while k < chars.len() && (subscript_char(chars[k]) || (k > j && combining(chars[k]).is_some())) {
        k += 1;
    }
    k - j
}

/// Splits a label into pieces (see the notation above).
fn parse_rich(text: &str) -> Vec<Piece> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<Piece> = Vec::new();
    let push = |out: &mut Vec<Piece>, c: char, level: Level| {
        if let Some(accent) = combining(c) {
            let Some(accent) = accent else { return };
            let Some(last) = out.last_mut() else { return };
            if last.level != level || last.accent.is_some() {
                return; // an accent on nothing, or a second accent: dropped
            }
            let Some(base) = last.text.pop() else { return };
            if last.text.is_empty() {
                out.pop();
            }
            out.push(Piece {
                text: base.to_string(),
                level,
                accent: Some(accent),
            });
            return;
        }
        match out.last_mut() {
            Some(last) if last.level == level && last.accent.is_none() => last.text.push(c),
            _ => out.push(Piece {
                text: c.to_string(),
                level,
                accent: None,
            }),
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let level = match c {
            '_' => Level::Sub,
            '^' => Level::Sup,
            _ => Level::Base,
        };
        if level == Level::Base {
            push(&mut out, c, Level::Base);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'{') {
            let close = chars[i + 2..].iter().position(|&c| c == '}').map(|p| i + 2 + p);
            let end = close.unwrap_or(chars.len());
            for &c in &chars[i + 2..end] {
                push(&mut out, c, level);
            }
            i = close.map_or(chars.len(), |k| k + 1);
            continue;
        }
        let n = if level == Level::Sub {
            subscript_len(&chars, i + 1)
        } else {
            match chars.get(i + 1) {
                Some(c) if !c.is_whitespace() => {
                    1 + chars[i + 2..].iter().take_while(|c| combining(**c).is_some()).count()
                }
                _ => 0,
            }
        };
        if n == 0 {
            push(&mut out, c, Level::Base);
            i += 1;
        } else {
            for &c in &chars[i + 1..i + 1 + n] {
                push(&mut out, c, level);
            }
            i += 1 + n;
        }
    }
    out
}

/// A piece placed on a line: offset along the line and below the baseline, in pixels.
#[derive(Clone, Debug)]
struct Placed {
    piece: Piece,
    size: f64,
    u: f64,
    v: f64,
    width: f64,
}

/// One line of laid-out text.
#[derive(Clone, Debug)]
struct RichLine {
    source: String,
    /// The font size of its base text.
    size: f64,
    pieces: Vec<Placed>,
    width: f64,
    /// Pixels above and below the baseline.
    ascent: f64,
    descent: f64,
}

/// The bundled font's outlines.
fn bundled_font() -> &'static ab_glyph::FontRef<'static> {
    static FONT_REF: OnceLock<ab_glyph::FontRef<'static>> = OnceLock::new();
    FONT_REF.get_or_init(|| ab_glyph::FontRef::try_from_slice(DEJAVU_SANS).expect("the bundled font parses"))
}

/// Advance width of plain text in the bundled font (with kerning), in pixels.
fn text_width(text: &str, size: f64, m: Metrics) -> f64 {
    use ab_glyph::{Font, ScaleFont};
    let font = bundled_font().as_scaled(size as f32);
    let mut width = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            width += font.kern(p, id);
        }
        width += font.h_advance(id);
        prev = Some(id);
    }
    f64::from(width) * m.advance
}

/// Rasterises `text` with its baseline starting at `(u, v)` of a line's frame (see [`to_area`]):
/// every glyph at its pen position plus side bearing, with kerning and anti-aliased coverage.
fn raster_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    size: f64,
    origin: (f64, f64),
    rotated: bool,
    (u, v): (f64, f64),
) -> DrawResult<DB> {
    use ab_glyph::{point, Font, ScaleFont};
    let font = bundled_font().as_scaled(size as f32);
    let mut pen = u as f32;
    let mut prev = None;
    let mut pixels: Vec<((i32, i32), f32)> = Vec::new();
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            pen += font.kern(p, id);
        }
        let glyph = id.with_scale_and_position(size as f32, point(pen, v as f32));
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|x, y, coverage| {
                if coverage > 0.0 {
                    let local = (f64::from(b.min.x) + f64::from(x), f64::from(b.min.y) + f64::from(y));
                    pixels.push((to_area(origin, rotated, local), coverage.min(1.0)));
                }
            });
        }
        pen += font.h_advance(id);
        prev = Some(id);
    }
    for (at, coverage) in pixels {
        area.draw_pixel(at, &BLACK.mix(f64::from(coverage)))?;
    }
    Ok(())
}

fn layout_line(text: &str, size: f64, m: Metrics) -> RichLine {
    let em = m.em * size;
    let mut u = 0.0;
    let mut pieces = Vec::new();
    for piece in parse_rich(text) {
        let (psize, v) = match piece.level {
            Level::Base => (size, 0.0),
            Level::Sub => (size * SCRIPT_SCALE, 0.22 * em),
            Level::Sup => (size * SCRIPT_SCALE, -0.40 * em),
        };
        let width = text_width(&piece.text, psize, m);
        pieces.push(Placed {
            piece,
            size: psize,
            u,
            v,
            width,
        });
        u += width;
    }
    RichLine {
        source: text.to_string(),
        size,
        pieces,
        width: u,
        ascent: LINE_ASCENT * em,
        descent: LINE_DESCENT * em,
    }
}

/// Lines of text at one size.
#[derive(Clone, Debug)]
struct Fitted {
    lines: Vec<RichLine>,
}

impl Fitted {
    fn width(&self) -> f64 {
        self.lines.iter().map(|l| l.width).fold(0.0, f64::max)
    }
    fn line_height(&self) -> f64 {
        self.lines.first().map_or(0.0, |l| l.ascent + l.descent)
    }
    fn height(&self) -> f64 {
        self.lines.len() as f64 * self.line_height()
    }
}

/// The spaces of `text` (outside braces) where a second line may start: first those after a
/// comma or semicolon or before a parenthesis, then the others.
fn split_points(text: &str) -> [Vec<usize>; 2] {
    let mut depth = 0i32;
    let (mut good, mut other) = (Vec::new(), Vec::new());
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ' ' if depth <= 0 && i > 0 => {
                let after_punct = matches!(bytes[i - 1], b',' | b';');
                let before_paren = bytes.get(i + 1) == Some(&b'(');
                if after_punct || before_paren {
                    good.push(i);
                } else {
                    other.push(i);
                }
            }
            _ => {}
        }
    }
    [good, other]
}

/// `text` at the largest size from `max` down to [`MIN_TEXT_SIZE`] at which it fits in `width`
/// pixels: on one line (when `lines > 1`, shrinking by at most 3 px), else on two lines split at
/// a space, else on one line at the smallest size, shortened with an ellipsis.
fn fit_rich(text: &str, width: f64, max: f64, lines: usize, m: Metrics) -> Fitted {
    let sizes = |min: f64| {
        let mut s = max;
        std::iter::from_fn(move || {
            let out = (s >= min - 1e-9).then_some(s);
            s -= 1.0;
            out
        })
    };
    // Text that may wrap shrinks a little on one line before it wraps, and more on two.
    let one_line_min = if lines > 1 {
        (max - 3.0).max(MIN_TEXT_SIZE)
    } else {
        MIN_TEXT_SIZE
    };
    for size in sizes(one_line_min) {
        let line = layout_line(text, size, m);
        if line.width <= width {
            return Fitted { lines: vec![line] };
        }
    }
    if lines > 1 {
        let splits = split_points(text);
        for size in sizes(MIN_TEXT_SIZE) {
            for class in &splits {
                let best = class
                    .iter()
                    .map(|&i| {
                        (
                            layout_line(text[..i].trim_end(), size, m),
                            layout_line(text[i..].trim_start(), size, m),
                        )
                    })
                    .filter(|(a, b)| a.width <= width && b.width <= width)
                    .min_by(|x, y| x.0.width.max(x.1.width).total_cmp(&y.0.width.max(y.1.width)));
                if let Some((a, b)) = best {
                    return Fitted { lines: vec![a, b] };
                }
            }
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut keep = chars.len();
    while keep > 0 {
        keep -= 1;
        if combining(chars[keep]).is_some() {
            continue;
        }
        let candidate: String = chars[..keep].iter().collect::<String>().trim_end().to_string() + "…";
        let line = layout_line(&candidate, MIN_TEXT_SIZE, m);
        if line.width <= width {
            return Fitted { lines: vec![line] };
        }
    }
    Fitted {
        lines: vec![layout_line("", MIN_TEXT_SIZE, m)],
    }
}

/// Maps a point of a line's own frame (`u` along the text, `v` down from the baseline) to
/// drawing-area pixels, for a line whose baseline starts at `origin`; rotated text reads
/// bottom to top.
fn to_area(origin: (f64, f64), rotated: bool, (u, v): (f64, f64)) -> (i32, i32) {
    let (x, y) = if rotated {
        (origin.0 + v, origin.1 - u)
    } else {
        (origin.0 + u, origin.1 + v)
    };
    (x.round() as i32, y.round() as i32)
}

/// Rasterises one line with its baseline starting at `origin` (area pixels) and returns its box
/// in backend pixels.
fn draw_line<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    line: &RichLine,
    origin: (f64, f64),
    rotated: bool,
    m: Metrics,
) -> std::result::Result<Rect, DrawingAreaErrorKind<DB::ErrorType>> {
    // Text at `(u, v)` of the line's frame (the baseline's start), as glyphs.
    let put = |text: &str, size: f64, (u, v): (f64, f64)| raster_text(area, text, size, origin, rotated, (u, v));
    for p in &line.pieces {
        put(&p.piece.text, p.size, (p.u, p.v))?;
        if let Some(accent) = p.piece.accent {
            // The font's spacing accent, centred over the character. It is drawn at the height
            // of lower-case accents; over capitals and tall letters it is lifted by the
            // difference between cap height and x-height (0.73 − 0.55 em) and a little more.
            let mark = accent.spacing_mark();
            let tall = p
                .piece
                .text
                .chars()
                .all(|c| c.is_uppercase() || c.is_ascii_digit() || "bdfhkltβδζθλξ".contains(c));
            let lift = if tall { 0.25 * m.em * p.size } else { 0.0 };
            let w = text_width(mark, p.size, m);
            put(mark, p.size, (p.u + 0.5 * (p.width - w), p.v - lift))?;
        }
    }
    let (bx, by) = area.get_base_pixel();
    Ok(line_rect(
        line,
        (f64::from(bx) + origin.0, f64::from(by) + origin.1),
        rotated,
    ))
}

/// The box of a line whose baseline starts at `origin` (backend pixels).
fn line_rect(line: &RichLine, (x, y): (f64, f64), rotated: bool) -> Rect {
    if rotated {
        Rect::new(x - line.ascent, y - line.width, x + line.descent, y)
    } else {
        Rect::new(x, y - line.ascent, x + line.width, y + line.descent)
    }
}

/// Escapes text for XML.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One line as an SVG `<text>` element whose sub- and superscripts are `<tspan>`s, so that the
/// viewer's own font lays it out: `at` is the baseline point (backend pixels) of the line's
/// start, or of its middle when `centred`.
fn svg_line(line: &RichLine, at: (f64, f64), centred: bool, rotated: bool) -> String {
    let px = line.size * SVG_METRICS.em; // the font size plotters writes for the same text
    let mut body = String::new();
    let mut v = 0.0;
    for p in &line.pieces {
        let (shift, scale) = match p.piece.level {
            Level::Base => (0.0, 1.0),
            Level::Sub => (0.22 * px, SCRIPT_SCALE),
            Level::Sup => (-0.40 * px, SCRIPT_SCALE),
        };
        let mut text = xml_escape(&p.piece.text);
        if let Some(accent) = p.piece.accent {
            text.push(accent.combining_mark());
        }
        let size_attr = if scale < 1.0 {
            format!(" font-size=\"{:.2}\"", px * scale)
        } else {
            String::new()
        };
        body.push_str(&format!("<tspan dy=\"{:.2}\"{size_attr}>{text}</tspan>", shift - v));
        v = shift;
    }
    let transform = if rotated {
        format!(" transform=\"rotate(-90, {:.2}, {:.2})\"", at.0, at.1)
    } else {
        String::new()
    };
    format!(
        "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"{}\" font-family=\"{FONT}\" font-size=\"{px:.2}\" fill=\"#000000\"{transform}>{body}</text>",
        at.0,
        at.1,
        if centred { "middle" } else { "start" },
    )
}

/// Draws fitted lines at `at` (area pixels), centred on it or starting from it: horizontally, or
/// rotated to read bottom to top (first line leftmost). Records each line's box, and in SVG
/// the line's `<text>` element, in `layout`.
fn draw_fitted<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fitted: &Fitted,
    at: (f64, f64),
    centred: bool,
    rotated: bool,
    m: Metrics,
    layout: &mut PanelLayout,
) -> DrawResult<DB> {
    let lh = fitted.line_height();
    let block = fitted.height();
    let (bx, by) = area.get_base_pixel();
    let (bx, by) = (f64::from(bx), f64::from(by));
    for (k, line) in fitted.lines.iter().enumerate() {
        // Offset of this line's baseline across the text direction, from the block's centre.
        let across = -0.5 * block + k as f64 * lh + line.ascent;
        let along = if centred { -0.5 * line.width } else { 0.0 };
        let origin = if rotated {
            (at.0 + across, at.1 - along)
        } else {
            (at.0 + along, at.1 + across)
        };
        let rect = if m.raster {
            draw_line(area, line, origin, rotated, m)?
        } else {
            let anchor = if rotated {
                (bx + at.0 + across, by + at.1)
            } else {
                (bx + at.0, by + at.1 + across)
            };
            layout.svg.push(svg_line(line, anchor, centred, rotated));
            line_rect(line, (bx + origin.0, by + origin.1), rotated)
        };
        layout.texts.push((line.source.clone(), rect));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Figures and panels
// ---------------------------------------------------------------------------------------------

fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &Figure,
    m: Metrics,
    plan: &Plan,
    layouts: &mut Vec<PanelLayout>,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (title_area, body) = root.split_vertically(TITLE_H);
    let (w, h) = title_area.dim_in_pixel();
    let title = fit_rich(&fig.title, f64::from(w.saturating_sub(20)), TITLE_SIZE, 1, m);
    let mut layout = PanelLayout {
        panel: Some(Rect::of(&title_area)),
        ..PanelLayout::default()
    };
    let centre = (f64::from(w) / 2.0, f64::from(h) / 2.0 + 2.0);
    draw_fitted(&title_area, &title, centre, true, false, m, &mut layout)?;
    layouts.push(layout);

    if fig.panels.is_empty() {
        return draw_no_data(&body);
    }
    let (cols, _) = grid(fig);
    let mut rest = body;
    let mut areas = Vec::new();
    for extra in &plan.row_extra {
        let (row, next) = rest.split_vertically(PANEL_H + extra);
        areas.extend(row.split_evenly((1, cols)));
        rest = next;
    }
    for (k, (panel, area)) in fig.panels.iter().zip(areas.iter()).enumerate() {
        let mut layout = PanelLayout {
            panel: Some(Rect::of(area)),
            ..PanelLayout::default()
        };
        let band = plan.bands.get(k).copied().flatten();
        draw_panel(area, panel, m, band, &mut layout)?;
        layouts.push(layout);
    }
    Ok(())
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

/// Draws one panel; `band` reserves that many pixels under an x–y plot for its legend.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    m: Metrics,
    band: Option<f64>,
    layout: &mut PanelLayout,
) -> DrawResult<DB> {
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
        let fitted = fit_rich(&title, f64::from(w.saturating_sub(8)), PANEL_TITLE_SIZE, 1, m);
        let band = fitted.height() + 6.0;
        draw_fitted(&area, &fitted, (f64::from(w) / 2.0, band / 2.0), true, false, m, layout)?;
        area.margin(band.ceil() as u32, 0, 0, 0)
    };
    match &panel.kind {
        PanelKind::Xy { series, log_x, log_y } => draw_xy(&inner, panel, series, *log_x, *log_y, m, band, layout),
        PanelKind::Heatmap {
            rows,
            cols,
            values,
            symmetric,
        } => draw_heatmap(&inner, panel, *rows, *cols, values, *symmetric, m, layout),
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
        if let Some(d) = self.series.diverged {
            label.push_str(&format!(" — diverged at step {} (×)", d.step));
        }
        if self.drawn == 0 {
            if self.series.diverged.is_none() {
                label.push_str(" (no data)");
            }
        } else if self.non_positive > 0 && (log_x || log_y) {
            label.push_str(&format!(" ({} pts ≤ 0 omitted)", self.non_positive));
        }
        label
    }
}

fn line_style(colour: RGBColor) -> ShapeStyle {
    colour.stroke_width(2)
}

/// Pixels of the gap between the plotting area and its tick labels, and of the tick labels'
/// band under the x axis.
const TICK_BAND: f64 = TICK_SIZE + 14.0;
/// Padding inside a legend box, the width of a legend entry's sample, and the gap after it.
const LEGEND_PAD: f64 = 6.0;
const LEGEND_SAMPLE: f64 = 26.0;
const LEGEND_GAP: f64 = 6.0;
/// Free space kept between a legend inside the plot and any data point or line.
const LEGEND_CLEARANCE: f64 = 8.0;

/// Where the cross of a divergence at drawing abscissa `x` goes: on the top edge of the plot, in
/// backend pixels.
fn divergence_px<CT>(chart: &ChartContext<'_, impl DrawingBackend, CT>, x: f64, y_top: f64) -> (f64, f64)
where
    CT: CoordTranslate<From = (f64, f64)>,
{
    let (px, _) = chart.as_coord_spec().translate(&(x, y_top));
    let plot = Rect::of(chart.plotting_area());
    (f64::from(px), plot.y0 + f64::from(DIVERGENCE_ARM) + 3.0)
}

/// Points in backend pixels along everything a panel draws: every point and the reach of its
/// mark, every 2 px along its lines, and the corners of the divergence crosses (at the top of
/// the y range `y_top`).
fn data_pixels<CT>(
    chart: &ChartContext<'_, impl DrawingBackend, CT>,
    prepared: &[Prepared],
    marks: &[Mark],
    log_x: bool,
    y_top: f64,
) -> Vec<(f64, f64)>
where
    CT: CoordTranslate<From = (f64, f64)>,
{
    let px = |p: &(f64, f64)| {
        let (x, y) = chart.as_coord_spec().translate(p);
        (f64::from(x), f64::from(y))
    };
    let around = |out: &mut Vec<(f64, f64)>, (x, y): (f64, f64), r: f64| {
        out.extend([(x, y), (x - r, y), (x + r, y), (x, y - r), (x, y + r)]);
    };
    let mut out = Vec::new();
    for (p, &mark) in prepared.iter().zip(marks) {
        if let Some(d) = p.series.diverged.filter(|d| Axis::drawable(d.x, log_x)) {
            let at = divergence_px(chart, Axis::to_draw(d.x, log_x), y_top);
            around(&mut out, at, f64::from(DIVERGENCE_ARM) + 1.0);
        }
        for seg in p.segments() {
            let pts: Vec<(f64, f64)> = seg.iter().map(px).collect();
            if p.series.style == Style::Markers {
                for q in pts {
                    around(&mut out, q, mark_reach(mark));
                }
                continue;
            }
            out.push(pts[0]);
            for w in pts.windows(2) {
                let (a, b) = (w[0], w[1]);
                let n = ((b.0 - a.0).hypot(b.1 - a.1) / 2.0).ceil().clamp(1.0, 10_000.0) as usize;
                for k in 1..=n {
                    let f = k as f64 / n as f64;
                    out.push((a.0 + f * (b.0 - a.0), a.1 + f * (b.1 - a.1)));
                }
            }
        }
    }
    out
}

/// Space between two legend entries on one row.
const LEGEND_SPACING: f64 = 16.0;

/// The legend: its entries' labels and which entries go on which row.
struct Legend {
    labels: Vec<Fitted>,
    rows: Vec<Vec<usize>>,
    row_h: f64,
}

impl Legend {
    /// One entry per row; labels wider than `max_w` (with the sample) are shrunk or shortened.
    fn new(labels: &[String], max_w: f64, m: Metrics) -> Legend {
        let text_w = (max_w - 2.0 * LEGEND_PAD - LEGEND_SAMPLE - LEGEND_GAP).max(20.0);
        let labels: Vec<Fitted> = labels.iter().map(|l| fit_rich(l, text_w, LEGEND_SIZE, 1, m)).collect();
        let row_h = labels.iter().map(Fitted::height).fold(0.0, f64::max) + 2.0;
        let rows = (0..labels.len()).map(|k| vec![k]).collect();
        Legend { labels, rows, row_h }
    }
    fn entry_w(&self, k: usize) -> f64 {
        LEGEND_SAMPLE + LEGEND_GAP + self.labels[k].width()
    }
    fn row_w(&self, row: &[usize]) -> f64 {
        row.iter().map(|&k| self.entry_w(k)).sum::<f64>() + LEGEND_SPACING * row.len().saturating_sub(1) as f64
    }
    fn size(&self) -> (f64, f64) {
        let w = self.rows.iter().map(|r| self.row_w(r)).fold(0.0, f64::max);
        (
            w + 2.0 * LEGEND_PAD,
            self.rows.len() as f64 * self.row_h + 2.0 * LEGEND_PAD,
        )
    }
    /// Entries flowed into rows no wider than `width`, in order.
    fn flow(&mut self, width: f64) {
        let inner = width - 2.0 * LEGEND_PAD;
        let mut rows: Vec<Vec<usize>> = Vec::new();
        for k in 0..self.labels.len() {
            match rows.last_mut() {
                Some(row) if self.row_w(row) + LEGEND_SPACING + self.entry_w(k) <= inner => row.push(k),
                _ => rows.push(vec![k]),
            }
        }
        self.rows = rows;
    }
}

/// A place inside the plotting area where a `w × h` box keeps [`LEGEND_CLEARANCE`] from every
/// data pixel: the first free corner (upper right, upper left, lower right, lower left), else the
/// middle of a side, else the first free spot scanning the plot from the top.
fn free_spot(plot: &Rect, (w, h): (f64, f64), data: &[(f64, f64)]) -> Option<Rect> {
    let inset = 6.0;
    if w + 2.0 * inset > plot.x1 - plot.x0 || h + 2.0 * inset > plot.y1 - plot.y0 {
        return None;
    }
    let (l, r) = (plot.x0 + inset, plot.x1 - inset - w);
    let (t, b) = (plot.y0 + inset, plot.y1 - inset - h);
    let (cx, cy) = (0.5 * (l + r), 0.5 * (t + b));
    let named = [(r, t), (l, t), (r, b), (l, b), (cx, t), (cx, b), (l, cy), (r, cy)];
    let step = 6.0;
    let (nx, ny) = (((r - l) / step).floor() as usize, ((b - t) / step).floor() as usize);
    let scan = (0..=ny).flat_map(move |j| (0..=nx).map(move |i| (l + i as f64 * step, t + j as f64 * step)));
    named
        .into_iter()
        .chain(scan)
        .map(|(x, y)| Rect::new(x, y, x + w, y + h))
        .find(|rect| {
            let guard = rect.inflate(LEGEND_CLEARANCE);
            !data.iter().any(|&p| guard.contains(p))
        })
}

/// Draws the legend box with its top-left corner at `at` (backend pixels).
#[allow(clippy::too_many_arguments)]
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    legend: &Legend,
    prepared: &[Prepared],
    marks: &[Mark],
    dashes: &[Option<(u32, u32)>],
    colours: &[RGBColor],
    at: (f64, f64),
    m: Metrics,
    layout: &mut PanelLayout,
) -> DrawResult<DB> {
    let (bx, by) = area.get_base_pixel();
    let (x0, y0) = (at.0 - f64::from(bx), at.1 - f64::from(by));
    let (w, h) = legend.size();
    let corner = |x: f64, y: f64| (x.round() as i32, y.round() as i32);
    area.draw(&Rectangle::new(
        [corner(x0, y0), corner(x0 + w, y0 + h)],
        WHITE.filled(),
    ))?;
    area.draw(&Rectangle::new(
        [corner(x0, y0), corner(x0 + w, y0 + h)],
        BLACK.mix(0.3).stroke_width(1),
    ))?;
    let mut place = Vec::new();
    for (r, row) in legend.rows.iter().enumerate() {
        let mut ex = x0 + LEGEND_PAD;
        for &k in row {
            place.push((k, ex, y0 + LEGEND_PAD + r as f64 * legend.row_h));
            ex += legend.entry_w(k) + LEGEND_SPACING;
        }
    }
    for (k, ex, ey) in place {
        let (p, label) = (&prepared[k], &legend.labels[k]);
        let cy = ey + 0.5 * legend.row_h;
        let colour = colours[k];
        let (sx0, sx1) = (ex + 2.0, ex + LEGEND_SAMPLE - 2.0);
        match (p.series.style, dashes[k]) {
            (Style::Markers, _) => draw_mark(area, corner(0.5 * (sx0 + sx1), cy), marks[k], colour)?,
            (_, None) => area.draw(&PathElement::new(
                vec![corner(sx0, cy), corner(sx1, cy)],
                line_style(colour),
            ))?,
            (_, Some((dash, gap))) => {
                let mut x = sx0;
                while x < sx1 {
                    let end = (x + f64::from(dash)).min(sx1);
                    area.draw(&PathElement::new(
                        vec![corner(x, cy), corner(end, cy)],
                        line_style(colour),
                    ))?;
                    x = end + f64::from(gap);
                }
            }
        }
        let start = (ex + LEGEND_SAMPLE + LEGEND_GAP, cy);
        draw_fitted(area, label, start, false, false, m, layout)?;
    }
    layout.legend = Some(Rect::new(at.0, at.1, at.0 + w, at.1 + h));
    Ok(())
}

fn draw_xy<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    series: &[Series],
    log_x: bool,
    log_y: bool,
    m: Metrics,
    band: Option<f64>,
    layout: &mut PanelLayout,
) -> DrawResult<DB> {
    let prepared: Vec<Prepared> = series.iter().map(|s| prepare(s, log_x, log_y)).collect();
    let marks = assign_marks(series);
    let dashes = assign_dashes(series);
    let colours: Vec<RGBColor> = (0..series.len())
        .map(|k| {
            if m.ids {
                id_colour(k)
            } else {
                role_color(series[k].role)
            }
        })
        .collect();
    let pts = || prepared.iter().flat_map(|p| p.points.iter().flatten());
    // The divergence steps are part of the x range (their crosses sit on the top edge).
    let div_x = || {
        series
            .iter()
            .filter_map(|s| s.diverged)
            .filter(|d| Axis::drawable(d.x, log_x))
            .map(|d| Axis::to_draw(d.x, log_x))
    };
    let x = Axis::fit(pts().map(|p| p.0).chain(div_x()), log_x);
    let y = Axis::fit(pts().map(|p| p.1), log_y);
    let any_drawn = prepared.iter().any(|p| p.drawn > 0) || div_x().next().is_some();

    let (aw, ah) = area.dim_in_pixel();
    let (aw, ah) = (f64::from(aw), f64::from(ah));
    let (margin_top, margin_right) = (8.0, 10.0);
    let y_tick_w = y
        .ticks
        .iter()
        .map(|t| text_width(&y.label(*t), TICK_SIZE, m))
        .fold(0.0, f64::max);
    let labels: Vec<String> = prepared.iter().map(|p| p.legend_label(log_x, log_y)).collect();

    // Label areas sized to their contents; the axis descriptions are fitted to the plot's sides
    // (shrunk, then wrapped onto two lines), so nothing is clipped.
    let label_areas = |height: f64| {
        let mut y_area = y_tick_w + 40.0;
        let (mut x_desc, mut y_desc) = (None::<Fitted>, None::<Fitted>);
        for _ in 0..3 {
            let xd = fit_rich(&panel.x_label, aw - y_area - margin_right, AXIS_DESC_SIZE, 2, m);
            let x_area = TICK_BAND + xd.height() + 4.0;
            let yd = fit_rich(&panel.y_label, height - x_area - margin_top, AXIS_DESC_SIZE, 2, m);
            y_area = y_tick_w + 14.0 + yd.height() + 4.0;
            (x_desc, y_desc) = (Some(xd), Some(yd));
        }
        let (x_desc, y_desc) = (x_desc.expect("fitted"), y_desc.expect("fitted"));
        let x_area = TICK_BAND + x_desc.height() + 4.0;
        (x_area, y_area, x_desc, y_desc)
    };
    let build = |on: &DrawingArea<DB, Shift>, x_area: f64, y_area: f64| {
        ChartBuilder::on(on)
            .margin_top(margin_top as u32)
            .margin_right(margin_right as u32)
            .x_label_area_size(x_area.ceil() as u32)
            .y_label_area_size(y_area.ceil() as u32)
            .build_cartesian_2d(
                AxisCoord::new(x.lo, x.hi, x.ticks.clone(), x.minor.clone()),
                AxisCoord::new(y.lo, y.hi, y.ticks.clone(), y.minor.clone()),
            )
    };

    // The legend goes where no data comes near inside the plot (a corner if one is free), else
    // below the plot.
    let (mut x_area, mut y_area, mut x_desc, mut y_desc) = label_areas(ah);
    let mut chart = build(area, x_area, y_area)?;
    let mut plot = Rect::of(chart.plotting_area());
    let mut data = data_pixels(&chart, &prepared, &marks, log_x, y.hi);
    let mut legend = Legend::new(&labels, plot.x1 - plot.x0 - 12.0, m);
    let mut legend_at = None;
    let mut below = None;
    if !labels.is_empty() {
        let spot = match band {
            Some(_) => None,
            None => free_spot(&plot, legend.size(), &data),
        };
        if let Some(rect) = spot {
            legend_at = Some((rect.x0, rect.y0));
        } else {
            legend = Legend::new(&labels, aw - 8.0, m);
            legend.flow(aw - 8.0);
            let band = band.unwrap_or(0.0).max(legend.size().1 + 8.0);
            let (top, bottom) = area.split_vertically((ah - band).max(1.0) as u32);
            (x_area, y_area, x_desc, y_desc) = label_areas(ah - band);
            chart = build(&top, x_area, y_area)?;
            plot = Rect::of(chart.plotting_area());
            data = data_pixels(&chart, &prepared, &marks, log_x, y.hi);
            let b = Rect::of(&bottom);
            let w = legend.size().0;
            legend_at = Some(((b.x0 + b.x1 - w) / 2.0, b.y0 + 4.0));
            below = Some(bottom);
        }
    }
    let _ = below;

    let x_fmt = |v: &f64| x.label(*v);
    let y_fmt = |v: &f64| y.label(*v);
    chart
        .configure_mesh()
        .label_style((FONT, TICK_SIZE))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.05))
        .axis_style(BLACK.mix(0.8))
        .draw()?;

    // z-order: dashed lines, lines, filled marks (most points first), hollow marks, then the
    // theory's lines on top (a thin line crosses marks but a cloud of marks could cover it); a
    // series' divergence cross is drawn with its marks.
    let layer = |k: usize| match series[k].style {
        Style::Dashed | Style::Line if series[k].role == Role::Theory => 4,
        Style::Dashed => 0,
        Style::Line => 1,
        Style::Markers if marks[k].hollow() => 3,
        Style::Markers => 2,
    };
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_by_key(|&k| {
        let dense_first = if series[k].style == Style::Markers {
            usize::MAX - prepared[k].drawn
        } else {
            0
        };
        (layer(k), dense_first)
    });
    let plot_area = chart.plotting_area().strip_coord_spec();
    let (bx0, by0) = plot_area.get_base_pixel();
    let local = |(px, py): (f64, f64)| ((px.round() as i32) - bx0, (py.round() as i32) - by0);
    let mut crosses = vec![None; series.len()];
    for &k in &order {
        let p = &prepared[k];
        let color = colours[k];
        match p.series.style {
            Style::Markers => {
                for q in p.points.iter().flatten() {
                    let (px, py) = chart.as_coord_spec().translate(q);
                    draw_mark(&plot_area, local((f64::from(px), f64::from(py))), marks[k], color)?;
                }
            }
            Style::Line | Style::Dashed => {
                for seg in p.segments() {
                    if seg.len() == 1 {
                        // An isolated point of a line would otherwise be invisible.
                        chart.draw_series(std::iter::once(Circle::new(seg[0], 2, color.filled())))?;
                    } else if let Some((dash, gap)) = dashes[k] {
                        chart.draw_series(DashedLineSeries::new(seg, dash, gap, line_style(color)))?;
                    } else {
                        chart.draw_series(LineSeries::new(seg, line_style(color)))?;
                    }
                }
            }
        }
        if let Some(d) = p.series.diverged.filter(|d| Axis::drawable(d.x, log_x)) {
            let at = divergence_px(&chart, Axis::to_draw(d.x, log_x), y.hi);
            draw_divergence(&plot_area, local(at), color)?;
            crosses[k] = Some((d.step, at));
        }
    }
    if !any_drawn {
        let centre = (0.5 * (x.lo + x.hi), 0.5 * (y.lo + y.hi));
        chart.draw_series(std::iter::once(Text::new(NO_DATA, centre, no_data_style())))?;
    }

    // Axis descriptions: under the x tick labels, and left of the y tick labels (rotated).
    let base = area.get_base_pixel();
    let (bx, by) = (f64::from(base.0), f64::from(base.1));
    let x_centre = (
        0.5 * (plot.x0 + plot.x1) - bx,
        plot.y1 - by + TICK_BAND + 0.5 * x_desc.height(),
    );
    draw_fitted(area, &x_desc, x_centre, true, false, m, layout)?;
    let y_centre = (
        plot.x0 - bx - y_tick_w - 14.0 - 0.5 * y_desc.height(),
        0.5 * (plot.y0 + plot.y1) - by,
    );
    draw_fitted(area, &y_desc, y_centre, true, true, m, layout)?;

    if let Some(at) = legend_at {
        draw_legend(area, &legend, &prepared, &marks, &dashes, &colours, at, m, layout)?;
        layout.legend_inside = layout.legend.is_some_and(|l| plot.holds(&l, 0.0));
    }
    layout.plot = Some(plot);
    layout.data = data;
    layout.series = (0..series.len())
        .map(|k| SeriesLayout {
            legend: labels[k].clone(),
            colour: role_color(series[k].role),
            style: series[k].style,
            mark: marks[k],
            dash: dashes[k],
            drawn: prepared[k].drawn,
            diverged: crosses[k],
        })
        .collect();
    layout.axes = Some(AxesLayout {
        x: x.clone(),
        y: y.clone(),
        points: pts().copied().collect(),
        crosses: div_x().collect(),
    });
    Ok(())
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
    m: Metrics,
    layout: &mut PanelLayout,
) -> DrawResult<DB> {
    if rows == 0 || cols == 0 || rows.checked_mul(cols) != Some(values.len()) {
        return draw_no_data(area);
    }
    let (rows, cols, values) = block_means(rows, cols, values);
    let Some(scale) = ColorScale::fit(&values, symmetric) else {
        return draw_no_data(area);
    };
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let extent = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    layout.scale = Some(((scale.lo, scale.hi), extent));
    let (w, _) = area.dim_in_pixel();
    let (main, bar) = area.split_horizontally(w.saturating_sub(92));

    // Cell (r, c) is centred on (c, −r): row 0 at the top, tick labels at cell centres.
    let (br, bc) = block_size(rows, cols);
    let x_ticks: Vec<f64> = index_ticks(cols, 6).into_iter().map(|c| c as f64).collect();
    let y_ticks: Vec<f64> = index_ticks(rows, 6).into_iter().map(|r| -(r as f64)).collect();
    let x_fmt = |v: &f64| format!("{}", (v.round() as i64) * bc as i64);
    let y_fmt = |v: &f64| format!("{}", (-v.round() as i64) * br as i64);
    let y_tick_w = y_ticks
        .iter()
        .map(|t| text_width(&y_fmt(t), TICK_SIZE, m))
        .fold(0.0, f64::max);
    let (mw, mh) = main.dim_in_pixel();
    let x_desc = fit_rich(&panel.x_label, f64::from(mw) - y_tick_w - 60.0, AXIS_DESC_SIZE, 2, m);
    let x_area = TICK_BAND + x_desc.height() + 4.0;
    let y_desc = fit_rich(&panel.y_label, f64::from(mh) - x_area, AXIS_DESC_SIZE, 2, m);
    let y_area = y_tick_w + 14.0 + y_desc.height() + 4.0;
    let mut chart = ChartBuilder::on(&main)
        .x_label_area_size(x_area.ceil() as u32)
        .y_label_area_size(y_area.ceil() as u32)
        .build_cartesian_2d(
            AxisCoord::new(-0.5, cols as f64 - 0.5, x_ticks, Vec::new()),
            AxisCoord::new(-(rows as f64) + 0.5, 0.5, y_ticks, Vec::new()),
        )?;
    let plot = Rect::of(chart.plotting_area());
    let (bx, by) = main.get_base_pixel();
    let (bx, by) = (f64::from(bx), f64::from(by));
    let x_centre = (
        0.5 * (plot.x0 + plot.x1) - bx,
        plot.y1 - by + TICK_BAND + 0.5 * x_desc.height(),
    );
    draw_fitted(&main, &x_desc, x_centre, true, false, m, layout)?;
    let y_centre = (
        plot.x0 - bx - y_tick_w - 14.0 - 0.5 * y_desc.height(),
        0.5 * (plot.y0 + plot.y1) - by,
    );
    draw_fitted(&main, &y_desc, y_centre, true, true, m, layout)?;
    chart
        .configure_mesh()
        .disable_mesh()
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
                    "C(θ",
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
        assert_eq!((w, h), figure_size(&fig));
        assert!(w == 3 * PANEL_W && h >= TITLE_H + 3 * PANEL_H, "{w} × {h}");
        assert!((1300..1500).contains(&w));
        let svg = fs::read_to_string(&svg_path).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "Demo — every panel kind",
            "time t = η·step",
            "C(θ",
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
        // Fixed role colours appear in the SVG: SGD, GD, Other(0) and Other(1).
        for colour in ["#1F77B4", "#D62728", "#FF7F0E", "#9467BD"] {
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
    /// `cargo test --release -p nequil-paper --lib -- --ignored write_demo_report`.
    #[test]
    #[ignore]
    fn write_demo_report() {
        use crate::files::Check;
        use crate::files::ReportEntry;
        use crate::report::write_report;
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
                group: "Demo".into(),
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
                group: "Demo <b>".into(),
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
    fn labels_lay_out_subscripts_and_accents() {
        use Level::{Base, Sub, Sup};
        let parse = |s: &str| -> Vec<(String, Level, Option<Accent>)> {
            parse_rich(s).into_iter().map(|p| (p.text, p.level, p.accent)).collect()
        };
        let piece = |t: &str, l: Level, a: Option<Accent>| (t.to_string(), l, a);
        assert_eq!(
            parse("W Σ̄_x Wᵀ"),
            [
                piece("W ", Base, None),
                piece("Σ", Base, Some(Accent::Bar)),
                piece("x", Sub, None),
                piece(" Wᵀ", Base, None)
            ]
        );
        assert_eq!(
            parse("UᵀΓ̃_UU"),
            [
                piece("Uᵀ", Base, None),
                piece("Γ", Base, Some(Accent::Tilde)),
                piece("U", Sub, None),
                piece("U", Base, None)
            ]
        );
        assert_eq!(
            parse("Uᵀ Σ̄_ε U"),
            [
                piece("Uᵀ ", Base, None),
                piece("Σ", Base, Some(Accent::Bar)),
                piece("ε", Sub, None),
                piece(" U", Base, None)
            ]
        );
        assert_eq!(
            parse("η_GD/η"),
            [piece("η", Base, None), piece("GD", Sub, None), piece("/η", Base, None)]
        );
        assert_eq!(
            parse("λ_max (x)"),
            [
                piece("λ", Base, None),
                piece("max", Sub, None),
                piece(" (x)", Base, None)
            ]
        );
        assert_eq!(
            parse("d_y Tr[WΣ_xWᵀ]"),
            [
                piece("d", Base, None),
                piece("y", Sub, None),
                piece(" Tr[WΣ", Base, None),
                piece("x", Sub, None),
                piece("Wᵀ]", Base, None)
            ]
        );
        assert_eq!(
            parse("θ_{t+1} e^{−k t} x^2"),
            [
                piece("θ", Base, None),
                piece("t+1", Sub, None),
                piece(" e", Base, None),
                piece("−k t", Sup, None),
                piece(" x", Base, None),
                piece("2", Sup, None)
            ]
        );
        // Plain underscores and carets stay, and an unknown combining mark is dropped.
        assert_eq!(parse("a_ b ^ c_"), [piece("a_ b ^ c_", Base, None)]);
        assert_eq!(parse("x\u{0301}y"), [piece("xy", Base, None)]);
        assert_eq!(parse("_{unclosed"), [piece("unclosed", Sub, None)]);
    }

    #[test]
    fn long_labels_shrink_then_wrap_then_shorten() {
        let m = PNG_METRICS;
        let short = fit_rich("φ_x", 200.0, 15.0, 2, m);
        assert_eq!(short.lines.len(), 1);
        let long = "S = d_y Tr[WΣ_xWᵀ] + ‖U‖² Tr Σ_x (paper convention = ½ Hessian trace)";
        let two = fit_rich(long, 260.0, 15.0, 2, m);
        assert_eq!(two.lines.len(), 2, "{two:?}");
        assert!(two.width() <= 260.0);
        let cut = fit_rich(long, 120.0, 15.0, 2, m);
        assert_eq!(cut.lines.len(), 1);
        assert!(cut.width() <= 120.0 && cut.lines[0].source.ends_with('…'), "{cut:?}");
    }

    /// A figure whose data fill every corner of the plot, with many legend entries.
    fn crowded_figure() -> Figure {
        let grid: Vec<(f64, f64)> = (0..21)
            .flat_map(|i| (0..21).map(move |j| (f64::from(i), f64::from(j))))
            .collect();
        let (gx, gy): (Vec<f64>, Vec<f64>) = grid.into_iter().unzip();
        let line = |k: u8| {
            Series::new(
                format!("a long legend label number {k}, with Σ̄_x and Γ̃_U"),
                Role::Other(k),
                if k.is_multiple_of(2) {
                    Style::Line
                } else {
                    Style::Dashed
                },
                vec![0.0, 20.0],
                vec![f64::from(k), 20.0 - f64::from(k)],
            )
        };
        let mut series = vec![Series::new("grid", Role::Sgd, Style::Markers, gx, gy)];
        series.extend((0..6).map(line));
        Figure {
            title: "Crowded: data in every corner, W Σ̄_x Wᵀ vs Uᵀ Σ̄_ε U".into(),
            columns: 2,
            panels: vec![
                Panel::xy(
                    "every corner has data",
                    "a very long x-axis description that has to wrap onto a second line, φ_x",
                    "S = d_y Tr[WΣ_xWᵀ] + ‖U‖² Tr Σ_x (paper convention = ½ Hessian trace)",
                    series,
                    false,
                    false,
                ),
                Panel::xy(
                    "corner free",
                    "x",
                    "y",
                    vec![Series::new(
                        "diagonal",
                        Role::Gd,
                        Style::Markers,
                        (0..50).map(f64::from).collect(),
                        (0..50).map(f64::from).collect(),
                    )],
                    false,
                    false,
                ),
            ],
        }
    }

    /// What is wrong with a figure's layout: a legend over data or outside its panel, a label
    /// outside its panel or the image, an axis label or title over the plot.
    fn layout_problems(name: &str, fig: &Figure) -> Vec<String> {
        let (_, _, layouts) = render_rgb(fig).unwrap();
        let (w, h) = figure_size(fig);
        let canvas = Rect::new(0.0, 0.0, f64::from(w), f64::from(h));
        let mut problems = Vec::new();
        for (i, l) in layouts.iter().enumerate() {
            let panel = l.panel.unwrap_or(canvas);
            if let Some(legend) = l.legend {
                if !panel.holds(&legend, 1.0) {
                    problems.push(format!(
                        "{name}, panel {i}: legend {legend:?} outside its panel {panel:?}"
                    ));
                }
                // Markers have a radius of 3 px and lines a width of 2 px.
                let guard = legend.inflate(3.0);
                if let Some(p) = l.data.iter().find(|p| guard.contains(**p)) {
                    problems.push(format!("{name}, panel {i}: legend {legend:?} covers data at {p:?}"));
                }
                if let Some(plot) = l.plot {
                    let overlaps =
                        legend.x0 < plot.x1 && legend.x1 > plot.x0 && legend.y0 < plot.y1 && legend.y1 > plot.y0;
                    if overlaps && !l.legend_inside {
                        problems.push(format!(
                            "{name}, panel {i}: legend {legend:?} straddles the plot {plot:?}"
                        ));
                    }
                }
            }
            for (text, rect) in &l.texts {
                if !panel.holds(rect, 1.0) || !canvas.holds(rect, 0.0) {
                    problems.push(format!(
                        "{name}, panel {i}: {text:?} at {rect:?} is clipped (panel {panel:?})"
                    ));
                }
                let in_legend = l.legend.is_some_and(|g| g.holds(rect, 1.0));
                if let (Some(plot), false) = (l.plot, in_legend) {
                    let r = rect.inflate(-1.0);
                    if r.x0 < plot.x1 && r.x1 > plot.x0 && r.y0 < plot.y1 && r.y1 > plot.y0 {
                        problems.push(format!(
                            "{name}, panel {i}: {text:?} at {rect:?} overlaps the plot {plot:?}"
                        ));
                    }
                }
            }
        }
        problems
    }

    /// Legends never cover data and labels are never clipped: on the demo and a crowded figure,
    /// and on every `figure.json` under `$NEQUIL_FIGURES_DIR` when it is set (CI points it at
    /// the quick reproduction's output).
    #[test]
    fn legends_never_cover_data_and_labels_are_not_clipped() {
        let figures = figures_under_test();
        let mut problems = Vec::new();
        let mut inside = 0;
        let mut legends = 0;
        for (name, fig) in &figures {
            problems.extend(layout_problems(name, fig));
            let (_, _, layouts) = render_rgb(fig).unwrap();
            legends += layouts.iter().filter(|l| l.legend.is_some()).count();
            inside += layouts.iter().filter(|l| l.legend_inside).count();
        }
        assert!(
            problems.is_empty(),
            "{} layout problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
        assert!(legends >= 2 && inside >= 1, "{legends} legends, {inside} inside a plot");
    }

    /// The demo and crowded figures, and every `figure.json` under `$NEQUIL_FIGURES_DIR` when it
    /// is set (CI points it at the quick reproduction's output).
    fn figures_under_test() -> Vec<(String, Figure)> {
        let mut figures = vec![
            ("demo".to_string(), demo_figure()),
            ("crowded".to_string(), crowded_figure()),
        ];
        if let Some(dir) = std::env::var_os("NEQUIL_FIGURES_DIR") {
            let dir = std::path::PathBuf::from(dir);
            let mut found = 0;
            for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path().join("figure.json");
                if let Ok(text) = fs::read_to_string(&path) {
                    let fig: Figure = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    figures.push((path.display().to_string(), fig));
                    found += 1;
                }
            }
            assert!(found > 0, "no */figure.json under {}", dir.display());
        }
        figures.sort_by(|a, b| a.0.cmp(&b.0));
        figures
    }

    fn assert_none(what: &str, problems: Vec<String>) {
        assert!(
            problems.is_empty(),
            "{} {what}:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }

    /// The x–y panels of a figure beside their layouts (`layouts[0]` is the title's).
    fn xy_panels<'a>(fig: &'a Figure, layouts: &'a [PanelLayout]) -> Vec<(usize, &'a [Series], &'a PanelLayout)> {
        fig.panels
            .iter()
            .zip(layouts.iter().skip(1))
            .enumerate()
            .filter_map(|(i, (p, l))| match &p.kind {
                PanelKind::Xy { series, .. } => Some((i, series.as_slice(), l)),
                PanelKind::Heatmap { .. } => None,
            })
            .collect()
    }

    /// The fewest pixels of its own that a series must keep in its plot after every other
    /// series and the legend are drawn: a third of the smallest mark (a filled disc of radius 3
    /// covers 29 px, the lone point of a line, radius 2, 13 px; a line 2 px wide shows 8 px
    /// along 4 px of its length). A series below this is hidden, whatever its colour.
    const MIN_VISIBLE_PX: usize = 8;

    /// Series that are (all but) entirely covered by others: each series is painted in its own
    /// identification colour and its pixels in the final plot, outside the legend, counted.
    /// Also series that a reader cannot tell apart: one colour and one style (and, for markers,
    /// one mark) in one panel.
    fn hidden_series(name: &str, fig: &Figure) -> Vec<String> {
        let ids = Metrics {
            ids: true,
            ..PNG_METRICS
        };
        let (rgb, (w, _), layouts) = render_rgb_with(fig, ids).unwrap();
        let mut problems = Vec::new();
        for (i, series, l) in xy_panels(fig, &layouts) {
            let Some(plot) = l.plot else { continue };
            let mut own = vec![0usize; series.len()];
            for py in plot.y0.max(0.0) as usize..plot.y1 as usize {
                for px in plot.x0.max(0.0) as usize..plot.x1 as usize {
                    if l.legend.is_some_and(|g| g.contains((px as f64, py as f64))) {
                        continue;
                    }
                    let at = (py * w as usize + px) * 3;
                    let c = RGBColor(rgb[at], rgb[at + 1], rgb[at + 2]);
                    if let Some(k) = (0..series.len()).find(|&k| id_colour(k) == c) {
                        own[k] += 1;
                    }
                }
            }
            for (k, s) in l.series.iter().enumerate() {
                if (s.drawn > 0 || s.diverged.is_some()) && own[k] < MIN_VISIBLE_PX {
                    problems.push(format!(
                        "{name}, panel {i}: series {:?} shows {} px of its own (covered by the others)",
                        series[k].label, own[k]
                    ));
                }
                for (j, t) in l.series.iter().enumerate().take(k) {
                    let same_mark = s.style != Style::Markers || s.mark == t.mark;
                    if s.colour == t.colour && s.style == t.style && same_mark && s.dash == t.dash {
                        problems.push(format!(
                            "{name}, panel {i}: series {:?} and {:?} look alike ({:?}, {:?}, {:?})",
                            series[j].label, series[k].label, s.colour, s.style, s.mark
                        ));
                    }
                }
            }
        }
        problems
    }

    /// Diverged runs without their cross on the top edge of the plot at their divergence step,
    /// or without "diverged at step N" in their legend entry.
    fn unmarked_divergences(name: &str, fig: &Figure) -> Vec<String> {
        let (_, _, layouts) = render_rgb(fig).unwrap();
        let mut problems = Vec::new();
        for (i, series, l) in xy_panels(fig, &layouts) {
            for (s, drawn) in series.iter().zip(&l.series) {
                let Some(d) = s.diverged else { continue };
                let said = format!("diverged at step {}", d.step);
                if !drawn.legend.contains(&said) {
                    problems.push(format!(
                        "{name}, panel {i}: the legend entry {:?} does not say {said:?}",
                        drawn.legend
                    ));
                }
                match (drawn.diverged, l.plot) {
                    (Some((step, at)), Some(plot)) if step == d.step && plot.contains(at) => {}
                    other => problems.push(format!(
                        "{name}, panel {i}: {:?} diverged at step {} (x = {}) but has no cross in the plot ({other:?})",
                        s.label, d.step, d.x
                    )),
                }
            }
        }
        problems
    }

    /// The method a legend label names by its first word (`SGD η = 0.01`, `GD + WD`,
    /// `momentum β = 0.9`, `Adam`, `theory …`), as the role whose colour it must have.
    fn method_of(label: &str) -> Option<Role> {
        let word: String = label
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '-')
            .collect();
        match word.as_str() {
            "SGD" => Some(Role::Sgd),
            "GD" | "GF" => Some(Role::Gd),
            "momentum" | "Momentum" => Some(Role::Momentum),
            "Adam" | "AdamW" => Some(Role::Adam),
            "theory" | "Theory" => Some(Role::Theory),
            _ => None,
        }
    }

    /// Series whose label names a method but whose colour is not that method's (so one method
    /// would have two colours across the report).
    fn miscoloured_methods(figures: &[(String, Figure)]) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, fig) in figures {
            for (i, panel) in fig.panels.iter().enumerate() {
                let PanelKind::Xy { series, .. } = &panel.kind else {
                    continue;
                };
                for s in series {
                    if let Some(method) = method_of(&s.label) {
                        if role_color(s.role) != role_color(method) {
                            problems.push(format!(
                                "{name}, panel {i}: {:?} is a {method:?} series drawn as {:?} ({:?}, not {:?})",
                                s.label,
                                s.role,
                                role_color(s.role),
                                role_color(method)
                            ));
                        }
                    }
                }
            }
        }
        problems
    }

    /// How much of the data's span must remain when the outermost 1 % of a panel's points (at
    /// least one) at each end are left out: below a quarter, a handful of points set the range
    /// and everything else is squeezed into a quarter of the plot or less (a start far from the
    /// rest, which hides the runs under each other at the bottom). Trends that converge, where
    /// many points lie far out, keep their range.
    const MIN_TRIMMED_SHARE: f64 = 0.25;

    /// Axis ranges that do not fit the data: a drawn point outside the range, padding beyond the
    /// 5 % a side that [`Axis::fit`] adds, a range set by a handful of outlying points
    /// ([`MIN_TRIMMED_SHARE`]); heatmap colour scales that miss a value or are wider than the
    /// values (symmetric scales: exactly ± the largest magnitude).
    fn misfit_axes(name: &str, fig: &Figure) -> Vec<String> {
        let (_, _, layouts) = render_rgb(fig).unwrap();
        let mut problems = Vec::new();
        for (i, l) in layouts.iter().enumerate().skip(1) {
            if let Some(AxesLayout {
                x,
                y,
                points: pts,
                crosses,
            }) = &l.axes
            {
                for (axis, which) in [(x, 0), (y, 1)] {
                    let mut v: Vec<f64> = pts.iter().map(|p| if which == 0 { p.0 } else { p.1 }).collect();
                    if which == 0 {
                        v.extend(crosses);
                    }
                    if v.is_empty() {
                        continue;
                    }
                    v.sort_by(f64::total_cmp);
                    let span = axis.hi - axis.lo;
                    let slack = 1e-9 * span;
                    let (min, max) = (v[0], v[v.len() - 1]);
                    let label = ["x", "y"][which];
                    if min < axis.lo - slack || max > axis.hi + slack {
                        problems.push(format!(
                            "{name}, panel {}: {label} data [{min}, {max}] outside the axis [{}, {}]",
                            i - 1,
                            axis.lo,
                            axis.hi
                        ));
                    }
                    if max - min > 1e-9 * span.abs() && (max - min) < span / 1.1 - slack {
                        problems.push(format!(
                            "{name}, panel {}: {label} data [{min}, {max}] fill less of the axis [{}, {}] than its padding allows",
                            i - 1,
                            axis.lo,
                            axis.hi
                        ));
                    }
                    let k = (v.len() / 100).max(1);
                    if v.len() > 2 * k + 1 {
                        let trimmed = v[v.len() - 1 - k] - v[k];
                        if max > min && trimmed < MIN_TRIMMED_SHARE * (max - min) {
                            problems.push(format!(
                                "{name}, panel {}: without its outermost {k} point(s) at each end the {label} data span {trimmed:.3e} of {:.3e}: a few points set the range {min:.3e}..{max:.3e}",
                                i - 1,
                                max - min
                            ));
                        }
                    }
                }
            }
            if let Some(((lo, hi), (min, max))) = l.scale {
                let symmetric = matches!(fig.panels[i - 1].kind, PanelKind::Heatmap { symmetric: true, .. });
                let fits = if symmetric {
                    let m = min.abs().max(max.abs());
                    m == 0.0 || (lo == -m && hi == m)
                } else {
                    max - min <= 1e-12 * min.abs().max(max.abs()) || (lo == min && hi == max)
                };
                if !fits || lo > min || hi < max {
                    problems.push(format!(
                        "{name}, panel {}: colour scale [{lo}, {hi}] does not fit the values [{min}, {max}]",
                        i - 1
                    ));
                }
            }
        }
        problems
    }

    fn one_panel(series: Vec<Series>, log_x: bool, log_y: bool) -> Figure {
        Figure {
            title: "one panel".into(),
            columns: 1,
            panels: vec![Panel::xy("panel", "step", "value", series, log_x, log_y)],
        }
    }

    /// Each layout check fails on a figure that hides what it checks, and passes once the
    /// figure is drawn as the report draws it.
    #[test]
    fn layout_checks_fail_on_figures_that_hide_something() {
        let t: Vec<f64> = (0..40).map(f64::from).collect();
        let y: Vec<f64> = t.iter().map(|t| 1.0 + (-0.1 * t).exp()).collect();
        let y2: Vec<f64> = y.iter().map(|v| v + 0.3).collect();
        let on = |label: &str, role: Role, y: &[f64]| Series::new(label, role, Style::Markers, t.clone(), y.to_vec());

        // fig3's old fault: two methods' markers on the same points, one drawn over the other.
        let covered = one_panel(
            vec![
                on("SGD η = 0.01", Role::Sgd, &y).with_mark(Mark::Circle),
                on("SGD + WD", Role::SgdWd, &y).with_mark(Mark::Circle),
            ],
            false,
            false,
        );
        let p = hidden_series("covered", &covered);
        assert!(p.iter().any(|p| p.contains("\"SGD η = 0.01\" shows 0 px")), "{p:?}");
        // The renderer's own marks (a disc under an open square) keep both in sight.
        let fixed = one_panel(
            vec![on("SGD η = 0.01", Role::Sgd, &y), on("SGD + WD", Role::SgdWd, &y)],
            false,
            false,
        );
        assert_eq!(hidden_series("fixed", &fixed), Vec::<String>::new());
        // A line covered by another drawn over it, point for point.
        let mut line = on("first", Role::Other(0), &y);
        line.style = Style::Line;
        let mut over = on("second", Role::Other(1), &y);
        over.style = Style::Line;
        let p = hidden_series(
            "line under line",
            &one_panel(vec![line.clone(), over.clone()], false, false),
        );
        assert!(p.len() == 1 && p[0].contains("\"first\" shows"), "{p:?}");
        // The theory's line goes on top of what would cover it.
        let mut theory = line;
        theory.role = Role::Theory;
        let p = hidden_series("theory on top", &one_panel(vec![theory, over], false, false));
        assert!(p.len() == 1 && p[0].contains("\"second\" shows"), "{p:?}");
        // Two series one cannot tell apart: one colour, one style, one mark.
        let alike = one_panel(
            vec![
                on("SGD, Kaiming", Role::Sgd, &y).with_mark(Mark::Circle),
                on("SGD, Xavier", Role::Sgd, &y2).with_mark(Mark::Circle),
            ],
            false,
            false,
        );
        let p = hidden_series("alike", &alike);
        assert!(p.len() == 1 && p[0].contains("look alike"), "{p:?}");

        // A divergence where no cross can go (step 0 on a log axis), and one that is drawn.
        let gone = |step: u64| on("SGD, η = 0.1", Role::Sgd, &y).diverged_at(Some(step), |s| s as f64);
        let p = unmarked_divergences("log", &one_panel(vec![gone(0)], true, false));
        assert!(p.len() == 1 && p[0].contains("no cross"), "{p:?}");
        let drawn = one_panel(vec![gone(57), on("GD", Role::Gd, &y2)], false, false);
        assert_eq!(unmarked_divergences("drawn", &drawn), Vec::<String>::new());
        assert_eq!(hidden_series("drawn", &drawn), Vec::<String>::new());
        let (_, _, layouts) = render_rgb(&drawn).unwrap();
        let x = layouts[1].axes.clone().unwrap().x;
        assert!(x.hi >= 57.0, "the x axis reaches the divergence step: {x:?}");
        // A diverged run with no point left to draw still shows (its cross).
        let empty =
            Series::new("SGD, Kaiming", Role::Sgd, Style::Markers, vec![], vec![]).diverged_at(Some(3), |s| s as f64);
        let only_cross = one_panel(vec![empty, on("GD", Role::Gd, &y2)], false, false);
        assert_eq!(hidden_series("only cross", &only_cross), Vec::<String>::new());
        assert_eq!(unmarked_divergences("only cross", &only_cross), Vec::<String>::new());

        // A method in another method's colour, or in a colour of the secondary palette.
        let wrong = vec![(
            "wrong".to_string(),
            one_panel(
                vec![
                    on("SGD η = 0.01", Role::Other(4), &y),
                    on("GD + WD 0.1", Role::GdWd, &y2),
                    on("momentum β = 0.9", Role::SgdWd, &y2),
                ],
                false,
                false,
            ),
        )];
        let p = miscoloured_methods(&wrong);
        assert!(
            p.len() == 2 && p[0].contains("SGD η = 0.01") && p[1].contains("momentum"),
            "{p:?}"
        );

        // A loss that starts 100× above the rest on a linear axis: the rest is a flat smear at
        // the bottom; on a log axis it spreads over its decades.
        let mut loss: Vec<f64> = t.iter().map(|t| 3.0 * 10f64.powf(-t / 20.0)).collect();
        loss[0] = 300.0;
        let linear = one_panel(vec![on("SGD", Role::Sgd, &loss)], false, false);
        let p = misfit_axes("linear", &linear);
        assert!(p.len() == 1 && p[0].contains("a few points set the range"), "{p:?}");
        let log = one_panel(vec![on("SGD", Role::Sgd, &loss)], false, true);
        assert_eq!(misfit_axes("log", &log), Vec::<String>::new());
    }

    /// No series is hidden under others, nor looks like another, in the demo, the crowded
    /// figure and every reproduced figure (`$NEQUIL_FIGURES_DIR`).
    #[test]
    fn layout_no_series_is_hidden() {
        let problems = figures_under_test()
            .iter()
            .flat_map(|(n, f)| hidden_series(n, f))
            .collect();
        assert_none("hidden or look-alike series", problems);
    }

    /// Every diverged run has its cross and its legend text.
    #[test]
    fn layout_diverged_runs_are_marked() {
        let problems = figures_under_test()
            .iter()
            .flat_map(|(n, f)| unmarked_divergences(n, f))
            .collect();
        assert_none("unmarked divergence(s)", problems);
    }

    /// Every series that names a method has the method's colour, in every figure.
    #[test]
    fn layout_methods_keep_their_colour() {
        assert_none("miscoloured series", miscoloured_methods(&figures_under_test()));
    }

    /// Every x–y axis (linear and log) and every heatmap colour scale fits its data.
    #[test]
    fn layout_axis_ranges_fit_the_data() {
        let problems = figures_under_test()
            .iter()
            .flat_map(|(n, f)| misfit_axes(n, f))
            .collect();
        assert_none("misfit axes", problems);
    }

    /// Renders again every `figure.json` under `$NEQUIL_FIGURES_DIR` into its `figure.svg` and
    /// `figure.png` (for looking at the figures after a change to this file, without re-running
    /// the experiments): `NEQUIL_FIGURES_DIR=nequil-out cargo test --release -p nequil-paper --lib --
    /// --ignored rerender_figures`.
    #[test]
    #[ignore]
    fn rerender_figures() {
        let dir = std::path::PathBuf::from(std::env::var_os("NEQUIL_FIGURES_DIR").expect("set NEQUIL_FIGURES_DIR"));
        for entry in fs::read_dir(&dir).unwrap() {
            let d = entry.unwrap().path();
            if let Ok(text) = fs::read_to_string(d.join("figure.json")) {
                let fig: Figure = serde_json::from_str(&text).unwrap();
                render(&fig, &d.join("figure.svg"), &d.join("figure.png")).unwrap();
                eprintln!("rendered {}", d.join("figure.png").display());
            }
        }
    }

    #[test]
    fn role_colours_are_fixed() {
        assert_eq!(role_color(Role::Sgd), RGBColor(0x1f, 0x77, 0xb4));
        assert_eq!(role_color(Role::Gd), RGBColor(0xd6, 0x27, 0x28));
        // One colour per method: weight decay keeps the method's colour.
        assert_eq!(role_color(Role::SgdWd), role_color(Role::Sgd));
        assert_eq!(role_color(Role::GdWd), role_color(Role::Gd));
        // The methods' colours are distinct and none is in the secondary palette.
        let methods = [Role::Sgd, Role::Gd, Role::Momentum, Role::Adam, Role::Theory].map(role_color);
        for (i, a) in methods.iter().enumerate() {
            assert!(methods[..i].iter().all(|b| b != a), "{a:?} twice");
            assert!(
                (0..12).all(|k| role_color(Role::Other(k)) != *a),
                "{a:?} in the secondary palette"
            );
        }
        assert_eq!(role_color(Role::Theory), RGBColor(0, 0, 0));
        assert_eq!(role_color(Role::Other(0)), role_color(Role::Other(6)));
        assert_ne!(role_color(Role::Other(0)), role_color(Role::Other(1)));
    }
}
