//! The [`Policy`] trait and the [`PolicyChain`] that asks policies in order.

use std::sync::Arc;
use std::time::Duration;

use crate::builtin::BuiltinPolicy;
use crate::provenance::{Answer, Probed, Question, Sourced, TtlSource};
use crate::rules::{ANY, TtlMap};
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

    /// Answers one question on its own, for an explanation of what the chain would do:
    /// the answer, and whether the policy applies, faulted or is quarantined. The default
    /// asks the matching method and reports no fault; a policy that can fault or be
    /// quarantined (a plugin binding) says so instead, and must not count what it finds
    /// as a fault of a live call.
    fn probe(&self, question: Question<'_>) -> Probed {
        Probed::answered(match question {
            Question::Decide(call) => Answer::Decision(self.decide(call)),
            Question::Ttl { server, tool } => Answer::Ttl(self.ttl(server, tool)),
            Question::Invalidations(call, outcome) => {
                Answer::Invalidations(self.invalidations(call, outcome))
            }
        })
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
    /// Each policy's name, in chain order, made once so that naming the decider of a
    /// call shares a string rather than copying one.
    names: Arc<[Arc<str>]>,
    /// The built-in policy (also the last of `policies`), kept typed for its TTL rows.
    builtin: Arc<BuiltinPolicy>,
    generation: u64,
}

impl PolicyChain {
    pub fn new(mut policies: Vec<Arc<dyn Policy>>, builtin: Arc<BuiltinPolicy>) -> PolicyChain {
        policies.push(builtin.clone());
        let names = policies
            .iter()
            .map(|policy| Arc::from(policy.name()))
            .collect();
        PolicyChain {
            policies,
            names,
            builtin,
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
        let sourced = self.decide_sourced(call);
        let shaper = match sourced.ttl_from {
            Some(table) => self.shaper_of_rules(table),
            None => self.shaper_of_decision(sourced.decider_index),
        };
        (sourced.decision, shaper)
    }

    /// [`PolicyChain::decide`], with where the answer came from: the policy that decided,
    /// the table that set the TTL (when one did) and the TTL the decider itself gave. The
    /// precedence is the one the SDK README's "Where a TTL comes from" documents: for a
    /// tool call decided `Cache`, the first TTL any policy's table gives (the plugins' in
    /// chain order, then the config's `[cache.ttl]` rows, the built-in policy's table)
    /// replaces the directive's, and a zero one turns the decision into `Bypass`.
    pub fn decide_sourced(&self, call: &Call<'_>) -> Sourced {
        self.decide_sourced_by(
            call,
            |_, policy| policy.decide(call),
            |_, policy| policy.ttl(call.server, call.name),
        )
    }

    /// [`PolicyChain::decide_sourced`] with the policies' answers given by `decide` and
    /// `ttl` (each called with a policy's place in the chain and the policy): the one
    /// precedence, whether the answers come from the policies themselves (a live call)
    /// or were asked beforehand with [`Policy::probe`] (an explanation). Both are asked
    /// lazily, in chain order, and only as far as the precedence needs.
    pub(crate) fn decide_sourced_by(
        &self,
        call: &Call<'_>,
        mut decide: impl FnMut(usize, &dyn Policy) -> Decision,
        ttl: impl FnMut(usize, &dyn Policy) -> TtlAnswer,
    ) -> Sourced {
        let (decision, decider_index) = self
            .policies
            .iter()
            .enumerate()
            .map(|(index, policy)| (decide(index, policy.as_ref()), index))
            .find(|(decision, _)| *decision != Decision::Abstain)
            .unwrap_or((Decision::Bypass, self.builtin_index()));
        let mut sourced = Sourced {
            decision: Decision::Abstain,
            decided_by: self.names[decider_index].clone(),
            decider_index,
            ttl_from: None,
            decider_ttl: None,
        };
        let Decision::Cache(mut directive) = decision else {
            sourced.decision = decision;
            return sourced;
        };
        sourced.decider_ttl = Some(directive.ttl);
        if call.kind == CallKind::Tool
            && let Some((ttl, table)) = self.ttl_with_source_by(ttl)
        {
            sourced.ttl_from = Some(table);
            if ttl.is_zero() {
                sourced.decision = Decision::Bypass;
                return sourced;
            }
            directive.ttl = Some(ttl);
        }
        sourced.decision = Decision::Cache(directive);
        sourced
    }

    /// Which source set the TTL of `sourced`, a decision of this chain for `tool` on
    /// `server`: a plugin's table, a `[cache.ttl]` row (named as written), the deciding
    /// plugin's directive, or the built-in policy's default. `None` when no TTL applies:
    /// the decision is not `Cache` and no table made it `Bypass`. What the server's
    /// `ttlMs` or the shared tier does to the TTL at fill time is the cache's to add.
    pub fn ttl_source(&self, sourced: &Sourced, server: &str, tool: &str) -> Option<TtlSource> {
        if let Some(table) = sourced.ttl_from {
            if table != self.builtin_index() {
                return Some(TtlSource::Table {
                    policy: self.names[table].clone(),
                });
            }
            let rule = self.builtin.ttl_table().lookup_rule(server, tool)?;
            return Some(TtlSource::ConfigRow {
                server: rule.server.clone().unwrap_or_else(|| ANY.to_owned()),
                tool: rule.tool.clone(),
            });
        }
        let ttl = sourced.decider_ttl?;
        if sourced.decider_index != self.builtin_index() {
            return Some(TtlSource::Directive {
                policy: sourced.decided_by.clone(),
            });
        }
        Some(match ttl {
            Some(_) => TtlSource::Default,
            None => TtlSource::NoExpiry,
        })
    }

    /// The config's `[cache.ttl]` rows: the built-in policy's TTL table.
    pub fn ttl_rows(&self) -> &TtlMap {
        self.builtin.ttl_table()
    }

    /// The policies' names, in chain order, the built-in policy's (`builtin`) last.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// The policies in chain order, the built-in policy last, for whoever asks each one
    /// on its own ([`Policy::probe`]).
    pub fn policies(&self) -> &[Arc<dyn Policy>] {
        &self.policies
    }

    /// The first TTL any policy's table gives for the tool.
    pub fn ttl(&self, server: &str, tool: &str) -> Option<Duration> {
        self.ttl_with_source_by(|_, policy| policy.ttl(server, tool))
            .map(|(ttl, _)| ttl)
    }

    /// The first TTL any policy's table gives (as `ttl` answers for each), and the
    /// index of that policy.
    fn ttl_with_source_by(
        &self,
        mut ttl: impl FnMut(usize, &dyn Policy) -> TtlAnswer,
    ) -> Option<(Duration, usize)> {
        self.policies
            .iter()
            .enumerate()
            .find_map(|(index, policy)| match ttl(index, policy.as_ref()) {
                TtlAnswer::Ttl(ttl) => Some((ttl, index)),
                TtlAnswer::Abstain => None,
            })
    }

    /// The built-in policy is always the last one.
    pub(crate) fn builtin_index(&self) -> usize {
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
        self.invalidations_shaped_by(call, outcome, |_, policy| {
            policy.invalidations(call, outcome)
        })
    }

    /// [`PolicyChain::invalidations_shaped`] with each policy's answer given by `ask`
    /// (called with its place in the chain and the policy), as
    /// [`PolicyChain::decide_sourced_by`] has it for decisions.
    pub(crate) fn invalidations_shaped_by(
        &self,
        call: &Call<'_>,
        outcome: &Outcome,
        mut ask: impl FnMut(usize, &dyn Policy) -> InvalidationAnswer,
    ) -> (Vec<Invalidation>, Shaper) {
        let mut union: Vec<Invalidation> = Vec::new();
        let mut shaper = None;
        for (index, policy) in self.policies.iter().enumerate() {
            if let InvalidationAnswer::Rules(rules) = ask(index, policy.as_ref()) {
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
    use crate::rules::InvalidationRule;
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

    /// A plugin with only a TTL table: 42 s for `get_clients` on any server.
    struct Table;

    impl Policy for Table {
        fn name(&self) -> &str {
            "table"
        }
        fn decide(&self, _call: &Call<'_>) -> Decision {
            Decision::Abstain
        }
        fn ttl(&self, _server: &str, tool: &str) -> TtlAnswer {
            if tool == "get_clients" {
                TtlAnswer::Ttl(Duration::from_secs(42))
            } else {
                TtlAnswer::Abstain
            }
        }
    }

    /// The built-in policy with the one row `demo.get_clients = "5m"`.
    fn builtin_with_clients_row() -> Arc<BuiltinPolicy> {
        Arc::new(BuiltinPolicy::new(BuiltinSettings {
            default_ttl: Some(Duration::from_secs(60)),
            ttl_table: TtlMap::new().with("demo", "get_clients", Duration::from_secs(300)),
            ..BuiltinSettings::default()
        }))
    }

    fn source_of(chain: &PolicyChain, call: &Call<'_>) -> (Sourced, Option<String>) {
        let sourced = chain.decide_sourced(call);
        let source = chain
            .ttl_source(&sourced, call.server, call.name)
            .map(|source| source.to_string());
        (sourced, source)
    }

    #[test]
    fn ttl_source_names_the_config_row_overriding_a_plugin() {
        let chain = PolicyChain::new(vec![Arc::new(Eager)], builtin_with_clients_row());
        let call = tool_call("get_clients", Some(true));
        let (sourced, source) = source_of(&chain, &call);
        // The plugin decided with 10 s; the config row's 5 m is what applies.
        assert_eq!(&*sourced.decided_by, "eager");
        assert_eq!(sourced.decider_index, 0);
        assert_eq!(sourced.decider_ttl, Some(Some(Duration::from_secs(10))));
        assert_eq!(sourced.ttl_from, Some(1));
        assert_eq!(
            ttl_of(sourced.decision),
            Some(Some(Duration::from_secs(300)))
        );
        assert_eq!(source.as_deref(), Some("config:demo/get_clients"));
        assert_eq!(
            chain.ttl_source(&chain.decide_sourced(&call), "demo", "get_clients"),
            Some(TtlSource::ConfigRow {
                server: "demo".into(),
                tool: "get_clients".into()
            })
        );
        // Without a row, the plugin's own directive sets it.
        let (sourced, source) = source_of(&chain, &tool_call("get_tasks", Some(true)));
        assert_eq!(
            (sourced.ttl_from, source.as_deref()),
            (None, Some("plugin:eager"))
        );
        assert_eq!(
            ttl_of(sourced.decision),
            Some(Some(Duration::from_secs(10)))
        );
    }

    #[test]
    fn a_plugin_table_beats_a_config_row() {
        let chain = PolicyChain::new(
            vec![Arc::new(Eager), Arc::new(Table)],
            builtin_with_clients_row(),
        );
        let (sourced, source) = source_of(&chain, &tool_call("get_clients", Some(true)));
        assert_eq!(&*sourced.decided_by, "eager");
        assert_eq!(sourced.ttl_from, Some(1));
        assert_eq!(
            ttl_of(sourced.decision),
            Some(Some(Duration::from_secs(42)))
        );
        assert_eq!(source.as_deref(), Some("table:table"));
        assert_eq!(
            chain.names().iter().map(|name| &**name).collect::<Vec<_>>(),
            ["eager", "table", "builtin"]
        );
    }

    #[test]
    fn the_builtin_sources_are_its_default_its_rows_or_no_expiry() {
        let chain = chain();
        let source = |call: &Call<'_>| source_of(&chain, call).1;
        assert_eq!(
            source(&tool_call("get_tasks", Some(true))).as_deref(),
            Some("default")
        );
        // A row for any server is named as written, with `*`.
        assert_eq!(
            source(&tool_call("get_tool_schema", Some(true))).as_deref(),
            Some("config:*/get_tool_schema")
        );
        // A zero row turns the decision into Bypass, and is still its source.
        let (sourced, zero) = source_of(&chain, &tool_call("create_task", Some(true)));
        assert_eq!(sourced.decision, Decision::Bypass);
        assert_eq!(zero.as_deref(), Some("config:demo/create_task"));
        // A decision that caches nothing has no TTL source.
        assert_eq!(source(&tool_call("delete_task", None)), None);
        // A built-in policy that keeps entries until evicted.
        let forever = PolicyChain::new(
            Vec::new(),
            Arc::new(BuiltinPolicy::new(BuiltinSettings::default())),
        );
        assert_eq!(
            source_of(&forever, &tool_call("get_tasks", Some(true)))
                .1
                .as_deref(),
            Some("none")
        );
    }

    #[test]
    fn decide_and_decide_shaped_are_decide_sourced() {
        let chains = [
            chain(),
            PolicyChain::new(vec![Arc::new(Eager)], builtin_with_clients_row()),
            PolicyChain::new(
                vec![Arc::new(Table), Arc::new(Eager)],
                builtin_with_clients_row(),
            ),
        ];
        for chain in &chains {
            for name in ["get_tasks", "get_clients", "get_tool_schema", "create_task"] {
                for read_only in [Some(true), None] {
                    let call = tool_call(name, read_only);
                    let sourced = chain.decide_sourced(&call);
                    assert_eq!(chain.decide(&call), sourced.decision);
                    assert_eq!(chain.decide_shaped(&call).0, sourced.decision);
                }
            }
        }
    }

    #[test]
    fn the_default_probe_answers_as_the_policy_does() {
        let call = tool_call("get_clients", Some(true));
        let outcome = Outcome::of(Status::Success);
        let builtin = builtin_with_clients_row();
        let probed = builtin.probe(Question::Decide(&call));
        assert_eq!(
            probed,
            Probed::answered(Answer::Decision(builtin.decide(&call)))
        );
        assert!(probed.applies && !probed.quarantined && probed.fault.is_none());
        assert_eq!(
            builtin
                .probe(Question::Ttl {
                    server: "demo",
                    tool: "get_clients"
                })
                .answer,
            Answer::Ttl(TtlAnswer::Ttl(Duration::from_secs(300)))
        );
        assert_eq!(
            Table.probe(Question::Invalidations(&call, &outcome)).answer,
            Answer::Invalidations(InvalidationAnswer::Abstain)
        );
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
