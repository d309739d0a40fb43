//! The front's metrics: HTTP requests by route and status, connections, sessions, the
//! limits that refused a client, refused relay answers and protocol-version mismatches.

use mcp_bridge_metrics::Registry;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// What the HTTP front reports.
pub struct HttpMetrics {
    pub http_requests_total: IntCounterVec,
    pub sessions_active: IntGaugeVec,
    pub sessions_closed_total: IntCounterVec,
    pub sessions_resumed_total: IntCounter,
    pub session_tokens_refused_total: IntCounterVec,
    pub limit_refusals_total: IntCounterVec,
    pub relay_answers_refused_total: IntCounterVec,
    pub input_rounds_total: IntCounterVec,
    pub version_mismatch_total: IntCounterVec,
    pub http_connections_open: IntGauge,
    pub http_connections_refused_total: IntCounterVec,
    pub http_connections_closed_total: IntCounterVec,
    pub http_accept_errors_total: IntCounter,
}

impl HttpMetrics {
    /// Registers this layer's metrics. Call once per registry: a second call is a
    /// programming error (the names are taken) and panics.
    pub fn register(registry: &Registry) -> HttpMetrics {
        HttpMetrics {
            http_requests_total: registry.counter_vec(
                    "http_requests_total",
                    "HTTP requests by route and status code.",
                    &["route", "status"],
                ),
            sessions_active: registry.gauge_vec(
                    "sessions_active",
                    "Open MCP sessions on the front, by endpoint.",
                    &["endpoint"],
                ),
            sessions_closed_total: registry.counter_vec(
                    "sessions_closed_total",
                    "MCP sessions this replica stopped holding, by reason: idle (unused past session_idle_timeout), capacity (least recently used idle session closed at max_sessions), expired (token older than [sessions] max_age), revoked (ended by a DELETE on another replica), key_removed (a reload dropped the key that signed it). Only expired and revoked end the session itself; the others free this replica's copy, which the next request on the token makes again.",
                    &["reason"],
                ),
            sessions_resumed_total: registry.counter(
                    "sessions_resumed_total",
                    "Sessions this replica did not hold, continued from their signed Mcp-Session-Id token (opened on another replica, or dropped here while idle).",
                ),
            session_tokens_refused_total: registry.counter_vec(
                    "session_tokens_refused_total",
                    "Mcp-Session-Id values refused as unknown sessions (404), by reason: malformed (not a token, or too long), mac (signed by no listed key: forged, tampered, or an old key), expired, revoked (ended by DELETE), endpoint (a session of another endpoint).",
                    &["reason"],
                ),
            limit_refusals_total: registry.counter_vec(
                    "limit_refusals_total",
                    "Requests or calls refused because a client reached a limit, by the setting that refused it (max_sessions, max_sessions_per_principal, max_inflight_per_session, max_batch_messages, max_subscriptions_per_session, max_streams_per_session).",
                    &["limit"],
                ),
            input_rounds_total: registry.counter_vec(
                    "input_rounds_total",
                    "2026-07-28 input rounds a legacy backend's request became, by outcome: asked (the call was parked and the client got input_required), resumed (a retry carried the answer back to the process that asked), invalid_state (a requestState that was unknown, used, expired, or another principal's or request's), missing_capability (the client did not declare elicitation or sampling; the backend got an error), full and principal_full (too many calls waiting; the backend got an error), expired (parked past its time and cancelled).",
                    &["outcome"],
                ),
            relay_answers_refused_total: registry.counter_vec(
                    "relay_answers_refused_total",
                    "Client answers to server requests (sampling, elicitation, roots) refused, by reason: unknown_id (no such request is waiting), wrong_session (another session's request), no_session.",
                    &["reason"],
                ),
            version_mismatch_total: registry.counter_vec(
                    "version_mismatch_total",
                    "Requests whose protocol-version signals (session, MCP-Protocol-Version header, body _meta) disagreed, by kind and by action (accepted: served under the documented precedence; refused: answered with what to send).",
                    &["kind", "action"],
                ),
            http_connections_open: registry.gauge(
                    "http_connections_open",
                    "Client connections being served (at most http.max_client_connections).",
                ),
            http_connections_refused_total: registry.counter_vec(
                    "http_connections_refused_total",
                    "Connections refused because http.max_client_connections were open, by how: answered (503 sent) or dropped (too many refusals at once to answer each).",
                    &["how"],
                ),
            http_connections_closed_total: registry.counter_vec(
                    "http_connections_closed_total",
                    "Connections the bridge closed by deadline: header_timeout (a request head took longer than http.header_read_timeout) or keep_alive_timeout (idle longer than http.keep_alive_timeout).",
                    &["reason"],
                ),
            http_accept_errors_total: registry.counter(
                    "http_accept_errors_total",
                    "Failed accept() calls on the listening socket (EMFILE and the like); the log shows at most one line a second.",
                ),
        }
    }
}
