//! MCP clients that speak to a server process over its stdin and stdout (newline-delimited
//! JSON-RPC), the way the bridge itself talks to a backend: the benches' baselines without a
//! bridge. They send the bytes the HTTP client sends and judge answers with its
//! [`check_call_result`], so the two paths differ only by the transport and the bridge.
//!
//! - [`StdioClient`]: one process, one call at a time on the caller's task (the cheapest
//!   client, for sequential latency), and [`StdioClient::call_once`], a fresh process per
//!   call (no pooling).
//! - [`DirectServer`]: one process with many calls in flight, matched by id by a reader
//!   task (for concurrent callers).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

use crate::client::{INITIALIZED_NOTIFICATION, check_call_result, initialize_request, write_call};

/// How long a server gets to exit after its stdin closes before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// `exe args...` with piped stdin and stdout, killed if its handle is dropped.
fn command(exe: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Spawns `exe args...` and takes its pipes.
fn spawn(exe: &Path, args: &[&str]) -> Result<(Child, ChildStdin, BufReader<ChildStdout>)> {
    let mut child = command(exe, args)
        .spawn()
        .with_context(|| format!("spawn {} {}", exe.display(), args.join(" ")))?;
    let stdin = child.stdin.take().context("the child has no stdin pipe")?;
    let stdout = child
        .stdout
        .take()
        .context("the child has no stdout pipe")?;
    Ok((child, stdin, BufReader::with_capacity(64 * 1024, stdout)))
}

/// Reads lines until the answer with `id` arrives, skipping notifications.
async fn read_answer(
    stdout: &mut BufReader<ChildStdout>,
    line: &mut Vec<u8>,
    id: u64,
) -> Result<Value> {
    loop {
        line.clear();
        let read = stdout
            .read_until(b'\n', line)
            .await
            .context("read from the server")?;
        if read == 0 {
            bail!("the server closed its stdout");
        }
        let message: Value =
            serde_json::from_slice(line).context("the server wrote a non-JSON line")?;
        if message.get("method").is_some() {
            continue;
        }
        if message.get("id").and_then(Value::as_u64) == Some(id) {
            return Ok(message);
        }
        bail!("unexpected message from the server: {message}");
    }
}

/// The MCP handshake: `initialize` (id 0), its answer, then `notifications/initialized`.
async fn handshake(stdin: &mut ChildStdin, stdout: &mut BufReader<ChildStdout>) -> Result<()> {
    let mut request = initialize_request(0).into_bytes();
    request.push(b'\n');
    stdin
        .write_all(&request)
        .await
        .context("write initialize to the server")?;
    let answer = read_answer(stdout, &mut Vec::new(), 0)
        .await
        .context("initialize over stdio")?;
    if answer.get("result").is_none() {
        bail!("the server refused initialize: {answer}");
    }
    let mut notification = INITIALIZED_NOTIFICATION.to_vec();
    notification.push(b'\n');
    stdin
        .write_all(&notification)
        .await
        .context("write notifications/initialized to the server")
}

/// A `tools/call` line with this id and `params` (JSON text).
fn call_line(id: u64, params_json: &str, out: &mut Vec<u8>) {
    out.clear();
    write_call(out, id, params_json);
    out.push(b'\n');
}

/// How long one spawn-per-call call took, both measured from the spawn.
#[derive(Clone, Copy, Debug)]
pub struct SpawnTiming {
    /// Until the call's answer was read.
    pub answered: Duration,
    /// Until the process had exited and was reaped.
    pub exited: Duration,
}

/// A server process and the client end of its pipes, one call at a time.
pub struct StdioClient {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    line: Vec<u8>,
    out: Vec<u8>,
    next_id: u64,
}

impl StdioClient {
    /// Starts `exe args...` and runs the MCP handshake with it.
    pub async fn spawn(exe: &Path, args: &[&str]) -> Result<StdioClient> {
        let (child, mut stdin, mut stdout) = spawn(exe, args)?;
        handshake(&mut stdin, &mut stdout).await?;
        Ok(StdioClient {
            child,
            stdin: Some(stdin),
            stdout,
            line: Vec::with_capacity(4096),
            out: Vec::with_capacity(256),
            next_id: 1,
        })
    }

    /// Sends one `tools/call` with `params` (JSON text) and judges its answer; an error
    /// answer is an error too.
    pub async fn call(&mut self, params_json: &str) -> Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        call_line(id, params_json, &mut self.out);
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin
            .write_all(&self.out)
            .await
            .context("write to the server")?;
        let answer = read_answer(&mut self.stdout, &mut self.line, id).await?;
        Ok(check_call_result(&answer, Some(id))?)
    }

    /// One call with no pooling: starts a fresh server, runs the handshake, makes the call,
    /// reads its answer, then closes stdin and waits for the process to exit, so none is
    /// left behind. Returns the time from the spawn to the answer (what the caller waits
    /// for) and to the exit (what the call costs in all).
    pub async fn call_once(exe: &Path, args: &[&str], params_json: &str) -> Result<SpawnTiming> {
        let started = Instant::now();
        let mut client = StdioClient::spawn(exe, args).await?;
        let outcome = client.call(params_json).await;
        let answered = started.elapsed();
        // Even a failed call's process is closed and reaped before the failure is reported.
        client.close().await?;
        let exited = started.elapsed();
        outcome.map(|()| SpawnTiming { answered, exited })
    }

    /// Closes stdin so the server exits on its own, and kills it if it does not within
    /// [`EXIT_GRACE`].
    pub async fn close(mut self) -> Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(EXIT_GRACE, self.child.wait()).await {
            Ok(status) => {
                status.context("wait for the server")?;
            }
            Err(_) => {
                self.child.kill().await.context("kill the server")?;
            }
        }
        Ok(())
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// One server process with many calls in flight: a writer task owns stdin, a reader task
/// hands each answer to its caller by id.
pub struct DirectServer {
    child: Child,
    lines: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
}

impl DirectServer {
    /// Starts `exe args...`, runs the handshake, and starts the writer and reader tasks.
    pub async fn start(exe: &Path, args: &[&str]) -> Result<Arc<DirectServer>> {
        let (child, mut stdin, mut stdout) = spawn(exe, args)?;
        handshake(&mut stdin, &mut stdout).await?;
        let (lines, mut to_write) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(line) = to_write.recv().await {
                if stdin.write_all(&line).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let waiting = pending.clone();
        tokio::spawn(async move {
            let mut lines = stdout.lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let Some(id) = message.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                if let Some(sender) = waiting.lock().remove(&id) {
                    let _ = sender.send(message);
                }
            }
        });
        Ok(Arc::new(DirectServer {
            child,
            lines,
            pending,
            next_id: AtomicU64::new(1),
        }))
    }

    /// Sends one `tools/call` with `params` (JSON text) and judges its answer.
    pub async fn call(&self, params_json: &str) -> Result<(), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, answer) = oneshot::channel();
        self.pending.lock().insert(id, sender);
        let mut line = Vec::with_capacity(params_json.len() + 64);
        call_line(id, params_json, &mut line);
        self.lines
            .send(line)
            .map_err(|_| "the server's writer stopped".to_owned())?;
        let answer = answer
            .await
            .map_err(|_| "the server closed stdout".to_owned())?;
        check_call_result(&answer, Some(id)).map_err(|failure| failure.to_string())
    }

    /// Kills the server (SIGKILL by pid); the reader and writer tasks then end.
    pub fn stop(&self) {
        if let Some(pid) = self.child.id()
            && let Ok(pid) = libc::pid_t::try_from(pid)
        {
            // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped
            // child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}
