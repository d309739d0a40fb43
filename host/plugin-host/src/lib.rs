//! WebAssembly component policy plugins: the wasmtime host that loads, sandboxes,
//! hot-swaps and calls them as [`mcp_bridge_policy::Policy`] implementations.
//!
//! - `bindings`: types generated from `wit/` (contract 0.3.0 and the frozen 0.2.0 and 0.1.0) and
//!   their conversions to the policy seam.
//! - `engine`: the one wasmtime engine, epoch ticks, the compiled-component disk cache.
//! - `sandbox`: store state and limits, the `log` import, stdout/stderr as log lines, the
//!   otherwise empty WASI.
//! - `version`: one loaded file: contract version, the interfaces it implements,
//!   warm-instance factory.
//! - `health`: a binding's fault records, per-(server, tool) quarantine and its
//!   escalation to the whole binding.
//! - `wasm_policy`: a binding as a `Policy`, with safe defaults on faults.
//! - `smoke`: the smoke calls over the servers' tool catalogues, at a binding's start and
//!   for tools learned while it serves.
//! - `host`: which versions and bindings serve; validation and the atomic swap.
//! - `overrides`: the log lines, at each swap, naming the TTLs a table sets over a
//!   plugin's own directive.
//! - `watch`: the directory watcher and admin-requested rescans.

pub mod bindings;
pub mod engine;
pub mod error;
pub mod health;
pub mod host;
mod metrics;
mod overrides;
pub mod sandbox;
pub mod smoke;
pub mod version;
pub mod wasm_policy;
pub mod watch;

pub use engine::PluginEngine;
pub use error::{Fault, FaultKind, PluginError};
pub use health::{BindingHealth, FaultRecord, Quarantine};
pub use host::{PluginHost, RescanReport};
pub use metrics::PluginMetrics;
pub use smoke::{CatalogueTool, Catalogues, KnownTools, LateSmoke};
pub use version::{Limits, PluginVersion};
pub use wasm_policy::{SMOKE_SERVER, WasmPolicy};
pub use watch::PluginWatcher;

use std::sync::Arc;

use mcp_bridge_config::BridgeConfig;

use mcp_bridge_policy::PolicySink;

/// The plugin host and its directory watcher, running together.
pub struct PluginRuntime {
    pub host: Arc<PluginHost>,
    pub watcher: PluginWatcher,
}

impl PluginRuntime {
    /// Starts plugins when `[plugins] dir` is set: loads the directory, publishes the
    /// chain to `sink`, and starts watching. `None` when there is nothing to run, which
    /// includes having no sink: without a cache, no policy is ever asked.
    pub fn start(
        config: &BridgeConfig,
        sink: Option<Arc<dyn PolicySink>>,
        metrics: &Arc<PluginMetrics>,
    ) -> Result<Option<PluginRuntime>, PluginError> {
        let Some(dir) = config.plugins.dir.clone() else {
            return Ok(None);
        };
        let Some(sink) = sink else {
            tracing::warn!(dir = %dir.display(), "[plugins] is configured but the cache is disabled; plugins are not loaded");
            return Ok(None);
        };
        let host = PluginHost::start(
            config.plugins.clone(),
            dir.clone(),
            Arc::new(config.builtin_policy()),
            sink,
            metrics.clone(),
        )?;
        let watcher =
            PluginWatcher::start(host.clone(), config.plugins.watch_debounce).map_err(|error| {
                PluginError::Watch {
                    dir,
                    message: error.to_string(),
                }
            })?;
        Ok(Some(PluginRuntime { host, watcher }))
    }
}
