//! The bench's output: a table on stdout and a JSON document on disk.

use std::fmt::Write as _;

use super::load::LoadReport;
use super::stats::{CpuProbe, Summary};

/// Targets from the product brief for the uncached call overhead, in microseconds.
pub const TARGET_ADDED_P50_US: f64 = 30.0;
pub const TARGET_ADDED_P99_US: f64 = 100.0;

/// The sequential-latency results.
pub struct Latency {
    /// How many interleaved rounds the calls were split into.
    pub rounds: usize,
    pub direct: Summary,
    pub bridge: Summary,
    pub floor: Summary,
}

/// Renders the human-readable table.
pub fn table(
    header: &str,
    judge: bool,
    latency: &Latency,
    bridge_load: &LoadReport,
    baseline_load: &LoadReport,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}\n");
    let _ = writeln!(
        out,
        "Sequential warm tools/call {} on one connection, {} calls per path \
         in {} interleaved rounds, µs",
        super::rpc::TOOL,
        latency.direct.count,
        latency.rounds
    );
    let _ = writeln!(
        out,
        "{:<34}{:>8}{:>8}{:>8}{:>8}{:>8}{:>8}{:>9}",
        "path", "min", "p50", "p90", "p99", "p99.9", "mean", "max"
    );
    let row = |out: &mut String, label: &str, s: &Summary| {
        let _ = writeln!(
            out,
            "{label:<34}{:>8.1}{:>8.1}{:>8.1}{:>8.1}{:>8.1}{:>8.1}{:>9.1}",
            s.min, s.p50, s.p90, s.p99, s.p999, s.mean, s.max
        );
    };
    row(&mut out, "(a) direct stdio (baseline)", &latency.direct);
    row(&mut out, "(b) bridge, POST /mcp/demo", &latency.bridge);
    row(
        &mut out,
        "(f) bare hyper, HTTP only (floor)",
        &latency.floor,
    );
    let (direct, bridge) = (&latency.direct, &latency.bridge);
    let pairs = [
        (bridge.min, direct.min),
        (bridge.p50, direct.p50),
        (bridge.p90, direct.p90),
        (bridge.p99, direct.p99),
        (bridge.p999, direct.p999),
        (bridge.mean, direct.mean),
    ];
    let _ = write!(out, "{:<34}", "added by the bridge (b - a)");
    for (b, a) in pairs {
        let _ = write!(out, "{:>+8.1}", b - a);
    }
    let _ = write!(out, "\n{:<34}", "ratio (b / a)");
    for (b, a) in pairs {
        let _ = write!(out, "{:>7.2}x", ratio(b, a));
    }
    out.push('\n');
    let added_p50 = bridge.p50 - direct.p50;
    let added_p99 = bridge.p99 - direct.p99;
    if judge {
        let _ = writeln!(
            out,
            "brief's target: added p50 <= +{TARGET_ADDED_P50_US} µs ({}), \
             added p99 <= +{TARGET_ADDED_P99_US} µs ({})",
            verdict(added_p50 <= TARGET_ADDED_P50_US),
            verdict(added_p99 <= TARGET_ADDED_P99_US),
        );
    } else {
        let _ = writeln!(
            out,
            "(a smoke run or a debug build: too little to judge the brief's targets by)"
        );
    }
    let _ = writeln!(
        out,
        "bridge's own work beyond both transports (b - a - f) at p50: {:+.1} µs",
        bridge.p50 - direct.p50 - latency.floor.p50
    );

    let _ = writeln!(
        out,
        "\nThroughput, {} keep-alive connections, closed loop, {:.1} s measured per target \
         in {} alternating rounds",
        bridge_load.connections,
        bridge_load.window.as_secs_f64(),
        bridge_load.per_round.len()
    );
    let _ = writeln!(
        out,
        "{:<34}{:>10}{:>9}{:>9}{:>9}{:>10}{:>8}",
        "target", "calls/s", "p50", "p90", "p99", "ok", "errors"
    );
    let load_row = |out: &mut String, label: &str, load: &LoadReport| {
        let _ = writeln!(
            out,
            "{label:<34}{:>10.0}{:>9.1}{:>9.1}{:>9.1}{:>10}{:>8}",
            load.calls_per_second(),
            load.latency.p50,
            load.latency.p90,
            load.latency.p99,
            load.ok,
            load.errors
        );
    };
    load_row(&mut out, "bridge -> demo server (0 latency)", bridge_load);
    load_row(&mut out, "bare hyper (baseline)", baseline_load);
    let _ = writeln!(
        out,
        "{:<34}{:>9.2}x{:>8.2}x{:>8.2}x{:>8.2}x",
        "ratio (bridge / baseline)",
        ratio(
            bridge_load.calls_per_second(),
            baseline_load.calls_per_second()
        ),
        ratio(bridge_load.latency.p50, baseline_load.latency.p50),
        ratio(bridge_load.latency.p90, baseline_load.latency.p90),
        ratio(bridge_load.latency.p99, baseline_load.latency.p99),
    );
    let round_ratios: Vec<f64> = bridge_load
        .per_round
        .iter()
        .zip(&baseline_load.per_round)
        .map(|(bridge, baseline)| ratio(*bridge, *baseline))
        .collect();
    let _ = writeln!(
        out,
        "calls/s per round: bridge {}; baseline {}; ratio {}",
        list(&bridge_load.per_round, 0, ""),
        list(&baseline_load.per_round, 0, ""),
        list(&round_ratios, 2, "x")
    );
    for (title, load) in [
        ("bridge rounds", bridge_load),
        ("baseline rounds", baseline_load),
    ] {
        let parts: Vec<String> = load
            .cpu
            .iter()
            .filter_map(|(probe, cpu)| {
                let cpu = (*cpu)?;
                Some(if matches!(probe.probe, CpuProbe::Machine) {
                    format!("{} {:.2} cores busy", probe.label, load.cores(cpu))
                } else {
                    format!(
                        "{} {:.2} cores ({:.1} µs/call)",
                        probe.label,
                        load.cores(cpu),
                        load.cpu_per_call_us(cpu)
                    )
                })
            })
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(out, "CPU in the {title}: {}", parts.join(", "));
        }
    }
    for (title, load) in [("bridge", bridge_load), ("baseline", baseline_load)] {
        if let Some(error) = &load.first_error {
            let _ = writeln!(out, "first {title} error: {error}");
        }
    }
    out
}

/// Numbers joined by spaces, with `decimals` digits and a suffix each.
fn list(values: &[f64], decimals: usize, suffix: &str) -> String {
    values
        .iter()
        .map(|value| format!("{value:.decimals$}{suffix}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn ratio(value: f64, base: f64) -> f64 {
    if base > 0.0 { value / base } else { f64::NAN }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
