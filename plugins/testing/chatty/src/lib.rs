//! Test-only: writes to stdout and stderr the way any Rust code does, with `println!`
//! and `eprintln!` (and a `print!` in pieces), to prove they reach the bridge's log
//! instead of trapping. Config `lines` sets how many stdout lines each decision prints,
//! to exercise the host's rate limit. It abstains from every decision.

use mcp_bridge_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    lines: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { lines: 1 }
    }
}

pub struct Chatty {
    lines: u32,
}

impl Plugin for Chatty {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        println!("chatty: init says hello on stdout");
        Ok(Chatty {
            lines: config.lines,
        })
    }
}

impl CachePolicy for Chatty {
    fn decide(&self, call: &Call) -> Decision {
        eprintln!("chatty: stderr for {}", call.name);
        // One line written in three pieces still arrives as one line.
        print!("chatty: pieces ");
        print!("for {} ", call.name);
        println!("end");
        for line in 0..self.lines {
            println!("chatty: stdout line {line} for {}", call.name);
        }
        Decision::Abstain
    }
}

mcp_bridge_plugin_sdk::export!(Chatty);
