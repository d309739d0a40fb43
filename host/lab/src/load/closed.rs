//! The closed loop: N keep-alive sessions, each sending its next call as soon as the previous
//! one is answered. The offered load follows the bridge's speed, so this measures capacity;
//! latency counts from each call's send.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::super::LabError;
use super::client::Session;
use super::driver::{Clock, Run};

/// The pause after a session could not be reopened, so a dead bridge produces a bounded
/// number of connection errors instead of a busy loop.
const REOPEN_BACKOFF: Duration = Duration::from_millis(50);

/// Runs the closed loop; returns the clock the run used.
pub(super) async fn run(run: &Arc<Run>, connections: usize) -> Result<Clock, LabError> {
    let sessions = run.open_sessions(connections).await?;
    let clock = Clock::now(run.warmup, run.duration);
    // Calls are taken from the source in order across all connections, so a short run still
    // sees the source's mix.
    let next_index = Arc::new(AtomicU64::new(0));
    let mut loops = JoinSet::new();
    for session in sessions {
        let run = run.clone();
        let next_index = next_index.clone();
        loops.spawn(async move { connection_loop(&run, session, &next_index, clock).await });
    }
    while loops.join_next().await.is_some() {}
    Ok(clock)
}

async fn connection_loop(run: &Run, session: Session, next_index: &AtomicU64, clock: Clock) {
    let mut session = Some(session);
    loop {
        let sent = Instant::now();
        if clock.past_end(sent) {
            break;
        }
        let measured = sent >= clock.measure_from;
        if measured && !run.claim() {
            break;
        }
        let index = next_index.fetch_add(1, Ordering::Relaxed);
        run.recorder.lock().started();
        let current = match session.take() {
            Some(current) => current,
            None => match run.open_session().await {
                Ok(current) => current,
                Err(failure) => {
                    run.fail_unsent(index, sent, failure, measured);
                    tokio::time::sleep(REOPEN_BACKOFF).await;
                    continue;
                }
            },
        };
        session = run.call(current, index, sent, measured).await;
    }
    if let Some(session) = session {
        session.close().await;
    }
}
