//! The SERVER span of each client request (`tools/call {tool}` once the server's catalog
//! lists the tool, otherwise the method), after the OpenTelemetry MCP conventions,
//! continuing the client's trace: the request's own `params._meta.traceparent` when
//! valid, else the HTTP `traceparent` header (the same precedence the context has on its
//! way to the backend). The router's spans for the call (policy, cache, pool, the backend
//! hop) are its children. Its `error.type` is recorded once, from the reply the client
//! gets, whoever made it (a refusal, the front, the backend, an input round).

use serde_json::Value;
use tracing::Span;

use mcp_bridge_jsonrpc as jsonrpc;
use mcp_bridge_telemetry::{self as telemetry, RequestFacts, TraceContext, attribute};

/// The longest tool name and request id put on a span; longer ones (a client can send
/// anything) are left out rather than exported.
const MAX_ATTRIBUTE_CHARS: usize = 256;

/// The span a request is handled in; disabled (and nothing read for it) when tracing is off.
pub(crate) fn request_span(
    message: &Value,
    session: Option<(&str, &str)>,
    stateless_version: Option<&str>,
    header_trace: Option<&TraceContext>,
) -> Span {
    if !telemetry::is_on() {
        return Span::none();
    }
    let method = jsonrpc::method(message).unwrap_or_default();
    let tool = match method {
        "tools/call" | "prompts/get" => message
            .pointer("/params/name")
            .and_then(Value::as_str)
            .filter(|name| name.len() <= MAX_ATTRIBUTE_CHARS),
        _ => None,
    };
    let request_id = match message.get("id") {
        Some(Value::String(id)) => Some(id.as_str()),
        Some(Value::Number(id)) => Some(id.as_str()),
        _ => None,
    }
    .filter(|id| id.len() <= MAX_ATTRIBUTE_CHARS);
    let span = telemetry::server_span(&RequestFacts {
        method,
        tool,
        request_id,
        session: session.map(|(id, _)| id),
        protocol_version: session.map(|(_, version)| version).or(stateless_version),
    });
    let parent = TraceContext::from_meta(message).or_else(|| header_trace.cloned());
    if let Some(parent) = parent {
        telemetry::set_remote_parent(&span, &parent);
    }
    span
}

/// Records what the cache did and the policy generation on the current request span,
/// once the forwarded call is answered.
pub(crate) fn record_outcome(cache_outcome: &str, generation: Option<u64>) {
    if !telemetry::is_on() {
        return;
    }
    let span = Span::current();
    telemetry::record_str(&span, attribute::CACHE_RESULT, cache_outcome);
    if let Some(generation) = generation {
        telemetry::record_generation(&span, generation);
    }
}

/// Names the current request span after the tool the router found the server lists.
pub(crate) fn name_after_tool(method: &str, listed_tool: Option<&str>) {
    if let Some(tool) = listed_tool
        && telemetry::is_on()
    {
        telemetry::name_after_tool(&Span::current(), method, tool);
    }
}

/// Marks `span` failed when `response`, the JSON-RPC answer the client gets, is an error
/// (`error.type` is its code) or a tool's error result (`tool_error`).
pub(crate) fn record_response(span: &Span, response: &Value) {
    if span.is_disabled() {
        return;
    }
    if let Some(code) = response.pointer("/error/code") {
        telemetry::record_error(span, &code.to_string());
    } else if response.pointer("/result/isError") == Some(&Value::Bool(true)) {
        telemetry::record_error(span, "tool_error");
    }
}

/// Marks `span` failed with the JSON-RPC `code` of a refusal answered as an HTTP error.
pub(crate) fn record_refusal(span: &Span, code: i64) {
    if !span.is_disabled() {
        telemetry::record_error(span, &code.to_string());
    }
}
