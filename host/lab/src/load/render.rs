//! The human-readable form of a [`LoadReport`]: a compact table for the terminal.

use std::fmt::Write as _;

use super::stats::{GroupReport, Latency, LoadReport, ModeReport};

/// The report as a table, latencies in milliseconds.
pub fn table(report: &LoadReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(out, "bench load: {}", report.target);
    let _ = writeln!(out, "source:     {}", report.source);
    let model = match &report.mode {
        ModeReport::Open {
            rate: Some(rate),
            arrivals,
            max_inflight,
        } => format!("open, {rate} calls/s, {arrivals} arrivals, at most {max_inflight} in flight"),
        ModeReport::Open {
            rate: None,
            max_inflight,
            ..
        } => format!("open, at the source's own arrival times, at most {max_inflight} in flight"),
        ModeReport::Closed { connections } => {
            format!("closed loop, {connections} connections")
        }
    };
    let _ = writeln!(out, "model:      {model}");
    let _ = writeln!(
        out,
        "window:     {:.2} s after {:.2} s of warm-up; {} calls, {} ok ({:.2}%), {} failed; {:.1} ok calls/s",
        report.window_s,
        report.warmup_s,
        report.calls,
        report.ok,
        report.success_rate * 100.0,
        report.failed,
        report.throughput
    );
    let latency_label = match report.mode {
        ModeReport::Open { .. } => "latency, from the intended send (ms)",
        ModeReport::Closed { .. } => "latency, from the send (ms)",
    };
    let _ = writeln!(
        out,
        "\n{latency_label:<40} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "calls", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
    latency_row(
        &mut out,
        "all successful calls",
        report.latency.count,
        &report.latency,
    );
    if matches!(report.mode, ModeReport::Open { .. }) {
        latency_row(
            &mut out,
            "  service time (from the actual send)",
            report.service_time.count,
            &report.service_time,
        );
        latency_row(
            &mut out,
            "  send lag (generator late by)",
            report.send_lag.count,
            &report.send_lag,
        );
    }
    group_row(&mut out, "reads", &report.reads);
    group_row(&mut out, "writes", &report.writes);
    let _ = writeln!(
        out,
        "\n{:<24} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "per tool", "calls", "ok", "errors", "mean", "p50", "p99", "max"
    );
    for (tool, group) in &report.tools {
        let latency = &group.latency;
        let _ = writeln!(
            out,
            "{tool:<24} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
            group.calls,
            group.ok,
            group.errors,
            ms(latency.mean_us),
            ms(latency.p50_us),
            ms(latency.p99_us),
            ms(latency.max_us)
        );
    }
    let errors = &report.errors;
    let _ = writeln!(
        out,
        "\nerrors: {} (http status {}, json-rpc {}, tool {}, timeout {}, connection {}, protocol {})",
        errors.total(),
        errors.http_status,
        errors.jsonrpc,
        errors.tool,
        errors.timeout,
        errors.connection,
        errors.protocol
    );
    for message in &report.first_errors {
        let _ = writeln!(out, "  {message}");
    }
    match &report.cache {
        Some(cache) => {
            let _ = writeln!(
                out,
                "bridge cache during the run: {} hits, {} misses, {} stale, {} coalesced, hit rate {:.1}%, {} entries after",
                cache.hits,
                cache.misses,
                cache.stale_served,
                cache.coalesced,
                cache.hit_rate * 100.0,
                cache.entries_after
            );
        }
        None => {
            let _ = writeln!(
                out,
                "bridge cache: off or not readable (/admin/cache/stats)"
            );
        }
    }
    let _ = write!(
        out,
        "sessions opened: {}, peak calls in flight: {}",
        report.sessions_opened, report.peak_inflight
    );
    out
}

fn group_row(out: &mut String, label: &str, group: &GroupReport) {
    if group.calls == 0 {
        return;
    }
    let label = format!("{label} ({} failed)", group.errors);
    latency_row(out, &label, group.calls, &group.latency);
}

fn latency_row(out: &mut String, label: &str, calls: u64, latency: &Latency) {
    let _ = writeln!(
        out,
        "{label:<40} {calls:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        ms(latency.mean_us),
        ms(latency.p50_us),
        ms(latency.p90_us),
        ms(latency.p99_us),
        ms(latency.p999_us),
        ms(latency.max_us)
    );
}

/// Microseconds as milliseconds with three decimals.
fn ms(micros: f64) -> String {
    format!("{:.3}", micros / 1000.0)
}
