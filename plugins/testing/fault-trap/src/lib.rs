//! Test-only: panics ("deliberate trap") in every policy call except the host's smoke
//! call, so it loads and then faults on real calls. Config `{"on_smoke": true}` makes it
//! fault on the smoke call too, so the host rejects it at load.

use std::time::Duration;

use mcp_bridge_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The server of the call the host makes while validating a plugin.
const SMOKE_SERVER: &str = "mcp-bridge-smoke";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    on_smoke: bool,
}

pub struct FaultTrap {
    on_smoke: bool,
}

impl FaultTrap {
    fn maybe_trap(&self, what: &str, server: &str) {
        if self.on_smoke || server != SMOKE_SERVER {
            panic!("deliberate trap in `{what}` for server `{server}`");
        }
    }
}

impl Plugin for FaultTrap {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(FaultTrap {
            on_smoke: config.on_smoke,
        })
    }
}

impl CachePolicy for FaultTrap {
    fn decide(&self, call: &Call) -> Decision {
        self.maybe_trap("decide", call.server);
        Decision::Abstain
    }
}

impl TtlTable for FaultTrap {
    fn ttl(&self, server: &str, _tool: &str) -> Option<Duration> {
        self.maybe_trap("ttl", server);
        None
    }
}

impl InvalidationRules for FaultTrap {
    fn invalidations(&self, call: &Call, _outcome: &Outcome) -> Option<Vec<Invalidation>> {
        self.maybe_trap("invalidations", call.server);
        None
    }
}

mcp_bridge_plugin_sdk::export!(FaultTrap);
