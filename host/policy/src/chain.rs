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

    /// Whether every answer is a function of the question alone (the call, the outcome,
    /// the server and tool) and of how the policy was built: no state carries from one
    /// call to the next. Whoever asks may then remember an answer and reuse it for an
    /// identical question instead of asking again (the lab's replay does). A policy that
    /// cannot promise it keeps the default, `false`, and is asked every time.
    fn is_pure(&self) -> bool {
        false
    }
}

/// Which part of a chain shaped what happened to a call: a plugin, the built-in policy's
/// configured rules (its TTL rows and invalidation rules), or the built-in defaults
/// (annotations, the default TTL, dropping the whole server after a write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shaper {
    Plugin,
    ConfigRules,
    BuiltinDefault,
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

    /// Whether every policy of the chain is pure ([`Policy::is_pure`]), so each of the
    /// chain's answers is a function of its question too.
    pub fn is_pure(&self) -> bool {
        self.policies.iter().all(|policy| policy.is_pure())
    }

    /// The first non-abstaining decision; a TTL-table answer then overrides the TTL of a
    /// `Cache` decision (a zero TTL turns it into `Bypass`).
    pub fn decide(&self, call: &Call<'_>) -> Decision {
        self.decide_shaped(call).0
    }

    /// [`PolicyChain::decide`], and which part shaped the answer: the table that set the
    /// TTL when one did (a plugin's, or the built-in policy's configured rows), otherwise
    /// the policy that decided.
    pub fn decide_shaped(&self, call: &Call<'_>) -> (Decision, Shaper) {
        let (decision, decider) = self
            .policies
            .iter()
            .enumerate()
            .map(|(index, policy)| (policy.decide(call), index))
            .find(|(decision, _)| *decision != Decision::Abstain)
            .unwrap_or((Decision::Bypass, self.builtin_index()));
        let decided_by = self.shaper_of_decision(decider);
        let Decision::Cache(mut directive) = decision else {
            return (decision, decided_by);
        };
        if call.kind == CallKind::Tool
            && let Some((ttl, table)) = self.ttl_with_source(call.server, call.name)
        {
            let shaper = self.shaper_of_rules(table);
            if ttl.is_zero() {
                return (Decision::Bypass, shaper);
            }
            directive.ttl = Some(ttl);
            return (Decision::Cache(directive), shaper);
        }
        (Decision::Cache(directive), decided_by)
    }

    /// The first TTL any policy's table gives for the tool.
    pub fn ttl(&self, server: &str, tool: &str) -> Option<Duration> {
        self.ttl_with_source(server, tool).map(|(ttl, _)| ttl)
    }

    /// The first TTL any policy's table gives, and the index of that policy.
    fn ttl_with_source(&self, server: &str, tool: &str) -> Option<(Duration, usize)> {
        self.policies
            .iter()
            .enumerate()
            .find_map(|(index, policy)| match policy.ttl(server, tool) {
                TtlAnswer::Ttl(ttl) => Some((ttl, index)),
                TtlAnswer::Abstain => None,
            })
    }

    /// The built-in policy is always the last one.
    fn builtin_index(&self) -> usize {
        self.policies.len().saturating_sub(1)
    }

    /// A decision by the built-in policy is its defaults; by any other, a plugin's.
    fn shaper_of_decision(&self, index: usize) -> Shaper {
        if index == self.builtin_index() {
            Shaper::BuiltinDefault
        } else {
            Shaper::Plugin
        }
    }

    /// A table or rule of the built-in policy is configuration; any other is a plugin's.
    fn shaper_of_rules(&self, index: usize) -> Shaper {
        if index == self.builtin_index() {
            Shaper::ConfigRules
        } else {
            Shaper::Plugin
        }
    }

    /// The union of every policy's rules. When none speaks, a call that is not read-only
    /// and may have changed something (it succeeded, or its outcome is unknown)
    /// invalidates its whole server: the safe default.
    pub fn invalidations(&self, call: &Call<'_>, outcome: &Outcome) -> Vec<Invalidation> {
        self.invalidations_shaped(call, outcome).0
    }

    /// [`PolicyChain::invalidations`], and which part shaped them: the configured rules
    /// when they spoke (they join every chain, so they take effect whatever a plugin
    /// says), else a plugin's, else the default.
    pub fn invalidations_shaped(
        &self,
        call: &Call<'_>,
        outcome: &Outcome,
    ) -> (Vec<Invalidation>, Shaper) {
        let mut union: Vec<Invalidation> = Vec::new();
        let mut shaper = None;
        for (index, policy) in self.policies.iter().enumerate() {
            if let InvalidationAnswer::Rules(rules) = policy.invalidations(call, outcome) {
                shaper = Some(self.shaper_of_rules(index));
                for rule in rules {
                    if !union.contains(&rule) {
                        union.push(rule);
                    }
                }
            }
        }
        let may_have_changed = outcome.status != Status::Error;
        if shaper.is_none() && may_have_changed && call.annotations.read_only != Some(true) {
            union.push(Invalidation::Server(call.server.to_owned()));
        }
        (union, shaper.unwrap_or(Shaper::BuiltinDefault))
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

    /// A plugin that decides every read-only tool call with a 10 s TTL and has no table.
    struct Eager;

    impl Policy for Eager {
        fn name(&self) -> &str {
            "eager"
        }
        fn decide(&self, call: &Call<'_>) -> Decision {
            if call.is_read_only() {
                Decision::Cache(crate::vocabulary::Directive {
                    ttl: Some(Duration::from_secs(10)),
                    ..crate::vocabulary::Directive::default()
                })
            } else {
                Decision::Abstain
            }
        }
    }

    #[test]
    fn the_shaper_names_the_part_that_decided() {
        let builtin = chain();
        let with_plugin = PolicyChain::new(
            vec![Arc::new(Eager)],
            Arc::new(BuiltinPolicy::new(BuiltinSettings {
                ttl_table: TtlMap::new().with("demo", "get_clients", Duration::from_secs(300)),
                ..BuiltinSettings::default()
            })),
        );
        // The built-in decides by annotations: its default, unless a configured row sets the TTL.
        assert_eq!(
            builtin.decide_shaped(&tool_call("get_tasks", Some(true))).1,
            Shaper::BuiltinDefault
        );
        assert_eq!(
            builtin
                .decide_shaped(&tool_call("get_clients", Some(true)))
                .1,
            Shaper::ConfigRules
        );
        // A plugin's decision is the plugin's, but a configured TTL row still overrides it.
        let (decision, shaper) = with_plugin.decide_shaped(&tool_call("get_tasks", Some(true)));
        assert_eq!(
            (ttl_of(decision), shaper),
            (Some(Some(Duration::from_secs(10))), Shaper::Plugin)
        );
        let (decision, shaper) = with_plugin.decide_shaped(&tool_call("get_clients", Some(true)));
        assert_eq!(
            (ttl_of(decision), shaper),
            (Some(Some(Duration::from_secs(300))), Shaper::ConfigRules)
        );
        // Writes: configured rules when they name the tool, else the whole-server default.
        let outcome = Outcome {
            status: Status::Success,
            latency: Duration::ZERO,
            result_bytes: 0,
        };
        assert_eq!(
            builtin
                .invalidations_shaped(&tool_call("create_task", None), &outcome)
                .1,
            Shaper::ConfigRules
        );
        let (rules, shaper) =
            builtin.invalidations_shaped(&tool_call("delete_task", None), &outcome);
        assert_eq!(shaper, Shaper::BuiltinDefault);
        assert_eq!(rules, vec![Invalidation::Server("demo".to_owned())]);
    }

    #[test]
    fn a_chain_is_pure_only_when_every_policy_is() {
        assert!(chain().is_pure(), "the built-in policy alone is pure");
        let with_stateful_plugin = PolicyChain::new(
            vec![Arc::new(Eager)],
            Arc::new(BuiltinPolicy::new(BuiltinSettings::default())),
        );
        assert!(
            !with_stateful_plugin.is_pure(),
            "a policy that does not declare purity makes the chain impure"
        );
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
