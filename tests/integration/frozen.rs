//! A frozen backend: a real demo-server process stopped with SIGSTOP under steady calls.
//! The bridge must notice it (request timeouts or silence while calls wait), stop giving
//! it calls, probe it, and replace it, so only the calls it already held fail.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::faults::{REQUEST_TIMEOUT, call_pids, error_code};
use crate::support::{RawSession, demo_server_toml, metric, process_alive, start_bridge};

/// Calls a process may hold at once; a frozen process can fail at most these (plus the
/// few that race with its probe), where before it failed this many every request_timeout.
const MAX_INFLIGHT: usize = 4;

/// Time between two calls of the steady load (about 40 calls a second).
const CALL_INTERVAL: Duration = Duration::from_millis(25);

/// How long the test waits for the frozen process to be replaced. Without the fix it
/// stays in service until three health-check pings 30 s apart have failed.
const REPLACE_DEADLINE: Duration = Duration::from_secs(20);

/// Resumes and kills the stopped process when the test ends, however it ends.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        if process_alive(self.0) {
            signal(self.0, libc::SIGCONT);
            signal(self.0, libc::SIGKILL);
        }
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; the pid is a backend this test's
    // bridge started, read from its own stats.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

#[tokio::test]
async fn a_stopped_backend_is_taken_out_of_service_and_replaced() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("calls.log");
    let log_arg = log.display().to_string();
    // The new settings keep their defaults (probe after 3 timeouts in a row, or after a
    // request_timeout of silence while calls wait), so the test runs unchanged on a
    // bridge that does not know them.
    let bridge = start_bridge(&format!(
        "{}\n[servers.demo.health]\ncheck_timeout = \"1s\"\n",
        demo_server_toml(
            "demo",
            // A little latency keeps several calls in flight, so least-loaded leasing
            // spreads them over every ready process, the replacement included.
            &["--calls-log", &log_arg, "--latency", "50ms"],
            &format!(
                "min_connections = 2\nmax_connections = 4\nmax_inflight = {MAX_INFLIGHT}\n\
                 request_timeout = \"2s\"\nacquire_timeout = \"2s\"\nmax_queue = 1000"
            ),
        )
    ))?;
    bridge.wait_ready().await?;
    let session = Arc::new(RawSession::open(&bridge.url("/mcp/demo")).await?);
    let first = crate::support::eventually(Duration::from_secs(10), async || {
        bridge
            .backend_pids("demo")
            .await
            .is_ok_and(|pids| pids.len() == 2)
    })
    .await;
    assert!(
        first,
        "two processes never started: {}",
        bridge.server_stats("demo").await?
    );
    let original: HashSet<u32> = bridge.backend_pids("demo").await?.into_iter().collect();
    let frozen = *original.iter().next().context("no backend pid")?;

    let mut calls = JoinSet::new();
    let mut next_id = 0u64;
    let mut send_call = |calls: &mut JoinSet<Result<Value>>| {
        next_id += 1;
        let session = session.clone();
        let id = next_id;
        calls.spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(20),
                session.call_tool(json!(id), "get_tasks", json!({ "limit": 1 })),
            )
            .await
            .context("no answer within 20 s")?
        });
    };
    // Warm up so both processes serve calls, then freeze one of them.
    for _ in 0..20 {
        send_call(&mut calls);
        tokio::time::sleep(CALL_INTERVAL).await;
    }
    signal(frozen, libc::SIGSTOP);
    let _resume = Stopped(frozen);
    let stopped_at = Instant::now();

    // Keep calling until a process the test did not start has answered a call and the
    // frozen one is out of the pool, or the deadline passes.
    let mut replaced_after = None;
    let mut sent_while_frozen = 0u64;
    while stopped_at.elapsed() < REPLACE_DEADLINE {
        send_call(&mut calls);
        sent_while_frozen += 1;
        tokio::time::sleep(CALL_INTERVAL).await;
        if !sent_while_frozen.is_multiple_of(10) {
            continue;
        }
        let pids = bridge.backend_pids("demo").await?;
        let answered_by_new = call_pids(&log, "get_tasks")
            .iter()
            .any(|pid| !original.contains(pid));
        if !pids.contains(&frozen) && answered_by_new {
            replaced_after = Some(stopped_at.elapsed());
            break;
        }
    }
    // A little more load after the replacement: it must all succeed.
    for _ in 0..40 {
        send_call(&mut calls);
        tokio::time::sleep(CALL_INTERVAL).await;
    }

    let (mut timeouts, mut other_failures, mut total) = (0usize, Vec::new(), 0usize);
    while let Some(joined) = calls.join_next().await {
        total += 1;
        let response = joined??;
        match error_code(&response) {
            None => {}
            Some(REQUEST_TIMEOUT) => timeouts += 1,
            Some(_) => other_failures.push(response),
        }
    }
    let stats = bridge.server_stats("demo").await?;
    let replaced_after = replaced_after.with_context(|| {
        format!(
            "the frozen process {frozen} was not replaced within {REPLACE_DEADLINE:?} \
             ({timeouts} of {total} calls timed out); stats: {stats}"
        )
    })?;
    eprintln!(
        "frozen backend: {timeouts} of {total} calls timed out; replaced after {replaced_after:?}"
    );
    assert!(
        timeouts <= 2 * MAX_INFLIGHT,
        "{timeouts} of {total} calls timed out; only the calls the frozen process held may \
         (replaced after {replaced_after:?})"
    );
    assert!(
        other_failures.is_empty(),
        "calls failed for another reason: {other_failures:?}"
    );
    let replaced = metric(
        &bridge,
        "mcp_bridge_pool_unresponsive_total",
        &["server=\"demo\"", "outcome=\"replaced\""],
    )
    .await?;
    assert!(
        replaced >= 1.0,
        "mcp_bridge_pool_unresponsive_total{{outcome=\"replaced\"}} is {replaced}"
    );
    assert!(
        bridge.log_text().contains("did not answer its probe"),
        "the replacement was not logged"
    );
    Ok(())
}

#[tokio::test]
async fn timeouts_in_a_row_get_a_process_probed_and_kept_when_it_answers() -> Result<()> {
    // Silence alone would take a minute here: only the timeouts rule can act.
    let bridge = start_bridge(&format!(
        "{}\n[servers.demo.health]\ncheck_timeout = \"2s\"\nstall_timeout = \"60s\"\ntimeout_threshold = 2\n",
        demo_server_toml(
            "demo",
            &[],
            "min_connections = 1\nmax_connections = 1\nrequest_timeout = \"1s\""
        )
    ))?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let pid = *bridge
        .backend_pids("demo")
        .await?
        .first()
        .context("no backend pid")?;
    for id in 0..2 {
        let response = session
            .call_tool(json!(id), "debug_sleep", json!({ "ms": 10_000 }))
            .await?;
        assert_eq!(error_code(&response), Some(REQUEST_TIMEOUT), "{response}");
    }
    // The process still answers pings (only the sleeping calls hung), so the probe
    // puts it back in service instead of replacing it.
    let mut recovered = 0.0;
    let probed = crate::support::eventually(Duration::from_secs(15), async || {
        recovered = metric(
            &bridge,
            "mcp_bridge_pool_unresponsive_total",
            &[
                "server=\"demo\"",
                "reason=\"timeouts\"",
                "outcome=\"recovered\"",
            ],
        )
        .await
        .unwrap_or_default();
        recovered >= 1.0
    })
    .await;
    assert!(
        probed,
        "no probe after two timeouts in a row; log:\n{}",
        bridge.log_text()
    );
    let answer = session
        .call_tool(json!(9), "get_tasks", json!({ "limit": 1 }))
        .await?;
    assert!(answer.get("result").is_some(), "{answer}");
    assert!(
        bridge.backend_pids("demo").await?.contains(&pid),
        "the process that answered its probe was replaced anyway"
    );
    Ok(())
}
