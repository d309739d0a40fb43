//! Test-only: an SDK plugin that implements none of `CachePolicy`, `TtlTable` and
//! `InvalidationRules`, so its `init` reports no capability and the host must refuse it.

use mcp_bridge_plugin_sdk::Plugin;
use mcp_bridge_plugin_sdk::serde_json::Value;

pub struct NoPolicy;

impl Plugin for NoPolicy {
    type Config = Value;

    fn new(_config: Value) -> Result<Self, String> {
        Ok(NoPolicy)
    }
}

mcp_bridge_plugin_sdk::export!(NoPolicy);
