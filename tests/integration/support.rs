//! Shared test harness: starts the real `mcp-bridge` binary on a free loopback port with
//! a config written for the test, installs the real npm servers and Python SDK once,
//! and offers small HTTP and process helpers. Every child is ended by PID on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// The `mcp-bridge` binary cargo built for these tests.
pub fn bridge_exe() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-bridge")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs the pinned npm servers and the Python `mcp` SDK (once per test run) and
/// returns where they live. A missing part is installed, never skipped.
pub fn test_deps() -> &'static TestDeps {
    static DEPS: OnceLock<TestDeps> = OnceLock::new();
    DEPS.get_or_init(|| {
        let root = repo_root();
        run_script("tests/deps/install.sh");
        let base = root.join("build/test-deps");
        TestDeps {
            python: base.join("venv/bin/python"),
            server_everything: base
                .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
            server_memory: base
                .join("node_modules/@modelcontextprotocol/server-memory/dist/index.js"),
            clients_dir: root.join("tests/clients"),
        }
    })
}

pub struct TestDeps {
    pub python: PathBuf,
    pub server_everything: PathBuf,
    pub server_memory: PathBuf,
    /// Python client scripts (`tests/clients/*.py`).
    pub clients_dir: PathBuf,
}

/// TOML for one `[servers.NAME]` table running the bridge's own demo server.
pub fn demo_server_toml(name: &str, demo_args: &[&str], pool: &str) -> String {
    let mut args = vec!["demo-server".to_owned(), "--test-tools".to_owned()];
    args.extend(demo_args.iter().map(|arg| (*arg).to_owned()));
    format!(
        "[servers.{name}]\ncommand = {command}\nargs = {args}\n{pool}\n",
        command = toml_string(bridge_exe()),
        args = serde_json::to_string(&args).unwrap_or_default(),
    )
}

/// TOML for a server running a Node script directly (no npx wrapper).
pub fn node_server_toml(
    name: &str,
    script: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    pool: &str,
) -> String {
    let mut all_args = vec![script.display().to_string()];
    all_args.extend(args.iter().map(|arg| (*arg).to_owned()));
    let env: Vec<String> = env
        .iter()
        .map(|(key, value)| format!("{key} = {}", toml_string(value)))
        .collect();
    format!(
        "[servers.{name}]\ncommand = \"node\"\nargs = {args}\nenv = {{ {env} }}\n{pool}\n",
        args = serde_json::to_string(&all_args).unwrap_or_default(),
        env = env.join(", "),
    )
}

pub fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A running bridge. Dropping it kills the bridge (SIGKILL by PID) and waits for it.
pub struct Bridge {
    child: Option<Child>,
    pub address: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Bridge {
    /// Starts `mcp-bridge serve` with the given TOML (an `[http]` section is not
    /// needed: the listen address is passed on the command line). Tests that are not
    /// about the cache run with it off, so every call they make reaches a backend; a
    /// config with its own `[cache]` section keeps it.
    pub fn start(config_toml: &str) -> Result<Bridge> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("mcp-bridge.toml");
        let mut config = config_toml.to_owned();
        if !config
            .lines()
            .any(|line| line.trim_start().starts_with("[cache"))
        {
            config.push_str("\n[cache]\nenabled = false\n");
        }
        std::fs::write(&config_path, config)?;
        Self::start_with_file(dir, config_path, &[])
    }

    /// Starts the bridge on an existing config file, with extra `serve` arguments.
    pub fn start_with_file(
        dir: tempfile::TempDir,
        config_path: PathBuf,
        extra: &[&str],
    ) -> Result<Bridge> {
        let mut command = Command::new(bridge_exe());
        command
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
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("spawn mcp-bridge")?;
        let stderr = child.stderr.take().context("bridge stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = mpsc::channel();
        let log_sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = listening_address(&line) {
                    let _ = address_tx.send(address);
                }
                if std::env::var_os("BRIDGE_TEST_LOG").is_some() {
                    eprintln!("[bridge] {line}");
                }
                if let Ok(mut log) = log_sink.lock() {
                    log.push(line);
                }
            }
        });
        let mut bridge = Bridge {
            child: Some(child),
            address: String::new(),
            dir,
            config_path,
            log,
        };
        match address_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => bridge.address = address,
            Err(_) => bail!(
                "bridge did not report its address; log:\n{}",
                bridge.log_text()
            ),
        }
        Ok(bridge)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Everything the bridge logged so far.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .map(|log| log.join("\n"))
            .unwrap_or_default()
    }

    /// Whether the bridge logs a line containing `needle` within [`SETTLE`]. The log is
    /// read from the bridge's stderr by a thread of its own, so a line the bridge wrote
    /// before answering a request may not be in [`Bridge::log_text`] yet when the answer
    /// arrives.
    pub async fn logged(&self, needle: &str) -> bool {
        eventually(SETTLE, async || self.log_text().contains(needle)).await
    }

    /// Waits until `GET /readyz` answers 200.
    pub async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = http().get(self.url("/readyz")).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("bridge never became ready; log:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /admin/stats`: sessions and every server's pool.
    pub async fn admin_stats(&self) -> Result<Value> {
        Ok(http()
            .get(self.url("/admin/stats"))
            .send()
            .await?
            .json()
            .await?)
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
                    .filter_map(|p| p["pid"].as_u64())
                    .map(|pid| pid as u32)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Sends a signal to the bridge process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
        unsafe {
            libc::kill(self.pid() as i32, signal);
        }
    }

    /// Waits for the bridge to exit and returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().context("bridge already reaped")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("bridge did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
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

fn listening_address(line: &str) -> Option<String> {
    let start = line.find("listening on http://")? + "listening on http://".len();
    let rest = &line[start..];
    let end = rest.find("/mcp")?;
    Some(rest[..end].to_owned())
}

/// A shared HTTP client for plain requests.
pub fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

/// A minimal session-based MCP client over raw HTTP, for tests that need to control
/// exact bytes and headers (the real SDK clients are used everywhere else).
pub struct RawSession {
    pub url: String,
    pub session_id: String,
}

impl RawSession {
    pub async fn open(url: &str) -> Result<RawSession> {
        let response = post_json(
            url,
            None,
            &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw-test","version":"1"}}}),
        )
        .await?;
        let session_id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|value| value.to_str().ok())
            .context("initialize returned no Mcp-Session-Id")?
            .to_owned();
        Ok(RawSession {
            url: url.to_owned(),
            session_id,
        })
    }

    /// Sends a request and returns the JSON-RPC response (read from JSON or SSE).
    pub async fn request(&self, id: Value, method: &str, params: Value) -> Result<Value> {
        let message = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        let response = post_json(&self.url, Some(&self.session_id), &message).await?;
        read_response(response).await
    }

    pub async fn call_tool(&self, id: Value, name: &str, arguments: Value) -> Result<Value> {
        self.request(
            id,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }
}

pub async fn post_json(
    url: &str,
    session: Option<&str>,
    message: &Value,
) -> Result<reqwest::Response> {
    let mut request = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    Ok(request.body(message.to_string()).send().await?)
}

/// Reads a JSON-RPC response from a JSON body or the last `data:` line of an SSE body.
pub async fn read_response(response: reqwest::Response) -> Result<Value> {
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    let text = response.text().await?;
    if !is_sse {
        return serde_json::from_str(&text)
            .with_context(|| format!("response is not JSON: {text}"));
    }
    sse_messages(&text)
        .into_iter()
        .rfind(|message| message.get("id").is_some() && message.get("method").is_none())
        .with_context(|| format!("no response in SSE body: {text}"))
}

/// Every JSON message in an SSE body.
pub fn sse_messages(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str(data).ok())
        .collect()
}

/// Runs a Python client script from `tests/clients/` with the pinned SDK and parses
/// the JSON it prints last on stdout.
pub async fn run_python_client(script: &str, args: &[&str]) -> Result<Value> {
    let deps = test_deps();
    let output = tokio::process::Command::new(&deps.python)
        .arg(deps.clients_dir.join(script))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .context("run python client")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "{script} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        );
    }
    let last = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    serde_json::from_str(last)
        .with_context(|| format!("{script} printed no JSON result:\n{stdout}\nstderr:\n{stderr}"))
}

/// Whether a process with this PID exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// How long a test waits for state that another thread or process updates later (a
/// counter, a gauge published on a supervisor tick, a file a background writer flushes,
/// a log line read from a pipe). Far longer than any of them takes on an idle machine,
/// so that a loaded machine does not fail the test; a test that passes waits only as
/// long as the state takes to settle.
pub const SETTLE: Duration = Duration::from_secs(15);

/// Polls `condition` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Reads a value another thread or process updates later until `done` holds for it or
/// `timeout` passes, and returns the last value read. The caller then asserts on that
/// value exactly, so a wait that runs out fails with the value actually seen (never
/// with a bare "timed out"), and a value that overshoots still fails.
pub async fn poll_until<T>(
    timeout: Duration,
    mut read: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let value = read().await;
        if done(&value) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Lines of a demo server `--calls-log` file naming `tool`.
pub fn count_calls(calls_log: &Path, tool: &str) -> usize {
    std::fs::read_to_string(calls_log)
        .map(|text| {
            text.lines()
                .filter(|line| line.split_whitespace().nth(1) == Some(tool))
                .count()
        })
        .unwrap_or(0)
}

/// Runs one of the project's bash scripts (relative to the repo root); panics if it fails.
fn run_script(script: &str) {
    let status = Command::new("bash")
        .arg(repo_root().join(script))
        .status()
        .unwrap_or_else(|error| panic!("run {script}: {error}"));
    assert!(status.success(), "{script} failed: {status}");
}

/// The built `.wasm` of an example plugin (`seed-ttl-table`) or a test-only one
/// (`fault-trap`), by package name. The `mcp-bridge-plugin-artifacts` dev-dependency's
/// build script builds every plugin from `plugins/` before the tests compile; a test
/// naming one plugin uses its constant (`plugin_artifacts::SEED_TTL_TABLE`) instead.
pub fn plugin_wasm(package: &str) -> &'static str {
    plugin_artifacts::named(package)
        .unwrap_or_else(|| panic!("no plugin package `{package}` under plugins/"))
        .path
}

/// Publishes a plugin the way operators are told to: copy to a hidden temporary name
/// in the directory, then rename it into place (one atomic step for the watcher).
pub fn publish_plugin(source: &Path, dir: &Path, file: &str) -> Result<()> {
    let temporary = dir.join(format!(".{file}.tmp"));
    std::fs::copy(source, &temporary)?;
    std::fs::rename(&temporary, dir.join(file))?;
    Ok(())
}

/// The resident set size of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The sum of the samples of a Prometheus metric whose labels include every `labels` pair
/// (written as `key="value"`).
///
/// Each scrape uses a client of its own, closed when it returns: a pooled connection left
/// idle would be closed by the bridge's keep-alive timeout and move the connection metrics
/// the tests read.
pub async fn metric(bridge: &Bridge, name: &str, labels: &[&str]) -> Result<f64> {
    let text = reqwest::Client::new()
        .get(bridge.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
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

/// Reads a child's stderr lines until one satisfies `done` or `timeout` passes, and returns
/// every line read (the last one is the one that satisfied `done`, if any did).
pub fn read_lines_until(
    stderr: std::process::ChildStderr,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> Vec<String> {
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let finished = done(&line);
        lines.push(line);
        if finished {
            break;
        }
    }
    lines
}
