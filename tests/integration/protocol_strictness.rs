//! Protocol strictness through the real binary: JSON-RPC ids (only strings and integers,
//! echoed byte for byte), mixed protocol-version signals (precise refusals by default,
//! the documented `version_mismatch = "lenient"` mode, the mismatch metric), and the
//! counts the admin cache routes report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::support::{Bridge, RawSession, count_calls, demo_server_toml, http};
use crate::support::{metric, start_bridge};

/// The metric family counting mixed version signals by kind and action.
const MISMATCHES: &str = "mcp_bridge_version_mismatch_total";

/// An id beyond both `u64` and `f64` precision: it must come back exactly as sent.
const HUGE_ID: &str = "18446744073709551617";

/// A bridge serving the demo server as `demo`, with its calls log.
struct Demo {
    bridge: Bridge,
    calls: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Starts the bridge with extra TOML (an `[http]` or `[cache]` section).
    async fn start(extra_toml: &str) -> Result<Demo> {
        let dir = tempfile::tempdir()?;
        let calls = dir.path().join("calls.log");
        let calls_arg = calls.display().to_string();
        let server = demo_server_toml(
            "demo",
            &["--calls-log", calls_arg.as_str()],
            "max_connections = 1",
        );
        let bridge = start_bridge(&format!("{server}\n{extra_toml}"))?;
        bridge.wait_ready().await?;
        Ok(Demo {
            bridge,
            calls,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        self.bridge.url("/mcp/demo")
    }

    fn calls(&self, tool: &str) -> usize {
        count_calls(&self.calls, tool)
    }

    /// How many mismatches of `kind` were counted with `action`.
    async fn mismatches(&self, kind: &str, action: &str) -> Result<f64> {
        let kind = format!("kind=\"{kind}\"");
        let action = format!("action=\"{action}\"");
        metric(&self.bridge, MISMATCHES, &[&kind, &action]).await
    }
}

/// One HTTP answer: status, raw text, parsed JSON (`Null` when the body is not JSON)
/// and the session id it opened, if any.
struct Answer {
    status: u16,
    text: String,
    body: Value,
    session: Option<String>,
}

impl Answer {
    fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// Fails unless this is a refusal with `status` and JSON-RPC `code` whose message
    /// mentions every needle.
    fn expect_refusal(&self, status: u16, code: i64, needles: &[&str]) -> Result<()> {
        let text = &self.text;
        ensure!(self.status == status, "status {}: {text}", self.status);
        ensure!(self.body["error"]["code"] == code, "code: {text}");
        let message = self.error_message();
        for needle in needles {
            ensure!(
                message.contains(needle),
                "error message {message:?} does not mention {needle:?}"
            );
        }
        Ok(())
    }
}

/// POSTs a raw body with the JSON content type, SSE accepted, and `headers`.
async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Result<Answer> {
    let mut request = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body.to_owned()).send().await?;
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        text,
        body,
        session,
    })
}

/// The headers of a request in session `id` speaking `version`.
fn in_session<'a>(id: &'a str, version: &'a str) -> [(&'static str, &'a str); 2] {
    [("mcp-session-id", id), ("mcp-protocol-version", version)]
}

/// A `tools/call` body with a raw id text.
fn call_body(raw_id: &str, tool: &str, arguments: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{raw_id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
    )
}

/// A 2026-07-28 `tools/call` of `get_tasks` with the full `_meta` envelope.
fn modern_get_tasks(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
    "name": "get_tasks", "arguments": {},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }}})
    .to_string()
}

/// An `initialize` body asking for 2025-11-25.
fn initialize_body() -> String {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "strictness", "version": "1"}}})
    .to_string()
}

#[tokio::test]
async fn request_ids_that_are_not_strings_or_integers_are_refused_with_a_null_id() -> Result<()> {
    let demo = Demo::start("").await?;
    let session = RawSession::open(&demo.url()).await?;
    let headers = in_session(&session.session_id, "2025-11-25");
    let create = |id: &str| call_body(id, "create_task", r#"{"title":"must not exist"}"#);
    for (raw_id, named) in [
        (r#"{"a":1}"#, "an object"),
        ("true", "a boolean"),
        ("1.5", "a number with a fraction or exponent"),
        ("1e3", "a number with a fraction or exponent"),
        ("null", "null"),
        ("[1]", "an array"),
    ] {
        let answer = post(&demo.url(), &headers, &create(raw_id)).await?;
        answer.expect_refusal(400, -32600, &[named, "a string or an integer"])?;
        ensure!(
            answer.body["id"].is_null() && answer.body.get("id").is_some(),
            "id {raw_id}: the error must carry id null: {}",
            answer.text
        );
        // In a batch, the element is refused and the rest is answered.
        let batch = format!(
            r#"[{},{{"jsonrpc":"2.0","id":"ok","method":"ping"}}]"#,
            create(raw_id)
        );
        let answer = post(&demo.url(), &headers, &batch).await?;
        let replies = answer.body.as_array().context("batch answer")?;
        let refused = replies.iter().find(|reply| reply["id"].is_null());
        let refused = refused.context("no refusal with id null in the batch answer")?;
        ensure!(
            refused["error"]["code"] == -32600
                && refused["error"]["message"]
                    .as_str()
                    .is_some_and(|message| message.contains(named)),
            "batch refusal: {}",
            answer.text
        );
        ensure!(
            replies.iter().any(|reply| reply["id"] == "ok"),
            "the valid batch element was not answered: {}",
            answer.text
        );
    }
    ensure!(
        demo.calls("create_task") == 0,
        "a request with an invalid id reached the server"
    );
    // Strings and integers (negative too) are still fine.
    for raw_id in [r#""abc""#, "-7", "0"] {
        let answer = post(&demo.url(), &headers, &call_body(raw_id, "get_tasks", "{}")).await?;
        ensure!(
            answer.status == 200 && answer.body["result"].is_object(),
            "id {raw_id}: {}",
            answer.text
        );
    }
    Ok(())
}

#[tokio::test]
async fn large_integer_ids_and_progress_tokens_come_back_byte_for_byte() -> Result<()> {
    let demo = Demo::start("").await?;
    let session = RawSession::open(&demo.url()).await?;
    let headers = in_session(&session.session_id, "2025-11-25");
    let huge_negative = "-9223372036854775809";
    let long = "123456789012345678901234567890";
    for raw_id in [HUGE_ID, huge_negative, long] {
        let ping = format!(r#"{{"jsonrpc":"2.0","id":{raw_id},"method":"ping"}}"#);
        let answer = post(&demo.url(), &headers, &ping).await?;
        let exact = format!("\"id\":{raw_id}");
        ensure!(
            answer.status == 200 && answer.text.contains(&exact),
            "ping {raw_id}: {}",
            answer.text
        );
        let call = call_body(raw_id, "get_tasks", "{}");
        let answer = post(&demo.url(), &headers, &call).await?;
        ensure!(
            answer.text.contains(&exact) && answer.text.contains("\"result\""),
            "tools/call {raw_id}: {}",
            answer.text
        );
    }
    // A streamed answer: the progress notifications carry the token exactly as sent,
    // and the final response the id.
    let progress = format!(
        r#"{{"jsonrpc":"2.0","id":{HUGE_ID},"method":"tools/call","params":{{"name":"debug_progress","arguments":{{"steps":2}},"_meta":{{"progressToken":{HUGE_ID}}}}}}}"#
    );
    let answer = post(&demo.url(), &headers, &progress).await?;
    ensure!(
        answer
            .text
            .contains(&format!("\"progressToken\":{HUGE_ID}"))
            && answer.text.contains(&format!("\"id\":{HUGE_ID}")),
        "streamed progress: {}",
        answer.text
    );
    Ok(())
}

#[tokio::test]
async fn a_2026_header_inside_a_2025_session_is_refused_saying_what_to_send() -> Result<()> {
    let demo = Demo::start("").await?;
    let session = RawSession::open(&demo.url()).await?;
    let headers = in_session(&session.session_id, "2026-07-28");
    let answer = post(&demo.url(), &headers, &call_body("1", "get_tasks", "{}")).await?;
    answer.expect_refusal(
        400,
        -32020,
        &[
            "Mcp-Session-Id of a 2025-11-25 session",
            "MCP-Protocol-Version: 2026-07-28",
            "send MCP-Protocol-Version: 2025-11-25 with this session",
            "drop the session header",
        ],
    )?;
    ensure!(
        answer.body["error"]["data"]["kind"] == "session_modern_header",
        "{}",
        answer.text
    );
    ensure!(demo.calls("get_tasks") == 0, "the refused call ran");
    ensure!(
        demo.mismatches("session_modern_header", "refused").await? == 1.0,
        "the refusal was not counted"
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_version_inside_a_session_lists_every_version_and_the_sessions() -> Result<()> {
    let demo = Demo::start("").await?;
    let session = RawSession::open(&demo.url()).await?;
    let headers = in_session(&session.session_id, "1900-01-01");
    let answer = post(&demo.url(), &headers, &call_body("1", "get_tasks", "{}")).await?;
    answer.expect_refusal(
        400,
        -32022,
        &[
            "1900-01-01",
            "2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26",
            "send MCP-Protocol-Version: 2025-11-25 with this session",
        ],
    )?;
    ensure!(demo.calls("get_tasks") == 0, "the refused call ran");
    Ok(())
}

#[tokio::test]
async fn initialize_with_a_2026_header_is_refused_saying_what_to_send() -> Result<()> {
    let demo = Demo::start("").await?;
    let headers = [("mcp-protocol-version", "2026-07-28")];
    let answer = post(&demo.url(), &headers, &initialize_body()).await?;
    answer.expect_refusal(
        400,
        -32020,
        &[
            "initialize",
            "MCP-Protocol-Version: 2026-07-28",
            "send initialize without MCP-Protocol-Version",
            "params._meta",
        ],
    )?;
    ensure!(
        !answer.error_message().contains("is missing"),
        "{}",
        answer.text
    );
    ensure!(
        answer.session.is_none(),
        "a refused initialize opened a session"
    );
    ensure!(
        demo.mismatches("initialize_modern_header", "refused")
            .await?
            == 1.0,
        "the refusal was not counted"
    );
    Ok(())
}

#[tokio::test]
async fn a_2026_body_with_a_2025_header_is_refused_saying_what_to_send() -> Result<()> {
    let demo = Demo::start("").await?;
    let headers = [
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get_tasks"),
    ];
    let answer = post(&demo.url(), &headers, &modern_get_tasks(1)).await?;
    answer.expect_refusal(
        400,
        -32020,
        &[
            "params._meta names protocol version 2026-07-28",
            "MCP-Protocol-Version: 2025-11-25",
            "send MCP-Protocol-Version: 2026-07-28 with this body",
        ],
    )?;
    ensure!(demo.calls("get_tasks") == 0, "the refused call ran");
    ensure!(
        demo.mismatches("modern_body_legacy_header", "refused")
            .await?
            == 1.0,
        "the refusal was not counted"
    );
    Ok(())
}

#[tokio::test]
async fn a_2026_meta_inside_a_session_is_served_by_the_session_and_counted() -> Result<()> {
    let demo = Demo::start("").await?;
    let session = RawSession::open(&demo.url()).await?;
    let headers = in_session(&session.session_id, "2025-11-25");
    let answer = post(&demo.url(), &headers, &modern_get_tasks(1)).await?;
    ensure!(
        answer.status == 200
            && answer.body["result"]["structuredContent"].is_object()
            && answer.body["result"].get("resultType").is_none(),
        "served as a 2025-11-25 session request: {}",
        answer.text
    );
    ensure!(
        demo.mismatches("session_modern_meta", "accepted").await? == 1.0,
        "the mismatch was not counted"
    );
    Ok(())
}

#[tokio::test]
async fn lenient_mode_serves_the_known_mismatches_and_counts_each_kind() -> Result<()> {
    let demo = Demo::start("[http]\nversion_mismatch = \"lenient\"\n").await?;
    let url = demo.url();

    // initialize with a 2026 header: the body wins, a 2025-11-25 session opens.
    let headers = [("mcp-protocol-version", "2026-07-28")];
    let answer = post(&url, &headers, &initialize_body()).await?;
    ensure!(
        answer.status == 200 && answer.body["result"]["protocolVersion"] == "2025-11-25",
        "initialize: {}",
        answer.text
    );
    let session = answer
        .session
        .context("lenient initialize opened no session")?;

    // A 2026 header in that session: the session wins.
    let headers = in_session(&session, "2026-07-28");
    let answer = post(&url, &headers, &call_body("1", "get_tasks", "{}")).await?;
    ensure!(
        answer.status == 200
            && answer.body["result"]["structuredContent"].is_object()
            && answer.body["result"].get("resultType").is_none(),
        "session request with a 2026 header: {}",
        answer.text
    );

    // A 2026 body with a 2025 header and no routing headers: the body wins.
    let headers = [("mcp-protocol-version", "2025-11-25")];
    let answer = post(&url, &headers, &modern_get_tasks(2)).await?;
    ensure!(
        answer.status == 200 && answer.body["result"]["resultType"] == "complete",
        "2026 body with a 2025 header: {}",
        answer.text
    );
    // A routing header that contradicts the body is still refused.
    let contradicting = [
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-name", "create_task"),
    ];
    let answer = post(&url, &contradicting, &modern_get_tasks(3)).await?;
    answer.expect_refusal(400, -32020, &["Mcp-Name"])?;

    for kind in [
        "initialize_modern_header",
        "session_modern_header",
        "modern_body_legacy_header",
    ] {
        let accepted = demo.mismatches(kind, "accepted").await?;
        ensure!(accepted >= 1.0, "{kind}: accepted {accepted}");
        let refused = demo.mismatches(kind, "refused").await?;
        ensure!(refused == 0.0, "{kind}: refused {refused} in lenient mode");
    }
    ensure!(
        demo.calls("get_tasks") == 2,
        "both lenient calls reached the server"
    );
    Ok(())
}

/// `DELETE /admin/cache`: the number of entries it says it dropped.
async fn clear(bridge: &Bridge) -> Result<u64> {
    let response = http().delete(bridge.url("/admin/cache")).send().await?;
    ensure!(
        response.status() == 200,
        "DELETE /admin/cache: {}",
        response.status()
    );
    let answer: Value = response.json().await?;
    answer["dropped"].as_u64().context("no dropped count")
}

#[tokio::test]
async fn clearing_the_cache_reports_every_entry_it_dropped() -> Result<()> {
    let demo =
        Demo::start("[cache]\nenabled = true\n\n[cache.ttl.demo]\nget_tasks = \"5m\"\n").await?;
    let session = RawSession::open(&demo.url()).await?;
    for round in [1_u64, 10] {
        for limit in 1..=round {
            let answer = session
                .call_tool(json!(limit), "get_tasks", json!({ "limit": limit }))
                .await?;
            ensure!(answer["result"].is_object(), "get_tasks: {answer}");
        }
        let dropped = clear(&demo.bridge).await?;
        ensure!(
            dropped == round,
            "DELETE /admin/cache after {round} entries said dropped {dropped}"
        );
    }
    ensure!(
        clear(&demo.bridge).await? == 0,
        "an empty cache dropped entries"
    );
    ensure!(
        demo.calls("get_tasks") == 11,
        "each distinct call filled one entry"
    );
    Ok(())
}

#[tokio::test]
async fn invalidating_counts_only_entries_that_were_still_cached() -> Result<()> {
    let ttls =
        "[cache]\nenabled = true\n\n[cache.ttl.demo]\nget_tasks = \"1s\"\nget_clients = \"5m\"\n";
    let demo = Demo::start(ttls).await?;
    let session = RawSession::open(&demo.url()).await?;
    for (id, tool) in [(1, "get_tasks"), (2, "get_clients")] {
        let answer = session.call_tool(json!(id), tool, json!({})).await?;
        ensure!(answer["result"].is_object(), "{tool}: {answer}");
    }
    // Past get_tasks' TTL, with nothing touching the cache meanwhile (a stats or
    // metrics read would run the store's maintenance and hide the miscount).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = http()
        .post(demo.bridge.url("/admin/cache/invalidate"))
        .header("content-type", "application/json")
        .body(r#"{"server": "demo"}"#)
        .send()
        .await?;
    let answer: Value = response.json().await?;
    ensure!(
        answer["dropped"] == 1,
        "invalidating demo with one live and one expired entry: {answer}"
    );
    Ok(())
}
