//! An entry as bytes, for a level outside this process (the shared tier's Redis). It is
//! the disk cache's record (`disk/record.rs`), the one encoding of an entry: the result
//! and what judges it, with its age carried as a wall-clock time, since an `Instant` means
//! nothing to another process.

use std::sync::Arc;
use std::time::Duration;

use super::disk::record;
use super::store::Entry;

/// The entry as a record. Its stamp is not part of it: the level that stores the bytes
/// keeps it beside.
pub fn encode(entry: &Entry) -> Vec<u8> {
    let age = u64::try_from(entry.age().as_micros()).unwrap_or(u64::MAX);
    let stored_unix_us = record::unix_now_us().saturating_sub(age);
    record::encode(entry, 0, stored_unix_us).unwrap_or_default()
}

/// The entry `encode` made, aged by the wall-clock time since, carrying `stamp`; `None`
/// for anything else, and for an entry that outlived its TTL and stale windows.
pub fn decode(bytes: &[u8], stamp: Option<Arc<[u64]>>) -> Option<Entry> {
    let decoded = record::decode(bytes)?;
    let age: Duration = decoded.age(record::unix_now_us());
    if decoded.expired(age) {
        return None;
    }
    let mut entry = decoded.into_entry(age)?;
    entry.stamp = stamp;
    Some(entry)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;

    #[test]
    fn entries_round_trip_with_their_age() {
        let entry = Entry {
            result: Arc::new(json!({"content": [{"type": "text", "text": "hi"}]})),
            stored_at: Instant::now() - Duration::from_secs(3),
            ttl: Some(Duration::from_secs(60)),
            stale_while_revalidate: None,
            stale_if_error: Some(Duration::from_secs(5)),
            tags: vec!["server:s".into(), "name:s/t".into()],
            private: true,
            size: 10,
            backend_time: Duration::from_millis(7),
            stamp: None,
            filled_generation: Some(7),
            ttl_source: Some(Arc::from("config:demo/get_clients")),
        };
        let bytes = encode(&entry);
        let back =
            decode(&bytes, Some(Arc::from(vec![1_u64, 2]))).unwrap_or_else(|| panic!("decoded"));
        assert_eq!(back.result, entry.result);
        assert_eq!(back.ttl, entry.ttl);
        assert_eq!(back.stale_if_error, entry.stale_if_error);
        assert_eq!(back.tags, entry.tags);
        assert!(back.private);
        assert_eq!(back.backend_time, entry.backend_time);
        assert!(
            back.age() >= Duration::from_secs(2),
            "the age survives: {:?}",
            back.age()
        );
        assert_eq!(back.stamp.as_deref(), Some(&[1_u64, 2][..]));
        assert_eq!(back.filled_generation, Some(7));
        assert_eq!(back.ttl_source.as_deref(), Some("config:demo/get_clients"));
        assert!(decode(b"{}", None).is_none());
        assert!(decode(b"not json", None).is_none());
    }

    /// An entry an older bridge stored (before the filling generation and the TTL's
    /// source were kept) still loads, with both unknown; and an entry without them is
    /// written without the fields, as an older bridge wrote it.
    #[test]
    fn entries_stored_before_the_provenance_fields_still_load() {
        let now = record::unix_now_us();
        let old = format!(
            "{{\"fill\":0,\"stored_unix_us\":{now},\"ttl_us\":60000000,\"stale_while_revalidate_us\":null,\"stale_if_error_us\":null,\"tags\":[\"server:demo\"],\"private\":false,\"size\":2,\"backend_time_us\":5}}\n{{\"content\":[]}}"
        );
        let entry = decode(old.as_bytes(), None).unwrap_or_else(|| panic!("an old record loads"));
        assert_eq!(entry.filled_generation, None);
        assert_eq!(entry.ttl_source, None);
        assert_eq!(entry.ttl, Some(Duration::from_secs(60)));
        assert_eq!(*entry.result, json!({"content": []}));
        let written = String::from_utf8(encode(&entry)).unwrap_or_default();
        let meta = written.lines().next().unwrap_or_default();
        assert!(
            !meta.contains("filled_generation") && !meta.contains("ttl_source"),
            "unknown fields are left out: {meta}"
        );
    }
}
