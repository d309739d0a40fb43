//! The simulated cache of one replay: `serve`'s cache store (moka) in virtual time.
//!
//! It bounds entries as the store does: each weighs its result's JSON size, at least
//! `max_bytes / max_entries` (the cache crate's [`EntryWeigher`], the store's own weigher),
//! and the weights add up to at most `max_bytes`. When a new entry does not fit, it decides
//! as moka 0.12 does with the `[cache] eviction` setting:
//!
//! - `tinylfu`: TinyLFU admission over one least-recently-used list. The candidate's
//!   estimated frequency ([`FrequencySketch`], counting every lookup, found or not, once the
//!   cache is half full) is compared with the summed frequencies of the least recently used
//!   entries whose weights cover its own: it is admitted, and they are evicted, only when it
//!   is strictly more popular; otherwise it is dropped. (moka 0.12 has no admission window
//!   and no protected segment: every entry lives in its "probation" list; W-TinyLFU is on its
//!   roadmap, not in the version the bridge runs.)
//! - `lru`: the candidate is admitted and the least recently used entries go until the
//!   weights fit.
//!
//! An entry that is already cached is updated in place without admission, as moka updates.
//! Entries stay until their lifetime ends (the TTL plus the longest stale window, as the
//! store's expiry says), then leave before the next admission, as moka's timer wheel
//! removes them. Server, tool and tag indexes make an invalidation cost the number of
//! entries it drops, as in the real cache.
//!
//! What it does not copy: moka applies reads and writes to its policy in batches (every 64
//! operations or 300 ms), so for a moment a new entry is served before it is admitted or
//! refused; here every operation takes effect at once.

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

/// A cache bounded by weight, evicting as the production store does (see the module
/// documentation).
pub struct SimCache {
    limits: SimLimits,
    weigher: EntryWeigher,
    entries: Vec<Option<SimEntry>>,
    /// Each cached entry's weight, by key.
    weights: Vec<u32>,
    /// The recency list through keys: `newer[key]` and `older[key]`. The oldest entry is
    /// the first victim.
    newer: Vec<u32>,
    older: Vec<u32>,
    newest: u32,
    oldest: u32,
    len: u64,
    bytes: u64,
    weighted: u64,
    sketch: FrequencySketch,
    /// When entries end their lifetime: (`kept_until`, key), soonest first. An item whose
    /// entry was replaced or removed since is skipped when it comes up.
    lifetimes: BinaryHeap<Reverse<(u64, u32)>>,
    /// The victims an admission is weighing, kept to reuse its allocation.
    victims: Vec<u32>,
    by_server: HashMap<u32, HashSet<u32>>,
    by_tool: HashMap<(u32, u32), HashSet<u32>>,
    by_tag: HashMap<u32, HashSet<u32>>,
    tag_ids: HashMap<String, u32>,
    pub peak_entries: u64,
    pub peak_bytes: u64,
    /// Entries dropped for room, counting the candidates admission refused (moka counts
    /// both as evictions for size).
    pub evictions: u64,
    /// Of `evictions`, the candidates that were never admitted.
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
            weights: Vec::new(),
            newer: Vec::new(),
            older: Vec::new(),
            newest: NIL,
            oldest: NIL,
            len: 0,
            bytes: 0,
            weighted: 0,
            sketch: FrequencySketch::default(),
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

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cached results' JSON sizes, summed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The cached entries' weights, summed: what `max_bytes` bounds.
    pub fn weighted_size(&self) -> u64 {
        self.weighted
    }

    /// The fresh entry for `key` at `now`, marked most recently used. Every lookup counts
    /// towards the key's frequency, found or not, as a lookup in moka does. An entry past
    /// its TTL but within its stale window is touched and kept, yet not returned, as the
    /// store keeps it and `serve` calls the backend; one past its lifetime is dropped.
    pub fn get(&mut self, key: u32, now: u64) -> Option<&SimEntry> {
        self.sketch.increment(hash_key(key));
        let entry = self.entries.get(key as usize)?.as_ref()?;
        let (expires_at, kept_until) = (entry.expires_at, entry.kept_until);
        if kept_until <= now {
            self.remove(key);
            return None;
        }
        self.unlink(key);
        self.link_newest(key);
        if expires_at <= now {
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

    /// Stores an entry filled at `entry.stored_at`: updates a cached key (moka's update:
    /// no admission, the entry becomes the most recently used), or admits a new one
    /// (evicting others for it) or refuses it, as the module documentation describes.
    /// Returns whether the entry is cached now.
    pub fn insert(&mut self, key: u32, entry: SimEntry) -> bool {
        self.end_lifetimes(entry.stored_at);
        self.grow(key.saturating_add(1));
        let weight = self.weigher.weigh(entry.bytes);
        let updating = self.remove(key);
        if u64::from(weight) > self.limits.max_bytes {
            // moka evicts an updated entry that outgrew the whole cache, and refuses a new one.
            self.evictions += 1;
            self.refused += u64::from(!updating);
            return false;
        }
        let fits = self.weighted + u64::from(weight) <= self.limits.max_bytes;
        if !fits {
            if updating || self.limits.eviction == Eviction::Lru {
                self.make_room(weight);
            } else if !self.admit(key, weight) {
                self.evictions += 1;
                self.refused += 1;
                return false;
            }
        }
        self.store(key, entry, weight);
        self.start_counting_when_half_full();
        true
    }

    /// Drops one entry if present.
    pub fn remove(&mut self, key: u32) -> bool {
        let Some(entry) = self.entries.get_mut(key as usize).and_then(Option::take) else {
            return false;
        };
        self.unlink(key);
        self.len -= 1;
        self.bytes -= entry.bytes;
        self.weighted -= u64::from(self.weights[key as usize]);
        self.unindex(key, &entry);
        true
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

    /// TinyLFU's admission of a candidate of `weight`: gathers the least recently used
    /// entries until their weights cover the candidate's or their summed frequency passes
    /// its own, and admits it (evicting them) only if they cover it and it is strictly more
    /// popular. Refused, the victims keep their places, as in moka.
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
            self.remove(*victim);
            self.evictions += 1;
        }
        self.victims = victims;
        true
    }

    /// Links, indexes and counts an entry as the most recently used.
    fn store(&mut self, key: u32, entry: SimEntry, weight: u32) {
        self.by_server.entry(entry.server).or_default().insert(key);
        self.by_tool
            .entry((entry.server, entry.name))
            .or_default()
            .insert(key);
        for tag in &entry.tags {
            self.by_tag.entry(*tag).or_default().insert(key);
        }
        if entry.kept_until != u64::MAX {
            self.lifetimes.push(Reverse((entry.kept_until, key)));
        }
        self.len += 1;
        self.bytes += entry.bytes;
        self.weighted += u64::from(weight);
        self.weights[key as usize] = weight;
        self.peak_entries = self.peak_entries.max(self.len);
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        self.entries[key as usize] = Some(entry);
        self.link_newest(key);
    }

    /// Evicts least recently used entries until `weight` more fits in the budget: what
    /// moka does after an LRU admission or an update (the entry being stored is the most
    /// recently used, so it would be the last to go).
    fn make_room(&mut self, weight: u32) {
        while self.weighted + u64::from(weight) > self.limits.max_bytes && self.oldest != NIL {
            self.remove(self.oldest);
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

    /// Drops the entries whose lifetime ended by `now`.
    fn end_lifetimes(&mut self, now: u64) {
        while let Some(&Reverse((kept_until, key))) = self.lifetimes.peek() {
            if kept_until > now {
                break;
            }
            self.lifetimes.pop();
            let current = self.entries[key as usize]
                .as_ref()
                .is_some_and(|entry| entry.kept_until == kept_until);
            if current {
                self.remove(key);
            }
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
