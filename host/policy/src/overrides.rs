//! The TTLs a chain replaces without the deciding plugin knowing: a `[cache.ttl]` row, or
//! another plugin's TTL table, that sets the TTL of a tool a plugin decided to cache with
//! a TTL of its own. The precedence is deliberate (the SDK README's "Where a TTL comes
//! from"), but a plugin author who returns 5 minutes and sees 7 deserves to be told, once
//! per chain rather than per call: the plugin host logs what [`PolicyChain::ttl_overrides`]
//! finds whenever it publishes a chain.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::chain::PolicyChain;
use crate::provenance::{Answer, Question, TtlSource};
use crate::rules::{ANY, TtlRule};
use crate::units::format_duration;
use crate::vocabulary::{Annotations, Call, CallKind, Decision, ServerHints, TtlAnswer};

/// At most this many (server, tool) pairs are asked about per chain, so a config with
/// thousands of rows cannot make a swap ask its plugins for ever.
pub const MAX_OVERRIDE_PROBES: usize = 512;
/// How long looking for overrides may take in all; the pairs not asked by then are skipped.
pub(crate) const OVERRIDE_PROBE_BUDGET: std::time::Duration = std::time::Duration::from_millis(500);

/// One TTL a plugin chose that a table replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlOverride {
    /// The plugin binding whose decision the table overrides.
    pub binding: Arc<str>,
    pub server: String,
    pub tool: String,
    /// The TTL the binding's directive carried (`None`: no expiry).
    pub directive_ttl: Option<Duration>,
    /// Where the TTL that applies comes from: a config row (as written) or a plugin's table.
    pub source: TtlSource,
    /// The TTL that applies instead.
    pub ttl: Duration,
}

impl fmt::Display for TtlOverride {
    /// The log line: `ttl for demo/get_clients is set by config row [cache.ttl.demo]
    /// get_clients = 7m, overriding plugin tasks's directive (5m)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ttl for {}/{} is set by ", self.server, self.tool)?;
        let ttl = format_duration(self.ttl);
        match &self.source {
            TtlSource::ConfigRow { server, tool } => write!(
                f,
                "config row [cache.ttl.{}] {} = {ttl}",
                toml_key(server),
                toml_key(tool)
            )?,
            TtlSource::Table { policy } => write!(f, "plugin {policy}'s ttl table ({ttl})")?,
            other => write!(f, "{other} ({ttl})")?,
        }
        let own = self
            .directive_ttl
            .map_or_else(|| "no expiry".to_owned(), format_duration);
        write!(
            f,
            ", overriding plugin {}'s directive ({own})",
            self.binding
        )
    }
}

/// A TOML key as it is written: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

impl PolicyChain {
    /// Every TTL a table of this chain sets over a plugin's own directive, for the tools
    /// the config's `[cache.ttl]` rows name. Each row's tool is asked of each server it
    /// covers: its own, or for a row of `[cache.ttl."*"]` each of `servers` (the servers
    /// bindings name; `*` itself when none does). For each pair the chain is asked as a
    /// call would ask it ([`crate::Policy::probe`], a read-only `tools/call` with empty
    /// arguments): when a plugin decides `Cache` and a table other than its own gives a
    /// different TTL, that is an override. At most [`MAX_OVERRIDE_PROBES`] pairs are
    /// asked, within [`OVERRIDE_PROBE_BUDGET`]; a pair a plugin cannot answer (a fault) is
    /// skipped.
    pub fn ttl_overrides(&self, servers: &[&str]) -> Vec<TtlOverride> {
        let builtin = self.policies().len().saturating_sub(1);
        if builtin == 0 {
            return Vec::new();
        }
        let mut found: Vec<TtlOverride> = Vec::new();
        // Asked while a new chain is being published: bounded in time as well as count, so
        // a slow plugin cannot hold a reload up.
        let deadline = std::time::Instant::now() + OVERRIDE_PROBE_BUDGET;
        for (server, tool) in self.row_pairs(servers).take(MAX_OVERRIDE_PROBES) {
            if std::time::Instant::now() > deadline {
                break;
            }
            let Some(over) = self.override_for(server, tool, builtin) else {
                continue;
            };
            if !found.contains(&over) {
                found.push(over);
            }
        }
        found
    }

    /// The (server, tool) pairs the config's rows name, a `*` server spread over `servers`.
    fn row_pairs<'a>(&'a self, servers: &'a [&'a str]) -> impl Iterator<Item = (&'a str, &'a str)> {
        let any: &'a [&'a str] = &[ANY];
        let spread = if servers.is_empty() { any } else { servers };
        self.ttl_rows()
            .rules()
            .iter()
            .flat_map(move |rule: &'a TtlRule| {
                let over: &'a [&'a str] = match &rule.server {
                    Some(_) => &[""],
                    None => spread,
                };
                over.iter().map(move |server| {
                    let server = rule.server.as_deref().unwrap_or(*server);
                    (server, rule.tool.as_str())
                })
            })
    }

    /// The override for one pair, if the chain has one: asked in chain order as
    /// [`PolicyChain::decide_sourced`] asks, but through `probe`, which never counts what
    /// it finds as a live call's fault.
    fn override_for(&self, server: &str, tool: &str, builtin: usize) -> Option<TtlOverride> {
        let call = Call {
            server,
            method: "tools/call",
            kind: CallKind::Tool,
            name: tool,
            canonical_arguments: "{}",
            annotations: Annotations {
                read_only: Some(true),
                ..Annotations::default()
            },
            hints: ServerHints::default(),
            principal: None,
        };
        let policies = self.policies();
        let (decider, directive) = policies.iter().enumerate().find_map(|(index, policy)| {
            let probed = policy.probe(Question::Decide(&call));
            match probed.answer {
                Answer::Decision(Decision::Abstain) => None,
                Answer::Decision(decision) => Some((index, decision)),
                _ => None,
            }
        })?;
        let Decision::Cache(directive) = directive else {
            return None;
        };
        if decider == builtin {
            return None;
        }
        let (table, ttl) =
            policies.iter().enumerate().find_map(|(index, policy)| {
                match policy.probe(Question::Ttl { server, tool }).answer {
                    Answer::Ttl(TtlAnswer::Ttl(ttl)) => Some((index, ttl)),
                    _ => None,
                }
            })?;
        if table == decider || directive.ttl == Some(ttl) {
            return None;
        }
        let names = self.names();
        let source = if table == builtin {
            let rule = self.ttl_rows().lookup_rule(server, tool)?;
            TtlSource::ConfigRow {
                server: rule.server.clone().unwrap_or_else(|| ANY.to_owned()),
                tool: rule.tool.clone(),
            }
        } else {
            TtlSource::Table {
                policy: names[table].clone(),
            }
        };
        Some(TtlOverride {
            binding: names[decider].clone(),
            server: server.to_owned(),
            tool: tool.to_owned(),
            directive_ttl: directive.ttl,
            source,
            ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::{BuiltinPolicy, BuiltinSettings};
    use crate::chain::Policy;
    use crate::rules::TtlMap;
    use crate::vocabulary::Directive;

    /// A plugin that caches every read-only tool for 5 minutes, on the servers it is given.
    struct FiveMinutes(&'static str, Option<&'static str>);

    impl Policy for FiveMinutes {
        fn name(&self) -> &str {
            self.0
        }
        fn decide(&self, call: &Call<'_>) -> Decision {
            if self.1.is_some_and(|only| only != call.server) || !call.is_read_only() {
                return Decision::Abstain;
            }
            Decision::Cache(Directive {
                ttl: Some(Duration::from_secs(300)),
                ..Directive::default()
            })
        }
    }

    /// A plugin with only a table: 42 s for `get_habits`.
    struct Habits;

    impl Policy for Habits {
        fn name(&self) -> &str {
            "habits"
        }
        fn decide(&self, _call: &Call<'_>) -> Decision {
            Decision::Abstain
        }
        fn ttl(&self, _server: &str, tool: &str) -> TtlAnswer {
            if tool == "get_habits" {
                TtlAnswer::Ttl(Duration::from_secs(42))
            } else {
                TtlAnswer::Abstain
            }
        }
    }

    fn builtin(rows: TtlMap) -> Arc<BuiltinPolicy> {
        Arc::new(BuiltinPolicy::new(BuiltinSettings {
            default_ttl: Some(Duration::from_secs(60)),
            ttl_table: rows,
            ..BuiltinSettings::default()
        }))
    }

    #[test]
    fn a_config_row_over_a_plugin_directive_is_named_as_written() {
        let rows = TtlMap::new()
            .with("demo", "get_clients", Duration::from_secs(420))
            .with("demo", "get_tasks", Duration::from_secs(300))
            .with("*", "get_tool_schema", Duration::from_secs(3600))
            .with("other", "get_clients", Duration::from_secs(1));
        let chain = PolicyChain::new(
            vec![Arc::new(FiveMinutes("five", Some("demo")))],
            builtin(rows),
        );
        let found = chain.ttl_overrides(&["demo"]);
        let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "ttl for demo/get_clients is set by config row [cache.ttl.demo] get_clients = 7m, overriding plugin five's directive (5m)",
                "ttl for demo/get_tool_schema is set by config row [cache.ttl.\"*\"] get_tool_schema = 1h, overriding plugin five's directive (5m)",
            ],
            "the same TTL is no override, and a row for a server the plugin does not decide is none"
        );
        assert_eq!(found[0].source.to_string(), "config:demo/get_clients");
    }

    #[test]
    fn another_plugins_table_is_named_and_the_builtin_alone_has_none() {
        let chain = PolicyChain::new(
            vec![Arc::new(FiveMinutes("five", None)), Arc::new(Habits)],
            builtin(TtlMap::new().with("demo", "get_habits", Duration::from_secs(1))),
        );
        let found = chain.ttl_overrides(&[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].to_string(),
            "ttl for demo/get_habits is set by plugin habits's ttl table (42s), overriding plugin five's directive (5m)"
        );
        let alone = PolicyChain::new(
            Vec::new(),
            builtin(TtlMap::new().with("demo", "get_habits", Duration::from_secs(1))),
        );
        assert!(alone.ttl_overrides(&["demo"]).is_empty());
    }

    #[test]
    fn the_pairs_asked_are_bounded() {
        let mut rows = TtlMap::new();
        for index in 0..(MAX_OVERRIDE_PROBES + 100) {
            rows.insert("demo", format!("tool_{index}"), Duration::from_secs(1));
        }
        let chain = PolicyChain::new(vec![Arc::new(FiveMinutes("five", None))], builtin(rows));
        assert_eq!(chain.ttl_overrides(&[]).len(), MAX_OVERRIDE_PROBES);
    }
}
