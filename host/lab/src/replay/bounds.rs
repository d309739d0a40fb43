//! The bounds every policy is shown beside, computed on the same trace:
//! - no cache: every call reaches the backend;
//! - perfect invalidation, unbounded: a read hits whenever its key was fetched before
//!   and its result has not changed since; never stale, no TTL, no size limit;
//! - Belady's optimal at a given size, with perfect invalidation: when the cache is
//!   full it evicts the entry whose next use lies furthest in the future, which no
//!   online policy can beat on hit ratio at that size.
//!
//! Bounds key results by their shared key (what a result shared across principals is
//! filed under): the most a cache could share.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::{Prepared, Tally};
use crate::results::ReplayMetrics;
use mcp_bridge_trace::RecordedStatus;

/// Never used again.
const NEVER: u32 = u32::MAX;

/// Every call reaches the backend.
pub fn no_cache(prepared: &Prepared<'_>) -> (ReplayMetrics, Duration) {
    let started = Instant::now();
    let mut tally = Tally::default();
    for event in &prepared.trace.events {
        if event.write {
            tally.metrics.writes += 1;
        } else {
            tally.metrics.reads += 1;
            tally.metrics.bypasses += 1;
        }
        tally.backend_call(event.latency_us);
    }
    (tally.finish(None), started.elapsed())
}

/// An unbounded cache that learns of every change the moment it happens.
pub fn perfect(prepared: &Prepared<'_>) -> (ReplayMetrics, Duration) {
    let started = Instant::now();
    let trace = prepared.trace;
    let mut tally = Tally::default();
    // Per key: the result cached, if any.
    let mut cached: Vec<Option<(u64, u64)>> = vec![None; trace.keys as usize];
    let (mut entries, mut bytes, mut peak_entries, mut peak_bytes) = (0u64, 0u64, 0u64, 0u64);
    for event in &trace.events {
        if event.write {
            tally.metrics.writes += 1;
            tally.backend_call(event.latency_us);
            continue;
        }
        tally.metrics.reads += 1;
        let slot = &mut cached[event.shared_key as usize];
        let valid = match (*slot, event.truth) {
            (Some((digest, _)), Some(truth)) => digest == truth,
            // Nothing says it changed, and this bound assumes it hears of every change.
            (Some(_), None) => true,
            (None, _) => false,
        };
        if valid {
            tally.hit(event.latency_us, prepared.hit_latency_us);
            continue;
        }
        tally.metrics.misses += 1;
        tally.backend_call(event.latency_us);
        if event.status != RecordedStatus::Ok {
            continue;
        }
        if let Some((_, old_bytes)) = slot.take() {
            entries -= 1;
            bytes -= old_bytes;
        }
        *slot = Some((event.truth.unwrap_or(event.digest), event.bytes));
        entries += 1;
        bytes += event.bytes;
        peak_entries = peak_entries.max(entries);
        peak_bytes = peak_bytes.max(bytes);
    }
    let mut metrics = tally.finish(None);
    metrics.peak_entries = peak_entries;
    metrics.peak_bytes = peak_bytes;
    metrics.final_entries = entries;
    metrics.final_bytes = bytes;
    (metrics, started.elapsed())
}

/// For each read: the index of the next read of the same key that could use the result
/// fetched now (its result is unchanged), or [`NEVER`]. Computed once per trace.
pub fn next_uses(prepared: &Prepared<'_>) -> Vec<u32> {
    let events = &prepared.trace.events;
    let mut next = vec![NEVER; events.len()];
    let mut later: Vec<Option<(u32, Option<u64>)>> = vec![None; prepared.trace.keys as usize];
    for (index, event) in events.iter().enumerate().rev() {
        if event.write {
            continue;
        }
        let slot = &mut later[event.shared_key as usize];
        if let Some((next_index, next_truth)) = *slot {
            let same = match (event.truth, next_truth) {
                (Some(now), Some(then)) => now == then,
                _ => true,
            };
            if same {
                next[index] = next_index;
            }
        }
        *slot = Some((u32::try_from(index).unwrap_or(NEVER), event.truth));
    }
    next
}

/// Belady's optimal replacement with perfect invalidation, holding at most `capacity`
/// entries. `next` comes from [`next_uses`].
pub fn belady(prepared: &Prepared<'_>, next: &[u32], capacity: u64) -> (ReplayMetrics, Duration) {
    let started = Instant::now();
    let trace = prepared.trace;
    let capacity = capacity.max(1);
    let mut tally = Tally::default();
    // Per key: the next use of its cached result, if cached, and the result's digest.
    let mut cached: Vec<Option<(u32, u64, u64)>> = vec![None; trace.keys as usize];
    // Cached keys by next use, furthest first; stale heap items are skipped lazily.
    let mut furthest: BinaryHeap<(u32, u32)> = BinaryHeap::new();
    let (mut entries, mut bytes, mut peak_entries, mut peak_bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut evictions = 0u64;
    for (index, event) in trace.events.iter().enumerate() {
        if event.write {
            tally.metrics.writes += 1;
            tally.backend_call(event.latency_us);
            continue;
        }
        tally.metrics.reads += 1;
        let key = event.shared_key;
        let next_use = next[index];
        let hit = match (cached[key as usize], event.truth) {
            (Some((_, digest, _)), Some(truth)) => digest == truth,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if hit {
            tally.hit(event.latency_us, prepared.hit_latency_us);
        } else {
            tally.metrics.misses += 1;
            tally.backend_call(event.latency_us);
        }
        // The cached result (refetched on a miss) is next useful at `next_use`.
        if let Some((_, _, old_bytes)) = cached[key as usize].take() {
            entries -= 1;
            bytes -= old_bytes;
        }
        if next_use == NEVER || event.status != RecordedStatus::Ok {
            continue;
        }
        if entries >= capacity {
            // Evict the furthest next use, unless this result's is further still.
            while let Some(&(use_at, victim)) = furthest.peek() {
                let live = cached[victim as usize].is_some_and(|(at, _, _)| at == use_at);
                if !live {
                    furthest.pop();
                    continue;
                }
                break;
            }
            match furthest.peek() {
                Some(&(use_at, victim)) if use_at > next_use => {
                    furthest.pop();
                    if let Some((_, _, old_bytes)) = cached[victim as usize].take() {
                        entries -= 1;
                        bytes -= old_bytes;
                        evictions += 1;
                    }
                }
                _ => continue,
            }
        }
        let digest = event.truth.unwrap_or(event.digest);
        cached[key as usize] = Some((next_use, digest, event.bytes));
        furthest.push((next_use, key));
        entries += 1;
        bytes += event.bytes;
        peak_entries = peak_entries.max(entries);
        peak_bytes = peak_bytes.max(bytes);
    }
    let mut metrics = tally.finish(None);
    metrics.peak_entries = peak_entries;
    metrics.peak_bytes = peak_bytes;
    metrics.final_entries = entries;
    metrics.final_bytes = bytes;
    metrics.evictions = evictions;
    (metrics, started.elapsed())
}
