//! HTTP input on the MCP endpoints. Every bad request gets the right status and a
//! JSON-RPC error that names the problem, and none of them reaches the server (the demo
//! server's calls log stays free of the `create_task` each bad request carries). Also
//! the session lifecycle (DELETE, GET streams) and 2025-03-26 batches.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    Bridge, RawSession, count_calls, demo_server_toml, http, read_response, sse_messages,
    start_bridge_with_file,
};

/// A bridge whose demo server logs every call it receives, with `[http]` settings and
/// any extra servers.
async fn logged_bridge(http_toml: &str, extra_servers: &str) -> Result<(Bridge, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let calls_log = dir.path().join("calls.log");
    let log_arg = calls_log.display().to_string();
    let demo = demo_server_toml("demo", &["--calls-log", &log_arg], "max_connections = 1");
    let config_path = dir.path().join("mcp-bridge.toml");
    std::fs::write(
        &config_path,
        format!("[http]\n{http_toml}\n\n{demo}\n{extra_servers}"),
    )?;
    let bridge = start_bridge_with_file(dir, config_path, &[])?;
    bridge.wait_ready().await?;
    Ok((bridge, calls_log))
}

/// A `tools/call` request body.
fn call(id: u64, tool: &str, args: Value) -> String {
    let params = json!({"name": tool, "arguments": args});
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string()
}

/// The request every bad input carries: a write that must never happen.
fn create_task(id: u64) -> String {
    call(id, "create_task", json!({"title": "must not exist"}))
}

/// What came back: status, headers and the body parsed as JSON (null when it is not).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

async fn send(request: RequestBuilder) -> Result<Answer> {
    let response = request.send().await?;
    let (status, headers) = (response.status(), response.headers().clone());
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        headers,
        body,
        text,
    })
}

/// An expected HTTP status and JSON-RPC error code (`None`: any code).
type Expected = (u16, Option<i64>);

const BAD_REQUEST: Expected = (400, None);
const NOT_FOUND: Expected = (404, None);
const UNAUTHORIZED: Expected = (401, None);
const PARSE_ERROR: Expected = (400, Some(-32700));
const INVALID_REQUEST: Expected = (400, Some(-32600));
const HEADER_MISMATCH: Expected = (400, Some(-32020));

/// Sends a request that must fail: asserts the status, the JSON-RPC error code (when
/// given) and that the error message mentions every needle.
async fn rejects(request: RequestBuilder, expected: Expected, needles: &[&str]) -> Result<Answer> {
    let (status, code) = expected;
    let answer = send(request).await?;
    let text = &answer.text;
    assert_eq!(answer.status.as_u16(), status, "body: {text}");
    let error = &answer.body["error"];
    assert!(
        error.is_object() && answer.body["jsonrpc"] == "2.0",
        "no JSON-RPC error in {text}"
    );
    if let Some(code) = code {
        assert_eq!(error["code"], code, "{text}");
    }
    let message = error["message"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(
            message.contains(needle),
            "error message {message:?} does not mention {needle:?}"
        );
    }
    Ok(answer)
}

/// A POST with the usual MCP headers plus `extra`, and a raw body.
fn post(url: &str, extra: &[(&str, &str)], body: impl Into<reqwest::Body>) -> RequestBuilder {
    let mut request = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.body(body)
}

/// Sends `initialize` offering `version` with extra headers; returns the session id and
/// the result.
async fn initialize(url: &str, extra: &[(&str, &str)], version: &str) -> Result<(String, Value)> {
    let client_info = json!({"name": "raw-http", "version": "1"});
    let params = json!({"protocolVersion": version, "capabilities": {}, "clientInfo": client_info});
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params});
    let response = post(url, extra, body.to_string()).send().await?;
    assert_eq!(response.status(), 200, "initialize was refused");
    let session = response
        .headers()
        .get("mcp-session-id")
        .context("no Mcp-Session-Id")?;
    let session = session.to_str()?.to_owned();
    Ok((session, read_response(response).await?["result"].clone()))
}

/// Asserts that no bad request reached the server: no `create_task` was logged and the
/// store still holds the seed's five tasks.
async fn assert_unchanged(bridge: &Bridge, calls_log: &Path) -> Result<()> {
    assert_eq!(
        count_calls(calls_log, "create_task"),
        0,
        "a bad request reached the server"
    );
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let metrics = session
        .call_tool(json!(99), "get_today_metrics", json!({}))
        .await?;
    assert_eq!(
        metrics["result"]["structuredContent"]["total_tasks"], 5,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn body_limits_content_type_and_json_are_checked_before_anything_runs() -> Result<()> {
    let (bridge, calls_log) = logged_bridge("max_body_bytes = \"1KiB\"", "").await?;
    let url = bridge.url("/mcp/demo");
    let session = RawSession::open(&url).await?;
    let sid = [("mcp-session-id", session.session_id.as_str())];

    let big = post(
        &url,
        &sid,
        call(1, "create_task", json!({"title": "x".repeat(4096)})),
    );
    rejects(big, (413, None), &["max_body_bytes", "1024"]).await?;
    // A body under the limit on the same session still works.
    let small = send(post(&url, &sid, call(2, "get_clients", json!({})))).await?;
    assert_eq!(small.status, 200, "{}", small.text);

    // Requests built without `post` so that exactly one Content-Type (or none) is sent.
    let typed = |content_type: Option<&str>, body: String| {
        let request = http().post(&url).header(sid[0].0, sid[0].1).body(body);
        match content_type {
            Some(value) => request.header("content-type", value),
            None => request,
        }
    };
    let text_plain = typed(Some("text/plain"), create_task(3));
    rejects(text_plain, (415, None), &["Content-Type", "text/plain"]).await?;
    rejects(typed(None, create_task(4)), (415, None), &["Content-Type"]).await?;
    // A media-type parameter is fine.
    let charset = typed(
        Some("application/json; charset=utf-8"),
        call(5, "get_clients", json!({})),
    );
    assert_eq!(send(charset).await?.status, 200);

    let truncated = post(&url, &sid, create_task(6)[..60].to_owned());
    let parse = rejects(truncated, PARSE_ERROR, &["JSON"]).await?;
    assert_eq!(
        parse.body["id"],
        Value::Null,
        "a parse error cannot know the id"
    );
    // The same checks hold on the aggregated endpoint.
    rejects(
        post(&bridge.url("/mcp"), &[], "{not json"),
        PARSE_ERROR,
        &[],
    )
    .await?;
    assert_unchanged(&bridge, &calls_log).await
}

/// Valid JSON that is not a JSON-RPC 2.0 message is an Invalid Request (-32600) with
/// HTTP 400, as the official SDKs' servers answer it; it is never forwarded or run.
#[tokio::test]
async fn json_that_is_not_jsonrpc_is_an_invalid_request() -> Result<()> {
    let (bridge, calls_log) = logged_bridge("", "").await?;
    let url = bridge.url("/mcp/demo");
    let session = RawSession::open(&url).await?;
    let sid = [("mcp-session-id", session.session_id.as_str())];
    let params = json!({"name": "create_task", "arguments": {"title": "not JSON-RPC 2.0"}});
    let not_jsonrpc = [
        json!({"foo": 1}),
        json!({"jsonrpc": "2.0", "id": 1}),
        json!({"jsonrpc": "1.0", "id": 2, "method": "tools/call", "params": params}),
        json!({"id": 3, "method": "tools/call", "params": params}),
        json!(42),
    ];
    for body in not_jsonrpc {
        rejects(post(&url, &sid, body.to_string()), INVALID_REQUEST, &[]).await?;
    }
    assert_unchanged(&bridge, &calls_log).await
}

#[tokio::test]
async fn unknown_server_and_unknown_tool_are_named_in_the_error() -> Result<()> {
    let other = demo_server_toml("tasks2", &[], "min_connections = 0");
    let (bridge, calls_log) = logged_bridge("", &other).await?;
    let nope = post(&bridge.url("/mcp/nope"), &[], create_task(1));
    rejects(nope, NOT_FOUND, &["nope", "demo", "tasks2"]).await?;

    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let unknown = session
        .call_tool(json!(2), "no_such_tool", json!({}))
        .await?;
    let message = unknown["error"]["message"].as_str().unwrap_or_default();
    assert!(
        unknown["id"] == 2 && message.contains("no_such_tool"),
        "{unknown}"
    );

    let aggregated = RawSession::open(&bridge.url("/mcp")).await?;
    let args = json!({"title": "x"});
    let stray = aggregated
        .call_tool(json!(3), "nope__create_task", args)
        .await?;
    assert_eq!(stray["error"]["code"], -32602, "{stray}");
    let message = stray["error"]["message"].as_str().unwrap_or_default();
    for needle in ["nope__create_task", "demo", "tasks2"] {
        assert!(
            message.contains(needle),
            "{message:?} does not name {needle}"
        );
    }
    let unknown = aggregated
        .call_tool(json!(4), "demo__no_such_tool", json!({}))
        .await?;
    let message = unknown["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no_such_tool"), "{unknown}");
    let method = aggregated
        .request(json!(5), "no/such_method", json!({}))
        .await?;
    assert_eq!(method["error"]["code"], -32601, "{method}");
    assert_unchanged(&bridge, &calls_log).await
}

#[tokio::test]
async fn origin_outside_the_allow_list_is_forbidden() -> Result<()> {
    let origins = "allowed_origins = [\"http://localhost:3000\"]";
    let (bridge, calls_log) = logged_bridge(origins, "").await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let sid = ("mcp-session-id", session.session_id.as_str());
    for origin in [
        "http://evil.example",
        "http://localhost:3001",
        "http://localhost:3000.x.example",
    ] {
        for path in ["/mcp/demo", "/mcp"] {
            let request = post(
                &bridge.url(path),
                &[("origin", origin), sid],
                create_task(1),
            );
            rejects(request, (403, None), &[origin, "allowed_origins"]).await?;
        }
    }
    // The allowed origin opens a session and calls a tool.
    let url = bridge.url("/mcp/demo");
    let allowed = ("origin", "http://localhost:3000");
    let (sid, _) = initialize(&url, &[allowed], "2025-11-25").await?;
    let headers = [allowed, ("mcp-session-id", &sid)];
    let answer = read_response(post(&url, &headers, create_task(1)).send().await?).await?;
    assert_eq!(
        answer["result"]["structuredContent"]["task"]["id"], 6,
        "{answer}"
    );
    assert_eq!(
        count_calls(&calls_log, "create_task"),
        1,
        "only the allowed call ran"
    );
    Ok(())
}

#[tokio::test]
async fn sessions_unknown_missing_and_deleted() -> Result<()> {
    let (bridge, calls_log) = logged_bridge("", "").await?;
    let stranger = ("mcp-session-id", "0123456789abcdef");
    for path in ["/mcp/demo", "/mcp"] {
        let url = bridge.url(path);
        let unknown = post(&url, &[stranger], create_task(1));
        rejects(unknown, NOT_FOUND, &[stranger.1, "initialize"]).await?;
        let missing = post(&url, &[], create_task(2));
        rejects(missing, BAD_REQUEST, &["Mcp-Session-Id"]).await?;
        let stream = http().get(&url).header("accept", "text/event-stream");
        rejects(
            stream.header(stranger.0, stranger.1),
            NOT_FOUND,
            &[stranger.1],
        )
        .await?;

        let session = RawSession::open(&url).await?;
        let sid = ("mcp-session-id", session.session_id.as_str());
        let ping = session.request(json!(3), "ping", json!({})).await?;
        assert_eq!(ping["result"], json!({}), "{ping}");
        let deleted = http().delete(&url).header(sid.0, sid.1).send().await?;
        assert_eq!(deleted.status(), 204, "DELETE of a live session");
        rejects(post(&url, &[sid], create_task(4)), NOT_FOUND, &[sid.1]).await?;
        rejects(http().delete(&url).header(sid.0, sid.1), NOT_FOUND, &[]).await?;
    }
    // A session belongs to the endpoint that opened it.
    let demo_session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let elsewhere = [("mcp-session-id", demo_session.session_id.as_str())];
    rejects(
        post(&bridge.url("/mcp"), &elsewhere, create_task(5)),
        NOT_FOUND,
        &[],
    )
    .await?;
    assert_unchanged(&bridge, &calls_log).await
}

/// A session's GET stream relays `notifications/tools/list_changed`, which no call owns,
/// on the server's endpoint and on `/mcp`. This raw client knows when its stream is open
/// (the SDK clients open theirs in the background, so a notification could race them).
#[tokio::test]
async fn session_get_stream_relays_tools_list_changed() -> Result<()> {
    let (bridge, _) = logged_bridge("", "").await?;
    for (path, tool) in [
        ("/mcp/demo", "debug_toggle_tool"),
        ("/mcp", "demo__debug_toggle_tool"),
    ] {
        let session = RawSession::open(&bridge.url(path)).await?;
        let stream = http()
            .get(bridge.url(path))
            .header("accept", "text/event-stream");
        let stream = stream.header("mcp-session-id", &session.session_id);
        let mut stream = stream
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await?;
        assert_eq!(stream.status(), 200, "{path}: GET stream refused");
        let toggled = session.call_tool(json!(1), tool, json!({})).await?;
        assert!(toggled.get("result").is_some(), "{toggled}");
        let mut seen = String::new();
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(chunk) = stream.chunk().await? {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                let messages = sse_messages(&seen);
                if messages
                    .iter()
                    .any(|m| m["method"] == "notifications/tools/list_changed")
                {
                    return Ok::<_, anyhow::Error>(true);
                }
            }
            Ok(false)
        });
        let found = matches!(found.await, Ok(Ok(true)));
        assert!(found, "{path}: no list_changed on the GET stream: {seen:?}");
    }
    Ok(())
}

#[tokio::test]
async fn bearer_tokens_guard_mcp_and_admin_routes() -> Result<()> {
    let tokens = "auth_token = \"mcp-secret\"\nadmin_token = \"admin-secret\"";
    let (bridge, calls_log) = logged_bridge(tokens, "").await?;
    let url = bridge.url("/mcp/demo");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "a", "version": "1"}}});
    for wrong in [
        None,
        Some("Bearer wrong"),
        Some("mcp-secret"),
        Some("Bearer admin-secret"),
    ] {
        let extra: Vec<_> = wrong
            .iter()
            .map(|value| ("authorization", *value))
            .collect();
        for body in [init.to_string(), create_task(1)] {
            let answer = rejects(post(&url, &extra, body), UNAUTHORIZED, &["Bearer"]).await?;
            let challenge = answer
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            // RFC 6750: no error code for a missing credential, the reason for a wrong one.
            let expected = match wrong {
                None => "Bearer".to_owned(),
                Some("mcp-secret") => "Bearer error=\"invalid_request\"".to_owned(),
                Some(_) => "Bearer error=\"invalid_token\"".to_owned(),
            };
            assert!(
                challenge == expected || challenge.starts_with(&format!("{expected}, ")),
                "401 with challenge {challenge:?}, expected {expected:?}"
            );
        }
    }
    let token = ("authorization", "Bearer mcp-secret");
    let (sid, _) = initialize(&url, &[token], "2025-11-25").await?;
    let metrics = call(1, "get_today_metrics", json!({}));
    let response = post(&url, &[token, ("mcp-session-id", &sid)], metrics)
        .send()
        .await?;
    let answer = read_response(response).await?;
    assert_eq!(
        answer["result"]["structuredContent"]["total_tasks"], 5,
        "{answer}"
    );

    let stats = bridge.url("/admin/stats");
    rejects(http().get(&stats), UNAUTHORIZED, &["Bearer"]).await?;
    for value in ["Bearer mcp-secret", "Bearer wrong"] {
        let request = http().get(&stats).header("authorization", value);
        rejects(request, UNAUTHORIZED, &["Bearer"]).await?;
    }
    let admin = http()
        .get(&stats)
        .header("authorization", "Bearer admin-secret");
    let allowed = send(admin).await?;
    assert!(
        allowed.status == 200 && allowed.body["servers"].is_array(),
        "{}",
        allowed.text
    );
    assert_eq!(
        count_calls(&calls_log, "create_task"),
        0,
        "an unauthenticated call ran"
    );
    Ok(())
}

/// A 2026-07-28 request body with the required `_meta` envelope.
fn modern(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-modern", "version": "1"},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[tokio::test]
async fn sessionless_2026_requests_must_agree_with_their_headers() -> Result<()> {
    let (bridge, calls_log) = logged_bridge("", "").await?;
    let v = ("mcp-protocol-version", "2026-07-28");
    let m = ("mcp-method", "tools/call");
    for (path, name) in [("/mcp/demo", "create_task"), ("/mcp", "demo__create_task")] {
        let url = bridge.url(path);
        let args = json!({"title": "must not exist"});
        let create = modern(1, "tools/call", json!({"name": name, "arguments": args}));
        let body = || create.to_string();
        let n = ("mcp-name", name);

        let mismatch = post(&url, &[v, m, ("mcp-name", "get_tasks")], body());
        rejects(mismatch, HEADER_MISMATCH, &["Mcp-Name", "get_tasks", name]).await?;
        rejects(post(&url, &[v, m], body()), HEADER_MISMATCH, &["Mcp-Name"]).await?;
        rejects(
            post(&url, &[v, n], body()),
            HEADER_MISMATCH,
            &["Mcp-Method"],
        )
        .await?;
        let wrong_method = post(&url, &[v, ("mcp-method", "tools/list"), n], body());
        rejects(wrong_method, HEADER_MISMATCH, &["Mcp-Method", "tools/list"]).await?;
        let old = post(
            &url,
            &[("mcp-protocol-version", "2025-11-25"), m, n],
            body(),
        );
        rejects(old, HEADER_MISMATCH, &["MCP-Protocol-Version"]).await?;

        let mut ancient = create.clone();
        ancient["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("1900-01-01");
        let headers = [("mcp-protocol-version", "1900-01-01"), m, n];
        let ancient = post(&url, &headers, ancient.to_string());
        let unsupported = rejects(ancient, (400, Some(-32022)), &["1900-01-01"]).await?;
        let data = &unsupported.body["error"]["data"];
        let listed = data["supported"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(v.1)));
        assert!(
            listed && data["requested"] == "1900-01-01",
            "{}",
            unsupported.text
        );

        let mut no_caps = create.clone();
        let meta = no_caps["params"]["_meta"]
            .as_object_mut()
            .context("_meta")?;
        meta.remove("io.modelcontextprotocol/clientCapabilities");
        let no_caps = post(&url, &[v, m, n], no_caps.to_string());
        rejects(no_caps, (400, Some(-32602)), &["clientCapabilities"]).await?;

        let unknown = modern(2, "no/such_method", json!({})).to_string();
        let unknown = post(&url, &[v, ("mcp-method", "no/such_method")], unknown);
        rejects(unknown, (404, Some(-32601)), &[]).await?;
        let list = [v, ("mcp-method", "tools/list")];
        let batch = json!([modern(3, "tools/list", json!({}))]).to_string();
        rejects(post(&url, &list, batch), BAD_REQUEST, &["batch"]).await?;

        // No session, so no GET stream and nothing to DELETE.
        let get = http()
            .get(&url)
            .header("accept", "text/event-stream")
            .header(v.0, v.1);
        assert_eq!(
            get.send().await?.status(),
            405,
            "{path}: GET without a session"
        );
        let delete = http().delete(&url).header(v.0, v.1);
        assert_eq!(
            delete.send().await?.status(),
            405,
            "{path}: DELETE without a session"
        );

        // A request whose headers agree is served, as a complete result without a session.
        let tools_list = modern(4, "tools/list", json!({})).to_string();
        let listed = send(post(&url, &list, tools_list)).await?;
        let (result, text) = (&listed.body["result"], &listed.text);
        assert_eq!(result["resultType"], "complete", "{text}");
        assert!(
            result["ttlMs"].is_u64() && result["cacheScope"].is_string(),
            "{text}"
        );
        assert!(
            listed.headers.get("mcp-session-id").is_none(),
            "a session was minted"
        );
    }
    assert_unchanged(&bridge, &calls_log).await
}

#[tokio::test]
async fn batches_work_on_a_2025_03_26_session() -> Result<()> {
    let (bridge, calls_log) = logged_bridge("", "").await?;
    let url = bridge.url("/mcp/demo");
    let (sid, result) = initialize(&url, &[], "2025-03-26").await?;
    assert_eq!(result["protocolVersion"], "2025-03-26", "{result}");
    let headers = [
        ("mcp-protocol-version", "2025-03-26"),
        ("mcp-session-id", sid.as_str()),
    ];
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let initialized = send(post(&url, &headers, initialized.to_string())).await?;
    assert_eq!(initialized.status, 202, "{}", initialized.text);

    let create = json!({"name": "create_task", "arguments": {"title": "batched"}});
    let progress = json!({"progressToken": "x", "progress": 1});
    let batch = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": create},
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": progress},
        {"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": {"name": "get_clients"}},
        {"jsonrpc": "2.0", "id": "c", "method": "no/such_method"},
    ]);
    let answer = send(post(&url, &headers, batch.to_string())).await?;
    let text = &answer.text;
    assert_eq!(answer.status, 200, "{text}");
    let responses = answer
        .body
        .as_array()
        .context("a batch is answered with an array")?;
    // One response per request, none for the notification.
    assert_eq!(responses.len(), 3, "{text}");
    let by_id = |id: &str| {
        responses
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    let created = by_id("a")["result"]["structuredContent"]["task"]["title"].clone();
    assert_eq!(created, "batched", "{text}");
    assert!(
        by_id("b")["result"]["structuredContent"]["clients"].is_array(),
        "{text}"
    );
    assert_eq!(by_id("c")["error"]["code"], -32601, "{text}");
    assert_eq!(
        count_calls(&calls_log, "create_task"),
        1,
        "the batched create_task ran once"
    );

    // An empty batch is invalid and changes nothing.
    rejects(post(&url, &headers, "[]"), INVALID_REQUEST, &["batch"]).await?;
    assert_eq!(count_calls(&calls_log, "create_task"), 1);
    Ok(())
}
