//! The rules a configuration writes down: the TTL table by server and tool (with its one
//! precedence) and the invalidation rules for writes. The bridge config, the built-in
//! policy and plugins (through the SDK) all use these, so a table means the same thing
//! wherever it is written.

use std::fmt;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use crate::units::ConfigDuration;

/// The wildcard in a TTL table: any server, or any tool.
pub const ANY: &str = "*";

/// One row of a TTL table: how long results of a tool are cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlRule {
    /// The server the rule is for; `None` (written `"*"`) is any server.
    pub server: Option<String>,
    /// The exact tool name, or `"*"` for any tool of the server.
    pub tool: String,
    /// `Duration::ZERO` means the tool's results are never cached.
    pub ttl: Duration,
}

impl TtlRule {
    /// How specifically the row names `tool` on `server`, or `None` when it does not
    /// cover it: an exact server counts more than an exact tool, so exact server and
    /// tool (3) beat exact server with `*` (2), which beats `*` with the exact tool (1),
    /// which beats `*` with `*` (0).
    fn specificity(&self, server: &str, tool: &str) -> Option<u8> {
        let server_score = match self.server.as_deref() {
            None => 0,
            Some(name) if name == server => 2,
            Some(_) => return None,
        };
        let tool_score = match self.tool.as_str() {
            name if name == tool => 1,
            ANY => 0,
            _ => return None,
        };
        Some(server_score + tool_score)
    }
}

/// TTLs by server and tool, either of which may be the wildcard `*`. In a plugin's JSON
/// config it is written `{ "<server or *>": { "<tool or *>": <duration> } }`; the bridge
/// config writes the same rows as `[cache.ttl.<server>]` tables.
///
/// [`TtlMap::lookup`] returns the most specific row: exact server and tool, then exact
/// server with `*`, then `*` with the exact tool, then `*` with `*`.
///
/// ```
/// # use mcp_bridge_policy::TtlMap;
/// # use std::time::Duration;
/// let table: TtlMap = serde_json::from_str(
///     r#"{ "*": { "*": "1m" }, "demo": { "get_tasks": "30s", "create_task": 0 } }"#,
/// ).unwrap();
/// assert_eq!(table.lookup("demo", "get_tasks"), Some(Duration::from_secs(30)));
/// assert_eq!(table.lookup("demo", "create_task"), Some(Duration::ZERO));
/// assert_eq!(table.lookup("other", "anything"), Some(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TtlMap {
    rules: Vec<TtlRule>,
}

impl TtlMap {
    /// An empty table: every lookup abstains.
    pub fn new() -> TtlMap {
        TtlMap::default()
    }

    /// Adds (or replaces) the row for `server` and `tool`, either of which may be `*`.
    pub fn insert(&mut self, server: impl Into<String>, tool: impl Into<String>, ttl: Duration) {
        let server = Some(server.into()).filter(|server| server != ANY);
        let tool = tool.into();
        let row = TtlRule { server, tool, ttl };
        match self
            .rules
            .iter_mut()
            .find(|rule| rule.server == row.server && rule.tool == row.tool)
        {
            Some(existing) => *existing = row,
            None => self.rules.push(row),
        }
    }

    /// [`TtlMap::insert`] as a builder.
    pub fn with(mut self, server: &str, tool: &str, ttl: Duration) -> TtlMap {
        self.insert(server, tool, ttl);
        self
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// How many rows the table has.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rows, in the order they were added.
    pub fn rules(&self) -> &[TtlRule] {
        &self.rules
    }

    /// The TTL of the most specific row for `server` and `tool`, or `None` when no row
    /// applies. Among rows equally specific (a table cannot hold two), the first wins.
    pub fn lookup(&self, server: &str, tool: &str) -> Option<Duration> {
        self.lookup_rule(server, tool).map(|rule| rule.ttl)
    }

    /// The most specific row for `server` and `tool` ([`TtlMap::lookup`]'s), so whoever
    /// explains a TTL can name the row that set it.
    pub fn lookup_rule(&self, server: &str, tool: &str) -> Option<&TtlRule> {
        let mut best: Option<(u8, &TtlRule)> = None;
        for rule in &self.rules {
            let Some(score) = rule.specificity(server, tool) else {
                continue;
            };
            if best.is_none_or(|(best_score, _)| score > best_score) {
                best = Some((score, rule));
            }
        }
        best.map(|(_, rule)| rule)
    }
}

impl FromIterator<TtlRule> for TtlMap {
    /// Keeps the rows in the iterator's order (the bridge config orders them by
    /// precedence, so `check-config` lists them that way).
    fn from_iter<I: IntoIterator<Item = TtlRule>>(rules: I) -> TtlMap {
        TtlMap {
            rules: rules.into_iter().collect(),
        }
    }
}

impl<'de> Deserialize<'de> for TtlMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TtlMapVisitor)
    }
}

struct TtlMapVisitor;

impl<'de> Visitor<'de> for TtlMapVisitor {
    type Value = TtlMap;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of TTLs: { \"<server or *>\": { \"<tool or *>\": <duration> } }")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut servers: A) -> Result<TtlMap, A::Error> {
        let mut table = TtlMap::new();
        while let Some((server, tools)) =
            servers.next_entry::<String, std::collections::BTreeMap<String, ConfigDuration>>()?
        {
            for (tool, ttl) in tools {
                table.insert(server.as_str(), tool, ttl.0);
            }
        }
        Ok(table)
    }
}

/// What one successful write drops from the cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidationRule {
    /// The server the rule is for; `None` (not written) is any server.
    #[serde(default)]
    pub server: Option<String>,
    /// The write tool whose success triggers the rule (an exact name).
    pub on: String,
    /// The read tools whose entries (on the same server) are dropped.
    #[serde(default)]
    pub tools: Vec<String>,
    /// The tags whose entries are dropped.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl InvalidationRule {
    /// Whether the rule applies after `tool` on `server` completes.
    pub fn applies_to(&self, server: &str, tool: &str) -> bool {
        self.on == tool && self.server.as_deref().is_none_or(|name| name == server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_map_precedence() {
        let s = Duration::from_secs;
        let table = TtlMap::new()
            .with("*", "*", s(1))
            .with("*", "get", s(2))
            .with("demo", "*", s(3))
            .with("demo", "get", s(4));
        assert_eq!(table.lookup("demo", "get"), Some(s(4)));
        assert_eq!(table.lookup("demo", "put"), Some(s(3)));
        assert_eq!(table.lookup("other", "get"), Some(s(2)));
        assert_eq!(table.lookup("other", "put"), Some(s(1)));
        // The row itself, as written: a wildcard server is `None`, a wildcard tool `*`.
        let row = |server: &str, tool: &str| {
            table
                .lookup_rule(server, tool)
                .map(|rule| (rule.server.clone(), rule.tool.clone()))
        };
        assert_eq!(
            row("demo", "get"),
            Some((Some("demo".into()), "get".into()))
        );
        assert_eq!(row("demo", "put"), Some((Some("demo".into()), "*".into())));
        assert_eq!(row("other", "get"), Some((None, "get".into())));
        assert_eq!(row("other", "put"), Some((None, "*".into())));
        let table = TtlMap::new().with("demo", "get", s(4));
        assert_eq!(table.lookup("other", "get"), None);
        assert!(!table.is_empty());
        assert!(TtlMap::new().is_empty());
        let empty_rows: TtlMap = serde_json::from_str(r#"{"demo": {}}"#).unwrap();
        assert!(empty_rows.is_empty());
    }

    #[test]
    fn insert_replaces_a_row_and_star_is_any_server() {
        let s = Duration::from_secs;
        let table = TtlMap::new().with("*", "get", s(1)).with("*", "get", s(2));
        assert_eq!(table.len(), 1);
        assert_eq!(
            table.rules(),
            [TtlRule {
                server: None,
                tool: "get".to_owned(),
                ttl: s(2)
            }]
        );
    }

    #[test]
    fn invalidation_rules_apply_to_their_tool_and_server() {
        let rule = |server: Option<&str>| InvalidationRule {
            server: server.map(str::to_owned),
            on: "create_task".to_owned(),
            tools: Vec::new(),
            tags: Vec::new(),
        };
        assert!(rule(None).applies_to("any", "create_task"));
        assert!(rule(Some("demo")).applies_to("demo", "create_task"));
        assert!(!rule(Some("demo")).applies_to("other", "create_task"));
        assert!(!rule(None).applies_to("demo", "delete_task"));
    }
}
