//! Who is calling, as the front asks it: the request's principal, the OAuth challenge and
//! protected-resource metadata (RFC 9728), access checks and list filtering, and the
//! admission the router asks before a call reaches a backend.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Value, json};

use mcp_bridge_auth::access::{AccessPolicy, Item};
use mcp_bridge_auth::limits::{Limited, Limiter};
use mcp_bridge_auth::{AuthError, AuthMetrics, Identity, Principal};
use mcp_bridge_jsonrpc::code;
use mcp_bridge_telemetry::{TRACEPARENT, TRACESTATE, TraceContext};
use mcp_bridge_upstream::{Admission, AdmissionPermit, CallError};
use parking_lot::Mutex;

use super::AppState;
use super::error::FrontError;
use super::mcp::header_str;

/// Where RFC 9728 puts a protected resource's metadata.
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The caller of one request, with the identity layer that authenticated it (kept for the
/// whole request, so a reload does not change the rules half-way).
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) identity: Arc<Identity>,
    pub(crate) principal: Principal,
}

impl Caller {
    /// The `principal` metric label: bounded by `auth.metrics_principals`.
    pub(crate) fn metric_label(&self) -> &str {
        self.identity
            .authenticator
            .metric_label(&self.principal.name)
    }

    /// Whether the caller may see `server` at all.
    pub(crate) fn sees_server(&self, server: &str) -> bool {
        let access = &self.identity.access;
        access.is_open() || access.server_visible(&self.principal, server)
    }

    /// Whether the caller may see and use `item` on `server`.
    pub(crate) fn sees(&self, server: &str, item: Item<'_>) -> bool {
        let access = &self.identity.access;
        access.is_open() || access.check(&self.principal, server, item).is_ok()
    }

    /// The JSON-RPC error for a request outside the access rules, or `None` when it is
    /// allowed. Counted by principal and kind.
    pub(crate) fn refusal(
        &self,
        metrics: &AuthMetrics,
        server: &str,
        message: &Value,
    ) -> Option<CallError> {
        let access: &AccessPolicy = &self.identity.access;
        if access.is_open() {
            return None;
        }
        let denial = match item_of(message) {
            Some(item) => access.check(&self.principal, server, item).err()?,
            // A list is answered, filtered to what the caller may use (empty on a server it
            // may not use at all), rather than refused.
            None if is_list(message) => return None,
            None if access.server_visible(&self.principal, server) => return None,
            None => mcp_bridge_auth::access::Denial {
                rule: None,
                message: format!(
                    "no access rule allows principal '{}' to use server '{server}'; add an [[access.rules]] entry with effect = \"allow\" that covers it",
                    self.principal.name
                ),
            },
        };
        let kind = item_of(message).map_or("server", |item| item.kind());
        metrics
            .access_denied_total
            .with_label_values(&[self.metric_label(), kind])
            .inc();
        Some(CallError {
            message: denial.message.clone(),
            code: code::ACCESS_DENIED,
            retryable: false,
            data: Some(json!({ "reason": "access_denied", "rule": denial.rule })),
        })
    }

    /// Filters a per-server list result (`tools/list`, `prompts/list`, `resources/list`)
    /// down to what the caller may use.
    pub(crate) fn filter_list(&self, server: &str, method: &str, result: Option<&mut Value>) {
        if self.identity.access.is_open() {
            return;
        }
        let Some(result) = result else { return };
        let (field, key, item): (&str, &str, fn(&str) -> Item<'_>) = match method {
            "tools/list" => ("tools", "name", |name| Item::Tool(name)),
            "prompts/list" => ("prompts", "name", |name| Item::Prompt(name)),
            "resources/list" => ("resources", "uri", |name| Item::Resource(name)),
            "resources/templates/list" => {
                if !self.sees_server(server)
                    && let Some(templates) = result
                        .get_mut("resourceTemplates")
                        .and_then(Value::as_array_mut)
                {
                    templates.clear();
                }
                return;
            }
            _ => return,
        };
        if let Some(items) = result.get_mut(field).and_then(Value::as_array_mut) {
            items.retain(|entry| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|name| self.sees(server, item(name)))
            });
        }
    }

    /// The admission the router asks before this caller's call reaches a backend.
    pub(crate) fn admission(&self, metrics: &Arc<AuthMetrics>) -> Option<Arc<dyn Admission>> {
        let limiter = &self.identity.limiter;
        if !limiter.is_active() {
            return None;
        }
        Some(Arc::new(Gate {
            limiter: limiter.clone(),
            principal: self.principal.clone(),
            label: self.metric_label().to_owned(),
            metrics: metrics.clone(),
        }))
    }

    /// Takes a token for a call before the cache is asked, when cache hits count toward
    /// the rate limits (`limits.count_cache_hits`).
    pub(crate) fn take_token_before_cache(
        &self,
        metrics: &AuthMetrics,
        server: &str,
        tool: &str,
    ) -> Result<(), CallError> {
        let limiter = &self.identity.limiter;
        if !limiter.counts_cache_hits() {
            return Ok(());
        }
        limiter
            .take_token(&self.principal, server, tool)
            .map_err(|limited| limit_error(metrics, self.metric_label(), &limited))
    }
}

fn is_list(message: &Value) -> bool {
    matches!(
        mcp_bridge_jsonrpc::method(message),
        Some("tools/list" | "prompts/list" | "resources/list" | "resources/templates/list")
    )
}

/// What a request asks to use, as the access rules name it.
pub(crate) fn item_of(message: &Value) -> Option<Item<'_>> {
    let params = message.get("params")?;
    let text = |field: &str| params.get(field).and_then(Value::as_str);
    match mcp_bridge_jsonrpc::method(message)? {
        "tools/call" => text("name").map(Item::Tool),
        "prompts/get" => text("name").map(Item::Prompt),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            text("uri").map(Item::Resource)
        }
        "completion/complete" => {
            let reference = params.get("ref")?;
            match reference.get("type").and_then(Value::as_str)? {
                "ref/prompt" => reference
                    .get("name")
                    .and_then(Value::as_str)
                    .map(Item::Prompt),
                "ref/resource" => reference
                    .get("uri")
                    .and_then(Value::as_str)
                    .map(Item::Resource),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The router's admission for one caller: its rate limits (unless cache hits count, when
/// the token was taken before the cache) and its in-flight caps.
struct Gate {
    limiter: Arc<Limiter>,
    principal: Principal,
    label: String,
    metrics: Arc<AuthMetrics>,
}

impl Admission for Gate {
    fn admit(&self, server: &str, tool: &str) -> Result<AdmissionPermit, CallError> {
        let refused = |limited: Limited| limit_error(&self.metrics, &self.label, &limited);
        if !self.limiter.counts_cache_hits() {
            self.limiter
                .take_token(&self.principal, server, tool)
                .map_err(refused)?;
        }
        let permit = self
            .limiter
            .enter(&self.principal, server, tool)
            .map_err(refused)?;
        Ok(Box::new(permit))
    }
}

/// The JSON-RPC error for a refused call, counted by principal and reason.
fn limit_error(metrics: &AuthMetrics, label: &str, limited: &Limited) -> CallError {
    metrics
        .rate_limited_total
        .with_label_values(&[label, limited.reason.as_str()])
        .inc();
    // Whole seconds, rounded up: a client that waits this long finds a token.
    let retry_after = limited.retry_after.as_millis().div_ceil(1000).max(1) as u64;
    CallError {
        message: limited.message.clone(),
        code: code::RATE_LIMITED,
        retryable: true,
        data: Some(json!({
            "reason": limited.reason.as_str(),
            "rule": limited.rule,
            "retryAfterSeconds": retry_after,
        })),
    }
}

/// Authenticates a `/mcp*` request. A refusal carries the `WWW-Authenticate` challenge.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Caller, FrontError> {
    let identity = state.identity.current();
    let authorization = header_str(headers, http::header::AUTHORIZATION.as_str());
    match identity.authenticator.authenticate(authorization).await {
        Ok(principal) => Ok(Caller {
            identity,
            principal,
        }),
        Err(error) => {
            let challenge = challenge(&identity, &error);
            Err(FrontError::Auth { error, challenge })
        }
    }
}

/// The `WWW-Authenticate` value for a refused credential (RFC 6750 section 3, with the
/// RFC 9728 `resource_metadata` parameter when bearer JWTs are configured).
fn challenge(identity: &Identity, error: &AuthError) -> String {
    let mut parameters = Vec::new();
    if let Some(jwt) = identity.authenticator.jwt() {
        parameters.push(format!(
            "resource_metadata=\"{}\"",
            metadata_url(&jwt.audience)
        ));
        if !jwt.scopes_supported.is_empty() && matches!(error, AuthError::Missing) {
            parameters.push(format!("scope=\"{}\"", jwt.scopes_supported.join(" ")));
        }
    }
    if let Some(code) = error.bearer_error() {
        parameters.push(format!("error=\"{code}\""));
        parameters.push(format!(
            "error_description=\"{}\"",
            quoted_text(&error.to_string())
        ));
    }
    if let AuthError::InsufficientScope(scope) = error {
        parameters.push(format!("scope=\"{}\"", quoted_text(scope)));
    }
    if parameters.is_empty() {
        return "Bearer".to_owned();
    }
    format!("Bearer {}", parameters.join(", "))
}

/// Text safe inside a quoted header parameter: no quotes, backslashes or control
/// characters.
fn quoted_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '\''
            } else {
                c
            }
        })
        .collect()
}

/// The metadata URL of a resource (RFC 9728 section 3.1): the well-known path inserted
/// between the resource URI's origin and its path.
pub(crate) fn metadata_url(resource: &str) -> String {
    let (scheme, rest) = resource.split_once("://").unwrap_or(("https", resource));
    let (authority, path) = match rest.find('/') {
        Some(index) => rest.split_at(index),
        None => (rest, ""),
    };
    let path = path.trim_end_matches('/');
    format!("{scheme}://{authority}{METADATA_PATH}{path}")
}

/// `GET /.well-known/oauth-protected-resource[/path]`: the RFC 9728 metadata, or `None`
/// when bearer JWTs are not configured (the route is then unknown).
pub(crate) fn metadata(state: &AppState) -> Option<Value> {
    let identity = state.identity.current();
    let jwt = identity.authenticator.jwt()?;
    Some(json!({
        "resource": jwt.audience,
        "authorization_servers": jwt.authorization_servers,
        "scopes_supported": jwt.scopes_supported,
        "bearer_methods_supported": ["header"],
        "resource_signing_alg_values_supported": jwt.algorithms.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "resource_name": "mcp-bridge",
    }))
}

/// The cache partition of a caller's private results: the principal when it names one
/// person or machine, otherwise the session (or nothing, for a sessionless anonymous
/// call, whose private results are then not stored).
pub(crate) fn partition(principal: &Principal, session: Option<&str>) -> Option<Arc<str>> {
    if principal.is_individual() {
        return Some(Arc::from(format!("principal:{}", principal.name)));
    }
    session.map(|id| Arc::from(format!("session:{id}")))
}

/// Calls in flight per principal, for `/admin/stats`.
#[derive(Default)]
pub(crate) struct PrincipalCalls {
    counts: Mutex<HashMap<Arc<str>, usize>>,
}

/// Counts one call in flight until dropped.
pub(crate) struct CallInFlight {
    calls: Arc<PrincipalCalls>,
    principal: Arc<str>,
}

/// Principals remembered with no call in flight before the idle ones are dropped: entries
/// stay at zero rather than being removed after every call (a principal calling in a loop
/// would otherwise insert and remove its entry each time), and this bounds them.
const MAX_IDLE_PRINCIPAL_ENTRIES: usize = 4096;

impl PrincipalCalls {
    pub(crate) fn enter(self: &Arc<Self>, principal: &Arc<str>) -> CallInFlight {
        let mut counts = self.counts.lock();
        match counts.get_mut(principal) {
            Some(count) => *count += 1,
            None => {
                if counts.len() >= MAX_IDLE_PRINCIPAL_ENTRIES {
                    counts.retain(|_, count| *count > 0);
                }
                counts.insert(principal.clone(), 1);
            }
        }
        drop(counts);
        CallInFlight {
            calls: self.clone(),
            principal: principal.clone(),
        }
    }

    /// Principals with calls in flight, and how many.
    pub(crate) fn snapshot(&self) -> Vec<(Arc<str>, usize)> {
        let mut counts: Vec<_> = self
            .counts
            .lock()
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(name, count)| (name.clone(), *count))
            .collect();
        counts.sort();
        counts
    }
}

impl Drop for CallInFlight {
    fn drop(&mut self) {
        if let Some(count) = self.calls.counts.lock().get_mut(&self.principal) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_inserts_the_well_known_path_before_the_resource_path() {
        assert_eq!(
            metadata_url("https://bridge.example.com/mcp"),
            "https://bridge.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:8080/mcp/"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"
        );
    }

    #[test]
    fn calls_in_flight_are_counted_per_principal_and_idle_entries_stay_bounded() {
        let calls = Arc::new(PrincipalCalls::default());
        let alice: Arc<str> = Arc::from("alice");
        let first = calls.enter(&alice);
        let second = calls.enter(&alice);
        assert_eq!(calls.snapshot(), vec![(alice.clone(), 2)]);
        drop((first, second));
        assert!(calls.snapshot().is_empty());
        for index in 0..MAX_IDLE_PRINCIPAL_ENTRIES * 2 {
            drop(calls.enter(&Arc::from(format!("p{index}"))));
        }
        assert!(calls.counts.lock().len() <= MAX_IDLE_PRINCIPAL_ENTRIES);
    }

    #[test]
    fn quoted_text_cannot_break_out_of_the_parameter() {
        assert_eq!(quoted_text("a\"b\\c\nd"), "a'b'c'd");
    }
}

/// The header a 2026-07-28 client (which has no session) names its group with on a
/// session-isolated server. It is scoped to the caller's principal by the router.
pub(crate) const AFFINITY_HEADER: &str = "mcp-bridge-affinity";
/// The longest affinity key accepted.
pub(crate) const MAX_AFFINITY_CHARS: usize = 64;
/// The shortest affinity key accepted from a principal that is not one person or machine
/// (anonymous, or the shared token): 32 characters of 64 kinds hold far more than 128 bits.
pub(crate) const MIN_SHARED_AFFINITY_CHARS: usize = 32;
/// What of a request's headers reaches its backends.
#[derive(Debug, Clone, Default)]
pub(crate) struct PassedOn {
    /// `Mcp-Bridge-Affinity`, checked for form.
    pub(crate) affinity: Option<Arc<str>>,
    /// The W3C trace context of the `traceparent` and `tracestate` headers, when valid.
    trace: Option<TraceContext>,
}

impl PassedOn {
    /// Reads the affinity key (refusing one of the wrong form, since it decides whose
    /// process serves the request) and the trace context (a malformed one is dropped: it
    /// only helps tracing).
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        principal: &Principal,
    ) -> Result<PassedOn, FrontError> {
        let affinity = match header_str(headers, AFFINITY_HEADER) {
            None => None,
            Some(key) => {
                let valid = !key.is_empty()
                    && key.len() <= MAX_AFFINITY_CHARS
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                if !valid {
                    return Err(FrontError::InvalidRequest(format!(
                        "the Mcp-Bridge-Affinity header must be 1 to {MAX_AFFINITY_CHARS} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
                    )));
                }
                // Callers sharing one credential are one principal: among them the key is
                // all that separates one client's process from another's, so it must be
                // unguessable.
                if !principal.is_individual() && key.len() < MIN_SHARED_AFFINITY_CHARS {
                    return Err(FrontError::InvalidRequest(format!(
                        "with a shared credential the Mcp-Bridge-Affinity key must be at least {MIN_SHARED_AFFINITY_CHARS} random characters (such as a UUID without dashes), so no other client can guess it"
                    )));
                }
                Some(Arc::from(key))
            }
        };
        let trace = header_str(headers, TRACEPARENT).and_then(|traceparent| {
            TraceContext::parse(traceparent, header_str(headers, TRACESTATE))
        });
        Ok(PassedOn { affinity, trace })
    }

    /// The client's trace context from the HTTP headers, when it sent a valid one.
    pub(crate) fn trace_context(&self) -> Option<&TraceContext> {
        self.trace.as_ref()
    }

    /// Puts the HTTP trace context into `params._meta` when the request's own `_meta`
    /// carries no valid one, so the backend continues the client's trace either way: the
    /// same precedence the SERVER span's parent follows. The header's `tracestate` goes
    /// with the header's `traceparent` (a `_meta` `tracestate` that came with an invalid
    /// `_meta` parent is removed with it): vendor state only ever travels with the parent
    /// it came with.
    pub(crate) fn add_trace_context(&self, message: &mut Value) {
        let Some(trace) = &self.trace else {
            return;
        };
        if TraceContext::from_meta(message).is_some() {
            return;
        }
        let Some(request) = message.as_object_mut() else {
            return;
        };
        let params = request.entry("params").or_insert_with(|| json!({}));
        let Some(params) = params.as_object_mut() else {
            return;
        };
        let meta = params.entry("_meta").or_insert_with(|| json!({}));
        let Some(meta) = meta.as_object_mut() else {
            return;
        };
        meta.insert(TRACEPARENT.to_owned(), json!(trace.traceparent()));
        match &trace.tracestate {
            Some(tracestate) => {
                meta.insert(TRACESTATE.to_owned(), json!(tracestate));
            }
            None => {
                meta.remove(TRACESTATE);
            }
        }
    }
}

impl Caller {
    /// The caller as backends may learn of it: names, never a credential.
    pub(crate) fn identity_for_backends(
        &self,
        session: Option<&str>,
        affinity: Option<Arc<str>>,
    ) -> Arc<mcp_bridge_upstream::CallerIdentity> {
        Arc::new(mcp_bridge_upstream::CallerIdentity {
            name: self.principal.name.clone(),
            roles: self.principal.roles.clone(),
            session: session.map(Arc::from),
            affinity,
        })
    }
}
