//! Tests of the conformance fixtures: the surface they add (and that it is absent without the
//! flag), the tools' content, logging and progress, the sampling and elicitation round trips,
//! subscriptions, and the whole run loop over in-memory pipes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, duplex};
use tokio::sync::mpsc;

use super::DemoOptions;
use super::conformance::{self, FixtureTool};
use super::protocol;
use super::server::{Outgoing, Server};
use super::tools::{self, CallParams};

fn server(fixtures: bool) -> (Arc<Server>, mpsc::UnboundedReceiver<Outgoing>) {
    let (queue, outgoing) = mpsc::unbounded_channel();
    let options = DemoOptions {
        conformance_fixtures: fixtures,
        ..DemoOptions::default()
    };
    match Server::new(options, queue) {
        Ok(server) => (Arc::new(server), outgoing),
        Err(error) => panic!("server setup failed: {error}"),
    }
}

/// Answers a non-tool request the way the reader loop does and returns the parsed response.
fn request(server: &Server, method: &str, params: &Value) -> Value {
    let raw = RawValue::from_string(params.to_string()).ok();
    let line = protocol::handle_request(server, "1", method, raw.as_deref());
    serde_json::from_str(&line).unwrap_or_default()
}

fn initialize(server: &Server, capabilities: &Value) -> Value {
    let params = json!({
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities,
        "clientInfo": { "name": "test", "version": "0" }
    });
    request(server, "initialize", &params)
}

/// Every line queued so far, parsed.
fn drain(outgoing: &mut mpsc::UnboundedReceiver<Outgoing>) -> Vec<Value> {
    let mut lines = Vec::new();
    while let Ok(Outgoing::Line(line)) = outgoing.try_recv() {
        lines.push(serde_json::from_str(&line).unwrap_or_default());
    }
    lines
}

fn names(list: &Value, key: &str, field: &str) -> Vec<String> {
    list["result"][key]
        .as_array()
        .map(|items| {
            let names = items.iter().filter_map(|item| item[field].as_str());
            names.map(str::to_owned).collect()
        })
        .unwrap_or_default()
}

async fn call(server: &Server, tool: FixtureTool, arguments: Value) -> Value {
    let arguments = arguments.as_object().cloned();
    let outcome = conformance::call(server, tool, arguments.as_ref(), None).await;
    match outcome {
        Ok(result) => result,
        Err(error) => json!({ "isError": true, "error": error.to_string() }),
    }
}

#[tokio::test]
async fn the_default_surface_is_unchanged_without_the_flag() {
    let (server, _outgoing) = server(false);
    let init = initialize(&server, &json!({}));
    assert!(init["result"]["capabilities"].get("completions").is_none());
    assert_eq!(
        init["result"]["capabilities"]["resources"]["subscribe"],
        false
    );
    let tools = names(&request(&server, "tools/list", &json!({})), "tools", "name");
    assert_eq!(tools.len(), 7);
    let resources = request(&server, "resources/list", &json!({}));
    assert_eq!(names(&resources, "resources", "uri").len(), 4);
    assert_eq!(
        names(
            &request(&server, "prompts/list", &json!({})),
            "prompts",
            "name"
        )
        .len(),
        2
    );
    for method in ["completion/complete", "resources/subscribe"] {
        let refused = request(&server, method, &json!({ "uri": "demo://tasks" }));
        assert_eq!(refused["error"]["code"], -32601, "{method}");
    }
    let read = request(
        &server,
        "resources/read",
        &json!({ "uri": "test://static-text" }),
    );
    assert_eq!(read["error"]["code"], -32002);
    assert!(conformance::fixture_tool(&server, "test_simple_text").is_none());
}

#[tokio::test]
async fn the_flag_adds_the_fixture_surface_beside_the_demo_one() {
    let (server, _outgoing) = server(true);
    let init = initialize(&server, &json!({ "sampling": {}, "elicitation": {} }));
    let capabilities = &init["result"]["capabilities"];
    assert_eq!(capabilities["completions"], json!({}));
    assert_eq!(capabilities["resources"]["subscribe"], true);
    assert!(server.client_can_sample() && server.client_can_elicit());

    let tools = names(&request(&server, "tools/list", &json!({})), "tools", "name");
    assert_eq!(tools.len(), 7 + 13);
    assert!(tools.iter().any(|name| name == "get_tasks"));
    assert!(
        tools
            .iter()
            .any(|name| name == "test_elicitation_sep1330_enums")
    );
    let resources = names(
        &request(&server, "resources/list", &json!({})),
        "resources",
        "uri",
    );
    assert!(resources.contains(&"demo://tasks".to_owned()));
    assert!(resources.contains(&"test://static-binary".to_owned()));
    let templates = request(&server, "resources/templates/list", &json!({}));
    assert_eq!(
        names(&templates, "resourceTemplates", "uriTemplate"),
        ["demo://tasks/{id}", "test://template/{id}/data"]
    );
    let prompts = names(
        &request(&server, "prompts/list", &json!({})),
        "prompts",
        "name",
    );
    assert_eq!(prompts.len(), 2 + 4);

    // Demo requests still reach the demo's handlers.
    let demo = request(
        &server,
        "resources/read",
        &json!({ "uri": "demo://habits" }),
    );
    assert!(demo["result"]["contents"][0]["text"].is_string());
    let plan = request(&server, "prompts/get", &json!({ "name": "plan_day" }));
    assert!(plan["result"]["messages"].is_array());
    let fixture = request(
        &server,
        "prompts/get",
        &json!({ "name": "test_simple_prompt" }),
    );
    assert_eq!(
        fixture["result"]["messages"][0]["content"]["text"],
        "This is a simple prompt for testing."
    );
    let completed = request(
        &server,
        "completion/complete",
        &json!({
            "ref": { "type": "ref/prompt", "name": "test_prompt_with_arguments" },
            "argument": { "name": "arg1", "value": "wor" }
        }),
    );
    assert_eq!(
        completed["result"]["completion"]["values"],
        json!(["world"])
    );
}

#[tokio::test]
async fn content_tools_return_typed_blocks() {
    let (server, _outgoing) = server(true);
    let text = call(&server, FixtureTool::SimpleText, json!({})).await;
    assert_eq!(text["content"][0]["type"], "text");
    let image = call(&server, FixtureTool::Image, json!({})).await;
    assert_eq!(image["content"][0]["mimeType"], "image/png");
    assert!(
        image["content"][0]["data"]
            .as_str()
            .is_some_and(|data| data.starts_with("iVBOR"))
    );
    let audio = call(&server, FixtureTool::Audio, json!({})).await;
    assert_eq!(audio["content"][0]["mimeType"], "audio/wav");
    assert!(
        audio["content"][0]["data"]
            .as_str()
            .is_some_and(|data| data.starts_with("UklGR"))
    );
    let embedded = call(&server, FixtureTool::EmbeddedResource, json!({})).await;
    assert_eq!(
        embedded["content"][0]["resource"]["uri"],
        "test://static-text"
    );
    let mixed = call(&server, FixtureTool::MultipleContentTypes, json!({})).await;
    let kinds: Vec<&str> = mixed["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|block| block["type"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(kinds, ["text", "image", "resource"]);
    let failed = conformance::call(&server, FixtureTool::ErrorHandling, None, None).await;
    assert!(failed.is_err());

    let schema = call(
        &server,
        FixtureTool::JsonSchema2020,
        json!({ "name": "n", "address": { "city": "c" } }),
    )
    .await;
    assert!(
        schema["content"][0]["text"]
            .as_str()
            .is_some_and(|text| text.contains("\"city\":\"c\""))
    );
    let extra = call(
        &server,
        FixtureTool::JsonSchema2020,
        json!({ "nickname": "n" }),
    )
    .await;
    assert!(
        extra["error"]
            .as_str()
            .is_some_and(|error| error.contains("nickname"))
    );
}

#[tokio::test]
async fn logging_honours_the_level_and_progress_follows_the_token() {
    let (server, mut outgoing) = server(true);
    let _ = call(&server, FixtureTool::WithLogging, json!({})).await;
    let logs = drain(&mut outgoing);
    let data: Vec<&Value> = logs.iter().map(|line| &line["params"]["data"]).collect();
    assert_eq!(
        data,
        [
            &json!("Tool execution started"),
            &json!("Tool processing data"),
            &json!("Tool execution completed")
        ]
    );
    let _ = request(&server, "logging/setLevel", &json!({ "level": "warning" }));
    let _ = drain(&mut outgoing);
    let _ = call(&server, FixtureTool::WithLogging, json!({})).await;
    assert!(
        drain(&mut outgoing).is_empty(),
        "info logs passed a warning level"
    );

    let token = json!(17);
    let result = conformance::call(&server, FixtureTool::WithProgress, None, Some(&token)).await;
    assert!(result.is_ok());
    let progress: Vec<(Value, Value)> = drain(&mut outgoing)
        .into_iter()
        .map(|line| {
            (
                line["params"]["progressToken"].clone(),
                line["params"]["progress"].clone(),
            )
        })
        .collect();
    assert_eq!(
        progress,
        [
            (json!(17), json!(0)),
            (json!(17), json!(50)),
            (json!(17), json!(100))
        ]
    );
    let _ = conformance::call(&server, FixtureTool::WithProgress, None, None).await;
    assert!(
        drain(&mut outgoing).is_empty(),
        "progress sent without a token"
    );
}

/// Runs a tool that asks the client, answers its request with `reply`, and returns the result.
async fn round_trip(
    server: &Arc<Server>,
    outgoing: &mut mpsc::UnboundedReceiver<Outgoing>,
    tool: FixtureTool,
    arguments: Value,
    reply: Result<Value, Value>,
) -> (Value, Value) {
    let running = {
        let server = Arc::clone(server);
        tokio::spawn(async move { call(&server, tool, arguments).await })
    };
    // The tool runs in a task of its own: wait, bounded, for the request it sends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let asked = loop {
        if let Some(line) = drain(outgoing).into_iter().next() {
            break line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{tool:?} never asked the client"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let id = asked["id"].to_string();
    server.resolve_client_reply(&id, reply);
    let result = running.await.unwrap_or_default();
    (asked, result)
}

#[tokio::test]
async fn sampling_and_elicitation_round_trip_through_the_client() {
    let (server, mut outgoing) = server(true);
    let refused = call(&server, FixtureTool::Sampling, json!({ "prompt": "hi" })).await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|error| error.contains("sampling"))
    );
    let _ = initialize(&server, &json!({ "sampling": {}, "elicitation": {} }));

    let answer = json!({ "role": "assistant", "model": "m", "content": { "type": "text", "text": "hello" } });
    let (asked, result) = round_trip(
        &server,
        &mut outgoing,
        FixtureTool::Sampling,
        json!({ "prompt": "hi" }),
        Ok(answer),
    )
    .await;
    assert_eq!(asked["method"], "sampling/createMessage");
    assert_eq!(asked["params"]["messages"][0]["content"]["text"], "hi");
    assert_eq!(result["content"][0]["text"], "LLM response: hello");

    let accepted = json!({ "action": "accept", "content": { "username": "u", "email": "e@x" } });
    let message = json!({ "message": "Who are you?" });
    let (asked, result) = round_trip(
        &server,
        &mut outgoing,
        FixtureTool::Elicitation,
        message.clone(),
        Ok(accepted),
    )
    .await;
    assert_eq!(asked["method"], "elicitation/create");
    assert_eq!(
        asked["params"]["requestedSchema"]["required"],
        json!(["username", "email"])
    );
    assert_eq!(
        result["content"][0]["text"],
        r#"User response: action=accept, content={"username":"u","email":"e@x"}"#
    );
    let declined = Ok(json!({ "action": "decline" }));
    let (_, result) = round_trip(
        &server,
        &mut outgoing,
        FixtureTool::Elicitation,
        message.clone(),
        declined,
    )
    .await;
    assert_eq!(
        result["content"][0]["text"],
        "User response: action=decline, content={}"
    );
    let malformed = Ok(json!({ "action": "accept" }));
    let (_, result) = round_trip(
        &server,
        &mut outgoing,
        FixtureTool::Elicitation,
        message.clone(),
        malformed,
    )
    .await;
    assert_eq!(result["isError"], true);
    let failed = Err(json!({ "code": -32600, "message": "user closed the dialog" }));
    let (_, result) = round_trip(
        &server,
        &mut outgoing,
        FixtureTool::Elicitation,
        message,
        failed,
    )
    .await;
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|error| error.contains("user closed the dialog"))
    );

    let empty = Ok(json!({ "action": "cancel" }));
    let (asked, _) = round_trip(
        &server,
        &mut outgoing,
        FixtureTool::ElicitationDefaults,
        json!({}),
        empty,
    )
    .await;
    let fields = &asked["params"]["requestedSchema"]["properties"];
    assert_eq!(fields["score"]["default"], 95.5);
    assert_eq!(fields["status"]["default"], "active");
    let empty = Ok(json!({ "action": "cancel" }));
    let (asked, _) = round_trip(
        &server,
        &mut outgoing,
        FixtureTool::ElicitationEnums,
        json!({}),
        empty,
    )
    .await;
    let fields = &asked["params"]["requestedSchema"]["properties"];
    assert_eq!(
        fields["titledSingle"]["oneOf"][2],
        json!({ "const": "value3", "title": "Third Option" })
    );
    assert_eq!(
        fields["legacyEnum"]["enumNames"].as_array().map(Vec::len),
        Some(3)
    );
}

fn write_call(name: &str, arguments: Value) -> CallParams {
    CallParams {
        name: name.to_owned(),
        arguments: arguments.as_object().cloned(),
        meta: None,
    }
}

#[tokio::test]
async fn subscribers_hear_about_writes_until_they_unsubscribe() {
    let (server, mut outgoing) = server(true);
    let unknown = request(
        &server,
        "resources/subscribe",
        &json!({ "uri": "demo://nope" }),
    );
    assert_eq!(unknown["error"]["code"], -32002);
    for uri in [
        "demo://tasks/2",
        "demo://metrics/today",
        "test://watched-resource",
    ] {
        let subscribed = request(&server, "resources/subscribe", &json!({ "uri": uri }));
        assert_eq!(subscribed["result"], json!({}), "{uri}");
    }
    let _ = tools::dispatch(&server, &write_call("complete_task", json!({ "id": 2 }))).await;
    let updated: Vec<Value> = drain(&mut outgoing)
        .into_iter()
        .map(|line| line["params"]["uri"].clone())
        .collect();
    assert_eq!(
        updated,
        [json!("demo://metrics/today"), json!("demo://tasks/2")]
    );

    // Reads change nothing, and a write to another task leaves demo://tasks/2 alone.
    let _ = tools::dispatch(&server, &write_call("get_tasks", json!({}))).await;
    let _ = tools::dispatch(&server, &write_call("create_task", json!({ "title": "t" }))).await;
    let updated: Vec<Value> = drain(&mut outgoing)
        .into_iter()
        .map(|line| line["params"]["uri"].clone())
        .collect();
    assert_eq!(updated, [json!("demo://metrics/today")]);

    let _ = request(
        &server,
        "resources/unsubscribe",
        &json!({ "uri": "demo://metrics/today" }),
    );
    let _ = tools::dispatch(&server, &write_call("complete_task", json!({ "id": 6 }))).await;
    assert!(drain(&mut outgoing).is_empty());
}

#[tokio::test]
async fn the_run_loop_serves_fixture_calls_in_tasks() {
    let (input, server_input) = duplex(64 * 1024);
    let (server_output, output) = duplex(64 * 1024);
    let options = DemoOptions {
        conformance_fixtures: true,
        ..DemoOptions::default()
    };
    let running = tokio::spawn(super::run_on(
        BufReader::new(server_input),
        server_output,
        options,
    ));
    let mut input = Some(input);
    let mut lines = BufReader::new(output).lines();
    let mut send = async |message: Value| {
        if let Some(input) = input.as_mut() {
            let written = input.write_all(format!("{message}\n").as_bytes()).await;
            assert!(written.is_ok(), "write failed: {written:?}");
        }
    };
    send(
        json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "test_tool_with_progress", "_meta": { "progressToken": "p" } } }),
    )
    .await;
    // A fast call overtakes the slow one: fixture calls never hold up the reader.
    send(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "test_simple_text" } }))
        .await;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
        let Ok(Ok(Some(line))) = line else {
            panic!("the server stopped answering after {seen:?}");
        };
        let message: Value = serde_json::from_str(&line).unwrap_or_default();
        seen.push(
            message["id"]
                .as_i64()
                .map_or_else(|| message["method"].to_string(), |id| id.to_string()),
        );
    }
    assert_eq!(seen[0], "\"notifications/progress\"");
    assert_eq!(seen.iter().position(|id| id == "2"), Some(1));
    assert_eq!(seen[4], "1");
    drop(input.take());
    let ended = tokio::time::timeout(Duration::from_secs(5), running).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "run_on did not end cleanly: {ended:?}"
    );
}

#[test]
fn the_flag_is_documented_in_the_help() {
    use clap::{Args, Command};
    let mut command = DemoOptions::augment_args(Command::new("demo-server"));
    let help = command.render_long_help().to_string();
    assert!(help.contains("--conformance-fixtures"), "{help}");
    assert!(help.contains("exclusive = true"), "{help}");
}
