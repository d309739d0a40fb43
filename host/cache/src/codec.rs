//! An entry as bytes, for a level outside this process (the shared tier's Redis): the
//! result and what judges it, with its age carried as a wall-clock time, since an
//! `Instant` means nothing to another process.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::store::Entry;

/// The version of the encoding; another version is not read.
const VERSION: u64 = 1;

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn millis(duration: Option<Duration>) -> Value {
    duration.map_or(Value::Null, |duration| json!(duration.as_millis() as u64))
}

/// The entry as JSON bytes. Its stamp is not part of them: the level that stores them
/// keeps it beside.
pub fn encode(entry: &Entry) -> Vec<u8> {
    let stored_at_ms = unix_ms(SystemTime::now()).saturating_sub(entry.age().as_millis() as u64);
    let document = json!({
        "v": VERSION,
        "result": &*entry.result,
        "stored_at_ms": stored_at_ms,
        "ttl_ms": millis(entry.ttl),
        "stale_while_revalidate_ms": millis(entry.stale_while_revalidate),
        "stale_if_error_ms": millis(entry.stale_if_error),
        "tags": entry.tags,
        "private": entry.private,
        "backend_us": entry.backend_time.as_micros() as u64,
    });
    serde_json::to_vec(&document).unwrap_or_default()
}

/// The entry `encode` made, aged by the wall-clock time since; `None` for anything else.
pub fn decode(bytes: &[u8], stamp: Option<Arc<[u64]>>) -> Option<Entry> {
    let mut document: Value = serde_json::from_slice(bytes).ok()?;
    if document.get("v")?.as_u64()? != VERSION {
        return None;
    }
    let duration = |field: &str| -> Option<Option<Duration>> {
        match document.get(field)? {
            Value::Null => Some(None),
            value => Some(Some(Duration::from_millis(value.as_u64()?))),
        }
    };
    let ttl = duration("ttl_ms")?;
    let stale_while_revalidate = duration("stale_while_revalidate_ms")?;
    let stale_if_error = duration("stale_if_error_ms")?;
    let age = Duration::from_millis(
        unix_ms(SystemTime::now()).saturating_sub(document.get("stored_at_ms")?.as_u64()?),
    );
    let tags = document
        .get("tags")?
        .as_array()?
        .iter()
        .map(|tag| tag.as_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()?;
    let private = document.get("private")?.as_bool()?;
    let backend_time = Duration::from_micros(document.get("backend_us")?.as_u64()?);
    let result = document.get_mut("result")?.take();
    let size = serde_json::to_vec(&result).map_or(0, |bytes| bytes.len());
    let now = Instant::now();
    Some(Entry {
        result: Arc::new(result),
        stored_at: now.checked_sub(age).unwrap_or(now),
        ttl,
        stale_while_revalidate,
        stale_if_error,
        tags,
        private,
        size: u32::try_from(size).unwrap_or(u32::MAX),
        backend_time,
        stamp,
    })
}

#[cfg(test)]
mod tests {
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
        assert!(decode(b"{}", None).is_none());
        assert!(decode(b"not json", None).is_none());
    }
}
