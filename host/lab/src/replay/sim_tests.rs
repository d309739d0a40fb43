use super::*;

fn entry(bytes: u64, expires_at: u64) -> SimEntry {
    SimEntry {
        digest: 1,
        stored_at: 0,
        expires_at,
        kept_until: expires_at,
        bytes,
        server: 1,
        name: 0,
        tags: Vec::new(),
    }
}

fn limits(max_bytes: u64, eviction: Eviction) -> SimLimits {
    SimLimits {
        max_bytes,
        max_entries: u64::MAX,
        eviction,
    }
}

/// A read as the replay makes it (a lookup, then on a miss a fill of `bytes`), with the
/// batch run right after it, as in a cache whose maintenance keeps up with every call.
fn read(cache: &mut SimCache, key: u32, bytes: u64) -> bool {
    let hit = cache.get(key, 1).is_some();
    if !hit {
        cache.insert(key, entry(bytes, 1_000));
    }
    cache.run_pending_tasks(1);
    hit
}

#[test]
fn lru_evicts_the_least_recently_used_entries_until_the_bytes_fit() {
    let mut cache = SimCache::new(4, limits(250, Eviction::Lru));
    cache.insert(0, entry(100, 100));
    cache.insert(1, entry(100, 100));
    cache.run_pending_tasks(1);
    // Touching 0 makes 1 the oldest, so 1 goes when 2 arrives.
    assert!(cache.get(0, 5).is_some());
    cache.insert(2, entry(100, 100));
    cache.run_pending_tasks(5);
    assert!(cache.get(1, 5).is_none());
    assert!(cache.get(0, 5).is_some());
    assert!(cache.get(2, 5).is_some());
    assert_eq!((cache.len(), cache.bytes(), cache.evictions), (2, 200, 1));
    // One entry of 200 bytes needs both places.
    cache.insert(3, entry(200, 100));
    cache.run_pending_tasks(5);
    assert_eq!((cache.len(), cache.bytes(), cache.evictions), (1, 200, 3));
}

#[test]
fn expired_entries_are_not_served_and_leave_at_the_next_batch() {
    let mut cache = SimCache::new(2, limits(1_000, Eviction::TinyLfu));
    cache.insert(0, entry(10, 100));
    assert!(cache.get(0, 100).is_none());
    cache.run_pending_tasks(100);
    assert!(cache.is_empty());
}

#[test]
fn an_entry_in_its_stale_window_takes_room_but_is_not_served() {
    let mut cache = SimCache::new(2, limits(1_000, Eviction::TinyLfu));
    cache.insert(
        0,
        SimEntry {
            kept_until: 200,
            ..entry(10, 100)
        },
    );
    assert!(cache.get(0, 150).is_none());
    cache.run_pending_tasks(150);
    assert_eq!(cache.len(), 1);
    // Its lifetime over, the next batch drops it.
    cache.insert(
        1,
        SimEntry {
            stored_at: 200,
            ..entry(10, 300)
        },
    );
    cache.run_pending_tasks(200);
    assert_eq!(cache.len(), 1);
    assert!(cache.get(1, 250).is_some());
}

/// As in moka, a fill is in the map at once and served until the next batch decides it.
#[test]
fn a_result_larger_than_the_cache_is_served_until_the_batch_refuses_it() {
    let mut cache = SimCache::new(2, limits(1_000, Eviction::TinyLfu));
    cache.insert(0, entry(1_001, 100));
    assert!(cache.get(0, 1).is_some());
    cache.run_pending_tasks(1);
    assert!(cache.get(0, 1).is_none());
    assert!(cache.is_empty());
    assert_eq!((cache.evictions, cache.refused), (1, 1));
}

/// A batch runs once 64 lookups wait, or 300 ms after the last one.
#[test]
fn batches_run_after_sixty_four_lookups_or_three_hundred_milliseconds() {
    let mut cache = SimCache::new(2, limits(1_000, Eviction::TinyLfu));
    cache.insert(0, entry(10, u64::MAX));
    for _ in 0..64 {
        assert!(cache.get(0, 1).is_some());
    }
    assert_eq!(cache.len(), 0, "still waiting for its batch");
    assert!(cache.get(0, 1).is_some());
    assert_eq!(cache.len(), 1, "the 65th lookup ran the batch first");
    cache.insert(1, entry(10, u64::MAX));
    assert!(cache.get(1, 300_000).is_some());
    assert_eq!(cache.len(), 1, "within 300 ms of the last batch");
    assert!(cache.get(1, 300_001).is_some());
    assert_eq!(cache.len(), 2, "300 ms after the last batch");
}

/// A small entry read often keeps its place while large one-off entries stream past:
/// TinyLFU refuses them, where LRU lets them push it out.
#[test]
fn a_frequently_used_small_entry_survives_a_scan_of_large_one_off_entries() {
    let survivor = |eviction: Eviction| {
        let mut cache = SimCache::new(1, limits(10_000, eviction));
        read(&mut cache, 0, 100);
        // Half full: the frequency sketch starts counting, and the small entry is used.
        for key in 1..=3 {
            read(&mut cache, key, 2_000);
        }
        for _ in 0..5 {
            read(&mut cache, 0, 100);
        }
        let mut hot_hits = 0;
        // Seven large entries between two reads of the small one: more than the cache holds.
        for key in 4..400 {
            if key % 8 == 0 && read(&mut cache, 0, 100) {
                hot_hits += 1;
            }
            read(&mut cache, key, 2_000);
            assert!(cache.weighted_size() <= 10_000);
        }
        (hot_hits, cache.refused)
    };
    let (tinylfu_hits, tinylfu_refused) = survivor(Eviction::TinyLfu);
    let (lru_hits, lru_refused) = survivor(Eviction::Lru);
    assert_eq!(tinylfu_hits, 49, "the small entry hit on every read");
    assert!(
        tinylfu_refused > 300,
        "most of the scan was refused: {tinylfu_refused}"
    );
    // LRU keeps it only until the first full round of the scan has passed.
    assert!(
        lru_hits <= 1,
        "LRU evicted it between reads: {lru_hits} hits"
    );
    assert_eq!(lru_refused, 0);
}

#[test]
fn the_byte_budget_and_the_entry_cap_both_bound_the_cache() {
    for eviction in [Eviction::TinyLfu, Eviction::Lru] {
        // 4,000 bytes for at most 4 entries: each weighs at least 1,000 bytes.
        let mut cache = SimCache::new(
            64,
            SimLimits {
                max_bytes: 4_000,
                max_entries: 4,
                eviction,
            },
        );
        for key in 0..64u32 {
            let bytes = [100, 1_500, 700, 3_000][key as usize % 4];
            read(&mut cache, key % 16, bytes);
            assert!(cache.len() <= 4, "{eviction:?}: {} entries", cache.len());
            assert!(
                cache.weighted_size() <= 4_000,
                "{eviction:?}: {} bytes weighed",
                cache.weighted_size()
            );
        }
        assert!(cache.evictions > 0, "{eviction:?}");
    }
}

#[test]
fn an_update_of_a_cached_key_is_not_refused() {
    let mut cache = SimCache::new(3, limits(1_000, Eviction::TinyLfu));
    read(&mut cache, 0, 600);
    read(&mut cache, 1, 300);
    // A larger result for key 1: TinyLFU would refuse a newcomer of its frequency, but an
    // update only makes room, evicting the oldest entry.
    cache.insert(1, entry(500, 1_000));
    cache.run_pending_tasks(1);
    assert_eq!((cache.len(), cache.bytes(), cache.refused), (1, 500, 0));
}

/// An expired entry stays in the map until the next batch, so a refill right after the
/// miss is an update, not a newcomer: moka keeps it even against more popular entries.
#[test]
fn a_refill_before_the_batch_keeps_an_expired_entrys_place() {
    let refill = |batch_first: bool| {
        let mut cache = SimCache::new(3, limits(1_000, Eviction::TinyLfu));
        cache.insert(0, entry(500, 100));
        cache.insert(1, entry(500, u64::MAX));
        cache.run_pending_tasks(1);
        for _ in 0..10 {
            assert!(cache.get(1, 2).is_some());
        }
        assert!(cache.get(0, 150).is_none());
        if batch_first {
            // The batch drops the expired entry, and another fill takes its room.
            cache.run_pending_tasks(150);
            cache.insert(
                2,
                SimEntry {
                    stored_at: 150,
                    ..entry(500, 1_000)
                },
            );
            cache.run_pending_tasks(150);
        }
        cache.insert(
            0,
            SimEntry {
                stored_at: 150,
                ..entry(500, 1_000)
            },
        );
        cache.run_pending_tasks(150);
        (cache.len(), cache.refused)
    };
    assert_eq!(refill(false), (2, 0));
    assert_eq!(
        refill(true),
        (2, 1),
        "a newcomer loses to the popular entry"
    );
}

#[test]
fn keys_beyond_the_first_count_grow_the_cache() {
    let mut cache = SimCache::new(1, limits(1_000, Eviction::TinyLfu));
    assert!(cache.get(40, 1).is_none());
    cache.insert(40, entry(10, 100));
    assert!(cache.get(40, 1).is_some());
}
