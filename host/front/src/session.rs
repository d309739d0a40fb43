//! MCP sessions on the front (protocol versions up to 2025-11-25), and the relay table
//! that carries a server's requests to a client and the client's answers back.
//!
//! A session's `Mcp-Session-Id` is a signed token ([`super::session_token`]) that carries what
//! the session is, so a replica that does not hold a session continues it from its token
//! (after checking the token, the revocations it knows and the shared tier). What a replica
//! holds locally (call slots, subscriptions, GET streams, the log level) is state about the
//! session, not the session itself: dropping it (idle, capacity) frees memory, and the next
//! request on the same token makes it again.

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
use super::session_directory::{RevokedSessions, SessionDirectory, SessionEvent};
use super::session_token::{
    KeyId, MAX_TOKEN_BYTES, SessionClaims, TokenKeys, TokenRefusal, bound_capabilities,
    owner_digest, unix_now,
};
use mcp_bridge_config::{HttpConfig, SessionsConfig};

/// How many characters of a client's `clientInfo.name` (and `version`) a session keeps. A
/// session stores only those fields (for `/admin/stats`), so what a client sends at
/// `initialize` cannot grow what the bridge holds per session.
pub(crate) const MAX_CLIENT_INFO_CHARS: usize = 128;

/// How many resources one session may subscribe to at once.
pub(crate) const MAX_SUBSCRIPTIONS_PER_SESSION: usize = 1024;

/// How many standalone GET streams one session may hold open at once. A client needs one;
/// a few more let a reconnecting client open its new stream before the old one is gone.
pub(crate) const MAX_STREAMS_PER_SESSION: usize = 4;

/// How much of an oversized `Mcp-Session-Id` an error message repeats: enough to recognise
/// it. An id up to [`MAX_TOKEN_BYTES`] is repeated whole, as the client sent it.
const ECHOED_SESSION_CHARS: usize = 48;

/// What a session remembers of the client's `clientInfo`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientInfo {
    pub name: String,
    pub version: String,
}

impl ClientInfo {
    /// Keeps the name and version, each cut to [`MAX_CLIENT_INFO_CHARS`].
    pub(crate) fn from_initialize(client_info: Option<&Value>) -> ClientInfo {
        let field = |name: &str| {
            client_info
                .and_then(|info| info.get(name))
                .and_then(Value::as_str)
                .map(|text| text.chars().take(MAX_CLIENT_INFO_CHARS).collect())
                .unwrap_or_default()
        };
        ClientInfo {
            name: field("name"),
            version: field("version"),
        }
    }
}

/// One client's session, bound to the endpoint that created it.
#[derive(Debug)]
pub(crate) struct Session {
    /// The session's identity (128 random bits in hex): what logs, revocations, relays and
    /// cancellations name. The client presents [`Session::token`], which carries it.
    pub id: String,
    /// The signed token the client presents as `Mcp-Session-Id`.
    pub token: String,
    /// The endpoint the session belongs to: a server name, or empty for `/mcp`.
    pub endpoint: String,
    pub protocol_version: String,
    pub client_info: ClientInfo,
    /// The principal that opened the session: only its requests may use it.
    pub owner: Arc<str>,
    /// When the token was issued and when it expires, in unix seconds.
    issued_at: u64,
    pub expires_at: u64,
    /// The key that signed (or verified) the token: a reload without it ends the session.
    key: KeyId,
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

/// The error for a session id this replica cannot serve: the id as sent, or only its start
/// when it is longer than any token.
fn unknown_session(presented: &str) -> FrontError {
    if presented.len() <= MAX_TOKEN_BYTES {
        return FrontError::UnknownSession(presented.to_owned());
    }
    let mut shown: String = presented.chars().take(ECHOED_SESSION_CHARS).collect();
    shown.push('…');
    FrontError::UnknownSession(shown)
}

/// The sessions this replica holds, at most `max_sessions`, keyed by their tokens. Sessions
/// unused for `idle_timeout` are dropped by [`SessionStore::prune`]; at the cap,
/// [`SessionStore::create`] (and a resumed session) closes the least recently used session
/// that has no call in flight.
pub(crate) struct SessionStore {
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    idle_timeout: Duration,
    max_sessions: usize,
    max_sessions_per_principal: usize,
    max_inflight_per_session: usize,
    epoch: Instant,
    /// The keys tokens are signed and verified with, swapped whole on a reload.
    keys: RwLock<Arc<TokenKeys>>,
    /// Sessions that ended here or were announced ended, until their tokens expire.
    revoked: Mutex<RevokedSessions>,
    /// Where sessions are known beyond this replica.
    directory: Arc<dyn SessionDirectory>,
    gauge: IntGaugeVec,
    closed: IntCounterVec,
    refused: IntCounterVec,
    resumed: IntCounter,
    tokens_refused: IntCounterVec,
    /// Requests that presented a session of another principal.
    mismatches: IntCounter,
}

impl SessionStore {
    pub(crate) fn new(
        http: &HttpConfig,
        sessions: &SessionsConfig,
        directory: Arc<dyn SessionDirectory>,
        metrics: &HttpMetrics,
        mismatches: IntCounter,
    ) -> Self {
        let keys = TokenKeys::from_config(sessions);
        if keys.random {
            tracing::info!(
                "no [sessions] keys: session tokens are signed with a random key made at start, so sessions end with a restart and stay on this replica"
            );
        }
        SessionStore {
            sessions: RwLock::new(HashMap::new()),
            idle_timeout: http.session_idle_timeout,
            max_sessions: http.max_sessions,
            max_sessions_per_principal: http.max_sessions_per_principal,
            max_inflight_per_session: http.max_inflight_per_session,
            epoch: Instant::now(),
            keys: RwLock::new(Arc::new(keys)),
            revoked: Mutex::default(),
            directory,
            gauge: metrics.sessions_active.clone(),
            closed: metrics.sessions_closed_total.clone(),
            refused: metrics.limit_refusals_total.clone(),
            resumed: metrics.sessions_resumed_total.clone(),
            tokens_refused: metrics.session_tokens_refused_total.clone(),
            mismatches,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn keys(&self) -> Arc<TokenKeys> {
        self.keys.read().clone()
    }

    /// Installs the keys and `max_age` of a reloaded config. Sessions held here whose token
    /// was signed by a key no longer listed end now, as their tokens would everywhere else.
    pub(crate) fn reload(&self, config: &SessionsConfig) {
        let keys = Arc::new(self.keys().reloaded(config));
        *self.keys.write() = keys.clone();
        let mut sessions = self.sessions.write();
        sessions.retain(|_, session| {
            let keep = keys.knows(session.key);
            if !keep {
                self.count_closed(session, "key_removed");
            }
            keep
        });
    }

    /// Opens a session and signs its token; at `max_sessions` it first closes the least
    /// recently used session with no call in flight, and refuses when every session is busy.
    pub(crate) fn create(
        &self,
        endpoint: &str,
        protocol_version: &str,
        client_info: ClientInfo,
        capabilities: Option<&Value>,
        owner: &Arc<str>,
        individual: bool,
    ) -> Result<Arc<Session>, FrontError> {
        let keys = self.keys();
        let now = unix_now();
        let mut claims = SessionClaims {
            // 128 random bits: unguessable, and the token's MAC makes it unforgeable too.
            session: format!("{:032x}", rand::random::<u128>()),
            endpoint: endpoint.to_owned(),
            protocol_version: protocol_version.to_owned(),
            client_name: client_info.name,
            client_version: client_info.version,
            capabilities: bound_capabilities(capabilities),
            owner: owner_digest(owner),
            iat: now,
            exp: now.saturating_add(keys.max_age.as_secs()),
        };
        let signed = match keys.sign(&claims) {
            Some(signed) => signed,
            // Only a very long server name can make it too long; what the client sent goes.
            None => {
                claims.client_name.clear();
                claims.client_version.clear();
                claims.capabilities = Value::Object(serde_json::Map::new());
                keys.sign(&claims).ok_or(FrontError::SessionTokenTooLong {
                    max: MAX_TOKEN_BYTES,
                })?
            }
        };
        let session = self.materialise(claims, signed, owner.clone());
        self.insert(session, individual)
    }

    /// A local session for verified `claims`.
    fn materialise(
        &self,
        claims: SessionClaims,
        (token, key): (String, KeyId),
        owner: Arc<str>,
    ) -> Arc<Session> {
        Arc::new(Session {
            id: claims.session,
            token,
            endpoint: claims.endpoint,
            protocol_version: claims.protocol_version,
            client_info: ClientInfo {
                name: claims.client_name,
                version: claims.client_version,
            },
            owner,
            issued_at: claims.iat,
            expires_at: claims.exp,
            key,
            last_seen_ms: AtomicU64::new(self.now_ms()),
            log_level: std::sync::atomic::AtomicU8::new(super::logging::ALL_LEVELS),
            subscriptions: Mutex::default(),
            call_slots: Arc::new(Semaphore::new(self.max_inflight_per_session)),
            max_inflight: self.max_inflight_per_session,
            open_streams: AtomicUsize::new(0),
            closed: tokio::sync::watch::channel(false).0,
        })
    }

    /// Holds `session` here, making room at `max_sessions`. A session that another request
    /// on the same token put here meanwhile is the one returned.
    fn insert(&self, session: Arc<Session>, individual: bool) -> Result<Arc<Session>, FrontError> {
        let mut sessions = self.sessions.write();
        if let Some(held) = sessions.get(&session.token) {
            return Ok(held.clone());
        }
        // One principal never holds more than its share: past it, its own least recently
        // used idle session makes room (the scan runs only once the store is that full).
        // Callers sharing a credential (anonymous, the shared token) are a crowd, not one
        // client: only `max_sessions` bounds them.
        let per_principal = self.max_sessions_per_principal;
        if individual
            && sessions.len() >= per_principal
            && sessions
                .values()
                .filter(|held| held.owner == session.owner)
                .count()
                >= per_principal
        {
            let min_idle_ms = self.eviction_min_idle().as_millis() as u64;
            let victim = least_recently_used_idle(
                &sessions,
                Some(&session.owner),
                self.now_ms(),
                min_idle_ms,
            );
            let Some(victim) = victim else {
                self.refused
                    .with_label_values(&["max_sessions_per_principal"])
                    .inc();
                return Err(FrontError::TooManySessionsForPrincipal { max: per_principal });
            };
            if let Some(closed) = sessions.remove(&victim) {
                self.count_closed(&closed, "capacity");
            }
        }
        if sessions.len() >= self.max_sessions {
            let min_idle_ms = self.eviction_min_idle().as_millis() as u64;
            let Some(victim) =
                least_recently_used_idle(&sessions, None, self.now_ms(), min_idle_ms)
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
        sessions.insert(session.token.clone(), session.clone());
        self.gauge
            .with_label_values(&[endpoint_label(&session.endpoint)])
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

    fn refuse(&self, presented: &str, refusal: TokenRefusal) -> FrontError {
        self.tokens_refused
            .with_label_values(&[refusal.label()])
            .inc();
        unknown_session(presented)
    }

    /// Looks a session up for `endpoint` and `owner` and marks it used. A session this
    /// replica does not hold is continued from its token when the token verifies, has not
    /// expired and was not revoked (here or in the shared tier). A session of another
    /// endpoint is as unknown as a missing one; a session of another principal is refused
    /// (and counted), never served or touched.
    #[cfg(test)]
    pub(crate) async fn get(
        &self,
        token: &str,
        endpoint: &str,
        owner: &str,
    ) -> Result<Arc<Session>, FrontError> {
        self.get_for(token, endpoint, owner, true).await
    }

    /// [`SessionStore::get`] for an owner that is one person or machine (`individual`: held
    /// to `max_sessions_per_principal` when its session is continued here) or not.
    pub(crate) async fn get_for(
        &self,
        token: &str,
        endpoint: &str,
        owner: &str,
        individual: bool,
    ) -> Result<Arc<Session>, FrontError> {
        let held = self.sessions.read().get(token).cloned();
        let session = match held {
            Some(session) => self.check_held(token, session, endpoint)?,
            None => self.resume(token, endpoint, owner, individual).await?,
        };
        self.check_owner(&session, owner)?;
        session.last_seen_ms.store(self.now_ms(), Ordering::Relaxed);
        Ok(session)
    }

    /// A session held here, if it is for `endpoint` and its token has not expired (an
    /// expired one is closed).
    fn check_held(
        &self,
        token: &str,
        session: Arc<Session>,
        endpoint: &str,
    ) -> Result<Arc<Session>, FrontError> {
        if session.endpoint != endpoint {
            return Err(self.refuse(token, TokenRefusal::Endpoint));
        }
        if self
            .keys()
            .expired_at(session.issued_at, session.expires_at, unix_now())
        {
            if let Some(expired) = self.sessions.write().remove(token) {
                self.count_closed(&expired, "expired");
            }
            return Err(self.refuse(token, TokenRefusal::Expired));
        }
        Ok(session)
    }

    /// Verifies a token this replica does not hold, for `endpoint` and `owner`: what it
    /// says, without trusting anything else the client sent.
    fn verify(
        &self,
        token: &str,
        endpoint: &str,
        owner: &str,
    ) -> Result<(SessionClaims, KeyId), FrontError> {
        let (claims, key) = self
            .keys()
            .verify(token, unix_now())
            .map_err(|refusal| self.refuse(token, refusal))?;
        if claims.endpoint != endpoint {
            return Err(self.refuse(token, TokenRefusal::Endpoint));
        }
        if claims.owner != owner_digest(owner) {
            self.mismatches.inc();
            tracing::warn!(
                session = %claims.session,
                "refused a request presenting a session opened by another principal"
            );
            return Err(FrontError::SessionOfAnotherPrincipal(claims.session));
        }
        if self.revoked.lock().contains(&claims.session, unix_now()) {
            return Err(self.refuse(token, TokenRefusal::Revoked));
        }
        Ok((claims, key))
    }

    /// Continues a session from its token: verified, then asked about in the shared tier,
    /// then held here like a new one (counted against `max_sessions`).
    async fn resume(
        &self,
        token: &str,
        endpoint: &str,
        owner: &str,
        individual: bool,
    ) -> Result<Arc<Session>, FrontError> {
        let (claims, key) = self.verify(token, endpoint, owner)?;
        let shared = self.directory.lookup(&claims.session).await;
        if shared.revoked {
            self.revoked.lock().insert(&claims.session, claims.exp);
            return Err(self.refuse(token, TokenRefusal::Revoked));
        }
        let session = self.materialise(claims, (token.to_owned(), key), Arc::from(owner));
        if let Some(rank) = shared.log_level {
            session.set_log_level(rank);
        }
        let session = self.insert(session, individual)?;
        // A DELETE of the same session may have run while the shared tier was asked.
        if self.revoked.lock().contains(&session.id, unix_now()) {
            if let Some(revoked) = self.sessions.write().remove(token) {
                self.count_closed(&revoked, "revoked");
            }
            return Err(self.refuse(token, TokenRefusal::Revoked));
        }
        self.resumed.inc();
        tracing::debug!(session = %session.id, "continued a session from its token");
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

    /// Ends a session (DELETE), only for the principal that opened it: closed here,
    /// remembered here as revoked until its token expires, and revoked in the shared tier.
    /// A session this replica does not hold is ended from its token.
    pub(crate) async fn remove(
        &self,
        token: &str,
        endpoint: &str,
        owner: &str,
    ) -> Result<String, FrontError> {
        let held = self.sessions.read().get(token).cloned();
        let (session, expires_at) = match held {
            Some(session) => {
                let session = self.check_held(token, session, endpoint)?;
                self.check_owner(&session, owner)?;
                if let Some(removed) = self.sessions.write().remove(token) {
                    removed.close();
                    self.gauge
                        .with_label_values(&[endpoint_label(endpoint)])
                        .dec();
                }
                (session.id.clone(), session.expires_at)
            }
            None => {
                let (claims, _) = self.verify(token, endpoint, owner)?;
                (claims.session, claims.exp)
            }
        };
        self.revoked.lock().insert(&session, expires_at);
        self.directory.revoke(&session, expires_at).await;
        tracing::debug!(%session, "ended a session (DELETE)");
        Ok(session)
    }

    /// Records a session's new log level in the shared tier, so other replicas apply it.
    pub(crate) async fn share_log_level(&self, session: &Session, rank: u8) {
        self.directory
            .set_log_level(&session.id, rank, session.expires_at)
            .await;
    }

    /// Applies a change another replica made: a revoked session is closed here (its GET
    /// streams end) and refused from then on; a log level is set on the session held here.
    pub(crate) fn apply(&self, event: SessionEvent) {
        match event {
            SessionEvent::Revoked { session } => {
                let mut expires_at = unix_now().saturating_add(self.keys().max_age.as_secs());
                let mut sessions = self.sessions.write();
                sessions.retain(|_, held| {
                    let keep = held.id != session;
                    if !keep {
                        expires_at = held.expires_at;
                        self.count_closed(held, "revoked");
                    }
                    keep
                });
                drop(sessions);
                self.revoked.lock().insert(&session, expires_at);
            }
            SessionEvent::LogLevel { session, rank } => {
                let sessions = self.sessions.read();
                for held in sessions.values().filter(|held| held.id == session) {
                    held.set_log_level(rank);
                }
            }
        }
    }

    /// Drops sessions idle for longer than the configured timeout and those whose token
    /// expired, and forgets revocations that expired. A session with a call still in flight
    /// is in use, however long ago its last request arrived.
    pub(crate) fn prune(&self) {
        let now = self.now_ms();
        let unix = unix_now();
        let keys = self.keys();
        let limit = self.idle_timeout.as_millis() as u64;
        let mut sessions = self.sessions.write();
        let before = sessions.len();
        sessions.retain(|_, session| {
            let busy = session.calls_in_flight() > 0;
            if !busy && keys.expired_at(session.issued_at, session.expires_at, unix) {
                self.count_closed(session, "expired");
                return false;
            }
            let idle = now.saturating_sub(session.last_seen_ms.load(Ordering::Relaxed)) >= limit;
            let keep = !idle || busy;
            if !keep {
                self.count_closed(session, "idle");
            }
            keep
        });
        let dropped = before - sessions.len();
        drop(sessions);
        self.revoked.lock().forget_expired(unix);
        if dropped > 0 {
            tracing::debug!(dropped, "dropped idle and expired MCP sessions");
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
            "revoked_remembered": self.revoked.lock().len(),
        })
    }
}

/// The token of the session used least recently among those with no call in flight and
/// unused for at least `min_idle_ms`.
fn least_recently_used_idle(
    sessions: &HashMap<String, Arc<Session>>,
    owner: Option<&Arc<str>>,
    now_ms: u64,
    min_idle_ms: u64,
) -> Option<String> {
    sessions
        .values()
        .filter(|session| owner.is_none_or(|owner| session.owner == *owner))
        .filter(|session| session.calls_in_flight() == 0)
        .filter(|session| {
            now_ms.saturating_sub(session.last_seen_ms.load(Ordering::Relaxed)) >= min_idle_ms
        })
        .min_by_key(|session| session.last_seen_ms.load(Ordering::Relaxed))
        .map(|session| session.token.clone())
}

fn endpoint_label(endpoint: &str) -> &str {
    if endpoint.is_empty() {
        "/mcp"
    } else {
        endpoint
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
