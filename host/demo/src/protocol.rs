//! JSON-RPC 2.0 framing for the demo server: parsing incoming lines, building outgoing lines, and
//! answering the cheap non-tool methods (initialize, ping, tools/list, logging/setLevel, ...).
//!
//! Outgoing lines are assembled as text around already-serialized JSON so that a request id is
//! echoed byte for byte as the client sent it and a result is serialized exactly once.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tracing::{debug, info, warn};

use super::server::{LogLevel, Server};
use super::{conformance, extras};

/// Protocol versions the demo server speaks, oldest first.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The version offered when the client asks for one the server does not know.
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

const INSTRUCTIONS: &str = "Demo task-management server for mcp-bridge tests and benchmarks. \
Read tools (get_tasks, get_clients, get_habits, get_today_metrics) have no side effects; \
write tools (create_task, update_task, complete_task) change what later reads return. \
Results are deterministic: the same writes always produce the same reads.";

/// An error answered as a JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum RpcError {
    /// The line is not valid JSON.
    #[error("parse error: {0}")]
    Parse(String),
    /// The line is JSON but not a JSON-RPC message.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The method is not one the server implements.
    #[error("method not found: {0}")]
    MethodNotFound(String),
    /// The params do not have the shape the method needs.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// `tools/call` named a tool the server does not offer.
    #[error("unknown tool: {0}")]
    UnknownTool(String),
    /// `prompts/get` named a prompt the server does not offer.
    #[error("unknown prompt: {0}")]
    UnknownPrompt(String),
    /// `resources/read` named a URI the server does not serve.
    #[error("resource not found: {0}")]
    ResourceNotFound(String),
    /// The call was failed on purpose by `--fail-rate`.
    #[error("internal error: injected failure (--fail-rate)")]
    InjectedFailure,
    /// The state shared through `--state-file` could not be used.
    #[error("internal error: {0}")]
    StateFile(String),
}

impl From<super::state_file::StateFileError> for RpcError {
    fn from(error: super::state_file::StateFileError) -> Self {
        Self::StateFile(error.to_string())
    }
}

impl RpcError {
    /// The JSON-RPC error code for this error.
    pub(crate) fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => -32700,
            Self::InvalidRequest(_) => -32600,
            Self::MethodNotFound(_) => -32601,
            Self::InvalidParams(_) | Self::UnknownTool(_) | Self::UnknownPrompt(_) => -32602,
            Self::ResourceNotFound(_) => -32002,
            Self::InjectedFailure | Self::StateFile(_) => -32603,
        }
    }

    fn data(&self) -> Option<Value> {
        match self {
            Self::MethodNotFound(method) => Some(json!({ "method": method })),
            Self::UnknownTool(name) => Some(json!({ "tool": name })),
            Self::ResourceNotFound(uri) => Some(json!({ "uri": uri })),
            _ => None,
        }
    }
}

/// One incoming message, borrowing from the line it was parsed from.
#[derive(Debug)]
pub(crate) enum Message<'a> {
    /// A request expecting an answer; `id` is the raw JSON text of the id.
    Request {
        id: &'a str,
        method: String,
        params: Option<&'a RawValue>,
    },
    /// A notification; it never gets an answer.
    Notification {
        method: String,
        params: Option<&'a RawValue>,
    },
    /// The client's answer to a request the server sent (sampling).
    Response {
        id: &'a str,
        result: Option<&'a RawValue>,
        error: Option<&'a RawValue>,
    },
}

/// A line that could not be understood, with the id to answer to if one could be read.
#[derive(Debug)]
pub(crate) struct ParseFailure {
    /// The raw id, when the line was an object carrying a valid id.
    pub id: Option<String>,
    /// What was wrong.
    pub error: RpcError,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// Parses one line (without its newline) into a message.
pub(crate) fn parse_message(line: &[u8]) -> Result<Message<'_>, ParseFailure> {
    let envelope: Envelope<'_> = serde_json::from_slice(line).map_err(|error| {
        // Syntax errors are -32700; well-formed JSON of the wrong shape is -32600.
        let error = match error.classify() {
            serde_json::error::Category::Data => RpcError::InvalidRequest(error.to_string()),
            _ => RpcError::Parse(error.to_string()),
        };
        ParseFailure { id: None, error }
    })?;
    let id = match envelope.id {
        None => None,
        Some(raw) if is_valid_id(raw.get()) => Some(raw.get()),
        Some(_) => {
            return Err(ParseFailure {
                id: None,
                error: RpcError::InvalidRequest("id must be a string or a number".into()),
            });
        }
    };
    match (id, envelope.method) {
        (Some(id), Some(method)) => Ok(Message::Request {
            id,
            method,
            params: envelope.params,
        }),
        (None, Some(method)) => Ok(Message::Notification {
            method,
            params: envelope.params,
        }),
        (Some(id), None) if envelope.result.is_some() || envelope.error.is_some() => {
            Ok(Message::Response {
                id,
                result: envelope.result,
                error: envelope.error,
            })
        }
        (id, None) => Err(ParseFailure {
            id: id.map(str::to_owned),
            error: RpcError::InvalidRequest(
                "a message needs a method, or an id with a result or error".into(),
            ),
        }),
    }
}

fn is_valid_id(raw: &str) -> bool {
    raw.starts_with('"') || raw.starts_with('-') || raw.starts_with(|c: char| c.is_ascii_digit())
}

/// Deserializes params, treating absent params as an empty object so that required fields
/// produce a clear "missing field" error.
pub(crate) fn parse_params<T: DeserializeOwned>(params: Option<&RawValue>) -> Result<T, RpcError> {
    let text = params.map_or("{}", RawValue::get);
    serde_json::from_str(text).map_err(|error| RpcError::InvalidParams(error.to_string()))
}

/// Escapes text as a JSON string literal.
pub(crate) fn json_string(text: &str) -> String {
    // Serializing a str cannot fail; the fallback only exists to avoid a panic path.
    serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\""))
}

/// A success response line (with its newline) around an already-serialized result.
pub(crate) fn result_line(id: &str, result: &str) -> String {
    let mut line = String::with_capacity(36 + id.len() + result.len());
    line.push_str(r#"{"jsonrpc":"2.0","id":"#);
    line.push_str(id);
    line.push_str(r#","result":"#);
    line.push_str(result);
    line.push_str("}\n");
    line
}

/// An error response line (with its newline); `id` is `None` when the request's id is unknown.
pub(crate) fn error_line(id: Option<&str>, error: &RpcError) -> String {
    let mut object = Map::new();
    object.insert("code".into(), error.code().into());
    object.insert("message".into(), error.to_string().into());
    if let Some(data) = error.data() {
        object.insert("data".into(), data);
    }
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{}}}\n",
        id.unwrap_or("null"),
        Value::Object(object)
    )
}

/// A notification line (with its newline).
pub(crate) fn notification_line(method: &str, params: &Value) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":{},\"params\":{}}}\n",
        json_string(method),
        params
    )
}

/// A request line (with its newline) for a request the server sends to the client.
pub(crate) fn request_line(id: &str, method: &str, params: &Value) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":{},\"params\":{}}}\n",
        json_string(id),
        json_string(method),
        params
    )
}

/// Answers a request other than `tools/call` and returns the response line.
pub(crate) fn handle_request(
    server: &Server,
    id: &str,
    method: &str,
    params: Option<&RawValue>,
) -> String {
    if !server.is_initialized() && method != "initialize" && method != "ping" {
        warn!(
            method,
            "request received before initialize; answering anyway"
        );
    }
    let outcome = match method {
        "initialize" => initialize(server, params),
        "ping" => Ok(String::from("{}")),
        // There is a single page of tools, so a cursor is accepted and ignored.
        "tools/list" => Ok(server.tools_list_json().to_owned()),
        "logging/setLevel" => set_level(server, params),
        // The conformance fixtures (when offered) answer first: they extend the demo's lists and
        // hand every request that is not theirs on to the demo's own handlers.
        _ => conformance::handle(server, method, params)
            .or_else(|| extras::handle(server, method, params))
            .unwrap_or_else(|| Err(RpcError::MethodNotFound(method.to_owned()))),
    };
    match outcome {
        Ok(result) => result_line(id, &result),
        Err(error) => error_line(Some(id), &error),
    }
}

/// Handles a notification from the client. Notifications are never answered.
pub(crate) fn handle_notification(server: &Server, method: &str, params: Option<&RawValue>) {
    match method {
        "notifications/initialized" => debug!("client finished initialization"),
        "notifications/cancelled" => match parse_params::<CancelledParams>(params) {
            Ok(cancelled) => {
                server.cancel(cancelled.request_id.get(), cancelled.reason.as_deref());
            }
            Err(error) => warn!(%error, "ignoring a malformed notifications/cancelled"),
        },
        _ => debug!(method, "ignoring notification"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelledParams {
    request_id: Box<RawValue>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct InitializeParams {
    #[serde(default)]
    protocol_version: Option<String>,
    #[serde(default)]
    capabilities: Option<Map<String, Value>>,
    #[serde(default)]
    client_info: Option<Value>,
}

/// Picks the client's version when the server speaks it, otherwise the newest one.
pub(crate) fn negotiate_version(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|wanted| {
            SUPPORTED_PROTOCOL_VERSIONS
                .iter()
                .find(|known| **known == wanted)
        })
        .copied()
        .unwrap_or(LATEST_PROTOCOL_VERSION)
}

fn initialize(server: &Server, params: Option<&RawValue>) -> Result<String, RpcError> {
    // Being lenient here keeps odd clients working: a missing or odd params object still gets
    // the newest version rather than an error.
    let params: InitializeParams = parse_params(params).unwrap_or_default();
    let version = negotiate_version(params.protocol_version.as_deref());
    let declares = |capability: &str| {
        params
            .capabilities
            .as_ref()
            .is_some_and(|capabilities| capabilities.contains_key(capability))
    };
    server.mark_initialized(declares("sampling"), declares("elicitation"));
    let client = params.client_info.unwrap_or_default();
    info!(
        requested = params.protocol_version.as_deref().unwrap_or("(none)"),
        negotiated = version,
        %client,
        "initialize"
    );
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": { "listChanged": true },
            "logging": {},
            "prompts": { "listChanged": false },
            "resources": { "subscribe": false, "listChanged": false },
        },
        "serverInfo": {
            "name": server.options().name,
            "version": env!("CARGO_PKG_VERSION"),
        },
        "instructions": INSTRUCTIONS,
    });
    conformance::extend_capabilities(server, &mut result);
    Ok(result.to_string())
}

#[derive(Deserialize)]
struct SetLevelParams {
    level: String,
}

fn set_level(server: &Server, params: Option<&RawValue>) -> Result<String, RpcError> {
    let params: SetLevelParams = parse_params(params)?;
    let level = LogLevel::parse(&params.level).ok_or_else(|| {
        RpcError::InvalidParams(format!(
            "unknown log level {:?} (expected one of debug, info, notice, warning, error, \
             critical, alert, emergency)",
            params.level
        ))
    })?;
    server.set_log_level(level);
    info!(level = params.level, "client set the log level");
    Ok(String::from("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let request = parse_message(br#"{"jsonrpc":"2.0","id":"a-1","method":"ping"}"#);
        assert!(matches!(
            request,
            Ok(Message::Request { id: "\"a-1\"", .. })
        ));
        let notification = parse_message(br#"{"jsonrpc":"2.0","method":"x"}"#);
        assert!(matches!(notification, Ok(Message::Notification { .. })));
        let response = parse_message(br#"{"jsonrpc":"2.0","id":"demo-s-1","result":{}}"#);
        assert!(matches!(response, Ok(Message::Response { .. })));
    }

    #[test]
    fn reports_bad_lines_with_the_right_codes() {
        let code = |line: &[u8]| {
            parse_message(line)
                .err()
                .map(|failure| failure.error.code())
        };
        assert_eq!(code(b"{not json"), Some(-32700));
        assert_eq!(code(b"[1,2]"), Some(-32600));
        assert_eq!(code(br#"{"id":{"x":1},"method":"ping"}"#), Some(-32600));
        let failure = parse_message(br#"{"id":7}"#).err();
        assert_eq!(failure.and_then(|f| f.id), Some("7".to_owned()));
    }

    #[test]
    fn echoes_ids_exactly() {
        let line = result_line("1.50", "{}");
        assert_eq!(line, "{\"jsonrpc\":\"2.0\",\"id\":1.50,\"result\":{}}\n");
        let error = error_line(None, &RpcError::MethodNotFound("nope".into()));
        let parsed: Value = serde_json::from_str(&error).unwrap_or_default();
        assert_eq!(parsed["id"], Value::Null);
        assert_eq!(parsed["error"]["code"], -32601);
        assert_eq!(parsed["error"]["data"]["method"], "nope");
    }

    #[test]
    fn negotiates_known_versions_only() {
        assert_eq!(negotiate_version(Some("2025-03-26")), "2025-03-26");
        assert_eq!(
            negotiate_version(Some("2099-01-01")),
            LATEST_PROTOCOL_VERSION
        );
        assert_eq!(negotiate_version(None), LATEST_PROTOCOL_VERSION);
    }
}
