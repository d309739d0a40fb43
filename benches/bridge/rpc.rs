//! The JSON-RPC messages the bench sends and the checks it applies to the answers.
//!
//! The stdio client and the HTTP client share these, so both paths do the same client-side work
//! per call (encode one request, parse one JSON answer, check it) and the difference between
//! them is the bridge.

use std::io::Write as _;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

/// The protocol version the bench asks for, on stdio and over HTTP.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// The demo server's tool every measured call invokes: a read-only tool with a small result.
pub const TOOL: &str = "get_today_metrics";

/// The `initialize` request, serialized.
pub fn initialize(id: u64) -> Result<Vec<u8>> {
    let request = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "mcp-bridge-bench", "version": env!("CARGO_PKG_VERSION") },
        },
    });
    serde_json::to_vec(&request).context("serialize initialize")
}

/// The `notifications/initialized` notification, serialized.
pub const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// Writes `tools/call` requests for one tool with empty arguments; only the id changes per call,
/// so the rest of the message is serialized once.
#[derive(Clone)]
pub struct CallEncoder {
    suffix: Vec<u8>,
}

impl CallEncoder {
    pub fn new(tool: &str) -> Result<Self> {
        let name = serde_json::to_string(tool).context("serialize the tool name")?;
        let suffix =
            format!(r#","method":"tools/call","params":{{"name":{name},"arguments":{{}}}}}}"#);
        Ok(Self {
            suffix: suffix.into_bytes(),
        })
    }

    /// Appends the request with this id to `out`.
    pub fn encode(&self, id: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{id}");
        out.extend_from_slice(&self.suffix);
    }
}

/// Checks that a `tools/call` answer is a successful result (and, when given, carries the
/// request's id). The error text says what was wrong, for the report.
pub fn check_call_result(response: &Value, expected_id: Option<u64>) -> Result<(), String> {
    if let Some(expected) = expected_id
        && response.get("id").and_then(Value::as_u64) != Some(expected)
    {
        return Err(format!(
            "answer has id {:?}, expected {expected}",
            response.get("id")
        ));
    }
    if let Some(error) = response.get("error") {
        return Err(format!("JSON-RPC error: {error}"));
    }
    let Some(result) = response.get("result") else {
        return Err(format!("answer has neither result nor error: {response}"));
    };
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return Err(format!("tool reported an error: {result}"));
    }
    Ok(())
}
