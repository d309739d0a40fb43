//! The backend layer's metrics: processes by state, in-flight calls, queueing, spawns,
//! restarts, hung processes, errors and health, all labelled by server.

use mcp_bridge_metrics::Registry;
use prometheus::{IntCounterVec, IntGaugeVec};

/// Process states reported by `mcp_bridge_pool_processes{state}`.
pub const PROCESS_STATES: [&str; 4] = ["starting", "ready", "probing", "draining"];

/// What the pools and their processes report. Shared by every pool (cloning a collector
/// is cheap: they are `Arc`s inside).
pub struct PoolMetrics {
    pub pool_processes: IntGaugeVec,
    pub pool_inflight: IntGaugeVec,
    pub pool_queue_depth: IntGaugeVec,
    pub pool_spawns_total: IntCounterVec,
    pub pool_restarts_total: IntCounterVec,
    pub pool_spawn_failures_total: IntCounterVec,
    pub pool_unresponsive_total: IntCounterVec,
    pub backend_errors_total: IntCounterVec,
    pub health_status: IntGaugeVec,
    pub pool_evictions_total: IntCounterVec,
    pub pool_groups: IntGaugeVec,
    pub pool_groups_reaped_total: IntCounterVec,
    pub processes_total: prometheus::IntGauge,
    pub backend_resident_bytes: IntGaugeVec,
    pub backend_cpu_seconds_total: prometheus::CounterVec,
    pub pool_memory_recycles_total: IntCounterVec,
}

impl PoolMetrics {
    /// Registers this layer's metrics. Call once per registry: a second call is a
    /// programming error (the names are taken) and panics.
    pub fn register(registry: &Registry) -> PoolMetrics {
        PoolMetrics {
            pool_processes: registry.gauge_vec(
                    "pool_processes",
                    "Backend processes by server and state (starting, ready, draining).",
                    &["server", "state"],
                ),
            pool_inflight: registry.gauge_vec(
                    "pool_inflight",
                    "Requests currently in flight on a server's processes.",
                    &["server"],
                ),
            pool_queue_depth: registry.gauge_vec(
                    "pool_queue_depth",
                    "Calls waiting for a free slot because every process is at max_inflight.",
                    &["server"],
                ),
            pool_spawns_total: registry.counter_vec(
                    "pool_spawns_total",
                    "Backend processes spawned and initialized successfully.",
                    &["server"],
                ),
            pool_restarts_total: registry.counter_vec(
                    "pool_restarts_total",
                    "Backend processes that died or failed health checks and were replaced.",
                    &["server"],
                ),
            pool_spawn_failures_total: registry.counter_vec(
                    "pool_spawn_failures_total",
                    "Spawn or initialize attempts that failed.",
                    &["server"],
                ),
            pool_unresponsive_total: registry.counter_vec(
                    "pool_unresponsive_total",
                    "Processes taken out of service for request timeouts in a row (reason=timeouts) or for writing nothing while calls waited (reason=stalled), by the probe's outcome: recovered (answered the ping, serving again) or replaced (killed).",
                    &["server", "reason", "outcome"],
                ),
            backend_errors_total: registry.counter_vec(
                    "backend_errors_total",
                    "Backend faults by kind (exited, timeout, pool_exhausted, oversized_line, non_json, unknown_id, ...).",
                    &["server", "kind"],
                ),
            health_status: registry.gauge_vec(
                    "health_status",
                    "Server health: 2 healthy, 1 degraded, 0 unhealthy.",
                    &["server"],
                ),
            pool_evictions_total: registry.counter_vec(
                    "pool_evictions_total",
                    "Idle processes of principal- or session-isolated servers drained and stopped to make room at max_total_processes or [processes] max_total.",
                    &["server"],
                ),
            pool_groups: registry.gauge_vec(
                    "pool_groups",
                    "Principals or sessions holding processes of an isolated server.",
                    &["server"],
                ),
            pool_groups_reaped_total: registry.counter_vec(
                    "pool_groups_reaped_total",
                    "Principals' or sessions' process groups of an isolated server that were dropped, by reason: idle (every process stopped after idle_timeout or eviction) or session_closed (a DELETE ended the session).",
                    &["server", "reason"],
                ),
            processes_total: registry.gauge(
                    "backend_processes",
                    "Backend processes of every server, counted against [processes] max_total.",
                ),
            backend_resident_bytes: registry.gauge_vec(
                    "backend_resident_bytes",
                    "Resident memory of a server's live processes (each server command's own process, from /proc, sampled every second).",
                    &["server"],
                ),
            backend_cpu_seconds_total: registry.float_counter_vec(
                    "backend_cpu_seconds_total",
                    "CPU time (user and system) a server's processes have used, from /proc, sampled every second.",
                    &["server"],
                ),
            pool_memory_recycles_total: registry.counter_vec(
                    "pool_memory_recycles_total",
                    "Processes drained and replaced because their resident memory passed max_process_memory.",
                    &["server"],
                ),
        }
    }

    /// Creates a server's per-server counters at zero when its pool starts. A counter that
    /// first appears already at 1 hides that first event from Prometheus's `rate` and
    /// `increase` (they need an earlier sample), so a server's first restart or failed spawn
    /// would never show on the dashboard or count toward the spawn-failure alert; the same
    /// holds for a server's first CPU second.
    pub fn init_server(&self, server: &str) {
        for counter in [
            &self.pool_spawns_total,
            &self.pool_restarts_total,
            &self.pool_spawn_failures_total,
            &self.pool_memory_recycles_total,
        ] {
            counter.with_label_values(&[server]);
        }
        // The CPU counter is a float counter of its own type; a server's first CPU second
        // needs the same earlier zero sample to show in `rate`.
        self.backend_cpu_seconds_total.with_label_values(&[server]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_counters_exist_at_zero_from_its_start() {
        let registry = Registry::new();
        let metrics = PoolMetrics::register(&registry);
        metrics.init_server("demo");
        let text = registry.render();
        for name in [
            "pool_spawns_total",
            "pool_restarts_total",
            "pool_spawn_failures_total",
            "pool_memory_recycles_total",
            "backend_cpu_seconds_total",
        ] {
            assert!(
                text.contains(&format!("mcp_bridge_{name}{{server=\"demo\"}} 0")),
                "{name}: {text}"
            );
        }
    }
}
