//! The front's error type: what a client did wrong (or what failed for it), as an HTTP
//! status plus a JSON-RPC error body that says what, where and how to fix it.

use http::StatusCode;
use serde_json::Value;

use mcp_bridge_jsonrpc::{self as jsonrpc, code};
use mcp_bridge_upstream::CallError;

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error(
        "request body exceeds {limit} bytes (http.max_body_bytes on /mcp, 64 KiB on /admin); send a smaller request or raise http.max_body_bytes"
    )]
    BodyTooLarge { limit: usize },
    #[error(
        "the request body came too slowly: {0}; send the whole body right after the headers (limits: http.body_read_timeout, http.body_min_rate)"
    )]
    BodyTimeout(String),
    #[error("Content-Type must be application/json, got '{got}'")]
    UnsupportedMediaType { got: String },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("parse error: the body is not valid JSON ({0})")]
    Parse(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("unknown server '{name}'; configured servers: {known}")]
    UnknownServer { name: String, known: String },
    #[error(
        "unknown or expired session '{0}'; send a new initialize request without Mcp-Session-Id"
    )]
    UnknownSession(String),
    #[error(
        "missing Mcp-Session-Id header; send initialize first and repeat the id it returns on every request"
    )]
    MissingSession,
    #[error("Origin '{0}' is not allowed; add it to http.allowed_origins")]
    ForbiddenOrigin(String),
    #[error(
        "Host '{0}' is not a loopback name: with no admin credential the admin routes answer only requests addressed to localhost, 127.0.0.1 or [::1] (a guard against DNS rebinding); use one of those, add the host's origin to http.allowed_origins, or set http.admin_token"
    )]
    ForbiddenHost(String),
    #[error("missing or wrong bearer token; send 'Authorization: Bearer <token>'")]
    Unauthorized,
    #[error(
        "admin routes need http.admin_token, which is not set: the client token (http.auth_token) does not grant admin; set http.admin_token and send it as 'Authorization: Bearer <admin token>'"
    )]
    AdminDisabled,
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(http::Method),
    #[error(
        "{what} '{got}' is not a protocol version the bridge speaks (it speaks {supported}); {advice}"
    )]
    UnsupportedProtocolVersion {
        /// Where the version came from: the header or the body's `_meta`.
        what: &'static str,
        got: String,
        supported: String,
        /// What to send instead.
        advice: String,
    },
    /// The request's version signals disagree (see `versions`).
    #[error(transparent)]
    VersionConflict(#[from] super::versions::VersionConflict),
    #[error("invalid request: {0}")]
    InvalidId(#[from] mcp_bridge_jsonrpc::InvalidId),
    #[error(
        "header {header} says '{header_value}' but the body says '{body_value}'; send a {header} header that repeats the body ('{body_value}'): intermediaries route on it"
    )]
    HeaderMismatch {
        header: &'static str,
        header_value: String,
        body_value: String,
    },
    #[error(
        "params._meta is missing the required key '{0}': every 2026-07-28 request carries io.modelcontextprotocol/protocolVersion and io.modelcontextprotocol/clientCapabilities there; add it, or send initialize (without MCP-Protocol-Version: 2026-07-28) to use a session instead"
    )]
    MissingMeta(&'static str),
    #[error("not found: {0}")]
    NotFound(String),
    #[error(
        "every one of the bridge's {max} session slots (http.max_sessions) is held by a session in use (a call in flight, or a request within the last tenth of http.session_idle_timeout); retry shortly, end unused sessions with DELETE, or raise http.max_sessions"
    )]
    TooManySessions { max: usize },
    #[error(
        "every one of this principal's {max} session slots (http.max_sessions_per_principal) is held by a session in use; end unused sessions with DELETE, retry shortly, or raise http.max_sessions_per_principal"
    )]
    TooManySessionsForPrincipal { max: usize },
    #[error(
        "this session already has {limit} calls in flight (http.max_inflight_per_session) and none finished within {waited_ms} ms; wait for your earlier calls before sending more"
    )]
    SessionBusy { limit: usize, waited_ms: u128 },
    #[error(
        "the batch holds more than {max} messages (http.max_batch_messages); split it into smaller batches"
    )]
    BatchTooLong { max: usize },
    #[error(
        "no server request with id {0} is waiting for an answer from this session; answer only requests this session received, with its Mcp-Session-Id, on the endpoint that sent them"
    )]
    RelayAnswerRefused(String),
    #[error("this session already subscribes to {max} resources; unsubscribe from some first")]
    TooManySubscriptions { max: usize },
    #[error(
        "this session already has {max} GET streams open; close one before opening another (one stream per session is enough)"
    )]
    TooManyStreams { max: usize },
    #[error("the bridge is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Upstream(#[from] CallError),
    /// The request's credential was refused; `challenge` is its `WWW-Authenticate`.
    #[error("{error}")]
    Auth {
        error: mcp_bridge_auth::AuthError,
        challenge: String,
    },
    #[error(
        "principal '{principal}' may not use the admin routes: it holds none of the roles in auth.admin_roles ({roles}); send the http.admin_token, or a credential of a principal with one of those roles"
    )]
    NotAdmin { principal: String, roles: String },
    #[error(
        "session '{0}' was opened by another principal; a session belongs to the principal that sent initialize: send initialize with your own credential"
    )]
    SessionOfAnotherPrincipal(String),
    #[error(
        "this endpoint's session token would be longer than {max} bytes, which no client can send back; shorten the server's name in the configuration"
    )]
    SessionTokenTooLong { max: usize },
}

impl FrontError {
    pub fn status(&self) -> StatusCode {
        match self {
            FrontError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FrontError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FrontError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            FrontError::BodyRead(_)
            | FrontError::Parse(_)
            | FrontError::InvalidRequest(_)
            | FrontError::MissingSession
            | FrontError::UnsupportedProtocolVersion { .. }
            | FrontError::VersionConflict(_)
            | FrontError::InvalidId(_)
            | FrontError::MissingMeta(_)
            | FrontError::HeaderMismatch { .. }
            | FrontError::BatchTooLong { .. }
            | FrontError::RelayAnswerRefused(_)
            | FrontError::TooManySubscriptions { .. } => StatusCode::BAD_REQUEST,
            FrontError::UnknownServer { .. }
            | FrontError::UnknownSession(_)
            | FrontError::NotFound(_) => StatusCode::NOT_FOUND,
            FrontError::ForbiddenOrigin(_)
            | FrontError::ForbiddenHost(_)
            | FrontError::AdminDisabled
            | FrontError::NotAdmin { .. }
            | FrontError::SessionOfAnotherPrincipal(_) => StatusCode::FORBIDDEN,
            FrontError::Auth { error, .. } => {
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            FrontError::TooManyStreams { .. } => StatusCode::CONFLICT,
            FrontError::SessionTokenTooLong { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            FrontError::Unauthorized => StatusCode::UNAUTHORIZED,
            FrontError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            FrontError::ShuttingDown
            | FrontError::TooManySessions { .. }
            | FrontError::TooManySessionsForPrincipal { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // Refused per call, inside a request that was itself valid.
            FrontError::SessionBusy { .. } => StatusCode::OK,
            // A backend failure is an answer to a valid request: JSON-RPC carries it.
            FrontError::Upstream(_) => StatusCode::OK,
        }
    }

    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            FrontError::Parse(_) => code::PARSE_ERROR,
            FrontError::HeaderMismatch { .. } | FrontError::VersionConflict(_) => {
                code::HEADER_MISMATCH
            }
            FrontError::UnsupportedProtocolVersion { .. } => code::UNSUPPORTED_PROTOCOL_VERSION,
            FrontError::MissingMeta(_) => code::INVALID_PARAMS,
            FrontError::Upstream(error) => error.code,
            FrontError::ShuttingDown => code::SERVER_UNAVAILABLE,
            FrontError::TooManySessions { .. } | FrontError::TooManySessionsForPrincipal { .. } => {
                code::TOO_MANY_SESSIONS
            }
            FrontError::SessionBusy { .. } => code::SESSION_BUSY,
            _ => code::INVALID_REQUEST,
        }
    }

    /// Whether the client may send the same request again and expect a different result.
    pub fn retryable(&self) -> bool {
        match self {
            FrontError::Upstream(error) => error.retryable,
            FrontError::Auth { error, .. } => error.retryable(),
            // 408 says the same request, sent promptly on a new connection, may succeed.
            FrontError::ShuttingDown
            | FrontError::BodyTimeout(_)
            | FrontError::TooManySessions { .. }
            | FrontError::TooManySessionsForPrincipal { .. }
            | FrontError::SessionBusy { .. } => true,
            _ => false,
        }
    }

    /// The JSON-RPC error body for this failure, answering request `id` (null when unknown).
    pub fn to_jsonrpc(&self, id: Value) -> Value {
        let data = match self {
            FrontError::UnsupportedProtocolVersion { got, .. } => Some(serde_json::json!({
                "supported": super::stateless::supported_versions(),
                "requested": got,
            })),
            FrontError::VersionConflict(conflict) => Some(serde_json::json!({
                "kind": conflict.kind.as_str(),
            })),
            FrontError::Upstream(error) => error.data.clone(),
            FrontError::Auth { error, .. } => Some(serde_json::json!({
                "reason": error.reason(),
            })),
            _ => None,
        };
        jsonrpc::error_response(id, self.jsonrpc_code(), self.to_string(), data)
    }
}
