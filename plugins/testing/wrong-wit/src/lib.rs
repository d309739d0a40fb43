//! Test-only: exports `cache-policy` with the wrong type for `decide` (see `wit/`), so the
//! host must refuse it and name the mismatch. It uses wit-bindgen directly: the SDK
//! could not build something this wrong.

wit_bindgen::generate!({
    path: "wit",
    world: "wrong-wit",
});

use exports::mcp_bridge::policy::{cache_policy, invalidation_rules, lifecycle, ttl_table};

struct WrongWit;

impl lifecycle::Guest for WrongWit {
    fn init(_config: String) -> Result<lifecycle::Capabilities, String> {
        Ok(lifecycle::Capabilities::CACHE_POLICY)
    }
}

impl cache_policy::Guest for WrongWit {
    fn decide(_call: String) -> bool {
        false
    }
}

impl ttl_table::Guest for WrongWit {
    fn ttl() -> bool {
        false
    }
}

impl invalidation_rules::Guest for WrongWit {
    fn invalidations() -> bool {
        false
    }
}

export!(WrongWit);
