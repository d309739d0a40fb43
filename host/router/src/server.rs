//! What the front may know about one configured server, and about all of them: a name,
//! what the server said about itself, a bounded wait for its first handshake, its
//! notifications, and its health. The pool behind it stays the router's own, so the
//! front never reaches a process.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;

use mcp_bridge_upstream::{Health, HealthSummary, Introduction, ServerDescription};

use mcp_bridge_backend::{
    BackendError, Catalog, CatalogObserver, CatalogReport, HealthStatus, Pool,
};
use mcp_bridge_config::ServerConfig;
use mcp_bridge_upstream::Caller;

use super::caching::CacheLayer;
use super::isolation::{GroupKey, GroupUse, Groups};

/// How many notifications a slow GET stream may fall behind before it misses some.
const RELAYED_NOTIFICATIONS: usize = 256;

/// One configured server, as the front addresses it. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    /// The server's one pool when it is shared; for an isolated server a pool that never
    /// starts a process, kept for its name, settings and health record.
    pool: Arc<Pool>,
    /// An isolated server's groups (one pool per principal or session).
    groups: Option<Arc<Groups>>,
    /// The cache a new group's notifications are applied to.
    cache: Option<Arc<CacheLayer>>,
    /// What the front's GET streams receive: the pool's notifications once the cache has
    /// applied them, and those other replicas' processes of this server sent.
    relay: broadcast::Sender<Value>,
}

impl Server {
    pub(super) fn new(
        pool: Arc<Pool>,
        groups: Option<Arc<Groups>>,
        cache: Option<Arc<CacheLayer>>,
    ) -> Server {
        Server {
            pool,
            groups,
            cache,
            relay: broadcast::channel(RELAYED_NOTIFICATIONS).0,
        }
    }

    /// The pool behind the handle, for the router's own use.
    pub(super) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Tells `observer` of every tool list this server's processes read: its pool's, or
    /// on an isolated server each group's, those made later included. Returns the
    /// reports of the lists read already, for the caller to await.
    pub fn observe_catalogs(&self, observer: Arc<dyn CatalogObserver>) -> Vec<CatalogReport> {
        match &self.groups {
            Some(groups) => groups.observe_catalogs(observer),
            None => self.pool.observe_catalog(observer).into_iter().collect(),
        }
    }

    /// An isolated server's groups.
    pub(super) fn groups(&self) -> Option<&Arc<Groups>> {
        self.groups.as_ref()
    }

    /// The pool that serves `caller`: the server's own, or the caller's group's (made on
    /// its first call).
    pub(super) fn pool_for(&self, caller: &Caller) -> Result<Serving, BackendError> {
        let Some(groups) = &self.groups else {
            return Ok(Serving {
                pool: self.pool.clone(),
                group: None,
            });
        };
        let key = groups.key_of(caller)?;
        let (used, created) = groups.pool_for(&key)?;
        if created {
            // A group's own notifications: its list changes reach every client of the
            // server (they describe the server), anything else stays with the group.
            tokio::spawn(super::notifications::relay(
                self.clone(),
                used.pool().subscribe(),
                self.cache.clone(),
                super::notifications::Audience::ListChangesOnly,
            ));
        }
        Ok(Serving {
            pool: used.pool().clone(),
            group: Some(ServingGroup { key, used }),
        })
    }

    /// The catalogue clients see before they call: the pool's, or for an isolated server
    /// the last one any group read.
    pub(super) fn catalog(&self) -> Arc<Catalog> {
        match &self.groups {
            Some(groups) => groups.catalog(),
            None => self.pool.catalog(),
        }
    }

    /// Where notifications for the front's GET streams are sent.
    pub(super) fn relay(&self) -> &broadcast::Sender<Value> {
        &self.relay
    }

    pub fn name(&self) -> &Arc<str> {
        self.pool.name()
    }

    /// The server's config: for explanations, its isolation and `identity_meta`.
    pub fn config(&self) -> &ServerConfig {
        self.pool.config()
    }

    /// What the server's catalogue lists under `tool`: `None` while no handshake has read
    /// the catalogue, else the tool's entry (`None` when it is not listed). It reads what
    /// the pool already learned and never asks the server.
    pub fn listed_tool(&self, tool: &str) -> Option<Option<Value>> {
        let catalog = self.catalog();
        catalog.is_loaded().then(|| catalog.tool(tool).cloned())
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
        // An isolated server starts processes only for a caller (`introduce_to`).
        if self.groups.is_none() {
            self.pool.wait_ready().await;
        }
    }

    /// What the server has said about itself so far (empty before its first handshake).
    pub fn description(&self) -> ServerDescription {
        let catalog = self.catalog();
        ServerDescription::new(catalog.capabilities(), Arc::new(CatalogTools(catalog)))
    }

    /// Waits for the server as [`Server::wait_ready`] does, then what a client learns
    /// about it at `initialize`; the reason it is unavailable when no handshake completed.
    pub async fn introduce(&self) -> Result<Introduction, BackendError> {
        self.wait_ready().await;
        introduction(&self.catalog()).ok_or_else(|| self.pool.unavailable_error())
    }

    /// What `caller` learns at `initialize`: an isolated server starts the caller's group
    /// (its first call would anyway) and describes it.
    pub async fn introduce_to(&self, caller: &Caller) -> Result<Introduction, BackendError> {
        let Some(groups) = &self.groups else {
            return self.introduce().await;
        };
        let (pool, _held) = match self.pool_for(caller) {
            Ok(serving) => (serving.pool, serving.group),
            // A caller without a group yet (server/discover before a session or an
            // affinity key) learns what the server is from any group's handshake.
            Err(error) => return introduction(&groups.catalog()).ok_or(error),
        };
        pool.wait_ready().await;
        let catalog = pool.catalog();
        groups.learn_catalog(&catalog);
        introduction(&catalog).ok_or_else(|| pool.unavailable_error())
    }

    /// Notifications the server sends outside any call (`list_changed`,
    /// `resources/updated`), for the front to relay on GET streams: this replica's
    /// processes' (after the cache applied them) and, with a shared tier, other replicas'.
    pub fn notifications(&self) -> broadcast::Receiver<Value> {
        self.relay.subscribe()
    }

    /// The server's processes and counters for `/admin/stats`.
    pub fn stats(&self) -> Value {
        let mut stats = self.pool.stats();
        stats["isolation"] = Value::from(self.pool.config().isolation.as_str());
        stats["max_total_processes"] = Value::from(self.pool.config().max_total_processes);
        if let Some(groups) = &self.groups
            && let (Some(stats), Value::Object(extra)) = (stats.as_object_mut(), groups.stats())
        {
            stats.extend(extra);
        }
        stats
    }
}

/// The pool that serves one call, and on an isolated server the group it belongs to.
pub(super) struct Serving {
    pub(super) pool: Arc<Pool>,
    pub(super) group: Option<ServingGroup>,
}

pub(super) struct ServingGroup {
    /// The group's key: its private cache partition.
    pub(super) key: GroupKey,
    /// Held until the call ends, so the group is not dropped under it.
    pub(super) used: GroupUse,
}

/// What a client learns at `initialize` from a catalogue, when a handshake filled it.
fn introduction(catalog: &Catalog) -> Option<Introduction> {
    let identity = catalog.identity.as_ref()?;
    Some(Introduction {
        capabilities: identity.capabilities.clone(),
        server_info: identity.server_info.clone(),
        instructions: identity.instructions.clone(),
    })
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
