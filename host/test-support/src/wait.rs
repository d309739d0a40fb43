//! The one bounded poll every test and bench uses to wait for state that another thread or
//! process updates later.

use std::time::{Duration, Instant};

/// How long a test waits for state that another thread or process updates later (a
/// counter, a gauge published on a supervisor tick, a file a background writer flushes,
/// a log line read from a pipe). Far longer than any of them takes on an idle machine,
/// so that a loaded machine does not fail the test; a test that passes waits only as
/// long as the state takes to settle.
pub const SETTLE: Duration = Duration::from_secs(15);

/// How often a poll reads again.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Polls `condition` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Reads a value another thread or process updates later until `done` holds for it or
/// `timeout` passes, and returns the last value read. The caller then asserts on that
/// value exactly, so a wait that runs out fails with the value actually seen (never
/// with a bare "timed out"), and a value that overshoots still fails.
pub async fn poll_until<T>(
    timeout: Duration,
    mut read: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let value = read().await;
        if done(&value) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
