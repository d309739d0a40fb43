//! Backend faults: a process killed mid-call, a crashing call, a hung call, a client that
//! hangs up, an exhausted pool, a command that does not exist, application errors, and a
//! server that writes garbage. Also the small helpers the pool and lifecycle tests share.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::{
    RawSession, SETTLE, count_calls, demo_server_toml, eventually, metric, poll_until, post_json,
    process_alive, read_response, repo_root, start_bridge, toml_string,
};

/// JSON-RPC codes the bridge uses for backend failures (see `host/jsonrpc/src/lib.rs`).
pub(crate) const CONNECTION_CLOSED: i64 = -32000;
pub(crate) const REQUEST_TIMEOUT: i64 = -32001;
pub(crate) const POOL_EXHAUSTED: i64 = -32010;
pub(crate) const SERVER_UNAVAILABLE: i64 = -32011;

/// The longest any single call in these tests may take before the test gives up on it,
/// so that a bridge that hangs fails the test instead of stalling the suite.
pub(crate) const CALL_GUARD: Duration = Duration::from_secs(20);

/// The `error.code` of a JSON-RPC response, if it is an error.
pub(crate) fn error_code(response: &Value) -> Option<i64> {
    response.pointer("/error/code").and_then(Value::as_i64)
}

/// The `error.message` of a JSON-RPC response, or an empty string.
pub(crate) fn error_message(response: &Value) -> &str {
    response
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Calls a tool, failing the test instead of waiting forever if the bridge never answers.
pub(crate) async fn guarded_call(
    session: &RawSession,
    id: Value,
    tool: &str,
    arguments: Value,
) -> Result<Value> {
    tokio::time::timeout(CALL_GUARD, session.call_tool(id, tool, arguments))
        .await
        .with_context(|| format!("no answer to {tool} within {CALL_GUARD:?}"))?
}

/// How many calls to `tool` each backend pid received, from a `--calls-log` file.
pub(crate) fn calls_by_pid(calls_log: &Path, tool: &str) -> HashMap<u32, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(calls_log)
        .unwrap_or_default()
        .lines()
    {
        let mut parts = line.split_whitespace();
        if let (Some(pid), Some(name)) = (parts.next(), parts.next())
            && name == tool
            && let Ok(pid) = pid.parse::<u32>()
        {
            *counts.entry(pid).or_insert(0) += 1;
        }
    }
    counts
}

/// The pids, in order, of the calls to `tool` recorded in a `--calls-log` file.
pub(crate) fn call_pids(calls_log: &Path, tool: &str) -> Vec<u32> {
    std::fs::read_to_string(calls_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (pid, name) = line.split_once(' ')?;
            (name.trim() == tool).then(|| pid.parse().ok()).flatten()
        })
        .collect()
}

/// Sends SIGKILL to a process.
pub(crate) fn kill_pid(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions; the pid is a backend the test
    // read from the bridge's own stats or calls log.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

/// The fault-injecting stdio server, `tests/clients/fault_server.py`.
pub(crate) fn fault_server_script() -> PathBuf {
    repo_root().join("tests/clients/fault_server.py")
}

/// TOML for a `[servers.NAME]` table running the fault server with `flags`.
pub(crate) fn fault_server_toml(name: &str, flags: &[&str], pool: &str) -> String {
    let mut args = vec![fault_server_script().display().to_string()];
    args.extend(flags.iter().map(|flag| (*flag).to_owned()));
    format!(
        "[servers.{name}]\ncommand = \"python3\"\nargs = {args}\n{pool}\n",
        args = serde_json::to_string(&args).unwrap_or_default()
    )
}

/// A temporary `--calls-log` file, and the directory that holds it.
pub(crate) fn calls_log() -> Result<(tempfile::TempDir, PathBuf, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("calls.log");
    let arg = path.display().to_string();
    Ok((dir, path, arg))
}

/// Waits until `tool` has been received `count` times according to the calls log.
async fn wait_for_calls(calls_log: &Path, tool: &str, count: usize) -> Result<()> {
    let seen = eventually(SETTLE, async || count_calls(calls_log, tool) >= count).await;
    ensure!(
        seen,
        "the backend never received {tool} (calls log: {calls_log:?})"
    );
    Ok(())
}

/// A `debug_stats` call on the only process of `/mcp/demo`.
async fn debug_stats(session: &RawSession) -> Result<Value> {
    let response = guarded_call(session, json!("stats"), "debug_stats", json!({})).await?;
    response
        .pointer("/result/structuredContent")
        .cloned()
        .with_context(|| format!("debug_stats failed: {response}"))
}

#[tokio::test]
async fn backend_killed_mid_write_fails_promptly_is_not_retried_and_is_replaced() -> Result<()> {
    let (_dir, log, log_arg) = calls_log()?;
    let pool = "min_connections = 1\nmax_connections = 1\nrequest_timeout = \"30s\"";
    let bridge = start_bridge(&demo_server_toml(
        "demo",
        &["--latency", "2s", "--calls-log", &log_arg],
        pool,
    ))?;
    bridge.wait_ready().await?;
    let session = Arc::new(RawSession::open(&bridge.url("/mcp/demo")).await?);
    let old_pid = *bridge
        .backend_pids("demo")
        .await?
        .first()
        .context("no backend pid")?;

    let caller = session.clone();
    let call = tokio::spawn(async move {
        guarded_call(
            &caller,
            json!(1),
            "create_task",
            json!({ "title": "doomed" }),
        )
        .await
    });
    wait_for_calls(&log, "create_task", 1).await?;
    kill_pid(old_pid);
    let killed_at = Instant::now();
    let response = call.await??;
    let waited = killed_at.elapsed();

    assert_eq!(error_code(&response), Some(CONNECTION_CLOSED), "{response}");
    assert_eq!(response["id"], 1, "{response}");
    assert!(
        error_message(&response).contains("'demo'"),
        "the error must name the server: {response}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "the error took {waited:?}, far from prompt"
    );
    assert_eq!(
        count_calls(&log, "create_task"),
        1,
        "a write must never be retried"
    );

    let replaced = eventually(Duration::from_secs(10), async || {
        bridge
            .backend_pids("demo")
            .await
            .is_ok_and(|pids| pids.len() == 1 && pids[0] != old_pid)
    })
    .await;
    assert!(
        replaced,
        "no replacement process: {}",
        bridge.server_stats("demo").await?
    );
    assert!(
        !process_alive(old_pid),
        "the killed process {old_pid} is still around"
    );

    let next = guarded_call(&session, json!(2), "get_tasks", json!({ "limit": 1 })).await?;
    assert!(
        next.get("result").is_some(),
        "the call after the crash failed: {next}"
    );
    assert_eq!(
        count_calls(&log, "create_task"),
        1,
        "a write must never be retried"
    );
    let stats = bridge.server_stats("demo").await?;
    assert!(
        stats["restarts"].as_u64() >= Some(1),
        "the crash was not counted as a restart: {stats}"
    );
    Ok(())
}

#[tokio::test]
async fn read_only_call_is_retried_once_on_another_process_when_its_process_dies() -> Result<()> {
    let (_dir, log, log_arg) = calls_log()?;
    let pool = "min_connections = 2\nmax_connections = 2\nrequest_timeout = \"30s\"";
    let bridge = start_bridge(&demo_server_toml("demo", &["--calls-log", &log_arg], pool))?;
    bridge.wait_ready().await?;
    let both_ready = eventually(Duration::from_secs(15), async || {
        bridge
            .server_stats("demo")
            .await
            .is_ok_and(|stats| stats["ready"] == 2)
    })
    .await;
    ensure!(both_ready, "two processes never became ready");
    let retries_before = metric(
        &bridge,
        "mcp_bridge_backend_retries_total",
        &["server=\"demo\""],
    )
    .await?;
    let session = Arc::new(RawSession::open(&bridge.url("/mcp/demo")).await?);

    let caller = session.clone();
    let call = tokio::spawn(async move {
        guarded_call(&caller, json!(7), "debug_sleep", json!({ "ms": 3000 })).await
    });
    wait_for_calls(&log, "debug_sleep", 1).await?;
    let first_pid = call_pids(&log, "debug_sleep")[0];
    kill_pid(first_pid);
    let response = call.await??;

    assert_eq!(response["id"], 7, "{response}");
    assert_eq!(
        response["result"]["structuredContent"]["slept_ms"], 3000,
        "the retry did not succeed: {response}"
    );
    let pids = call_pids(&log, "debug_sleep");
    assert_eq!(
        pids.len(),
        2,
        "a read-only call is retried exactly once: {pids:?}"
    );
    assert_ne!(
        pids[1], first_pid,
        "the retry must run on another process: {pids:?}"
    );
    let retries_after = metric(
        &bridge,
        "mcp_bridge_backend_retries_total",
        &["server=\"demo\""],
    )
    .await?;
    assert_eq!(
        retries_after - retries_before,
        1.0,
        "mcp_bridge_backend_retries_total must count the retry"
    );
    Ok(())
}

#[tokio::test]
async fn a_call_that_crashes_its_process_fails_and_is_not_retried() -> Result<()> {
    let (_dir, log, log_arg) = calls_log()?;
    let pool = "min_connections = 2\nmax_connections = 2";
    let bridge = start_bridge(&demo_server_toml("demo", &["--calls-log", &log_arg], pool))?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;

    let response = guarded_call(&session, json!("crash"), "debug_crash", json!({})).await?;
    assert_eq!(error_code(&response), Some(CONNECTION_CLOSED), "{response}");
    assert_eq!(response["id"], "crash", "{response}");
    assert!(error_message(&response).contains("'demo'"), "{response}");

    // Give a wrong retry time to happen before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count_calls(&log, "debug_crash"),
        1,
        "debug_crash is not read-only and must not be retried"
    );
    assert_eq!(
        metric(
            &bridge,
            "mcp_bridge_backend_retries_total",
            &["server=\"demo\""]
        )
        .await?,
        0.0
    );
    let next = guarded_call(&session, json!(2), "get_habits", json!({})).await?;
    assert!(next.get("result").is_some(), "{next}");
    Ok(())
}

#[tokio::test]
async fn a_hung_call_times_out_and_the_server_is_told_to_cancel_it() -> Result<()> {
    let pool = "min_connections = 1\nmax_connections = 1\nrequest_timeout = \"1s\"";
    let bridge = start_bridge(&demo_server_toml("demo", &[], pool))?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;

    let started = Instant::now();
    let response = guarded_call(&session, json!(3), "debug_sleep", json!({ "ms": 30000 })).await?;
    let waited = started.elapsed();
    assert_eq!(error_code(&response), Some(REQUEST_TIMEOUT), "{response}");
    assert_eq!(response["id"], 3, "{response}");
    assert!(error_message(&response).contains("'demo'"), "{response}");
    assert!(
        waited < Duration::from_secs(15),
        "a 1 s request_timeout took {waited:?}"
    );

    let mut last = Value::Null;
    let cancelled = eventually(SETTLE, async || {
        last = debug_stats(&session).await.unwrap_or(Value::Null);
        last["cancelled"].as_u64() >= Some(1) && last["in_flight"] == 0
    })
    .await;
    assert!(
        cancelled,
        "the server never saw notifications/cancelled for the timed-out call: {last}"
    );
    Ok(())
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_call_cancels_it_on_the_server() -> Result<()> {
    let (_dir, log, log_arg) = calls_log()?;
    let pool = "min_connections = 1\nmax_connections = 1\nrequest_timeout = \"30s\"";
    let bridge = start_bridge(&demo_server_toml("demo", &["--calls-log", &log_arg], pool))?;
    bridge.wait_ready().await?;
    let session = Arc::new(RawSession::open(&bridge.url("/mcp/demo")).await?);

    // The call would run far longer than the wait below, so only a cancellation can end
    // it in time, however slowly a loaded machine notices the hang-up.
    let caller = session.clone();
    let call = tokio::spawn(async move {
        caller
            .call_tool(json!(4), "debug_sleep", json!({ "ms": 25_000 }))
            .await
    });
    wait_for_calls(&log, "debug_sleep", 1).await?;
    // Dropping the in-flight request closes its connection: the client went away.
    call.abort();
    let hung_up_at = Instant::now();
    let _ = call.await;

    let mut last = Value::Null;
    let cancelled = eventually(SETTLE, async || {
        last = debug_stats(&session).await.unwrap_or(Value::Null);
        last["cancelled"].as_u64() >= Some(1) && last["in_flight"] == 0
    })
    .await;
    assert!(
        cancelled,
        "{:?} after the client hung up, the 25 s call still runs on the server: {last}",
        hung_up_at.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn an_exhausted_pool_answers_a_clear_error_at_once_and_recovers() -> Result<()> {
    let pool = "min_connections = 1\nmax_connections = 1\nmax_inflight = 1\nmax_queue = 1\n\
                acquire_timeout = \"300ms\"\nrequest_timeout = \"30s\"";
    let bridge = start_bridge(&demo_server_toml("demo", &[], pool))?;
    bridge.wait_ready().await?;
    let session = Arc::new(RawSession::open(&bridge.url("/mcp/demo")).await?);

    let started = Instant::now();
    let mut calls = JoinSet::new();
    for index in 0..3 {
        let session = session.clone();
        calls.spawn(async move {
            let response =
                guarded_call(&session, json!(index), "debug_sleep", json!({ "ms": 2000 })).await;
            (response, started.elapsed())
        });
    }
    let mut succeeded = Vec::new();
    let mut exhausted = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let (response, elapsed) = joined?;
        let response = response?;
        match error_code(&response) {
            None => succeeded.push(elapsed),
            Some(POOL_EXHAUSTED) => {
                assert!(
                    error_message(&response).contains("pool exhausted"),
                    "{response}"
                );
                assert!(error_message(&response).contains("'demo'"), "{response}");
                exhausted.push(elapsed);
            }
            Some(other) => bail!("unexpected error {other}: {response}"),
        }
    }
    assert_eq!(
        succeeded.len(),
        1,
        "one call fits the pool (succeeded {succeeded:?}, exhausted {exhausted:?})"
    );
    assert_eq!(
        exhausted.len(),
        2,
        "two calls do not fit (succeeded {succeeded:?}, exhausted {exhausted:?})"
    );
    assert!(
        exhausted.iter().all(|at| *at < succeeded[0]),
        "the refusals must not wait for the running call: refused at {exhausted:?}, the call ended at {succeeded:?}"
    );

    let stats = bridge.server_stats("demo").await?;
    assert_eq!(stats["queued"], 0, "{stats}");
    assert_eq!(stats["inflight"], 0, "{stats}");
    let next = guarded_call(&session, json!("after"), "get_clients", json!({})).await?;
    assert!(
        next.get("result").is_some(),
        "the pool did not recover: {next}"
    );
    Ok(())
}

#[tokio::test]
async fn a_server_whose_command_does_not_exist_is_reported_at_once() -> Result<()> {
    let missing = "/nonexistent/mcp-bridge-test/no-such-server";
    let config = format!(
        "{}\n[servers.broken]\ncommand = {}\nrequired = false\nconnection_timeout = \"30s\"\n",
        demo_server_toml("demo", &[], ""),
        toml_string(missing)
    );
    let bridge = start_bridge(&config)?;
    bridge.wait_ready().await?;

    let started = Instant::now();
    let initialize = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"faults","version":"1"}}});
    let response = tokio::time::timeout(
        CALL_GUARD,
        post_json(&bridge.url("/mcp/broken"), None, &initialize),
    )
    .await??;
    let response = read_response(response).await?;
    let waited = started.elapsed();
    assert_eq!(
        error_code(&response),
        Some(SERVER_UNAVAILABLE),
        "{response}"
    );
    let message = error_message(&response);
    assert!(
        message.contains(missing),
        "the error must name the command: {response}"
    );
    assert!(
        message.contains("'broken'"),
        "the error must name the server: {response}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "took {waited:?}: the failure must not wait for connection_timeout"
    );

    // The working server next to it is unaffected.
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let ok = guarded_call(&session, json!(1), "get_tasks", json!({})).await?;
    assert!(ok.get("result").is_some(), "{ok}");
    Ok(())
}

#[tokio::test]
async fn server_errors_pass_through_as_jsonrpc_errors_without_retry() -> Result<()> {
    let (_dir, log, log_arg) = calls_log()?;
    let bridge = start_bridge(&demo_server_toml(
        "demo",
        &["--fail-rate", "1.0", "--calls-log", &log_arg],
        "",
    ))?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;

    let response = guarded_call(&session, json!("fail"), "get_tasks", json!({})).await?;
    assert_eq!(response["id"], "fail", "{response}");
    assert_eq!(
        error_code(&response),
        Some(-32603),
        "the server's own error must reach the client: {response}"
    );
    assert!(response.get("result").is_none(), "{response}");
    assert_eq!(
        count_calls(&log, "get_tasks"),
        1,
        "an answered call is not retried, even a read"
    );
    Ok(())
}

#[tokio::test]
async fn garbage_and_oversized_lines_from_a_server_are_counted_and_survived() -> Result<()> {
    let pool = "max_line_bytes = \"1MiB\"\nmin_connections = 1\nmax_connections = 1\nrequest_timeout = \"3s\"";
    let bridge = start_bridge(&fault_server_toml("noisy", &[], pool))?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/noisy")).await?;
    let pid = *bridge
        .backend_pids("noisy")
        .await?
        .first()
        .context("no backend pid")?;

    // Before its answer the server writes a non-JSON line, JSON that is not JSON-RPC, a
    // response to an id nobody sent, and a 20 MB line.
    let noise = guarded_call(&session, json!(1), "noise", json!({})).await?;
    assert_eq!(
        noise["result"]["structuredContent"]["noise"], "done",
        "{noise}"
    );
    let echo = guarded_call(&session, json!(2), "echo", json!({ "n": 2 })).await?;
    assert_eq!(
        echo["result"]["structuredContent"]["echo"]["n"], 2,
        "{echo}"
    );
    assert_eq!(
        echo["result"]["structuredContent"]["pid"], pid,
        "the process must have survived: {echo}"
    );

    // A response longer than max_line_bytes fails that call only.
    let oversized = guarded_call(&session, json!(3), "oversized", json!({})).await?;
    assert!(
        error_code(&oversized).is_some(),
        "an oversized response cannot be delivered: {:.300}",
        oversized.to_string()
    );
    let echo = guarded_call(&session, json!(4), "echo", json!({ "n": 4 })).await?;
    assert_eq!(echo["result"]["structuredContent"]["pid"], pid, "{echo}");

    // The process's reader task counts each bad line as it reads it.
    let server = "server=\"noisy\"";
    for kind in ["non_json", "non_jsonrpc", "unknown_id", "oversized_line"] {
        let labels = [server, &format!("kind=\"{kind}\"")];
        let count = poll_until(
            SETTLE,
            async || metric(&bridge, "mcp_bridge_backend_errors_total", &labels).await,
            |count| count.as_ref().is_ok_and(|count| *count >= 1.0),
        )
        .await?;
        assert!(
            count >= 1.0,
            "mcp_bridge_backend_errors_total{{kind=\"{kind}\"}} = {count}"
        );
    }
    let stats = bridge.server_stats("noisy").await?;
    assert_eq!(stats["restarts"], 0, "{stats}");
    assert!(process_alive(pid));
    Ok(())
}
