//! Key shaping in the replay, as `serve` applies it: a policy's `ignore_arguments` leave
//! those top-level arguments out of the cache key, so calls that differ only in them share
//! one entry. Shaped keys get dense ids after the trace's own; each distinct arguments
//! text and ignore list is shaped once.
//!
//! A trace recorded without arguments (only their hash) cannot be shaped: its calls keep
//! their recorded keys, a difference from `serve` the README lists.

use std::collections::HashMap;

use crate::loaded::{Event, Trace};

/// The shaped keys one replay has made.
pub(crate) struct Shapes {
    next: u32,
    /// (arguments text id, ignore list) → the canonical text without the ignored keys.
    shaped_arguments: HashMap<(u32, Vec<String>), String>,
    /// (server, method, name, partition or 0, shaped arguments) → dense key.
    keys: HashMap<(u32, u32, u32, u32, String), u32>,
}

impl Shapes {
    pub(crate) fn new(trace_keys: u32) -> Shapes {
        Shapes {
            next: trace_keys,
            shaped_arguments: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// How many keys exist now, the trace's and the shaped ones.
    pub(crate) fn keys(&self) -> u32 {
        self.next
    }

    /// The shaped key of `event`, or `None` when nothing is ignored or the trace has no
    /// arguments to shape.
    pub(crate) fn key(
        &mut self,
        trace: &Trace,
        event: &Event,
        shared: bool,
        ignore: &[String],
    ) -> Option<u32> {
        if ignore.is_empty() || event.arguments == 0 {
            return None;
        }
        let shaped = self
            .shaped_arguments
            .entry((event.arguments, ignore.to_vec()))
            .or_insert_with(|| {
                let value = serde_json::from_str(trace.string(event.arguments)).ok();
                mcp_bridge_cache::canonical_arguments(value.as_ref(), ignore)
            })
            .clone();
        let partition = if shared { 0 } else { event.partition };
        let next = &mut self.next;
        let key = *self
            .keys
            .entry((event.server, event.method, event.name, partition, shaped))
            .or_insert_with(|| {
                let key = *next;
                *next = next.saturating_add(1);
                key
            });
        Some(key)
    }
}
