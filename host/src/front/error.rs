//! The front's error type: what a client did wrong (or what failed for it), as an HTTP
//! status plus a JSON-RPC error body that says what, where and how to fix it.

use http::StatusCode;
use serde_json::Value;

use crate::backend::BackendError;
use crate::jsonrpc::{self, code};

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error(
        "request body exceeds max_body_bytes ({limit} bytes); send a smaller request or raise http.max_body_bytes"
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
    #[error("missing or wrong bearer token; send 'Authorization: Bearer <token>'")]
    Unauthorized,
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(http::Method),
    #[error("unsupported MCP-Protocol-Version '{got}'; supported: {supported}")]
    UnsupportedProtocolVersion { got: String, supported: String },
    #[error("header {header} says '{header_value}' but the body says '{body_value}'")]
    HeaderMismatch {
        header: &'static str,
        header_value: String,
        body_value: String,
    },
    #[error("params._meta is missing the required key '{0}'")]
    MissingMeta(&'static str),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the bridge is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Backend(#[from] BackendError),
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
            | FrontError::MissingMeta(_)
            | FrontError::HeaderMismatch { .. } => StatusCode::BAD_REQUEST,
            FrontError::UnknownServer { .. }
            | FrontError::UnknownSession(_)
            | FrontError::NotFound(_) => StatusCode::NOT_FOUND,
            FrontError::ForbiddenOrigin(_) => StatusCode::FORBIDDEN,
            FrontError::Unauthorized => StatusCode::UNAUTHORIZED,
            FrontError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            FrontError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            // A backend failure is an answer to a valid request: JSON-RPC carries it.
            FrontError::Backend(_) => StatusCode::OK,
        }
    }

    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            FrontError::Parse(_) => code::PARSE_ERROR,
            FrontError::HeaderMismatch { .. } => code::HEADER_MISMATCH,
            FrontError::UnsupportedProtocolVersion { .. } => code::UNSUPPORTED_PROTOCOL_VERSION,
            FrontError::MissingMeta(_) => code::INVALID_PARAMS,
            FrontError::Backend(error) => error.jsonrpc_code(),
            FrontError::ShuttingDown => code::SERVER_UNAVAILABLE,
            _ => code::INVALID_REQUEST,
        }
    }

    /// Whether the client may send the same request again and expect a different result.
    pub fn retryable(&self) -> bool {
        match self {
            FrontError::Backend(error) => error.retryable(),
            // 408 says the same request, sent promptly on a new connection, may succeed.
            FrontError::ShuttingDown | FrontError::BodyTimeout(_) => true,
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
            _ => None,
        };
        jsonrpc::error_response(id, self.jsonrpc_code(), self.to_string(), data)
    }
}
