//! What replicas tell each other on the broadcast channel: one JSON message per event,
//! naming the replica that sent it and when, so receivers skip their own and measure the lag.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The largest message a replica reads; anything longer is dropped and counted. A server
/// notification is the largest thing sent, and it is checked against this before it is.
pub const MAX_MESSAGE_BYTES: usize = 256 << 10;

/// One message on the channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The replica that sent it.
    #[serde(rename = "o")]
    pub origin: String,
    /// When it was sent, in microseconds since the Unix epoch (the sender's clock).
    #[serde(rename = "t")]
    pub sent_at_us: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened on another replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Event {
    /// A write (or a list change) invalidated these dependencies; their generations in
    /// Redis were raised before this was sent.
    Invalidated { dependencies: Vec<String> },
    /// A client ended its session (DELETE).
    SessionRevoked { session: String },
    /// A client set its session's log level.
    SessionLogLevel { session: String, rank: u8 },
    /// A backend's notification for the clients that subscribed (resources updated, lists
    /// changed), to deliver on every replica.
    Notification { server: String, message: Value },
    /// A replica is alive and its channel works (sent every health check).
    Heartbeat,
}

pub(crate) fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let envelope = Envelope {
            origin: "r1".into(),
            sent_at_us: 5,
            event: Event::Invalidated {
                dependencies: vec!["server:demo".into()],
            },
        };
        let text = serde_json::to_string(&envelope).unwrap_or_default();
        let back: Envelope = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(back.event, envelope.event);
        assert_eq!(back.origin, "r1");
    }
}
