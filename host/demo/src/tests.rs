//! End-to-end tests of the run loop over in-memory pipes: framing, inline answers, concurrent
//! calls, cancellation, requests to the client and shutdown on end of input.

use std::io;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, duplex};
use tokio::task::JoinHandle;

use super::{DemoOptions, run_on};

/// A client talking to `run_on` over two in-memory pipes.
struct Client {
    input: Option<DuplexStream>,
    output: Lines<BufReader<DuplexStream>>,
    server: JoinHandle<io::Result<()>>,
}

impl Client {
    fn start(options: DemoOptions) -> Self {
        let (input, server_input) = duplex(64 * 1024);
        let (server_output, output) = duplex(64 * 1024);
        let server = tokio::spawn(run_on(BufReader::new(server_input), server_output, options));
        Self {
            input: Some(input),
            output: BufReader::new(output).lines(),
            server,
        }
    }

    async fn send_raw(&mut self, line: &str) {
        let Some(input) = self.input.as_mut() else {
            panic!("input already closed");
        };
        let written = input.write_all(format!("{line}\n").as_bytes()).await;
        assert!(written.is_ok(), "write failed: {written:?}");
    }

    async fn send(&mut self, message: Value) {
        self.send_raw(&message.to_string()).await;
    }

    /// The next line from the server, or `None` at end of output.
    async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(Duration::from_secs(5), self.output.next_line()).await;
        match line {
            Ok(Ok(Some(line))) => match serde_json::from_str(&line) {
                Ok(value) => Some(value),
                Err(error) => panic!("server wrote a non-JSON line {line:?}: {error}"),
            },
            Ok(Ok(None)) => None,
            Ok(Err(error)) => panic!("read failed: {error}"),
            Err(_) => panic!("no line from the server within 5s"),
        }
    }

    async fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        self.next().await.unwrap_or_default()
    }

    async fn call(&mut self, id: Value, tool: &str, arguments: Value) -> Value {
        self.request(
            id,
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await
    }

    /// Closes the server's stdin and returns what `run_on` returned.
    async fn close(&mut self) -> io::Result<()> {
        self.input = None;
        match tokio::time::timeout(Duration::from_secs(5), &mut self.server).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => Err(io::Error::other(join_error)),
            Err(_) => Err(io::Error::other(
                "run_on did not end within 5s of end of input",
            )),
        }
    }
}

fn test_options() -> DemoOptions {
    DemoOptions {
        test_tools: true,
        ..DemoOptions::default()
    }
}

#[tokio::test]
async fn serves_a_session_from_initialize_to_end_of_input() {
    let mut client = Client::start(test_options());

    let init = client
        .request(
            json!(1),
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": { "name": "test", "version": "0" }
            }),
        )
        .await;
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "mcp-bridge-demo");
    assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true);
    client
        .send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
        .await;

    let list = client
        .request(json!("list"), "tools/list", json!({ "cursor": "x" }))
        .await;
    assert_eq!(list["id"], "list");
    assert_eq!(list["result"]["tools"].as_array().map(Vec::len), Some(15));

    let metrics = client.call(json!(2), "get_today_metrics", json!({})).await;
    assert_eq!(metrics["result"]["structuredContent"]["total_tasks"], 5);

    // A slow call that gets cancelled must never be answered, and must not block others.
    client
        .send(json!({
            "jsonrpc": "2.0", "id": "slow", "method": "tools/call",
            "params": { "name": "debug_sleep", "arguments": { "ms": 60_000 } }
        }))
        .await;
    let clients = client.call(json!(3), "get_clients", json!({})).await;
    assert_eq!(clients["id"], 3);
    client
        .send(json!({
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": { "requestId": "slow", "reason": "test" }
        }))
        .await;
    let stats = client.call(json!(4), "debug_stats", json!({})).await;
    assert_eq!(stats["id"], 4);
    let stats = &stats["result"]["structuredContent"];
    assert_eq!(stats["cancelled"], 1);
    assert_eq!(stats["aborted"], 1);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["calls_by_tool"]["debug_sleep"], 1);

    assert!(client.close().await.is_ok());
    assert_eq!(client.next().await, None, "the cancelled call was answered");
}

#[tokio::test]
async fn answers_bad_input_with_json_rpc_errors() {
    let mut client = Client::start(DemoOptions::default());
    client.send_raw("{this is not json").await;
    let parse_error = client.next().await.unwrap_or_default();
    assert_eq!(parse_error["id"], Value::Null);
    assert_eq!(parse_error["error"]["code"], -32700);

    client.send_raw("   ").await;
    let unknown = client.request(json!(7), "does/not/exist", json!({})).await;
    assert_eq!(unknown["id"], 7);
    assert_eq!(unknown["error"]["code"], -32601);
    assert!(
        unknown["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("does/not/exist"))
    );

    let tool = client.call(json!(8), "nope", json!({})).await;
    assert_eq!(tool["error"]["code"], -32602);
    assert_eq!(tool["error"]["message"], "unknown tool: nope");

    // Ids are echoed exactly as sent, including a float's spelling.
    client
        .send_raw(r#"{"jsonrpc":"2.0","id":1.50,"method":"ping"}"#)
        .await;
    let Some(Ok(line)) = client.output.next_line().await.transpose() else {
        panic!("no answer to ping");
    };
    assert_eq!(line, r#"{"jsonrpc":"2.0","id":1.50,"result":{}}"#);
    assert!(client.close().await.is_ok());
}

#[tokio::test]
async fn finishes_running_calls_after_end_of_input() {
    let mut client = Client::start(test_options());
    client
        .send(json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": "debug_sleep", "arguments": { "ms": 50 } }
        }))
        .await;
    assert!(client.close().await.is_ok());
    let answer = client.next().await.unwrap_or_default();
    assert_eq!(answer["result"]["structuredContent"]["slept_ms"], 50);
    assert_eq!(client.next().await, None);
}

#[tokio::test]
async fn sampling_round_trips_through_the_client() {
    let mut client = Client::start(test_options());
    client
        .send(json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": "debug_sample", "arguments": { "prompt": "hello?" } }
        }))
        .await;
    let request = client.next().await.unwrap_or_default();
    assert_eq!(request["method"], "sampling/createMessage");
    assert_eq!(request["id"], "demo-s-1");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"],
        "hello?"
    );
    assert_eq!(request["params"]["maxTokens"], 100);
    client
        .send(json!({
            "jsonrpc": "2.0", "id": "demo-s-1",
            "result": { "role": "assistant", "model": "m", "content": { "type": "text", "text": "hi!" } }
        }))
        .await;
    let answer = client.next().await.unwrap_or_default();
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["structuredContent"]["reply"], "hi!");
    assert!(client.close().await.is_ok());
}

/// `params._meta` reaches `debug_meta` whole, exactly as the line carried it (whether the call
/// is answered inline or in a task of its own); a `_meta` that is not an object is refused.
#[tokio::test]
async fn debug_meta_reports_params_meta_as_received() {
    let meta_text = r#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"vendor=1","dev.mcp-bridge/caller":{"principal":"alice","roles":["admin","dev"]},"nested":{"big":12345678901234567890123,"list":[1.50,null]}}"#;
    for latency in [Duration::ZERO, Duration::from_millis(5)] {
        let mut client = Client::start(DemoOptions {
            latency,
            ..test_options()
        });
        client
            .send_raw(&format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"debug_meta","_meta":{meta_text}}}}}"#
            ))
            .await;
        let answer = client.next().await.unwrap_or_default();
        let result = &answer["result"];
        assert!(result.get("isError").is_none(), "{answer}");
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        assert_eq!(
            text,
            format!(r#"{{"pid":{},"meta":{meta_text}}}"#, std::process::id())
        );
        assert_eq!(
            serde_json::from_str::<Value>(text).ok().as_ref(),
            Some(&result["structuredContent"])
        );

        let bare = client.call(json!(2), "debug_meta", json!({})).await;
        assert_eq!(
            bare["result"]["structuredContent"],
            json!({ "pid": std::process::id(), "meta": null })
        );
        let not_an_object = client
            .request(
                json!(3),
                "tools/call",
                json!({ "name": "debug_meta", "_meta": [1] }),
            )
            .await;
        assert_eq!(not_an_object["error"]["code"], -32602, "{not_an_object}");
        assert!(client.close().await.is_ok());
    }
}

/// Without `--state-file` each server has its own task store: a task created through one is
/// not listed by another (as two demo processes never share tasks).
#[tokio::test]
async fn in_memory_task_stores_are_not_shared() {
    let mut first = Client::start(DemoOptions::default());
    let mut second = Client::start(DemoOptions::default());
    let created = first
        .call(json!(1), "create_task", json!({ "title": "Only here" }))
        .await;
    assert_eq!(
        created["result"]["structuredContent"]["task"],
        json!({ "id": 6, "title": "Only here", "status": "active", "points": 1, "client_id": null })
    );
    let titles = |answer: &Value| -> Vec<String> {
        answer["result"]["structuredContent"]["tasks"]
            .as_array()
            .map(|tasks| {
                tasks
                    .iter()
                    .filter_map(|task| task["title"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let here = first.call(json!(2), "get_tasks", json!({})).await;
    assert!(
        titles(&here).iter().any(|title| title == "Only here"),
        "{here}"
    );
    let there = second
        .call(json!(2), "get_tasks", json!({ "status": "all" }))
        .await;
    assert!(
        !titles(&there).iter().any(|title| title == "Only here"),
        "{there}"
    );
    assert_eq!(titles(&there).len(), 5);
    for client in [&mut first, &mut second] {
        assert!(client.close().await.is_ok());
    }
}

#[tokio::test]
async fn latency_delays_calls_but_not_pings() {
    let options = DemoOptions {
        latency: Duration::from_millis(200),
        ..DemoOptions::default()
    };
    let mut client = Client::start(options);
    client
        .send(json!({
            "jsonrpc": "2.0", "id": "call", "method": "tools/call",
            "params": { "name": "get_habits" }
        }))
        .await;
    let ping = client.request(json!("ping"), "ping", json!({})).await;
    assert_eq!(ping["id"], "ping");
    let call = client.next().await.unwrap_or_default();
    assert_eq!(call["id"], "call");
    assert_eq!(
        call["result"]["structuredContent"]["habits"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    assert!(client.close().await.is_ok());
}

#[tokio::test]
async fn fail_rate_one_fails_every_call_without_side_effects() {
    let options = DemoOptions {
        fail_rate: 1.0,
        ..DemoOptions::default()
    };
    let mut client = Client::start(options);
    let failed = client
        .call(json!(1), "create_task", json!({ "title": "x" }))
        .await;
    assert_eq!(failed["error"]["code"], -32603);
    let resource = client
        .request(
            json!(2),
            "resources/read",
            json!({ "uri": "demo://metrics/today" }),
        )
        .await;
    let text = resource["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default();
    let metrics: Value = serde_json::from_str(text).unwrap_or_default();
    assert_eq!(metrics["total_tasks"], 5);
    assert!(client.close().await.is_ok());
}

/// The duration flags take the bridge's one duration grammar, in which a bare number is
/// seconds (`--latency 5` is five seconds, as `latency = 5` is in a config file).
#[test]
fn parses_durations_and_rates() {
    use super::parse_fail_rate;
    use clap::{Args, Command, FromArgMatches};
    let latency = |value: &str| -> Result<Duration, clap::Error> {
        let command = DemoOptions::augment_args(Command::new("demo-server"));
        let matches = command.try_get_matches_from(["demo-server", "--latency", value])?;
        DemoOptions::from_arg_matches(&matches).map(|options| options.latency)
    };
    assert_eq!(latency("5ms").ok(), Some(Duration::from_millis(5)));
    assert_eq!(latency("0").ok(), Some(Duration::ZERO));
    assert_eq!(latency("1s 500ms").ok(), Some(Duration::from_millis(1500)));
    assert_eq!(latency("5").ok(), Some(Duration::from_secs(5)));
    assert!(latency("soon").is_err());
    assert_eq!(parse_fail_rate("0.25"), Ok(0.25));
    assert!(parse_fail_rate("1.5").is_err());
    assert!(parse_fail_rate("NaN").is_err());
}

#[test]
fn options_have_useful_help() {
    use clap::{Args, Command};
    let mut command = DemoOptions::augment_args(Command::new("demo-server"));
    let help = command.render_long_help().to_string();
    for flag in [
        "--latency",
        "--jitter",
        "--fail-rate",
        "--crash-after",
        "--calls-log",
        "--test-tools",
        "--name",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
    let parsed =
        command.try_get_matches_from(["demo-server", "--latency", "5ms", "--crash-after", "0"]);
    assert!(parsed.is_err(), "--crash-after 0 must be refused");
}

#[tokio::test]
async fn calls_log_gets_one_line_per_call_received() {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("cannot create a temporary directory");
    };
    let path = dir.path().join("calls.log");
    let options = DemoOptions {
        calls_log: Some(path.clone()),
        ..DemoOptions::default()
    };
    let mut client = Client::start(options);
    let _ = client.call(json!(1), "get_tasks", json!({})).await;
    let _ = client.call(json!(2), "no_such_tool", json!({})).await;
    let _ = client.request(json!(3), "ping", json!({})).await;
    assert!(client.close().await.is_ok());
    let log = std::fs::read_to_string(&path).unwrap_or_default();
    let pid = std::process::id();
    assert_eq!(log, format!("{pid} get_tasks\n{pid} no_such_tool\n"));
}

/// Two servers naming one `--state-file` act as one: a write through either is read through
/// the other (tools and resources alike), ids continue across them, and the reads are
/// byte-identical to those of one in-memory server given the same writes.
#[tokio::test]
async fn servers_sharing_a_state_file_see_each_others_writes() {
    let dir = tempfile::tempdir().ok();
    let path = dir.as_ref().map(|dir| dir.path().join("state.json"));
    let shared = DemoOptions {
        state_file: path.clone(),
        ..DemoOptions::default()
    };
    let mut first = Client::start(shared.clone());
    let mut second = Client::start(shared);
    let mut memory = Client::start(DemoOptions::default());

    let writes = [
        (
            "create_task",
            json!({ "title": "Shared", "client_id": "acme", "points": 3 }),
        ),
        ("complete_task", json!({ "id": 6 })),
        ("create_task", json!({ "title": "Second" })),
        ("update_task", json!({ "id": 7, "client_id": "globex" })),
    ];
    // Alternate the writes between the two shared servers; each sees the other's.
    for (step, (tool, arguments)) in writes.iter().enumerate() {
        let writer = if step % 2 == 0 {
            &mut first
        } else {
            &mut second
        };
        let shared_answer = writer.call(json!(step), tool, arguments.clone()).await;
        let memory_answer = memory.call(json!(step), tool, arguments.clone()).await;
        assert_eq!(shared_answer, memory_answer, "{tool} {arguments}");
        assert!(
            shared_answer["result"].get("isError").is_none(),
            "{shared_answer}"
        );
    }
    let reads = [
        ("get_tasks", json!({ "status": "all" })),
        ("get_today_metrics", json!({})),
    ];
    for (tool, arguments) in reads {
        let through_first = first.call(json!("r1"), tool, arguments.clone()).await;
        let through_second = second.call(json!("r1"), tool, arguments.clone()).await;
        let in_memory = memory.call(json!("r1"), tool, arguments).await;
        assert_eq!(through_first.to_string(), in_memory.to_string());
        assert_eq!(through_second.to_string(), in_memory.to_string());
    }
    let metrics = second
        .call(json!("m"), "get_today_metrics", json!({}))
        .await;
    assert_eq!(metrics["result"]["structuredContent"]["total_tasks"], 7);
    let resource = first
        .request(
            json!("res"),
            "resources/read",
            json!({ "uri": "demo://tasks/7" }),
        )
        .await;
    let text = resource["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("\"client_id\":\"globex\""), "{resource}");

    for client in [&mut first, &mut second, &mut memory] {
        assert!(client.close().await.is_ok());
    }
}

/// A state file that holds something else fails each call with an internal error naming
/// the file; it is never silently replaced by the seed state.
#[tokio::test]
async fn a_corrupt_state_file_fails_calls_without_overwriting_it() {
    let dir = tempfile::tempdir().ok();
    let path = dir.as_ref().map(|dir| dir.path().join("state.json"));
    if let Some(path) = &path {
        assert!(std::fs::write(path, "{\"not\":\"a state\"}").is_ok());
    }
    let mut client = Client::start(DemoOptions {
        state_file: path.clone(),
        ..DemoOptions::default()
    });
    let answer = client
        .call(json!(1), "create_task", json!({ "title": "x" }))
        .await;
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("state.json"), "{message}");
    let kept = path.and_then(|path| std::fs::read_to_string(path).ok());
    assert_eq!(kept.as_deref(), Some("{\"not\":\"a state\"}"));
    assert!(client.close().await.is_ok());
}
