//! The demo MCP server: a real stdio server with the seed guide's task-management tools, used by
//! the bridge's tests and benchmarks as a subprocess (`mcp-bridge demo-server`).
//!
//! It speaks newline-delimited JSON-RPC 2.0 on stdin/stdout and logs to stderr only (through
//! `tracing`; the binary must install a subscriber that writes to stderr). One reader loop parses
//! lines and answers cheap requests inline, including calls that have no latency to wait out
//! and touch only the store; every other `tools/call` runs in a task of its own so a slow call
//! never holds up others. A single writer owns stdout: it drains a queue of serialized lines
//! through a buffer and flushes when the queue is empty.
//!
//! Submodules: `protocol` (JSON-RPC framing and the non-tool methods), `catalog` (tool
//! definitions), `tools` (call handling), `debug` (test-only tools), `extras` (prompts and
//! resources), `conformance` with `conformance_content` and `conformance_media` (the MCP
//! conformance suite's fixtures), `store` (in-memory state), `state_file` (the state shared through a file), `server` (shared state and the
//! writer), `stdio`.

mod catalog;
mod conformance;
mod conformance_content;
mod conformance_media;
mod debug;
mod extras;
mod protocol;
mod server;
mod state_file;
mod stdio;
mod store;
mod tools;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use self::protocol::{Message, RpcError};
use self::server::Server;
use self::tools::CallParams;

pub use self::protocol::{LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS};
pub use self::server::CRASH_EXIT_STATUS;

/// Options of the demo MCP server (`mcp-bridge demo-server`).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Fixed delay added to every tools/call before it is handled, e.g. "5ms", "250us", "1s"
    /// (a bare number is seconds, as everywhere in the bridge).
    #[arg(long, value_name = "DURATION", default_value = "0ms", value_parser = mcp_bridge_policy::parse_duration)]
    pub latency: Duration,

    /// Extra random delay per tools/call, drawn uniformly from [0, DURATION] and added to
    /// --latency.
    #[arg(long, value_name = "DURATION", default_value = "0ms", value_parser = mcp_bridge_policy::parse_duration)]
    pub jitter: Duration,

    /// Probability, from 0.0 to 1.0, that a tools/call fails with JSON-RPC internal error -32603
    /// (the call then changes nothing).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fail_rate)]
    pub fail_rate: f64,

    /// Exit with status 3, without answering, on receiving the N-th tools/call (simulates a
    /// backend crash).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub crash_after: Option<u64>,

    /// Keep SIZE bytes (written, so resident) for every tools/call received, never freed
    /// (up to 1 GiB in all): a server with a memory leak, for `max_process_memory` (e.g.
    /// "1MiB").
    #[arg(long, value_name = "SIZE", value_parser = mcp_bridge_policy::units::parse_size)]
    pub leak_per_call: Option<usize>,

    /// Append one line "<pid> <tool>" per tools/call received to this file (opened with
    /// O_APPEND, written before the call is handled), so tests can count backend calls across
    /// processes.
    #[arg(long, value_name = "PATH")]
    pub calls_log: Option<PathBuf>,

    /// Also offer the test-only tools: debug_sleep, debug_progress, debug_crash, debug_stats,
    /// debug_toggle_tool, debug_sample, debug_env (the process id and the values of the named
    /// environment variables) and debug_meta (the process id and the call's params._meta).
    #[arg(long)]
    pub test_tools: bool,

    /// Also offer the fixtures the MCP conformance suite (@modelcontextprotocol/conformance)
    /// tests a server with: the test_* tools (text, image, audio, embedded resource, mixed
    /// content, logging, progress, error, sampling, elicitation) and json_schema_2020_12_tool,
    /// the test:// resources and resource template, resources/subscribe and unsubscribe, the
    /// test_* prompts, and completion/complete. Sampling and elicitation need a client that can
    /// answer them (behind mcp-bridge: an `exclusive = true` server).
    #[arg(long)]
    pub conformance_fixtures: bool,

    /// Keep the task state in this file, shared by every demo process that names it (such
    /// as the backends of several bridge replicas), instead of in memory: each call locks the
    /// file (shared to read, exclusive to write), loads the state, applies the call and
    /// saves what it changed before unlocking, so a write through one process is seen by
    /// the next read through any other. The file is created if missing; an empty file is
    /// the seed state. Delete the file to start over.
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,

    /// The name reported in serverInfo.name.
    #[arg(long, value_name = "NAME", default_value = "mcp-bridge-demo")]
    pub name: String,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            fail_rate: 0.0,
            crash_after: None,
            leak_per_call: None,
            calls_log: None,
            state_file: None,
            test_tools: false,
            conformance_fixtures: false,
            name: String::from("mcp-bridge-demo"),
        }
    }
}

/// A command-line value that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// Not a probability.
    #[error("invalid rate {0:?}: expected a number from 0.0 to 1.0")]
    Rate(String),
}

/// Parses a probability in [0, 1].
pub fn parse_fail_rate(input: &str) -> Result<f64, OptionError> {
    input
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|rate| (0.0..=1.0).contains(rate))
        .ok_or_else(|| OptionError::Rate(input.to_owned()))
}

/// Serves MCP on the process's stdin/stdout until stdin closes. Must run inside a tokio runtime
/// with I/O and time enabled; a current-thread runtime is best, since a multi-thread one adds
/// cross-thread wakeups to every request and a backend on one pipe gains nothing from them. Returns `Ok(())` on end of input; a deliberate crash exits the
/// process with [`CRASH_EXIT_STATUS`] instead of returning.
pub async fn run(options: DemoOptions) -> io::Result<()> {
    let input = BufReader::with_capacity(64 * 1024, stdio::stdin());
    run_on(input, stdio::stdout(), options).await
}

/// Serves MCP over any line reader and writer: the body of [`run`], usable over in-memory pipes.
pub async fn run_on<R, W>(reader: R, writer: W, options: DemoOptions) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (queue, outgoing) = mpsc::unbounded_channel();
    let server = Arc::new(Server::new(options, queue)?);
    info!(
        name = server.options().name,
        test_tools = server.options().test_tools,
        conformance_fixtures = server.options().conformance_fixtures,
        "demo server ready on stdio"
    );

    let reading = async {
        let mut calls = JoinSet::new();
        let read_result = read_loop(&server, reader, &mut calls).await;
        // Input is over: nothing can answer a request sent to the client any more, but calls
        // already running still finish and get their answers written.
        server.fail_pending_requests("stdin closed before the client answered");
        while let Some(joined) = calls.join_next().await {
            report_panic(joined);
        }
        server.close_output();
        read_result
    };
    // The writer runs in the same task as the reader rather than in a task of its own: an
    // answer produced by the reader is then written in the same poll, without waking another
    // task (which on a multi-thread runtime means another thread).
    let (read_result, write_result) = tokio::join!(reading, server::write_loop(outgoing, writer));
    info!("stdin closed; demo server stopping");
    read_result?;
    match write_result {
        // The reader of stdout went away first; there is nothing left to tell it.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The longest line accepted; longer lines are skipped and answered with an error.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

enum LineRead {
    Line,
    TooLong,
    Eof,
}

async fn read_loop<R>(
    server: &Arc<Server>,
    mut reader: R,
    calls: &mut JoinSet<()>,
) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
{
    let mut line = Vec::with_capacity(4096);
    loop {
        match read_line(&mut reader, &mut line).await? {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong => {
                warn!(limit = MAX_LINE_BYTES, "skipping an oversized line");
                let error =
                    RpcError::InvalidRequest(format!("line longer than {MAX_LINE_BYTES} bytes"));
                server.send(protocol::error_line(None, &error));
            }
            LineRead::Line => {
                if server.has_crashed() {
                    // The writer is about to end the process; handle nothing more.
                    std::future::pending::<()>().await;
                }
                handle_line(server, trim_line(&line), calls);
            }
        }
        // Reap finished call tasks so the set only holds running ones.
        while let Some(joined) = calls.try_join_next() {
            report_panic(joined);
        }
    }
}

/// Reads one newline-terminated line into `line` (without the newline), never buffering more
/// than [`MAX_LINE_BYTES`].
async fn read_line<R>(reader: &mut R, line: &mut Vec<u8>) -> io::Result<LineRead>
where
    R: AsyncBufRead + Unpin,
{
    line.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            // A last line without a newline still counts; the next read reports the end.
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => LineRead::TooLong,
                (false, true) => LineRead::Eof,
                (false, false) => LineRead::Line,
            });
        }
        let newline = available.iter().position(|&byte| byte == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = newline.map_or(available.len(), |at| at + 1);
        reader.consume(consumed);
        if newline.is_some() {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|byte| !byte.is_ascii_whitespace())
        .map_or(0, |at| at + 1);
    &line[..end]
}

fn handle_line(server: &Arc<Server>, line: &[u8], calls: &mut JoinSet<()>) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    match protocol::parse_message(line) {
        Err(failure) => {
            warn!(error = %failure.error, "bad input line");
            server.send(protocol::error_line(failure.id.as_deref(), &failure.error));
        }
        Ok(Message::Request { id, method, params }) if method == "tools/call" => {
            start_call(server, calls, id, params);
        }
        Ok(Message::Request { id, method, params }) => {
            server.send(protocol::handle_request(server, id, &method, params));
        }
        Ok(Message::Notification { method, params }) => {
            protocol::handle_notification(server, &method, params);
        }
        Ok(Message::Response { id, result, error }) => {
            let reply = match (result, error) {
                (_, Some(error)) => Err(serde_json::from_str(error.get()).unwrap_or_default()),
                (Some(result), None) => Ok(serde_json::from_str(result.get()).unwrap_or_default()),
                (None, None) => Ok(serde_json::Value::Null),
            };
            server.resolve_client_reply(id, reply);
        }
    }
}

fn start_call(
    server: &Arc<Server>,
    calls: &mut JoinSet<()>,
    id: &str,
    params: Option<&serde_json::value::RawValue>,
) {
    let params: CallParams = match protocol::parse_params(params) {
        Ok(params) => params,
        Err(error) => {
            server.send(protocol::error_line(Some(id), &error));
            return;
        }
    };
    if !server.is_initialized() {
        warn!(
            tool = params.name,
            "tools/call received before initialize; handling it anyway"
        );
    }
    if !server.admit_call(&params.name) {
        return;
    }
    if let Some(fixture) = conformance::fixture_tool(server, &params.name) {
        // Fixture tools may wait (delays, answers from the client), so each runs in a task.
        let call_id: Box<str> = id.into();
        let delay = server.call_delay();
        server.spawn_call(calls, id, move |guard| {
            conformance::serve_call(guard, call_id, fixture, params, delay)
        });
        return;
    }
    // A call with no latency to wait out and a tool that never waits costs a few microseconds,
    // so it is answered here like ping; spawning a task would cost more than the call itself.
    let delay = server.call_delay();
    if delay.is_zero()
        && let Some(outcome) = tools::run_now(server, &params)
    {
        server.send(tools::answer_line(id, &outcome));
        return;
    }
    let call_id: Box<str> = id.into();
    server.spawn_call(calls, id, move |guard| {
        tools::serve_call(guard, call_id, params, delay)
    });
}

fn report_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(join_error) = joined
        && join_error.is_panic()
    {
        error!(%join_error, "a call task panicked; its request got no answer");
    }
}
