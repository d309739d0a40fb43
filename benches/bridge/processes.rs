//! A bridge under test: `mcp-bridge serve` started as a real process on a free loopback port,
//! with a config written for the run. Its log is drained on a thread (a full stderr pipe would
//! stall it) and kept for error messages.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::http;

/// How many log lines are kept for error messages.
const LOG_TAIL_LINES: usize = 200;

/// A running bridge. Dropping it kills the process (by its pid) and reaps it.
pub struct BridgeProcess {
    child: Option<Child>,
    pub address: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
    _dir: tempfile::TempDir,
}

impl BridgeProcess {
    /// Writes `config_toml` to a temporary file and starts `exe serve` on it, listening on a
    /// free loopback port; returns once the bridge has logged its address.
    pub async fn start(exe: &Path, config_toml: &str) -> Result<Self> {
        Self::start_with_args(exe, config_toml, &[]).await
    }

    /// [`BridgeProcess::start`] with more `serve` arguments (such as `--record FILE`).
    pub async fn start_with_args(exe: &Path, config_toml: &str, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir().context("create a temporary directory")?;
        let config_path = dir.path().join("bench.toml");
        std::fs::write(&config_path, config_toml).context("write the bench config")?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--log-level",
                "info",
            ])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {} serve", exe.display()))?;
        let stderr = child
            .stderr
            .take()
            .context("the bridge has no stderr pipe")?;
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL_LINES)));
        let (address_tx, address_rx) = tokio::sync::oneshot::channel();
        let sink = log.clone();
        std::thread::Builder::new()
            .name("bridge-log".into())
            .spawn(move || {
                let mut address_tx = Some(address_tx);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(address) = listening_address(&line)
                        && let Some(sender) = address_tx.take()
                    {
                        let _ = sender.send(address);
                    }
                    if std::env::var_os("BENCH_BRIDGE_LOG").is_some() {
                        eprintln!("[bridge] {line}");
                    }
                    if let Ok(mut log) = sink.lock() {
                        if log.len() == LOG_TAIL_LINES {
                            log.pop_front();
                        }
                        log.push_back(line);
                    }
                }
            })?;
        let mut bridge = Self {
            child: Some(child),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            _dir: dir,
        };
        match tokio::time::timeout(Duration::from_secs(30), address_rx).await {
            Ok(Ok(address)) => bridge.address = address,
            _ => bail!(
                "the bridge did not report its address; log:\n{}",
                bridge.log_tail()
            ),
        }
        Ok(bridge)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines the bridge logged.
    pub fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|log| log.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Waits until `GET /readyz` answers 200.
    pub async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http::get(self.address, "/readyz").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the bridge never became ready; log:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The pids of a server's backend processes, from `GET /admin/stats`.
    pub async fn backend_pids(&self, server: &str) -> Result<Vec<u32>> {
        let (status, body) = http::get(self.address, "/admin/stats").await?;
        if status != 200 {
            bail!("/admin/stats answered HTTP {status}");
        }
        let stats: Value = serde_json::from_slice(&body).context("/admin/stats is not JSON")?;
        let pids = stats["servers"]
            .as_array()
            .and_then(|servers| servers.iter().find(|entry| entry["server"] == server))
            .and_then(|entry| entry["processes"].as_array())
            .map(|processes| {
                processes
                    .iter()
                    .filter_map(|process| process["pid"].as_u64())
                    .filter_map(|pid| u32::try_from(pid).ok())
                    .collect()
            })
            .unwrap_or_default();
        Ok(pids)
    }

    /// The cache's counters from `GET /admin/cache/stats`, or `None` when the bridge answers
    /// 404 there, which it does when its cache is off.
    pub async fn cache_stats(&self) -> Result<Option<Value>> {
        let (status, body) = http::get(self.address, "/admin/cache/stats").await?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .context("/admin/cache/stats is not JSON"),
            404 => Ok(None),
            _ => bail!(
                "/admin/cache/stats answered HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// Stops the bridge with SIGTERM (it drains and stops its backends) and waits for it,
    /// killing it after `timeout`.
    pub async fn stop(mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("the bridge was already stopped")?;
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child,
        // so it cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().context("wait for the bridge")? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the bridge did not stop within {timeout:?} of SIGTERM; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The address in the bridge's "listening on http://ADDR/mcp" log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let marker = "listening on http://";
    let rest = &line[line.find(marker)? + marker.len()..];
    rest[..rest.find("/mcp")?].parse().ok()
}
