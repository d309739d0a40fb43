//! The integration tests' harness: what only these tests need (the pinned npm servers and
//! Python SDK, installed once; demo and Node server configs; the cache-off default; a raw
//! session over reqwest; the Python client runner) on top of the harness they share with the
//! benches, `mcp-bridge-test-support`, whose items are re-exported here: the bridge as a real
//! process ([`Bridge`], ended by PID on drop), the one bounded poll ([`poll_until`],
//! [`eventually`], [`SETTLE`]), metrics, `/proc` facts and plugin builds.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

pub(crate) use mcp_bridge_test_support::process::{process_alive, read_lines_until, rss_kib};
pub(crate) use mcp_bridge_test_support::repo::{
    plugin_wasm, publish_plugin, repo_root, run_script, toml_string,
};
pub(crate) use mcp_bridge_test_support::{Bridge, SETTLE, eventually, metric, poll_until};

/// The `mcp-bridge` binary cargo built for these tests.
pub(crate) fn bridge_exe() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-bridge")
}

/// Installs the pinned npm servers and the Python `mcp` SDK (once per test run) and
/// returns where they live. A missing part is installed, never skipped.
pub(crate) fn test_deps() -> &'static TestDeps {
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

pub(crate) struct TestDeps {
    pub python: PathBuf,
    pub server_everything: PathBuf,
    pub server_memory: PathBuf,
    /// Python client scripts (`tests/clients/*.py`).
    pub clients_dir: PathBuf,
}

/// TOML for one `[servers.NAME]` table running the bridge's own demo server.
pub(crate) fn demo_server_toml(name: &str, demo_args: &[&str], pool: &str) -> String {
    let mut args = vec!["demo-server".to_owned(), "--test-tools".to_owned()];
    args.extend(demo_args.iter().map(|arg| (*arg).to_owned()));
    format!(
        "[servers.{name}]\ncommand = {command}\nargs = {args}\n{pool}\n",
        command = toml_string(bridge_exe()),
        args = serde_json::to_string(&args).unwrap_or_default(),
    )
}

/// TOML for a server running a Node script directly (no npx wrapper).
pub(crate) fn node_server_toml(
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

/// Starts `mcp-bridge serve` with the given TOML (an `[http]` section is not needed: the
/// listen address is passed on the command line). Tests that are not about the cache run
/// with it off, so every call they make reaches a backend; a config with its own `[cache]`
/// section keeps it.
pub(crate) fn start_bridge(config_toml: &str) -> Result<Bridge> {
    start_bridge_with_env(config_toml, &[])
}

/// As [`start_bridge`], with `env` added to the bridge's environment (for variables the
/// config reads, which the test process must not set for everyone).
pub(crate) fn start_bridge_with_env(config_toml: &str, env: &[(&str, &str)]) -> Result<Bridge> {
    let mut config = config_toml.to_owned();
    if !config
        .lines()
        .any(|line| line.trim_start().starts_with("[cache"))
    {
        config.push_str("\n[cache]\nenabled = false\n");
    }
    Bridge::start_with_env(Path::new(bridge_exe()), &config, &[], env)
}

/// Starts the bridge on an existing config file, with extra `serve` arguments.
pub(crate) fn start_bridge_with_file(
    dir: tempfile::TempDir,
    config_path: PathBuf,
    extra: &[&str],
) -> Result<Bridge> {
    Bridge::start_with_file(Path::new(bridge_exe()), dir, config_path, extra)
}

/// Installs the TLS crypto provider every reqwest client in this process needs, before one
/// is built: the auth crate builds reqwest with `rustls-no-provider` (its JWKS fetches use
/// `ring`), and cargo unifies that feature into the reqwest these tests and rmcp use, whose
/// clients panic when built without a provider. Cheap after the first call.
pub(crate) fn install_tls_provider() {
    mcp_bridge::auth::install_tls_crypto_provider();
}

/// A shared HTTP client for plain requests.
pub(crate) fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        install_tls_provider();
        reqwest::Client::new()
    })
}

/// A minimal session-based MCP client over raw HTTP, for tests that need to control
/// exact bytes and headers (the real SDK clients are used everywhere else).
pub(crate) struct RawSession {
    pub url: String,
    pub session_id: String,
}

impl RawSession {
    pub(crate) async fn open(url: &str) -> Result<RawSession> {
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
    pub(crate) async fn request(&self, id: Value, method: &str, params: Value) -> Result<Value> {
        let message = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        let response = post_json(&self.url, Some(&self.session_id), &message).await?;
        read_response(response).await
    }

    pub(crate) async fn call_tool(&self, id: Value, name: &str, arguments: Value) -> Result<Value> {
        self.request(
            id,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }
}

pub(crate) async fn post_json(
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
pub(crate) async fn read_response(response: reqwest::Response) -> Result<Value> {
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
pub(crate) fn sse_messages(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str(data).ok())
        .collect()
}

/// Runs a Python client script from `tests/clients/` with the pinned SDK and parses
/// the JSON it prints last on stdout.
pub(crate) async fn run_python_client(script: &str, args: &[&str]) -> Result<Value> {
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

/// Lines of a demo server `--calls-log` file naming `tool`.
pub(crate) fn count_calls(calls_log: &Path, tool: &str) -> usize {
    std::fs::read_to_string(calls_log)
        .map(|text| {
            text.lines()
                .filter(|line| line.split_whitespace().nth(1) == Some(tool))
                .count()
        })
        .unwrap_or(0)
}
