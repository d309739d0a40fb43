//! mcp-bridge: pools stdio MCP servers behind a Streamable HTTP endpoint.
//!
//! Layers, outermost first (see ARCHITECTURE.md): [`front`] speaks HTTP and MCP's
//! Streamable HTTP transport to clients; [`router`] is the one path every forwarded
//! call takes (where the cache will sit); [`backend`] owns the server processes.
//! [`config`] parses and validates the configuration they all run on.

pub mod backend;
pub mod cache;
pub mod config;
pub mod demo;
pub mod front;
pub mod jsonrpc;
pub mod lab;
pub mod metrics;
pub mod plugin;
pub mod policy;
pub mod router;
pub mod trace;
