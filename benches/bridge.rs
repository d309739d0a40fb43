//! The bridge benchmark: `tools/call` latency through `mcp-bridge` with its cache off against
//! the same call made directly over stdio, the same call answered from the bridge's cache, and
//! throughput at many connections against a bare hyper server answering the same body, all
//! measured side by side in one run on real processes.
//!
//! Run it with `cargo bench --bench bridge` (`-- --help` lists the options); `benches/README.md`
//! explains every number. It prints a table and writes `target/bench-results/bridge.json`.
//!
//! What runs:
//! - `mcp-bridge serve` twice on free loopback ports, each pooling `mcp-bridge demo-server`
//!   (zero latency): one with `[cache] enabled = false`, so every call reaches a backend
//!   ("uncached"), and one with the cache on, warmed, so every measured call is a hit ("cached");
//! - one more `mcp-bridge demo-server` that the bench drives directly over its stdin/stdout;
//! - a fresh `mcp-bridge demo-server` for every call of the spawn-per-call path (no pooling:
//!   spawn, handshake, one call, close stdin, wait for the exit), which runs fewer calls;
//! - two bare hyper servers in the bench process, answering with canned bodies of exactly the
//!   uncached and the cached bridge's answers.
//!
//! The measured calls are sequential on one connection for latency (split into interleaved
//! rounds so drift hits every path alike), then closed-loop on many keep-alive connections for
//! throughput (the four targets taking turns round by round). Any failed call fails the bench,
//! and so does a cached bridge whose `/admin/cache/stats` shows fewer hits than 99% of the calls
//! sent to it.

// The crate root's modules would be looked up next to it; they live in `benches/bridge/`.
#[path = "bridge/baseline.rs"]
mod baseline;
#[path = "bridge/cache.rs"]
mod cache;
// The comparison benches (plugins, auth) use `taking_turns`, which this one does not.
#[allow(dead_code)]
#[path = "bridge/load.rs"]
mod load;
#[path = "bridge/options.rs"]
mod options;
#[path = "bridge/report.rs"]
mod report;
#[path = "bridge/stats.rs"]
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::Parser as _;
use serde_json::{Value, json};

use mcp_bridge_test_support::client::{AnswerIds, Session};
use mcp_bridge_test_support::process::rss_kib;
use mcp_bridge_test_support::repo::toml_command;
use mcp_bridge_test_support::stdio::{SpawnTiming, StdioClient};
use mcp_bridge_test_support::{Bridge, Target, bench};

use self::baseline::BaselineServer;
use self::cache::{CacheCheck, CacheMode};
use self::load::{CALL_PARAMS, LoadReport, Probe, Round, TOOL};
use self::options::{Args, Options};
use self::report::{Latency, Throughput, calls_per_second, ratio};
use self::stats::{CpuProbe, Summary, round, round2, round4};

/// The `mcp-bridge` binary cargo built for this bench.
const BRIDGE_EXE: &str = env!("CARGO_BIN_EXE_mcp-bridge");

/// The bridge's name for the demo server, and so its endpoint `/mcp/demo`.
const SERVER: &str = "demo";
const ENDPOINT: &str = "/mcp/demo";

/// The arguments that make `mcp-bridge` the demo server, for every path that starts one.
const DEMO_ARGS: &[&str] = &["demo-server"];

fn main() -> ExitCode {
    let args = Args::parse();
    if args.mode.list {
        return ExitCode::SUCCESS;
    }
    let options = match Options::from_args(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("bench: {error:#}");
            return ExitCode::from(2);
        }
    };
    // One thread drives every client, so the load generator takes at most one core.
    bench::run_on_one_thread(run(&options))
}

/// Everything one run measured.
struct Results {
    latency: Latency,
    load: Throughput,
    cache: CacheCheck,
    answer_bytes: usize,
    cached_answer_bytes: usize,
    bridge_rss_kib: Option<u64>,
    cached_rss_kib: Option<u64>,
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
         the load generator (1 thread), the bridges and the demo servers share them",
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

    // Dropping a bridge kills it, so an early return leaves no process behind.
    let uncached = Bridge::start(exe, &bridge_config(exe, options, CacheMode::Off), &[])?;
    let cached = Bridge::start(exe, &bridge_config(exe, options, CacheMode::On), &[])?;
    uncached.wait_ready().await?;
    cached.wait_ready().await?;
    let measured = measure(options, exe, &uncached, &cached).await;
    let stopped = [
        uncached.stop(Duration::from_secs(20)).await,
        cached.stop(Duration::from_secs(20)).await,
    ];
    let results = measured?;
    for (name, stopped) in ["uncached", "cached"].into_iter().zip(stopped) {
        let exit = stopped?;
        if !exit.success() {
            eprintln!("bench: warning: the {name} bridge exited with {exit} after SIGTERM");
        }
    }

    println!(
        "{}",
        report::table(
            &header,
            judge,
            &results.latency,
            &results.load,
            &results.cache
        )
    );
    let load = [load_before, stats::load_average()];
    let document = json_report(options, profile, cpus, load, &results, started.elapsed());
    let path = output_path(options);
    bench::write_json(&path, &document)?;
    println!("JSON report: {}", path.display());

    let Throughput {
        bridge,
        baseline,
        cached,
        cached_baseline,
    } = &results.load;
    let errors = bridge.errors + baseline.errors + cached.errors + cached_baseline.errors;
    if errors > 0 {
        bail!("{errors} call(s) failed under load (see the table)");
    }
    results.cache.ensure_hits()
}

/// A bridge's config: one demo server with zero latency and the bench's pool settings, and the
/// cache off or on. The cache is on by default, so the uncached bridge has to say it is off.
fn bridge_config(exe: &Path, options: &Options, cache: CacheMode) -> String {
    let command = toml_command(&exe.display().to_string());
    // A JSON array of strings is a valid TOML array.
    let args = serde_json::to_string(DEMO_ARGS).unwrap_or_default();
    format!(
        "[servers.{SERVER}]\n\
         command = {command}\n\
         args = {args}\n\
         min_connections = {min}\n\
         max_connections = {max}\n\
         max_inflight = {inflight}\n\
         max_queue = {queue}\n\
         \n\
         {cache}",
        min = options.min_connections,
        max = options.max_connections,
        inflight = options.max_inflight,
        queue = options.connections.max(256),
        cache = cache.toml(),
    )
}

/// Opens a connection to a bridge's endpoint and starts an MCP session on it.
async fn session(bridge: &Bridge) -> Result<Session> {
    Ok(Session::open(Arc::new(bridge.target(ENDPOINT))).await?)
}

/// Connects to a bare hyper server, which keeps no session and answers every call with the
/// same canned body (so with the same id).
async fn floor_client(server: &BaselineServer) -> Result<Session> {
    let target = Arc::new(Target::local(server.address, ENDPOINT));
    Ok(Session::stateless(target, AnswerIds::Ignored).await?)
}

/// Calls the tool once and returns the answer's body, which must be plain JSON (it is what
/// a bare hyper server then answers with, at exactly the bridge's size).
async fn call_for_body(client: &mut Session) -> Result<bytes::Bytes> {
    let answer = client.call(CALL_PARAMS).await?;
    if !answer.content_type.starts_with("application/json") {
        bail!("tools/call answered with {}", answer.content_type);
    }
    Ok(answer.body)
}

async fn measure(
    options: &Options,
    exe: &Path,
    uncached: &Bridge,
    cached: &Bridge,
) -> Result<Results> {
    // The uncached bridge must have no cache at all (its stats endpoint then answers 404), or
    // its numbers would measure hits.
    if uncached.cache_stats().await?.is_some() {
        bail!("the uncached bridge has its cache on; its config must say [cache] enabled = false");
    }
    if cached.cache_stats().await?.is_none() {
        bail!("the cached bridge has its cache off");
    }

    // Sequential latency: the five pooled paths, each on its own warm connection or pipe, and
    // the spawn-per-call path, which starts a process for every call.
    let mut direct = StdioClient::spawn(exe, DEMO_ARGS).await?;
    let mut via_bridge = session(uncached)
        .await
        .context("initialize through the uncached bridge")?;
    let answer = call_for_body(&mut via_bridge)
        .await
        .context("first call through the uncached bridge")?;
    let mut via_cache = session(cached)
        .await
        .context("initialize through the cached bridge")?;
    // The first call misses and fills the cache; the second is a hit, and the hit's body is
    // what the cached path's baseline answers with.
    call_for_body(&mut via_cache)
        .await
        .context("first call through the cached bridge")?;
    let cached_answer = call_for_body(&mut via_cache)
        .await
        .context("second call through the cached bridge")?;
    let baseline = BaselineServer::start(answer.clone())?;
    let cached_baseline = BaselineServer::start(cached_answer.clone())?;
    let mut floor = floor_client(&baseline).await?;
    let mut cached_floor = floor_client(&cached_baseline).await?;

    let spawn_calls = options.spawn_calls;
    eprintln!(
        "bench: sequential latency, {} warm-up + {} measured calls per path \
         ({} + {} for spawn per call)",
        options.warmup_calls,
        options.calls,
        options.spawn_warmup_calls(),
        spawn_calls
    );
    let mut paths = [
        SeqPath::Direct(&mut direct),
        SeqPath::Http("bridge", &mut via_bridge),
        SeqPath::Http("bare hyper", &mut floor),
        SeqPath::Http("cached bridge", &mut via_cache),
        SeqPath::Http("bare hyper (the hit's body)", &mut cached_floor),
    ];
    for path in &mut paths {
        for _ in 0..options.warmup_calls {
            path.call_checked().await?;
        }
    }
    for _ in 0..options.spawn_warmup_calls() {
        spawn_call(exe).await?;
    }
    let mut samples: [Vec<u64>; 5] = std::array::from_fn(|_| Vec::with_capacity(options.calls));
    let mut spawn_answered_ns = Vec::with_capacity(spawn_calls);
    let mut spawn_exited_ns = Vec::with_capacity(spawn_calls);
    let per_round = options.calls.div_ceil(options.rounds);
    let rounds = options.calls.div_ceil(per_round);
    // The spawn-per-call path takes its turn in the rounds too, with its share of its calls
    // (rounded up, so the last rounds may have fewer or none).
    let spawn_per_round = spawn_calls.div_ceil(rounds);
    let mut remaining = options.calls;
    let mut spawn_remaining = spawn_calls;
    while remaining > 0 {
        let count = per_round.min(remaining);
        for (path, samples) in paths.iter_mut().zip(samples.iter_mut()) {
            for _ in 0..count {
                let sent = Instant::now();
                path.call_checked().await?;
                samples.push(nanos(sent.elapsed()));
            }
        }
        remaining -= count;
        let spawn_count = spawn_per_round.min(spawn_remaining);
        for _ in 0..spawn_count {
            let timing = spawn_call(exe).await?;
            spawn_answered_ns.push(nanos(timing.answered));
            spawn_exited_ns.push(nanos(timing.exited));
        }
        spawn_remaining -= spawn_count;
    }
    let [
        mut direct_ns,
        mut bridge_ns,
        mut floor_ns,
        mut cached_ns,
        mut cached_floor_ns,
    ] = samples;
    let latency = Latency {
        rounds,
        direct: Summary::from_nanos(&mut direct_ns),
        bridge: Summary::from_nanos(&mut bridge_ns),
        floor: Summary::from_nanos(&mut floor_ns),
        cached: Summary::from_nanos(&mut cached_ns),
        cached_floor: Summary::from_nanos(&mut cached_floor_ns),
        spawn: Summary::from_nanos(&mut spawn_answered_ns),
        spawn_with_exit: Summary::from_nanos(&mut spawn_exited_ns),
    };
    direct.close().await?;
    let mut cached_calls = via_cache.calls_sent();
    drop((via_bridge, floor, via_cache, cached_floor));

    // Throughput: the four targets take turns, round by round, each on its own set of
    // keep-alive connections opened up front.
    let bridge_pid = uncached.pid();
    let cached_pid = cached.pid();
    eprintln!(
        "bench: throughput at {} connections, {:?} per target in {} alternating rounds after {:?} warm-up",
        options.connections, options.duration, options.load_rounds, options.warmup
    );
    let mut targets = [
        LoadTarget::new(bridge_probes(bridge_pid, uncached).await?),
        LoadTarget::new(baseline_probes()),
        LoadTarget::new(bridge_probes(cached_pid, cached).await?),
        LoadTarget::new(baseline_probes()),
    ];
    for _ in 0..options.connections {
        targets[0].clients.push(
            session(uncached)
                .await
                .context("initialize a load connection")?,
        );
        targets[1].clients.push(floor_client(&baseline).await?);
        targets[2].clients.push(
            session(cached)
                .await
                .context("initialize a load connection to the cached bridge")?,
        );
        targets[3]
            .clients
            .push(floor_client(&cached_baseline).await?);
    }
    let slice = options.duration / u32::try_from(options.load_rounds).unwrap_or(u32::MAX);
    for round in 0..options.load_rounds {
        // The first round of each target warms it up; later rounds only let the connections
        // get back into step after the other targets' turns.
        let warmup = if round == 0 {
            options.warmup
        } else {
            options.warmup.min(slice / 5)
        };
        for target in &mut targets {
            let clients = std::mem::take(&mut target.clients);
            let (result, clients) = load::run_round(clients, warmup, slice, &target.probes).await?;
            target.clients = clients;
            target.rounds.push(result);
        }
    }
    let bridge_rss_kib = rss_kib(bridge_pid);
    let cached_rss_kib = rss_kib(cached_pid);
    cached_calls += targets[2]
        .clients
        .iter()
        .map(Session::calls_sent)
        .sum::<u64>();
    let [bridge, baseline_load, cached_load, cached_baseline_load] =
        targets.map(|target| target.report(options.connections));
    baseline.stop();
    cached_baseline.stop();

    // Every call the cached bridge answered must have been a hit, bar the one that filled it.
    let stats = cached
        .cache_stats()
        .await?
        .context("the cached bridge's cache went off during the run")?;
    let cache = CacheCheck::new(cached_calls, stats)?;

    Ok(Results {
        latency,
        load: Throughput {
            bridge,
            baseline: baseline_load,
            cached: cached_load,
            cached_baseline: cached_baseline_load,
        },
        cache,
        answer_bytes: answer.len(),
        cached_answer_bytes: cached_answer.len(),
        bridge_rss_kib,
        cached_rss_kib,
    })
}

/// One call of the spawn-per-call path; a failure stops the bench, as on the other paths.
async fn spawn_call(exe: &Path) -> Result<SpawnTiming> {
    StdioClient::call_once(exe, DEMO_ARGS, CALL_PARAMS)
        .await
        .context("a spawn-per-call call failed")
}

/// A duration in whole nanoseconds, saturating.
fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// One throughput target: its connections, its CPU probes and the rounds measured so far.
/// The baseline servers' connections ignore answer ids (their canned answers carry a fixed
/// one).
struct LoadTarget {
    clients: Vec<Session>,
    probes: Vec<Probe>,
    rounds: Vec<Round>,
}

impl LoadTarget {
    fn new(probes: Vec<Probe>) -> Self {
        Self {
            clients: Vec::new(),
            probes,
            rounds: Vec::new(),
        }
    }

    fn report(self, connections: usize) -> LoadReport {
        LoadReport::from_rounds(connections, &self.probes, self.rounds)
    }
}

/// The CPU probes of a bridge's rounds: the bridge, its demo servers, the load generator and the
/// whole machine.
async fn bridge_probes(pid: u32, bridge: &Bridge) -> Result<Vec<Probe>> {
    let backends = bridge.backend_pids(SERVER).await?;
    Ok(vec![
        Probe::new("bridge", "bridge", CpuProbe::Processes(vec![pid])),
        Probe::new(
            "demo_servers",
            format!("demo servers ({})", backends.len()),
            CpuProbe::Processes(backends),
        ),
        Probe::new("load_generator", "load generator", CpuProbe::CurrentThread),
        Probe::new("machine", "whole machine", CpuProbe::Machine),
    ])
}

/// The CPU probes of a baseline server's rounds. Both baseline servers live in the bench
/// process, so its figure includes the idle one.
fn baseline_probes() -> Vec<Probe> {
    vec![
        Probe::new(
            "bench_process",
            "bench process (servers + generator)",
            CpuProbe::Processes(vec![std::process::id()]),
        ),
        Probe::new("load_generator", "load generator", CpuProbe::CurrentThread),
        Probe::new("machine", "whole machine", CpuProbe::Machine),
    ]
}

/// One of the sequentially measured paths.
enum SeqPath<'a> {
    /// The demo server over its stdin/stdout.
    Direct(&'a mut StdioClient),
    /// A bridge in an MCP session, or a bare hyper server (whose client ignores the canned
    /// answer's fixed id).
    Http(&'static str, &'a mut Session),
}

impl SeqPath<'_> {
    /// One call; any failure stops the bench, since a latency series with failures in it
    /// would not measure the same thing as the others.
    async fn call_checked(&mut self) -> Result<()> {
        match self {
            SeqPath::Direct(client) => client
                .call(CALL_PARAMS)
                .await
                .context("a direct stdio call failed"),
            SeqPath::Http(name, client) => match client.call(CALL_PARAMS).await {
                Ok(_) => Ok(()),
                Err(failure) => bail!("a {name} call failed: {failure}"),
            },
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
        cached,
        cached_floor,
        spawn,
        spawn_with_exit,
    } = &results.latency;
    let load = &results.load;
    let per_core = load.cached_calls_per_core();
    json!({
        "bench": "bridge",
        "schema": 3,
        "mode": if options.smoke { "smoke" } else { "full" },
        "profile": profile,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.as_secs()),
        "elapsed_s": round(elapsed.as_secs_f64()),
        "machine": {
            "cpus": cpus,
            "cpu_model": stats::cpu_model(),
            "load_average_1m": { "before": load_average[0], "after": load_average[1] },
            "note": "the load generator (one thread), the bridges and the demo servers share them",
        },
        "options": {
            "tool": TOOL,
            "calls": options.calls,
            "warmup_calls": options.warmup_calls,
            "rounds": options.rounds,
            "spawn_calls": spawn.count,
            "spawn_warmup_calls": options.spawn_warmup_calls(),
            "connections": options.connections,
            "duration_s": options.duration.as_secs_f64(),
            "warmup_s": options.warmup.as_secs_f64(),
            "pool": {
                "min_connections": options.min_connections,
                "max_connections": options.max_connections,
                "max_inflight": options.max_inflight,
            },
            "cache": {
                "uncached_bridge": CacheMode::Off.to_json(),
                "cached_bridge": CacheMode::On.to_json(),
            },
            "demo_latency_ms": 0,
            "answer_bytes": results.answer_bytes,
            "cached_answer_bytes": results.cached_answer_bytes,
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
            "cached": {
                "bridge": cached.to_json(),
                "http_floor": cached_floor.to_json(),
                "over_floor_us": {
                    "p50": round(cached.p50 - cached_floor.p50),
                    "p90": round(cached.p90 - cached_floor.p90),
                    "p99": round(cached.p99 - cached_floor.p99),
                    "mean": round(cached.mean - cached_floor.mean),
                },
                "ratio_to_floor": {
                    "p50": round2(ratio(cached.p50, cached_floor.p50)),
                    "p90": round2(ratio(cached.p90, cached_floor.p90)),
                    "p99": round2(ratio(cached.p99, cached_floor.p99)),
                    "mean": round2(ratio(cached.mean, cached_floor.mean)),
                },
                // One connection making one call at a time: the inverse of the mean latency.
                "calls_per_s": {
                    "bridge": calls_per_second(cached).round(),
                    "http_floor": calls_per_second(cached_floor).round(),
                    "ratio": round2(ratio(calls_per_second(cached), calls_per_second(cached_floor))),
                },
                "target_p50_us": report::TARGET_CACHED_P50_US,
                "p50_met": judged.then_some(cached.p50 <= report::TARGET_CACHED_P50_US),
            },
            // No pooling: a fresh demo server per call, timed from the spawn to the answer
            // (`answered`) and to the reaped exit (`with_exit`). The ratios are over `answered`.
            "spawn_per_call": {
                "answered": spawn.to_json(),
                "with_exit": spawn_with_exit.to_json(),
                "ratio_bridge_to_spawn": {
                    "p50": round4(ratio(bridge.p50, spawn.p50)),
                    "p99": round4(ratio(bridge.p99, spawn.p99)),
                    "mean": round4(ratio(bridge.mean, spawn.mean)),
                },
                "ratio_direct_to_spawn": {
                    "p50": round4(ratio(direct.p50, spawn.p50)),
                    "p99": round4(ratio(direct.p99, spawn.p99)),
                    "mean": round4(ratio(direct.mean, spawn.mean)),
                },
            },
        },
        "throughput": {
            "bridge": load.bridge.to_json(),
            "baseline_hyper": load.baseline.to_json(),
            "ratio_calls_per_s": round2(ratio(load.bridge.calls_per_second(), load.baseline.calls_per_second())),
            "bridge_rss_kib_after": results.bridge_rss_kib,
            "cached": {
                "bridge": load.cached.to_json(),
                "baseline_hyper": load.cached_baseline.to_json(),
                "ratio_calls_per_s": round2(ratio(load.cached.calls_per_second(), load.cached_baseline.calls_per_second())),
                "ratio_p50": round2(ratio(load.cached.latency.p50, load.cached_baseline.latency.p50)),
                "ratio_p99": round2(ratio(load.cached.latency.p99, load.cached_baseline.latency.p99)),
                "bridge_calls_per_cpu_second": per_core.map(f64::round),
                "bridge_rss_kib_after": results.cached_rss_kib,
                "target_p99_us": report::TARGET_CACHED_LOAD_P99_US,
                "p99_met": judged.then_some(load.cached.latency.p99 <= report::TARGET_CACHED_LOAD_P99_US),
                "target_calls_per_core_s": report::TARGET_CACHED_CALLS_PER_CORE,
                "calls_per_core_met": if judged {
                    per_core.map(|rate| rate >= report::TARGET_CACHED_CALLS_PER_CORE)
                } else {
                    None
                },
            },
        },
        "cache": results.cache.to_json(),
    })
}

/// `--out`, else `<target>/bench-results/bridge.json`.
fn output_path(options: &Options) -> PathBuf {
    match &options.out {
        Some(path) => path.clone(),
        None => bench::results_path(Path::new(BRIDGE_EXE), "bridge.json"),
    }
}
