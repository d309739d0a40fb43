//! The bridge benchmark: uncached `tools/call` latency through `mcp-bridge` against the same
//! call made directly over stdio, and throughput at many connections against a bare hyper
//! server, all measured side by side in one run on real processes.
//!
//! Run it with `cargo bench --bench bridge` (`-- --help` lists the options); `benches/README.md`
//! explains every number. It prints a table and writes `target/bench-results/bridge.json`.
//!
//! What runs:
//! - `mcp-bridge serve` on a free loopback port, pooling `mcp-bridge demo-server` (zero latency);
//! - one more `mcp-bridge demo-server` that the bench drives directly over its stdin/stdout;
//! - a bare hyper server in the bench process, answering with a canned body of the bridge's
//!   answer size.
//!
//! The measured calls are sequential on one connection for latency (split into interleaved
//! rounds so drift hits every path alike), then closed-loop on many keep-alive connections for
//! throughput. Any failed call fails the bench.

// The crate root's modules would be looked up next to it; they live in `benches/bridge/`.
#[path = "bridge/baseline.rs"]
mod baseline;
#[path = "bridge/http.rs"]
mod http;
#[path = "bridge/load.rs"]
mod load;
#[path = "bridge/options.rs"]
mod options;
#[path = "bridge/processes.rs"]
mod processes;
#[path = "bridge/report.rs"]
mod report;
#[path = "bridge/rpc.rs"]
mod rpc;
#[path = "bridge/stats.rs"]
mod stats;
#[path = "bridge/stdio.rs"]
mod stdio;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use self::baseline::BaselineServer;
use self::http::{CallOutcome, McpClient};
use self::load::{LoadReport, Probe};
use self::options::Options;
use self::processes::BridgeProcess;
use self::report::{Latency, ratio};
use self::stats::{CpuProbe, Summary, round, round2};
use self::stdio::StdioClient;

/// The `mcp-bridge` binary cargo built for this bench.
const BRIDGE_EXE: &str = env!("CARGO_BIN_EXE_mcp-bridge");

/// The bridge's name for the demo server, and so its endpoint `/mcp/demo`.
const SERVER: &str = "demo";
const ENDPOINT: &str = "/mcp/demo";

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => return ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error:#}");
            return ExitCode::from(2);
        }
    };
    // One thread drives every client, so the load generator takes at most one core.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Everything one run measured.
struct Results {
    latency: Latency,
    bridge_load: LoadReport,
    baseline_load: LoadReport,
    answer_bytes: usize,
    bridge_rss_kib: Option<u64>,
}

async fn run(options: &Options) -> Result<()> {
    let started = Instant::now();
    let exe = Path::new(BRIDGE_EXE);
    let cpus = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mode = if options.smoke { "smoke" } else { "full" };
    let load_before = stats::load_average();
    // Targets are judged only on a full run of an optimized build.
    let judge = !options.smoke && !cfg!(debug_assertions);
    let header = format!(
        "mcp-bridge bench ({mode} run, {profile} build): {cpus} CPU(s){}; \
         the load generator (1 thread), the bridge and the demo server(s) share them",
        stats::cpu_model()
            .map(|model| format!(" ({model})"))
            .unwrap_or_default(),
    );
    let header = match load_before {
        Some(load) => format!(
            "{header}\n1-minute load average before the run: {load:.2} \
             (other work on the machine skews the results)"
        ),
        None => header,
    };
    eprintln!("bench: {header}");

    let bridge = BridgeProcess::start(exe, &bridge_config(exe, options)).await?;
    bridge.wait_ready().await?;
    let measured = measure(options, exe, &bridge).await;
    let stopped = bridge.stop(Duration::from_secs(20)).await;
    let results = measured?;
    let exit = stopped?;
    if !exit.success() {
        eprintln!("bench: warning: the bridge exited with {exit} after SIGTERM");
    }

    println!(
        "{}",
        report::table(
            &header,
            judge,
            &results.latency,
            &results.bridge_load,
            &results.baseline_load
        )
    );
    let load = [load_before, stats::load_average()];
    let document = json_report(options, profile, cpus, load, &results, started.elapsed());
    let path = output_path(options);
    write_json(&path, &document)?;
    println!("JSON report: {}", path.display());

    let errors = results.bridge_load.errors + results.baseline_load.errors;
    if errors > 0 {
        bail!("{errors} call(s) failed under load (see the table)");
    }
    Ok(())
}

/// The bridge's config: one demo server with zero latency and the bench's pool settings.
fn bridge_config(exe: &Path, options: &Options) -> String {
    // A JSON string is a valid TOML basic string; `$` is doubled because the bridge expands
    // `${VAR}` in commands.
    let command = serde_json::to_string(&exe.display().to_string())
        .unwrap_or_default()
        .replace('$', "$$");
    format!(
        "[servers.{SERVER}]\n\
         command = {command}\n\
         args = [\"demo-server\"]\n\
         min_connections = {min}\n\
         max_connections = {max}\n\
         max_inflight = {inflight}\n\
         max_queue = {queue}\n",
        min = options.min_connections(),
        max = options.max_connections,
        inflight = options.max_inflight,
        queue = options.connections.max(256),
    )
}

async fn measure(options: &Options, exe: &Path, bridge: &BridgeProcess) -> Result<Results> {
    // Sequential latency: the three paths, each on its own warm connection or pipe.
    let mut direct = StdioClient::spawn(exe, &["demo-server"]).await?;
    let mut via_bridge = McpClient::connect(bridge.address, ENDPOINT).await?;
    via_bridge
        .initialize()
        .await
        .context("initialize through the bridge")?;
    let answer = via_bridge
        .call_tool_raw()
        .await
        .context("first call through the bridge")?;
    let baseline = BaselineServer::start(answer.clone())?;
    let mut floor = McpClient::connect(baseline.address, ENDPOINT).await?;

    eprintln!(
        "bench: sequential latency, {} warm-up + {} measured calls per path",
        options.warmup_calls, options.calls
    );
    let mut paths = [
        Path3::Direct(&mut direct),
        Path3::Bridge(&mut via_bridge),
        Path3::Floor(&mut floor),
    ];
    for path in &mut paths {
        for _ in 0..options.warmup_calls {
            path.call_checked().await?;
        }
    }
    let mut samples: [Vec<u64>; 3] = std::array::from_fn(|_| Vec::with_capacity(options.calls));
    let per_round = options.calls.div_ceil(options.rounds);
    let mut remaining = options.calls;
    while remaining > 0 {
        let count = per_round.min(remaining);
        for (path, samples) in paths.iter_mut().zip(samples.iter_mut()) {
            for _ in 0..count {
                let sent = Instant::now();
                path.call_checked().await?;
                samples.push(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
        }
        remaining -= count;
    }
    let [mut direct_ns, mut bridge_ns, mut floor_ns] = samples;
    let latency = Latency {
        rounds: options.calls.div_ceil(per_round),
        direct: Summary::from_nanos(&mut direct_ns),
        bridge: Summary::from_nanos(&mut bridge_ns),
        floor: Summary::from_nanos(&mut floor_ns),
    };
    direct.close().await?;
    drop((via_bridge, floor));

    // Throughput: the bridge and the bare hyper server take turns, round by round, each on
    // its own set of keep-alive connections opened up front.
    let bridge_pid = bridge.pid().context("the bridge is not running")?;
    eprintln!(
        "bench: throughput at {} connections, {:?} per target in {} alternating rounds after {:?} warm-up",
        options.connections, options.duration, options.load_rounds, options.warmup
    );
    let mut bridge_clients = Vec::with_capacity(options.connections);
    let mut baseline_clients = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let mut client = McpClient::connect(bridge.address, ENDPOINT).await?;
        client
            .initialize()
            .await
            .context("initialize a load connection")?;
        bridge_clients.push(client);
        baseline_clients.push(McpClient::connect(baseline.address, ENDPOINT).await?);
    }
    let backends = bridge.backend_pids(SERVER).await?;
    let bridge_probes = [
        Probe::new("bridge", "bridge", CpuProbe::Processes(vec![bridge_pid])),
        Probe::new(
            "demo_servers",
            format!("demo servers ({})", backends.len()),
            CpuProbe::Processes(backends),
        ),
        Probe::new("load_generator", "load generator", CpuProbe::CurrentThread),
        Probe::new("machine", "whole machine", CpuProbe::Machine),
    ];
    let baseline_probes = [
        Probe::new(
            "bench_process",
            "bench process (server + generator)",
            CpuProbe::Processes(vec![std::process::id()]),
        ),
        Probe::new("load_generator", "load generator", CpuProbe::CurrentThread),
        Probe::new("machine", "whole machine", CpuProbe::Machine),
    ];
    let slice = options.duration / u32::try_from(options.load_rounds).unwrap_or(u32::MAX);
    let (mut bridge_rounds, mut baseline_rounds) = (Vec::new(), Vec::new());
    for round in 0..options.load_rounds {
        // The first round of each target warms it up; later rounds only let the connections
        // get back into step after the other target's turn.
        let warmup = if round == 0 {
            options.warmup
        } else {
            options.warmup.min(slice / 5)
        };
        let (result, clients) =
            load::run_round(bridge_clients, true, warmup, slice, &bridge_probes).await?;
        bridge_clients = clients;
        bridge_rounds.push(result);
        let (result, clients) =
            load::run_round(baseline_clients, false, warmup, slice, &baseline_probes).await?;
        baseline_clients = clients;
        baseline_rounds.push(result);
    }
    let bridge_rss_kib = stats::rss_kib(bridge_pid);
    drop((bridge_clients, baseline_clients));
    baseline.stop();
    let bridge_load = LoadReport::from_rounds(options.connections, &bridge_probes, bridge_rounds);
    let baseline_load =
        LoadReport::from_rounds(options.connections, &baseline_probes, baseline_rounds);

    Ok(Results {
        latency,
        bridge_load,
        baseline_load,
        answer_bytes: answer.len(),
        bridge_rss_kib,
    })
}

/// One of the three sequentially measured paths.
enum Path3<'a> {
    Direct(&'a mut StdioClient),
    Bridge(&'a mut McpClient),
    Floor(&'a mut McpClient),
}

impl Path3<'_> {
    fn name(&self) -> &'static str {
        match self {
            Path3::Direct(_) => "direct stdio",
            Path3::Bridge(_) => "bridge",
            Path3::Floor(_) => "bare hyper",
        }
    }

    async fn call(&mut self) -> CallOutcome {
        match self {
            Path3::Direct(client) => client.call_tool().await,
            Path3::Bridge(client) => client.call_tool(true).await,
            // The baseline's canned answer has a fixed id.
            Path3::Floor(client) => client.call_tool(false).await,
        }
    }

    /// One call; any failure stops the bench, since a latency series with failures in it
    /// would not measure the same thing as the others.
    async fn call_checked(&mut self) -> Result<()> {
        let name = self.name();
        match self.call().await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => bail!("a {name} call failed: {message}"),
            Err(error) => Err(error.context(format!("a {name} call failed"))),
        }
    }
}

fn json_report(
    options: &Options,
    profile: &str,
    cpus: usize,
    load_average: [Option<f64>; 2],
    results: &Results,
    elapsed: Duration,
) -> Value {
    let judged = !options.smoke && profile == "release";
    let Latency {
        rounds: _,
        direct,
        bridge,
        floor,
    } = &results.latency;
    let (bridge_load, baseline_load) = (&results.bridge_load, &results.baseline_load);
    let (bridge_calls_per_s, baseline_calls_per_s) = (
        bridge_load.calls_per_second(),
        baseline_load.calls_per_second(),
    );
    json!({
        "bench": "bridge",
        "schema": 1,
        "mode": if options.smoke { "smoke" } else { "full" },
        "profile": profile,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.as_secs()),
        "elapsed_s": round(elapsed.as_secs_f64()),
        "machine": {
            "cpus": cpus,
            "cpu_model": stats::cpu_model(),
            "load_average_1m": { "before": load_average[0], "after": load_average[1] },
            "note": "the load generator (one thread), the bridge and the demo servers share them",
        },
        "options": {
            "tool": rpc::TOOL,
            "calls": options.calls,
            "warmup_calls": options.warmup_calls,
            "rounds": options.rounds,
            "connections": options.connections,
            "duration_s": options.duration.as_secs_f64(),
            "warmup_s": options.warmup.as_secs_f64(),
            "pool": {
                "min_connections": options.min_connections(),
                "max_connections": options.max_connections,
                "max_inflight": options.max_inflight,
            },
            "demo_latency_ms": 0,
            "answer_bytes": results.answer_bytes,
        },
        "latency": {
            "direct_stdio": direct.to_json(),
            "bridge": bridge.to_json(),
            "http_floor": floor.to_json(),
            "added_us": {
                "p50": round(bridge.p50 - direct.p50),
                "p90": round(bridge.p90 - direct.p90),
                "p99": round(bridge.p99 - direct.p99),
                "p999": round(bridge.p999 - direct.p999),
                "mean": round(bridge.mean - direct.mean),
            },
            "ratio": {
                "p50": round2(ratio(bridge.p50, direct.p50)),
                "p99": round2(ratio(bridge.p99, direct.p99)),
            },
            "target_added_us": {
                "p50": report::TARGET_ADDED_P50_US,
                "p99": report::TARGET_ADDED_P99_US,
                // Judged only on a full run of an optimized build; null otherwise.
                "p50_met": judged.then_some(bridge.p50 - direct.p50 <= report::TARGET_ADDED_P50_US),
                "p99_met": judged.then_some(bridge.p99 - direct.p99 <= report::TARGET_ADDED_P99_US),
            },
        },
        "throughput": {
            "bridge": bridge_load.to_json(),
            "baseline_hyper": baseline_load.to_json(),
            "ratio_calls_per_s": round2(ratio(bridge_calls_per_s, baseline_calls_per_s)),
            "bridge_rss_kib_after": results.bridge_rss_kib,
        },
    })
}

/// `--out`, else `$CARGO_TARGET_DIR/bench-results/bridge.json`, else the `target` directory
/// that holds the bridge binary.
fn output_path(options: &Options) -> PathBuf {
    if let Some(path) = &options.out {
        return path.clone();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // BRIDGE_EXE is <target>/<profile>/mcp-bridge.
            Path::new(BRIDGE_EXE)
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("target"))
        });
    target.join("bench-results").join("bridge.json")
}

fn write_json(path: &Path, document: &Value) -> Result<()> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let mut text = serde_json::to_string_pretty(document).context("serialize the report")?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}
