//! The disk cache backend (`[cache] backend = "disk"`) through the real binary: a restart
//! on the same file answers from the cache; a write's invalidation survives `kill -9` right
//! after the write's answer (the entry it dropped never comes back, while an entry it did
//! not touch does); a corrupt file is set aside and the bridge serves. Backend calls are
//! counted on the server side (the demo server's `--calls-log`), hits and misses by
//! `/admin/cache/stats`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::support::{Bridge, RawSession, SETTLE, count_calls, demo_server_toml, start_bridge};

/// How long a SIGTERM'd bridge may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One directory that outlives the bridges started on it: the cache file and the demo
/// server's calls log.
struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Result<Run> {
        Ok(Run {
            dir: tempfile::tempdir()?,
        })
    }

    fn cache_file(&self) -> PathBuf {
        self.dir.path().join("state/cache.redb")
    }

    fn calls_log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// The config every bridge of the run uses: the demo server (one process) and the disk
    /// cache with the seed's TTLs and its rule for `create_task`, which drops `get_tasks`
    /// and `get_today_metrics` but not `get_clients`.
    fn config(&self) -> String {
        let calls = self.calls_log().display().to_string();
        let server = demo_server_toml("demo", &["--calls-log", &calls], "max_connections = 1");
        let path =
            serde_json::to_string(&self.cache_file().display().to_string()).unwrap_or_default();
        format!(
            r#"{server}
[cache]
enabled = true
backend = "disk"
path = {path}

[cache.ttl.demo]
get_clients = "5m"
get_tasks = "5m"
get_today_metrics = "5m"
create_task = 0

[[cache.invalidate]]
server = "demo"
on = "create_task"
tools = ["get_tasks", "get_today_metrics"]
"#
        )
    }

    async fn start(&self) -> Result<Bridge> {
        let bridge = start_bridge(&self.config())?;
        bridge.wait_ready().await?;
        Ok(bridge)
    }

    /// How many `tools/call` of `tool` the demo servers of this run received.
    fn calls(&self, tool: &str) -> usize {
        count_calls(&self.calls_log(), tool)
    }
}

/// `/admin/cache/stats`, which a bridge with its cache on always has.
async fn stats(bridge: &Bridge) -> Result<Value> {
    bridge
        .cache_stats()
        .await?
        .context("the cache is on, so /admin/cache/stats answers")
}

fn counter(stats: &Value, field: &str) -> u64 {
    stats[field].as_u64().unwrap_or(u64::MAX)
}

/// A `tools/call` on a new session, returning its `result`.
async fn call(bridge: &Bridge, tool: &str, arguments: Value) -> Result<Value> {
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let response = session.call_tool(json!(1), tool, arguments).await?;
    response
        .get("result")
        .cloned()
        .with_context(|| format!("{tool}: no result in {response}"))
}

/// SIGKILLs the bridge and waits for it to be gone: no shutdown code runs.
fn kill_9(mut bridge: Bridge) -> Result<()> {
    bridge.signal(libc::SIGKILL);
    let status = bridge.wait_exit(SETTLE)?;
    ensure!(
        !status.success(),
        "a SIGKILLed bridge does not exit cleanly: {status}"
    );
    Ok(())
}

#[tokio::test]
async fn a_restart_on_the_same_file_answers_from_the_cache() -> Result<()> {
    let run = Run::new()?;
    let bridge = run.start().await?;
    let first = call(&bridge, "get_tasks", json!({})).await?;
    let again = call(&bridge, "get_tasks", json!({})).await?;
    ensure!(first == again, "a repeated read changed: {first} / {again}");
    ensure!(run.calls("get_tasks") == 1, "the second read was a hit");
    let status = bridge.stop(STOP_TIMEOUT).await?;
    ensure!(
        status.success(),
        "SIGTERM stops the bridge cleanly: {status}"
    );

    let bridge = run.start().await?;
    let before = stats(&bridge).await?;
    ensure!(
        before["backend"] == "disk" && before["disk"]["loaded_entries"] == 1,
        "the restart loaded the entry: {before}"
    );
    ensure!(
        before["disk"]["path"] == run.cache_file().display().to_string(),
        "{before}"
    );
    let after_restart = call(&bridge, "get_tasks", json!({})).await?;
    ensure!(
        after_restart == first,
        "the cached answer came back: {after_restart} / {first}"
    );
    ensure!(
        run.calls("get_tasks") == 1,
        "the restarted bridge answered without its backend ({} get_tasks calls)",
        run.calls("get_tasks")
    );
    let after = stats(&bridge).await?;
    ensure!(
        counter(&after, "hits") == 1 && counter(&after, "misses") == 0,
        "one hit, no miss: {after}"
    );
    Ok(())
}

#[tokio::test]
async fn a_write_answered_before_kill_9_is_never_undone_by_the_restart() -> Result<()> {
    let run = Run::new()?;
    let bridge = run.start().await?;
    call(&bridge, "get_tasks", json!({})).await?;
    let clients = call(&bridge, "get_clients", json!({})).await?;
    call(
        &bridge,
        "create_task",
        json!({"title": "written before kill -9"}),
    )
    .await?;
    // Right after the write's answer: no shutdown, no flush, nothing but what the write
    // made durable before answering.
    kill_9(bridge)?;
    ensure!(
        (
            run.calls("get_tasks"),
            run.calls("get_clients"),
            run.calls("create_task")
        ) == (1, 1, 1),
        "one backend call each before the kill"
    );

    let bridge = run.start().await?;
    let loaded = stats(&bridge).await?;
    ensure!(
        loaded["disk"]["loaded_entries"] == 1,
        "only get_clients survived the write's invalidation: {loaded}"
    );
    // What the write did not touch is still served from the file: the file survived the
    // kill, so a miss below is the invalidation's doing.
    let clients_again = call(&bridge, "get_clients", json!({})).await?;
    ensure!(clients_again == clients, "{clients_again} / {clients}");
    ensure!(run.calls("get_clients") == 1, "get_clients was a hit");
    // What it dropped goes to the backend again.
    let tasks = call(&bridge, "get_tasks", json!({})).await?;
    ensure!(
        run.calls("get_tasks") == 2,
        "get_tasks after the restart reached the backend ({} calls): {tasks}",
        run.calls("get_tasks")
    );
    let after = stats(&bridge).await?;
    ensure!(
        counter(&after, "hits") == 1 && counter(&after, "misses") == 1,
        "one hit (get_clients), one miss (get_tasks): {after}"
    );
    Ok(())
}

/// Files in `dir` whose names start with `prefix`.
fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.file_name()
                        .and_then(|name| name.to_str())
                        .is_some_and(|name| name.starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_corrupt_file_is_set_aside_and_the_bridge_serves() -> Result<()> {
    let run = Run::new()?;
    let file = run.cache_file();
    let dir = file.parent().context("the cache file has a directory")?;
    std::fs::create_dir_all(dir)?;
    let garbage = b"not a cache file".repeat(1000);
    std::fs::write(&file, &garbage)?;

    let bridge = run.start().await?;
    let aside = files_starting(dir, "cache.redb.corrupt-");
    ensure!(aside.len() == 1, "one file set aside: {aside:?}");
    ensure!(
        std::fs::read(&aside[0])? == garbage,
        "the set-aside file is the corrupt one, untouched"
    );
    ensure!(
        bridge.logged("renamed to").await && bridge.logged("empty cache").await,
        "one log line says what happened: {}",
        bridge.log_tail(20)
    );
    let answer = call(&bridge, "get_tasks", json!({})).await?;
    call(&bridge, "get_tasks", json!({})).await?;
    ensure!(run.calls("get_tasks") == 1, "the new file caches: {answer}");
    let stats = stats(&bridge).await?;
    ensure!(
        stats["disk"]["set_aside"] == aside[0].display().to_string(),
        "{stats}"
    );
    Ok(())
}

#[tokio::test]
async fn a_cache_directory_the_bridge_cannot_create_stops_the_start() -> Result<()> {
    let run = Run::new()?;
    // A regular file where the cache's directory should be.
    std::fs::write(run.dir.path().join("state"), b"")?;
    let mut bridge = start_bridge(&run.config())?;
    let status = bridge.wait_exit(SETTLE)?;
    ensure!(!status.success(), "the bridge refused to start: {status}");
    ensure!(
        bridge.logged("cannot be created or written to").await,
        "the log says why: {}",
        bridge.log_tail(20)
    );
    Ok(())
}
