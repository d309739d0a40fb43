//! The lifecycle loop of one pool: prewarm, respawn with backoff, idle close,
//! recycling for age or memory, health-check pings, and process-state gauges.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use super::health::PoolSnapshot;
use super::pool::{PROCESS_EXIT_GRACE, Pool};
use super::process::{Process, ProcessEvent, ProcessState};
use super::procfs::ProcTable;
use mcp_bridge_jsonrpc as jsonrpc;

/// How often the supervisor looks at its processes when nothing wakes it sooner.
const TICK: Duration = Duration::from_millis(250);

/// Runs until the pool shuts down.
pub(super) async fn run(pool: Arc<Pool>, mut events: mpsc::UnboundedReceiver<ProcessEvent>) {
    let mut supervisor = Supervisor {
        pool,
        last_ping: HashMap::new(),
        prewarmed: false,
        usage_sampled: Instant::now(),
        usage: Arc::new(UsageSamples::default()),
        memory: MemoryRecycling::default(),
    };
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if supervisor.pool.shutting_down.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            Some(event) = events.recv() => supervisor.on_event(event),
            () = supervisor.pool.wake_supervisor.notified() => {}
            _ = ticker.tick() => {}
        }
        supervisor.maintain();
    }
}

struct Supervisor {
    pool: Arc<Pool>,
    last_ping: HashMap<u64, Instant>,
    prewarmed: bool,
    /// When the processes' usage was last sampled.
    usage_sampled: Instant,
    /// The samples taken off the runtime, shared with the blocking task taking them.
    usage: Arc<UsageSamples>,
    memory: MemoryRecycling,
}

/// What the blocking sampler shares with the supervisor.
#[derive(Default)]
struct UsageSamples {
    /// Set while a sample is being taken, so a slow `/proc` never queues a second one.
    running: AtomicBool,
    /// How many samples have been taken: the supervisor judges memory once per sample.
    taken: AtomicU64,
}

/// Memory recycling's state, by process ordinal: how many samples in a row each process
/// was over `max_process_memory`, which processes were already over it at their first
/// sample (a replacement would be too: the limit is below what the server needs, and
/// recycling cannot help), and the back-off that keeps a limit only a little above the
/// server's size from replacing processes over and over.
#[derive(Default)]
struct MemoryRecycling {
    samples_seen: u64,
    over: HashMap<u64, u32>,
    sampled: HashSet<u64>,
    born_over: HashSet<u64>,
    warned_born_over: bool,
    gap: Duration,
    last: Option<Instant>,
}

/// Clears [`UsageSamples::running`] when a sample ends, however it ends (a panic
/// included), so sampling never stops for good.
struct SampleInProgress(Arc<UsageSamples>);

impl Drop for SampleInProgress {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// A process is recycled for memory only after this many samples in a row over the
/// limit (one per second), so a moment's peak does not count as a leak.
const MEMORY_SAMPLES_OVER: u32 = 3;

/// A process recycled for memory younger than this means the limit is barely above what
/// the server needs rather than a slow leak: the next memory recycle waits twice as long
/// as the last wait (from [`MEMORY_BACKOFF_INITIAL`] to [`MEMORY_BACKOFF_MAX`]), and a
/// warning says so. An older one resets the wait. It is longer than the longest wait, so
/// a server that keeps passing the limit soon after starting stays backed off.
const MEMORY_YOUNG: Duration = Duration::from_secs(15 * 60);
const MEMORY_BACKOFF_INITIAL: Duration = Duration::from_secs(2);
const MEMORY_BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);

/// Why a process is recycled.
#[derive(Clone, Copy)]
enum Recycle {
    Lifetime,
    Memory,
}

/// How often each process's memory and CPU are read from `/proc`.
const USAGE_SAMPLE_EVERY: Duration = Duration::from_secs(1);

impl Supervisor {
    fn on_event(&mut self, event: ProcessEvent) {
        match event {
            ProcessEvent::Exited { ordinal, status } => self.on_exit(ordinal, &status),
            ProcessEvent::Notification { ordinal, message } => {
                self.on_notification(ordinal, message)
            }
        }
    }

    fn on_exit(&mut self, ordinal: u64, status: &str) {
        self.last_ping.remove(&ordinal);
        let removed = {
            let mut processes = self.pool.processes.write();
            let position = processes.iter().position(|p| p.ordinal == ordinal);
            position.map(|index| processes.remove(index))
        };
        // The process has exited: its place in the budget is free for another.
        self.pool.release_slot(ordinal);
        self.memory.over.remove(&ordinal);
        let Some(process) = removed else { return };
        process.forget_resident();
        // Without this process the pool may have nothing left that could serve.
        self.pool.publish_readiness();
        if process.retired.load(Ordering::Acquire)
            || self.pool.shutting_down.load(Ordering::Acquire)
        {
            return;
        }
        let name = self.pool.name();
        self.pool.restarts.fetch_add(1, Ordering::Relaxed);
        self.pool
            .metrics
            .pool_restarts_total
            .with_label_values(&[name])
            .inc();
        tracing::warn!(server = %name, pid = process.pid(), %status, "backend process exited unexpectedly; replacing it");
    }

    fn on_notification(&mut self, ordinal: u64, message: Value) {
        let method = jsonrpc::method(&message).unwrap_or_default();
        if method == "notifications/tools/list_changed" {
            self.refresh_catalog_from(ordinal);
        }
        if method == "notifications/message" {
            // A log line that several concurrent calls could have caused goes to the host log.
            let params = message.get("params").cloned().unwrap_or(Value::Null);
            tracing::info!(target: "backend", server = %self.pool.name(), %params, "server log message");
        }
        // Nobody listening is normal (no session has a GET stream open).
        let _ = self.pool.notifications.send(message);
    }

    fn refresh_catalog_from(&self, ordinal: u64) {
        let process = self
            .pool
            .processes
            .read()
            .iter()
            .find(|p| p.ordinal == ordinal)
            .cloned();
        let Some(process) = process else { return };
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.refresh_catalog(&process).await });
    }

    fn maintain(&mut self) {
        if self.pool.shutting_down.load(Ordering::Acquire) {
            return;
        }
        self.stop_drained();
        self.close_idle();
        self.sample_usage();
        self.recycle_old();
        self.recycle_large();
        self.probe_unresponsive();
        self.keep_minimum();
        self.health_check();
        self.publish_gauges();
    }

    /// Finishes draining processes once their last call is done.
    fn stop_drained(&self) {
        let drained: Vec<Arc<Process>> = self
            .pool
            .processes
            .read()
            .iter()
            .filter(|p| p.state() == ProcessState::Draining && p.inflight() == 0)
            .cloned()
            .collect();
        for process in drained {
            retire(&process);
            tokio::spawn(async move { process.shutdown(PROCESS_EXIT_GRACE).await });
        }
    }

    /// Closes processes idle longer than `idle_timeout`, down to `min_connections`.
    fn close_idle(&self) {
        let config = &self.pool.config.pool;
        let processes = self.pool.processes.read();
        let mut ready = processes
            .iter()
            .filter(|p| p.state() == ProcessState::Ready)
            .count();
        for process in processes.iter() {
            if ready <= config.min_connections {
                return;
            }
            if process.idle_for() >= config.idle_timeout && process.start_draining() {
                tracing::info!(server = %self.pool.name(), pid = process.pid(), "closing idle backend process");
                ready -= 1;
            }
        }
    }

    /// Replaces processes older than `max_lifetime`, the oldest first.
    fn recycle_old(&self) {
        let Some(max_lifetime) = self.pool.config.pool.max_lifetime else {
            return;
        };
        self.recycle(
            |process| process.age() >= max_lifetime,
            |process| u64::try_from(process.age().as_millis()).unwrap_or(u64::MAX),
            Recycle::Lifetime,
        );
    }

    /// Replaces a process whose tree's resident memory stayed over `max_process_memory`
    /// for [`MEMORY_SAMPLES_OVER`] samples in a row (the leak the seed guide warns about),
    /// the largest first, no sooner than the back-off allows.
    fn recycle_large(&mut self) {
        let Some(max_memory) = self.pool.config.pool.max_process_memory else {
            return;
        };
        let taken = self.usage.taken.load(Ordering::Acquire);
        if taken == self.memory.samples_seen {
            return;
        }
        self.memory.samples_seen = taken;
        let processes: Vec<Arc<Process>> = self.pool.processes.read().clone();
        let memory = &mut self.memory;
        let listed = |ordinal: &u64| processes.iter().any(|p| p.ordinal == *ordinal);
        memory.over.retain(|ordinal, _| listed(ordinal));
        memory.sampled.retain(listed);
        memory.born_over.retain(listed);
        for process in &processes {
            let resident = process.usage().resident_bytes;
            if resident == 0 {
                continue; // Not sampled yet.
            }
            let is_over = resident > max_memory;
            if memory.sampled.insert(process.ordinal) && is_over {
                memory.born_over.insert(process.ordinal);
                if !memory.warned_born_over {
                    memory.warned_born_over = true;
                    tracing::warn!(
                        server = %self.pool.name(), pid = process.pid(), resident_bytes = resident,
                        max_process_memory = max_memory,
                        "a backend process is past max_process_memory as soon as it starts: the \
                         limit is below what the server needs, so its processes are not recycled \
                         for memory (a new one would be just as large); raise max_process_memory \
                         above the server's working size"
                    );
                }
            }
            if is_over && !memory.born_over.contains(&process.ordinal) {
                *memory.over.entry(process.ordinal).or_default() += 1;
            } else {
                memory.over.remove(&process.ordinal);
            }
        }
        if self
            .memory
            .last
            .is_some_and(|last| last.elapsed() < self.memory.gap)
        {
            return;
        }
        let over = self.memory.over.clone();
        let recycled = self.recycle(
            |process| over.get(&process.ordinal).copied().unwrap_or(0) >= MEMORY_SAMPLES_OVER,
            |process| process.usage().resident_bytes,
            Recycle::Memory,
        );
        if let Some(process) = recycled {
            self.back_off_memory(&process, max_memory);
        }
    }

    /// After a memory recycle: a young process means the limit is too low for the server,
    /// so the next recycle waits longer (and the log says why); an old one was a leak.
    fn back_off_memory(&mut self, process: &Process, max_memory: u64) {
        let memory = &mut self.memory;
        memory.last = Some(Instant::now());
        let age = process.age();
        if age >= MEMORY_YOUNG {
            memory.gap = Duration::ZERO;
            return;
        }
        memory.gap = (memory.gap * 2).clamp(MEMORY_BACKOFF_INITIAL, MEMORY_BACKOFF_MAX);
        tracing::warn!(
            server = %self.pool.name(), pid = process.pid(),
            resident_bytes = process.usage().resident_bytes, max_process_memory = max_memory,
            age_s = age.as_secs(), next_recycle_after_s = memory.gap.as_secs(),
            "a backend process passed max_process_memory within 15 minutes of starting: it \
             leaks fast, or the limit is barely above what the server needs, so memory \
             recycling backs off; raise max_process_memory above the server's working size"
        );
    }

    /// Replaces one ready process that `due` picks (the greatest by `order`) and returns
    /// it once it drains: a replacement starts first when the pool is at its minimum and
    /// has room under `max_connections` (counting processes still draining), and the old
    /// process drains only once that is ready, so recycling never drops a call (a
    /// draining process finishes its calls). A pool at `max_connections` drains the old
    /// process first; its calls then wait for a fresh one.
    fn recycle(
        &self,
        due: impl Fn(&Process) -> bool,
        order: impl Fn(&Process) -> u64,
        why: Recycle,
    ) -> Option<Arc<Process>> {
        let processes = self.pool.processes.read();
        let ready = processes
            .iter()
            .filter(|p| p.state() == ProcessState::Ready)
            .count();
        let live = processes
            .iter()
            .filter(|p| p.state() != ProcessState::Dead)
            .count()
            + self.pool.starting.load(Ordering::Acquire);
        let chosen = processes
            .iter()
            .filter(|p| p.state() == ProcessState::Ready && due(p))
            .max_by_key(|p| order(p))?
            .clone();
        let min = self.pool.config.pool.min_connections.max(1);
        let max = self.pool.config.pool.max_connections;
        if ready > min || live >= max {
            if chosen.start_draining() {
                let name = self.pool.name();
                match why {
                    Recycle::Lifetime => {
                        tracing::info!(server = %name, pid = chosen.pid(), "recycling backend process after max_lifetime");
                    }
                    Recycle::Memory => {
                        let resident = chosen.usage().resident_bytes;
                        tracing::info!(server = %name, pid = chosen.pid(), resident_bytes = resident, "recycling backend process past max_process_memory");
                        self.pool
                            .metrics
                            .pool_memory_recycles_total
                            .with_label_values(&[name])
                            .inc();
                    }
                }
                return Some(chosen);
            }
        } else if self.pool.starting.load(Ordering::Acquire) == 0 && self.pool.spawn_allowed_now() {
            drop(processes);
            // At a budget cap the old process keeps serving; recycling waits for room.
            let _ = self.pool.spawn_process();
        }
        None
    }

    /// Samples every live process's tree's memory and CPU from `/proc`, once per
    /// [`USAGE_SAMPLE_EVERY`], on a blocking thread: reading `/proc` is file I/O, and a
    /// host with many processes makes it slow enough to matter to the runtime.
    fn sample_usage(&mut self) {
        if self.usage_sampled.elapsed() < USAGE_SAMPLE_EVERY
            || self.usage.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.usage_sampled = Instant::now();
        let processes: Vec<Arc<Process>> = self.pool.processes.read().clone();
        let samples = SampleInProgress(self.usage.clone());
        tokio::task::spawn_blocking(move || {
            let table = ProcTable::shared();
            for process in &processes {
                process.sample_usage(&table);
            }
            samples.0.taken.fetch_add(1, Ordering::AcqRel);
        });
    }

    /// Takes a process that looks hung out of service and probes it: one whose last
    /// `timeout_threshold` calls all timed out, or one that wrote nothing on stdout for
    /// `stall_timeout` while calls waited (a stopped or wedged process). It gets no new
    /// calls from now on, `keep_minimum` starts a replacement at once, and a ping bounded
    /// by `check_timeout` decides: answered, it serves again; not, it is killed.
    fn probe_unresponsive(&self) {
        let config = &self.pool.config;
        let threshold = config.health.timeout_threshold;
        let stall_timeout = config
            .health
            .stall_timeout
            .unwrap_or(config.pool.request_timeout);
        let processes: Vec<Arc<Process>> = self.pool.processes.read().clone();
        for process in processes {
            if process.state() != ProcessState::Ready {
                continue;
            }
            let timeouts = process.consecutive_timeouts();
            let silent = process.silent_with_pending().unwrap_or_default();
            let reason = if timeouts >= threshold {
                UnresponsiveReason::Timeouts
            } else if silent >= stall_timeout {
                UnresponsiveReason::Stalled
            } else {
                continue;
            };
            if !process.start_probing() {
                continue;
            }
            tracing::warn!(
                server = %self.pool.name(), pid = process.pid(), reason = reason.label(),
                consecutive_timeouts = timeouts, silent_ms = silent.as_millis() as u64,
                inflight = process.inflight(),
                "backend process looks hung; it takes no new calls until it answers a ping"
            );
            tokio::spawn(probe(self.pool.clone(), process, reason));
        }
    }

    /// Keeps `min_connections` processes alive, respecting reconnect backoff. With
    /// `enable_auto_reconnect = false` only the initial prewarm happens here; later
    /// processes start on demand when a call needs one.
    fn keep_minimum(&mut self) {
        let config = &self.pool.config.pool;
        if self.prewarmed && !config.enable_auto_reconnect {
            return;
        }
        let (live, probing) = {
            let processes = self.pool.processes.read();
            let in_state =
                |wanted: ProcessState| processes.iter().filter(|p| p.state() == wanted).count();
            (
                in_state(ProcessState::Ready),
                in_state(ProcessState::Probing),
            )
        };
        let starting = self.pool.starting.load(Ordering::Acquire);
        // A process being probed is replaced at once, but only within max_connections:
        // it may still come back, and the limit may be the server's own (a lock file).
        let room = config
            .max_connections
            .saturating_sub(live + probing + starting);
        let missing = config
            .min_connections
            .saturating_sub(live + starting)
            .min(if probing > 0 { room } else { usize::MAX });
        if missing > 0 && self.pool.spawn_allowed_now() {
            // After failures, probe with one process at a time instead of a burst.
            let failing = self.pool.spawn_history.lock().consecutive_failures > 0;
            let count = if failing {
                missing.min(1).saturating_sub(starting)
            } else {
                missing
            };
            for _ in 0..count {
                // At a cap, a server's minimum drains an idle isolated process to make room
                // (a shared server is required more often than one principal's process).
                if self.pool.spawn_process().is_err() {
                    self.pool.spawn_or_make_room();
                    break;
                }
            }
        }
        self.prewarmed = true;
    }

    /// Pings every ready process once per `health_check_interval`; a process that
    /// fails `unhealthy_threshold` pings in a row is killed and replaced.
    fn health_check(&mut self) {
        let config = &self.pool.config;
        if !config.pool.enable_health_checks {
            return;
        }
        let interval = config.pool.health_check_interval;
        let now = Instant::now();
        let processes: Vec<Arc<Process>> = self.pool.processes.read().clone();
        for process in processes {
            if process.state() != ProcessState::Ready {
                continue;
            }
            let last = *self.last_ping.entry(process.ordinal).or_insert(now);
            if now.duration_since(last) < interval {
                continue;
            }
            self.last_ping.insert(process.ordinal, now);
            tokio::spawn(ping(self.pool.clone(), process));
        }
    }

    fn publish_gauges(&self) {
        // An isolated server's counts (its groups', and its placeholder pool's zero) are
        // published by the server as a whole.
        if self.pool.group().is_some() || self.pool.config.isolation.is_isolated() {
            return;
        }
        let name = self.pool.name();
        let gauge = &self.pool.metrics.pool_processes;
        for (state, count) in self.pool.count_by_state() {
            gauge.with_label_values(&[name, state]).set(count as i64);
        }
        let report = self.pool.health_report();
        self.pool
            .metrics
            .health_status
            .with_label_values(&[name])
            .set(report.status.gauge_value());
    }
}

fn retire(process: &Process) {
    process.retired.store(true, Ordering::Release);
}

/// Why a process was taken out of service to be probed (the `reason` metric label).
#[derive(Debug, Clone, Copy)]
enum UnresponsiveReason {
    Timeouts,
    Stalled,
}

impl UnresponsiveReason {
    fn label(self) -> &'static str {
        match self {
            UnresponsiveReason::Timeouts => "timeouts",
            UnresponsiveReason::Stalled => "stalled",
        }
    }
}

/// Sends one ping bounded by `check_timeout`: the latency, or why it failed.
async fn send_ping(pool: &Pool, process: &Arc<Process>) -> Result<Duration, String> {
    let check_timeout = pool.config.health.check_timeout;
    let started = Instant::now();
    match tokio::time::timeout(check_timeout, process.request("ping", None)).await {
        Ok(Ok(response)) if response.get("result").is_some() => Ok(started.elapsed()),
        Ok(Ok(response)) => Err(format!(
            "ping answered with an error: {}",
            response.get("error").unwrap_or(&Value::Null)
        )),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "no ping response within check_timeout ({check_timeout:?})"
        )),
    }
}

/// Decides the fate of a process taken out of service by `probe_unresponsive`.
async fn probe(pool: Arc<Pool>, process: Arc<Process>, reason: UnresponsiveReason) {
    let outcome = send_ping(&pool, &process).await;
    let name = pool.name();
    let label = match &outcome {
        Ok(latency) => {
            if !process.end_probing() {
                return;
            }
            tracing::info!(
                server = %name, pid = process.pid(), reason = reason.label(), latency_ms = latency.as_millis() as u64,
                "backend process answered its probe; it takes calls again"
            );
            "recovered"
        }
        Err(error) => {
            if process.state() != ProcessState::Probing {
                return;
            }
            tracing::warn!(
                server = %name, pid = process.pid(), reason = reason.label(), %error,
                "backend process did not answer its probe; killing and replacing it"
            );
            process.kill();
            "replaced"
        }
    };
    pool.health.record_ping(outcome);
    pool.metrics
        .pool_unresponsive_total
        .with_label_values(&[name, reason.label(), label])
        .inc();
    pool.wake_supervisor.notify_one();
}

async fn ping(pool: Arc<Pool>, process: Arc<Process>) {
    let health = &pool.config.health;
    let outcome = send_ping(&pool, &process).await;
    let failed = outcome.is_err();
    pool.health.record_ping(outcome);
    if !failed {
        process
            .consecutive_ping_failures
            .store(0, Ordering::Release);
        return;
    }
    let failures = process
        .consecutive_ping_failures
        .fetch_add(1, Ordering::AcqRel)
        + 1;
    if failures >= health.unhealthy_threshold {
        tracing::warn!(
            server = %pool.name(), pid = process.pid(), failures,
            "backend process failed its health checks; killing and replacing it"
        );
        process.kill();
    }
}

impl Pool {
    /// The `/health` judgement for this server.
    pub fn health_report(&self) -> super::health::HealthReport {
        // Read the process list before taking the history lock: `stats` takes them in
        // that order too, and one order everywhere rules out a deadlock.
        let ready = self.ready_processes();
        let consecutive_spawn_failures = self.spawn_history.lock().consecutive_failures;
        self.health.report(PoolSnapshot {
            ready,
            starting: self.starting.load(Ordering::Acquire),
            min_connections: self.config.pool.min_connections,
            consecutive_spawn_failures,
            max_reconnect_attempts: self.config.pool.max_reconnect_attempts,
        })
    }
}
