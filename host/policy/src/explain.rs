//! What a chain would do with one call, and why: every policy asked on its own
//! ([`Policy::probe`]), in chain order, then the chain's one precedence applied to those
//! answers. It never asks a policy through the live path, so a plugin's fault found here
//! is reported, not counted against its health, and nothing reaches a backend.
//!
//! The cache key is not here (this crate knows no keys): whoever explains a call adds it
//! with the cache's key functions (the lab's `explain` module, which both
//! `POST /admin/explain` and `bench explain` use).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::chain::{PolicyChain, Shaper};
use crate::provenance::{Answer, Probed, Question, Sourced, TtlSource};
use crate::vocabulary::{
    Call, CallKind, Decision, Directive, Invalidation, InvalidationAnswer, Outcome, Status,
    TtlAnswer,
};

/// One policy of the chain, asked each question the call raises.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainedPolicy {
    pub name: Arc<str>,
    /// Whether this is the built-in policy (the last of every chain).
    pub builtin: bool,
    /// Its answer to `decide`.
    pub decide: Probed,
    /// Its TTL table's answer, for a tool call (only tool calls consult the tables).
    pub ttl: Option<Probed>,
    /// Its invalidations, for a call that writes (asked as if the call succeeded).
    pub invalidations: Option<Probed>,
}

impl ExplainedPolicy {
    /// Whether the policy is quarantined for any question the call raised.
    pub fn quarantined(&self) -> bool {
        self.questions().any(|probed| probed.quarantined)
    }

    fn questions(&self) -> impl Iterator<Item = &Probed> {
        std::iter::once(&self.decide)
            .chain(self.ttl.as_ref())
            .chain(self.invalidations.as_ref())
    }
}

/// What a write's completion would invalidate.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainedInvalidations {
    /// The union the chain applies.
    pub applied: Vec<Invalidation>,
    /// What shaped it: a plugin's rules, the config's rules, or (no policy spoke) the
    /// default of dropping the whole server.
    pub shaper: Shaper,
}

/// What a chain decides for one call, with each policy's own answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainExplanation {
    /// The policy generation of the chain that answered.
    pub generation: u64,
    /// Every policy, in chain order (the built-in policy last).
    pub policies: Vec<ExplainedPolicy>,
    /// The chain's decision and where it came from.
    pub sourced: Sourced,
    /// The source of the TTL a cached entry gets, when the decision caches (or a zero
    /// TTL row turned it into a bypass).
    pub ttl_source: Option<TtlSource>,
    /// For a call that may write and is not cached: what its success would invalidate.
    pub invalidations: Option<ExplainedInvalidations>,
}

impl PolicyChain {
    /// Explains what this chain does with `call`: every policy is asked on its own
    /// ([`Policy::probe`]: `decide`; for a tool call its TTL table; for a call that may
    /// write and is not cached, its invalidations after a success), then the chain's
    /// precedence ([`PolicyChain::decide_sourced`], [`PolicyChain::invalidations_shaped`])
    /// is applied to those very answers, so the explanation and a live call agree by
    /// construction.
    pub fn explain(&self, call: &Call<'_>) -> ChainExplanation {
        let builtin = self.builtin_index();
        let mut policies: Vec<ExplainedPolicy> = self
            .policies()
            .iter()
            .zip(self.names())
            .enumerate()
            .map(|(index, (policy, name))| ExplainedPolicy {
                name: name.clone(),
                builtin: index == builtin,
                decide: policy.probe(Question::Decide(call)),
                ttl: (call.kind == CallKind::Tool).then(|| {
                    policy.probe(Question::Ttl {
                        server: call.server,
                        tool: call.name,
                    })
                }),
                invalidations: None,
            })
            .collect();
        let sourced = self.decide_sourced_by(
            call,
            |index, _| decision_of(&policies[index].decide),
            |index, _| ttl_of(policies[index].ttl.as_ref()),
        );
        let ttl_source = self.ttl_source(&sourced, call.server, call.name);
        let writes = call.may_write() && !matches!(sourced.decision, Decision::Cache(_));
        let invalidations = writes.then(|| {
            let outcome = Outcome::of(Status::Success);
            for (explained, policy) in policies.iter_mut().zip(self.policies()) {
                explained.invalidations =
                    Some(policy.probe(Question::Invalidations(call, &outcome)));
            }
            let (applied, shaper) = self.invalidations_shaped_by(call, &outcome, |index, _| {
                invalidations_of(policies[index].invalidations.as_ref())
            });
            ExplainedInvalidations { applied, shaper }
        });
        ChainExplanation {
            generation: self.generation(),
            policies,
            sourced,
            ttl_source,
            invalidations,
        }
    }
}

fn decision_of(probed: &Probed) -> Decision {
    match &probed.answer {
        Answer::Decision(decision) => decision.clone(),
        _ => Decision::Abstain,
    }
}

fn ttl_of(probed: Option<&Probed>) -> TtlAnswer {
    match probed.map(|probed| &probed.answer) {
        Some(Answer::Ttl(answer)) => *answer,
        _ => TtlAnswer::Abstain,
    }
}

fn invalidations_of(probed: Option<&Probed>) -> InvalidationAnswer {
    match probed.map(|probed| &probed.answer) {
        Some(Answer::Invalidations(answer)) => answer.clone(),
        _ => InvalidationAnswer::Abstain,
    }
}

impl ChainExplanation {
    /// The explanation as the JSON `POST /admin/explain` and `bench explain` show (the
    /// README's "Explain a call" documents every field): `generation`, `bindings` (each
    /// policy's `name`, `kind`, `applies`, `quarantined`, `answer`, `fault`, and `ttl` and
    /// `invalidations` when asked), `decided_by`, `decision`, `ttl_ms`, `ttl_source`,
    /// `writes` and `invalidations`.
    pub fn to_json(&self) -> Value {
        let bindings: Vec<Value> = self.policies.iter().map(policy_json).collect();
        let ttl_ms = match &self.sourced.decision {
            Decision::Cache(directive) => directive.ttl.map(millis).into(),
            _ => Value::Null,
        };
        json!({
            "generation": self.generation,
            "bindings": bindings,
            "decided_by": &*self.sourced.decided_by,
            "decision": decision_json(&self.sourced.decision),
            "ttl_ms": ttl_ms,
            "ttl_source": self.ttl_source.as_ref().map(ToString::to_string),
            "writes": self.invalidations.is_some(),
            "invalidations": self.invalidations.as_ref().map(|explained| json!({
                "applied": explained.applied.iter().map(invalidation_json).collect::<Vec<_>>(),
                "shaped_by": shaper_token(explained.shaper),
            })),
        })
    }
}

fn policy_json(policy: &ExplainedPolicy) -> Value {
    let asked = |probed: &Probed| {
        json!({
            "answer": answer_json(&probed.answer),
            "fault": probed.fault,
        })
    };
    json!({
        "name": &*policy.name,
        "kind": if policy.builtin { "builtin" } else { "plugin" },
        "applies": policy.decide.applies,
        "quarantined": policy.quarantined(),
        "answer": answer_json(&policy.decide.answer),
        "fault": policy.decide.fault,
        "ttl": policy.ttl.as_ref().map(asked),
        "invalidations": policy.invalidations.as_ref().map(asked),
    })
}

fn answer_json(answer: &Answer) -> Value {
    match answer {
        Answer::Decision(decision) => decision_json(decision),
        Answer::Ttl(TtlAnswer::Abstain) => json!("abstain"),
        Answer::Ttl(TtlAnswer::Ttl(ttl)) => json!({ "ttl_ms": millis(*ttl) }),
        Answer::Invalidations(InvalidationAnswer::Abstain) => json!("abstain"),
        Answer::Invalidations(InvalidationAnswer::Rules(rules)) => {
            Value::Array(rules.iter().map(invalidation_json).collect())
        }
    }
}

/// A decision: `{"decision": "abstain" | "bypass"}`, or `"cache"` with the directive
/// (`ttl_ms` null is no expiry).
pub fn decision_json(decision: &Decision) -> Value {
    match decision {
        Decision::Cache(directive) => directive_json(directive),
        other => json!({ "decision": other.label() }),
    }
}

fn directive_json(directive: &Directive) -> Value {
    json!({
        "decision": "cache",
        "ttl_ms": directive.ttl.map(millis),
        "shared": directive.shared,
        "tags": directive.tags,
        "ignore_arguments": directive.ignore_arguments,
        "stale_while_revalidate_ms": directive.stale_while_revalidate.map(millis),
        "stale_if_error_ms": directive.stale_if_error.map(millis),
        "negative_ttl_ms": directive.negative_ttl.map(millis),
    })
}

/// An invalidation in the shape `POST /admin/cache/invalidate` takes: `{"server"}`,
/// `{"server","tool"}`, `{"tag"}` or `{"key"}`.
pub fn invalidation_json(invalidation: &Invalidation) -> Value {
    match invalidation {
        Invalidation::Server(server) => json!({ "server": server }),
        Invalidation::Tool { server, tool } => json!({ "server": server, "tool": tool }),
        Invalidation::Tag(tag) => json!({ "tag": tag }),
        Invalidation::Key(key) => json!({ "key": key }),
    }
}

fn shaper_token(shaper: Shaper) -> &'static str {
    match shaper {
        Shaper::Plugin => "plugin",
        Shaper::ConfigRules => "config",
        Shaper::BuiltinDefault => "default",
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
