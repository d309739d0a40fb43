//! The cache layer's metrics: lookups by result, evictions, invalidations, size, the
//! backend time hits saved, and the disk backend's writes.

use mcp_bridge_metrics::Registry;
use prometheus::{Counter, IntCounterVec, IntGauge};

/// What the response cache reports.
pub struct CacheMetrics {
    pub cache_requests_total: IntCounterVec,
    pub cache_evictions_total: IntCounterVec,
    pub cache_invalidations_total: IntCounterVec,
    pub cache_backend_seconds_saved_total: Counter,
    pub cache_entries: IntGauge,
    pub cache_bytes: IntGauge,
    pub cache_disk_writes_total: IntCounterVec,
    pub cache_disk_write_errors_total: IntCounterVec,
    pub cache_disk_dropped_writes_total: IntCounterVec,
    pub cache_disk_loaded_entries: IntGauge,
}

impl CacheMetrics {
    /// Registers this layer's metrics. Call once per registry: a second call is a
    /// programming error (the names are taken) and panics.
    pub fn register(registry: &Registry) -> CacheMetrics {
        CacheMetrics {
            cache_requests_total: registry.counter_vec(
                    "cache_requests_total",
                    "Cacheable requests by result: hit, miss, stale (served expired), bypass (policy said no), coalesced (waited for another caller's fill).",
                    &["result"],
                ),
            cache_evictions_total: registry.counter_vec(
                    "cache_evictions_total",
                    "Entries removed by cause: size, expired, explicit (invalidated).",
                    &["cause"],
                ),
            cache_invalidations_total: registry.counter_vec(
                    "cache_invalidations_total",
                    "Invalidations by reason: write (a call's rules), list_changed, resource_updated, admin.",
                    &["reason"],
                ),
            cache_backend_seconds_saved_total: registry.float_counter(
                    "cache_backend_seconds_saved_total",
                    "Backend time the cache hits saved, from each entry's fill time.",
                ),
            cache_entries: registry.gauge(
                    "cache_entries",
                    "Entries in the cache.",
                ),
            cache_bytes: registry.gauge(
                    "cache_bytes",
                    "Weighted size of the cache in bytes.",
                ),
            cache_disk_writes_total: registry.counter_vec(
                    "cache_disk_writes_total",
                    "Changes the disk backend committed to its file, by op: put (a fill), evict (an eviction or expiry), invalidate, clear.",
                    &["op"],
                ),
            cache_disk_write_errors_total: registry.counter_vec(
                    "cache_disk_write_errors_total",
                    "Disk backend failures by kind: commit (a transaction failed), timeout (an invalidation was not committed in time, so the file is discarded at the next start).",
                    &["kind"],
                ),
            cache_disk_dropped_writes_total: registry.counter_vec(
                    "cache_disk_dropped_writes_total",
                    "Fills (put) and eviction removals (evict) the disk backend did not write: its queue was full, a commit failed, or the file is marked for discarding. Invalidations are never dropped.",
                    &["op"],
                ),
            cache_disk_loaded_entries: registry.gauge(
                    "cache_disk_loaded_entries",
                    "Entries the disk backend loaded from its file at startup.",
                ),
        }
    }
}
