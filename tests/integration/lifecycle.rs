//! Process lifecycle: prewarming, idle close, max-lifetime recycling, health-check
//! replacement, reconnect with backoff, SIGTERM drain, and no orphans after SIGKILL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::faults::{call_pids, calls_log, error_code, fault_server_toml, guarded_call};
use crate::support::{
    Bridge, RawSession, SETTLE, bridge_exe, demo_server_toml, eventually, http, poll_until,
    process_alive, toml_string,
};
use crate::support::{metric, start_bridge};

/// Waits until the server's stats satisfy `condition`, or fails with the last stats seen.
async fn wait_stats(
    bridge: &Bridge,
    server: &str,
    timeout: Duration,
    condition: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let mut last = Value::Null;
    let met = eventually(timeout, async || {
        last = bridge.server_stats(server).await.unwrap_or(Value::Null);
        condition(&last)
    })
    .await;
    ensure!(
        met,
        "stats of {server} never reached the expected state within {timeout:?}: {last}"
    );
    Ok(last)
}

/// `GET /health`.
async fn get_health(bridge: &Bridge) -> Result<Value> {
    Ok(http()
        .get(bridge.url("/health"))
        .send()
        .await?
        .json()
        .await?)
}

fn process_count(stats: &Value) -> usize {
    stats["processes"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn min_connections_are_prewarmed_before_any_call() -> Result<()> {
    let bridge = start_bridge(&demo_server_toml(
        "demo",
        &[],
        "min_connections = 2\nmax_connections = 4",
    ))?;
    bridge.wait_ready().await?;
    let stats = wait_stats(&bridge, "demo", Duration::from_secs(15), |s| {
        s["ready"] == 2
    })
    .await?;
    assert_eq!(process_count(&stats), 2, "{stats}");
    assert_eq!(stats["spawns"], 2, "{stats}");
    let calls = metric(&bridge, "mcp_bridge_calls_total", &[]).await?;
    assert_eq!(
        calls, 0.0,
        "the processes must be warm before any call is made"
    );
    Ok(())
}

#[tokio::test]
async fn idle_processes_close_back_down_to_the_minimum() -> Result<()> {
    let pool = "min_connections = 1\nmax_connections = 3\nmax_inflight = 1\nidle_timeout = \"1s\"\nacquire_timeout = \"20s\"";
    let bridge = start_bridge(&demo_server_toml("demo", &[], pool))?;
    bridge.wait_ready().await?;
    let session = Arc::new(RawSession::open(&bridge.url("/mcp/demo")).await?);

    let mut calls = JoinSet::new();
    for index in 0..3 {
        let session = session.clone();
        calls.spawn(async move {
            guarded_call(&session, json!(index), "debug_sleep", json!({ "ms": 800 })).await
        });
    }
    while let Some(joined) = calls.join_next().await {
        let response = joined??;
        ensure!(error_code(&response).is_none(), "a call failed: {response}");
    }
    let grown = bridge.server_stats("demo").await?;
    assert_eq!(
        grown["spawns"], 3,
        "three concurrent calls with max_inflight = 1 need three processes: {grown}"
    );

    let stats = wait_stats(&bridge, "demo", Duration::from_secs(10), |s| {
        process_count(s) == 1 && s["ready"] == 1
    })
    .await?;
    assert_eq!(
        stats["restarts"], 0,
        "closing idle processes is not a restart: {stats}"
    );
    assert_eq!(
        stats["spawns"], 3,
        "no process may be started after the idle close: {stats}"
    );
    Ok(())
}

#[tokio::test]
async fn processes_are_recycled_after_max_lifetime_without_failing_a_call() -> Result<()> {
    let (_dir, log, log_arg) = calls_log()?;
    let pool = "min_connections = 1\nmax_connections = 2\nmax_lifetime = \"2s\"";
    let bridge = start_bridge(&demo_server_toml("demo", &["--calls-log", &log_arg], pool))?;
    bridge.wait_ready().await?;
    let first_pid = *bridge
        .backend_pids("demo")
        .await?
        .first()
        .context("no backend pid")?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;

    // Calls go on for at least 5 s (more than twice max_lifetime), and then until the
    // recycling is seen through, bounded: on a loaded machine the supervisor's tick and
    // the replacement's start can take longer than on an idle one.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5) + SETTLE;
    let mut calls = 0u64;
    let (pids, listed) = loop {
        let response =
            guarded_call(&session, json!(calls), "get_tasks", json!({ "limit": 1 })).await?;
        assert!(
            response.get("result").is_some(),
            "call {calls} failed during recycling: {response}"
        );
        calls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if started.elapsed() < Duration::from_secs(5) {
            continue;
        }
        let mut pids = call_pids(&log, "get_tasks");
        pids.dedup();
        let listed = bridge.backend_pids("demo").await?;
        if (pids.len() >= 2 && !listed.contains(&first_pid)) || Instant::now() > deadline {
            break (pids, listed);
        }
    };
    assert!(
        pids.len() >= 2,
        "with max_lifetime = 2s the calls must reach a new process: {pids:?}"
    );
    assert!(
        !listed.contains(&first_pid),
        "the first process outlived max_lifetime: {listed:?}"
    );
    let gone = eventually(SETTLE, async || !process_alive(first_pid)).await;
    assert!(gone, "the recycled process {first_pid} is still running");
    let stats = bridge.server_stats("demo").await?;
    assert_eq!(stats["restarts"], 0, "recycling is not a crash: {stats}");
    Ok(())
}

#[tokio::test]
async fn a_process_that_stops_answering_pings_is_killed_and_replaced() -> Result<()> {
    let pool = "min_connections = 1\nmax_connections = 1\nhealth_check_interval = \"300ms\"\n\
                [servers.deaf.health]\ncheck_timeout = \"300ms\"\nunhealthy_threshold = 2";
    let bridge = start_bridge(&fault_server_toml("deaf", &["--ignore-ping"], pool))?;
    bridge.wait_ready().await?;
    let first_pid = *bridge
        .backend_pids("deaf")
        .await?
        .first()
        .context("no backend pid")?;

    let stats = wait_stats(&bridge, "deaf", Duration::from_secs(15), |s| {
        s["restarts"].as_u64() >= Some(1)
            && s["processes"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|p| p["pid"].as_u64() != Some(first_pid.into()))
            })
    })
    .await?;
    assert!(stats["spawns"].as_u64() >= Some(2), "{stats}");
    let gone = eventually(SETTLE, async || !process_alive(first_pid)).await;
    assert!(gone, "the unresponsive process {first_pid} was not killed");

    // The replacement ignores pings too; its first failed ping may still be under way.
    let health = poll_until(
        SETTLE,
        async || get_health(&bridge).await,
        |health| {
            health.as_ref().is_ok_and(|health| {
                health["servers"]["deaf"]["last_ping_error"]
                    .as_str()
                    .is_some_and(|error| !error.is_empty())
            })
        },
    )
    .await?;
    let last_error = health["servers"]["deaf"]["last_ping_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !last_error.is_empty(),
        "/health must report the failed pings: {health}"
    );
    Ok(())
}

#[tokio::test]
async fn a_server_that_fails_to_start_is_retried_with_backoff_and_picked_up_when_it_recovers()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let switch = dir.path().join("may-start");
    // The server exits at once until the switch file exists, then runs the demo server.
    let script = format!(
        "test -f {} || exit 1; exec {} demo-server",
        shell_quote(&switch.display().to_string()),
        shell_quote(bridge_exe())
    );
    let config = format!(
        "{}\n[servers.flaky]\ncommand = \"sh\"\nargs = [\"-c\", {}]\nrequired = false\n\
         reconnect_backoff_initial = \"100ms\"\nreconnect_backoff_max = \"400ms\"\nmax_reconnect_attempts = 3\n\
         unhealthy_retry_interval = \"1s\"\n",
        demo_server_toml("demo", &[], ""),
        toml_string(&script)
    );
    let bridge = start_bridge(&config)?;
    bridge.wait_ready().await?;

    let failing = wait_stats(&bridge, "flaky", Duration::from_secs(10), |s| {
        s["spawn_failures"].as_u64() >= Some(3)
    })
    .await?;
    assert_eq!(failing["ready"], 0, "{failing}");
    let health = poll_until(
        SETTLE,
        async || get_health(&bridge).await,
        |health| {
            health
                .as_ref()
                .is_ok_and(|health| health["servers"]["flaky"]["status"] == "unhealthy")
        },
    )
    .await?;
    assert_eq!(
        health["servers"]["flaky"]["status"], "unhealthy",
        "{health}"
    );

    // Past max_reconnect_attempts the server is still retried, at unhealthy_retry_interval.
    let before = failing["spawn_failures"].as_u64().unwrap_or_default();
    let observed_from = Instant::now();
    let retried = wait_stats(&bridge, "flaky", Duration::from_secs(10), |s| {
        s["spawn_failures"].as_u64() > Some(before + 1)
    })
    .await?;
    let window = observed_from.elapsed().as_secs_f64() + 1.0;
    let attempts = retried["spawn_failures"].as_u64().unwrap_or_default() - before;
    // With a one-second retry interval only a handful fit in the window; a retry loop
    // without backoff would have made hundreds.
    assert!(
        (attempts as f64) <= window * 2.0 + 3.0,
        "{attempts} start attempts in {window:.1} s: the retry is not slowed down"
    );

    std::fs::write(&switch, "")?;
    let recovered = wait_stats(&bridge, "flaky", Duration::from_secs(15), |s| {
        s["ready"] == 1
    })
    .await?;
    assert_eq!(recovered["consecutive_spawn_failures"], 0, "{recovered}");
    let session = RawSession::open(&bridge.url("/mcp/flaky")).await?;
    let response = guarded_call(&session, json!(1), "get_tasks", json!({})).await?;
    assert!(response.get("result").is_some(), "{response}");
    Ok(())
}

#[tokio::test]
async fn sigterm_drains_the_call_in_flight_then_exits_cleanly() -> Result<()> {
    // Long enough for a loaded machine to handle SIGTERM while the call still runs, and
    // well inside the 5 s shutdown_grace.
    const DRAINED_MS: u64 = 3000;
    let (_dir, log, log_arg) = calls_log()?;
    let config = format!(
        "[http]\nshutdown_grace = \"5s\"\n\n{}",
        demo_server_toml(
            "demo",
            &["--calls-log", &log_arg],
            "min_connections = 2\nmax_connections = 2"
        )
    );
    let mut bridge = start_bridge(&config)?;
    bridge.wait_ready().await?;
    wait_stats(&bridge, "demo", Duration::from_secs(15), |s| {
        s["ready"] == 2
    })
    .await?;
    let pids = bridge.backend_pids("demo").await?;
    let session = Arc::new(RawSession::open(&bridge.url("/mcp/demo")).await?);

    let caller = session.clone();
    let call = tokio::spawn(async move {
        guarded_call(
            &caller,
            json!("drain"),
            "debug_sleep",
            json!({ "ms": DRAINED_MS }),
        )
        .await
    });
    let received = eventually(Duration::from_secs(10), async || {
        !call_pids(&log, "debug_sleep").is_empty()
    })
    .await;
    ensure!(received, "the backend never received the call");
    bridge.signal(libc::SIGTERM);
    let signalled_at = Instant::now();

    // While draining, the bridge takes no new work: the listener is closed, or (on a
    // connection already open) the request is refused. The refusal must come while the
    // drained call still runs (once the bridge has exited every request fails anyway).
    let mut refused_while_draining = false;
    let refused = eventually(SETTLE, async || {
        let draining = !call.is_finished();
        let late = crate::support::post_json(
            &bridge.url("/mcp/demo"),
            Some(&session.session_id),
            &json!({
                "jsonrpc": "2.0", "id": "late", "method": "tools/call",
                "params": { "name": "get_tasks", "arguments": {} },
            }),
        )
        .await;
        let refused = late.is_err() || late.is_ok_and(|response| response.status() != 200);
        refused_while_draining = refused && draining;
        refused
    })
    .await;
    assert!(refused, "a new call was accepted after SIGTERM");
    assert!(
        refused_while_draining,
        "no new call was refused while the call in flight was drained"
    );

    let response = call.await??;
    assert_eq!(
        response["result"]["structuredContent"]["slept_ms"], DRAINED_MS,
        "the in-flight call was not drained: {response}"
    );
    let exit_wait = Duration::from_secs(5 + 10);
    let status = bridge.wait_exit(exit_wait)?;
    assert!(
        status.success(),
        "the bridge exited with {status} after SIGTERM; log:\n{}",
        bridge.log_text()
    );
    assert!(signalled_at.elapsed() < exit_wait);
    for pid in pids {
        let gone = eventually(SETTLE, async || !process_alive(pid)).await;
        assert!(gone, "backend {pid} outlived the bridge");
    }
    Ok(())
}

#[tokio::test]
async fn no_backend_outlives_a_sigkilled_bridge() -> Result<()> {
    let (_dir, log, log_arg) = calls_log()?;
    let pool = "min_connections = 2\nmax_connections = 2";
    let mut bridge = start_bridge(&demo_server_toml("demo", &["--calls-log", &log_arg], pool))?;
    bridge.wait_ready().await?;
    wait_stats(&bridge, "demo", Duration::from_secs(15), |s| {
        s["ready"] == 2
    })
    .await?;
    let pids = bridge.backend_pids("demo").await?;
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|pid| process_alive(*pid)));

    // A call in flight must not keep its process alive either.
    let session = Arc::new(RawSession::open(&bridge.url("/mcp/demo")).await?);
    let caller = session.clone();
    let call = tokio::spawn(async move {
        caller
            .call_tool(json!(1), "debug_sleep", json!({ "ms": 10000 }))
            .await
    });
    let received = eventually(Duration::from_secs(10), async || {
        !call_pids(&log, "debug_sleep").is_empty()
    })
    .await;
    ensure!(received, "the backend never received the call");

    bridge.signal(libc::SIGKILL);
    bridge.wait_exit(Duration::from_secs(10))?;
    for pid in &pids {
        // `process_alive` reads /proc and counts a zombie as dead: the process must have
        // really exited (by the parent-death signal), not merely be waiting to be reaped.
        let gone = eventually(SETTLE, async || !process_alive(*pid)).await;
        assert!(gone, "backend {pid} outlived the SIGKILLed bridge");
    }
    let outcome = tokio::time::timeout(Duration::from_secs(10), call).await?;
    assert!(
        !matches!(outcome, Ok(Ok(ref response)) if response.get("result").is_some()),
        "{outcome:?}"
    );
    Ok(())
}

/// Quotes a string for `sh -c`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
