//! JSON-RPC 2.0 message helpers shared by the front and the backend.
//!
//! Messages stay `serde_json::Value`s end to end: the bridge forwards what it does not
//! need to understand unchanged (fidelity first), so it only ever looks at `id`,
//! `method` and a few well-known `params` fields.

use serde_json::{Map, Value, json};

/// Error codes the bridge emits. The standard ones come from JSON-RPC 2.0; the
/// implementation-defined ones (-32000..-32099) match the official MCP SDKs where
/// those define one (connection closed, request timeout).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// 2026-07-28: an MCP header disagrees with the body, or a required one is missing.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the request's protocol version is not one the server speaks.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// The client cancelled the request (LSP's code, which MCP SDKs reuse).
    pub const REQUEST_CANCELLED: i64 = -32800;
    /// The backend process went away while the call was in flight.
    pub const CONNECTION_CLOSED: i64 = -32000;
    /// The backend did not answer within `request_timeout`.
    pub const REQUEST_TIMEOUT: i64 = -32001;
    /// Every process is busy and the wait queue is full or the wait timed out.
    pub const POOL_EXHAUSTED: i64 = -32010;
    /// The server cannot be reached at all (spawn failing, shutting down).
    pub const SERVER_UNAVAILABLE: i64 = -32011;
    /// Every session slot is taken by a session with calls in flight (`http.max_sessions`).
    pub const TOO_MANY_SESSIONS: i64 = -32030;
    /// The session's own in-flight cap stayed full for the wait bound
    /// (`http.max_inflight_per_session`).
    pub const SESSION_BUSY: i64 = -32031;
    /// The caller's access rules do not allow what the request asks for (`[access]`).
    pub const ACCESS_DENIED: i64 = -32040;
    /// The caller exceeded a rate limit or in-flight cap (`[limits]`); `data` says when to
    /// retry.
    pub const RATE_LIMITED: i64 = -32041;
}

/// What a decoded JSON-RPC message is, judged by the members it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// Classifies a message, or `None` when it is not a JSON-RPC 2.0 object at all.
pub fn classify(message: &Value) -> Option<Kind> {
    let object = message.as_object()?;
    let has_method = object.get("method").is_some_and(Value::is_string);
    let has_id = object.contains_key("id");
    match (has_method, has_id) {
        (true, true) => Some(Kind::Request),
        (true, false) => Some(Kind::Notification),
        (false, true) if object.contains_key("result") || object.contains_key("error") => {
            Some(Kind::Response)
        }
        _ => None,
    }
}

/// Classifies a message from a client, which must say `"jsonrpc": "2.0"`. (Backends
/// are classified leniently with [`classify`]: a server that omits the member is still
/// understood, fidelity first.)
pub fn classify_strict(message: &Value) -> Option<Kind> {
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return None;
    }
    classify(message)
}

/// Why a request's `id` is not one MCP allows. MCP narrows JSON-RPC's ids to strings
/// and integers; anything else is refused before the request is looked at, and the
/// refusal carries id `null` (JSON-RPC: the id could not be determined).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the request id is {found}; MCP request ids must be a string or an integer (such as \"req-1\" or 42, with no fraction or exponent)"
)]
pub struct InvalidId {
    /// What was sent, in words: "an object", "a boolean", "null", ...
    pub found: &'static str,
}

/// Checks the `id` of a request: a string, or a number written as an integer. Integers
/// of any size are allowed; they travel as the text they arrived as (serde_json's
/// `arbitrary_precision`), so the client gets back exactly what it sent.
pub fn check_request_id(message: &Value) -> Result<(), InvalidId> {
    let Some(id) = message.get("id") else {
        return Ok(());
    };
    let found = match id {
        Value::String(_) => return Ok(()),
        Value::Number(number) if is_integer_text(number.as_str()) => return Ok(()),
        Value::Number(_) => "a number with a fraction or exponent",
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Err(InvalidId { found })
}

/// Whether a JSON number's text is an integer: an optional minus sign and digits only.
pub fn is_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
}

/// The `method` of a request or notification.
pub fn method(message: &Value) -> Option<&str> {
    message.get("method").and_then(Value::as_str)
}

/// Builds an error response. `data` carries machine-readable detail for clients.
pub fn error_response(
    id: Value,
    code: i64,
    message: impl Into<String>,
    data: Option<Value>,
) -> Value {
    let mut error = Map::new();
    error.insert("code".into(), json!(code));
    error.insert("message".into(), Value::String(message.into()));
    if let Some(data) = data {
        error.insert("data".into(), data);
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": Value::Object(error) })
}

/// Builds a success response.
pub fn result_response(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// Builds a notification.
pub fn notification(method: &str, params: Option<Value>) -> Value {
    match params {
        Some(params) => json!({ "jsonrpc": "2.0", "method": method, "params": params }),
        None => json!({ "jsonrpc": "2.0", "method": method }),
    }
}

/// The `params._meta.progressToken` of a request, if the caller asked for progress.
pub fn progress_token(message: &Value) -> Option<&Value> {
    message.get("params")?.get("_meta")?.get("progressToken")
}

/// Replaces `params._meta.progressToken` in place, returning the previous token.
pub fn replace_progress_token(message: &mut Value, token: Value) -> Option<Value> {
    let slot = message
        .get_mut("params")?
        .get_mut("_meta")?
        .get_mut("progressToken")?;
    Some(std::mem::replace(slot, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_kind() {
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","id":1,"method":"ping"})),
            Some(Kind::Request)
        );
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","method":"x"})),
            Some(Kind::Notification)
        );
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","id":1,"result":{}})),
            Some(Kind::Response)
        );
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","id":1,"error":{}})),
            Some(Kind::Response)
        );
        assert_eq!(classify(&json!({"jsonrpc":"2.0","id":1})), None);
        assert_eq!(classify(&json!([1, 2])), None);
        assert_eq!(classify(&json!({"method": 3})), None);
        assert_eq!(
            classify_strict(&json!({"jsonrpc":"1.0","id":1,"method":"ping"})),
            None
        );
        assert_eq!(classify_strict(&json!({"id":1,"method":"ping"})), None);
        assert_eq!(
            classify_strict(&json!({"jsonrpc":"2.0","id":1,"method":"ping"})),
            Some(Kind::Request)
        );
    }

    #[test]
    fn request_ids_are_strings_or_integers_only() {
        let id = |text: &str| -> Value {
            let request = format!(r#"{{"jsonrpc":"2.0","id":{text},"method":"ping"}}"#);
            serde_json::from_str(&request).unwrap_or_default()
        };
        for good in [
            r#""a""#,
            "0",
            "-7",
            "18446744073709551617",
            "-99999999999999999999",
        ] {
            assert_eq!(check_request_id(&id(good)), Ok(()), "{good}");
        }
        for (bad, found) in [
            (r#"{"a":1}"#, "an object"),
            ("[1]", "an array"),
            ("true", "a boolean"),
            ("null", "null"),
            ("1.5", "a number with a fraction or exponent"),
            ("1.0", "a number with a fraction or exponent"),
            ("1e3", "a number with a fraction or exponent"),
        ] {
            assert_eq!(
                check_request_id(&id(bad)),
                Err(InvalidId { found }),
                "{bad}"
            );
        }
        assert_eq!(check_request_id(&json!({"method": "x"})), Ok(()));
    }

    #[test]
    fn large_integer_ids_serialize_as_they_arrived() {
        let text = r#"{"jsonrpc":"2.0","id":18446744073709551617,"method":"ping"}"#;
        let request: Value = serde_json::from_str(text).unwrap_or_default();
        let id = request.get("id").cloned().unwrap_or_default();
        let response = result_response(id, json!({}));
        assert_eq!(
            serde_json::to_string(&response).unwrap_or_default(),
            r#"{"jsonrpc":"2.0","id":18446744073709551617,"result":{}}"#
        );
    }

    #[test]
    fn progress_token_is_replaced_in_place() {
        let mut message =
            json!({"id":1,"method":"tools/call","params":{"_meta":{"progressToken":"abc"}}});
        assert_eq!(
            replace_progress_token(&mut message, json!(7)),
            Some(json!("abc"))
        );
        assert_eq!(progress_token(&message), Some(&json!(7)));
        let mut without = json!({"id":1,"method":"tools/call","params":{}});
        assert_eq!(replace_progress_token(&mut without, json!(7)), None);
    }
}
