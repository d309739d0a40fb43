//! Test-only: panics ("deliberate trap") in `decide` and `invalidations` for a call whose
//! arguments have a key `fault` (`{"fault": true}`), and abstains otherwise, so it passes
//! any smoke call and faults when a test asks it to. Config `{"always": true}` panics in
//! every policy call except the host's smoke call (a plugin broken for everything);
//! `{"on_smoke": true}` panics on the smoke call too, so the host rejects it at load;
//! `{"tool": "get_tasks"}` panics in every call about that tool (on any server), smoke
//! included, and abstains for every other: a plugin broken for one tool alone.

use std::time::Duration;

use mcp_bridge_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The server of the call the host makes while validating a plugin.
const SMOKE_SERVER: &str = "mcp-bridge-smoke";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    always: bool,
    on_smoke: bool,
    tool: Option<String>,
}

pub struct FaultTrap {
    always: bool,
    on_smoke: bool,
    tool: Option<String>,
}

/// Whether a call's canonical arguments ask for a fault (they have a key `fault`).
fn asks_for_a_fault(canonical_arguments: &str) -> bool {
    canonical_arguments.contains("\"fault\":")
}

impl FaultTrap {
    /// Panics when the config says so for this question; `asked` says whether the call's
    /// arguments asked for a fault (`ttl` has no arguments).
    fn maybe_trap(&self, what: &str, server: &str, tool: &str, asked: bool) {
        if let Some(only) = &self.tool {
            if only == tool {
                panic!("deliberate trap in `{what}` for tool `{tool}` on server `{server}`");
            }
            return;
        }
        if self.on_smoke || (self.always && server != SMOKE_SERVER) || asked {
            panic!("deliberate trap in `{what}` for server `{server}`");
        }
    }
}

impl Plugin for FaultTrap {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(FaultTrap {
            always: config.always,
            on_smoke: config.on_smoke,
            tool: config.tool,
        })
    }
}

impl CachePolicy for FaultTrap {
    fn decide(&self, call: &Call) -> Decision {
        self.maybe_trap(
            "decide",
            call.server,
            call.name,
            asks_for_a_fault(call.canonical_arguments),
        );
        Decision::Abstain
    }
}

impl TtlTable for FaultTrap {
    fn ttl(&self, server: &str, tool: &str) -> Option<Duration> {
        self.maybe_trap("ttl", server, tool, false);
        None
    }
}

impl InvalidationRules for FaultTrap {
    fn invalidations(&self, call: &Call, _outcome: &Outcome) -> Option<Vec<Invalidation>> {
        self.maybe_trap(
            "invalidations",
            call.server,
            call.name,
            asks_for_a_fault(call.canonical_arguments),
        );
        None
    }
}

mcp_bridge_plugin_sdk::export!(FaultTrap);
