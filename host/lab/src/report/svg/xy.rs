//! The x/y chart: series of points on two numeric axes, joined or not, with labels
//! placed beside their points where they touch no marker, line or other label.

use std::fmt::Write as _;

use super::{
    AXIS, Axis, GRID, LegendItem, Marker, POINT_LABEL_CHARS, Rect, WIDTH, build_scale, escape,
    legend_rows, legend_svg, marker_svg, num, open_svg, text_width, thin_x_ticks, truncate,
};

/// One point of a series, with an optional label drawn beside it and a tooltip.
pub(crate) struct Point {
    pub x: f64,
    pub y: f64,
    pub label: Option<String>,
    pub tooltip: String,
}

/// A named series of an x/y chart.
pub(crate) struct Series {
    pub name: String,
    pub color: &'static str,
    pub marker: Marker,
    pub dashed: bool,
    /// Whether to draw a line through the points in their order.
    pub connect: bool,
    /// A class for each point's group, so tests and styles can find them.
    pub point_class: &'static str,
    pub points: Vec<Point>,
}

/// A chart of points on two numeric axes.
pub(crate) struct XyChart {
    pub id: String,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
}

/// Draws an x/y chart, or returns `None` when no series has a finite point to draw.
pub(crate) fn xy_chart(chart: &XyChart) -> Option<String> {
    let finite = |point: &&Point| point.x.is_finite() && point.y.is_finite();
    let xs: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|series| series.points.iter().filter(finite).map(|point| point.x))
        .collect();
    let ys: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|series| series.points.iter().filter(finite).map(|point| point.y))
        .collect();
    if xs.is_empty() {
        return None;
    }

    let plot_height = 320.0;
    let top = 34.0;
    let provisional_y = build_scale(&chart.y, &ys, top + plot_height, top);
    let y_labels: Vec<String> = provisional_y
        .ticks
        .iter()
        .map(|tick| (chart.y.format)(*tick))
        .collect();
    let widest = y_labels
        .iter()
        .map(|label| text_width(label, 11.0))
        .fold(0.0, f64::max);
    let left = (widest + 18.0).max(48.0);
    let right = WIDTH - 28.0;
    let bottom = top + plot_height;
    let x_scale = build_scale(&chart.x, &xs, left, right);
    let y_scale = provisional_y;

    let legend_items: Vec<LegendItem> = chart
        .series
        .iter()
        .map(|series| LegendItem {
            name: series.name.clone(),
            color: series.color,
            marker: Some(series.marker),
            dashed: series.dashed,
            hatched: false,
        })
        .collect();
    let legend_top = bottom + 50.0;
    let (_, legend_height) = legend_rows(&legend_items, left);
    let height = legend_top + legend_height + 8.0;

    let mut out = String::new();
    open_svg(&mut out, &chart.id, &chart.title, height);

    // Gridlines first, so data draws over them.
    out.push_str(r#"<g class="grid">"#);
    for (tick, label) in y_scale.ticks.iter().zip(&y_labels) {
        let y = y_scale.map(*tick);
        let _ = write!(
            out,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{GRID}"/><text x="{}" y="{}" text-anchor="end" class="tick">{}</text>"#,
            num(left),
            num(right),
            num(left - 8.0),
            num(y_scale.map(*tick) + 4.0),
            escape(label),
            y = num(y),
        );
    }
    for (tick, label) in thin_x_ticks(&x_scale, chart.x.format) {
        let x = x_scale.map(tick);
        let _ = write!(
            out,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{GRID}"/><line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{AXIS}"/><text x="{x}" y="{}" text-anchor="middle" class="tick">{}</text>"#,
            num(top),
            num(bottom),
            num(bottom),
            num(bottom + 5.0),
            num(bottom + 19.0),
            escape(&label),
            x = num(x),
        );
    }
    out.push_str("</g>");
    let _ = write!(
        out,
        r#"<path d="M{l} {t}V{b}H{r}" fill="none" stroke="{AXIS}"/>"#,
        l = num(left),
        t = num(top),
        b = num(bottom),
        r = num(right),
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" class="axis-label">{}</text><text x="{}" y="{}" text-anchor="middle" class="axis-label">{}</text>"#,
        num((left - widest - 10.0).max(6.0)),
        num(top - 16.0),
        escape(&chart.y.label),
        num((left + right) / 2.0),
        num(bottom + 40.0),
        escape(&chart.x.label),
    );

    // Lines, then markers, then labels, each layer over the previous one.
    let positions: Vec<Vec<(f64, f64)>> = chart
        .series
        .iter()
        .map(|series| {
            series
                .points
                .iter()
                .filter(finite)
                .map(|point| (x_scale.map(point.x), y_scale.map(point.y)))
                .collect()
        })
        .collect();
    let mut taken = Taken::default();
    for (series, points) in chart.series.iter().zip(&positions) {
        if series.connect && points.len() >= 2 {
            line_svg(&mut out, series, points);
            for pair in points.windows(2) {
                taken.add_segment(pair[0], pair[1]);
            }
        }
        for &(x, y) in points {
            taken.markers.push(Rect::around(x, y, 6.0));
        }
    }
    let frame = Frame {
        left,
        right,
        top,
        bottom,
    };
    let mut requests: Vec<(bool, f64, f64, String)> = Vec::new();
    for (series, points) in chart.series.iter().zip(&positions) {
        let shown: Vec<&Point> = series.points.iter().filter(finite).collect();
        for (point, &(x, y)) in shown.iter().zip(points) {
            let _ = write!(
                out,
                r#"<g class="{}"><title>{}</title>"#,
                series.point_class,
                escape(&point.tooltip)
            );
            marker_svg(&mut out, series.marker, x, y, series.color, series.dashed);
            out.push_str("</g>");
        }
        for (label, x, y) in coincident_labels(&shown, points) {
            requests.push((series.connect, x, y, truncate(&label, POINT_LABEL_CHARS)));
        }
    }
    // Lone reference points (the bounds) are labelled first: they have nothing else
    // to identify them, while a line's points are also told apart by the line.
    requests.sort_by_key(|(connected, ..)| *connected);
    let mut placed: Vec<(f64, f64, String)> = Vec::new();
    for (_, x, y, label) in requests {
        if let Some((lx, ly)) = place_label(x, y, &label, &taken, &frame) {
            taken.labels.push(label_rect(lx, ly, &label));
            placed.push((lx, ly, label));
        }
    }
    for (x, y, label) in placed {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" class="point-label">{}</text>"#,
            num(x),
            num(y),
            escape(&label)
        );
    }

    legend_svg(&mut out, &chart.id, &legend_items, left, legend_top);
    out.push_str("</svg>");
    Some(out)
}

/// The labels of a series' points, one per run of consecutive points drawn at the same
/// spot: such a run (a TTL scale that changed nothing) gets "first–last" once instead
/// of a stack of labels on top of each other.
fn coincident_labels(points: &[&Point], positions: &[(f64, f64)]) -> Vec<(String, f64, f64)> {
    let mut labels: Vec<(String, f64, f64)> = Vec::new();
    let mut run: Option<(String, String, f64, f64)> = None;
    for (point, &(x, y)) in points.iter().zip(positions) {
        let Some(label) = &point.label else {
            continue;
        };
        match &mut run {
            Some((_, last, rx, ry)) if (x - *rx).abs() < 1.5 && (y - *ry).abs() < 1.5 => {
                last.clone_from(label);
            }
            _ => {
                if let Some(done) = run.take() {
                    labels.push(run_label(done));
                }
                run = Some((label.clone(), label.clone(), x, y));
            }
        }
    }
    if let Some(done) = run {
        labels.push(run_label(done));
    }
    labels
}

fn run_label((first, last, x, y): (String, String, f64, f64)) -> (String, f64, f64) {
    if first == last {
        (first, x, y)
    } else {
        (format!("{first}–{last}"), x, y)
    }
}

fn line_svg(out: &mut String, series: &Series, points: &[(f64, f64)]) {
    let mut path = String::new();
    for (index, (x, y)) in points.iter().enumerate() {
        let command = if index == 0 { "M" } else { "L" };
        let _ = write!(path, "{command}{} {}", num(*x), num(*y));
    }
    let dash = if series.dashed {
        r#" stroke-dasharray="7 5""#
    } else {
        ""
    };
    let _ = write!(
        out,
        r#"<path d="{path}" fill="none" stroke="{}" stroke-width="2.4" stroke-linejoin="round"{dash}/>"#,
        series.color
    );
}

/// The plot area labels must stay in (they may reach a little beyond its right edge,
/// where there is margin).
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

/// What a label must not cover: markers and placed labels always, lines if possible.
#[derive(Default)]
struct Taken {
    markers: Vec<Rect>,
    labels: Vec<Rect>,
    lines: Vec<Rect>,
}

impl Taken {
    /// Covers a line segment with small squares every few pixels (a cheap stand-in
    /// for a segment-rectangle test that is exact enough at this scale).
    fn add_segment(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64)) {
        let length = (x1 - x0).hypot(y1 - y0);
        let steps = ((length / 4.0).ceil() as usize).clamp(1, 500);
        for step in 0..=steps {
            let t = step as f64 / steps as f64;
            self.lines
                .push(Rect::around(x0 + t * (x1 - x0), y0 + t * (y1 - y0), 1.5));
        }
    }
}

fn label_rect(x: f64, y: f64, label: &str) -> Rect {
    Rect {
        x0: x - 1.0,
        y0: y - 10.0,
        x1: x + text_width(label, 11.0) + 1.0,
        y1: y + 3.0,
    }
}

/// Finds where a label beside the point at (`x`, `y`) stays inside the plot and covers
/// no marker, label or line: right, above, below, left, then the corners. When every
/// place crosses a line, the first that only crosses lines will do (the label has a
/// white halo); when none is free of markers and labels, `None`: the point's tooltip
/// still carries the text.
fn place_label(x: f64, y: f64, label: &str, taken: &Taken, frame: &Frame) -> Option<(f64, f64)> {
    let width = text_width(label, 11.0);
    let candidates = [
        (x + 9.0, y + 4.0),
        (x - width / 2.0, y - 10.0),
        (x - width / 2.0, y + 18.0),
        (x - width - 9.0, y + 4.0),
        (x + 7.0, y - 8.0),
        (x + 7.0, y + 15.0),
        (x - width - 7.0, y - 8.0),
        (x - width - 7.0, y + 15.0),
        (x + 10.0, y - 14.0),
        (x + 10.0, y + 22.0),
        (x - width / 2.0, y - 22.0),
        (x - width / 2.0, y + 30.0),
    ];
    let inside = |rect: &Rect| {
        rect.x0 >= frame.left - 4.0
            && rect.x1 <= frame.right + 24.0
            && rect.y0 >= frame.top - 14.0
            && rect.y1 <= frame.bottom - 2.0
    };
    let free = |rect: &Rect, others: &[Rect]| others.iter().all(|other| !rect.overlaps(other));
    let usable: Vec<(f64, f64, Rect)> = candidates
        .into_iter()
        .map(|(lx, ly)| (lx, ly, label_rect(lx, ly, label)))
        .filter(|(_, _, rect)| {
            inside(rect) && free(rect, &taken.markers) && free(rect, &taken.labels)
        })
        .collect();
    usable
        .iter()
        .find(|(_, _, rect)| free(rect, &taken.lines))
        .or_else(|| usable.first())
        .map(|&(lx, ly, _)| (lx, ly))
}
