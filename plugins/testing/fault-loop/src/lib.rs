//! Test-only: `decide` loops forever on every call except the host's smoke call, so the
//! host's CPU deadline must interrupt it. Config `{"on_smoke": true}` loops on the smoke
//! call too, so the host rejects it at load.

use std::hint::black_box;

use mcp_bridge_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The server of the call the host makes while validating a plugin.
const SMOKE_SERVER: &str = "mcp-bridge-smoke";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    on_smoke: bool,
}

pub struct FaultLoop {
    on_smoke: bool,
}

impl Plugin for FaultLoop {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(FaultLoop {
            on_smoke: config.on_smoke,
        })
    }
}

impl CachePolicy for FaultLoop {
    fn decide(&self, call: &Call) -> Decision {
        if !self.on_smoke && call.server == SMOKE_SERVER {
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
