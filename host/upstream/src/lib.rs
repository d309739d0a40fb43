//! The seam between the HTTP front and what serves its calls.
//!
//! The front speaks MCP to clients and hands every call to an [`Upstream`]; the router
//! implements it over the pools and the cache. Only the traits below and the plain data
//! they carry cross the seam, so the front's crate depends on this one and never on the
//! backend: it cannot name a process or a pool, and Cargo enforces it.
//!
//! Everything here is object-safe: the front holds an `Arc<dyn Upstream>` and each call
//! is a `Box<dyn ForwardedCall>`, so the front is compiled once, whatever serves it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// A boxed future that can move between threads, as trait methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One configured server, as the front addresses it. Cheap to clone.
pub type ServerHandle = Arc<dyn UpstreamServer>;

/// What serves the front's calls: the configured servers, one path for every call,
/// readiness and health.
pub trait Upstream: Send + Sync + 'static {
    /// Every configured server, in configuration order.
    fn servers(&self) -> &[ServerHandle];

    /// The server configured under `name`.
    fn server(&self, name: &str) -> Option<&ServerHandle>;

    /// Forwards one JSON-RPC request to `server`. `message` is the client's request
    /// (already rewritten for the server when the aggregated endpoint renamed things);
    /// `want_events` says whether the caller can relay notifications (an SSE response).
    fn forward<'a>(
        &'a self,
        server: &'a ServerHandle,
        message: Value,
        want_events: bool,
        caller: &'a Caller,
    ) -> BoxFuture<'a, Box<dyn ForwardedCall>>;

    /// Waits for every server in turn, each as [`UpstreamServer::wait_ready`] does.
    fn wait_all_ready(&self) -> BoxFuture<'_, ()>;

    /// A session ended (a DELETE): whatever was pinned to it, such as its own process on a
    /// session-isolated server, is stopped.
    fn end_session(&self, session: &str) {
        let _ = session;
    }

    /// Every server's health, and the worst among the required ones (`/health`).
    fn health(&self) -> HealthSummary;

    /// The required servers the bridge is not ready without (`/readyz`); empty when ready.
    fn servers_not_ready(&self) -> Vec<Arc<str>>;

    /// Refreshes the gauges that are sampled when read, just before `/metrics` renders.
    fn sample_gauges(&self);

    /// Stops every server, draining what is in flight.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// One configured server: its name, what it said about itself, a bounded wait for its
/// first handshake, and its notifications.
pub trait UpstreamServer: Send + Sync {
    fn name(&self) -> &Arc<str>;

    /// How long a call may wait for a slot on this server (`acquire_timeout`); the front
    /// waits no longer than this for one of the session's own call slots either.
    fn acquire_timeout(&self) -> Duration;

    /// Starts the server if nothing runs, then waits, at most its `connection_timeout`,
    /// until it completed a handshake or failed to start.
    fn wait_ready(&self) -> BoxFuture<'_, ()>;

    /// What the server has said about itself so far (empty before its first handshake).
    fn description(&self) -> ServerDescription;

    /// Waits as [`UpstreamServer::wait_ready`] does, then what a client learns about the
    /// server at `initialize`; why it is unavailable when no handshake completed.
    fn introduce(&self) -> BoxFuture<'_, Result<Introduction, CallError>>;

    /// What `caller` learns at `initialize`: the same as [`UpstreamServer::introduce`] for
    /// a shared server; an isolated server starts the caller's own processes first (its
    /// first call would anyway) and describes them.
    fn introduce_to<'a>(
        &'a self,
        caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Introduction, CallError>> {
        let _ = caller;
        self.introduce()
    }

    /// Notifications the server sends outside any call (`list_changed`,
    /// `resources/updated`), for the front to relay on GET streams.
    fn notifications(&self) -> broadcast::Receiver<Value>;
}

/// A request in flight. Dropping it before it is done cancels the request on the server.
pub trait ForwardedCall: Send {
    /// The next event, or the final outcome once.
    fn next(&mut self) -> BoxFuture<'_, Step>;

    /// What clients may be told about caching the result (known once it is done).
    fn cache_hint(&self) -> Option<CacheHint>;

    /// The policy generation that decided the call, when the cache had a part in it.
    fn policy_generation(&self) -> Option<u64>;

    /// What the cache did with the call: `hit`, `stale`, `coalesced`, `miss` (this call
    /// fills), `bypass` (not cacheable, or a write), or `none` (no cache in the path).
    fn cache_outcome(&self) -> &'static str;

    /// Where the call's cache treatment came from: the policy that decided it, the source
    /// of the TTL and, for an answer from an entry, the generation that filled it. Empty
    /// when the cache had no part in the call.
    fn cache_provenance(&self) -> CacheProvenance {
        CacheProvenance::default()
    }

    /// The tool a `tools/call` calls, when the server lists it (`None` for another
    /// method or a name the server does not list): safe to name a span after, as a
    /// client's made-up name is not.
    fn listed_tool(&self) -> Option<&str> {
        None
    }

    /// When the call times out (its server's `request_timeout` from its start), if it has
    /// a deadline: waiting for it longer is pointless.
    fn deadline(&self) -> Option<std::time::Instant> {
        None
    }
}

/// The way back to whoever sent a server request. The front keeps it until the client
/// answers, without learning who asked.
pub trait AnswerSink: Send + Sync {
    /// Delivers the client's answer, its id already the server's own. Fails only when
    /// the asker is gone.
    fn send<'a>(&'a self, answer: &'a Value) -> BoxFuture<'a, Result<(), CallError>>;
}

/// One step of a forwarded call.
pub enum Step {
    /// A notification or server request for this call's client.
    Event(CallEvent),
    /// The server's response (its id is still the bridge's; the front restores the
    /// client's), or why there is none.
    Done(Result<Value, CallError>),
}

/// Something a forwarded call's client receives before the response.
pub enum CallEvent {
    /// A notification about this call (progress, or a log line while it was the
    /// process's only call).
    Notification(Value),
    /// A request from the server that only this call's client can answer (sampling,
    /// elicitation, roots), still under the server's own id; the answer goes back
    /// through `answer`.
    ServerRequest {
        request: Value,
        answer: Arc<dyn AnswerSink>,
    },
}

/// Why a call has no response: what the client is told, as a JSON-RPC error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What went wrong, naming the server, for the client to read.
    pub message: String,
    /// The JSON-RPC error code the client receives.
    pub code: i64,
    /// Whether sending the same request again may succeed.
    pub retryable: bool,
    /// The JSON-RPC error's `data`, when there is more to say than the message (a limit's
    /// reason and retry time, for one).
    pub data: Option<Value>,
}

impl CallError {
    /// An error with no `data`.
    pub fn new(message: impl Into<String>, code: i64, retryable: bool) -> CallError {
        CallError {
            message: message.into(),
            code,
            retryable,
            data: None,
        }
    }
}

/// Who is calling, as far as the router is concerned: whose cache partition its private
/// results belong to, and what must admit it before it reaches a backend.
#[derive(Clone, Default)]
pub struct Caller {
    /// An opaque id of the partition private results are filed under: the principal when
    /// it names one person or machine, otherwise the MCP session.
    pub principal: Option<Arc<str>>,
    /// Asked just before the call goes to a backend (not for a cache hit); a refusal is the
    /// call's answer.
    pub admission: Option<Arc<dyn Admission>>,
    /// Who is calling, for what reaches a backend: isolated servers' process groups, their
    /// per-principal environment and, when a server opts in, the caller named in `_meta`.
    /// Never a credential. `None` for the bridge's own requests.
    pub identity: Option<Arc<CallerIdentity>>,
}

/// The caller as a backend may learn of it: authenticated names, never a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The principal's name.
    pub name: Arc<str>,
    pub roles: Arc<[String]>,
    /// The MCP session the call belongs to (its id, not its token).
    pub session: Option<Arc<str>>,
    /// For a sessionless (2026-07-28) request, the affinity key it named
    /// (`Mcp-Bridge-Affinity`), already checked for form; it is scoped to `name`.
    pub affinity: Option<Arc<str>>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("principal", &self.principal)
            .field("admission", &self.admission.is_some())
            .field("identity", &self.identity)
            .finish()
    }
}

/// Held while an admitted call is at its backend; dropping it gives back what it took.
pub type AdmissionPermit = Box<dyn Send + Sync>;

/// Decides whether a call may go to a backend now: the caller's rate limits and in-flight
/// caps, which a cache hit does not spend.
pub trait Admission: Send + Sync {
    /// `tool` is the tool's name for `tools/call`, otherwise the method.
    fn admit(&self, server: &str, tool: &str) -> Result<AdmissionPermit, CallError>;
}

/// What clients may be told about a result's cacheability (2026-07-28 `ttlMs` / `cacheScope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheHint {
    pub ttl: Duration,
    pub shared: bool,
}

/// Where a call's cache treatment came from, for the `mcp-bridge-cache` response header.
/// Every part is a shared string or a number, so a hit reports it without allocating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheProvenance {
    /// The name of the policy that decided the call: a plugin binding, or `builtin`.
    pub decided_by: Option<Arc<str>>,
    /// The source of the TTL as its token (`plugin:flat`, `config:demo/get_clients`,
    /// `server`, `shared-cap`, `default`, …): for an answer from an entry, the entry's.
    pub ttl_source: Option<Arc<str>>,
    /// The policy generation that filled the entry a hit or stale answer came from.
    pub filled: Option<u64>,
}

/// A snapshot of what one server offers: its capabilities and tools, exactly as it
/// declared them. The tool list is shared with whoever holds the server's catalogue, not
/// copied: aggregated answers read it once per server and request.
#[derive(Clone)]
pub struct ServerDescription {
    capabilities: Value,
    tools: Arc<dyn AsRef<[Value]> + Send + Sync>,
}

impl ServerDescription {
    pub fn new(
        capabilities: Value,
        tools: Arc<dyn AsRef<[Value]> + Send + Sync>,
    ) -> ServerDescription {
        ServerDescription {
            capabilities,
            tools,
        }
    }

    /// The server's declared capabilities (`{}` before its first handshake).
    pub fn capabilities(&self) -> &Value {
        &self.capabilities
    }

    /// The server's tool definitions as it sent them.
    pub fn tools(&self) -> &[Value] {
        (*self.tools).as_ref()
    }
}

impl std::fmt::Debug for ServerDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerDescription")
            .field("capabilities", &self.capabilities)
            .field("tools", &self.tools())
            .finish()
    }
}

/// What a client learns about a server at `initialize` (or `server/discover`).
#[derive(Debug, Clone)]
pub struct Introduction {
    pub capabilities: Value,
    pub server_info: Value,
    pub instructions: Option<Value>,
}

/// A server's health, in the seed's terms, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

/// Every server's health for `/health`.
#[derive(Debug, Clone)]
pub struct HealthSummary {
    /// The worst status among required servers (an optional server's trouble is
    /// reported but does not make the bridge unhealthy).
    pub status: Health,
    /// Each server's report, by name, in configuration order.
    pub servers: serde_json::Map<String, Value>,
    /// The shared tier's state (`[cache.shared]`), when there is one. Its trouble does not
    /// make the bridge unhealthy: calls go to the backends without it.
    pub shared_tier: Option<Value>,
}

impl HealthSummary {
    /// Whether a required server is unhealthy (the bridge then answers `/health` with 503).
    pub fn is_unhealthy(&self) -> bool {
        self.status == Health::Unhealthy
    }
}
