//! Decisions remembered per distinct call, when the chain is pure.
//!
//! A pure chain ([`PolicyChain::is_pure`]: the built-in policy, plugins whose `init`
//! declared `pure`) answers a call from the call alone, so a replay asks it once per
//! distinct call and reuses that answer for every later event of the same call. A chain
//! with a stateful plugin is asked on every event, as before.
//!
//! What a policy sees of a read in the replay is the [`Call`] built from its event:
//! server, method (and the kind it implies), name, principal and the arguments' hash are
//! the event's dense key ([`Event::key`]); the arguments' text and the annotations are
//! recorded per event, so they are compared as well (a trace may mix records with and
//! without arguments, and a server may change a tool's annotations); the server's hints
//! are always empty at decide time. An answer is reused only when all of these match.
//! The first variant of each key is found by index; any other variant of the same key (its
//! arguments' text or annotations differ) by all of its inputs in a map.
//!
//! Writes are not remembered: their invalidations depend on the outcome too, and its
//! latency and size differ almost every time, so an exact memo would rarely hit, and a
//! coarser one would be unsound for a plugin that reads them. Every write is asked, so a
//! plugin's invalidation rules bound how fast its replay can go (on the seed-tasks
//! preset, one event in five is a write).
//!
//! [`Call`]: mcp_bridge_policy::Call
//! [`Event::key`]: crate::loaded::Event::key

use std::collections::HashMap;

use mcp_bridge_policy::{Annotations, Decision, PolicyChain, Shaper};

use crate::loaded::Event;

/// The chain's decisions of one replay, remembered per dense key when it is pure.
pub(crate) struct DecisionMemo {
    /// Whether answers may be reused: the chain is pure.
    reuse: bool,
    /// Per dense key: the answer for the first call of that key and the inputs beyond
    /// the key it was given for.
    remembered: Vec<Option<Remembered>>,
    /// The answers for the other calls of a key: (key, arguments, annotations) → answer.
    variants: HashMap<(u32, u32, Annotations), (Decision, Shaper)>,
    /// The answer of a call that is not remembered, lent to the caller until the next.
    latest: (Decision, Shaper),
    /// Events answered with a remembered decision, without asking the chain.
    pub(crate) reused: u64,
}

struct Remembered {
    arguments: u32,
    annotations: Annotations,
    answer: (Decision, Shaper),
}

impl DecisionMemo {
    /// A memo for a replay of a trace with `trace_keys` dense keys against `chain`.
    pub(crate) fn new(chain: &PolicyChain, trace_keys: u32) -> DecisionMemo {
        let reuse = chain.is_pure();
        let slots = if reuse { trace_keys as usize } else { 0 };
        let mut remembered = Vec::with_capacity(slots);
        remembered.resize_with(slots, || None);
        DecisionMemo {
            reuse,
            remembered,
            variants: HashMap::new(),
            latest: (Decision::Bypass, Shaper::BuiltinDefault),
            reused: 0,
        }
    }

    /// Forgets every remembered decision (the shadow evaluator's new window: its keys
    /// are numbered afresh); the count of reuses stays.
    pub(crate) fn forget_keys(&mut self) {
        self.remembered.clear();
        self.variants.clear();
    }

    /// Whether this replay reuses decisions, so the chain is asked once per distinct call.
    pub(crate) fn reuses(&self) -> bool {
        self.reuse
    }

    /// The decision for `event`: the one remembered for the same call, or `ask`'s (the
    /// chain's), remembered when the chain is pure.
    pub(crate) fn decide(
        &mut self,
        event: &Event,
        ask: impl FnOnce() -> (Decision, Shaper),
    ) -> &(Decision, Shaper) {
        let index = event.key as usize;
        // A live replay's keys appear as it goes: room is made for each.
        if self.reuse && index >= self.remembered.len() {
            self.remembered.resize_with(index + 1, || None);
        }
        let slot = match self.reuse {
            true => self.remembered.get_mut(index),
            false => None,
        };
        let Some(slot) = slot else {
            self.latest = ask();
            return &self.latest;
        };
        let mut asked = false;
        let ask_once = || {
            asked = true;
            ask()
        };
        let other_variant = slot.as_ref().is_some_and(|remembered| {
            remembered.arguments != event.arguments || remembered.annotations != event.annotations
        });
        let answer = match other_variant {
            true => self
                .variants
                .entry((event.key, event.arguments, event.annotations))
                .or_insert_with(ask_once),
            false => {
                &slot
                    .get_or_insert_with(|| Remembered {
                        arguments: event.arguments,
                        annotations: event.annotations,
                        answer: ask_once(),
                    })
                    .answer
            }
        };
        if !asked {
            self.reused += 1;
        }
        answer
    }
}
