//! MCP sessions on the front (protocol versions up to 2025-11-25), and the relay table
//! that carries a server's requests to a client and the client's answers back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::HttpMetrics;
use super::error::FrontError;
use mcp_bridge_config::HttpConfig;
use mcp_bridge_upstream::AnswerSink;

/// How many characters of a client's `clientInfo.name` a session keeps. A session stores
/// only that field (for `/admin/stats`), so what a client sends at `initialize` cannot grow
/// what the bridge holds per session.
pub(crate) const MAX_CLIENT_INFO_CHARS: usize = 128;

/// How many resources one session may subscribe to at once.
pub(crate) const MAX_SUBSCRIPTIONS_PER_SESSION: usize = 1024;

/// How many standalone GET streams one session may hold open at once. A client needs one;
/// a few more let a reconnecting client open its new stream before the old one is gone.
pub(crate) const MAX_STREAMS_PER_SESSION: usize = 4;

/// What a session remembers of the client's `clientInfo`.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    pub name: String,
}

impl ClientInfo {
    /// Keeps the name, cut to [`MAX_CLIENT_INFO_CHARS`].
    pub(crate) fn from_initialize(client_info: Option<&Value>) -> ClientInfo {
        let name = client_info
            .and_then(|info| info.get("name"))
            .and_then(Value::as_str)
            .map(|text| text.chars().take(MAX_CLIENT_INFO_CHARS).collect())
            .unwrap_or_default();
        ClientInfo { name }
    }
}

/// One client's session, bound to the endpoint that created it.
#[derive(Debug)]
pub(crate) struct Session {
    pub id: String,
    /// The endpoint the session belongs to: a server name, or empty for `/mcp`.
    pub endpoint: String,
    pub protocol_version: String,
    pub client_info: ClientInfo,
    /// The principal that opened the session: only its requests may use it.
    pub owner: Arc<str>,
    last_seen_ms: AtomicU64,
    /// The rank of the least severe log level the client wants (`logging/setLevel`).
    log_level: std::sync::atomic::AtomicU8,
    /// Resource URIs (as the client names them) this session subscribed to; only their
    /// `notifications/resources/updated` reach its GET stream.
    subscriptions: Mutex<std::collections::HashSet<String>>,
    /// One permit per call the session may have in flight (`max_inflight_per_session`).
    call_slots: Arc<Semaphore>,
    max_inflight: usize,
    /// Standalone GET streams open now (at most [`MAX_STREAMS_PER_SESSION`]).
    open_streams: AtomicUsize,
    /// Set when the session ends (DELETE, idle, evicted), so its GET streams end with it.
    closed: tokio::sync::watch::Sender<bool>,
}

/// An open GET stream of a session; dropping it frees the session's stream slot.
pub(crate) struct StreamSlot(Arc<Session>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Session {
    pub(crate) fn log_level(&self) -> u8 {
        self.log_level.load(Ordering::Relaxed)
    }

    pub(crate) fn set_log_level(&self, rank: u8) {
        self.log_level.store(rank, Ordering::Relaxed);
    }

    /// Refuses a new subscription once the session holds [`MAX_SUBSCRIPTIONS_PER_SESSION`];
    /// checked before the request reaches the server.
    pub(crate) fn check_subscription_room(&self, uri: &str) -> Result<(), FrontError> {
        let subscriptions = self.subscriptions.lock();
        if subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_SESSION && !subscriptions.contains(uri) {
            return Err(FrontError::TooManySubscriptions {
                max: MAX_SUBSCRIPTIONS_PER_SESSION,
            });
        }
        Ok(())
    }

    pub(crate) fn subscribe(&self, uri: &str) {
        self.subscriptions.lock().insert(uri.to_owned());
    }

    pub(crate) fn unsubscribe(&self, uri: &str) {
        self.subscriptions.lock().remove(uri);
    }

    pub(crate) fn is_subscribed(&self, uri: &str) -> bool {
        self.subscriptions.lock().contains(uri)
    }

    /// Waits up to `wait` for one of the session's call slots. The permit is held until the
    /// call's answer is complete, so one session's burst waits behind its own cap and never
    /// fills a server's pool queue in front of other sessions.
    pub(crate) async fn call_slot(
        &self,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, FrontError> {
        let busy = || FrontError::SessionBusy {
            limit: self.max_inflight,
            waited_ms: wait.as_millis(),
        };
        match tokio::time::timeout(wait, self.call_slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a full one all the same.
            Ok(Err(_)) | Err(_) => Err(busy()),
        }
    }

    /// Takes one of the session's GET stream slots, or refuses when all are open.
    pub(crate) fn open_stream(self: &Arc<Self>) -> Result<StreamSlot, FrontError> {
        let taken = self
            .open_streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < MAX_STREAMS_PER_SESSION).then_some(open + 1)
            });
        match taken {
            Ok(_) => Ok(StreamSlot(self.clone())),
            Err(_) => Err(FrontError::TooManyStreams {
                max: MAX_STREAMS_PER_SESSION,
            }),
        }
    }

    /// Resolves once the session has ended.
    pub(crate) async fn wait_closed(&self) {
        let mut closed = self.closed.subscribe();
        // An error means the sender is gone, which happens only with the session itself.
        let _ = closed.wait_for(|closed| *closed).await;
    }

    fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Calls this session has in flight.
    pub(crate) fn calls_in_flight(&self) -> usize {
        self.max_inflight
            .saturating_sub(self.call_slots.available_permits())
    }
}

/// All open sessions, at most `max_sessions`. Sessions unused for `idle_timeout` are
/// dropped by [`SessionStore::prune`]; at the cap, [`SessionStore::create`] closes the least
/// recently used session that has no call in flight.
pub(crate) struct SessionStore {
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    idle_timeout: Duration,
    max_sessions: usize,
    max_inflight_per_session: usize,
    epoch: Instant,
    gauge: IntGaugeVec,
    closed: IntCounterVec,
    refused: IntCounterVec,
    /// Requests that presented a session of another principal.
    mismatches: IntCounter,
}

impl SessionStore {
    pub(crate) fn new(http: &HttpConfig, metrics: &HttpMetrics, mismatches: IntCounter) -> Self {
        SessionStore {
            sessions: RwLock::new(HashMap::new()),
            idle_timeout: http.session_idle_timeout,
            max_sessions: http.max_sessions,
            max_inflight_per_session: http.max_inflight_per_session,
            epoch: Instant::now(),
            gauge: metrics.sessions_active.clone(),
            closed: metrics.sessions_closed_total.clone(),
            refused: metrics.limit_refusals_total.clone(),
            mismatches,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Opens a session; at `max_sessions` it first closes the least recently used session
    /// with no call in flight, and refuses when every session is busy.
    pub(crate) fn create(
        &self,
        endpoint: &str,
        protocol_version: &str,
        client_info: ClientInfo,
        owner: &Arc<str>,
    ) -> Result<Arc<Session>, FrontError> {
        // 128 random bits: unguessable, so one client cannot use another's session.
        let id = format!("{:032x}", rand::random::<u128>());
        let session = Arc::new(Session {
            id: id.clone(),
            endpoint: endpoint.to_owned(),
            protocol_version: protocol_version.to_owned(),
            client_info,
            owner: owner.clone(),
            last_seen_ms: AtomicU64::new(self.now_ms()),
            log_level: std::sync::atomic::AtomicU8::new(super::logging::ALL_LEVELS),
            subscriptions: Mutex::default(),
            call_slots: Arc::new(Semaphore::new(self.max_inflight_per_session)),
            max_inflight: self.max_inflight_per_session,
            open_streams: AtomicUsize::new(0),
            closed: tokio::sync::watch::channel(false).0,
        });
        let mut sessions = self.sessions.write();
        if sessions.len() >= self.max_sessions {
            let min_idle_ms = self.eviction_min_idle().as_millis() as u64;
            let Some(victim) = least_recently_used_idle(&sessions, self.now_ms(), min_idle_ms)
            else {
                self.refused.with_label_values(&["max_sessions"]).inc();
                return Err(FrontError::TooManySessions {
                    max: self.max_sessions,
                });
            };
            if let Some(closed) = sessions.remove(&victim) {
                self.count_closed(&closed, "capacity");
                tracing::info!(
                    session = %closed.id,
                    max_sessions = self.max_sessions,
                    "closed the least recently used idle session to make room (http.max_sessions)"
                );
            }
        }
        sessions.insert(id, session.clone());
        self.gauge
            .with_label_values(&[endpoint_label(endpoint)])
            .inc();
        Ok(session)
    }

    /// How long a session must have been unused before a new one may take its place at the
    /// cap: a tenth of `session_idle_timeout`, at most a minute. Without a floor, a client
    /// sending `initialize` in a loop would close every other client's session between two
    /// of its requests.
    fn eviction_min_idle(&self) -> Duration {
        (self.idle_timeout / 10).min(Duration::from_secs(60))
    }

    fn count_closed(&self, session: &Session, reason: &str) {
        session.close();
        self.gauge
            .with_label_values(&[endpoint_label(&session.endpoint)])
            .dec();
        self.closed.with_label_values(&[reason]).inc();
    }

    /// Looks a session up for `endpoint` and `owner` and marks it used. A session of
    /// another endpoint is as unknown as a missing one; a session of another principal is
    /// refused (and counted), never served or touched.
    pub(crate) fn get(
        &self,
        id: &str,
        endpoint: &str,
        owner: &str,
    ) -> Result<Arc<Session>, FrontError> {
        let session = self
            .sessions
            .read()
            .get(id)
            .filter(|session| session.endpoint == endpoint)
            .cloned()
            .ok_or_else(|| FrontError::UnknownSession(id.to_owned()))?;
        self.check_owner(&session, owner)?;
        session.last_seen_ms.store(self.now_ms(), Ordering::Relaxed);
        Ok(session)
    }

    fn check_owner(&self, session: &Session, owner: &str) -> Result<(), FrontError> {
        if &*session.owner == owner {
            return Ok(());
        }
        self.mismatches.inc();
        tracing::warn!(
            session = %session.id,
            "refused a request presenting a session opened by another principal"
        );
        Err(FrontError::SessionOfAnotherPrincipal(session.id.clone()))
    }

    /// Ends a session (DELETE), only for the principal that opened it.
    pub(crate) fn remove(&self, id: &str, endpoint: &str, owner: &str) -> Result<(), FrontError> {
        let mut sessions = self.sessions.write();
        let Some(session) = sessions
            .get(id)
            .filter(|session| session.endpoint == endpoint)
        else {
            return Err(FrontError::UnknownSession(id.to_owned()));
        };
        self.check_owner(session, owner)?;
        if let Some(session) = sessions.remove(id) {
            session.close();
        }
        self.gauge
            .with_label_values(&[endpoint_label(endpoint)])
            .dec();
        Ok(())
    }

    /// Drops sessions idle for longer than the configured timeout. A session with a call
    /// still in flight is in use, however long ago its last request arrived.
    pub(crate) fn prune(&self) {
        let now = self.now_ms();
        let limit = self.idle_timeout.as_millis() as u64;
        let mut sessions = self.sessions.write();
        let before = sessions.len();
        sessions.retain(|_, session| {
            let idle = now.saturating_sub(session.last_seen_ms.load(Ordering::Relaxed)) >= limit;
            let keep = !idle || session.calls_in_flight() > 0;
            if !keep {
                self.count_closed(session, "idle");
            }
            keep
        });
        let dropped = before - sessions.len();
        if dropped > 0 {
            tracing::debug!(dropped, "dropped idle MCP sessions");
        }
    }

    /// Open sessions counted by protocol version and by client name, for `/admin/stats`.
    pub(crate) fn summary(&self) -> Value {
        let sessions = self.sessions.read();
        let mut by_version: HashMap<&str, usize> = HashMap::new();
        let mut by_client: HashMap<&str, usize> = HashMap::new();
        let mut by_principal: HashMap<&str, usize> = HashMap::new();
        for session in sessions.values() {
            *by_principal.entry(&session.owner).or_default() += 1;
            *by_version.entry(&session.protocol_version).or_default() += 1;
            let client = match session.client_info.name.as_str() {
                "" => "(unnamed)",
                name => name,
            };
            *by_client.entry(client).or_default() += 1;
        }
        serde_json::json!({
            "open": sessions.len(),
            "max": self.max_sessions,
            "by_protocol_version": by_version,
            "by_client": by_client,
            "by_principal": by_principal,
        })
    }
}

/// The id of the session used least recently among those with no call in flight and
/// unused for at least `min_idle_ms`.
fn least_recently_used_idle(
    sessions: &HashMap<String, Arc<Session>>,
    now_ms: u64,
    min_idle_ms: u64,
) -> Option<String> {
    sessions
        .values()
        .filter(|session| session.calls_in_flight() == 0)
        .filter(|session| {
            now_ms.saturating_sub(session.last_seen_ms.load(Ordering::Relaxed)) >= min_idle_ms
        })
        .min_by_key(|session| session.last_seen_ms.load(Ordering::Relaxed))
        .map(|session| session.id.clone())
}

fn endpoint_label(endpoint: &str) -> &str {
    if endpoint.is_empty() {
        "/mcp"
    } else {
        endpoint
    }
}

/// A server-to-client request waiting for the client's answer, and who may give it.
struct Relay {
    /// The way back to the process that asked.
    answer: Arc<dyn AnswerSink>,
    server_id: Value,
    /// The session the request was sent to; only it may answer.
    session: String,
    /// The endpoint the request was sent on (a server name, or empty for `/mcp`).
    endpoint: String,
}

/// Why a client's answer to a server request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayRefusal {
    /// No request with that id is waiting (never sent, already answered, or its call ended).
    UnknownId,
    /// The request was sent to another session or on another endpoint.
    WrongSession,
}

impl RelayRefusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            RelayRefusal::UnknownId => "unknown_id",
            RelayRefusal::WrongSession => "wrong_session",
        }
    }
}

/// Server requests relayed to clients, under ids the bridge makes unique (two servers
/// may both use id 1) and unguessable, so the client's answer finds its way back and no
/// other client can answer in its place.
#[derive(Default)]
pub(crate) struct Relays {
    waiting: Mutex<HashMap<String, Relay>>,
}

impl Relays {
    /// Rewrites the request's id to a fresh bridge id and remembers where the answer goes
    /// and which session (on which endpoint) may give it.
    pub(crate) fn register(
        &self,
        answer: Arc<dyn AnswerSink>,
        request: &mut Value,
        session: &Session,
    ) -> String {
        // 128 random bits: a client that sees its own relay ids learns nothing about others'.
        let relay_id = format!("mcp-bridge-{:032x}", rand::random::<u128>());
        let server_id = request
            .as_object_mut()
            .and_then(|object| object.insert("id".into(), Value::String(relay_id.clone())))
            .unwrap_or(Value::Null);
        let relay = Relay {
            answer,
            server_id,
            session: session.id.clone(),
            endpoint: session.endpoint.clone(),
        };
        self.waiting.lock().insert(relay_id.clone(), relay);
        relay_id
    }

    /// Sends a session's answer back to the server that asked, with the server's own id.
    /// An answer for an id the bridge is not waiting for, or from a session the request
    /// was not sent to, is refused and leaves the waiting request untouched.
    pub(crate) async fn answer(
        &self,
        session: &Session,
        mut response: Value,
    ) -> Result<(), RelayRefusal> {
        let relay_id = response
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let relay = {
            let mut waiting = self.waiting.lock();
            let Some(relay) = waiting.get(relay_id) else {
                return Err(RelayRefusal::UnknownId);
            };
            if relay.session != session.id || relay.endpoint != session.endpoint {
                return Err(RelayRefusal::WrongSession);
            }
            waiting.remove(relay_id).ok_or(RelayRefusal::UnknownId)?
        };
        if let Some(object) = response.as_object_mut() {
            object.insert("id".into(), relay.server_id);
        }
        if let Err(error) = relay.answer.send(&response).await {
            tracing::debug!(%error, "could not deliver a client's answer to the server");
        }
        Ok(())
    }

    /// Forgets relays whose call has ended without an answer.
    pub(crate) fn forget(&self, relay_ids: &[String]) {
        let mut waiting = self.waiting.lock();
        for id in relay_ids {
            waiting.remove(id);
        }
    }
}

/// Calls a session-based client may cancel with `notifications/cancelled`, keyed by
/// session and the client's request id. (2026-07-28 clients cancel by hanging up.)
#[derive(Default)]
pub(crate) struct Cancellations {
    waiting: Mutex<HashMap<String, tokio::sync::oneshot::Sender<()>>>,
}

/// A registered call; `signal` resolves when the client cancels it. Dropping the
/// guard unregisters the call.
pub(crate) struct CancelGuard {
    registry: Arc<Cancellations>,
    key: String,
    pub signal: tokio::sync::oneshot::Receiver<()>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry.waiting.lock().remove(&self.key);
    }
}

impl Cancellations {
    fn key(session: &str, request_id: &Value) -> String {
        format!("{session} {request_id}")
    }

    pub(crate) fn register(self: &Arc<Self>, session: &str, request_id: &Value) -> CancelGuard {
        let key = Self::key(session, request_id);
        let (sender, signal) = tokio::sync::oneshot::channel();
        self.waiting.lock().insert(key.clone(), sender);
        CancelGuard {
            registry: self.clone(),
            key,
            signal,
        }
    }

    /// Cancels a registered call; false when no such call is in flight.
    pub(crate) fn cancel(&self, session: &str, request_id: &Value) -> bool {
        let sender = self.waiting.lock().remove(&Self::key(session, request_id));
        sender.is_some_and(|sender| sender.send(()).is_ok())
    }
}
