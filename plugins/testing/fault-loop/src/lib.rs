//! Test-only: `decide` loops forever for a call whose arguments have a key `fault`
//! (`{"fault": true}`), so the host's CPU deadline must interrupt it; it abstains otherwise. Config
//! `{"always": true}` does it on every call except the host's smoke call;
//! `{"on_smoke": true}` on the smoke call too, so the host rejects it at load.

use std::hint::black_box;

use mcp_bridge_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The server of the call the host makes while validating a plugin.
const SMOKE_SERVER: &str = "mcp-bridge-smoke";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    always: bool,
    on_smoke: bool,
}

pub struct FaultLoop {
    always: bool,
    on_smoke: bool,
}

impl Plugin for FaultLoop {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(FaultLoop {
            always: config.always,
            on_smoke: config.on_smoke,
        })
    }
}

impl CachePolicy for FaultLoop {
    fn decide(&self, call: &Call) -> Decision {
        let asked = call.canonical_arguments.contains("\"fault\":");
        let faults = self.on_smoke || (self.always && call.server != SMOKE_SERVER) || asked;
        if !faults {
            return Decision::Abstain;
        }
        // `black_box` keeps the optimizer from proving anything about the loop.
        let mut spins = 0u64;
        loop {
            spins = black_box(spins.wrapping_add(1));
        }
    }
}

mcp_bridge_plugin_sdk::export!(FaultLoop);
