//! Test-only: a plugin of the first contract, `mcp-bridge:policy@0.1.0`, generated
//! directly from the frozen copy in `wit/v0.1.0/` (the SDK builds plugins of the current
//! contract only). It exports `cache-policy` and `ttl-table` and nothing else, as 0.1.0
//! plugins chose their interfaces by world: every read-only tool is cached for 333 s with
//! tag `legacy`, and every TTL row says 333 s.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "cache-policy-ttl-table-plugin",
});

use exports::mcp_bridge::policy::{cache_policy, lifecycle, ttl_table};
use mcp_bridge::policy::types::{CacheDirective, Call, CallKind, Decision, TtlAnswer};

const TTL_MS: u64 = 333_000;

struct Legacy;

impl lifecycle::Guest for Legacy {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }
}

impl cache_policy::Guest for Legacy {
    fn decide(call: Call) -> Decision {
        if call.kind != CallKind::Tool || call.annotations.read_only != Some(true) {
            return Decision::Abstain;
        }
        Decision::Cache(CacheDirective {
            ttl_ms: Some(TTL_MS),
            ignore_arguments: Vec::new(),
            tags: vec!["legacy".to_owned()],
            shared: true,
            stale_while_revalidate_ms: None,
            stale_if_error_ms: None,
            negative_ttl_ms: None,
        })
    }
}

impl ttl_table::Guest for Legacy {
    fn ttl(_server: String, _tool: String) -> TtlAnswer {
        TtlAnswer::TtlMs(TTL_MS)
    }
}

export!(Legacy);
