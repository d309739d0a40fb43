//! mcp-bridge: pools stdio MCP servers behind a Streamable HTTP endpoint.

pub mod config;
pub mod demo;
