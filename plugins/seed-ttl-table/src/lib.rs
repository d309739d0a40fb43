//! A TTL table by server and tool, from the plugin's config:
//!
//! ```toml
//! [[plugins.policy]]
//! name = "tasks-ttl"
//! file = "seed-ttl-table.wasm"
//! servers = ["demo"]
//! config = { ttl = { demo = { get_tasks = "30s", create_task = 0 }, "*" = { list_tools = "1h" } } }
//! ```
//!
//! A TTL is a duration (`"30s"`, `"5m"`, `"1h"`, `"250ms"`) or a number of seconds; zero
//! means never cache. The most specific row wins (exact server and tool, then exact
//! server with `*`, then `*` with the exact tool, then `*` with `*`); no row abstains.
//! Without a `ttl` table the plugin serves the seed guide's table ([`seed_table`]).

use std::time::Duration;

use mcp_bridge_plugin_sdk::config::TtlMap;
use mcp_bridge_plugin_sdk::{Plugin, TtlTable, log};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `{ "<server or *>": { "<tool or *>": <ttl> } }`.
    pub ttl: TtlMap,
}

pub struct SeedTtlTable {
    table: TtlMap,
}

/// The seed guide's table, served when the config gives none.
pub fn seed_table() -> TtlMap {
    const MINUTE: u64 = 60;
    let secs = Duration::from_secs;
    TtlMap::new()
        .with("*", "list_tools", secs(60 * MINUTE))
        .with("*", "get_tool_schema", secs(60 * MINUTE))
        .with("demo", "get_clients", secs(5 * MINUTE))
        .with("demo", "get_habits", secs(5 * MINUTE))
        .with("demo", "get_tasks", secs(60))
        .with("demo", "get_today_metrics", secs(60))
        .with("demo", "create_task", Duration::ZERO)
        .with("demo", "update_task", Duration::ZERO)
        .with("demo", "complete_task", Duration::ZERO)
}

impl Plugin for SeedTtlTable {
    type Config = Config;
    /// Pure: its answers come from the configured table alone.
    const PURE: bool = true;

    fn new(config: Config) -> Result<Self, String> {
        let table = if config.ttl.is_empty() {
            log::info("no `ttl` table in the config: serving the seed guide's table");
            seed_table()
        } else {
            config.ttl
        };
        Ok(SeedTtlTable { table })
    }
}

impl TtlTable for SeedTtlTable {
    fn ttl(&self, server: &str, tool: &str) -> Option<Duration> {
        self.table.lookup(server, tool)
    }
}

mcp_bridge_plugin_sdk::export!(SeedTtlTable);

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    #[test]
    fn serves_the_seed_table_without_config() {
        for config in ["", "{}", r#"{"ttl": {}}"#] {
            let plugin = SeedTtlTable::from_config_json(config).unwrap();
            assert_eq!(plugin.ttl("demo", "get_tasks"), secs(60));
            assert_eq!(plugin.ttl("demo", "get_clients"), secs(300));
            assert_eq!(plugin.ttl("demo", "create_task"), secs(0));
            assert_eq!(plugin.ttl("other", "list_tools"), secs(3600));
            assert_eq!(plugin.ttl("other", "get_tasks"), None);
        }
    }

    #[test]
    fn the_most_specific_row_wins() {
        let plugin = SeedTtlTable::from_config_json(
            r#"{"ttl": {
                "*": {"*": "1s", "get": "2s"},
                "demo": {"*": "3s", "get": "4s"}
            }}"#,
        )
        .unwrap();
        assert_eq!(plugin.ttl("demo", "get"), secs(4));
        assert_eq!(plugin.ttl("demo", "put"), secs(3));
        assert_eq!(plugin.ttl("other", "get"), secs(2));
        assert_eq!(plugin.ttl("other", "put"), secs(1));
    }

    #[test]
    fn durations_are_strings_or_seconds() {
        let plugin = SeedTtlTable::from_config_json(
            r#"{"ttl": {"s": {"a": "250ms", "b": "5m", "c": 30, "d": 0, "e": "1h"}}}"#,
        )
        .unwrap();
        assert_eq!(plugin.ttl("s", "a"), Some(Duration::from_millis(250)));
        assert_eq!(plugin.ttl("s", "b"), secs(300));
        assert_eq!(plugin.ttl("s", "c"), secs(30));
        assert_eq!(plugin.ttl("s", "d"), secs(0));
        assert_eq!(plugin.ttl("s", "e"), secs(3600));
        assert_eq!(plugin.ttl("t", "a"), None);
    }

    #[test]
    fn a_bad_duration_names_server_tool_and_value() {
        let error = SeedTtlTable::from_config_json(r#"{"ttl": {"demo": {"get_tasks": "soon"}}}"#)
            .err()
            .unwrap();
        assert!(error.contains("ttl.demo.get_tasks"), "{error}");
        assert!(error.contains("soon"), "{error}");
        let error = SeedTtlTable::from_config_json(r#"{"ttl": {"demo": {"get_tasks": -5}}}"#)
            .err()
            .unwrap();
        assert!(error.contains("ttl.demo.get_tasks"), "{error}");
        assert!(error.contains("-5"), "{error}");
    }

    #[test]
    fn an_unknown_key_is_an_error() {
        let error = SeedTtlTable::from_config_json(r#"{"ttls": {}}"#)
            .err()
            .unwrap();
        assert!(error.contains("ttls"), "{error}");
    }
}
