//! Replay: a trace against one policy chain in virtual time. The chain is the production
//! [`PolicyChain`] (built-in policy, WASM plugins); only the cache ([`sim`]) and the clock
//! are simulated. A miss costs the backend latency the trace recorded for that call.
//!
//! [`bounds`] computes what no policy can beat (or do worse than) on the same trace.

pub mod bounds;
mod shaping;
pub mod sim;
mod sketch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::loaded::{Event, Trace};
use super::percentile;
use super::results::ReplayMetrics;
use mcp_bridge_policy::{Call, Decision, Outcome, PolicyChain, ServerHints, Shaper, Status};
use mcp_bridge_trace::RecordedStatus;
use sim::{SimCache, SimEntry, SimLimits};

/// How often (in events) a replay reports progress and times a policy call. Timing every
/// call would add two clock reads to a 60 ns decision.
const SAMPLE_EVERY: usize = 8;
const PROGRESS_EVERY: usize = 4096;

/// One replay's cache bounds and TTL factor.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub limits: SimLimits,
    /// Multiplies every TTL a policy answers (a server's `ttlMs` is the server's, and
    /// still caps the result).
    pub ttl_scale: f64,
}

/// What the replays of one trace share: computed once.
pub struct Prepared<'t> {
    pub trace: &'t Trace,
    /// Each server's write times, in order: the first write after an entry was stored
    /// is when it (most likely) went stale.
    write_times: HashMap<u32, Vec<u64>>,
    /// The event that first used each key, to rebuild its production cache key.
    first_event: Vec<u32>,
    /// What a hit costs, in microseconds.
    pub hit_latency_us: f64,
}

impl<'t> Prepared<'t> {
    pub fn new(trace: &'t Trace, hit_latency: Duration) -> Prepared<'t> {
        let mut write_times: HashMap<u32, Vec<u64>> = HashMap::new();
        let mut first_event = vec![u32::MAX; trace.keys as usize];
        for (index, event) in trace.events.iter().enumerate() {
            if event.write {
                write_times
                    .entry(event.server)
                    .or_default()
                    .push(event.t_us);
            }
            for key in [event.key, event.shared_key] {
                if first_event[key as usize] == u32::MAX {
                    first_event[key as usize] = u32::try_from(index).unwrap_or(u32::MAX);
                }
            }
        }
        Prepared {
            trace,
            write_times,
            first_event,
            hit_latency_us: hit_latency.as_secs_f64() * 1e6,
        }
    }

    /// The first write on `server` after `since`, if any.
    fn first_write_after(&self, server: u32, since: u64) -> Option<u64> {
        let times = self.write_times.get(&server)?;
        let index = times.partition_point(|time| *time <= since);
        times.get(index).copied()
    }

    /// The cache keys whose production key text is `text` (for `Key` invalidations).
    fn keys_matching(&self, text: &str) -> Vec<u32> {
        let trace = self.trace;
        (0..trace.keys)
            .filter(|key| {
                let Some(event) = self
                    .first_event
                    .get(*key as usize)
                    .and_then(|index| trace.events.get(*index as usize))
                else {
                    return false;
                };
                let partition = if event.key == *key && event.partition != 0 {
                    trace.string(event.partition)
                } else {
                    ""
                };
                mcp_bridge_cache::cache_key(
                    trace.string(event.server),
                    trace.string(event.method),
                    trace.string(event.name),
                    partition,
                    arguments_of(trace, event),
                ) == text
            })
            .collect()
    }
}

fn arguments_of<'a>(trace: &'a Trace, event: &Event) -> &'a str {
    if event.arguments == 0 {
        "{}"
    } else {
        trace.string(event.arguments)
    }
}

/// The call a policy sees for an event when it is decided: the server's hints are not
/// known yet, as in `serve`.
fn call_info<'a>(trace: &'a Trace, event: &Event) -> Call<'a> {
    Call {
        server: trace.string(event.server),
        method: trace.string(event.method),
        kind: event.kind,
        name: trace.string(event.name),
        canonical_arguments: arguments_of(trace, event),
        annotations: event.annotations,
        hints: ServerHints::default(),
        principal: (event.partition != 0).then(|| trace.string(event.partition)),
    }
}

fn status_of(event: &Event) -> Status {
    match event.status {
        RecordedStatus::Ok => Status::Success,
        RecordedStatus::Error => Status::Error,
        RecordedStatus::Unknown => Status::Unknown,
    }
}

/// Counters and samples while a replay runs.
#[derive(Default)]
pub(crate) struct Tally {
    pub metrics: ReplayMetrics,
    pub latencies_us: Vec<u32>,
    pub staleness_us: Vec<u64>,
    pub backend_us: u64,
    pub saved_us: u64,
    pub sampled_policy_ns: u128,
    pub sampled_policy_calls: u64,
}

impl Tally {
    pub(crate) fn backend_call(&mut self, latency_us: u64) {
        self.metrics.backend_calls += 1;
        self.backend_us += latency_us;
        self.latencies_us
            .push(u32::try_from(latency_us).unwrap_or(u32::MAX));
    }

    pub(crate) fn hit(&mut self, saved_us: u64, hit_latency_us: f64) {
        self.metrics.hits += 1;
        self.saved_us += saved_us;
        self.latencies_us.push(hit_latency_us.round() as u32);
    }

    /// Fills in the ratios, percentiles and totals.
    pub(crate) fn finish(mut self, cache: Option<&SimCache>) -> ReplayMetrics {
        let metrics = &mut self.metrics;
        let reads = metrics.reads.max(1) as f64;
        metrics.hit_ratio = metrics.hits as f64 / reads;
        metrics.stale_hit_ratio = metrics.stale_hits as f64 / reads;
        metrics.stale_share_of_hits = metrics.stale_hits as f64 / metrics.hits.max(1) as f64;
        metrics.staleness_p50_ms = percentile(&mut self.staleness_us, 0.50) as f64 / 1e3;
        metrics.staleness_p99_ms = percentile(&mut self.staleness_us, 0.99) as f64 / 1e3;
        metrics.backend_calls_saved = metrics.hits;
        metrics.backend_time_ms = self.backend_us as f64 / 1e3;
        metrics.backend_time_saved_ms = self.saved_us as f64 / 1e3;
        let calls = self.latencies_us.len().max(1) as f64;
        let total: u64 = self
            .latencies_us
            .iter()
            .map(|latency| u64::from(*latency))
            .sum();
        metrics.latency_mean_ms = total as f64 / calls / 1e3;
        metrics.latency_p99_ms = percentile(&mut self.latencies_us, 0.99) as f64 / 1e3;
        if let Some(cache) = cache {
            metrics.peak_entries = cache.peak_entries;
            metrics.peak_bytes = cache.peak_bytes;
            metrics.final_entries = cache.len();
            metrics.final_bytes = cache.bytes();
            metrics.evictions = cache.evictions;
            metrics.invalidated = cache.invalidated;
        }
        if self.sampled_policy_calls > 0 {
            metrics.decision_ns = self.sampled_policy_ns as f64 / self.sampled_policy_calls as f64;
        }
        self.metrics
    }
}

/// Replays the whole trace against `chain` at `setting`; adds to `progress` as it goes.
/// Returns what it measured and how long it took.
pub fn replay(
    prepared: &Prepared<'_>,
    chain: &PolicyChain,
    setting: Setting,
    progress: &AtomicU64,
) -> (ReplayMetrics, Duration) {
    let started = Instant::now();
    let trace = prepared.trace;
    let mut cache = SimCache::new(trace.keys, setting.limits);
    let mut shapes = shaping::Shapes::new(trace.keys);
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(trace.events.len()),
        ..Tally::default()
    };
    // When each key's true result last changed, as far as the trace shows.
    let mut truth_changes: Vec<(u64, u64)> = vec![(0, 0); trace.keys as usize];
    for (index, event) in trace.events.iter().enumerate() {
        if index % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
            progress.fetch_add(PROGRESS_EVERY as u64, Ordering::Relaxed);
        }
        let sampled = index % SAMPLE_EVERY == 0;
        let call = call_info(trace, event);
        if event.write {
            tally.metrics.writes += 1;
            tally.backend_call(event.latency_us);
            let outcome = Outcome {
                status: status_of(event),
                latency: Duration::from_micros(event.latency_us),
                result_bytes: event.bytes,
            };
            // A write's outcome is judged with the server's hints on its result, as `serve`
            // judges it.
            let call = Call {
                hints: event.hints,
                ..call
            };
            let timer = sampled.then(Instant::now);
            let (invalidations, shaper) = chain.invalidations_shaped(&call, &outcome);
            tally.sample(timer);
            tally.shaped(shaper);
            for invalidation in &invalidations {
                cache.invalidate(invalidation, trace, |text| prepared.keys_matching(text));
            }
            continue;
        }
        tally.metrics.reads += 1;
        if let Some(truth) = event.truth {
            let (last, changed_at) = &mut truth_changes[event.key as usize];
            if *last != truth {
                *last = truth;
                *changed_at = event.t_us;
            }
        }
        let timer = sampled.then(Instant::now);
        let (decision, shaper) = chain.decide_shaped(&call);
        tally.sample(timer);
        tally.shaped(shaper);
        let Decision::Cache(directive) = decision else {
            tally.metrics.bypasses += 1;
            tally.backend_call(event.latency_us);
            continue;
        };
        // Where `serve` looks: the shared key when the policy shares results, then the
        // caller's own key (where a result the server marked private was filed). A trace
        // without principals has one anonymous caller, whose own key is the shared one.
        let ignore = &directive.ignore_arguments;
        let mut key_for = |cache: &mut SimCache, shared: bool| {
            read_key(&mut shapes, cache, trace, event, shared, ignore)
        };
        let shared_key = directive.shared.then(|| key_for(&mut cache, true));
        let own_key =
            (event.partition != 0 || !directive.shared).then(|| key_for(&mut cache, false));
        let mut found = None;
        for key in [shared_key, own_key].into_iter().flatten() {
            if let Some(entry) = cache.get(key, event.t_us) {
                found = Some((entry.digest, entry.stored_at));
                break;
            }
        }
        if let Some((digest, stored_at)) = found {
            match event.truth {
                None => tally.metrics.unverified_hits += 1,
                Some(truth) if truth != digest => {
                    tally.metrics.stale_hits += 1;
                    let changed_at = truth_changes[event.key as usize].1.max(stored_at);
                    let stale_since = prepared
                        .first_write_after(event.server, stored_at)
                        .map_or(changed_at, |write| write.min(changed_at));
                    tally
                        .staleness_us
                        .push(event.t_us.saturating_sub(stale_since));
                }
                Some(_) => {}
            }
            tally.hit(event.latency_us, prepared.hit_latency_us);
            continue;
        }
        tally.metrics.misses += 1;
        tally.backend_call(event.latency_us);
        if event.status != RecordedStatus::Ok {
            continue;
        }
        // The entry `serve` would make of the result: the policy's TTL (scaled) capped by
        // the server's `ttlMs`, kept per principal when the policy or the server says so.
        let policy_ttl = directive.ttl.map(|ttl| {
            Duration::try_from_secs_f64(ttl.as_secs_f64() * setting.ttl_scale)
                .unwrap_or(Duration::MAX)
        });
        let expires_at = match event.hints.cap_ttl(policy_ttl) {
            None => u64::MAX,
            Some(ttl) => event.t_us.saturating_add(micros(ttl)),
        };
        if expires_at <= event.t_us {
            continue;
        }
        let stale_window = directive
            .stale_while_revalidate
            .max(directive.stale_if_error)
            .map_or(0, micros);
        let private = !directive.shared || event.hints.is_private();
        let key = match (private, shared_key, own_key) {
            (false, Some(shared), _) => shared,
            (_, _, Some(own)) => own,
            _ => key_for(&mut cache, false),
        };
        let tags = directive.tags.iter().map(|tag| cache.tag_id(tag)).collect();
        cache.insert(
            key,
            SimEntry {
                digest: event.truth.unwrap_or(event.digest),
                stored_at: event.t_us,
                expires_at,
                kept_until: expires_at.saturating_add(stale_window),
                bytes: event.bytes,
                server: event.server,
                name: event.name,
                tags,
            },
        );
    }
    // The store runs its waiting batch before it reports its counts.
    if let Some(last) = trace.events.last() {
        cache.run_pending_tasks(last.t_us);
    }
    progress.fetch_add(
        (trace.events.len() % PROGRESS_EVERY) as u64,
        Ordering::Relaxed,
    );
    let metrics = tally.finish(Some(&cache));
    (metrics, started.elapsed())
}

/// The key `serve` files a read under, shared or the caller's own. Arguments the policy
/// leaves out of the key (`ignore_arguments`) give the key `serve` would use, so calls that
/// differ only in them share it.
fn read_key(
    shapes: &mut shaping::Shapes,
    cache: &mut SimCache,
    trace: &Trace,
    event: &Event,
    shared: bool,
    ignore: &[String],
) -> u32 {
    match shapes.key(trace, event, shared, ignore) {
        Some(shaped) => {
            cache.grow(shapes.keys());
            shaped
        }
        None if shared => event.shared_key,
        None => event.key,
    }
}

/// A duration in whole microseconds, the replay's clock unit (saturating).
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Tally {
    /// Counts which part of the chain shaped a call.
    fn shaped(&mut self, shaper: Shaper) {
        let count = match shaper {
            Shaper::Plugin => &mut self.metrics.shaped_by_plugin,
            Shaper::ConfigRules => &mut self.metrics.shaped_by_config,
            Shaper::BuiltinDefault => &mut self.metrics.shaped_by_default,
        };
        *count += 1;
    }

    fn sample(&mut self, timer: Option<Instant>) {
        if let Some(timer) = timer {
            self.sampled_policy_ns += timer.elapsed().as_nanos();
            self.sampled_policy_calls += 1;
        }
        self.metrics.policy_calls += 1;
    }
}

#[cfg(test)]
mod tests;
