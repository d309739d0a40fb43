//! What a plugin instance may touch: its store state, memory limits, the `log` import,
//! stdout and stderr as lines in the bridge's log, and a deliberately empty WASI (no
//! files, sockets, environment or clock).
//!
//! Components built with Rust's `wasm32-wasip2` target import a few WASI interfaces
//! even when the plugin never uses them. The host answers the harmless ones with fixed
//! values (an empty environment, a clock stuck at zero, seeded random bytes so hash
//! maps work), turns what a plugin writes to stdout and stderr (`println!`,
//! `eprintln!`) into log lines, and turns every other import into a function that traps
//! when called, so a plugin links but cannot reach outside its sandbox.
//!
//! Every line a plugin writes, by `log` or by stdout and stderr, counts against one
//! budget per plugin version ([`LogBudget`]): a few dozen lines a second, the rest
//! counted and summarized in one warning. The lines go to the log target
//! [`PLUGIN_LOG_TARGET`] with the binding, the file and the source, so an author can
//! turn a plugin's own lines up or down without the host's. A panic line is held until
//! the call ends: a trap reports it in the fault's one line, so it is not logged twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::component::{
    Component, ComponentType, Lift, Linker, Lower, Resource, ResourceType, types::ComponentItem,
};
use wasmtime::{Engine, StoreLimits, StoreLimitsBuilder};

use super::bindings::current::mcp_bridge::policy::log;
use super::bindings::legacy::mcp_bridge::policy::log as legacy_log;
use super::bindings::v0_2::mcp_bridge::policy::log as log_v0_2;
use super::error::is_panic_line;

/// Log lines one plugin version may write per second (all its instances together); the
/// rest are counted and reported.
const LOG_LINES_PER_SECOND: u32 = 20;
/// Longer log lines are cut here; a longer stdout or stderr line is split here.
const MAX_LOG_LINE: usize = 2048;

/// The log target of every line a plugin writes itself (`log`, stdout, stderr), with
/// the fields `binding`, `file` and `source` (`log`, `stdout` or `stderr`): documented,
/// so `RUST_LOG=info,mcp_bridge::plugin=debug` shows a plugin's debug lines.
pub const PLUGIN_LOG_TARGET: &str = "mcp_bridge::plugin";

/// The log lines of one plugin version: how many this second, how many suppressed.
pub struct LogBudget {
    /// The plugin file, for the summary of suppressed lines.
    file: String,
    window: Mutex<LogWindow>,
}

struct LogWindow {
    started: Instant,
    lines: u32,
    suppressed: u32,
}

impl LogBudget {
    pub fn new(file: &str) -> LogBudget {
        LogBudget {
            file: file.to_owned(),
            window: Mutex::new(LogWindow {
                started: Instant::now(),
                lines: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line written at `now` fits its second's budget. The first line of a
    /// new second reports how many the last one suppressed.
    fn admit(&self, now: Instant) -> bool {
        let mut window = self.window.lock();
        if now.saturating_duration_since(window.started) >= Duration::from_secs(1) {
            self.summarize(window.suppressed);
            *window = LogWindow {
                started: now,
                lines: 0,
                suppressed: 0,
            };
        }
        window.lines += 1;
        if window.lines > LOG_LINES_PER_SECOND {
            window.suppressed += 1;
            return false;
        }
        true
    }

    fn summarize(&self, suppressed: u32) {
        if suppressed > 0 {
            tracing::warn!(target: PLUGIN_LOG_TARGET, file = %self.file, suppressed, "plugin log lines suppressed (over {LOG_LINES_PER_SECOND} per second)");
        }
    }
}

impl Drop for LogBudget {
    /// The version is unloaded: report what its last second suppressed.
    fn drop(&mut self) {
        let suppressed = self.window.get_mut().suppressed;
        self.summarize(suppressed);
    }
}

/// The state every plugin store carries.
pub struct PluginState {
    limits: StoreLimits,
    /// The binding the instance serves, for log attribution.
    binding: Arc<str>,
    random: u64,
    log_budget: Arc<LogBudget>,
    /// What the plugin wrote to stdout and stderr since the last complete line.
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The panic line the plugin wrote during the current call (the SDK's panic hook
    /// writes `panicked at …` at error level), held until the call ends: a trap takes
    /// it into its fault ([`PluginState::take_panic`]), any other end logs it
    /// ([`PluginState::release_panic`]).
    pending_panic: Option<String>,
}

impl PluginState {
    pub fn new(binding: Arc<str>, max_memory: usize, log_budget: Arc<LogBudget>) -> PluginState {
        PluginState {
            limits: StoreLimitsBuilder::new()
                .memory_size(max_memory)
                .instances(16)
                .memories(4)
                .tables(16)
                .table_elements(1 << 20)
                .trap_on_grow_failure(true)
                .build(),
            binding,
            random: 0x9e37_79b9_7f4a_7c15,
            log_budget,
            stdout: Vec::new(),
            stderr: Vec::new(),
            pending_panic: None,
        }
    }

    /// The panic line held since the call began, for the fault the call ended in.
    pub fn take_panic(&mut self) -> Option<String> {
        self.pending_panic.take()
    }

    /// Logs a held panic line: the call ended without a fault to report it.
    pub fn release_panic(&mut self) {
        if let Some(line) = self.pending_panic.take() {
            self.emit(log::Level::Error, "log", &line);
        }
    }

    pub fn limits(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }

    /// A deterministic xorshift stream: plugins need random bytes only to seed hash
    /// maps, and determinism keeps replays reproducible.
    fn next_random(&mut self) -> u64 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        x
    }

    fn random_bytes(&mut self, len: u64) -> Vec<u8> {
        let len = usize::try_from(len.min(1 << 20)).unwrap_or(0);
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < len {
            let word = self.next_random().to_le_bytes();
            let take = (len - bytes.len()).min(word.len());
            bytes.extend_from_slice(&word[..take]);
        }
        bytes
    }

    /// One line from the plugin into the bridge's log, within the version's budget.
    fn write_line(&mut self, level: log::Level, source: &'static str, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        if matches!(level, log::Level::Error) && is_panic_line(&message) {
            // A second panic line in one call (a panic while panicking) logs the first.
            self.release_panic();
            self.pending_panic = Some(message);
            return;
        }
        self.emit(level, source, &message);
    }

    /// Logs one line under [`PLUGIN_LOG_TARGET`], within the version's budget.
    fn emit(&self, level: log::Level, source: &'static str, message: &str) {
        if !self.log_budget.admit(Instant::now()) {
            return;
        }
        let binding = &self.binding;
        let file = &self.log_budget.file;
        match level {
            log::Level::Debug => {
                tracing::debug!(target: PLUGIN_LOG_TARGET, %binding, %file, source, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: PLUGIN_LOG_TARGET, %binding, %file, source, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: PLUGIN_LOG_TARGET, %binding, %file, source, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: PLUGIN_LOG_TARGET, %binding, %file, source, "{message}")
            }
        }
    }

    /// Bytes written to stdout or stderr: every complete line (and every
    /// `MAX_LOG_LINE` bytes without one) becomes a log line; the rest waits for more.
    /// One pass over the bytes whatever their number of lines: a guest may hand any amount
    /// in one call, and host time is not under the epoch deadline.
    fn write_stream(&mut self, stream: Stream, bytes: &[u8]) {
        let buffer = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        buffer.extend_from_slice(bytes);
        let pending = std::mem::take(buffer);
        let mut start = 0;
        let mut lines = Vec::new();
        while start < pending.len() {
            let rest = &pending[start..];
            // Only the first line's worth is searched, so a long run without a newline
            // is cut into `MAX_LOG_LINE` pieces in linear time.
            let window = &rest[..rest.len().min(MAX_LOG_LINE + 1)];
            let (end, next) = match window.iter().position(|&b| b == b'\n') {
                Some(newline) => (newline, newline + 1),
                None if rest.len() >= MAX_LOG_LINE => (MAX_LOG_LINE, MAX_LOG_LINE),
                None => break,
            };
            lines.push(start..start + end);
            start += next;
        }
        let buffer = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        buffer.extend_from_slice(&pending[start..]);
        for line in lines {
            self.write_stream_line(stream, &pending[line]);
        }
    }

    fn write_stream_line(&mut self, stream: Stream, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text).to_owned();
        match stream {
            Stream::Stdout => self.write_line(log::Level::Info, "stdout", text),
            Stream::Stderr => self.write_line(log::Level::Warn, "stderr", text),
        }
    }
}

impl Drop for PluginState {
    /// A line the instance began but never ended still reaches the log, and so does a
    /// panic line no fault took.
    fn drop(&mut self) {
        self.release_panic();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = match stream {
                Stream::Stdout => std::mem::take(&mut self.stdout),
                Stream::Stderr => std::mem::take(&mut self.stderr),
            };
            if !rest.is_empty() {
                self.write_stream_line(stream, &rest);
            }
        }
    }
}

impl log::Host for PluginState {
    fn write(&mut self, level: log::Level, message: String) {
        self.write_line(level, "log", message);
    }
}

impl legacy_log::Host for PluginState {
    fn write(&mut self, level: legacy_log::Level, message: String) {
        let level = match level {
            legacy_log::Level::Debug => log::Level::Debug,
            legacy_log::Level::Info => log::Level::Info,
            legacy_log::Level::Warn => log::Level::Warn,
            legacy_log::Level::Error => log::Level::Error,
        };
        self.write_line(level, "log", message);
    }
}

impl log_v0_2::Host for PluginState {
    fn write(&mut self, level: log_v0_2::Level, message: String) {
        let level = match level {
            log_v0_2::Level::Debug => log::Level::Debug,
            log_v0_2::Level::Info => log::Level::Info,
            log_v0_2::Level::Warn => log::Level::Warn,
            log_v0_2::Level::Error => log::Level::Error,
        };
        self.write_line(level, "log", message);
    }
}

/// The two output streams a plugin has; the resource's representation says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout = 1,
    Stderr = 2,
}

/// `wasi:io/streams.output-stream`, as the host hands it out: only stdout and stderr.
struct OutputStream;

/// `wasi:io/error.error`. The host never fails a write, so none is ever made.
struct IoError;

/// `wasi:io/poll.pollable`, as `output-stream.subscribe` hands it out: a write to stdout
/// or stderr never waits, so it is always ready.
struct Ready;

/// `wasi:io/streams.stream-error`.
#[derive(ComponentType, Lower, Lift)]
#[component(variant)]
enum StreamError {
    #[component(name = "last-operation-failed")]
    LastOperationFailed(Resource<IoError>),
    #[component(name = "closed")]
    Closed,
}

impl OutputStream {
    fn of(stream: &Resource<OutputStream>) -> Result<Stream, StreamError> {
        match stream.rep() {
            1 => Ok(Stream::Stdout),
            2 => Ok(Stream::Stderr),
            _ => Err(StreamError::Closed),
        }
    }
}

/// How many bytes `check-write` allows at once: plenty for a line.
const STREAM_WRITE_BUDGET: u64 = 64 * 1024;

/// `wasi:clocks/wall-clock.datetime`.
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

/// The linker every component starts from: the `log` import of every contract version
/// the host serves, and nothing else.
pub fn base_linker(engine: &Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    log::add_to_linker::<PluginState, wasmtime::component::HasSelf<PluginState>>(
        &mut linker,
        |state| state,
    )?;
    log_v0_2::add_to_linker::<PluginState, wasmtime::component::HasSelf<PluginState>>(
        &mut linker,
        |state| state,
    )?;
    legacy_log::add_to_linker::<PluginState, wasmtime::component::HasSelf<PluginState>>(
        &mut linker,
        |state| state,
    )?;
    Ok(linker)
}

/// A linker for one component: the base linker, the harmless WASI answers and stdout
/// and stderr under the exact interface versions the component imports, and traps for
/// everything else.
pub fn linker_for(
    base: &Linker<PluginState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = base.clone();
    let imports: Vec<(String, Vec<String>)> = component
        .component_type()
        .imports(engine)
        .filter_map(|(name, item)| match item.ty {
            ComponentItem::ComponentInstance(instance) => {
                let resources = instance
                    .exports(engine)
                    .filter(|(_, item)| matches!(item.ty, ComponentItem::Resource(_)))
                    .map(|(resource, _)| resource.to_owned())
                    .collect();
                Some((name.to_owned(), resources))
            }
            _ => None,
        })
        .collect();
    for (name, resources) in &imports {
        // The host's stream and error resources wherever an interface names them (an
        // interface that `use`s a resource re-exports it: `wasi:filesystem/types` and
        // `wasi:sockets/tcp` name `output-stream`), so every import agrees on their type
        // and a plugin that imports them links; their functions trap when called.
        if name.starts_with("wasi:") {
            let mut instance = linker.instance(name)?;
            for resource in resources {
                match resource.as_str() {
                    "output-stream" => instance.resource(
                        "output-stream",
                        ResourceType::host::<OutputStream>(),
                        |_, _| Ok(()),
                    )?,
                    "error" => instance.resource(
                        "error",
                        ResourceType::host::<IoError>(),
                        |_, _| Ok(()),
                    )?,
                    "pollable" => {
                        instance
                            .resource("pollable", ResourceType::host::<Ready>(), |_, _| Ok(()))?
                    }
                    _ => {}
                }
            }
        }
        let unversioned = name.split('@').next().unwrap_or(name);
        match unversioned {
            "wasi:cli/environment" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("get-environment", |_, (): ()| {
                    Ok((Vec::<(String, String)>::new(),))
                })?;
                instance.func_wrap("get-arguments", |_, (): ()| Ok((Vec::<String>::new(),)))?;
                instance.func_wrap("initial-cwd", |_, (): ()| Ok((None::<String>,)))?;
            }
            "wasi:random/random" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("get-random-bytes", |mut store, (len,): (u64,)| {
                    Ok((store.data_mut().random_bytes(len),))
                })?;
                instance.func_wrap("get-random-u64", |mut store, (): ()| {
                    Ok((store.data_mut().next_random(),))
                })?;
            }
            "wasi:random/insecure" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("get-insecure-random-bytes", |mut store, (len,): (u64,)| {
                    Ok((store.data_mut().random_bytes(len),))
                })?;
                instance.func_wrap("get-insecure-random-u64", |mut store, (): ()| {
                    Ok((store.data_mut().next_random(),))
                })?;
            }
            "wasi:random/insecure-seed" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("insecure-seed", |mut store, (): ()| {
                    let state = store.data_mut();
                    Ok(((state.next_random(), state.next_random()),))
                })?;
            }
            "wasi:clocks/wall-clock" => {
                let mut instance = linker.instance(name)?;
                let epoch = Datetime {
                    seconds: 0,
                    nanoseconds: 0,
                };
                instance.func_wrap("now", move |_, (): ()| Ok((epoch,)))?;
                instance.func_wrap("resolution", move |_, (): ()| {
                    Ok((Datetime {
                        seconds: 1,
                        nanoseconds: 0,
                    },))
                })?;
            }
            "wasi:clocks/monotonic-clock" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("now", |_, (): ()| Ok((0u64,)))?;
                instance.func_wrap("resolution", |_, (): ()| Ok((1_000_000_000u64,)))?;
            }
            "wasi:cli/stdout" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("get-stdout", |_, (): ()| {
                    Ok((Resource::<OutputStream>::new_own(Stream::Stdout as u32),))
                })?;
            }
            "wasi:cli/stderr" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("get-stderr", |_, (): ()| {
                    Ok((Resource::<OutputStream>::new_own(Stream::Stderr as u32),))
                })?;
            }
            "wasi:io/error" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap(
                    "[method]error.to-debug-string",
                    |_, (_error,): (Resource<IoError>,)| Ok((String::new(),)),
                )?;
            }
            "wasi:io/streams" => define_output_streams(&mut linker.instance(name)?)?,
            "wasi:io/poll" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap(
                    "[method]pollable.ready",
                    |_, (_ready,): (Resource<Ready>,)| Ok((true,)),
                )?;
                instance.func_wrap(
                    "[method]pollable.block",
                    |_, (_ready,): (Resource<Ready>,)| Ok(()),
                )?;
                instance.func_wrap("poll", |_, (pollables,): (Vec<Resource<Ready>>,)| {
                    let ready = 0..u32::try_from(pollables.len()).unwrap_or(u32::MAX);
                    Ok((ready.collect::<Vec<u32>>(),))
                })?;
            }
            _ => {}
        }
    }
    linker.define_unknown_imports_as_traps(component)?;
    Ok(linker)
}

/// The methods of `output-stream` Rust's standard library uses to write to it (its
/// `subscribe` is always ready); input streams and splicing stay traps.
fn define_output_streams(
    instance: &mut wasmtime::component::LinkerInstance<'_, PluginState>,
) -> wasmtime::Result<()> {
    instance.func_wrap(
        "[method]output-stream.check-write",
        |_, (stream,): (Resource<OutputStream>,)| {
            Ok((OutputStream::of(&stream).map(|_| STREAM_WRITE_BUDGET),))
        },
    )?;
    let write = |mut store: wasmtime::StoreContextMut<'_, PluginState>,
                 (stream, contents): (Resource<OutputStream>, Vec<u8>)| {
        let written = OutputStream::of(&stream)
            .map(|stream| store.data_mut().write_stream(stream, &contents));
        Ok((written,))
    };
    instance.func_wrap("[method]output-stream.write", write)?;
    instance.func_wrap("[method]output-stream.blocking-write-and-flush", write)?;
    let flush = |_: wasmtime::StoreContextMut<'_, PluginState>,
                 (stream,): (Resource<OutputStream>,)| {
        Ok((OutputStream::of(&stream).map(|_| ()),))
    };
    instance.func_wrap("[method]output-stream.flush", flush)?;
    instance.func_wrap("[method]output-stream.blocking-flush", flush)?;
    instance.func_wrap(
        "[method]output-stream.subscribe",
        |_, (_stream,): (Resource<OutputStream>,)| Ok((Resource::<Ready>::new_own(0),)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_budget_is_per_second_and_counts_the_rest() {
        let budget = LogBudget::new("p.wasm");
        let start = Instant::now();
        let admitted = (0..LOG_LINES_PER_SECOND + 5)
            .filter(|_| budget.admit(start))
            .count();
        assert_eq!(admitted, LOG_LINES_PER_SECOND as usize);
        assert_eq!(budget.window.lock().suppressed, 5);
        // The next second starts a new budget (and reports the 5 suppressed).
        assert!(budget.admit(start + Duration::from_millis(1001)));
        assert_eq!(budget.window.lock().suppressed, 0);
        assert_eq!(budget.window.lock().lines, 1);
    }

    #[test]
    fn stream_bytes_become_lines() {
        let budget = Arc::new(LogBudget::new("p.wasm"));
        let mut state = PluginState::new(Arc::from("p"), 1 << 20, budget.clone());
        state.write_stream(Stream::Stdout, b"one ");
        state.write_stream(Stream::Stdout, b"line\r\ntwo\nthree");
        assert_eq!(budget.window.lock().lines, 2);
        assert_eq!(state.stdout, b"three");
        state.write_stream(Stream::Stderr, &vec![b'x'; MAX_LOG_LINE + 1]);
        assert_eq!(budget.window.lock().lines, 3);
        assert_eq!(state.stderr, b"x");
        drop(state);
        // Both unfinished lines are written when the instance goes.
        assert_eq!(budget.window.lock().lines, 5);
    }

    #[test]
    fn a_panic_line_is_held_until_the_call_ends() {
        let budget = Arc::new(LogBudget::new("p.wasm"));
        let mut state = PluginState::new(Arc::from("p"), 1 << 20, budget.clone());
        state.write_line(log::Level::Error, "log", "an error, not a panic".to_owned());
        assert_eq!(
            budget.window.lock().lines,
            1,
            "an error line is logged at once"
        );
        let panic = "panicked at src/lib.rs:3:5: boom";
        state.write_line(log::Level::Error, "log", panic.to_owned());
        assert_eq!(budget.window.lock().lines, 1, "a panic line is held");
        // A trap takes it for its fault: it is never logged on its own.
        assert_eq!(state.take_panic().as_deref(), Some(panic));
        assert_eq!(state.take_panic(), None);
        // A call that ends without a fault logs it.
        state.write_line(log::Level::Error, "log", panic.to_owned());
        state.release_panic();
        assert_eq!(budget.window.lock().lines, 2);
        // So does an instance dropped with one held.
        state.write_line(log::Level::Error, "log", panic.to_owned());
        drop(state);
        assert_eq!(budget.window.lock().lines, 3);
    }

    #[test]
    fn one_write_of_many_lines_is_cut_in_one_pass() {
        let budget = Arc::new(LogBudget::new("p.wasm"));
        let mut state = PluginState::new(Arc::from("p"), 1 << 20, budget.clone());
        // 20 000 one-byte lines and a 5 000-byte run without a newline, in one call.
        let mut bytes = b"x\n".repeat(20_000);
        bytes.extend(std::iter::repeat_n(b'y', 5_000));
        state.write_stream(Stream::Stdout, &bytes);
        // Every line counted against the budget (admitted or suppressed), two full pieces
        // of the long run too, and the run's tail kept for the next write.
        assert_eq!(budget.window.lock().lines, 20_002);
        assert_eq!(
            budget.window.lock().suppressed,
            20_002 - LOG_LINES_PER_SECOND
        );
        assert_eq!(state.stdout.len(), 5_000 - 2 * MAX_LOG_LINE);
    }
}
