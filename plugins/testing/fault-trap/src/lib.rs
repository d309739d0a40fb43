//! Test-only: panics ("deliberate trap") in every policy call except the host's smoke
//! call, so it loads and then faults on real calls. Config `{"on_smoke": true}` makes it
//! fault on the smoke call too, so the host rejects it at load. Config
//! `{"tool": "get_tasks"}` makes it fault only in calls about that tool (on any server),
//! and abstain for every other: a plugin broken for one tool alone.

use std::time::Duration;

use mcp_bridge_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The server of the call the host makes while validating a plugin.
const SMOKE_SERVER: &str = "mcp-bridge-smoke";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    on_smoke: bool,
    tool: Option<String>,
}

pub struct FaultTrap {
    on_smoke: bool,
    tool: Option<String>,
}

impl FaultTrap {
    fn maybe_trap(&self, what: &str, server: &str, tool: &str) {
        if let Some(only) = &self.tool {
            if only == tool {
                panic!("deliberate trap in `{what}` for tool `{tool}` on server `{server}`");
            }
            return;
        }
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
            tool: config.tool,
        })
    }
}

impl CachePolicy for FaultTrap {
    fn decide(&self, call: &Call) -> Decision {
        self.maybe_trap("decide", call.server, call.name);
        Decision::Abstain
    }
}

impl TtlTable for FaultTrap {
    fn ttl(&self, server: &str, tool: &str) -> Option<Duration> {
        self.maybe_trap("ttl", server, tool);
        None
    }
}

impl InvalidationRules for FaultTrap {
    fn invalidations(&self, call: &Call, _outcome: &Outcome) -> Option<Vec<Invalidation>> {
        self.maybe_trap("invalidations", call.server, call.name);
        None
    }
}

mcp_bridge_plugin_sdk::export!(FaultTrap);
