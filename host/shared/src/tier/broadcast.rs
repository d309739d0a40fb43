//! The broadcast channel: the subscriber that keeps it subscribed (flushing the first level
//! each time it subscribes again), what a message from another replica does here, and the
//! propagation lag it measures.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;

use super::{Envelope, Event, LAG_WINDOW, MAX_MESSAGE_BYTES, SharedTier, unix_micros};

impl SharedTier {
    /// Keeps the broadcast channel subscribed; each (re)subscription flushes the first
    /// level, which may hold entries a missed message should have evicted.
    pub(super) async fn subscriber(self: Arc<Self>) {
        let channel = self.keys.channel();
        loop {
            let connected = tokio::time::timeout(self.connect_timeout, async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            if let Ok(Ok(pubsub)) = connected {
                self.flush("resubscribed");
                self.subscribed.store(true, Ordering::Release);
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    self.receive(message.get_payload_bytes());
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
        if payload.len() > MAX_MESSAGE_BYTES {
            count("malformed");
            return;
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope>(payload) else {
            count("malformed");
            return;
        };
        if envelope.origin == self.replica {
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
