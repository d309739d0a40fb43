//! The backend layer's error type: everything that can go wrong between the router and a server process.

use std::sync::Arc;
use std::time::Duration;

use mcp_bridge_jsonrpc::code;

/// A failure to get an answer from a backend server. Each variant names the server so
/// a client error message says where the problem is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("server '{server}': failed to start `{command}`: {source}")]
    Spawn {
        server: Arc<str>,
        command: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("server '{server}': initialize handshake failed: {reason}")]
    Handshake { server: Arc<str>, reason: String },
    #[error("server '{server}': process exited while handling the request ({status})")]
    ProcessExited { server: Arc<str>, status: String },
    #[error(
        "server '{server}': no response within {timeout:?}; the request was cancelled on the server"
    )]
    Timeout { server: Arc<str>, timeout: Duration },
    #[error(
        "server '{server}': pool exhausted: all {processes} processes are at max_inflight={max_inflight} and \
         {reason}; retry later, or raise max_connections, max_inflight or max_queue"
    )]
    PoolExhausted {
        server: Arc<str>,
        processes: usize,
        max_inflight: usize,
        reason: &'static str,
    },
    #[error(
        "server '{server}': its response was {length} bytes, over max_line_bytes ({limit}); raise \
         max_line_bytes for this server or ask for less"
    )]
    ResponseTooLarge {
        server: Arc<str>,
        length: usize,
        limit: usize,
    },
    #[error("server '{server}' is unavailable: {reason}")]
    Unavailable { server: Arc<str>, reason: String },
    #[error("server '{server}' is shutting down")]
    ShuttingDown { server: Arc<str> },
}

impl BackendError {
    /// Whether the same request may succeed if sent again (elsewhere or later). Only
    /// read-only calls are ever retried, and only once; this says whether trying is sensible.
    pub fn retryable(&self) -> bool {
        matches!(self, BackendError::ProcessExited { .. })
    }

    /// The JSON-RPC error code a client receives for this failure.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            BackendError::ProcessExited { .. } => code::CONNECTION_CLOSED,
            BackendError::Timeout { .. } => code::REQUEST_TIMEOUT,
            BackendError::PoolExhausted { .. } => code::POOL_EXHAUSTED,
            BackendError::ResponseTooLarge { .. } => code::INTERNAL_ERROR,
            BackendError::Spawn { .. }
            | BackendError::Handshake { .. }
            | BackendError::Unavailable { .. }
            | BackendError::ShuttingDown { .. } => code::SERVER_UNAVAILABLE,
        }
    }

    /// A short label for the `kind` dimension of `mcp_bridge_backend_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::Spawn { .. } => "spawn",
            BackendError::Handshake { .. } => "handshake",
            BackendError::ProcessExited { .. } => "exited",
            BackendError::Timeout { .. } => "timeout",
            BackendError::PoolExhausted { .. } => "pool_exhausted",
            BackendError::ResponseTooLarge { .. } => "response_too_large",
            BackendError::Unavailable { .. } => "unavailable",
            BackendError::ShuttingDown { .. } => "shutting_down",
        }
    }

    /// The server the failure belongs to.
    pub fn server(&self) -> &str {
        match self {
            BackendError::Spawn { server, .. }
            | BackendError::Handshake { server, .. }
            | BackendError::ProcessExited { server, .. }
            | BackendError::Timeout { server, .. }
            | BackendError::PoolExhausted { server, .. }
            | BackendError::ResponseTooLarge { server, .. }
            | BackendError::Unavailable { server, .. }
            | BackendError::ShuttingDown { server } => server,
        }
    }
}
