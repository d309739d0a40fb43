//! The admin API's place in the front. The front routes `/admin/*` requests, checks the
//! admin credential (`routes::guarded`), reads bodies under their limits and answers in
//! JSON; what each route does is the application's ([`AdminRoutes`], composed where the
//! bridge is wired), because it reads the cache, the plugins and the recorder, which the
//! HTTP layer knows nothing about.

use futures_util::future::BoxFuture;
use http::Method;
use hyper::body::Incoming;
use serde_json::Value;

use super::error::FrontError;
use super::{AppState, mcp};

/// Admin request bodies are a few fields of JSON.
const ADMIN_BODY_LIMIT: usize = 64 * 1024;

/// What an admin route answers: 200 with this body, or a front error (its status and
/// JSON-RPC body, as every route answers errors).
pub type AdminAnswer<'a> = BoxFuture<'a, Result<AdminReply, FrontError>>;

/// The body of a successful admin answer.
pub enum AdminReply {
    Json(Value),
    /// A self-contained page (no external assets), served as `text/html`.
    Html(String),
}

impl From<Value> for AdminReply {
    fn from(value: Value) -> AdminReply {
        AdminReply::Json(value)
    }
}

/// The admin routes a bridge serves, given to the front by the application.
pub trait AdminRoutes: Send + Sync {
    /// Every route: method and path. The paths are also values of the `route` label of
    /// `mcp_bridge_http_requests_total`, and another method on one of them is answered 405.
    fn routes(&self) -> &'static [(Method, &'static str)];

    /// Answers one request for one of [`AdminRoutes::routes`], after the front has
    /// checked the admin credential.
    fn answer<'a>(&'a self, request: AdminRequest<'a>) -> AdminAnswer<'a>;
}

/// One authorised admin request, with what the front knows that admin answers show.
pub struct AdminRequest<'a> {
    method: Method,
    path: &'static str,
    body: Incoming,
    state: &'a AppState,
}

impl<'a> AdminRequest<'a> {
    pub(super) fn new(
        method: Method,
        path: &'static str,
        body: Incoming,
        state: &'a AppState,
    ) -> AdminRequest<'a> {
        AdminRequest {
            method,
            path,
            body,
            state,
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The route's path, as [`AdminRoutes::routes`] lists it.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// How long the front has been serving.
    pub fn uptime_seconds(&self) -> f64 {
        self.state.started_at.elapsed().as_secs_f64()
    }

    /// The MCP sessions: how many are open, the cap, and counts by protocol version and
    /// client.
    pub fn sessions(&self) -> Value {
        self.state.sessions.summary()
    }

    /// Every server's health as `/health` reports it: the overall status and each
    /// server's report by name.
    pub fn health(&self) -> Value {
        let summary = self.state.upstream.health();
        let mut health = serde_json::json!({
            "status": summary.status,
            "servers": summary.servers,
        });
        if let Some(tier) = summary.shared_tier {
            health["shared_tier"] = tier;
        }
        health
    }

    /// Calls in flight per principal (only principals with calls in flight are listed).
    pub fn calls_in_flight_by_principal(&self) -> Value {
        let calls: serde_json::Map<String, Value> = self
            .state
            .principal_calls
            .snapshot()
            .into_iter()
            .map(|(principal, count)| (principal.to_string(), Value::from(count)))
            .collect();
        Value::Object(calls)
    }

    /// The body as JSON, read under the same deadlines and minimum rate as an MCP body and
    /// a 64 KiB limit. Only routes that take a body read it, so a route that refuses
    /// first (a disabled feature) never waits for one.
    pub async fn json_body(self) -> Result<Value, FrontError> {
        let body = mcp::read_body(self.body, &self.state.http, ADMIN_BODY_LIMIT).await?;
        serde_json::from_slice(&body).map_err(|error| FrontError::Parse(error.to_string()))
    }
}
