//! The policy lab benchmark, measured side by side in one run:
//!
//! - **Replay speed**: trace events per second that `bench policies` replays on one
//!   thread, for the built-in policy and for each example WASM plugin (`annotations` is
//!   the built-in policy re-expressed, so both do the same work), against the baseline of
//!   walking the same trace with no policy and no cache (the no-cache bound). Every
//!   policy here is pure, so the replay reuses its decisions per distinct call; each is
//!   also replayed asked on every event (wrapped as a stateful policy, the path a plugin
//!   that does not declare itself pure takes), and both must measure the same.
//! - **Recording overhead**: cached `tools/call` throughput of two identical bridges at
//!   32 connections, one of them recording every call (`serve --record`), taking turns
//!   round by round; the ratio is what recording costs the hot path.
//!
//! Run it with `cargo bench --bench lab`; without `--bench` (as under `cargo test
//! --benches`) it runs a short smoke. It prints a table and writes
//! `target/bench-results/lab.json`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use clap::Parser as _;
use serde_json::{Value, json};

use mcp_bridge::config::PluginsConfig;
use mcp_bridge::lab::load::{self, LoadArgs};
use mcp_bridge::lab::loaded::Trace;
use mcp_bridge::lab::replay::sim::SimLimits;
use mcp_bridge::lab::replay::{self, Prepared, Setting, bounds};
use mcp_bridge::lab::results::ReplayMetrics;
use mcp_bridge::lab::workload::Workload;
use mcp_bridge::metrics::Registry;
use mcp_bridge::plugin::PluginMetrics;
use mcp_bridge::plugin::{Limits, PluginEngine, PluginVersion, WasmPolicy};
use mcp_bridge::policy::{
    Call, Decision, InvalidationAnswer, Outcome, Policy, PolicyChain, TtlAnswer,
};
use mcp_bridge_test_support::bench::{self, BenchMode};
use mcp_bridge_test_support::repo::toml_command;
use mcp_bridge_test_support::{Bridge, poll_until};

const BRIDGE_EXE: &str = env!("CARGO_BIN_EXE_mcp-bridge");

/// How much a run does.
struct Plan {
    smoke: bool,
    replay_events: u64,
    replay_repeats: usize,
    connections: usize,
    rounds: usize,
    round_window: Duration,
}

/// The policy lab benchmark: replay speed and what recording costs.
#[derive(Debug, clap::Parser)]
#[command(bin_name = "cargo bench --bench lab --")]
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
                replay_events: 20_000,
                replay_repeats: 1,
                connections: 8,
                rounds: 1,
                round_window: Duration::from_millis(500),
            };
        }
        Plan {
            smoke,
            replay_events: 500_000,
            replay_repeats: 3,
            connections: 32,
            rounds: 4,
            round_window: Duration::from_secs(3),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.mode.list {
        return ExitCode::SUCCESS;
    }
    let plan = Plan::new(&args.mode);
    match run(&plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lab bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(plan: &Plan) -> Result<()> {
    let replay = replay_speed(plan)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let recording = runtime.block_on(recording_overhead(plan))?;
    let report = json!({
        "smoke": plan.smoke,
        "replay": replay,
        "recording": recording,
    });
    let path = bench::results_path(Path::new(BRIDGE_EXE), "lab.json");
    bench::write_json(&path, &report)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Replays the seed-tasks preset on one thread per policy, best of a few repeats.
fn replay_speed(plan: &Plan) -> Result<Value> {
    let mut workload = Workload::resolve("seed-tasks")?;
    workload.calls = plan.replay_events;
    let records = workload
        .calls()
        .enumerate()
        .map(|(line, call)| (line + 1, call.to_record()))
        .collect();
    let trace = Trace::from_records("seed-tasks", records, |line, message| {
        mcp_bridge::lab::LabError::Usage(format!("{line}: {message}"))
    })?;
    let prepared = Prepared::new(&trace, Duration::from_micros(100));
    let config = mcp_bridge::config::embedded_default()?;
    let builtin = Arc::new(config.builtin_policy());
    let engine = PluginEngine::new(None)?;
    let metrics = Arc::new(PluginMetrics::register(&Registry::new()));
    let mut policies: Vec<(String, Option<Arc<dyn Policy>>)> = vec![("builtin".to_owned(), None)];
    for (name, path) in [
        ("annotations", plugin_artifacts::ANNOTATIONS),
        ("seed-ttl-table", plugin_artifacts::SEED_TTL_TABLE),
        ("crud-invalidation", plugin_artifacts::CRUD_INVALIDATION),
    ] {
        let plugin = example_plugin(&engine, &metrics, name, path)?;
        ensure!(
            plugin.is_pure(),
            "the example plugin {name} does not declare itself pure"
        );
        policies.push((format!("{name} (wasm)"), Some(plugin)));
    }
    let setting = Setting {
        limits: SimLimits::unbounded(),
        ttl_scale: 1.0,
    };
    // A cache holding a twentieth of the working set's bytes: every fill past the first
    // few asks TinyLFU's admission, the simulated cache's costliest path.
    let working_set_bytes: u64 = {
        let mut largest = vec![0u64; trace.keys as usize];
        for event in &trace.events {
            let slot = &mut largest[event.shared_key as usize];
            *slot = (*slot).max(event.bytes);
        }
        largest.iter().sum()
    };
    let small = Setting {
        limits: SimLimits::of(&config.cache).with_max_bytes(working_set_bytes / 20),
        ttl_scale: 1.0,
    };
    let events = trace.events.len() as f64;
    let best = |mut measure: Box<dyn FnMut() -> Duration + '_>| -> f64 {
        (0..plan.replay_repeats)
            .map(|_| events / measure().as_secs_f64().max(1e-9))
            .fold(0.0, f64::max)
    };
    let baseline = best(Box::new(|| bounds::no_cache(&prepared).1));
    println!(
        "replay speed, one thread, seed-tasks ({} events):",
        trace.events.len()
    );
    println!(
        "  {:<46} {:>12}  {:>8}  {:>12}  {:>8}",
        "", "events/s", "ratio", "policy calls", "reused"
    );
    println!(
        "  {:<46} {:>12.0}  {:>8}",
        "baseline: trace walk, no policy", baseline, "1"
    );
    let mut rows =
        vec![json!({"name": "baseline: trace walk, no policy", "events_per_second": baseline})];
    for (name, plugin) in &policies {
        let plugins: Vec<Arc<dyn Policy>> = plugin.iter().cloned().collect();
        let asked: Vec<Arc<dyn Policy>> = plugin
            .iter()
            .map(|plugin| Arc::new(AskedEveryTime(plugin.clone())) as Arc<dyn Policy>)
            .collect();
        let pure = PolicyChain::new(plugins, builtin.clone());
        // The built-in policy is pure too, so the built-in row's stateful variant puts a
        // policy before it that abstains and declares no purity.
        let stateful = match asked.is_empty() {
            true => PolicyChain::new(
                vec![Arc::new(AskedEveryTime(Arc::new(Abstains)))],
                builtin.clone(),
            ),
            false => PolicyChain::new(asked, builtin.clone()),
        };
        let mut measured: Vec<ReplayMetrics> = Vec::new();
        for (variant, chain) in [
            ("asked every event", &stateful),
            ("pure: decisions reused", &pure),
        ] {
            let mut last = None;
            let speed = best(Box::new(|| {
                let (metrics, took) = replay::replay(&prepared, chain, setting, &AtomicU64::new(0));
                last = Some(metrics);
                took
            }));
            let metrics = last.context("no replay ran")?;
            let label = format!("{name}, {variant}");
            println!(
                "  {:<46} {:>12.0}  {:>8.4}  {:>12}  {:>8}",
                label,
                speed,
                speed / baseline,
                metrics.policy_calls,
                metrics.decisions_reused
            );
            rows.push(json!({
                "name": label,
                "events_per_second": speed,
                "ratio_to_baseline": speed / baseline,
                "policy_calls": metrics.policy_calls,
                "decisions_reused": metrics.decisions_reused,
                "decision_ns": metrics.decision_ns,
            }));
            measured.push(metrics);
        }
        if let [asked, reused] = measured.as_slice() {
            let outcome =
                |m: &ReplayMetrics| (m.hits, m.misses, m.bypasses, m.stale_hits, m.invalidated);
            ensure!(
                outcome(asked) == outcome(reused),
                "{name}: reusing decisions changed the replay: {:?} asked, {:?} reused",
                outcome(asked),
                outcome(reused)
            );
        }
    }
    // The built-in policy with a small cache: most fills go through TinyLFU's admission.
    let small_chain = PolicyChain::new(Vec::new(), builtin.clone());
    let name = "builtin, cache 5% of the working set";
    let speed = best(Box::new(|| {
        replay::replay(&prepared, &small_chain, small, &AtomicU64::new(0)).1
    }));
    println!("  {:<46} {:>12.0}  {:>8.4}", name, speed, speed / baseline);
    rows.push(
        json!({"name": name, "events_per_second": speed, "ratio_to_baseline": speed / baseline}),
    );
    println!(
        "  (targets: >= 1,000,000 events/s built-in, >= 300,000 events/s per WASM policy asked every event, >= 2,000,000 events/s per pure WASM policy)\n"
    );
    Ok(json!({"events": trace.events.len(), "rows": rows}))
}

/// A policy replayed as if it were stateful: it answers as the policy it wraps but does
/// not declare purity, so a replay asks it on every event.
struct AskedEveryTime(Arc<dyn Policy>);

impl Policy for AskedEveryTime {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn decide(&self, call: &Call<'_>) -> Decision {
        self.0.decide(call)
    }

    fn ttl(&self, server: &str, tool: &str) -> TtlAnswer {
        self.0.ttl(server, tool)
    }

    fn invalidations(&self, call: &Call<'_>, outcome: &Outcome) -> InvalidationAnswer {
        self.0.invalidations(call, outcome)
    }
}

/// A policy with no opinion, so the built-in policy after it decides everything.
struct Abstains;

impl Policy for Abstains {
    fn name(&self) -> &str {
        "abstains"
    }

    fn decide(&self, _call: &Call<'_>) -> Decision {
        Decision::Abstain
    }
}

fn example_plugin(
    engine: &PluginEngine,
    metrics: &Arc<PluginMetrics>,
    name: &str,
    path: &str,
) -> Result<Arc<dyn Policy>> {
    let bytes = std::fs::read(path)?;
    let limits = Limits::from_config(&PluginsConfig::default());
    let version = PluginVersion::load(engine, &format!("{name}.wasm"), &bytes, limits)?;
    let policy = WasmPolicy::start(
        name,
        Vec::new(),
        "{}".to_owned(),
        Arc::new(version),
        2,
        metrics,
    )?;
    Ok(Arc::new(policy))
}

/// A bridge config with the demo server and a cache that keeps every result for the run.
fn cached_config() -> String {
    let exe = toml_command(BRIDGE_EXE);
    format!(
        "[servers.demo]\ncommand = {exe}\nargs = [\"demo-server\"]\nmin_connections = 2\nmax_connections = 2\n\n[cache]\ndefault_ttl = \"10m\"\n"
    )
}

/// A workload of one cached read, so every measured call is a hit.
const HITS_WORKLOAD: &str = r#"
name = "hits"
server = "demo"
calls = 1000
rate = 1000.0
[[read]]
tool = "get_today_metrics"
weight = 1
arguments = {}
latency = "1ms"
"#;

async fn recording_overhead(plan: &Plan) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let workload = dir.path().join("hits.toml");
    std::fs::write(&workload, HITS_WORKLOAD)?;
    let trace = dir.path().join("trace.jsonl");
    let trace_arg = trace.display().to_string();
    let exe = Path::new(BRIDGE_EXE);
    let plain = Bridge::start(exe, &cached_config(), &[])?;
    let recording = Bridge::start(exe, &cached_config(), &["--record", &trace_arg])?;
    plain.wait_ready().await?;
    recording.wait_ready().await?;
    let mut totals = [(0u64, 0.0f64, Vec::new()), (0u64, 0.0f64, Vec::new())];
    for _ in 0..plan.rounds {
        for (index, bridge) in [&plain, &recording].into_iter().enumerate() {
            let report = drive(plan, bridge, &workload).await?;
            ensure!(
                report.failed == 0,
                "failed calls: {:?}",
                report.first_errors
            );
            totals[index].0 += report.ok;
            totals[index].1 += report.window_s;
            totals[index].2.push(report.latency.p99_us);
        }
    }
    let throughput = |index: usize| totals[index].0 as f64 / totals[index].1.max(1e-9);
    let (without, with) = (throughput(0), throughput(1));
    // The recorder's own count: a long run rotates the trace into FILE.1, FILE.2, ...
    let status = recorder_status_once_written(&recording).await?;
    let recorded = status["recorded"].as_u64().unwrap_or(0);
    println!(
        "recording overhead, cached tools/call, {} connections, {} rounds of {:?}:",
        plan.connections, plan.rounds, plan.round_window
    );
    println!("  {:<28} {:>12}", "", "calls/s");
    println!("  {:<28} {:>12.0}", "bridge (baseline)", without);
    println!("  {:<28} {:>12.0}", "bridge with --record", with);
    println!(
        "  ratio (recording / baseline) {:.3}; {recorded} lines recorded, {} dropped",
        with / without,
        status["dropped"]
    );
    ensure!(recorded > 0, "the recording bridge wrote no trace");
    Ok(json!({
        "connections": plan.connections,
        "rounds": plan.rounds,
        "baseline_calls_per_second": without,
        "recording_calls_per_second": with,
        "ratio": with / without,
        "lines_recorded": recorded,
        "recorder": status,
        "p99_us": {"baseline": totals[0].2, "recording": totals[1].2},
    }))
}

async fn drive(plan: &Plan, bridge: &Bridge, workload: &Path) -> Result<load::LoadReport> {
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: LoadArgs,
    }
    let url = format!("http://{}/mcp/demo", bridge.address);
    let connections = plan.connections.to_string();
    let window = format!("{}ms", plan.round_window.as_millis());
    let wrapper = Wrapper::try_parse_from([
        "load",
        "--url",
        &url,
        "--workload",
        &workload.display().to_string(),
        "--connections",
        &connections,
        "--duration",
        &window,
        "--warmup",
        "200ms",
    ])?;
    let plan = load::plan_from_args(wrapper.args)?;
    Ok(load::drive(plan).await?)
}

/// `GET /admin/record` once the recorder has written a record, or the last answer after
/// 15 s. Its writer thread drains the queue in batches, after the calls were answered,
/// so a read right after the last round can come before the batch that holds them.
async fn recorder_status_once_written(bridge: &Bridge) -> Result<Value> {
    poll_until(
        Duration::from_secs(15),
        async || admin_get(bridge, "/admin/record").await,
        // An error ends the wait too: it is returned as it is.
        |status| {
            status
                .as_ref()
                .map_or(true, |status| status["recorded"].as_u64() > Some(0))
        },
    )
    .await
}

/// A GET of an admin endpoint that must answer 200 with JSON.
async fn admin_get(bridge: &Bridge, path: &str) -> Result<Value> {
    let (status, body) = bridge.get(path).await?;
    ensure!(status == 200, "{path} answered HTTP {status}");
    serde_json::from_slice(&body).with_context(|| format!("{path} is not JSON"))
}
