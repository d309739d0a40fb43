//! `mcp-bridge bench load` against a real bridge: an open-model run at a fixed rate and a
//! closed-loop run, both with the seed-tasks preset, judged from the JSON report and from the
//! demo server's own log of the calls it received; the aggregated endpoint with the cache on;
//! and the refusals (a trace without arguments, a host that is not loopback).

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::support::{bridge_exe, demo_server_toml, start_bridge};

/// The tools of the seed-tasks preset (`config/workloads/seed-tasks.toml`).
const SEED_TOOLS: [&str; 7] = [
    "get_tasks",
    "get_clients",
    "get_habits",
    "get_today_metrics",
    "create_task",
    "update_task",
    "complete_task",
];

/// Runs `mcp-bridge bench load ARGS`, bounded in time.
async fn bench_load(args: &[&str]) -> Result<Output> {
    let mut command = tokio::process::Command::new(bridge_exe());
    command
        .arg("bench")
        .arg("load")
        .args(args)
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .with_context(|| format!("bench load {args:?} did not exit within 60 s"))?
        .context("run mcp-bridge bench load")
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a load and returns its JSON report, failing with everything it printed.
async fn load_report(args: &[&str], out: &Path) -> Result<Value> {
    let out_arg = out.display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--out", out_arg.as_str(), "--require-success", "1.0"]);
    let output = bench_load(&all).await?;
    ensure!(
        output.status.success(),
        "bench load {all:?} failed ({}):\n{}",
        output.status,
        printed(&output)
    );
    let text = std::fs::read_to_string(out).context("read the JSON report")?;
    serde_json::from_str(&text).context("the report is not JSON")
}

/// Checks what every successful seed-tasks run must show.
fn check_seed_report(report: &Value, expected_calls: std::ops::RangeInclusive<u64>) -> Result<()> {
    let calls = report["calls"].as_u64().context("calls")?;
    ensure!(
        expected_calls.contains(&calls),
        "{calls} calls, expected {expected_calls:?}: {report}"
    );
    ensure!(report["ok"] == calls && report["failed"] == 0, "{report}");
    ensure!(report["success_rate"] == 1.0, "{report}");
    ensure!(
        report["throughput"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
    // The preset writes on 20% of its calls: allow the sampling spread of a few hundred.
    let writes = report["writes"]["calls"].as_u64().unwrap_or(0) as f64;
    let share = writes / calls as f64;
    ensure!(
        (0.1..=0.3).contains(&share),
        "writes are {share:.3} of the calls: {report}"
    );
    for tool in SEED_TOOLS {
        let count = report["tools"][tool]["calls"].as_u64().unwrap_or(0);
        ensure!(count > 0, "no {tool} calls in {}", report["tools"]);
    }
    let per_tool: u64 = SEED_TOOLS
        .iter()
        .map(|tool| report["tools"][tool]["calls"].as_u64().unwrap_or(0))
        .sum();
    ensure!(
        per_tool == calls,
        "per-tool counts add up to {per_tool}, not {calls}"
    );
    let latency = &report["latency"];
    let field = |name: &str| latency[name].as_f64().unwrap_or(-1.0);
    ensure!(field("min_us") > 0.0, "{latency}");
    ensure!(
        field("p50_us") <= field("p99_us") && field("p99_us") <= field("max_us"),
        "latencies out of order: {latency}"
    );
    ensure!(latency["count"] == calls, "{latency}");
    Ok(())
}

#[tokio::test]
async fn open_and_closed_runs_reach_the_demo_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let calls_log = dir.path().join("calls.log");
    let calls_arg = calls_log.display().to_string();
    // The fixture turns the cache off, so every call must reach a demo server.
    let bridge = start_bridge(&demo_server_toml(
        "demo",
        &["--calls-log", &calls_arg],
        "min_connections = 1\nmax_connections = 2",
    ))?;
    bridge.wait_ready().await?;
    let url = bridge.url("/mcp/demo");

    let open_out = dir.path().join("open.json");
    let open = load_report(
        &[
            "--url",
            &url,
            "--workload",
            "seed-tasks",
            "--rate",
            "200",
            "--duration",
            "2s",
        ],
        &open_out,
    )
    .await?;
    // Uniform arrivals at 200/s for 2 s: calls 0 to 399 are intended inside the window.
    check_seed_report(&open, 390..=401)?;
    ensure!(
        open["mode"]["model"] == "open" && open["mode"]["rate"] == 200.0,
        "{}",
        open["mode"]
    );
    ensure!(
        open["cache"].is_null(),
        "the bridge's cache is off: {}",
        open["cache"]
    );
    let window = open["window_s"].as_f64().unwrap_or(0.0);
    ensure!((1.9..10.0).contains(&window), "window {window} s");

    let closed_out = dir.path().join("closed.json");
    let closed = load_report(
        &[
            "--url",
            &url,
            "--workload",
            "seed-tasks",
            "--connections",
            "4",
            "--calls",
            "400",
        ],
        &closed_out,
    )
    .await?;
    check_seed_report(&closed, 400..=400)?;
    ensure!(closed["mode"]["model"] == "closed" && closed["mode"]["connections"] == 4);
    ensure!(
        closed["sessions_opened"] == 4,
        "{}",
        closed["sessions_opened"]
    );

    // The demo servers logged one line per tools/call they received.
    let received = std::fs::read_to_string(&calls_log)
        .context("read the demo server's calls log")?
        .lines()
        .count() as u64;
    let sent = open["calls"].as_u64().unwrap_or(0) + closed["calls"].as_u64().unwrap_or(0);
    ensure!(
        received == sent,
        "the demo servers received {received} calls, the reports say {sent}"
    );
    Ok(())
}

#[tokio::test]
async fn the_aggregated_endpoint_and_cache_hits_are_reported() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = format!(
        "{}\n[cache]\nenabled = true\ndefault_ttl = \"10m\"\n",
        demo_server_toml("demo", &[], "min_connections = 1\nmax_connections = 2")
    );
    let bridge = start_bridge(&config)?;
    bridge.wait_ready().await?;
    let out = dir.path().join("aggregated.json");
    let report = load_report(
        &[
            "--url",
            &bridge.url("/mcp"),
            "--workload",
            "read-heavy",
            "--connections",
            "2",
            "--calls",
            "300",
        ],
        &out,
    )
    .await?;
    ensure!(report["calls"] == 300 && report["ok"] == 300, "{report}");
    let cache = &report["cache"];
    let hits = cache["hits"].as_u64().context("cache hits")?;
    ensure!(hits > 0, "no cache hits on a read-heavy run: {cache}");
    let rate = cache["hit_rate"].as_f64().unwrap_or(-1.0);
    ensure!((0.0..=1.0).contains(&rate), "{cache}");
    Ok(())
}

#[tokio::test]
async fn a_trace_without_arguments_is_refused_with_its_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("no-arguments.jsonl");
    let with = r#"{"t_us":0,"server":"demo","method":"tools/call","name":"get_tasks","args":"0000000000000000","arguments":{},"access":"read","latency_us":10,"bytes":10,"status":"ok","hit":false}"#;
    let without = r#"{"t_us":5,"server":"demo","method":"tools/call","name":"get_habits","args":"0000000000000000","access":"read","latency_us":10,"bytes":10,"status":"ok","hit":false}"#;
    std::fs::write(&trace, format!("{with}\n{without}\n"))?;
    let trace_arg = trace.display().to_string();
    // Nothing listens on port 1: the trace must be refused before anything connects.
    let output = bench_load(&[
        "--url",
        "http://127.0.0.1:1/mcp/demo",
        "--trace",
        &trace_arg,
        "--calls",
        "1",
    ])
    .await?;
    let text = printed(&output);
    ensure!(
        output.status.code() == Some(2),
        "exit {}: {text}",
        output.status
    );
    ensure!(
        text.contains(&format!("{trace_arg}:2:")),
        "no file:line in: {text}"
    );
    ensure!(text.contains("--record-arguments"), "no hint in: {text}");
    Ok(())
}

#[tokio::test]
async fn a_remote_url_is_refused() -> Result<()> {
    // 192.0.2.1 is TEST-NET-1: never contacted, the URL is refused before any connection.
    let output = bench_load(&[
        "--url",
        "http://192.0.2.1:8080/mcp/demo",
        "--workload",
        "seed-tasks",
        "--calls",
        "1",
    ])
    .await?;
    let text = printed(&output);
    ensure!(
        output.status.code() == Some(2),
        "exit {}: {text}",
        output.status
    );
    ensure!(
        text.contains("not a loopback address") && text.contains("--allow-remote"),
        "{text}"
    );
    Ok(())
}
