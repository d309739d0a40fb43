//! The one path every forwarded request takes from the front to a backend pool: lease a
//! slot, send, enforce the timeout, retry a read-only call once, record metrics.
//!
//! The cache layer ([`caching`]) sits here: it sees the server, the method, the tool
//! and its annotations, and the outcome, and nothing about HTTP or processes.
//!
//! The router is all the front sees of the backend: servers by name ([`Server`]: what
//! each says about itself, a readiness wait, its notifications, its health), forwarded
//! calls and their events, and an [`AnswerHandle`] that carries a client's answer to a
//! server request back to the process that asked. No pool or process leaves this module.

mod caching;
mod isolation;
mod metrics;
mod notifications;
mod recording;
mod server;
#[cfg(test)]
mod tests;

/// Why a forwarded call got no answer from its server; the front turns it into a
/// JSON-RPC error.
pub use caching::{CacheLayer, annotations_of};
pub use mcp_bridge_upstream::{CacheHint, Caller, HealthSummary, Introduction, ServerDescription};
pub use metrics::CallMetrics;
pub use server::Server;

mod upstream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tracing::{Instrument as _, Span};

use mcp_bridge_upstream::ServerHandle;

use caching::{CallCache, Lookup};
use mcp_bridge_backend::PoolMetrics;
use mcp_bridge_backend::{
    self as backend, BackendError, CallStep, Catalog, InflightCall, Lease, Pool, Process,
    ProcessBudget,
};
use mcp_bridge_cache::CacheMetrics;
use mcp_bridge_cache::{CacheError, ResponseCache};
use mcp_bridge_config::BridgeConfig;
use mcp_bridge_jsonrpc as jsonrpc;
use mcp_bridge_metrics::Registry;
use mcp_bridge_policy::PolicyChain;
use mcp_bridge_shared::SharedTier;
use mcp_bridge_telemetry::{self as telemetry, RequestFacts, attribute};
use mcp_bridge_trace::Recorder;

/// What `/readyz` names while it waits for the shared tier (`required_for_readiness`).
pub const SHARED_TIER_READINESS_NAME: &str = "cache.shared";

/// Methods that never change server state, so a crash mid-call may be retried once.
/// `tools/call` is judged per tool from its annotations; anything else is not retried.
const READ_ONLY_METHODS: [&str; 8] = [
    "ping",
    "tools/list",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
];

/// Every configured server, by name, with the cache layer and the trace recorder.
pub struct Router {
    servers: Vec<Server>,
    /// The same servers as the front's [`ServerHandle`]s, in the same order.
    handles: Vec<ServerHandle>,
    /// Each server's index in `servers` and `handles`.
    by_name: HashMap<String, usize>,
    metrics: Arc<CallMetrics>,
    cache: Option<Arc<CacheLayer>>,
    /// The trace recorder and the shadow evaluator's tap, when on.
    sinks: recording::Sinks,
}

/// What the front gets while a forwarded request runs.
pub enum Step {
    /// A notification or server request for this call's client.
    Event(CallEvent),
    /// The server's response (its id is still the bridge's; the front restores the
    /// client's), or why there is none.
    Done(Result<Value, BackendError>),
}

/// Something a forwarded call's client receives before the response.
pub enum CallEvent {
    /// A notification about this call (progress, or a log line while it was the
    /// process's only call).
    Notification(Value),
    /// A request from the server that only this call's client can answer (sampling,
    /// elicitation, roots), still under the server's own id. The client's answer goes
    /// back through `answer`.
    ServerRequest {
        request: Value,
        answer: AnswerHandle,
    },
}

/// The way back to the process that sent a server request. The front keeps it until the
/// client answers, without learning which process asked.
#[derive(Clone)]
pub struct AnswerHandle {
    process: Arc<Process>,
}

impl AnswerHandle {
    /// Delivers the client's answer, its id already the server's own, to the process that
    /// asked. Fails only when that process has exited.
    pub async fn send(&self, answer: &Value) -> Result<(), BackendError> {
        self.process.send_client_response(answer).await
    }
}

impl Router {
    /// Starts a pool per configured server; each prewarms in the background. The router
    /// registers its own metrics, the pools' and the cache's in `registry`. With `shared`
    /// (`[cache.shared]`), the cache is the first level in front of the shared tier. Fails
    /// only when the disk cache cannot be opened, before any server is started.
    pub fn start(
        config: &BridgeConfig,
        registry: &Registry,
        shared: Option<Arc<SharedTier>>,
    ) -> Result<Router, CacheError> {
        let pool_metrics = Arc::new(PoolMetrics::register(registry));
        let cache_metrics = Arc::new(CacheMetrics::register(registry));
        let store = if config.cache.enabled {
            Some(Arc::new(ResponseCache::open(&config.cache, cache_metrics)?))
        } else {
            None
        };
        let metrics = Arc::new(CallMetrics::register(registry, &pool_metrics));
        let cache = store.map(|store| {
            let policies = PolicyChain::new(Vec::new(), Arc::new(config.builtin_policy()));
            let layer = CacheLayer::new(store, policies);
            Arc::new(match shared {
                Some(tier) => layer.with_shared_tier(tier),
                None => layer,
            })
        });
        let budget = ProcessBudget::new(
            config.processes.max_total,
            Some(pool_metrics.processes_total.clone()),
        );
        let servers: Vec<Server> = config
            .servers
            .iter()
            .map(|server| {
                budget.set_server_cap(&Arc::from(server.name.as_str()), server.max_total_processes);
                let pool =
                    Pool::start_in(server.clone(), pool_metrics.clone(), budget.clone(), None);
                let groups = server.isolation.is_isolated().then(|| {
                    Arc::new(isolation::Groups::new(
                        Arc::new(server.clone()),
                        config.principal_secrets.clone(),
                        pool_metrics.clone(),
                        budget.clone(),
                    ))
                });
                Server::new(pool, groups, cache.clone())
            })
            .collect();
        for groups in servers.iter().filter_map(Server::groups) {
            tokio::spawn(isolation::reap_while_alive(Arc::downgrade(groups)));
        }
        let handles = servers
            .iter()
            .map(|server| Arc::new(server.clone()) as ServerHandle)
            .collect();
        let by_name = servers
            .iter()
            .enumerate()
            .map(|(index, server)| (server.name().to_string(), index))
            .collect();
        for server in &servers {
            tokio::spawn(notifications::relay(
                server.clone(),
                server.pool().subscribe(),
                cache.clone(),
                notifications::Audience::Everyone,
            ));
        }
        if let Some(tier) = cache.as_ref().and_then(|layer| layer.shared_tier()) {
            tier.add_listener(Arc::new(notifications::FromOtherReplicas::new(&servers)));
        }
        Ok(Router {
            servers,
            handles,
            by_name,
            metrics,
            cache,
            sinks: recording::Sinks::default(),
        })
    }

    /// Records every answered call to a trace (`serve --record`).
    pub fn set_recorder(&mut self, recorder: Arc<Recorder>) {
        self.sinks.recorder = Some(recorder);
    }

    /// Hands every answered call to `tap` as well (the shadow evaluator), and lets it
    /// truth-sample cache hits.
    pub fn set_tap(&mut self, tap: Arc<dyn mcp_bridge_trace::CallTap>) {
        self.sinks.tap = Some(tap);
    }

    /// The response cache, when enabled.
    pub fn cache(&self) -> Option<&Arc<ResponseCache>> {
        self.cache.as_ref().map(|layer| &layer.cache)
    }

    /// The cache layer, to swap its policies.
    pub fn cache_layer(&self) -> Option<&Arc<CacheLayer>> {
        self.cache.as_ref()
    }

    /// Every configured server, in configuration order.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    pub fn server(&self, name: &str) -> Option<&Server> {
        self.by_name
            .get(name)
            .and_then(|&index| self.servers.get(index))
    }

    /// Waits for every server in turn, each as [`Server::wait_ready`] does, so that an
    /// aggregated answer sees every server that can start within its bound.
    pub async fn wait_all_ready(&self) {
        for server in &self.servers {
            server.wait_ready().await;
        }
    }

    /// Every server's health, and the worst among the required ones (`/health`), with
    /// the shared tier's state when there is one.
    pub fn health(&self) -> HealthSummary {
        let mut summary = server::health_of(&self.servers);
        summary.shared_tier = self.shared_tier().map(|tier| tier.status());
        summary
    }

    /// The shared tier, when the cache has one.
    pub fn shared_tier(&self) -> Option<&Arc<SharedTier>> {
        self.cache.as_ref().and_then(|layer| layer.shared_tier())
    }

    /// The required servers the bridge is not ready without (`/readyz`): those with no
    /// ready process although they keep one (`min_connections > 0`), and those failing
    /// to start. Empty when the bridge is ready.
    pub fn servers_not_ready(&self) -> Vec<Arc<str>> {
        let mut waiting: Vec<Arc<str>> = self
            .servers
            .iter()
            .filter(|server| server::holds_up_readiness(server))
            .map(|server| server.name().clone())
            .collect();
        if self
            .shared_tier()
            .is_some_and(|tier| tier.holds_up_readiness())
        {
            waiting.push(Arc::from(SHARED_TIER_READINESS_NAME));
        }
        waiting
    }

    /// Forwards one request to a server. `message` is the client's JSON-RPC request
    /// (already rewritten for the backend if the aggregated endpoint renamed things);
    /// `want_events` says whether the caller can relay notifications (an SSE response).
    pub async fn forward(
        &self,
        server: &Server,
        message: Value,
        want_events: bool,
        caller: &Caller,
    ) -> ForwardedCall {
        let server::Serving { pool, group } = match server.pool_for(caller) {
            Ok(serving) => serving,
            Err(error) => {
                let catalog = server.catalog();
                let mut call = ForwardedCall::new(
                    server.pool(),
                    &self.metrics,
                    &message,
                    &catalog,
                    want_events,
                    None,
                );
                call.pending_error = Some(error);
                return call;
            }
        };
        let pool = &pool;
        let mut message = message;
        // The key is the bridge's: a client's own value never reaches a backend.
        let named = pool.config().identity_meta;
        set_caller_meta(&mut message, caller.identity.as_deref().filter(|_| named));
        let catalog = pool.catalog();
        if let Some(groups) = server.groups() {
            groups.learn_catalog(&catalog);
        }
        // An isolated server's result belongs to its group, and a server told who calls may
        // answer each caller differently: either way the result is private, whatever the
        // policy says.
        let private_to = match &group {
            Some(group) => Some(Arc::from(format!("group:{}", group.key.key))),
            None if named => Some(
                caller
                    .principal
                    .clone()
                    .unwrap_or_else(|| Arc::from("bridge")),
            ),
            None => None,
        };
        let plan = match &self.cache {
            Some(layer) => {
                caching::prepare(layer, pool.name(), &message, &catalog, caller, private_to).await
            }
            None => None,
        };
        let (caching, lookup) = match plan {
            Some((caching, lookup)) => (Some(caching), lookup),
            None => (None, Lookup::Backend),
        };
        let mut call = ForwardedCall::new(
            pool,
            &self.metrics,
            &message,
            &catalog,
            want_events,
            caching,
        );
        call.group = group.map(|group| group.used);
        call.recording = recording::draft(
            &self.sinks,
            pool.name(),
            &message,
            &catalog,
            call.caching.as_ref(),
            caller,
            call.retry_copy.is_some(),
        );
        call.cache_outcome = match (&lookup, &call.caching) {
            (Lookup::Hit(_), _) => "hit",
            (Lookup::Stale(..), _) => "stale",
            (Lookup::Follow(_), _) => "coalesced",
            (Lookup::Backend, Some(caching)) if caching.fills() => "miss",
            (Lookup::Backend, Some(_)) => "bypass",
            (Lookup::Backend, None) => "none",
        };
        match lookup {
            Lookup::Hit(response) => call.ready = Some(response),
            Lookup::Stale(response, refresh) => {
                if let Some(refresh) = refresh {
                    self.refresh_in_background(pool, message, *refresh);
                }
                call.ready = Some(response);
            }
            Lookup::Follow(receiver) => call.follower = Some(receiver),
            Lookup::Backend => match admit(caller, pool.name(), &call.tool) {
                Err(refusal) => {
                    // A refused write never reached the server: nothing to invalidate.
                    if let Some(caching) = call.caching.as_mut() {
                        caching.settle_served();
                    }
                    call.refusal = Some(refusal);
                    call.cache_outcome = "none";
                }
                Ok(permit) => {
                    call.admission = permit;
                    if let Err(error) = call.start(message).await {
                        call.pending_error = Some(error);
                    }
                }
            },
        }
        call
    }

    /// Runs the one refresh of a stale entry on its own task; its result fills the cache
    /// (unless a write invalidated the key meanwhile) and nobody waits for it.
    fn refresh_in_background(&self, pool: &Arc<Pool>, message: Value, refresh: CallCache) {
        let catalog = pool.catalog();
        let mut call = ForwardedCall::new(
            pool,
            &self.metrics,
            &message,
            &catalog,
            false,
            Some(refresh),
        );
        // In a span of its own, linked to the call that found the entry stale: that
        // call is answered now, and its span must end with its answer.
        let refreshing = telemetry::cache_refresh_span();
        tokio::spawn(
            async move {
                if let Some(caching) = call.caching.as_mut() {
                    caching.stamp_refresh().await;
                }
                if let Err(error) = call.start(message).await {
                    call.pending_error = Some(error);
                }
                while let Step::Event(_) = call.next().await {}
            }
            .instrument(refreshing),
        );
    }

    /// Stops the pinned process of a session that ended, on every session-isolated server.
    pub fn end_session(&self, session: &str) {
        for groups in self.servers.iter().filter_map(Server::groups) {
            groups.end_session(session);
        }
    }

    /// Stops every pool and its processes.
    pub async fn shutdown(&self) {
        futures_util::future::join_all(self.servers.iter().map(|server| async move {
            if let Some(groups) = server.groups() {
                groups.shutdown().await;
            }
            server.pool().shutdown().await;
        }))
        .await;
    }
}

/// Sets the bridge's caller key in `params._meta`: the principal's name and roles (never a
/// credential) when the server asked for them (`identity_meta = true`); otherwise any value
/// a client put there is removed, so a backend never trusts a forged one.
fn set_caller_meta(message: &mut Value, identity: Option<&mcp_bridge_upstream::CallerIdentity>) {
    let key = mcp_bridge_config::CALLER_META_KEY;
    let params = message.get_mut("params").and_then(Value::as_object_mut);
    let Some(identity) = identity else {
        if let Some(meta) = params
            .and_then(|params| params.get_mut("_meta"))
            .and_then(Value::as_object_mut)
        {
            meta.remove(key);
        }
        return;
    };
    let Some(request) = message.as_object_mut() else {
        return;
    };
    let params = request
        .entry("params")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(params) = params.as_object_mut() else {
        return;
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert(
            key.to_owned(),
            serde_json::json!({ "principal": &*identity.name, "roles": &*identity.roles }),
        );
    }
}

/// Asks the caller's admission, if it has one, whether a call may go to `server` now.
fn admit(
    caller: &Caller,
    server: &str,
    tool: &str,
) -> Result<Option<mcp_bridge_upstream::AdmissionPermit>, mcp_bridge_upstream::CallError> {
    match &caller.admission {
        Some(admission) => admission.admit(server, tool).map(Some),
        None => Ok(None),
    }
}

/// A request in flight through the router. Dropping it before it is done cancels the
/// request on the server.
pub struct ForwardedCall {
    pool: Arc<Pool>,
    metrics: Arc<CallMetrics>,
    method: String,
    tool: String,
    started: Instant,
    deadline: tokio::time::Instant,
    retry_copy: Option<Value>,
    want_events: bool,
    // Field order matters: the call must drop (and cancel) before its lease frees the slot.
    inflight: Option<InflightCall>,
    lease: Option<Lease>,
    pending_error: Option<BackendError>,
    /// The caller's limits refused the call before it started.
    refusal: Option<mcp_bridge_upstream::CallError>,
    /// What the caller's admission took, given back when the call ends.
    admission: Option<mcp_bridge_upstream::AdmissionPermit>,
    /// What the cache did with the call, for the audit log.
    cache_outcome: &'static str,
    done: bool,
    caching: Option<CallCache>,
    /// A response that needs no backend (a cache hit).
    ready: Option<Value>,
    /// Another caller is filling the same key; its response comes through here.
    follower: Option<tokio::sync::watch::Receiver<mcp_bridge_cache::Published>>,
    /// The call's trace record while `serve --record` is on.
    recording: Option<recording::Draft>,
    /// The isolated group the call's pool belongs to, held so it is not dropped under it.
    group: Option<isolation::GroupUse>,
    /// The CLIENT span of the hop to the backend, from the write until the outcome
    /// (disabled when tracing is off).
    backend_span: Span,
}

impl ForwardedCall {
    fn new(
        pool: &Arc<Pool>,
        metrics: &Arc<CallMetrics>,
        message: &Value,
        catalog: &Catalog,
        want_events: bool,
        caching: Option<CallCache>,
    ) -> ForwardedCall {
        let method = jsonrpc::method(message).unwrap_or_default().to_owned();
        let tool = tool_label(&method, message, catalog);
        let read_only = match method.as_str() {
            "tools/call" => catalog.is_read_only(&tool),
            other => READ_ONLY_METHODS.contains(&other),
        };
        ForwardedCall {
            pool: pool.clone(),
            metrics: metrics.clone(),
            method,
            tool,
            started: Instant::now(),
            deadline: tokio::time::Instant::now() + pool.config().pool.request_timeout,
            // Only read-only requests may be sent twice, so only they keep a copy.
            retry_copy: read_only.then(|| message.clone()),
            want_events,
            inflight: None,
            lease: None,
            pending_error: None,
            refusal: None,
            admission: None,
            cache_outcome: "none",
            done: false,
            caching,
            ready: None,
            follower: None,
            recording: None,
            group: None,
            backend_span: Span::none(),
        }
    }

    async fn start(&mut self, message: Value) -> Result<(), BackendError> {
        let acquiring = telemetry::pool_acquire_span(self.pool.name());
        let lease = tokio::time::timeout_at(self.deadline, self.pool.acquire())
            .instrument(acquiring.clone())
            .await
            .map_err(|_| self.timeout_error())
            .and_then(|leased| leased)
            .inspect_err(|error| telemetry::record_error(&acquiring, error.kind()))?;
        drop(acquiring);
        // A name the server does not list stays out of the span, as out of the metrics.
        let tool = self.listed_tool();
        let backend_span = telemetry::backend_span(
            &RequestFacts {
                method: &self.method,
                tool,
                ..RequestFacts::default()
            },
            self.pool.name(),
            Some(lease.process().pid()),
        );
        // The backend continues the trace from this span. The cache key was computed
        // before (and leaves `_meta` out), so the injected context never splits a key.
        let mut message = message;
        telemetry::inject_trace_context(&mut message, &backend_span);
        // Writing waits when the child stops reading stdin, so it shares the deadline.
        let writing = lease.process().start_call(message, self.want_events);
        let started = tokio::time::timeout_at(self.deadline, writing)
            .instrument(backend_span.clone())
            .await
            .map_err(|_| self.timeout_error())
            .and_then(|written| written);
        let inflight =
            started.inspect_err(|error| telemetry::record_error(&backend_span, error.kind()))?;
        self.backend_span = backend_span;
        self.lease = Some(lease);
        self.inflight = Some(inflight);
        Ok(())
    }

    /// The next event, or the final outcome once.
    pub async fn next(&mut self) -> Step {
        if self.done {
            return Step::Done(Err(BackendError::Unavailable {
                server: self.pool.name().clone(),
                reason: "the call already completed".to_owned(),
            }));
        }
        if let Some(error) = self.pending_error.take() {
            return self.finish(Err(error)).await;
        }
        if let Some(response) = self.ready.take() {
            return self.finish_from_cache(response);
        }
        if let Some(receiver) = self.follower.take()
            && let Some(step) = self.follow(receiver).await
        {
            return step;
        }
        loop {
            let Some(inflight) = self.inflight.as_mut() else {
                return self.finish(Err(self.timeout_error())).await;
            };
            // The wait is in the CLIENT span too: its last exit, when the outcome (or
            // the timeout) arrives, is where the exported span ends.
            let step = tokio::time::timeout_at(self.deadline, inflight.next())
                .instrument(self.backend_span.clone())
                .await;
            match step {
                Ok(CallStep::Event(event)) => {
                    if matches!(event, backend::CallEvent::ServerRequest(_))
                        && let Some(caching) = self.caching.as_mut()
                    {
                        caching.depends_on_the_client();
                    }
                    return Step::Event(for_the_client(event, inflight.process()));
                }
                Ok(CallStep::Done(Err(error)))
                    if error.retryable() && self.retry_copy.is_some() =>
                {
                    if let Err(step) = self.retry(error).await {
                        return step;
                    }
                }
                Ok(CallStep::Done(outcome)) => return self.finish(outcome).await,
                Err(_) => {
                    if let Some(inflight) = self.inflight.take() {
                        inflight.time_out();
                    }
                    return self.finish(Err(self.timeout_error())).await;
                }
            }
        }
    }

    /// Waits for another caller's fill. If that caller gives up without a response,
    /// this call goes to the backend itself (returns `None` once it has started).
    async fn follow(
        &mut self,
        mut receiver: tokio::sync::watch::Receiver<mcp_bridge_cache::Published>,
    ) -> Option<Step> {
        let waiting = telemetry::single_flight_wait_span();
        let waited = tokio::time::timeout_at(self.deadline, async {
            // Copied out at once: the watch guard must not live across an await.
            receiver
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|published| published.clone())
        })
        .instrument(waiting.clone())
        .await;
        let result = match &waited {
            Ok(Some(_)) => "published",
            Ok(None) => "abandoned",
            Err(_) => "timeout",
        };
        telemetry::record_str(&waiting, attribute::CACHE_RESULT, result);
        drop(waiting);
        match waited {
            Err(_) => return Some(self.finish(Err(self.timeout_error())).await),
            // A result private to another principal is not ours to use: fetch our own.
            Ok(Some(published)) if self.accepts(&published).await => {
                if let Some(caching) = self.caching.as_mut() {
                    caching.coalesced();
                }
                return Some(self.finish_from_cache(published.response.clone()));
            }
            Ok(_) => {}
        }
        let message = self.retry_copy.clone()?;
        if let Err(error) = self.start(message).await {
            return Some(self.finish(Err(error)).await);
        }
        None
    }

    /// Whether this call may answer with another caller's published result.
    async fn accepts(&self, published: &mcp_bridge_cache::FlightResult) -> bool {
        match &self.caching {
            Some(caching) => caching.accepts(published).await,
            None => false,
        }
    }

    /// The tool of a `tools/call` when the server lists it (the metric label's rule).
    pub fn listed_tool(&self) -> Option<&str> {
        (!self.tool.is_empty() && self.tool != UNKNOWN_TOOL_LABEL).then_some(self.tool.as_str())
    }

    /// What clients may be told about caching the result (known once it is done).
    pub fn cache_hint(&self) -> Option<CacheHint> {
        self.caching.as_ref().and_then(|caching| caching.hint)
    }

    /// The policy generation that decided the call, when the cache had a part in it.
    pub fn policy_generation(&self) -> Option<u64> {
        self.caching
            .as_ref()
            .map(|caching| caching.policy_generation())
    }

    /// Where the call's cache treatment came from (empty when the cache had no part).
    pub fn cache_provenance(&self) -> mcp_bridge_upstream::CacheProvenance {
        self.caching
            .as_ref()
            .map(|caching| caching.provenance())
            .unwrap_or_default()
    }

    /// Sends a read-only request again on another process, once.
    async fn retry(&mut self, error: BackendError) -> Result<(), Step> {
        let Some(message) = self.retry_copy.take() else {
            return Err(self.finish(Err(error)).await);
        };
        tracing::info!(server = %self.pool.name(), method = %self.method, tool = %self.tool, %error, "retrying a read-only call on another process");
        self.metrics
            .backend_retries_total
            .with_label_values(&[self.pool.name()])
            .inc();
        self.inflight = None;
        self.lease = None;
        telemetry::record_error(&self.backend_span, error.kind());
        self.backend_span = Span::none();
        match self.start(message).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.finish(Err(error)).await),
        }
    }

    /// Finishes with a response the backend did not produce for this call.
    fn finish_from_cache(&mut self, response: Value) -> Step {
        self.done = true;
        self.caching = self.caching.take().map(|mut caching| {
            caching.settle_served();
            caching
        });
        let server: &str = self.pool.name();
        self.metrics
            .calls_total
            .with_label_values(&[server, &self.method, "hit"])
            .inc();
        self.metrics
            .call_duration_seconds
            .with_label_values(&[server, &self.method, &self.tool, "hit"])
            .observe(self.started.elapsed().as_secs_f64());
        if let Some(draft) = self.recording.take() {
            let served = self
                .caching
                .as_ref()
                .and_then(|caching| caching.served.clone());
            self.record_hit(draft, served, &response);
        }
        Step::Done(Ok(response))
    }

    /// Hands a hit's record over, first sending a fresh hit of a read-only call to the
    /// backend again when the tap samples it. The sample takes a call slot only if one is
    /// free now (it never queues or starts a process, so no client waits for it), runs on
    /// a task of its own after the response is ready, sends a copy of the request, fills
    /// no cache and counts in no call metric or health record: only in the tap's. An
    /// isolated group's calls are never sampled: the sample would need the group.
    fn record_hit(&self, draft: recording::Draft, served: Option<Arc<Value>>, response: &Value) {
        let sample = match (&served, &self.retry_copy) {
            (Some(served), Some(message))
                if self.cache_outcome == "hit" && self.group.is_none() =>
            {
                draft
                    .truth_permit()
                    .map(|(permit, timeout)| (served.clone(), message.clone(), permit, timeout))
            }
            _ => None,
        };
        let Some((served, message, permit, timeout)) = sample else {
            draft.answered_from_cache(served, response);
            return;
        };
        let Some(lease) = self.pool.try_lease() else {
            permit.skip();
            draft.answered_from_cache(Some(served), response);
            return;
        };
        tokio::spawn(async move {
            let fetch = async move {
                let mut inflight = lease.process().start_call(message, false).await?;
                loop {
                    if let backend::CallStep::Done(outcome) = inflight.next().await {
                        // The slot is given back once the answer is in.
                        drop(lease);
                        return outcome;
                    }
                }
            };
            draft
                .answered_from_cache_sampled(served, permit, timeout, fetch)
                .await;
        });
    }

    async fn finish(&mut self, outcome: Result<Value, BackendError>) -> Step {
        self.done = true;
        self.inflight = None;
        self.lease = None;
        // The backend hop ends with its outcome.
        if !self.backend_span.is_disabled() {
            match &outcome {
                Err(error) => telemetry::record_error(&self.backend_span, error.kind()),
                Ok(response) => {
                    if let Some(code) = response.pointer("/error/code") {
                        telemetry::record_error(&self.backend_span, &code.to_string());
                    }
                }
            }
            self.backend_span = Span::none();
        }
        let outcome = match self.caching.as_mut() {
            Some(caching) => caching.complete(outcome, self.started.elapsed()).await,
            None => outcome,
        };
        let label = match &outcome {
            Ok(response) if response.get("error").is_some() => "error",
            Ok(_) => "ok",
            Err(error) => {
                self.metrics
                    .backend_errors_total
                    .with_label_values(&[self.pool.name(), error.kind()])
                    .inc();
                error.kind()
            }
        };
        self.pool.health().record_call(outcome.is_ok());
        let server: &str = self.pool.name();
        self.metrics
            .calls_total
            .with_label_values(&[server, &self.method, label])
            .inc();
        self.metrics
            .call_duration_seconds
            .with_label_values(&[server, &self.method, &self.tool, label])
            .observe(self.started.elapsed().as_secs_f64());
        if let Some(draft) = self.recording.take() {
            draft.answered_by_backend(&outcome);
        }
        Step::Done(outcome)
    }

    fn timeout_error(&self) -> BackendError {
        BackendError::Timeout {
            server: self.pool.name().clone(),
            timeout: self.pool.config().pool.request_timeout,
        }
    }
}

/// A process's call event as the front receives it: a server request carries the way
/// back to `process`, the one that sent it.
fn for_the_client(event: backend::CallEvent, process: &Arc<Process>) -> CallEvent {
    match event {
        backend::CallEvent::Notification(notification) => CallEvent::Notification(notification),
        backend::CallEvent::ServerRequest(request) => CallEvent::ServerRequest {
            request,
            answer: AnswerHandle {
                process: process.clone(),
            },
        },
    }
}

/// The tool a request calls, for metric labels. Only names the server lists count:
/// a label per arbitrary client-sent name (or resource URI) would grow the registry
/// without bound.
fn tool_label(method: &str, message: &Value, catalog: &Catalog) -> String {
    if method != "tools/call" {
        return String::new();
    }
    let name = message
        .get("params")
        .and_then(|params| params.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if catalog.tool(name).is_some() {
        name.to_owned()
    } else {
        UNKNOWN_TOOL_LABEL.to_owned()
    }
}

/// The metric label for a tool name the server does not list.
const UNKNOWN_TOOL_LABEL: &str = "<unknown>";
