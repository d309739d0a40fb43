//! The seed guide's benchmark tables measured on our stack, side by side in one run: pooling
//! (spawn-per-call vs three bridge pools, with a direct-stdio row), cache off vs on (hit
//! rate, latency, RSS), and the 167 calls/s stress test plus a step-up to the highest rate
//! held at 100% success. Every bridge row drives a real `mcp-bridge serve` with the
//! in-process `bench load` API (`mcp_bridge::lab::load::drive`) and the seed-tasks preset.
//!
//! `cargo bench --bench seed_tables` runs the full mode; without `--bench` on the command line
//! (`cargo test --bench seed_tables`) or with `BENCH_SMOKE=1` it runs a smoke of a few seconds.
//! It prints the tables and writes `target/bench-results/seed_tables.json`. See
//! `benches/SEED_TABLES.md`.

// Shared with the bridge bench, which uses every item; this bench uses a subset.
#[allow(dead_code)]
#[path = "bridge/stats.rs"]
mod stats;

#[path = "seed_tables/drive.rs"]
mod drive;
#[path = "seed_tables/report.rs"]
mod report;
#[path = "seed_tables/tables.rs"]
mod tables;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser as _;

use mcp_bridge::lab::load::{Arrivals, CallSource, LoadPlan, Mode, ToolNaming, drive};
use mcp_bridge::lab::workload::Workload;
use mcp_bridge_test_support::Bridge;
use mcp_bridge_test_support::bench::{self, BenchMode};
use mcp_bridge_test_support::process::rss_kib;
use mcp_bridge_test_support::repo::toml_command;
use mcp_bridge_test_support::stdio::{DirectServer, StdioClient};

use self::tables::Row;

const BRIDGE_EXE: &str = env!("CARGO_BIN_EXE_mcp-bridge");

/// The seed's stress rate: 10,000 requests over 60 s.
const SEED_STRESS_RATE: f64 = 10_000.0 / 60.0;

/// How many demo servers the spawn-per-call stress row runs at once, at most.
const MAX_SPAWNED: usize = 64;

/// The pools of the seed's Benchmark 1, as (key, min, max).
const POOLS: [(&str, u32, u32); 3] = [
    ("pool-1-5", 1, 5),
    ("pool-2-10", 2, 10),
    ("pool-5-20", 5, 20),
];

/// How long a run lasts, and how much it does.
struct Plan {
    smoke: bool,
    /// Calls per row of Benchmarks 1 and 2 (the seed: 1000).
    calls: u64,
    /// Concurrent callers in Benchmarks 1 and 2 (the seed's pools scale to 10).
    callers: usize,
    /// The demo server's latency and jitter in Benchmarks 1, 2 and the 167/s stress.
    demo_args: Vec<String>,
    stress_duration: Duration,
    steps: Vec<f64>,
    step_duration: Duration,
    timeout: Duration,
}

/// The seed guide's benchmark tables on our stack: pooling, cache, stress.
#[derive(Debug, clap::Parser)]
#[command(bin_name = "cargo bench --bench seed_tables --")]
struct Args {
    #[command(flatten)]
    mode: BenchMode,
}

impl Plan {
    fn new(mode: &BenchMode) -> Plan {
        let smoke = mode.smoke();
        let demo_args = ["--latency", "5ms", "--jitter", "5ms"]
            .map(str::to_owned)
            .to_vec();
        if smoke {
            return Plan {
                smoke,
                calls: 60,
                callers: 10,
                demo_args,
                stress_duration: Duration::from_secs(2),
                steps: vec![500.0],
                step_duration: Duration::from_secs(1),
                timeout: Duration::from_secs(5),
            };
        }
        Plan {
            smoke,
            calls: 1000,
            callers: 10,
            demo_args,
            stress_duration: Duration::from_secs(60),
            steps: vec![1000.0, 2000.0, 5000.0, 10_000.0],
            step_duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
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

/// The demo server's command line: `demo-server` and the plan's latency arguments.
fn demo_command(demo_args: &[String]) -> Vec<&str> {
    let mut args = vec!["demo-server"];
    args.extend(demo_args.iter().map(String::as_str));
    args
}

/// One call with a fresh demo server: spawn, initialize, call, close stdin, wait for the
/// exit. Everything the seed's "no pooling" client pays per call.
async fn spawn_per_call(demo_args: Arc<Vec<String>>, params: Arc<str>) -> Result<(), String> {
    StdioClient::call_once(Path::new(BRIDGE_EXE), &demo_command(&demo_args), &params)
        .await
        .map(drop)
        .map_err(|error| format!("{error:#}"))
}

/// How the bridge's cache is set for a row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cache {
    Off,
    /// The built-in defaults: a write drops every entry of its server.
    On,
    /// With the seed's invalidation rules: a task write drops only the task reads.
    Rules,
}

/// A bridge config pooling the demo server.
fn bridge_config(min: u32, max: u32, demo_args: &[String], cache: Cache) -> String {
    let args: Vec<String> = demo_command(demo_args)
        .into_iter()
        .map(toml_command)
        .collect();
    let cache = match cache {
        Cache::Off => "[cache]\nenabled = false\n".to_owned(),
        Cache::On => "[cache]\nenabled = true\ndefault_ttl = \"60s\"\n".to_owned(),
        Cache::Rules => "[cache]\nenabled = true\ndefault_ttl = \"60s\"\n\n\
             [[cache.invalidate]]\nserver = \"demo\"\non = \"create_task\"\ntools = [\"get_tasks\", \"get_today_metrics\"]\n\n\
             [[cache.invalidate]]\nserver = \"demo\"\non = \"update_task\"\ntools = [\"get_tasks\", \"get_today_metrics\"]\n\n\
             [[cache.invalidate]]\nserver = \"demo\"\non = \"complete_task\"\ntools = [\"get_tasks\", \"get_today_metrics\"]\n"
            .to_owned(),
    };
    format!(
        "[servers.demo]\ncommand = {command}\nargs = [{args}]\nmin_connections = {min}\nmax_connections = {max}\n\n{cache}",
        command = toml_command(BRIDGE_EXE),
        args = args.join(", "),
    )
}

/// Starts a bridge, drives it with `mode`, and stops it; the row carries its RSS.
async fn bridge_row(
    name: &str,
    config: &str,
    source: &CallSource,
    mode: Mode,
    bound: Bound,
    timeout: Duration,
) -> Result<Row> {
    let bridge = Bridge::start(Path::new(BRIDGE_EXE), config, &[])?;
    bridge.wait_ready().await?;
    let (duration, max_calls) = match bound {
        Bound::Calls(calls) => (None, Some(calls)),
        Bound::Time(duration) => (Some(duration), None),
    };
    let plan = LoadPlan {
        target: bridge.target("/mcp/demo"),
        source: source.clone(),
        mode,
        duration,
        max_calls,
        warmup: Duration::ZERO,
        call_timeout: timeout,
    };
    let report = drive(plan).await.with_context(|| format!("drive {name}"))?;
    let mut row = Row::from_report(name, &report);
    row.bridge_rss_kib = rss_kib(bridge.pid());
    let backends = bridge.backend_pids("demo").await.unwrap_or_default();
    row.total_rss_kib = row
        .bridge_rss_kib
        .map(|rss| rss + backends.iter().filter_map(|pid| rss_kib(*pid)).sum::<u64>());
    let _ = bridge.stop(Duration::from_secs(20)).await;
    eprintln!(
        "bench: {name}: {} calls, {:.1}% ok, mean {}, p99 {}",
        row.calls,
        row.success_rate * 100.0,
        row.mean_ms(),
        row.p99_ms()
    );
    Ok(row)
}

#[derive(Clone, Copy)]
enum Bound {
    Calls(u64),
    Time(Duration),
}

/// Everything one run measured.
struct Results {
    pooling: Vec<(String, Row)>,
    cache: Vec<Row>,
    stress: Vec<(String, Row)>,
    steps: Vec<Row>,
}

async fn run(plan: &Plan) -> Result<()> {
    let started = Instant::now();
    let workload = Workload::resolve("seed-tasks").context("the seed-tasks preset")?;
    let source = CallSource::from_workload(&workload, plan.calls.max(1000), &ToolNaming::Plain);
    let params: Arc<Vec<Arc<str>>> = Arc::new(
        source
            .calls
            .iter()
            .map(|call| call.params.clone())
            .collect(),
    );
    let demo_args = Arc::new(plan.demo_args.clone());
    let closed = Mode::Closed {
        connections: plan.callers,
    };
    let open = |rate: f64| Mode::Open {
        rate: Some(rate),
        arrivals: Arrivals::Uniform,
        max_inflight: 1024,
        seed: 1,
    };
    let load_before = stats::load_average();
    eprintln!(
        "bench: seed tables ({} run): {} calls per row, {} callers, demo latency {}",
        if plan.smoke { "smoke" } else { "full" },
        plan.calls,
        plan.callers,
        plan.demo_args.join(" ")
    );

    // Benchmark 1: pooling.
    let mut pooling = Vec::new();
    let direct = DirectServer::start(Path::new(BRIDGE_EXE), &demo_command(&plan.demo_args)).await?;
    let measured = {
        let (direct, params) = (direct.clone(), params.clone());
        drive::closed(plan.callers, plan.calls, move |index| {
            let (direct, params) = (direct.clone(), params.clone());
            async move { direct.call(&params[index as usize % params.len()]).await }
        })
        .await
    };
    direct.stop();
    pooling.push((
        "direct".to_owned(),
        Row::from_measured("direct stdio, one demo server (no bridge)", &measured),
    ));
    let spawn_call = {
        let (demo_args, params) = (demo_args.clone(), params.clone());
        move |index: u64| {
            let params = params[index as usize % params.len()].clone();
            spawn_per_call(demo_args.clone(), params)
        }
    };
    let measured = drive::closed(plan.callers, plan.calls, spawn_call.clone()).await;
    pooling.push((
        "spawn".to_owned(),
        Row::from_measured("no pooling (a demo server spawned per call)", &measured),
    ));
    for (key, min, max) in POOLS {
        let name = format!("bridge pool (min={min}, max={max})");
        let config = bridge_config(min, max, &plan.demo_args, Cache::Off);
        let row = bridge_row(
            &name,
            &config,
            &source,
            closed.clone(),
            Bound::Calls(plan.calls),
            plan.timeout,
        )
        .await?;
        pooling.push((key.to_owned(), row));
    }

    // Benchmark 2: cache off vs on.
    let mut cache = Vec::new();
    for (setting, name) in [
        (Cache::Off, "cache off"),
        (Cache::On, "cache on (a write drops its server's entries)"),
        (
            Cache::Rules,
            "cache on + invalidation rules (a task write drops task reads)",
        ),
    ] {
        let config = bridge_config(2, 10, &plan.demo_args, setting);
        let row = bridge_row(
            name,
            &config,
            &source,
            closed.clone(),
            Bound::Calls(plan.calls),
            plan.timeout,
        )
        .await?;
        cache.push(row);
    }

    // Benchmark 4: the seed's 167 calls/s, then the step-up.
    let mut stress = Vec::new();
    // At most 64 demo servers at once: a client without a pool would not fork without bound
    // either, and the machine is shared. Calls that wait for room count their waiting.
    let measured = drive::open(
        SEED_STRESS_RATE,
        plan.stress_duration,
        plan.timeout,
        MAX_SPAWNED,
        spawn_call,
    )
    .await;
    stress.push((
        "spawn".to_owned(),
        Row::from_measured("no pooling (spawn per call)", &measured),
    ));
    for (key, min, max) in POOLS {
        let name = format!("bridge pool (min={min}, max={max})");
        let config = bridge_config(min, max, &plan.demo_args, Cache::Off);
        let bound = Bound::Time(plan.stress_duration);
        let row = bridge_row(
            &name,
            &config,
            &source,
            open(SEED_STRESS_RATE),
            bound,
            plan.timeout,
        )
        .await?;
        stress.push((key.to_owned(), row));
    }
    let mut steps = Vec::new();
    let step_config = bridge_config(2, 4, &[], Cache::On);
    for rate in &plan.steps {
        let name = format!("{rate:.0} calls/s");
        let bound = Bound::Time(plan.step_duration);
        let row = bridge_row(
            &name,
            &step_config,
            &source,
            open(*rate),
            bound,
            plan.timeout,
        )
        .await?;
        let held = row.success_rate >= 1.0;
        steps.push(row);
        if !held {
            break;
        }
    }

    let results = Results {
        pooling,
        cache,
        stress,
        steps,
    };
    println!("{}", report::print_tables(plan, &results));
    let document = report::json_report(
        plan,
        &results,
        [load_before, stats::load_average()],
        started.elapsed(),
    );
    let path = bench::results_path(Path::new(BRIDGE_EXE), "seed_tables.json");
    bench::write_json(&path, &document)?;
    println!("JSON report: {}", path.display());
    // The seed's stress rate must be held at 100% by the seed's recommended pool.
    let recommended = results
        .stress
        .iter()
        .find(|(key, _)| key == "pool-5-20")
        .map(|(_, row)| row);
    if let Some(row) = recommended
        && row.success_rate < 1.0
    {
        bail!(
            "the bridge (min=5, max=20) answered {:.2}% at 167 calls/s: {:?}",
            row.success_rate * 100.0,
            row.first_error
        );
    }
    Ok(())
}
