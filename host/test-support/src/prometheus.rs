//! A real Prometheus (Debian's `prometheus` package, installed by
//! `scripts/install-services.sh` when missing) scraping bridges on a free loopback port, with
//! its config and time-series storage in a directory of its own, and `promtool` from the same
//! package for checking and unit-testing rule files.
//!
//! The observability tests use it to prove the shipped dashboard and rules against the real
//! thing: Prometheus scrapes a bridge under load every [`SCRAPE_INTERVAL`], evaluates the
//! shipped rule files as often, and every dashboard expression is run through its HTTP API
//! ([`Prometheus::query`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::client;
use crate::process::process_alive;
use crate::service::{self, POLL_EVERY};
use mcp_bridge::lab::load::Target;

/// Where Debian's package puts the server.
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Where the same package puts promtool.
const PROMTOOL: &str = "/usr/bin/promtool";

/// How often Prometheus scrapes its targets and evaluates its rules: often, so that a test
/// has the samples a rate needs within seconds.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// How long Prometheus may take to open its storage and answer `/-/ready`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long Prometheus may take to exit after SIGTERM (it closes its storage head).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long one promtool run may take.
const PROMTOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Prometheus. Dropping it stops Prometheus (SIGTERM, then SIGKILL past a bound)
/// and removes its directory.
pub struct Prometheus {
    child: Option<Child>,
    /// The pid Prometheus was started with (it stays that number after the process exits).
    pid: u32,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port scraping `/metrics` of each of `targets`
    /// (job `mcp-bridge`) every [`SCRAPE_INTERVAL`] and evaluating `rule_files` as often,
    /// and waits until it is ready. Installs Debian's prometheus first if it is missing.
    pub async fn start(targets: &[SocketAddr], rule_files: &[&Path]) -> Result<Prometheus> {
        ensure!(!targets.is_empty(), "Prometheus needs at least one target");
        service::ensure_installed("prometheus", Path::new(PROMETHEUS)).await?;
        let dir = tempfile::Builder::new()
            .prefix("mcp-bridge-prometheus-")
            .tempdir()
            .context("create Prometheus's directory")?;
        std::fs::write(
            dir.path().join("prometheus.yml"),
            config(targets, rule_files)?,
        )
        .context("write prometheus.yml")?;
        let mut prometheus = Prometheus {
            child: None,
            pid: 0,
            port: 0,
            dir,
        };
        service::start_on_a_free_port(&mut prometheus).await?;
        Ok(prometheus)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The address Prometheus listens on.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Prometheus's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether Prometheus is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some() && process_alive(self.pid)
    }

    /// The last `lines` lines of Prometheus's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        service::file_tail(&self.dir.path().join("prometheus.log"), lines)
    }

    /// `GET path` on a fresh connection: the status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        let target = Target::local(self.address(), "/");
        let (status, body) = client::admin_get(&target, path)
            .await
            .with_context(|| format!("GET {path} from Prometheus"))?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Evaluates `expr` now through the HTTP API (`/api/v1/query`) and returns the whole
    /// answer (`status`, `data.resultType`, `data.result`, or `errorType` and `error`), as
    /// long as Prometheus answered with JSON. A query Prometheus refuses (a syntax error)
    /// is returned too, with status `error`, for the caller to report with its context.
    pub async fn query(&self, expr: &str) -> Result<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (status, body) = self.get(&path).await?;
        serde_json::from_str(&body).with_context(|| {
            format!("Prometheus answered {status} with something other than JSON to {expr}: {body}")
        })
    }

    /// The series `expr` returns now (`data.result` of an instant query); fails when the
    /// query itself fails.
    pub async fn series(&self, expr: &str) -> Result<Vec<Value>> {
        let answer = self.query(expr).await?;
        ensure!(
            answer["status"] == "success",
            "Prometheus refused {expr}: {answer}"
        );
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Stops Prometheus with SIGTERM and waits for it; past a bound it is killed and the stop
    /// fails. Stopping a stopped Prometheus does nothing.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        service::terminate(&mut child, "prometheus", STOP_TIMEOUT).await
    }

    /// Starts Prometheus on the current port and waits until `/-/ready` answers 200.
    async fn launch(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.path().join("prometheus.log"))
            .context("create prometheus.log")?;
        let child = Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("share prometheus.log")?)
            .stderr(log)
            .spawn()
            .context("spawn prometheus")?;
        self.pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, _)) = self.get("/-/ready").await {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("wait for prometheus")?
            {
                self.child = None;
                bail!(
                    "prometheus exited at start ({status}); its log:\n{}",
                    self.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                if let Some(mut child) = self.child.take() {
                    service::signal(child.id(), libc::SIGKILL);
                    let _ = child.wait();
                }
                bail!(
                    "prometheus was not ready within {START_TIMEOUT:?}; its log:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        service::signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(POLL_EVERY);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs `promtool` with `args` in `dir` (installing Debian's prometheus package first if it
/// is missing) and returns its output whatever its exit status, for the caller to assert on.
pub async fn promtool(dir: &Path, args: &[&str]) -> Result<Output> {
    service::ensure_installed("prometheus", Path::new(PROMETHEUS)).await?;
    ensure!(
        Path::new(PROMTOOL).is_file(),
        "{PROMTOOL} is missing although the prometheus package is installed"
    );
    let mut command = tokio::process::Command::new(PROMTOOL);
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(PROMTOOL_TIMEOUT, command.output())
        .await
        .with_context(|| format!("promtool {args:?} ran past {PROMTOOL_TIMEOUT:?}"))?
        .with_context(|| format!("run promtool {args:?}"))
}

/// The config: one job scraping every target, the rule files by absolute path, and one
/// interval for scrapes and rule evaluation (the scrape timeout may not exceed it).
fn config(targets: &[SocketAddr], rule_files: &[&Path]) -> Result<String> {
    let interval = format!("{}s", SCRAPE_INTERVAL.as_secs());
    let mut text = format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {interval}\n"
    );
    text.push_str("rule_files:\n");
    for file in rule_files {
        let absolute: PathBuf =
            std::fs::canonicalize(file).with_context(|| format!("rule file {}", file.display()))?;
        // A JSON string is a valid YAML scalar, quotes and escapes included.
        let quoted = serde_json::to_string(&absolute.display().to_string())?;
        let _ = writeln!(text, "  - {quoted}");
    }
    text.push_str(
        "scrape_configs:\n  - job_name: mcp-bridge\n    static_configs:\n      - targets:\n",
    );
    for target in targets {
        let _ = writeln!(text, "          - \"{target}\"");
    }
    Ok(text)
}

/// Percent-encodes a query-string value: everything but RFC 3986's unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

impl service::LoopbackService for Prometheus {
    const NAME: &'static str = "Prometheus";

    fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    async fn launch_on_port(&mut self) -> Result<()> {
        self.launch().await
    }

    fn port_was_taken(&self) -> bool {
        self.log_tail(20).contains("address already in use")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            percent_encode(r#"sum by (server) (rate(x{a=~".*"}[1m]))"#),
            "sum%20by%20%28server%29%20%28rate%28x%7Ba%3D~%22.%2A%22%7D%5B1m%5D%29%29"
        );
        assert_eq!(percent_encode("up"), "up");
    }

    #[test]
    fn the_config_scrapes_every_target_and_loads_the_rules() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let rules = dir.path().join("rules.yml");
        std::fs::write(&rules, "groups: []\n")?;
        let text = config(
            &[SocketAddr::from(([127, 0, 0, 1], 4321))],
            &[rules.as_path()],
        )?;
        assert!(text.contains("scrape_interval: 1s"), "{text}");
        assert!(text.contains("scrape_timeout: 1s"), "{text}");
        assert!(text.contains("- \"127.0.0.1:4321\""), "{text}");
        assert!(text.contains("rules.yml\""), "{text}");
        Ok(())
    }
}
