//! The shared tier's metrics: whether Redis is reachable, what each level answered, what
//! the invalidations did, and how long the broadcast took to reach this replica.

use mcp_bridge_metrics::Registry;
use prometheus::{HistogramVec, IntCounterVec, IntGauge};

/// Buckets for the propagation lag and Redis round trips, from 50 µs to 5 s.
const LATENCY_BUCKETS: [f64; 15] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 5.0,
];

/// What the shared tier reports.
pub struct SharedMetrics {
    pub shared_tier_up: IntGauge,
    pub shared_tier_transitions_total: IntCounterVec,
    pub shared_errors_total: IntCounterVec,
    pub shared_l2_lookups_total: IntCounterVec,
    pub shared_l2_writes_total: IntCounterVec,
    pub shared_validations_total: IntCounterVec,
    pub shared_invalidations_total: IntCounterVec,
    pub shared_pending_invalidations: IntGauge,
    pub shared_broadcasts_received_total: IntCounterVec,
    pub shared_l1_flushes_total: IntCounterVec,
    pub shared_invalidation_lag_seconds: HistogramVec,
    pub shared_round_trip_seconds: HistogramVec,
}

impl SharedMetrics {
    /// Registers this layer's metrics. Call once per registry.
    pub fn register(registry: &Registry) -> SharedMetrics {
        SharedMetrics {
            shared_tier_up: registry.gauge(
                "shared_tier_up",
                "1 while the shared tier (Redis) answers and this replica is in step with it, else 0.",
            ),
            shared_tier_transitions_total: registry.counter_vec(
                "shared_tier_transitions_total",
                "Times the shared tier became reachable (up) or unreachable (down).",
                &["to"],
            ),
            shared_errors_total: registry.counter_vec(
                "shared_errors_total",
                "Failed operations on the shared tier by operation and kind; the call went on without the tier.",
                &["operation", "kind"],
            ),
            shared_l2_lookups_total: registry.counter_vec(
                "shared_l2_lookups_total",
                "Second-level lookups by result: hit, miss, stale (its generations are older than Redis's), skipped (tier unreachable).",
                &["result"],
            ),
            shared_l2_writes_total: registry.counter_vec(
                "shared_l2_writes_total",
                "Fills written to the second level by result: stored, discarded (an invalidation raced the fill), too_large, overloaded (too many writes pending), error.",
                &["result"],
            ),
            shared_validations_total: registry.counter_vec(
                "shared_validations_total",
                "First-level hits checked against Redis's generations (strict mode) by result: valid, stale, error.",
                &["result"],
            ),
            shared_invalidations_total: registry.counter_vec(
                "shared_invalidations_total",
                "Invalidations by what became of them: published (recorded in Redis and broadcast), queued (Redis unreachable: kept to replay), replayed, collapsed (too many queued: everything invalidated instead).",
                &["result"],
            ),
            shared_pending_invalidations: registry.gauge(
                "shared_pending_invalidations",
                "Invalidations waiting for Redis to be reachable again.",
            ),
            shared_broadcasts_received_total: registry.counter_vec(
                "shared_broadcasts_received_total",
                "Messages received from other replicas by kind (invalidated, session_revoked, session_log_level, notification, malformed); heartbeats are not counted.",
                &["kind"],
            ),
            shared_l1_flushes_total: registry.counter_vec(
                "shared_l1_flushes_total",
                "Times this replica dropped its whole first level because it may have missed broadcasts, by reason: resubscribed, epoch_changed, unreadable_message (a message that could have been an invalidation could not be read).",
                &["reason"],
            ),
            shared_invalidation_lag_seconds: registry.histogram_vec(
                "shared_invalidation_lag_seconds",
                "From another replica publishing an invalidation to this replica applying it (bounded mode's staleness window; clocks of different machines add their skew).",
                &[],
                &LATENCY_BUCKETS,
            ),
            shared_round_trip_seconds: registry.histogram_vec(
                "shared_round_trip_seconds",
                "Round trips to Redis on the call path by operation: validate (a strict hit's check), fetch (the second level with the stamps), stamp (a refresh's stamps), invalidate.",
                &["operation"],
                &LATENCY_BUCKETS,
            ),
        }
    }
}
