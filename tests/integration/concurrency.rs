//! Pool concurrency: many calls multiplexed over one process with their ids and results
//! intact, growth up to `max_connections` when every process is at `max_inflight`, and
//! least-loaded routing across warm processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::faults::{calls_by_pid, error_code};
use crate::support::{RawSession, demo_server_toml, http, start_bridge};

/// Sessions sharing the one process; each reuses the same JSON-RPC ids as the others,
/// so the bridge must remap ids for the responses to reach the right caller.
const SESSIONS: usize = 3;

/// Calls per session; `SESSIONS * CALLS_PER_SESSION` calls are in flight together.
const CALLS_PER_SESSION: usize = 50;

#[tokio::test]
async fn one_process_multiplexes_150_concurrent_calls_with_ids_and_results_intact() -> Result<()> {
    let pool = "min_connections = 1\nmax_connections = 1\nmax_inflight = 200";
    let bridge = start_bridge(&demo_server_toml("demo", &["--latency", "50ms"], pool))?;
    bridge.wait_ready().await?;
    let url = bridge.url("/mcp/demo");

    // Samples the process's in-flight count while the calls run, to see them overlap.
    let done = Arc::new(AtomicBool::new(false));
    let observer = {
        let (stats_url, done) = (bridge.url("/admin/stats"), done.clone());
        tokio::spawn(async move {
            let mut most = 0;
            while !done.load(Ordering::Acquire) {
                if let Ok(response) = http().get(&stats_url).send().await
                    && let Ok(stats) = response.json::<Value>().await
                {
                    most = most.max(stats["servers"][0]["inflight"].as_u64().unwrap_or(0));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };

    let mut calls = JoinSet::new();
    for session_index in 0..SESSIONS {
        let session = Arc::new(RawSession::open(&url).await?);
        for call_index in 0..CALLS_PER_SESSION {
            let session = session.clone();
            // Ids alternate between numbers and strings: both must come back unchanged.
            let id = if call_index % 2 == 0 {
                json!(call_index)
            } else {
                json!(format!("req-{call_index}"))
            };
            let title = format!("session {session_index} call {call_index}");
            calls.spawn(async move {
                let response = session
                    .call_tool(id.clone(), "create_task", json!({ "title": title }))
                    .await;
                (id, title, response)
            });
        }
    }

    let mut answered = 0;
    while let Some(joined) = calls.join_next().await {
        let (id, title, response) = joined?;
        let response = response?;
        assert_eq!(
            response["id"], id,
            "a response came back with another call's id: {response}"
        );
        assert_eq!(
            response["result"]["structuredContent"]["task"]["title"], title,
            "the response to id {id} carries another call's result: {response}"
        );
        answered += 1;
    }
    assert_eq!(answered, SESSIONS * CALLS_PER_SESSION);
    done.store(true, Ordering::Release);
    let most_inflight = observer.await?;
    assert!(
        most_inflight >= 2,
        "the calls never overlapped on the process (at most {most_inflight} in flight)"
    );

    let stats = bridge.server_stats("demo").await?;
    let processes = stats["processes"].as_array().context("processes")?;
    assert_eq!(
        processes.len(),
        1,
        "all calls must share one process: {stats}"
    );
    assert_eq!(
        stats["spawns"], 1,
        "no extra process may have been started: {stats}"
    );
    assert_eq!(stats["inflight"], 0, "every slot must be released: {stats}");
    Ok(())
}

#[tokio::test]
async fn pool_grows_to_max_connections_when_every_process_is_full() -> Result<()> {
    let log_dir = tempfile::tempdir()?;
    let calls_log = log_dir.path().join("calls.log");
    let calls_log_arg = calls_log.display().to_string();
    let pool =
        "min_connections = 1\nmax_connections = 3\nmax_inflight = 2\nacquire_timeout = \"20s\"";
    let bridge = start_bridge(&demo_server_toml(
        "demo",
        &["--calls-log", &calls_log_arg],
        pool,
    ))?;
    bridge.wait_ready().await?;
    let session = Arc::new(RawSession::open(&bridge.url("/mcp/demo")).await?);

    // Six calls, two per process at most: the pool must grow from one process to three.
    // The calls last longer than a loaded machine takes to start the two new processes,
    // so none of the waiting calls falls back to the first process when its calls end.
    let responses = concurrent_sleeps(&session, 6, 5000).await?;
    for response in &responses {
        assert!(
            response.get("result").is_some(),
            "a call failed while the pool grew: {response}"
        );
    }

    let stats = bridge.server_stats("demo").await?;
    assert_eq!(
        stats["processes"].as_array().map(Vec::len),
        Some(3),
        "{stats}"
    );
    assert_eq!(stats["spawns"], 3, "{stats}");
    let by_pid = calls_by_pid(&calls_log, "debug_sleep");
    assert_eq!(
        by_pid.len(),
        3,
        "the six calls must run on three processes: {by_pid:?}"
    );
    assert!(
        by_pid.values().all(|&count| count <= 2),
        "no process may take more than max_inflight = 2 calls at once: {by_pid:?}"
    );
    Ok(())
}

#[tokio::test]
async fn calls_go_to_the_least_loaded_warm_process() -> Result<()> {
    let log_dir = tempfile::tempdir()?;
    let calls_log = log_dir.path().join("calls.log");
    let calls_log_arg = calls_log.display().to_string();
    let pool = "min_connections = 3\nmax_connections = 3\nmax_inflight = 10";
    let bridge = start_bridge(&demo_server_toml(
        "demo",
        &["--calls-log", &calls_log_arg],
        pool,
    ))?;
    bridge.wait_ready().await?;
    let all_ready = crate::support::eventually(Duration::from_secs(15), async || {
        bridge
            .server_stats("demo")
            .await
            .is_ok_and(|stats| stats["ready"] == 3)
    })
    .await;
    ensure!(
        all_ready,
        "three processes never became ready: {}",
        bridge.server_stats("demo").await?
    );
    let session = Arc::new(RawSession::open(&bridge.url("/mcp/demo")).await?);

    // Each process has room for all six calls, so only least-loaded routing spreads them.
    // The calls last long enough to overlap even when a loaded machine sends them slowly.
    let responses = concurrent_sleeps(&session, 6, 2500).await?;
    for response in &responses {
        assert!(response.get("result").is_some(), "{response}");
    }
    let by_pid = calls_by_pid(&calls_log, "debug_sleep");
    assert_eq!(
        by_pid.len(),
        3,
        "six concurrent calls must be spread over the three processes: {by_pid:?}"
    );
    assert!(by_pid.values().all(|&count| count >= 1), "{by_pid:?}");
    Ok(())
}

/// Sends `count` concurrent `debug_sleep` calls on one session and returns their responses.
async fn concurrent_sleeps(session: &Arc<RawSession>, count: usize, ms: u64) -> Result<Vec<Value>> {
    let mut calls = JoinSet::new();
    for index in 0..count {
        let session = session.clone();
        calls.spawn(async move {
            session
                .call_tool(json!(index), "debug_sleep", json!({ "ms": ms }))
                .await
        });
    }
    let mut responses = Vec::with_capacity(count);
    while let Some(joined) = calls.join_next().await {
        let response = joined??;
        if let Some(code) = error_code(&response) {
            anyhow::bail!("debug_sleep failed with code {code}: {response}");
        }
        responses.push(response);
    }
    Ok(responses)
}
