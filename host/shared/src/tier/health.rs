//! The health check: makes sure the epoch exists, replaces it when Redis restarted, brings
//! the tier up once queued work is replayed (after a grace for the other replicas), and
//! publishes the heartbeat by which every replica knows its channel is alive.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Event, SharedTier, TierError};

impl SharedTier {
    /// Checks Redis every interval: makes sure the epoch exists, replaces it when Redis
    /// restarted (it may have come back from an older snapshot, with generations gone
    /// back), notices a new one, brings the tier up once queued invalidations are replayed,
    /// and publishes the heartbeat by which every replica knows its channel is alive.
    pub(super) async fn health_check(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.health_check_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let epoch = match self.read_epoch().await {
                Ok(epoch) => epoch,
                Err(_) => continue,
            };
            let previous = self.epoch.swap(epoch, Ordering::AcqRel);
            if previous != 0 && previous != epoch {
                tracing::warn!(
                    "the shared tier's data is new (Redis restarted or was flushed): every replica's first level is dropped"
                );
                self.flush("epoch_changed");
            }
            if self.is_up() {
                // An invalidation may have been queued as the tier came up; it goes out on
                // the next tick rather than waiting for the next outage.
                if self.has_pending() {
                    let _ = self.replay().await;
                }
                self.heartbeat().await;
                continue;
            }
            if self.replay().await.is_err() || self.has_pending() {
                continue;
            }
            // Other replicas replay what they queued on their next health check: until then
            // Redis may not know every write made while it was away.
            let grace = self.health_check_interval * 2 + self.command_timeout;
            *self.trusted_from.lock() = Instant::now() + grace;
            self.up.store(true, Ordering::Release);
            *self.since.lock() = Instant::now();
            self.metrics.shared_tier_up.set(1);
            self.metrics
                .shared_tier_transitions_total
                .with_label_values(&["up"])
                .inc();
            tracing::info!(
                consistency = self.consistency.as_str(),
                "the shared tier answers"
            );
        }
    }

    /// Sets the epoch if Redis has none (a new or emptied Redis) and reads it; when Redis's
    /// `run_id` changed since the last check (a restart, which may have reloaded an older
    /// snapshot), replaces the epoch unless another replica already did.
    async fn read_epoch(&self) -> Result<u64, TierError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.epoch())
            .arg(fresh_epoch())
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(self.keys.epoch())
            .cmd("INFO")
            .arg("server");
        let (epoch, info): (Option<u64>, String) = self
            .bounded(
                "health_check",
                pipe.query_async(&mut self.connection.clone()),
            )
            .await?;
        let epoch = epoch.ok_or(TierError::EpochLost)?;
        let run_id = info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned());
        let restarted = {
            let mut known = self.run_id.lock();
            let restarted = known.is_some() && run_id.is_some() && *known != run_id;
            *known = run_id;
            restarted
        };
        if !restarted {
            return Ok(epoch);
        }
        tracing::warn!(
            "Redis restarted: the shared tier's epoch is replaced, since its data may be older than before"
        );
        let known = self.epoch.load(Ordering::Acquire);
        let rotated: Option<u64> = self
            .bounded(
                "health_check",
                self.rotate_script
                    .key(self.keys.epoch())
                    .arg(if known == 0 { epoch } else { known })
                    .arg(fresh_epoch())
                    .invoke_async(&mut self.connection.clone()),
            )
            .await?;
        rotated.ok_or(TierError::EpochLost)
    }

    /// Publishes this replica's heartbeat: every replica hears every other's and its own,
    /// so a channel that went quiet is known to be dead.
    async fn heartbeat(&self) {
        let message = self.envelope(Event::Heartbeat);
        let _: Result<i64, TierError> = self
            .bounded(
                "heartbeat",
                redis::cmd("PUBLISH")
                    .arg(self.keys.channel())
                    .arg(message)
                    .query_async(&mut self.connection.clone()),
            )
            .await;
    }
}

/// A new random epoch, nonzero so 0 can mean "not read yet".
fn fresh_epoch() -> u64 {
    rand::random::<u64>() >> 1 | 1
}
