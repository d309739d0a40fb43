//! The router's metrics: every forwarded call by server, method, tool and outcome, its
//! latency, and the read-only retries.

use mcp_bridge_backend::PoolMetrics;
use mcp_bridge_metrics::Registry;
use prometheus::{HistogramVec, IntCounterVec};

/// Call latency buckets in seconds: from tens of microseconds (cache hits, warm
/// multiplexed calls) up to the default request timeout.
const CALL_DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// What the router reports per call.
pub struct CallMetrics {
    pub call_duration_seconds: HistogramVec,
    pub calls_total: IntCounterVec,
    pub backend_retries_total: IntCounterVec,
    /// The backend's error counter: the router counts the faults it sees on a call's way
    /// back in the same series as the pools, one per server and kind.
    pub backend_errors_total: IntCounterVec,
}

impl CallMetrics {
    /// Registers this layer's metrics. Call once per registry: a second call is a
    /// programming error (the names are taken) and panics.
    pub fn register(registry: &Registry, pools: &PoolMetrics) -> CallMetrics {
        CallMetrics {
            call_duration_seconds: registry.histogram_vec(
                    "call_duration_seconds",
                    "Time from receiving a client request to having its response, by server, method, tool and outcome.",
                    &["server", "method", "tool", "outcome"],
                    CALL_DURATION_BUCKETS,
                ),
            calls_total: registry.counter_vec(
                    "calls_total",
                    "Client requests that reached the router, by server, method and outcome (`hit` for answers from the cache; the others came from a backend or failed on the way).",
                    &["server", "method", "outcome"],
                ),
            backend_retries_total: registry.counter_vec(
                    "backend_retries_total",
                    "Read-only calls retried once on another process after their process died.",
                    &["server"],
                ),
            backend_errors_total: pools.backend_errors_total.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics() {
        let registry = Registry::new();
        let pools = PoolMetrics::register(&registry);
        let metrics = CallMetrics::register(&registry, &pools);
        metrics
            .calls_total
            .with_label_values(&["demo", "tools/call", "ok"])
            .inc();
        metrics
            .call_duration_seconds
            .with_label_values(&["demo", "tools/call", "get_tasks", "ok"])
            .observe(0.000_2);
        metrics
            .backend_errors_total
            .with_label_values(&["demo", "timeout"])
            .inc();
        let text = registry.render();
        assert!(text.contains(
            "mcp_bridge_calls_total{method=\"tools/call\",outcome=\"ok\",server=\"demo\"} 1"
        ));
        assert!(text.contains("mcp_bridge_call_duration_seconds_bucket"));
        // The router's and the pools' errors are one series.
        assert_eq!(
            pools
                .backend_errors_total
                .with_label_values(&["demo", "timeout"])
                .get(),
            1
        );
    }
}
