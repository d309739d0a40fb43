//! The names of everything the bridge keeps in Redis, all under the configured prefix.
//! Cache keys, tags and session ids are hashed or checked before they become key names, so
//! a client's arguments or a policy's tags cannot make a key of unbounded length.

use sha2::{Digest, Sha256};

/// The dependency every entry has: invalidating it (a cache clear, or a replica that lost
/// more invalidations than it could keep) invalidates everything on every replica. Built-in
/// and policy tags always carry a `kind:` prefix, so no tag can be spelled like this.
pub const EVERYTHING: &str = "everything";

/// The key names of one deployment (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The random number that names this incarnation of the tier's data: when Redis loses
    /// its data, a new epoch makes every stamp taken before it stale.
    pub(crate) fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    /// The one sequence every generation is drawn from, so no value repeats.
    pub(crate) fn sequence(&self) -> String {
        format!("{}seq", self.prefix)
    }

    /// The generation counter of one dependency (a tag, a key or [`EVERYTHING`]).
    pub(crate) fn generation(&self, dependency: &str) -> String {
        format!("{}g:{}", self.prefix, digest(dependency))
    }

    /// A cached entry by its cache key.
    pub(crate) fn entry(&self, cache_key: &str) -> String {
        format!("{}e:{}", self.prefix, digest(cache_key))
    }

    /// The mark that a session ended (DELETE), kept until the session would have expired.
    pub(crate) fn revoked_session(&self, session: &str) -> String {
        format!("{}s:revoked:{}", self.prefix, digest(session))
    }

    /// The log level a session's client set last.
    pub(crate) fn session_log_level(&self, session: &str) -> String {
        format!("{}s:level:{}", self.prefix, digest(session))
    }

    /// The channel every replica subscribes to.
    pub(crate) fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }
}

/// 128 bits of SHA-256 in hex: short, fixed length, and collisions out of reach.
fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_hashed_and_fixed_length() {
        let keys = Keys::new("p:");
        let short = keys.generation("server:demo");
        let long = keys.generation(&"x".repeat(100_000));
        assert!(short.starts_with("p:g:"));
        assert_eq!(short.len(), long.len());
        assert_ne!(keys.entry("a"), keys.entry("b"));
        assert_ne!(keys.generation("key:a"), keys.entry("key:a"));
    }
}
