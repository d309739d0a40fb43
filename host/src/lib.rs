//! mcp-bridge: pools stdio MCP servers behind a Streamable HTTP endpoint, caches tool
//! calls under policies that WebAssembly plugins can supply, and records traffic for a
//! policy lab. ARCHITECTURE.md is the map; each layer imports only the ones below it.
//!
//! - [`front`]: HTTP and MCP's Streamable HTTP transport: sessions, protocol versions,
//!   aggregation, the operational routes, and the guard of the admin routes, whose
//!   content the application plugs in ([`front::AdminRoutes`]).
//! - [`router`]: the one path every forwarded call takes: lease, send, timeout, retry;
//!   the cache layer (asks the policies, drives the cache) and the recording hook.
//! - [`backend`]: the server processes and their pools; knows nothing of HTTP or caching.
//! - [`cache`]: the response store: keys, tags, single-flight; knows nothing of policies.
//! - [`plugin`]: the wasmtime host that runs policy plugins as [`policy::Policy`]s and
//!   publishes new chains through a [`policy::PolicySink`].
//! - [`policy`]: the policy vocabulary, the `Policy` trait, `PolicyChain`, the built-in
//!   policy.
//! - [`trace`]: the trace file format and the recorder, used by the router and the lab.
//! - [`lab`]: `bench policies` (replay in virtual time), `bench load`, workloads.
//! - [`config`], [`metrics`], [`jsonrpc`]: shared by the layers above; [`demo`]: the demo
//!   stdio server, which imports nothing of the bridge.
//!
//! The binary (`main.rs`, and `app/` for the wiring and the admin API) is the one place
//! that knows every layer.

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
pub use mcp_bridge_trace as trace;
pub use mcp_bridge_upstream as upstream;
