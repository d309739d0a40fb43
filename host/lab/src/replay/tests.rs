use std::sync::Arc;

use super::*;
use mcp_bridge_trace::{Access, RecordedAnnotations, TraceRecord, hex64};

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

fn run(trace: &Trace, capacity: u64, ttl_scale: f64) -> ReplayMetrics {
    let prepared = Prepared::new(trace, Duration::from_micros(100));
    replay(
        &prepared,
        &chain(),
        Setting {
            capacity,
            ttl_scale,
        },
        &AtomicU64::new(0),
    )
    .0
}

#[test]
fn repeated_reads_hit_until_the_ttl_runs_out() {
    let trace = trace(vec![
        record(0, "get_tasks", false, 7, false),
        record(1_000, "get_tasks", false, 7, false),
        record(9_000, "get_tasks", false, 7, false),
        record(11_000, "get_tasks", false, 7, false),
    ]);
    let metrics = run(&trace, 10, 1.0);
    assert_eq!((metrics.reads, metrics.hits, metrics.misses), (4, 2, 2));
    assert_eq!(metrics.backend_calls, 2);
    assert!((metrics.backend_time_saved_ms - 10.0).abs() < 1e-9);
    // A twentieth of the TTL (0.5 s) loses every hit.
    assert_eq!(run(&trace, 10, 0.05).hits, 0);
}

#[test]
fn a_result_that_changed_without_a_write_is_a_stale_hit_with_its_age() {
    let trace = trace(vec![
        record(0, "get_tasks", false, 7, false),
        record(2_000, "get_tasks", false, 8, false),
        record(5_000, "get_tasks", false, 8, false),
    ]);
    let metrics = run(&trace, 10, 1.0);
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
    let metrics = run(&trace, 10, 1.0);
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
    // A cyclic scan over three keys defeats LRU with room for two; Belady keeps one.
    let mut records = Vec::new();
    for round in 0..30u64 {
        for (index, name) in ["get_a", "get_b", "get_c"].iter().enumerate() {
            records.push(record(
                round * 30 + index as u64 * 10,
                name,
                false,
                1,
                false,
            ));
        }
    }
    let trace = trace(records);
    let prepared = Prepared::new(&trace, Duration::from_micros(100));
    let lru = run(&trace, 2, 1.0);
    let next = bounds::next_uses(&prepared);
    let (optimal, _) = bounds::belady(&prepared, &next, 2);
    let (perfect, _) = bounds::perfect(&prepared);
    let (none, _) = bounds::no_cache(&prepared);
    assert_eq!(lru.hits, 0, "LRU with room for 2 misses a cycle of 3");
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
        capacity: 10,
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
        capacity: 10,
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
        capacity: 10,
        ttl_scale: 1.0,
    };
    let metrics = replay(&prepared, &chain, setting, &AtomicU64::new(0)).0;
    // Writes do not ask `decide`; every read does, and every other one bypasses.
    assert_eq!(policy.decisions.load(Ordering::Relaxed), metrics.reads);
    assert_eq!(metrics.bypasses, metrics.reads / 2);
    assert_eq!(metrics.decisions_reused, 0);
}
