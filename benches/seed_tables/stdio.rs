//! The two baselines without a bridge, driven in the bench process with the same calls: one
//! long-lived demo server spoken to over stdin/stdout (many calls in flight, matched by id,
//! as the bridge does), and a fresh demo server per call (spawn, initialize, call, exit: the
//! seed's "no pooling").

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

/// The `initialize` request and `notifications/initialized`, as one stdio client sends them.
fn handshake_lines() -> String {
    let initialize = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "seed-tables-bench", "version": "1" },
        },
    });
    format!("{initialize}\n")
}

const INITIALIZED: &str = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";

fn call_line(id: u64, params: &str) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{params}}}\n")
}

/// Judges a `tools/call` answer like the load generator does.
fn check(answer: &Value) -> Result<(), String> {
    if let Some(error) = answer.get("error") {
        return Err(format!("JSON-RPC error: {error}"));
    }
    match answer.get("result") {
        Some(result) if result.get("isError").and_then(Value::as_bool) == Some(true) => {
            Err(format!("tool error: {result}"))
        }
        Some(_) => Ok(()),
        None => Err(format!("no result: {answer}")),
    }
}

fn command(exe: &str, demo_args: &[String]) -> Command {
    let mut command = Command::new(exe);
    command
        .arg("demo-server")
        .args(demo_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// One demo server with many calls in flight: a writer task owns stdin, a reader task hands
/// each answer to its caller by id.
pub struct DirectServer {
    child: Child,
    lines: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: AtomicU64,
}

impl DirectServer {
    pub async fn start(exe: &str, demo_args: &[String]) -> Result<Arc<DirectServer>> {
        let mut child = command(exe, demo_args)
            .spawn()
            .context("spawn the demo server")?;
        let mut stdin: ChildStdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut reader = BufReader::new(stdout).lines();
        stdin.write_all(handshake_lines().as_bytes()).await?;
        let answer = reader
            .next_line()
            .await?
            .context("the demo server closed stdout")?;
        if !answer.contains("\"result\"") {
            bail!("initialize failed: {answer}");
        }
        stdin.write_all(INITIALIZED.as_bytes()).await?;
        let (lines, mut to_write) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(line) = to_write.recv().await {
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let waiting = pending.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
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

    pub async fn call(&self, params: &str) -> Result<(), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, answer) = oneshot::channel();
        self.pending.lock().insert(id, sender);
        self.lines
            .send(call_line(id, params))
            .map_err(|_| "the demo server's writer stopped".to_owned())?;
        let answer = answer
            .await
            .map_err(|_| "the demo server closed stdout".to_owned())?;
        check(&answer)
    }

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

/// One call with a fresh demo server: spawn, initialize, call, close stdin, wait for the
/// exit. Everything the seed's "no pooling" client pays per call.
pub async fn spawn_per_call(
    exe: Arc<PathBuf>,
    demo_args: Arc<Vec<String>>,
    params: Arc<str>,
) -> Result<(), String> {
    let exe = exe.display().to_string();
    let mut child = command(&exe, &demo_args)
        .spawn()
        .map_err(|error| format!("spawn: {error}"))?;
    let outcome = async {
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut reader = BufReader::new(stdout).lines();
        let write = |error: std::io::Error| format!("write: {error}");
        stdin
            .write_all(handshake_lines().as_bytes())
            .await
            .map_err(write)?;
        let first = reader
            .next_line()
            .await
            .map_err(|error| format!("read: {error}"))?;
        if !first.is_some_and(|line| line.contains("\"result\"")) {
            return Err("initialize failed".to_owned());
        }
        let request = format!("{INITIALIZED}{}", call_line(1, &params));
        stdin.write_all(request.as_bytes()).await.map_err(write)?;
        let answer = loop {
            let line = reader
                .next_line()
                .await
                .map_err(|error| format!("read: {error}"))?
                .ok_or("the demo server closed stdout")?;
            let message: Value =
                serde_json::from_str(&line).map_err(|error| format!("bad line: {error}"))?;
            if message.get("id").and_then(Value::as_u64) == Some(1) {
                break message;
            }
        };
        drop(stdin);
        check(&answer)
    }
    .await;
    // The process exits when its stdin closes; waiting for it is part of the per-call cost.
    match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            let _ = child.kill().await;
        }
    }
    outcome
}
