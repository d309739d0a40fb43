//! Test-only: a plugin of the second contract, `mcp-bridge:policy@0.2.0`, generated
//! directly from the frozen copy in `wit/v0.2.0/` (the SDK builds 0.3.0 plugins only).
//! Its `init` reports `cache-policy` and `ttl-table`, as a 0.2.0 plugin could, and no
//! purity, which 0.2.0 cannot express: every read-only tool is cached for 222 s with tag
//! `legacy-v0-2`, and every TTL row says 222 s. Its `invalidation-rules` export exists,
//! as the world requires, but is no capability, so the host never calls it. Its `init`
//! writes a line through the 0.2.0 `log` import, which the host must still provide.

wit_bindgen::generate!({
    path: "../../../wit/v0.2.0",
    world: "plugin",
});

use exports::mcp_bridge::policy::{cache_policy, invalidation_rules, lifecycle, ttl_table};
use mcp_bridge::policy::types::{
    CacheDirective, Call, CallKind, Decision, InvalidationAnswer, Outcome, TtlAnswer,
};

const TTL_MS: u64 = 222_000;

struct LegacyV02;

impl lifecycle::Guest for LegacyV02 {
    fn init(_config: String) -> Result<lifecycle::Capabilities, String> {
        mcp_bridge::policy::log::write(
            mcp_bridge::policy::log::Level::Info,
            "legacy 0.2.0 plugin started",
        );
        Ok(lifecycle::Capabilities::CACHE_POLICY | lifecycle::Capabilities::TTL_TABLE)
    }
}

impl cache_policy::Guest for LegacyV02 {
    fn decide(call: Call) -> Decision {
        if call.kind != CallKind::Tool || call.annotations.read_only != Some(true) {
            return Decision::Abstain;
        }
        Decision::Cache(CacheDirective {
            ttl_ms: Some(TTL_MS),
            ignore_arguments: Vec::new(),
            tags: vec!["legacy-v0-2".to_owned()],
            shared: true,
            stale_while_revalidate_ms: None,
            stale_if_error_ms: None,
            negative_ttl_ms: None,
        })
    }
}

impl ttl_table::Guest for LegacyV02 {
    fn ttl(_server: String, _tool: String) -> TtlAnswer {
        TtlAnswer::TtlMs(TTL_MS)
    }
}

impl invalidation_rules::Guest for LegacyV02 {
    fn invalidations(_call: Call, _outcome: Outcome) -> InvalidationAnswer {
        InvalidationAnswer::Abstain
    }
}

export!(LegacyV02);
