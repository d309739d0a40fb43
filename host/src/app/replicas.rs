//! What replicas share through the shared tier besides the cache: the front's sessions
//! (revocations and log levels, over Redis and its broadcast). The front defines what it
//! needs (`SessionDirectory`, `SessionEvent`); this module answers it with the tier.

use std::sync::{Arc, Weak};

use mcp_bridge::front::{AppState, SessionDirectory, SessionEvent, SharedSession};
use mcp_bridge::shared::{Event, SharedTier, TierListener};
use mcp_bridge::upstream::BoxFuture;

/// The front's session directory over the shared tier.
pub(crate) struct SharedSessions {
    pub(crate) tier: Arc<SharedTier>,
}

impl SessionDirectory for SharedSessions {
    fn revoke(&self, session: &str, expires_at: u64) -> BoxFuture<'static, ()> {
        let tier = self.tier.clone();
        let session = session.to_owned();
        Box::pin(async move { tier.revoke_session(&session, expires_at).await })
    }

    fn lookup(&self, session: &str) -> BoxFuture<'static, SharedSession> {
        let tier = self.tier.clone();
        let session = session.to_owned();
        Box::pin(async move {
            let state = tier.session(&session).await;
            SharedSession {
                revoked: state.revoked,
                log_level: state.log_level,
            }
        })
    }

    fn set_log_level(&self, session: &str, rank: u8, expires_at: u64) -> BoxFuture<'static, ()> {
        let tier = self.tier.clone();
        let session = session.to_owned();
        Box::pin(async move { tier.set_session_log_level(&session, rank, expires_at).await })
    }
}

/// Hands other replicas' session events to this replica's front.
pub(crate) struct SessionEvents {
    pub(crate) front: Weak<AppState>,
}

impl TierListener for SessionEvents {
    fn event(&self, event: &Event) {
        let Some(front) = self.front.upgrade() else {
            return;
        };
        match event {
            Event::SessionRevoked { session } => front.session_event(SessionEvent::Revoked {
                session: session.clone(),
            }),
            Event::SessionLogLevel { session, rank } => {
                front.session_event(SessionEvent::LogLevel {
                    session: session.clone(),
                    rank: *rank,
                });
            }
            Event::Invalidated { .. } | Event::Notification { .. } | Event::Heartbeat => {}
        }
    }
}
