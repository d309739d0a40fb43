//! The simulated cache of one replay: entries by dense key, least-recently-used
//! eviction by entry count, and server, tool and tag indexes so an invalidation costs
//! the number of entries it drops, as in the real cache.

use std::collections::{HashMap, HashSet};

use crate::loaded::Trace;
use mcp_bridge_policy::Invalidation;

/// The end of the recency list.
const NIL: u32 = u32::MAX;

/// One cached result, in virtual time.
#[derive(Debug, Clone)]
pub struct SimEntry {
    pub digest: u64,
    pub stored_at: u64,
    /// `u64::MAX` for an entry without a TTL.
    pub expires_at: u64,
    pub bytes: u64,
    pub server: u32,
    pub name: u32,
    /// The policy's own tags, interned by the cache.
    pub tags: Vec<u32>,
}

/// A cache bounded by entry count.
pub struct SimCache {
    capacity: u64,
    entries: Vec<Option<SimEntry>>,
    /// The recency list through keys: `newer[key]` and `older[key]`.
    newer: Vec<u32>,
    older: Vec<u32>,
    newest: u32,
    oldest: u32,
    len: u64,
    bytes: u64,
    by_server: HashMap<u32, HashSet<u32>>,
    by_tool: HashMap<(u32, u32), HashSet<u32>>,
    by_tag: HashMap<u32, HashSet<u32>>,
    tag_ids: HashMap<String, u32>,
    pub peak_entries: u64,
    pub peak_bytes: u64,
    pub evictions: u64,
    pub invalidated: u64,
}

impl SimCache {
    /// An empty cache for `keys` distinct keys holding at most `capacity` entries.
    pub fn new(keys: u32, capacity: u64) -> SimCache {
        let keys = keys as usize;
        SimCache {
            capacity: capacity.max(1),
            entries: vec![None; keys],
            newer: vec![NIL; keys],
            older: vec![NIL; keys],
            newest: NIL,
            oldest: NIL,
            len: 0,
            bytes: 0,
            by_server: HashMap::new(),
            by_tool: HashMap::new(),
            by_tag: HashMap::new(),
            tag_ids: HashMap::new(),
            peak_entries: 0,
            peak_bytes: 0,
            evictions: 0,
            invalidated: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The fresh entry for `key` at `now`, marked most recently used. An expired entry
    /// is dropped, as a real lookup would find nothing.
    pub fn get(&mut self, key: u32, now: u64) -> Option<&SimEntry> {
        let expired = self.entries[key as usize].as_ref()?.expires_at <= now;
        if expired {
            self.remove(key);
            return None;
        }
        self.unlink(key);
        self.link_newest(key);
        self.entries[key as usize].as_ref()
    }

    /// Makes room for keys up to `keys` (a shaped key the replay made beyond the trace's).
    pub fn grow(&mut self, keys: u32) {
        let keys = keys as usize;
        if keys > self.entries.len() {
            self.entries.resize(keys, None);
            self.newer.resize(keys, NIL);
            self.older.resize(keys, NIL);
        }
    }

    /// The interned id of a policy tag.
    pub fn tag_id(&mut self, tag: &str) -> u32 {
        let next = u32::try_from(self.tag_ids.len()).unwrap_or(u32::MAX);
        *self.tag_ids.entry(tag.to_owned()).or_insert(next)
    }

    /// Stores an entry, evicting the least recently used ones to make room.
    pub fn insert(&mut self, key: u32, entry: SimEntry) {
        self.remove(key);
        while self.len >= self.capacity && self.oldest != NIL {
            self.remove(self.oldest);
            self.evictions += 1;
        }
        self.by_server.entry(entry.server).or_default().insert(key);
        self.by_tool
            .entry((entry.server, entry.name))
            .or_default()
            .insert(key);
        for tag in &entry.tags {
            self.by_tag.entry(*tag).or_default().insert(key);
        }
        self.len += 1;
        self.bytes += entry.bytes;
        self.peak_entries = self.peak_entries.max(self.len);
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        self.entries[key as usize] = Some(entry);
        self.link_newest(key);
    }

    /// Drops one entry if present.
    pub fn remove(&mut self, key: u32) -> bool {
        let Some(entry) = self.entries[key as usize].take() else {
            return false;
        };
        self.unlink(key);
        self.len -= 1;
        self.bytes -= entry.bytes;
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
mod tests {
    use super::*;

    fn entry(server: u32) -> SimEntry {
        SimEntry {
            digest: 1,
            stored_at: 0,
            expires_at: 100,
            bytes: 10,
            server,
            name: 0,
            tags: Vec::new(),
        }
    }

    #[test]
    fn evicts_the_least_recently_used_entry() {
        let mut cache = SimCache::new(4, 2);
        cache.insert(0, entry(1));
        cache.insert(1, entry(1));
        // Touching 0 makes 1 the oldest, so 1 goes when 2 arrives.
        assert!(cache.get(0, 5).is_some());
        cache.insert(2, entry(1));
        assert!(cache.get(1, 5).is_none());
        assert!(cache.get(0, 5).is_some());
        assert!(cache.get(2, 5).is_some());
        assert_eq!((cache.len(), cache.bytes(), cache.evictions), (2, 20, 1));
    }

    #[test]
    fn expired_entries_are_not_served_and_free_their_room() {
        let mut cache = SimCache::new(2, 2);
        cache.insert(0, entry(1));
        assert!(cache.get(0, 100).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_single_entry_cache_replaces_its_entry() {
        let mut cache = SimCache::new(3, 1);
        cache.insert(0, entry(1));
        cache.insert(1, entry(1));
        cache.insert(1, entry(1));
        assert_eq!(cache.len(), 1);
        assert!(cache.get(1, 1).is_some());
        assert!(cache.get(0, 1).is_none());
    }
}
