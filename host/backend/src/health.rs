//! Per-server health in the seed guide's terms: healthy, degraded or unhealthy, from
//! ping latency, recent call success rate and whether any process is ready.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use mcp_bridge_config::HealthConfig;

/// How many recent call outcomes the success rate looks at.
const OUTCOME_WINDOW: usize = 128;

/// The success rate is only judged once this many outcomes are known, so one early
/// failure does not mark a fresh server degraded.
const MIN_OUTCOMES_FOR_RATE: usize = 10;

/// Ordered from best to worst, so the worst of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

impl HealthStatus {
    /// The value of the `mcp_bridge_health_status` gauge.
    pub fn gauge_value(self) -> i64 {
        match self {
            HealthStatus::Healthy => 2,
            HealthStatus::Degraded => 1,
            HealthStatus::Unhealthy => 0,
        }
    }
}

/// The last health-check ping of any process of the server.
#[derive(Debug, Clone)]
struct PingRecord {
    latency: Option<Duration>,
    error: Option<String>,
}

/// Lock-free record of call outcomes (recorded on every call) plus the last ping.
pub struct HealthTracker {
    config: HealthConfig,
    /// Ring of outcomes: 0 = empty slot, 1 = failure, 2 = success.
    outcomes: [AtomicU8; OUTCOME_WINDOW],
    cursor: AtomicUsize,
    last_ping: Mutex<Option<PingRecord>>,
}

/// What the pool knows that health depends on, sampled when a report is made.
#[derive(Debug, Clone, Copy)]
pub struct PoolSnapshot {
    pub ready: usize,
    pub starting: usize,
    pub min_connections: usize,
    pub consecutive_spawn_failures: u32,
    pub max_reconnect_attempts: u32,
}

/// The `/health` entry for one server.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub status: HealthStatus,
    pub reasons: Vec<String>,
    pub ping_latency_ms: Option<f64>,
    pub last_ping_error: Option<String>,
    pub success_rate: Option<f64>,
    pub recent_calls: usize,
    pub ready_processes: usize,
}

impl HealthTracker {
    pub fn new(config: HealthConfig) -> Self {
        HealthTracker {
            config,
            outcomes: std::array::from_fn(|_| AtomicU8::new(0)),
            cursor: AtomicUsize::new(0),
            last_ping: Mutex::new(None),
        }
    }

    /// Records whether a call got an answer from the server (an application-level
    /// error still counts as an answer; a crash, timeout or exhausted pool does not).
    pub fn record_call(&self, succeeded: bool) {
        let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % OUTCOME_WINDOW;
        self.outcomes[slot].store(if succeeded { 2 } else { 1 }, Ordering::Relaxed);
    }

    pub fn record_ping(&self, result: Result<Duration, String>) {
        let record = match result {
            Ok(latency) => PingRecord {
                latency: Some(latency),
                error: None,
            },
            Err(error) => PingRecord {
                latency: None,
                error: Some(error),
            },
        };
        *self.last_ping.lock() = Some(record);
    }

    fn success_rate(&self) -> (Option<f64>, usize) {
        let (mut successes, mut total) = (0usize, 0usize);
        for outcome in &self.outcomes {
            match outcome.load(Ordering::Relaxed) {
                2 => {
                    successes += 1;
                    total += 1;
                }
                1 => total += 1,
                _ => {}
            }
        }
        let rate = (total >= MIN_OUTCOMES_FOR_RATE).then(|| successes as f64 / total as f64);
        (rate, total)
    }

    /// Judges the server with the seed's rules: unhealthy when nothing can serve and
    /// starts keep failing; degraded when slow, failing calls, or below its minimum.
    pub fn report(&self, pool: PoolSnapshot) -> HealthReport {
        let (success_rate, recent_calls) = self.success_rate();
        let ping = self.last_ping.lock().clone();
        let ping_latency_ms = ping
            .as_ref()
            .and_then(|p| p.latency)
            .map(|l| l.as_secs_f64() * 1000.0);
        let last_ping_error = ping.and_then(|p| p.error);
        let mut reasons = Vec::new();
        let mut status = HealthStatus::Healthy;
        let mut degrade = |reason: String| {
            reasons.push(reason);
            HealthStatus::Degraded
        };
        if pool.ready < pool.min_connections {
            status = degrade(format!(
                "{} of min_connections={} processes ready ({} starting)",
                pool.ready, pool.min_connections, pool.starting
            ));
        }
        if let Some(latency) = ping_latency_ms
            && latency > self.config.degraded_latency_ms as f64
        {
            status = degrade(format!(
                "ping took {latency:.1} ms, above degraded_latency_ms={}",
                self.config.degraded_latency_ms
            ));
        }
        if let Some(error) = &last_ping_error {
            status = degrade(format!("last health check failed: {error}"));
        }
        if let Some(rate) = success_rate
            && rate < self.config.degraded_success_rate
        {
            status = degrade(format!(
                "success rate {:.1}% over the last {recent_calls} calls, below degraded_success_rate={}",
                rate * 100.0,
                self.config.degraded_success_rate
            ));
        }
        let cannot_start = pool.consecutive_spawn_failures >= pool.max_reconnect_attempts.max(1)
            || (pool.consecutive_spawn_failures > 0 && pool.starting == 0);
        if pool.ready == 0 && cannot_start {
            status = HealthStatus::Unhealthy;
            reasons.push(format!(
                "no process ready; {} consecutive start failures",
                pool.consecutive_spawn_failures
            ));
        }
        HealthReport {
            status,
            reasons,
            ping_latency_ms,
            last_ping_error,
            success_rate,
            recent_calls,
            ready_processes: pool.ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HealthConfig {
        HealthConfig {
            check_interval: Duration::from_secs(30),
            check_timeout: Duration::from_secs(5),
            unhealthy_threshold: 3,
            timeout_threshold: 3,
            stall_timeout: None,
            degraded_latency_ms: 500,
            degraded_success_rate: 0.95,
        }
    }

    fn snapshot(ready: usize, failures: u32) -> PoolSnapshot {
        PoolSnapshot {
            ready,
            starting: 0,
            min_connections: 1,
            consecutive_spawn_failures: failures,
            max_reconnect_attempts: 5,
        }
    }

    #[test]
    fn judges_status_from_processes_latency_and_success_rate() {
        let tracker = HealthTracker::new(config());
        assert_eq!(tracker.report(snapshot(1, 0)).status, HealthStatus::Healthy);
        assert_eq!(
            tracker.report(snapshot(0, 2)).status,
            HealthStatus::Unhealthy
        );

        tracker.record_ping(Ok(Duration::from_millis(800)));
        assert_eq!(
            tracker.report(snapshot(1, 0)).status,
            HealthStatus::Degraded
        );
        tracker.record_ping(Ok(Duration::from_millis(1)));

        for _ in 0..18 {
            tracker.record_call(true);
        }
        tracker.record_call(false);
        tracker.record_call(false);
        let report = tracker.report(snapshot(1, 0));
        assert_eq!(report.status, HealthStatus::Degraded, "{report:?}");
        assert_eq!(report.success_rate, Some(0.9));
    }
}
