//! The HTTP front: accepts connections, routes requests, and shuts down gracefully.
//!
//! It knows MCP's Streamable HTTP transport and nothing about processes: every call
//! goes through the [`Router`].

mod admin;
mod aggregate;
mod audit;
mod cache_header;
mod conn;
mod error;
mod identity;
mod input_rounds;
mod logging;
mod mcp;
mod metrics;
mod relays;
mod routes;
mod session;
mod session_directory;
mod session_token;
mod spans;
mod sse;
mod stateless;
mod status_page;
mod stream;
mod versions;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use admin::{AdminAnswer, AdminReply, AdminRequest, AdminRoutes};
pub use error::FrontError;
pub use mcp::{SESSION_PROTOCOL_VERSIONS, STATELESS_PROTOCOL_VERSION};
pub use metrics::HttpMetrics;
pub use routes::check_exposure;
pub use session_directory::{NoDirectory, SessionDirectory, SessionEvent, SharedSession};

use mcp_bridge_auth::IdentityHandle;
use mcp_bridge_config::{AuditConfig, HttpConfig, SessionsConfig};
use mcp_bridge_metrics::Registry;
use mcp_bridge_upstream::Upstream;
use relays::{Cancellations, Relays};
use session::SessionStore;

/// The body type of every response.
pub type Body = BoxBody<Bytes, Infallible>;

/// How often idle sessions are pruned.
const SESSION_PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// Everything request handlers share.
pub struct AppState {
    pub upstream: Arc<dyn Upstream>,
    pub http: HttpConfig,
    pub metrics: Arc<HttpMetrics>,
    /// The registry every layer registered its metrics in: what `/metrics` renders.
    registry: Registry,
    /// What the admin routes do: the application's, composed where it is wired.
    admin: Arc<dyn AdminRoutes>,
    /// Who may call and what they may do; replaced whole when the config reloads.
    identity: Arc<IdentityHandle>,
    audit: Option<audit::AuditLog>,
    principal_calls: Arc<identity::PrincipalCalls>,
    sessions: SessionStore,
    relays: Relays,
    /// 2026-07-28 calls parked while their client answers a backend's request.
    input_rounds: input_rounds::InputRounds,
    cancellations: Arc<Cancellations>,
    /// Flips to true when shutdown begins, ending long-lived GET streams.
    shutting_down: watch::Sender<bool>,
    started_at: Instant,
}

impl AppState {
    /// The front's state; registers the front's metrics in `registry`, which `/metrics`
    /// renders with every other layer's, and starts the audit log's writer (an audit file
    /// that cannot be opened is the error). Session tokens are signed with `sessions`'
    /// keys; `directory` is where sessions are known beyond this replica ([`NoDirectory`]
    /// for one replica).
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per part the front serves with"
    )]
    pub fn new(
        upstream: Arc<dyn Upstream>,
        http: HttpConfig,
        admin: Arc<dyn AdminRoutes>,
        registry: &Registry,
        identity: Arc<IdentityHandle>,
        audit: &AuditConfig,
        sessions: &SessionsConfig,
        directory: Arc<dyn SessionDirectory>,
    ) -> std::io::Result<Arc<AppState>> {
        let metrics = Arc::new(HttpMetrics::register(registry));
        let audit = audit::AuditLog::start(audit, registry)?;
        let mismatches = identity.metrics().session_principal_mismatch_total.clone();
        Ok(Arc::new(AppState {
            sessions: SessionStore::new(&http, sessions, directory, &metrics, mismatches),
            identity,
            audit,
            principal_calls: Arc::default(),
            relays: Relays::default(),
            input_rounds: input_rounds::InputRounds::new(
                metrics.input_rounds_total.with_label_values(&["expired"]),
            ),
            cancellations: Arc::default(),
            shutting_down: watch::channel(false).0,
            started_at: Instant::now(),
            upstream,
            http,
            metrics,
            registry: registry.clone(),
            admin,
        }))
    }

    /// Applies a change another replica made to a session, as the shared tier's broadcast
    /// delivers it: a revoked session is closed here (its GET streams end) and its token
    /// refused from then on; a log level is applied to the session if this replica holds it.
    pub fn session_event(&self, event: SessionEvent) {
        // A session another replica ended also ends what it pinned here.
        if let SessionEvent::Revoked { session } = &event {
            self.upstream.end_session(session);
        }
        self.sessions.apply(event);
    }

    /// Installs the `[sessions]` settings of a reloaded config: the new keys sign and
    /// verify from the next request on, and sessions held here whose key is no longer
    /// listed end. Without keys, the random key made at start stays.
    pub fn reload_sessions(&self, sessions: &SessionsConfig) {
        self.sessions.reload(sessions);
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutting_down.borrow()
    }
}

/// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish for up to `http.shutdown_grace`, and stops the backends.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let pruner = tokio::spawn(prune_sessions(state.clone()));
    let connections = conn::Connections::new(&state);
    connections.accept_until(&listener, &state, shutdown).await;
    drop(listener);
    tracing::info!(grace = ?state.http.shutdown_grace, "shutting down: draining in-flight requests");
    // Every connection task watches this flag and shuts its connection down gracefully.
    state.shutting_down.send_replace(true);
    if tokio::time::timeout(state.http.shutdown_grace, connections.drained())
        .await
        .is_err()
    {
        tracing::warn!("shutdown_grace elapsed with requests still in flight; closing them");
    }
    pruner.abort();
    state.upstream.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn prune_sessions(state: Arc<AppState>) {
    let mut ticker = tokio::time::interval(SESSION_PRUNE_INTERVAL);
    loop {
        ticker.tick().await;
        state.sessions.prune();
        state.input_rounds.prune();
    }
}
