//! The disk backend through `ResponseCache`: entries survive a reopen, invalidations are
//! committed before they return and never come back, moka's evictions and expiries delete
//! records, and an unusable file is set aside.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_bridge_config::CacheConfig;
use mcp_bridge_metrics::Registry;
use mcp_bridge_policy::Invalidation;
use serde_json::{Value, json};

use crate::{CacheError, CacheMetrics, Entry, InvalidationReason, ResponseCache};

/// The `[cache]` settings of a disk cache at `path`, with `extra` lines in its table.
fn config(path: &Path, extra: &str) -> CacheConfig {
    let text = format!(
        "[servers.s]\ncommand = \"x\"\n\n[cache]\nbackend = \"disk\"\npath = {}\n{extra}\n",
        serde_json::to_string(&path.display().to_string()).unwrap_or_default()
    );
    match mcp_bridge_config::load_str(&text, "test.toml") {
        Ok(config) => config.cache,
        Err(error) => panic!("{error}"),
    }
}

/// A disk cache with fresh metrics (each open registers its own).
fn open(path: &Path, extra: &str) -> Result<(ResponseCache, Arc<CacheMetrics>), CacheError> {
    let metrics = Arc::new(CacheMetrics::register(&Registry::new()));
    ResponseCache::open(&config(path, extra), metrics.clone()).map(|cache| (cache, metrics))
}

fn opened(path: &Path, extra: &str) -> (ResponseCache, Arc<CacheMetrics>) {
    open(path, extra).unwrap_or_else(|error| panic!("the disk cache opens: {error}"))
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|error| panic!("a temporary directory: {error}"))
}

fn entry(result: Value, tags: &[&str], ttl: Option<Duration>, size: u32) -> Entry {
    Entry {
        result: Arc::new(result),
        stored_at: Instant::now(),
        ttl,
        stale_while_revalidate: Some(Duration::from_secs(5)),
        stale_if_error: None,
        tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        private: false,
        size,
        backend_time: Duration::from_millis(12),
        stamp: None,
        filled_generation: None,
        ttl_source: None,
    }
}

fn fill(cache: &ResponseCache, key: &str, entry: Entry) {
    let ticket = cache.begin_fill();
    assert!(
        cache.insert(Arc::from(key), entry, &ticket),
        "{key} is stored"
    );
}

fn writes(metrics: &CacheMetrics, op: &str) -> u64 {
    metrics
        .cache_disk_writes_total
        .with_label_values(&[op])
        .get()
}

fn loaded(cache: &ResponseCache) -> u64 {
    cache.stats()["disk"]["loaded_entries"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// Files in `dir` whose names start with `prefix`.
fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.file_name()
                        .and_then(|name| name.to_str())
                        .is_some_and(|name| name.starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn a_fill_survives_a_reopen_with_its_age_and_tags() {
    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    // Numbers keep their text, as everywhere in the bridge.
    let result =
        json!({"content": [{"type": "text", "text": "tasks"}], "n": 12345678901234567890_u64});
    {
        let (cache, _) = opened(&path, "");
        assert_eq!(cache.stats()["backend"], "disk");
        fill(
            &cache,
            "k1",
            entry(
                result.clone(),
                &["server:s", "name:s/get_tasks"],
                Some(Duration::from_secs(60)),
                50,
            ),
        );
        fill(
            &cache,
            "k2",
            entry(json!({"other": true}), &["server:s"], None, 20),
        );
        cache.close();
    }
    std::thread::sleep(Duration::from_millis(20));
    let (cache, _) = opened(&path, "");
    assert_eq!(loaded(&cache), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).map_or(0, |meta| meta.permissions().mode());
        assert_eq!(mode & 0o777, 0o600, "the file holds private results");
    }
    let Some(hit) = cache.get("k1") else {
        panic!("k1 came back: {}", cache.stats());
    };
    assert_eq!(*hit.result, result);
    assert_eq!(hit.result.to_string(), result.to_string());
    assert!(hit.is_fresh());
    assert!(
        hit.age() >= Duration::from_millis(20),
        "the age counts from the first fill: {:?}",
        hit.age()
    );
    assert_eq!(hit.ttl, Some(Duration::from_secs(60)));
    assert_eq!(hit.stale_while_revalidate, Some(Duration::from_secs(5)));
    assert_eq!(hit.backend_time, Duration::from_millis(12));
    assert_eq!(hit.size, 50);
    assert!(cache.get("k2").is_some_and(|entry| entry.ttl.is_none()));
    // The loaded entries are in the tag index: invalidating the tool drops k1 alone.
    let dropped = cache.invalidate(
        &Invalidation::tool("s", "get_tasks"),
        InvalidationReason::Write,
    );
    assert_eq!(dropped, 1);
    assert!(cache.get("k1").is_none() && cache.get("k2").is_some());
}

#[test]
fn an_invalidation_is_committed_before_it_returns_and_never_comes_back() {
    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    {
        let (cache, metrics) = opened(&path, "");
        // Many fills queued just before the write: each is on disk before the invalidation
        // that follows it in the queue deletes it.
        for index in 0..200 {
            let tags: &[&str] = if index % 2 == 0 {
                &["server:s", "tag:tasks"]
            } else {
                &["server:s", "tag:clients"]
            };
            fill(
                &cache,
                &format!("k{index}"),
                entry(json!({"index": index}), tags, None, 10),
            );
        }
        let dropped = cache.invalidate(&Invalidation::tag("tasks"), InvalidationReason::Write);
        assert_eq!(dropped, 100);
        // Counted only after the commit, and counted already.
        assert_eq!(writes(&metrics, "invalidate"), 1);
        let dropped = cache.invalidate(&Invalidation::Key("k1".into()), InvalidationReason::Write);
        assert_eq!(dropped, 1);
        assert_eq!(writes(&metrics, "invalidate"), 2);
        cache.close();
    }
    let (cache, metrics) = opened(&path, "");
    assert_eq!(loaded(&cache), 99);
    assert!(cache.get("k0").is_none() && cache.get("k1").is_none());
    assert!(cache.get("k3").is_some());
    // A clear empties the file too.
    assert_eq!(cache.clear(), 99);
    assert_eq!(writes(&metrics, "clear"), 1);
    cache.close();
    drop(cache);
    let (cache, _) = opened(&path, "");
    assert_eq!(loaded(&cache), 0);
    assert!(cache.get("k3").is_none());
}

#[test]
fn evictions_and_expiries_delete_records_so_the_file_keeps_the_bounds() {
    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    // 1 KiB holds at most two 400-byte entries.
    let bounds = "max_bytes = \"1KiB\"\nmax_entries = 100\neviction = \"lru\"";
    {
        let (cache, metrics) = opened(&path, bounds);
        for index in 0..20 {
            fill(
                &cache,
                &format!("k{index}"),
                entry(json!({"index": index}), &["server:s"], None, 400),
            );
        }
        let mut short = entry(json!({}), &["server:t"], Some(Duration::from_millis(1)), 1);
        short.stale_while_revalidate = None;
        fill(&cache, "short", short);
        std::thread::sleep(Duration::from_millis(20));
        let bytes = cache.stats()["bytes"].as_u64().unwrap_or(u64::MAX);
        assert!(bytes <= 1024, "moka keeps the bounds: {}", cache.stats());
        cache.close();
        assert!(
            writes(&metrics, "evict") >= 18,
            "evictions reach the file: {}",
            cache.stats()
        );
    }
    // moka's timer wheel had not expired `short` yet: the start does.
    let (cache, _) = opened(&path, bounds);
    assert!(
        loaded(&cache) <= 2,
        "the file holds what memory held: {}",
        cache.stats()
    );
    assert!(cache.get("short").is_none());
}

#[test]
fn an_entry_that_expired_while_the_bridge_was_down_is_deleted_at_start() {
    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    {
        let (cache, _) = opened(&path, "");
        fill(
            &cache,
            "brief",
            entry(json!({}), &["server:s"], Some(Duration::from_millis(50)), 1),
        );
        fill(
            &cache,
            "lasting",
            entry(json!({}), &["server:s"], Some(Duration::from_secs(60)), 1),
        );
        cache.close();
    }
    // Past the TTL and the 5 s stale window would be too long a wait: the window is what
    // keeps it, so this entry has none.
    std::thread::sleep(Duration::from_millis(10));
    let (cache, _) = opened(&path, "");
    assert_eq!(loaded(&cache), 2, "within its stale window it still loads");
    drop(cache);

    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    {
        let (cache, _) = opened(&path, "");
        let mut brief = entry(json!({}), &["server:s"], Some(Duration::from_millis(30)), 1);
        brief.stale_while_revalidate = None;
        fill(&cache, "brief", brief);
        cache.close();
    }
    std::thread::sleep(Duration::from_millis(60));
    let (cache, metrics) = opened(&path, "");
    assert_eq!(loaded(&cache), 0);
    cache.close();
    assert_eq!(
        writes(&metrics, "evict"),
        1,
        "the expired record was deleted"
    );
}

#[test]
fn a_corrupt_file_is_set_aside_and_the_cache_starts_empty() {
    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    let garbage = b"this is not a redb file, just some bytes\n".repeat(200);
    std::fs::write(&path, &garbage).unwrap_or_else(|error| panic!("{error}"));
    let (cache, _) = opened(&path, "");
    let aside = files_starting(dir.path(), "cache.redb.corrupt-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).ok(), Some(garbage));
    assert_eq!(
        cache.stats()["disk"]["set_aside"],
        aside[0].display().to_string()
    );
    assert_eq!(loaded(&cache), 0);
    // The new file works.
    fill(&cache, "k", entry(json!(1), &["server:s"], None, 1));
    cache.close();
    drop(cache);
    let (cache, _) = opened(&path, "");
    assert!(cache.get("k").is_some());
    assert!(cache.stats()["disk"]["set_aside"].is_null());
}

#[test]
fn a_file_damaged_inside_is_set_aside() {
    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    {
        let (cache, _) = opened(&path, "");
        for index in 0..50 {
            fill(
                &cache,
                &format!("k{index}"),
                entry(json!({"text": "x".repeat(500)}), &["server:s"], None, 600),
            );
        }
        cache.close();
    }
    // Overwrite everything past the header with noise.
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    assert!(bytes.len() > 8192);
    for (index, byte) in bytes.iter_mut().enumerate().skip(4096) {
        *byte = (index % 251) as u8;
    }
    std::fs::write(&path, &bytes).unwrap_or_else(|error| panic!("{error}"));
    let (cache, _) = opened(&path, "");
    assert_eq!(files_starting(dir.path(), "cache.redb.corrupt-").len(), 1);
    assert_eq!(loaded(&cache), 0);
}

#[test]
fn a_file_of_another_format_version_or_program_is_set_aside() {
    use redb::ReadableDatabase as _;
    let dir = temp_dir();
    // Another format version.
    let path = dir.path().join("old.redb");
    {
        let (cache, _) = opened(&path, "");
        fill(&cache, "k", entry(json!(1), &["server:s"], None, 1));
        cache.close();
    }
    {
        let database = redb::Database::create(&path).unwrap_or_else(|error| panic!("{error}"));
        let transaction = database
            .begin_write()
            .unwrap_or_else(|error| panic!("{error}"));
        {
            let mut meta = transaction
                .open_table(super::record::META)
                .unwrap_or_else(|error| panic!("{error}"));
            meta.insert(super::record::FORMAT_VERSION_KEY, 99)
                .unwrap_or_else(|error| panic!("{error}"));
        }
        transaction
            .commit()
            .unwrap_or_else(|error| panic!("{error}"));
    }
    let (cache, _) = opened(&path, "");
    assert!(cache.get("k").is_none());
    assert_eq!(files_starting(dir.path(), "old.redb.corrupt-").len(), 1);
    drop(cache);

    // A redb file of someone else's.
    let path = dir.path().join("foreign.redb");
    {
        let database = redb::Database::create(&path).unwrap_or_else(|error| panic!("{error}"));
        let transaction = database
            .begin_write()
            .unwrap_or_else(|error| panic!("{error}"));
        {
            let table: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("theirs");
            let mut table = transaction
                .open_table(table)
                .unwrap_or_else(|error| panic!("{error}"));
            table.insert(1, 2).unwrap_or_else(|error| panic!("{error}"));
        }
        transaction
            .commit()
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(database.begin_read().is_ok());
    }
    let (cache, _) = opened(&path, "");
    assert_eq!(files_starting(dir.path(), "foreign.redb.corrupt-").len(), 1);
    drop(cache);
}

#[test]
fn a_directory_that_cannot_be_created_or_a_file_in_use_stops_the_start() {
    let dir = temp_dir();
    // A regular file where the directory should be: no user, not even root, can write there.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"").unwrap_or_else(|error| panic!("{error}"));
    match open(&blocker.join("cache.redb"), "") {
        Err(error @ CacheError::Directory { .. }) => {
            assert!(error.to_string().contains("blocker"), "{error}");
        }
        Err(other) => panic!("expected a directory error, got {other}"),
        Ok(_) => panic!("a cache under a file cannot open"),
    }
    match open(dir.path(), "") {
        Err(CacheError::NotAFile { .. }) => {}
        Err(other) => panic!("expected NotAFile, got {other}"),
        Ok(_) => panic!("a directory is not a cache file"),
    }
    // Missing directories are created.
    let nested = dir.path().join("a/b/cache.redb");
    let (first, _) = opened(&nested, "");
    match open(&nested, "") {
        Err(CacheError::InUse { .. }) => {}
        Err(other) => panic!("expected InUse, got {other}"),
        Ok(_) => panic!("one file, one bridge"),
    }
    drop(first);
    assert!(open(&nested, "").is_ok(), "free again once closed");
}

#[test]
fn a_discard_marker_from_a_failed_invalidation_empties_the_cache_at_start() {
    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    {
        let (cache, _) = opened(&path, "");
        fill(&cache, "k", entry(json!(1), &["server:s"], None, 1));
        cache.close();
    }
    let marker = dir.path().join("cache.redb.discard");
    std::fs::write(&marker, b"").unwrap_or_else(|error| panic!("{error}"));
    let (cache, _) = opened(&path, "");
    assert!(cache.get("k").is_none());
    assert!(!marker.exists());
    assert_eq!(loaded(&cache), 0);
}

#[test]
fn after_close_fills_are_dropped_and_invalidations_still_reach_the_file() {
    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    {
        let (cache, metrics) = opened(&path, "");
        fill(&cache, "kept", entry(json!(1), &["server:s"], None, 1));
        fill(&cache, "gone", entry(json!(1), &["server:t"], None, 1));
        cache.close();
        fill(&cache, "late", entry(json!(2), &["server:s"], None, 1));
        assert_eq!(
            metrics
                .cache_disk_dropped_writes_total
                .with_label_values(&["put"])
                .get(),
            1
        );
        let dropped =
            cache.invalidate(&Invalidation::Server("t".into()), InvalidationReason::Write);
        assert_eq!(dropped, 1);
        assert_eq!(writes(&metrics, "invalidate"), 1);
        assert!(!dir.path().join("cache.redb.discard").exists());
        assert_eq!(cache.stats()["disk"]["discard_at_next_start"], false);
    }
    let (cache, _) = opened(&path, "");
    assert!(cache.get("kept").is_some());
    assert!(
        cache.get("gone").is_none(),
        "the late invalidation was written"
    );
    assert!(
        cache.get("late").is_none(),
        "fills after close stay in memory"
    );
}

#[test]
fn an_invalidation_not_committed_in_time_marks_the_file_for_discarding() {
    use super::writer::{Durable, Pending, Removal, Shared};
    let dir = temp_dir();
    let marker = dir.path().join("cache.redb.discard");
    let metrics = Arc::new(CacheMetrics::register(&Registry::new()));
    // No writer runs: nothing is ever committed.
    let shared = Shared::new(4, marker.clone(), metrics.clone());
    let Pending::Commit(sequence) = shared.invalidate(Removal::Tag("tag:x".into())) else {
        panic!("an invalidation is queued");
    };
    assert_eq!(
        shared.wait(sequence, Duration::from_millis(30)),
        Durable::TimedOut
    );
    assert!(marker.exists());
    assert!(shared.is_untrusted());
    assert_eq!(
        metrics
            .cache_disk_write_errors_total
            .with_label_values(&["timeout"])
            .get(),
        1
    );
    // From then on nothing is written or waited for.
    assert!(matches!(
        shared.invalidate(Removal::Clear),
        Pending::Nothing
    ));
}

#[test]
fn fills_racing_invalidations_never_outlive_them_on_disk() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};

    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    // Orders the end of each fill and the start of the last invalidation.
    let clock = Arc::new(AtomicU64::new(0));
    let (cache, _) = opened(&path, "");
    let cache = Arc::new(cache);
    let last_invalidation_started = std::thread::scope(|scope| {
        let fillers: Vec<_> = (0..4)
            .map(|thread| {
                let (cache, clock) = (cache.clone(), clock.clone());
                scope.spawn(move || {
                    let mut done = Vec::new();
                    for index in 0..400 {
                        let key = format!("t{thread}-{index}");
                        let ticket = cache.begin_fill();
                        let stored = cache.insert(
                            Arc::from(key.as_str()),
                            entry(json!({"key": key}), &["server:s", "tag:racing"], None, 10),
                            &ticket,
                        );
                        if stored {
                            done.push((key, clock.fetch_add(1, Ordering::SeqCst)));
                        }
                    }
                    done
                })
            })
            .collect();
        let mut started = 0;
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(2));
            started = clock.fetch_add(1, Ordering::SeqCst);
            cache.invalidate(&Invalidation::tag("racing"), InvalidationReason::Write);
        }
        let filled: Vec<(String, u64)> = fillers
            .into_iter()
            .flat_map(|filler| {
                filler
                    .join()
                    .unwrap_or_else(|_| panic!("a filler thread panicked"))
            })
            .collect();
        (started, filled)
    });
    let (started, filled) = last_invalidation_started;
    let in_memory: HashSet<&str> = filled
        .iter()
        .map(|(key, _)| key.as_str())
        .filter(|key| cache.get(key).is_some())
        .collect();
    cache.close();
    drop(cache);
    let (reopened, _) = opened(&path, "");
    let before: HashSet<&str> = filled
        .iter()
        .filter(|(_, at)| *at < started)
        .map(|(key, _)| key.as_str())
        .collect();
    assert!(
        !before.is_empty(),
        "some fills finished before the last invalidation"
    );
    for key in &before {
        assert!(
            reopened.get(key).is_none(),
            "{key} was filled before the last invalidation and came back"
        );
    }
    // The file holds exactly what memory held: nothing was lost on the way either.
    for key in &in_memory {
        assert!(reopened.get(key).is_some(), "{key} was cached and lost");
    }
    assert_eq!(loaded(&reopened), in_memory.len() as u64);
}

#[test]
fn a_start_with_smaller_bounds_shrinks_the_file_to_them() {
    let dir = temp_dir();
    let path = dir.path().join("cache.redb");
    {
        let (cache, _) = opened(&path, "");
        for index in 0..20 {
            fill(
                &cache,
                &format!("k{index}"),
                entry(json!({"index": index}), &["server:s"], None, 400),
            );
        }
        cache.close();
    }
    {
        // The bounds shrank while the bridge was down: 1 KiB holds two of them.
        let (cache, metrics) = opened(&path, "max_bytes = \"1KiB\"\neviction = \"lru\"");
        assert_eq!(loaded(&cache), 20);
        cache.close();
        assert!(writes(&metrics, "evict") >= 18, "{}", cache.stats());
    }
    let (cache, _) = opened(&path, "");
    assert!(loaded(&cache) <= 2, "{}", cache.stats());
}
