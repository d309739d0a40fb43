//! Test-only: a valid component of the real contract's `base` world, exporting only
//! `lifecycle` and none of the policy interfaces, which the host must refuse. It uses
//! wit-bindgen directly on the repo's `wit/`: the SDK always exports a policy interface.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "base",
});

use exports::mcp_bridge::policy::lifecycle;

struct NoPolicy;

impl lifecycle::Guest for NoPolicy {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }
}

export!(NoPolicy);
