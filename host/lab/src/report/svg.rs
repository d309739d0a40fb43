//! Inline SVG charts for report.html: line/scatter charts and horizontal bar charts with
//! axes, ticks, gridlines and legends, laid out in Rust so the page needs no script.
//!
//! Every coordinate written goes through [`num`], which turns a non-finite value into 0,
//! so no input (empty, single-valued or all-zero data) can put `NaN` into the markup.

use std::fmt::Write as _;

mod bar;
mod xy;

pub(super) use bar::{BarChart, BarRow, BarSeries, bar_chart};
pub(super) use xy::{Point, Series, XyChart, xy_chart};

/// The width of every chart's view box; the page scales it to the column's width.
pub(super) const WIDTH: f64 = 1000.0;
/// The average advance of a 12 px sans-serif glyph, to estimate text widths for layout.
const CHAR_W: f64 = 6.8;
/// Label lengths beyond which names are cut with an ellipsis (the tooltip keeps them).
const LEGEND_CHARS: usize = 34;
const BAR_LABEL_CHARS: usize = 30;
const POINT_LABEL_CHARS: usize = 24;

const GRID: &str = "#e6e8eb";
const AXIS: &str = "#8a9099";
const INK: &str = "#1f2328";

/// Escapes text for HTML and for SVG inside HTML (both are parsed by the HTML parser).
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
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

/// Cuts `text` to at most `max` characters, ending with an ellipsis when cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A coordinate or length as SVG text; a non-finite one becomes 0 rather than `NaN`.
fn num(value: f64) -> String {
    if value.is_finite() {
        format!("{:.1}", value)
    } else {
        "0".to_owned()
    }
}

fn text_width(text: &str, font_px: f64) -> f64 {
    text.chars().count() as f64 * CHAR_W * font_px / 12.0
}

/// How values map to positions along an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScaleKind {
    Linear,
    /// Logarithmic; falls back to linear when a value is not positive.
    Log,
}

/// One axis of an x/y chart.
pub(super) struct Axis {
    pub label: String,
    pub kind: ScaleKind,
    pub format: fn(f64) -> String,
    /// Values that make the best ticks (the sweep's own settings), used on a log axis
    /// instead of round numbers.
    pub preferred_ticks: Vec<f64>,
    /// Whether the axis starts at zero even when the data does not reach it.
    pub include_zero: bool,
    /// The top of the axis when every value is zero (a stale-hit ratio of 0 everywhere
    /// reads better on 0–1% than on 0–100%).
    pub flat_max: f64,
}

/// The marker drawn at each point of a series; shapes differ so series stay apart
/// without relying on colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    TriangleDown,
}

impl Marker {
    pub(super) const ALL: [Marker; 5] = [
        Marker::Circle,
        Marker::Square,
        Marker::Triangle,
        Marker::Diamond,
        Marker::TriangleDown,
    ];
}

/// A resolved axis: the domain, its ticks and the pixel range it maps to.
struct Scale {
    kind: ScaleKind,
    lo: f64,
    hi: f64,
    px_lo: f64,
    px_hi: f64,
    ticks: Vec<f64>,
}

impl Scale {
    fn map(&self, value: f64) -> f64 {
        let t = match self.kind {
            ScaleKind::Linear => (value - self.lo) / (self.hi - self.lo),
            ScaleKind::Log => (value.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln()),
        };
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.5
        };
        self.px_lo + t * (self.px_hi - self.px_lo)
    }
}

/// A round step near `raw`: 1, 2 or 5 times a power of ten.
fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A linear domain covering `values` with round ends and about five ticks. An empty or
/// single-valued input still gets a non-empty domain, so nothing divides by zero.
fn linear_domain(values: &[f64], include_zero: bool, flat_max: f64) -> (f64, f64, Vec<f64>) {
    let finite = values.iter().copied().filter(|value| value.is_finite());
    let (mut min, mut max) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if min > max {
        (min, max) = (0.0, 1.0);
    }
    if include_zero {
        min = min.min(0.0);
        max = max.max(0.0);
    }
    if max - min <= f64::EPSILON * max.abs().max(1.0) {
        if max == 0.0 {
            max = if flat_max > 0.0 && flat_max.is_finite() {
                flat_max
            } else {
                1.0
            };
        } else {
            let pad = max.abs() * 0.1;
            max += pad;
            min = if include_zero && min >= 0.0 {
                0.0
            } else {
                min - pad
            };
        }
    }
    let step = nice_step((max - min) / 5.0);
    let lo = (min / step).floor() * step;
    let hi = (max / step).ceil() * step;
    let count = (((hi - lo) / step).round() as usize).min(20);
    let ticks = (0..=count).map(|index| lo + index as f64 * step).collect();
    (lo, hi, ticks)
}

fn build_scale(axis: &Axis, values: &[f64], px_lo: f64, px_hi: f64) -> Scale {
    let positive: Vec<f64> = values
        .iter()
        .copied()
        .filter(|value| value.is_finite() && *value > 0.0)
        .collect();
    let all_positive = !positive.is_empty() && positive.len() == values.len();
    if axis.kind == ScaleKind::Log && all_positive {
        let min = positive.iter().copied().fold(f64::INFINITY, f64::min);
        let max = positive.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // A little room beyond the outermost points, in log space, so their markers
        // are not cut by the frame; a single value gets a decade's worth around it.
        let (lo, hi) = if max / min < 1.0001 {
            (min / 2.0, max * 2.0)
        } else {
            let pad = (max / min).powf(0.06);
            (min / pad, max * pad)
        };
        let mut ticks: Vec<f64> = axis
            .preferred_ticks
            .iter()
            .copied()
            .filter(|tick| tick.is_finite() && *tick >= lo && *tick <= hi)
            .collect();
        if ticks.is_empty() {
            ticks = decade_ticks(lo, hi);
        }
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        return Scale {
            kind: ScaleKind::Log,
            lo,
            hi,
            px_lo,
            px_hi,
            ticks,
        };
    }
    let (lo, hi, ticks) = linear_domain(values, axis.include_zero, axis.flat_max);
    Scale {
        kind: ScaleKind::Linear,
        lo,
        hi,
        px_lo,
        px_hi,
        ticks,
    }
}

/// 1, 2 and 5 times each power of ten between `lo` and `hi`.
fn decade_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut exponent = lo.log10().floor() as i32;
    while ticks.len() < 40 {
        let base = 10f64.powi(exponent);
        if base > hi {
            break;
        }
        for factor in [1.0, 2.0, 5.0] {
            let tick = base * factor;
            if tick >= lo && tick <= hi {
                ticks.push(tick);
            }
        }
        exponent += 1;
    }
    ticks
}

/// Drops ticks whose labels would touch the previous kept label along a horizontal axis.
fn thin_x_ticks(scale: &Scale, format: fn(f64) -> String) -> Vec<(f64, String)> {
    let mut kept: Vec<(f64, String)> = Vec::new();
    let mut last_right = f64::NEG_INFINITY;
    for &tick in &scale.ticks {
        let label = format(tick);
        let x = scale.map(tick);
        let half = text_width(&label, 11.0) / 2.0;
        if x - half >= last_right + 8.0 {
            last_right = x + half;
            kept.push((tick, label));
        }
    }
    kept
}

/// A rectangle taken by a label or a marker, to keep labels from overlapping.
#[derive(Clone, Copy)]
struct Rect {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Rect {
    /// The square of half-side `half` centred on (`x`, `y`).
    fn around(x: f64, y: f64, half: f64) -> Rect {
        Rect {
            x0: x - half,
            y0: y - half,
            x1: x + half,
            y1: y + half,
        }
    }

    fn overlaps(&self, other: &Rect) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }
}

fn marker_svg(out: &mut String, marker: Marker, x: f64, y: f64, color: &str, hollow: bool) {
    let fill = if hollow { "#ffffff" } else { color };
    let style = format!(r#"fill="{fill}" stroke="{color}" stroke-width="1.8""#);
    let _ = match marker {
        Marker::Circle => write!(
            out,
            r#"<circle cx="{}" cy="{}" r="4.5" {style}/>"#,
            num(x),
            num(y)
        ),
        Marker::Square => write!(
            out,
            r#"<rect x="{}" y="{}" width="8" height="8" {style}/>"#,
            num(x - 4.0),
            num(y - 4.0)
        ),
        Marker::Triangle => write!(
            out,
            r#"<path d="M{} {}L{} {}L{} {}Z" {style}/>"#,
            num(x),
            num(y - 5.5),
            num(x + 5.0),
            num(y + 4.0),
            num(x - 5.0),
            num(y + 4.0)
        ),
        Marker::Diamond => write!(
            out,
            r#"<path d="M{} {}L{} {}L{} {}L{} {}Z" {style}/>"#,
            num(x),
            num(y - 5.5),
            num(x + 5.5),
            num(y),
            num(x),
            num(y + 5.5),
            num(x - 5.5),
            num(y)
        ),
        Marker::TriangleDown => write!(
            out,
            r#"<path d="M{} {}L{} {}L{} {}Z" {style}/>"#,
            num(x),
            num(y + 5.5),
            num(x + 5.0),
            num(y - 4.0),
            num(x - 5.0),
            num(y - 4.0)
        ),
    };
}

/// The opening tag shared by every chart, with its accessible title.
fn open_svg(out: &mut String, id: &str, title: &str, height: f64) {
    let id = escape(id);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="{id}" class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-labelledby="{id}-title"><title id="{id}-title">{title}</title>"#,
        w = num(WIDTH),
        h = num(height),
        title = escape(title),
    );
}

/// One legend entry: its sample (line and marker, or a swatch) and its name.
pub(super) struct LegendItem {
    pub name: String,
    pub color: &'static str,
    pub marker: Option<Marker>,
    pub dashed: bool,
    pub hatched: bool,
}

/// Lays legend items out in rows that fit the chart's width; returns the rows' items
/// with their x offsets, and the height they take.
fn legend_rows(items: &[LegendItem], left: f64) -> (Vec<Vec<(f64, usize)>>, f64) {
    let mut rows: Vec<Vec<(f64, usize)>> = Vec::new();
    let mut row: Vec<(f64, usize)> = Vec::new();
    let mut x = left;
    for (index, item) in items.iter().enumerate() {
        let width = 34.0 + text_width(&truncate(&item.name, LEGEND_CHARS), 12.0) + 22.0;
        if x + width > WIDTH - 12.0 && !row.is_empty() {
            rows.push(std::mem::take(&mut row));
            x = left;
        }
        row.push((x, index));
        x += width;
    }
    if !row.is_empty() {
        rows.push(row);
    }
    let height = rows.len() as f64 * 22.0;
    (rows, height)
}

fn legend_svg(out: &mut String, id: &str, items: &[LegendItem], left: f64, top: f64) {
    let (rows, _) = legend_rows(items, left);
    out.push_str(r#"<g class="legend">"#);
    for (row_index, row) in rows.iter().enumerate() {
        let y = top + row_index as f64 * 22.0 + 11.0;
        for &(x, index) in row {
            let item = &items[index];
            let _ = write!(out, "<g><title>{}</title>", escape(&item.name));
            if let Some(marker) = item.marker {
                let dash = if item.dashed {
                    r#" stroke-dasharray="6 4""#
                } else {
                    ""
                };
                let _ = write!(
                    out,
                    r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2.2"{dash}/>"#,
                    num(x),
                    num(y),
                    num(x + 26.0),
                    num(y),
                    item.color
                );
                marker_svg(out, marker, x + 13.0, y, item.color, item.dashed);
            } else {
                let _ = write!(
                    out,
                    r#"<rect x="{}" y="{}" width="22" height="12" rx="2" fill="{}"/>"#,
                    num(x + 2.0),
                    num(y - 6.0),
                    item.color
                );
                if item.hatched {
                    let _ = write!(
                        out,
                        r#"<rect x="{}" y="{}" width="22" height="12" rx="2" fill="url(#{}-hatch)"/>"#,
                        num(x + 2.0),
                        num(y - 6.0),
                        escape(id)
                    );
                }
            }
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" fill="{INK}">{}</text></g>"#,
                num(x + 34.0),
                num(y + 4.0),
                escape(&truncate(&item.name, LEGEND_CHARS))
            );
        }
    }
    out.push_str("</g>");
}
