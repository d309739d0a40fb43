//! Test-only: the first mistake of a new plugin author, reaching outside the sandbox.
//! `decide` reads a file with `std::fs`, which on `wasm32-wasip2` calls the
//! `wasi:filesystem` imports the host does not provide, so every decision traps (the
//! smoke call at load included) and the host rejects the plugin, naming the import.

use std::time::Duration;

use mcp_bridge_plugin_sdk::prelude::*;

pub struct SandboxEscape;

impl Plugin for SandboxEscape {
    type Config = ();

    fn new(_config: ()) -> Result<Self, String> {
        Ok(SandboxEscape)
    }
}

impl CachePolicy for SandboxEscape {
    fn decide(&self, _call: &Call) -> Decision {
        match std::fs::read_to_string("ttl-table.txt") {
            Ok(_) => Decision::Cache(Directive::ttl(Duration::from_secs(60))),
            Err(_) => Decision::Abstain,
        }
    }
}

mcp_bridge_plugin_sdk::export!(SandboxEscape);
