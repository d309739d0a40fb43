//! The rows the seed-table bench measures, the seed guide's own figures beside them, and a
//! plain-text table printer.

use mcp_bridge::lab::load::{Latency, LoadReport};
use serde::Serialize;

use super::drive::Measured;

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub name: String,
    pub calls: u64,
    pub ok: u64,
    pub success_rate: f64,
    pub throughput: f64,
    pub latency: Latency,
    pub first_error: Option<String>,
    /// Only bridge rows: the cache's hit rate over the run.
    pub hit_rate: Option<f64>,
    /// Only bridge rows: the bridge's RSS after the run, and with its demo servers.
    pub bridge_rss_kib: Option<u64>,
    pub total_rss_kib: Option<u64>,
}

impl Row {
    pub(crate) fn from_report(name: &str, report: &LoadReport) -> Row {
        Row {
            name: name.to_owned(),
            calls: report.calls,
            ok: report.ok,
            success_rate: report.success_rate,
            throughput: report.throughput,
            latency: report.latency,
            first_error: report.first_errors.first().cloned(),
            hit_rate: report.cache.as_ref().map(|cache| cache.hit_rate),
            bridge_rss_kib: None,
            total_rss_kib: None,
        }
    }

    pub(crate) fn from_measured(name: &str, measured: &Measured) -> Row {
        Row {
            name: name.to_owned(),
            calls: measured.calls,
            ok: measured.ok,
            success_rate: measured.success_rate(),
            throughput: (measured.throughput() * 10.0).round() / 10.0,
            latency: measured.latency,
            first_error: measured.first_error.clone(),
            hit_rate: None,
            bridge_rss_kib: None,
            total_rss_kib: None,
        }
    }

    pub(crate) fn mean_ms(&self) -> String {
        ms(self.latency.mean_us)
    }

    pub(crate) fn p50_ms(&self) -> String {
        ms(self.latency.p50_us)
    }

    pub(crate) fn p95_ms(&self) -> String {
        ms(self.latency.p95_us)
    }

    pub(crate) fn p99_ms(&self) -> String {
        ms(self.latency.p99_us)
    }

    pub(crate) fn success(&self) -> String {
        format!("{:.1}%", self.success_rate * 100.0)
    }
}

/// Microseconds as milliseconds, with precision that suits the size.
pub(crate) fn ms(micros: f64) -> String {
    let millis = micros / 1000.0;
    if millis >= 100.0 {
        format!("{millis:.0}ms")
    } else if millis >= 1.0 {
        format!("{millis:.1}ms")
    } else {
        format!("{millis:.2}ms")
    }
}

pub(crate) fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "-".to_owned(),
        |kib| format!("{:.0}MB", kib as f64 / 1024.0),
    )
}

/// A text table: the header, then one line per row, columns padded to their widest cell.
pub(crate) fn render(title: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, width))| {
                if column == 0 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = format!("\n{title}\n");
    out.push_str(&line(&mut header.iter().copied()));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

/// The seed's Benchmark 1 figures (avg, p95, p99, throughput) by row key.
pub(crate) fn seed_pooling(key: &str) -> [&'static str; 4] {
    match key {
        "spawn" => ["78ms", "120ms", "150ms", "12/s"],
        "pool-1-5" => ["18ms", "28ms", "35ms", "55/s"],
        "pool-2-10" => ["15ms", "22ms", "30ms", "66/s"],
        "pool-5-20" => ["12ms", "18ms", "25ms", "83/s"],
        _ => ["-", "-", "-", "-"],
    }
}

/// The seed's Benchmark 2 row nearest to a hit rate: (its hit rate, avg, p95, memory).
pub(crate) fn seed_cache(hit_rate: f64) -> [&'static str; 4] {
    let rows = [
        (0.0, ["0%", "18ms", "28ms", "250MB"]),
        (0.5, ["50%", "13ms", "20ms", "270MB"]),
        (0.75, ["75%", "10ms", "15ms", "280MB"]),
        (0.9, ["90%", "8ms", "12ms", "290MB"]),
    ];
    rows.iter()
        .min_by(|a, b| {
            let distance = |rate: f64| (rate - hit_rate).abs();
            distance(a.0).total_cmp(&distance(b.0))
        })
        .map_or(["-", "-", "-", "-"], |(_, figures)| *figures)
}

/// The seed's Benchmark 4 figures (success, avg, p95) by row key.
pub(crate) fn seed_stress(key: &str) -> [&'static str; 3] {
    match key {
        "spawn" => ["45%", "2500ms", "5000ms"],
        "pool-1-5" => ["85%", "150ms", "500ms"],
        "pool-2-10" => ["98%", "45ms", "120ms"],
        "pool-5-20" => ["99.8%", "25ms", "60ms"],
        _ => ["-", "-", "-"],
    }
}
