//! Where sessions are known beyond this replica. A session token lets any replica continue a
//! session, but two facts change after the token was issued: that the session ended (a
//! DELETE) and the log level its client set. The front records both through a
//! [`SessionDirectory`] and asks it about a session it does not hold; the application plugs
//! in the shared tier's implementation, or [`NoDirectory`] for a single replica. The front
//! never learns what is behind it.

use mcp_bridge_upstream::BoxFuture;

/// Where sessions are known beyond this replica (the shared tier), or nowhere.
pub trait SessionDirectory: Send + Sync + 'static {
    /// Records that a session ended, so every replica refuses it until `expires_at` (unix seconds).
    fn revoke(&self, session: &str, expires_at: u64) -> BoxFuture<'static, ()>;
    /// What the shared tier knows of a session this replica does not hold: whether it was
    /// revoked and the log level last set elsewhere. A tier that cannot be reached answers
    /// `SharedSession::default()` (never fails a request).
    fn lookup(&self, session: &str) -> BoxFuture<'static, SharedSession>;
    /// Records a `logging/setLevel`, so other replicas apply it.
    fn set_log_level(&self, session: &str, rank: u8, expires_at: u64) -> BoxFuture<'static, ()>;
}

/// What the shared tier knows of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedSession {
    pub revoked: bool,
    /// The rank of the log level last set (`logging/setLevel`), least severe first
    /// (0 = debug … 7 = emergency).
    pub log_level: Option<u8>,
}

/// A change another replica made, delivered by the shared tier's broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The session ended: a replica holding it closes it (its GET streams end) and refuses
    /// its token from then on.
    Revoked { session: String },
    /// The session's client set its log level.
    LogLevel { session: String, rank: u8 },
}

/// A single replica's directory: nothing to tell, nobody to ask. A DELETE is remembered by
/// this replica alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDirectory;

impl SessionDirectory for NoDirectory {
    fn revoke(&self, _session: &str, _expires_at: u64) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }

    fn lookup(&self, _session: &str) -> BoxFuture<'static, SharedSession> {
        Box::pin(std::future::ready(SharedSession::default()))
    }

    fn set_log_level(&self, _session: &str, _rank: u8, _expires_at: u64) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The most revoked sessions a replica remembers itself. Each entry is forgotten when its
/// token expires anyway; past this many, the soonest-expiring ones go first, so a flood of
/// DELETEs cannot grow memory without bound (the shared tier still remembers them).
pub(crate) const MAX_REVOKED_SESSIONS: usize = 100_000;

/// Sessions this replica saw end (a DELETE here, or a broadcast from another replica),
/// remembered until their tokens expire so their tokens are refused here without asking
/// the shared tier.
#[derive(Debug, Default)]
pub(crate) struct RevokedSessions {
    /// Session id to expiry (unix seconds).
    by_session: std::collections::HashMap<String, u64>,
    /// The same entries by expiry, to forget the expired and the soonest-expiring.
    by_expiry: std::collections::BTreeSet<(u64, String)>,
}

impl RevokedSessions {
    /// Remembers `session` as ended until `expires_at`; at [`MAX_REVOKED_SESSIONS`] the
    /// entry expiring soonest is forgotten first.
    pub(crate) fn insert(&mut self, session: &str, expires_at: u64) {
        if let Some(previous) = self.by_session.insert(session.to_owned(), expires_at) {
            self.by_expiry.remove(&(previous, session.to_owned()));
        }
        self.by_expiry.insert((expires_at, session.to_owned()));
        while self.by_session.len() > MAX_REVOKED_SESSIONS {
            let Some((_, soonest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.by_session.remove(&soonest);
        }
    }

    /// Whether `session` is remembered as ended (and not yet expired).
    pub(crate) fn contains(&self, session: &str, now: u64) -> bool {
        self.by_session
            .get(session)
            .is_some_and(|expires_at| *expires_at > now)
    }

    /// Forgets the sessions whose tokens have expired: no replica accepts them anyway.
    pub(crate) fn forget_expired(&mut self, now: u64) {
        while let Some((expires_at, _)) = self.by_expiry.first() {
            if *expires_at > now {
                break;
            }
            if let Some((_, session)) = self.by_expiry.pop_first() {
                self.by_session.remove(&session);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_session.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_sessions_are_forgotten_when_they_expire() {
        let mut revoked = RevokedSessions::default();
        revoked.insert("a", 100);
        revoked.insert("b", 200);
        assert!(revoked.contains("a", 50) && revoked.contains("b", 50));
        assert!(!revoked.contains("a", 100), "an expired entry still counts");
        revoked.forget_expired(150);
        assert_eq!(revoked.len(), 1);
        assert!(!revoked.contains("a", 50) && revoked.contains("b", 150));
        // A second revocation of the same session moves its expiry, and keeps one entry.
        revoked.insert("b", 300);
        revoked.forget_expired(250);
        assert!(revoked.contains("b", 250));
        assert_eq!(revoked.len(), 1);
    }

    #[test]
    fn at_the_cap_the_soonest_expiring_entry_goes_first() {
        let mut revoked = RevokedSessions::default();
        for i in 0..MAX_REVOKED_SESSIONS as u64 {
            revoked.insert(&format!("s{i}"), 1_000 + i);
        }
        revoked.insert("late", 10_000_000);
        assert_eq!(revoked.len(), MAX_REVOKED_SESSIONS);
        assert!(
            !revoked.contains("s0", 0),
            "the soonest-expiring entry stayed"
        );
        assert!(revoked.contains("s1", 0) && revoked.contains("late", 0));
    }
}
