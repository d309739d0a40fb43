//! The process budget: how many backend processes may exist, per server
//! (`max_total_processes`) and for the whole bridge (`[processes] max_total`), and making
//! room at a cap by draining the least recently used idle process of an isolated server.
//!
//! A pool reserves a [`BudgetSlot`] before it spawns and keeps it until the process has
//! exited (its supervisor saw the exit, or the pool's shutdown waited for it), so a process
//! that is starting, serving, draining or being killed all count: sampling `/proc` never
//! shows more processes than the caps.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::pool::Pool;
use super::process::ProcessState;

/// Which cap a reservation ran into, for the error a waiting caller finally gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetCap {
    /// The server's `max_total_processes`.
    Server,
    /// The bridge's `[processes] max_total`.
    Bridge,
}

impl BudgetCap {
    pub fn reason(self) -> &'static str {
        match self {
            BudgetCap::Server => {
                "the server's max_total_processes is reached and every process is busy"
            }
            BudgetCap::Bridge => {
                "the bridge's [processes] max_total is reached and every process is busy"
            }
        }
    }
}

/// How long callers at a cap wait for an eviction's room before another process is
/// evicted: a drained process exits within its stop grace, unless the eviction raced a
/// call that leased it first.
const EVICTION_PATIENCE: Duration = Duration::from_secs(5);

/// Counts every backend process against the caps.
pub struct ProcessBudget {
    max_total: usize,
    /// `mcp_bridge_backend_processes`, when the budget is the bridge's.
    gauge: Option<prometheus::IntGauge>,
    state: Mutex<BudgetState>,
    /// Woken whenever a process leaves, so callers waiting for room try again.
    freed: Notify,
}

#[derive(Default)]
struct BudgetState {
    total: usize,
    per_server: HashMap<Arc<str>, ServerCount>,
    /// Pools whose idle processes may be evicted to make room (isolated groups).
    evictable: Vec<Weak<Pool>>,
    /// Evictions asked for whose room has not arrived yet: a second caller at the cap waits
    /// for that room instead of draining one more process.
    pending_evictions: usize,
    /// When the last eviction began, so a stuck one is not waited for forever.
    last_eviction: Option<Instant>,
}

#[derive(Clone, Copy)]
struct ServerCount {
    live: usize,
    cap: usize,
}

/// One process's place in the budget; dropping it gives the place back.
pub(crate) struct BudgetSlot {
    budget: Arc<ProcessBudget>,
    server: Arc<str>,
}

impl Drop for BudgetSlot {
    fn drop(&mut self) {
        {
            let mut state = self.budget.state.lock();
            state.total = state.total.saturating_sub(1);
            if let Some(count) = state.per_server.get_mut(&self.server) {
                count.live = count.live.saturating_sub(1);
            }
            state.pending_evictions = state.pending_evictions.saturating_sub(1);
            if let Some(gauge) = &self.budget.gauge {
                gauge.set(state.total as i64);
            }
        }
        self.budget.freed.notify_waiters();
    }
}

impl ProcessBudget {
    /// The bridge's budget, publishing its count on `gauge`.
    pub fn new(max_total: usize, gauge: Option<prometheus::IntGauge>) -> Arc<ProcessBudget> {
        Arc::new(ProcessBudget {
            max_total,
            gauge,
            state: Mutex::new(BudgetState::default()),
            freed: Notify::new(),
        })
    }

    /// A budget no cap limits, for a pool started on its own (tests, tools).
    pub fn unlimited() -> Arc<ProcessBudget> {
        ProcessBudget::new(usize::MAX, None)
    }

    /// Sets a server's cap (`max_total_processes`); its count is kept.
    pub fn set_server_cap(&self, server: &Arc<str>, cap: usize) {
        self.state
            .lock()
            .per_server
            .entry(server.clone())
            .or_insert(ServerCount { live: 0, cap })
            .cap = cap;
    }

    /// Lets the budget drain `pool`'s idle processes when another caller needs room.
    pub fn register_evictable(&self, pool: &Arc<Pool>) {
        let mut state = self.state.lock();
        state.evictable.retain(|weak| weak.strong_count() > 0);
        state.evictable.push(Arc::downgrade(pool));
    }

    /// Processes alive now: the whole bridge's, and `server`'s.
    pub fn live(&self, server: &str) -> (usize, usize) {
        let state = self.state.lock();
        let own = state.per_server.get(server).map_or(0, |count| count.live);
        (state.total, own)
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Takes a place for one more process of `server`, or says which cap is full.
    pub(crate) fn reserve(self: &Arc<Self>, server: &Arc<str>) -> Result<BudgetSlot, BudgetCap> {
        let mut state = self.state.lock();
        let count = state
            .per_server
            .get(server)
            .copied()
            .unwrap_or(ServerCount {
                live: 0,
                cap: usize::MAX,
            });
        if count.live >= count.cap {
            return Err(BudgetCap::Server);
        }
        if state.total >= self.max_total {
            return Err(BudgetCap::Bridge);
        }
        state.total += 1;
        state
            .per_server
            .entry(server.clone())
            .or_insert(ServerCount {
                live: 0,
                cap: usize::MAX,
            })
            .live += 1;
        if let Some(gauge) = &self.gauge {
            gauge.set(state.total as i64);
        }
        Ok(BudgetSlot {
            budget: self.clone(),
            server: server.clone(),
        })
    }

    /// Drains the least recently used idle process of an evictable pool to make room at
    /// `cap` (within `server` for its own cap, anywhere for the bridge's). Returns whether
    /// room is coming: an eviction started now or one already under way.
    pub(crate) fn make_room(&self, server: &Arc<str>, cap: BudgetCap) -> bool {
        // The pools are collected under the lock and looked at after it: the last handle
        // on a pool may be one of these, and dropping a pool gives its places back, which
        // takes this lock.
        let pools: Vec<Arc<Pool>> = {
            let mut state = self.state.lock();
            let waiting = state
                .last_eviction
                .is_some_and(|began| began.elapsed() < EVICTION_PATIENCE);
            if state.pending_evictions > 0 && waiting {
                return true;
            }
            state.evictable.retain(|weak| weak.strong_count() > 0);
            state.evictable.iter().filter_map(Weak::upgrade).collect()
        };
        let victim = pools
            .iter()
            .filter(|pool| cap == BudgetCap::Bridge || pool.name() == server)
            .flat_map(|pool| {
                pool.processes
                    .read()
                    .iter()
                    .filter(|p| p.state() == ProcessState::Ready && p.inflight() == 0)
                    .map(|p| (p.idle_for(), p.clone(), pool.clone()))
                    .collect::<Vec<_>>()
            })
            .max_by_key(|(idle, _, _)| *idle);
        let Some((idle, process, pool)) = victim else {
            return false;
        };
        if !process.start_draining() {
            // It took a call since the scan; the next caller's scan tries again.
            return false;
        }
        {
            let mut state = self.state.lock();
            state.pending_evictions += 1;
            state.last_eviction = Some(Instant::now());
        }
        tracing::info!(
            server = %pool.name(), pid = process.pid(), idle_ms = idle.as_millis() as u64,
            cap = ?cap, "evicting the least recently used idle backend process to make room"
        );
        pool.metrics
            .pool_evictions_total
            .with_label_values(&[pool.name()])
            .inc();
        pool.wake_supervisor.notify_one();
        true
    }

    /// Wakes callers waiting at a cap to look for an idle process to evict again (a
    /// group's process just went idle).
    pub(crate) fn room_may_be_made(&self) {
        self.freed.notify_waiters();
    }

    /// Resolves when any process leaves the budget. Enable it before checking for room.
    pub(crate) fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }
}
