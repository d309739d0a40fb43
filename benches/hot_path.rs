//! Micro-benchmarks of the bridge's hot path: the work the cache adds to every cacheable call
//! and the work every forwarded call does on its way to a stdio server and back, each next to a
//! baseline that does the least comparable work, in the same criterion group. Every benchmark
//! is named `group/what`, and the baselines `group/baseline: what`:
//!
//! - `cache_key`: canonical JSON of the arguments plus the key around it
//!   (`canonical_arguments` + `cache_key`), against `serde_json::to_string` of the same
//!   arguments;
//! - `policy_decide`: the built-in policy's decision for a read-only tool with a TTL-table row
//!   (`PolicyChain::decide`), the same decision made by the `annotations` example plugin in a
//!   warm WebAssembly instance (alone, and in a chain where it also answers the TTL), against
//!   a closure that only reads the annotation;
//! - `cache_lookup`: `ResponseCache::get` hitting a warm key in a cache of a thousand entries,
//!   and the same with the bookkeeping the router does on a hit, against `HashMap::get`;
//! - `id_remap` (in `hot_path/id_remap.rs`): the swap of the client's JSON-RPC id (and
//!   progress token) for the process's own and back, against a bare `Value` id replace and a
//!   `HashMap` insert and remove of a pending id;
//! - `authenticate` (in `hot_path/auth.rs`): a bearer JWT found in the token cache and an API
//!   key, against the anonymous caller of a bridge with no credential configured;
//! - `framing` (in `hot_path/framing.rs`): encoding a request as a line for a child's stdin and
//!   reading a ~1.5 KB response line back into a `Value`, against `serde_json::to_vec` and
//!   `serde_json::from_slice` of the same value and bytes;
//! - `spans` (in `hot_path/spans.rs`): a call's OpenTelemetry spans with tracing off (no
//!   `[telemetry]`), against doing nothing.
//!
//! Run it with `cargo bench --bench hot_path` (criterion's options follow `--`, e.g.
//! `-- cache_lookup` to run one group); `cargo test --bench hot_path` runs every benchmark once
//! as a test. `benches/README.md` says how to read the numbers.

// The groups that need no cache live in modules of their own, next to this file.
#[path = "hot_path/auth.rs"]
mod auth;
#[path = "hot_path/framing.rs"]
mod framing;
#[path = "hot_path/id_remap.rs"]
mod id_remap;
#[path = "auth/issuer.rs"]
mod issuer;
#[path = "hot_path/spans.rs"]
mod spans;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

use mcp_bridge::cache::CacheMetrics;
use mcp_bridge::cache::{Entry, ResponseCache, Served, cache_key, canonical_arguments};
use mcp_bridge::config::{BridgeConfig, PluginsConfig, load_str};
use mcp_bridge::metrics::Registry;
use mcp_bridge::plugin::PluginMetrics;
use mcp_bridge::plugin::{Limits, PluginEngine, PluginVersion, WasmPolicy};
use mcp_bridge::policy::{Annotations, Call, CallKind, Decision, Policy, PolicyChain, ServerHints};

/// A config like the example's: the demo server and the seed's TTL table, so the decision
/// looks the tool up in a table of realistic size. The command is never started.
const CONFIG: &str = r#"
[servers.demo]
command = "mcp-bridge"
args = ["demo-server"]

[cache]
default_ttl = "10m"

[cache.ttl."*"]
list_tools = "1h"
get_tool_schema = "1h"

[cache.ttl.demo]
get_clients = "5m"
get_habits = "5m"
get_tasks = "60s"
get_today_metrics = "60s"
create_task = 0
update_task = 0
complete_task = 0
"#;

const SERVER: &str = "demo";
const METHOD: &str = "tools/call";
const TOOL: &str = "get_today_metrics";

/// The same settings as the annotations plugin's config.
const PLUGIN_CONFIG: &str = r#"{"default_ttl": "10m", "ttl": {
  "*": {"list_tools": "1h", "get_tool_schema": "1h"},
  "demo": {"get_clients": "5m", "get_habits": "5m", "get_tasks": "60s", "get_today_metrics": "60s",
           "create_task": 0, "update_task": 0, "complete_task": 0}}}"#;

/// The annotations example plugin, built from `plugins/` by the plugin artifacts crate,
/// bound to every server with [`PLUGIN_CONFIG`].
fn annotations_plugin() -> Arc<WasmPolicy> {
    let bytes = std::fs::read(plugin_artifacts::ANNOTATIONS)
        .unwrap_or_else(|error| panic!("read annotations.wasm: {error}"));
    let engine = PluginEngine::new(None).unwrap_or_else(|error| panic!("{error}"));
    let limits = Limits::from_config(&PluginsConfig::default());
    let version = PluginVersion::load(&engine, "annotations.wasm", &bytes, limits)
        .unwrap_or_else(|error| panic!("{error}"));
    let policy = WasmPolicy::start(
        "annotations",
        Vec::new(),
        PLUGIN_CONFIG.to_owned(),
        Arc::new(version),
        4,
        &Arc::new(PluginMetrics::register(&Registry::new())),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    // The engine's epoch ticker must outlive the bench; leaking one engine is fine here.
    std::mem::forget(engine);
    Arc::new(policy)
}

/// How many other entries the cache and the map hold besides the one looked up.
const OTHER_ENTRIES: usize = 1_000;

fn config() -> BridgeConfig {
    match load_str(CONFIG, "hot_path.toml") {
        Ok(config) => config,
        Err(error) => panic!("the bench's config does not load: {error}"),
    }
}

/// Arguments as a client might send them to a read tool, keys deliberately out of order.
fn typical_arguments() -> Value {
    json!({
        "status": "open",
        "client_id": "c-0042",
        "limit": 25,
        "tags": ["billing", "urgent"],
        "due_before": "2026-12-01",
        "include_completed": false,
        "page": { "size": 25.0, "cursor": "eyJvZmZzZXQiOjUwfQ" },
    })
}

/// A result of about the size of the demo server's `get_today_metrics` answer.
fn result() -> Value {
    json!({
        "content": [{
            "type": "text",
            "text": "{\"date\":\"2026-11-24\",\"tasks_open\":7,\"tasks_completed\":3,\"points\":13,\"habits_done\":2}",
        }],
        "isError": false,
    })
}

fn entry(result: &Arc<Value>) -> Entry {
    Entry {
        result: result.clone(),
        stored_at: Instant::now(),
        ttl: Some(Duration::from_secs(600)),
        stale_while_revalidate: None,
        stale_if_error: None,
        tags: vec![format!("server:{SERVER}"), format!("name:{SERVER}/{TOOL}")],
        private: false,
        size: u32::try_from(result.to_string().len()).unwrap_or(u32::MAX),
        backend_time: Duration::from_micros(50),
        stamp: None,
        filled_generation: None,
        ttl_source: None,
    }
}

fn key(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_key");
    for (name, arguments) in [("typical", typical_arguments()), ("empty", json!({}))] {
        group.bench_with_input(
            BenchmarkId::new("canonical_arguments+cache_key", name),
            &arguments,
            |b, arguments| {
                b.iter(|| {
                    let canonical = canonical_arguments(Some(black_box(arguments)), &[]);
                    cache_key(SERVER, METHOD, TOOL, "", &canonical)
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("baseline: serde_json::to_string", name),
            &arguments,
            |b, arguments| b.iter(|| serde_json::to_string(black_box(arguments))),
        );
    }
    group.finish();
}

fn policy(c: &mut Criterion) {
    let config = config();
    let chain = PolicyChain::new(Vec::new(), Arc::new(config.builtin_policy()));
    let call = Call {
        server: SERVER,
        method: METHOD,
        kind: CallKind::Tool,
        name: TOOL,
        canonical_arguments: "{}",
        annotations: Annotations {
            read_only: Some(true),
            ..Annotations::default()
        },
        hints: ServerHints::default(),
        principal: Some("3f2a9c1e-session"),
    };
    // The benchmark must measure the decision that caches, with the TTL-table row applied.
    match chain.decide(&call) {
        Decision::Cache(directive) if directive.ttl == Some(Duration::from_secs(60)) => {}
        other => panic!("the built-in policy decided {other:?} for {TOOL}"),
    }
    let default_ttl = config.cache.default_ttl;
    let trivial = |call: &Call<'_>| -> Option<Option<Duration>> {
        (call.annotations.read_only == Some(true)).then_some(default_ttl)
    };

    let plugin = annotations_plugin();
    let wasm_chain = PolicyChain::new(
        vec![plugin.clone() as Arc<dyn Policy>],
        Arc::new(config.builtin_policy()),
    );
    assert_eq!(
        wasm_chain.decide(&call),
        chain.decide(&call),
        "the annotations plugin must decide as the built-in policy does"
    );

    let mut group = c.benchmark_group("policy_decide");
    group.bench_function("PolicyChain::decide (builtin, TTL-table row)", |b| {
        b.iter(|| chain.decide(black_box(&call)));
    });
    group.bench_function(
        "WasmPolicy::decide (annotations plugin, warm instance)",
        |b| {
            b.iter(|| plugin.decide(black_box(&call)));
        },
    );
    group.bench_function(
        "PolicyChain::decide (annotations plugin: decide + TTL row)",
        |b| {
            b.iter(|| wasm_chain.decide(black_box(&call)));
        },
    );
    group.bench_function("baseline: closure reading readOnlyHint", |b| {
        b.iter(|| trivial(black_box(&call)));
    });
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let config = config();
    let cache = ResponseCache::new(
        &config.cache,
        Arc::new(CacheMetrics::register(&Registry::new())),
    );
    let result = Arc::new(result());
    let mut map: HashMap<Arc<str>, Arc<Entry>> = HashMap::new();
    let keys = (0..OTHER_ENTRIES)
        .map(|index| format!(r#"{{"client_id":"c-{index:04}"}}"#))
        .chain(std::iter::once("{}".to_owned()))
        .map(|arguments| Arc::<str>::from(cache_key(SERVER, METHOD, TOOL, "", &arguments)));
    for key in keys {
        let ticket = cache.begin_fill();
        assert!(
            cache.insert(key.clone(), entry(&result), &ticket),
            "the cache refused a fill"
        );
        map.insert(key, Arc::new(entry(&result)));
    }
    let key = cache_key(SERVER, METHOD, TOOL, "", "{}");
    assert!(
        cache.get(&key).is_some_and(|entry| entry.is_fresh()),
        "the warm key is not in the cache"
    );

    let mut group = c.benchmark_group("cache_lookup");
    group.bench_function("ResponseCache::get (hit)", |b| {
        b.iter(|| cache.get(black_box(&key)));
    });
    // What the router does with a hit before it builds the response: the freshness check and
    // the hit and time-saved counters (Prometheus included).
    group.bench_function("ResponseCache::get + is_fresh + record (hit)", |b| {
        b.iter(|| {
            let entry = cache.get(black_box(&key))?;
            if entry.is_fresh() {
                cache.record(Served::Hit);
                cache.record_saved(&entry);
            }
            Some(entry)
        });
    });
    group.bench_function("baseline: HashMap::get", |b| {
        b.iter(|| map.get(black_box(key.as_str())).cloned());
    });
    group.finish();
}

/// Shorter than criterion's defaults (3 s of warm-up and 5 s of measurement per benchmark), so
/// the whole file with its twenty-odd benchmarks runs in a few minutes; options given after
/// `--` still override these.
fn settings() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = hot_path;
    config = settings();
    targets = key, policy, lookup, id_remap::bench, framing::bench, auth::bench, spans::bench
}
criterion_main!(hot_path);
