//! A bridge under test: `mcp-bridge serve` started as a real process on a free loopback port
//! (`--listen 127.0.0.1:0`; the address is read from its log), with a config written for the
//! run. Its log is drained on a thread (a full stderr pipe would stall it) and kept for
//! assertions and error messages. Its HTTP views are read with the product's client, each
//! on a fresh connection.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use bytes::Bytes;
use serde_json::Value;

use crate::client;
use crate::wait::{SETTLE, eventually};
use mcp_bridge::lab::load::Target;

/// Setting either variable echoes every line the bridge logs to stderr, for debugging.
const ECHO_LOG_VARIABLES: [&str; 2] = ["BRIDGE_TEST_LOG", "BENCH_BRIDGE_LOG"];

/// How long a bridge may take to bind and to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a wait for the bridge's state reads again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// A running bridge. Dropping it kills the bridge (SIGKILL by pid) and reaps it.
pub struct Bridge {
    child: Option<Child>,
    /// The pid the bridge was started with; it stays the bridge's number after it exits.
    pid: u32,
    pub address: SocketAddr,
    /// A temporary directory that lives as long as the bridge (its config is written here,
    /// and tests put files for it here).
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Bridge {
    /// Writes `config_toml` to `mcp-bridge.toml` in a new temporary directory and starts
    /// `exe serve` on it with `extra` arguments (such as `--record FILE`); returns once the
    /// bridge has logged its address (not yet ready: see [`Bridge::wait_ready`]).
    pub fn start(exe: &Path, config_toml: &str, extra: &[&str]) -> Result<Bridge> {
        Bridge::start_with_env(exe, config_toml, extra, &[])
    }

    /// Starts `exe serve` on an existing config file, with extra `serve` arguments.
    pub fn start_with_file(
        exe: &Path,
        dir: tempfile::TempDir,
        config_path: PathBuf,
        extra: &[&str],
    ) -> Result<Bridge> {
        Bridge::start_with_file_and_env(exe, dir, config_path, extra, &[])
    }

    /// As [`Bridge::start`], with `env` added to the bridge's own environment (variables a
    /// config names, set for this bridge alone: the test process's environment is shared by
    /// every test running at once and must not change).
    pub fn start_with_env(
        exe: &Path,
        config_toml: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Bridge> {
        let dir = tempfile::tempdir().context("create a temporary directory")?;
        let config_path = dir.path().join("mcp-bridge.toml");
        std::fs::write(&config_path, config_toml).context("write the bridge's config")?;
        Bridge::start_with_file_and_env(exe, dir, config_path, extra, env)
    }

    /// Starts `exe serve` on an existing config file, with extra `serve` arguments and extra
    /// environment variables.
    pub fn start_with_file_and_env(
        exe: &Path,
        dir: tempfile::TempDir,
        config_path: PathBuf,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Bridge> {
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
            .envs(env.iter().copied())
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
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = mpsc::channel();
        let sink = log.clone();
        let echo = ECHO_LOG_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        std::thread::Builder::new()
            .name("bridge-log".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(address) = listening_address(&line) {
                        let _ = address_tx.send(address);
                    }
                    if echo {
                        eprintln!("[bridge] {line}");
                    }
                    if let Ok(mut log) = sink.lock() {
                        log.push(line);
                    }
                }
            })
            .context("start the bridge's log reader")?;
        let mut bridge = Bridge {
            pid: child.id(),
            child: Some(child),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            config_path,
            log,
        };
        match address_rx.recv_timeout(START_TIMEOUT) {
            Ok(address) => bridge.address = address,
            Err(_) => bail!(
                "the bridge did not report its address; log:\n{}",
                bridge.log_text()
            ),
        }
        Ok(bridge)
    }

    /// `http://ADDRESS/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// The bridge's endpoint at `path` as a `bench load` target (no tokens).
    pub fn target(&self, path: &str) -> Target {
        Target::local(self.address, path)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the bridge logged so far.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .map(|log| log.join("\n"))
            .unwrap_or_default()
    }

    /// The last `lines` lines the bridge logged, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.log
            .lock()
            .map(|log| log[log.len().saturating_sub(lines)..].join("\n"))
            .unwrap_or_default()
    }

    /// Whether the bridge logs a line containing `needle` within [`SETTLE`]. The log is
    /// read from the bridge's stderr by a thread of its own, so a line the bridge wrote
    /// before answering a request may not be in [`Bridge::log_text`] yet when the answer
    /// arrives.
    pub async fn logged(&self, needle: &str) -> bool {
        eventually(SETTLE, async || self.log_text().contains(needle)).await
    }

    /// `GET path` on a fresh connection: the status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, Bytes)> {
        Ok(client::admin_get(&self.target(path), path).await?)
    }

    /// Waits until `GET /readyz` answers 200.
    pub async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, _)) = self.get("/readyz").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the bridge never became ready; log:\n{}", self.log_text());
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// `GET /admin/stats`: sessions and every server's pool.
    pub async fn admin_stats(&self) -> Result<Value> {
        let (status, body) = self.get("/admin/stats").await?;
        ensure!(
            status == 200,
            "/admin/stats answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).context("/admin/stats is not JSON")
    }

    /// `GET /admin/stats` for one server.
    pub async fn server_stats(&self, server: &str) -> Result<Value> {
        let stats = self.admin_stats().await?;
        stats["servers"]
            .as_array()
            .and_then(|servers| servers.iter().find(|s| s["server"] == server).cloned())
            .ok_or_else(|| anyhow!("no stats for {server}: {stats}"))
    }

    /// PIDs of a server's live processes, from `/admin/stats`.
    pub async fn backend_pids(&self, server: &str) -> Result<Vec<u32>> {
        let stats = self.server_stats(server).await?;
        Ok(stats["processes"]
            .as_array()
            .map(|processes| {
                processes
                    .iter()
                    .filter_map(|process| process["pid"].as_u64())
                    .filter_map(|pid| u32::try_from(pid).ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The cache's counters from `GET /admin/cache/stats`, or `None` when the bridge answers
    /// 404 there, which it does when its cache is off.
    pub async fn cache_stats(&self) -> Result<Option<Value>> {
        let (status, body) = self.get("/admin/cache/stats").await?;
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

    /// Sends a signal to the bridge process, unless it has been reaped (its pid may then
    /// belong to another process).
    pub fn signal(&self, signal: i32) {
        if self.child.is_none() {
            return;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return;
        };
        // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child,
        // so it cannot have been reused.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// The bridge's exit status once it has exited, reaping it.
    fn try_exit(&mut self) -> Result<Option<ExitStatus>> {
        let child = self
            .child
            .as_mut()
            .context("the bridge was already reaped")?;
        let status = child.try_wait().context("wait for the bridge")?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Waits (blocking the thread) for the bridge to exit and returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the bridge did not exit within {timeout:?}");
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// Stops the bridge with SIGTERM (it drains and stops its backends) and waits for it
    /// without blocking the runtime; past `timeout` it is killed and the stop fails.
    pub async fn stop(mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "the bridge did not stop within {timeout:?} of SIGTERM; log:\n{}",
                    self.log_tail(200)
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

impl Drop for Bridge {
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

/// The sum of the samples of a Prometheus metric whose labels include every `labels` pair
/// (written as `key="value"`).
///
/// Each scrape uses a connection of its own, closed when it returns: a connection left
/// idle would be closed by the bridge's keep-alive timeout and move the connection metrics
/// the tests read.
pub async fn metric(bridge: &Bridge, name: &str, labels: &[&str]) -> Result<f64> {
    let (status, body) = bridge.get("/metrics").await?;
    let text = String::from_utf8_lossy(&body);
    ensure!(status == 200, "/metrics answered {status}: {text}");
    let mut total = 0.0;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let (series, value) = rest
            .rsplit_once(' ')
            .context("metric line without a value")?;
        if labels.iter().all(|label| series.contains(label)) {
            total += value
                .parse::<f64>()
                .with_context(|| format!("bad metric value in {line}"))?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_listening_line() {
        let line = r#"{"message":"listening on http://127.0.0.1:4321/mcp","level":"INFO"}"#;
        assert_eq!(
            listening_address(line),
            Some(SocketAddr::from(([127, 0, 0, 1], 4321)))
        );
        assert_eq!(listening_address("starting"), None);
    }
}
