//! The plugin benchmark, measured in one run on real processes and real plugins built from
//! `plugins/`:
//!
//! - first-compile and cached-load time of each example plugin (the compiled-component
//!   cache is what a restart or a re-published file hits);
//! - cached `tools/call` throughput with the `annotations` plugin deciding, as a ratio to
//!   the built-in policy deciding the same calls, two bridges taking turns round by round;
//! - hot reload: the time from an atomic rename into the plugin directory to the new
//!   generation serving, over 100 reloads alternating two builds of `reload-probe`.
//!
//! Run it with `cargo bench --bench plugins`; without `--bench` (as under `cargo test
//! --benches`) it runs a short smoke. It prints a table and writes
//! `target/bench-results/plugins.json`. The per-decision cost of a WASM policy against
//! the built-in one is a criterion micro-bench: `cargo bench --bench hot_path -- policy`.

// Shared with the bridge bench, which uses every item; this bench uses a subset.
#[allow(dead_code)]
#[path = "bridge/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "bridge/stats.rs"]
mod stats;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser as _;
use serde_json::{Value, json};

use mcp_bridge::config::PluginsConfig;
use mcp_bridge::plugin::{Limits, PluginEngine, PluginVersion};
use mcp_bridge_test_support::bench::{self, BenchMode};
use mcp_bridge_test_support::repo::{plugin_wasm, toml_command};
use mcp_bridge_test_support::{Bridge, metric};

use self::load::Contender;
use self::stats::{Summary, round2};

const BRIDGE_EXE: &str = env!("CARGO_BIN_EXE_mcp-bridge");
const ENDPOINT: &str = "/mcp/demo";
const EXAMPLES: [&str; 3] = ["seed-ttl-table", "annotations", "crud-invalidation"];

/// How long a run lasts, and how much it does.
struct Plan {
    smoke: bool,
    compile_repeats: usize,
    connections: usize,
    rounds: usize,
    round_window: Duration,
    warmup: Duration,
    reloads: u64,
}

/// The plugin benchmark: load times, cached throughput with a WASM policy, hot reload.
#[derive(Debug, clap::Parser)]
#[command(bin_name = "cargo bench --bench plugins --")]
struct Args {
    #[command(flatten)]
    mode: BenchMode,
}

impl Plan {
    fn new(mode: &BenchMode) -> Plan {
        let smoke = mode.smoke();
        if smoke {
            return Plan {
                smoke,
                compile_repeats: 1,
                connections: 4,
                rounds: 2,
                round_window: Duration::from_millis(300),
                warmup: Duration::from_millis(100),
                reloads: 6,
            };
        }
        Plan {
            smoke,
            compile_repeats: 3,
            connections: 32,
            rounds: 6,
            round_window: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            reloads: 100,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.mode.list {
        return ExitCode::SUCCESS;
    }
    bench::run_on_one_thread(run(&Plan::new(&args.mode)))
}

async fn run(plan: &Plan) -> Result<()> {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mode = if plan.smoke { "smoke" } else { "full" };
    eprintln!("bench: plugins ({mode} run, {profile} build)");
    let loads = compile_times(plan)?;
    let throughput = cached_throughput(plan).await?;
    let reloads = reload_latency(plan).await?;

    let mut table = format!("mcp-bridge plugin bench ({mode} run, {profile} build)\n\n");
    table.push_str("plugin load            first compile   cached load   size\n");
    for load in &loads {
        table.push_str(&format!(
            "{:<22} {:>10.1} ms {:>10.2} ms {:>7} KiB\n",
            load["plugin"].as_str().unwrap_or_default(),
            load["first_compile_ms"].as_f64().unwrap_or_default(),
            load["cached_load_ms"].as_f64().unwrap_or_default(),
            load["size_bytes"].as_u64().unwrap_or_default() / 1024,
        ));
    }
    table.push_str(&format!(
        "\ncached tools/call at {} connections: built-in {:.0} calls/s, annotations plugin {:.0} calls/s: ratio {:.2}\n",
        plan.connections,
        throughput["builtin"]["calls_per_second"].as_f64().unwrap_or_default(),
        throughput["plugin"]["calls_per_second"].as_f64().unwrap_or_default(),
        throughput["ratio"].as_f64().unwrap_or_default(),
    ));
    table.push_str(&format!(
        "hot reload, rename to new generation serving over {} reloads: p50 {:.1} ms, max {:.1} ms\n",
        plan.reloads,
        reloads["p50_ms"].as_f64().unwrap_or_default(),
        reloads["max_ms"].as_f64().unwrap_or_default(),
    ));
    println!("{table}");

    let document = json!({
        "mode": mode,
        "profile": profile,
        "plugin_loads": loads,
        "cached_throughput": throughput,
        "reload": reloads,
    });
    let path = bench::results_path(Path::new(BRIDGE_EXE), "plugins.json");
    bench::write_json(&path, &document)?;
    println!("JSON report: {}", path.display());
    Ok(())
}

/// First compile (empty compiled cache) and cached load (a fresh engine on the filled
/// cache, as after a restart), the median of `compile_repeats` runs.
fn compile_times(plan: &Plan) -> Result<Vec<Value>> {
    let limits = Limits::from_config(&PluginsConfig::default());
    let mut results = Vec::new();
    for name in EXAMPLES {
        let bytes = std::fs::read(plugin_wasm(name))?;
        let file = format!("{name}.wasm");
        let mut first = Vec::new();
        let mut cached = Vec::new();
        for _ in 0..plan.compile_repeats {
            let cache = tempfile::tempdir()?;
            let engine = PluginEngine::new(Some(cache.path().to_path_buf()))?;
            let compiled = PluginVersion::load(&engine, &file, &bytes, limits)?;
            ensure!(
                compiled.compile_source.as_str() == "compiled",
                "{name} was not compiled"
            );
            first.push(compiled.compile_time);
            drop(engine);
            let restarted = PluginEngine::new(Some(cache.path().to_path_buf()))?;
            let loaded = PluginVersion::load(&restarted, &file, &bytes, limits)?;
            ensure!(
                loaded.compile_source.as_str() == "cached",
                "{name} missed the cache"
            );
            cached.push(loaded.compile_time);
        }
        first.sort();
        cached.sort();
        results.push(json!({
            "plugin": name,
            "size_bytes": bytes.len(),
            "first_compile_ms": round2(first[first.len() / 2].as_secs_f64() * 1e3),
            "cached_load_ms": round2(cached[cached.len() / 2].as_secs_f64() * 1e3),
        }));
    }
    Ok(results)
}

/// A bridge serving the demo server with a long-lived cache, decided by the built-in
/// policy or by the annotations plugin with the same settings.
async fn cached_bridge(plugin: bool) -> Result<(Bridge, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let command = toml_command(BRIDGE_EXE);
    let mut config = format!(
        "[servers.demo]\ncommand = {command}\nargs = [\"demo-server\"]\nmin_connections = 2\nmax_connections = 2\n\n[cache]\nenabled = true\ndefault_ttl = \"10m\"\n"
    );
    if plugin {
        let plugins = dir.path().join("plugins.d");
        std::fs::create_dir_all(&plugins)?;
        std::fs::copy(
            plugin_artifacts::ANNOTATIONS,
            plugins.join("annotations.wasm"),
        )?;
        config.push_str(&format!(
            "\n[plugins]\ndir = {}\ncompiled_cache = false\nauto_bind = false\n\n[[plugins.policy]]\nfile = \"annotations.wasm\"\nconfig = {{ default_ttl = \"10m\" }}\n",
            serde_json::to_string(&plugins.display().to_string())?
        ));
    }
    let bridge = Bridge::start(Path::new(BRIDGE_EXE), &config, &[])?;
    bridge.wait_ready().await?;
    Ok((bridge, dir))
}

async fn cached_throughput(plan: &Plan) -> Result<Value> {
    let (builtin, _builtin_dir) = cached_bridge(false).await?;
    let (plugin, _plugin_dir) = cached_bridge(true).await?;
    let mut contenders = Vec::new();
    for bridge in [&builtin, &plugin] {
        let target = Arc::new(bridge.target(ENDPOINT));
        let targets = std::iter::repeat_n(target, plan.connections);
        contenders.push(Contender::cached(bridge.pid(), targets).await?);
    }
    let reports =
        load::taking_turns(contenders, plan.rounds, plan.warmup, plan.round_window).await?;
    for (name, bridge) in [("built-in", &builtin), ("plugin", &plugin)] {
        let stats = bridge.cache_stats().await?.context("cache off")?;
        let hits = stats["hits"].as_f64().unwrap_or_default();
        let misses = stats["misses"].as_f64().unwrap_or_default();
        ensure!(
            hits / (hits + misses).max(1.0) > 0.99,
            "the {name} bridge missed: {stats}"
        );
    }
    let decisions = metric(
        &plugin,
        "mcp_bridge_plugin_decisions_total",
        &["interface=\"cache-policy\"", "plugin=\"annotations\""],
    )
    .await?;
    ensure!(decisions > 0.0, "the plugin made no decisions");
    let builtin_rate = reports[0].calls_per_second();
    let plugin_rate = reports[1].calls_per_second();
    let _ = (
        builtin.stop(Duration::from_secs(20)).await,
        plugin.stop(Duration::from_secs(20)).await,
    );
    Ok(json!({
        "connections": plan.connections,
        "builtin": reports[0].comparison_json(),
        "plugin": reports[1].comparison_json(),
        "ratio": round2(plugin_rate / builtin_rate.max(1.0)),
    }))
}

/// The policy generation `/admin/plugins` reports.
async fn generation(bridge: &Bridge) -> Result<u64> {
    let (status, body) = bridge.get("/admin/plugins").await?;
    ensure!(status == 200, "/admin/plugins answered {status}");
    let admin: Value = serde_json::from_slice(&body)?;
    admin["generation"].as_u64().context("no generation")
}

async fn reload_latency(plan: &Plan) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins.d");
    std::fs::create_dir_all(&plugins)?;
    let versions = [
        plugin_artifacts::RELOAD_PROBE_V1,
        plugin_artifacts::RELOAD_PROBE_V2,
    ];
    std::fs::copy(versions[0], plugins.join("probe.wasm"))?;
    let command = toml_command(BRIDGE_EXE);
    let config = format!(
        "[servers.demo]\ncommand = {command}\nargs = [\"demo-server\"]\n\n[plugins]\ndir = {}\ncompiled_cache_dir = {}\n",
        serde_json::to_string(&plugins.display().to_string())?,
        serde_json::to_string(&dir.path().join("compiled").display().to_string())?,
    );
    let bridge = Bridge::start(Path::new(BRIDGE_EXE), &config, &[])?;
    bridge.wait_ready().await?;
    let base = generation(&bridge).await?;
    let mut times = Vec::new();
    for k in 1..=plan.reloads {
        let temporary = plugins.join(".probe.wasm.tmp");
        std::fs::copy(versions[(k % 2) as usize], &temporary)?;
        let renamed = Instant::now();
        std::fs::rename(&temporary, plugins.join("probe.wasm"))?;
        loop {
            if generation(&bridge).await? >= base + k {
                break;
            }
            if renamed.elapsed() > Duration::from_secs(20) {
                bail!("reload {k} never served:\n{}", bridge.log_tail(200));
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        times.push(u64::try_from(renamed.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    let _ = bridge.stop(Duration::from_secs(20)).await;
    let summary = Summary::from_nanos(&mut times);
    Ok(json!({
        "reloads": plan.reloads,
        "p50_ms": round2(summary.p50 / 1e3),
        "max_ms": round2(summary.max / 1e3),
        "summary_us": summary.to_json(),
    }))
}
