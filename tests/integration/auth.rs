//! The identity tests' harness: who is calling, through the real binary with real
//! credentials. Bearer JWTs are minted per run by a real JOSE library
//! (`tests/clients/auth_issuer.py`: PyJWT, RSA and EC keys generated per run, the JWKS
//! served over HTTP on loopback, key rotation, OAuth endpoints) and API keys are written in
//! the config. Here: the issuer process ([`Issuer`]), a bridge with identities serving the
//! demo server with its calls log ([`Guarded`]), requests and sessions that carry a
//! credential ([`send`], [`Session`]).
//!
//! The tests: `auth_attacks.rs` (refusals, JWKS refresh bounds, rotation, revocation,
//! session binding, admin routes), `auth_clients.rs` (the official clients with tokens and
//! the Python SDK's OAuth discovery), `auth_principals.rs` (cache partitions, access rules,
//! limits and the audit log by principal).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{
    Bridge, count_calls, demo_server_toml, http, install_tls_provider, metric, sse_messages,
    start_bridge, test_deps, toml_string,
};

/// The bridge's resource URI in every test that does not need clients to reach the bridge
/// through it: tokens are minted for it, and the 401's `resource_metadata` is derived from it.
pub(crate) const AUDIENCE: &str = "https://bridge.test/mcp";

/// Where the protected-resource metadata of [`AUDIENCE`] lives (RFC 9728: the well-known
/// prefix inserted before the resource's path).
pub(crate) const METADATA_URL: &str =
    "https://bridge.test/.well-known/oauth-protected-resource/mcp";

/// How long the issuer may take to generate its keys and report its port.
const ISSUER_START: Duration = Duration::from_secs(30);

/// The counter of requests the router forwarded to a backend.
pub(crate) const BACKEND_CALLS: &str = "mcp_bridge_calls_total";

/// The counter of checked credentials, by `result` (`ok` or the refusal's reason).
pub(crate) const AUTH_REQUESTS: &str = "mcp_bridge_auth_requests_total";

/// `tests/clients/auth_issuer.py`, running on a free loopback port: the authorization
/// server whose keys the bridge trusts. Killed (by its own handle) when dropped.
pub(crate) struct Issuer {
    /// Held so the pipe stays open while the issuer runs.
    _stdout: tokio::process::ChildStdout,
    process: tokio::process::Child,
    /// `http://127.0.0.1:PORT` (or https): the `iss` of its tokens.
    pub url: String,
    /// What the test talks to the issuer with: one that trusts its CA when it serves https.
    client: reqwest::Client,
}

impl Issuer {
    /// Starts an issuer; `args` are its flags (`--oauth-sub NAME`, `--oauth-roles ...`).
    pub(crate) async fn start(args: &[&str]) -> Result<Issuer> {
        Issuer::launch(args, None).await
    }

    /// Starts an issuer serving https with a certificate from a CA made for the run, whose
    /// certificate it writes to `tls_dir/ca.pem`.
    pub(crate) async fn start_https(tls_dir: &Path) -> Result<Issuer> {
        Issuer::launch(&[], Some(tls_dir)).await
    }

    async fn launch(args: &[&str], tls_dir: Option<&Path>) -> Result<Issuer> {
        install_tls_provider();
        let mut command = tokio::process::Command::new(&test_deps().python);
        command
            .arg(test_deps().clients_dir.join("auth_issuer.py"))
            .args(["--audience", AUDIENCE])
            .args(args);
        if let Some(dir) = tls_dir {
            command.arg("--tls-dir").arg(dir);
        }
        let mut process = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start tests/clients/auth_issuer.py")?;
        let stdout = process.stdout.take().context("the issuer has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(ISSUER_START, lines.next_line())
            .await
            .context("the issuer did not report its port in time")??
            .context("the issuer exited before reporting its port")?;
        let port: u16 = first.trim().parse().context("the issuer's port")?;
        let (scheme, client) = match tls_dir {
            None => ("http", http().clone()),
            Some(dir) => {
                let pem = std::fs::read(dir.join("ca.pem")).context("the issuer's CA")?;
                let roots = reqwest::Certificate::from_pem_bundle(&pem)?;
                let client = reqwest::Client::builder().tls_certs_merge(roots).build()?;
                ("https", client)
            }
        };
        Ok(Issuer {
            _stdout: lines.into_inner().into_inner(),
            process,
            url: format!("{scheme}://127.0.0.1:{port}"),
            client,
        })
    }

    /// Kills the issuer: its JWKS URL stops answering.
    pub(crate) async fn stop(mut self) -> Result<()> {
        self.process.kill().await.context("kill the issuer")
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(
            status.is_success(),
            "issuer {path} answered {status}: {text}"
        );
        Ok(serde_json::from_str(&text)?)
    }

    /// A token as `spec` asks for (see the script's doc); its `aud` is [`AUDIENCE`] unless
    /// `spec` names another.
    pub(crate) async fn mint(&self, spec: Value) -> Result<String> {
        let mut spec = spec;
        if spec.get("aud").is_none() {
            spec["aud"] = json!(AUDIENCE);
        }
        let answer = self.post("/mint", &spec).await?;
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .context("the issuer minted no token")
    }

    /// A valid RS256 token for `sub` with `roles` and the `mcp` scope.
    pub(crate) async fn token(&self, sub: &str, roles: &[&str]) -> Result<String> {
        self.mint(json!({"sub": sub, "roles": roles})).await
    }

    /// Adds a new RSA key, which signs RS256 tokens from now on; returns its kid.
    pub(crate) async fn rotate(&self) -> Result<String> {
        let answer = self.post("/rotate", &json!({})).await?;
        answer["kid"]
            .as_str()
            .map(str::to_owned)
            .context("no kid after rotating")
    }

    /// The issuer's counters and request log.
    pub(crate) async fn stats(&self) -> Result<Value> {
        let response = self
            .client
            .get(format!("{}/stats", self.url))
            .send()
            .await?;
        Ok(response.json().await?)
    }

    /// How many times the JWKS was fetched.
    pub(crate) async fn jwks_fetches(&self) -> Result<u64> {
        self.stats().await?["jwks_fetches"]
            .as_u64()
            .context("no jwks_fetches in the issuer's stats")
    }

    /// An `[auth.jwt]` table trusting this issuer for `audience`, requiring the `mcp` scope,
    /// with `extra` lines.
    pub(crate) fn jwt_toml(&self, audience: &str, extra: &str) -> String {
        format!(
            "[auth.jwt]\nissuer = {issuer}\naudience = {audience}\njwks_url = {jwks}\n\
             required_scopes = [\"mcp\"]\n{extra}\n",
            issuer = toml_string(&self.url),
            audience = toml_string(audience),
            jwks = toml_string(&format!("{}/jwks.json", self.url)),
        )
    }
}

/// API keys of the tests' principals (the bridge wants at least 16 printable characters).
pub(crate) const ALICE_KEY: &str = "alice-key-3b9d71e2f04a";
pub(crate) const BOB_KEY: &str = "bob-key-c40e58a7d19b";

/// API keys for alice (with `alice_roles`) and bob (no roles).
pub(crate) fn two_keys(alice_roles: &[&str]) -> String {
    format!(
        "{}\n{}",
        api_key_toml("alice", alice_roles, ALICE_KEY),
        api_key_toml("bob", &[], BOB_KEY)
    )
}

/// One `[[auth.api_keys]]` entry with the key written in the config.
pub(crate) fn api_key_toml(principal: &str, roles: &[&str], key: &str) -> String {
    format!(
        "[[auth.api_keys]]\nprincipal = {principal}\nroles = {roles}\nkey = {key}\n",
        principal = toml_string(principal),
        roles = serde_json::to_string(roles).unwrap_or_default(),
        key = toml_string(key),
    )
}

/// A bridge with identities configured, serving the demo server as `demo` (one process per
/// `pool`), whose calls land in a calls log the fixture keeps.
pub(crate) struct Guarded {
    pub bridge: Bridge,
    pub calls: PathBuf,
    _dir: tempfile::TempDir,
}

impl Guarded {
    /// Starts the bridge with `config` (the `[auth]`, `[access]`, ... sections and any other
    /// server) beside the demo server.
    pub(crate) async fn start(config: &str, pool: &str) -> Result<Guarded> {
        install_tls_provider();
        let dir = tempfile::tempdir()?;
        let calls = dir.path().join("calls.log");
        let calls_arg = calls.display().to_string();
        let demo = demo_server_toml("demo", &["--calls-log", &calls_arg], pool);
        let bridge = start_bridge(&format!("{demo}\n{config}"))?;
        bridge.wait_ready().await?;
        Ok(Guarded {
            bridge,
            calls,
            _dir: dir,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        self.bridge.url(path)
    }

    /// `tools/call`s of `tool` the demo server received.
    pub(crate) fn calls_of(&self, tool: &str) -> usize {
        count_calls(&self.calls, tool)
    }

    /// Requests the router forwarded to the demo server.
    pub(crate) async fn backend_calls(&self) -> Result<f64> {
        metric(&self.bridge, BACKEND_CALLS, &["server=\"demo\""]).await
    }

    /// Rewrites the bridge's config file with `edit` (written aside, then renamed over, as a
    /// deployment does), so the running bridge reloads it.
    pub(crate) fn edit_config(&self, edit: impl FnOnce(String) -> String) -> Result<()> {
        edit_config(&self.bridge.config_path, edit)
    }
}

/// Rewrites a config file with `edit`, atomically.
pub(crate) fn edit_config(path: &Path, edit: impl FnOnce(String) -> String) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let staged = path.with_extension("toml.new");
    std::fs::write(&staged, edit(text))?;
    std::fs::rename(&staged, path)?;
    Ok(())
}

/// What the bridge answered to one request.
pub(crate) struct Reply {
    pub status: u16,
    /// The `WWW-Authenticate` header ("" without one).
    pub challenge: String,
    pub retry_after: Option<String>,
    pub session: Option<String>,
    pub body: String,
}

impl Reply {
    /// The JSON-RPC response in the body (plain JSON, or the last response of an SSE body).
    pub(crate) fn message(&self) -> Result<Value> {
        if let Ok(value) = serde_json::from_str::<Value>(&self.body) {
            return Ok(value);
        }
        sse_messages(&self.body)
            .into_iter()
            .rfind(|message| message.get("id").is_some() && message.get("method").is_none())
            .with_context(|| {
                format!(
                    "no JSON-RPC response in HTTP {}: {}",
                    self.status, self.body
                )
            })
    }

    /// Everything a client can read about a refusal: the challenge and the body.
    pub(crate) fn explanation(&self) -> String {
        format!("HTTP {} [{}] {}", self.status, self.challenge, self.body)
    }
}

/// Sends one request to an MCP endpoint with `token` as the bearer credential (none when
/// `None`) and `session` as the `Mcp-Session-Id`.
pub(crate) async fn send(
    method: Method,
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    message: Option<&Value>,
) -> Result<Reply> {
    let mut request = http()
        .request(method, url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    if let Some(message) = message {
        request = request
            .header("content-type", "application/json")
            .body(message.to_string());
    }
    let response = request.send().await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let (challenge, retry_after) = (header("www-authenticate"), header("retry-after"));
    let session = header("mcp-session-id");
    Ok(Reply {
        status: response.status().as_u16(),
        challenge: challenge.unwrap_or_default(),
        retry_after,
        session,
        body: response.text().await?,
    })
}

/// `initialize`, for a new session.
pub(crate) fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "auth-test", "version": "1"}}})
}

/// A `tools/call` request.
pub(crate) fn tool_call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}})
}

/// An MCP session opened with one credential, over raw HTTP.
pub(crate) struct Session {
    pub url: String,
    pub token: String,
    pub id: String,
    next_id: AtomicU64,
}

impl Session {
    pub(crate) async fn open(url: &str, token: &str) -> Result<Session> {
        let reply = send(Method::POST, url, Some(token), None, Some(&initialize())).await?;
        ensure!(
            reply.status == 200,
            "initialize was refused: {}",
            reply.explanation()
        );
        let id = reply
            .session
            .clone()
            .context("initialize returned no Mcp-Session-Id")?;
        Ok(Session {
            url: url.to_owned(),
            token: token.to_owned(),
            id,
            next_id: AtomicU64::new(1),
        })
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `message` on this session with `token` as the credential (another principal's
    /// token, a forged one, or none).
    pub(crate) async fn send_as(&self, token: Option<&str>, message: &Value) -> Result<Reply> {
        send(
            Method::POST,
            &self.url,
            token,
            Some(&self.id),
            Some(message),
        )
        .await
    }

    /// Calls `tool` with this session's own credential and returns the HTTP reply.
    pub(crate) async fn call_reply(&self, tool: &str, arguments: Value) -> Result<Reply> {
        let message = tool_call(self.next_id(), tool, arguments);
        self.send_as(Some(&self.token), &message).await
    }

    /// Calls `tool` and returns the JSON-RPC response (a result or an error).
    pub(crate) async fn call(&self, tool: &str, arguments: Value) -> Result<Value> {
        let reply = self.call_reply(tool, arguments).await?;
        ensure!(
            reply.status == 200,
            "{tool} was refused: {}",
            reply.explanation()
        );
        reply.message()
    }

    /// Calls `tool` and returns its `structuredContent`, failing on any error.
    pub(crate) async fn structured(&self, tool: &str, arguments: Value) -> Result<Value> {
        let response = self.call(tool, arguments).await?;
        let result = &response["result"];
        ensure!(
            response.get("error").is_none() && result["isError"] != true,
            "{tool} failed: {response}"
        );
        Ok(result["structuredContent"].clone())
    }

    /// Sends a request with this session's own credential and returns the JSON-RPC response.
    pub(crate) async fn request(&self, method: &str, params: Value) -> Result<Value> {
        let message =
            json!({"jsonrpc": "2.0", "id": self.next_id(), "method": method, "params": params});
        let reply = self.send_as(Some(&self.token), &message).await?;
        ensure!(
            reply.status == 200,
            "{method} was refused: {}",
            reply.explanation()
        );
        reply.message()
    }

    /// The `field` of every item in the `list` of a list method's result (`tools/list` and
    /// `name`, `resources/list` and `uri`, ...).
    pub(crate) async fn listed(
        &self,
        method: &str,
        list: &str,
        field: &str,
    ) -> Result<Vec<String>> {
        let response = self.request(method, json!({})).await?;
        let items = response["result"][list]
            .as_array()
            .with_context(|| format!("{method} answered {response}"))?;
        let mut names: Vec<String> = items
            .iter()
            .filter_map(|item| item[field].as_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The tool names `tools/list` offers this session, sorted.
    pub(crate) async fn tool_names(&self) -> Result<Vec<String>> {
        self.listed("tools/list", "tools", "name").await
    }
}
