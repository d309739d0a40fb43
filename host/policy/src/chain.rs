//! The [`Policy`] trait and the [`PolicyChain`] that asks policies in order.

use std::sync::Arc;
use std::time::Duration;

use crate::builtin::BuiltinPolicy;
use crate::vocabulary::{
    Call, CallKind, Decision, Invalidation, InvalidationAnswer, Outcome, Status, TtlAnswer,
};

/// One cache policy: any of its three parts may abstain.
pub trait Policy: Send + Sync {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// `cache-policy`: decide one call.
    fn decide(&self, call: &Call<'_>) -> Decision;

    /// `ttl-table`: the TTL for a server's tool, when the policy has a table.
    fn ttl(&self, _server: &str, _tool: &str) -> TtlAnswer {
        TtlAnswer::Abstain
    }

    /// `invalidation-rules`: what a completed call makes stale.
    fn invalidations(&self, _call: &Call<'_>, _outcome: &Outcome) -> InvalidationAnswer {
        InvalidationAnswer::Abstain
    }
}

/// Policies asked in order; the built-in policy is always last, so every question gets
/// an answer.
#[derive(Clone)]
pub struct PolicyChain {
    policies: Vec<Arc<dyn Policy>>,
    generation: u64,
}

impl PolicyChain {
    pub fn new(mut policies: Vec<Arc<dyn Policy>>, builtin: Arc<BuiltinPolicy>) -> PolicyChain {
        policies.push(builtin);
        PolicyChain {
            policies,
            generation: 0,
        }
    }

    /// Labels the chain with the policy generation it was swapped in at.
    pub fn with_generation(mut self, generation: u64) -> PolicyChain {
        self.generation = generation;
        self
    }

    /// The policy generation this chain belongs to (0 before any plugin swap).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The first non-abstaining decision; a TTL-table answer then overrides the TTL of a
    /// `Cache` decision (a zero TTL turns it into `Bypass`).
    pub fn decide(&self, call: &Call<'_>) -> Decision {
        let decision = self
            .policies
            .iter()
            .map(|policy| policy.decide(call))
            .find(|decision| *decision != Decision::Abstain)
            .unwrap_or(Decision::Bypass);
        let Decision::Cache(mut directive) = decision else {
            return decision;
        };
        if call.kind == CallKind::Tool
            && let Some(ttl) = self.ttl(call.server, call.name)
        {
            if ttl.is_zero() {
                return Decision::Bypass;
            }
            directive.ttl = Some(ttl);
        }
        Decision::Cache(directive)
    }

    /// The first TTL any policy's table gives for the tool.
    pub fn ttl(&self, server: &str, tool: &str) -> Option<Duration> {
        self.policies
            .iter()
            .find_map(|policy| match policy.ttl(server, tool) {
                TtlAnswer::Ttl(ttl) => Some(ttl),
                TtlAnswer::Abstain => None,
            })
    }

    /// The union of every policy's rules. When none speaks, a call that is not read-only
    /// and may have changed something (it succeeded, or its outcome is unknown)
    /// invalidates its whole server: the safe default.
    pub fn invalidations(&self, call: &Call<'_>, outcome: &Outcome) -> Vec<Invalidation> {
        let mut union: Vec<Invalidation> = Vec::new();
        let mut spoke = false;
        for policy in &self.policies {
            if let InvalidationAnswer::Rules(rules) = policy.invalidations(call, outcome) {
                spoke = true;
                for rule in rules {
                    if !union.contains(&rule) {
                        union.push(rule);
                    }
                }
            }
        }
        let may_have_changed = outcome.status != Status::Error;
        if !spoke && may_have_changed && call.annotations.read_only != Some(true) {
            union.push(Invalidation::Server(call.server.to_owned()));
        }
        union
    }
}

/// Where a new policy chain goes to serve calls. Whoever assembles chains (the plugin
/// host after a reload, the config watcher) publishes through one and never learns what
/// serves the calls: the application's wiring hands it the router's cache layer.
pub trait PolicySink: Send + Sync {
    /// Makes `chain` the one calls decide with from now on; calls already deciding keep
    /// the chain they took.
    fn install(&self, chain: PolicyChain);
}

/// A closure is a sink, so the wiring adapts whatever holds the chain in one line.
impl<F: Fn(PolicyChain) + Send + Sync> PolicySink for F {
    fn install(&self, chain: PolicyChain) {
        self(chain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::BuiltinSettings;
    use crate::rules::{InvalidationRule, TtlMap};
    use crate::vocabulary::{Annotations, ServerHints};

    /// The built-in policy of a config with `default_ttl = "60s"`, the TTL rows
    /// `"*".get_tool_schema = "1h"`, `demo.get_clients = "5m"`, `demo.create_task = 0`, and
    /// one rule: `create_task` invalidates `get_tasks` and `get_today_metrics`. (The
    /// config crate's tests check that the same TOML builds this policy.)
    fn chain() -> PolicyChain {
        let settings = BuiltinSettings {
            default_ttl: Some(Duration::from_secs(60)),
            list_ttl: Duration::from_secs(300),
            ttl_table: TtlMap::new()
                .with("*", "get_tool_schema", Duration::from_secs(3600))
                .with("demo", "get_clients", Duration::from_secs(300))
                .with("demo", "create_task", Duration::ZERO),
            invalidation_rules: vec![InvalidationRule {
                server: None,
                on: "create_task".into(),
                tools: vec!["get_tasks".into(), "get_today_metrics".into()],
                tags: Vec::new(),
            }],
            ..BuiltinSettings::default()
        };
        PolicyChain::new(Vec::new(), Arc::new(BuiltinPolicy::new(settings)))
    }

    fn tool_call(name: &str, read_only: Option<bool>) -> Call<'_> {
        Call {
            server: "demo",
            method: "tools/call",
            kind: CallKind::Tool,
            name,
            canonical_arguments: "{}",
            annotations: Annotations {
                read_only,
                ..Annotations::default()
            },
            hints: ServerHints::default(),
            principal: None,
        }
    }

    fn ttl_of(decision: Decision) -> Option<Option<Duration>> {
        match decision {
            Decision::Cache(directive) => Some(directive.ttl),
            _ => None,
        }
    }

    #[test]
    fn annotations_decide_and_the_ttl_table_overrides() {
        let chain = chain();
        assert_eq!(
            ttl_of(chain.decide(&tool_call("get_tasks", Some(true)))),
            Some(Some(Duration::from_secs(60)))
        );
        assert_eq!(
            ttl_of(chain.decide(&tool_call("get_clients", Some(true)))),
            Some(Some(Duration::from_secs(300)))
        );
        assert_eq!(
            ttl_of(chain.decide(&tool_call("get_tool_schema", Some(true)))),
            Some(Some(Duration::from_secs(3600)))
        );
        assert_eq!(
            chain.decide(&tool_call("get_tasks", None)),
            Decision::Bypass
        );
        assert_eq!(
            chain.decide(&tool_call("create_task", Some(true))),
            Decision::Bypass,
            "a zero TTL never caches"
        );
    }

    #[test]
    fn rules_replace_the_whole_server_default() {
        let chain = chain();
        let create = chain.invalidations(
            &tool_call("create_task", Some(false)),
            &Outcome::of(Status::Success),
        );
        assert_eq!(
            create,
            vec![
                Invalidation::Tool {
                    server: "demo".into(),
                    tool: "get_tasks".into()
                },
                Invalidation::Tool {
                    server: "demo".into(),
                    tool: "get_today_metrics".into()
                },
            ]
        );
        let other_write = chain.invalidations(
            &tool_call("update_task", Some(false)),
            &Outcome::of(Status::Success),
        );
        assert_eq!(other_write, vec![Invalidation::Server("demo".into())]);
        let unknown = chain.invalidations(
            &tool_call("update_task", None),
            &Outcome::of(Status::Unknown),
        );
        assert_eq!(
            unknown,
            vec![Invalidation::Server("demo".into())],
            "an unknown outcome may have changed state"
        );
        assert!(
            chain
                .invalidations(&tool_call("update_task", None), &Outcome::of(Status::Error))
                .is_empty()
        );
        assert!(
            chain
                .invalidations(
                    &tool_call("get_tasks", Some(true)),
                    &Outcome::of(Status::Success)
                )
                .is_empty()
        );
    }
}
