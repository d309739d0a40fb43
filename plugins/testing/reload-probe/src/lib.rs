//! Test-only: one policy, two observably different plugins. `ReloadProbe<1>` (exported
//! by `reload-probe-v1`) caches every read-only tool for 111 s with tag `probe-v1` and
//! answers 111 s for every TTL; `ReloadProbe<2>` (`reload-probe-v2`) answers 222 s with
//! tag `probe-v2`. Reload tests swap the two files.

use std::time::Duration;

use mcp_bridge_plugin_sdk::prelude::*;
use mcp_bridge_plugin_sdk::serde_json::Value;

/// The probe of build `VERSION`.
pub struct ReloadProbe<const VERSION: u64>;

impl<const VERSION: u64> ReloadProbe<VERSION> {
    const TTL: Duration = Duration::from_secs(111 * VERSION);

    fn tag() -> String {
        format!("probe-v{VERSION}")
    }
}

impl<const VERSION: u64> Plugin for ReloadProbe<VERSION> {
    type Config = Value;

    fn new(_config: Value) -> Result<Self, String> {
        Ok(ReloadProbe)
    }
}

impl<const VERSION: u64> CachePolicy for ReloadProbe<VERSION> {
    fn decide(&self, call: &Call) -> Decision {
        if call.is_tool() && call.is_read_only() {
            Directive::ttl(Self::TTL).tag(Self::tag()).into()
        } else {
            Decision::Abstain
        }
    }
}

impl<const VERSION: u64> TtlTable for ReloadProbe<VERSION> {
    fn ttl(&self, _server: &str, _tool: &str) -> Option<Duration> {
        Some(Self::TTL)
    }
}
