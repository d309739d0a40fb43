use std::sync::Arc;

use super::*;
use mcp_bridge_config::Eviction;
use mcp_bridge_trace::{Access, RecordedAnnotations, RecordedHints, TraceRecord, hex64};

const CONFIG: &str = r#"
[servers.demo]
command = "demo"

[cache]
default_ttl = "10s"
"#;

fn chain() -> PolicyChain {
    let config =
        mcp_bridge_config::load_str(CONFIG, "test.toml").unwrap_or_else(|error| panic!("{error}"));
    PolicyChain::new(Vec::new(), Arc::new(config.builtin_policy()))
}

/// A call at `t_ms` reading (or writing) `name`, whose result is `truth`.
fn record(t_ms: u64, name: &str, write: bool, truth: u64, hit: bool) -> TraceRecord {
    TraceRecord {
        t_us: t_ms * 1000,
        server: "demo".into(),
        method: "tools/call".into(),
        name: name.into(),
        args: hex64(1),
        arguments: None,
        access: if write { Access::Write } else { Access::Read },
        annotations: RecordedAnnotations {
            read_only: Some(!write),
            ..RecordedAnnotations::default()
        },
        latency_us: 5000,
        bytes: 100,
        digest: hex64(truth),
        status: RecordedStatus::Ok,
        partition: String::new(),
        hit,
        hints: RecordedHints::default(),
    }
}

fn trace(records: Vec<TraceRecord>) -> Trace {
    let numbered = records
        .into_iter()
        .enumerate()
        .map(|(index, record)| (index + 1, record))
        .collect();
    Trace::from_records("test", numbered, |line, message| crate::LabError::Trace {
        path: "test".into(),
        line,
        message,
    })
    .unwrap_or_else(|error| panic!("{error}"))
}

/// A cache of `max_bytes` with no entry cap, admitting with TinyLFU as `serve` does by default.
fn bytes(max_bytes: u64) -> SimLimits {
    SimLimits {
        max_bytes,
        max_entries: u64::MAX,
        eviction: Eviction::TinyLfu,
    }
}

fn run_with(
    trace: &Trace,
    chain: &PolicyChain,
    limits: SimLimits,
    ttl_scale: f64,
) -> ReplayMetrics {
    let prepared = Prepared::new(trace, Duration::from_micros(100));
    replay(
        &prepared,
        chain,
        Setting { limits, ttl_scale },
        &AtomicU64::new(0),
    )
    .0
}

fn run(trace: &Trace, max_bytes: u64, ttl_scale: f64) -> ReplayMetrics {
    run_with(trace, &chain(), bytes(max_bytes), ttl_scale)
}

#[test]
fn repeated_reads_hit_until_the_ttl_runs_out() {
    let trace = trace(vec![
        record(0, "get_tasks", false, 7, false),
        record(1_000, "get_tasks", false, 7, false),
        record(9_000, "get_tasks", false, 7, false),
        record(11_000, "get_tasks", false, 7, false),
    ]);
    let metrics = run(&trace, 10_000, 1.0);
    assert_eq!((metrics.reads, metrics.hits, metrics.misses), (4, 2, 2));
    assert_eq!(metrics.backend_calls, 2);
    assert!((metrics.backend_time_saved_ms - 10.0).abs() < 1e-9);
    // A twentieth of the TTL (0.5 s) loses every hit.
    assert_eq!(run(&trace, 10_000, 0.05).hits, 0);
}

#[test]
fn a_result_that_changed_without_a_write_is_a_stale_hit_with_its_age() {
    let trace = trace(vec![
        record(0, "get_tasks", false, 7, false),
        record(2_000, "get_tasks", false, 8, false),
        record(5_000, "get_tasks", false, 8, false),
    ]);
    let metrics = run(&trace, 10_000, 1.0);
    assert_eq!((metrics.hits, metrics.stale_hits), (2, 2));
    // The change was first seen at 2 s: served 0 s and 3 s after it went stale.
    assert!(
        (metrics.staleness_p99_ms - 3_000.0).abs() < 1e-9,
        "{metrics:?}"
    );
    assert!((metrics.stale_hit_ratio - 2.0 / 3.0).abs() < 1e-9);
}

#[test]
fn a_write_without_rules_drops_its_servers_entries() {
    let trace = trace(vec![
        record(0, "get_tasks", false, 7, false),
        record(1_000, "create_task", true, 0, false),
        record(2_000, "get_tasks", false, 8, false),
        record(3_000, "get_tasks", false, 8, false),
    ]);
    let metrics = run(&trace, 10_000, 1.0);
    assert_eq!(
        (metrics.hits, metrics.stale_hits, metrics.writes),
        (1, 0, 1)
    );
    assert_eq!(metrics.invalidated, 1);
}

#[test]
fn a_recorded_hit_after_a_write_has_unknown_truth() {
    let trace = trace(vec![
        record(0, "get_tasks", false, 7, false),
        record(500, "get_tasks", false, 7, true),
        record(1_000, "create_task", true, 0, false),
        record(2_000, "get_tasks", false, 7, true),
    ]);
    let truths: Vec<Option<u64>> = trace.events.iter().map(|event| event.truth).collect();
    assert_eq!(truths, vec![Some(7), Some(7), None, None]);
    // The recorded hits cost what the tool's backend calls cost on average.
    assert!(trace.events[1].latency_estimated && trace.events[1].latency_us == 5000);
}

#[test]
fn belady_beats_lru_at_the_same_size_and_perfect_never_goes_stale() {
    // A cyclic scan over three keys defeats LRU with room for two; Belady keeps one, and
    // TinyLFU keeps two by refusing the third, which is no more popular than they are.
    // Calls 400 ms apart let the cache's batch run before each (see `sim`), so no fill is
    // served before its admission is decided.
    let mut records = Vec::new();
    for round in 0..30u64 {
        for (index, name) in ["get_a", "get_b", "get_c"].iter().enumerate() {
            records.push(record(
                round * 1_200 + index as u64 * 400,
                name,
                false,
                1,
                false,
            ));
        }
    }
    let trace = trace(records);
    let prepared = Prepared::new(&trace, Duration::from_micros(100));
    let room_for_two = bytes(200);
    let lru = run_with(
        &trace,
        &chain(),
        SimLimits {
            eviction: Eviction::Lru,
            ..room_for_two
        },
        1.0,
    );
    let tinylfu = run_with(&trace, &chain(), room_for_two, 1.0);
    let next = bounds::next_uses(&prepared);
    let (optimal, _) = bounds::belady(&prepared, &next, room_for_two);
    let (perfect, _) = bounds::perfect(&prepared);
    let (none, _) = bounds::no_cache(&prepared);
    assert_eq!(lru.hits, 0, "LRU with room for 2 misses a cycle of 3");
    assert!(tinylfu.hits >= 40, "TinyLFU keeps two: {}", tinylfu.hits);
    assert!(
        optimal.hits >= 40,
        "Belady keeps two of three: {}",
        optimal.hits
    );
    assert_eq!(perfect.hits, 87);
    assert_eq!((none.hits, none.backend_calls), (0, 90));
    assert_eq!(perfect.stale_hits + optimal.stale_hits, 0);
    assert!(optimal.peak_entries <= 2);
}

/// A policy that caches every read for 10 s, leaving `request_id` out of the key.
struct IgnoresRequestId;

impl mcp_bridge_policy::Policy for IgnoresRequestId {
    fn name(&self) -> &str {
        "ignores-request-id"
    }

    fn decide(&self, call: &Call<'_>) -> Decision {
        if !call.is_read_only() {
            return Decision::Abstain;
        }
        Decision::Cache(mcp_bridge_policy::Directive {
            ttl: Some(Duration::from_secs(10)),
            ignore_arguments: vec!["request_id".to_owned()],
            ..mcp_bridge_policy::Directive::default()
        })
    }
}

/// Calls that differ only in an argument the policy ignores share one entry, as in `serve`.
#[test]
fn ignored_arguments_leave_the_key_as_serve_shapes_it() {
    let with_request_id = |t_ms: u64, request_id: u64| {
        let arguments = serde_json::json!({"id": 1, "request_id": request_id});
        TraceRecord {
            args: hex64(100 + request_id),
            arguments: Some(arguments),
            ..record(t_ms, "get_task", false, 7, false)
        }
    };
    let trace = trace(vec![
        with_request_id(0, 1),
        with_request_id(1_000, 2),
        with_request_id(2_000, 3),
    ]);
    let prepared = Prepared::new(&trace, Duration::from_micros(100));
    let setting = Setting {
        limits: bytes(10_000),
        ttl_scale: 1.0,
    };
    let shaping = PolicyChain::new(
        vec![Arc::new(IgnoresRequestId)],
        Arc::new(
            mcp_bridge_config::load_str(CONFIG, "test.toml")
                .unwrap_or_else(|error| panic!("{error}"))
                .builtin_policy(),
        ),
    );
    let shaped = replay(&prepared, &shaping, setting, &AtomicU64::new(0)).0;
    assert_eq!((shaped.hits, shaped.misses), (2, 1), "{shaped:?}");
    // The built-in policy keys by every argument: three different calls.
    let unshaped = replay(&prepared, &chain(), setting, &AtomicU64::new(0)).0;
    assert_eq!((unshaped.hits, unshaped.misses), (0, 3), "{unshaped:?}");
}

/// A read of `name` by `principal` (empty for none) whose result carries `hints`.
fn read_with_hints(t_ms: u64, name: &str, principal: &str, hints: RecordedHints) -> TraceRecord {
    TraceRecord {
        partition: principal.to_owned(),
        hints,
        ..record(t_ms, name, false, 7, false)
    }
}

/// A server's `ttlMs` shortens the policy's TTL in the replay as in `serve`.
#[test]
fn a_recorded_ttl_hint_caps_the_policys_ttl() {
    let reads = |hints: RecordedHints| {
        trace(vec![
            read_with_hints(0, "get_tasks", "", hints),
            read_with_hints(1_000, "get_tasks", "", hints),
            read_with_hints(3_000, "get_tasks", "", hints),
        ])
    };
    let hinted = RecordedHints {
        ttl_ms: Some(2_000),
        private_scope: None,
    };
    // The policy's 10 s keep both later reads; the server's 2 s only the first.
    assert_eq!(run(&reads(RecordedHints::default()), 10_000, 1.0).hits, 2);
    assert_eq!(run(&reads(hinted), 10_000, 1.0).hits, 1);
    // The TTL sweep scales the policy's TTL; the server's cap stays.
    assert_eq!(run(&reads(hinted), 10_000, 4.0).hits, 1);
    assert_eq!(run(&reads(hinted), 10_000, 0.05).hits, 0);
}

/// A result the server marked `cacheScope: private` is kept for its principal alone,
/// even under a policy that shares results.
#[test]
fn a_recorded_private_scope_keeps_the_result_per_principal() {
    let reads = |hints: RecordedHints| {
        trace(vec![
            read_with_hints(0, "get_tasks", "00000000000000a1", hints),
            read_with_hints(1_000, "get_tasks", "00000000000000b2", hints),
            read_with_hints(2_000, "get_tasks", "00000000000000a1", hints),
        ])
    };
    let private = RecordedHints {
        ttl_ms: None,
        private_scope: Some(true),
    };
    // Shared: the second principal hits the first one's result, and so does the first.
    let shared = run(&reads(RecordedHints::default()), 10_000, 1.0);
    assert_eq!((shared.hits, shared.misses), (2, 1));
    // Private: the second principal fills its own entry; the first finds its own.
    let kept_apart = run(&reads(private), 10_000, 1.0);
    assert_eq!((kept_apart.hits, kept_apart.misses), (1, 2));
    assert_eq!(kept_apart.final_entries, 2);
}

/// A policy that remembers the hints it was shown, and invalidates nothing.
#[derive(Default)]
struct HintWitness {
    decided: parking_lot::Mutex<Vec<ServerHints>>,
    judged: parking_lot::Mutex<Vec<ServerHints>>,
}

impl mcp_bridge_policy::Policy for HintWitness {
    fn name(&self) -> &str {
        "hint-witness"
    }

    fn decide(&self, call: &Call<'_>) -> Decision {
        self.decided.lock().push(call.hints);
        Decision::Abstain
    }

    fn invalidations(
        &self,
        call: &Call<'_>,
        _outcome: &Outcome,
    ) -> mcp_bridge_policy::InvalidationAnswer {
        self.judged.lock().push(call.hints);
        mcp_bridge_policy::InvalidationAnswer::Abstain
    }
}

/// As in `serve`, a call is decided before the server's hints exist, and a write's outcome
/// is judged with the hints on its result.
#[test]
fn a_policy_sees_the_hints_where_serve_shows_them() {
    let hints = RecordedHints {
        ttl_ms: Some(500),
        private_scope: Some(false),
    };
    let write = TraceRecord {
        hints,
        ..record(1_000, "create_task", true, 0, false)
    };
    let trace = trace(vec![read_with_hints(0, "get_tasks", "", hints), write]);
    let witness = Arc::new(HintWitness::default());
    let chain = PolicyChain::new(
        vec![witness.clone()],
        Arc::new(
            mcp_bridge_config::load_str(CONFIG, "test.toml")
                .unwrap_or_else(|error| panic!("{error}"))
                .builtin_policy(),
        ),
    );
    run_with(&trace, &chain, bytes(10_000), 1.0);
    let decided = witness.decided.lock();
    assert!(
        !decided.is_empty() && decided.iter().all(|seen| *seen == ServerHints::default()),
        "{decided:?}"
    );
    assert_eq!(*witness.judged.lock(), vec![ServerHints::from(hints)]);
}

/// Reads of keys with skewed popularity and sizes from 200 bytes to 20 KB, no writes, 400 ms
/// apart: the cache's batch runs before each, so it never serves a fill whose admission is
/// undecided (which at a budget of a few entries lets it serve far more than its budget).
fn mixed_sizes_trace() -> Trace {
    let mut records = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for index in 0..6_000u64 {
        // xorshift: a fixed, seeded sequence.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Popularity falls with the key: key k is drawn about 1/(k+1) as often.
        let key = (state % 1_000) * (state % 1_000) / 4_000;
        let bytes = 200 + (key * 7_919 % 100) * 200;
        records.push(TraceRecord {
            args: hex64(key),
            bytes,
            latency_us: 1_000 + bytes,
            ..record(index * 400, "get_item", false, key + 1, false)
        });
    }
    trace(records)
}

#[test]
fn the_cache_holds_at_most_its_byte_budget() {
    let trace = mixed_sizes_trace();
    for eviction in [Eviction::TinyLfu, Eviction::Lru] {
        let limits = SimLimits {
            eviction,
            ..bytes(50_000)
        };
        let metrics = run_with(&trace, &chain(), limits, 1.0);
        assert!(metrics.peak_bytes <= 50_000, "{eviction:?}: {metrics:?}");
        assert!(
            metrics.evictions > 0 && metrics.hits > 0,
            "{eviction:?}: {metrics:?}"
        );
    }
    // The entry cap weighs every entry at least max_bytes / max_entries.
    let capped = run_with(
        &trace,
        &chain(),
        SimLimits {
            max_entries: 5,
            ..bytes(50_000)
        },
        1.0,
    );
    assert!(capped.peak_entries <= 5, "{capped:?}");
}

#[test]
fn belady_by_bytes_is_never_worse_than_the_simulated_cache() {
    let trace = mixed_sizes_trace();
    let prepared = Prepared::new(&trace, Duration::from_micros(100));
    let next = bounds::next_uses(&prepared);
    for max_bytes in [5_000, 20_000, 80_000, 320_000] {
        for eviction in [Eviction::TinyLfu, Eviction::Lru] {
            let limits = SimLimits {
                eviction,
                ..bytes(max_bytes)
            };
            let simulated = run_with(&trace, &chain(), limits, 1.0);
            let (optimal, _) = bounds::belady(&prepared, &next, limits);
            assert!(simulated.hits > 0, "{max_bytes} B, {eviction:?}: no hit");
            assert!(
                optimal.hits >= simulated.hits,
                "{max_bytes} B, {eviction:?}: Belady {} hits, simulated {}",
                optimal.hits,
                simulated.hits
            );
            assert!(optimal.peak_bytes <= max_bytes);
        }
    }
}

/// A policy that caches every read for 10 s and counts the decisions it is asked for;
/// `pure` says whether it declares itself pure (its answers are the same either way).
struct Counted {
    pure: bool,
    decisions: std::sync::atomic::AtomicU64,
}

impl Counted {
    fn new(pure: bool) -> Arc<Counted> {
        Arc::new(Counted {
            pure,
            decisions: AtomicU64::new(0),
        })
    }
}

impl mcp_bridge_policy::Policy for Counted {
    fn name(&self) -> &str {
        "counted"
    }

    fn decide(&self, call: &Call<'_>) -> Decision {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        if !call.is_read_only() {
            return Decision::Abstain;
        }
        Decision::Cache(mcp_bridge_policy::Directive {
            ttl: Some(Duration::from_secs(10)),
            ..mcp_bridge_policy::Directive::default()
        })
    }

    fn is_pure(&self) -> bool {
        self.pure
    }
}

/// A stateful policy: it caches its odd-numbered decisions and bypasses the others.
#[derive(Default)]
struct Alternating {
    decisions: AtomicU64,
}

impl mcp_bridge_policy::Policy for Alternating {
    fn name(&self) -> &str {
        "alternating"
    }

    fn decide(&self, _call: &Call<'_>) -> Decision {
        match self.decisions.fetch_add(1, Ordering::Relaxed) % 2 {
            0 => Decision::Cache(mcp_bridge_policy::Directive::default()),
            _ => Decision::Bypass,
        }
    }
}

fn builtin() -> Arc<mcp_bridge_policy::BuiltinPolicy> {
    Arc::new(
        mcp_bridge_config::load_str(CONFIG, "test.toml")
            .unwrap_or_else(|error| panic!("{error}"))
            .builtin_policy(),
    )
}

/// Reads of two tools, repeated, one of them also under other annotations, and writes.
fn repeated_calls() -> Trace {
    let mut records = Vec::new();
    for round in 0..10u64 {
        let t_ms = round * 3_000;
        records.push(record(t_ms, "get_tasks", false, 7, false));
        records.push(record(t_ms + 1, "get_clients", false, 8, false));
        records.push(TraceRecord {
            annotations: RecordedAnnotations {
                read_only: Some(true),
                idempotent: Some(true),
                ..RecordedAnnotations::default()
            },
            ..record(t_ms + 2, "get_clients", false, 8, false)
        });
        if round % 3 == 2 {
            records.push(record(t_ms + 3, "create_task", true, 0, false));
        }
    }
    trace(records)
}

#[test]
fn a_pure_chain_is_asked_once_per_distinct_call_and_replays_the_same() {
    let trace = repeated_calls();
    let prepared = Prepared::new(&trace, Duration::from_micros(100));
    let setting = Setting {
        limits: bytes(10_000),
        ttl_scale: 1.0,
    };
    let replay_with = |policy: &Arc<Counted>| {
        let chain = PolicyChain::new(vec![policy.clone()], builtin());
        replay(&prepared, &chain, setting, &AtomicU64::new(0)).0
    };
    let pure = Counted::new(true);
    let stateful = Counted::new(false);
    let reused = replay_with(&pure);
    let asked = replay_with(&stateful);

    // Three distinct reads (get_clients under two sets of annotations counts twice) are
    // decided; the writes' invalidations are asked every time either way.
    let (reads, writes) = (asked.reads, asked.writes);
    assert_eq!((reads, writes), (30, 3));
    assert_eq!(pure.decisions.load(Ordering::Relaxed), 3);
    assert_eq!(stateful.decisions.load(Ordering::Relaxed), reads);
    assert_eq!(reused.decisions_reused, reads - 3);
    assert_eq!(asked.decisions_reused, 0);
    assert_eq!(reused.policy_calls, 3 + writes);
    assert_eq!(asked.policy_calls, reads + writes);
    assert!(reused.decision_ns > 0.0, "the calls made are timed");

    // Reusing a pure policy's answers changes nothing it measures.
    assert_eq!(
        (
            reused.hits,
            reused.misses,
            reused.bypasses,
            reused.invalidated
        ),
        (asked.hits, asked.misses, asked.bypasses, asked.invalidated)
    );
    assert_eq!(
        (reused.shaped_by_plugin, reused.shaped_by_default),
        (asked.shaped_by_plugin, asked.shaped_by_default)
    );
    assert!(reused.hits > 0, "{reused:?}");
}

#[test]
fn a_stateful_policy_is_asked_on_every_event_and_its_state_shows() {
    let trace = repeated_calls();
    let prepared = Prepared::new(&trace, Duration::from_micros(100));
    let policy = Arc::new(Alternating::default());
    let chain = PolicyChain::new(vec![policy.clone()], builtin());
    assert!(!chain.is_pure());
    let setting = Setting {
        limits: bytes(10_000),
        ttl_scale: 1.0,
    };
    let metrics = replay(&prepared, &chain, setting, &AtomicU64::new(0)).0;
    // Writes do not ask `decide`; every read does, and every other one bypasses.
    assert_eq!(policy.decisions.load(Ordering::Relaxed), metrics.reads);
    assert_eq!(metrics.bypasses, metrics.reads / 2);
    assert_eq!(metrics.decisions_reused, 0);
}
