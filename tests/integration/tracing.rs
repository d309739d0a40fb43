//! Traces across the stdio hop: a bridge with `[telemetry]` exports its spans over OTLP/HTTP
//! to a receiver on 127.0.0.1 that decodes them with the official OpenTelemetry protobuf
//! definitions; the tests check names, kinds and attributes against the MCP semantic
//! conventions, and parentage from the client's span through the bridge's to the context
//! the backend received in `params._meta`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use mcp_bridge_test_support::otlp::{OtlpReceiver, ReceivedSpan, SpanKind};
use serde_json::{Value, json};

use crate::support::{
    Bridge, RawSession, bridge_exe, count_calls, demo_server_toml, http, poll_until, read_response,
    start_bridge, toml_string,
};

/// How long the exported spans may take to arrive (the bridge exports every 100 ms here).
const EXPORT_BOUND: Duration = Duration::from_secs(20);
/// One HTTP call's bound.
const STEP: Duration = Duration::from_secs(30);

/// The client's span the first call continues (trace A), sent as the HTTP header.
const TRACE_A: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_A: &str = "b7ad6b7169203331";
/// A second client trace, sent in `params._meta` (it wins over the header).
const TRACE_B: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_B: &str = "00f067aa0ba902b7";
/// A third, sent only as a header on the call that also carries trace B in `_meta`.
const TRACE_C: &str = "11111111111111111111111111111111";
/// The demo server's deliberate latency per call: a lower bound of the CLIENT span.
const LATENCY: Duration = Duration::from_millis(500);
/// An export header value the SDK would alter if it reached its percent-decoding option.
const EXPORT_TOKEN: &str = "Bearer a%41b c";
/// Traces of the cache-hit pair.
const TRACE_D: &str = "dddddddddddddddddddddddddddddddd";
const TRACE_E: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

fn traceparent(trace: &str, parent: &str) -> String {
    format!("00-{trace}-{parent}-01")
}

/// A bridge serving the demo server (one process, 500 ms per call so concurrent reads
/// coalesce) with the annotations plugin deciding (it caches read-only tools), and
/// `telemetry` under `[telemetry]` (nothing: tracing off).
struct Traced {
    bridge: Bridge,
    calls: std::path::PathBuf,
}

impl Traced {
    async fn start(telemetry: &str) -> Result<Traced> {
        Traced::start_with_env(telemetry, &[]).await
    }

    /// As [`Traced::start`], with `env` in the bridge's environment.
    async fn start_with_env(telemetry: &str, env: &[(&str, &str)]) -> Result<Traced> {
        let dir = tempfile::tempdir()?;
        let plugins = dir.path().join("plugins.d");
        std::fs::create_dir_all(&plugins)?;
        std::fs::copy(
            plugin_artifacts::ANNOTATIONS,
            plugins.join("annotations.wasm"),
        )?;
        let calls = dir.path().join("calls.log");
        let calls_arg = calls.display().to_string();
        let server = demo_server_toml(
            "demo",
            &[
                "--calls-log",
                &calls_arg,
                "--latency",
                &format!("{}ms", LATENCY.as_millis()),
            ],
            "max_connections = 1",
        );
        let config = format!(
            "{server}\n[cache]\nenabled = true\n\n[plugins]\ndir = \"plugins.d\"\ncompiled_cache_dir = {}\ndecision_timeout = \"10s\"\nauto_bind = false\n\n[[plugins.policy]]\nfile = \"annotations.wasm\"\nservers = [\"*\"]\nconfig = {{ default_ttl = \"5m\" }}\n\n{telemetry}\n",
            toml_string(&dir.path().join("compiled").display().to_string())
        );
        let config_path = dir.path().join("mcp-bridge.toml");
        std::fs::write(&config_path, config)?;
        let bridge = Bridge::start_with_file_and_env(
            std::path::Path::new(bridge_exe()),
            dir,
            config_path,
            &[],
            env,
        )?;
        bridge.wait_ready().await?;
        Ok(Traced { bridge, calls })
    }

    async fn session(&self) -> Result<RawSession> {
        RawSession::open(&self.bridge.url("/mcp/demo")).await
    }
}

/// `[telemetry]` exporting to `receiver` every 100 ms, with an `authorization` header.
fn telemetry_toml(receiver: &OtlpReceiver) -> String {
    format!(
        "[telemetry]\notlp_endpoint = {}\nservice_name = \"bridge-under-test\"\nexport_interval = \"100ms\"\nexport_timeout = \"5s\"\nheaders = {{ authorization = {} }}\n",
        toml_string(&receiver.endpoint()),
        toml_string(EXPORT_TOKEN)
    )
}

/// `tools/call` in `session` with extra HTTP headers and `params._meta`; the response.
async fn call(
    session: &RawSession,
    id: u64,
    tool: &str,
    arguments: Value,
    headers: &[(&str, &str)],
    meta: Option<Value>,
) -> Result<Value> {
    let mut message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}});
    if let Some(meta) = meta {
        message["params"]["_meta"] = meta;
    }
    let mut request = http()
        .post(&session.url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session.session_id);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(STEP, request.body(message.to_string()).send())
        .await
        .context("the call took too long")??;
    ensure!(response.status() == 200, "HTTP {}", response.status());
    let response = read_response(response).await?;
    ensure!(
        response["result"].is_object() && response["result"]["isError"] != true,
        "{tool} failed: {response}"
    );
    Ok(response)
}

/// What the demo server received in `params._meta`, from a `debug_meta` response.
fn meta_received(response: &Value) -> &Value {
    &response["result"]["structuredContent"]["meta"]
}

fn in_trace<'a>(spans: &'a [ReceivedSpan], trace: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|span| span.trace_id == trace).collect()
}

fn one<'a>(
    spans: &[&'a ReceivedSpan],
    what: &str,
    test: impl Fn(&ReceivedSpan) -> bool,
) -> Result<&'a ReceivedSpan> {
    let found: Vec<&&ReceivedSpan> = spans.iter().filter(|span| test(span)).collect();
    ensure!(
        found.len() == 1,
        "expected one {what} span, found {}: {spans:#?}",
        found.len()
    );
    Ok(found[0])
}

/// Whether `span` descends from `ancestor` through spans of `trace`.
fn descends_from(span: &ReceivedSpan, ancestor: &ReceivedSpan, trace: &[&ReceivedSpan]) -> bool {
    let mut parent = span.parent_span_id.clone();
    for _ in 0..trace.len() {
        if parent == ancestor.span_id {
            return true;
        }
        match trace.iter().find(|candidate| candidate.span_id == parent) {
            Some(next) => parent = next.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

/// A cache miss continues the client's HTTP `traceparent`: the SERVER span `tools/call
/// debug_meta` is the child of the client's span with the conventions' attributes; the
/// policy (with the plugin binding's decision under it), cache lookup, pool acquire and
/// the backend's CLIENT span descend from it; the backend receives `_meta.traceparent`
/// naming the CLIENT span as parent in the same trace, with the client's `tracestate`.
/// A request's own `_meta.traceparent` wins over the header; a cache hit (the same call
/// under another traceparent: `_meta` is not part of the key) has no backend span, and
/// concurrent reads show the single-flight wait. The CLIENT span lasts the whole round
/// trip (at least the demo's latency) inside the SERVER span. Every error reply marks the
/// SERVER span (a backend's, a front's, a batch item's); a tool the server does not list
/// never names a span. The configured export header arrives exactly as written, over the
/// SDK's environment variable for the same header.
#[tokio::test]
async fn spans_continue_the_clients_trace_through_the_bridge_to_the_backend() -> Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let demo = Traced::start_with_env(
        &telemetry_toml(&receiver),
        &[(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "authorization=from-env,x-from-env=yes",
        )],
    )
    .await?;
    let session = demo.session().await?;

    // 1. A miss under the client's HTTP trace context.
    let header_a = traceparent(TRACE_A, PARENT_A);
    let first = call(
        &session,
        7,
        "debug_meta",
        json!({"round": 1}),
        &[("traceparent", &header_a), ("tracestate", "vendor=abc")],
        None,
    )
    .await?;
    let seen = meta_received(&first).clone();
    let pid = first["result"]["structuredContent"]["pid"].to_string();

    let spans = receiver
        .wait_for(EXPORT_BOUND, "trace A's server and client spans", |spans| {
            let trace = in_trace(spans, TRACE_A);
            trace.iter().any(|span| span.kind == SpanKind::Server)
                && trace.iter().any(|span| span.kind == SpanKind::Client)
        })
        .await?;
    let trace = in_trace(&spans, TRACE_A);
    let server = one(&trace, "SERVER", |span| span.kind == SpanKind::Server)?;
    ensure!(server.parent_span_id == PARENT_A, "{server:#?}");
    ensure!(server.name == "tools/call debug_meta", "{server:#?}");
    ensure!(server.service_name == "bridge-under-test", "{server:#?}");
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "debug_meta"),
        ("gen_ai.operation.name", "execute_tool"),
        ("jsonrpc.request.id", "7"),
        ("mcp.protocol.version", "2025-11-25"),
        ("network.transport", "tcp"),
        ("mcp_bridge.cache.result", "miss"),
    ] {
        ensure!(server.attribute(key) == Some(value), "{key}: {server:#?}");
    }
    let session_attribute = server.attribute("mcp.session.id").unwrap_or_default();
    ensure!(
        !session_attribute.is_empty(),
        "the session attribute is missing: {server:#?}"
    );
    ensure!(
        session_attribute != session.session_id,
        "the span carries the session token itself: {server:#?}"
    );
    ensure!(
        server.attribute("mcp_bridge.policy.generation").is_some(),
        "{server:#?}"
    );

    let client = one(&trace, "CLIENT", |span| span.kind == SpanKind::Client)?;
    ensure!(client.name == "tools/call debug_meta", "{client:#?}");
    ensure!(
        client.attribute("network.transport") == Some("pipe"),
        "{client:#?}"
    );
    ensure!(
        client.attribute("mcp_bridge.server.name") == Some("demo"),
        "{client:#?}"
    );
    ensure!(
        client.attribute("mcp_bridge.process.pid") == Some(pid.as_str()),
        "{client:#?} pid {pid}"
    );
    ensure!(descends_from(client, server, &trace), "{trace:#?}");
    // The CLIENT span covers the round trip, not only the write of the request.
    ensure!(
        client.duration() >= LATENCY,
        "the CLIENT span lasted {:?}, less than the backend's {LATENCY:?}: {client:#?}",
        client.duration()
    );
    ensure!(
        client.lies_within(server),
        "the CLIENT span is not inside the SERVER span: {server:#?} {client:#?}"
    );
    // The configured header as written (no percent-decoding), winning over the
    // environment's value; the environment may add others.
    ensure!(
        receiver.last_header("authorization") == [EXPORT_TOKEN],
        "authorization: {:?}",
        receiver.last_header("authorization")
    );
    ensure!(
        receiver.last_header("x-from-env") == ["yes"],
        "x-from-env: {:?}",
        receiver.last_header("x-from-env")
    );

    let policy = one(&trace, "policy", |span| span.name == "mcp_bridge.policy")?;
    ensure!(policy.parent_span_id == server.span_id, "{trace:#?}");
    ensure!(
        policy.attribute("mcp_bridge.policy.decision") == Some("cache"),
        "{policy:#?}"
    );
    let plugin = one(&trace, "plugin", |span| span.name == "mcp_bridge.plugin")?;
    ensure!(plugin.parent_span_id == policy.span_id, "{trace:#?}");
    ensure!(
        plugin
            .attribute("mcp_bridge.plugin.binding")
            .is_some_and(|name| name.contains("annotations")),
        "{plugin:#?}"
    );
    ensure!(
        plugin.attribute("mcp_bridge.plugin.decision") == Some("cache"),
        "{plugin:#?}"
    );
    let lookup = one(&trace, "cache lookup", |span| {
        span.name == "mcp_bridge.cache.lookup"
    })?;
    ensure!(
        lookup.attribute("mcp_bridge.cache.result") == Some("miss"),
        "{lookup:#?}"
    );
    ensure!(descends_from(lookup, server, &trace), "{trace:#?}");
    let acquire = one(&trace, "pool acquire", |span| {
        span.name == "mcp_bridge.pool.acquire"
    })?;
    ensure!(descends_from(acquire, server, &trace), "{trace:#?}");

    // The backend continues the trace from the CLIENT span, with the client's tracestate.
    ensure!(
        seen["traceparent"] == json!(format!("00-{TRACE_A}-{}-01", client.span_id)),
        "the backend got {seen}, the CLIENT span is {}",
        client.span_id
    );
    ensure!(seen["tracestate"] == "vendor=abc", "{seen}");

    // 2. `_meta.traceparent` wins over the header, and reaches the backend re-parented.
    let second = call(
        &session,
        8,
        "debug_meta",
        json!({"round": 2}),
        &[("traceparent", &traceparent(TRACE_C, PARENT_A))],
        Some(json!({"traceparent": traceparent(TRACE_B, PARENT_B), "keep": "me"})),
    )
    .await?;
    let seen = meta_received(&second).clone();
    let spans = receiver
        .wait_for(EXPORT_BOUND, "trace B's client span", |spans| {
            in_trace(spans, TRACE_B)
                .iter()
                .any(|span| span.kind == SpanKind::Client)
        })
        .await?;
    let trace = in_trace(&spans, TRACE_B);
    let server = one(&trace, "SERVER", |span| span.kind == SpanKind::Server)?;
    ensure!(server.parent_span_id == PARENT_B, "{server:#?}");
    let client = one(&trace, "CLIENT", |span| span.kind == SpanKind::Client)?;
    ensure!(
        seen["traceparent"] == json!(format!("00-{TRACE_B}-{}-01", client.span_id)),
        "{seen}"
    );
    ensure!(seen["keep"] == "me", "another _meta key was lost: {seen}");
    ensure!(seen.get("tracestate").is_none(), "{seen}");
    ensure!(
        in_trace(&spans, TRACE_C).is_empty(),
        "the header's trace was used"
    );

    // 2b. An invalid `_meta.traceparent` gives way to the header's, and its `tracestate`
    // goes with it: the backend gets the header's trace without the `_meta` vendor state.
    let paired = call(
        &session,
        14,
        "debug_meta",
        json!({"round": 22}),
        &[("traceparent", &traceparent(TRACE_C, PARENT_A))],
        Some(json!({"traceparent": "00-bad", "tracestate": "meta=1"})),
    )
    .await?;
    let seen = meta_received(&paired).clone();
    let spans = receiver
        .wait_for(EXPORT_BOUND, "trace C's client span", |spans| {
            in_trace(spans, TRACE_C)
                .iter()
                .any(|span| span.kind == SpanKind::Client)
        })
        .await?;
    let client = one(&in_trace(&spans, TRACE_C), "CLIENT", |span| {
        span.kind == SpanKind::Client
    })?;
    ensure!(
        seen["traceparent"] == json!(format!("00-{TRACE_C}-{}-01", client.span_id)),
        "{seen}"
    );
    ensure!(
        seen.get("tracestate").is_none(),
        "a tracestate travelled with another trace's parent: {seen}"
    );

    // 3. The same call under two traceparents: one key, so the second is a hit with no
    // backend span (a client's varying trace context never splits the cache).
    let args = json!({"round": 3});
    call(
        &session,
        9,
        "debug_meta",
        args.clone(),
        &[],
        Some(json!({"traceparent": traceparent(TRACE_D, PARENT_A)})),
    )
    .await?;
    call(
        &session,
        10,
        "debug_meta",
        args,
        &[],
        Some(json!({"traceparent": traceparent(TRACE_E, PARENT_A)})),
    )
    .await?;
    let spans = receiver
        .wait_for(EXPORT_BOUND, "trace E's server span", |spans| {
            in_trace(spans, TRACE_E)
                .iter()
                .any(|span| span.kind == SpanKind::Server)
        })
        .await?;
    let hit_trace = in_trace(&spans, TRACE_E);
    let hit = one(&hit_trace, "SERVER", |span| span.kind == SpanKind::Server)?;
    ensure!(
        hit.attribute("mcp_bridge.cache.result") == Some("hit"),
        "{hit:#?}"
    );
    ensure!(
        !hit_trace
            .iter()
            .any(|span| span.kind == SpanKind::Client || span.name == "mcp_bridge.pool.acquire"),
        "a cache hit reached the pool: {hit_trace:#?}"
    );
    ensure!(
        count_calls(&demo.calls, "debug_meta") == 4,
        "the demo server saw {} debug_meta calls, expected 4 (rounds 1, 2, 2b and one of 3)",
        count_calls(&demo.calls, "debug_meta")
    );

    // 4. Two concurrent identical reads: one fills, the other waits for it.
    let (left, right) = tokio::join!(
        call(&session, 11, "get_tasks", json!({}), &[], None),
        call(&session, 12, "get_tasks", json!({}), &[], None)
    );
    left?;
    right?;
    let spans = receiver
        .wait_for(EXPORT_BOUND, "a single-flight wait", |spans| {
            spans
                .iter()
                .any(|span| span.name == "mcp_bridge.cache.single_flight_wait")
        })
        .await?;
    let wait = spans
        .iter()
        .find(|span| span.name == "mcp_bridge.cache.single_flight_wait")
        .context("no wait span")?;
    ensure!(
        wait.attribute("mcp_bridge.cache.result") == Some("published"),
        "{wait:#?}"
    );
    let waiter = spans
        .iter()
        .find(|span| span.span_id == wait.parent_span_id)
        .context("the wait span has no exported parent")?;
    ensure!(
        waiter.kind == SpanKind::Server
            && waiter.attribute("mcp_bridge.cache.result") == Some("coalesced"),
        "{waiter:#?}"
    );

    // 5. An error answer marks both spans failed with the conventions' error.type.
    let failed = session
        .call_tool(json!(13), "no_such_tool", json!({}))
        .await?;
    let code = failed["error"]["code"].to_string();
    ensure!(failed["error"].is_object(), "{failed}");
    let spans = receiver
        .wait_for(EXPORT_BOUND, "the failed call's spans", |spans| {
            spans
                .iter()
                .any(|span| span.attribute("gen_ai.tool.name") == Some("no_such_tool"))
        })
        .await?;
    let server = spans
        .iter()
        .find(|span| {
            span.kind == SpanKind::Server
                && span.attribute("gen_ai.tool.name") == Some("no_such_tool")
        })
        .context("no SERVER span of the failed call")?;
    ensure!(
        server.attribute("error.type") == Some(code.as_str()) && server.status_code == 2,
        "{server:#?} (error code {code})"
    );
    // A name the server does not list never names a span (one name per made-up tool would
    // flood a tracing backend's index).
    ensure!(server.name == "tools/call", "{server:#?}");
    ensure!(
        !spans.iter().any(|span| span.name.contains("no_such_tool")),
        "an unlisted tool named a span: {spans:#?}"
    );

    // 6. Errors the front answers itself, in a batch: each item has its SERVER span, the
    // refused one marked with its code, the other not.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 21, "method": "logging/setLevel", "params": {"level": "loud"}},
        {"jsonrpc": "2.0", "id": 22, "method": "ping"}
    ]);
    let response = tokio::time::timeout(
        STEP,
        http()
            .post(&session.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &session.session_id)
            .body(batch.to_string())
            .send(),
    )
    .await
    .context("the batch took too long")??;
    ensure!(response.status() == 200, "HTTP {}", response.status());
    let answers: Value = response.json().await?;
    let refused_code = answers
        .as_array()
        .and_then(|answers| answers.iter().find(|answer| answer["id"] == 21))
        .map(|answer| answer["error"]["code"].to_string())
        .context("no answer to the refused item")?;
    let item = |id: &'static str| {
        move |span: &ReceivedSpan| {
            span.kind == SpanKind::Server && span.attribute("jsonrpc.request.id") == Some(id)
        }
    };
    let spans = receiver
        .wait_for(EXPORT_BOUND, "both batch items' spans", |spans| {
            spans.iter().any(item("21")) && spans.iter().any(item("22"))
        })
        .await?;
    let all: Vec<&ReceivedSpan> = spans.iter().collect();
    let refused = one(&all, "refused item's SERVER", item("21"))?;
    ensure!(
        refused.attribute("error.type") == Some(refused_code.as_str())
            && refused.status_code == 2
            && refused.name == "logging/setLevel",
        "{refused:#?} (error code {refused_code})"
    );
    let answered = one(&all, "ping's SERVER", item("22"))?;
    ensure!(
        answered.attribute("error.type").is_none() && answered.status_code != 2,
        "{answered:#?}"
    );
    ensure!(receiver.refused() == 0, "the receiver refused an export");
    Ok(())
}

/// A stale answer's background refresh runs in a span of its own (a root, linked to the
/// SERVER span of the call that found the entry stale), so that call's SERVER span ends
/// with its answer, before the refresh's backend round trip does.
#[tokio::test]
async fn a_stale_refresh_has_its_own_span_linked_to_the_call_that_found_it() -> Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let server = demo_server_toml(
        "demo",
        &["--latency", &format!("{}ms", LATENCY.as_millis())],
        "max_connections = 2",
    );
    let config = format!(
        "{server}\n[cache]\ndefault_ttl = \"1s\"\nstale_while_revalidate = \"1m\"\n\n{}",
        telemetry_toml(&receiver)
    );
    let bridge = start_bridge(&config)?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    call(&session, 1, "get_clients", json!({}), &[], None).await?;
    // Asked again until the entry has expired and is answered stale (bounded).
    let mut id = 1;
    let stale = poll_until(
        EXPORT_BOUND,
        async || {
            id += 1;
            let header = traceparent(TRACE_D, PARENT_A);
            call(
                &session,
                id,
                "get_clients",
                json!({}),
                &[("traceparent", &header)],
                None,
            )
            .await
            .ok()
        },
        |response| {
            response.as_ref().is_some_and(|response| {
                response.pointer("/result/_meta/io.mcp-bridge~1stale") == Some(&json!(true))
            })
        },
    )
    .await;
    ensure!(stale.is_some(), "no stale answer within {EXPORT_BOUND:?}");
    let spans = receiver
        .wait_for(EXPORT_BOUND, "the refresh and its backend span", |spans| {
            spans.iter().any(|refresh| {
                refresh.name == "mcp_bridge.cache.refresh"
                    && spans.iter().any(|span| {
                        span.kind == SpanKind::Client && span.parent_span_id == refresh.span_id
                    })
            }) && spans.iter().any(|span| {
                span.kind == SpanKind::Server
                    && span.attribute("mcp_bridge.cache.result") == Some("stale")
            })
        })
        .await?;
    let all: Vec<&ReceivedSpan> = spans.iter().collect();
    let found_stale = one(&all, "stale SERVER", |span| {
        span.kind == SpanKind::Server && span.attribute("mcp_bridge.cache.result") == Some("stale")
    })?;
    ensure!(found_stale.trace_id == TRACE_D, "{found_stale:#?}");
    let refresh = one(&all, "refresh", |span| {
        span.name == "mcp_bridge.cache.refresh"
    })?;
    ensure!(
        refresh.parent_span_id.is_empty() && refresh.trace_id != TRACE_D,
        "the refresh is not a root of its own trace: {refresh:#?}"
    );
    ensure!(
        refresh.links == [(found_stale.trace_id.clone(), found_stale.span_id.clone())],
        "the refresh does not link to the call that found the entry stale: {refresh:#?}"
    );
    let refresh_client = one(&all, "refresh's CLIENT", |span| {
        span.kind == SpanKind::Client && span.parent_span_id == refresh.span_id
    })?;
    ensure!(
        found_stale.end_unix_nano < refresh_client.end_unix_nano
            && refresh_client.duration() >= LATENCY,
        "the stale answer's span waited for the refresh: {found_stale:#?} {refresh_client:#?}"
    );
    ensure!(
        !in_trace(&spans, TRACE_D)
            .iter()
            .any(|span| span.kind == SpanKind::Client),
        "the refresh's backend hop is in the client's trace: {spans:#?}"
    );
    Ok(())
}

/// An exporter the SDK refuses to build (here: the environment asks for a compression the
/// bridge does not send) leaves tracing off with a warning in the log while the bridge
/// serves. The warning comes from the binary's tracing setup itself: it is logged, not
/// taken for a span (the span target is no module's path).
#[tokio::test]
async fn an_exporter_the_sdk_refuses_leaves_tracing_off_with_a_logged_warning() -> Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let demo = Traced::start_with_env(
        &telemetry_toml(&receiver),
        &[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")],
    )
    .await?;
    ensure!(
        demo.bridge.logged("traces are off").await,
        "no warning: {}",
        demo.bridge.log_tail(20)
    );
    let session = demo.session().await?;
    let answered = call(&session, 1, "debug_meta", json!({"round": 1}), &[], None).await?;
    ensure!(
        meta_received(&answered).get("traceparent").is_none(),
        "tracing is on after all: {answered}"
    );
    Ok(())
}

/// With no `[telemetry]` the bridge makes no span of its own: the backend receives the
/// client's trace context in `_meta` unchanged (from a valid `_meta` parent, else from the
/// HTTP header, each with its own `tracestate`), and a malformed one not at all.
#[tokio::test]
async fn with_telemetry_off_the_clients_trace_context_reaches_the_backend_unchanged() -> Result<()>
{
    let demo = Traced::start("").await?;
    let session = demo.session().await?;
    let header = traceparent(TRACE_A, PARENT_A);
    let own = traceparent(TRACE_B, PARENT_B);
    let from_meta = call(
        &session,
        1,
        "debug_meta",
        json!({"round": 1}),
        &[("traceparent", &header)],
        Some(json!({"traceparent": own, "tracestate": "k=v"})),
    )
    .await?;
    ensure!(
        *meta_received(&from_meta) == json!({"traceparent": own, "tracestate": "k=v"}),
        "{from_meta}"
    );
    let from_header = call(
        &session,
        2,
        "debug_meta",
        json!({"round": 2}),
        &[("traceparent", &header)],
        None,
    )
    .await?;
    ensure!(
        meta_received(&from_header)["traceparent"] == json!(header),
        "{from_header}"
    );
    // An invalid `_meta` parent gives way to the header's, its vendor state with it.
    let paired = call(
        &session,
        4,
        "debug_meta",
        json!({"round": 4}),
        &[("traceparent", &header), ("tracestate", "hdr=2")],
        Some(json!({"traceparent": "00-bad", "tracestate": "meta=1", "keep": 1})),
    )
    .await?;
    ensure!(
        *meta_received(&paired) == json!({"traceparent": header, "tracestate": "hdr=2", "keep": 1}),
        "{paired}"
    );
    // A malformed header is ignored, never an error.
    let bad = call(
        &session,
        3,
        "debug_meta",
        json!({"round": 3}),
        &[(
            "traceparent",
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
        )],
        None,
    )
    .await?;
    ensure!(meta_received(&bad).get("traceparent").is_none(), "{bad}");
    Ok(())
}

/// Sampling is parent-based: with `sample_ratio = 0` a call the bridge starts a trace for is
/// not exported (and the backend learns it is unsampled: flags 00), while a call under a
/// client's sampled parent is. With the longest export interval (ten minutes, far beyond
/// any run of this test) only the flush at shutdown (SIGTERM) can deliver those spans: none
/// arrived before the stop.
#[tokio::test]
async fn sampling_follows_the_clients_parent_and_shutdown_flushes_the_queue() -> Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = {}\nsample_ratio = 0.0\nexport_interval = \"10m\"\n",
        toml_string(&receiver.endpoint())
    );
    let demo = Traced::start(&telemetry).await?;
    let session = demo.session().await?;
    let unsampled = call(&session, 1, "debug_meta", json!({"round": 1}), &[], None).await?;
    let context = meta_received(&unsampled)["traceparent"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(
        context.len() == 55 && context.starts_with("00-") && context.ends_with("-00"),
        "the backend should learn of an unsampled trace: {unsampled}"
    );
    let unsampled_trace = context[3..35].to_owned();
    let sampled_parent = traceparent(TRACE_A, PARENT_A);
    call(
        &session,
        2,
        "debug_meta",
        json!({"round": 2}),
        &[("traceparent", &sampled_parent)],
        None,
    )
    .await?;
    ensure!(
        receiver.requests() == 0,
        "spans left before the interval or the shutdown"
    );
    demo.bridge.stop(Duration::from_secs(20)).await?;
    let spans = receiver
        .wait_for(
            EXPORT_BOUND,
            "the sampled trace, flushed at shutdown",
            |spans| {
                in_trace(spans, TRACE_A)
                    .iter()
                    .any(|span| span.kind == SpanKind::Client)
            },
        )
        .await?;
    ensure!(
        in_trace(&spans, &unsampled_trace).is_empty(),
        "an unsampled trace was exported: {spans:#?}"
    );
    Ok(())
}
