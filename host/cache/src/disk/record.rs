//! The file's layout: its tables, its format version, and how one entry is written.
//!
//! A record is two JSON documents on one line each: first the entry's metadata (fill id,
//! wall-clock time stored, TTL and stale windows, tags, private flag, size, backend time,
//! and, when known, the policy generation that filled it and its TTL's source),
//! then the result exactly as cached. Compact JSON never holds a raw newline, so the first
//! newline ends the metadata, and removals (which need only the tags) never parse a result.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{MultimapTableDefinition, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::Entry;

/// The version of this layout, kept in [`META`] under [`FORMAT_VERSION_KEY`]. A file that
/// says another version is set aside, never read: bump it with any change to the tables or
/// to [`Meta`] that an older bridge could misread.
pub(crate) const FORMAT_VERSION: u64 = 1;

/// The metadata table's key for [`FORMAT_VERSION`].
pub(crate) const FORMAT_VERSION_KEY: &str = "format_version";

/// Facts about the file itself: its format version.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Cache key to record ([`encode`]).
pub(crate) const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// Index tag to the keys of the records carrying it: the file's own tag index, so an
/// invalidation finds every record it drops on disk, whatever memory still holds.
pub(crate) const TAGS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("tags");

/// The part of a record read without its result.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// Which fill wrote the record: a removal moka reports for an older fill of the same key
    /// leaves a newer record alone.
    pub fill: u64,
    /// When the entry was stored, in microseconds since the Unix epoch: `Instant` means
    /// nothing to another process.
    pub stored_unix_us: u64,
    pub ttl_us: Option<u64>,
    pub stale_while_revalidate_us: Option<u64>,
    pub stale_if_error_us: Option<u64>,
    pub tags: Vec<String>,
    pub private: bool,
    pub size: u32,
    pub backend_time_us: u64,
    /// The policy generation that decided the fill. Added after format version 1 without
    /// a bump: a record without it loads (as unknown), and an older bridge ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filled_generation: Option<u64>,
    /// The TTL's source as its header token; optional as `filled_generation` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_source: Option<String>,
}

/// Microseconds since the Unix epoch now (0 if the clock is before it).
pub(crate) fn unix_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, micros)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The record for `entry`, filled by `fill` and stored at `stored_unix_us`.
pub(crate) fn encode(
    entry: &Entry,
    fill: u64,
    stored_unix_us: u64,
) -> Result<Vec<u8>, serde_json::Error> {
    let meta = Meta {
        fill,
        stored_unix_us,
        ttl_us: entry.ttl.map(micros),
        stale_while_revalidate_us: entry.stale_while_revalidate.map(micros),
        stale_if_error_us: entry.stale_if_error.map(micros),
        tags: entry.tags.clone(),
        private: entry.private,
        size: entry.size,
        backend_time_us: micros(entry.backend_time),
        filled_generation: entry.filled_generation,
        ttl_source: entry.ttl_source.as_deref().map(str::to_owned),
    };
    let mut bytes = serde_json::to_vec(&meta)?;
    bytes.push(b'\n');
    serde_json::to_writer(&mut bytes, &*entry.result)?;
    Ok(bytes)
}

/// The metadata of a record, without parsing its result.
pub(crate) fn decode_meta(bytes: &[u8]) -> Option<Meta> {
    let end = bytes.iter().position(|byte| *byte == b'\n')?;
    serde_json::from_slice(&bytes[..end]).ok()
}

/// What a record holds, as read back at startup.
pub(crate) struct Decoded {
    pub meta: Meta,
    pub result: Value,
}

/// A whole record, or `None` when it is not one this version wrote.
pub(crate) fn decode(bytes: &[u8]) -> Option<Decoded> {
    let end = bytes.iter().position(|byte| *byte == b'\n')?;
    let meta = serde_json::from_slice(&bytes[..end]).ok()?;
    let result = serde_json::from_slice(&bytes[end + 1..]).ok()?;
    Some(Decoded { meta, result })
}

impl Decoded {
    /// How long ago the entry was stored, by the wall clock (zero if the clock went back).
    pub(crate) fn age(&self, now_unix_us: u64) -> Duration {
        Duration::from_micros(now_unix_us.saturating_sub(self.meta.stored_unix_us))
    }

    /// Whether the entry outlived its TTL and every stale window, so nothing may serve it.
    pub(crate) fn expired(&self, age: Duration) -> bool {
        let Some(ttl) = self.meta.ttl_us else {
            return false;
        };
        let stale = self
            .meta
            .stale_while_revalidate_us
            .max(self.meta.stale_if_error_us)
            .unwrap_or(0);
        age >= Duration::from_micros(ttl.saturating_add(stale))
    }

    /// The entry again, stored `age` ago by the monotonic clock; `None` when the monotonic
    /// clock cannot go back that far (the machine restarted since) and the age matters
    /// (the entry has a TTL): such an entry is dropped rather than made younger.
    pub(crate) fn into_entry(self, age: Duration) -> Option<Entry> {
        let now = std::time::Instant::now();
        let stored_at = match now.checked_sub(age) {
            Some(stored_at) => stored_at,
            None if self.meta.ttl_us.is_none() => now,
            None => return None,
        };
        let meta = self.meta;
        Some(Entry {
            result: Arc::new(self.result),
            stored_at,
            ttl: meta.ttl_us.map(Duration::from_micros),
            stale_while_revalidate: meta.stale_while_revalidate_us.map(Duration::from_micros),
            stale_if_error: meta.stale_if_error_us.map(Duration::from_micros),
            tags: meta.tags,
            private: meta.private,
            size: meta.size,
            backend_time: Duration::from_micros(meta.backend_time_us),
            stamp: None,
            filled_generation: meta.filled_generation,
            ttl_source: meta.ttl_source.map(Arc::from),
        })
    }
}
