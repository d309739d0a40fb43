//! Taps: what besides the trace file receives every answered call. The shadow evaluator
//! is one: it implements [`CallTap`], and the router hands it each call as it hands the
//! recorder one. A tap may also ask the router to check some cache hits against the
//! backend (truth sampling), through the [`TruthSampler`] it owns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;

use super::RecordedCall;

/// The longest canonical arguments a tap is handed; a call with longer ones reaches it with
/// their hash only (its policies then see no arguments), so a queue of records holds
/// bounded memory whatever clients send.
pub const TAP_MAX_ARGUMENTS_BYTES: usize = 16 * 1024;

/// A receiver of answered calls besides the trace file.
pub trait CallTap: Send + Sync {
    /// Takes one answered call. Must never block: a tap that falls behind drops the call
    /// and counts it.
    fn submit(&self, call: RecordedCall);

    /// The sampler that decides which fresh hits of read-only calls are also sent to
    /// the backend to learn their truth; `None` never samples.
    fn truth_sampler(&self) -> Option<&TruthSampler> {
        None
    }
}

/// Decides which cache hits are re-fetched: at most `per_second` on average, in bursts of
/// at most one second's worth, and at most `max_in_flight` at once. It takes no lock: it is
/// asked on every eligible hit. The rate is a virtual schedule (the generic cell rate
/// algorithm): each permit moves the time the next one is due by one interval; a permit is
/// refused while that time is more than a burst ahead of now. Every sample's result is
/// counted in `samples` by `result`: `fresh`, `stale`, `failed`, and `skipped` for one
/// that found no free call slot or lost a race for the last in-flight place.
pub struct TruthSampler {
    interval_ns: u64,
    burst_ns: u64,
    max_in_flight: usize,
    timeout: Duration,
    started: Instant,
    /// When the next permit is due, in nanoseconds since `started`.
    due_ns: AtomicU64,
    in_flight: Arc<AtomicUsize>,
    samples: IntCounterVec,
}

impl TruthSampler {
    /// `samples` is labelled by `result`.
    pub fn new(
        per_second: f64,
        max_in_flight: usize,
        timeout: Duration,
        samples: IntCounterVec,
    ) -> TruthSampler {
        let interval_ns = if per_second > 0.0 {
            (1e9 / per_second).max(1.0) as u64
        } else {
            u64::MAX
        };
        TruthSampler {
            interval_ns,
            burst_ns: interval_ns.saturating_mul(per_second.max(1.0) as u64),
            max_in_flight,
            timeout,
            started: Instant::now(),
            due_ns: AtomicU64::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            samples,
        }
    }

    /// How long a sample may take before it counts as failed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A permit to sample this hit now, or `None`: not due yet, or too many running.
    pub fn try_start(&self) -> Option<TruthPermit> {
        if self.interval_ns == u64::MAX
            || self.in_flight.load(Ordering::Relaxed) >= self.max_in_flight
        {
            return None;
        }
        let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut due = self.due_ns.load(Ordering::Relaxed);
        loop {
            let next = due.max(now).saturating_add(self.interval_ns);
            if next.saturating_sub(now) > self.burst_ns {
                return None;
            }
            match self
                .due_ns
                .compare_exchange_weak(due, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(current) => due = current,
            }
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.samples.with_label_values(&["skipped"]).inc();
            return None;
        }
        Some(TruthPermit {
            in_flight: self.in_flight.clone(),
            samples: self.samples.clone(),
        })
    }
}

/// One running truth sample; its place is given back when it is dropped.
pub struct TruthPermit {
    in_flight: Arc<AtomicUsize>,
    samples: IntCounterVec,
}

impl TruthPermit {
    /// Gives the permit back unused (no call slot was free): counted as `skipped`.
    pub fn skip(self) {
        self.samples.with_label_values(&["skipped"]).inc();
    }

    /// Counts how the sample ended: whether the backend's answer matched the cached one,
    /// or `None` when there was no usable answer.
    pub fn finish(self, matched: Option<bool>) {
        let result = match matched {
            Some(true) => "fresh",
            Some(false) => "stale",
            None => "failed",
        };
        self.samples.with_label_values(&[result]).inc();
    }
}

impl Drop for TruthPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(per_second: f64, max_in_flight: usize) -> TruthSampler {
        let registry = mcp_bridge_metrics::Registry::new();
        let samples = registry.counter_vec("samples_total", "test", &["result"]);
        TruthSampler::new(per_second, max_in_flight, Duration::from_secs(1), samples)
    }

    #[test]
    fn a_burst_is_one_seconds_worth_and_then_the_rate_holds() {
        let sampler = sampler(5.0, 100);
        let permits: Vec<TruthPermit> = (0..20).filter_map(|_| sampler.try_start()).collect();
        // Five in the first instant (a second's worth); the sixth is not due yet.
        assert!(
            (5..=6).contains(&permits.len()),
            "{} permits at once",
            permits.len()
        );
    }

    #[test]
    fn the_in_flight_cap_holds_until_a_permit_is_dropped() {
        let sampler = sampler(1000.0, 2);
        let first = sampler.try_start();
        let second = sampler.try_start();
        assert!(first.is_some() && second.is_some());
        assert!(sampler.try_start().is_none(), "a third runs at once");
        drop(first);
        assert!(sampler.try_start().is_some(), "a place was given back");
    }

    #[test]
    fn zero_per_second_never_samples() {
        assert!(sampler(0.0, 4).try_start().is_none());
    }
}
