//! What the front may know about one configured server, and about all of them: a name,
//! what the server said about itself, a bounded wait for its first handshake, its
//! notifications, and its health. The pool behind it stays the router's own, so the
//! front never reaches a process.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;

use mcp_bridge_upstream::{Health, HealthSummary, Introduction, ServerDescription};

use mcp_bridge_backend::{BackendError, Catalog, HealthStatus, Pool};

/// One configured server, as the front addresses it. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    pool: Arc<Pool>,
}

impl Server {
    pub(super) fn new(pool: Arc<Pool>) -> Server {
        Server { pool }
    }

    /// The pool behind the handle, for the router's own use.
    pub(super) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    pub fn name(&self) -> &Arc<str> {
        self.pool.name()
    }

    /// How long a call may wait for a slot on this server (`acquire_timeout`); the
    /// front waits no longer than this for one of the session's own call slots either.
    pub fn acquire_timeout(&self) -> Duration {
        self.pool.config().pool.acquire_timeout
    }

    /// Starts a process if none runs, then waits, at most the server's
    /// `connection_timeout`, until the server has completed a handshake or failed to
    /// start. It wakes on the pool's readiness signal, not by polling.
    pub async fn wait_ready(&self) {
        self.pool.wait_ready().await;
    }

    /// What the server has said about itself so far (empty before its first handshake).
    pub fn description(&self) -> ServerDescription {
        let catalog = self.pool.catalog();
        ServerDescription::new(catalog.capabilities(), Arc::new(CatalogTools(catalog)))
    }

    /// Waits for the server as [`Server::wait_ready`] does, then what a client learns
    /// about it at `initialize`; the reason it is unavailable when no handshake completed.
    pub async fn introduce(&self) -> Result<Introduction, BackendError> {
        self.pool.wait_ready().await;
        let catalog = self.pool.catalog();
        let Some(identity) = catalog.identity.as_ref() else {
            return Err(self.pool.unavailable_error());
        };
        Ok(Introduction {
            capabilities: identity.capabilities.clone(),
            server_info: identity.server_info.clone(),
            instructions: identity.instructions.clone(),
        })
    }

    /// Notifications the server sends outside any call (`list_changed`,
    /// `resources/updated`), for the front to relay on GET streams.
    pub fn notifications(&self) -> broadcast::Receiver<Value> {
        self.pool.subscribe()
    }

    /// The server's processes and counters for `/admin/stats`.
    pub fn stats(&self) -> Value {
        self.pool.stats()
    }
}

/// Every server's health for `/health`: the worst status among required servers (an
/// optional server's trouble is reported but does not make the bridge unhealthy), and each
/// server's report by name, in configuration order.
pub(super) fn health_of(servers: &[Server]) -> HealthSummary {
    let mut status = Health::Healthy;
    let mut reports = serde_json::Map::new();
    for server in servers {
        let report = server.pool.health_report();
        if server.pool.config().required {
            status = status.max(health(report.status));
        }
        reports.insert(
            server.name().to_string(),
            serde_json::to_value(&report).unwrap_or(Value::Null),
        );
    }
    HealthSummary {
        status,
        servers: reports,
        shared_tier: None,
    }
}

/// The backend's judgement in the seam's terms (the same three grades).
fn health(status: HealthStatus) -> Health {
    match status {
        HealthStatus::Healthy => Health::Healthy,
        HealthStatus::Degraded => Health::Degraded,
        HealthStatus::Unhealthy => Health::Unhealthy,
    }
}

/// Whether a server keeps the bridge from being ready: it is required and has no ready
/// process although it should keep one (`min_connections > 0`), or it is failing to start.
pub(super) fn holds_up_readiness(server: &Server) -> bool {
    let pool = &server.pool;
    if !pool.config().required {
        return false;
    }
    let wants_process = pool.config().pool.min_connections > 0;
    (wants_process && pool.ready_processes() == 0) || pool.start_has_failed()
}

/// A server's tool list as the seam shares it: the catalogue itself, not a copy.
struct CatalogTools(Arc<Catalog>);

impl AsRef<[Value]> for CatalogTools {
    fn as_ref(&self) -> &[Value] {
        &self.0.tools
    }
}
