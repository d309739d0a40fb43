//! The MCP Streamable HTTP endpoints: `/mcp` (aggregated) and `/mcp/{server}`.
//!
//! The bridge is the MCP server its clients see: it answers the lifecycle itself
//! (`initialize`, sessions, `ping`, `server/discover`) and forwards everything else to
//! a backend through the router, unchanged except for ids and namespaced names.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tracing::{Instrument as _, Span};

use super::aggregate;
use super::audit::Audited;
use super::cache_header::{CACHE_HEADER, CacheReport};
use super::error::FrontError;
use super::identity;
use super::input_rounds;
use super::logging;
use super::session::{ClientInfo, Session};
use super::spans;
use super::sse;
use super::stateless;
use super::versions::{self, MismatchKind, Protocol, Resolution};
use super::{AppState, Body};
use mcp_bridge_config::{BODY_RATE_WINDOW, HttpConfig};
use mcp_bridge_jsonrpc::{self as jsonrpc, Kind, code};
use mcp_bridge_upstream::{
    AnswerSink, CacheHint, CallError, CallEvent, Caller, ForwardedCall, Introduction, ServerHandle,
    Step,
};

/// Session-based protocol versions the front serves, newest first.
pub const SESSION_PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// The sessionless protocol version.
pub const STATELESS_PROTOCOL_VERSION: &str = "2026-07-28";

const NOT_JSONRPC: &str = "not a JSON-RPC 2.0 request, notification or response (it needs \"jsonrpc\": \"2.0\" and a method or a result)";

pub(crate) const SESSION_HEADER: &str = "mcp-session-id";
pub(crate) const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";

/// Which MCP surface a request addresses.
#[derive(Clone)]
pub(crate) enum Endpoint {
    Aggregate,
    Server(ServerHandle),
}

impl Endpoint {
    /// The session store's name for the endpoint.
    fn key(&self) -> &str {
        match self {
            Endpoint::Aggregate => "",
            Endpoint::Server(server) => server.name(),
        }
    }
}

/// What one JSON-RPC message produced.
enum Reply {
    /// Nothing to send back (a notification or a client's response): 202.
    Accepted,
    /// A client's message refused as a whole (an answer to a server request that this
    /// session may not give): an HTTP error, since a response cannot be answered.
    Refused(FrontError),
    Json(Value),
    /// A forwarded call's response, with what the cache did about it.
    Forwarded {
        response: Value,
        cache: CacheReport,
    },
    /// The answer to `initialize`, and the session it opened.
    Initialized {
        response: Value,
        session_id: String,
    },
    /// A streaming response: notifications, then the result.
    Stream(BoxBody<Bytes, Infallible>),
}

impl Context {
    /// The caller an endpoint is described to. Only a caller the access rules let see the
    /// server may start processes for it (an isolated server's group); anyone else learns
    /// what the server is from what is already known.
    fn describing_caller(&self, session: Option<&str>) -> Caller {
        let caller = self.upstream_caller(session);
        match &self.endpoint {
            Endpoint::Server(server) if !self.caller.sees_server(server.name()) => Caller {
                identity: None,
                ..caller
            },
            _ => caller,
        }
    }

    /// The caller as the router sees it, in `session` (no admission: a forwarded call adds
    /// its own).
    fn upstream_caller(&self, session: Option<&str>) -> Caller {
        Caller {
            principal: identity::partition(&self.caller.principal, session),
            admission: None,
            identity: Some(
                self.caller
                    .identity_for_backends(session, self.passed_on.affinity.clone()),
            ),
        }
    }
}

/// Facts about the HTTP request every message handler needs.
struct Context {
    state: Arc<AppState>,
    endpoint: Endpoint,
    /// Who sent the request.
    caller: identity::Caller,
    session: Option<Arc<Session>>,
    accepts_sse: bool,
    /// The request speaks 2026-07-28: no session, completed results, no server requests.
    stateless: bool,
    /// What reaches backends of the request besides its body: the caller's group on a
    /// session-isolated server (`Mcp-Bridge-Affinity`) and the W3C trace context.
    passed_on: identity::PassedOn,
}

pub(crate) async fn handle(
    state: Arc<AppState>,
    endpoint: Endpoint,
    request: Request<Incoming>,
    caller: identity::Caller,
) -> Result<Response<Body>, FrontError> {
    let owner = &caller.principal.name;
    match *request.method() {
        Method::POST => post(state, endpoint, request, caller).await,
        Method::GET => {
            super::stream::open(state, endpoint, request.headers(), &caller.principal).await
        }
        Method::DELETE => delete(&state, &endpoint, request.headers(), owner).await,
        ref other => Err(FrontError::MethodNotAllowed(other.clone())),
    }
}

async fn post(
    state: Arc<AppState>,
    endpoint: Endpoint,
    request: Request<Incoming>,
    caller: identity::Caller,
) -> Result<Response<Body>, FrontError> {
    let headers = request.headers().clone();
    check_content_type(&headers)?;
    let accepts_sse = accepts_sse(&headers);
    let body = read_body(request.into_body(), &state.http, state.http.max_body_bytes).await?;
    let message = parse_body(&body, state.http.max_batch_messages).inspect_err(|error| {
        if matches!(error, FrontError::BatchTooLong { .. }) {
            state
                .metrics
                .limit_refusals_total
                .with_label_values(&["max_batch_messages"])
                .inc();
        }
    })?;
    // A message that is not JSON-RPC 2.0 is refused before anything else looks at it.
    if !message.is_array() && jsonrpc::classify_strict(&message).is_none() {
        return Err(FrontError::InvalidRequest(NOT_JSONRPC.to_owned()));
    }
    // So is a request whose id MCP does not allow, before anything acts on it.
    if jsonrpc::classify_strict(&message) == Some(Kind::Request) {
        jsonrpc::check_request_id(&message)?;
    }
    let (session, resolution) =
        resolve_session(&state, &endpoint, &headers, &message, &caller.principal).await?;
    let stateless = resolution.protocol == Protocol::Sessionless;
    if stateless {
        if message.is_array() {
            return Err(FrontError::InvalidRequest(
                "2026-07-28 does not allow JSON-RPC batches".into(),
            ));
        }
        let routing = if resolution.mismatch == Some(MismatchKind::ModernBodyLegacyHeader) {
            stateless::RoutingHeaders::IfPresent
        } else {
            stateless::RoutingHeaders::Required
        };
        stateless::validate(&headers, &message, routing)?;
    }
    let passed_on = identity::PassedOn::from_headers(&headers, &caller.principal)?;
    let context = Context {
        state,
        endpoint,
        caller,
        session,
        accepts_sse,
        stateless,
        passed_on,
    };
    if let Value::Array(batch) = message {
        return handle_batch(context, batch).await;
    }
    match handle_message(&context, message).await {
        Reply::Accepted => Ok(status_only(StatusCode::ACCEPTED)),
        Reply::Refused(error) => Err(error),
        Reply::Json(value) => Ok(single_reply(stateless, &value)),
        Reply::Forwarded { response, cache } => {
            let mut response = single_reply(stateless, &response);
            if let Some(value) = cache.header_value() {
                response.headers_mut().insert(CACHE_HEADER, value);
            }
            Ok(response)
        }
        Reply::Initialized {
            response,
            session_id,
        } => {
            let mut response = json_response(StatusCode::OK, &response);
            // Session tokens are base64url and dots, always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&session_id) {
                response.headers_mut().insert(SESSION_HEADER, value);
            }
            Ok(response)
        }
        Reply::Stream(body) => Ok(sse_response(body)),
    }
}

/// The HTTP response of a single (non-batch) JSON reply. A call refused by a rate limit
/// is also an HTTP 429 with `Retry-After`, which HTTP clients and proxies understand.
fn single_reply(stateless: bool, reply: &Value) -> Response<Body> {
    let limited = reply.pointer("/error/code").and_then(Value::as_i64) == Some(code::RATE_LIMITED);
    if !limited {
        return json_response(reply_status(stateless, reply), reply);
    }
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, reply);
    let retry_after = reply
        .pointer("/error/data/retryAfterSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// The HTTP status of a JSON reply: 2026-07-28 answers an unknown method with HTTP 404
/// as well as the JSON-RPC error.
fn reply_status(stateless: bool, reply: &Value) -> StatusCode {
    let unknown_method =
        reply.pointer("/error/code").and_then(Value::as_i64) == Some(code::METHOD_NOT_FOUND);
    if stateless && unknown_method {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    }
}

/// JSON-RPC batches (allowed by 2025-03-26). At most `batch_concurrency` messages run at
/// once, and the answers stream out as one JSON array in the batch's order as they
/// complete, so neither the work a batch starts nor the response it builds grows with its
/// length. A batch of only notifications and responses is answered 202 once all are handled.
async fn handle_batch(context: Context, batch: Vec<Value>) -> Result<Response<Body>, FrontError> {
    use futures_util::StreamExt;
    if batch.is_empty() {
        return Err(FrontError::InvalidRequest("empty batch".into()));
    }
    let concurrency = context.state.http.batch_concurrency;
    let expects_reply = batch.iter().any(|message| {
        !matches!(
            jsonrpc::classify_strict(message),
            Some(Kind::Notification | Kind::Response)
        )
    });
    let context = Arc::new(Context {
        accepts_sse: false,
        ..context
    });
    let replies = futures_util::stream::iter(batch)
        .map(move |message| {
            let context = context.clone();
            async move { batch_reply(&context, message).await }
        })
        .buffered(concurrency);
    if !expects_reply {
        let refusals: Vec<FrontError> = replies
            .filter_map(|reply| async move { reply.err() })
            .collect()
            .await;
        return match refusals.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(status_only(StatusCode::ACCEPTED)),
        };
    }
    let (sender, body) = sse::channel_body();
    tokio::spawn(async move {
        let mut replies = std::pin::pin!(replies);
        let mut first = true;
        if !sse::send(&sender, Bytes::from_static(b"[")).await {
            return;
        }
        while let Some(reply) = replies.next().await {
            // Refused answers inside a batch have no reply of their own; they are counted.
            let Ok(Some(value)) = reply else { continue };
            let mut bytes = if first { Vec::new() } else { vec![b','] };
            first = false;
            if serde_json::to_writer(&mut bytes, &value).is_err() {
                continue;
            }
            // The client hung up or stopped reading: dropping the stream cancels the calls
            // still running and frees their slots.
            if !sse::send(&sender, Bytes::from(bytes)).await {
                return;
            }
        }
        sse::send(&sender, Bytes::from_static(b"]")).await;
    });
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// One batch message's reply: `Ok(None)` for a notification or an accepted answer.
async fn batch_reply(context: &Context, message: Value) -> Result<Option<Value>, FrontError> {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    if is_initialize(&message) {
        return Ok(Some(invalid(
            &message,
            "initialize cannot be part of a batch",
        )));
    }
    match handle_message(context, message).await {
        Reply::Json(value)
        | Reply::Forwarded {
            response: value, ..
        } => Ok(Some(value)),
        Reply::Refused(error) => Err(error),
        // A call that sent notifications or a server request first needs a stream of its
        // own, which an element of a batch cannot have: say so rather than leave it unanswered.
        Reply::Stream(_) => Ok(Some(jsonrpc::error_response(
            id,
            code::INVALID_REQUEST,
            "this call sent notifications or a server request before its result, which a JSON-RPC batch cannot carry; send it on its own with Accept: text/event-stream",
            None,
        ))),
        Reply::Accepted | Reply::Initialized { .. } => Ok(None),
    }
}

/// Parses a request body. A batch is read element by element and refused as soon as it
/// holds more than `max_batch` messages, so an oversized batch is never built in memory.
fn parse_body(body: &[u8], max_batch: usize) -> Result<Value, FrontError> {
    use serde::de::DeserializeSeed;
    let starts_batch = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'[');
    if !starts_batch {
        return serde_json::from_slice(body).map_err(|error| FrontError::Parse(error.to_string()));
    }
    let overflowed = std::cell::Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = BoundedBatch {
        max: max_batch,
        overflowed: &overflowed,
    }
    .deserialize(&mut deserializer)
    .and_then(|batch| deserializer.end().map(|()| batch));
    match parsed {
        Ok(batch) => Ok(Value::Array(batch)),
        Err(_) if overflowed.get() => Err(FrontError::BatchTooLong { max: max_batch }),
        Err(error) => Err(FrontError::Parse(error.to_string())),
    }
}

/// Deserializes a JSON array of at most `max` values, flagging `overflowed` when it stops
/// because there are more.
struct BoundedBatch<'a> {
    max: usize,
    overflowed: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for BoundedBatch<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Vec<Value>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BoundedBatch<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            formatter,
            "a JSON-RPC batch of at most {} messages",
            self.max
        )
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut batch = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        while let Some(message) = seq.next_element::<Value>()? {
            if batch.len() == self.max {
                self.overflowed.set(true);
                return Err(serde::de::Error::custom("the batch is too long"));
            }
            batch.push(message);
        }
        Ok(batch)
    }
}

async fn handle_message(context: &Context, message: Value) -> Reply {
    match jsonrpc::classify_strict(&message) {
        None => Reply::Json(invalid(&message, NOT_JSONRPC)),
        Some(Kind::Response) => answer_relay(context, message).await,
        Some(Kind::Notification) => {
            if jsonrpc::method(&message) == Some("notifications/cancelled")
                && let Some(session) = &context.session
                && let Some(request_id) = message
                    .get("params")
                    .and_then(|params| params.get("requestId"))
            {
                context.state.cancellations.cancel(&session.id, request_id);
            }
            Reply::Accepted
        }
        Some(Kind::Request) => match jsonrpc::check_request_id(&message) {
            Ok(()) => handle_request(context, message).await,
            // JSON-RPC: when the id cannot be used, the error carries id null.
            Err(invalid) => Reply::Json(FrontError::from(invalid).to_jsonrpc(Value::Null)),
        },
    }
}

/// Delivers a client's answer to a server request, if this session is the one it was
/// sent to; anything else is refused, counted and logged, and the request keeps waiting
/// for its real answer.
async fn answer_relay(context: &Context, message: Value) -> Reply {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let refused = |reason: &'static str| {
        context
            .state
            .metrics
            .relay_answers_refused_total
            .with_label_values(&[reason])
            .inc();
        tracing::warn!(relay_id = %id, reason, "refused a client's answer to a server request");
        Reply::Refused(FrontError::RelayAnswerRefused(id.to_string()))
    };
    let Some(session) = &context.session else {
        return refused("no_session");
    };
    match context.state.relays.answer(session, message).await {
        Ok(()) => Reply::Accepted,
        Err(refusal) => refused(refusal.label()),
    }
}

/// Handles a request inside its SERVER span (a no-op span when tracing is off).
async fn handle_request(context: &Context, message: Value) -> Reply {
    let span = spans::request_span(
        &message,
        context
            .session
            .as_deref()
            .map(|session| (session.id.as_str(), session.protocol_version.as_str())),
        context.stateless.then_some(STATELESS_PROTOCOL_VERSION),
        context.passed_on.trace_context(),
    );
    let reply = handle_request_in_span(context, message)
        .instrument(span.clone())
        .await;
    // The one place the reply is known, whoever made it; a stream records its last event.
    match &reply {
        Reply::Json(response)
        | Reply::Forwarded { response, .. }
        | Reply::Initialized { response, .. } => spans::record_response(&span, response),
        Reply::Refused(error) => spans::record_refusal(&span, error.jsonrpc_code()),
        Reply::Accepted | Reply::Stream(_) => {}
    }
    reply
}

async fn handle_request_in_span(context: &Context, message: Value) -> Reply {
    let method = jsonrpc::method(&message).unwrap_or_default().to_owned();
    let subscription_uri = matches!(
        method.as_str(),
        "resources/subscribe" | "resources/unsubscribe"
    )
    .then(|| {
        message
            .pointer("/params/uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
    .flatten();
    if method == "resources/subscribe"
        && let (Some(uri), Some(session)) = (&subscription_uri, &context.session)
        && let Err(error) = session.check_subscription_room(uri)
    {
        context
            .state
            .metrics
            .limit_refusals_total
            .with_label_values(&["max_subscriptions_per_session"])
            .inc();
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        return Reply::Json(error.to_jsonrpc(id));
    }
    let reply = answer_request(context, message).await;
    if let (Some(uri), Some(session), Reply::Json(response)) =
        (&subscription_uri, &context.session, &reply)
        && response.get("result").is_some()
    {
        if method == "resources/subscribe" {
            session.subscribe(uri);
        } else {
            session.unsubscribe(uri);
        }
    }
    match reply {
        Reply::Json(mut response) if context.stateless => {
            stateless::complete_result(&method, &mut response, None);
            Reply::Json(response)
        }
        other => other,
    }
}

async fn answer_request(context: &Context, message: Value) -> Reply {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let method = jsonrpc::method(&message).unwrap_or_default();
    match method {
        "initialize" => initialize(context, &message).await,
        "ping" => Reply::Json(jsonrpc::result_response(id, json!({}))),
        "logging/setLevel" => Reply::Json(set_log_level(context, &message, id).await),
        "server/discover" => Reply::Json(
            stateless::discover(
                &context.state,
                &context.endpoint,
                &context.describing_caller(None),
                id,
            )
            .await,
        ),
        _ => match &context.endpoint {
            Endpoint::Server(server) => forward(context, server.clone(), message, id, false).await,
            Endpoint::Aggregate => aggregated(context, message, id).await,
        },
    }
}

async fn aggregated(context: &Context, message: Value, id: Value) -> Reply {
    let state = &context.state;
    let separator = &state.http.namespace_separator;
    let method = jsonrpc::method(&message).unwrap_or_default();
    if method == "tools/list" {
        state.upstream.wait_all_ready().await;
        return Reply::Json(jsonrpc::result_response(
            id,
            aggregate::tools_list(state.upstream.as_ref(), separator, &context.caller),
        ));
    }
    if let Some(kind) = aggregate::ListKind::from_method(method) {
        state.upstream.wait_all_ready().await;
        let list =
            aggregate::collect_list(state.upstream.as_ref(), separator, kind, &context.caller)
                .await;
        return Reply::Json(jsonrpc::result_response(id, list));
    }
    match aggregate::route(state.upstream.as_ref(), separator, message) {
        Ok(routed) => forward(context, routed.server.clone(), routed.message, id, true).await,
        Err(reason) => {
            let code = if reason.starts_with("method") {
                code::METHOD_NOT_FOUND
            } else {
                code::INVALID_PARAMS
            };
            Reply::Json(jsonrpc::error_response(id, code, reason, None))
        }
    }
}

/// Records the session's log level, here and in the shared tier (so every replica relays
/// this client's lines at its level). Processes are shared by many clients, so the level
/// is not sent to them: the bridge filters the lines it relays to this client instead.
async fn set_log_level(context: &Context, message: &Value, id: Value) -> Value {
    let level = message
        .pointer("/params/level")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(rank) = logging::rank(level) else {
        let reason = format!(
            "unknown log level '{level}'; use debug, info, notice, warning, error, critical, alert or emergency"
        );
        return jsonrpc::error_response(id, code::INVALID_PARAMS, reason, None);
    };
    if let Some(session) = &context.session {
        session.set_log_level(rank);
        context.state.sessions.share_log_level(session, rank).await;
    }
    jsonrpc::result_response(id, json!({}))
}

/// Answers `initialize`: negotiates the version, opens a session and describes the
/// endpoint (a server's own capabilities, or their union on `/mcp`).
async fn initialize(context: &Context, message: &Value) -> Reply {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = negotiate(requested);
    let client_info = ClientInfo::from_initialize(params.get("clientInfo"));
    let session = match context.state.sessions.create(
        context.endpoint.key(),
        version,
        client_info,
        params.get("capabilities"),
        &context.caller.principal.name,
        context.caller.principal.is_individual(),
    ) {
        Ok(session) => session,
        Err(error) => return Reply::Refused(error),
    };
    // Described for this session: a session-isolated server starts its process now.
    let caller = context.describing_caller(Some(&session.id));
    let introduction = match describe(&context.state, &context.endpoint, &caller).await {
        Ok(introduction) => introduction,
        Err(error) => {
            // The client never learns the token: end the session it cannot use, and
            // whatever it started.
            if let Ok(ended) = context
                .state
                .sessions
                .remove(&session.token, context.endpoint.key(), &session.owner)
                .await
            {
                context.state.upstream.end_session(&ended);
            }
            return Reply::Json(FrontError::from(error).to_jsonrpc(id));
        }
    };
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": introduction.capabilities,
        "serverInfo": introduction.server_info,
    });
    if let Some(instructions) = introduction.instructions {
        result["instructions"] = instructions;
    }
    Reply::Initialized {
        response: jsonrpc::result_response(id, result),
        session_id: session.token.clone(),
    }
}

/// The version the front answers with: the client's when the front speaks it,
/// otherwise the newest it speaks (the client then decides whether to continue).
fn negotiate(requested: &str) -> &'static str {
    SESSION_PROTOCOL_VERSIONS
        .iter()
        .find(|version| **version == requested)
        .copied()
        .unwrap_or(SESSION_PROTOCOL_VERSIONS[0])
}

/// Capabilities, serverInfo and instructions for an endpoint.
pub(super) async fn describe(
    state: &AppState,
    endpoint: &Endpoint,
    caller: &Caller,
) -> Result<Introduction, CallError> {
    match endpoint {
        Endpoint::Server(server) => server.introduce_to(caller).await,
        Endpoint::Aggregate => {
            state.upstream.wait_all_ready().await;
            Ok(Introduction {
                capabilities: aggregate::union_capabilities(state.upstream.as_ref()),
                server_info: json!({ "name": "mcp-bridge", "version": env!("CARGO_PKG_VERSION") }),
                instructions: None,
            })
        }
    }
}

/// Forwards a request to one server and turns its outcome into a reply: plain JSON
/// when the response comes first, an SSE stream when notifications precede it.
async fn forward(
    context: &Context,
    server: ServerHandle,
    message: Value,
    client_id: Value,
    prefix_uris: bool,
) -> Reply {
    let state = context.state.clone();
    let method = jsonrpc::method(&message).unwrap_or_default().to_owned();
    let stateless = context.stateless;
    let log_minimum = log_minimum(context, &message);
    let caller = context.caller.clone();
    let audited = Audited::begin(&state, &caller, server.name(), &method, &message);
    let auth_metrics = state.identity.metrics().clone();
    // Outside the access rules (or over a limit that counts cache hits), a request never
    // reaches a backend, nor the cache.
    let refused = match caller.refusal(&auth_metrics, server.name(), &message) {
        Some(denied) => Err(denied),
        None => {
            let tool = called_tool(&method, &message);
            caller.take_token_before_cache(&auth_metrics, server.name(), tool)
        }
    };
    if let Err(refusal) = refused {
        let response = FrontError::from(refusal).to_jsonrpc(client_id);
        if let Some(audited) = &audited {
            audited.finish(&state, &response, "none");
        }
        return Reply::Json(response);
    }
    let answering = Answering {
        caller: caller.clone(),
        server: server.name().clone(),
        method: method.clone(),
        prefix_uris,
        stateless,
    };
    let round = stateless
        .then(|| input_rounds::RoundContext::of(context.endpoint.key(), server.name(), &message));
    let parking = answering.clone();
    // A 2026-07-28 retry that carries the bridge's requestState resumes the call it names.
    if let Some(round) = &round
        && message.pointer("/params/requestState").is_some()
    {
        let response = input_rounds::resume(&state, &answering, round, &message, client_id).await;
        if let Some(audited) = &audited {
            audited.finish(&state, &response, "none");
        }
        return Reply::Json(response);
    }
    // Held until the answer is complete (streamed answers included): the session's cap
    // counts calls, not HTTP requests.
    let call_slot = match &context.session {
        Some(session) => match session.call_slot(server.acquire_timeout()).await {
            Ok(permit) => Some(permit),
            Err(error) => {
                state
                    .metrics
                    .limit_refusals_total
                    .with_label_values(&["max_inflight_per_session"])
                    .inc();
                return Reply::Json(error.to_jsonrpc(client_id));
            }
        },
        None => None,
    };
    let session = context.session.clone();
    let mut cancel = context
        .session
        .as_ref()
        .map(|session| state.cancellations.register(&session.id, &client_id));
    let in_flight = state.principal_calls.enter(&caller.principal.name);
    let router_caller = Caller {
        admission: caller.admission(&auth_metrics),
        ..context.upstream_caller(context.session.as_ref().map(|session| session.id.as_str()))
    };
    let mut message = message;
    context.passed_on.add_trace_context(&mut message);
    let mut call = state
        .upstream
        .forward(&server, message, context.accepts_sse, &router_caller)
        .await;
    spans::name_after_tool(&method, call.listed_tool());
    // The client's answer to the call, written to the audit log with what the cache did.
    let audit_state = state.clone();
    let finish = move |outcome: Result<Value, CallError>,
                       client_id: Value,
                       hint: Option<CacheHint>,
                       cache_outcome: &str|
          -> Value {
        let response = answering.answer(outcome, client_id, hint);
        if let Some(audited) = &audited {
            audited.finish(&audit_state, &response, cache_outcome);
        }
        response
    };
    let mut relay_ids = Vec::new();
    // Events the client cannot receive are settled here until one can be streamed.
    let first_event = loop {
        let Some(step) = next_unless_cancelled(&mut call, &mut cancel).await else {
            return Reply::Json(cancelled(client_id));
        };
        match step {
            Step::Done(outcome) => {
                let cache = CacheReport {
                    generation: call.policy_generation(),
                    result: call.cache_outcome(),
                    hint: call.cache_hint(),
                    provenance: call.cache_provenance(),
                };
                let response = finish(outcome, client_id, cache.hint, call.cache_outcome());
                spans::record_outcome(call.cache_outcome(), cache.generation);
                drop(in_flight);
                return Reply::Forwarded { response, cache };
            }
            Step::Event(event) => {
                match deliverable(
                    &state,
                    event,
                    session.as_deref(),
                    log_minimum,
                    &mut relay_ids,
                    round.as_ref(),
                )
                .await
                {
                    Delivery::Send(bytes) => break bytes,
                    Delivery::Settled => continue,
                    Delivery::AskClient { request, answer } => {
                        let asked = input_rounds::park_for_input(
                            &state,
                            &parking,
                            round.as_ref(),
                            call,
                            request,
                            answer,
                            client_id.clone(),
                        )
                        .await;
                        match asked {
                            Ok(response) => {
                                let response = finish(Ok(response), client_id, None, "none");
                                return Reply::Json(response);
                            }
                            Err(returned) => {
                                call = returned;
                                continue;
                            }
                        }
                    }
                }
            }
        }
    };
    let (sender, body) = sse::channel_body();
    // In the request's span, which the stream keeps open until its last event.
    tokio::spawn(
        async move {
            let mut pending = Some(first_event);
            loop {
                let bytes = match pending.take() {
                    Some(bytes) => bytes,
                    None => {
                        let step = tokio::select! {
                            // The client hung up: dropping `call` cancels the request on the server.
                            () = sender.closed() => break,
                            step = next_unless_cancelled(&mut call, &mut cancel) => match step {
                                Some(step) => step,
                                None => {
                                    let response = cancelled(client_id.clone());
                                    spans::record_response(&Span::current(), &response);
                                    sse::send(&sender, sse::event(&response)).await;
                                    break;
                                }
                            },
                        };
                        match step {
                            Step::Event(event) => {
                                match deliverable(
                                    &state,
                                    event,
                                    session.as_deref(),
                                    log_minimum,
                                    &mut relay_ids,
                                    round.as_ref(),
                                )
                                .await
                                {
                                    Delivery::Send(bytes) => bytes,
                                    Delivery::Settled => continue,
                                    Delivery::AskClient { request, answer } => {
                                        let asked = input_rounds::park_for_input(
                                            &state,
                                            &parking,
                                            round.as_ref(),
                                            call,
                                            request,
                                            answer,
                                            client_id.clone(),
                                        )
                                        .await;
                                        match asked {
                                            Ok(response) => {
                                                let response =
                                                    finish(Ok(response), client_id, None, "none");
                                                spans::record_response(&Span::current(), &response);
                                                sse::send(&sender, sse::event(&response)).await;
                                                break;
                                            }
                                            Err(returned) => {
                                                call = returned;
                                                continue;
                                            }
                                        }
                                    }
                                }
                            }
                            Step::Done(outcome) => {
                                let response = finish(
                                    outcome,
                                    client_id.clone(),
                                    call.cache_hint(),
                                    call.cache_outcome(),
                                );
                                spans::record_outcome(
                                    call.cache_outcome(),
                                    call.policy_generation(),
                                );
                                spans::record_response(&Span::current(), &response);
                                sse::send(&sender, sse::event(&response)).await;
                                break;
                            }
                        }
                    }
                };
                if !sse::send(&sender, bytes).await {
                    break;
                }
            }
            state.relays.forget(&relay_ids);
            drop(call_slot);
            drop(in_flight);
        }
        .in_current_span(),
    );
    Reply::Stream(body)
}

/// The least severe log level the client of this request wants relayed, or `None` for
/// no log lines at all (a 2026-07-28 request that names no level).
fn log_minimum(context: &Context, message: &Value) -> Option<u8> {
    if context.stateless {
        return stateless::log_level(message).and_then(logging::rank);
    }
    Some(
        context
            .session
            .as_ref()
            .map_or(logging::ALL_LEVELS, |session| session.log_level()),
    )
}

/// The call's next step, or `None` once the client has cancelled it (the caller then
/// drops the call, which cancels it on the server).
async fn next_unless_cancelled(
    call: &mut Box<dyn ForwardedCall>,
    cancel: &mut Option<super::relays::CancelGuard>,
) -> Option<Step> {
    let Some(guard) = cancel.as_mut() else {
        return Some(call.next().await);
    };
    tokio::select! {
        step = call.next() => Some(step),
        // Only a real cancellation counts; a dropped sender (a client reusing an id
        // while the first call is in flight) disables this branch instead.
        Ok(()) = &mut guard.signal => None,
    }
}

fn cancelled(client_id: Value) -> Value {
    jsonrpc::error_response(
        client_id,
        code::REQUEST_CANCELLED,
        "the client cancelled the request",
        None,
    )
}

/// Turns a call event into an SSE event for the client, or settles it without the
/// client: log lines the client did not ask for are dropped, and server requests a
/// sessionless (2026-07-28) client cannot receive are answered by the bridge. A relayed
/// server request may be answered only by `session`, the one that made the call.
async fn deliverable(
    state: &AppState,
    event: CallEvent,
    session: Option<&Session>,
    log_minimum: Option<u8>,
    relay_ids: &mut Vec<String>,
    round: Option<&input_rounds::RoundContext>,
) -> Delivery {
    match event {
        CallEvent::Notification(notification) => {
            let is_log = jsonrpc::method(&notification) == Some("notifications/message");
            let wanted = !is_log
                || log_minimum.is_some_and(|minimum| logging::passes(&notification, minimum));
            match wanted {
                true => Delivery::Send(sse::event(&notification)),
                false => Delivery::Settled,
            }
        }
        CallEvent::ServerRequest {
            mut request,
            answer,
        } => {
            if let Some(session) = session {
                relay_ids.push(state.relays.register(answer, &mut request, session));
                return Delivery::Send(sse::event(&request));
            }
            let capabilities = round.and_then(|round| round.capabilities.as_ref());
            let Some(settled) = input_rounds::settle(state, &request, capabilities) else {
                return Delivery::AskClient { request, answer };
            };
            if let Err(error) = answer.send(&settled).await {
                tracing::debug!(%error, "could not answer a server request");
            }
            Delivery::Settled
        }
    }
}

/// What becomes of one call event.
enum Delivery {
    /// An SSE event for the client.
    Send(Bytes),
    /// Nothing for the client: dropped, or answered by the bridge.
    Settled,
    /// A 2026-07-28 client must answer the backend's request: the call is parked and the
    /// client gets an `input_required` round.
    AskClient {
        request: Value,
        answer: Arc<dyn AnswerSink>,
    },
}

/// How a forwarded call's outcome becomes the client's answer.
#[derive(Clone)]
pub(crate) struct Answering {
    pub(crate) caller: identity::Caller,
    server: Arc<str>,
    method: String,
    prefix_uris: bool,
    stateless: bool,
}

impl Answering {
    pub(crate) fn answer(
        &self,
        outcome: Result<Value, CallError>,
        client_id: Value,
        hint: Option<CacheHint>,
    ) -> Value {
        let mut response = match outcome {
            Ok(response) => response,
            Err(error) => return FrontError::from(error).to_jsonrpc(client_id),
        };
        response["id"] = client_id;
        // An input round is answered as the bridge built it: nothing else may be added.
        if response.pointer("/result/resultType") == Some(&json!("input_required")) {
            return response;
        }
        self.caller
            .filter_list(&self.server, &self.method, response.get_mut("result"));
        if self.prefix_uris {
            aggregate::prefix_result_uris(response.get_mut("result"), &self.server);
        }
        if self.stateless {
            stateless::complete_result(&self.method, &mut response, hint);
        }
        response
    }
}

async fn delete(
    state: &AppState,
    endpoint: &Endpoint,
    headers: &HeaderMap,
    owner: &str,
) -> Result<Response<Body>, FrontError> {
    // Without a session there is nothing to end (and 2026-07-28 has no DELETE).
    let id =
        header_str(headers, SESSION_HEADER).ok_or(FrontError::MethodNotAllowed(Method::DELETE))?;
    let session = state.sessions.remove(id, endpoint.key(), owner).await?;
    state.upstream.end_session(&session);
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// Finds the request's session and decides its protocol from its version signals
/// (`versions::resolve`, which also applies `http.version_mismatch`). `initialize` and
/// sessionless (2026-07-28) requests need no session; every other request must carry
/// a live session of this endpoint.
async fn resolve_session(
    state: &AppState,
    endpoint: &Endpoint,
    headers: &HeaderMap,
    message: &Value,
    owner: &mcp_bridge_auth::Principal,
) -> Result<(Option<Arc<Session>>, Resolution), FrontError> {
    let session = match header_str(headers, SESSION_HEADER) {
        Some(id) => Some(
            state
                .sessions
                .get_for(id, endpoint.key(), &owner.name, owner.is_individual())
                .await?,
        ),
        None => None,
    };
    let signals = versions::Signals {
        session_version: session
            .as_ref()
            .map(|session| session.protocol_version.as_str()),
        header: header_str(headers, PROTOCOL_VERSION_HEADER),
        body: stateless::meta_version(message),
        initialize: is_initialize(message),
    };
    let outcome = versions::resolve(&signals, state.http.version_mismatch);
    versions::count(&state.metrics, &outcome);
    let resolution = outcome?;
    // A client's answer to a server request needs its session too: only the session a
    // request was relayed to may answer it.
    if resolution.protocol == Protocol::Unidentified && session.is_none() {
        if jsonrpc::classify(message) == Some(Kind::Response) {
            state
                .metrics
                .relay_answers_refused_total
                .with_label_values(&["no_session"])
                .inc();
            let id = message.get("id").cloned().unwrap_or(Value::Null);
            return Err(FrontError::RelayAnswerRefused(id.to_string()));
        }
        return Err(FrontError::MissingSession);
    }
    Ok((session, resolution))
}

fn is_initialize(message: &Value) -> bool {
    jsonrpc::method(message) == Some("initialize")
}

fn invalid(message: &Value, reason: &str) -> Value {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    jsonrpc::error_response(id, code::INVALID_REQUEST, reason, None)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), FrontError> {
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(FrontError::UnsupportedMediaType {
        got: content_type.to_owned(),
    })
}

/// Reads a request body under `http.max_body_bytes`, `http.body_read_timeout` and
/// `http.body_min_rate`.
///
/// A declared `Content-Length` over the cap is refused before a byte of the body is read, so
/// the client is not made to send (nor the bridge to receive) what would be thrown away. The
/// deadline and the minimum rate bound how long a client trickling its body can hold a
/// connection and a task.
pub(super) async fn read_body(
    body: Incoming,
    http: &HttpConfig,
    limit: usize,
) -> Result<Bytes, FrontError> {
    if body.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(FrontError::BodyTooLarge { limit });
    }
    let mut body = body;
    let started = Instant::now();
    let deadline = started + http.body_read_timeout;
    let mut rate = RateWindow::new(started, http.body_min_rate);
    let mut chunks: Vec<Bytes> = Vec::with_capacity(1);
    let mut received = 0usize;
    loop {
        let wake = rate.end().map_or(deadline, |end| end.min(deadline));
        match tokio::time::timeout_at(wake.into(), body.frame()).await {
            Ok(None) => break,
            Ok(Some(Err(error))) => return Err(FrontError::BodyRead(error.to_string())),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    received += data.len();
                    if received > limit {
                        return Err(FrontError::BodyTooLarge { limit });
                    }
                    rate.received += data.len();
                    chunks.push(data);
                }
            }
            // The deadline or the end of a rate window: judged below.
            Err(_) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(FrontError::BodyTimeout(format!(
                "{received} bytes arrived in {:?} and the body was not complete (http.body_read_timeout = {:?})",
                now - started,
                http.body_read_timeout
            )));
        }
        rate.judge(now)?;
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    })
}

/// The minimum body rate, judged over consecutive windows of [`BODY_RATE_WINDOW`].
struct RateWindow {
    /// Bytes per second the body must keep up; 0 means no minimum.
    min_rate: usize,
    start: Instant,
    received: usize,
}

impl RateWindow {
    fn new(start: Instant, min_rate: usize) -> RateWindow {
        RateWindow {
            min_rate,
            start,
            received: 0,
        }
    }

    /// When the current window ends, if there is a minimum to judge.
    fn end(&self) -> Option<Instant> {
        (self.min_rate > 0).then(|| self.start + BODY_RATE_WINDOW)
    }

    /// At the end of a window, refuses a body that fell below the minimum rate in it, and
    /// starts the next window.
    fn judge(&mut self, now: Instant) -> Result<(), FrontError> {
        let Some(end) = self.end() else {
            return Ok(());
        };
        if now < end {
            return Ok(());
        }
        let needed = self
            .min_rate
            .saturating_mul(BODY_RATE_WINDOW.as_secs() as usize);
        if self.received < needed {
            return Err(FrontError::BodyTimeout(format!(
                "{} bytes arrived in the last {BODY_RATE_WINDOW:?}, below http.body_min_rate ({} bytes per second)",
                self.received, self.min_rate
            )));
        }
        self.start = now;
        self.received = 0;
        Ok(())
    }
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Whether the client takes an SSE response (`Accept: text/event-stream`).
pub(super) fn accepts_sse(headers: &HeaderMap) -> bool {
    header_str(headers, header::ACCEPT.as_str())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}

/// A complete (non-streaming) response.
pub(super) fn full_response(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

pub(super) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    full_response(status, Some("application/json"), Bytes::from(bytes))
}

pub(super) fn sse_response(body: BoxBody<Bytes, Infallible>) -> Response<Body> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub(super) fn status_only(status: StatusCode) -> Response<Body> {
    full_response(status, None, Bytes::new())
}

/// The tool a request calls, for the limits (`tools/call` only; other requests match the
/// limit rules that name no tools).
fn called_tool<'a>(method: &str, message: &'a Value) -> &'a str {
    if method != "tools/call" {
        return "";
    }
    message
        .pointer("/params/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}
