//! mcp-bridge: pools stdio MCP servers behind a Streamable HTTP endpoint.
//!
//! Layers, outermost first (see ARCHITECTURE.md): [`front`] speaks HTTP and MCP's
//! Streamable HTTP transport to clients; [`router`] is the one path every forwarded
//! call takes (where the cache will sit); [`backend`] owns the server processes.
//! [`config`] parses and validates the configuration they all run on.

pub mod cache;
pub mod front;
pub mod lab;
pub mod metrics;
pub mod plugin;
pub mod router;

pub use mcp_bridge_backend as backend;
pub use mcp_bridge_config as config;
pub use mcp_bridge_demo as demo;
pub use mcp_bridge_jsonrpc as jsonrpc;
pub use mcp_bridge_policy as policy;
