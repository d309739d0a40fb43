//! Sessions across replicas: bridges started with the same `[sessions] keys` continue each
//! other's sessions from the signed `Mcp-Session-Id` alone (no balancer needed: requests go
//! to each replica directly). A tampered token is an unknown session, another principal
//! presenting it is refused, rotation accepts the old key while it is listed, a reload
//! swaps the keys, and a DELETE ends the session. The Python SDK's client keeps its session
//! with its requests alternating between two replicas.

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::{ALICE_KEY, BOB_KEY, edit_config, two_keys};
use crate::support::{
    Bridge, SETTLE, demo_server_toml, eventually, http, metric, run_python_client, start_bridge,
};

/// The key the first replicas sign with, and the one a rotation brings in.
const OLD_KEY: &str = "old-session-key-5b1f0e9c2d7a4836b1f0e9c2d7a48365";
const NEW_KEY: &str = "new-session-key-c83e1a6f90d24b7e83e1a6f90d24b7e8";

/// The session-based version the tests open sessions with: not the newest, so a replica
/// that did not learn it from the token would disagree with the client's header.
const VERSION: &str = "2025-06-18";

/// A bridge serving the demo server, with alice's (an admin) and bob's API keys and `keys`
/// as its session keys.
async fn replica(keys: &[&str]) -> Result<Bridge> {
    let config = format!(
        "{}\n{}\n[sessions]\nkeys = {}\n",
        demo_server_toml("demo", &[], ""),
        two_keys(&["admin"]),
        serde_json::to_string(keys)?
    );
    let bridge = start_bridge(&config)?;
    bridge.wait_ready().await?;
    Ok(bridge)
}

/// What one request got back.
struct Answer {
    status: u16,
    session: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("HTTP {} is not JSON: {}", self.status, self.body))
    }
}

/// Sends `message` (or nothing) to `url` as the holder of `api_key`, in `session`, with
/// `MCP-Protocol-Version: version`.
async fn send(
    method: Method,
    url: &str,
    api_key: &str,
    session: Option<&str>,
    version: &str,
    message: Option<&Value>,
) -> Result<Answer> {
    let mut request = http()
        .request(method, url)
        .header("authorization", format!("Bearer {api_key}"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    if let Some(message) = message {
        request = request
            .header("content-type", "application/json")
            .body(message.to_string());
    }
    let response = request.send().await?;
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Ok(Answer {
        status: response.status().as_u16(),
        session,
        body: response.text().await?,
    })
}

/// Opens a session on `bridge` as the holder of `api_key` and returns its token.
async fn open(bridge: &Bridge, api_key: &str) -> Result<String> {
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {"sampling": {}},
        "clientInfo": {"name": "replica-test", "version": "3.2"}}});
    let answer = send(
        Method::POST,
        &bridge.url("/mcp/demo"),
        api_key,
        None,
        VERSION,
        Some(&initialize),
    )
    .await?;
    ensure!(
        answer.status == 200,
        "initialize: HTTP {} {}",
        answer.status,
        answer.body
    );
    let token = answer.session.context("initialize returned no session")?;
    ensure!(
        token.starts_with("v1.") && token.bytes().all(|byte| (0x21..=0x7e).contains(&byte)),
        "the session id is not a visible-ASCII token: {token}"
    );
    Ok(token)
}

/// Calls `get_clients` on `bridge` in `session` as the holder of `api_key`.
async fn call(bridge: &Bridge, api_key: &str, session: &str) -> Result<Answer> {
    let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "get_clients", "arguments": {}}});
    send(
        Method::POST,
        &bridge.url("/mcp/demo"),
        api_key,
        Some(session),
        VERSION,
        Some(&message),
    )
    .await
}

/// Whether `get_clients` succeeds on `bridge` in `session` (as alice).
async fn works(bridge: &Bridge, session: &str) -> Result<bool> {
    let answer = call(bridge, ALICE_KEY, session).await?;
    Ok(answer.status == 200 && answer.json()?["result"]["isError"] != true)
}

async fn refused(bridge: &Bridge, reason: &str) -> Result<f64> {
    metric(
        bridge,
        "mcp_bridge_session_tokens_refused_total",
        &[&format!("reason=\"{reason}\"")],
    )
    .await
}

/// A session opened on A works on B with its protocol version; a tampered token is a 404
/// (counted by reason), bob presenting alice's token is a 403 (counted), and after a DELETE
/// on A the token is a 404 there.
#[tokio::test]
async fn a_session_opened_on_one_replica_continues_on_another() -> Result<()> {
    let (a, b) = tokio::try_join!(replica(&[OLD_KEY]), replica(&[OLD_KEY]))?;
    let token = open(&a, ALICE_KEY).await?;
    ensure!(
        works(&a, &token).await?,
        "the session fails where it opened"
    );

    let on_b = call(&b, ALICE_KEY, &token).await?;
    ensure!(
        on_b.status == 200 && on_b.json()?["result"]["isError"] != true,
        "B did not continue A's session: HTTP {} {}",
        on_b.status,
        on_b.body
    );
    assert_eq!(
        metric(&b, "mcp_bridge_sessions_resumed_total", &[]).await?,
        1.0
    );
    // B took the session's version and client from the token.
    let stats = http()
        .get(b.url("/admin/stats"))
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .send()
        .await?
        .json::<Value>()
        .await?;
    let sessions = &stats["sessions"];
    assert_eq!(sessions["by_protocol_version"][VERSION], 1, "{stats}");
    assert_eq!(sessions["by_client"]["replica-test"], 1, "{stats}");
    assert_eq!(sessions["by_principal"]["alice"], 1, "{stats}");

    // One character of the token changed: an unknown session, with today's error.
    let position = token.len() / 2;
    let replacement = if token.as_bytes()[position] == b'A' {
        "B"
    } else {
        "A"
    };
    let tampered = format!(
        "{}{replacement}{}",
        &token[..position],
        &token[position + 1..]
    );
    let answer = call(&b, ALICE_KEY, &tampered).await?;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(
        answer.body.contains("unknown or expired session"),
        "{}",
        answer.body
    );
    assert_eq!(refused(&b, "mac").await?, 1.0);

    // Bob holding alice's token, on the replica that holds it and on one that does not.
    let mismatches = "mcp_bridge_auth_session_principal_mismatch_total";
    let c = replica(&[OLD_KEY]).await?;
    for bridge in [&b, &c] {
        let answer = call(bridge, BOB_KEY, &token).await?;
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert_eq!(metric(bridge, mismatches, &[]).await?, 1.0);
    }
    assert_eq!(
        metric(&c, "mcp_bridge_sessions_resumed_total", &[]).await?,
        0.0,
        "bob's request made alice's session on C"
    );
    ensure!(works(&c, &token).await?, "alice's own request failed on C");

    // DELETE on A ends the session there.
    let deleted = send(
        Method::DELETE,
        &a.url("/mcp/demo"),
        ALICE_KEY,
        Some(&token),
        VERSION,
        None,
    )
    .await?;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let after = call(&a, ALICE_KEY, &token).await?;
    assert_eq!(after.status, 404, "{}", after.body);
    assert_eq!(refused(&a, "revoked").await?, 1.0);
    Ok(())
}

/// Rotation: a replica with `[new, old]` accepts a token signed by `old` and signs with
/// `new`; a replica with only `[new]` refuses `old`'s tokens. A reload swaps the keys in a
/// running replica the same way.
#[tokio::test]
async fn rotation_accepts_the_old_key_while_it_is_listed() -> Result<()> {
    let (a, rotating, new_only) = tokio::try_join!(
        replica(&[OLD_KEY]),
        replica(&[NEW_KEY, OLD_KEY]),
        replica(&[NEW_KEY])
    )?;
    let by_old = open(&a, ALICE_KEY).await?;
    ensure!(
        works(&rotating, &by_old).await?,
        "[new, old] refused old's token"
    );
    let refused_answer = call(&new_only, ALICE_KEY, &by_old).await?;
    assert_eq!(refused_answer.status, 404, "{}", refused_answer.body);
    assert_eq!(refused(&new_only, "mac").await?, 1.0);
    let by_new = open(&rotating, ALICE_KEY).await?;
    ensure!(
        works(&new_only, &by_new).await?,
        "[new] refused a token [new, old] signed"
    );

    // A reload of A to [new, old]: its session goes on, and new ones are signed by new.
    edit_config(&a.config_path, |text| {
        text.replace(
            &format!("keys = [\"{OLD_KEY}\"]"),
            &format!("keys = [\"{NEW_KEY}\", \"{OLD_KEY}\"]"),
        )
    })?;
    let signs_with_new = eventually(SETTLE, async || {
        let Ok(token) = open(&a, ALICE_KEY).await else {
            return false;
        };
        works(&new_only, &token).await.unwrap_or(false)
    })
    .await;
    ensure!(
        signs_with_new,
        "A never signed with the new key after the reload:\n{}",
        a.log_tail(20)
    );
    ensure!(
        works(&a, &by_old).await?,
        "A's session ended with the rotation"
    );
    // A reload to [new] alone ends the sessions old signed.
    edit_config(&a.config_path, |text| {
        text.replace(
            &format!("keys = [\"{NEW_KEY}\", \"{OLD_KEY}\"]"),
            &format!("keys = [\"{NEW_KEY}\"]"),
        )
    })?;
    let ended = eventually(SETTLE, async || {
        call(&a, ALICE_KEY, &by_old)
            .await
            .is_ok_and(|answer| answer.status == 404)
    })
    .await;
    ensure!(ended, "old's session outlived its key:\n{}", a.log_tail(20));
    Ok(())
}

/// The official Python SDK's session client, with every HTTP request sent to the next of two
/// replicas in turn (a balancer without affinity, in the client's transport): its session,
/// opened on one, serves every call on both.
#[tokio::test]
async fn the_python_sdk_keeps_its_session_with_requests_alternating_between_replicas() -> Result<()>
{
    let (a, b) = tokio::try_join!(replica(&[OLD_KEY]), replica(&[OLD_KEY]))?;
    let ports = [a.address.port(), b.address.port()];
    let spec = json!({"url": a.url("/mcp/demo"), "ports": ports, "bearer": ALICE_KEY,
        "calls": 6, "tool": "get_clients"});
    let report = run_python_client("replica_client.py", &[spec.to_string().as_str()]).await?;
    let version = report["protocol_version"].as_str().unwrap_or_default();
    ensure!(
        mcp_bridge::front::SESSION_PROTOCOL_VERSIONS.contains(&version),
        "the SDK did not open a session: {report}"
    );
    assert_eq!(
        report["calls"],
        json!([false, false, false, false, false, false]),
        "{report}"
    );
    ensure!(
        report["first_text"]
            .as_str()
            .is_some_and(|text| !text.is_empty()),
        "{report}"
    );
    let sent = report["sent"].as_array().context("no requests recorded")?;
    for port in ports {
        let posts = sent
            .iter()
            .filter(|request| request[0] == "POST" && request[1] == port)
            .count();
        ensure!(posts >= 3, "replica {port} got {posts} POSTs: {report}");
    }
    // The replica that did not answer initialize continued the session from its token.
    let resumed = metric(&a, "mcp_bridge_sessions_resumed_total", &[]).await?
        + metric(&b, "mcp_bridge_sessions_resumed_total", &[]).await?;
    ensure!(resumed >= 1.0, "no replica continued the session");
    for bridge in [&a, &b] {
        for reason in ["mac", "malformed", "expired", "revoked", "endpoint"] {
            assert_eq!(refused(bridge, reason).await?, 0.0, "{reason}");
        }
    }
    Ok(())
}
