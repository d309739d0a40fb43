//! Shared state of one demo server process: the store, counters, in-flight calls, requests sent
//! to the client, and the queue of outgoing lines drained by the single stdout writer.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, error, info, warn};

use super::DemoOptions;
use super::catalog::{self, Tool};
use super::conformance::{self, Fixtures};
use super::protocol;
use super::state_file::{Access, StateFile, StateFileError};
use super::store::Store;

/// Exit status of a deliberate crash (`--crash-after`, `debug_crash`).
pub const CRASH_EXIT_STATUS: i32 = 3;

/// What the stdout writer is asked to do.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Write this line (it already ends with a newline).
    Line(String),
    /// Write what was queued before, then exit the process with [`CRASH_EXIT_STATUS`].
    Crash,
    /// Write what was queued before, flush, and stop.
    Close,
}

/// MCP log levels, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum LogLevel {
    Debug = 0,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    /// Parses the wire form used by `logging/setLevel`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "debug" => Self::Debug,
            "info" => Self::Info,
            "notice" => Self::Notice,
            "warning" => Self::Warning,
            "error" => Self::Error,
            "critical" => Self::Critical,
            "alert" => Self::Alert,
            "emergency" => Self::Emergency,
            _ => return None,
        })
    }

    /// The wire form.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Alert => "alert",
            Self::Emergency => "emergency",
        }
    }
}

/// A reply from the client to a request the server sent: the `result`, or the `error` object.
pub(crate) type ClientReply = Result<Value, Value>;

struct InFlight {
    serial: u64,
    handle: AbortHandle,
}

/// The most `--leak-per-call` keeps in total.
const MAX_LEAKED_BYTES: usize = 1 << 30;

/// The state shared by the reader loop and every call task.
pub(crate) struct Server {
    options: DemoOptions,
    /// The state, unless `--state-file` keeps it in a file shared with other processes.
    store: Mutex<Store>,
    state_file: Option<StateFile>,
    out: mpsc::UnboundedSender<Outgoing>,
    calls_log: Option<File>,
    pid: u32,
    /// `tools/list` results serialized once: index 0 without `extra_tool`, index 1 with it.
    tools_list: [String; 2],
    extra_tool: AtomicBool,
    log_level: AtomicU8,
    initialized: AtomicBool,
    client_sampling: AtomicBool,
    client_elicitation: AtomicBool,
    crashed: AtomicBool,
    calls_received: AtomicU64,
    /// What `--leak-per-call` keeps, on purpose, for as long as the process lives.
    leaked: Mutex<Vec<Vec<u8>>>,
    cancel_notices: AtomicU64,
    aborted: AtomicU64,
    calls_by_tool: Mutex<BTreeMap<String, u64>>,
    in_flight: Mutex<HashMap<Box<str>, InFlight>>,
    next_serial: AtomicU64,
    pending: Mutex<HashMap<String, oneshot::Sender<ClientReply>>>,
    next_request: AtomicU64,
    /// State of the conformance fixtures (`--conformance-fixtures`); unused without them.
    fixtures: Fixtures,
}

impl Server {
    /// Builds the state and opens the calls log (if any) in append mode.
    pub(crate) fn new(
        options: DemoOptions,
        out: mpsc::UnboundedSender<Outgoing>,
    ) -> io::Result<Self> {
        let calls_log = match &options.calls_log {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|error| {
                        io::Error::new(
                            error.kind(),
                            format!("cannot open calls log {}: {error}", path.display()),
                        )
                    })?,
            ),
            None => None,
        };
        let state_file = match &options.state_file {
            Some(path) => {
                Some(StateFile::open(path).map_err(|error| io::Error::other(error.to_string()))?)
            }
            None => None,
        };
        let mut tools_list = [
            catalog::tools_list_json(options.test_tools, false),
            catalog::tools_list_json(options.test_tools, true),
        ];
        if options.conformance_fixtures {
            tools_list = tools_list.map(|list| conformance::with_fixture_tools(&list));
        }
        Ok(Self {
            options,
            store: Mutex::new(Store::seeded()),
            state_file,
            out,
            calls_log,
            pid: std::process::id(),
            tools_list,
            extra_tool: AtomicBool::new(false),
            log_level: AtomicU8::new(LogLevel::Debug as u8),
            initialized: AtomicBool::new(false),
            client_sampling: AtomicBool::new(false),
            client_elicitation: AtomicBool::new(false),
            crashed: AtomicBool::new(false),
            calls_received: AtomicU64::new(0),
            leaked: Mutex::new(Vec::new()),
            cancel_notices: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            calls_by_tool: Mutex::new(BTreeMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            next_serial: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(0),
            fixtures: Fixtures::default(),
        })
    }

    /// The options the server was started with.
    pub(crate) fn options(&self) -> &DemoOptions {
        &self.options
    }

    /// Applies `call` to the task store: the process's own, or with `--state-file` the
    /// shared file's state, loaded under a lock for the call (shared for [`Access::Read`],
    /// exclusive for [`Access::Write`], which saves what the call changed).
    pub(crate) fn with_store<R>(
        &self,
        access: Access,
        call: impl FnOnce(&mut Store) -> R,
    ) -> Result<R, StateFileError> {
        match &self.state_file {
            None => Ok(call(&mut self.store.lock())),
            Some(file) => file.with_store(access, call),
        }
    }

    /// Whether the task state is kept in a shared file (`--state-file`).
    pub(crate) fn has_state_file(&self) -> bool {
        self.state_file.is_some()
    }

    /// Reads the task store (see [`Server::with_store`]).
    pub(crate) fn read_store<R>(
        &self,
        read: impl FnOnce(&Store) -> R,
    ) -> Result<R, StateFileError> {
        self.with_store(Access::Read, |store| read(store))
    }

    /// Queues a line for stdout. A line queued after the writer stopped is dropped, which is
    /// fine: nobody is left to read it.
    pub(crate) fn send(&self, line: String) {
        let _ = self.out.send(Outgoing::Line(line));
    }

    /// Queues a notification for stdout.
    pub(crate) fn notify(&self, method: &str, params: &Value) {
        self.send(protocol::notification_line(method, params));
    }

    /// Sends a `notifications/message` if the client's log level lets it through.
    pub(crate) fn log_to_client(&self, level: LogLevel, data: &Value) {
        if (level as u8) >= self.log_level.load(Ordering::Relaxed) {
            let params = json!({ "level": level.as_str(), "logger": "demo", "data": data });
            self.notify("notifications/message", &params);
        }
    }

    /// Remembers the level set by `logging/setLevel`.
    pub(crate) fn set_log_level(&self, level: LogLevel) {
        self.log_level.store(level as u8, Ordering::Relaxed);
    }

    /// Records that `initialize` arrived and whether the client can sample and elicit.
    pub(crate) fn mark_initialized(&self, client_sampling: bool, client_elicitation: bool) {
        self.client_sampling
            .store(client_sampling, Ordering::Relaxed);
        self.client_elicitation
            .store(client_elicitation, Ordering::Relaxed);
        self.initialized.store(true, Ordering::Relaxed);
    }

    /// Whether `initialize` has arrived.
    pub(crate) fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Relaxed)
    }

    /// Whether the client declared the sampling capability.
    pub(crate) fn client_can_sample(&self) -> bool {
        self.client_sampling.load(Ordering::Relaxed)
    }

    /// Whether the client declared the elicitation capability.
    pub(crate) fn client_can_elicit(&self) -> bool {
        self.client_elicitation.load(Ordering::Relaxed)
    }

    /// The conformance fixtures' state.
    pub(crate) fn fixtures(&self) -> &Fixtures {
        &self.fixtures
    }

    /// The serialized `tools/list` result for the current tool set.
    pub(crate) fn tools_list_json(&self) -> &str {
        &self.tools_list[usize::from(self.extra_tool.load(Ordering::Relaxed))]
    }

    /// Looks a tool up by name among the tools currently offered.
    pub(crate) fn resolve_tool(&self, name: &str) -> Option<Tool> {
        let tool = Tool::from_name(name)?;
        let offered = if tool == Tool::Extra {
            self.extra_tool.load(Ordering::Relaxed)
        } else {
            !tool.is_test_only() || self.options.test_tools
        };
        offered.then_some(tool)
    }

    /// Adds or removes `extra_tool`; returns whether it is now offered.
    pub(crate) fn toggle_extra_tool(&self) -> bool {
        !self.extra_tool.fetch_xor(true, Ordering::Relaxed)
    }

    /// The delay to apply to one call: the fixed latency plus uniform jitter.
    pub(crate) fn call_delay(&self) -> Duration {
        let jitter = self.options.jitter;
        if jitter.is_zero() {
            return self.options.latency;
        }
        let max_nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
        let extra = Duration::from_nanos(rand::random_range(0..=max_nanos));
        self.options.latency.saturating_add(extra)
    }

    /// Whether this call should fail on purpose (`--fail-rate`).
    pub(crate) fn roll_failure(&self) -> bool {
        // Comparing against a uniform draw never panics, whatever value the rate holds.
        self.options.fail_rate > 0.0 && rand::random::<f64>() < self.options.fail_rate
    }

    /// Accounts for a received `tools/call`: the calls log, counters and `--crash-after`.
    /// Returns `false` when the call crashed the server and must not be handled.
    pub(crate) fn admit_call(&self, tool: &str) -> bool {
        if let Some(log) = &self.calls_log {
            // One write of the whole line so concurrent processes appending to the same file
            // (O_APPEND) never interleave within a line.
            let line = format!("{} {tool}\n", self.pid);
            let mut writer: &File = log;
            if let Err(error) = writer.write_all(line.as_bytes()) {
                warn!(%error, "could not append to the calls log");
            }
        }
        {
            let mut by_tool = self.calls_by_tool.lock();
            match by_tool.get_mut(tool) {
                Some(count) => *count += 1,
                None => {
                    by_tool.insert(tool.to_owned(), 1);
                }
            }
        }
        let received = self.calls_received.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bytes) = self.options.leak_per_call {
            let mut leaked = self.leaked.lock();
            // Filled with ones so every page is touched and counts as resident; bounded so
            // a forgotten flag cannot take the machine's memory.
            if leaked.len().saturating_mul(bytes) < MAX_LEAKED_BYTES {
                leaked.push(vec![1u8; bytes]);
            }
        }
        if self.options.crash_after == Some(received) {
            self.crash(&format!("--crash-after {received} reached"));
            return false;
        }
        true
    }

    /// Makes the process exit with [`CRASH_EXIT_STATUS`] once the writer has written what was
    /// queued before; nothing queued afterwards is written.
    pub(crate) fn crash(&self, reason: &str) {
        error!(reason, "crashing on purpose");
        self.crashed.store(true, Ordering::SeqCst);
        if self.out.send(Outgoing::Crash).is_err() {
            // The writer is gone (stdout closed), so nobody else will end the process.
            std::process::exit(CRASH_EXIT_STATUS);
        }
    }

    /// Whether a crash is under way; the reader stops handling input once it is.
    pub(crate) fn has_crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Asks the writer to flush and stop.
    pub(crate) fn close_output(&self) {
        let _ = self.out.send(Outgoing::Close);
    }

    /// Spawns a call task and registers it as in flight under its request id so that
    /// `notifications/cancelled` can abort it.
    pub(crate) fn spawn_call<F, Fut>(self: &Arc<Self>, calls: &mut JoinSet<()>, id: &str, make: F)
    where
        F: FnOnce(CallGuard) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // The lock is held across the spawn so that a task finishing at once cannot try to
        // unregister itself before it has been registered.
        let mut in_flight = self.in_flight.lock();
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let guard = CallGuard {
            server: Arc::clone(self),
            id: id.into(),
            serial,
        };
        let handle = calls.spawn(make(guard));
        if in_flight
            .insert(id.into(), InFlight { serial, handle })
            .is_some()
        {
            warn!(id, "a request reused the id of a call still in flight");
        }
    }

    /// Handles `notifications/cancelled`: aborts the call with that id if it is still running.
    pub(crate) fn cancel(&self, id: &str, reason: Option<&str>) {
        self.cancel_notices.fetch_add(1, Ordering::Relaxed);
        let entry = self.in_flight.lock().remove(id);
        match entry {
            Some(call) => {
                call.handle.abort();
                self.aborted.fetch_add(1, Ordering::Relaxed);
                // Logged at warn so it shows under the quiet default filter: a cancellation
                // usually means a client timed out, which a test run wants to see.
                warn!(id, reason, "cancelled an in-flight call");
            }
            None => info!(id, reason, "cancellation for a call that is not in flight"),
        }
    }

    /// The payload of `debug_stats`. `in_flight` leaves out the `debug_stats` call itself.
    pub(crate) fn stats(&self) -> Value {
        let calls_by_tool = self.calls_by_tool.lock().clone();
        let in_flight = self.in_flight.lock().len().saturating_sub(1);
        json!({
            "pid": self.pid,
            "calls_by_tool": calls_by_tool,
            "calls_total": self.calls_received.load(Ordering::Relaxed),
            "cancelled": self.cancel_notices.load(Ordering::Relaxed),
            "aborted": self.aborted.load(Ordering::Relaxed),
            "in_flight": in_flight,
        })
    }

    /// Registers a request to the client and returns its id and the receiver of its reply.
    pub(crate) fn start_client_request(
        &self,
    ) -> (PendingGuard<'_>, oneshot::Receiver<ClientReply>) {
        let number = self.next_request.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("demo-s-{number}");
        let (sender, receiver) = oneshot::channel();
        self.pending.lock().insert(id.clone(), sender);
        (PendingGuard { server: self, id }, receiver)
    }

    /// Delivers the client's reply to the request it answers.
    pub(crate) fn resolve_client_reply(&self, raw_id: &str, reply: ClientReply) {
        let Ok(id) = serde_json::from_str::<String>(raw_id) else {
            warn!(id = raw_id, "response with an id the server never used");
            return;
        };
        match self.pending.lock().remove(&id) {
            Some(sender) => {
                // The waiting call may have been cancelled meanwhile; then nobody wants it.
                let _ = sender.send(reply);
            }
            None => warn!(id, "response to a request that is not pending"),
        }
    }

    /// Fails every request still waiting on the client (used when stdin closes).
    pub(crate) fn fail_pending_requests(&self, message: &str) {
        let pending = std::mem::take(&mut *self.pending.lock());
        for (id, sender) in pending {
            debug!(id, "failing a request to the client");
            let _ = sender.send(Err(json!({ "code": -32603, "message": message })));
        }
    }
}

/// Unregisters a call from the in-flight set when its task ends, however it ends.
pub(crate) struct CallGuard {
    server: Arc<Server>,
    id: Box<str>,
    serial: u64,
}

impl CallGuard {
    /// The server the call runs on.
    pub(crate) fn server(&self) -> &Arc<Server> {
        &self.server
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut in_flight = self.server.in_flight.lock();
        // Only remove our own entry: a newer call may have reused the id.
        if in_flight
            .get(&self.id)
            .is_some_and(|call| call.serial == self.serial)
        {
            in_flight.remove(&self.id);
        }
    }
}

/// Forgets a request to the client if the call waiting on it goes away first.
pub(crate) struct PendingGuard<'a> {
    server: &'a Server,
    id: String,
}

impl PendingGuard<'_> {
    /// The request id, as sent on the wire (a JSON string).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.server.pending.lock().remove(&self.id);
    }
}

/// The single owner of stdout: writes queued lines through a buffer and flushes only when the
/// queue is momentarily empty, so a burst of answers costs one write system call.
pub(crate) async fn write_loop<W>(
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    writer: W,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut out = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Outgoing::Line(line) => out.write_all(line.as_bytes()).await?,
                Outgoing::Crash => {
                    // The flush is bounded so a client that stopped reading stdout cannot hold
                    // the crash back for long.
                    let flushed = tokio::time::timeout(Duration::from_millis(200), out.flush());
                    let _ = flushed.await;
                    std::process::exit(CRASH_EXIT_STATUS);
                }
                Outgoing::Close => return out.flush().await,
            }
            next = queue.try_recv().ok();
        }
        out.flush().await?;
    }
    out.flush().await
}
