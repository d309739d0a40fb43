//! The cache layer in the router: asks the policy about a call, serves hits, coalesces
//! misses, fills the cache from backend answers, and applies a write's invalidations
//! before the write's response is returned.

use mcp_bridge_telemetry::{self as telemetry, attribute};
use mcp_bridge_upstream::{CacheHint, Caller};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use parking_lot::RwLock;
use serde_json::{Value, json};
use tokio::sync::watch;

use mcp_bridge_backend::{BackendError, Catalog};
use mcp_bridge_cache::{
    Audience, Entry, FillTicket, FlightResult, InvalidationReason, Leader, Published,
    ResponseCache, Role, Served, cache_key, codec, dependency_of, key_arguments, keyed_call,
    name_tag, policy_tag, server_tag,
};
use mcp_bridge_config::Consistency;
use mcp_bridge_shared::{EVERYTHING, SharedTier, Stamp};

mod provenance;
mod shared_level;

use mcp_bridge_policy::{
    Annotations, Call, CallKind, Decision, Directive, Invalidation, Outcome, PolicyChain,
    ServerHints, Sourced, Status, TtlSource,
};
use shared_level::{RemoteInvalidations, SecondLevel, dependencies, stamp_words, still_current};

/// The `_meta` keys a stale answer carries, so clients can tell.
const META_STALE: &str = "io.mcp-bridge/stale";
const META_AGE_MS: &str = "io.mcp-bridge/ageMs";

/// The cache and the policies that drive it. Policies can be swapped while calls run.
pub struct CacheLayer {
    pub cache: Arc<ResponseCache>,
    policies: RwLock<Arc<PolicyChain>>,
    /// The second level and the generations replicas share, when configured.
    shared: Option<Arc<SharedTier>>,
}

impl CacheLayer {
    pub fn new(cache: Arc<ResponseCache>, policies: PolicyChain) -> CacheLayer {
        CacheLayer {
            cache,
            policies: RwLock::new(Arc::new(policies)),
            shared: None,
        }
    }

    /// Joins the shared tier: fills go to its second level, writes record their
    /// invalidations there, and other replicas' invalidations reach this first level.
    pub fn with_shared_tier(mut self, tier: Arc<SharedTier>) -> CacheLayer {
        tier.add_listener(Arc::new(RemoteInvalidations {
            cache: Arc::downgrade(&self.cache),
        }));
        self.shared = Some(tier);
        self
    }

    /// The shared tier, when configured.
    pub fn shared_tier(&self) -> Option<&Arc<SharedTier>> {
        self.shared.as_ref()
    }

    /// Applies invalidations here and, with a shared tier, records them there for every
    /// replica; returns once both are done (or the tier queued them), so a write's
    /// response can follow.
    pub async fn invalidate(&self, invalidations: &[Invalidation], reason: InvalidationReason) {
        let apply = move |cache: &ResponseCache, invalidations: &[Invalidation]| {
            for invalidation in invalidations {
                let dropped = cache.invalidate(invalidation, reason);
                tracing::debug!(?invalidation, dropped, "invalidated");
            }
        };
        if self.cache.invalidations_block() {
            // The disk backend commits each invalidation before it returns: that waits for
            // the disk, which must not stall a runtime worker serving other calls.
            let cache = self.cache.clone();
            let owned = invalidations.to_vec();
            let applied = tokio::task::spawn_blocking(move || apply(&cache, &owned)).await;
            if let Err(error) = applied {
                tracing::error!(%error, "applying invalidations failed");
            }
        } else {
            apply(&self.cache, invalidations);
        }
        if let Some(tier) = &self.shared {
            // On a task of its own: a client that hangs up while Redis is asked must not
            // cancel the record other replicas depend on.
            let tier = tier.clone();
            let dependencies = invalidations.iter().map(dependency_of).collect();
            let recorded = tokio::spawn(async move { tier.invalidate(dependencies).await });
            if let Err(error) = recorded.await {
                tracing::error!(%error, "recording invalidations in the shared tier failed");
            }
        }
    }

    /// Drops every entry here and, with a shared tier, on every replica.
    pub async fn clear_everywhere(&self) -> u64 {
        let dropped = self.cache.clear();
        if let Some(tier) = &self.shared {
            tier.invalidate(vec![EVERYTHING.to_owned()]).await;
        }
        dropped
    }

    /// Replaces the policies; calls already deciding keep the chain they started with.
    pub fn set_policies(&self, policies: PolicyChain) {
        *self.policies.write() = Arc::new(policies);
    }

    /// The chain calls starting now decide with.
    pub fn policies(&self) -> Arc<PolicyChain> {
        self.policies.read().clone()
    }
}

/// The call as the policy saw it, kept to judge its outcome.
struct OwnedCall {
    server: Arc<str>,
    method: String,
    kind: CallKind,
    name: String,
    arguments: String,
    annotations: Annotations,
    principal: Option<Arc<str>>,
}

impl OwnedCall {
    fn info(&self) -> Call<'_> {
        Call {
            server: &self.server,
            method: &self.method,
            kind: self.kind,
            name: &self.name,
            canonical_arguments: &self.arguments,
            annotations: self.annotations,
            hints: ServerHints::default(),
            principal: self.principal.as_deref(),
        }
    }
}

enum Mode {
    /// Not cached; after it completes the policy's invalidations apply.
    Invalidate,
    /// A miss this call fills.
    Fill(Box<Fill>),
    /// Answered from the cache or another caller's fill, or bypassed as read-only.
    Nothing,
}

struct Fill {
    directive: Directive,
    /// The entry's index tags (server, name, the policy's own).
    tags: Vec<String>,
    shared_key: Arc<str>,
    private_key: Option<Arc<str>>,
    /// The shared tier's stamps of the two keys, read before the backend is called.
    shared_stamp: Option<Stamp>,
    private_stamp: Option<Stamp>,
    ticket: FillTicket,
    leader: Option<Leader>,
    /// An expired entry that may stand in if the backend fails (stale-if-error).
    fallback: Option<Arc<Entry>>,
}

/// The cache's part in one forwarded call.
pub(crate) struct CallCache {
    layer: Arc<CacheLayer>,
    /// The chain this call was decided with; its outcome is judged by the same one, so
    /// a policy swap mid-call never splits a call across two generations.
    policies: Arc<PolicyChain>,
    call: OwnedCall,
    mode: Mode,
    pub hint: Option<CacheHint>,
    /// The cached result a hit was answered with, kept for the trace recorder (a cheap
    /// reference: the recorder digests it on its own thread).
    pub served: Option<Arc<Value>>,
    /// Where the chain's decision came from (its decision taken out), when it decided.
    sourced: Option<Sourced>,
    /// The TTL's source as its header token: the entry's for an answer from an entry,
    /// the fill's once this call filled one.
    ttl_source: Option<Arc<str>>,
    /// The generation that filled the entry this call was answered from.
    filled: Option<u64>,
    /// Whether the call was answered from an entry (fresh, stale, or in place of a
    /// failure): its TTL source is then the entry's, or unknown, never this chain's.
    from_entry: bool,
}

/// How the call proceeds.
pub(crate) enum Lookup {
    /// Answered: the response (its id still to be set).
    Hit(Value),
    /// Another caller is filling this key: wait for its response.
    Follow(watch::Receiver<Published>),
    /// An expired entry served within its stale-while-revalidate window, and, when no
    /// refresh is running yet, the plan of the one background refresh to start (boxed: a
    /// plan is large, and a stale answer rare).
    Stale(Value, Option<Box<CallCache>>),
    /// Call the backend.
    Backend,
}

/// Plans the cache's part in a call: `None` when the cache has no part in it.
pub(crate) async fn prepare(
    layer: &Arc<CacheLayer>,
    server: &Arc<str>,
    message: &Value,
    catalog: &Catalog,
    caller: &Caller,
    private_to: Option<Arc<str>>,
) -> Option<(CallCache, Lookup)> {
    let method = mcp_bridge_jsonrpc::method(message)?;
    let params = message.get("params");
    let (kind, name) = keyed_call(method, params)?;
    let arguments = key_arguments(kind, params, &[]);
    let annotations = annotations_of(catalog, kind, name);
    let call = OwnedCall {
        server: server.clone(),
        method: method.to_owned(),
        kind,
        name: name.to_owned(),
        arguments,
        annotations,
        // An isolated server's process belongs to one principal or session: its results
        // are filed under that group, never shared.
        principal: private_to.clone().or_else(|| caller.principal.clone()),
    };
    let mut plan = CallCache {
        layer: layer.clone(),
        policies: layer.policies(),
        call,
        mode: Mode::Nothing,
        hint: None,
        served: None,
        sourced: None,
        ttl_source: None,
        filled: None,
        from_entry: false,
    };
    // A caller waiting for progress, or answering an input request, must reach the
    // server: a cached answer would skip what it is waiting for.
    if wants_the_server(params) {
        plan.mode = plan.write_mode();
        return Some((plan, Lookup::Backend));
    }
    let decision = {
        // The plugin bindings' spans are children of this one: they run inside it.
        let span = telemetry::policy_span(plan.policies.generation());
        let _entered = span.enter();
        // The decision's source is kept (indices and one shared name, no allocation) for
        // the cache header; the decision itself is taken out of it.
        let mut sourced = plan.policies.decide_sourced(&plan.call.info());
        let decision = std::mem::replace(&mut sourced.decision, Decision::Abstain);
        plan.sourced = Some(sourced);
        telemetry::record_str(&span, attribute::POLICY_DECISION, decision.label());
        decision
    };
    let Decision::Cache(mut directive) = decision else {
        layer.cache.record(Served::Bypass);
        plan.mode = plan.write_mode();
        return Some((plan, Lookup::Backend));
    };
    if private_to.is_some() {
        directive.shared = false;
    }
    let span = telemetry::cache_lookup_span();
    let lookup = plan
        .look_up(directive, params)
        .instrument(span.clone())
        .await;
    let result = match &lookup {
        Lookup::Hit(_) => "hit",
        Lookup::Stale(..) => "stale",
        Lookup::Follow(_) => "coalesced",
        Lookup::Backend => "miss",
    };
    telemetry::record_str(&span, attribute::CACHE_RESULT, result);
    Some((plan, lookup))
}

fn wants_the_server(params: Option<&Value>) -> bool {
    let Some(params) = params else { return false };
    params.pointer("/_meta/progressToken").is_some()
        || params.get("inputResponses").is_some()
        || params.get("requestState").is_some()
}

/// The annotations a catalogue gives a call (a tool's hints; any other call is a read).
pub fn annotations_of(catalog: &Catalog, kind: CallKind, name: &str) -> Annotations {
    if kind != CallKind::Tool {
        return Annotations {
            read_only: Some(true),
            ..Annotations::default()
        };
    }
    catalog
        .tool(name)
        .map_or_else(Annotations::default, Annotations::of_tool)
}

impl CallCache {
    /// The generation of the policy chain that decided this call.
    pub(crate) fn policy_generation(&self) -> u64 {
        self.policies.generation()
    }

    /// A bypassed tool call that is not read-only still invalidates after it completes.
    fn write_mode(&self) -> Mode {
        if self.call.info().may_write() {
            Mode::Invalidate
        } else {
            Mode::Nothing
        }
    }

    async fn look_up(&mut self, directive: Directive, params: Option<&Value>) -> Lookup {
        let cache = self.layer.cache.clone();
        let tier = self.layer.shared.clone();
        if !directive.ignore_arguments.is_empty() && self.call.kind == CallKind::Tool {
            self.call.arguments =
                key_arguments(self.call.kind, params, &directive.ignore_arguments);
        }
        let call = &self.call;
        let key = |partition: &str| -> Arc<str> {
            Arc::from(cache_key(
                &call.server,
                &call.method,
                &call.name,
                partition,
                &call.arguments,
            ))
        };
        let shared_key = key("");
        // Callers of every principal share one fill; the leader says who may see the
        // result, so a private one never reaches another principal's waiter.
        let flight_key = shared_key.clone();
        // The private key is built only when the shared one misses: most hits are shared.
        let mut private_key: Option<Arc<str>> = None;
        let mut fallback = None;
        // Without a shared tier the first level is the cache; with one, strict mode trusts
        // it only while Redis answers (and checks each hit), bounded mode while the
        // broadcast is heard.
        let first_level = tier.as_ref().is_none_or(|tier| tier.first_level_trusted());
        let strict = tier
            .as_ref()
            .filter(|tier| tier.consistency() == Consistency::Strict);
        for private in [false, true] {
            if !first_level {
                break;
            }
            let candidate = if private {
                let Some(principal) = call.principal.as_deref() else {
                    break;
                };
                private_key.insert(key(principal)).clone()
            } else {
                shared_key.clone()
            };
            // A result the policy now keeps private is not served from the shared key,
            // whatever was stored there before the policy changed.
            if !private && !directive.shared {
                continue;
            }
            let Some(entry) = cache.get(&candidate) else {
                continue;
            };
            let servable = entry.is_fresh()
                || entry.within(entry.stale_while_revalidate)
                || entry.within(entry.stale_if_error);
            if !servable {
                continue;
            }
            if let Some(tier) = strict {
                match still_current(tier, entry.stamp.as_deref(), &entry.tags, &candidate).await {
                    Some(true) => {}
                    Some(false) => {
                        cache.evict(&candidate);
                        continue;
                    }
                    None => continue,
                }
            }
            if entry.is_fresh() {
                return self.hit(&entry);
            }
            if entry.within(entry.stale_while_revalidate) {
                cache.record(Served::Stale);
                let refresh = match cache.join(&flight_key) {
                    Role::Leader(leader) => Some(Box::new(self.refresh_plan(
                        directive,
                        shared_key,
                        private_key,
                        leader,
                    ))),
                    Role::Follower(_) | Role::Overflow => None,
                };
                self.served = Some(entry.result.clone());
                self.answered_from(&entry);
                return Lookup::Stale(stale_response(&entry), refresh);
            }
            fallback = Some(entry);
        }
        // In strict mode without Redis a waiter could not check the leader's result (it
        // has no stamp) and would call the backend after waiting: it calls it at once.
        let role = if strict.is_some() && !first_level {
            Role::Overflow
        } else {
            cache.join(&flight_key)
        };
        let leader = match role {
            Role::Leader(leader) => Some(leader),
            Role::Follower(receiver) => {
                cache.record(Served::Miss);
                return Lookup::Follow(receiver);
            }
            Role::Overflow => None,
        };
        // Taken before the second level is read: an invalidation heard meanwhile discards
        // what it brings, as it discards a backend's answer.
        let ticket = cache.begin_fill();
        let tags = self.tags(&directive);
        if private_key.is_none() {
            private_key = self.call.principal.as_deref().map(key);
        }
        let (mut shared_stamp, mut private_stamp) = (None, None);
        if let Some(tier) = &tier {
            let second = self
                .second_level(
                    tier,
                    &tags,
                    &shared_key,
                    private_key.as_ref(),
                    &ticket,
                    directive.shared,
                )
                .await;
            match second {
                SecondLevel::Hit(entry, key, deps) => {
                    let published = FlightResult {
                        response: response_for(&entry.result),
                        audience: self.audience(entry.private),
                        current: true,
                        stamp: entry.stamp.clone().map(|stamp| (deps, stamp)),
                    };
                    let lookup = self.hit(&entry);
                    cache.insert(key, entry, &ticket);
                    if let Some(leader) = leader {
                        leader.publish(published);
                    }
                    return lookup;
                }
                SecondLevel::Miss(shared, private) => {
                    (shared_stamp, private_stamp) = (shared, private)
                }
                SecondLevel::Unavailable => {}
            }
        }
        cache.record(Served::Miss);
        self.mode = Mode::Fill(Box::new(Fill {
            directive,
            tags,
            shared_key,
            private_key,
            shared_stamp,
            private_stamp,
            ticket,
            leader,
            fallback,
        }));
        Lookup::Backend
    }

    /// Answers from an entry: counts the hit and says what clients may know of it.
    fn hit(&mut self, entry: &Entry) -> Lookup {
        let cache = &self.layer.cache;
        cache.record(Served::Hit);
        cache.record_saved(entry);
        self.hint = Some(CacheHint {
            ttl: entry.remaining().unwrap_or_default(),
            shared: !entry.private,
        });
        self.served = Some(entry.result.clone());
        self.answered_from(entry);
        Lookup::Hit(response_for(&entry.result))
    }

    /// Who may see a result this call filled.
    fn audience(&self, private: bool) -> Audience {
        if private {
            Audience::Principal(self.call.principal.clone())
        } else {
            Audience::Everyone
        }
    }

    /// The index tags of an entry this call fills: its server, its name, the policy's tags.
    fn tags(&self, directive: &Directive) -> Vec<String> {
        let call = &self.call;
        let mut tags = vec![server_tag(&call.server), name_tag(&call.server, &call.name)];
        tags.extend(directive.tags.iter().map(|tag| policy_tag(tag)));
        tags
    }

    /// The plan of a background refresh: a copy of this call that fills the key.
    fn refresh_plan(
        &self,
        directive: Directive,
        shared_key: Arc<str>,
        private_key: Option<Arc<str>>,
        leader: Leader,
    ) -> CallCache {
        let call = &self.call;
        let fill = Fill {
            tags: self.tags(&directive),
            directive,
            shared_key,
            private_key,
            shared_stamp: None,
            private_stamp: None,
            ticket: self.layer.cache.begin_fill(),
            leader: Some(leader),
            fallback: None,
        };
        CallCache {
            layer: self.layer.clone(),
            policies: self.policies.clone(),
            call: OwnedCall {
                server: call.server.clone(),
                method: call.method.clone(),
                kind: call.kind,
                name: call.name.clone(),
                arguments: call.arguments.clone(),
                annotations: call.annotations,
                principal: call.principal.clone(),
            },
            mode: Mode::Fill(Box::new(fill)),
            hint: None,
            served: None,
            sourced: self.sourced.clone(),
            ttl_source: None,
            filled: None,
            from_entry: false,
        }
    }

    /// The call's arguments as canonical JSON (as the key uses them).
    pub(crate) fn canonical_arguments(&self) -> &str {
        &self.call.arguments
    }

    /// The tool's annotations as the server declared them.
    pub(crate) fn annotations(&self) -> Annotations {
        self.call.annotations
    }

    /// Whether this call fills a cache entry (a miss), as opposed to a bypass or a write.
    pub(crate) fn fills(&self) -> bool {
        matches!(self.mode, Mode::Fill(_))
    }

    /// The call was answered without the backend (a hit, or a refusal before it started):
    /// nothing to fill or invalidate.
    pub(crate) fn settle_served(&mut self) {
        self.mode = Mode::Nothing;
    }

    /// The server asked the client something during the call (sampling, elicitation): the
    /// result depends on that client's answer, so it fills nothing (waiters fetch their own).
    /// A write still invalidates.
    pub(crate) fn depends_on_the_client(&mut self) {
        if self.fills() {
            self.mode = Mode::Nothing;
        }
    }

    /// Records that a follower got its answer from another caller's fill.
    pub(crate) fn coalesced(&mut self) {
        self.layer.cache.record(Served::Coalesced);
    }

    /// Settles the call: fills the cache, publishes to followers, falls back to a stale
    /// entry on failure, or applies a write's invalidations. Returns the outcome the
    /// client gets.
    pub(crate) async fn complete(
        &mut self,
        outcome: Result<Value, BackendError>,
        backend_time: Duration,
    ) -> Result<Value, BackendError> {
        match std::mem::replace(&mut self.mode, Mode::Nothing) {
            Mode::Nothing => outcome,
            Mode::Invalidate => {
                self.invalidate_after(&outcome, backend_time).await;
                outcome
            }
            Mode::Fill(fill) => self.fill(*fill, outcome, backend_time),
        }
    }

    async fn invalidate_after(
        &self,
        outcome: &Result<Value, BackendError>,
        backend_time: Duration,
    ) {
        let status = match outcome {
            Ok(response) if is_error_response(response) => Status::Error,
            Ok(_) => Status::Success,
            Err(_) => Status::Unknown,
        };
        let result = outcome
            .as_ref()
            .ok()
            .and_then(|response| response.get("result"));
        let verdict = Outcome {
            status,
            latency: backend_time,
            result_bytes: result.map_or(0, json_size),
        };
        let mut call = self.call.info();
        if let Ok(response) = outcome.as_ref() {
            call.hints = hints_of(response);
        }
        let invalidations = self.policies.invalidations(&call, &verdict);
        tracing::debug!(server = %self.call.server, tool = %self.call.name, ?invalidations, "invalidating after a write");
        self.layer
            .invalidate(&invalidations, InvalidationReason::Write)
            .await;
    }

    fn fill(
        &mut self,
        fill: Fill,
        outcome: Result<Value, BackendError>,
        backend_time: Duration,
    ) -> Result<Value, BackendError> {
        let cache = &self.layer.cache;
        let response = match outcome {
            Ok(response) => response,
            Err(error) => {
                let Some(stale) = fill.fallback else {
                    return Err(error);
                };
                tracing::info!(server = %self.call.server, name = %self.call.name, %error, "serving a stale entry because the backend failed");
                cache.record(Served::Stale);
                self.answered_from(&stale);
                return Ok(stale_response(&stale));
            }
        };
        let entry = self.entry_for(&response, &fill, backend_time);
        let private = entry
            .as_ref()
            .map_or_else(|| hints_of(&response).is_private(), |entry| entry.private);
        let (key, stamp) = if private {
            (fill.private_key.clone(), fill.private_stamp.as_ref())
        } else {
            (Some(fill.shared_key.clone()), fill.shared_stamp.as_ref())
        };
        let tier = self.layer.shared.as_ref();
        let deps = key.as_ref().map(|key| dependencies(&fill.tags, key));
        // Store first, publish second: a caller arriving between the two then finds the
        // entry instead of neither the entry nor the flight.
        match entry {
            None => cache.mark_uncacheable(fill.shared_key.clone()),
            // A private result without a principal to file it under is not stored. In
            // strict mode, an entry without a stamp (the tier was down when the fill
            // started) could never be checked, so it is not stored either.
            Some(entry)
                if stamp.is_none()
                    && tier.is_some_and(|tier| tier.consistency() == Consistency::Strict) =>
            {
                drop(entry)
            }
            Some(mut entry) => {
                if let Some(key) = &key {
                    self.hint = Some(CacheHint {
                        ttl: entry.ttl.unwrap_or_default(),
                        shared: !private,
                    });
                    self.ttl_source = entry.ttl_source.clone();
                    entry.stamp = stamp.map(stamp_words);
                    if let (Some(tier), Some(stamp), Some(deps)) = (tier, stamp, &deps) {
                        let lifetime = entry
                            .ttl
                            .unwrap_or(tier.max_entry_lifetime())
                            .saturating_add(
                                entry
                                    .stale_while_revalidate
                                    .max(entry.stale_if_error)
                                    .unwrap_or_default(),
                            );
                        if tier.fits(u64::from(entry.size)) {
                            tier.store(key, deps, stamp, &codec::encode(&entry), lifetime);
                        }
                    }
                    cache.insert(key.clone(), entry, &fill.ticket);
                }
            }
        }
        if let Some(leader) = fill.leader {
            let current = cache.is_current(
                &fill.ticket,
                key.as_deref().unwrap_or(&fill.shared_key),
                &fill.tags,
            );
            leader.publish(FlightResult {
                response: response.clone(),
                audience: self.audience(private),
                current,
                stamp: deps
                    .zip(stamp)
                    .map(|(deps, stamp)| (Arc::from(deps), stamp_words(stamp))),
            });
        }
        Ok(response)
    }

    /// The entry a response makes, or `None` when it must not be cached: JSON-RPC
    /// errors never, `isError` results only with a negative TTL, and a server's own
    /// `ttlMs` can shorten (never lengthen) the policy's TTL.
    fn entry_for(&self, response: &Value, fill: &Fill, backend_time: Duration) -> Option<Entry> {
        let directive = &fill.directive;
        let result = response.get("result")?;
        let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
        let hints = ServerHints::of_result(result);
        let policy_ttl = if is_error {
            Some(directive.negative_ttl?)
        } else {
            directive.ttl
        };
        let mut ttl = hints.cap_ttl(policy_ttl);
        if ttl.is_some_and(|ttl| ttl.is_zero()) {
            return None;
        }
        let mut source = if ttl == policy_ttl {
            self.policy_ttl_source(is_error)
        } else {
            Some(TtlSource::ServerHint)
        };
        // With a shared tier an entry lives at most half the generation retention, stale
        // windows included, so the counters that judge it outlive it.
        let (mut stale_while_revalidate, mut stale_if_error) =
            (directive.stale_while_revalidate, directive.stale_if_error);
        if let Some(tier) = &self.layer.shared {
            let most = tier.max_entry_lifetime();
            let fresh = ttl.map_or(most, |ttl| ttl.min(most));
            if ttl != Some(fresh) {
                source = Some(TtlSource::SharedCap);
            }
            ttl = Some(fresh);
            let room = most.saturating_sub(fresh);
            stale_while_revalidate = stale_while_revalidate.map(|window| window.min(room));
            stale_if_error = stale_if_error.map(|window| window.min(room));
        }
        let private = !directive.shared || hints.is_private();
        let size = serde_json::to_vec(result).map_or(0, |bytes| bytes.len());
        let tags = fill.tags.clone();
        Some(Entry {
            result: Arc::new(result.clone()),
            stored_at: std::time::Instant::now(),
            ttl,
            stale_while_revalidate,
            stale_if_error,
            tags,
            private,
            size: u32::try_from(size).unwrap_or(u32::MAX),
            backend_time,
            stamp: None,
            filled_generation: Some(self.policies.generation()),
            ttl_source: source.map(|source| Arc::from(source.to_string())),
        })
    }
}

impl Drop for CallCache {
    /// A write dropped before its answer (its client hung up, its deadline passed) may
    /// still have reached the server: its invalidations apply as for an unknown outcome,
    /// here and on every replica, rather than leaving what it may have changed cached.
    fn drop(&mut self) {
        if !matches!(self.mode, Mode::Invalidate) {
            return;
        }
        let verdict = Outcome {
            status: Status::Unknown,
            latency: Duration::ZERO,
            result_bytes: 0,
        };
        let invalidations = self.policies.invalidations(&self.call.info(), &verdict);
        let layer = self.layer.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    layer
                        .invalidate(&invalidations, InvalidationReason::Write)
                        .await;
                });
            }
            Err(_) => {
                for invalidation in &invalidations {
                    layer
                        .cache
                        .invalidate(invalidation, InvalidationReason::Write);
                }
            }
        }
    }
}

/// The caching hints a server put on its result (`ttlMs`, `cacheScope`).
pub(crate) fn hints_of(response: &Value) -> ServerHints {
    response
        .get("result")
        .map(ServerHints::of_result)
        .unwrap_or_default()
}

/// The length of a value's JSON text, counted without building the text.
fn json_size(value: &Value) -> u64 {
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len() as u64;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

fn is_error_response(response: &Value) -> bool {
    response.get("error").is_some()
        || response.pointer("/result/isError").and_then(Value::as_bool) == Some(true)
}

fn response_for(result: &Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": Value::Null, "result": result })
}

/// An expired entry served in place of a failed call, marked so in `_meta`.
fn stale_response(entry: &Entry) -> Value {
    let mut result = (*entry.result).clone();
    if let Some(object) = result.as_object_mut() {
        let meta = object.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(META_STALE.into(), json!(true));
            meta.insert(META_AGE_MS.into(), json!(entry.age().as_millis() as u64));
        }
    }
    response_for(&result)
}

/// Invalidations a server notification implies (list changes, resource updates).
pub(crate) fn invalidations_for_notification(server: &str, message: &Value) -> Vec<Invalidation> {
    let tool = |name: &str| Invalidation::Tool {
        server: server.to_owned(),
        tool: name.to_owned(),
    };
    match mcp_bridge_jsonrpc::method(message) {
        Some("notifications/tools/list_changed") => vec![tool("tools/list")],
        Some("notifications/prompts/list_changed") => vec![tool("prompts/list")],
        Some("notifications/resources/list_changed") => {
            vec![tool("resources/list"), tool("resources/templates/list")]
        }
        Some("notifications/resources/updated") => message
            .pointer("/params/uri")
            .and_then(Value::as_str)
            .map(|uri| vec![tool(uri)])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}
