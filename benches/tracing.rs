//! The tracing benchmark: cached `tools/call` throughput with OpenTelemetry tracing on
//! (every trace sampled, spans exported over OTLP/HTTP to a receiver on 127.0.0.1 that reads
//! and discards them) and on with `sample_ratio = 0` (spans made, none sampled or sent), each
//! as a ratio to the same bridge with tracing off, measured in one run on real processes,
//! the three bridges taking turns round by round.
//!
//! Tracing off must cost nothing measurable (the hot path's spans are disabled callsites;
//! `cargo bench --bench hot_path -- spans` shows them in nanoseconds); this bench shows what
//! turning it on costs. It sets no target for the on ratios: it reports them.
//!
//! Run it with `cargo bench --bench tracing`; without `--bench` (as under `cargo test
//! --benches`) it runs a short smoke that checks the harness end to end. It prints a table
//! and writes `target/bench-results/tracing.json`.

#[allow(dead_code)]
#[path = "bridge/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "bridge/stats.rs"]
mod stats;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use clap::Parser as _;
use serde_json::json;

use mcp_bridge_test_support::bench::{self, BenchMode};
use mcp_bridge_test_support::otlp::OtlpReceiver;
use mcp_bridge_test_support::repo::toml_command;
use mcp_bridge_test_support::{Bridge, metric};

use self::load::{Contender, TurnsPlan};
use self::stats::round2;

const BRIDGE_EXE: &str = env!("CARGO_BIN_EXE_mcp-bridge");
const ENDPOINT: &str = "/mcp/demo";

#[derive(Debug, clap::Parser)]
#[command(bin_name = "cargo bench --bench tracing --")]
struct Args {
    #[command(flatten)]
    mode: BenchMode,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.mode.list {
        return ExitCode::SUCCESS;
    }
    bench::run_on_one_thread(run(&TurnsPlan::new(&args.mode)))
}

async fn start_bridge(telemetry: &str) -> Result<Bridge> {
    let command = toml_command(BRIDGE_EXE);
    let config = format!(
        "[servers.demo]\ncommand = {command}\nargs = [\"demo-server\"]\nmin_connections = 2\nmax_connections = 2\n\n[cache]\nenabled = true\ndefault_ttl = \"10m\"\n{telemetry}"
    );
    let bridge = Bridge::start(Path::new(BRIDGE_EXE), &config, &[])?;
    bridge.wait_ready().await?;
    Ok(bridge)
}

/// `[telemetry]` exporting to `receiver` with `sample_ratio`. The queue is large and the
/// interval short enough that spans are exported rather than dropped at full load, so the
/// on ratio includes the export.
fn telemetry_toml(receiver: &OtlpReceiver, sample_ratio: f64) -> String {
    format!(
        "\n[telemetry]\notlp_endpoint = \"{}\"\nsample_ratio = {sample_ratio:?}\nmax_queue = 200000\nexport_interval = \"1s\"\n",
        receiver.endpoint()
    )
}

async fn run(plan: &TurnsPlan) -> Result<()> {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mode = if plan.smoke { "smoke" } else { "full" };
    eprintln!("bench: tracing ({mode} run, {profile} build)");
    // The receivers read on a thread of their own, so taking in the sampled bridge's exports
    // never slows the load generator (whose thread the three bridges share).
    let receiving = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let sampled_receiver = receiving.spawn(OtlpReceiver::discarding()).await??;
    let unsampled_receiver = receiving.spawn(OtlpReceiver::discarding()).await??;
    let off = start_bridge("").await?;
    let sampled = start_bridge(&telemetry_toml(&sampled_receiver, 1.0)).await?;
    let unsampled = start_bridge(&telemetry_toml(&unsampled_receiver, 0.0)).await?;

    let mut contenders = Vec::new();
    for bridge in [&off, &sampled, &unsampled] {
        let targets = (0..plan.connections).map(|_| Arc::new(bridge.target(ENDPOINT)));
        contenders.push(Contender::cached(bridge.pid(), targets).await?);
    }
    let reports =
        load::taking_turns(contenders, plan.rounds, plan.warmup, plan.round_window).await?;
    for (name, bridge) in [
        ("tracing-off", &off),
        ("tracing-on", &sampled),
        ("tracing-on-ratio-0", &unsampled),
    ] {
        load::ensure_cached(bridge, name).await?;
    }
    let hits = metric(
        &sampled,
        "mcp_bridge_cache_requests_total",
        &["result=\"hit\""],
    )
    .await?;
    let off_rate = reports[0].calls_per_second();
    let on_rate = reports[1].calls_per_second();
    let unsampled_rate = reports[2].calls_per_second();
    let on_ratio = on_rate / off_rate.max(1.0);
    let unsampled_ratio = unsampled_rate / off_rate.max(1.0);
    // Stopping flushes what the exporters still hold.
    let _ = (
        off.stop(Duration::from_secs(20)).await,
        sampled.stop(Duration::from_secs(20)).await,
        unsampled.stop(Duration::from_secs(20)).await,
    );
    let exports = sampled_receiver.requests();
    ensure!(
        exports > 0 && sampled_receiver.refused() == 0,
        "the sampled bridge exported {exports} requests ({} refused) for {hits} cache hits",
        sampled_receiver.refused()
    );
    ensure!(
        unsampled_receiver.requests() == 0,
        "the bridge with sample_ratio 0 exported {} requests",
        unsampled_receiver.requests()
    );
    println!(
        "mcp-bridge tracing bench ({mode} run, {profile} build)\n\ncached tools/call at {} connections: tracing off {off_rate:.0} calls/s, on (all sampled, exported) {on_rate:.0} calls/s: ratio {on_ratio:.2}; on with sample_ratio 0 {unsampled_rate:.0} calls/s: ratio {unsampled_ratio:.2}\nOTLP export requests received: {exports} (sample_ratio 0: none)\n",
        plan.connections
    );
    let document = json!({
        "mode": mode,
        "profile": profile,
        "connections": plan.connections,
        "tracing_off": reports[0].comparison_json(),
        "tracing_on": reports[1].comparison_json(),
        "tracing_on_ratio_0": reports[2].comparison_json(),
        "ratio_on": round2(on_ratio),
        "ratio_on_ratio_0": round2(unsampled_ratio),
        "export_requests": exports,
    });
    let path = bench::results_path(Path::new(BRIDGE_EXE), "tracing.json");
    bench::write_json(&path, &document)?;
    println!("JSON report: {}", path.display());
    drop((sampled_receiver, unsampled_receiver));
    receiving.shutdown_background();
    Ok(())
}
