//! Cache counters for `/admin/cache/stats` (the seed's `get_stats()`) and Prometheus.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::notification::RemovalCause;
use serde_json::{Value, json};

use crate::CacheMetrics;

/// How a cacheable request was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Hit,
    Miss,
    Stale,
    Bypass,
    Coalesced,
}

impl Served {
    fn label(self) -> &'static str {
        match self {
            Served::Hit => "hit",
            Served::Miss => "miss",
            Served::Stale => "stale",
            Served::Bypass => "bypass",
            Served::Coalesced => "coalesced",
        }
    }
}

/// Why entries were invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidationReason {
    Write,
    ListChanged,
    ResourceUpdated,
    Admin,
    /// Another replica's write, heard on the shared tier's broadcast.
    Remote,
    /// The shared tier's broadcast may have been missed: the first level was dropped.
    Resync,
}

impl InvalidationReason {
    fn label(self) -> &'static str {
        match self {
            InvalidationReason::Write => "write",
            InvalidationReason::ListChanged => "list_changed",
            InvalidationReason::ResourceUpdated => "resource_updated",
            InvalidationReason::Admin => "admin",
            InvalidationReason::Remote => "remote",
            InvalidationReason::Resync => "resync",
        }
    }
}

pub(crate) struct CacheStats {
    metrics: Arc<CacheMetrics>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    bypass: AtomicU64,
    coalesced: AtomicU64,
    evicted_size: AtomicU64,
    expired: AtomicU64,
    invalidated_entries: AtomicU64,
    saved_micros: AtomicU64,
    pub stale_fills_discarded: AtomicU64,
}

impl CacheStats {
    pub(crate) fn new(metrics: Arc<CacheMetrics>) -> CacheStats {
        CacheStats {
            metrics,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            bypass: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            evicted_size: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            invalidated_entries: AtomicU64::new(0),
            saved_micros: AtomicU64::new(0),
            stale_fills_discarded: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, served: Served) {
        let counter = match served {
            Served::Hit => &self.hits,
            Served::Miss => &self.misses,
            Served::Stale => &self.stale,
            Served::Bypass => &self.bypass,
            Served::Coalesced => &self.coalesced,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .cache_requests_total
            .with_label_values(&[served.label()])
            .inc();
    }

    /// A hit saved the backend the time the entry took to fill.
    pub(crate) fn record_saved(&self, backend_time: Duration) {
        self.saved_micros
            .fetch_add(backend_time.as_micros() as u64, Ordering::Relaxed);
        self.metrics
            .cache_backend_seconds_saved_total
            .inc_by(backend_time.as_secs_f64());
    }

    pub(crate) fn record_removal(&self, cause: RemovalCause) {
        let (counter, label) = match cause {
            RemovalCause::Size => (&self.evicted_size, "size"),
            RemovalCause::Expired => (&self.expired, "expired"),
            RemovalCause::Explicit | RemovalCause::Replaced => {
                (&self.invalidated_entries, "explicit")
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .cache_evictions_total
            .with_label_values(&[label])
            .inc();
    }

    pub(crate) fn record_invalidation(&self, reason: InvalidationReason) {
        self.metrics
            .cache_invalidations_total
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// The `/admin/cache/stats` body.
    pub(crate) fn snapshot(&self, entries: u64, bytes: u64) -> Value {
        self.metrics.cache_entries.set(entries as i64);
        self.metrics.cache_bytes.set(bytes as i64);
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (hits, misses, stale) = (load(&self.hits), load(&self.misses), load(&self.stale));
        let served = hits + stale;
        let lookups = served + misses;
        json!({
            "hits": hits,
            "misses": misses,
            "stale_served": stale,
            "bypass": load(&self.bypass),
            "coalesced": load(&self.coalesced),
            "hit_rate": if lookups == 0 { 0.0 } else { served as f64 / lookups as f64 },
            "entries": entries,
            "bytes": bytes,
            "evictions": { "size": load(&self.evicted_size), "expired": load(&self.expired), "explicit": load(&self.invalidated_entries) },
            "stale_fills_discarded": load(&self.stale_fills_discarded),
            "backend_seconds_saved": load(&self.saved_micros) as f64 / 1e6,
        })
    }
}
