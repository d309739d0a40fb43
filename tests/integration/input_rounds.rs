//! 2026-07-28 multi-round-trip requests in front of a legacy backend: the backend's
//! elicitation or sampling request during a 2026-07-28 call becomes an `input_required`
//! round, and the client's retry (`inputResponses` + `requestState`) reaches the very
//! call and process that asked, in every isolation mode. Driven with the official Python
//! SDK (which runs the rounds itself) and, for the attacks, raw HTTP.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::auth::api_key_toml;
use crate::support::{
    Bridge, demo_server_toml, http, metric, read_response, run_python_client, start_bridge,
};

/// How long any one step may take before it counts as hung.
const STEP: Duration = Duration::from_secs(60);

/// The demo server with the conformance fixtures (test_elicitation, test_sampling), one
/// call per process so a server request is the caller's, with `pool` settings.
fn elicitation_server(pool: &str) -> String {
    demo_server_toml(
        "demo",
        &["--conformance-fixtures"],
        &format!("exclusive = true\n{pool}"),
    )
}

fn key_of(principal: &str) -> String {
    format!("{principal}-rounds-key-7d1e4b")
}

fn keys(principals: &[&str]) -> String {
    principals
        .iter()
        .map(|principal| api_key_toml(principal, &[], &key_of(principal)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the Python SDK's 2026-07-28 client (`tests/clients/mrtr_client.py`).
async fn python(spec: Value) -> Result<Value> {
    let arg = spec.to_string();
    tokio::time::timeout(STEP, run_python_client("mrtr_client.py", &[arg.as_str()]))
        .await
        .with_context(|| format!("the Python client did not finish within {STEP:?}"))?
}

/// A 2026-07-28 `tools/call` as a client writes it, with extra `params`.
fn call(tool: &str, arguments: Value, capabilities: Value, extra: Value) -> Value {
    let mut message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": capabilities}}});
    if let (Some(params), Some(extra)) = (message["params"].as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    message
}

/// Posts a 2026-07-28 request as `principal` (or anonymously) and returns the JSON-RPC answer.
async fn post(
    bridge: &Bridge,
    principal: Option<&str>,
    message: &Value,
    headers: &[(&str, &str)],
) -> Result<Value> {
    let tool = message["params"]["name"].as_str().unwrap_or_default();
    let mut request = http()
        .post(bridge.url("/mcp/demo"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool);
    if let Some(principal) = principal {
        request = request.header("authorization", format!("Bearer {}", key_of(principal)));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let exchange = async { read_response(request.body(message.to_string()).send().await?).await };
    tokio::time::timeout(STEP, exchange)
        .await
        .context("the request took too long")?
}

fn elicit_capability() -> Value {
    json!({"elicitation": {"form": {}}})
}

/// The answer to the demo's elicitation, for `who`.
fn accept(who: &str) -> Value {
    json!({"input": {"action": "accept", "content": {"username": who, "email": format!("{who}@example.com")}}})
}

/// The text of a tool result.
fn text_of(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The requestState of an input round, after checking it is one for the demo's question.
fn round_state(response: &Value, question: &str) -> Result<String> {
    let result = &response["result"];
    ensure!(
        result["resultType"] == "input_required",
        "expected an input round: {response}"
    );
    let request = &result["inputRequests"]["input"];
    ensure!(
        request["method"] == "elicitation/create" && request["params"]["message"] == question,
        "the round does not carry the backend's question: {response}"
    );
    ensure!(
        request.get("id").is_none() && request.get("jsonrpc").is_none(),
        "an input request carries no JSON-RPC envelope: {response}"
    );
    result["requestState"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no requestState: {response}"))
}

/// The Python SDK's own rounds: its elicitation callback answers the backend's question and
/// the tool's result carries the answer, for a shared and a principal-isolated server.
#[tokio::test]
async fn the_python_sdk_answers_a_legacy_servers_elicitation_through_input_rounds() -> Result<()> {
    for isolation in ["shared", "principal"] {
        let bridge = start_bridge(&elicitation_server(&format!(
            "isolation = \"{isolation}\"\nmax_connections = 2"
        )))?;
        bridge.wait_ready().await?;
        let report = python(json!({
            "url": bridge.url("/mcp/demo"),
            "tool": "test_elicitation",
            "args": {"message": "Who are you?"},
            "elicitation": {"action": "accept",
                "content": {"username": "alice", "email": "alice@example.com"}},
        }))
        .await?;
        assert_eq!(report["protocol_version"], "2026-07-28", "{report}");
        assert_eq!(report["elicitations"], 1, "{isolation}: {report}");
        assert_eq!(report["elicited"], json!(["Who are you?"]), "{report}");
        let text = report["result"]["text"][0].as_str().unwrap_or_default();
        assert!(
            text.contains("action=accept") && text.contains("alice@example.com"),
            "{isolation}: the backend did not get the client's answer: {report}"
        );
        assert_eq!(
            metric(
                &bridge,
                "mcp_bridge_input_rounds_total",
                &["outcome=\"resumed\""]
            )
            .await?,
            1.0
        );

        // Sampling takes the same way.
        let report = python(json!({
            "url": bridge.url("/mcp/demo"),
            "tool": "test_sampling",
            "args": {"prompt": "2+2?"},
            "sampling": "four",
        }))
        .await?;
        assert_eq!(report["sampled"], json!(["2+2?"]), "{report}");
        let text = report["result"]["text"][0].as_str().unwrap_or_default();
        assert_eq!(text, "LLM response: four", "{isolation}: {report}");
    }
    Ok(())
}

/// A requestState works once, for the principal, endpoint, tool and arguments it was
/// issued for: another principal, other arguments, a tampered state and a second use are
/// all refused alike (-32602, reason invalid_request_state), and none of them disturbs
/// the parked call, which the rightful retry then completes.
#[tokio::test]
async fn a_request_state_resumes_only_its_own_call_once() -> Result<()> {
    let bridge = start_bridge(&format!(
        "{}\n{}",
        keys(&["alice", "bob"]),
        elicitation_server("max_connections = 2")
    ))?;
    bridge.wait_ready().await?;
    let arguments = json!({"message": "Who are you?"});
    let first = call(
        "test_elicitation",
        arguments.clone(),
        elicit_capability(),
        json!({}),
    );
    let asked = post(&bridge, Some("alice"), &first, &[]).await?;
    let state = round_state(&asked, "Who are you?")?;
    assert!(
        state.len() >= 32 && asked["result"].get("content").is_none(),
        "{asked}"
    );

    let retry = |arguments: Value, state: &str| {
        call(
            "test_elicitation",
            arguments,
            elicit_capability(),
            json!({"requestState": state, "inputResponses": accept("mallory")}),
        )
    };
    let refusals = [
        ("bob", retry(arguments.clone(), &state)),
        (
            "alice",
            retry(json!({"message": "Something else?"}), &state),
        ),
        ("alice", retry(arguments.clone(), &format!("{state}x"))),
    ];
    for (principal, message) in refusals {
        let refused = post(&bridge, Some(principal), &message, &[]).await?;
        assert_eq!(refused["error"]["code"], -32602, "{principal}: {refused}");
        assert_eq!(
            refused["error"]["data"]["reason"], "invalid_request_state",
            "{refused}"
        );
    }

    let rightful = call(
        "test_elicitation",
        arguments.clone(),
        elicit_capability(),
        json!({"requestState": state, "inputResponses": accept("alice")}),
    );
    let done = post(&bridge, Some("alice"), &rightful, &[]).await?;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(text_of(&done).contains("alice@example.com"), "{done}");
    assert!(!text_of(&done).contains("mallory"), "{done}");

    let again = post(&bridge, Some("alice"), &rightful, &[]).await?;
    assert_eq!(
        again["error"]["data"]["reason"], "invalid_request_state",
        "a requestState worked twice: {again}"
    );
    let count = |outcome: &'static str| {
        let label = format!("outcome=\"{outcome}\"");
        let bridge = &bridge;
        async move { metric(bridge, "mcp_bridge_input_rounds_total", &[label.as_str()]).await }
    };
    assert_eq!(count("invalid_state").await?, 4.0);
    assert_eq!(count("resumed").await?, 1.0);
    assert_eq!(count("asked").await?, 1.0);
    Ok(())
}

/// Two clients' rounds at once on one server (two processes) each reach the process that
/// asked them: answered in the opposite order, each result carries its own client's answer.
/// A retry without the answer is asked again; a session-isolated server's rounds follow
/// the caller's affinity key.
#[tokio::test]
async fn concurrent_rounds_each_reach_the_process_that_asked() -> Result<()> {
    for isolation in ["shared", "session"] {
        let bridge = start_bridge(&elicitation_server(&format!(
            "isolation = \"{isolation}\"\nmax_connections = {}",
            if isolation == "session" { 1 } else { 2 }
        )))?;
        bridge.wait_ready().await?;
        let mut states = Vec::new();
        // Anonymous callers share one principal: their affinity keys must be unguessable.
        let affinity = |who: &str| format!("{who}-0f3c9a7e5b1d4c2a8e6f0b9d7c5a3e1f");
        for who in ["ann", "ben"] {
            let message = call(
                "test_elicitation",
                json!({"message": format!("Who is {who}?")}),
                elicit_capability(),
                json!({}),
            );
            let key = affinity(who);
            let headers = [("mcp-bridge-affinity", key.as_str())];
            let asked = post(&bridge, None, &message, &headers).await?;
            states.push((
                who,
                message,
                round_state(&asked, &format!("Who is {who}?"))?,
            ));
        }
        let stats = bridge.server_stats("demo").await?;
        let busy: u64 = match isolation {
            "shared" => stats["inflight"].as_u64().unwrap_or_default(),
            _ => stats["groups"].as_array().map_or(0, |groups| {
                groups.iter().filter_map(|g| g["inflight"].as_u64()).sum()
            }),
        };
        assert_eq!(
            busy, 2,
            "{isolation}: both parked calls hold their process: {stats}"
        );

        for (who, message, state) in states.into_iter().rev() {
            let key = affinity(who);
            let headers = [("mcp-bridge-affinity", key.as_str())];
            let mut retry = message.clone();
            retry["params"]["requestState"] = json!(state);
            // Without the answer, the client is asked again under a new state.
            let again = post(&bridge, None, &retry, &headers).await?;
            let state = round_state(&again, &format!("Who is {who}?"))?;
            retry["params"]["requestState"] = json!(state);
            retry["params"]["inputResponses"] = accept(who);
            let done = post(&bridge, None, &retry, &headers).await?;
            assert!(
                text_of(&done).contains(&format!("{who}@example.com")),
                "{isolation}: {who}'s retry got another call's answer: {done}"
            );
        }
    }
    Ok(())
}

/// A client that did not declare elicitation is never sent a round: the backend's request
/// is answered with an error naming the capability, and the call ends without waiting.
#[tokio::test]
async fn a_client_without_the_capability_gets_no_round() -> Result<()> {
    let bridge = start_bridge(&elicitation_server(""))?;
    bridge.wait_ready().await?;
    let message = call(
        "test_elicitation",
        json!({"message": "Who are you?"}),
        json!({}),
        json!({}),
    );
    let answered = post(&bridge, None, &message, &[]).await?;
    assert_ne!(
        answered["result"]["resultType"], "input_required",
        "{answered}"
    );
    let shown = answered.to_string();
    assert!(
        shown.contains("elicitation"),
        "the failure should name the capability: {answered}"
    );
    assert_eq!(
        metric(
            &bridge,
            "mcp_bridge_input_rounds_total",
            &["outcome=\"missing_capability\""]
        )
        .await?,
        1.0
    );
    Ok(())
}
