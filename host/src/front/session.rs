//! MCP sessions on the front (protocol versions up to 2025-11-25), and the relay table
//! that carries a server's requests to a client and the client's answers back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prometheus::IntGaugeVec;
use serde_json::Value;

use crate::backend::Process;

/// One client's session, bound to the endpoint that created it.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    /// The endpoint the session belongs to: a server name, or empty for `/mcp`.
    pub endpoint: String,
    pub protocol_version: String,
    pub client_info: Value,
    last_seen_ms: AtomicU64,
    /// The rank of the least severe log level the client wants (`logging/setLevel`).
    log_level: std::sync::atomic::AtomicU8,
    /// Resource URIs (as the client names them) this session subscribed to; only their
    /// `notifications/resources/updated` reach its GET stream.
    subscriptions: Mutex<std::collections::HashSet<String>>,
}

impl Session {
    pub fn log_level(&self) -> u8 {
        self.log_level.load(Ordering::Relaxed)
    }

    pub fn set_log_level(&self, rank: u8) {
        self.log_level.store(rank, Ordering::Relaxed);
    }

    pub fn subscribe(&self, uri: &str) {
        self.subscriptions.lock().insert(uri.to_owned());
    }

    pub fn unsubscribe(&self, uri: &str) {
        self.subscriptions.lock().remove(uri);
    }

    pub fn is_subscribed(&self, uri: &str) -> bool {
        self.subscriptions.lock().contains(uri)
    }
}

/// All open sessions. Sessions unused for `idle_timeout` are dropped by [`SessionStore::prune`].
pub struct SessionStore {
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    idle_timeout: Duration,
    epoch: Instant,
    gauge: IntGaugeVec,
}

impl SessionStore {
    pub fn new(idle_timeout: Duration, gauge: IntGaugeVec) -> Self {
        SessionStore {
            sessions: RwLock::new(HashMap::new()),
            idle_timeout,
            epoch: Instant::now(),
            gauge,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn create(
        &self,
        endpoint: &str,
        protocol_version: &str,
        client_info: Value,
    ) -> Arc<Session> {
        // 128 random bits: unguessable, so one client cannot use another's session.
        let id = format!("{:032x}", rand::random::<u128>());
        let session = Arc::new(Session {
            id: id.clone(),
            endpoint: endpoint.to_owned(),
            protocol_version: protocol_version.to_owned(),
            client_info,
            last_seen_ms: AtomicU64::new(self.now_ms()),
            log_level: std::sync::atomic::AtomicU8::new(super::logging::ALL_LEVELS),
            subscriptions: Mutex::default(),
        });
        self.sessions.write().insert(id, session.clone());
        self.gauge
            .with_label_values(&[endpoint_label(endpoint)])
            .inc();
        session
    }

    /// Looks a session up for `endpoint` and marks it used. A session of another
    /// endpoint is as unknown as a missing one.
    pub fn get(&self, id: &str, endpoint: &str) -> Option<Arc<Session>> {
        let session = self.sessions.read().get(id).cloned()?;
        if session.endpoint != endpoint {
            return None;
        }
        session.last_seen_ms.store(self.now_ms(), Ordering::Relaxed);
        Some(session)
    }

    pub fn remove(&self, id: &str, endpoint: &str) -> bool {
        let mut sessions = self.sessions.write();
        if sessions
            .get(id)
            .is_none_or(|session| session.endpoint != endpoint)
        {
            return false;
        }
        sessions.remove(id);
        self.gauge
            .with_label_values(&[endpoint_label(endpoint)])
            .dec();
        true
    }

    /// Drops sessions idle for longer than the configured timeout.
    pub fn prune(&self) {
        let now = self.now_ms();
        let limit = self.idle_timeout.as_millis() as u64;
        let mut sessions = self.sessions.write();
        let before = sessions.len();
        sessions.retain(|_, session| {
            let keep = now.saturating_sub(session.last_seen_ms.load(Ordering::Relaxed)) < limit;
            if !keep {
                self.gauge
                    .with_label_values(&[endpoint_label(&session.endpoint)])
                    .dec();
            }
            keep
        });
        let dropped = before - sessions.len();
        if dropped > 0 {
            tracing::debug!(dropped, "dropped idle MCP sessions");
        }
    }

    /// Open sessions counted by protocol version and by client name, for `/admin/stats`.
    pub fn summary(&self) -> Value {
        let sessions = self.sessions.read();
        let mut by_version: HashMap<&str, usize> = HashMap::new();
        let mut by_client: HashMap<&str, usize> = HashMap::new();
        for session in sessions.values() {
            *by_version.entry(&session.protocol_version).or_default() += 1;
            let client = session
                .client_info
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)");
            *by_client.entry(client).or_default() += 1;
        }
        serde_json::json!({ "open": sessions.len(), "by_protocol_version": by_version, "by_client": by_client })
    }
}

fn endpoint_label(endpoint: &str) -> &str {
    if endpoint.is_empty() {
        "/mcp"
    } else {
        endpoint
    }
}

/// A server-to-client request waiting for the client's answer.
struct Relay {
    process: Arc<Process>,
    server_id: Value,
}

/// Server requests relayed to clients, under ids the bridge makes unique (two servers
/// may both use id 1), so the client's answer finds its way back.
#[derive(Default)]
pub struct Relays {
    next: AtomicU64,
    waiting: Mutex<HashMap<String, Relay>>,
}

impl Relays {
    /// Rewrites the request's id to a bridge id and remembers where the answer goes.
    pub fn register(&self, process: Arc<Process>, request: &mut Value) -> String {
        let relay_id = format!("mcp-bridge-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let server_id = request
            .as_object_mut()
            .and_then(|object| object.insert("id".into(), Value::String(relay_id.clone())))
            .unwrap_or(Value::Null);
        self.waiting
            .lock()
            .insert(relay_id.clone(), Relay { process, server_id });
        relay_id
    }

    /// Sends a client's answer back to the server that asked, with the server's own id.
    /// Returns false when the id is not one the bridge is waiting for.
    pub async fn answer(&self, mut response: Value) -> bool {
        let relay_id = response
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(relay) = relay_id.and_then(|id| self.waiting.lock().remove(&id)) else {
            return false;
        };
        if let Some(object) = response.as_object_mut() {
            object.insert("id".into(), relay.server_id);
        }
        if let Err(error) = relay.process.send_client_response(&response).await {
            tracing::debug!(%error, "could not deliver a client's answer to the server");
        }
        true
    }

    /// Forgets relays whose call has ended without an answer.
    pub fn forget(&self, relay_ids: &[String]) {
        let mut waiting = self.waiting.lock();
        for id in relay_ids {
            waiting.remove(id);
        }
    }
}

/// Calls a session-based client may cancel with `notifications/cancelled`, keyed by
/// session and the client's request id. (2026-07-28 clients cancel by hanging up.)
#[derive(Default)]
pub struct Cancellations {
    waiting: Mutex<HashMap<String, tokio::sync::oneshot::Sender<()>>>,
}

/// A registered call; `signal` resolves when the client cancels it. Dropping the
/// guard unregisters the call.
pub struct CancelGuard {
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

    pub fn register(self: &Arc<Self>, session: &str, request_id: &Value) -> CancelGuard {
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
    pub fn cancel(&self, session: &str, request_id: &Value) -> bool {
        let sender = self.waiting.lock().remove(&Self::key(session, request_id));
        sender.is_some_and(|sender| sender.send(()).is_ok())
    }
}
