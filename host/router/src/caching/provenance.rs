//! Where a call's cache treatment came from, for the `mcp-bridge-cache` header: the
//! policy that decided it, the source of its TTL and the generation that filled the entry
//! it was answered from. A hit copies two shared pointers and a number; only calls that
//! reach the backend work out a source they did not store.

use std::sync::Arc;

use mcp_bridge_cache::Entry;
use mcp_bridge_policy::TtlSource;
use mcp_bridge_upstream::CacheProvenance;

use super::CallCache;

impl CallCache {
    /// Notes that the call is answered from `entry`: its TTL source and filling
    /// generation are the entry's (two copies of a shared pointer and a number).
    pub(super) fn answered_from(&mut self, entry: &Entry) {
        self.from_entry = true;
        self.ttl_source = entry.ttl_source.clone();
        self.filled = entry.filled_generation;
    }

    /// Where the call's cache treatment came from, for the cache header. Only a call that
    /// went to the backend works out a TTL source it did not store (a bypass by a zero
    /// row, a follower), so a hit allocates nothing here.
    pub(crate) fn provenance(&self) -> CacheProvenance {
        let ttl_source = match (&self.ttl_source, &self.sourced) {
            (Some(source), _) => Some(source.clone()),
            (None, Some(sourced)) if !self.from_entry => self
                .policies
                .ttl_source(sourced, &self.call.server, &self.call.name)
                .map(|source| Arc::from(source.to_string())),
            (None, _) => None,
        };
        CacheProvenance {
            decided_by: self
                .sourced
                .as_ref()
                .map(|sourced| sourced.decided_by.clone()),
            ttl_source,
            filled: self.filled,
        }
    }

    /// The source of the TTL an entry this call fills gets, before the server's `ttlMs`
    /// and the shared tier's cap have their say: the table or directive that set it, and
    /// for an `isError` result's negative TTL the deciding policy's directive.
    pub(super) fn policy_ttl_source(&self, is_error: bool) -> Option<TtlSource> {
        let sourced = self.sourced.as_ref()?;
        if !is_error {
            return self
                .policies
                .ttl_source(sourced, &self.call.server, &self.call.name);
        }
        let builtin = self.policies.names().len().saturating_sub(1);
        Some(if sourced.decider_index == builtin {
            TtlSource::Default
        } else {
            TtlSource::Directive {
                policy: sourced.decided_by.clone(),
            }
        })
    }
}
