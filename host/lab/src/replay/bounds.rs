//! The bounds every policy is shown beside, computed on the same trace:
//! - no cache: every call reaches the backend;
//! - perfect invalidation, unbounded: a read hits whenever its key was fetched before
//!   and its result has not changed since; never stale, no TTL, no size limit;
//! - Belady's bound at a given size, with perfect invalidation: when the cache is full
//!   it evicts the entries whose next use lies furthest in the future until the new one
//!   fits, and keeps the new one only if its own next use comes sooner. Entries weigh
//!   what they weigh in `serve`'s cache (the store's weigher: bytes, with the
//!   `max_bytes / max_entries` floor) against the same byte budget.
//!
//! With entries of one size, furthest-next-use is Belady's optimum, which no online policy
//! can beat on hit ratio. With sizes it is the standard size-aware Belady heuristic: exact
//! optimal caching of entries of different sizes is NP-hard, and this greedy bound can in
//! principle be beaten by a policy that keeps many small entries in place of one large one
//! used sooner. It stays the usual yardstick: what looking ahead buys.
//!
//! Bounds key results by their shared key (what a result shared across principals is
//! filed under): the most a cache could share.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::sim::SimLimits;
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

/// Belady's replacement by bytes with perfect invalidation, within `limits`' byte budget
/// weighed as `serve` weighs (see the module documentation). `next` comes from
/// [`next_uses`].
pub fn belady(
    prepared: &Prepared<'_>,
    next: &[u32],
    limits: SimLimits,
) -> (ReplayMetrics, Duration) {
    let started = Instant::now();
    let trace = prepared.trace;
    let weigher = limits.weigher();
    let budget = limits.max_bytes.max(1);
    let mut tally = Tally::default();
    // Per key: the cached result, if any.
    let mut cached: Vec<Option<Cached>> = vec![None; trace.keys as usize];
    // Cached keys by next use, furthest first; stale heap items are skipped lazily.
    let mut furthest: BinaryHeap<(u32, u32)> = BinaryHeap::new();
    let mut held = Held::default();
    let mut victims: Vec<(u32, u32)> = Vec::new();
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
            (Some(entry), Some(truth)) => entry.digest == truth,
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
        if let Some(entry) = cached[key as usize].take() {
            held.remove(entry);
        }
        if next_use == NEVER || event.status != RecordedStatus::Ok {
            continue;
        }
        let weight = u64::from(weigher.weigh(event.bytes));
        if weight > budget {
            continue;
        }
        // Take the furthest next uses until the result fits, as long as each is used later
        // than this result; if they never free enough, nothing is evicted and the result is
        // not kept (it would be the one used last).
        victims.clear();
        let mut freed = 0u64;
        while held.weighted - freed + weight > budget {
            let Some((use_at, victim)) = furthest.pop() else {
                break;
            };
            let live = cached[victim as usize].is_some_and(|entry| entry.next_use == use_at);
            if !live {
                continue;
            }
            victims.push((use_at, victim));
            if use_at <= next_use {
                break;
            }
            freed += cached[victim as usize].map_or(0, |entry| entry.weight);
        }
        if held.weighted - freed + weight > budget {
            furthest.extend(victims.drain(..));
            continue;
        }
        for (_, victim) in victims.drain(..) {
            if let Some(entry) = cached[victim as usize].take() {
                held.remove(entry);
                held.evictions += 1;
            }
        }
        let entry = Cached {
            next_use,
            digest: event.truth.unwrap_or(event.digest),
            bytes: event.bytes,
            weight,
        };
        cached[key as usize] = Some(entry);
        furthest.push((next_use, key));
        held.add(entry);
    }
    let mut metrics = tally.finish(None);
    metrics.peak_entries = held.peak_entries;
    metrics.peak_bytes = held.peak_bytes;
    metrics.final_entries = held.entries;
    metrics.final_bytes = held.bytes;
    metrics.evictions = held.evictions;
    (metrics, started.elapsed())
}

/// A result Belady's cache holds.
#[derive(Debug, Clone, Copy)]
struct Cached {
    /// The index of the read that will use it next.
    next_use: u32,
    digest: u64,
    bytes: u64,
    weight: u64,
}

/// What Belady's cache holds, in entries, bytes and weight.
#[derive(Debug, Default)]
struct Held {
    entries: u64,
    bytes: u64,
    weighted: u64,
    peak_entries: u64,
    peak_bytes: u64,
    evictions: u64,
}

impl Held {
    fn add(&mut self, entry: Cached) {
        self.entries += 1;
        self.bytes += entry.bytes;
        self.weighted += entry.weight;
        self.peak_entries = self.peak_entries.max(self.entries);
        self.peak_bytes = self.peak_bytes.max(self.bytes);
    }

    fn remove(&mut self, entry: Cached) {
        self.entries -= 1;
        self.bytes -= entry.bytes;
        self.weighted -= entry.weight;
    }
}
