//! The library entry point, [`drive`]: a [`LoadPlan`] in, a [`LoadReport`] out, with the
//! shared state the open and closed models both run on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

use super::super::LabError;
use super::client::{self, Failure, Session};
use super::source::CallSource;
use super::stats::{CacheDelta, ModeReport, Recorder, ReportHeader, Timing};
use super::target::Target;
use super::{closed, open};

/// How calls arrive at the open model's fixed schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arrivals {
    /// Evenly spaced, 1/rate apart.
    Uniform,
    /// Exponential gaps with mean 1/rate (a Poisson process), from a seeded generator.
    Poisson,
}

/// How the load is offered.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Calls go at fixed times whatever the answers do. `rate: None` replays the source's own
    /// arrival times. At most `max_inflight` calls are out at once; a call that must wait for
    /// room still has its latency measured from its intended time.
    Open {
        rate: Option<f64>,
        arrivals: Arrivals,
        max_inflight: usize,
        seed: u64,
    },
    /// `connections` sessions, each sending its next call when the previous one is answered.
    Closed { connections: usize },
}

/// Everything [`drive`] needs.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub target: Target,
    pub source: CallSource,
    pub mode: Mode,
    /// The measured time, after the warm-up. At least one of `duration` and `max_calls`.
    pub duration: Option<Duration>,
    /// At most this many measured calls.
    pub max_calls: Option<u64>,
    pub warmup: Duration,
    /// The longest a call may take, from its send (open model: or from its intended time,
    /// before it could be sent).
    pub call_timeout: Duration,
}

impl LoadPlan {
    fn check(&self) -> Result<(), LabError> {
        let usage = |message: &str| Err(LabError::Usage(message.to_owned()));
        if self.source.calls.is_empty() {
            return usage("the load source has no calls");
        }
        if self.duration.is_none() && self.max_calls.is_none() {
            return usage("a load run needs a bound: --duration, --calls or both");
        }
        if self.duration.is_some_and(|duration| duration.is_zero()) || self.max_calls == Some(0) {
            return usage("--duration and --calls must be above zero");
        }
        if self.call_timeout.is_zero() {
            return usage("--timeout must be above zero");
        }
        match self.mode {
            Mode::Open {
                rate, max_inflight, ..
            } => {
                if rate.is_some_and(|rate| !(rate.is_finite() && rate > 0.0)) {
                    return usage("--rate must be a positive number of calls per second");
                }
                if max_inflight == 0 {
                    return usage("--max-inflight must be at least 1");
                }
            }
            Mode::Closed { connections } => {
                if connections == 0 {
                    return usage("--connections must be at least 1");
                }
            }
        }
        Ok(())
    }

    fn mode_report(&self) -> ModeReport {
        match self.mode {
            Mode::Open {
                rate,
                arrivals,
                max_inflight,
                ..
            } => ModeReport::Open {
                rate,
                arrivals: match (rate, arrivals) {
                    (None, _) => "source".to_owned(),
                    (Some(_), Arrivals::Uniform) => "uniform".to_owned(),
                    (Some(_), Arrivals::Poisson) => "poisson".to_owned(),
                },
                max_inflight,
            },
            Mode::Closed { connections } => ModeReport::Closed { connections },
        }
    }
}

/// When a run started measuring and when it stops sending.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    pub start: Instant,
    pub measure_from: Instant,
    pub end: Option<Instant>,
}

impl Clock {
    pub(super) fn now(warmup: Duration, duration: Option<Duration>) -> Clock {
        let start = Instant::now();
        let measure_from = start + warmup;
        Clock {
            start,
            measure_from,
            end: duration.map(|duration| measure_from + duration),
        }
    }

    /// Whether a call sent (or meant to be sent) at `at` is too late for the run.
    pub(super) fn past_end(&self, at: Instant) -> bool {
        self.end.is_some_and(|end| at >= end)
    }
}

/// State the connections of a run share.
pub(super) struct Run {
    pub target: Arc<Target>,
    pub source: CallSource,
    pub recorder: Mutex<Recorder>,
    pub max_calls: Option<u64>,
    pub measured: AtomicU64,
    pub call_timeout: Duration,
    pub warmup: Duration,
    pub duration: Option<Duration>,
}

impl Run {
    /// Takes one measured call from the budget; false when `--calls` is used up.
    pub(super) fn claim(&self) -> bool {
        let taken = self.measured.fetch_add(1, Ordering::Relaxed);
        self.max_calls.is_none_or(|cap| taken < cap)
    }

    /// Opens a session, counting it.
    pub(super) async fn open_session(&self) -> Result<Session, Failure> {
        let session = Session::open(self.target.clone()).await;
        if session.is_ok() {
            self.recorder.lock().sessions_opened += 1;
        }
        session
    }

    /// Opens `count` sessions concurrently before the clock starts; the first failure stops the
    /// run, since a bridge that cannot start a session would only produce a report of errors.
    pub(super) async fn open_sessions(
        self: &Arc<Self>,
        count: usize,
    ) -> Result<Vec<Session>, LabError> {
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..count {
            let run = self.clone();
            opening.spawn(async move { run.open_session().await });
        }
        let mut sessions = Vec::with_capacity(count);
        while let Some(joined) = opening.join_next().await {
            match joined {
                Ok(Ok(session)) => sessions.push(session),
                Ok(Err(failure)) => {
                    return Err(LabError::Load {
                        target: self.target.url.clone(),
                        message: format!("cannot start an MCP session: {}", failure.message),
                    });
                }
                Err(error) => {
                    return Err(LabError::Load {
                        target: self.target.url.clone(),
                        message: format!("a session task failed: {error}"),
                    });
                }
            }
        }
        Ok(sessions)
    }

    /// Sends one call on `session` under the call timeout and records it when it is
    /// measured. Returns the session when it can carry another call.
    pub(super) async fn call(
        &self,
        session: Session,
        index: u64,
        intended: Instant,
        measured: bool,
    ) -> Option<Session> {
        let Some(call) = self
            .source
            .calls
            .get(index as usize % self.source.calls.len())
        else {
            return Some(session);
        };
        let sent = Instant::now();
        let mut session = session;
        let outcome = tokio::time::timeout(self.call_timeout, session.call(&call.params)).await;
        let answered = Instant::now();
        let (outcome, session) = match outcome {
            Ok(result) => {
                let keep = session.usable().then_some(session);
                // The report counts the outcome; the answer's bytes are not kept.
                (result.map(drop), keep)
            }
            // The answer may still arrive on this connection: it cannot be reused.
            Err(_) => (Err(timeout_failure(self.call_timeout)), None),
        };
        self.finish(
            call.tool,
            call.write,
            Timing {
                intended,
                sent,
                answered,
            },
            &outcome,
            measured,
        );
        session
    }

    /// Records a call that failed before it could be sent (no session, or too late).
    pub(super) fn fail_unsent(
        &self,
        index: u64,
        intended: Instant,
        failure: Failure,
        measured: bool,
    ) {
        let Some(call) = self
            .source
            .calls
            .get(index as usize % self.source.calls.len())
        else {
            return;
        };
        let now = Instant::now();
        let timing = Timing {
            intended,
            sent: now,
            answered: now,
        };
        self.finish(call.tool, call.write, timing, &Err(failure), measured);
    }

    fn finish(
        &self,
        tool: u32,
        write: bool,
        timing: Timing,
        outcome: &Result<(), Failure>,
        measured: bool,
    ) {
        let mut recorder = self.recorder.lock();
        if measured {
            recorder.finished(tool, write, timing, outcome);
        } else {
            recorder.unmeasured();
        }
    }
}

pub(super) fn timeout_failure(timeout: Duration) -> Failure {
    Failure {
        kind: super::stats::ErrorKind::Timeout,
        message: format!("no answer within {timeout:?}"),
    }
}

/// Drives a running bridge with `plan` and reports what it measured. Errors only when the run
/// cannot happen at all (a bad plan, no session can be opened); failed calls are counted in
/// the report instead.
pub async fn drive(plan: LoadPlan) -> Result<super::LoadReport, LabError> {
    plan.check()?;
    let mode_report = plan.mode_report();
    let source_name = plan.source.name.clone();
    let tools = plan.source.tools.clone();
    let expected = plan.max_calls.unwrap_or(100_000);
    let target = Arc::new(plan.target);
    let cache_before = cache_stats(&target).await;
    let run = Arc::new(Run {
        target: target.clone(),
        source: plan.source,
        recorder: Mutex::new(Recorder::new(
            usize::try_from(expected).unwrap_or(usize::MAX),
        )),
        max_calls: plan.max_calls,
        measured: AtomicU64::new(0),
        call_timeout: plan.call_timeout,
        warmup: plan.warmup,
        duration: plan.duration,
    });
    let clock = match plan.mode {
        Mode::Open {
            rate,
            arrivals,
            max_inflight,
            seed,
        } => open::run(&run, rate, arrivals, max_inflight, seed).await?,
        Mode::Closed { connections } => closed::run(&run, connections).await?,
    };
    let cache_after = cache_stats(&target).await;
    let cache = cache_before
        .zip(cache_after)
        .map(|(before, after)| cache_delta(&before, &after));
    let recorder = std::mem::replace(&mut *run.recorder.lock(), Recorder::new(0));
    let header = ReportHeader {
        target: target.url.clone(),
        source: source_name,
        mode: mode_report,
        warmup: plan.warmup,
        cache,
    };
    Ok(recorder.into_report(header, &tools, clock.measure_from))
}

/// `/admin/cache/stats`, or `None` when the bridge has no cache (404) or it cannot be read
/// (an admin token is required and was not given, say): the run goes on without it.
pub async fn cache_stats(target: &Target) -> Option<Value> {
    let (status, body) = client::admin_get(target, "/admin/cache/stats").await.ok()?;
    if status != 200 {
        return None;
    }
    serde_json::from_slice(&body).ok()
}

fn cache_delta(before: &Value, after: &Value) -> CacheDelta {
    let delta = |field: &str| {
        let read = |stats: &Value| stats.get(field).and_then(Value::as_u64).unwrap_or(0);
        read(after).saturating_sub(read(before))
    };
    let (hits, misses, stale_served) = (delta("hits"), delta("misses"), delta("stale_served"));
    let lookups = hits + stale_served + misses;
    CacheDelta {
        hits,
        misses,
        stale_served,
        coalesced: delta("coalesced"),
        bypass: delta("bypass"),
        hit_rate: if lookups == 0 {
            0.0
        } else {
            (hits + stale_served) as f64 / lookups as f64
        },
        entries_after: after.get("entries").and_then(Value::as_u64).unwrap_or(0),
        bytes_after: after.get("bytes").and_then(Value::as_u64).unwrap_or(0),
    }
}
