//! An isolated server's process groups: one small pool per principal (`isolation =
//! "principal"`) or per session (`"session"`), each started on its group's first call, its
//! processes stopped after `idle_timeout`, and the group dropped once it has none. Every
//! group's processes count in the server's `max_total_processes` and the bridge's
//! `[processes] max_total`; at a cap the budget drains the least recently used idle process
//! of any group (see the backend's `budget.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};

use mcp_bridge_backend::{
    BackendError, Catalog, CatalogObserver, CatalogReport, Pool, PoolMetrics, ProcessBudget,
};
use mcp_bridge_config::{Isolation, PrincipalSecrets, ServerConfig};
use mcp_bridge_upstream::{Caller, CallerIdentity};

/// How often empty groups are looked for and dropped.
pub(crate) const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// The groups of one isolated server.
pub(crate) struct Groups {
    isolation: Isolation,
    /// The server's configuration; a group's differs only in its rendered environment.
    config: Arc<ServerConfig>,
    secrets: Arc<PrincipalSecrets>,
    metrics: Arc<PoolMetrics>,
    budget: Arc<ProcessBudget>,
    groups: Mutex<HashMap<Arc<str>, Group>>,
    /// The catalogue the last group that completed a handshake read: what the server is,
    /// for a client that has no group yet.
    catalog: RwLock<Arc<Catalog>>,
    /// Told of each group's catalogues (see [`CatalogObserver`]).
    observer: RwLock<Option<Arc<dyn CatalogObserver>>>,
}

/// One principal's or session's pool, with the calls using it.
struct Group {
    pool: Arc<Pool>,
    users: Arc<AtomicUsize>,
    /// Whose group it is, for the per-principal share.
    principal: Arc<str>,
}

/// A call's hold on its group: a group in use is never dropped, even before its call has
/// reached the pool's queue.
pub(crate) struct GroupUse {
    pool: Arc<Pool>,
    users: Arc<AtomicUsize>,
}

impl GroupUse {
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for GroupUse {
    fn drop(&mut self) {
        self.users.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Group {
    fn use_it(&self) -> GroupUse {
        self.users.fetch_add(1, Ordering::AcqRel);
        GroupUse {
            pool: self.pool.clone(),
            users: self.users.clone(),
        }
    }
}

/// Whose group a call belongs to.
pub(crate) struct GroupKey {
    /// The map key, and the cache partition of the group's results.
    pub(crate) key: Arc<str>,
    /// The principal whose values fill the environment.
    pub(crate) principal: Arc<str>,
}

impl Groups {
    pub(crate) fn new(
        config: Arc<ServerConfig>,
        secrets: Arc<PrincipalSecrets>,
        metrics: Arc<PoolMetrics>,
        budget: Arc<ProcessBudget>,
    ) -> Groups {
        Groups {
            isolation: config.isolation,
            config,
            secrets,
            metrics,
            budget,
            groups: Mutex::new(HashMap::new()),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            observer: RwLock::new(None),
        }
    }

    /// Tells `observer` of the catalogues every group reads, now and in groups made
    /// later; returns the reports of those read already.
    pub(crate) fn observe_catalogs(
        &self,
        observer: Arc<dyn CatalogObserver>,
    ) -> Vec<CatalogReport> {
        *self.observer.write() = Some(observer.clone());
        self.groups
            .lock()
            .values()
            .filter_map(|group| group.pool.observe_catalog(observer.clone()))
            .collect()
    }

    /// Which group `caller` belongs to, or why it has none.
    pub(crate) fn key_of(&self, caller: &Caller) -> Result<GroupKey, BackendError> {
        let Some(identity) = caller.identity.as_deref() else {
            return Err(self.refusal(format!(
                "it isolates processes per {}, and this request names no caller",
                self.isolation
            )));
        };
        let CallerIdentity {
            name,
            session,
            affinity,
            ..
        } = identity;
        let key = match self.isolation {
            Isolation::Shared | Isolation::Principal => format!("principal:{name}"),
            Isolation::Session => match (session, affinity) {
                (Some(session), _) => format!("session:{session}"),
                // The key is the principal's own: another principal naming the same key
                // gets another group.
                (None, Some(affinity)) => format!("affinity:{name}:{affinity}"),
                (None, None) => {
                    return Err(self.refusal(
                        "it runs one process per MCP session, and this request has no session: \
                         open one with initialize, or (protocol 2026-07-28) name your group with \
                         the Mcp-Bridge-Affinity header"
                            .to_owned(),
                    ));
                }
            },
        };
        Ok(GroupKey {
            key: Arc::from(key),
            principal: name.clone(),
        })
    }

    /// The pool of `key`'s group, made on its first call. Fails when the caller's
    /// environment cannot be rendered (a secret it has no value of) or when more groups
    /// wait for processes than the server could ever run.
    pub(crate) fn pool_for(&self, key: &GroupKey) -> Result<(GroupUse, bool), BackendError> {
        let mut groups = self.groups.lock();
        if let Some(group) = groups.get(&key.key) {
            return Ok((group.use_it(), false));
        }
        // A group exists while it has processes or callers waiting for one, so this many
        // groups means callers are already queueing for every place the server has.
        let most = self.config.max_total_processes + self.config.pool.max_queue;
        // One principal's sessions or affinity keys may hold at most half the server's
        // places, so it cannot evict everyone else's processes by opening more.
        let share = (self.config.max_total_processes / 2).max(1);
        let held = groups
            .values()
            .filter(|group| group.principal == key.principal)
            .count();
        if held >= share {
            return Err(BackendError::PoolExhausted {
                server: self.name(),
                processes: held,
                max_inflight: self.config.pool.max_inflight,
                reason: "this principal already holds half of the server's max_total_processes in sessions or affinity groups; end some (DELETE) or wait for them to idle out",
            });
        }
        if groups.len() >= most {
            return Err(BackendError::PoolExhausted {
                server: self.name(),
                processes: self.budget.live(&self.config.name).1,
                max_inflight: self.config.pool.max_inflight,
                reason: "every place under max_total_processes is held or waited for by other principals or sessions",
            });
        }
        let mut config = (*self.config).clone();
        for (name, template) in &self.config.env_templates {
            let value = template
                .render(&key.principal, &self.secrets)
                .map_err(|missing| BackendError::Unavailable {
                    server: self.name(),
                    reason: missing.to_string(),
                })?;
            config.env.push((name.clone(), value));
        }
        let pool = Pool::start_in(
            config,
            self.metrics.clone(),
            self.budget.clone(),
            Some(key.key.clone()),
        );
        // Set before the new pool's first handshake can end: its supervisor has only been
        // spawned.
        if let Some(observer) = self.observer.read().clone() {
            // Nothing is read yet, so there is nothing to report.
            let _ = pool.observe_catalog(observer);
        }
        let group = Group {
            pool,
            users: Arc::new(AtomicUsize::new(0)),
            principal: key.principal.clone(),
        };
        let used = group.use_it();
        groups.insert(key.key.clone(), group);
        self.metrics
            .pool_groups
            .with_label_values(&[&self.config.name])
            .set(groups.len() as i64);
        Ok((used, true))
    }

    /// What the server is: the last catalogue a group read.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        let known = self.catalog.read().clone();
        if known.is_loaded() {
            return known;
        }
        let loaded = self
            .groups
            .lock()
            .values()
            .map(|group| group.pool.catalog())
            .find(|catalog| catalog.is_loaded());
        match loaded {
            Some(catalog) => {
                *self.catalog.write() = catalog.clone();
                catalog
            }
            None => known,
        }
    }

    /// Remembers a group's catalogue as the server's (after its handshake).
    pub(crate) fn learn_catalog(&self, catalog: &Arc<Catalog>) {
        if catalog.is_loaded() && !Arc::ptr_eq(&self.catalog.read(), catalog) {
            *self.catalog.write() = catalog.clone();
        }
    }

    /// Drops the groups with no process left and no caller waiting, stopping their
    /// supervisors; publishes the server's gauges.
    pub(crate) fn reap(&self) {
        let emptied: Vec<Arc<Pool>> = {
            let mut groups = self.groups.lock();
            let empty: Vec<Arc<str>> = groups
                .iter()
                .filter(|(_, group)| {
                    group.users.load(Ordering::Acquire) == 0
                        && group.pool.live_processes() == 0
                        && group.pool.queued() == 0
                })
                .map(|(key, _)| key.clone())
                .collect();
            empty
                .iter()
                .filter_map(|key| groups.remove(key))
                .map(|group| group.pool)
                .collect()
        };
        let name = &self.config.name;
        if !emptied.is_empty() {
            self.metrics
                .pool_groups_reaped_total
                .with_label_values(&[name, "idle"])
                .inc_by(emptied.len() as u64);
        }
        for pool in emptied {
            tokio::spawn(async move { pool.shutdown().await });
        }
        self.publish_gauges();
    }

    /// Stops the group of a session that ended (a DELETE).
    pub(crate) fn end_session(&self, session: &str) {
        let key = format!("session:{session}");
        let Some(Group { pool, .. }) = self.groups.lock().remove(key.as_str()) else {
            return;
        };
        self.metrics
            .pool_groups_reaped_total
            .with_label_values(&[&self.config.name, "session_closed"])
            .inc();
        tokio::spawn(async move { pool.shutdown().await });
    }

    fn publish_gauges(&self) {
        let groups = self.groups.lock();
        let name = &self.config.name;
        self.metrics
            .pool_groups
            .with_label_values(&[name])
            .set(groups.len() as i64);
        let mut by_state: HashMap<&'static str, i64> = HashMap::new();
        for group in groups.values() {
            for (state, count) in group.pool.count_by_state() {
                *by_state.entry(state).or_default() += count as i64;
            }
        }
        for state in mcp_bridge_backend::PROCESS_STATES {
            self.metrics
                .pool_processes
                .with_label_values(&[name, state])
                .set(by_state.get(state).copied().unwrap_or(0));
        }
    }

    /// Every group for `/admin/stats`: its processes, age, idle time and calls in flight.
    pub(crate) fn stats(&self) -> Value {
        let groups = self.groups.lock();
        let mut listed: Vec<Value> = groups
            .iter()
            .map(|(key, group)| {
                let pool = &group.pool;
                let stats = pool.stats();
                json!({
                    "key": &**key,
                    "processes": stats["processes"],
                    "inflight": stats["inflight"],
                    "queued": stats["queued"],
                    "idle_seconds": pool.idle_for().map(|idle| idle.as_secs_f64()),
                    "age_seconds": stats["uptime_seconds"],
                })
            })
            .collect();
        listed.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
        let (total, own) = self.budget.live(&self.config.name);
        let name = self.config.name.as_str();
        let reaped = |reason: &str| {
            self.metrics
                .pool_groups_reaped_total
                .with_label_values(&[name, reason])
                .get()
        };
        json!({
            "groups": listed,
            "live_processes": own,
            "max_total_processes": self.config.max_total_processes,
            "bridge_processes": total,
            "bridge_max_processes": self.budget.max_total(),
            "evictions": self.metrics.pool_evictions_total.with_label_values(&[name]).get(),
            "reaped": { "idle": reaped("idle"), "session_closed": reaped("session_closed") },
        })
    }

    /// Stops every group (the bridge is shutting down).
    pub(crate) async fn shutdown(&self) {
        let pools: Vec<Arc<Pool>> = self
            .groups
            .lock()
            .drain()
            .map(|(_, group)| group.pool)
            .collect();
        futures_util::future::join_all(pools.iter().map(|pool| pool.shutdown())).await;
    }

    fn name(&self) -> Arc<str> {
        Arc::from(self.config.name.as_str())
    }

    fn refusal(&self, why: String) -> BackendError {
        BackendError::Unavailable {
            server: self.name(),
            reason: why,
        }
    }
}

/// Drops empty groups every [`REAP_INTERVAL`] until the server is gone.
pub(crate) async fn reap_while_alive(groups: std::sync::Weak<Groups>) {
    let mut ticker = tokio::time::interval(REAP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(groups) = groups.upgrade() else {
            return;
        };
        groups.reap();
    }
}
