//! Test-only: `init` always fails, so the host rejects the plugin at load.

use mcp_bridge_plugin_sdk::prelude::*;
use mcp_bridge_plugin_sdk::serde_json::Value;

pub struct FaultInit;

impl Plugin for FaultInit {
    /// Any config is accepted here, so the failure is always `new`'s own.
    type Config = Value;

    fn new(_config: Value) -> Result<Self, String> {
        Err("deliberate init failure: fault-init refuses every config".to_owned())
    }
}

impl CachePolicy for FaultInit {
    fn decide(&self, _call: &Call) -> Decision {
        Decision::Abstain
    }
}

mcp_bridge_plugin_sdk::export!(FaultInit);
