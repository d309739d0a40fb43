//! The cache layer's side of the shared tier: the dependencies an entry is judged by, the
//! stamp as the first level keeps it, the second level read with both keys' stamps, strict
//! mode's checks of a hit and of a leader's result, and the listener that applies other
//! replicas' invalidations here.

use std::sync::{Arc, Weak};

use mcp_bridge_cache::{
    Entry, FillTicket, FlightResult, InvalidationReason, ResponseCache, codec, key_dependency,
};
use mcp_bridge_config::Consistency;
use mcp_bridge_shared::{Candidate, EVERYTHING, Event, SharedTier, Stamp, TierListener};

use super::{CallCache, Mode};

/// What an entry stored under `key` with `tags` depends on: everything, its tags, its key.
/// Its stamp has one generation per dependency, in this order.
pub(crate) fn dependencies(tags: &[String], key: &str) -> Vec<String> {
    let mut dependencies = Vec::with_capacity(tags.len() + 2);
    dependencies.push(EVERYTHING.to_owned());
    dependencies.extend(tags.iter().cloned());
    dependencies.push(key_dependency(key));
    dependencies
}

/// A stamp as an entry carries it: the epoch, then the generations.
pub(crate) fn stamp_words(stamp: &Stamp) -> Arc<[u64]> {
    std::iter::once(stamp.epoch)
        .chain(stamp.generations.iter().copied())
        .collect()
}

/// The stamp an entry carries, back in the tier's type.
pub(crate) fn stamp_of(words: &[u64]) -> Option<Stamp> {
    let (epoch, generations) = words.split_first()?;
    Some(Stamp {
        epoch: *epoch,
        generations: generations.to_vec(),
    })
}

/// Whether an entry found in the first level may be served in strict mode: `Some(true)`
/// when Redis holds its stamp, `Some(false)` when it is out of date (or has no stamp), and
/// `None` when Redis could not say (the entry is then neither served nor dropped).
pub(crate) async fn still_current(
    tier: &SharedTier,
    stamp: Option<&[u64]>,
    tags: &[String],
    key: &str,
) -> Option<bool> {
    let Some(stamp) = stamp.and_then(stamp_of) else {
        return Some(false);
    };
    tier.is_current(&dependencies(tags, key), &stamp).await.ok()
}

/// Applies what other replicas invalidated to this replica's first level.
pub(crate) struct RemoteInvalidations {
    pub(crate) cache: Weak<ResponseCache>,
}

impl TierListener for RemoteInvalidations {
    fn invalidated(&self, dependencies: &[String]) {
        let Some(cache) = self.cache.upgrade() else {
            return;
        };
        for dependency in dependencies {
            if dependency == EVERYTHING {
                cache.clear_for(InvalidationReason::Remote);
            } else {
                cache.invalidate_dependency(dependency, InvalidationReason::Remote);
            }
        }
    }

    fn flush(&self) {
        if let Some(cache) = self.cache.upgrade() {
            let dropped = cache.clear_for(InvalidationReason::Resync);
            if dropped > 0 {
                tracing::info!(
                    dropped,
                    "dropped the first level: it may hold entries a missed broadcast would have evicted"
                );
            }
        }
    }

    fn event(&self, _event: &Event) {}
}

/// What the second level had for a miss of the first.
pub(super) enum SecondLevel {
    /// A current entry: its key and the dependencies its stamp covers.
    Hit(Entry, Arc<str>, Arc<[String]>),
    /// Nothing current; the stamps a fill of the shared and the private key take.
    Miss(Option<Stamp>, Option<Stamp>),
    /// The tier could not be asked: the fill goes without stamps.
    Unavailable,
}

impl CallCache {
    /// Reads both keys from the second level in one round trip, with their current stamps.
    pub(super) async fn second_level(
        &self,
        tier: &SharedTier,
        tags: &[String],
        shared_key: &Arc<str>,
        private_key: Option<&Arc<str>>,
        ticket: &FillTicket,
        shared_allowed: bool,
    ) -> SecondLevel {
        if !tier.is_trusted() {
            tier.count_skipped_lookup();
            return SecondLevel::Unavailable;
        }
        let keys: Vec<&Arc<str>> = std::iter::once(shared_key).chain(private_key).collect();
        let deps: Vec<Vec<String>> = keys.iter().map(|key| dependencies(tags, key)).collect();
        let candidates: Vec<Candidate<'_>> = keys
            .iter()
            .zip(&deps)
            .map(|(key, deps)| Candidate {
                cache_key: key,
                dependencies: deps,
            })
            .collect();
        let Ok(found) = tier.fetch(&candidates).await else {
            return SecondLevel::Unavailable;
        };
        let mut stamps = Vec::with_capacity(found.len());
        for ((fetched, key), deps) in found.into_iter().zip(keys).zip(deps) {
            let words = stamp_words(&fetched.stamp);
            let entry = fetched
                .value
                .as_deref()
                .and_then(|bytes| codec::decode(bytes, Some(words)))
                .filter(|entry| entry.is_fresh() && entry.tags == tags);
            // A private entry under the shared key (or the reverse) is not this key's, and a
            // shared one is not served once the policy keeps the result private.
            let entry = entry.filter(|entry| {
                entry.private == (key != shared_key) && (entry.private || shared_allowed)
            });
            if let Some(entry) = entry
                && self.layer.cache.is_current(ticket, key, tags)
            {
                return SecondLevel::Hit(entry, key.clone(), Arc::from(deps));
            }
            stamps.push(fetched.stamp);
        }
        let mut stamps = stamps.into_iter();
        SecondLevel::Miss(stamps.next(), stamps.next())
    }

    /// Reads the shared tier's stamps for a background refresh before it calls the
    /// backend (a refresh is planned while a stale entry is served, without a round trip).
    pub(crate) async fn stamp_refresh(&mut self) {
        let (Some(tier), Mode::Fill(fill)) = (self.layer.shared.clone(), &mut self.mode) else {
            return;
        };
        if !tier.is_up() {
            return;
        }
        fill.shared_stamp = tier
            .stamp(&dependencies(&fill.tags, &fill.shared_key))
            .await
            .ok();
        if let Some(private_key) = &fill.private_key {
            fill.private_stamp = tier
                .stamp(&dependencies(&fill.tags, private_key))
                .await
                .ok();
        }
    }

    /// Whether this call's caller may use another caller's published result: it must be
    /// visible to the caller, nothing it depends on may have been invalidated here during
    /// its fill, and in strict mode Redis must still hold its stamp (the fill may have
    /// started before a write on another replica whose broadcast has not arrived).
    pub(crate) async fn accepts(&self, result: &FlightResult) -> bool {
        if !result.visible_to(self.call.principal.as_ref()) || !result.current {
            return false;
        }
        let Some(tier) = &self.layer.shared else {
            return true;
        };
        if tier.consistency() != Consistency::Strict {
            return true;
        }
        let Some((deps, words)) = &result.stamp else {
            return false;
        };
        let Some(stamp) = super::shared_level::stamp_of(words) else {
            return false;
        };
        tier.is_current(deps, &stamp).await.unwrap_or(false)
    }
}
