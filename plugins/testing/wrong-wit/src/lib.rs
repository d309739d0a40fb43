//! Test-only: exports `cache-policy` with the wrong type for `decide` (see `wit/`), so the
//! host must refuse it and name the mismatch. It uses wit-bindgen directly: the SDK
//! could not build something this wrong.

wit_bindgen::generate!({
    path: "wit",
    world: "wrong-wit",
});

use exports::mcp_bridge::policy::{cache_policy, lifecycle};

struct WrongWit;

impl lifecycle::Guest for WrongWit {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }
}

impl cache_policy::Guest for WrongWit {
    fn decide(_call: String) -> bool {
        false
    }
}

export!(WrongWit);
