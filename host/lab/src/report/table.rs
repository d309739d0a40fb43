//! The terminal table of a `bench policies` run: the headline per policy and bound, the
//! sweeps as compact matrices, and the change against a baseline.

use std::fmt::Write as _;

use crate::results::{LabReport, PolicyRun, RunKind, SweepPoint};

/// The whole report as text for a terminal.
pub fn render(report: &LabReport) -> String {
    let mut out = String::new();
    let trace = &report.trace;
    let _ = writeln!(
        out,
        "trace {}: {} calls ({} reads, {} writes) over {:.1} s; working set {} keys, {}",
        trace.source,
        trace.events,
        trace.reads,
        trace.writes,
        trace.duration_ms / 1e3,
        trace.working_set_entries,
        human_bytes(trace.working_set_bytes as f64),
    );
    if trace.unverifiable_reads > 0 {
        let _ = writeln!(
            out,
            "  {} reads were recorded hits after a write: their truth is unknown, so their hits count as unverified",
            trace.unverifiable_reads
        );
    }
    let settings = &report.settings;
    let _ = writeln!(
        out,
        "cache {} ({:.0}% of the working set's bytes), eviction {}, hit cost {:.0} µs\n",
        human_bytes(settings.cache_bytes as f64),
        settings.size_fraction * 100.0,
        settings.eviction,
        settings.hit_latency_us
    );
    headline(&mut out, report);
    shapers(&mut out, report);
    size_matrix(&mut out, report);
    ttl_matrix(&mut out, report);
    baseline(&mut out, report);
    out
}

fn headline(out: &mut String, report: &LabReport) {
    let header = [
        "policy",
        "hit",
        "stale",
        "stale p50",
        "stale p99",
        "saved calls",
        "saved time",
        "mean lat",
        "p99 lat",
        "peak entries",
        "peak bytes",
        "decide",
        "replay",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for run in report.policies.iter().chain(&report.bounds) {
        rows.push(headline_row(run));
    }
    write_table(out, &header, &rows);
    out.push('\n');
}

fn headline_row(run: &PolicyRun) -> Vec<String> {
    let metrics = &run.metrics;
    let name = match run.kind {
        RunKind::Bound => format!("[{}]", run.name),
        _ => run.name.clone(),
    };
    let decide = if matches!(run.kind, RunKind::Bound | RunKind::Live) {
        "-".to_owned()
    } else {
        format!("{:.0} ns", metrics.decision_ns)
    };
    vec![
        name,
        percent(metrics.hit_ratio),
        percent(metrics.stale_hit_ratio),
        millis(metrics.staleness_p50_ms),
        millis(metrics.staleness_p99_ms),
        metrics.backend_calls_saved.to_string(),
        seconds(metrics.backend_time_saved_ms),
        millis(metrics.latency_mean_ms),
        millis(metrics.latency_p99_ms),
        metrics.peak_entries.to_string(),
        human_bytes(metrics.peak_bytes as f64),
        decide,
        format!("{:.2} M ev/s", run.events_per_second / 1e6),
    ]
}

/// Which part of each chain decided its calls, deployed and alone, and what each policy
/// achieves alone: identical rows above are explained here, not left a mystery.
fn shapers(out: &mut String, report: &LabReport) {
    if report.alone.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "who decided (share of calls) as deployed with this config, and each policy alone (before the built-in defaults only, no config rules):"
    );
    let header = [
        "policy",
        "plugin",
        "config rules",
        "defaults",
        "alone: hit",
        "alone: stale",
        "alone: saved time",
    ];
    let rows: Vec<Vec<String>> = report
        .policies
        .iter()
        .map(|run| {
            let metrics = &run.metrics;
            let calls =
                (metrics.shaped_by_plugin + metrics.shaped_by_config + metrics.shaped_by_default)
                    .max(1) as f64;
            let share = |count: u64| percent(count as f64 / calls);
            let alone = report.alone.iter().find(|alone| alone.name == run.name);
            let alone_cell =
                |cell: fn(&PolicyRun) -> String| alone.map_or_else(|| "-".to_owned(), cell);
            vec![
                run.name.clone(),
                share(metrics.shaped_by_plugin),
                share(metrics.shaped_by_config),
                share(metrics.shaped_by_default),
                alone_cell(|run| percent(run.metrics.hit_ratio)),
                alone_cell(|run| percent(run.metrics.stale_hit_ratio)),
                alone_cell(|run| seconds(run.metrics.backend_time_saved_ms)),
            ]
        })
        .collect();
    write_table(out, &header, &rows);
    let ruled = report.policies.iter().any(|run| {
        let metrics = &run.metrics;
        let calls = metrics.shaped_by_plugin + metrics.shaped_by_config + metrics.shaped_by_default;
        run.kind == RunKind::Wasm && calls > 0 && metrics.shaped_by_config * 2 > calls
    });
    if ruled {
        let _ = writeln!(
            out,
            "  the config's [cache.ttl] rows and [[cache.invalidate]] rules decide most calls of some plugins as deployed; compare the \"alone\" columns to see the plugins themselves, or pass --config with fewer rules"
        );
    }
    out.push('\n');
}

/// Hit ratio by cache size: one row per policy, one column per size.
fn size_matrix(out: &mut String, report: &LabReport) {
    let fractions = &report.settings.size_fractions;
    if fractions.is_empty() || report.size_sweep.is_empty() {
        return;
    }
    let _ = writeln!(out, "hit ratio by cache size (share of the working set):");
    let mut header = vec!["policy".to_owned()];
    header.extend(
        fractions
            .iter()
            .map(|fraction| format!("{}%", fraction * 100.0)),
    );
    let rows = by_policy(
        &report.size_sweep,
        fractions,
        |point| point.size_fraction,
        |point| percent(point.metrics.hit_ratio),
    );
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    write_table(out, &header, &rows);
    out.push('\n');
}

/// Hit and stale-hit ratio by TTL scale.
fn ttl_matrix(out: &mut String, report: &LabReport) {
    let scales = &report.settings.ttl_scales;
    if scales.is_empty() || report.ttl_sweep.is_empty() {
        return;
    }
    let _ = writeln!(out, "hit / stale-hit ratio by TTL scale:");
    let mut header = vec!["policy".to_owned()];
    header.extend(scales.iter().map(|scale| format!("x{scale}")));
    let rows = by_policy(
        &report.ttl_sweep,
        scales,
        |point| point.ttl_scale,
        |point| {
            format!(
                "{} / {}",
                percent(point.metrics.hit_ratio),
                percent(point.metrics.stale_hit_ratio)
            )
        },
    );
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    write_table(out, &header, &rows);
    out.push('\n');
}

fn by_policy(
    points: &[SweepPoint],
    columns: &[f64],
    column_of: impl Fn(&SweepPoint) -> f64,
    cell: impl Fn(&SweepPoint) -> String,
) -> Vec<Vec<String>> {
    let mut names: Vec<&str> = Vec::new();
    for point in points {
        if !names.contains(&point.policy.as_str()) {
            names.push(&point.policy);
        }
    }
    names
        .iter()
        .map(|name| {
            let mut row = vec![name.to_string()];
            for column in columns {
                let found = points
                    .iter()
                    .find(|point| point.policy == *name && column_of(point) == *column);
                row.push(found.map_or_else(|| "-".to_owned(), &cell));
            }
            row
        })
        .collect()
}

fn baseline(out: &mut String, report: &LabReport) {
    let Some(diff) = &report.baseline else {
        return;
    };
    let _ = writeln!(out, "change against the baseline {}:", diff.source);
    let header = ["policy", "hit", "stale", "saved time", "p99 lat", "decide"];
    let rows: Vec<Vec<String>> = diff
        .rows
        .iter()
        .map(|row| {
            vec![
                row.policy.clone(),
                format!(
                    "{} -> {} ({:+.1} pt)",
                    percent(row.hit_ratio.before),
                    percent(row.hit_ratio.after),
                    row.hit_ratio.delta() * 100.0
                ),
                format!(
                    "{} -> {} ({:+.2} pt)",
                    percent(row.stale_hit_ratio.before),
                    percent(row.stale_hit_ratio.after),
                    row.stale_hit_ratio.delta() * 100.0
                ),
                format!(
                    "{} -> {}",
                    seconds(row.backend_time_saved_ms.before),
                    seconds(row.backend_time_saved_ms.after)
                ),
                format!(
                    "{} -> {}",
                    millis(row.latency_p99_ms.before),
                    millis(row.latency_p99_ms.after)
                ),
                format!(
                    "{:.0} -> {:.0} ns",
                    row.decision_ns.before, row.decision_ns.after
                ),
            ]
        })
        .collect();
    write_table(out, &header, &rows);
    for name in &diff.only_in_baseline {
        let _ = writeln!(out, "  {name}: only in the baseline");
    }
    for name in &diff.only_in_this_run {
        let _ = writeln!(out, "  {name}: new in this run");
    }
}

/// Left-aligned first column, right-aligned numbers, two spaces between columns.
fn write_table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        for (index, cell) in cells.enumerate() {
            let width = widths.get(index).copied().unwrap_or(0);
            if index == 0 {
                let _ = write!(out, "{cell:<width$}");
            } else {
                let _ = write!(out, "  {cell:>width$}");
            }
        }
        out.push('\n');
    };
    line(out, &mut header.iter().copied());
    let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    line(out, &mut rule.iter().map(String::as_str));
    for row in rows {
        line(out, &mut row.iter().map(String::as_str));
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

fn millis(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1e3)
    } else {
        format!("{ms:.1} ms")
    }
}

fn seconds(ms: f64) -> String {
    format!("{:.1} s", ms / 1e3)
}

fn human_bytes(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
    } else if bytes >= 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}
