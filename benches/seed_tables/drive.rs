//! Closed-loop and open-model drivers for the baselines that have no HTTP endpoint (direct
//! stdio, spawn per call), measuring the way `bench load` does: the closed loop from each
//! send, the open model from each call's intended time.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mcp_bridge::lab::load::Latency;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What one baseline run measured.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub calls: u64,
    pub ok: u64,
    pub latency: Latency,
    pub window: Duration,
    pub first_error: Option<String>,
}

impl Measured {
    pub(crate) fn throughput(&self) -> f64 {
        if self.window.is_zero() {
            0.0
        } else {
            self.ok as f64 / self.window.as_secs_f64()
        }
    }

    pub(crate) fn success_rate(&self) -> f64 {
        if self.calls == 0 {
            1.0
        } else {
            self.ok as f64 / self.calls as f64
        }
    }
}

#[derive(Default)]
struct Collected {
    latencies: Vec<u64>,
    calls: u64,
    ok: u64,
    first_error: Option<String>,
    last_answer: Option<Instant>,
}

impl Collected {
    fn record(&mut self, from: Instant, outcome: Result<(), String>) {
        let now = Instant::now();
        self.calls += 1;
        self.last_answer = Some(self.last_answer.map_or(now, |last| last.max(now)));
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.latencies
                    .push(u64::try_from((now - from).as_nanos()).unwrap_or(u64::MAX));
            }
            Err(message) => {
                self.first_error.get_or_insert(message);
            }
        }
    }

    fn finish(mut self, start: Instant) -> Measured {
        Measured {
            calls: self.calls,
            ok: self.ok,
            latency: Latency::from_nanos(&mut self.latencies),
            window: self.last_answer.map_or(Duration::ZERO, |last| last - start),
            first_error: self.first_error,
        }
    }
}

/// `workers` callers share `calls` calls, each sending its next when the previous answers.
pub(crate) async fn closed<F, Fut>(workers: usize, calls: u64, call: F) -> Measured
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let collected = Arc::new(Mutex::new(Collected::default()));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let (call, collected, next) = (call.clone(), collected.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= calls {
                    break;
                }
                let sent = Instant::now();
                let outcome = call(index).await;
                collected.lock().record(sent, outcome);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let collected = std::mem::take(&mut *collected.lock());
    collected.finish(start)
}

/// Calls at `rate` per second, evenly spaced, for `duration`; at most `max_inflight` at once
/// (later calls wait, and their wait counts). A call not answered within `timeout` of its
/// intended time fails.
pub(crate) async fn open<F, Fut>(
    rate: f64,
    duration: Duration,
    timeout: Duration,
    max_inflight: usize,
    call: F,
) -> Measured
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let collected = Arc::new(Mutex::new(Collected::default()));
    let room = Arc::new(Semaphore::new(max_inflight.max(1)));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0.. {
        let intended = start + Duration::from_secs_f64(index as f64 / rate);
        if intended >= start + duration {
            break;
        }
        tokio::time::sleep_until(intended.into()).await;
        let Ok(permit) = room.clone().acquire_owned().await else {
            break;
        };
        while tasks.try_join_next().is_some() {}
        let (call, collected) = (call.clone(), collected.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let remaining = timeout.saturating_sub(intended.elapsed());
            // A call already past its timeout fails without starting: polling it even once
            // would spawn a process only to kill it.
            if remaining.is_zero() {
                let late = Err(format!("could not start within {timeout:?}"));
                collected.lock().record(intended, late);
                return;
            }
            let outcome = match tokio::time::timeout(remaining, call(index)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            collected.lock().record(intended, outcome);
        });
    }
    while tasks.join_next().await.is_some() {}
    let collected = std::mem::take(&mut *collected.lock());
    collected.finish(start)
}
