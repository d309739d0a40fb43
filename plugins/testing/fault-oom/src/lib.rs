//! Test-only: `decide` allocates without bound for a call whose arguments have a key `fault`
//! (`{"fault": true}`), so the host's memory limit must stop it; it abstains otherwise. Config
//! `{"always": true}` does it on every call except the host's smoke call;
//! `{"on_smoke": true}` on the smoke call too, so the host rejects it at load.

use std::hint::black_box;

use mcp_bridge_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The server of the call the host makes while validating a plugin.
const SMOKE_SERVER: &str = "mcp-bridge-smoke";

const MIB: usize = 1 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    always: bool,
    on_smoke: bool,
}

pub struct FaultOom {
    always: bool,
    on_smoke: bool,
}

impl Plugin for FaultOom {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(FaultOom {
            always: config.always,
            on_smoke: config.on_smoke,
        })
    }
}

impl CachePolicy for FaultOom {
    fn decide(&self, call: &Call) -> Decision {
        let asked = call.canonical_arguments.contains("\"fault\":");
        let faults = self.on_smoke || (self.always && call.server != SMOKE_SERVER) || asked;
        if !faults {
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
