//! The cache layer's side of the shared tier: the dependencies an entry is judged by, the
//! stamp as the first level keeps it, and the listener that applies other replicas'
//! invalidations here.

use std::sync::{Arc, Weak};

use mcp_bridge_cache::{InvalidationReason, ResponseCache, key_dependency};
use mcp_bridge_shared::{EVERYTHING, Event, SharedTier, Stamp, TierListener};

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
