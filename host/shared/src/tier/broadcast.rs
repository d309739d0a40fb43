//! The broadcast channel: the subscriber that keeps it subscribed (flushing the first level
//! each time it subscribes again), what a message from another replica does here, and the
//! propagation lag it measures.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::StreamExt;

use super::{Envelope, Event, LAG_WINDOW, MAX_MESSAGE_BYTES, SharedTier, unix_micros};

/// How many health checks a subscribed channel may stay silent before it is taken as dead.
const SILENT_CHECKS: u32 = 4;

impl SharedTier {
    /// Keeps the broadcast channel subscribed; each (re)subscription flushes the first
    /// level, which may hold entries a missed message should have evicted. A channel that
    /// hears nothing, not even this replica's own heartbeat, for a few health checks while
    /// Redis answers is dead without having been closed: it is dropped and subscribed again.
    pub(super) async fn subscriber(self: Arc<Self>) {
        let channel = self.keys.channel();
        let silence_limit = self.health_check_interval * SILENT_CHECKS;
        loop {
            let connected = tokio::time::timeout(self.connect_timeout, async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            if let Ok(Ok(pubsub)) = connected {
                self.flush("resubscribed");
                *self.last_heard.lock() = Instant::now();
                self.subscribed.store(true, Ordering::Release);
                let mut messages = pubsub.into_on_message();
                let mut checks = tokio::time::interval(self.health_check_interval);
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => self.receive(message.get_payload_bytes()),
                            None => break,
                        },
                        _ = checks.tick() => {
                            if self.is_up() && self.last_heard.lock().elapsed() > silence_limit {
                                tracing::warn!("the shared tier's broadcast channel went silent (no heartbeat, not even this replica's own)");
                                break;
                            }
                        }
                    }
                }
                self.subscribed.store(false, Ordering::Release);
                tracing::warn!("lost the shared tier's broadcast channel; subscribing again");
            }
            tokio::time::sleep(self.health_check_interval).await;
        }
    }

    fn receive(&self, payload: &[u8]) {
        let count = |kind: &str| {
            self.metrics
                .shared_broadcasts_received_total
                .with_label_values(&[kind])
                .inc();
        };
        *self.last_heard.lock() = Instant::now();
        // A message this replica cannot read may have been an invalidation: what it might
        // have evicted goes, rather than turning into silent staleness.
        let envelope = (payload.len() <= MAX_MESSAGE_BYTES)
            .then(|| serde_json::from_slice::<Envelope>(payload).ok())
            .flatten();
        let Some(envelope) = envelope else {
            count("malformed");
            self.flush("unreadable_message");
            return;
        };
        if envelope.origin == self.replica || envelope.event == Event::Heartbeat {
            return;
        }
        let listeners = self.listeners.read();
        match &envelope.event {
            Event::Invalidated { dependencies } => {
                count("invalidated");
                let lag_us = unix_micros().saturating_sub(envelope.sent_at_us);
                self.metrics
                    .shared_invalidation_lag_seconds
                    .with_label_values::<&str>(&[])
                    .observe(lag_us as f64 / 1e6);
                let mut lags = self.lags.lock();
                if lags.len() == LAG_WINDOW {
                    lags.pop_front();
                }
                lags.push_back(lag_us);
                drop(lags);
                for listener in listeners.iter() {
                    listener.invalidated(dependencies);
                }
            }
            event => {
                count(match event {
                    Event::SessionRevoked { .. } => "session_revoked",
                    Event::SessionLogLevel { .. } => "session_log_level",
                    _ => "notification",
                });
                for listener in listeners.iter() {
                    listener.event(event);
                }
            }
        }
    }

    /// The propagation lag's p50 and p99 over the last messages, in microseconds, and how
    /// many messages they cover.
    pub fn lag_percentiles(&self) -> (u64, u64, usize) {
        let mut lags: Vec<u64> = self.lags.lock().iter().copied().collect();
        let p50 = mcp_bridge_metrics::percentile(&mut lags, 0.5);
        let p99 = mcp_bridge_metrics::percentile(&mut lags, 0.99);
        (p50, p99, lags.len())
    }
}
