//! Test-only: one source, two observably different builds. The default build caches
//! every read-only tool for 111 s with tag `probe-v1` and answers 111 s for every TTL;
//! the `v2` feature makes both 222 s (tag `probe-v2`). Reload tests swap the two files.

use std::time::Duration;

use mcp_bridge_plugin_sdk::prelude::*;
use mcp_bridge_plugin_sdk::serde_json::Value;

#[cfg(not(feature = "v2"))]
const VERSION: (Duration, &str) = (Duration::from_secs(111), "probe-v1");
#[cfg(feature = "v2")]
const VERSION: (Duration, &str) = (Duration::from_secs(222), "probe-v2");

pub struct ReloadProbe;

impl Plugin for ReloadProbe {
    type Config = Value;

    fn new(_config: Value) -> Result<Self, String> {
        Ok(ReloadProbe)
    }
}

impl CachePolicy for ReloadProbe {
    fn decide(&self, call: &Call) -> Decision {
        let (ttl, tag) = VERSION;
        if call.is_tool() && call.is_read_only() {
            Directive::ttl(ttl).tag(tag).into()
        } else {
            Decision::Abstain
        }
    }
}

impl TtlTable for ReloadProbe {
    fn ttl(&self, _server: &str, _tool: &str) -> Option<Duration> {
        Some(VERSION.0)
    }
}

mcp_bridge_plugin_sdk::export!(ReloadProbe);
