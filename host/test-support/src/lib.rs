//! The harness `mcp-bridge`'s integration tests (`tests/integration/`) and benches
//! (`benches/`) share; a dev-dependency only, never published.
//!
//! - [`Bridge`]: `mcp-bridge serve` as a real process on a free loopback port, with its
//!   config written for the run, its log captured, and its admin views read over HTTP; ended
//!   by pid when dropped.
//! - [`RedisServer`]: a real `redis-server` on a free loopback port with a directory of its
//!   own, optionally persistent, password-protected or TLS-only ([`RedisOptions`]); stopped,
//!   killed and restarted on the same port by the tests.
//! - [`Nginx`]: a real nginx balancing round-robin, with no affinity, over several bridges;
//!   its access log tells which one served each request.
//! - [`Prometheus`]: a real Prometheus scraping bridges every second and evaluating rule
//!   files, queried through its HTTP API; [`promtool`] checks and unit-tests rule files.
//! - [`OtlpReceiver`]: an OTLP/HTTP trace receiver on a free loopback port that decodes
//!   the bridge's exports with the official OpenTelemetry protobuf definitions.
//! - [`ensure_installed`]: a Debian package the tests need, installed through
//!   `scripts/install-services.sh` when its binary is missing.
//! - [`certs`]: a CA and a loopback server certificate made for the run with `openssl`.
//! - [`wait`]: the one bounded poll ([`eventually`], [`poll_until`], [`SETTLE`]) for state
//!   another thread or process updates later.
//! - [`stdio`]: MCP clients that speak to a server process over its stdin and stdout (the
//!   benches' direct and spawn-per-call baselines).
//! - [`process`], [`repo`], [`bench`]: process facts from `/proc`, the repository's scripts
//!   and plugin builds, and what every harness bench does the same way.
//!
//! The HTTP/MCP client and the percentile are product code (`bench load` ships them); they
//! are re-exported here so tests and benches use those very implementations:
//! [`client`] and [`percentile`].
//!
//! The crate cannot know where cargo put the `mcp-bridge` binary (only the package's own
//! tests and benches get `CARGO_BIN_EXE_mcp-bridge`), so whatever starts a process takes
//! the executable's path.

// The harness signals the processes it started (SIGTERM, SIGKILL by pid); std has no
// wrapper for kill(2), so those few libc calls are the only unsafe code here.
#![allow(unsafe_code)]

pub mod bench;
mod bridge;
pub mod certs;
mod nginx;
pub mod otlp;
pub mod process;
mod prometheus;
mod redis;
pub mod repo;
mod service;
pub mod stdio;
pub mod wait;

pub use mcp_bridge::lab::load::{Target, client};
pub use mcp_bridge::lab::percentile;

pub use bridge::{Bridge, metric};
pub use nginx::Nginx;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use prometheus::{Prometheus, SCRAPE_INTERVAL, promtool};
pub use redis::{RedisOptions, RedisServer};
pub use service::ensure_installed;
pub use wait::{SETTLE, eventually, poll_until};
