//! What a hostile client tries against a shared bridge: answering another session's server
//! request, reaching admin routes with the client token, batches that amplify memory, one
//! session taking the whole pool, and sessions that pile up. Each test drives the real
//! binary over HTTP and asserts the refusal, its message and that nothing else changed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::{
    Bridge, RawSession, bridge_exe, demo_server_toml, eventually, http, metric, post_json,
    read_lines_until, read_response, rss_kib, sse_messages, start_bridge,
};

/// A bridge serving the demo server (test tools on) with extra `[http]` settings.
async fn bridge_with(http_toml: &str, pool: &str) -> Result<Bridge> {
    let demo = demo_server_toml("demo", &[], pool);
    let bridge = start_bridge(&format!("[http]\n{http_toml}\n\n{demo}"))?;
    bridge.wait_ready().await?;
    Ok(bridge)
}

fn answer_to(relay_id: &Value, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": relay_id, "result": {
        "role": "assistant", "model": "test", "content": {"type": "text", "text": text}}})
}

/// Reads SSE events from a streaming response until one satisfies `wanted`, within 20 s.
async fn next_event(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    wanted: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = sse_messages(buffer).into_iter().find(|m| wanted(m)) {
            return Ok(found);
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .context("no such SSE event within 20 s")?
            .context("the stream ended")??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// A sampling request relayed to session A can be answered only by A: another session
/// holding the very id, and a caller with no session, are refused (400) and counted, and
/// A's call still completes with A's own answer.
#[tokio::test]
async fn only_the_session_a_server_request_was_sent_to_can_answer_it() -> Result<()> {
    let bridge = bridge_with("", "exclusive = true").await?;
    let url = bridge.url("/mcp/demo");
    let alice = RawSession::open(&url).await?;
    let mallory = RawSession::open(&url).await?;

    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "debug_sample", "arguments": {"prompt": "alice's prompt"}}});
    let response = post_json(&url, Some(&alice.session_id), &call).await?;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let request = next_event(&mut stream, &mut buffer, |m| {
        m["method"] == "sampling/createMessage"
    })
    .await?;
    let relay_id = request["id"].clone();
    let id_text = relay_id.as_str().context("relay id is not a string")?;
    let random_part = id_text.strip_prefix("mcp-bridge-").unwrap_or_default();
    assert!(
        random_part.len() >= 32 && random_part.chars().all(|c| c.is_ascii_hexdigit()),
        "relay ids must be unguessable, got {id_text}"
    );

    // Another session, even one that knows the exact id, is refused.
    let forged = answer_to(&relay_id, "mallory was here");
    let refused = post_json(&url, Some(&mallory.session_id), &forged).await?;
    assert_eq!(
        refused.status(),
        400,
        "another session's answer was accepted"
    );
    let body = read_response(refused).await?;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("this session"), "{body}");
    // So is a caller without a session, and a spray of counter-style ids.
    let anonymous = post_json(&url, None, &forged).await?;
    assert_eq!(
        anonymous.status(),
        400,
        "an answer without a session was accepted"
    );
    for guess in 0..50 {
        let sprayed = answer_to(&json!(format!("mcp-bridge-{guess}")), "spray");
        let status = post_json(&url, Some(&mallory.session_id), &sprayed)
            .await?
            .status();
        assert_eq!(status, 400, "a guessed relay id was accepted");
    }
    let counted = metric(
        &bridge,
        "mcp_bridge_relay_answers_refused_total",
        &["reason=\"wrong_session\""],
    )
    .await?;
    assert_eq!(counted, 1.0, "the forged answer was not counted");
    let unknown = metric(
        &bridge,
        "mcp_bridge_relay_answers_refused_total",
        &["reason=\"unknown_id\""],
    )
    .await?;
    assert_eq!(unknown, 50.0, "the sprayed answers were not counted");

    // Alice's own answer still reaches the server, and her result carries it.
    let accepted = post_json(
        &url,
        Some(&alice.session_id),
        &answer_to(&relay_id, "alice's answer"),
    )
    .await?;
    assert_eq!(accepted.status(), 202);
    let result = next_event(&mut stream, &mut buffer, |m| m["id"] == 7).await?;
    assert_eq!(
        result["result"]["structuredContent"]["reply"], "alice's answer",
        "{result}"
    );
    Ok(())
}

/// With only the client token set, the admin routes are closed (403, naming admin_token);
/// with an admin token they need exactly it, and the bearer scheme is matched in any case.
#[tokio::test]
async fn admin_routes_need_the_admin_token_and_bearer_is_case_insensitive() -> Result<()> {
    let bridge = bridge_with("auth_token = \"client-secret\"", "").await?;
    for (method, path) in [
        (reqwest::Method::GET, "/admin/stats"),
        (reqwest::Method::DELETE, "/admin/cache"),
        (reqwest::Method::POST, "/admin/cache/invalidate"),
    ] {
        for authorization in [None, Some("Bearer client-secret")] {
            let mut request = http().request(method.clone(), bridge.url(path));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let answer = request.body("{\"server\":\"demo\"}").send().await?;
            assert_eq!(
                answer.status(),
                403,
                "{method} {path} with {authorization:?}"
            );
            let text = answer.text().await?;
            assert!(text.contains("http.admin_token"), "{text}");
        }
    }
    // RFC 9110: the scheme is case-insensitive.
    let url = bridge.url("/mcp/demo");
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        let answer = http()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("{scheme} client-secret"))
            .body(init.to_string())
            .send()
            .await?;
        assert_eq!(answer.status(), 200, "scheme {scheme:?} was refused");
    }
    drop(bridge);

    let bridge = bridge_with(
        "auth_token = \"client-secret\"\nadmin_token = \"admin-secret\"",
        "",
    )
    .await?;
    let stats = bridge.url("/admin/stats");
    for (value, status) in [
        ("Bearer client-secret", 401),
        ("bearer admin-secret", 200),
        ("Bearer admin-secret", 200),
    ] {
        let answer = http()
            .get(&stats)
            .header("authorization", value)
            .send()
            .await?;
        assert_eq!(answer.status(), status, "{value}");
    }
    Ok(())
}

/// A bridge asked to listen on a non-loopback address with no client token refuses to start
/// (exit code 2, naming the fix) unless `--insecure-listen` says so, and then it warns.
#[tokio::test]
async fn a_non_loopback_listen_without_a_token_needs_insecure_listen() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("mcp-bridge.toml");
    std::fs::write(&config, demo_server_toml("demo", &[], ""))?;
    let mut refused = Command::new(bridge_exe())
        .args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&config)
        .env_remove("MCP_BRIDGE_INSECURE_LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // Bounded: a bridge that does not refuse would serve until killed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = refused.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = refused.kill();
            let _ = refused.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = refused.stderr.take() {
        use std::io::Read;
        pipe.read_to_string(&mut stderr)?;
    }
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(2),
        "the bridge did not refuse to start: {stderr}"
    );
    assert!(
        stderr.contains("--insecure-listen") && stderr.contains("http.auth_token"),
        "{stderr}"
    );

    let mut child = Command::new(bridge_exe())
        .args([
            "serve",
            "--insecure-listen",
            "--listen",
            "0.0.0.0:0",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let lines = read_lines_until(stderr, Duration::from_secs(30), |line| {
        line.contains("INSECURE")
    });
    let warned = lines.iter().any(|line| line.contains("INSECURE"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "no warning for --insecure-listen");
    Ok(())
}

/// A batch longer than `max_batch_messages` is refused before any of it runs, so the 4 MiB
/// batch of pings that once took RSS from 11 MB to 515 MB leaves memory where it was; a
/// batch within the limit is answered in order with at most `batch_concurrency` calls on
/// the backend at once.
#[tokio::test]
async fn batches_are_bounded_in_length_and_concurrency() -> Result<()> {
    let bridge = bridge_with(
        "max_batch_messages = 10\nbatch_concurrency = 2",
        "max_connections = 1\nmax_inflight = 32",
    )
    .await?;
    let url = bridge.url("/mcp/demo");
    let session = RawSession::open(&url).await?;
    let rss_before = rss_kib(bridge.pid()).context("bridge RSS")?;

    let pings: Vec<Value> = (0..82_000)
        .map(|id| json!({"jsonrpc": "2.0", "id": id, "method": "ping"}))
        .collect();
    let huge = Value::Array(pings);
    let refused = post_json(&url, Some(&session.session_id), &huge).await?;
    assert_eq!(refused.status(), 400);
    let body = read_response(refused).await?;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_batch_messages"), "{body}");
    let rss_after = rss_kib(bridge.pid()).context("bridge RSS")?;
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB on a refused batch"
    );

    // Eight slow calls in one batch: the backend never sees more than two at once.
    let batch: Vec<Value> = (0..8)
        .map(|id| {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "debug_sleep", "arguments": {"ms": 400}}})
        })
        .collect();
    let sender = {
        let (url, sid) = (url.clone(), session.session_id.clone());
        tokio::spawn(async move {
            let response = post_json(&url, Some(&sid), &Value::Array(batch)).await?;
            anyhow::Ok(response.json::<Value>().await?)
        })
    };
    let mut most_in_flight = 0;
    while !sender.is_finished() {
        let stats = bridge.server_stats("demo").await?;
        most_in_flight = most_in_flight.max(in_flight(&stats));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers = sender.await??;
    let ids: Vec<u64> = answers
        .as_array()
        .context("the batch answer is not an array")?
        .iter()
        .filter_map(|answer| answer["id"].as_u64())
        .collect();
    assert_eq!(ids, (0..8).collect::<Vec<_>>(), "{answers}");
    assert!(
        (1..=2).contains(&most_in_flight),
        "the batch ran {most_in_flight} calls at once with batch_concurrency = 2"
    );
    Ok(())
}

/// One session's burst waits behind its own in-flight cap, so another session's call still
/// finds a free slot in the pool instead of failing with "pool exhausted".
#[tokio::test]
async fn one_session_cannot_take_the_whole_pool() -> Result<()> {
    let bridge = bridge_with(
        "max_inflight_per_session = 2",
        "max_connections = 1\nmax_inflight = 4\nmax_queue = 256\nacquire_timeout = \"2s\"",
    )
    .await?;
    let url = bridge.url("/mcp/demo");
    let greedy = RawSession::open(&url).await?;
    let polite = RawSession::open(&url).await?;
    let mut burst = Vec::new();
    for id in 0..40 {
        burst.push(spawn_sleep(&url, &greedy.session_id, id, 3000));
    }
    // Wait until the burst occupies its share of the pool.
    let busy = eventually(Duration::from_secs(10), async || {
        bridge
            .server_stats("demo")
            .await
            .is_ok_and(|stats| in_flight(&stats) >= 2)
    })
    .await;
    assert!(busy, "the burst never reached the backend");
    let answer = polite.call_tool(json!(1), "get_tasks", json!({})).await?;
    assert!(
        answer["result"]["structuredContent"].is_object(),
        "another session's call failed while one session burst: {answer}"
    );
    let mut busy_refusals = 0;
    for call in burst {
        let answer = call.await??;
        if answer["error"]["code"] == -32031 {
            busy_refusals += 1;
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("max_inflight_per_session"), "{answer}");
        }
    }
    assert!(busy_refusals > 0, "the burst was never held at its own cap");
    Ok(())
}

/// Sessions are capped: at `max_sessions` the least recently used idle session is closed to
/// make room (and counted), and when every session is in use `initialize`, and a closed
/// session's token presented again, are refused with 503. A session keeps only a short client name, whatever `clientInfo` holds.
#[tokio::test]
async fn sessions_are_capped_and_store_little() -> Result<()> {
    // A session must be unused for a tenth of the idle timeout (1 s here) before a new one
    // may take its place.
    let bridge = bridge_with(
        "max_sessions = 2\nsession_idle_timeout = \"10s\"",
        "max_inflight = 8",
    )
    .await?;
    let url = bridge.url("/mcp/demo");
    let oldest = RawSession::open(&url).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let newer = RawSession::open(&url).await?;
    // A third session closes the least recently used one.
    let long_name = "n".repeat(1 << 20);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": long_name, "version": "1", "padding": "p".repeat(1 << 20)}}});
    let third = post_json(&url, None, &init).await?;
    assert_eq!(third.status(), 200);
    let closed = metric(
        &bridge,
        "mcp_bridge_sessions_closed_total",
        &["reason=\"capacity\""],
    )
    .await?;
    assert_eq!(closed, 1.0);
    // Both sessions now in use within the last second: a fourth is refused, not let in by
    // closing a session its client is still using.
    let fresh = post_json(&url, None, &init).await?;
    assert_eq!(
        fresh.status(),
        503,
        "a session in use was closed to make room"
    );
    // The closed session's token is still valid (any replica may continue it), so
    // presenting it asks for a slot like initialize does: none is free, so it is refused
    // rather than let in by closing a session in use.
    let closed_again = post_json(
        &url,
        Some(&oldest.session_id),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
    )
    .await?;
    assert_eq!(
        closed_again.status(),
        503,
        "the closed session came back by closing a session in use"
    );
    let stats = bridge.admin_stats().await?;
    let names = stats["sessions"]["by_client"]
        .as_object()
        .context("by_client")?;
    assert!(
        names.keys().all(|name| name.chars().count() <= 128),
        "a session kept a long clientInfo name"
    );

    // Every session busy: initialize is refused, and the busy sessions are untouched.
    let third_id = third
        .headers()
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok())
        .context("no session id")?
        .to_owned();
    let mut calls = Vec::new();
    for sid in [&newer.session_id, &third_id] {
        calls.push(spawn_sleep(&url, sid, 9, 3000));
    }
    let both_busy = eventually(Duration::from_secs(10), async || {
        bridge
            .server_stats("demo")
            .await
            .is_ok_and(|stats| in_flight(&stats) >= 2)
    })
    .await;
    assert!(both_busy, "the sessions' calls never reached the backend");
    let refused = post_json(&url, None, &init).await?;
    assert_eq!(refused.status(), 503);
    let body = read_response(refused).await?;
    assert_eq!(body["error"]["code"], -32030, "{body}");
    for call in calls {
        let answer = call.await??;
        if answer.get("result").is_none() {
            bail!("a busy session's call failed: {answer}");
        }
    }
    Ok(())
}

fn in_flight(stats: &Value) -> u64 {
    stats["processes"]
        .as_array()
        .map(|processes| {
            processes
                .iter()
                .filter_map(|p| p["inflight"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// A session holds at most four GET streams: a fifth gets 409, and closing one frees its slot.
#[tokio::test]
async fn a_session_holds_a_bounded_number_of_get_streams() -> Result<()> {
    let bridge = bridge_with("", "").await?;
    let url = bridge.url("/mcp/demo");
    let session = RawSession::open(&url).await?;
    let open = || {
        http()
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session.session_id)
            .send()
    };
    let mut streams = Vec::new();
    for _ in 0..4 {
        let stream = open().await?;
        assert_eq!(stream.status(), 200);
        streams.push(stream);
    }
    let fifth = open().await?;
    assert_eq!(fifth.status(), 409);
    assert!(fifth.text().await?.contains("GET streams"));
    drop(streams.pop());
    // The slot frees when the bridge notices the stream is gone.
    let reopened = eventually(Duration::from_secs(20), async || {
        open().await.is_ok_and(|stream| stream.status() == 200)
    })
    .await;
    assert!(reopened, "closing a stream never freed its slot");
    // Ending the session ends its streams.
    let ended = http()
        .delete(&url)
        .header("mcp-session-id", &session.session_id)
        .send()
        .await?;
    assert_eq!(ended.status(), 204);
    for stream in streams {
        let body = tokio::time::timeout(Duration::from_secs(20), stream.text()).await;
        assert!(body.is_ok(), "a GET stream outlived its session");
    }
    Ok(())
}

/// Starts a `debug_sleep` call of `ms` in session `sid` on a task of its own; the task
/// yields the call's JSON-RPC response.
fn spawn_sleep(url: &str, sid: &str, id: u64, ms: u64) -> tokio::task::JoinHandle<Result<Value>> {
    let (url, sid) = (url.to_owned(), sid.to_owned());
    tokio::spawn(async move {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "debug_sleep", "arguments": {"ms": ms}}});
        read_response(post_json(&url, Some(&sid), &call).await?).await
    })
}
