//! Who is calling, through the real binary with real credentials: bearer JWTs minted per run
//! by a real JOSE library (`tests/clients/auth_issuer.py`: PyJWT, RSA and EC keys generated
//! per run, the JWKS served over HTTP on loopback, a key rotation) and API keys.
//!
//! This file holds the identity tests' harness (the issuer process, a bridge with `[auth]`,
//! requests that carry a credential) and the attacks: each is answered 401/403 with its
//! reason and never reaches a backend (the demo server's `--calls-log` and
//! `mcp_bridge_calls_total` do not move), a burst of unknown key ids costs at most one JWKS
//! fetch, a rotated key is fetched once, a revoked API key stops working after a config
//! reload, a session id presented by another principal is refused and counted, and the admin
//! routes need the admin role. `auth_clients.rs` drives the official clients and
//! `auth_principals.rs` what depends on the principal (cache partitions, access rules,
//! limits, the audit log).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{
    Bridge, SETTLE, count_calls, demo_server_toml, http, metric, poll_until, sse_messages,
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
const AUTH_REQUESTS: &str = "mcp_bridge_auth_requests_total";

/// `tests/clients/auth_issuer.py`, running on a free loopback port: the authorization
/// server whose keys the bridge trusts. Killed (by its own handle) when dropped.
pub(crate) struct Issuer {
    /// Held so the pipe stays open while the issuer runs.
    _stdout: tokio::process::ChildStdout,
    _process: tokio::process::Child,
    /// `http://127.0.0.1:PORT`: the `iss` of its tokens.
    pub url: String,
}

impl Issuer {
    /// Starts an issuer; `args` are its flags (`--oauth-sub NAME`, `--oauth-roles ...`).
    pub(crate) async fn start(args: &[&str]) -> Result<Issuer> {
        let mut process = tokio::process::Command::new(&test_deps().python)
            .arg(test_deps().clients_dir.join("auth_issuer.py"))
            .args(["--audience", AUDIENCE])
            .args(args)
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
        Ok(Issuer {
            _stdout: lines.into_inner().into_inner(),
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = http()
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
        let response = http().get(format!("{}/stats", self.url)).send().await?;
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
fn initialize() -> Value {
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

    /// The tool names `tools/list` offers this session.
    pub(crate) async fn tool_names(&self) -> Result<Vec<String>> {
        let message = json!({"jsonrpc": "2.0", "id": self.next_id(), "method": "tools/list"});
        let reply = self.send_as(Some(&self.token), &message).await?;
        let response = reply.message()?;
        let tools = response["result"]["tools"]
            .as_array()
            .with_context(|| format!("tools/list answered {response}"))?;
        Ok(tools
            .iter()
            .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
            .collect())
    }
}

/// The refusals counted with `result` in `mcp_bridge_auth_requests_total`.
async fn refusals(bridge: &Bridge, result: &str) -> Result<f64> {
    metric(bridge, AUTH_REQUESTS, &[&format!("result=\"{result}\"")]).await
}

/// The quoted value of `name` in a `WWW-Authenticate` challenge.
pub(crate) fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &challenge[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Asserts that `reply` is a 401 challenge pointing at the metadata, with `error` (none for a
/// request that sent no credential).
fn assert_challenge(context: &str, reply: &Reply, error: Option<&str>) {
    assert_eq!(reply.status, 401, "{context}: {}", reply.explanation());
    assert!(
        reply.challenge.starts_with("Bearer "),
        "{context}: not a Bearer challenge: {}",
        reply.explanation()
    );
    assert_eq!(
        challenge_param(&reply.challenge, "resource_metadata").as_deref(),
        Some(METADATA_URL),
        "{context}: {}",
        reply.explanation()
    );
    assert_eq!(
        challenge_param(&reply.challenge, "error").as_deref(),
        error,
        "{context}: {}",
        reply.explanation()
    );
}

/// A bridge trusting `issuer`, with `extra` lines in `[auth.jwt]`.
async fn jwt_bridge(issuer: &Issuer, extra: &str) -> Result<Guarded> {
    Guarded::start(&issuer.jwt_toml(AUDIENCE, extra), "max_connections = 1").await
}

/// Every forged or misused token is refused with 401 (403 for a missing scope), a challenge
/// that names the metadata and the RFC 6750 error, a reason a person can act on, and the
/// refusal's label in `mcp_bridge_auth_requests_total`; none reaches the demo server, even
/// on a session a valid token opened.
#[tokio::test]
async fn forged_and_misused_tokens_are_refused_before_any_backend() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = jwt_bridge(&issuer, "").await?;
    let url = demo.url("/mcp/demo");
    // Both key types sign tokens the bridge accepts.
    let alice = Session::open(&url, &issuer.token("alice", &[]).await?).await?;
    alice.structured("get_clients", json!({})).await?;
    let es256 = issuer.mint(json!({"sub": "alice", "alg": "ES256"})).await?;
    let with_ec = Session::open(&url, &es256).await?;
    with_ec.structured("get_clients", json!({})).await?;
    let (calls_before, forwarded_before) =
        (demo.calls_of("get_clients"), demo.backend_calls().await?);
    assert_eq!(calls_before, 2, "the two valid calls reached the server");

    let bare = alice
        .send_as(None, &tool_call(90, "get_clients", json!({})))
        .await?;
    assert_challenge("no token", &bare, None);

    let rsa_kid = issuer.stats().await?["kids"]["rsa"][0].clone();
    let attacks = [
        ("expired", json!({"exp_in": -600}), "expired", "expired"),
        (
            "not yet valid",
            json!({"nbf_in": 600}),
            "not_yet_valid",
            "not valid yet",
        ),
        (
            "wrong issuer",
            json!({"iss": "http://127.0.0.1:9"}),
            "wrong_issuer",
            "issued by",
        ),
        (
            "wrong audience",
            json!({"aud": "https://other.test/mcp"}),
            "wrong_audience",
            "another resource",
        ),
        (
            "alg none",
            json!({"alg": "none"}),
            "algorithm_not_allowed",
            "'none'",
        ),
        (
            "HS256 keyed with the RSA public key",
            json!({"alg": "HS256-with-public-key", "kid": rsa_kid}),
            "algorithm_not_allowed",
            "'HS256'",
        ),
        (
            "tampered payload",
            json!({"tamper": true}),
            "bad_signature",
            "signature",
        ),
    ];
    for (attack, spec, reason, explained) in attacks {
        let token = issuer.mint(spec.clone()).await?;
        let before = refusals(&demo.bridge, reason).await?;
        let reply = alice
            .send_as(Some(&token), &tool_call(91, "get_clients", json!({})))
            .await?;
        assert_challenge(attack, &reply, Some("invalid_token"));
        assert!(
            challenge_param(&reply.challenge, "error_description").is_some_and(|d| !d.is_empty()),
            "{attack}: no error_description: {}",
            reply.explanation()
        );
        assert!(
            reply.explanation().contains(explained),
            "{attack}: the answer does not say '{explained}': {}",
            reply.explanation()
        );
        let counted = refusals(&demo.bridge, reason).await? - before;
        assert_eq!(counted, 1.0, "{attack}: not counted as result=\"{reason}\"");
    }
    let junk = alice
        .send_as(
            Some("not-a-jwt-nor-a-key"),
            &tool_call(92, "get_clients", json!({})),
        )
        .await?;
    assert_challenge("an unknown credential", &junk, Some("invalid_token"));

    // A valid token without the required scope: 403, naming the scope to ask for.
    let unscoped = issuer
        .mint(json!({"sub": "alice", "scope": "profile"}))
        .await?;
    let reply = alice
        .send_as(Some(&unscoped), &tool_call(93, "get_clients", json!({})))
        .await?;
    assert_eq!(reply.status, 403, "{}", reply.explanation());
    assert_eq!(
        challenge_param(&reply.challenge, "error").as_deref(),
        Some("insufficient_scope"),
        "{}",
        reply.explanation()
    );
    assert_eq!(
        challenge_param(&reply.challenge, "scope").as_deref(),
        Some("mcp"),
        "{}",
        reply.explanation()
    );

    assert_eq!(
        demo.calls_of("get_clients"),
        calls_before,
        "a refused call reached the server"
    );
    assert_eq!(
        demo.backend_calls().await?,
        forwarded_before,
        "a refused call was forwarded"
    );
    Ok(())
}

/// The metadata a client finds from the 401 names the resource, the issuer, the scope and
/// the header as the way to send a token, at both well-known paths.
#[tokio::test]
async fn protected_resource_metadata_is_served_at_both_well_known_paths() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = jwt_bridge(&issuer, "scopes_supported = [\"mcp\"]").await?;
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let response = http().get(demo.url(path)).send().await?;
        assert_eq!(response.status(), 200, "{path}");
        let metadata: Value = response.json().await?;
        assert_eq!(metadata["resource"], AUDIENCE, "{path}: {metadata}");
        assert_eq!(
            metadata["authorization_servers"],
            json!([issuer.url]),
            "{path}: {metadata}"
        );
        assert_eq!(
            metadata["scopes_supported"],
            json!(["mcp"]),
            "{path}: {metadata}"
        );
        let methods = metadata["bearer_methods_supported"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(methods.contains(&json!("header")), "{path}: {metadata}");
    }
    Ok(())
}

/// Twenty requests at once, each naming a key id the JWKS does not have, are all refused and
/// cost the issuer at most one JWKS fetch.
#[tokio::test]
async fn a_burst_of_unknown_key_ids_costs_at_most_one_jwks_fetch() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = jwt_bridge(&issuer, "").await?;
    let url = demo.url("/mcp/demo");
    let alice = Session::open(&url, &issuer.token("alice", &[]).await?).await?;
    let forwarded_before = demo.backend_calls().await?;
    let fetches_before = issuer.jwks_fetches().await?;
    let mut tokens = Vec::new();
    for n in 0..20 {
        tokens.push(issuer.mint(json!({"kid": format!("made-up-{n}")})).await?);
    }
    let message = tool_call(7, "get_clients", json!({}));
    let replies = futures_util::future::join_all(
        tokens
            .iter()
            .map(|token| alice.send_as(Some(token), &message)),
    )
    .await;
    for (n, reply) in replies.into_iter().enumerate() {
        let reply = reply?;
        assert_challenge(&format!("unknown kid {n}"), &reply, Some("invalid_token"));
        assert!(
            reply.explanation().contains(&format!("made-up-{n}")),
            "{}",
            reply.explanation()
        );
    }
    let fetched = issuer.jwks_fetches().await? - fetches_before;
    assert!(
        fetched <= 1,
        "20 unknown key ids caused {fetched} JWKS fetches"
    );
    let counted = metric(
        &demo.bridge,
        "mcp_bridge_auth_jwks_fetches_total",
        &["trigger=\"unknown_kid\""],
    )
    .await?;
    assert!(counted <= 1.0, "{counted} unknown-kid fetches counted");
    assert_eq!(refusals(&demo.bridge, "unknown_key").await?, 20.0);
    assert_eq!(demo.calls_of("get_clients"), 0);
    assert_eq!(demo.backend_calls().await?, forwarded_before);
    Ok(())
}

/// After the issuer rotates to a new key, a token signed with it is accepted once the bridge
/// has fetched the JWKS again (one fetch), and tokens of the old key keep working.
#[tokio::test]
async fn a_rotated_signing_key_is_fetched_once_and_accepted() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = jwt_bridge(&issuer, "jwks_refresh_interval = \"1s\"").await?;
    let url = demo.url("/mcp/demo");
    let old = issuer.token("alice", &[]).await?;
    Session::open(&url, &old)
        .await?
        .structured("get_clients", json!({}))
        .await?;
    let fetches_before = issuer.jwks_fetches().await?;

    let kid = issuer.rotate().await?;
    let rotated = issuer.token("alice", &[]).await?;
    let accepted = poll_until(
        SETTLE,
        async || {
            send(
                Method::POST,
                &url,
                Some(&rotated),
                None,
                Some(&initialize()),
            )
            .await
            .map(|r| r.status)
            .ok()
        },
        |status| *status == Some(200),
    )
    .await;
    assert_eq!(
        accepted,
        Some(200),
        "a token signed with the new key {kid} was never accepted"
    );
    let fetched = issuer.jwks_fetches().await? - fetches_before;
    assert_eq!(fetched, 1, "the rotation cost {fetched} JWKS fetches");
    Session::open(&url, &rotated)
        .await?
        .structured("get_clients", json!({}))
        .await?;
    Session::open(&url, &old)
        .await?
        .structured("get_clients", json!({}))
        .await?;
    Ok(())
}

/// An API key removed from the config stops working once the bridge reloads the file: a new
/// session and the key's open session are refused (and never reach the server), while the
/// other key keeps working.
#[tokio::test]
async fn a_revoked_api_key_is_refused_after_a_config_reload() -> Result<()> {
    let ci_key = "ci-bot-key-8c5e0f3d2a";
    let ops_key = "ops-key-41b7d9e6";
    let revoked = api_key_toml("ci-bot", &["ci"], ci_key);
    let config = format!("{revoked}\n{}", api_key_toml("ops", &[], ops_key));
    let demo = Guarded::start(&config, "max_connections = 1").await?;
    let url = demo.url("/mcp/demo");
    let ci = Session::open(&url, ci_key).await?;
    ci.structured("get_clients", json!({})).await?;
    let ops = Session::open(&url, ops_key).await?;

    demo.edit_config(|text| text.replace(&revoked, ""))?;
    let refused = poll_until(
        SETTLE,
        async || {
            send(Method::POST, &url, Some(ci_key), None, Some(&initialize()))
                .await
                .map(|r| r.status)
                .ok()
        },
        |status| *status == Some(401),
    )
    .await;
    assert_eq!(
        refused,
        Some(401),
        "the revoked key still opens sessions:\n{}",
        demo.bridge.log_tail(30)
    );
    let forwarded_before = demo.backend_calls().await?;
    let reply = ci.call_reply("get_clients", json!({})).await?;
    assert_challenge(
        "the revoked key's open session",
        &reply,
        Some("invalid_token"),
    );
    assert_eq!(
        demo.calls_of("get_clients"),
        1,
        "the revoked key's call reached the server"
    );
    assert_eq!(demo.backend_calls().await?, forwarded_before);
    ops.structured("get_clients", json!({})).await?;
    Ok(())
}

/// A session id presented with another principal's valid credential is refused with 403 and
/// counted, for a call and for a DELETE; the session's owner keeps using it.
#[tokio::test]
async fn a_session_replayed_under_another_principal_is_refused_and_counted() -> Result<()> {
    let config = format!(
        "{}\n{}",
        api_key_toml("alice", &[], "alice-key-1f2e"),
        api_key_toml("bob", &[], "bob-key-9a8b")
    );
    let demo = Guarded::start(&config, "max_connections = 1").await?;
    let url = demo.url("/mcp/demo");
    let alice = Session::open(&url, "alice-key-1f2e").await?;
    let forwarded_before = demo.backend_calls().await?;
    let mismatches = "mcp_bridge_auth_session_principal_mismatch_total";

    let replayed = alice
        .send_as(
            Some("bob-key-9a8b"),
            &tool_call(5, "get_clients", json!({})),
        )
        .await?;
    assert_eq!(replayed.status, 403, "{}", replayed.explanation());
    assert_eq!(metric(&demo.bridge, mismatches, &[]).await?, 1.0);
    let deleted = send(
        Method::DELETE,
        &url,
        Some("bob-key-9a8b"),
        Some(&alice.id),
        None,
    )
    .await?;
    assert_eq!(
        deleted.status,
        403,
        "bob closed alice's session: {}",
        deleted.explanation()
    );
    assert_eq!(metric(&demo.bridge, mismatches, &[]).await?, 2.0);
    assert_eq!(
        demo.calls_of("get_clients"),
        0,
        "the replayed call reached the server"
    );
    assert_eq!(demo.backend_calls().await?, forwarded_before);

    alice.structured("get_clients", json!({})).await?;
    Ok(())
}

/// The admin routes need a credential whose principal holds an admin role: none is 401, a
/// principal without the role 403, one with it 200 (and the stats name who is connected).
#[tokio::test]
async fn admin_routes_need_an_admin_role() -> Result<()> {
    let config = format!(
        "[auth]\nadmin_roles = [\"admin\"]\n{}\n{}",
        api_key_toml("alice", &["analyst"], "alice-key-77aa"),
        api_key_toml("root", &["admin"], "root-key-0c1d"),
    );
    let demo = Guarded::start(&config, "").await?;
    let _alice = Session::open(&demo.url("/mcp/demo"), "alice-key-77aa").await?;
    let stats = demo.url("/admin/stats");
    let get = async |token: Option<&str>| send(Method::GET, &stats, token, None, None).await;
    let anonymous = get(None).await?;
    assert_eq!(anonymous.status, 401, "{}", anonymous.explanation());
    let analyst = get(Some("alice-key-77aa")).await?;
    assert_eq!(analyst.status, 403, "{}", analyst.explanation());
    let admin = get(Some("root-key-0c1d")).await?;
    assert_eq!(admin.status, 200, "{}", admin.explanation());
    assert!(
        admin.body.contains("\"alice\""),
        "/admin/stats does not show alice's session: {}",
        admin.body
    );
    Ok(())
}
