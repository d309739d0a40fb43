//! Replay: a trace against one policy chain in virtual time. The chain is the production
//! [`PolicyChain`] (built-in policy, WASM plugins); only the cache ([`sim`]) and the clock
//! are simulated. A miss costs the backend latency the trace recorded for that call.
//!
//! A pure chain is asked once per distinct call and its decisions reused ([`memo`]).
//!
//! [`bounds`] computes what no policy can beat (or do worse than) on the same trace.

pub mod bounds;
mod memo;
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
use mcp_bridge_trace::{Fnv64, RecordedStatus};
use sim::{SimCache, SimEntry, SimLimits};

/// How often (in events) a replay reports progress and times a policy call. Timing every
/// call would add two clock reads to a 60 ns decision. A replay that reuses decisions
/// times every call it makes: those are the few first calls of each distinct call.
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
    pub history: History,
    /// What a hit costs, in microseconds.
    pub hit_latency_us: f64,
}

impl<'t> Prepared<'t> {
    pub fn new(trace: &'t Trace, hit_latency: Duration) -> Prepared<'t> {
        let mut history = History::default();
        for event in &trace.events {
            history.note(trace, event);
        }
        Prepared {
            trace,
            history,
            hit_latency_us: hit_latency.as_secs_f64() * 1e6,
        }
    }

    /// What one replay step reads.
    pub fn context(&self) -> Context<'_> {
        Context {
            trace: self.trace,
            history: &self.history,
            hit_latency_us: self.hit_latency_us,
        }
    }
}

/// What a replay step may look up besides its event: the trace's strings and what the
/// calls so far showed.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub trace: &'a Trace,
    pub history: &'a History,
    pub hit_latency_us: f64,
}

/// The calls a key was first seen with, to rebuild its production cache key.
#[derive(Debug, Clone, Copy, Default)]
struct KeyOrigin {
    server: u32,
    method: u32,
    name: u32,
    /// 0 for a shared key.
    partition: u32,
    arguments: u32,
}

/// What the events so far showed that a replay step needs beyond its own event: each
/// server's write times and where each key came from. A loaded trace notes every event
/// up front; the shadow evaluator notes them as they arrive.
#[derive(Debug, Default)]
pub struct History {
    /// Each server's write times, in order: the first write after an entry was stored
    /// is when it (most likely) went stale.
    write_times: HashMap<u32, Vec<u64>>,
    origins: Vec<KeyOrigin>,
    /// Each key by a hash of its production key text, so a `Key` invalidation finds its
    /// keys without building every key's text.
    by_text: HashMap<u64, Vec<u32>>,
}

impl History {
    /// Learns from one event, in arrival order; `trace` holds its strings.
    pub fn note(&mut self, trace: &Trace, event: &Event) {
        if event.write {
            // Live calls arrive as they finish, not quite in order: keep the times sorted.
            let times = self.write_times.entry(event.server).or_default();
            let at = times.partition_point(|time| *time <= event.t_us);
            times.insert(at, event.t_us);
        }
        for (key, partition) in [(event.key, event.partition), (event.shared_key, 0)] {
            let index = key as usize;
            if index >= self.origins.len() {
                let origin = KeyOrigin {
                    server: event.server,
                    method: event.method,
                    name: event.name,
                    partition,
                    arguments: event.arguments,
                };
                self.origins.resize(index + 1, KeyOrigin::default());
                self.origins[index] = origin;
                let text = origin.key_text(trace);
                self.by_text
                    .entry(Fnv64::of(text.as_bytes()))
                    .or_default()
                    .push(key);
            }
        }
    }

    /// Keeps at most `most` write times per server, the latest: a live evaluator must
    /// not grow without bound. A stale hit whose entry is older than every kept write
    /// then dates its staleness from the oldest kept one, later than the truth.
    pub fn forget_writes_beyond(&mut self, most: usize) {
        for times in self.write_times.values_mut() {
            if times.len() > most {
                times.drain(..times.len() - most);
            }
        }
    }

    /// The first write on `server` after `since`, if any.
    fn first_write_after(&self, server: u32, since: u64) -> Option<u64> {
        let times = self.write_times.get(&server)?;
        let index = times.partition_point(|time| *time <= since);
        times.get(index).copied()
    }

    /// The cache keys whose production key text is `text` (for `Key` invalidations).
    fn keys_matching(&self, trace: &Trace, text: &str) -> Vec<u32> {
        let Some(keys) = self.by_text.get(&Fnv64::of(text.as_bytes())) else {
            return Vec::new();
        };
        // A hash can collide: only keys whose text is `text` match.
        keys.iter()
            .copied()
            .filter(|key| {
                self.origins
                    .get(*key as usize)
                    .is_some_and(|origin| origin.key_text(trace) == text)
            })
            .collect()
    }
}

impl KeyOrigin {
    /// The key `serve` files this call under.
    fn key_text(&self, trace: &Trace) -> String {
        let arguments = if self.arguments == 0 {
            "{}"
        } else {
            trace.string(self.arguments)
        };
        mcp_bridge_cache::cache_key(
            trace.string(self.server),
            trace.string(self.method),
            trace.string(self.name),
            trace.string(self.partition),
            arguments,
        )
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
#[derive(Default, Clone)]
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
    let context = prepared.context();
    let mut replayer = Replayer::new(trace.keys, trace.keys, setting, chain);
    replayer.tally.latencies_us.reserve(trace.events.len());
    for (index, event) in trace.events.iter().enumerate() {
        if index % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
            progress.fetch_add(PROGRESS_EVERY as u64, Ordering::Relaxed);
        }
        replayer.step(&context, chain, event, index % SAMPLE_EVERY == 0);
    }
    progress.fetch_add(
        (trace.events.len() % PROGRESS_EVERY) as u64,
        Ordering::Relaxed,
    );
    (replayer.finish(), started.elapsed())
}

/// One policy chain's replay, an event at a time: its simulated cache, its key shaping
/// and its tally. `bench policies` steps one through a whole trace; the shadow
/// evaluator steps one per candidate as calls arrive.
pub struct Replayer {
    setting: Setting,
    cache: SimCache,
    shapes: shaping::Shapes,
    tally: Tally,
    /// When each key's true result last changed, as far as the events so far show.
    truth_changes: Vec<(u64, u64)>,
    /// The chain's decisions per distinct call, when the chain is pure.
    memo: memo::DecisionMemo,
    /// The latest event's time: the store runs its waiting batch then before it reports.
    now_us: u64,
}

impl Replayer {
    /// A replay of `chain` for keys below `keys` (more are made room for as they
    /// appear); shaped keys are numbered from `shaped_from`, which no event's key reaches.
    /// Each step must be given the same chain.
    pub fn new(keys: u32, shaped_from: u32, setting: Setting, chain: &PolicyChain) -> Replayer {
        Replayer {
            setting,
            cache: SimCache::new(keys, setting.limits),
            shapes: shaping::Shapes::new(shaped_from),
            tally: Tally::default(),
            truth_changes: vec![(0, 0); keys as usize],
            memo: memo::DecisionMemo::new(chain, keys),
            now_us: 0,
        }
    }

    /// How many shaped keys this replay has made.
    pub fn shaped_keys(&self, shaped_from: u32) -> u32 {
        self.shapes.keys().saturating_sub(shaped_from)
    }

    /// Replays one event; `sampled` times the policy call.
    pub fn step(
        &mut self,
        context: &Context<'_>,
        chain: &PolicyChain,
        event: &Event,
        sampled: bool,
    ) {
        let trace = context.trace;
        self.now_us = self.now_us.max(event.t_us);
        let cache = &mut self.cache;
        let tally = &mut self.tally;
        let memo = &mut self.memo;
        if event.write {
            let call = call_info(trace, event);
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
                cache.invalidate(invalidation, trace, |text| {
                    context.history.keys_matching(trace, text)
                });
            }
            return;
        }
        tally.metrics.reads += 1;
        // When the truth changed is learnt from the backend's answers only: a recorded hit's
        // truth is the last answer anyway, and a live truth sample can come back after
        // later answers, so it must not move the date back.
        if let Some(truth) = event.truth.filter(|_| !event.hit) {
            let index = event.key as usize;
            if index >= self.truth_changes.len() {
                self.truth_changes.resize(index + 1, (0, 0));
            }
            let (last, changed_at) = &mut self.truth_changes[index];
            if *last != truth {
                *last = truth;
                *changed_at = event.t_us;
            }
        }
        // The decision cost reported is that of the chain's own calls, not of reuses.
        let timed = sampled || memo.reuses();
        let (decision, shaper) = memo.decide(event, || {
            let timer = timed.then(Instant::now);
            let answer = chain.decide_shaped(&call_info(trace, event));
            tally.sample(timer);
            answer
        });
        tally.shaped(*shaper);
        let Decision::Cache(directive) = decision else {
            tally.metrics.bypasses += 1;
            tally.backend_call(event.latency_us);
            return;
        };
        // Where `serve` looks: the shared key when the policy shares results, then the
        // caller's own key (where a result the server marked private was filed). A trace
        // without principals has one anonymous caller, whose own key is the shared one.
        let ignore = &directive.ignore_arguments;
        let shapes = &mut self.shapes;
        let mut key_for = |cache: &mut SimCache, shared: bool| {
            read_key(shapes, cache, trace, event, shared, ignore)
        };
        let shared_key = directive.shared.then(|| key_for(cache, true));
        let own_key = (event.partition != 0 || !directive.shared).then(|| key_for(cache, false));
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
                    let changed_at = self
                        .truth_changes
                        .get(event.key as usize)
                        .map_or(0, |(_, changed_at)| *changed_at)
                        .max(stored_at);
                    let stale_since = context
                        .history
                        .first_write_after(event.server, stored_at)
                        .map_or(changed_at, |write| write.min(changed_at));
                    tally
                        .staleness_us
                        .push(event.t_us.saturating_sub(stale_since));
                }
                Some(_) => {}
            }
            tally.hit(event.latency_us, context.hit_latency_us);
            return;
        }
        tally.metrics.misses += 1;
        tally.backend_call(event.latency_us);
        if event.status != RecordedStatus::Ok {
            return;
        }
        // The entry `serve` would make of the result: the policy's TTL (scaled) capped by
        // the server's `ttlMs`, kept per principal when the policy or the server says so.
        let policy_ttl = directive.ttl.map(|ttl| {
            Duration::try_from_secs_f64(ttl.as_secs_f64() * self.setting.ttl_scale)
                .unwrap_or(Duration::MAX)
        });
        let expires_at = match event.hints.cap_ttl(policy_ttl) {
            None => u64::MAX,
            Some(ttl) => event.t_us.saturating_add(micros(ttl)),
        };
        if expires_at <= event.t_us {
            return;
        }
        let stale_window = directive
            .stale_while_revalidate
            .max(directive.stale_if_error)
            .map_or(0, micros);
        let private = !directive.shared || event.hints.is_private();
        let key = match (private, shared_key, own_key) {
            (false, Some(shared), _) => shared,
            (_, _, Some(own)) => own,
            _ => key_for(cache, false),
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

    /// What the replay measured so far, without ending it.
    pub fn metrics(&self) -> ReplayMetrics {
        let mut tally = self.tally.clone();
        tally.metrics.decisions_reused = self.memo.reused;
        tally.finish(Some(&self.cache))
    }

    /// Keeps at most `most` latency and staleness samples, the latest, so a replay that
    /// never ends (the shadow evaluator's) holds bounded memory; its percentiles are
    /// then over the recent calls.
    pub fn forget_samples_beyond(&mut self, most: usize) {
        self.tally.forget_samples_beyond(most);
    }

    pub fn finish(mut self) -> ReplayMetrics {
        // The store runs its waiting batch before it reports its counts.
        self.cache.run_pending_tasks(self.now_us);
        self.tally.metrics.decisions_reused = self.memo.reused;
        self.tally.finish(Some(&self.cache))
    }

    /// Starts over with an empty cache and no keys, keeping the counts: the shadow
    /// evaluator's new window.
    pub fn forget_keys(&mut self, shaped_from: u32) {
        let mut old = std::mem::replace(&mut self.cache, SimCache::new(0, self.setting.limits));
        // The old cache settles its waiting batch; the counts that live in it carry over.
        old.run_pending_tasks(self.now_us);
        self.cache.refused = old.refused;
        self.cache.peak_entries = old.peak_entries;
        self.cache.peak_bytes = old.peak_bytes;
        self.cache.evictions = old.evictions;
        self.cache.invalidated = old.invalidated;
        self.shapes = shaping::Shapes::new(shaped_from);
        self.truth_changes.clear();
        self.memo.forget_keys();
    }

    /// The counts so far (no percentiles), cheap enough to read after every batch.
    pub fn counts(&self) -> &ReplayMetrics {
        &self.tally.metrics
    }

    /// Backend time the hits avoided so far, in microseconds.
    pub fn saved_us(&self) -> u64 {
        self.tally.saved_us
    }
}

fn keep_latest<T>(samples: &mut Vec<T>, most: usize) {
    if samples.len() > most {
        samples.drain(..samples.len() - most);
    }
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
    let key = match shapes.key(trace, event, shared, ignore) {
        Some(shaped) => shaped,
        None if shared => event.shared_key,
        None => event.key,
    };
    // A live replay's cache starts empty and meets its keys as they come.
    cache.grow(key.saturating_add(1));
    key
}

/// A duration in whole microseconds, the replay's clock unit (saturating).
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Tally {
    /// Keeps at most `most` latency and staleness samples, the latest.
    pub(crate) fn forget_samples_beyond(&mut self, most: usize) {
        keep_latest(&mut self.staleness_us, most);
        keep_latest(&mut self.latencies_us, most);
    }

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
