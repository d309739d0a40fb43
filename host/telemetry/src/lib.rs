//! The bridge's span vocabulary: which spans a call makes, their names and attributes after
//! the OpenTelemetry semantic conventions for MCP, and the W3C trace context that joins
//! them to a client's trace and a backend's.
//!
//! Spans are `tracing` spans at the target [`TARGET`]. Only the binary installs what turns
//! them into OpenTelemetry spans (the `tracing-opentelemetry` layer over the SDK and the
//! OTLP exporter, `[telemetry]`), with a filter that lets this target through and nothing
//! else; the log layer's filter leaves this target out. With no OTLP endpoint nothing
//! enables the target, so every callsite here is disabled once and for all and making a
//! span costs one check of the callsite's cached interest: no allocation, no attribute
//! formatting (attributes are recorded only on a span that is enabled).
//!
//! The functions that make spans live here rather than at their callers so that the
//! names, kinds and attribute keys are written once; a caller enters the span (or
//! `instrument`s a future with it) where the work happens, so parentage follows the
//! call across awaits.

#![forbid(unsafe_code)]

mod context;

pub use context::{
    MAX_TRACEPARENT_CHARS, MAX_TRACESTATE_CHARS, TRACEPARENT, TRACESTATE, TraceContext,
    inject_trace_context, set_remote_parent, trace_context_of,
};

use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `tracing` target of every span this crate makes. The binary's OpenTelemetry layer
/// listens to this target only, and its log layer never to it. It has no `::`, so no
/// module's path (the default target of its log lines) can ever be it: a log line is
/// never taken for a span and dropped.
pub const TARGET: &str = "mcp_bridge_spans";

/// Attribute keys: the semantic conventions' (MCP, GenAI, JSON-RPC, network, error) and
/// the bridge's own under `mcp_bridge.`.
pub mod attribute {
    pub const MCP_METHOD_NAME: &str = "mcp.method.name";
    pub const MCP_SESSION_ID: &str = "mcp.session.id";
    pub const MCP_PROTOCOL_VERSION: &str = "mcp.protocol.version";
    pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
    pub const GEN_AI_PROMPT_NAME: &str = "gen_ai.prompt.name";
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const JSONRPC_REQUEST_ID: &str = "jsonrpc.request.id";
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    pub const ERROR_TYPE: &str = "error.type";
    pub const CACHE_RESULT: &str = "mcp_bridge.cache.result";
    pub const POLICY_GENERATION: &str = "mcp_bridge.policy.generation";
    pub const POLICY_DECISION: &str = "mcp_bridge.policy.decision";
    pub const SERVER_NAME: &str = "mcp_bridge.server.name";
    pub const PROCESS_PID: &str = "mcp_bridge.process.pid";
    pub const BINDING_NAME: &str = "mcp_bridge.plugin.binding";
    pub const PLUGIN_DECISION: &str = "mcp_bridge.plugin.decision";
}

/// Span names of the bridge's internal steps.
pub mod name {
    pub const POLICY: &str = "mcp_bridge.policy";
    pub const PLUGIN: &str = "mcp_bridge.plugin";
    pub const CACHE_LOOKUP: &str = "mcp_bridge.cache.lookup";
    pub const SINGLE_FLIGHT_WAIT: &str = "mcp_bridge.cache.single_flight_wait";
    pub const POOL_ACQUIRE: &str = "mcp_bridge.pool.acquire";
    pub const CACHE_REFRESH: &str = "mcp_bridge.cache.refresh";
}

/// `gen_ai.operation.name` of a tool call (the GenAI conventions' `execute_tool`).
const EXECUTE_TOOL: &str = "execute_tool";

/// The span name the conventions give a request: `{method} {tool}` for a tool call (or a
/// prompt), otherwise the method.
fn request_span_name(method: &str, target: Option<&str>) -> String {
    match target {
        Some(target) if !target.is_empty() => format!("{method} {target}"),
        _ => method.to_owned(),
    }
}

/// What the bridge knows about a client's request when its span starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The tool of a `tools/call` (or the prompt of a `prompts/get`). On the SERVER span
    /// it is what the client sent (an attribute only: the name waits for
    /// [`name_after_tool`]); on the CLIENT span it is a tool the server lists, and names
    /// the span.
    pub tool: Option<&'a str>,
    /// The JSON-RPC id as the client sent it (its JSON text for a number).
    pub request_id: Option<&'a str>,
    pub session: Option<&'a str>,
    pub protocol_version: Option<&'a str>,
}

/// The SERVER span of the bridge's handling of one client request, named after the
/// method; [`name_after_tool`] adds the tool once the server's catalog lists it, so a
/// client sending made-up tool names cannot make a span name per name. The client's name
/// is the `gen_ai.tool.name` (or `gen_ai.prompt.name`) attribute, which the caller bounds.
/// A disabled span when tracing is off.
///
/// Every attribute is given when the span is made (one pass of the OpenTelemetry layer)
/// rather than recorded one by one afterwards; the `is_on` check first keeps the work of
/// filling them off the path when tracing is off.
pub fn server_span(facts: &RequestFacts<'_>) -> Span {
    if !is_on() {
        return Span::none();
    }
    let tool = facts.tool.filter(|_| facts.method == "tools/call");
    let prompt = facts.tool.filter(|_| facts.method == "prompts/get");
    tracing::info_span!(
        target: TARGET,
        "mcp.server",
        otel.name = facts.method,
        otel.kind = "server",
        otel.status_code = Empty,
        mcp.method.name = facts.method,
        gen_ai.tool.name = tool,
        gen_ai.prompt.name = prompt,
        gen_ai.operation.name = tool.map(|_| EXECUTE_TOOL),
        jsonrpc.request.id = facts.request_id,
        mcp.session.id = facts.session,
        mcp.protocol.version = facts.protocol_version,
        network.transport = "tcp",
        error.type = Empty,
        mcp_bridge.cache.result = Empty,
        mcp_bridge.policy.generation = Empty,
    )
}

/// Names a SERVER span `{method} {tool}` after the conventions, once the tool is known
/// to be one the server lists (the router's metric label rule). The OpenTelemetry span
/// has started by then (its children have), and a late `otel.name` only reaches a span
/// that has not, so the name is changed on the started span itself.
pub fn name_after_tool(span: &Span, method: &str, tool: &str) {
    if !span.is_disabled() && !tool.is_empty() {
        span.context()
            .span()
            .update_name(request_span_name(method, Some(tool)));
    }
}

/// The CLIENT span of the hop to a backend process: the request written to its stdin
/// until its response (or error, or timeout): the caller instruments the write and every
/// wait for the outcome with it, so its last exit is the outcome. `server` is the bridge's
/// name for the server, `pid` the process's; `facts.tool` must be a listed tool (it
/// names the span).
pub fn backend_span(facts: &RequestFacts<'_>, server: &str, pid: Option<u32>) -> Span {
    if !is_on() {
        return Span::none();
    }
    let name = request_span_name(facts.method, facts.tool);
    let tool = facts.tool.filter(|_| facts.method == "tools/call");
    tracing::info_span!(
        target: TARGET,
        "mcp.client",
        otel.name = name.as_str(),
        otel.kind = "client",
        otel.status_code = Empty,
        mcp.method.name = facts.method,
        gen_ai.tool.name = tool,
        gen_ai.operation.name = tool.map(|_| EXECUTE_TOOL),
        jsonrpc.request.id = facts.request_id,
        mcp.session.id = facts.session,
        mcp.protocol.version = facts.protocol_version,
        network.transport = "pipe",
        error.type = Empty,
        mcp_bridge.server.name = server,
        mcp_bridge.process.pid = pid.map(i64::from),
    )
}

/// The policy chain of `generation` deciding a call (its plugin bindings' decisions are
/// its children).
pub fn policy_span(generation: u64) -> Span {
    tracing::info_span!(
        target: TARGET,
        "mcp_bridge.policy",
        otel.kind = "internal",
        mcp_bridge.policy.generation = i64::try_from(generation).unwrap_or(i64::MAX),
        mcp_bridge.policy.decision = Empty,
    )
}

/// One plugin binding's decision inside [`policy_span`].
pub fn plugin_span(binding: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "mcp_bridge.plugin",
        otel.kind = "internal",
        mcp_bridge.plugin.binding = binding,
        mcp_bridge.plugin.decision = Empty,
        error.type = Empty,
    )
}

/// The cache lookup of a call the policy chose to cache.
pub fn cache_lookup_span() -> Span {
    tracing::info_span!(
        target: TARGET,
        "mcp_bridge.cache.lookup",
        otel.kind = "internal",
        mcp_bridge.cache.result = Empty,
    )
}

/// The background refresh of a stale cache entry: a root span of its own (a trace of its
/// own, sampled as such) linked to the span that found the entry stale. The request that
/// found it is answered at once, so the refresh is no part of that request's span.
pub fn cache_refresh_span() -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        parent: None,
        "mcp_bridge.cache.refresh",
        otel.kind = "internal",
    );
    if !span.is_disabled() {
        span.follows_from(Span::current());
    }
    span
}

/// Waiting for another caller's fill of the same key (single flight).
pub fn single_flight_wait_span() -> Span {
    tracing::info_span!(
        target: TARGET,
        "mcp_bridge.cache.single_flight_wait",
        otel.kind = "internal",
        mcp_bridge.cache.result = Empty,
    )
}

/// Waiting for a slot on a backend process (the pool's queue included).
pub fn pool_acquire_span(server: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "mcp_bridge.pool.acquire",
        otel.kind = "internal",
        mcp_bridge.server.name = server,
        error.type = Empty,
    )
}

/// Whether spans are being made at all: one check of a cached callsite interest, for code
/// that would otherwise look up the current span only to record on it.
pub fn is_on() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// Records a short, low-cardinality attribute value (cache result, decision) on `span`.
pub fn record_str(span: &Span, key: &'static str, value: &str) {
    if !span.is_disabled() {
        span.record(key, value);
    }
}

/// Records the policy generation that decided the call.
pub fn record_generation(span: &Span, generation: u64) {
    if !span.is_disabled() {
        span.record(
            attribute::POLICY_GENERATION,
            i64::try_from(generation).unwrap_or(i64::MAX),
        );
    }
}

/// Marks `span` failed with the conventions' `error.type` (a low-cardinality kind: a
/// JSON-RPC error code, or the bridge's error kind) and the OpenTelemetry error status.
pub fn record_error(span: &Span, error_type: &str) {
    if !span.is_disabled() {
        span.record(attribute::ERROR_TYPE, error_type);
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_follow_the_conventions() {
        assert_eq!(
            request_span_name("tools/call", Some("get_tasks")),
            "tools/call get_tasks"
        );
        assert_eq!(request_span_name("tools/list", None), "tools/list");
        assert_eq!(request_span_name("tools/call", Some("")), "tools/call");
    }

    #[test]
    fn spans_are_disabled_without_a_subscriber() {
        let facts = RequestFacts {
            method: "tools/call",
            tool: Some("t"),
            ..RequestFacts::default()
        };
        assert!(server_span(&facts).is_disabled());
        assert!(backend_span(&facts, "demo", Some(1)).is_disabled());
        assert!(policy_span(1).is_disabled());
        assert!(trace_context_of(&server_span(&facts), None).is_none());
    }
}
