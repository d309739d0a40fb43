//! The entry store: moka with per-entry expiry and a byte weigher, a tag index so an
//! invalidation costs the number of its entries, and sequence numbers so a fill that
//! started before an invalidation of its key or tags never inserts its stale value. With
//! the disk backend it also queues each fill, removal and invalidation for the file, in the
//! order memory saw them (see `disk.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use parking_lot::Mutex;
use serde_json::Value;

use super::disk::{Disk, Pending, Removal};
use super::stats::CacheStats;
use super::weigher::EntryWeigher;
use mcp_bridge_config::{CacheConfig, Eviction};

/// One cached result.
#[derive(Debug)]
pub struct Entry {
    /// The JSON-RPC `result` member, exactly as the server sent it.
    pub result: Arc<Value>,
    pub stored_at: Instant,
    /// Fresh for this long; `None` until evicted or invalidated.
    pub ttl: Option<Duration>,
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
    /// Index tags: `server:…`, `tool:…/…` and the policy's own (`tag:…`).
    pub tags: Vec<String>,
    /// Whether the entry belongs to one principal (then its key carries the partition).
    pub private: bool,
    pub size: u32,
    /// How long the backend took to produce it: what each hit saves.
    pub backend_time: Duration,
    /// The shared tier's stamp when the fill started (its epoch, then the generations of
    /// its dependencies), with which strict mode checks it; `None` without a shared tier.
    pub stamp: Option<Arc<[u64]>>,
    /// The policy generation that decided the fill, so a hit can say which generation's
    /// TTL the entry carries (`filled=` in the cache header); `None` for an entry stored
    /// before the bridge kept it.
    pub filled_generation: Option<u64>,
    /// Where the entry's TTL came from, as its header token (`plugin:flat`,
    /// `config:demo/get_clients`, `server`, …); `None` for an entry stored before the
    /// bridge kept it. Shared with every hit, never copied.
    pub ttl_source: Option<Arc<str>>,
}

impl Entry {
    pub fn age(&self) -> Duration {
        self.stored_at.elapsed()
    }

    pub fn is_fresh(&self) -> bool {
        self.ttl.is_none_or(|ttl| self.age() < ttl)
    }

    /// How long the entry stays fresh from now.
    pub fn remaining(&self) -> Option<Duration> {
        self.ttl.map(|ttl| ttl.saturating_sub(self.age()))
    }

    /// Whether an expired entry may still be served while a refresh runs.
    pub fn within(&self, window: Option<Duration>) -> bool {
        match (self.ttl, window) {
            (Some(ttl), Some(window)) => self.age() < ttl + window,
            _ => false,
        }
    }

    /// How long moka keeps the entry: its TTL plus the longest stale window.
    fn lifetime(&self) -> Option<Duration> {
        let stale = self
            .stale_while_revalidate
            .max(self.stale_if_error)
            .unwrap_or_default();
        self.ttl.map(|ttl| ttl + stale)
    }
}

/// What moka holds for a key: the entry, and which fill made it (the disk backend's
/// record of the key says the same, so a late removal never deletes a newer fill).
#[derive(Clone)]
struct Stored {
    entry: Arc<Entry>,
    fill: u64,
}

struct EntryExpiry;

impl EntryExpiry {
    /// What is left of the entry's lifetime: all of it for a new fill, less for an entry
    /// the disk backend loaded.
    fn remaining(stored: &Stored) -> Option<Duration> {
        stored
            .entry
            .lifetime()
            .map(|lifetime| lifetime.saturating_sub(stored.entry.age()))
    }
}

impl moka::Expiry<Arc<str>, Stored> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        stored: &Stored,
        _now: Instant,
    ) -> Option<Duration> {
        EntryExpiry::remaining(stored)
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        stored: &Stored,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        EntryExpiry::remaining(stored)
    }
}

/// A snapshot taken when a fill starts; see [`Store::insert`]. While any ticket is
/// alive, invalidations are remembered; once none is, the marks are forgotten, which
/// keeps that memory bounded.
#[derive(Debug)]
pub struct FillTicket {
    sequence: u64,
    active: Arc<AtomicUsize>,
}

impl Drop for FillTicket {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The index that must change together with the entries: which keys carry which tag,
/// and when each tag or key was last invalidated.
#[derive(Default)]
struct Index {
    keys_by_tag: HashMap<String, HashSet<Arc<str>>>,
    invalidated_at: HashMap<String, u64>,
    cleared_at: u64,
}

/// Keys moka removed, with the tags they were indexed under.
type RemovalQueue = Arc<Mutex<Vec<(Arc<str>, Vec<String>)>>>;

pub(crate) struct Store {
    entries: moka::sync::Cache<Arc<str>, Stored>,
    index: Mutex<Index>,
    /// Removals moka reported (evictions, expiries). The listener only queues them,
    /// because moka may call it while the index lock is held.
    removed: RemovalQueue,
    sequence: AtomicU64,
    /// Fills in flight (live tickets).
    active_fills: Arc<AtomicUsize>,
    stats: Arc<CacheStats>,
    /// The disk backend's file, when `backend = "disk"`.
    disk: Option<Arc<Disk>>,
}

impl Store {
    pub(crate) fn new(
        config: &CacheConfig,
        stats: Arc<CacheStats>,
        disk: Option<Arc<Disk>>,
    ) -> Store {
        let weigher = EntryWeigher::of(config);
        let removed = RemovalQueue::default();
        let queue = removed.clone();
        let listener_stats = stats.clone();
        let listener_disk = disk.clone();
        let eviction = match config.eviction {
            Eviction::TinyLfu => EvictionPolicy::tiny_lfu(),
            Eviction::Lru => EvictionPolicy::lru(),
        };
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(move |_key: &Arc<str>, stored: &Stored| {
                weigher.weigh(u64::from(stored.entry.size))
            })
            .expire_after(EntryExpiry)
            .eviction_policy(eviction)
            .eviction_listener(
                move |key: Arc<Arc<str>>, stored: Stored, cause: RemovalCause| {
                    if cause == RemovalCause::Replaced {
                        return;
                    }
                    listener_stats.record_removal(cause);
                    // Explicit removals are invalidations, which reach the file on their
                    // own (and wait for it); evictions and expiries are only queued.
                    if let Some(disk) = &listener_disk
                        && matches!(cause, RemovalCause::Size | RemovalCause::Expired)
                    {
                        disk.evicted((*key).clone(), stored.fill);
                    }
                    queue
                        .lock()
                        .push(((*key).clone(), stored.entry.tags.clone()));
                },
            )
            .build();
        Store {
            entries,
            index: Mutex::default(),
            removed,
            sequence: AtomicU64::new(0),
            active_fills: Arc::default(),
            stats,
            disk,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.entries.get(key).map(|stored| stored.entry)
    }

    /// Starts a fill: remembers the invalidation sequence now.
    pub(crate) fn begin_fill(&self) -> FillTicket {
        // Counting first, then reading the sequence (both SeqCst), means an invalidation
        // either sees this fill as active or has already moved the sequence past it.
        self.active_fills.fetch_add(1, Ordering::SeqCst);
        FillTicket {
            sequence: self.sequence.load(Ordering::SeqCst),
            active: self.active_fills.clone(),
        }
    }

    /// Whether the key, one of `tags` or the whole cache was invalidated after `ticket`
    /// was taken.
    fn invalidated_since(index: &Index, ticket: &FillTicket, key: &str, tags: &[String]) -> bool {
        let since = ticket.sequence;
        index.cleared_at > since
            || index.invalidated_at.get(key).is_some_and(|at| *at > since)
            || tags
                .iter()
                .any(|tag| index.invalidated_at.get(tag).is_some_and(|at| *at > since))
    }

    /// Whether a fill that took `ticket` is still current for `key` and `tags`.
    pub(crate) fn is_current(&self, ticket: &FillTicket, key: &str, tags: &[String]) -> bool {
        !Self::invalidated_since(&self.index.lock(), ticket, key, tags)
    }

    /// Inserts unless the key, one of the entry's tags or the whole cache was
    /// invalidated after `ticket` was taken. Returns whether it was inserted.
    pub(crate) fn insert(&self, key: Arc<str>, entry: Entry, ticket: &FillTicket) -> bool {
        let mut index = self.index.lock();
        self.apply_removals(&mut index);
        if Self::invalidated_since(&index, ticket, &key, &entry.tags) {
            self.stats
                .stale_fills_discarded
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let entry = Arc::new(entry);
        let fill = self.disk.as_ref().map_or(0, |disk| disk.next_fill());
        self.index_and_insert(&mut index, key.clone(), entry.clone(), fill);
        // Queued under the index lock, so the file sees fills and invalidations in the order
        // memory did.
        if let Some(disk) = &self.disk {
            disk.put(key, entry, fill);
        }
        true
    }

    /// Puts back an entry the disk backend loaded at startup (it is on disk already).
    pub(crate) fn restore(&self, key: Arc<str>, entry: Entry, fill: u64) {
        let mut index = self.index.lock();
        self.apply_removals(&mut index);
        self.index_and_insert(&mut index, key, Arc::new(entry), fill);
    }

    fn index_and_insert(&self, index: &mut Index, key: Arc<str>, entry: Arc<Entry>, fill: u64) {
        for tag in &entry.tags {
            index
                .keys_by_tag
                .entry(tag.clone())
                .or_default()
                .insert(key.clone());
        }
        self.entries.insert(key, Stored { entry, fill });
    }

    /// Runs moka's pending maintenance (evictions, expiries) now.
    pub(crate) fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks();
    }

    /// Waits, outside the index lock, until the file has the invalidation queued under it.
    fn wait_for_disk(&self, queued: Option<Pending>) {
        if let (Some(disk), Some(queued)) = (&self.disk, queued) {
            disk.wait(queued);
        }
    }

    /// Drops every entry carrying `tag`; returns how many were still cached.
    pub(crate) fn invalidate_tag(&self, tag: &str) -> usize {
        let mut index = self.index.lock();
        self.apply_removals(&mut index);
        self.mark_invalidated(&mut index, tag);
        let keys = index.keys_by_tag.remove(tag).unwrap_or_default();
        // The tag index still holds keys whose entries expired but that moka has not
        // evicted yet (it does so lazily, during its maintenance): those are not counted.
        // `contains_key` judges expiry the way `get` does. Fills wait for the index lock,
        // so no key is added meanwhile.
        let mut dropped = 0;
        for key in &keys {
            dropped += usize::from(self.entries.contains_key(key));
            self.entries.invalidate(key);
        }
        let queued = self
            .disk
            .as_ref()
            .map(|disk| disk.invalidate(Removal::Tag(tag.to_owned())));
        drop(index);
        self.wait_for_disk(queued);
        dropped
    }

    /// Drops one entry without marking anything invalidated (the tag index forgets it
    /// through the removal queue, as for an eviction).
    pub(crate) fn evict(&self, key: &str) {
        self.entries.invalidate(key);
    }

    /// Drops one entry by its exact key.
    pub(crate) fn invalidate_key(&self, key: &str) -> usize {
        let mut index = self.index.lock();
        self.mark_invalidated(&mut index, key);
        let existed = self.entries.contains_key(key);
        self.entries.invalidate(key);
        let queued = self
            .disk
            .as_ref()
            .map(|disk| disk.invalidate(Removal::Key(key.to_owned())));
        drop(index);
        self.wait_for_disk(queued);
        usize::from(existed)
    }

    /// Drops everything; returns how many entries were cached.
    pub(crate) fn clear(&self) -> u64 {
        let mut index = self.index.lock();
        let sequence = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        index.cleared_at = sequence;
        index.keys_by_tag.clear();
        // Marks older than a clear can never matter again.
        index.invalidated_at.clear();
        // moka's `entry_count` lags behind until its maintenance has run (it said 0
        // right after one insert), and it counts expired entries not yet evicted. The
        // iterator sees exactly the live entries. Fills wait for the index lock, so none
        // is added between the count and the clear.
        let count = self.entries.iter().count() as u64;
        self.entries.invalidate_all();
        let queued = self
            .disk
            .as_ref()
            .map(|disk| disk.invalidate(Removal::Clear));
        drop(index);
        self.wait_for_disk(queued);
        count
    }

    /// Records that `tag_or_key` was invalidated now, for fills already running. With
    /// no fill running nothing can be affected, so the marks are dropped instead.
    fn mark_invalidated(&self, index: &mut Index, tag_or_key: &str) {
        let sequence = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        if self.active_fills.load(Ordering::SeqCst) == 0 {
            index.invalidated_at.clear();
            return;
        }
        index.invalidated_at.insert(tag_or_key.to_owned(), sequence);
    }

    /// Forgets removed keys in the tag index.
    fn apply_removals(&self, index: &mut Index) {
        let removed = std::mem::take(&mut *self.removed.lock());
        for (key, tags) in removed {
            // The key may have been filled again since; then it stays indexed.
            if self.entries.contains_key(&*key) {
                continue;
            }
            for tag in tags {
                if let Some(keys) = index.keys_by_tag.get_mut(&tag) {
                    keys.remove(&key);
                    if keys.is_empty() {
                        index.keys_by_tag.remove(&tag);
                    }
                }
            }
        }
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// The weighted size (bytes, with the per-entry floor).
    pub(crate) fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CacheMetrics;
    use mcp_bridge_metrics::Registry;

    fn store() -> Store {
        let config = mcp_bridge_config::load_str("[servers.s]\ncommand = \"x\"\n", "test.toml")
            .unwrap_or_else(|error| panic!("{error}"));
        Store::new(
            &config.cache,
            Arc::new(CacheStats::new(Arc::new(CacheMetrics::register(
                &Registry::new(),
            )))),
            None,
        )
    }

    fn entry(tags: &[&str]) -> Entry {
        Entry {
            result: Arc::new(serde_json::json!({"ok": true})),
            stored_at: Instant::now(),
            ttl: Some(Duration::from_secs(60)),
            stale_while_revalidate: None,
            stale_if_error: None,
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            private: false,
            size: 100,
            backend_time: Duration::from_millis(1),
            stamp: None,
            filled_generation: None,
            ttl_source: None,
        }
    }

    #[test]
    fn a_fill_that_started_before_an_invalidation_is_discarded() {
        let store = store();
        let ticket = store.begin_fill();
        assert_eq!(store.invalidate_tag("server:s"), 0);
        assert!(!store.insert(Arc::from("k1"), entry(&["server:s"]), &ticket));
        assert!(store.get("k1").is_none());
        drop(ticket);
        let fresh = store.begin_fill();
        assert!(store.insert(Arc::from("k1"), entry(&["server:s"]), &fresh));
        assert!(store.get("k1").is_some());
    }

    fn entry_with_ttl(tags: &[&str], ttl: Duration) -> Entry {
        Entry {
            ttl: Some(ttl),
            ..entry(tags)
        }
    }

    #[test]
    fn clear_counts_every_entry_it_dropped() {
        let store = store();
        for round in [1_usize, 10, 0] {
            let ticket = store.begin_fill();
            for index in 0..round {
                let key = Arc::from(format!("k{index}").as_str());
                assert!(store.insert(key, entry(&["server:s"]), &ticket));
            }
            drop(ticket);
            assert_eq!(store.clear(), round as u64, "after {round} inserts");
            assert!(store.get("k0").is_none());
        }
    }

    #[test]
    fn expired_entries_are_not_counted_as_dropped() {
        let store = store();
        let short = Duration::from_millis(30);
        let ticket = store.begin_fill();
        assert!(store.insert(
            Arc::from("old"),
            entry_with_ttl(&["server:s"], short),
            &ticket
        ));
        assert!(store.insert(Arc::from("live"), entry(&["server:s"]), &ticket));
        assert!(store.insert(
            Arc::from("gone"),
            entry_with_ttl(&["server:t"], short),
            &ticket
        ));
        assert!(store.insert(Arc::from("kept"), entry(&["server:t"]), &ticket));
        drop(ticket);
        // Wait out the short TTL without touching the store, whose reads could run its
        // maintenance and evict the expired entries first.
        std::thread::sleep(short * 3);
        assert_eq!(store.invalidate_tag("server:s"), 1);
        assert_eq!(store.clear(), 1, "only `kept` was still cached");
    }

    #[test]
    fn tag_invalidation_drops_only_tagged_entries() {
        let store = store();
        let ticket = store.begin_fill();
        assert!(store.insert(
            Arc::from("a"),
            entry(&["server:s", "name:s/get_tasks"]),
            &ticket
        ));
        assert!(store.insert(
            Arc::from("b"),
            entry(&["server:s", "name:s/get_clients"]),
            &ticket
        ));
        drop(ticket);
        assert_eq!(store.invalidate_tag("name:s/get_tasks"), 1);
        assert!(store.get("a").is_none());
        assert!(store.get("b").is_some());
        assert_eq!(store.invalidate_tag("server:s"), 1);
        assert!(store.get("b").is_none());
        let ticket = store.begin_fill();
        store.clear();
        assert!(
            !store.insert(Arc::from("c"), entry(&[]), &ticket),
            "a clear discards fills in flight"
        );
    }
}
