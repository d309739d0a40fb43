//! The seed-table bench's output: the tables printed beside the seed's figures, and the
//! JSON report.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::tables::{self, Row, mib, ms, render};
use super::{Plan, Results, SEED_STRESS_RATE, stats};

fn row_of<'a>(rows: &'a [(String, Row)], key: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|(row_key, _)| row_key == key)
        .map(|(_, row)| row)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        ((a / b) * 100.0).round() / 100.0
    } else {
        0.0
    }
}

pub(crate) fn print_tables(plan: &Plan, results: &Results) -> String {
    let cpus = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let mut out = format!(
        "seed tables on mcp-bridge ({} run, {} build): {cpus} CPU(s){}, shared by the load generator (1 thread), the bridge and the demo servers\n\
         demo server latency: {} (the seed's servers answered in 5-20 ms); {} calls per row in Benchmarks 1-2, {} callers",
        if plan.smoke { "smoke" } else { "full" },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        stats::cpu_model()
            .map(|model| format!(" ({model})"))
            .unwrap_or_default(),
        plan.demo_args.join(" "),
        plan.calls,
        plan.callers,
    );
    let header = [
        "configuration",
        "avg",
        "p95",
        "p99",
        "throughput",
        "ok",
        "seed avg",
        "seed p95",
        "seed p99",
        "seed thr.",
    ];
    let rows: Vec<Vec<String>> = results
        .pooling
        .iter()
        .map(|(key, row)| {
            let seed = tables::seed_pooling(key);
            vec![
                row.name.clone(),
                row.mean_ms(),
                row.p95_ms(),
                row.p99_ms(),
                format!("{:.0}/s", row.throughput),
                row.success(),
                seed[0].to_owned(),
                seed[1].to_owned(),
                seed[2].to_owned(),
                seed[3].to_owned(),
            ]
        })
        .collect();
    out.push_str(&render(
        "Benchmark 1: connection pooling (closed loop)",
        &header,
        &rows,
    ));
    if let (Some(direct), Some(spawn), Some(pool)) = (
        row_of(&results.pooling, "direct"),
        row_of(&results.pooling, "spawn"),
        row_of(&results.pooling, "pool-2-10"),
    ) {
        out.push_str(&format!(
            "ratios (same run): bridge (2,10) / direct stdio: avg {:.2}x, p99 {:.2}x; spawn-per-call / bridge (2,10): avg {:.1}x, p99 {:.1}x\n",
            ratio(pool.latency.mean_us, direct.latency.mean_us),
            ratio(pool.latency.p99_us, direct.latency.p99_us),
            ratio(spawn.latency.mean_us, pool.latency.mean_us),
            ratio(spawn.latency.p99_us, pool.latency.p99_us),
        ));
    }
    let header = [
        "configuration",
        "hit rate",
        "avg",
        "p95",
        "bridge RSS",
        "+ servers",
        "seed hit",
        "seed avg",
        "seed p95",
        "seed mem",
    ];
    let rows: Vec<Vec<String>> = results
        .cache
        .iter()
        .map(|row| {
            let hit_rate = row.hit_rate.unwrap_or(0.0);
            let seed = tables::seed_cache(hit_rate);
            vec![
                row.name.clone(),
                format!("{:.1}%", hit_rate * 100.0),
                row.mean_ms(),
                row.p95_ms(),
                mib(row.bridge_rss_kib),
                mib(row.total_rss_kib),
                seed[0].to_owned(),
                seed[1].to_owned(),
                seed[2].to_owned(),
                seed[3].to_owned(),
            ]
        })
        .collect();
    out.push_str(&render(
        "Benchmark 2: caching (pool min=2, max=10, seed-tasks: 20% writes)",
        &header,
        &rows,
    ));
    let header = [
        "configuration",
        "success",
        "avg",
        "p95",
        "p99",
        "calls",
        "seed success",
        "seed avg",
        "seed p95",
    ];
    let rows: Vec<Vec<String>> = results
        .stress
        .iter()
        .map(|(key, row)| {
            let seed = tables::seed_stress(key);
            vec![
                row.name.clone(),
                row.success(),
                row.mean_ms(),
                row.p95_ms(),
                row.p99_ms(),
                row.calls.to_string(),
                seed[0].to_owned(),
                seed[1].to_owned(),
                seed[2].to_owned(),
            ]
        })
        .collect();
    let title = format!(
        "Benchmark 4: stress, {SEED_STRESS_RATE:.0} calls/s for {:?} (open model, latency from the intended send)",
        plan.stress_duration
    );
    out.push_str(&render(&title, &header, &rows));
    let header = [
        "offered rate",
        "success",
        "ok calls/s",
        "p50",
        "p99",
        "max",
        "first error",
    ];
    let rows: Vec<Vec<String>> = results
        .steps
        .iter()
        .map(|row| {
            vec![
                row.name.clone(),
                row.success(),
                format!("{:.0}", row.throughput),
                row.p50_ms(),
                row.p99_ms(),
                ms(row.latency.max_us),
                row.first_error
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(60)
                    .collect(),
            ]
        })
        .collect();
    out.push_str(&render(
        "Benchmark 4b: step-up (pool min=2, max=4, cache on, demo latency 0)",
        &header,
        &rows,
    ));
    match results.steps.iter().rfind(|row| row.success_rate >= 1.0) {
        Some(row) => out.push_str(&format!(
            "highest rate held at 100% success: {} (p50 {}, p99 {})\n",
            row.name,
            row.p50_ms(),
            row.p99_ms()
        )),
        None => out.push_str("no step held 100% success\n"),
    }
    if plan.smoke {
        out.push_str("smoke run: too few calls for the numbers to mean anything; it checks that the harness works\n");
    }
    out
}

pub(crate) fn json_report(
    plan: &Plan,
    results: &Results,
    load_average: [Option<f64>; 2],
    elapsed: Duration,
) -> Value {
    let keyed = |rows: &[(String, Row)]| -> Value {
        rows.iter()
            .map(|(key, row)| json!({ "key": key, "row": row }))
            .collect()
    };
    let highest = results.steps.iter().rfind(|row| row.success_rate >= 1.0);
    let direct = row_of(&results.pooling, "direct");
    let spawn = row_of(&results.pooling, "spawn");
    let pool = row_of(&results.pooling, "pool-2-10");
    let ratios = match (direct, spawn, pool) {
        (Some(direct), Some(spawn), Some(pool)) => json!({
            "bridge_over_direct_mean": ratio(pool.latency.mean_us, direct.latency.mean_us),
            "bridge_over_direct_p99": ratio(pool.latency.p99_us, direct.latency.p99_us),
            "spawn_over_bridge_mean": ratio(spawn.latency.mean_us, pool.latency.mean_us),
            "spawn_over_bridge_p99": ratio(spawn.latency.p99_us, pool.latency.p99_us),
        }),
        _ => Value::Null,
    };
    json!({
        "bench": "seed_tables",
        "schema": 1,
        "mode": if plan.smoke { "smoke" } else { "full" },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.as_secs()),
        "elapsed_s": elapsed.as_secs(),
        "machine": {
            "cpus": std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            "cpu_model": stats::cpu_model(),
            "load_average_1m": { "before": load_average[0], "after": load_average[1] },
        },
        "options": {
            "workload": "seed-tasks",
            "calls_per_row": plan.calls,
            "callers": plan.callers,
            "demo_server_args": plan.demo_args,
            "stress_rate": SEED_STRESS_RATE,
            "stress_duration_s": plan.stress_duration.as_secs_f64(),
            "step_rates": plan.steps,
            "step_duration_s": plan.step_duration.as_secs_f64(),
            "call_timeout_s": plan.timeout.as_secs_f64(),
        },
        "pooling": keyed(&results.pooling),
        "ratios": ratios,
        "cache": results.cache,
        "stress": keyed(&results.stress),
        "step_up": {
            "steps": results.steps,
            "highest_rate_at_100_percent": highest.map(|row| row.name.clone()),
            "p50_us": highest.map(|row| row.latency.p50_us),
            "p99_us": highest.map(|row| row.latency.p99_us),
        },
    })
}
