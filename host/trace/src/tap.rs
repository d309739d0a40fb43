//! Taps: what besides the trace file receives every answered call. The shadow evaluator
//! is one: it implements [`CallTap`], and the router hands it each call as it hands the
//! recorder one. A tap may also ask the router to check some cache hits against the
//! backend (truth sampling), through the [`TruthSampler`] it owns.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
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

/// Decides which cache hits are re-fetched: a token bucket (`per_second`, a burst of
/// one second's worth) and a cap on samples running at once. Every sample's result is
/// counted in `samples` by `result`: `fresh`, `stale`, `failed`, and `skipped` for a
/// hit that would have been sampled but for the in-flight cap.
pub struct TruthSampler {
    per_second: f64,
    max_in_flight: usize,
    timeout: Duration,
    in_flight: Arc<AtomicUsize>,
    bucket: Mutex<(f64, Instant)>,
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
        TruthSampler {
            per_second,
            max_in_flight,
            timeout,
            in_flight: Arc::new(AtomicUsize::new(0)),
            bucket: Mutex::new((per_second.max(1.0), Instant::now())),
            samples,
        }
    }

    /// How long a sample may take before it counts as failed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A permit to sample this hit now, or `None`: out of tokens, or too many running.
    pub fn try_start(&self) -> Option<TruthPermit> {
        if self.per_second <= 0.0 {
            return None;
        }
        {
            let mut bucket = self.bucket.lock();
            let (tokens, refilled) = &mut *bucket;
            let now = Instant::now();
            let burst = self.per_second.max(1.0);
            *tokens = (*tokens + now.duration_since(*refilled).as_secs_f64() * self.per_second)
                .min(burst);
            *refilled = now;
            if *tokens < 1.0 {
                return None;
            }
            *tokens -= 1.0;
        }
        let running = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if running >= self.max_in_flight {
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
