//! The built-in policy: tool annotations decide what is cached, a TTL table overrides per
//! server and tool, and invalidation rules say what a write invalidates.

use std::collections::HashSet;
use std::time::Duration;

use crate::Policy;
use crate::rules::{InvalidationRule, TtlMap};
use crate::vocabulary::{
    Call, CallKind, Decision, Directive, Invalidation, InvalidationAnswer, Outcome, Status,
    TtlAnswer,
};

/// What the built-in policy is built from: plain values, so the bridge config, the lab
/// and a plugin can each build one from what they read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuiltinSettings {
    /// The TTL of cached tool calls and resource reads; `None` keeps them until evicted.
    pub default_ttl: Option<Duration>,
    /// How long list results are kept; zero does not cache them.
    pub list_ttl: Duration,
    /// How long an expired entry may be served while it refreshes; zero turns it off.
    pub stale_while_revalidate: Duration,
    /// How long an expired entry may stand in for a failed call; zero turns it off.
    pub stale_if_error: Duration,
    /// TTLs by server and tool.
    pub ttl_table: TtlMap,
    /// What a write invalidates, in the order they apply.
    pub invalidation_rules: Vec<InvalidationRule>,
    /// Servers whose calls are never cached.
    pub uncached_servers: HashSet<String>,
}

/// The annotation-driven policy every chain ends with.
#[derive(Debug, Clone)]
pub struct BuiltinPolicy {
    default_ttl: Option<Duration>,
    list_ttl: Duration,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    ttl_table: TtlMap,
    rules: Vec<InvalidationRule>,
    uncached_servers: HashSet<String>,
}

impl BuiltinPolicy {
    pub fn new(settings: BuiltinSettings) -> BuiltinPolicy {
        BuiltinPolicy {
            default_ttl: settings.default_ttl,
            list_ttl: settings.list_ttl,
            stale_while_revalidate: nonzero(settings.stale_while_revalidate),
            stale_if_error: nonzero(settings.stale_if_error),
            ttl_table: settings.ttl_table,
            rules: settings.invalidation_rules,
            uncached_servers: settings.uncached_servers,
        }
    }

    /// The `[cache.ttl]` rows, for whoever names the row that set a TTL.
    pub fn ttl_table(&self) -> &TtlMap {
        &self.ttl_table
    }

    fn directive(&self, ttl: Option<Duration>, tags: Vec<String>) -> Decision {
        let mut directive = Directive::with_ttl(ttl);
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
    fn decide(&self, call: &Call<'_>) -> Decision {
        if self.uncached_servers.contains(call.server) {
            return Decision::Bypass;
        }
        match call.kind {
            CallKind::ListRequest if self.list_ttl.is_zero() => Decision::Bypass,
            CallKind::ListRequest => self.directive(Some(self.list_ttl), Vec::new()),
            CallKind::ReadResource => self.directive(self.default_ttl, Vec::new()),
            CallKind::Tool if call.is_read_only() => self.directive(self.default_ttl, Vec::new()),
            CallKind::Tool => Decision::Bypass,
        }
    }

    /// The most specific row of the TTL table ([`TtlMap::lookup`]).
    fn ttl(&self, server: &str, tool: &str) -> TtlAnswer {
        self.ttl_table
            .lookup(server, tool)
            .map_or(TtlAnswer::Abstain, TtlAnswer::Ttl)
    }

    /// The rules for the tool, when any names it; otherwise it abstains and the chain's
    /// default (drop the whole server) applies.
    fn invalidations(&self, call: &Call<'_>, outcome: &Outcome) -> InvalidationAnswer {
        if call.kind != CallKind::Tool || outcome.status == Status::Error {
            return InvalidationAnswer::Abstain;
        }
        let matching: Vec<&InvalidationRule> = self
            .rules
            .iter()
            .filter(|rule| rule.applies_to(call.server, call.name))
            .collect();
        if matching.is_empty() {
            return InvalidationAnswer::Abstain;
        }
        let mut invalidations = Vec::new();
        for rule in matching {
            invalidations.extend(
                rule.tools
                    .iter()
                    .map(|tool| Invalidation::tool(call.server, tool.as_str())),
            );
            invalidations.extend(rule.tags.iter().cloned().map(Invalidation::Tag));
        }
        InvalidationAnswer::Rules(invalidations)
    }

    /// Its answers come from its settings and the question alone.
    fn is_pure(&self) -> bool {
        true
    }
}
