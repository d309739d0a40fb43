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
