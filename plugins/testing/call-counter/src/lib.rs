//! Test-only: a stateful plugin, which therefore does not declare itself pure. It counts
//! the decisions it has made (in the instance's memory, across calls) and caches every
//! odd-numbered call for 60 s and bypasses every even-numbered one, whatever the call.
//! Asked once per call, it bypasses half of them; a host that reused its answers for
//! identical calls would get a different share, which is what the tests look for.

use std::cell::Cell;
use std::time::Duration;

use mcp_bridge_plugin_sdk::prelude::*;

pub struct CallCounter {
    decisions: Cell<u64>,
}

impl Plugin for CallCounter {
    type Config = ();
    // Not pure: each answer depends on how many calls came before it.

    fn new((): ()) -> Result<Self, String> {
        Ok(CallCounter {
            decisions: Cell::new(0),
        })
    }
}

impl CachePolicy for CallCounter {
    fn decide(&self, _call: &Call) -> Decision {
        let count = self.decisions.get() + 1;
        self.decisions.set(count);
        match count % 2 {
            1 => Directive::ttl(Duration::from_secs(60)).into(),
            _ => Decision::Bypass,
        }
    }
}

mcp_bridge_plugin_sdk::export!(CallCounter);
