//! The backend: stdio MCP server processes, pooled per server.
//!
//! Nothing here knows about HTTP or caching. The router leases a slot from a [`Pool`],
//! starts an [`InflightCall`] on that slot's [`Process`], and reads events and the
//! response from it.

mod budget;
mod catalog;
mod error;
mod framing;
mod health;
mod metrics;
mod orphan;
mod pool;
mod process;
mod procfs;
mod stderr;
mod subreaper;
mod supervisor;
mod usage;

pub use budget::{BudgetCap, ProcessBudget};
pub use catalog::Catalog;
pub use error::BackendError;
pub use health::{HealthReport, HealthStatus};
pub use metrics::{PROCESS_STATES, PoolMetrics};
pub use orphan::supervise_with;
pub use pool::{CatalogObserver, CatalogReport, Lease, Pool, Readiness};
pub use process::{
    CallEvent, CallStep, InflightCall, Process, STDIO_PROTOCOL_VERSIONS, ServerIdentity,
};
pub use subreaper::run_if_requested as run_supervisor_if_requested;
pub use usage::Usage;

// The per-call id remapping and the line framing toward a child, public so that
// `benches/hot_path.rs` measures the real code; nothing outside the backend calls them.
#[doc(hidden)]
pub use framing::{Frame, LineReader};
#[doc(hidden)]
pub use process::{answered_call_id, assign_call_id, encode_line};
