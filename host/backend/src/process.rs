//! One backend server process: spawn, handshake, multiplexed calls by JSON-RPC id, and teardown.
//!
//! Three tasks serve each process: a writer that owns the child's stdin, a reader that
//! owns its stdout and routes every line (responses to their caller by id, progress to
//! the caller that asked for it, everything else to the pool), and a reaper that owns
//! the `Child` and reports its exit. Callers never touch the pipes.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::error::BackendError;
use super::framing::{Frame, LineReader};
use super::procfs::ProcTable;
use super::usage::{self, TreeRoot, Usage};
use crate::PoolMetrics;
use mcp_bridge_config::ServerConfig;
use mcp_bridge_jsonrpc::{self as jsonrpc, Kind, code};

/// Protocol versions the bridge speaks to servers over stdio, newest first. The
/// handshake offers the newest and falls back one by one if a server refuses it.
pub const STDIO_PROTOCOL_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Capacity of the queue of lines waiting to be written to one child's stdin. A full
/// queue makes callers wait, which is the backpressure a slow child deserves.
const OUTBOX_CAPACITY: usize = 1024;

/// Capacity of one call's notification channel. A server that floods a caller with
/// progress beyond this loses the excess (counted), never the final response.
const CALL_EVENTS_CAPACITY: usize = 256;

/// How long the reader waits for the reaper to learn the exit status before failing
/// in-flight calls, so the error can say how the process ended.
const EXIT_STATUS_GRACE: Duration = Duration::from_millis(50);

/// Lifecycle state of a process, as seen by the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProcessState {
    /// Serving calls.
    Ready = 1,
    /// Finishing its in-flight calls; takes no new ones (idle close, max_lifetime, shutdown).
    Draining = 2,
    /// Exited or being killed.
    Dead = 3,
    /// Suspected of hanging (request timeouts in a row, or silent while calls wait):
    /// takes no new calls while a ping decides whether it serves again or is replaced.
    Probing = 4,
}

/// What the server said about itself in the `initialize` handshake.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub protocol_version: String,
    pub capabilities: Value,
    pub server_info: Value,
    pub instructions: Option<Value>,
}

/// Something a process tells its pool outside of any call.
#[derive(Debug)]
pub enum ProcessEvent {
    /// A notification no single call owns (list_changed, resources/updated, unattributed logs).
    Notification { ordinal: u64, message: Value },
    /// The process is gone.
    Exited { ordinal: u64, status: String },
}

/// Something a call receives before its response.
#[derive(Debug)]
pub enum CallEvent {
    /// A notification about this call (progress, or a log line while it was the only call).
    Notification(Value),
    /// A request from the server that only this call's client can answer (sampling,
    /// elicitation, roots). Answer it with [`Process::send_client_response`].
    ServerRequest(Value),
}

struct Pending {
    response: oneshot::Sender<Result<Value, BackendError>>,
    events: Option<mpsc::Sender<CallEvent>>,
    /// The caller's own progress token, restored on notifications before they leave.
    client_progress_token: Option<Value>,
    /// Milliseconds since the process started when the request was queued for stdin.
    sent_ms: u64,
}

enum Outgoing {
    Line(Vec<u8>),
    /// Flush and close stdin: the polite way to ask a stdio server to exit.
    Close,
}

/// How long a supervisor asked to stop gets to end its tree and exit before the
/// bridge kills its process group instead (its own teardown is bounded by 5 s).
const SUPERVISOR_STOP_BOUND: Duration = Duration::from_secs(6);

/// The variables a service manager sets for the bridge's own process only.
const SERVICE_MANAGER_VARIABLES: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// A running backend server process.
pub struct Process {
    pub ordinal: u64,
    /// The server command's own process: the supervisor's child when supervised
    /// (known once the handshake is done; the supervisor's pid until then).
    pid: AtomicU32,
    /// The process the bridge spawned, which leads the process group: the supervisor
    /// when supervised, else the server itself.
    spawned_pid: u32,
    /// Whether a supervisor (`mcp-bridge __supervise`) owns the server's tree.
    supervised: bool,
    server: Arc<str>,
    state: AtomicU8,
    inflight: AtomicUsize,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    outbox: mpsc::Sender<Outgoing>,
    kill: Notify,
    exit_status: watch::Receiver<Option<String>>,
    started_at: Instant,
    /// Milliseconds since `started_at` when the process last finished a call.
    last_active_ms: AtomicU64,
    /// Milliseconds since `started_at` when the reader last got anything from stdout.
    last_read_ms: AtomicU64,
    pub consecutive_ping_failures: AtomicU32,
    /// Calls abandoned at `request_timeout` since the process last answered one.
    consecutive_timeouts: AtomicU32,
    /// Set when the pool itself stops this process (idle, recycled, failed health
    /// checks), so its exit is not counted as a crash.
    pub retired: AtomicBool,
    identity: parking_lot::RwLock<Option<ServerIdentity>>,
    metrics: Arc<PoolMetrics>,
    /// The latest sample of its tree's memory and CPU (zero until the supervisor takes
    /// one), already added to the server's gauges.
    usage: Mutex<Usage>,
    /// The spawned process's start time (clock ticks since boot) at its first sample, 0
    /// before: a later sample whose root started at another time is another process that
    /// reuses the pid, and is ignored.
    usage_root_started: AtomicU64,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("server", &self.server)
            .field("ordinal", &self.ordinal)
            .field("pid", &self.pid())
            .field("state", &self.state())
            .field("inflight", &self.inflight())
            .finish()
    }
}

impl Process {
    /// Spawns the server, runs the `initialize` handshake and returns a ready process.
    /// The whole sequence is bounded by the server's `connection_timeout`.
    pub async fn start(
        config: &ServerConfig,
        ordinal: u64,
        events: mpsc::UnboundedSender<ProcessEvent>,
        metrics: Arc<PoolMetrics>,
    ) -> Result<Arc<Process>, BackendError> {
        let server: Arc<str> = Arc::from(config.name.as_str());
        let process = spawn(config, ordinal, events, metrics)?;
        // Only an exclusive process can route a server's sampling or elicitation request
        // to the one client whose call caused it, so only then are they offered.
        let capabilities = if config.exclusive {
            json!({ "sampling": {}, "elicitation": {} })
        } else {
            json!({})
        };
        let handshake = process.handshake(capabilities);
        match tokio::time::timeout(config.pool.connection_timeout, handshake).await {
            Ok(Ok(())) => {
                process.learn_server_pid();
                Ok(process)
            }
            Ok(Err(error)) => {
                process.kill();
                Err(error)
            }
            Err(_) => {
                process.kill();
                Err(BackendError::Handshake {
                    server,
                    reason: format!(
                        "no initialize response within connection_timeout ({:?})",
                        config.pool.connection_timeout
                    ),
                })
            }
        }
    }

    async fn handshake(self: &Arc<Self>, capabilities: Value) -> Result<(), BackendError> {
        let mut last_refusal = String::new();
        for version in STDIO_PROTOCOL_VERSIONS {
            let params = json!({
                "protocolVersion": version,
                "capabilities": capabilities,
                "clientInfo": { "name": "mcp-bridge", "version": env!("CARGO_PKG_VERSION") },
            });
            let response = self.request("initialize", Some(params)).await?;
            let Some(result) = response.get("result") else {
                last_refusal = response
                    .get("error")
                    .map(Value::to_string)
                    .unwrap_or_default();
                continue;
            };
            let negotiated = result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !STDIO_PROTOCOL_VERSIONS.contains(&negotiated) {
                return Err(BackendError::Handshake {
                    server: self.server.clone(),
                    reason: format!(
                        "server answered protocol version '{negotiated}', which mcp-bridge does not speak \
                         (it speaks {})",
                        STDIO_PROTOCOL_VERSIONS.join(", ")
                    ),
                });
            }
            *self.identity.write() = Some(ServerIdentity {
                protocol_version: negotiated.to_owned(),
                capabilities: result
                    .get("capabilities")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
                server_info: result
                    .get("serverInfo")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
                instructions: result.get("instructions").cloned(),
            });
            self.notify("notifications/initialized", None).await?;
            return Ok(());
        }
        Err(BackendError::Handshake {
            server: self.server.clone(),
            reason: format!("server refused every protocol version; last error: {last_refusal}"),
        })
    }

    pub fn server(&self) -> &Arc<str> {
        &self.server
    }

    /// The server command's own process id (what `/admin/stats` shows and logs name).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Acquire)
    }

    /// The supervisor's process id, when the server runs under one.
    pub fn supervisor_pid(&self) -> Option<u32> {
        self.supervised.then_some(self.spawned_pid)
    }

    /// Replaces the supervisor's pid by its child's, the server command itself, once the
    /// handshake proved that child runs. Left as is if it cannot be found.
    fn learn_server_pid(&self) {
        if !self.supervised {
            return;
        }
        if let Some(child) = super::orphan::first_child(self.spawned_pid) {
            self.pid.store(child, Ordering::Release);
        }
    }

    pub fn identity(&self) -> Option<ServerIdentity> {
        self.identity.read().clone()
    }

    pub fn state(&self) -> ProcessState {
        match self.state.load(Ordering::Acquire) {
            1 => ProcessState::Ready,
            2 => ProcessState::Draining,
            4 => ProcessState::Probing,
            _ => ProcessState::Dead,
        }
    }

    /// Moves a ready process to probing; returns false if it was not ready.
    pub fn start_probing(&self) -> bool {
        self.swap_state(ProcessState::Ready, ProcessState::Probing)
    }

    /// Puts a probed process that answered back into service and forgets its timeouts;
    /// returns false if it was no longer probing (killed or shut down meanwhile).
    pub fn end_probing(&self) -> bool {
        self.consecutive_timeouts.store(0, Ordering::Release);
        self.swap_state(ProcessState::Probing, ProcessState::Ready)
    }

    fn swap_state(&self, from: ProcessState, to: ProcessState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Calls abandoned at `request_timeout` since the process last answered one.
    pub fn consecutive_timeouts(&self) -> u32 {
        self.consecutive_timeouts.load(Ordering::Acquire)
    }

    /// How long the process has written nothing on stdout while at least one request
    /// waited for it: measured from its last output or from when the oldest waiting
    /// request was sent, whichever is later. `None` when nothing is waiting.
    pub fn silent_with_pending(&self) -> Option<Duration> {
        let oldest_sent = self.pending.lock().values().map(|p| p.sent_ms).min()?;
        let since = oldest_sent.max(self.last_read_ms.load(Ordering::Acquire));
        Some(Duration::from_millis(
            self.elapsed_ms().saturating_sub(since),
        ))
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started_at.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Moves a ready process to draining; returns false if it was not ready.
    pub fn start_draining(&self) -> bool {
        self.swap_state(ProcessState::Ready, ProcessState::Draining)
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Reserves a call slot if the process is ready and below `max_inflight`.
    pub fn try_reserve(&self, max_inflight: usize) -> bool {
        let mut current = self.inflight.load(Ordering::Acquire);
        loop {
            if current >= max_inflight || self.state() != ProcessState::Ready {
                return false;
            }
            match self.inflight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Releases a slot taken by [`Process::try_reserve`].
    pub fn release(&self) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
        let elapsed = self.started_at.elapsed().as_millis() as u64;
        self.last_active_ms.store(elapsed, Ordering::Release);
    }

    pub fn age(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// How long the process has had no call in flight (zero while it has one).
    pub fn idle_for(&self) -> Duration {
        if self.inflight() > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Acquire));
        self.started_at.elapsed().saturating_sub(last)
    }

    /// Sends a request and returns a handle that yields its notifications and response.
    /// `message` is the caller's full JSON-RPC request; its id is replaced by one unique
    /// to this process, and a progress token, if any, by one the bridge can route back.
    pub async fn start_call(
        self: &Arc<Self>,
        mut message: Value,
        want_events: bool,
    ) -> Result<InflightCall, BackendError> {
        if self.state() == ProcessState::Dead {
            return Err(self.exited_error());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let client_progress_token = assign_call_id(&mut message, id);
        let (response_tx, response_rx) = oneshot::channel();
        let (events_tx, events_rx) = if want_events {
            let (tx, rx) = mpsc::channel(CALL_EVENTS_CAPACITY);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.pending.lock().insert(
            id,
            Pending {
                response: response_tx,
                events: events_tx,
                client_progress_token,
                sent_ms: self.elapsed_ms(),
            },
        );
        let call = InflightCall {
            process: self.clone(),
            id,
            response: response_rx,
            events: events_rx,
            finished: false,
        };
        let line = encode_line(&message);
        if self.outbox.send(Outgoing::Line(line)).await.is_err() {
            // The writer is gone, so the process is dying; the reader will fail the call.
            self.fail_pending(id, self.exited_error());
        }
        Ok(call)
    }

    /// Sends a request the bridge itself needs (initialize, ping, tools/list) and waits
    /// for its response message, which may be a JSON-RPC error.
    pub async fn request(
        self: &Arc<Self>,
        method: &str,
        params: Option<Value>,
    ) -> Result<Value, BackendError> {
        let mut message = json!({ "jsonrpc": "2.0", "id": 0, "method": method });
        if let (Some(params), Some(object)) = (params, message.as_object_mut()) {
            object.insert("params".into(), params);
        }
        let mut call = self.start_call(message, false).await?;
        call.response().await
    }

    /// Sends a notification to the server.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), BackendError> {
        let line = encode_line(&jsonrpc::notification(method, params));
        self.outbox
            .send(Outgoing::Line(line))
            .await
            .map_err(|_| self.exited_error())
    }

    /// Delivers a client's answer to a server-to-client request (sampling, elicitation).
    pub async fn send_client_response(&self, response: &Value) -> Result<(), BackendError> {
        self.outbox
            .send(Outgoing::Line(encode_line(response)))
            .await
            .map_err(|_| self.exited_error())
    }

    /// Closes stdin and gives the server `grace` to exit on its own before it is killed.
    pub async fn shutdown(&self, grace: Duration) {
        self.state
            .store(ProcessState::Dead as u8, Ordering::Release);
        // A full outbox means the child is not reading; it will be killed below anyway.
        let _ = self.outbox.try_send(Outgoing::Close);
        let mut status = self.exit_status.clone();
        let exited = status.wait_for(Option::is_some);
        if tokio::time::timeout(grace, exited).await.is_err() {
            self.kill();
        }
    }

    /// Kills the process (and its process group) at once.
    pub fn kill(&self) {
        self.state
            .store(ProcessState::Dead as u8, Ordering::Release);
        self.kill.notify_one();
    }

    fn exited_error(&self) -> BackendError {
        let status = self
            .exit_status
            .borrow()
            .clone()
            .unwrap_or_else(|| "stdout closed".to_owned());
        BackendError::ProcessExited {
            server: self.server.clone(),
            status,
        }
    }

    fn fail_pending(&self, id: u64, error: BackendError) {
        if let Some(pending) = self.pending.lock().remove(&id) {
            let _ = pending.response.send(Err(error));
        }
    }

    /// Fails every in-flight call: the process is gone and none of them will be answered.
    fn fail_all_pending(&self) {
        let drained: Vec<Pending> = self
            .pending
            .lock()
            .drain()
            .map(|(_, pending)| pending)
            .collect();
        for pending in drained {
            let _ = pending.response.send(Err(self.exited_error()));
        }
    }

    /// Queues a line without waiting; when the queue is full, a task of its own waits.
    fn send_detached(self: &Arc<Self>, line: Vec<u8>) {
        if let Err(mpsc::error::TrySendError::Full(outgoing)) =
            self.outbox.try_send(Outgoing::Line(line))
        {
            let process = self.clone();
            tokio::spawn(async move {
                // A closed queue means the process is gone: nobody is left to answer.
                let _ = process.outbox.send(outgoing).await;
            });
        }
    }

    /// Abandons a call: forgets its id and tells the server to stop working on it.
    fn cancel(self: &Arc<Self>, id: u64, reason: &str) {
        if self.pending.lock().remove(&id).is_none() {
            return;
        }
        let params = json!({ "requestId": id, "reason": reason });
        let line = encode_line(&jsonrpc::notification(
            "notifications/cancelled",
            Some(params),
        ));
        // Its eventual response, if any, is counted as an unknown id.
        self.send_detached(line);
    }

    fn count_error(&self, kind: &str) {
        self.metrics
            .backend_errors_total
            .with_label_values(&[&self.server, kind])
            .inc();
    }
}

/// A call in flight on one process. Dropping it before its response arrives cancels it
/// on the server (`notifications/cancelled`), which is how a client that hangs up or a
/// timeout stops the work it started.
pub struct InflightCall {
    process: Arc<Process>,
    id: u64,
    response: oneshot::Receiver<Result<Value, BackendError>>,
    events: Option<mpsc::Receiver<CallEvent>>,
    finished: bool,
}

/// The next thing a call produced.
pub enum CallStep {
    Event(CallEvent),
    Done(Result<Value, BackendError>),
}

impl InflightCall {
    pub fn process(&self) -> &Arc<Process> {
        &self.process
    }

    /// Waits for the next event or the response, events first so a response never
    /// overtakes the progress that preceded it.
    pub async fn next(&mut self) -> CallStep {
        if self.finished {
            return CallStep::Done(Err(self.process.exited_error()));
        }
        if let Some(events) = self.events.as_mut() {
            tokio::select! {
                biased;
                Some(event) = events.recv() => return CallStep::Event(event),
                response = &mut self.response => {
                    self.finished = true;
                    return CallStep::Done(flatten(response, &self.process));
                }
            }
        }
        CallStep::Done(self.response().await)
    }

    /// Waits for the response, discarding any events.
    pub async fn response(&mut self) -> Result<Value, BackendError> {
        let response = (&mut self.response).await;
        self.finished = true;
        flatten(response, &self.process)
    }

    /// Cancels the call on the server now, with a reason it will log.
    pub fn cancel(mut self, reason: &str) {
        self.finished = true;
        self.process.cancel(self.id, reason);
    }

    /// Cancels a call that got no response within `request_timeout`, and counts the
    /// timeout against its process: after `health.timeout_threshold` in a row the pool
    /// stops giving it calls and probes it.
    pub fn time_out(self) {
        self.process
            .consecutive_timeouts
            .fetch_add(1, Ordering::AcqRel);
        self.cancel("mcp-bridge: request_timeout elapsed");
    }
}

impl Process {
    /// The latest sample of what the process uses.
    pub fn usage(&self) -> Usage {
        *self.usage.lock()
    }

    /// Measures the process's tree in `table` (one `/proc` read shared by every process)
    /// and records it. A dead process, or a pid that now names another process, is left
    /// as it was.
    pub(crate) fn sample_usage(&self, table: &ProcTable) {
        if self.state() == ProcessState::Dead {
            return;
        }
        let started = self.usage_root_started.load(Ordering::Acquire);
        let root = TreeRoot {
            pid: self.spawned_pid,
            is_supervisor: self.supervised,
            started: (started != 0).then_some(started),
        };
        let Some((usage, started)) = usage::of_tree(table, root) else {
            return;
        };
        self.usage_root_started.store(started, Ordering::Release);
        self.record_usage(usage);
    }

    /// Takes a process that has exited out of its server's resident memory at once (its
    /// CPU time stays counted), rather than when the last reference to it goes.
    pub(crate) fn forget_resident(&self) {
        let cpu_seconds = self.usage().cpu_seconds;
        self.record_usage(Usage {
            resident_bytes: 0,
            cpu_seconds,
        });
    }

    /// Records a new sample and moves the server's gauges and counters by what changed.
    fn record_usage(&self, usage: Usage) {
        let before = std::mem::replace(&mut *self.usage.lock(), usage);
        let server: &str = &self.server;
        self.metrics
            .backend_resident_bytes
            .with_label_values(&[server])
            .add(usage.resident_bytes as i64 - before.resident_bytes as i64);
        let cpu = usage.cpu_seconds - before.cpu_seconds;
        if cpu > 0.0 {
            self.metrics
                .backend_cpu_seconds_total
                .with_label_values(&[server])
                .inc_by(cpu);
        }
    }
}

impl Drop for Process {
    /// A process that is gone no longer counts in its server's resident memory.
    fn drop(&mut self) {
        let usage = *self.usage.lock();
        if usage.resident_bytes > 0 {
            let server: &str = &self.server;
            self.metrics
                .backend_resident_bytes
                .with_label_values(&[server])
                .sub(usage.resident_bytes as i64);
        }
    }
}

impl Drop for InflightCall {
    fn drop(&mut self) {
        if !self.finished {
            self.process.cancel(self.id, "the client went away");
        }
    }
}

fn flatten(
    response: Result<Result<Value, BackendError>, oneshot::error::RecvError>,
    process: &Process,
) -> Result<Value, BackendError> {
    response.unwrap_or_else(|_| Err(process.exited_error()))
}

/// Gives a client's request the id `id`, unique to this process, in place of the client's own,
/// and the same id as its progress token when the client asked for progress, so the response
/// and the progress notifications find their call. Returns the client's progress token, which
/// is put back on each notification; the front keeps the client's id and puts it back on the
/// response.
pub fn assign_call_id(message: &mut Value, id: u64) -> Option<Value> {
    if let Some(object) = message.as_object_mut() {
        object.insert("id".into(), json!(id));
    }
    jsonrpc::replace_progress_token(message, json!(id))
}

/// The id of the call a server's response answers: one [`assign_call_id`] gave out, or `None`
/// when the server answered with an id the bridge never uses (not a whole number).
pub fn answered_call_id(response: &Value) -> Option<u64> {
    response.get("id").and_then(Value::as_u64)
}

/// Frames a message for a child's stdin: compact JSON and a newline.
pub fn encode_line(message: &Value) -> Vec<u8> {
    // Serializing a Value cannot fail: its map keys are always strings.
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

fn spawn(
    config: &ServerConfig,
    ordinal: u64,
    events: mpsc::UnboundedSender<ProcessEvent>,
    metrics: Arc<PoolMetrics>,
) -> Result<Arc<Process>, BackendError> {
    let server: Arc<str> = Arc::from(config.name.as_str());
    let spawn_error = |source: std::io::Error| BackendError::Spawn {
        server: server.clone(),
        command: config.command.clone(),
        source: Arc::new(source),
    };
    let supervisor = super::orphan::supervisor_program();
    let mut command = match supervisor {
        Some(program) => {
            let path_var = config
                .env
                .iter()
                .find(|(key, _)| key == "PATH")
                .map(|(_, value)| value.expose());
            super::orphan::check_program(&config.command, path_var).map_err(spawn_error)?;
            let mut command = Command::new(program);
            command
                .arg(super::subreaper::SUBCOMMAND)
                .arg(&config.command);
            command
        }
        None => Command::new(&config.command),
    };
    command.args(&config.args);
    // The sources of per-principal secrets are the bridge's own variables; no backend
    // inherits them (a principal's value reaches only its process, through `env`).
    for variable in &config.env_removed {
        command.env_remove(variable);
    }
    // What systemd gives the bridge itself (the notify socket, the watchdog, sockets it
    // passed) is not a backend's: a backend that wrote to the socket would speak for the
    // bridge. A server's own `env` may still set any of them.
    for variable in SERVICE_MANAGER_VARIABLES {
        command.env_remove(variable);
    }
    command
        .envs(config.env.iter().map(|(key, value)| (key, value.expose())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A supervisor must not be SIGKILLed when its `Child` is dropped (at runtime
        // shutdown): that would skip its teardown. Its death signal ends it instead.
        .kill_on_drop(supervisor.is_none());
    if let Some(cwd) = &config.cwd {
        command.current_dir(cwd);
    }
    let death_signal = if supervisor.is_some() {
        libc::SIGTERM
    } else {
        libc::SIGKILL
    };
    super::orphan::die_with_parent(&mut command, death_signal);
    let mut child = command.spawn().map_err(spawn_error)?;
    let pid = child.id().unwrap_or_default();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(spawn_error(std::io::Error::other(
            "child pipes were not created",
        )));
    };
    let (outbox_tx, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
    let (status_tx, status_rx) = watch::channel(None);
    let process = Arc::new(Process {
        ordinal,
        pid: AtomicU32::new(pid),
        spawned_pid: pid,
        supervised: supervisor.is_some(),
        server: server.clone(),
        state: AtomicU8::new(ProcessState::Ready as u8),
        inflight: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        pending: Mutex::new(HashMap::new()),
        outbox: outbox_tx,
        kill: Notify::new(),
        exit_status: status_rx,
        started_at: Instant::now(),
        last_active_ms: AtomicU64::new(0),
        last_read_ms: AtomicU64::new(0),
        consecutive_ping_failures: AtomicU32::new(0),
        consecutive_timeouts: AtomicU32::new(0),
        usage: Mutex::new(Usage::default()),
        usage_root_started: AtomicU64::new(0),
        retired: AtomicBool::new(false),
        identity: parking_lot::RwLock::new(None),
        metrics,
    });
    tracing::debug!(server = %server, pid, ordinal, supervised = supervisor.is_some(), "spawned backend process");
    tokio::spawn(write_loop(stdin, outbox_rx, server.clone()));
    tokio::spawn(read_loop(
        process.clone(),
        stdout,
        config.max_line_bytes,
        events.clone(),
    ));
    tokio::spawn(super::stderr::log_lines(
        stderr,
        process.clone(),
        config.max_line_bytes,
    ));
    tokio::spawn(reap(process.clone(), child, status_tx, events));
    Ok(process)
}

async fn write_loop(stdin: ChildStdin, mut outbox: mpsc::Receiver<Outgoing>, server: Arc<str>) {
    let mut writer = BufWriter::new(stdin);
    while let Some(outgoing) = outbox.recv().await {
        let Outgoing::Line(line) = outgoing else {
            break;
        };
        if let Err(error) = writer.write_all(&line).await {
            tracing::debug!(server = %server, %error, "backend stdin closed");
            return;
        }
        // Flush only once the queue is momentarily empty, so a burst of calls costs one
        // write syscall rather than one each.
        if outbox.is_empty()
            && let Err(error) = writer.flush().await
        {
            tracing::debug!(server = %server, %error, "backend stdin closed");
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

async fn read_loop(
    process: Arc<Process>,
    stdout: ChildStdout,
    max_line_bytes: usize,
    events: mpsc::UnboundedSender<ProcessEvent>,
) {
    let mut reader = LineReader::new(BufReader::with_capacity(64 * 1024, stdout), max_line_bytes);
    loop {
        let frame = reader.next_frame().await;
        process
            .last_read_ms
            .store(process.elapsed_ms(), Ordering::Release);
        match frame {
            Ok(Frame::Line(line)) => route_line(&process, &line, &events),
            Ok(Frame::TooLong { length, head, tail }) => {
                process.count_error("oversized_line");
                tracing::warn!(
                    server = %process.server, pid = process.pid(), length, max_line_bytes,
                    "dropped a line from the server longer than max_line_bytes"
                );
                // If it was a response, fail its call now rather than let it time out.
                if let Some(id) = super::framing::find_numeric_id(&head, &tail) {
                    let error = BackendError::ResponseTooLarge {
                        server: process.server.clone(),
                        length,
                        limit: max_line_bytes,
                    };
                    process.fail_pending(id, error);
                }
            }
            Ok(Frame::Eof) => break,
            Err(error) => {
                tracing::warn!(server = %process.server, pid = process.pid(), %error, "reading server stdout failed");
                break;
            }
        }
    }
    process
        .state
        .store(ProcessState::Dead as u8, Ordering::Release);
    let mut status = process.exit_status.clone();
    let _ = tokio::time::timeout(EXIT_STATUS_GRACE, status.wait_for(Option::is_some)).await;
    process.fail_all_pending();
    // Without stdout the process is useless even if it has not exited yet.
    process.kill();
}

fn route_line(process: &Arc<Process>, line: &[u8], events: &mpsc::UnboundedSender<ProcessEvent>) {
    let message: Value = match serde_json::from_slice(line) {
        Ok(message) => message,
        Err(error) => {
            process.count_error("non_json");
            let preview = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
            tracing::warn!(server = %process.server, pid = process.pid(), %error, line = %preview, "server wrote a line that is not JSON");
            return;
        }
    };
    match jsonrpc::classify(&message) {
        Some(Kind::Response) => route_response(process, message),
        Some(Kind::Notification) => route_notification(process, message, events),
        Some(Kind::Request) => route_server_request(process, message),
        None => {
            process.count_error("non_jsonrpc");
            tracing::warn!(server = %process.server, pid = process.pid(), "server wrote JSON that is not a JSON-RPC message");
        }
    }
}

fn route_response(process: &Process, message: Value) {
    let pending = answered_call_id(&message).and_then(|id| process.pending.lock().remove(&id));
    match pending {
        Some(pending) => {
            process.consecutive_timeouts.store(0, Ordering::Release);
            let _ = pending.response.send(Ok(message));
        }
        None => {
            // Late answers to cancelled or timed-out calls land here too.
            process.count_error("unknown_id");
            let id = message.get("id").cloned().unwrap_or(Value::Null);
            tracing::debug!(server = %process.server, %id, "response to an unknown or cancelled request id");
        }
    }
}

fn route_notification(
    process: &Process,
    mut message: Value,
    events: &mpsc::UnboundedSender<ProcessEvent>,
) {
    let method = jsonrpc::method(&message).unwrap_or_default();
    let target = match method {
        "notifications/progress" => {
            let token = message
                .get("params")
                .and_then(|p| p.get("progressToken"))
                .and_then(Value::as_u64);
            token.and_then(|id| {
                let pending = process.pending.lock();
                let call = pending.get(&id)?;
                Some((call.events.clone()?, call.client_progress_token.clone()))
            })
        }
        "notifications/message" => sole_caller(process).map(|events| (events, None)),
        "notifications/cancelled" => {
            tracing::debug!(server = %process.server, "server cancelled a request");
            return;
        }
        _ => None,
    };
    let Some((call_events, client_token)) = target else {
        let _ = events.send(ProcessEvent::Notification {
            ordinal: process.ordinal,
            message,
        });
        return;
    };
    if let Some(token) = client_token
        && let Some(slot) = message
            .get_mut("params")
            .and_then(|p| p.get_mut("progressToken"))
    {
        *slot = token;
    }
    if call_events
        .try_send(CallEvent::Notification(message))
        .is_err()
    {
        process.count_error("notification_dropped");
    }
}

/// The events channel of the only call in flight, if exactly one is. A log line or a
/// server request carries no call id, so it can only be attributed when unambiguous;
/// `exclusive = true` guarantees that.
fn sole_caller(process: &Process) -> Option<mpsc::Sender<CallEvent>> {
    let pending = process.pending.lock();
    let mut callers = pending.values().filter_map(|call| call.events.as_ref());
    let first = callers.next()?.clone();
    callers.next().is_none().then_some(first)
}

/// Routes a request from the server. The reader never waits for the writer: a child
/// blocked writing stdout while the writer waits on its full stdin would deadlock both.
fn route_server_request(process: &Arc<Process>, message: Value) {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let method = jsonrpc::method(&message).unwrap_or_default().to_owned();
    if method == "ping" {
        process.send_detached(encode_line(&jsonrpc::result_response(id, json!({}))));
        return;
    }
    if let Some(caller) = sole_caller(process)
        && caller.try_send(CallEvent::ServerRequest(message)).is_ok()
    {
        return;
    }
    let refusal = jsonrpc::error_response(
        id,
        code::METHOD_NOT_FOUND,
        format!(
            "mcp-bridge cannot route the server request '{method}' to a client: several calls share this \
             process; set `exclusive = true` for server '{}' so each process serves one call at a time",
            process.server
        ),
        None,
    );
    process.send_detached(encode_line(&refusal));
}

async fn reap(
    process: Arc<Process>,
    mut child: Child,
    status_tx: watch::Sender<Option<String>>,
    events: mpsc::UnboundedSender<ProcessEvent>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        () = process.kill.notified() => stop_tree(&process, &mut child).await,
    };
    let status = match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("wait failed: {error}"),
    };
    process
        .state
        .store(ProcessState::Dead as u8, Ordering::Release);
    // The second line: whatever is left in the group (an `npx` wrapper's children when
    // there is no supervisor, or a tree a supervisor could not end).
    super::orphan::kill_group(process.spawned_pid);
    tracing::debug!(server = %process.server, pid = process.pid(), %status, "backend process exited");
    let _ = status_tx.send(Some(status.clone()));
    process.fail_all_pending();
    let _ = events.send(ProcessEvent::Exited {
        ordinal: process.ordinal,
        status,
    });
}

/// Ends a process the pool gave up on. A supervisor is asked first (SIGTERM), so it
/// ends the server's whole tree, `setsid` descendants included; only if it does not
/// exit within `SUPERVISOR_STOP_BOUND` is its group killed. Without a supervisor the
/// group is killed at once.
async fn stop_tree(
    process: &Process,
    child: &mut Child,
) -> std::io::Result<std::process::ExitStatus> {
    if process.supervised {
        super::orphan::signal(process.spawned_pid, libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(SUPERVISOR_STOP_BOUND, child.wait()).await {
            return status;
        }
        tracing::warn!(
            server = %process.server, pid = process.pid(), supervisor = process.spawned_pid,
            "the supervisor did not end the server's processes in time; killing its process group"
        );
    }
    super::orphan::kill_group(process.spawned_pid);
    let _ = child.start_kill();
    child.wait().await
}
