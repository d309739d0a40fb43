//! The read-through response cache: entries by canonical key with per-entry TTL, a tag
//! index for invalidation, generation checks against stale fills, single-flight, and
//! counters. It knows nothing about policies, WASM, HTTP or processes: the router asks
//! the policy, then tells the cache what to do.

pub mod codec;
mod flight;
mod key;
mod metrics;
mod stats;
mod store;

use std::sync::Arc;

use serde_json::Value;

pub use flight::{Audience, FillStamp, FlightResult, Leader, Published, Role};
pub use key::{cache_key, canonical_arguments, canonical_json};
pub use metrics::CacheMetrics;
pub use stats::{InvalidationReason, Served};
pub use store::{Entry, FillTicket};

use flight::Flights;
use mcp_bridge_config::CacheConfig;
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
}

impl ResponseCache {
    pub fn new(config: &CacheConfig, metrics: Arc<CacheMetrics>) -> ResponseCache {
        let stats = Arc::new(CacheStats::new(metrics));
        ResponseCache {
            store: Store::new(config, stats.clone()),
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

    /// The `/admin/cache/stats` body.
    pub fn stats(&self) -> Value {
        self.stats
            .snapshot(self.store.entry_count(), self.store.weighted_size())
    }
}
