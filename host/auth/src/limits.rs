//! Per-principal token buckets and in-flight caps.
//!
//! Every limit lives in a *slot*: slot 0 is `[limits]` (what every principal gets over all
//! its calls), slot `i + 1` is the `i`-th `[[limits.rules]]` entry. A principal's state holds
//! one bucket and one in-flight count per slot, all behind one small mutex, so taking a
//! token from several buckets (or a slot from several caps) is all-or-nothing without any
//! lock ordering between buckets: a call that one bucket refuses takes nothing from the
//! others.
//!
//! The states sit in a few shards, each a map from principal name to state behind a
//! read-write lock: a call takes a shard's read lock only long enough to clone the state's
//! `Arc`, then works under the principal's own mutex, so principals never wait for each
//! other and the busiest path takes no exclusive global lock.
//!
//! Memory is bounded even though principal names come from tokens: a bucket that is full
//! carries no information (a new one starts full), so a principal whose buckets are full and
//! who has nothing in flight is dropped when its shard is full. If that is not enough, the
//! least recently used principals with nothing in flight go too (they get full buckets when
//! they come back: a small gift, but only when more principals than the cap are active at
//! once). Principals with calls in flight are never dropped, since their permits must
//! release the counts the next call checks; their number is bounded by the calls the front
//! admits at once.
//!
//! Time is the monotonic clock ([`Instant`]); the `*_at` functions take it as an argument so
//! tests can step it without sleeping.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_bridge_config::{LimitRule, LimitSettings, LimitsConfig};
use parking_lot::{Mutex, RwLock};

use crate::Principal;
use crate::access::{Shortened, Who};
use crate::glob::NameFilter;

/// The most principals whose limit state is kept (besides those with calls in flight).
pub const DEFAULT_MAX_TRACKED_PRINCIPALS: usize = 100_000;
/// Independent maps the principals are spread over, so a new principal (which takes a
/// shard's write lock) stalls only the principals hashed to the same shard.
const SHARDS: usize = 16;
/// What a call refused for too many in flight is told to wait: the bridge cannot know when
/// one of them finishes, and a second is long for a tool call but short for a person.
const IN_FLIGHT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest retry hint, for a bucket that (mis)configured with a rate of zero would
/// never refill.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The fastest rate honoured; above it a bucket is as good as unlimited, and keeping the
/// arithmetic finite keeps it from producing NaN.
const MAX_CALLS_PER_SECOND: f64 = 1e9;

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// A token bucket was empty.
    Rate,
    /// The principal already had its most calls in flight.
    InFlight,
}

impl LimitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::InFlight => "in_flight",
        }
    }
}

/// A refused call: which limit, which rule, and when to try again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Limited {
    pub reason: LimitReason,
    /// The `[[limits.rules]]` entry, or `None` for the per-principal `[limits]`.
    pub rule: Option<String>,
    pub retry_after: Duration,
    pub message: String,
}

/// Held while a call is in flight at a backend; dropping it frees the principal's slots.
pub struct InFlightPermit {
    /// `None` for a permit that holds nothing.
    state: Option<Arc<PrincipalState>>,
    slots: SlotSet,
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        let Some(state) = &self.state else {
            return;
        };
        let mut counters = state.counters.lock();
        for slot in self.slots.iter() {
            if let Some(count) = counters.in_flight.get_mut(slot) {
                *count = count.saturating_sub(1);
            }
        }
        counters.total_in_flight = counters.total_in_flight.saturating_sub(1);
    }
}

/// A token bucket's shape: how fast it refills and how much it holds.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    capacity: f64,
}

impl Rate {
    /// The bucket of `settings`, if it sets a rate. The burst defaults to one second's
    /// worth and is at least 1: a bucket that can never hold a whole token would refuse
    /// every call, which no setting means.
    fn new(settings: &LimitSettings) -> Option<Rate> {
        let per_second = settings.calls_per_second?;
        // A rate that is not a positive number (the config check refuses those) refills
        // nothing rather than producing NaN.
        let per_second = if per_second.is_nan() {
            0.0
        } else {
            per_second.clamp(0.0, MAX_CALLS_PER_SECOND)
        };
        let default_burst = per_second.ceil().max(1.0);
        let capacity = settings
            .burst
            .map_or(default_burst, |burst| f64::from(burst.max(1)));
        Some(Rate {
            per_second,
            capacity,
        })
    }

    /// The tokens in `bucket` at `now` (a bucket not kept is full).
    fn level(&self, bucket: Option<&Bucket>, now: Instant) -> f64 {
        let Some(bucket) = bucket else {
            return self.capacity;
        };
        let refilled =
            now.saturating_duration_since(bucket.updated).as_secs_f64() * self.per_second;
        (bucket.tokens + refilled).min(self.capacity)
    }

    /// How long until a bucket at `level` holds one whole token.
    fn wait_for_token(&self, level: f64) -> Duration {
        if self.per_second <= 0.0 {
            return MAX_RETRY_AFTER;
        }
        let seconds = (1.0 - level).max(0.0) / self.per_second;
        Duration::try_from_secs_f64(seconds)
            .unwrap_or(MAX_RETRY_AFTER)
            .min(MAX_RETRY_AFTER)
    }
}

/// The calls a `[[limits.rules]]` entry applies to.
#[derive(Debug, Clone)]
struct RuleScope {
    who: Who,
    servers: NameFilter,
    /// Empty means every call, tool or not; a list means only tool calls it matches.
    tools: NameFilter,
}

impl RuleScope {
    fn new(rule: &LimitRule) -> RuleScope {
        RuleScope {
            who: Who::new(&rule.who),
            servers: NameFilter::new(&rule.servers),
            tools: NameFilter::new(&rule.tools),
        }
    }

    fn includes(&self, principal: &Principal, server: &str, tool: &str) -> bool {
        let tool_matches = match &self.tools {
            NameFilter::All => true,
            // A request that calls no tool (`tool` empty) is not one of the listed tools,
            // even for a pattern like `*` that would match the empty name.
            NameFilter::Only(_) if tool.is_empty() => false,
            NameFilter::Only(globs) => globs.matches_any(tool),
        };
        tool_matches && self.servers.matches(server) && self.who.includes(principal)
    }
}

/// One slot's limits, compiled.
#[derive(Debug, Clone)]
struct CompiledLimit {
    /// The `[[limits.rules]]` name, or `None` for `[limits]`.
    rule: Option<String>,
    /// Which calls it applies to; `None` (for `[limits]`) is every call.
    scope: Option<RuleScope>,
    rate: Option<Rate>,
    max_in_flight: Option<usize>,
}

impl CompiledLimit {
    fn applies(&self, principal: &Principal, server: &str, tool: &str) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|scope| scope.includes(principal, server, tool))
    }

    /// `[limits]` or `[[limits.rules]] 'slow-tool'`: where to change the limit.
    fn source(&self) -> String {
        match &self.rule {
            None => "[limits]".to_string(),
            Some(name) => format!("[[limits.rules]] '{name}'"),
        }
    }
}

/// A bucket that is not full: its tokens when last touched.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One principal's buckets and in-flight counts.
struct PrincipalState {
    counters: Mutex<Counters>,
}

struct Counters {
    /// Set when the state is dropped from its shard. A call that fetched the state just
    /// before must look it up again, or its token or slot would be taken from a state no
    /// later call sees.
    evicted: bool,
    /// When a call last took a token or a slot: least recently used states go first.
    last_used: Instant,
    /// One per slot; `None` while full (or for a slot without a rate).
    buckets: Box<[Option<Bucket>]>,
    /// Calls in flight per slot, counted only for slots with a cap that applied to them.
    in_flight: Box<[usize]>,
    /// Every call in flight, capped or not, for `/admin/stats` and to keep the state.
    total_in_flight: usize,
}

impl Counters {
    /// Whether the state carries nothing a fresh one would not: no call in flight and every
    /// bucket full.
    fn is_idle(&self, limits: &[CompiledLimit], now: Instant) -> bool {
        self.total_in_flight == 0
            && self
                .buckets
                .iter()
                .zip(limits)
                .all(|(bucket, limit)| match (bucket, &limit.rate) {
                    (Some(bucket), Some(rate)) => rate.level(Some(bucket), now) >= rate.capacity,
                    _ => true,
                })
    }
}

/// A set of slot indices. Slots below 64 live in a bitmask, so the usual call (a handful of
/// rules) allocates nothing; a config with more rules spills the rest into a vector.
#[derive(Debug, Clone, Default)]
struct SlotSet {
    low: u64,
    high: Vec<usize>,
}

impl SlotSet {
    fn insert(&mut self, slot: usize) {
        if slot < 64 {
            self.low |= 1 << slot;
        } else {
            self.high.push(slot);
        }
    }

    fn is_empty(&self) -> bool {
        self.low == 0 && self.high.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..64usize)
            .filter(|slot| self.low & (1 << slot) != 0)
            .chain(self.high.iter().copied())
    }
}

type Shard = RwLock<HashMap<Arc<str>, Arc<PrincipalState>>>;

/// Every principal's buckets and in-flight counts, for one `[limits]` config.
pub struct Limiter {
    count_cache_hits: bool,
    /// Slot 0 is `[limits]`, slot `i + 1` the `i`-th rule.
    limits: Box<[CompiledLimit]>,
    /// Whether any slot has a rate, so that a config with none skips the buckets at once.
    any_rate: bool,
    shards: Box<[Shard]>,
    /// The most states one shard keeps (besides those with calls in flight).
    shard_capacity: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl Limiter {
    pub fn new(config: &LimitsConfig) -> Limiter {
        Limiter::with_bounds(config, DEFAULT_MAX_TRACKED_PRINCIPALS, SHARDS)
    }

    /// A limiter that keeps about `max_principals` states over `shards` maps.
    fn with_bounds(config: &LimitsConfig, max_principals: usize, shards: usize) -> Limiter {
        let shards = shards.max(1);
        let per_principal = CompiledLimit {
            rule: None,
            scope: None,
            rate: Rate::new(&config.per_principal),
            max_in_flight: config.per_principal.max_in_flight,
        };
        let rules = config.rules.iter().map(|rule| CompiledLimit {
            rule: Some(rule.name.clone()),
            scope: Some(RuleScope::new(rule)),
            rate: Rate::new(&rule.limits),
            max_in_flight: rule.limits.max_in_flight,
        });
        let limits: Box<[CompiledLimit]> = std::iter::once(per_principal).chain(rules).collect();
        Limiter {
            count_cache_hits: config.count_cache_hits,
            any_rate: limits.iter().any(|limit| limit.rate.is_some()),
            limits,
            shards: (0..shards).map(|_| RwLock::new(HashMap::new())).collect(),
            shard_capacity: max_principals.div_ceil(shards).max(1),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Whether any limit is configured; without one the router is not asked to admit calls.
    pub fn is_active(&self) -> bool {
        self.any_rate
            || self
                .limits
                .iter()
                .any(|limit| limit.max_in_flight.is_some())
    }

    /// Whether cache hits take a token (`count_cache_hits`).
    pub fn counts_cache_hits(&self) -> bool {
        self.count_cache_hits
    }

    /// Takes one token from every bucket that applies to this call, or none if any is
    /// empty. `tool` is the tool's name for `tools/call`, and empty for any other request:
    /// rules that list tools apply only to tool calls.
    pub fn take_token(
        &self,
        principal: &Principal,
        server: &str,
        tool: &str,
    ) -> Result<(), Limited> {
        self.take_token_at(principal, server, tool, Instant::now())
    }

    fn take_token_at(
        &self,
        principal: &Principal,
        server: &str,
        tool: &str,
        now: Instant,
    ) -> Result<(), Limited> {
        if !self.any_rate {
            return Ok(());
        }
        let slots = self.applicable(principal, server, tool, |limit| limit.rate.is_some());
        if slots.is_empty() {
            return Ok(());
        }
        loop {
            let state = self.state_for(&principal.name, now);
            let mut counters = state.counters.lock();
            if counters.evicted {
                continue;
            }
            counters.last_used = now;
            // The bucket that would make the caller wait longest decides the answer: only
            // once it has a token can the call pass every bucket.
            let mut longest_wait: Option<(usize, Duration)> = None;
            for slot in slots.iter() {
                let (Some(rate), Some(bucket)) =
                    (self.limits[slot].rate, counters.buckets.get(slot))
                else {
                    continue;
                };
                let level = rate.level(bucket.as_ref(), now);
                if level >= 1.0 {
                    continue;
                }
                let wait = rate.wait_for_token(level);
                if longest_wait.is_none_or(|(_, longest)| wait > longest) {
                    longest_wait = Some((slot, wait));
                }
            }
            if let Some((slot, wait)) = longest_wait {
                return Err(self.rate_refusal(principal, server, tool, slot, wait));
            }
            for slot in slots.iter() {
                let Some(rate) = self.limits[slot].rate else {
                    continue;
                };
                if let Some(bucket) = counters.buckets.get_mut(slot) {
                    let level = rate.level(bucket.as_ref(), now);
                    *bucket = Some(Bucket {
                        tokens: level - 1.0,
                        updated: now,
                    });
                }
            }
            return Ok(());
        }
    }

    /// Takes an in-flight slot from every cap that applies, or none if any is full. The
    /// principal's calls in flight are counted even when no cap applies, for
    /// [`Limiter::in_flight`]. `tool` is as for [`Limiter::take_token`].
    pub fn enter(
        &self,
        principal: &Principal,
        server: &str,
        tool: &str,
    ) -> Result<InFlightPermit, Limited> {
        self.enter_at(principal, server, tool, Instant::now())
    }

    fn enter_at(
        &self,
        principal: &Principal,
        server: &str,
        tool: &str,
        now: Instant,
    ) -> Result<InFlightPermit, Limited> {
        let slots = self.applicable(principal, server, tool, |limit| {
            limit.max_in_flight.is_some()
        });
        loop {
            let state = self.state_for(&principal.name, now);
            let mut counters = state.counters.lock();
            if counters.evicted {
                continue;
            }
            counters.last_used = now;
            for slot in slots.iter() {
                let (Some(cap), Some(&count)) = (
                    self.limits[slot].max_in_flight,
                    counters.in_flight.get(slot),
                ) else {
                    continue;
                };
                if count >= cap {
                    return Err(self.in_flight_refusal(principal, server, tool, slot, count));
                }
            }
            for slot in slots.iter() {
                if let Some(count) = counters.in_flight.get_mut(slot) {
                    *count += 1;
                }
            }
            counters.total_in_flight += 1;
            drop(counters);
            return Ok(InFlightPermit {
                state: Some(state),
                slots,
            });
        }
    }

    /// Calls in flight per principal (those with any), by name, for `/admin/stats`.
    pub fn in_flight(&self) -> Vec<(Arc<str>, usize)> {
        let mut listed = Vec::new();
        for shard in self.shards.iter() {
            for (name, state) in shard.read().iter() {
                let total = state.counters.lock().total_in_flight;
                if total > 0 {
                    listed.push((name.clone(), total));
                }
            }
        }
        listed.sort_unstable_by(|left, right| left.0.cmp(&right.0));
        listed
    }

    /// How many principals' states are kept.
    #[cfg(test)]
    fn tracked_principals(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().len()).sum()
    }

    /// The slots whose limit applies to this call and has what `wanted` looks for.
    fn applicable(
        &self,
        principal: &Principal,
        server: &str,
        tool: &str,
        wanted: impl Fn(&CompiledLimit) -> bool,
    ) -> SlotSet {
        let mut slots = SlotSet::default();
        for (slot, limit) in self.limits.iter().enumerate() {
            if wanted(limit) && limit.applies(principal, server, tool) {
                slots.insert(slot);
            }
        }
        slots
    }

    /// The state of the principal named `name`, made (starting full and idle) if it has
    /// none, after making room in its shard when that is full.
    fn state_for(&self, name: &Arc<str>, now: Instant) -> Arc<PrincipalState> {
        let shard_index = self.hasher.hash_one(&**name) as usize % self.shards.len();
        let shard = &self.shards[shard_index];
        if let Some(state) = shard.read().get(&**name) {
            return state.clone();
        }
        let mut states = shard.write();
        if let Some(state) = states.get(&**name) {
            return state.clone();
        }
        if states.len() >= self.shard_capacity {
            self.make_room(&mut states, now);
        }
        let state = Arc::new(PrincipalState {
            counters: Mutex::new(Counters {
                evicted: false,
                last_used: now,
                buckets: vec![None; self.limits.len()].into_boxed_slice(),
                in_flight: vec![0; self.limits.len()].into_boxed_slice(),
                total_in_flight: 0,
            }),
        });
        states.insert(name.clone(), state.clone());
        state
    }

    /// Drops idle states (full buckets, nothing in flight); if the shard is still over 90%
    /// of its capacity, drops the least recently used states with nothing in flight down to
    /// 90% (and at least one below the capacity). Leaving that headroom means a shard full
    /// of busy principals is swept once per tenth of its capacity in new principals, not
    /// on every one.
    fn make_room(&self, states: &mut HashMap<Arc<str>, Arc<PrincipalState>>, now: Instant) {
        states.retain(|_, state| {
            let mut counters = state.counters.lock();
            if counters.is_idle(&self.limits, now) {
                counters.evicted = true;
                return false;
            }
            true
        });
        // At least one below the capacity, so the state about to be added fits.
        let target = self.shard_capacity - (self.shard_capacity / 10).max(1);
        if states.len() <= target {
            return;
        }
        let mut droppable: Vec<(Instant, Arc<str>)> = states
            .iter()
            .filter_map(|(name, state)| {
                let counters = state.counters.lock();
                (counters.total_in_flight == 0).then(|| (counters.last_used, name.clone()))
            })
            .collect();
        let excess = (states.len() - target).min(droppable.len());
        if excess == 0 {
            return;
        }
        droppable.select_nth_unstable_by_key(excess - 1, |(last_used, _)| *last_used);
        for (_, name) in droppable.iter().take(excess) {
            let Some(state) = states.get(name) else {
                continue;
            };
            let mut counters = state.counters.lock();
            // Checked again under the state's lock: a call may have started meanwhile
            // (it fetched the state before this sweep took the shard's write lock).
            if counters.total_in_flight > 0 {
                continue;
            }
            counters.evicted = true;
            drop(counters);
            states.remove(name);
        }
    }

    fn rate_refusal(
        &self,
        principal: &Principal,
        server: &str,
        tool: &str,
        slot: usize,
        retry_after: Duration,
    ) -> Limited {
        let limit = &self.limits[slot];
        let (per_second, capacity) = limit
            .rate
            .map_or((0.0, 0.0), |rate| (rate.per_second, rate.capacity));
        Limited {
            reason: LimitReason::Rate,
            rule: limit.rule.clone(),
            retry_after,
            message: format!(
                "principal '{}' is over the rate limit {} (calls_per_second = {per_second}, burst = {capacity}){}; retry in {:.3}s",
                Shortened(&principal.name),
                limit.source(),
                describe_call(limit, server, tool),
                retry_after.as_secs_f64(),
            ),
        }
    }

    fn in_flight_refusal(
        &self,
        principal: &Principal,
        server: &str,
        tool: &str,
        slot: usize,
        count: usize,
    ) -> Limited {
        let limit = &self.limits[slot];
        let cap = limit.max_in_flight.unwrap_or(0);
        let calls = if count == 1 { "call" } else { "calls" };
        Limited {
            reason: LimitReason::InFlight,
            rule: limit.rule.clone(),
            retry_after: IN_FLIGHT_RETRY_AFTER,
            message: format!(
                "principal '{}' already has {count} {calls} in flight under {} (max_in_flight = {cap}){}; retry when one of them finishes",
                Shortened(&principal.name),
                limit.source(),
                describe_call(limit, server, tool),
            ),
        }
    }
}

/// For a rule's refusal, the call it applied to (` for tool 'demo/get_clients'`): a rule
/// may cover only some servers or tools, and the caller should know which call hit it.
/// `[limits]` covers every call, so nothing is added for it.
fn describe_call(limit: &CompiledLimit, server: &str, tool: &str) -> String {
    if limit.rule.is_none() {
        return String::new();
    }
    if tool.is_empty() {
        return format!(" for server '{}'", Shortened(server));
    }
    format!(" for tool '{}/{}'", Shortened(server), Shortened(tool))
}

#[cfg(test)]
#[path = "limits/tests.rs"]
mod tests;
