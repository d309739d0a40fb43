//! The replica benchmark: what the shared tier (`[cache.shared]` on a real `redis-server`)
//! costs a cached `tools/call`, what three replicas behind a real nginx give on this machine,
//! and how fast a write's invalidation reaches another replica, measured in one run on real
//! processes, as ratios to baselines measured in the same run.
//!
//! 1. Cached-call throughput (closed loop, the same connections for each), the bridges
//!    taking turns round by round: today's single node (no shared tier) is the baseline; a
//!    `bounded` replica answering from its first level; a `strict` replica answering from
//!    its first level after checking the entry's generations in Redis (one round trip); and
//!    a replica answering from the second level (Redis) on every lookup (see
//!    [`setup::no_subscribe_url`] for how).
//! 2. Three bounded replicas behind nginx against one bridge behind the same kind of nginx,
//!    cached calls, on the same machine: every process competes for its cores, which the
//!    report states.
//! 3. Invalidation propagation in bounded mode: writes through replica A, the lag replica B
//!    measured (p50/p99) and the reads through B right after a write that were stale.
//!
//! Run it with `cargo bench --bench replicas`; without `--bench` (as under `cargo test
//! --bench replicas`) it runs a short smoke that checks the harness end to end (every
//! contender answered, each hit came from the level it should) but no number. It prints a
//! table and writes `target/bench-results/replicas.json`.

#[path = "replicas/lag.rs"]
mod lag;
#[allow(dead_code)]
#[path = "bridge/load.rs"]
mod load;
#[path = "replicas/setup.rs"]
mod setup;
#[allow(dead_code)]
#[path = "bridge/stats.rs"]
mod stats;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use clap::Parser as _;
use serde_json::{Value, json};

use mcp_bridge_test_support::bench::{self, BenchMode};
use mcp_bridge_test_support::{Bridge, Nginx, RedisOptions, RedisServer, Target, metric};

use self::load::{Contender, LoadReport, Probe};
use self::setup::Role;
use self::stats::{CpuProbe, round2};

const BRIDGE_EXE: &str = env!("CARGO_BIN_EXE_mcp-bridge");
const ENDPOINT: &str = "/mcp/demo";

#[derive(Debug, clap::Parser)]
#[command(bin_name = "cargo bench --bench replicas --")]
struct Args {
    #[command(flatten)]
    mode: BenchMode,
}

struct Plan {
    smoke: bool,
    connections: usize,
    rounds: usize,
    round_window: Duration,
    warmup: Duration,
    /// Write-then-read rounds of the propagation measurement.
    lag_rounds: usize,
}

impl Plan {
    fn new(mode: &BenchMode) -> Plan {
        if mode.smoke() {
            return Plan {
                smoke: true,
                connections: 4,
                rounds: 2,
                round_window: Duration::from_millis(300),
                warmup: Duration::from_millis(100),
                lag_rounds: 40,
            };
        }
        Plan {
            smoke: false,
            connections: 16,
            rounds: 6,
            round_window: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            lag_rounds: 500,
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

/// A contender of closed-loop cached calls on `target`: `connections` sessions, the first
/// call filling the cache (when it is not filled yet); probed for the CPU of `bridges` (key
/// `bridge`), of the other `processes` named, of the load generator's thread and of the
/// machine.
async fn contender(
    connections: usize,
    target: Target,
    bridges: &[&Bridge],
    processes: &[(&'static str, &str, Vec<u32>)],
) -> Result<Contender> {
    let target = Arc::new(target);
    let first = bridges.first().map_or(0, |bridge| bridge.pid());
    let mut contender = Contender::cached(first, (0..connections).map(|_| target.clone())).await?;
    let pids = bridges.iter().map(|bridge| bridge.pid()).collect();
    let label = if bridges.len() == 1 {
        "bridge".to_owned()
    } else {
        format!("{} bridges", bridges.len())
    };
    contender.probes = vec![Probe::new("bridge", label, CpuProbe::Processes(pids))];
    for (key, label, pids) in processes {
        contender
            .probes
            .push(Probe::new(key, *label, CpuProbe::Processes(pids.clone())));
    }
    contender.probes.push(Probe::new(
        "client",
        "load generator",
        CpuProbe::CurrentThread,
    ));
    contender
        .probes
        .push(Probe::new("machine", "whole machine", CpuProbe::Machine));
    Ok(contender)
}

/// The sum of a metric over bridges.
async fn total(bridges: &[&Bridge], name: &str, labels: &[&str]) -> Result<f64> {
    let mut sum = 0.0;
    for bridge in bridges {
        sum += metric(bridge, name, labels).await?;
    }
    Ok(sum)
}

/// Cache hits and misses (`mcp_bridge_cache_requests_total`) summed over bridges.
async fn hits_and_misses(bridges: &[&Bridge]) -> Result<(f64, f64)> {
    let name = "mcp_bridge_cache_requests_total";
    Ok((
        total(bridges, name, &["result=\"hit\""]).await?,
        total(bridges, name, &["result=\"miss\""]).await?,
    ))
}

/// Fails unless the bridges answered almost every call from their cache.
async fn ensure_hits(name: &str, bridges: &[&Bridge]) -> Result<()> {
    ensure_hit_share(name, bridges, 0.99).await.map(|_| ())
}

/// Fails unless the bridges' share of hits among hits and misses is above `least`;
/// returns the share.
async fn ensure_hit_share(name: &str, bridges: &[&Bridge], least: f64) -> Result<f64> {
    let (hits, misses) = hits_and_misses(bridges).await?;
    let share = hits / (hits + misses).max(1.0);
    if share <= least {
        // What the shared tier went through, to tell why.
        let mut seen = Vec::new();
        for bridge in bridges {
            let (_, body) = bridge.get("/metrics").await?;
            let text = String::from_utf8_lossy(&body).into_owned();
            seen.extend(
                text.lines()
                    .filter(|line| {
                        !line.starts_with('#')
                            && (line.contains("shared_l1_flushes")
                                || line.contains("shared_tier_transitions")
                                || line.contains("shared_errors")
                                || line.contains("cache_requests_total"))
                    })
                    .map(str::to_owned),
            );
        }
        anyhow::bail!(
            "the {name} bridges missed: {hits} hits, {misses} misses; {}",
            seen.join("; ")
        );
    }
    Ok(share)
}

/// The cores each probe kept busy in a report, by probe key.
fn cores_json(report: &LoadReport) -> Value {
    report
        .cpu
        .iter()
        .map(|(probe, cpu)| {
            let cores = cpu.map(|cpu| round2(report.cores(cpu)));
            (probe.key.to_owned(), json!(cores))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn cores_text(report: &LoadReport) -> String {
    report
        .cpu
        .iter()
        .map(|(probe, cpu)| match cpu {
            Some(cpu) => format!("{} {:.2}", probe.label, report.cores(*cpu)),
            None => format!("{} ?", probe.label),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row of the table: name, calls/s, ratio to the baseline, p50 and p99 latency.
fn row(name: &str, report: &LoadReport, baseline: f64) -> String {
    let rate = report.calls_per_second();
    format!(
        "{name:<48} {rate:>9.0} {ratio:>7.2} {p50:>9.0} {p99:>9.0}",
        ratio = rate / baseline.max(1.0),
        p50 = report.latency.p50,
        p99 = report.latency.p99,
    )
}

fn comparison(report: &LoadReport, baseline: f64) -> Value {
    let mut value = report.comparison_json();
    value["ratio_to_baseline"] = json!(round2(report.calls_per_second() / baseline.max(1.0)));
    value["cores_used"] = cores_json(report);
    value
}

async fn run(plan: &Plan) -> Result<()> {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mode = if plan.smoke { "smoke" } else { "full" };
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    eprintln!("bench: replicas ({mode} run, {profile} build, {cores} cores)");
    let redis = RedisServer::start(RedisOptions::default()).await?;
    let redis_url = redis.url();
    let state = tempfile::tempdir()?;
    let state_file = state.path().join("demo-state.json");
    let redis_pids = vec![redis.pid()];

    // Part 1: one bridge per way of answering a cached call, taking turns.
    let single = setup::start(&state_file, &Role::SingleNode).await?;
    let replica = |consistency, key_prefix| Role::Replica {
        redis_url: &redis_url,
        consistency,
        key_prefix,
    };
    let bounded = setup::start(&state_file, &replica("bounded", "bench-bounded:")).await?;
    let strict = setup::start(&state_file, &replica("strict", "bench-strict:")).await?;
    let no_subscribe = setup::no_subscribe_url(&redis).await?;
    let second_level = setup::start(
        &state_file,
        &Role::Replica {
            redis_url: &no_subscribe,
            consistency: "bounded",
            key_prefix: "bench-second-level:",
        },
    )
    .await?;
    setup::wait_past_grace(&[&bounded, &strict, &second_level]).await?;
    // Each level twice: at the plan's connections (throughput), then at one connection
    // (each call's own latency: no concurrent lookup of the key shares a second-level read).
    // The single node is measured again last in each round, a control: how far apart two
    // measurements of the same bridge land tells the noise of the machine and the order.
    let mut passes = Vec::new();
    for connections in [plan.connections, 1] {
        let mut contenders = Vec::new();
        for bridge in [&single, &bounded, &strict, &second_level, &single] {
            let target = bridge.target(ENDPOINT);
            let with_redis = [("redis", "redis-server", redis_pids.clone())];
            contenders.push(contender(connections, target, &[bridge], &with_redis).await?);
        }
        let reports =
            load::taking_turns(contenders, plan.rounds, plan.warmup, plan.round_window).await?;
        for report in &reports {
            ensure!(report.ok > 0, "a contender answered no call");
        }
        passes.push(reports);
    }
    let sequential = passes.pop().unwrap_or_default();
    let levels = passes.pop().unwrap_or_default();
    ensure_hits("single-node", &[&single]).await?;
    ensure_hits("bounded", &[&bounded]).await?;
    ensure_hits("strict", &[&strict]).await?;
    // Strict mode checked every first-level hit against Redis.
    let validated = metric(
        &strict,
        "mcp_bridge_shared_validations_total",
        &["result=\"valid\""],
    )
    .await?;
    let (strict_hits, _) = hits_and_misses(&[&strict]).await?;
    ensure!(
        validated >= strict_hits,
        "strict mode validated {validated} of {strict_hits} hits"
    );
    // The bounded replica answered from its first level: the second level was read only
    // for the first fill (its shared and private keys).
    let bounded_second_level =
        total(&[&bounded], "mcp_bridge_shared_l2_lookups_total", &[]).await?;
    ensure!(
        bounded_second_level <= 4.0,
        "the bounded replica read the second level {bounded_second_level} times"
    );
    // The second-level replica never subscribed, so it never trusted its first level: every
    // hit it counted came from Redis. Concurrent lookups of the one key share a read (the
    // others wait for it and count as misses), so its hits are fewer than its calls.
    let status = setup::tier_status(&second_level).await?;
    ensure!(
        status["subscribed"] == false && status["first_level_trusted"] == false,
        "the second-level replica heard the broadcast: {status}"
    );
    let (l2_hits_counted, _) = hits_and_misses(&[&second_level]).await?;
    let l2_coalesced = metric(
        &second_level,
        "mcp_bridge_cache_requests_total",
        &["result=\"coalesced\""],
    )
    .await?;
    let l2_reads = metric(
        &second_level,
        "mcp_bridge_shared_l2_lookups_total",
        &["result=\"hit\""],
    )
    .await?;
    ensure!(
        l2_reads >= l2_hits_counted && l2_reads > 0.0,
        "the second-level replica counted {l2_hits_counted} hits for {l2_reads} second-level hits"
    );
    // Only the first call reached the backend (the others are counted with outcome "hit").
    let backend_calls = metric(
        &second_level,
        "mcp_bridge_calls_total",
        &["method=\"tools/call\"", "outcome=\"ok\""],
    )
    .await?;
    ensure!(
        backend_calls <= 2.0,
        "the second-level replica sent {backend_calls} calls to its backend"
    );
    drop((single, bounded, strict, second_level));

    // Part 2: three bounded replicas behind nginx against one behind nginx.
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(setup::start(&state_file, &replica("bounded", "bench-scale:")).await?);
    }
    let all: Vec<&Bridge> = replicas.iter().collect();
    setup::wait_past_grace(&all).await?;
    let nginx_one = Nginx::start(&setup::addresses(all[..1].iter().copied())).await?;
    let nginx_three = Nginx::start(&setup::addresses(all.iter().copied())).await?;
    let mut contenders = Vec::new();
    for (nginx, bridges) in [(&nginx_one, &all[..1]), (&nginx_three, &all[..])] {
        let target = Target::local(nginx.address(), ENDPOINT);
        let processes = [
            ("nginx", "nginx", setup::with_children(nginx.pid())),
            ("redis", "redis-server", redis_pids.clone()),
        ];
        contenders.push(contender(plan.connections, target, bridges, &processes).await?);
    }
    let scale = load::taking_turns(contenders, plan.rounds, plan.warmup, plan.round_window).await?;
    for report in &scale {
        ensure!(report.ok > 0, "a balanced contender answered no call");
    }
    // Replicas that stop trusting their first level (the tier judged down, or the broadcast
    // judged lost, under a saturated machine) drop it and read the second level again, with
    // the concurrent lookups of the key counted as misses while they wait: the share of
    // hits, the flushes and the tier's transitions are reported, and only a collapse fails.
    let balanced_hit_share = ensure_hit_share("balanced", &all, 0.9).await?;
    let balanced_flushes = total(&all, "mcp_bridge_shared_l1_flushes_total", &[]).await?;
    let balanced_downs = total(
        &all,
        "mcp_bridge_shared_tier_transitions_total",
        &["to=\"down\""],
    )
    .await?;
    // Round-robin reached every replica.
    let served = nginx_three.served_by()?;
    ensure!(
        served.len() == 3,
        "nginx sent the calls to {} replicas: {served:?}",
        served.len()
    );

    // Part 3: invalidation propagation from replica 1 to replica 2.
    let lag = lag::measure(&replicas[1], &replicas[2], plan.lag_rounds).await?;
    ensure!(
        lag.samples >= plan.lag_rounds as u64,
        "replica B kept {} lag samples for {} writes",
        lag.samples,
        plan.lag_rounds
    );

    let baseline = levels[0].calls_per_second();
    let sequential_baseline = sequential[0].calls_per_second();
    let one_behind_nginx = scale[0].calls_per_second();
    let scale_ratio = scale[1].calls_per_second() / one_behind_nginx.max(1.0);
    let header = format!(
        "{:<48} {:>9} {:>7} {:>9} {:>9}",
        "cached tools/call", "calls/s", "ratio", "p50 µs", "p99 µs"
    );
    let names = [
        "single node, no shared tier (baseline)",
        "bounded replica, first-level hit",
        "strict replica, first-level hit + validation",
        "replica, second-level (Redis) hit",
        "single node again, last in each round (control)",
    ];
    let mut table = vec![header.clone()];
    for (name, report) in names.iter().zip(&levels) {
        table.push(row(name, report, baseline));
    }
    let mut sequential_table = vec![header.clone()];
    for (name, report) in names.iter().zip(&sequential) {
        sequential_table.push(row(name, report, sequential_baseline));
    }
    let budget = format!(
        "CPU budget: {cores} cores for everything: the load generator (one thread), nginx (one \
         worker), the measured bridges (1 or 3, each a tokio runtime with a worker per core), \
         redis-server (idle on first-level hits in bounded mode), and idle processes (each \
         bridge's two demo backends, the other nginx), besides whatever else the machine runs \
         (the whole-machine figure)"
    );
    println!(
        "mcp-bridge replicas bench ({mode} run, {profile} build, {cores} cores)\n\n\
         1. cached calls at {conn} connections, taking turns ({rounds} rounds of {window:?})\n{table}\n\
         the same at one connection\n{sequential_table}\n\
         second-level replica over the run (warm-ups too): {l2_reads:.0} second-level hits, {l2_coalesced:.0} calls coalesced onto one of them, {backend_calls:.0} backend call(s)\n\n\
         2. behind nginx (round-robin), {conn} connections\n{header}\n{one}\n{three}\n\
         3 replicas / 1: {scale_ratio:.2}\n{budget}\n\
         the replicas' hit share {balanced_hit_share:.4}, first-level flushes {balanced_flushes:.0}, tier down {balanced_downs:.0} time(s)\n\
         cores used, 1 replica: {cores_one}\n\
         cores used, 3 replicas: {cores_three}\n\n\
         3. bounded mode, {rounds_lag} writes through replica A, read at once through B: {stale} stale reads\n\
         propagation lag on B: p50 {p50} µs, p99 {p99} µs ({samples} samples; histogram mean {mean:.0} µs over {count:.0})\n",
        conn = plan.connections,
        rounds = plan.rounds,
        window = plan.round_window,
        table = table.join("\n"),
        sequential_table = sequential_table.join("\n"),
        one = row(
            "1 replica behind nginx (baseline)",
            &scale[0],
            one_behind_nginx
        ),
        three = row("3 replicas behind nginx", &scale[1], one_behind_nginx),
        cores_one = cores_text(&scale[0]),
        cores_three = cores_text(&scale[1]),
        rounds_lag = lag.rounds,
        stale = lag.stale_reads,
        p50 = lag.p50_us,
        p99 = lag.p99_us,
        samples = lag.samples,
        mean = lag.histogram_mean_us,
        count = lag.histogram_count,
    );
    let document = json!({
        "mode": mode,
        "profile": profile,
        "cores": cores,
        "connections": plan.connections,
        "rounds": plan.rounds,
        "round_window_s": plan.round_window.as_secs_f64(),
        "cached_call": {
            "single_node": comparison(&levels[0], baseline),
            "bounded_l1_hit": comparison(&levels[1], baseline),
            "strict_l1_hit_validated": comparison(&levels[2], baseline),
            "l2_hit": comparison(&levels[3], baseline),
            "single_node_control": comparison(&levels[4], baseline),
            "one_connection": {
                "single_node": comparison(&sequential[0], sequential_baseline),
                "bounded_l1_hit": comparison(&sequential[1], sequential_baseline),
                "strict_l1_hit_validated": comparison(&sequential[2], sequential_baseline),
                "l2_hit": comparison(&sequential[3], sequential_baseline),
                "single_node_control": comparison(&sequential[4], sequential_baseline),
            },
            "l2_replica": {
                "second_level_hits": l2_reads,
                "coalesced": l2_coalesced,
                "backend_calls": backend_calls,
            },
            "strict_validations": validated,
        },
        "behind_nginx": {
            "one_replica": comparison(&scale[0], one_behind_nginx),
            "three_replicas": comparison(&scale[1], one_behind_nginx),
            "ratio": round2(scale_ratio),
            "hit_share": balanced_hit_share,
            "first_level_flushes": balanced_flushes,
            "tier_down_transitions": balanced_downs,
            "served_by": served,
            "cpu_budget": budget,
        },
        "propagation_bounded": lag.to_json(),
    });
    let path = bench::results_path(Path::new(BRIDGE_EXE), "replicas.json");
    bench::write_json(&path, &document)?;
    println!("JSON report: {}", path.display());
    drop((nginx_one, nginx_three, replicas, redis, state));
    Ok(())
}
