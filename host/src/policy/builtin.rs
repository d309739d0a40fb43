//! The built-in policy: tool annotations decide what is cached, a TTL table from config
//! overrides per server and tool, and config rules say what a write invalidates.

use std::collections::HashSet;
use std::time::Duration;

use super::{
    CacheDirective, CallInfo, CallKind, Decision, Invalidation, InvalidationAnswer, Outcome,
    Policy, Status, TtlAnswer,
};
use crate::config::{BridgeConfig, InvalidationRule, TtlRule};

/// The wildcard in TTL tables: any server, or any tool.
const ANY: &str = "*";

/// The annotation-driven policy every chain ends with.
#[derive(Debug, Clone)]
pub struct BuiltinPolicy {
    default_ttl: Option<Duration>,
    list_ttl: Duration,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    ttl_table: Vec<TtlRule>,
    rules: Vec<InvalidationRule>,
    uncached_servers: HashSet<String>,
}

impl BuiltinPolicy {
    pub fn from_config(config: &BridgeConfig) -> BuiltinPolicy {
        let cache = &config.cache;
        BuiltinPolicy {
            default_ttl: cache.default_ttl,
            list_ttl: cache.list_ttl,
            stale_while_revalidate: nonzero(cache.stale_while_revalidate),
            stale_if_error: nonzero(cache.stale_if_error),
            ttl_table: cache.ttl_table.clone(),
            rules: cache.invalidation_rules.clone(),
            uncached_servers: config
                .servers
                .iter()
                .filter(|server| !server.cache_enabled)
                .map(|server| server.name.clone())
                .collect(),
        }
    }

    fn directive(&self, ttl: Option<Duration>, tags: Vec<String>) -> Decision {
        let mut directive = CacheDirective::with_ttl(ttl);
        directive.tags = tags;
        directive.stale_while_revalidate = self.stale_while_revalidate;
        directive.stale_if_error = self.stale_if_error;
        Decision::Cache(directive)
    }
}

fn nonzero(window: Duration) -> Option<Duration> {
    (!window.is_zero()).then_some(window)
}

impl Policy for BuiltinPolicy {
    fn name(&self) -> &str {
        "builtin"
    }

    /// Lists and resource reads are cached (lists until `list_changed`); a tool call
    /// is cached only when its server marks it `readOnlyHint: true`.
    fn decide(&self, call: &CallInfo<'_>) -> Decision {
        if self.uncached_servers.contains(call.server) {
            return Decision::Bypass;
        }
        match call.kind {
            CallKind::List if self.list_ttl.is_zero() => Decision::Bypass,
            CallKind::List => self.directive(Some(self.list_ttl), Vec::new()),
            CallKind::Resource => self.directive(self.default_ttl, Vec::new()),
            CallKind::Tool if call.annotations.read_only == Some(true) => {
                self.directive(self.default_ttl, Vec::new())
            }
            CallKind::Tool => Decision::Bypass,
        }
    }

    /// The most specific row wins: exact server and tool, then exact server with `*`,
    /// then `*` with the exact tool, then `*` with `*`.
    fn ttl(&self, server: &str, tool: &str) -> TtlAnswer {
        let specificity = |rule: &TtlRule| -> Option<u8> {
            let server_score = match rule.server.as_deref() {
                Some(name) if name == server => 2,
                None => 0,
                Some(_) => return None,
            };
            let tool_score = match rule.tool.as_str() {
                name if name == tool => 1,
                ANY => 0,
                _ => return None,
            };
            Some(server_score + tool_score)
        };
        self.ttl_table
            .iter()
            .filter_map(|rule| specificity(rule).map(|score| (score, rule.ttl)))
            .max_by_key(|(score, _)| *score)
            .map_or(TtlAnswer::Abstain, |(_, ttl)| TtlAnswer::Ttl(ttl))
    }

    /// The config rules for the tool, when any names it; otherwise it abstains and the
    /// chain's default (drop the whole server) applies.
    fn invalidations(&self, call: &CallInfo<'_>, outcome: &Outcome) -> InvalidationAnswer {
        if call.kind != CallKind::Tool || outcome.status == Status::Error {
            return InvalidationAnswer::Abstain;
        }
        let matching: Vec<&InvalidationRule> = self
            .rules
            .iter()
            .filter(|rule| {
                rule.on == call.name && rule.server.as_deref().is_none_or(|s| s == call.server)
            })
            .collect();
        if matching.is_empty() {
            return InvalidationAnswer::Abstain;
        }
        let mut invalidations = Vec::new();
        for rule in matching {
            invalidations.extend(rule.tools.iter().map(|tool| Invalidation::Tool {
                server: call.server.to_owned(),
                tool: tool.clone(),
            }));
            invalidations.extend(rule.tags.iter().cloned().map(Invalidation::Tag));
        }
        InvalidationAnswer::Rules(invalidations)
    }
}
