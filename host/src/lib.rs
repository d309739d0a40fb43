//! mcp-bridge: pools stdio MCP servers behind a Streamable HTTP endpoint, caches tool
//! calls under policies that WebAssembly plugins can supply, and records traffic for a
//! policy lab.
//!
//! Each layer is a crate of its own under `host/` (ARCHITECTURE.md has the map and what
//! each crate may not use); this library only re-exports them under their layer names, so
//! the integration tests and the benches write `mcp_bridge::router`, `mcp_bridge::front`
//! and so on:
//!
//! - [`front`]: HTTP and MCP's Streamable HTTP transport; it serves an [`upstream::Upstream`].
//! - [`auth`]: who is calling (JWTs, API keys, the shared token), access rules, limits.
//! - [`upstream`]: the seam between the front and what serves its calls.
//! - [`router`]: the one path every forwarded call takes, the cache layer, the recording hook.
//! - [`backend`]: the server processes and their pools.
//! - [`cache`]: the response store: keys, tags, single-flight.
//! - [`plugin`]: the wasmtime host that runs policy plugins as [`policy::Policy`]s.
//! - [`policy`]: the policy vocabulary, shared with the plugin SDK.
//! - [`trace`]: the trace file format and the recorder.
//! - [`lab`]: `bench policies`, `bench load`, workloads.
//! - [`config`], [`metrics`], [`jsonrpc`]: shared below the layers; [`demo`]: the demo
//!   stdio server.
//!
//! The binary (`main.rs`, and `app/` for the wiring and the admin API) is the one place
//! that knows every layer. One module of its own lives here, [`subscriber`]: the log half
//! of the binary's `tracing` subscriber, here so the spans bench builds the same one.

pub use mcp_bridge_auth as auth;
pub use mcp_bridge_backend as backend;
pub use mcp_bridge_cache as cache;
pub use mcp_bridge_config as config;
pub use mcp_bridge_demo as demo;
pub use mcp_bridge_front as front;
pub use mcp_bridge_jsonrpc as jsonrpc;
pub use mcp_bridge_lab as lab;
pub use mcp_bridge_metrics as metrics;
pub use mcp_bridge_plugin_host as plugin;
pub use mcp_bridge_policy as policy;
pub use mcp_bridge_router as router;
pub use mcp_bridge_shared as shared;
pub use mcp_bridge_telemetry as telemetry;
pub use mcp_bridge_trace as trace;
pub use mcp_bridge_upstream as upstream;

pub mod subscriber;
