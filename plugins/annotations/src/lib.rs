//! The bridge's built-in policy as a plugin: it wraps the policy crate's
//! [`BuiltinPolicy`], the code the host runs, so the same config gives the same answers
//! and the two can be compared across the WASM boundary (and the plugin is a starting
//! point for a policy that differs in one place).
//!
//! - `decide`: servers in `uncached_servers` bypass; lists are cached for `list_ttl`
//!   (zero bypasses); resource reads for `default_ttl`; tool calls for `default_ttl`
//!   when the server marks the tool read-only, otherwise they bypass.
//! - `ttl`: the `ttl` table, most specific row first; an empty table abstains.
//! - `invalidations`: after a tool call that did not fail, the `invalidate` rules whose
//!   `on` names the tool (and whose `server`, when given, is the call's): each invalidates
//!   its `tools` on the call's server and its `tags`. No matching rule abstains.
//!
//! ```json
//! {
//!   "default_ttl": "60s",
//!   "list_ttl": "5m",
//!   "stale_while_revalidate": "10s",
//!   "uncached_servers": ["payments"],
//!   "ttl": { "demo": { "get_tasks": "30s" } },
//!   "invalidate": [{ "on": "create_task", "tools": ["get_tasks"], "tags": ["tasks"] }]
//! }
//! ```

use std::collections::HashSet;
use std::time::Duration;

use mcp_bridge_plugin_sdk::config::{ConfigDuration, TtlMap};
use mcp_bridge_plugin_sdk::policy::units::ConfigTtl;
use mcp_bridge_plugin_sdk::policy::{
    BuiltinPolicy, BuiltinSettings, InvalidationAnswer, InvalidationRule, Policy, TtlAnswer,
};
use mcp_bridge_plugin_sdk::prelude::*;
use serde::Deserialize;

/// The host's own defaults (`[cache] default_ttl` and `list_ttl`), so the plugin and the
/// built-in policy agree when neither is configured.
const DEFAULT_TTL: Duration = Duration::from_secs(60);
const DEFAULT_LIST_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A duration, or `"none"` for entries that live until evicted or invalidated.
    pub default_ttl: ConfigTtl,
    pub list_ttl: ConfigDuration,
    pub stale_while_revalidate: Option<ConfigDuration>,
    pub stale_if_error: Option<ConfigDuration>,
    pub uncached_servers: HashSet<String>,
    pub ttl: TtlMap,
    /// What a successful call of tool `on` invalidates; a rule without `server` applies
    /// to every server.
    pub invalidate: Vec<InvalidationRule>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            default_ttl: ConfigTtl(Some(DEFAULT_TTL)),
            list_ttl: ConfigDuration(DEFAULT_LIST_TTL),
            stale_while_revalidate: None,
            stale_if_error: None,
            uncached_servers: HashSet::new(),
            ttl: TtlMap::new(),
            invalidate: Vec::new(),
        }
    }
}

impl From<Config> for BuiltinSettings {
    /// An absent stale window is zero, which the built-in policy reads as "off".
    fn from(config: Config) -> BuiltinSettings {
        let window = |window: Option<ConfigDuration>| window.map_or(Duration::ZERO, Duration::from);
        BuiltinSettings {
            default_ttl: config.default_ttl.0,
            list_ttl: config.list_ttl.0,
            stale_while_revalidate: window(config.stale_while_revalidate),
            stale_if_error: window(config.stale_if_error),
            ttl_table: config.ttl,
            invalidation_rules: config.invalidate,
            uncached_servers: config.uncached_servers,
        }
    }
}

pub struct Annotations {
    builtin: BuiltinPolicy,
}

impl Plugin for Annotations {
    type Config = Config;
    /// Pure: the built-in policy it wraps answers from its settings and the call alone.
    const PURE: bool = true;

    fn new(config: Config) -> Result<Self, String> {
        if let Some(rule) = config.invalidate.iter().find(|rule| rule.on.is_empty()) {
            return Err(format!("an `invalidate` rule has an empty `on` ({rule:?})"));
        }
        Ok(Annotations {
            builtin: BuiltinPolicy::new(config.into()),
        })
    }
}

impl CachePolicy for Annotations {
    fn decide(&self, call: &Call) -> Decision {
        self.builtin.decide(call)
    }
}

impl TtlTable for Annotations {
    fn ttl(&self, server: &str, tool: &str) -> Option<Duration> {
        match Policy::ttl(&self.builtin, server, tool) {
            TtlAnswer::Ttl(ttl) => Some(ttl),
            TtlAnswer::Abstain => None,
        }
    }
}

impl InvalidationRules for Annotations {
    fn invalidations(&self, call: &Call, outcome: &Outcome) -> Option<Vec<Invalidation>> {
        match Policy::invalidations(&self.builtin, call, outcome) {
            InvalidationAnswer::Rules(rules) => Some(rules),
            InvalidationAnswer::Abstain => None,
        }
    }
}

mcp_bridge_plugin_sdk::export!(Annotations);

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(
        server: &'a str,
        kind: CallKind,
        name: &'a str,
        read_only: Option<bool>,
    ) -> Call<'a> {
        Call {
            server,
            method: "tools/call",
            kind,
            name,
            canonical_arguments: "{}",
            annotations: mcp_bridge_plugin_sdk::Annotations {
                read_only,
                ..Default::default()
            },
            hints: ServerHints::default(),
            principal: None,
        }
    }

    fn outcome(status: Status) -> Outcome {
        Outcome {
            status,
            latency: Duration::ZERO,
            result_bytes: 0,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn decides_like_the_builtin_policy() {
        let plugin = Annotations::from_config_json("{}").unwrap();
        let cached = |ttl| {
            Decision::Cache(Directive {
                ttl,
                ..Directive::default()
            })
        };
        assert_eq!(
            plugin.decide(&call("s", CallKind::ListRequest, "", None)),
            cached(Some(secs(300)))
        );
        assert_eq!(
            plugin.decide(&call("s", CallKind::ReadResource, "file:///a", None)),
            cached(Some(secs(60)))
        );
        assert_eq!(
            plugin.decide(&call("s", CallKind::Tool, "get", Some(true))),
            cached(Some(secs(60)))
        );
        assert_eq!(
            plugin.decide(&call("s", CallKind::Tool, "get", Some(false))),
            Decision::Bypass
        );
        assert_eq!(
            plugin.decide(&call("s", CallKind::Tool, "get", None)),
            Decision::Bypass
        );
    }

    #[test]
    fn config_changes_ttls_windows_and_uncached_servers() {
        let plugin = Annotations::from_config_json(
            r#"{"default_ttl": "none", "list_ttl": 0, "stale_while_revalidate": "10s",
                "stale_if_error": 0, "uncached_servers": ["off"]}"#,
        )
        .unwrap();
        assert_eq!(
            plugin.decide(&call("s", CallKind::ListRequest, "", None)),
            Decision::Bypass
        );
        assert_eq!(
            plugin.decide(&call("s", CallKind::Tool, "get", Some(true))),
            Decision::Cache(Directive {
                ttl: None,
                stale_while_revalidate: Some(secs(10)),
                ..Directive::default()
            })
        );
        assert_eq!(
            plugin.decide(&call("off", CallKind::ListRequest, "", None)),
            Decision::Bypass
        );
        let plugin = Annotations::from_config_json(r#"{"default_ttl": "90s"}"#).unwrap();
        assert_eq!(
            plugin.decide(&call("s", CallKind::ReadResource, "file:///a", None)),
            Decision::Cache(Directive::ttl(secs(90)))
        );
    }

    #[test]
    fn ttl_table_abstains_when_empty() {
        let plugin = Annotations::from_config_json("{}").unwrap();
        assert_eq!(plugin.ttl("demo", "get_tasks"), None);
        let plugin =
            Annotations::from_config_json(r#"{"ttl": {"*": {"get_tasks": "1m"}}}"#).unwrap();
        assert_eq!(plugin.ttl("demo", "get_tasks"), Some(secs(60)));
    }

    #[test]
    fn invalidations_follow_the_rules() {
        let plugin = Annotations::from_config_json(
            r#"{"invalidate": [
                {"on": "create_task", "tools": ["get_tasks", "list_tasks"], "tags": ["tasks"]},
                {"server": "demo", "on": "create_task", "tags": ["demo-tasks"]}
            ]}"#,
        )
        .unwrap();
        let create = |server| call(server, CallKind::Tool, "create_task", None);
        assert_eq!(
            plugin.invalidations(&create("demo"), &outcome(Status::Success)),
            Some(vec![
                Invalidation::tool("demo", "get_tasks"),
                Invalidation::tool("demo", "list_tasks"),
                Invalidation::tag("tasks"),
                Invalidation::tag("demo-tasks"),
            ])
        );
        assert_eq!(
            plugin.invalidations(&create("other"), &outcome(Status::Unknown)),
            Some(vec![
                Invalidation::tool("other", "get_tasks"),
                Invalidation::tool("other", "list_tasks"),
                Invalidation::tag("tasks"),
            ])
        );
        assert_eq!(
            plugin.invalidations(&create("demo"), &outcome(Status::Error)),
            None
        );
        let delete = call("demo", CallKind::Tool, "delete_task", None);
        assert_eq!(
            plugin.invalidations(&delete, &outcome(Status::Success)),
            None
        );
    }

    #[test]
    fn bad_config_names_the_field() {
        let error = Annotations::from_config_json(r#"{"list_ttl": "later"}"#)
            .err()
            .unwrap();
        assert!(
            error.contains("list_ttl") && error.contains("later"),
            "{error}"
        );
        let error = Annotations::from_config_json(r#"{"invalidate": [{"tools": []}]}"#)
            .err()
            .unwrap();
        assert!(
            error.contains("invalidate[0]") && error.contains("on"),
            "{error}"
        );
    }
}
