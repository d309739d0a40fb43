//! The pool of processes for one server: leases call slots on the least-loaded ready
//! process, grows up to `max_connections`, and queues a bounded number of waiters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prometheus::IntGauge;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, mpsc, watch};

use super::budget::{BudgetCap, BudgetSlot, ProcessBudget};
use super::catalog::Catalog;
use super::error::BackendError;
use super::health::HealthTracker;
use super::process::{Process, ProcessEvent, ProcessState};
use crate::PoolMetrics;
use mcp_bridge_config::ServerConfig;

/// How many server-initiated notifications (list_changed, resources/updated) a slow
/// front subscriber may lag behind before it misses some.
const NOTIFICATION_BROADCAST_CAPACITY: usize = 256;

/// How long a process stopped by the pool (idle, recycled, shut down) may take to exit
/// after its stdin closes before it is killed.
pub(crate) const PROCESS_EXIT_GRACE: Duration = Duration::from_secs(2);

/// The spawn history that drives reconnect backoff.
#[derive(Debug, Default)]
pub(super) struct SpawnHistory {
    pub consecutive_failures: u32,
    pub next_attempt: Option<Instant>,
    pub last_error: Option<String>,
}

/// Whether a pool can describe its server yet. The pool publishes it on a `watch`
/// whenever something it depends on changes (a start attempt begins or ends, the
/// catalogue is read, a process leaves), so a caller waiting for the first handshake
/// wakes at once instead of polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// No handshake has completed yet, and a start may still succeed.
    Starting,
    /// A process completed its handshake: the catalogue is known.
    Ready,
    /// Nothing is running or starting and the last start failed, so waiting is
    /// pointless until the next retry.
    Failed,
}

/// What a [`CatalogObserver`] does with one catalogue, for the pool to await.
pub type CatalogReport = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Told of every tool list a pool reads (the first handshake's, and each re-read after
/// `notifications/tools/list_changed`) before the pool serves with it. The wiring plugs
/// one in (the plugin host smoke-calls the new tools); the backend knows nothing of what
/// it does. The pool awaits the report, so it must be bounded.
pub trait CatalogObserver: Send + Sync {
    fn catalog_read(&self, server: &str, catalog: &Arc<Catalog>) -> CatalogReport;
}

/// All processes of one configured server.
pub struct Pool {
    pub(super) config: Arc<ServerConfig>,
    name: Arc<str>,
    pub(super) processes: RwLock<Vec<Arc<Process>>>,
    pub(super) starting: AtomicUsize,
    next_ordinal: AtomicU64,
    slot_freed: Notify,
    queued: AtomicUsize,
    pub(super) shutting_down: AtomicBool,
    pub(super) spawn_history: Mutex<SpawnHistory>,
    pub(super) catalog: RwLock<Arc<Catalog>>,
    /// Told of each catalogue before it is published (see [`CatalogObserver`]).
    observer: RwLock<Option<Arc<dyn CatalogObserver>>>,
    readiness: watch::Sender<Readiness>,
    pub(super) health: HealthTracker,
    pub(super) metrics: Arc<PoolMetrics>,
    events: mpsc::UnboundedSender<ProcessEvent>,
    pub(super) notifications: broadcast::Sender<Value>,
    pub(super) wake_supervisor: Notify,
    pub(super) spawns: AtomicU64,
    pub(super) restarts: AtomicU64,
    pub(super) spawn_failures: AtomicU64,
    started_at: Instant,
    inflight_gauge: IntGauge,
    queue_gauge: IntGauge,
    /// The caps every process of the bridge counts against.
    budget: Arc<ProcessBudget>,
    /// Each live process's place in the budget, by ordinal, kept until it has exited.
    slots: Mutex<std::collections::HashMap<u64, BudgetSlot>>,
    /// The cap that last kept this pool from starting a process, for the waiter's error.
    blocked_by: Mutex<Option<BudgetCap>>,
    /// The principal or session this pool belongs to on an isolated server; `None` for a
    /// server's one shared pool. A group's gauges are published by its server as a whole.
    group: Option<Arc<str>>,
}

/// A reserved call slot on one process. Dropping it frees the slot.
pub struct Lease {
    pool: Arc<Pool>,
    process: Arc<Process>,
}

impl Lease {
    pub fn process(&self) -> &Arc<Process> {
        &self.process
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.process.release();
        self.pool.inflight_gauge.dec();
        self.pool.slot_freed.notify_one();
        // A group's process that went idle can now be evicted for a caller waiting at a cap.
        if self.pool.group.is_some() && self.process.inflight() == 0 {
            self.pool.budget.room_may_be_made();
        }
        if self.process.state() == ProcessState::Draining && self.process.inflight() == 0 {
            self.pool.wake_supervisor.notify_one();
        }
    }
}

/// Decrements the queue depth when a waiter leaves, however it leaves.
struct QueueSlot<'a>(&'a Pool);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
        self.0.queue_gauge.dec();
    }
}

impl Pool {
    /// Creates the pool and starts its supervisor, which prewarms `min_connections`. No
    /// cap beyond the pool's own applies.
    pub fn start(config: ServerConfig, metrics: Arc<PoolMetrics>) -> Arc<Pool> {
        Pool::start_in(config, metrics, ProcessBudget::unlimited(), None)
    }

    /// Creates the pool with its processes counted in `budget`. A `group` pool (one
    /// principal's or session's on an isolated server) lets the budget evict its idle
    /// processes when another caller needs room.
    pub fn start_in(
        config: ServerConfig,
        metrics: Arc<PoolMetrics>,
        budget: Arc<ProcessBudget>,
        group: Option<Arc<str>>,
    ) -> Arc<Pool> {
        let name: Arc<str> = Arc::from(config.name.as_str());
        metrics.init_server(&name);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (notifications, _) = broadcast::channel(NOTIFICATION_BROADCAST_CAPACITY);
        let pool = Arc::new(Pool {
            inflight_gauge: metrics.pool_inflight.with_label_values(&[&name]),
            queue_gauge: metrics.pool_queue_depth.with_label_values(&[&name]),
            health: HealthTracker::new(config.health.clone()),
            config: Arc::new(config),
            name,
            processes: RwLock::new(Vec::new()),
            starting: AtomicUsize::new(0),
            next_ordinal: AtomicU64::new(1),
            slot_freed: Notify::new(),
            queued: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            spawn_history: Mutex::new(SpawnHistory::default()),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            observer: RwLock::new(None),
            readiness: watch::Sender::new(Readiness::Starting),
            metrics,
            events: events_tx,
            notifications,
            wake_supervisor: Notify::new(),
            spawns: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            spawn_failures: AtomicU64::new(0),
            started_at: Instant::now(),
            budget: budget.clone(),
            slots: Mutex::new(std::collections::HashMap::new()),
            blocked_by: Mutex::new(None),
            group: group.clone(),
        });
        if group.is_some() {
            budget.register_evictable(&pool);
        }
        tokio::spawn(super::supervisor::run(pool.clone(), events_rx));
        pool
    }

    /// How many processes are in each of `PROCESS_STATES` (`starting` counts starts under way).
    pub fn count_by_state(&self) -> [(&'static str, usize); 4] {
        let processes = self.processes.read();
        let in_state =
            |wanted: ProcessState| processes.iter().filter(|p| p.state() == wanted).count();
        crate::PROCESS_STATES.map(|state| {
            let count = match state {
                "starting" => self.starting.load(Ordering::Acquire),
                "ready" => in_state(ProcessState::Ready),
                "probing" => in_state(ProcessState::Probing),
                _ => in_state(ProcessState::Draining),
            };
            (state, count)
        })
    }

    /// The principal or session this pool serves on an isolated server.
    pub fn group(&self) -> Option<&Arc<str>> {
        self.group.as_ref()
    }

    /// Processes of this pool that exist now (starting, serving, draining or exiting).
    pub fn live_processes(&self) -> usize {
        self.slots.lock().len()
    }

    /// Callers waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// When the pool last had a call in flight: the shortest idle time among its processes
    /// (zero while one is busy), or `None` with no process.
    pub fn idle_for(&self) -> Option<Duration> {
        self.processes.read().iter().map(|p| p.idle_for()).min()
    }

    /// Gives back a process's place in the budget once it has exited.
    pub(super) fn release_slot(&self, ordinal: u64) {
        self.slots.lock().remove(&ordinal);
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// What the server has told us about its tools, prompts and capabilities.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().clone()
    }

    /// Tells `observer` of every catalogue this pool reads from now on, and returns the
    /// report of the one it holds already (if a handshake has filled it), for the caller
    /// to await, so none is missed whenever the observer is set.
    pub fn observe_catalog(&self, observer: Arc<dyn CatalogObserver>) -> Option<CatalogReport> {
        *self.observer.write() = Some(observer.clone());
        let catalog = self.catalog();
        catalog
            .is_loaded()
            .then(|| observer.catalog_read(&self.name, &catalog))
    }

    pub fn health(&self) -> &HealthTracker {
        &self.health
    }

    /// Server-initiated notifications that no single call owns, for the front to relay.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.notifications.subscribe()
    }

    /// Starts a process if none is running, then waits (at most the server's
    /// `connection_timeout`) until the pool is ready or its start has failed, so that the
    /// first client after start-up sees the server's tools. Returns the readiness then;
    /// `Starting` means the bound passed first.
    pub async fn wait_ready(self: &Arc<Self>) -> Readiness {
        let deadline = tokio::time::Instant::now() + self.config.pool.connection_timeout;
        let mut readiness = self.readiness.subscribe();
        loop {
            // At a process cap the first start cannot happen yet: it is tried again each
            // time a place frees (an evicted process exits), within the same bound.
            let room = self.budget.freed();
            tokio::pin!(room);
            room.as_mut().enable();
            self.ensure_started();
            let settled = readiness.wait_for(|state| *state != Readiness::Starting);
            tokio::select! {
                settled = settled => return match settled {
                    // Copied out at once: the watch guard must not outlive this statement.
                    Ok(state) => *state,
                    // The pool owns the sender, and this call holds the pool: it cannot close.
                    Err(_) => Readiness::Starting,
                },
                () = &mut room => {}
                () = tokio::time::sleep_until(deadline) => return Readiness::Starting,
            }
        }
    }

    /// What the pool's readiness is now, judged from its catalogue and start attempts.
    fn judge_readiness(&self) -> Readiness {
        if self.catalog.read().is_loaded() {
            Readiness::Ready
        } else if self.unreachable().is_some() {
            Readiness::Failed
        } else {
            Readiness::Starting
        }
    }

    /// Publishes the readiness to every waiter when it changed. Called wherever one of
    /// its inputs changes: a start attempt begins or ends, the catalogue is replaced, a
    /// process leaves the pool.
    ///
    /// The judgement is made under the watch's lock, so two publishers cannot leave an
    /// older judgement in place of a newer one. (No caller holds a pool lock here, and a
    /// waiter holds the watch's lock only to compare the value, so the order is safe.)
    pub(super) fn publish_readiness(&self) {
        self.readiness.send_if_modified(|published| {
            let now = self.judge_readiness();
            let changed = *published != now;
            *published = now;
            changed
        });
    }

    pub fn ready_processes(&self) -> usize {
        self.processes
            .read()
            .iter()
            .filter(|p| p.state() == ProcessState::Ready)
            .count()
    }

    /// Reserves a call slot: on the least-loaded ready process if one has room, else
    /// after growing the pool or waiting in the bounded queue for `acquire_timeout`.
    pub async fn acquire(self: &Arc<Self>) -> Result<Lease, BackendError> {
        if let Some(lease) = self.try_lease() {
            return Ok(lease);
        }
        self.acquire_slow().await
    }

    /// A call slot on the least-loaded ready process that has room now; never queues,
    /// never grows the pool. What the bridge sends on its own account (a truth sample)
    /// takes only a slot no client is waiting for.
    pub fn try_lease(self: &Arc<Self>) -> Option<Lease> {
        let max_inflight = self.config.pool.max_inflight;
        let processes = self.processes.read();
        // A reservation can lose a race with another caller; a few rescans settle it.
        for _ in 0..4 {
            let best = processes
                .iter()
                .filter(|p| p.state() == ProcessState::Ready && p.inflight() < max_inflight)
                .min_by_key(|p| p.inflight())?;
            if best.try_reserve(max_inflight) {
                self.inflight_gauge.inc();
                return Some(Lease {
                    pool: self.clone(),
                    process: best.clone(),
                });
            }
        }
        None
    }

    async fn acquire_slow(self: &Arc<Self>) -> Result<Lease, BackendError> {
        let deadline = tokio::time::Instant::now() + self.config.pool.acquire_timeout;
        let _queue_slot = self.enqueue()?;
        loop {
            if self.shutting_down.load(Ordering::Acquire) {
                return Err(BackendError::ShuttingDown {
                    server: self.name.clone(),
                });
            }
            let notified = self.slot_freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let room = self.budget.freed();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(lease) = self.try_lease() {
                return Ok(lease);
            }
            self.grow_for_waiters();
            if let Some(error) = self.unreachable() {
                return Err(error);
            }
            tokio::select! {
                () = &mut notified => {}
                () = &mut room => {}
                () = tokio::time::sleep_until(deadline) => {
                    let reason = match *self.blocked_by.lock() {
                        Some(cap) => cap.reason(),
                        None => "no slot freed within acquire_timeout",
                    };
                    return Err(self.exhausted(reason));
                }
            }
        }
    }

    fn enqueue(&self) -> Result<QueueSlot<'_>, BackendError> {
        let previous = self.queued.fetch_add(1, Ordering::AcqRel);
        self.queue_gauge.inc();
        let slot = QueueSlot(self);
        if previous >= self.config.pool.max_queue {
            return Err(self.exhausted("the wait queue is full (max_queue)"));
        }
        Ok(slot)
    }

    fn exhausted(&self, reason: &'static str) -> BackendError {
        self.metrics
            .backend_errors_total
            .with_label_values(&[&self.name, "pool_exhausted"])
            .inc();
        BackendError::PoolExhausted {
            server: self.name.clone(),
            processes: self.processes.read().len(),
            max_inflight: self.config.pool.max_inflight,
            reason,
        }
    }

    /// Starts enough processes for the callers waiting, within `max_connections`.
    fn grow_for_waiters(self: &Arc<Self>) {
        let live = self
            .processes
            .read()
            .iter()
            .filter(|p| p.state() != ProcessState::Dead)
            .count();
        let starting = self.starting.load(Ordering::Acquire);
        let waiting = self.queued.load(Ordering::Acquire);
        let capacity_coming = starting * self.config.pool.max_inflight;
        if live + starting < self.config.pool.max_connections
            && capacity_coming < waiting
            && self.spawn_allowed_now()
        {
            self.spawn_or_make_room();
        }
    }

    /// When nothing is running or starting and spawning keeps failing, waiting would
    /// only delay the same error: report it at once.
    fn unreachable(&self) -> Option<BackendError> {
        if self.starting.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self
            .processes
            .read()
            .iter()
            .any(|p| p.state() != ProcessState::Dead)
        {
            return None;
        }
        let history = self.spawn_history.lock();
        let last_error = history.last_error.clone()?;
        Some(BackendError::Unavailable {
            server: self.name.clone(),
            reason: format!(
                "no process is running and the last {} start attempt(s) failed: {last_error}",
                history.consecutive_failures
            ),
        })
    }

    /// Whether the server is failing to start with nothing running or starting, so
    /// waiting for it is pointless until the next retry.
    pub fn start_has_failed(&self) -> bool {
        self.unreachable().is_some()
    }

    /// The error for a server that cannot serve now, with the last start failure.
    pub fn unavailable_error(&self) -> BackendError {
        if let Some(error) = self.unreachable() {
            return error;
        }
        let blocked = *self.blocked_by.lock();
        let reason = match blocked {
            Some(cap) if self.live_processes() == 0 => format!(
                "{} (no process could start within connection_timeout)",
                cap.reason()
            ),
            _ => {
                "no process finished its initialize handshake within connection_timeout".to_owned()
            }
        };
        BackendError::Unavailable {
            server: self.name.clone(),
            reason,
        }
    }

    /// Starts a process if none is running or starting (with `min_connections = 0`
    /// the pool is empty until someone needs it).
    pub fn ensure_started(self: &Arc<Self>) {
        let live = self
            .processes
            .read()
            .iter()
            .any(|p| p.state() != ProcessState::Dead);
        if !live && self.starting.load(Ordering::Acquire) == 0 && self.spawn_allowed_now() {
            self.spawn_or_make_room();
        }
    }

    /// Starts a process for a caller that needs one; at a cap, drains another caller's idle
    /// process so the next attempt (woken when it exits) finds room.
    pub(super) fn spawn_or_make_room(self: &Arc<Self>) {
        if let Err(cap) = self.spawn_process() {
            self.budget.make_room(&self.name, cap);
        }
    }

    pub(super) fn spawn_allowed_now(&self) -> bool {
        let history = self.spawn_history.lock();
        history.next_attempt.is_none_or(|at| Instant::now() >= at)
    }

    /// Starts one process in the background; the supervisor and waiters learn of it
    /// through `slot_freed` and the process list. Fails, starting nothing, when a cap of
    /// the process budget is full.
    pub(super) fn spawn_process(self: &Arc<Self>) -> Result<(), BudgetCap> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Ok(());
        }
        let slot = match self.budget.reserve(&self.name) {
            Ok(slot) => slot,
            Err(cap) => {
                *self.blocked_by.lock() = Some(cap);
                return Err(cap);
            }
        };
        *self.blocked_by.lock() = None;
        let ordinal = self.next_ordinal.fetch_add(1, Ordering::Relaxed);
        self.slots.lock().insert(ordinal, slot);
        self.starting.fetch_add(1, Ordering::AcqRel);
        self.publish_readiness();
        let pool = self.clone();
        tokio::spawn(async move {
            let started = Process::start(
                &pool.config,
                ordinal,
                pool.events.clone(),
                pool.metrics.clone(),
            )
            .await;
            match started {
                Ok(process) => pool.adopt(process).await,
                Err(error) => {
                    pool.release_slot(ordinal);
                    pool.record_spawn_failure(&error);
                }
            }
            pool.starting.fetch_sub(1, Ordering::AcqRel);
            pool.publish_readiness();
            pool.slot_freed.notify_waiters();
            pool.wake_supervisor.notify_one();
        });
        Ok(())
    }

    async fn adopt(self: &Arc<Self>, process: Arc<Process>) {
        let needs_catalog = !self.catalog.read().is_loaded();
        if needs_catalog && !self.shutting_down.load(Ordering::Acquire) {
            self.refresh_catalog(&process).await;
        }
        // Judged under the list's lock, which `shutdown` takes after raising the flag: a
        // process is either in the list it drains or stopped here, never left running.
        let adopted = {
            let mut processes = self.processes.write();
            let open = !self.shutting_down.load(Ordering::Acquire);
            if open {
                processes.push(process.clone());
            }
            open
        };
        if !adopted {
            process.shutdown(PROCESS_EXIT_GRACE).await;
            self.release_slot(process.ordinal);
            return;
        }
        tracing::info!(server = %self.name, pid = process.pid(), ordinal = process.ordinal, "backend process ready");
        self.spawns.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .pool_spawns_total
            .with_label_values(&[&self.name])
            .inc();
        *self.spawn_history.lock() = SpawnHistory::default();
    }

    fn record_spawn_failure(&self, error: &BackendError) {
        self.spawn_failures.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .pool_spawn_failures_total
            .with_label_values(&[&self.name])
            .inc();
        let pool = &self.config.pool;
        let mut history = self.spawn_history.lock();
        history.consecutive_failures += 1;
        history.last_error = Some(error.to_string());
        let delay = if history.consecutive_failures >= pool.max_reconnect_attempts {
            pool.unhealthy_retry_interval
        } else {
            let exponent = history.consecutive_failures.saturating_sub(1).min(20);
            pool.reconnect_backoff_initial
                .saturating_mul(1 << exponent)
                .min(pool.reconnect_backoff_max)
        };
        history.next_attempt = Some(Instant::now() + delay);
        tracing::warn!(
            server = %self.name, attempt = history.consecutive_failures, retry_in = ?delay, %error,
            "backend process failed to start"
        );
    }

    /// Re-reads the server's tool list (after the first handshake and on `list_changed`).
    pub(super) async fn refresh_catalog(&self, process: &Arc<Process>) {
        match Catalog::fetch(process).await {
            Ok(catalog) => {
                let catalog = Arc::new(catalog);
                // The observer hears of the catalogue before the pool is ready with it, so
                // what it does (the plugin host's smoke calls) is done before a client that
                // waits for the first handshake calls.
                let observer = self.observer.read().clone();
                if let Some(observer) = &observer {
                    observer.catalog_read(&self.name, &catalog).await;
                }
                *self.catalog.write() = catalog.clone();
                // An observer set meanwhile may have looked before the catalogue was
                // stored: it hears of it now (twice at worst, which it tolerates).
                if observer.is_none()
                    && let Some(late) = self.observer.read().clone()
                {
                    tokio::spawn(late.catalog_read(&self.name, &catalog));
                }
                self.publish_readiness();
            }
            Err(error) => {
                tracing::warn!(server = %self.name, %error, "could not read the server's tool list")
            }
        }
    }

    /// The pool's view for `/admin/stats`, like the seed's `get_stats()`.
    pub fn stats(&self) -> Value {
        let processes = self.processes.read();
        let count = |state: ProcessState| processes.iter().filter(|p| p.state() == state).count();
        let history = self.spawn_history.lock();
        let pool = &self.config.pool;
        json!({
            "server": &*self.name,
            "min_connections": pool.min_connections,
            "max_connections": pool.max_connections,
            "max_inflight": pool.max_inflight,
            "exclusive": self.config.exclusive,
            "group": self.group.as_deref(),
            "processes": processes.iter().map(|p| json!({
                "ordinal": p.ordinal,
                "pid": p.pid(),
                "supervisor_pid": p.supervisor_pid(),
                "state": format!("{:?}", p.state()).to_lowercase(),
                "inflight": p.inflight(),
                "age_seconds": p.age().as_secs_f64(),
                "idle_seconds": p.idle_for().as_secs_f64(),
                "protocol_version": p.identity().map(|i| i.protocol_version),
                "resident_bytes": p.usage().resident_bytes,
                "cpu_seconds": p.usage().cpu_seconds,
            })).collect::<Vec<_>>(),
            "max_process_memory": pool.max_process_memory,
            "ready": count(ProcessState::Ready),
            "draining": count(ProcessState::Draining),
            "starting": self.starting.load(Ordering::Acquire),
            "inflight": processes.iter().map(|p| p.inflight()).sum::<usize>(),
            "queued": self.queued.load(Ordering::Acquire),
            "max_queue": pool.max_queue,
            "spawns": self.spawns.load(Ordering::Relaxed),
            "restarts": self.restarts.load(Ordering::Relaxed),
            "spawn_failures": self.spawn_failures.load(Ordering::Relaxed),
            "consecutive_spawn_failures": history.consecutive_failures,
            "last_spawn_error": history.last_error,
            "uptime_seconds": self.started_at.elapsed().as_secs_f64(),
        })
    }

    /// Stops taking calls and stops every process: stdin closed first, killed after
    /// `PROCESS_EXIT_GRACE`. Callers still queued get a shutting-down error.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.slot_freed.notify_waiters();
        self.wake_supervisor.notify_one();
        let processes: Vec<Arc<Process>> = self.processes.write().drain(..).collect();
        let stops = processes
            .iter()
            .map(|process| process.shutdown(PROCESS_EXIT_GRACE));
        futures_util::future::join_all(stops).await;
        // Every process has exited (or was killed after the grace): their places are free.
        // One still starting keeps its place until its start finishes.
        let gone: Vec<u64> = processes.iter().map(|process| process.ordinal).collect();
        let mut slots = self.slots.lock();
        for ordinal in gone {
            slots.remove(&ordinal);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A server whose single process answers `initialize` after `delay` seconds (or
    /// never, for a command that cannot start).
    fn server(command: &str, script: &str, connection_timeout: &str) -> ServerConfig {
        let text = format!(
            r#"
            [servers.probe]
            command = "{command}"
            args = ["-c", '''{script}''']
            min_connections = 0
            connection_timeout = "{connection_timeout}"
            enable_health_checks = false
            "#
        );
        let config = mcp_bridge_config::load_str(&text, "readiness-test.toml")
            .expect("the test configuration is valid");
        config.servers[0].clone()
    }

    /// Answers `initialize` with the id it was sent, after a pause, then reads on.
    const SLOW_HANDSHAKE: &str = r#"read -r line
id=$(printf '%s' "$line" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
sleep 0.3
printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"probe","version":"1"}}}\n' "$id"
exec cat >/dev/null"#;

    /// Waits for the pool's readiness, counting how often the waiting future is polled:
    /// a waiter that polled every few milliseconds would be polled dozens of times
    /// during a handshake; one woken by the signal, once per change it waits through.
    async fn wait_counting_polls(pool: &Arc<Pool>) -> (Readiness, usize, Duration) {
        let started = Instant::now();
        let mut waiting = std::pin::pin!(pool.wait_ready());
        let mut polls = 0;
        let readiness = std::future::poll_fn(|context| {
            polls += 1;
            waiting.as_mut().poll(context)
        })
        .await;
        (readiness, polls, started.elapsed())
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_pool_becomes_ready_without_polling() {
        let pool = Pool::start(
            server("sh", SLOW_HANDSHAKE, "20s"),
            Arc::new(PoolMetrics::register(&mcp_bridge_metrics::Registry::new())),
        );
        assert!(
            !pool.catalog().is_loaded(),
            "min_connections = 0 starts nothing"
        );
        let (readiness, polls, waited) = wait_counting_polls(&pool).await;
        assert_eq!(readiness, Readiness::Ready);
        let catalog = pool.catalog();
        let server_info = catalog.identity.as_ref().map(|i| &i.server_info["name"]);
        assert_eq!(server_info, Some(&serde_json::json!("probe")));
        // Woken by the handshake (after 0.3 s), far inside the 20 s bound, and not by a
        // timer in between.
        assert!(waited < Duration::from_secs(10), "waited {waited:?}");
        assert!(polls <= 3, "the waiter was polled {polls} times");
        // Once ready, a later waiter returns at once.
        assert_eq!(pool.wait_ready().await, Readiness::Ready);
        pool.shutdown().await;
    }

    #[tokio::test]
    async fn a_failed_start_wakes_the_waiter_at_once() {
        let pool = Pool::start(
            server("/nonexistent/mcp-bridge-test-server", "", "20s"),
            Arc::new(PoolMetrics::register(&mcp_bridge_metrics::Registry::new())),
        );
        let (readiness, polls, waited) = wait_counting_polls(&pool).await;
        assert_eq!(readiness, Readiness::Failed);
        assert!(waited < Duration::from_secs(10), "waited {waited:?}");
        assert!(polls <= 3, "the waiter was polled {polls} times");
        assert!(pool.start_has_failed());
        // In the retry backoff nothing starts, so a new waiter learns of the failure at once.
        assert_eq!(pool.wait_ready().await, Readiness::Failed);
        pool.shutdown().await;
    }

    /// A server that never answers keeps the waiter as long as the bound, and no longer.
    #[tokio::test]
    async fn a_waiter_gives_up_at_the_connection_timeout() {
        let pool = Pool::start(
            server("sh", "exec sleep 30", "1s"),
            Arc::new(PoolMetrics::register(&mcp_bridge_metrics::Registry::new())),
        );
        let (readiness, _, waited) = wait_counting_polls(&pool).await;
        // The handshake has the same bound, started a moment later, so the waiter gives
        // up first or learns of the failure then; either way not before the bound.
        assert_ne!(readiness, Readiness::Ready);
        assert!(waited >= Duration::from_secs(1), "waited {waited:?}");
        assert!(waited < Duration::from_secs(10), "waited {waited:?}");
        pool.shutdown().await;
    }
}
