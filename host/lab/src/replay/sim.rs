//! The simulated cache of one replay: `serve`'s cache store (moka 0.12) in virtual time.
//!
//! It bounds entries as the store does: each weighs its result's JSON size, at least
//! `max_bytes / max_entries` (the cache crate's [`EntryWeigher`], the store's own weigher),
//! and the weights of the admitted entries add up to at most `max_bytes`.
//!
//! Like moka, it keeps two things apart: the map a lookup reads, which a fill enters and an
//! invalidation leaves at once, and the eviction policy, which learns of lookups and fills
//! in batches. A batch ("maintenance") runs before a lookup once 64 lookups wait, before a
//! fill or an invalidation once 64 of those wait, or before any of them 300 ms (virtual)
//! after the last batch; it then, in moka's order:
//!
//! 1. counts the waiting lookups in the frequency sketch ([`FrequencySketch`], counting only
//!    once the cache is half full) and moves the entries they found to the most recently
//!    used end;
//! 2. applies the waiting fills: an entry already admitted is updated (its new weight, the
//!    most recently used end); a new one is admitted if it fits, refused if it outweighs the
//!    whole cache, and otherwise, with `eviction = "tinylfu"`, admitted only if its estimated
//!    frequency is strictly above the summed frequencies of the least recently used entries
//!    whose weights cover its own (which are then evicted), else dropped from the map; with
//!    `"lru"` it is admitted;
//! 3. drops the entries whose lifetime ended (the TTL plus the longest stale window, as the
//!    store's expiry says);
//! 4. evicts the least recently used entries while the weights exceed the budget.
//!
//! So, as in `serve`, a new entry is served until the next batch refuses it, an entry past
//! its TTL stays in the map until the next batch, and a fill that finds its key still there
//! updates it without admission. moka 0.12 has one least-recently-used list (its
//! "probation" queue): no admission window and no protected segment; W-TinyLFU is on its
//! roadmap, not in the version the bridge runs. Server, tool and tag indexes make an
//! invalidation cost the number of entries it drops, as in the real cache.
//!
//! What it does not copy: the sketch hashes keys its own way (moka seeds its hashes per
//! process, so its collisions cannot be reproduced), and moka's batches follow wall time
//! and threads where these follow the trace's clock and order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::sketch::{FrequencySketch, hash_key};
use crate::loaded::Trace;
use mcp_bridge_cache::EntryWeigher;
use mcp_bridge_config::{CacheConfig, Eviction};
use mcp_bridge_policy::Invalidation;

/// The end of the recency list.
const NIL: u32 = u32::MAX;

/// One cached result, in virtual time.
#[derive(Debug, Clone)]
pub struct SimEntry {
    pub digest: u64,
    pub stored_at: u64,
    /// When the entry stops being fresh; `u64::MAX` for an entry without a TTL.
    pub expires_at: u64,
    /// When the store drops it: `expires_at` plus the longest stale window (`u64::MAX`
    /// without a TTL). Until then it takes room, and a lookup still counts as its use.
    pub kept_until: u64,
    /// The result's JSON size, which its weight comes from.
    pub bytes: u64,
    pub server: u32,
    pub name: u32,
    /// The policy's own tags, interned by the cache.
    pub tags: Vec<u32>,
}

/// What bounds a simulated cache: `[cache] max_bytes`, `max_entries` and `eviction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimLimits {
    pub max_bytes: u64,
    pub max_entries: u64,
    pub eviction: Eviction,
}

impl SimLimits {
    /// The bounds of a bridge config's `[cache]`.
    pub fn of(config: &CacheConfig) -> SimLimits {
        SimLimits {
            max_bytes: config.max_bytes,
            max_entries: config.max_entries,
            eviction: config.eviction,
        }
    }

    /// No bound at all: nothing is ever evicted.
    pub fn unbounded() -> SimLimits {
        SimLimits {
            max_bytes: u64::MAX,
            max_entries: u64::MAX,
            eviction: Eviction::TinyLfu,
        }
    }

    /// The same bounds with another byte budget (the entry cap and eviction stay).
    pub fn with_max_bytes(self, max_bytes: u64) -> SimLimits {
        SimLimits {
            max_bytes: max_bytes.max(1),
            ..self
        }
    }

    /// How entries weigh against `max_bytes`: the production store's weigher.
    pub fn weigher(&self) -> EntryWeigher {
        EntryWeigher::new(self.max_bytes, self.max_entries)
    }
}

/// How many lookups, or fills and invalidations, wait before a batch runs (moka's flush
/// points).
const BATCH_OPERATIONS: usize = 64;
/// How long after a batch the next one runs anyway, in microseconds (moka's 300 ms).
const BATCH_INTERVAL_US: u64 = 300_000;

/// A cache bounded by weight, evicting as the production store does (see the module
/// documentation).
pub struct SimCache {
    limits: SimLimits,
    weigher: EntryWeigher,
    /// The map lookups read: admitted entries and fills waiting for the next batch.
    entries: Vec<Option<SimEntry>>,
    /// Whether a key's entry was admitted by the policy (else its fill is waiting).
    admitted: Vec<bool>,
    /// Each admitted entry's weight, by key.
    weights: Vec<u32>,
    /// The recency list of admitted entries: `newer[key]` and `older[key]`. The oldest
    /// entry is the first victim.
    newer: Vec<u32>,
    older: Vec<u32>,
    newest: u32,
    oldest: u32,
    len: u64,
    bytes: u64,
    weighted: u64,
    sketch: FrequencySketch,
    /// Lookups since the last batch: the key, and whether it found an entry.
    lookups: Vec<(u32, bool)>,
    /// Fills since the last batch, by key, in order.
    fills: Vec<u32>,
    /// Fills and invalidations since the last batch.
    writes: usize,
    /// When the next batch runs at the latest; `None` before the first operation.
    next_batch: Option<u64>,
    /// The latest time an operation gave.
    now: u64,
    /// When admitted entries end their lifetime: (`kept_until`, key), soonest first. An
    /// item whose entry was replaced or removed since is skipped when it comes up.
    lifetimes: BinaryHeap<Reverse<(u64, u32)>>,
    /// The victims an admission is weighing, kept to reuse its allocation.
    victims: Vec<u32>,
    by_server: HashMap<u32, HashSet<u32>>,
    by_tool: HashMap<(u32, u32), HashSet<u32>>,
    by_tag: HashMap<u32, HashSet<u32>>,
    tag_ids: HashMap<String, u32>,
    pub peak_entries: u64,
    pub peak_bytes: u64,
    /// Entries dropped for room, counting the fills admission refused (moka counts both
    /// as evictions for size).
    pub evictions: u64,
    /// Of `evictions`, the fills that were never admitted.
    pub refused: u64,
    pub invalidated: u64,
}

impl SimCache {
    /// An empty cache for `keys` distinct keys (more may come: see [`SimCache::grow`])
    /// bounded by `limits`.
    pub fn new(keys: u32, limits: SimLimits) -> SimCache {
        let limits = limits.with_max_bytes(limits.max_bytes);
        let mut cache = SimCache {
            limits,
            weigher: limits.weigher(),
            entries: Vec::new(),
            admitted: Vec::new(),
            weights: Vec::new(),
            newer: Vec::new(),
            older: Vec::new(),
            newest: NIL,
            oldest: NIL,
            len: 0,
            bytes: 0,
            weighted: 0,
            sketch: FrequencySketch::default(),
            lookups: Vec::with_capacity(BATCH_OPERATIONS),
            fills: Vec::with_capacity(BATCH_OPERATIONS),
            writes: 0,
            next_batch: None,
            now: 0,
            lifetimes: BinaryHeap::new(),
            victims: Vec::new(),
            by_server: HashMap::new(),
            by_tool: HashMap::new(),
            by_tag: HashMap::new(),
            tag_ids: HashMap::new(),
            peak_entries: 0,
            peak_bytes: 0,
            evictions: 0,
            refused: 0,
            invalidated: 0,
        };
        cache.grow(keys);
        cache
    }

    pub fn limits(&self) -> SimLimits {
        self.limits
    }

    /// Admitted entries, as moka counts them.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The admitted results' JSON sizes, summed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The admitted entries' weights, summed: what `max_bytes` bounds.
    pub fn weighted_size(&self) -> u64 {
        self.weighted
    }

    /// The fresh entry for `key` at `now`, if the map has one. The lookup waits for the
    /// next batch to count towards the key's frequency (found or not) and to make a found
    /// entry the most recently used. An entry past its TTL but within its stale window
    /// counts as found, as the store keeps it, yet is not returned (`serve` calls the
    /// backend); one past its lifetime is not found.
    pub fn get(&mut self, key: u32, now: u64) -> Option<&SimEntry> {
        self.before_operation(now, self.lookups.len() >= BATCH_OPERATIONS);
        let (found, fresh) = match self.entries.get(key as usize).and_then(Option::as_ref) {
            Some(entry) if entry.kept_until > now => (true, entry.expires_at > now),
            _ => (false, false),
        };
        self.lookups.push((key, found));
        if !fresh {
            return None;
        }
        self.entries[key as usize].as_ref()
    }

    /// Makes room for keys up to `keys` (a shaped key the replay made beyond the trace's,
    /// or a key a live evaluator saw for the first time).
    pub fn grow(&mut self, keys: u32) {
        let keys = keys as usize;
        if keys > self.entries.len() {
            self.entries.resize(keys, None);
            self.admitted.resize(keys, false);
            self.weights.resize(keys, 0);
            self.newer.resize(keys, NIL);
            self.older.resize(keys, NIL);
        }
    }

    /// The interned id of a policy tag.
    pub fn tag_id(&mut self, tag: &str) -> u32 {
        let next = u32::try_from(self.tag_ids.len()).unwrap_or(u32::MAX);
        *self.tag_ids.entry(tag.to_owned()).or_insert(next)
    }

    /// Puts an entry filled at `entry.stored_at` in the map, where lookups find it at
    /// once; the next batch updates it (its key was admitted) or decides its admission.
    pub fn insert(&mut self, key: u32, entry: SimEntry) {
        self.before_operation(entry.stored_at, self.writes >= BATCH_OPERATIONS);
        self.grow(key.saturating_add(1));
        let slot = key as usize;
        if let Some(old) = self.entries[slot].take() {
            self.unindex(key, &old);
            if self.admitted[slot] {
                self.bytes = self.bytes - old.bytes + entry.bytes;
            }
        }
        self.index(key, &entry);
        self.entries[slot] = Some(entry);
        self.fills.push(key);
        self.writes += 1;
    }

    /// Drops one entry from the map if present (an invalidation; it counts towards the next
    /// batch like a fill).
    pub fn remove(&mut self, key: u32) -> bool {
        self.before_operation(self.now, self.writes >= BATCH_OPERATIONS);
        self.writes += 1;
        self.drop_entry(key)
    }

    /// Runs the waiting batch now (as the store does before it reports its counts).
    pub fn run_pending_tasks(&mut self, now: u64) {
        self.now = self.now.max(now);
        self.run_batch();
    }

    /// Applies one invalidation and returns how many entries it dropped. `key_of`
    /// answers a `Key` invalidation: the cache keys whose production key is that text.
    pub fn invalidate(
        &mut self,
        invalidation: &Invalidation,
        trace: &Trace,
        key_of: impl Fn(&str) -> Vec<u32>,
    ) -> u64 {
        let keys: Vec<u32> = match invalidation {
            Invalidation::Server(server) => trace
                .find_string(server)
                .and_then(|server| self.by_server.get(&server))
                .map(|keys| keys.iter().copied().collect())
                .unwrap_or_default(),
            Invalidation::Tool { server, tool } => {
                match (trace.find_string(server), trace.find_string(tool)) {
                    (Some(server), Some(tool)) => self
                        .by_tool
                        .get(&(server, tool))
                        .map(|keys| keys.iter().copied().collect())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                }
            }
            Invalidation::Tag(tag) => match self.tag_ids.get(tag.as_str()) {
                Some(tag) => self
                    .by_tag
                    .get(tag)
                    .map(|keys| keys.iter().copied().collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            },
            Invalidation::Key(text) => key_of(text),
        };
        let mut dropped = 0;
        for key in keys {
            if self.remove(key) {
                dropped += 1;
            }
        }
        self.invalidated += dropped;
        dropped
    }

    /// Runs the batch when one is due before an operation at `now`: its log is full, or
    /// the interval since the last batch has passed.
    fn before_operation(&mut self, now: u64, log_full: bool) {
        self.now = self.now.max(now);
        let next_batch = *self
            .next_batch
            .get_or_insert(self.now.saturating_add(BATCH_INTERVAL_US));
        if log_full || self.now >= next_batch {
            self.run_batch();
        }
    }

    /// One batch, in moka's order (see the module documentation).
    fn run_batch(&mut self) {
        let now = self.now;
        let lookups = std::mem::take(&mut self.lookups);
        for &(key, found) in &lookups {
            self.sketch.increment(hash_key(key));
            if found && self.admitted.get(key as usize) == Some(&true) {
                self.unlink(key);
                self.link_newest(key);
            }
        }
        self.lookups = lookups;
        self.lookups.clear();
        let fills = std::mem::take(&mut self.fills);
        for &key in &fills {
            self.apply_fill(key);
        }
        self.fills = fills;
        self.fills.clear();
        self.start_counting_when_half_full();
        self.end_lifetimes(now);
        self.evict_over_budget();
        // Peaks as the store's counts show them: after its batch.
        self.peak_entries = self.peak_entries.max(self.len);
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        self.writes = 0;
        self.next_batch = Some(now.saturating_add(BATCH_INTERVAL_US));
    }

    /// Applies one waiting fill of `key` (skipped if an invalidation took it since).
    fn apply_fill(&mut self, key: u32) {
        let slot = key as usize;
        let Some((bytes, kept_until)) = self.entries[slot]
            .as_ref()
            .map(|entry| (entry.bytes, entry.kept_until))
        else {
            return;
        };
        let weight = self.weigher.weigh(bytes);
        if self.admitted[slot] {
            // An update: the new weight, the most recently used end, the new lifetime.
            self.weighted = self.weighted - u64::from(self.weights[slot]) + u64::from(weight);
            self.weights[slot] = weight;
            self.unlink(key);
            self.link_newest(key);
            self.schedule_end(key, kept_until);
            return;
        }
        let fits = self.weighted + u64::from(weight) <= self.limits.max_bytes;
        let admitted = if u64::from(weight) > self.limits.max_bytes {
            false
        } else if fits || self.limits.eviction == Eviction::Lru {
            true
        } else {
            self.admit(key, weight)
        };
        if !admitted {
            self.drop_entry(key);
            self.evictions += 1;
            self.refused += 1;
            return;
        }
        self.admitted[slot] = true;
        self.weights[slot] = weight;
        self.len += 1;
        self.bytes += bytes;
        self.weighted += u64::from(weight);
        self.link_newest(key);
        self.schedule_end(key, kept_until);
    }

    /// TinyLFU's admission of a fill of `weight`: gathers the least recently used entries
    /// until their weights cover the fill's or their summed frequency passes its own, and
    /// admits it (evicting them) only if they cover it and it is strictly more popular.
    /// Refused, the victims keep their places, as in moka.
    fn admit(&mut self, key: u32, weight: u32) -> bool {
        let candidate = u32::from(self.sketch.frequency(hash_key(key)));
        let (mut victims_weight, mut victims_frequency) = (0u64, 0u32);
        self.victims.clear();
        let mut next = self.oldest;
        while victims_weight < u64::from(weight) && victims_frequency <= candidate && next != NIL {
            self.victims.push(next);
            victims_weight += u64::from(self.weights[next as usize]);
            victims_frequency += u32::from(self.sketch.frequency(hash_key(next)));
            next = self.newer[next as usize];
        }
        if victims_weight < u64::from(weight) || candidate <= victims_frequency {
            return false;
        }
        let victims = std::mem::take(&mut self.victims);
        for victim in &victims {
            self.drop_entry(*victim);
            self.evictions += 1;
        }
        self.victims = victims;
        true
    }

    /// Removes a key's entry from the map and, if it was admitted, from the policy.
    fn drop_entry(&mut self, key: u32) -> bool {
        let slot = key as usize;
        let Some(entry) = self.entries.get_mut(slot).and_then(Option::take) else {
            return false;
        };
        self.unindex(key, &entry);
        if std::mem::take(&mut self.admitted[slot]) {
            self.unlink(key);
            self.len -= 1;
            self.bytes -= entry.bytes;
            self.weighted -= u64::from(self.weights[slot]);
        }
        true
    }

    /// Evicts least recently used entries while the weights exceed the budget (after LRU
    /// admissions, or updates that grew an entry).
    fn evict_over_budget(&mut self) {
        while self.weighted > self.limits.max_bytes && self.oldest != NIL {
            self.drop_entry(self.oldest);
            self.evictions += 1;
        }
    }

    /// moka counts frequencies only once its cache is half full, sizing the sketch for the
    /// entries it then expects: the count now, scaled by how full the cache is.
    fn start_counting_when_half_full(&mut self) {
        if self.limits.eviction != Eviction::TinyLfu
            || self.sketch.is_enabled()
            || self.weighted < self.limits.max_bytes / 2
        {
            return;
        }
        let fullness = self.weighted as f64 / self.limits.max_bytes as f64;
        self.sketch.enable((self.len as f64 * fullness) as u64);
    }

    fn schedule_end(&mut self, key: u32, kept_until: u64) {
        if kept_until != u64::MAX {
            self.lifetimes.push(Reverse((kept_until, key)));
        }
    }

    /// Drops the admitted entries whose lifetime ended by `now`.
    fn end_lifetimes(&mut self, now: u64) {
        while let Some(&Reverse((kept_until, key))) = self.lifetimes.peek() {
            if kept_until > now {
                break;
            }
            self.lifetimes.pop();
            let slot = key as usize;
            let current = self.admitted[slot]
                && self.entries[slot]
                    .as_ref()
                    .is_some_and(|entry| entry.kept_until == kept_until);
            if current {
                self.drop_entry(key);
            }
        }
    }

    fn index(&mut self, key: u32, entry: &SimEntry) {
        self.by_server.entry(entry.server).or_default().insert(key);
        self.by_tool
            .entry((entry.server, entry.name))
            .or_default()
            .insert(key);
        for tag in &entry.tags {
            self.by_tag.entry(*tag).or_default().insert(key);
        }
    }

    fn unindex(&mut self, key: u32, entry: &SimEntry) {
        if let Some(keys) = self.by_server.get_mut(&entry.server) {
            keys.remove(&key);
        }
        if let Some(keys) = self.by_tool.get_mut(&(entry.server, entry.name)) {
            keys.remove(&key);
        }
        for tag in &entry.tags {
            if let Some(keys) = self.by_tag.get_mut(tag) {
                keys.remove(&key);
            }
        }
    }

    fn unlink(&mut self, key: u32) {
        let (newer, older) = (self.newer[key as usize], self.older[key as usize]);
        if newer == NIL && older == NIL && self.newest != key {
            return;
        }
        match newer {
            NIL => self.newest = older,
            newer => self.older[newer as usize] = older,
        }
        match older {
            NIL => self.oldest = newer,
            older => self.newer[older as usize] = newer,
        }
        self.newer[key as usize] = NIL;
        self.older[key as usize] = NIL;
    }

    fn link_newest(&mut self, key: u32) {
        self.older[key as usize] = self.newest;
        self.newer[key as usize] = NIL;
        match self.newest {
            NIL => self.oldest = key,
            newest => self.newer[newest as usize] = key,
        }
        self.newest = key;
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
