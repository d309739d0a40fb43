//! The metrics of the layers not yet in crates of their own, and the composition of every
//! layer's metrics into the one registry `/metrics` renders. Each layer that is a crate
//! (backend, cache) defines and registers its own; this struct only holds them.

use std::sync::Arc;

pub use mcp_bridge_metrics::Registry;
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use crate::backend::PoolMetrics;
use crate::cache::CacheMetrics;
use crate::plugin::PluginMetrics;

/// Call latency buckets in seconds: from tens of microseconds (cache hits, warm
/// multiplexed calls) up to the default request timeout.
const CALL_DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every metric the host exports. Cloning the inner vectors is cheap (they are `Arc`s).
pub struct Metrics {
    registry: Registry,
    /// The backend layer's metrics, shared by every pool.
    pub pools: Arc<PoolMetrics>,
    /// The cache layer's metrics.
    pub cache: Arc<CacheMetrics>,
    /// The plugin host's metrics.
    pub plugins: Arc<PluginMetrics>,
    pub call_duration_seconds: HistogramVec,
    pub calls_total: IntCounterVec,
    pub backend_errors_total: IntCounterVec,
    pub backend_retries_total: IntCounterVec,
    pub http_requests_total: IntCounterVec,
    pub sessions_active: IntGaugeVec,
    pub sessions_closed_total: IntCounterVec,
    pub limit_refusals_total: IntCounterVec,
    pub relay_answers_refused_total: IntCounterVec,
    pub trace_records_dropped_total: IntCounter,
    pub version_mismatch_total: IntCounterVec,
    pub http_connections_open: IntGauge,
    pub http_connections_refused_total: IntCounterVec,
    pub http_connections_closed_total: IntCounterVec,
    pub http_accept_errors_total: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let pools = Arc::new(PoolMetrics::register(&registry));
        let cache = Arc::new(CacheMetrics::register(&registry));
        let plugins = Arc::new(PluginMetrics::register(&registry));
        Metrics {
            // The router counts the errors it sees on a call's way back in the backend's
            // counter, so both layers' faults add up in one series per server and kind.
            backend_errors_total: pools.backend_errors_total.clone(),
            call_duration_seconds: registry.histogram_vec(
                "call_duration_seconds",
                "Time from receiving a client request to having its response, by server, method, tool and outcome.",
                &["server", "method", "tool", "outcome"],
                CALL_DURATION_BUCKETS,
            ),
            calls_total: registry.counter_vec(
                "calls_total",
                "Client requests forwarded to a backend, by server, method and outcome.",
                &["server", "method", "outcome"],
            ),
            backend_retries_total: registry.counter_vec(
                "backend_retries_total",
                "Read-only calls retried once on another process after their process died.",
                &["server"],
            ),
            http_requests_total: registry.counter_vec(
                "http_requests_total",
                "HTTP requests by route and status code.",
                &["route", "status"],
            ),
            sessions_active: registry.gauge_vec(
                "sessions_active",
                "Open MCP sessions on the front, by endpoint.",
                &["endpoint"],
            ),
            sessions_closed_total: registry.counter_vec(
                "sessions_closed_total",
                "MCP sessions closed by the bridge, by reason: idle (unused past session_idle_timeout), capacity (least recently used idle session closed at max_sessions).",
                &["reason"],
            ),
            limit_refusals_total: registry.counter_vec(
                "limit_refusals_total",
                "Requests or calls refused because a client reached a limit, by the setting that refused it (max_sessions, max_inflight_per_session, max_batch_messages, max_subscriptions_per_session, max_streams_per_session).",
                &["limit"],
            ),
            relay_answers_refused_total: registry.counter_vec(
                "relay_answers_refused_total",
                "Client answers to server requests (sampling, elicitation, roots) refused, by reason: unknown_id (no such request is waiting), wrong_session (another session's request), no_session.",
                &["reason"],
            ),
            trace_records_dropped_total: registry.counter(
                "trace_records_dropped_total",
                "Trace records (`serve --record`) dropped because the trace writer fell behind; the calls were answered.",
            ),
            version_mismatch_total: registry.counter_vec(
                "version_mismatch_total",
                "Requests whose protocol-version signals (session, MCP-Protocol-Version header, body _meta) disagreed, by kind and by action (accepted: served under the documented precedence; refused: answered with what to send).",
                &["kind", "action"],
            ),
            http_connections_open: registry.gauge(
                "http_connections_open",
                "Client connections being served (at most http.max_client_connections).",
            ),
            http_connections_refused_total: registry.counter_vec(
                "http_connections_refused_total",
                "Connections refused because http.max_client_connections were open, by how: answered (503 sent) or dropped (too many refusals at once to answer each).",
                &["how"],
            ),
            http_connections_closed_total: registry.counter_vec(
                "http_connections_closed_total",
                "Connections the bridge closed by deadline: header_timeout (a request head took longer than http.header_read_timeout) or keep_alive_timeout (idle longer than http.keep_alive_timeout).",
                &["reason"],
            ),
            http_accept_errors_total: registry.counter(
                "http_accept_errors_total",
                "Failed accept() calls on the listening socket (EMFILE and the like); the log shows at most one line a second.",
            ),
            pools,
            cache,
            plugins,
            registry,
        }
    }

    /// The registry every layer's metrics are registered in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.registry.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
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
