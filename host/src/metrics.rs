//! Prometheus metrics: one registry per bridge, every name prefixed `mcp_bridge_`, base units.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Call latency buckets in seconds: from tens of microseconds (cache hits, warm
/// multiplexed calls) up to the default request timeout.
const CALL_DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every metric the host exports. Cloning the inner vectors is cheap (they are `Arc`s).
pub struct Metrics {
    registry: Registry,
    pub call_duration_seconds: HistogramVec,
    pub calls_total: IntCounterVec,
    pub pool_processes: IntGaugeVec,
    pub pool_inflight: IntGaugeVec,
    pub pool_queue_depth: IntGaugeVec,
    pub pool_spawns_total: IntCounterVec,
    pub pool_restarts_total: IntCounterVec,
    pub pool_spawn_failures_total: IntCounterVec,
    pub pool_unresponsive_total: IntCounterVec,
    pub backend_errors_total: IntCounterVec,
    pub backend_retries_total: IntCounterVec,
    pub http_requests_total: IntCounterVec,
    pub sessions_active: IntGaugeVec,
    pub sessions_closed_total: IntCounterVec,
    pub limit_refusals_total: IntCounterVec,
    pub relay_answers_refused_total: IntCounterVec,
    pub health_status: IntGaugeVec,
    pub cache_requests_total: IntCounterVec,
    pub cache_evictions_total: IntCounterVec,
    pub cache_invalidations_total: IntCounterVec,
    pub cache_backend_seconds_saved_total: prometheus::Counter,
    pub cache_entries: prometheus::IntGauge,
    pub cache_bytes: prometheus::IntGauge,
    pub plugin_reloads_total: IntCounterVec,
    pub plugin_generation: IntGaugeVec,
    pub policy_generation: prometheus::IntGauge,
    pub plugin_decisions_total: IntCounterVec,
    pub plugin_faults_total: IntCounterVec,
    pub plugin_decision_seconds: HistogramVec,
    pub plugin_quarantined: IntGaugeVec,
    pub trace_records_dropped_total: prometheus::IntCounter,
    pub version_mismatch_total: IntCounterVec,
    pub http_connections_open: prometheus::IntGauge,
    pub http_connections_refused_total: IntCounterVec,
    pub http_connections_closed_total: IntCounterVec,
    pub http_accept_errors_total: prometheus::IntCounter,
}

/// Plugin call latency buckets in seconds: a warm decision takes about a microsecond;
/// the top buckets reach the decision timeout.
const PLUGIN_CALL_BUCKETS: &[f64] = &[
    0.000_000_5,
    0.000_001,
    0.000_002,
    0.000_005,
    0.000_01,
    0.000_05,
    0.000_1,
    0.001,
    0.01,
    0.1,
];

/// Process states reported by `mcp_bridge_pool_processes{state}`.
pub const PROCESS_STATES: [&str; 4] = ["starting", "ready", "probing", "draining"];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help)
                .namespace("mcp_bridge")
                .buckets(CALL_DURATION_BUCKETS.to_vec());
            register(&registry, HistogramVec::new(opts, labels))
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help).namespace("mcp_bridge"), labels),
            )
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntGaugeVec::new(Opts::new(name, help).namespace("mcp_bridge"), labels),
            )
        };
        Metrics {
            call_duration_seconds: histogram(
                "call_duration_seconds",
                "Time from receiving a client request to having its response, by server, method, tool and outcome.",
                &["server", "method", "tool", "outcome"],
            ),
            calls_total: counter(
                "calls_total",
                "Client requests forwarded to a backend, by server, method and outcome.",
                &["server", "method", "outcome"],
            ),
            pool_processes: gauge(
                "pool_processes",
                "Backend processes by server and state (starting, ready, draining).",
                &["server", "state"],
            ),
            pool_inflight: gauge(
                "pool_inflight",
                "Requests currently in flight on a server's processes.",
                &["server"],
            ),
            pool_queue_depth: gauge(
                "pool_queue_depth",
                "Calls waiting for a free slot because every process is at max_inflight.",
                &["server"],
            ),
            pool_spawns_total: counter(
                "pool_spawns_total",
                "Backend processes spawned and initialized successfully.",
                &["server"],
            ),
            pool_restarts_total: counter(
                "pool_restarts_total",
                "Backend processes that died or failed health checks and were replaced.",
                &["server"],
            ),
            pool_spawn_failures_total: counter(
                "pool_spawn_failures_total",
                "Spawn or initialize attempts that failed.",
                &["server"],
            ),
            pool_unresponsive_total: counter(
                "pool_unresponsive_total",
                "Processes taken out of service for request timeouts in a row (reason=timeouts) or for writing nothing while calls waited (reason=stalled), by the probe's outcome: recovered (answered the ping, serving again) or replaced (killed).",
                &["server", "reason", "outcome"],
            ),
            backend_errors_total: counter(
                "backend_errors_total",
                "Backend faults by kind (exited, timeout, pool_exhausted, oversized_line, non_json, unknown_id, ...).",
                &["server", "kind"],
            ),
            backend_retries_total: counter(
                "backend_retries_total",
                "Read-only calls retried once on another process after their process died.",
                &["server"],
            ),
            http_requests_total: counter(
                "http_requests_total",
                "HTTP requests by route and status code.",
                &["route", "status"],
            ),
            sessions_active: gauge(
                "sessions_active",
                "Open MCP sessions on the front, by endpoint.",
                &["endpoint"],
            ),
            sessions_closed_total: counter(
                "sessions_closed_total",
                "MCP sessions closed by the bridge, by reason: idle (unused past session_idle_timeout), capacity (least recently used idle session closed at max_sessions).",
                &["reason"],
            ),
            limit_refusals_total: counter(
                "limit_refusals_total",
                "Requests or calls refused because a client reached a limit, by the setting that refused it (max_sessions, max_inflight_per_session, max_batch_messages, max_subscriptions_per_session, max_streams_per_session).",
                &["limit"],
            ),
            relay_answers_refused_total: counter(
                "relay_answers_refused_total",
                "Client answers to server requests (sampling, elicitation, roots) refused, by reason: unknown_id (no such request is waiting), wrong_session (another session's request), no_session.",
                &["reason"],
            ),
            health_status: gauge(
                "health_status",
                "Server health: 2 healthy, 1 degraded, 0 unhealthy.",
                &["server"],
            ),
            cache_requests_total: counter(
                "cache_requests_total",
                "Cacheable requests by result: hit, miss, stale (served expired), bypass (policy said no), coalesced (waited for another caller's fill).",
                &["result"],
            ),
            cache_evictions_total: counter(
                "cache_evictions_total",
                "Entries removed by cause: size, expired, explicit (invalidated).",
                &["cause"],
            ),
            cache_invalidations_total: counter(
                "cache_invalidations_total",
                "Invalidations by reason: write (a call's rules), list_changed, resource_updated, admin.",
                &["reason"],
            ),
            cache_backend_seconds_saved_total: register(
                &registry,
                prometheus::Counter::with_opts(
                    Opts::new(
                        "cache_backend_seconds_saved_total",
                        "Backend time the cache hits saved, from each entry's fill time.",
                    )
                    .namespace("mcp_bridge"),
                ),
            ),
            cache_entries: register(
                &registry,
                prometheus::IntGauge::with_opts(
                    Opts::new("cache_entries", "Entries in the cache.").namespace("mcp_bridge"),
                ),
            ),
            cache_bytes: register(
                &registry,
                prometheus::IntGauge::with_opts(
                    Opts::new("cache_bytes", "Weighted size of the cache in bytes.")
                        .namespace("mcp_bridge"),
                ),
            ),
            plugin_reloads_total: counter(
                "plugin_reloads_total",
                "Plugin file loads by result: loaded (new or changed version serving), rejected (the old one keeps serving), unloaded (file deleted).",
                &["plugin", "result"],
            ),
            plugin_generation: gauge(
                "plugin_generation",
                "The policy generation at which each plugin's serving version was swapped in.",
                &["plugin"],
            ),
            policy_generation: register(
                &registry,
                prometheus::IntGauge::with_opts(
                    Opts::new(
                        "policy_generation",
                        "The current policy generation: it increases with every plugin swap and config reload.",
                    )
                    .namespace("mcp_bridge"),
                ),
            ),
            plugin_decisions_total: counter(
                "plugin_decisions_total",
                "Calls into plugin bindings by interface (cache-policy, ttl-table, invalidation-rules).",
                &["plugin", "interface"],
            ),
            plugin_faults_total: counter(
                "plugin_faults_total",
                "Plugin calls that faulted and fell back to the safe default, by kind (trap, deadline, out_of_memory, instantiate, quarantined).",
                &["plugin", "kind"],
            ),
            plugin_decision_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "plugin_decision_seconds",
                        "Time spent in one plugin call, instance checkout included.",
                    )
                    .namespace("mcp_bridge")
                    .buckets(PLUGIN_CALL_BUCKETS.to_vec()),
                    &["plugin"],
                ),
            ),
            plugin_quarantined: gauge(
                "plugin_quarantined",
                "1 while a plugin's serving version is quarantined for repeated faults.",
                &["plugin"],
            ),
            trace_records_dropped_total: register(
                &registry,
                prometheus::IntCounter::with_opts(
                    Opts::new(
                        "trace_records_dropped_total",
                        "Trace records (`serve --record`) dropped because the trace writer fell behind; the calls were answered.",
                    )
                    .namespace("mcp_bridge"),
                ),
            ),
            version_mismatch_total: counter(
                "version_mismatch_total",
                "Requests whose protocol-version signals (session, MCP-Protocol-Version header, body _meta) disagreed, by kind and by action (accepted: served under the documented precedence; refused: answered with what to send).",
                &["kind", "action"],
            ),
            http_connections_open: register(
                &registry,
                prometheus::IntGauge::with_opts(
                    Opts::new(
                        "http_connections_open",
                        "Client connections being served (at most http.max_client_connections).",
                    )
                    .namespace("mcp_bridge"),
                ),
            ),
            http_connections_refused_total: counter(
                "http_connections_refused_total",
                "Connections refused because http.max_client_connections were open, by how: answered (503 sent) or dropped (too many refusals at once to answer each).",
                &["how"],
            ),
            http_connections_closed_total: counter(
                "http_connections_closed_total",
                "Connections the bridge closed by deadline: header_timeout (a request head took longer than http.header_read_timeout) or keep_alive_timeout (idle longer than http.keep_alive_timeout).",
                &["reason"],
            ),
            http_accept_errors_total: register(
                &registry,
                prometheus::IntCounter::with_opts(
                    Opts::new(
                        "http_accept_errors_total",
                        "Failed accept() calls on the listening socket (EMFILE and the like); the log shows at most one line a second.",
                    )
                    .namespace("mcp_bridge"),
                ),
            ),
            registry,
        }
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families, and the
        // families all come from our own registry.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "failed to encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a collector built from static descriptions. Both steps can only fail on
/// a programming error (a bad name or a duplicate), which the unit test below catches.
fn register<C>(registry: &Registry, collector: prometheus::Result<C>) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    #[allow(clippy::expect_used)]
    let collector = collector.expect("static metric description is valid");
    #[allow(clippy::expect_used)]
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics() {
        let metrics = Metrics::new();
        metrics
            .calls_total
            .with_label_values(&["demo", "tools/call", "ok"])
            .inc();
        metrics
            .call_duration_seconds
            .with_label_values(&["demo", "tools/call", "get_tasks", "ok"])
            .observe(0.000_2);
        let text = metrics.render();
        assert!(text.contains(
            "mcp_bridge_calls_total{method=\"tools/call\",outcome=\"ok\",server=\"demo\"} 1"
        ));
        assert!(text.contains("mcp_bridge_call_duration_seconds_bucket"));
    }
}
