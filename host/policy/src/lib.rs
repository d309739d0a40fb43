//! The policy vocabulary of mcp-bridge, shared by the host, the plugin SDK and the lab:
//! which calls are cached, for how long, under what key and tags, and what a completed
//! call invalidates. Pure decisions over plain data, no I/O.
//!
//! The names follow the WIT contract (`wit/policy.wit`): [`Call`], [`CallKind`],
//! [`Directive`] (`cache-directive`), [`Decision`], [`TtlAnswer`], [`Outcome`],
//! [`Invalidation`], [`InvalidationAnswer`]. Each side of the WIT boundary converts the
//! generated types to these and back (the host in `plugin/bindings.rs`, the SDK in its
//! glue), so a plugin and the host speak one vocabulary.
//!
//! The three parts of a [`Policy`] mirror the three plugin interfaces (`cache-policy`,
//! `ttl-table`, `invalidation-rules`): a policy may answer any of them and abstain on the
//! rest, and a [`PolicyChain`] asks its policies in order (first answer wins for
//! decisions and TTLs; invalidations are the union). The [`BuiltinPolicy`] ends every
//! chain. [`PolicyChain::decide_sourced`] also says where a decision and its TTL came
//! from ([`Sourced`], [`TtlSource`]), [`Policy::probe`] asks one policy one question
//! on its own, and [`PolicyChain::explain`] asks every policy of a chain about one call
//! that way ([`ChainExplanation`]); [`PolicyChain::ttl_overrides`] lists the TTLs a table
//! sets over a plugin's own, for the log line a swap writes. [`TtlMap`] is the one TTL-table precedence; [`units`] is
//! the one duration and size grammar.
//!
//! This crate depends on std, serde and serde_json (and humantime, std-only) and builds
//! for `wasm32-wasip2`: every plugin compiles it in.

mod builtin;
mod chain;
mod explain;
mod overrides;
mod provenance;
mod rules;
pub mod units;
mod vocabulary;

pub use builtin::{BuiltinPolicy, BuiltinSettings};
pub use chain::{Policy, PolicyChain, PolicySink, Shaper};
pub use explain::{
    ChainExplanation, ExplainedInvalidations, ExplainedPolicy, decision_json, invalidation_json,
};
pub use overrides::{MAX_OVERRIDE_PROBES, TtlOverride};
pub use provenance::{Answer, Probed, Question, Sourced, TtlSource};
pub use rules::{ANY, InvalidationRule, TtlMap, TtlRule};
pub use units::{parse_duration, parse_size};
pub use vocabulary::{
    Annotations, Call, CallKind, Decision, Directive, Invalidation, InvalidationAnswer, Outcome,
    ServerHints, Status, TtlAnswer,
};
