//! The horizontal bar chart: one row per policy or bound, one bar per series, bounds
//! hatched and set apart below a dashed rule.

use std::fmt::Write as _;

/// The bounds' fill on a one-series chart, and light-to-dark greys for several series.
const BOUND_GREY: &str = "#8c959f";
const BOUND_GREYS: [&str; 2] = ["#b4bcc6", "#6e7781"];

use super::{
    AXIS, BAR_LABEL_CHARS, CHAR_W, GRID, LegendItem, Scale, ScaleKind, WIDTH, escape, legend_rows,
    legend_svg, linear_domain, num, open_svg, thin_x_ticks, truncate,
};

/// A series of a bar chart (one bar per row each).
pub(crate) struct BarSeries {
    pub name: String,
    pub color: &'static str,
}

/// One row of a horizontal bar chart: a label and one value per series.
pub(crate) struct BarRow {
    pub label: String,
    /// Bounds are drawn hatched and their labels muted, set apart from the policies.
    pub bound: bool,
    pub values: Vec<f64>,
    /// The row's own colour, overriding the series' (a one-series chart colours each
    /// policy as the other charts do).
    pub color: Option<&'static str>,
}

/// A horizontal bar chart.
pub(crate) struct BarChart {
    pub id: String,
    pub title: String,
    pub axis_label: String,
    pub format: fn(f64) -> String,
    pub series: Vec<BarSeries>,
    pub rows: Vec<BarRow>,
}

/// Draws a horizontal bar chart, or returns `None` when it has no rows.
pub(crate) fn bar_chart(chart: &BarChart) -> Option<String> {
    if chart.rows.is_empty() || chart.series.is_empty() {
        return None;
    }
    let values: Vec<f64> = chart
        .rows
        .iter()
        .flat_map(|row| row.values.iter().copied())
        .filter(|value| value.is_finite())
        .collect();
    let (lo, hi, ticks) = linear_domain(&values, true, 1.0);

    let label_chars = chart
        .rows
        .iter()
        .map(|row| truncate(&row.label, BAR_LABEL_CHARS).chars().count())
        .max()
        .unwrap_or(0);
    let left = (label_chars as f64 * CHAR_W + 20.0).clamp(90.0, 250.0);
    let right = WIDTH - 86.0;
    let bar_height = if chart.series.len() > 1 { 14.0 } else { 20.0 };
    let row_height = bar_height * chart.series.len() as f64 + 12.0;
    let show_legend = chart.series.len() > 1 || chart.rows.iter().any(|row| row.bound);
    let mut legend_items: Vec<LegendItem> = chart
        .series
        .iter()
        .filter(|_| chart.series.len() > 1)
        .map(|series| LegendItem {
            name: series.name.clone(),
            color: series.color,
            marker: None,
            dashed: false,
            hatched: false,
        })
        .collect();
    if chart.rows.iter().any(|row| row.bound) {
        legend_items.push(LegendItem {
            name: "bound (reference, not a policy)".to_owned(),
            color: BOUND_GREY,
            marker: None,
            dashed: false,
            hatched: true,
        });
    }
    let (_, legend_height) = if show_legend {
        legend_rows(&legend_items, left)
    } else {
        (Vec::new(), 0.0)
    };
    let top = 12.0 + legend_height + if show_legend { 8.0 } else { 0.0 };
    let first_bound = chart.rows.iter().position(|row| row.bound);
    let separator = match first_bound {
        Some(index) if index > 0 => 14.0,
        _ => 0.0,
    };
    let plot_top = top;
    let plot_bottom = plot_top + row_height * chart.rows.len() as f64 + separator;
    let height = plot_bottom + 48.0;
    let scale = Scale {
        kind: ScaleKind::Linear,
        lo,
        hi,
        px_lo: left,
        px_hi: right,
        ticks,
    };

    let mut out = String::new();
    open_svg(&mut out, &chart.id, &chart.title, height);
    let _ = write!(
        out,
        r#"<defs><pattern id="{}-hatch" patternUnits="userSpaceOnUse" width="7" height="7" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="7" stroke="white" stroke-width="3" stroke-opacity="0.7"/></pattern></defs>"#,
        escape(&chart.id)
    );
    if show_legend {
        legend_svg(&mut out, &chart.id, &legend_items, left, 8.0);
    }

    out.push_str(r#"<g class="grid">"#);
    for (tick, label) in thin_x_ticks(&scale, chart.format) {
        let x = scale.map(tick);
        let _ = write!(
            out,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{GRID}"/><text x="{x}" y="{}" text-anchor="middle" class="tick">{}</text>"#,
            num(plot_top),
            num(plot_bottom),
            num(plot_bottom + 18.0),
            escape(&label),
            x = num(x),
        );
    }
    out.push_str("</g>");
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" class="axis-label">{}</text>"#,
        num((left + right) / 2.0),
        num(plot_bottom + 40.0),
        escape(&chart.axis_label)
    );

    let zero = scale.map(0.0);
    let mut y = plot_top;
    for (index, row) in chart.rows.iter().enumerate() {
        if Some(index) == first_bound && index > 0 {
            let _ = write!(
                out,
                r#"<line x1="8" y1="{}" x2="{}" y2="{}" stroke="{AXIS}" stroke-dasharray="3 3"/>"#,
                num(y + separator / 2.0),
                num(right),
                num(y + separator / 2.0)
            );
            y += separator;
        }
        let group_height = bar_height * chart.series.len() as f64;
        let label_class = if row.bound {
            "bar-label bound"
        } else {
            "bar-label"
        };
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end" class="{label_class}"><title>{}</title>{}</text>"#,
            num(left - 10.0),
            num(y + 6.0 + group_height / 2.0 + 4.0),
            escape(&row.label),
            escape(&truncate(&row.label, BAR_LABEL_CHARS))
        );
        for (series_index, series) in chart.series.iter().enumerate() {
            let value = row.values.get(series_index).copied().unwrap_or(0.0);
            let value = if value.is_finite() { value } else { 0.0 };
            let bar_top = y + 6.0 + series_index as f64 * bar_height;
            let end = scale.map(value);
            let (x0, width) = if end >= zero {
                (zero, end - zero)
            } else {
                (end, zero - end)
            };
            // Bounds are grey whatever the series; with several series the greys
            // step from light to dark in series order, as the series colours do.
            let color = if row.bound {
                if chart.series.len() > 1 {
                    BOUND_GREYS[series_index % BOUND_GREYS.len()]
                } else {
                    BOUND_GREY
                }
            } else {
                row.color.unwrap_or(series.color)
            };
            let _ = write!(
                out,
                r#"<g class="bar"><title>{}: {} {}</title><rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{color}"/>"#,
                escape(&row.label),
                escape(&series.name),
                escape(&(chart.format)(value)),
                num(x0),
                num(bar_top + 1.0),
                num(width.max(0.0)),
                num(bar_height - 2.0),
            );
            if row.bound {
                let _ = write!(
                    out,
                    r#"<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="url(#{}-hatch)"/>"#,
                    num(x0),
                    num(bar_top + 1.0),
                    num(width.max(0.0)),
                    num(bar_height - 2.0),
                    escape(&chart.id)
                );
            }
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" class="bar-value">{}</text></g>"#,
                num(end.max(zero) + 5.0),
                num(bar_top + bar_height / 2.0 + 4.0),
                escape(&(chart.format)(value))
            );
        }
        y += row_height;
    }
    let _ = write!(
        out,
        r#"<line x1="{z}" y1="{}" x2="{z}" y2="{}" stroke="{AXIS}"/>"#,
        num(plot_top),
        num(plot_bottom),
        z = num(zero)
    );
    out.push_str("</svg>");
    Some(out)
}
