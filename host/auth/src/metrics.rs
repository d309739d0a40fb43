//! The identity layer's metrics. Registered once and shared by every rebuild of the
//! authenticator, access policy and limiter on a config reload.

use mcp_bridge_metrics::Registry;
use prometheus::IntCounterVec;

pub struct AuthMetrics {
    /// Requests whose credential was checked, by `result` (`ok` or the refusal's reason)
    /// and `credential` (jwt, api_key, token, none).
    pub authentications_total: IntCounterVec,
    /// JWKS fetches, by `trigger` (startup, unknown_kid, max_age, reload) and `result`.
    pub jwks_fetches_total: IntCounterVec,
    /// Token-cache lookups, by `result` (hit, miss).
    pub token_cache_total: IntCounterVec,
    /// Calls refused by the access rules, by `principal` (bounded) and `kind`.
    pub access_denied_total: IntCounterVec,
    /// Calls refused by a limit, by `principal` (bounded) and `reason`
    /// (rate, in_flight).
    pub rate_limited_total: IntCounterVec,
    /// Requests that presented a session id opened by another principal.
    pub session_principal_mismatch_total: prometheus::IntCounter,
}

impl AuthMetrics {
    pub fn register(registry: &Registry) -> AuthMetrics {
        AuthMetrics {
            authentications_total: registry.counter_vec(
                "auth_requests_total",
                "Requests whose credential was checked, by result (ok, or why it was refused) and credential kind.",
                &["result", "credential"],
            ),
            jwks_fetches_total: registry.counter_vec(
                "auth_jwks_fetches_total",
                "JWKS fetches, by what triggered them and their result.",
                &["trigger", "result"],
            ),
            token_cache_total: registry.counter_vec(
                "auth_token_cache_total",
                "Lookups of verified tokens by digest, by result (hit, miss).",
                &["result"],
            ),
            access_denied_total: registry.counter_vec(
                "access_denied_total",
                "Requests refused by the access rules, by principal (bounded by auth.metrics_principals) and what was asked for.",
                &["principal", "kind"],
            ),
            rate_limited_total: registry.counter_vec(
                "rate_limited_total",
                "Calls refused by a limit, by principal (bounded by auth.metrics_principals) and reason (rate, in_flight).",
                &["principal", "reason"],
            ),
            session_principal_mismatch_total: registry.counter(
                "auth_session_principal_mismatch_total",
                "Requests refused because their Mcp-Session-Id belongs to another principal.",
            ),
        }
    }
}
