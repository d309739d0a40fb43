//! The cache while the bridge runs, through the real binary and demo server: stale
//! windows (an expired entry served while one refresh runs, or standing in for a server
//! that cannot answer) and hot reload of the TTL table from the config file.

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use crate::support::{
    RawSession, SETTLE, bridge_exe, count_calls, eventually, poll_until, start_bridge,
    start_bridge_with_file, toml_string,
};

/// Whether a tool result carries the bridge's stale marker.
fn is_stale(response: &Value) -> bool {
    response.pointer("/result/_meta/io.mcp-bridge~1stale") == Some(&json!(true))
}

#[tokio::test]
async fn an_expired_entry_is_served_stale_while_one_refresh_runs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let calls = dir.path().join("calls.log");
    let config = format!(
        "[servers.demo]\ncommand = {exe}\nargs = [\"demo-server\", \"--calls-log\", {log}]\n\
         [cache]\ndefault_ttl = \"1s\"\nstale_while_revalidate = \"1m\"\n",
        exe = toml_string(bridge_exe()),
        log = toml_string(&calls.display().to_string()),
    );
    let bridge = start_bridge(&config)?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;

    let first = session
        .call_tool(json!(1), "get_clients", json!({}))
        .await?;
    assert!(!is_stale(&first), "{first}");
    let cached = session
        .call_tool(json!(2), "get_clients", json!({}))
        .await?;
    assert!(!is_stale(&cached), "a fresh hit is not stale: {cached}");
    assert_eq!(count_calls(&calls, "get_clients"), 1);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stale = session
        .call_tool(json!(3), "get_clients", json!({}))
        .await?;
    assert!(
        is_stale(&stale),
        "an expired entry inside the window is served stale: {stale}"
    );
    assert_eq!(
        stale["result"]["structuredContent"],
        first["result"]["structuredContent"]
    );
    let refreshed = eventually(SETTLE, async || count_calls(&calls, "get_clients") == 2).await;
    assert!(
        refreshed,
        "exactly one background refresh reached the server"
    );

    // The server received the refresh before the bridge stores its answer: until it is
    // stored, a read is still served stale (and starts no second refresh).
    let mut id = 3;
    let fresh = poll_until(
        SETTLE,
        async || {
            id += 1;
            session
                .call_tool(json!(id), "get_clients", json!({}))
                .await
                .unwrap_or_default()
        },
        |answer| !is_stale(answer),
    )
    .await;
    assert!(
        !is_stale(&fresh),
        "after the refresh the entry is fresh again: {fresh}"
    );
    assert_eq!(
        count_calls(&calls, "get_clients"),
        2,
        "the fresh answer came from the cache"
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_entry_stands_in_when_the_server_cannot_answer() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let marker = dir.path().join("server-may-start");
    std::fs::write(&marker, "")?;
    // The server starts only while the marker exists, so once it is killed and the
    // marker removed, nothing can answer.
    let script = format!(
        "test -f '{marker}' && exec '{exe}' demo-server || exit 1",
        marker = marker.display(),
        exe = bridge_exe(),
    );
    let config = format!(
        "[servers.demo]\ncommand = \"sh\"\nargs = [\"-c\", {script}]\nconnection_timeout = \"2s\"\n\
         request_timeout = \"3s\"\nreconnect_backoff_initial = \"50ms\"\n\
         [cache]\ndefault_ttl = \"1s\"\nstale_if_error = \"1m\"\n",
        script = toml_string(&script),
    );
    let bridge = start_bridge(&config)?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let first = session.call_tool(json!(1), "get_habits", json!({})).await?;
    assert!(first.get("result").is_some(), "{first}");

    std::fs::remove_file(&marker)?;
    for pid in bridge.backend_pids("demo").await? {
        // SAFETY: kill has no memory-safety preconditions; the pid is our bridge's child.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let fallback = session.call_tool(json!(2), "get_habits", json!({})).await?;
    assert!(
        is_stale(&fallback),
        "the expired entry stood in for the failed call: {fallback}"
    );
    assert_eq!(
        fallback["result"]["structuredContent"],
        first["result"]["structuredContent"]
    );
    // A read that was never cached has nothing to stand in: the failure shows.
    let uncached = session
        .call_tool(json!(3), "get_clients", json!({}))
        .await?;
    assert!(uncached.get("error").is_some(), "{uncached}");
    Ok(())
}

#[tokio::test]
async fn editing_the_config_file_applies_a_new_ttl_table_without_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let calls = dir.path().join("calls.log");
    let config_for = |get_tasks_ttl: &str| {
        format!(
            "[servers.demo]\ncommand = {exe}\nargs = [\"demo-server\", \"--calls-log\", {log}]\n\
             [cache]\ndefault_ttl = \"10m\"\n[cache.ttl.demo]\nget_tasks = {get_tasks_ttl}\n",
            exe = toml_string(bridge_exe()),
            log = toml_string(&calls.display().to_string()),
        )
    };
    let config_path = dir.path().join("bridge.toml");
    std::fs::write(&config_path, config_for("\"10m\""))?;
    let bridge = start_bridge_with_file(dir, config_path.clone(), &[])?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    session.call_tool(json!(1), "get_tasks", json!({})).await?;
    session.call_tool(json!(2), "get_tasks", json!({})).await?;
    assert_eq!(
        count_calls(&calls, "get_tasks"),
        1,
        "cached under the first table"
    );

    // Publish the new version the way the docs say: write aside, then rename over.
    let staged = config_path.with_extension("toml.new");
    std::fs::write(&staged, config_for("0"))?;
    std::fs::rename(&staged, &config_path)?;
    let reloaded = bridge.logged("reloaded the cache's TTL table").await;
    assert!(reloaded, "no reload logged:\n{}", bridge.log_text());

    session.call_tool(json!(3), "get_tasks", json!({})).await?;
    session.call_tool(json!(4), "get_tasks", json!({})).await?;
    assert_eq!(
        count_calls(&calls, "get_tasks"),
        3,
        "get_tasks = 0 now means never cached"
    );

    // An invalid edit is refused and the running table stays.
    std::fs::write(&staged, "[cache]\ndefault_tll = \"1s\"\n")?;
    std::fs::rename(&staged, &config_path)?;
    let refused = bridge.logged("default_tll").await;
    assert!(
        refused,
        "the invalid file was not reported:\n{}",
        bridge.log_text()
    );
    session.call_tool(json!(5), "get_tasks", json!({})).await?;
    assert_eq!(
        count_calls(&calls, "get_tasks"),
        4,
        "the last valid table still applies"
    );
    Ok(())
}
