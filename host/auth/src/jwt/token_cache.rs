//! Verified tokens by the SHA-256 digest of the token, until their `exp`.
//!
//! Every authenticated request looks here first, so a hit must cost next to nothing: a
//! read lock on one of a few shards and a hash lookup. Writes happen only after a
//! signature check, which costs far more than anything done here, so a full shard may
//! scan itself to make room.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;

use crate::Principal;

/// Shards of the cache (fewer for a tiny capacity), so concurrent requests rarely wait on
/// one lock.
const SHARDS: usize = 16;

type Shard = RwLock<HashMap<[u8; 32], Arc<CachedToken>>>;

/// A verified token's principal, until the token's `exp`.
pub(crate) struct CachedToken {
    pub(crate) principal: Principal,
    /// The token's `exp`: a hit at or after it is a miss.
    pub(crate) expires_at: SystemTime,
}

/// At most about `capacity` verified tokens. Cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct TokenCache {
    shards: Arc<[Shard]>,
    per_shard: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> TokenCache {
        let shards = SHARDS.min(capacity).max(1);
        TokenCache {
            shards: (0..shards).map(|_| RwLock::default()).collect(),
            per_shard: capacity.div_ceil(shards).max(1),
        }
    }

    fn shard(&self, digest: &[u8; 32]) -> &Shard {
        // The digest is uniformly distributed, so its first byte spreads tokens evenly.
        &self.shards[usize::from(digest[0]) % self.shards.len()]
    }

    /// The principal of a token verified before, unless it has expired since (then it is
    /// dropped).
    pub(crate) fn get(&self, digest: &[u8; 32], now: SystemTime) -> Option<Principal> {
        let shard = self.shard(digest);
        let entry = shard.read().get(digest).cloned()?;
        if now < entry.expires_at {
            return Some(entry.principal.clone());
        }
        shard.write().remove(digest);
        None
    }

    /// Remembers a verified token. A full shard first drops its expired tokens, then, if
    /// still full, the one that expires soonest.
    pub(crate) fn insert(&self, digest: [u8; 32], entry: CachedToken, now: SystemTime) {
        let mut shard = self.shard(&digest).write();
        if shard.len() >= self.per_shard && !shard.contains_key(&digest) {
            shard.retain(|_, cached| now < cached.expires_at);
            if shard.len() >= self.per_shard
                && let Some(soonest) = shard
                    .iter()
                    .min_by_key(|(_, cached)| cached.expires_at)
                    .map(|(key, _)| *key)
            {
                shard.remove(&soonest);
            }
        }
        shard.insert(digest, Arc::new(entry));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry(name: &str, expires_at: SystemTime) -> CachedToken {
        let mut principal = Principal::anonymous();
        principal.name = Arc::from(name);
        CachedToken {
            principal,
            expires_at,
        }
    }

    #[test]
    fn a_token_is_found_until_it_expires() {
        let cache = TokenCache::new(100);
        let now = SystemTime::now();
        cache.insert([1; 32], entry("alice", now + Duration::from_secs(60)), now);
        let found = cache.get(&[1; 32], now).map(|p| p.name.to_string());
        assert_eq!(found.as_deref(), Some("alice"));
        assert!(cache.get(&[2; 32], now).is_none());
        assert!(cache.get(&[1; 32], now + Duration::from_secs(60)).is_none());
        assert_eq!(cache.len(), 0, "an expired token is dropped when found");
    }

    #[test]
    fn a_full_cache_stays_bounded_and_drops_the_soonest_to_expire() {
        // One shard's worth: every digest below lands in shard 0.
        let cache = TokenCache::new(SHARDS * 2);
        let now = SystemTime::now();
        let digest = |n: u8| {
            let mut digest = [0u8; 32];
            digest[1] = n;
            digest
        };
        cache.insert(
            digest(1),
            entry("late", now + Duration::from_secs(300)),
            now,
        );
        cache.insert(digest(2), entry("soon", now + Duration::from_secs(10)), now);
        cache.insert(digest(3), entry("new", now + Duration::from_secs(60)), now);
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&digest(2), now).is_none(),
            "the soonest to expire went"
        );
        assert!(cache.get(&digest(1), now).is_some());
        assert!(cache.get(&digest(3), now).is_some());
    }
}
