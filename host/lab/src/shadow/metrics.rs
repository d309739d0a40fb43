//! The shadow evaluator's metrics. Per-row counters (`candidate` is a configured
//! candidate's name, `production` for what the live cache did, `production-simulated`
//! for the production chain in a simulated cache), so ratios are computed in PromQL.

use mcp_bridge_metrics::Registry;
use prometheus::{CounterVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use crate::results::ReplayMetrics;

pub struct ShadowMetrics {
    pub calls_total: IntCounter,
    pub dropped_total: IntCounter,
    pub queue_depth: IntGauge,
    pub window_resets_total: IntCounter,
    pub reads_total: IntCounterVec,
    pub hits_total: IntCounterVec,
    pub stale_hits_total: IntCounterVec,
    pub backend_calls_total: IntCounterVec,
    pub backend_saved_seconds_total: CounterVec,
    pub quarantined: IntGaugeVec,
    pub truth_samples_total: IntCounterVec,
}

impl ShadowMetrics {
    pub fn register(registry: &Registry) -> ShadowMetrics {
        let row = &["candidate"];
        ShadowMetrics {
            calls_total: registry.counter(
                "shadow_calls_total",
                "Answered calls the shadow evaluator replayed against every candidate.",
            ),
            dropped_total: registry.counter(
                "shadow_dropped_total",
                "Answered calls the shadow evaluator dropped because it fell behind; the calls themselves were answered.",
            ),
            queue_depth: registry.gauge(
                "shadow_queue_depth",
                "Answered calls waiting for the shadow evaluator.",
            ),
            window_resets_total: registry.counter(
                "shadow_window_resets_total",
                "Times the shadow evaluator emptied every simulated cache because it saw more distinct keys than [lab.shadow] max_keys.",
            ),
            reads_total: registry.counter_vec(
                "shadow_reads_total",
                "Reads (calls a cache could answer) evaluated, by candidate.",
                row,
            ),
            hits_total: registry.counter_vec(
                "shadow_hits_total",
                "Reads the candidate's cache would have answered (for `production`: did answer).",
                row,
            ),
            stale_hits_total: registry.counter_vec(
                "shadow_stale_hits_total",
                "Hits known to be stale: the backend's answer at that moment (a miss's, or a truth sample's) differed.",
                row,
            ),
            backend_calls_total: registry.counter_vec(
                "shadow_backend_calls_total",
                "Calls that would have reached the backend (misses, bypasses and writes).",
                row,
            ),
            backend_saved_seconds_total: registry.float_counter_vec(
                "shadow_backend_saved_seconds_total",
                "Backend time the candidate's hits would have avoided.",
                row,
            ),
            quarantined: registry.gauge_vec(
                "shadow_quarantined",
                "1 while a candidate plugin is quarantined in the shadow (production is never affected).",
                row,
            ),
            truth_samples_total: registry.counter_vec(
                "shadow_truth_samples_total",
                "Cache hits sent to the backend again to learn their truth, by result: fresh, stale, failed, skipped (too many running).",
                &["result"],
            ),
        }
    }

    /// Truth samples that ended with `result` (fresh, stale, failed or skipped).
    pub fn truth_samples(&self, result: &str) -> u64 {
        self.truth_samples_total.with_label_values(&[result]).get()
    }

    /// Adds what a row counted since `before` (its counts when last published).
    pub fn publish(
        &self,
        row: &str,
        before: &ReplayMetrics,
        now: &ReplayMetrics,
        saved_us: (u64, u64),
    ) {
        let labels = &[row];
        let grow = |counter: &IntCounterVec, old: u64, new: u64| {
            counter
                .with_label_values(labels)
                .inc_by(new.saturating_sub(old));
        };
        grow(&self.reads_total, before.reads, now.reads);
        grow(&self.hits_total, before.hits, now.hits);
        grow(&self.stale_hits_total, before.stale_hits, now.stale_hits);
        grow(
            &self.backend_calls_total,
            before.backend_calls,
            now.backend_calls,
        );
        let (old, new) = saved_us;
        self.backend_saved_seconds_total
            .with_label_values(labels)
            .inc_by(new.saturating_sub(old) as f64 / 1e6);
    }
}
