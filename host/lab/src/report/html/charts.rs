//! The report's four charts, built from the report's numbers: hit ratio by cache size,
//! the freshness trade-off, backend time saved and latency.

use super::format::{bytes, ms, pct, scale};
use super::{PALETTE, Styles, chart_panel};
use crate::report::svg::{
    self, Axis, BarChart, BarRow, BarSeries, Point, ScaleKind, Series, XyChart,
};
use crate::results::{LabReport, PolicyRun, RunKind, SweepPoint};

/// Sweep points grouped by policy name, in first-seen order.
fn by_policy(points: &[SweepPoint]) -> Vec<(String, RunKind, Vec<&SweepPoint>)> {
    let mut groups: Vec<(String, RunKind, Vec<&SweepPoint>)> = Vec::new();
    for point in points {
        match groups.iter_mut().find(|(name, _, _)| *name == point.policy) {
            Some((_, _, members)) => members.push(point),
            None => groups.push((point.policy.clone(), point.kind, vec![point])),
        }
    }
    groups
}

pub(super) fn size_chart(out: &mut String, report: &LabReport, styles: &Styles) {
    let mut groups = by_policy(&report.size_sweep);
    // Bounds last, so they draw over the policies they bound and close the legend.
    groups.sort_by_key(|(_, kind, _)| *kind == RunKind::Bound);
    let series = groups
        .into_iter()
        .map(|(name, kind, mut points)| {
            points.sort_by(|a, b| a.size_fraction.total_cmp(&b.size_fraction));
            let style = styles.get(&name, kind);
            Series {
                name: if kind == RunKind::Bound {
                    format!("{name} (upper bound)")
                } else {
                    name.clone()
                },
                color: style.color,
                marker: style.marker,
                dashed: style.dashed,
                connect: true,
                point_class: "size-pt",
                points: points
                    .iter()
                    .map(|point| Point {
                        x: point.size_fraction,
                        y: point.metrics.hit_ratio,
                        label: None,
                        tooltip: format!(
                            "{name}: {} hits at {} of the working set ({})",
                            pct(point.metrics.hit_ratio),
                            pct(point.size_fraction),
                            bytes(point.cache_bytes as f64)
                        ),
                    })
                    .collect(),
            }
        })
        .collect();
    let chart = XyChart {
        id: "chart-size".to_owned(),
        title: "Hit ratio vs cache size".to_owned(),
        x: Axis {
            label: "Cache size, share of the working set (log scale)".to_owned(),
            kind: ScaleKind::Log,
            format: pct,
            preferred_ticks: report.settings.size_fractions.clone(),
            include_zero: false,
            flat_max: 1.0,
        },
        y: Axis {
            label: "Hit ratio".to_owned(),
            kind: ScaleKind::Linear,
            format: pct,
            preferred_ticks: Vec::new(),
            include_zero: true,
            flat_max: 1.0,
        },
        series,
    };
    chart_panel(
        out,
        "chart-size",
        "Hit ratio vs cache size",
        svg::xy_chart(&chart),
        "No size sweep in this run (no cache sizes were swept), so there is no hit-ratio-by-size chart.",
        "Each line is one policy replayed at several cache sizes (byte budgets, weighed as serve weighs entries); higher is better. The dashed black line is Belady's bound with perfect invalidation: evicting the entries used furthest in the future, by bytes. That is the standard size-aware yardstick (exact optimal caching of entries of different sizes is NP-hard, so a policy may edge past it); the gap to it is what better eviction could still win, and a policy well above it is counting stale hits (see the stale column and the trade-off below).",
    );
}

pub(super) fn tradeoff_chart(out: &mut String, report: &LabReport, styles: &Styles) {
    let mut series: Vec<Series> = by_policy(&report.ttl_sweep)
        .into_iter()
        .map(|(name, kind, mut points)| {
            points.sort_by(|a, b| a.ttl_scale.total_cmp(&b.ttl_scale));
            let style = styles.get(&name, kind);
            Series {
                name: name.clone(),
                color: style.color,
                marker: style.marker,
                dashed: style.dashed,
                connect: true,
                point_class: "ttl-pt",
                points: points
                    .iter()
                    .map(|point| Point {
                        x: point.metrics.stale_hit_ratio,
                        y: point.metrics.hit_ratio,
                        label: Some(scale(point.ttl_scale)),
                        tooltip: format!(
                            "{name} at TTL {}: {} hits, {} stale hits",
                            scale(point.ttl_scale),
                            pct(point.metrics.hit_ratio),
                            pct(point.metrics.stale_hit_ratio)
                        ),
                    })
                    .collect(),
            }
        })
        .collect();
    let has_sweep = !series.is_empty();
    if has_sweep {
        for bound in &report.bounds {
            let style = styles.get(&bound.name, bound.kind);
            series.push(Series {
                name: format!("{} (bound)", bound.name),
                color: style.color,
                marker: style.marker,
                dashed: true,
                connect: false,
                point_class: "bound-pt",
                points: vec![Point {
                    x: bound.metrics.stale_hit_ratio,
                    y: bound.metrics.hit_ratio,
                    label: Some(bound.name.clone()),
                    tooltip: format!(
                        "{}: {} hits, {} stale hits",
                        bound.name,
                        pct(bound.metrics.hit_ratio),
                        pct(bound.metrics.stale_hit_ratio)
                    ),
                }],
            });
        }
    }
    let chart = XyChart {
        id: "chart-tradeoff".to_owned(),
        title: "Freshness trade-off: hit ratio vs stale-hit ratio".to_owned(),
        x: Axis {
            label: "Stale-hit ratio (reads answered with an outdated result)".to_owned(),
            kind: ScaleKind::Linear,
            format: pct,
            preferred_ticks: Vec::new(),
            include_zero: true,
            flat_max: 0.01,
        },
        y: Axis {
            label: "Hit ratio".to_owned(),
            kind: ScaleKind::Linear,
            format: pct,
            preferred_ticks: Vec::new(),
            include_zero: true,
            flat_max: 1.0,
        },
        series,
    };
    chart_panel(
        out,
        "chart-tradeoff",
        "Freshness trade-off: hit ratio vs stale-hit ratio",
        if has_sweep {
            svg::xy_chart(&chart)
        } else {
            None
        },
        "No TTL sweep in this run (no TTL scales were swept), so there is no trade-off chart.",
        "Each point is one policy with every TTL multiplied by the scale beside it (×0.5 halves them); a policy's points are joined in scale order. Up is more hits, left is fewer stale answers, so the best trade-offs sit top left. Hollow markers are the bounds at the base setting; perfect invalidation sits at zero staleness.",
    );
}

/// The policies then the bounds, as bar rows of one or more values.
fn run_rows(
    report: &LabReport,
    styles: &Styles,
    values: impl Fn(&PolicyRun) -> Vec<f64>,
) -> Vec<BarRow> {
    report
        .policies
        .iter()
        .chain(&report.bounds)
        .map(|run| BarRow {
            label: run.name.clone(),
            bound: run.kind == RunKind::Bound,
            values: values(run),
            color: Some(styles.get(&run.name, run.kind).color),
        })
        .collect()
}

pub(super) fn saved_chart(out: &mut String, report: &LabReport, styles: &Styles) {
    let chart = BarChart {
        id: "chart-saved".to_owned(),
        title: "Backend time saved".to_owned(),
        axis_label: "Backend time the cache's hits avoided, over the whole trace".to_owned(),
        format: ms,
        series: vec![BarSeries {
            name: "saved".to_owned(),
            color: PALETTE[0],
        }],
        rows: run_rows(report, styles, |run| {
            vec![run.metrics.backend_time_saved_ms]
        }),
    };
    chart_panel(
        out,
        "chart-saved",
        "Backend time saved",
        svg::bar_chart(&chart),
        "This run replayed no policy and no bound, so there is nothing to compare.",
        "Backend time each policy's hits avoided, from the latencies recorded in the trace; longer is better. Hatched grey bars are bounds (what no cache, perfect invalidation and optimal eviction would give), not policies.",
    );
}

pub(super) fn latency_chart(out: &mut String, report: &LabReport, styles: &Styles) {
    let mut rows = run_rows(report, styles, |run| {
        vec![run.metrics.latency_mean_ms, run.metrics.latency_p99_ms]
    });
    // Two series share each row here, so the series colours carry the meaning.
    for row in &mut rows {
        row.color = None;
    }
    let chart = BarChart {
        id: "chart-latency".to_owned(),
        title: "Latency per call".to_owned(),
        axis_label: "Latency per call (reads and writes)".to_owned(),
        format: ms,
        series: vec![
            BarSeries {
                name: "mean".to_owned(),
                color: "#56B4E9",
            },
            BarSeries {
                name: "p99".to_owned(),
                color: "#0072B2",
            },
        ],
        rows,
    };
    chart_panel(
        out,
        "chart-latency",
        "Latency per call: mean and p99",
        svg::bar_chart(&chart),
        "This run replayed no policy and no bound, so there is no latency to show.",
        "Latency each call would have seen under each policy: the backend's recorded latency on a miss, the hit cost on a hit. The light bar is the mean, the dark one the 99th percentile; shorter is better.",
    );
}
