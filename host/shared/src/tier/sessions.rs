//! What the front's sessions and GET streams keep in the tier: revocations, log levels, and
//! server notifications for other replicas' subscribers.

use serde_json::Value;

use super::{Event, MAX_MESSAGE_BYTES, SessionState, SharedTier, TierError};

impl SharedTier {
    /// Records that a session ended, for every replica, until it would have expired. When
    /// Redis cannot take it, it is queued and replayed with the invalidations.
    pub async fn revoke_session(&self, session: &str, expires_at_unix: u64) {
        if let Err(error) = self.record_revocation(session, expires_at_unix).await {
            tracing::warn!(%error, "could not record a session's end in the shared tier; it is queued until Redis answers");
            self.queue_revocation(session, expires_at_unix);
        }
    }

    pub(super) async fn record_revocation(
        &self,
        session: &str,
        expires_at_unix: u64,
    ) -> Result<(), TierError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.revoked_session(session))
            .arg(1)
            .arg("EXAT")
            .arg(expires_at_unix)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg(self.envelope(Event::SessionRevoked {
                session: session.to_owned(),
            }))
            .ignore();
        self.bounded(
            "revoke_session",
            pipe.query_async(&mut self.connection.clone()),
        )
        .await
    }

    /// Records a session's log level for the replicas that resume it later, and tells the
    /// ones that hold it now.
    pub async fn set_session_log_level(&self, session: &str, rank: u8, expires_at_unix: u64) {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.session_log_level(session))
            .arg(rank)
            .arg("EXAT")
            .arg(expires_at_unix)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg(self.envelope(Event::SessionLogLevel {
                session: session.to_owned(),
                rank,
            }))
            .ignore();
        let result: Result<(), TierError> = self
            .bounded(
                "session_log_level",
                pipe.query_async(&mut self.connection.clone()),
            )
            .await;
        if let Err(error) = result {
            tracing::debug!(%error, "could not record a session's log level in the shared tier");
        }
    }

    /// What the tier knows of a session: revoked, and its last log level. An unreachable
    /// tier answers the default (not revoked): it never fails a request.
    pub async fn session(&self, session: &str) -> SessionState {
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS")
            .arg(self.keys.revoked_session(session))
            .cmd("GET")
            .arg(self.keys.session_log_level(session));
        let result: Result<(bool, Option<u8>), TierError> = self
            .bounded("session", pipe.query_async(&mut self.connection.clone()))
            .await;
        match result {
            Ok((revoked, log_level)) => SessionState { revoked, log_level },
            Err(_) => SessionState::default(),
        }
    }

    /// Sends a server's notification to the clients subscribed on other replicas. A message
    /// past [`MAX_MESSAGE_BYTES`] is not sent (those clients miss that one notification).
    pub async fn publish_notification(&self, server: &str, message: &Value) {
        let envelope = self.envelope(Event::Notification {
            server: server.to_owned(),
            message: message.clone(),
        });
        if envelope.len() > MAX_MESSAGE_BYTES {
            tracing::warn!(
                server,
                bytes = envelope.len(),
                "a notification is too large to broadcast to other replicas"
            );
            return;
        }
        let result: Result<i64, TierError> = self
            .bounded(
                "notify",
                redis::cmd("PUBLISH")
                    .arg(self.keys.channel())
                    .arg(envelope)
                    .query_async(&mut self.connection.clone()),
            )
            .await;
        if let Err(error) = result {
            tracing::debug!(%error, "could not broadcast a notification to other replicas");
        }
    }
}
