//! The MCP conformance suite's fixture surface (`--conformance-fixtures`): the tools, resources,
//! prompts, subscriptions and completions that `@modelcontextprotocol/conformance` expects of the
//! server it tests, added to the demo server's own surface so the suite can run through the
//! bridge against a real stdio server.
//!
//! Nothing here changes the demo server when the flag is off: every hook returns early. The
//! fixtures behave for real rather than answering the suite's exact requests: progress goes to
//! the request's own token, log lines honour `logging/setLevel`, sampling and elicitation are
//! real round trips to the client (refused when the client did not declare the capability),
//! and subscriptions produce `notifications/resources/updated` when the store changes. The
//! tools live here; resources, prompts and completions live in `conformance_content`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tracing::debug;

use super::catalog::Tool;
use super::conformance_content as content;
use super::conformance_media::{PNG_MIME, WAV_MIME, png_base64, wav_base64};
use super::debug::reply_text;
use super::extras;
use super::protocol::{self, RpcError, parse_params};
use super::server::{CallGuard, LogLevel, Server};
use super::tools::{Args, CallParams, ToolError};

/// Per-process fixture state: the URIs clients subscribed to.
#[derive(Debug, Default)]
pub(crate) struct Fixtures {
    subscriptions: Mutex<BTreeSet<String>>,
}

/// A fixture tool's failure, answered as a result with `isError: true`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FixtureError {
    /// An argument is missing or has the wrong type.
    #[error(transparent)]
    Argument(#[from] ToolError),
    /// An argument the tool's schema does not allow (`additionalProperties: false`).
    #[error("unexpected argument `{0}`")]
    Unexpected(String),
    /// What `test_error_handling` exists to return.
    #[error("This tool intentionally returns an error for testing")]
    Intentional,
    /// The client's `initialize` did not declare the capability the tool needs.
    #[error("the client does not support {0}: it did not declare the capability")]
    Unsupported(&'static str),
    /// The client answered the server's request with a JSON-RPC error.
    #[error("the client answered {method} with an error: {message}")]
    Client {
        method: &'static str,
        message: String,
    },
    /// The client answered with a result of the wrong shape.
    #[error("the client's {method} result is malformed: {reason}")]
    Malformed {
        method: &'static str,
        reason: &'static str,
    },
    /// Input closed before the client answered.
    #[error("the client never answered {0}")]
    NoAnswer(&'static str),
}

/// The conformance suite's fixture tools, in `tools/list` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FixtureTool {
    SimpleText,
    Image,
    Audio,
    EmbeddedResource,
    MultipleContentTypes,
    WithLogging,
    WithProgress,
    ErrorHandling,
    Sampling,
    Elicitation,
    ElicitationDefaults,
    ElicitationEnums,
    JsonSchema2020,
}

impl FixtureTool {
    const ALL: [FixtureTool; 13] = [
        FixtureTool::SimpleText,
        FixtureTool::Image,
        FixtureTool::Audio,
        FixtureTool::EmbeddedResource,
        FixtureTool::MultipleContentTypes,
        FixtureTool::WithLogging,
        FixtureTool::WithProgress,
        FixtureTool::ErrorHandling,
        FixtureTool::Sampling,
        FixtureTool::Elicitation,
        FixtureTool::ElicitationDefaults,
        FixtureTool::ElicitationEnums,
        FixtureTool::JsonSchema2020,
    ];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FixtureTool::SimpleText => "test_simple_text",
            FixtureTool::Image => "test_image_content",
            FixtureTool::Audio => "test_audio_content",
            FixtureTool::EmbeddedResource => "test_embedded_resource",
            FixtureTool::MultipleContentTypes => "test_multiple_content_types",
            FixtureTool::WithLogging => "test_tool_with_logging",
            FixtureTool::WithProgress => "test_tool_with_progress",
            FixtureTool::ErrorHandling => "test_error_handling",
            FixtureTool::Sampling => "test_sampling",
            FixtureTool::Elicitation => "test_elicitation",
            FixtureTool::ElicitationDefaults => "test_elicitation_sep1034_defaults",
            FixtureTool::ElicitationEnums => "test_elicitation_sep1330_enums",
            FixtureTool::JsonSchema2020 => "json_schema_2020_12_tool",
        }
    }

    fn from_name(name: &str) -> Option<FixtureTool> {
        Self::ALL.into_iter().find(|tool| tool.name() == name)
    }

    /// The tool's entry in `tools/list`, annotated like the demo's own tools: the ones that
    /// only return content are read-only; the ones that ask the client are open-world writes,
    /// since their answer depends on a person or a model.
    fn definition(self) -> Value {
        let no_args = json!({ "type": "object", "properties": {} });
        let string_arg = |name: &str, description: &str| {
            json!({
                "type": "object",
                "properties": { name: { "type": "string", "description": description } },
                "required": [name],
            })
        };
        let (title, description, schema) = match self {
            FixtureTool::SimpleText => ("Simple text", "Returns one text block.", no_args),
            FixtureTool::Image => ("Image content", "Returns a 1x1 red PNG.", no_args),
            FixtureTool::Audio => (
                "Audio content",
                "Returns 50 ms of a 440 Hz tone as WAV.",
                no_args,
            ),
            FixtureTool::EmbeddedResource => (
                "Embedded resource",
                "Returns the resource test://static-text embedded in the result.",
                no_args,
            ),
            FixtureTool::MultipleContentTypes => (
                "Multiple content types",
                "Returns text, an image and an embedded JSON resource.",
                no_args,
            ),
            FixtureTool::WithLogging => (
                "Tool with logging",
                "Sends three info log messages 50 ms apart while it runs.",
                no_args,
            ),
            FixtureTool::WithProgress => (
                "Tool with progress",
                "Reports progress 0, 50 and 100 of 100, 50 ms apart, when the request carries a \
                 progressToken.",
                no_args,
            ),
            FixtureTool::ErrorHandling => (
                "Error handling",
                "Always fails with a tool error (isError: true).",
                no_args,
            ),
            FixtureTool::Sampling => (
                "Sampling",
                "Asks the client's model (sampling/createMessage) and returns its reply.",
                string_arg("prompt", "The prompt to send to the LLM"),
            ),
            FixtureTool::Elicitation => (
                "Elicitation",
                "Asks the user for a username and email (elicitation/create).",
                string_arg("message", "The message to show the user"),
            ),
            FixtureTool::ElicitationDefaults => (
                "Elicitation with defaults (SEP-1034)",
                "Asks the user for a form whose every primitive field has a default.",
                no_args,
            ),
            FixtureTool::ElicitationEnums => (
                "Elicitation with enums (SEP-1330)",
                "Asks the user for a form with all five enum field styles.",
                no_args,
            ),
            FixtureTool::JsonSchema2020 => (
                "JSON Schema 2020-12",
                "Echoes its arguments; its input schema uses $schema, $defs and \
                 additionalProperties (SEP-1613).",
                json_schema_2020_12(),
            ),
        };
        let asks_client = matches!(
            self,
            FixtureTool::Sampling
                | FixtureTool::Elicitation
                | FixtureTool::ElicitationDefaults
                | FixtureTool::ElicitationEnums
        );
        let annotations = if asks_client {
            json!({ "title": title, "readOnlyHint": false, "destructiveHint": false,
                    "idempotentHint": false, "openWorldHint": true })
        } else {
            json!({ "title": title, "readOnlyHint": true, "idempotentHint": true,
                    "openWorldHint": false })
        };
        json!({
            "name": self.name(),
            "title": title,
            "description": description,
            "inputSchema": schema,
            "annotations": annotations,
        })
    }
}

fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" }
        },
        "additionalProperties": false
    })
}

/// Appends the fixture tools to a serialized `tools/list` result (done once, at start-up).
pub(crate) fn with_fixture_tools(tools_list: &str) -> String {
    let mut list: Value = serde_json::from_str(tools_list).unwrap_or_else(|_| json!({}));
    append(
        &mut list,
        "tools",
        FixtureTool::ALL.map(FixtureTool::definition).into(),
    );
    list.to_string()
}

fn append(list: &mut Value, key: &str, extra: Vec<Value>) {
    match list.get_mut(key).and_then(Value::as_array_mut) {
        Some(items) => items.extend(extra),
        None => list[key] = Value::Array(extra),
    }
}

/// The fixture tool called `name`, when the fixtures are offered.
pub(crate) fn fixture_tool(server: &Server, name: &str) -> Option<FixtureTool> {
    server
        .options()
        .conformance_fixtures
        .then(|| FixtureTool::from_name(name))
        .flatten()
}

/// Adds what the fixtures need to the `initialize` result's capabilities: completions and
/// resource subscriptions.
pub(crate) fn extend_capabilities(server: &Server, result: &mut Value) {
    if !server.options().conformance_fixtures {
        return;
    }
    let capabilities = &mut result["capabilities"];
    capabilities["completions"] = json!({});
    capabilities["resources"]["subscribe"] = json!(true);
}

#[derive(Deserialize)]
struct UriParams {
    uri: String,
}

#[derive(Deserialize)]
struct GetPromptParams {
    name: String,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
}

/// Answers the methods the fixtures add or extend; `None` hands the request on to the demo's
/// own handlers (always, when the fixtures are off).
pub(crate) fn handle(
    server: &Server,
    method: &str,
    params: Option<&RawValue>,
) -> Option<Result<String, RpcError>> {
    if !server.options().conformance_fixtures {
        return None;
    }
    let outcome = match method {
        "resources/list" => {
            let mut list = extras::resources_list();
            append(&mut list, "resources", content::resources());
            Ok(list)
        }
        "resources/templates/list" => {
            let mut list = extras::resource_templates_list();
            append(
                &mut list,
                "resourceTemplates",
                content::resource_templates(),
            );
            Ok(list)
        }
        "prompts/list" => {
            let mut list = extras::prompts_list();
            append(&mut list, "prompts", content::prompts());
            Ok(list)
        }
        "resources/read" => match parse_params::<UriParams>(params) {
            Ok(read) => content::read(&read.uri)?,
            Err(error) => Err(error),
        },
        "prompts/get" => match parse_params::<GetPromptParams>(params) {
            Ok(get) => {
                let arguments = get.arguments.unwrap_or_default();
                content::get_prompt(server, &get.name, &arguments)?
            }
            Err(error) => Err(error),
        },
        "resources/subscribe" => parse_params::<UriParams>(params).and_then(|subscribe| {
            // Only what the server can read can change, so only that can be watched.
            content::read_any(server, &subscribe.uri)?;
            debug!(uri = subscribe.uri, "client subscribed to a resource");
            server.fixtures().subscriptions.lock().insert(subscribe.uri);
            Ok(json!({}))
        }),
        "resources/unsubscribe" => parse_params::<UriParams>(params).map(|unsubscribe| {
            // Unsubscribing from something not subscribed is already the wanted state.
            server
                .fixtures()
                .subscriptions
                .lock()
                .remove(&unsubscribe.uri);
            json!({})
        }),
        "completion/complete" => {
            parse_params::<Value>(params).and_then(|params| content::complete(server, &params))
        }
        _ => return None,
    };
    Some(outcome.map(|result| result.to_string()))
}

/// After a seed tool succeeded against the store: sends `notifications/resources/updated` for
/// each subscribed demo resource a write may have changed. `payload` is the tool's result.
pub(crate) fn after_store_call(server: &Server, tool: Tool, payload: &str) {
    if !server.options().conformance_fixtures
        || !matches!(
            tool,
            Tool::CreateTask | Tool::UpdateTask | Tool::CompleteTask
        )
    {
        return;
    }
    let subscriptions = server.fixtures().subscriptions.lock();
    if subscriptions.is_empty() {
        return;
    }
    let task_id = serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|written| written["task"]["id"].as_u64());
    for uri in content::changed_by_write(task_id) {
        if subscriptions.contains(&uri) {
            server.notify("notifications/resources/updated", &json!({ "uri": uri }));
        }
    }
}

/// The body of one fixture call's task: latency, `--fail-rate`, the tool, then the answer.
pub(crate) async fn serve_call(
    guard: CallGuard,
    id: Box<str>,
    tool: FixtureTool,
    params: CallParams,
    delay: Duration,
) {
    let server = Arc::clone(guard.server());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let line = if server.roll_failure() {
        protocol::error_line(Some(&id), &RpcError::InjectedFailure)
    } else {
        let arguments = params.arguments.as_ref();
        let outcome = call(&server, tool, arguments, params.progress_token()).await;
        protocol::result_line(&id, &result_json(outcome).to_string())
    };
    // As for the demo's own tools: leave the in-flight set before answering.
    drop(guard);
    server.send(line);
}

/// The `CallToolResult` for an outcome: the content, or the error text with `isError: true`.
fn result_json(outcome: Result<Value, FixtureError>) -> Value {
    outcome.unwrap_or_else(|error| {
        json!({ "content": [{ "type": "text", "text": error.to_string() }], "isError": true })
    })
}

fn text(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}

fn embedded(uri: &str) -> Value {
    let contents = content::read(uri).and_then(Result::ok).unwrap_or_default();
    json!({ "type": "resource", "resource": contents["contents"][0] })
}

/// Runs a fixture tool and returns its `CallToolResult`.
pub(crate) async fn call(
    server: &Server,
    tool: FixtureTool,
    arguments: Option<&Map<String, Value>>,
    progress_token: Option<&Value>,
) -> Result<Value, FixtureError> {
    let args = Args::new(arguments);
    let image = json!({ "type": "image", "data": png_base64(), "mimeType": PNG_MIME });
    let content = match tool {
        FixtureTool::SimpleText => vec![text("This is a simple text response for testing.")],
        FixtureTool::Image => vec![image],
        FixtureTool::Audio => {
            vec![json!({ "type": "audio", "data": wav_base64(), "mimeType": WAV_MIME })]
        }
        FixtureTool::EmbeddedResource => vec![embedded("test://static-text")],
        FixtureTool::MultipleContentTypes => vec![
            text("Multiple content types test:"),
            image,
            embedded("test://template/mixed/data"),
        ],
        FixtureTool::WithLogging => {
            let steps = [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed",
            ];
            for (index, step) in steps.into_iter().enumerate() {
                if index > 0 {
                    tokio::time::sleep(STEP_DELAY).await;
                }
                server.log_to_client(LogLevel::Info, &json!(step));
            }
            vec![text("Tool with logging executed successfully")]
        }
        FixtureTool::WithProgress => {
            for (index, progress) in [0, 50, 100].into_iter().enumerate() {
                if index > 0 {
                    tokio::time::sleep(STEP_DELAY).await;
                }
                if let Some(token) = progress_token {
                    let params = json!({
                        "progressToken": token,
                        "progress": progress,
                        "total": 100,
                        "message": format!("Completed {progress} of 100"),
                    });
                    server.notify("notifications/progress", &params);
                }
            }
            let reported = if progress_token.is_some() {
                "Progress reported: 0, 50 and 100 of 100"
            } else {
                "Done (no progressToken, so no progress was reported)"
            };
            vec![text(reported)]
        }
        FixtureTool::ErrorHandling => return Err(FixtureError::Intentional),
        FixtureTool::Sampling => {
            let prompt = args.required_str("prompt")?;
            if !server.client_can_sample() {
                return Err(FixtureError::Unsupported("sampling"));
            }
            let params = json!({
                "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
                "maxTokens": 100,
            });
            let result = ask_client(server, "sampling/createMessage", &params).await?;
            vec![text(&format!("LLM response: {}", reply_text(&result)))]
        }
        FixtureTool::Elicitation => {
            let message = args.required_str("message")?;
            let schema = json!({
                "type": "object",
                "properties": {
                    "username": { "type": "string", "description": "User's response" },
                    "email": { "type": "string", "description": "User's email address" }
                },
                "required": ["username", "email"]
            });
            let (action, answer) = elicit(server, message, schema).await?;
            vec![text(&format!(
                "User response: action={action}, content={answer}"
            ))]
        }
        FixtureTool::ElicitationDefaults | FixtureTool::ElicitationEnums => {
            let (message, schema) = if tool == FixtureTool::ElicitationDefaults {
                (
                    "Please review the form; every field has a default",
                    defaults_form(),
                )
            } else {
                ("Please choose from the enum fields", enums_form())
            };
            let (action, answer) = elicit(server, message, schema).await?;
            vec![text(&format!(
                "Elicitation completed: action={action}, content={answer}"
            ))]
        }
        FixtureTool::JsonSchema2020 => {
            let received = check_2020_12_arguments(arguments)?;
            vec![text(&format!(
                "JSON Schema 2020-12 tool called with: {received}"
            ))]
        }
    };
    Ok(json!({ "content": content }))
}

/// The pause between the steps of the logging and progress tools.
const STEP_DELAY: Duration = Duration::from_millis(50);

/// Sends a request to the client and waits for its answer (the `debug_sample` pattern).
async fn ask_client(
    server: &Server,
    method: &'static str,
    params: &Value,
) -> Result<Value, FixtureError> {
    let (pending, reply) = server.start_client_request();
    server.send(protocol::request_line(pending.id(), method, params));
    let answer = reply.await;
    drop(pending);
    match answer {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(error)) => Err(FixtureError::Client {
            method,
            message: error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned),
        }),
        Err(_) => Err(FixtureError::NoAnswer(method)),
    }
}

/// Runs `elicitation/create` and returns the action and the content (`{}` unless accepted).
async fn elicit(
    server: &Server,
    message: &str,
    requested_schema: Value,
) -> Result<(String, Value), FixtureError> {
    if !server.client_can_elicit() {
        return Err(FixtureError::Unsupported("elicitation"));
    }
    let params = json!({ "message": message, "requestedSchema": requested_schema });
    let result = ask_client(server, "elicitation/create", &params).await?;
    let malformed = |reason| FixtureError::Malformed {
        method: "elicitation/create",
        reason,
    };
    let action = match result.get("action").and_then(Value::as_str) {
        Some(action @ ("accept" | "decline" | "cancel")) => action.to_owned(),
        Some(_) => return Err(malformed("action is not accept, decline or cancel")),
        None => return Err(malformed("no action")),
    };
    let answer = match result.get("content") {
        Some(answer @ Value::Object(_)) if action == "accept" => answer.clone(),
        None | Some(Value::Null) if action != "accept" => json!({}),
        Some(_) if action != "accept" => return Err(malformed("content sent without accept")),
        _ => return Err(malformed("accept without a content object")),
    };
    Ok((action, answer))
}

/// SEP-1034: a default for every primitive type.
fn defaults_form() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true }
        },
        "required": []
    })
}

/// SEP-1330: the five enum styles, single and multi select, titled and not.
fn enums_form() -> Value {
    let titled = |titles: [&str; 3]| {
        let options: Vec<Value> = titles
            .iter()
            .enumerate()
            .map(|(index, title)| json!({ "const": format!("value{}", index + 1), "title": title }))
            .collect();
        Value::Array(options)
    };
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": titled(["First Option", "Second Option", "Third Option"])
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": { "anyOf": titled(["First Choice", "Second Choice", "Third Choice"]) }
            }
        },
        "required": []
    })
}

/// Checks arguments against `json_schema_2020_12_tool`'s schema and returns them as received.
fn check_2020_12_arguments(arguments: Option<&Map<String, Value>>) -> Result<Value, FixtureError> {
    let received = arguments.cloned().unwrap_or_default();
    Args::new(Some(&received)).str("name")?;
    for (key, value) in &received {
        match key.as_str() {
            "name" => {}
            "address" => {
                let Value::Object(address) = value else {
                    return Err(super::tools::invalid("address", "an object", value).into());
                };
                for (field, part) in address {
                    if !matches!(field.as_str(), "street" | "city") {
                        return Err(FixtureError::Unexpected(format!("address.{field}")));
                    }
                    if !part.is_string() {
                        return Err(super::tools::invalid(
                            "address",
                            "street and city strings",
                            part,
                        )
                        .into());
                    }
                }
            }
            other => return Err(FixtureError::Unexpected(other.to_owned())),
        }
    }
    Ok(Value::Object(received))
}
