//! The relay table that carries a server's requests to a client and the client's answers
//! back, and the calls a session-based client may cancel.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::session::Session;
use mcp_bridge_upstream::AnswerSink;

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
