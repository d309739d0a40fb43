//! The baseline: a minimal MCP client that talks to the demo server directly over its stdin and
//! stdout (newline-delimited JSON-RPC), the way the bridge itself talks to a backend; and the
//! same client used without any pooling, one fresh process per call.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::http::CallOutcome;
use super::rpc::{self, CallEncoder};

/// How long one spawn-per-call call took, both measured from the spawn.
#[derive(Clone, Copy, Debug)]
pub struct SpawnTiming {
    /// Until the call's answer was read.
    pub answered: Duration,
    /// Until the process had exited and was reaped.
    pub exited: Duration,
}

/// A demo server process and the client end of its pipes.
pub struct StdioClient {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    encoder: CallEncoder,
    line: Vec<u8>,
    out: Vec<u8>,
    next_id: u64,
}

impl StdioClient {
    /// Starts `exe args...` and runs the MCP handshake with it.
    pub async fn spawn(exe: &Path, args: &[&str]) -> Result<Self> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {} {}", exe.display(), args.join(" ")))?;
        let stdin = child.stdin.take().context("the child has no stdin pipe")?;
        let stdout = child
            .stdout
            .take()
            .context("the child has no stdout pipe")?;
        let mut client = Self {
            child,
            stdin: Some(stdin),
            stdout: BufReader::with_capacity(64 * 1024, stdout),
            encoder: CallEncoder::new(rpc::TOOL)?,
            line: Vec::with_capacity(4096),
            out: Vec::with_capacity(256),
            next_id: 1,
        };
        client.out = rpc::initialize(0)?;
        client.out.push(b'\n');
        let answer = client
            .round_trip(0)
            .await
            .context("initialize over stdio")?;
        if answer.get("result").is_none() {
            bail!("the demo server refused initialize: {answer}");
        }
        client.out.clear();
        client.out.extend_from_slice(rpc::INITIALIZED);
        client.out.push(b'\n');
        client.send().await?;
        Ok(client)
    }

    async fn send(&mut self) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin
            .write_all(&self.out)
            .await
            .context("write to the demo server")
    }

    /// Sends the message in `self.out` and reads lines until the answer with `id` arrives,
    /// skipping notifications.
    async fn round_trip(&mut self, id: u64) -> Result<Value> {
        self.send().await?;
        loop {
            self.line.clear();
            let read = self
                .stdout
                .read_until(b'\n', &mut self.line)
                .await
                .context("read from the demo server")?;
            if read == 0 {
                bail!("the demo server closed its stdout");
            }
            let message: Value = serde_json::from_slice(&self.line)
                .context("the demo server wrote a non-JSON line")?;
            if message.get("method").is_some() {
                continue;
            }
            if message.get("id").and_then(Value::as_u64) == Some(id) {
                return Ok(message);
            }
            bail!("unexpected message from the demo server: {message}");
        }
    }

    /// Calls the bench's tool once.
    pub async fn call_tool(&mut self) -> CallOutcome {
        let id = self.next_id;
        self.next_id += 1;
        self.out.clear();
        self.encoder.encode(id, &mut self.out);
        self.out.push(b'\n');
        let answer = self.round_trip(id).await?;
        Ok(rpc::check_call_result(&answer, Some(id)))
    }

    /// One call with no pooling: starts a fresh server, runs the handshake (`initialize` and
    /// `notifications/initialized`), makes the call, reads its answer, then closes stdin and
    /// waits for the process to exit, so none is left behind. Returns the time from the spawn
    /// to the answer (what the caller waits for) and to the exit (what the call costs in all).
    pub async fn call_once(exe: &Path, args: &[&str]) -> Result<SpawnTiming> {
        let started = Instant::now();
        let mut client = Self::spawn(exe, args).await?;
        let outcome = client.call_tool().await;
        let answered = started.elapsed();
        // Even a failed call's process is closed and reaped before the failure is reported.
        client.close().await?;
        let exited = started.elapsed();
        match outcome {
            Ok(Ok(())) => Ok(SpawnTiming { answered, exited }),
            Ok(Err(message)) => bail!("{message}"),
            Err(error) => Err(error),
        }
    }

    /// Closes stdin so the server exits on its own, and kills it if it does not.
    pub async fn close(mut self) -> Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(status) => {
                status.context("wait for the demo server")?;
            }
            Err(_) => {
                self.child.kill().await.context("kill the demo server")?;
            }
        }
        Ok(())
    }
}
