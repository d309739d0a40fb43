//! The shadow benchmark: cached `tools/call` throughput of a bridge that shadows three
//! candidate policies (`[lab.shadow]`: two WASM plugins and the built-in policy with other
//! settings), as a ratio to the same bridge without a shadow, measured in one run on real
//! processes, the two bridges taking turns round by round.
//!
//! Each call hands its record to the shadow's queue and goes on; the evaluator's thread
//! replays it against every candidate. On a machine with spare cores that costs the call
//! almost nothing; on a busy one the evaluator competes for CPU, and when it falls behind
//! calls are dropped from the shadow (counted), never delayed. The bench reports the
//! throughput ratio, how many calls the shadow replayed and how many it dropped. The
//! target is a ratio of at least 0.8 in a full run.
//!
//! Run it with `cargo bench --bench shadow`; without `--bench` (as under `cargo test
//! --benches`) it runs a short smoke that checks the harness end to end but not the target.
//! It prints a table and writes `target/bench-results/shadow.json`.

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
use mcp_bridge_test_support::repo::{publish_plugin, toml_command, toml_string};
use mcp_bridge_test_support::{Bridge, metric, poll_until};

use self::load::{Contender, TurnsPlan};
use self::stats::round2;

const BRIDGE_EXE: &str = env!("CARGO_BIN_EXE_mcp-bridge");
const ENDPOINT: &str = "/mcp/demo";
/// The least throughput with three shadow candidates, as a share of none, a full run accepts.
const MIN_RATIO: f64 = 0.8;

#[derive(Debug, clap::Parser)]
#[command(bin_name = "cargo bench --bench shadow --")]
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

/// The three candidates (in `[lab.shadow] dir`): two plugins (one judged before the
/// config's rules, one alone) and the built-in policy with a shorter TTL.
const CANDIDATES: &str = r#"
[[lab.shadow.candidate]]
name = "seed-ttls"
file = "seed-ttl-table.wasm"

[[lab.shadow.candidate]]
name = "annotations-alone"
file = "annotations.wasm"
config_rules = false

[[lab.shadow.candidate]]
name = "builtin-short"
default_ttl = "30s"
"#;

/// A bridge over two demo processes with the cache on; `shadow` is its `[lab.shadow]`
/// candidates (none: no shadow), whose files are in `candidates`.
async fn start_bridge(candidates: &Path, shadow: &str) -> Result<Bridge> {
    let command = toml_command(BRIDGE_EXE);
    let shadow = if shadow.is_empty() {
        String::new()
    } else {
        format!(
            "\n[lab.shadow]\ndir = {}\n{shadow}",
            toml_string(&candidates.display().to_string())
        )
    };
    let config = format!(
        "[servers.demo]\ncommand = {command}\nargs = [\"demo-server\"]\nmin_connections = 2\nmax_connections = 2\n\n[cache]\nenabled = true\ndefault_ttl = \"10m\"\n{shadow}"
    );
    let bridge = Bridge::start(Path::new(BRIDGE_EXE), &config, &[])?;
    bridge.wait_ready().await?;
    Ok(bridge)
}

async fn run(plan: &TurnsPlan) -> Result<()> {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mode = if plan.smoke { "smoke" } else { "full" };
    eprintln!("bench: shadow ({mode} run, {profile} build)");
    let dir = tempfile::tempdir()?;
    for (source, file) in [
        (plugin_artifacts::SEED_TTL_TABLE, "seed-ttl-table.wasm"),
        (plugin_artifacts::ANNOTATIONS, "annotations.wasm"),
    ] {
        publish_plugin(Path::new(source), dir.path(), file)?;
    }
    let plain = start_bridge(dir.path(), "").await?;
    let shadowed = start_bridge(dir.path(), CANDIDATES).await?;
    let mut contenders = Vec::new();
    for bridge in [&plain, &shadowed] {
        let targets: Vec<_> = (0..plan.connections)
            .map(|_| Arc::new(bridge.target(ENDPOINT)))
            .collect();
        contenders.push(Contender::cached(bridge.pid(), targets).await?);
    }
    let reports =
        load::taking_turns(contenders, plan.rounds, plan.warmup, plan.round_window).await?;
    for (name, bridge) in [("plain", &plain), ("shadowed", &shadowed)] {
        load::ensure_cached(bridge, name).await?;
    }
    // The shadow drains its queue on its own thread: wait, bounded, until it is empty.
    let depth = poll_until(
        Duration::from_secs(10),
        async || {
            metric(&shadowed, "mcp_bridge_shadow_queue_depth", &[])
                .await
                .unwrap_or(f64::MAX)
        },
        |depth| *depth == 0.0,
    )
    .await;
    ensure!(
        depth == 0.0,
        "the shadow's queue did not drain: {depth} calls left"
    );
    let replayed = metric(&shadowed, "mcp_bridge_shadow_calls_total", &[]).await?;
    let dropped = metric(&shadowed, "mcp_bridge_shadow_dropped_total", &[]).await?;
    ensure!(
        replayed > 0.0,
        "the shadow replayed no call: is [lab.shadow] on?"
    );
    let plain_rate = reports[0].calls_per_second();
    let shadow_rate = reports[1].calls_per_second();
    let ratio = shadow_rate / plain_rate.max(1.0);
    let _ = (
        plain.stop(Duration::from_secs(20)).await,
        shadowed.stop(Duration::from_secs(20)).await,
    );
    println!(
        "mcp-bridge shadow bench ({mode} run, {profile} build)\n\ncached tools/call at {} connections: no shadow {plain_rate:.0} calls/s, 3 shadow candidates {shadow_rate:.0} calls/s: ratio {ratio:.2} (target at least {MIN_RATIO})\nshadow: {replayed:.0} calls replayed against every candidate, {dropped:.0} dropped (the evaluator fell behind; those calls were answered)\n",
        plan.connections
    );
    let document = json!({
        "mode": mode,
        "profile": profile,
        "connections": plan.connections,
        "no_shadow": reports[0].comparison_json(),
        "three_candidates": reports[1].comparison_json(),
        "ratio": round2(ratio),
        "min_ratio": MIN_RATIO,
        "shadow_replayed": replayed,
        "shadow_dropped": dropped,
    });
    let path = bench::results_path(Path::new(BRIDGE_EXE), "shadow.json");
    bench::write_json(&path, &document)?;
    println!("JSON report: {}", path.display());
    // A smoke run is too short and too small to judge a ratio on a shared machine.
    if !plan.smoke {
        ensure!(
            ratio >= MIN_RATIO,
            "cached throughput with three shadow candidates is {ratio:.2}x none, below the {MIN_RATIO} target"
        );
    }
    Ok(())
}
