//! Test-only: `decide` allocates without bound on every call except the host's smoke
//! call, so the host's memory limit must stop it. Config `{"on_smoke": true}` does it on
//! the smoke call too, so the host rejects it at load.

use std::hint::black_box;

use mcp_bridge_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The server of the call the host makes while validating a plugin.
const SMOKE_SERVER: &str = "mcp-bridge-smoke";

const MIB: usize = 1 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    on_smoke: bool,
}

pub struct FaultOom {
    on_smoke: bool,
}

impl Plugin for FaultOom {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(FaultOom {
            on_smoke: config.on_smoke,
        })
    }
}

impl CachePolicy for FaultOom {
    fn decide(&self, call: &Call) -> Decision {
        if !self.on_smoke && call.server == SMOKE_SERVER {
            return Decision::Abstain;
        }
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Each block grows linear memory by about a MiB, which is what the host's
            // limit counts. Writing both ends (not every page) keeps the block in use
            // without spending the CPU deadline on page faults before the limit is hit.
            let mut block: Vec<u8> = Vec::with_capacity(MIB);
            block.push(1);
            if let Some(last) = block.spare_capacity_mut().last_mut() {
                last.write(1);
            }
            hoard.push(black_box(block));
            black_box(&hoard);
        }
    }
}

mcp_bridge_plugin_sdk::export!(FaultOom);
