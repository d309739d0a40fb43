//! The open model: calls go at the times of a fixed schedule (a rate, uniform or Poisson, or
//! the source's own arrival times), whatever the bridge's answers do, on a pool of sessions
//! that grows as calls need it. Latency counts from each call's intended time, so a bridge
//! that falls behind cannot hide it by slowing the generator down (coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::super::LabError;
use super::client::Session;
use super::driver::{Arrivals, Clock, Run, timeout_failure};
use super::source::CallSource;

/// Sessions opened before the clock starts, at most, so session setup is not measured for
/// the first calls; the pool grows beyond them on demand.
const MAX_PREWARMED_SESSIONS: usize = 64;

/// Runs the open model; returns the clock the run used.
pub(super) async fn run(
    run: &Arc<Run>,
    rate: Option<f64>,
    arrivals: Arrivals,
    max_inflight: usize,
    seed: u64,
) -> Result<Clock, LabError> {
    // Enough sessions for the calls expected in flight at 50 ms each, a guess that only
    // decides how many are ready before the start.
    let expected_rate = rate.unwrap_or_else(|| source_rate(&run.source));
    let prewarm =
        ((expected_rate * 0.05).ceil() as usize).clamp(1, MAX_PREWARMED_SESSIONS.min(max_inflight));
    let idle: Arc<Mutex<Vec<Session>>> = Arc::new(Mutex::new(run.open_sessions(prewarm).await?));
    let retirer = tokio::spawn(retire_idle_connections(idle.clone()));
    let room = Arc::new(Semaphore::new(max_inflight));
    let clock = Clock::now(run.warmup, run.duration);
    let mut schedule = Schedule::new(rate, arrivals, seed, &run.source);
    let mut calls = JoinSet::new();
    loop {
        let (index, offset) = schedule.next_arrival();
        let intended = clock.start + offset;
        if clock.past_end(intended) {
            break;
        }
        let measured = intended >= clock.measure_from;
        if measured && !run.claim() {
            break;
        }
        tokio::time::sleep_until(intended.into()).await;
        // Waiting here for room delays the send, not the intended time the latency counts from.
        let Ok(permit) = room.clone().acquire_owned().await else {
            break;
        };
        while calls.try_join_next().is_some() {}
        run.recorder.lock().started();
        let run = run.clone();
        let idle = idle.clone();
        calls.spawn(async move {
            let _permit = permit;
            one_call(&run, &idle, index, intended, measured).await;
        });
    }
    while calls.join_next().await.is_some() {}
    retirer.abort();
    let sessions = std::mem::take(&mut *idle.lock());
    for session in sessions {
        session.close().await;
    }
    Ok(clock)
}

/// How often idle sessions are checked for connections to retire.
const RETIRE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Closes the connections of idle sessions before the bridge's advertised keep-alive timeout
/// would: at a steady rate the pool's least-used sessions sit idle for long stretches, and a
/// call sent on a connection the server is closing at that moment is lost.
async fn retire_idle_connections(idle: Arc<Mutex<Vec<Session>>>) {
    let mut ticker = tokio::time::interval(RETIRE_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        for session in idle.lock().iter_mut() {
            session.retire_idle_connection(now);
        }
    }
}

/// Sends one scheduled call on an idle session, or a new one when none is idle.
async fn one_call(
    run: &Run,
    idle: &Mutex<Vec<Session>>,
    index: u64,
    intended: Instant,
    measured: bool,
) {
    // A call that could not even start within the timeout of its intended time has failed:
    // sending it now would measure a different load than the one asked for.
    if intended.elapsed() > run.call_timeout {
        run.fail_unsent(index, intended, timeout_failure(run.call_timeout), measured);
        return;
    }
    let session = idle.lock().pop();
    let session = match session {
        Some(session) => session,
        None => match run.open_session().await {
            Ok(session) => session,
            Err(failure) => {
                run.fail_unsent(index, intended, failure, measured);
                return;
            }
        },
    };
    if let Some(session) = run.call(session, index, intended, measured).await {
        idle.lock().push(session);
    }
}

/// The source's mean arrival rate, for sizing the prewarmed pool.
fn source_rate(source: &CallSource) -> f64 {
    let span = source.span().as_secs_f64();
    if span <= 0.0 {
        return 1.0;
    }
    source.calls.len() as f64 / span
}

/// The arrival times of the open model, as offsets from the start.
struct Schedule {
    rate: Option<f64>,
    arrivals: Arrivals,
    random: SplitMix64,
    /// Seconds since the start, for Poisson arrivals.
    clock: f64,
    index: u64,
    offsets: Vec<Duration>,
    span: Duration,
}

impl Schedule {
    fn new(rate: Option<f64>, arrivals: Arrivals, seed: u64, source: &CallSource) -> Schedule {
        Schedule {
            rate,
            arrivals,
            random: SplitMix64(seed),
            clock: 0.0,
            index: 0,
            offsets: match rate {
                Some(_) => Vec::new(),
                None => source.calls.iter().map(|call| call.at).collect(),
            },
            span: source.span(),
        }
    }

    /// The next call's index into the (cycled) source and its intended offset.
    fn next_arrival(&mut self) -> (u64, Duration) {
        let index = self.index;
        self.index += 1;
        let offset = match (self.rate, self.arrivals) {
            (Some(rate), Arrivals::Uniform) => Duration::from_secs_f64(index as f64 / rate),
            (Some(rate), Arrivals::Poisson) => {
                let offset = Duration::from_secs_f64(self.clock);
                self.clock += -(1.0 - self.random.unit()).ln() / rate;
                offset
            }
            (None, _) => {
                let length = self.offsets.len().max(1) as u64;
                let cycle = u32::try_from(index / length).unwrap_or(u32::MAX);
                let within = self
                    .offsets
                    .get((index % length) as usize)
                    .copied()
                    .unwrap_or_default();
                within + self.span.saturating_mul(cycle)
            }
        };
        (index, offset)
    }
}

/// A small seeded generator (SplitMix64): the same seed gives the same Poisson schedule on
/// every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::source::LoadCall;

    fn source(count: usize) -> CallSource {
        CallSource {
            name: "test".into(),
            tools: vec!["t".into()],
            calls: (0..count)
                .map(|n| LoadCall {
                    tool: 0,
                    params: Arc::from("{}"),
                    write: false,
                    at: Duration::from_millis(10 * n as u64),
                })
                .collect(),
        }
    }

    #[test]
    fn uniform_arrivals_are_evenly_spaced() {
        let mut schedule = Schedule::new(Some(100.0), Arrivals::Uniform, 1, &source(3));
        let offsets: Vec<Duration> = (0..3).map(|_| schedule.next_arrival().1).collect();
        assert_eq!(offsets[2], Duration::from_millis(20));
    }

    #[test]
    fn poisson_arrivals_average_the_rate() {
        let mut schedule = Schedule::new(Some(1000.0), Arrivals::Poisson, 7, &source(1));
        let last = (0..10_000)
            .map(|_| schedule.next_arrival().1)
            .last()
            .unwrap_or_default();
        let seconds = last.as_secs_f64();
        assert!((9.0..11.0).contains(&seconds), "{seconds}");
    }

    #[test]
    fn source_times_cycle_with_their_spacing() {
        let mut schedule = Schedule::new(None, Arrivals::Uniform, 1, &source(3));
        let offsets: Vec<Duration> = (0..4).map(|_| schedule.next_arrival().1).collect();
        assert_eq!(offsets[3], source(3).span());
        assert!(offsets[3] > offsets[2]);
    }
}
