//! The bridge's built-in policy, re-expressed as a plugin: the same config gives the
//! same answers, so the two can be compared (and the plugin is a starting point for a
//! policy that differs in one place).
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

use mcp_bridge_plugin_sdk::config::{ConfigDuration, TtlMap, parse_duration};
use mcp_bridge_plugin_sdk::prelude::*;
use mcp_bridge_plugin_sdk::serde_json;
use serde::{Deserialize, Deserializer};

/// The host's own defaults (`[cache] default_ttl` and `list_ttl`), so the plugin and the
/// built-in policy agree when neither is configured.
const DEFAULT_TTL: Duration = Duration::from_secs(60);
const DEFAULT_LIST_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A duration, or `"none"` for entries that live until evicted or invalidated.
    #[serde(deserialize_with = "ttl_or_none")]
    pub default_ttl: Option<Duration>,
    pub list_ttl: ConfigDuration,
    pub stale_while_revalidate: Option<ConfigDuration>,
    pub stale_if_error: Option<ConfigDuration>,
    pub uncached_servers: HashSet<String>,
    pub ttl: TtlMap,
    pub invalidate: Vec<Rule>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            default_ttl: Some(DEFAULT_TTL),
            list_ttl: ConfigDuration(DEFAULT_LIST_TTL),
            stale_while_revalidate: None,
            stale_if_error: None,
            uncached_servers: HashSet::new(),
            ttl: TtlMap::new(),
            invalidate: Vec::new(),
        }
    }
}

/// What a successful call of tool `on` invalidates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The server the rule applies to; absent applies to every server.
    #[serde(default)]
    pub server: Option<String>,
    pub on: String,
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

fn ttl_or_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) if text.trim().eq_ignore_ascii_case("none") => Ok(None),
        serde_json::Value::String(text) => {
            parse_duration(&text).map(Some).map_err(D::Error::custom)
        }
        other => ConfigDuration::deserialize(other)
            .map(|ttl| Some(ttl.0))
            .map_err(D::Error::custom),
    }
}

pub struct Annotations {
    config: Config,
}

impl Annotations {
    /// A cache directive with the config's stale windows (zero means none).
    fn cache(&self, ttl: Option<Duration>) -> Decision {
        let nonzero =
            |window: Option<ConfigDuration>| window.map(Duration::from).filter(|w| !w.is_zero());
        Decision::Cache(Directive {
            ttl,
            stale_while_revalidate: nonzero(self.config.stale_while_revalidate),
            stale_if_error: nonzero(self.config.stale_if_error),
            ..Directive::default()
        })
    }
}

impl Plugin for Annotations {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if let Some(rule) = config.invalidate.iter().find(|rule| rule.on.is_empty()) {
            return Err(format!("an `invalidate` rule has an empty `on` ({rule:?})"));
        }
        Ok(Annotations { config })
    }
}

impl CachePolicy for Annotations {
    fn decide(&self, call: &Call) -> Decision {
        if self.config.uncached_servers.contains(&call.server) {
            return Decision::Bypass;
        }
        let list_ttl = self.config.list_ttl.0;
        match call.kind {
            CallKind::ListRequest if list_ttl.is_zero() => Decision::Bypass,
            CallKind::ListRequest => self.cache(Some(list_ttl)),
            CallKind::ReadResource => self.cache(self.config.default_ttl),
            CallKind::Tool if call.is_read_only() => self.cache(self.config.default_ttl),
            CallKind::Tool => Decision::Bypass,
        }
    }
}

impl TtlTable for Annotations {
    fn ttl(&self, server: &str, tool: &str) -> Option<Duration> {
        self.config.ttl.lookup(server, tool)
    }
}

impl InvalidationRules for Annotations {
    fn invalidations(&self, call: &Call, outcome: &Outcome) -> Option<Vec<Invalidation>> {
        if call.kind != CallKind::Tool || outcome.status == Status::Error {
            return None;
        }
        let mut matching = self
            .config
            .invalidate
            .iter()
            .filter(|rule| {
                rule.on == call.name && rule.server.as_ref().is_none_or(|s| *s == call.server)
            })
            .peekable();
        matching.peek()?;
        let mut invalidations = Vec::new();
        for rule in matching {
            invalidations.extend(
                rule.tools
                    .iter()
                    .map(|tool| Invalidation::tool(&call.server, tool)),
            );
            invalidations.extend(rule.tags.iter().map(Invalidation::tag));
        }
        Some(invalidations)
    }
}

mcp_bridge_plugin_sdk::export!(Annotations);

#[cfg(test)]
mod tests {
    use super::*;

    fn call(server: &str, kind: CallKind, name: &str, read_only: Option<bool>) -> Call {
        Call {
            server: server.to_owned(),
            method: "tools/call".to_owned(),
            kind,
            name: name.to_owned(),
            canonical_arguments: "{}".to_owned(),
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
        assert_eq!(plugin.config.default_ttl, Some(secs(90)));
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
