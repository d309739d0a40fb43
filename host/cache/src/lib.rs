//! The read-through response cache: entries by canonical key with per-entry TTL, a tag
//! index for invalidation, generation checks against stale fills, single-flight, and
//! counters. It knows nothing about policies, WASM, HTTP or processes: the router asks
//! the policy, then tells the cache what to do. With `backend = "disk"` the entries also
//! live in a file that a restart loads again (`disk.rs`).

pub mod codec;
mod disk;
mod error;
mod flight;
mod key;
mod metrics;
mod stats;
mod store;
mod weigher;

use std::sync::Arc;

use serde_json::Value;

pub use disk::{
    DISK_CLOSE_TIMEOUT, DISK_CORRUPT_SUFFIX, DISK_DISCARD_SUFFIX, DISK_INVALIDATION_TIMEOUT,
    DISK_QUEUE_CAPACITY,
};
pub use error::CacheError;
pub use flight::{Audience, FillStamp, FlightResult, Leader, Published, Role};
pub use key::{cache_key, canonical_arguments, canonical_json, key_arguments, keyed_call};
pub use metrics::CacheMetrics;
pub use stats::{InvalidationReason, Served};
pub use store::{Entry, FillTicket};
pub use weigher::EntryWeigher;

use disk::Disk;
use flight::Flights;
use mcp_bridge_config::{CACHE_BACKEND_DISK, CACHE_BACKEND_MEMORY, CacheBackend, CacheConfig};
use mcp_bridge_policy::Invalidation;
use stats::CacheStats;
use store::Store;

/// The index tag every entry of a server carries.
pub fn server_tag(server: &str) -> String {
    format!("server:{server}")
}

/// The index tag of a server's tool, resource URI or list method.
pub fn name_tag(server: &str, name: &str) -> String {
    format!("name:{server}/{name}")
}

/// The index tag for a policy's own tag (kept apart from the built-in ones).
pub fn policy_tag(tag: &str) -> String {
    format!("tag:{tag}")
}

/// How an exact key is named among dependencies (tags name the rest).
const KEY_DEPENDENCY_PREFIX: &str = "key:";

/// The dependency of one exact cache key: what a `Key` invalidation names.
pub fn key_dependency(key: &str) -> String {
    format!("{KEY_DEPENDENCY_PREFIX}{key}")
}

/// What an invalidation names, as one dependency: an index tag or a key. The shared tier
/// keeps a generation per dependency; this replica drops entries by it.
pub fn dependency_of(invalidation: &Invalidation) -> String {
    match invalidation {
        Invalidation::Server(server) => server_tag(server),
        Invalidation::Tool { server, tool } => name_tag(server, tool),
        Invalidation::Tag(tag) => policy_tag(tag),
        Invalidation::Key(key) => key_dependency(key),
    }
}

pub struct ResponseCache {
    store: Store,
    flights: Arc<Flights>,
    /// Keys whose last result could not be cached ("hit-for-miss"): their callers skip
    /// the single-flight queue for a while instead of waiting behind a fill in vain.
    uncacheable: moka::sync::Cache<Arc<str>, ()>,
    stats: Arc<CacheStats>,
    max_waiters: usize,
    /// The disk backend's file, when `backend = "disk"`.
    disk: Option<Arc<Disk>>,
}

impl ResponseCache {
    /// A cache in memory only, whatever `config.backend` says (see [`ResponseCache::open`]).
    pub fn new(config: &CacheConfig, metrics: Arc<CacheMetrics>) -> ResponseCache {
        ResponseCache::with_disk(config, metrics, None)
    }

    /// The cache `config.backend` asks for. For the disk backend: opens (or creates) the
    /// file, setting an unusable one aside, and loads its unexpired entries. Fails only
    /// when the file's directory or the file cannot be used at all.
    pub fn open(
        config: &CacheConfig,
        metrics: Arc<CacheMetrics>,
    ) -> Result<ResponseCache, CacheError> {
        let path = match &config.backend {
            CacheBackend::Memory => return Ok(ResponseCache::new(config, metrics)),
            CacheBackend::Disk { path } => path,
        };
        let disk = Arc::new(Disk::open(path, metrics.clone())?);
        let cache = ResponseCache::with_disk(config, metrics, Some(disk.clone()));
        disk.load(|key, entry, fill| cache.store.restore(key, entry, fill));
        // Applies the bounds to what was loaded now, so the file's excess goes at once.
        cache.store.run_pending_tasks();
        Ok(cache)
    }

    fn with_disk(
        config: &CacheConfig,
        metrics: Arc<CacheMetrics>,
        disk: Option<Arc<Disk>>,
    ) -> ResponseCache {
        let stats = Arc::new(CacheStats::new(metrics));
        ResponseCache {
            disk: disk.clone(),
            store: Store::new(config, stats.clone(), disk),
            flights: Arc::default(),
            uncacheable: moka::sync::Cache::builder()
                .max_capacity(config.max_entries)
                .time_to_live(
                    config
                        .hit_for_miss_ttl
                        .max(std::time::Duration::from_millis(1)),
                )
                .build(),
            stats,
            max_waiters: config.max_coalesced_waiters,
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.store.get(key)
    }

    /// Joins the fill of `key`, unless the key is known to be uncacheable lately.
    pub fn join(&self, key: &Arc<str>) -> Role {
        if self.uncacheable.contains_key(key) {
            return Role::Overflow;
        }
        self.flights.join(key, self.max_waiters)
    }

    pub fn begin_fill(&self) -> FillTicket {
        self.store.begin_fill()
    }

    pub fn insert(&self, key: Arc<str>, entry: Entry, ticket: &FillTicket) -> bool {
        self.store.insert(key, entry, ticket)
    }

    pub fn mark_uncacheable(&self, key: Arc<str>) {
        self.uncacheable.insert(key, ());
    }

    pub fn record(&self, served: Served) {
        self.stats.record(served);
    }

    pub fn record_saved(&self, entry: &Entry) {
        self.stats.record_saved(entry.backend_time);
    }

    /// Whether invalidations wait for a disk write (the disk backend): callers on an async
    /// runtime then apply them off its worker threads.
    pub fn invalidations_block(&self) -> bool {
        self.disk.is_some()
    }

    /// Applies one invalidation; returns how many entries it dropped.
    pub fn invalidate(&self, invalidation: &Invalidation, reason: InvalidationReason) -> usize {
        self.invalidate_dependency(&dependency_of(invalidation), reason)
    }

    /// Drops every entry depending on `dependency` (a tag, or a key named by
    /// [`key_dependency`]); returns how many were cached.
    pub fn invalidate_dependency(&self, dependency: &str, reason: InvalidationReason) -> usize {
        self.stats.record_invalidation(reason);
        match dependency.strip_prefix(KEY_DEPENDENCY_PREFIX) {
            Some(key) => self.store.invalidate_key(key),
            None => self.store.invalidate_tag(dependency),
        }
    }

    /// Drops one entry found out of date (not an invalidation: nothing else is affected).
    pub fn evict(&self, key: &str) {
        self.store.evict(key);
    }

    /// Whether a fill that took `ticket` may still publish its result as current: neither
    /// its key, one of its tags, nor the whole cache was invalidated since.
    pub fn is_current(&self, ticket: &FillTicket, key: &str, tags: &[String]) -> bool {
        self.store.is_current(ticket, key, tags)
    }

    pub fn clear(&self) -> u64 {
        self.clear_for(InvalidationReason::Admin)
    }

    /// Drops everything, counted under `reason`.
    pub fn clear_for(&self, reason: InvalidationReason) -> u64 {
        self.stats.record_invalidation(reason);
        self.store.clear()
    }

    /// Writes what the disk backend still has queued and stops its writer (bounded by
    /// [`DISK_CLOSE_TIMEOUT`]); call once serving has stopped. Later fills stay in memory
    /// only. Nothing to do for the memory backend.
    pub fn close(&self) {
        if let Some(disk) = &self.disk {
            disk.close();
        }
    }

    /// The `/admin/cache/stats` body: the counters, the backend, and for the disk backend
    /// its file and writes.
    pub fn stats(&self) -> Value {
        let mut stats = self
            .stats
            .snapshot(self.store.entry_count(), self.store.weighted_size());
        if let Some(object) = stats.as_object_mut() {
            let backend = match &self.disk {
                Some(_) => CACHE_BACKEND_DISK,
                None => CACHE_BACKEND_MEMORY,
            };
            object.insert("backend".into(), Value::from(backend));
            if let Some(disk) = &self.disk {
                object.insert("disk".into(), disk.stats());
            }
        }
        stats
    }
}
