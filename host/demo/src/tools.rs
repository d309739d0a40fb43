//! Tool calls: argument parsing, the handlers of the seed's task-management tools, result
//! encoding, and the per-call task that applies latency, failure injection and dispatch.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::catalog::Tool;
use super::protocol::{self, RpcError};
use super::server::{CallGuard, Server};
use super::state_file::Access;
use super::store::{Client, Habit, StatusFilter, Store, StoreError, Task, TaskStatus, TaskUpdate};
use super::{conformance, debug};

/// A tool-level failure: answered as a result with `isError: true`, never as a JSON-RPC error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ToolError {
    /// A required argument is absent (or null).
    #[error("missing required argument `{0}`")]
    Missing(&'static str),
    /// An argument has the wrong type or an out-of-range value.
    #[error("argument `{name}` must be {expected}, got {got}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
        got: String,
    },
    /// The store refused the operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The result could not be serialized (not expected to happen with the server's own types).
    #[error("could not encode the result: {0}")]
    Encode(#[from] serde_json::Error),
    /// A seed tool reached the test-tool handler; a bug in dispatch, reported rather than panicking.
    #[error("internal error: tool {0} was routed to the wrong handler")]
    Misrouted(&'static str),
}

/// What a tool produced: a serialized payload object, or a tool-level error.
pub(crate) type ToolReply = Result<String, ToolError>;

/// The serialized `CallToolResult` for a reply: the payload as compact JSON text plus
/// `structuredContent`, or the error text with `isError: true`.
pub(crate) fn result_json(reply: &ToolReply) -> String {
    match reply {
        Ok(payload) => {
            let text = protocol::json_string(payload);
            let mut out = String::with_capacity(64 + text.len() + payload.len());
            out.push_str(r#"{"content":[{"type":"text","text":"#);
            out.push_str(&text);
            out.push_str(r#"}],"structuredContent":"#);
            out.push_str(payload);
            out.push('}');
            out
        }
        Err(error) => json!({
            "content": [{ "type": "text", "text": error.to_string() }],
            "isError": true,
        })
        .to_string(),
    }
}

/// Serializes a payload object.
pub(crate) fn payload<T: Serialize>(value: &T) -> ToolReply {
    Ok(serde_json::to_string(value)?)
}

/// Typed access to a call's `arguments`, with errors that say which argument is wrong.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args<'a> {
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Args<'a> {
    /// Wraps the arguments object (absent arguments behave like `{}`).
    pub(crate) fn new(map: Option<&'a Map<String, Value>>) -> Self {
        Self { map }
    }

    /// The value of an argument; null counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Value> {
        self.map
            .and_then(|map| map.get(name))
            .filter(|value| !value.is_null())
    }

    /// Whether the argument is present with an explicit null.
    pub(crate) fn is_null(&self, name: &str) -> bool {
        self.map
            .and_then(|map| map.get(name))
            .is_some_and(Value::is_null)
    }

    /// An optional string argument.
    pub(crate) fn str(&self, name: &'static str) -> Result<Option<&'a str>, ToolError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(invalid(name, "a string", other)),
        }
    }

    /// A required string argument.
    pub(crate) fn required_str(&self, name: &'static str) -> Result<&'a str, ToolError> {
        self.str(name)?.ok_or(ToolError::Missing(name))
    }

    /// An optional non-negative integer argument.
    pub(crate) fn u64(&self, name: &'static str) -> Result<Option<u64>, ToolError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(name, "a non-negative integer", value)),
        }
    }

    /// A required non-negative integer argument.
    pub(crate) fn required_u64(&self, name: &'static str) -> Result<u64, ToolError> {
        self.u64(name)?.ok_or(ToolError::Missing(name))
    }

    /// An optional integer argument that must fit in a `u32`.
    pub(crate) fn u32(&self, name: &'static str) -> Result<Option<u32>, ToolError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|number| u32::try_from(number).ok())
                .map(Some)
                .ok_or_else(|| invalid(name, "an integer from 0 to 4294967295", value)),
        }
    }
}

/// Builds an `Invalid` error quoting (a bounded prefix of) the offending value.
pub(crate) fn invalid(name: &'static str, expected: &'static str, value: &Value) -> ToolError {
    const MAX_QUOTE: usize = 60;
    let mut got = value.to_string();
    if got.len() > MAX_QUOTE {
        let mut cut = MAX_QUOTE;
        while !got.is_char_boundary(cut) {
            cut -= 1;
        }
        got.truncate(cut);
        got.push_str("...");
    }
    ToolError::Invalid {
        name,
        expected,
        got,
    }
}

#[derive(Serialize)]
struct TasksPayload<'a> {
    tasks: Vec<&'a Task>,
}

#[derive(Serialize)]
struct TaskPayload<'a> {
    task: &'a Task,
}

#[derive(Serialize)]
struct ClientsPayload<'a> {
    clients: &'a [Client],
}

#[derive(Serialize)]
struct HabitsPayload<'a> {
    habits: &'a [Habit],
}

/// Runs one of the seed's tools against the store. Returns `None` for tools that need more than
/// the store (the test tools), which [`debug::call`] handles.
pub(crate) fn call_store_tool(store: &mut Store, tool: Tool, args: Args<'_>) -> Option<ToolReply> {
    Some(match tool {
        Tool::GetTasks => get_tasks(store, args),
        Tool::GetClients => payload(&ClientsPayload {
            clients: store.clients(),
        }),
        Tool::GetHabits => payload(&HabitsPayload {
            habits: store.habits(),
        }),
        Tool::GetTodayMetrics => payload(&store.metrics()),
        Tool::CreateTask => create_task(store, args),
        Tool::UpdateTask => update_task(store, args),
        Tool::CompleteTask => args
            .required_u64("id")
            .and_then(|id| task_payload(store.complete_task(id))),
        _ => return None,
    })
}

fn task_payload(task: Result<&Task, StoreError>) -> ToolReply {
    payload(&TaskPayload { task: task? })
}

fn get_tasks(store: &Store, args: Args<'_>) -> ToolReply {
    let filter = match args.str("status")? {
        None => StatusFilter::Active,
        Some(text) => StatusFilter::parse(text)
            .ok_or_else(|| invalid("status", "\"active\", \"done\" or \"all\"", &text.into()))?,
    };
    let limit = args
        .u64("limit")?
        .map(|limit| usize::try_from(limit).unwrap_or(usize::MAX));
    let tasks = store.tasks(filter, args.str("client_id")?, limit)?;
    payload(&TasksPayload { tasks })
}

fn create_task(store: &mut Store, args: Args<'_>) -> ToolReply {
    let title = args.required_str("title")?;
    let client_id = args.str("client_id")?;
    let points = args.u32("points")?.unwrap_or(1);
    task_payload(store.create_task(title, client_id, points))
}

fn update_task(store: &mut Store, args: Args<'_>) -> ToolReply {
    let id = args.required_u64("id")?;
    let status = match args.str("status")? {
        None => None,
        Some(text) => Some(
            TaskStatus::parse(text)
                .ok_or_else(|| invalid("status", "\"active\" or \"done\"", &text.into()))?,
        ),
    };
    let client_id = if args.is_null("client_id") {
        Some(None)
    } else {
        args.str("client_id")?.map(|id| Some(id.to_owned()))
    };
    let update = TaskUpdate {
        title: args.str("title")?.map(str::to_owned),
        status,
        points: args.u32("points")?,
        client_id,
    };
    task_payload(store.update_task(id, update))
}

/// The `tools/call` params the server reads.
#[derive(Debug, Deserialize)]
pub(crate) struct CallParams {
    /// The tool to call.
    pub name: String,
    /// The tool's arguments; absent or null means none.
    #[serde(default)]
    pub arguments: Option<Map<String, Value>>,
    /// The request's metadata (`params._meta`), kept whole as received: the server reads its
    /// progress token, and `debug_meta` reports all of it (a trace context, a bridge's
    /// caller identity). Absent or null means none; anything but an object is invalid params.
    #[serde(default, rename = "_meta")]
    pub meta: Option<Map<String, Value>>,
}

impl CallParams {
    /// The progress token, if the client sent one.
    pub(crate) fn progress_token(&self) -> Option<&Value> {
        self.meta
            .as_ref()
            .and_then(|meta| meta.get("progressToken"))
            .filter(|token| !token.is_null())
    }
}

/// Runs a call that never waits (a seed tool, an unknown tool, or an injected failure) right
/// away, with `--fail-rate` applied. Returns `None` for the test tools, which may wait and so
/// need a task of their own.
pub(crate) fn run_now(server: &Server, params: &CallParams) -> Option<Result<ToolReply, RpcError>> {
    let tool = server.resolve_tool(&params.name);
    if tool.is_some_and(Tool::is_test_only) {
        return None;
    }
    if server.roll_failure() {
        return Some(Err(RpcError::InjectedFailure));
    }
    let Some(tool) = tool else {
        return Some(Err(RpcError::UnknownTool(params.name.clone())));
    };
    // Only a shared state file takes a lighter lock for a read; the in-memory store has one
    // mutex either way, so its calls skip looking the tool's hints up.
    let access = if server.has_state_file() && tool.is_read_only() {
        Access::Read
    } else {
        Access::Write
    };
    let reply = match server.with_store(access, |store| {
        call_store_tool(store, tool, Args::new(params.arguments.as_ref()))
    }) {
        Ok(reply) => reply,
        Err(error) => return Some(Err(error.into())),
    };
    if let Some(Ok(payload)) = &reply {
        // Resource subscriptions (a conformance fixture) hear about writes; a no-op otherwise.
        conformance::after_store_call(server, tool, payload);
    }
    reply.map(Ok)
}

/// Resolves and runs one call, with `--fail-rate` applied (latency is the caller's business).
pub(crate) async fn dispatch(
    server: &Arc<Server>,
    params: &CallParams,
) -> Result<ToolReply, RpcError> {
    if let Some(outcome) = run_now(server, params) {
        return outcome;
    }
    if server.roll_failure() {
        return Err(RpcError::InjectedFailure);
    }
    let tool = server
        .resolve_tool(&params.name)
        .ok_or_else(|| RpcError::UnknownTool(params.name.clone()))?;
    Ok(debug::call(server, tool, params).await)
}

/// The response line for a call's outcome.
pub(crate) fn answer_line(id: &str, outcome: &Result<ToolReply, RpcError>) -> String {
    match outcome {
        Ok(reply) => protocol::result_line(id, &result_json(reply)),
        Err(error) => protocol::error_line(Some(id), error),
    }
}

/// The body of one call's task: the latency drawn for it, then dispatch, then the answer.
pub(crate) async fn serve_call(
    guard: CallGuard,
    id: Box<str>,
    params: CallParams,
    delay: Duration,
) {
    let server = Arc::clone(guard.server());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let line = answer_line(&id, &dispatch(&server, &params).await);
    // Leave the in-flight set before answering, so a client that reads this answer and then
    // asks debug_stats sees the call as finished.
    drop(guard);
    server.send(line);
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::DemoOptions;
    use crate::server::Outgoing;

    fn server(test_tools: bool) -> (Arc<Server>, mpsc::UnboundedReceiver<Outgoing>) {
        let (queue, outgoing) = mpsc::unbounded_channel();
        let options = DemoOptions {
            test_tools,
            ..DemoOptions::default()
        };
        let server = Server::new(options, queue).map(Arc::new);
        match server {
            Ok(server) => (server, outgoing),
            Err(error) => panic!("server setup failed: {error}"),
        }
    }

    fn params(name: &str, arguments: Value) -> CallParams {
        CallParams {
            name: name.to_owned(),
            arguments: arguments.as_object().cloned(),
            meta: None,
        }
    }

    /// Calls a tool and returns the parsed `CallToolResult`.
    async fn call(server: &Arc<Server>, name: &str, arguments: Value) -> Result<Value, RpcError> {
        let reply = dispatch(server, &params(name, arguments)).await?;
        Ok(serde_json::from_str(&result_json(&reply)).unwrap_or_default())
    }

    #[tokio::test]
    async fn writes_change_reads() {
        let (server, _outgoing) = server(false);
        let before = call(&server, "get_tasks", json!({})).await;
        let created = call(
            &server,
            "create_task",
            json!({ "title": "Ship it", "client_id": "acme", "points": 4 }),
        )
        .await;
        let created = created.unwrap_or_default();
        assert_eq!(created["structuredContent"]["task"]["id"], 6);
        assert_eq!(created["structuredContent"]["task"]["status"], "active");
        let after = call(&server, "get_tasks", json!({})).await;
        assert_ne!(before, after);
        let active = after.unwrap_or_default()["structuredContent"]["tasks"]
            .as_array()
            .map(Vec::len);
        assert_eq!(active, Some(4));

        let completed = call(&server, "complete_task", json!({ "id": 6 })).await;
        assert_eq!(
            completed.unwrap_or_default()["structuredContent"]["task"]["status"],
            "done"
        );
        let metrics = call(&server, "get_today_metrics", json!({}))
            .await
            .unwrap_or_default();
        assert_eq!(
            metrics["structuredContent"],
            json!({ "active_tasks": 3, "completed_tasks": 3, "total_tasks": 6, "points": 7 })
        );

        let updated = call(
            &server,
            "update_task",
            json!({ "id": 1, "title": "Final Q3 proposal", "client_id": null }),
        )
        .await;
        let task = &updated.unwrap_or_default()["structuredContent"]["task"];
        assert_eq!(task["title"], "Final Q3 proposal");
        assert_eq!(task["client_id"], Value::Null);
    }

    #[tokio::test]
    async fn text_content_mirrors_structured_content() {
        let (server, _outgoing) = server(false);
        let result = call(&server, "get_clients", json!({}))
            .await
            .unwrap_or_default();
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        let parsed: Value = serde_json::from_str(text).unwrap_or_default();
        assert_eq!(result["content"][0]["type"], "text");
        assert_eq!(parsed, result["structuredContent"]);
        assert_eq!(parsed["clients"].as_array().map(Vec::len), Some(3));
        assert!(result.get("isError").is_none());
    }

    #[tokio::test]
    async fn unknown_and_hidden_tools_are_protocol_errors() {
        let (server, _outgoing) = server(false);
        let unknown = call(&server, "launch_rockets", json!({})).await;
        assert_eq!(unknown, Err(RpcError::UnknownTool("launch_rockets".into())));
        let hidden = call(&server, "debug_stats", json!({})).await;
        assert_eq!(hidden.map_err(|error| error.code()), Err(-32602));
        let hidden_extra = call(&server, "extra_tool", json!({})).await;
        assert!(hidden_extra.is_err());
    }

    #[tokio::test]
    async fn bad_arguments_are_tool_errors_and_change_nothing() {
        let (server, _outgoing) = server(false);
        let before = call(&server, "get_tasks", json!({ "status": "all" })).await;
        let cases = [
            (
                "create_task",
                json!({}),
                "missing required argument `title`",
            ),
            (
                "create_task",
                json!({ "title": "" }),
                "title must not be empty",
            ),
            (
                "create_task",
                json!({ "title": "x", "points": -1 }),
                "argument `points`",
            ),
            (
                "create_task",
                json!({ "title": "x", "client_id": "umbrella" }),
                "no client",
            ),
            (
                "update_task",
                json!({ "id": "1" }),
                "argument `id` must be a non-negative integer",
            ),
            (
                "update_task",
                json!({ "id": 1, "status": "later" }),
                "argument `status`",
            ),
            ("complete_task", json!({ "id": 42 }), "no task with id 42"),
            (
                "get_tasks",
                json!({ "status": "someday" }),
                "argument `status`",
            ),
        ];
        for (tool, arguments, expected) in cases {
            let result = call(&server, tool, arguments.clone())
                .await
                .unwrap_or_default();
            assert_eq!(result["isError"], true, "{tool} {arguments}");
            let text = result["content"][0]["text"].as_str().unwrap_or_default();
            assert!(text.contains(expected), "{tool} {arguments}: {text}");
        }
        let after = call(&server, "get_tasks", json!({ "status": "all" })).await;
        assert_eq!(before, after);
    }

    #[tokio::test]
    async fn same_writes_give_byte_identical_reads() {
        let mut outputs = Vec::new();
        for _ in 0..2 {
            let (server, _outgoing) = server(false);
            let steps = [
                params(
                    "create_task",
                    json!({ "title": "A", "client_id": "globex" }),
                ),
                params(
                    "update_task",
                    json!({ "id": 2, "status": "active", "points": 9 }),
                ),
                params("complete_task", json!({ "id": 3 })),
                params("get_tasks", json!({ "status": "all" })),
                params("get_today_metrics", json!({})),
            ];
            let mut bytes = String::new();
            for step in &steps {
                let reply = dispatch(&server, step).await;
                bytes.push_str(&reply.map(|reply| result_json(&reply)).unwrap_or_default());
            }
            outputs.push(bytes);
        }
        assert_eq!(outputs[0], outputs[1]);
        assert!(!outputs[0].is_empty());
    }

    #[tokio::test]
    async fn toggle_adds_and_removes_extra_tool() {
        let (server, mut outgoing) = server(true);
        assert!(!server.tools_list_json().contains("extra_tool\""));
        let toggled = call(&server, "debug_toggle_tool", json!({}))
            .await
            .unwrap_or_default();
        assert_eq!(toggled["structuredContent"]["extra_tool"], true);
        assert!(server.tools_list_json().contains("\"extra_tool\""));
        let extra = call(&server, "extra_tool", json!({}))
            .await
            .unwrap_or_default();
        assert_eq!(extra["structuredContent"], json!({ "extra": true }));
        let notice = match outgoing.try_recv() {
            Ok(Outgoing::Line(line)) => line,
            other => panic!("expected a list_changed line, got {other:?}"),
        };
        assert!(notice.contains("notifications/tools/list_changed"));
        let _ = call(&server, "debug_toggle_tool", json!({})).await;
        assert!(call(&server, "extra_tool", json!({})).await.is_err());
    }

    /// A name no test environment sets.
    const UNSET: &str = "MCP_BRIDGE_DEMO_TEST_SURELY_UNSET_7C4A";

    #[tokio::test]
    async fn debug_env_reports_the_pid_and_named_variables() {
        let (server, _outgoing) = server(true);
        let result = call(
            &server,
            "debug_env",
            json!({ "names": ["PATH", UNSET, "PATH"] }),
        )
        .await
        .unwrap_or_default();
        assert!(result.get("isError").is_none(), "{result}");
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        let parsed: Value = serde_json::from_str(text).unwrap_or_default();
        assert_eq!(parsed, result["structuredContent"]);
        let path = std::env::var("PATH").ok();
        assert_eq!(
            parsed,
            json!({ "pid": std::process::id(), "env": { "PATH": path, UNSET: null } })
        );
        let none = call(&server, "debug_env", json!({ "names": [] }))
            .await
            .unwrap_or_default();
        assert_eq!(
            none["structuredContent"],
            json!({ "pid": std::process::id(), "env": {} })
        );
    }

    #[tokio::test]
    async fn debug_env_refuses_bad_names_as_tool_errors() {
        let (server, _outgoing) = server(true);
        let names = |count: usize| -> Vec<String> { (0..count).map(|n| format!("V{n}")).collect() };
        let at_cap = call(&server, "debug_env", json!({ "names": names(32) }))
            .await
            .unwrap_or_default();
        assert!(at_cap.get("isError").is_none(), "{at_cap}");
        let longest = "N".repeat(128);
        let long_ok = call(&server, "debug_env", json!({ "names": [longest] }))
            .await
            .unwrap_or_default();
        assert!(long_ok.get("isError").is_none(), "{long_ok}");
        let cases = [
            (json!({}), "missing required argument `names`"),
            (
                json!({ "names": "PATH" }),
                "argument `names` must be an array",
            ),
            (
                json!({ "names": names(33) }),
                "argument `names` must be an array of at most 32 variable names, got 33 names",
            ),
            (json!({ "names": ["N".repeat(129)] }), "1 to 128 characters"),
            (json!({ "names": [""] }), "1 to 128 characters"),
            (json!({ "names": ["A=B"] }), "without '='"),
            (json!({ "names": ["PATH", 7] }), "got 7"),
        ];
        for (arguments, expected) in cases {
            let result = call(&server, "debug_env", arguments.clone())
                .await
                .unwrap_or_default();
            assert_eq!(result["isError"], true, "{arguments}");
            let text = result["content"][0]["text"].as_str().unwrap_or_default();
            assert!(text.contains(expected), "{arguments}: {text}");
        }
    }

    #[tokio::test]
    async fn debug_meta_echoes_the_request_meta_or_null() {
        let (server, _outgoing) = server(true);
        let bare = call(&server, "debug_meta", json!({}))
            .await
            .unwrap_or_default();
        assert_eq!(
            bare["structuredContent"],
            json!({ "pid": std::process::id(), "meta": null })
        );
        let meta = json!({
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "dev.mcp-bridge/caller": { "principal": "alice", "roles": ["dev"] },
            "progressToken": 5,
        });
        let mut with_meta = params("debug_meta", json!({}));
        with_meta.meta = meta.as_object().cloned();
        let reply = dispatch(&server, &with_meta).await;
        let result: Value = reply
            .ok()
            .and_then(|reply| serde_json::from_str(&result_json(&reply)).ok())
            .unwrap_or_default();
        let text = result["content"][0]["text"].as_str().unwrap_or_default();
        let parsed: Value = serde_json::from_str(text).unwrap_or_default();
        assert_eq!(parsed, result["structuredContent"]);
        assert_eq!(parsed, json!({ "pid": std::process::id(), "meta": meta }));
    }

    #[tokio::test]
    async fn env_and_meta_tools_need_test_tools() {
        let (server, _outgoing) = server(false);
        for name in ["debug_env", "debug_meta"] {
            let hidden = call(&server, name, json!({ "names": [] })).await;
            assert_eq!(hidden, Err(RpcError::UnknownTool(name.into())));
        }
    }

    #[tokio::test]
    async fn progress_emits_one_notification_and_one_log_per_step() {
        let (server, mut outgoing) = server(true);
        let mut with_token = params("debug_progress", json!({ "steps": 2 }));
        with_token.meta = json!({ "progressToken": "tok" }).as_object().cloned();
        let reply = dispatch(&server, &with_token).await;
        assert!(matches!(reply, Ok(Ok(_))));
        let mut lines = Vec::new();
        while let Ok(Outgoing::Line(line)) = outgoing.try_recv() {
            lines.push(serde_json::from_str::<Value>(&line).unwrap_or_default());
        }
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["method"], "notifications/progress");
        assert_eq!(
            lines[0]["params"],
            json!({ "progressToken": "tok", "progress": 1, "total": 2, "message": "step 1 of 2" })
        );
        assert_eq!(
            lines[1]["params"],
            json!({ "level": "info", "logger": "demo", "data": "step 1" })
        );
        assert_eq!(lines[3]["params"]["data"], "step 2");
    }
}
