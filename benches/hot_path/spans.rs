//! The `spans` group: what the call's spans cost with tracing off (no `[telemetry]`): the
//! SERVER span with its attributes, the policy, cache lookup, pool acquire and backend
//! CLIENT spans, each entered once, and the `_meta` injection, all against doing nothing.
//! The bench installs the very subscriber the binary installs without `[telemetry]`
//! (`mcp_bridge::subscriber::logs`, at level `info`), so the span target's callsites are
//! disabled once and for all, and this should be a few nanoseconds: a cached interest
//! check per span, no allocation.

use std::hint::black_box;

use criterion::Criterion;
use serde_json::json;
use tracing::level_filters::LevelFilter;

use mcp_bridge::config::LogFormat;
use mcp_bridge::telemetry::{self, RequestFacts, attribute};

pub(crate) fn bench(c: &mut Criterion) {
    // As `serve` sets it up with tracing off (host/src/otel.rs), on this thread only.
    let _subscriber = tracing::subscriber::set_default(mcp_bridge::subscriber::logs(
        LogFormat::Human,
        "info",
        std::io::sink,
    ));
    assert!(!telemetry::is_on(), "the log layer enabled the span target");
    assert_eq!(
        LevelFilter::current(),
        LevelFilter::INFO,
        "the subscriber lifted the maximum level above the log level"
    );
    let mut group = c.benchmark_group("spans");
    let facts = RequestFacts {
        method: "tools/call",
        tool: Some("get_tasks"),
        request_id: Some("48213"),
        session: Some("0f3c9a8e6b1d4c2a9e7f5b3d1c0a8e6f"),
        protocol_version: Some("2025-11-25"),
    };
    let mut message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "get_tasks", "arguments": {}}});
    group.bench_function("baseline: nothing", |b| b.iter(|| black_box(&facts)));
    group.bench_function("a call's spans, tracing off", |b| {
        b.iter(|| {
            let server = telemetry::server_span(black_box(&facts));
            let _in_server = server.enter();
            let policy = telemetry::policy_span(3);
            drop(policy);
            let lookup = telemetry::cache_lookup_span();
            telemetry::record_str(&lookup, attribute::CACHE_RESULT, "miss");
            drop(lookup);
            let acquire = telemetry::pool_acquire_span("demo");
            drop(acquire);
            let client = telemetry::backend_span(&facts, "demo", Some(4242));
            telemetry::inject_trace_context(&mut message, &client);
            telemetry::record_str(&server, attribute::CACHE_RESULT, "miss");
            black_box(&message);
        });
    });
    group.finish();
}
