//! No orphans, for the whole process tree, on every ending: the bridge SIGKILLed, the
//! bridge SIGTERMed, a process recycled at `max_lifetime`, an idle process closed, and a
//! wrapper that crashes while its children live.
//!
//! The server is a shell wrapper, as `npx` or a Python launcher is: it starts two
//! grandchildren that ignore stdin EOF (one in its process group, one that left it
//! with `setsid`) and then the real demo server as its own child. Every process of the
//! tree carries a marker unique to the test in its environment, which is how the test
//! counts survivors (and ends them, whatever happens).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::support::{Bridge, RawSession, bridge_exe, eventually, start_bridge, toml_string};

/// The environment variable that marks the processes a test started.
const MARK: &str = "MCP_BRIDGE_ORPHAN_TEST";

/// How long the tree may take to disappear after an ending.
const GONE_DEADLINE: Duration = Duration::from_secs(10);

/// The wrapper: two grandchildren that never read stdin (one `setsid`), then the demo
/// server as a child (not `exec`), so the wrapper stays the server's parent.
const WRAPPER: &str = "setsid sleep 600 </dev/null >/dev/null 2>&1 & \
                       sleep 600 </dev/null >/dev/null 2>&1 & \
                       \"$0\" demo-server; exit 0";

/// A marker value no other test or run shares.
fn unique_mark(ending: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{ending}-{}-{nanos}", std::process::id())
}

/// A process carrying a mark: its pid and start time (so a reused pid is not counted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Marked {
    pid: u32,
    started: String,
}

/// The start time field of /proc/PID/stat, and whether the process is a zombie.
fn stat_of(pid: u32) -> Option<(String, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(19)?.to_string(), fields.first() == Some(&"Z")))
}

/// Live (not zombie) processes whose environment holds `MARK=mark`.
fn marked(mark: &str) -> HashSet<Marked> {
    let needle = format!("{MARK}={mark}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|byte| *byte == 0)
                    .any(|entry| entry == needle.as_bytes())
            })
        })
        .filter_map(|pid| {
            let (started, zombie) = stat_of(pid)?;
            (!zombie).then_some(Marked { pid, started })
        })
        .collect()
}

/// Which of `set` still run.
fn surviving(set: &HashSet<Marked>) -> Vec<Marked> {
    set.iter()
        .filter(|process| {
            stat_of(process.pid)
                .is_some_and(|(started, zombie)| started == process.started && !zombie)
        })
        .cloned()
        .collect()
}

/// Kills every process carrying the mark when the test ends, however it ends: only
/// processes this test started carry it.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for process in marked(&self.0) {
            // SAFETY: kill has no memory-safety preconditions; the pid carries this
            // test's unique mark, so the test started it.
            unsafe {
                libc::kill(process.pid as i32, libc::SIGCONT);
                libc::kill(process.pid as i32, libc::SIGKILL);
            }
        }
    }
}

fn wrapped_server_toml(mark: &str, pool: &str) -> String {
    format!(
        "[servers.wrapped]\ncommand = \"sh\"\nargs = [\"-c\", {script}, {exe}]\n\
         env = {{ {MARK} = {mark} }}\n{pool}\n",
        script = toml_string(WRAPPER),
        exe = toml_string(bridge_exe()),
        mark = toml_string(mark),
    )
}

/// Waits until one generation of the wrapped server runs completely (wrapper, demo
/// server, both sleepers) and returns its processes.
async fn one_generation(bridge: &Bridge, mark: &str) -> Result<HashSet<Marked>> {
    let complete = eventually(Duration::from_secs(15), async || {
        bridge
            .backend_pids("wrapped")
            .await
            .is_ok_and(|pids| pids.len() == 1)
            && marked(mark).len() >= 4
    })
    .await;
    ensure!(
        complete,
        "the wrapped server never fully started: marked {:?}; stats {}",
        marked(mark),
        bridge.server_stats("wrapped").await?
    );
    Ok(marked(mark))
}

/// Polls until none of `generation` runs, and returns how many still do at the end.
async fn survivors_after(generation: &HashSet<Marked>) -> usize {
    let deadline = Instant::now() + GONE_DEADLINE;
    loop {
        let left = surviving(generation).len();
        if left == 0 || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report(ending: &str, generation: &HashSet<Marked>, left: usize) {
    eprintln!(
        "orphans after {ending}: {left} of {} processes of the tree still running",
        generation.len()
    );
}

async fn host_ending(ending: &str, signal: i32) -> Result<()> {
    let mark = unique_mark(ending);
    let _cleanup = Cleanup(mark.clone());
    let mut bridge = start_bridge(&wrapped_server_toml(&mark, "min_connections = 1"))?;
    bridge.wait_ready().await?;
    let generation = one_generation(&bridge, &mark).await?;
    bridge.signal(signal);
    bridge.wait_exit(Duration::from_secs(15))?;
    let left = survivors_after(&generation).await;
    report(ending, &generation, left);
    ensure!(
        left == 0,
        "{left} processes outlived the bridge ({ending}): {:?}",
        surviving(&generation)
    );
    Ok(())
}

#[tokio::test]
async fn no_process_of_the_tree_outlives_a_sigkilled_bridge() -> Result<()> {
    host_ending("host-sigkill", libc::SIGKILL).await
}

#[tokio::test]
async fn no_process_of_the_tree_outlives_a_sigtermed_bridge() -> Result<()> {
    host_ending("host-sigterm", libc::SIGTERM).await
}

#[tokio::test]
async fn recycling_at_max_lifetime_leaves_no_process_of_the_old_tree() -> Result<()> {
    let mark = unique_mark("recycle");
    let _cleanup = Cleanup(mark.clone());
    let bridge = start_bridge(&wrapped_server_toml(
        &mark,
        "min_connections = 1\nmax_lifetime = \"3s\"",
    ))?;
    bridge.wait_ready().await?;
    let generation = one_generation(&bridge, &mark).await?;
    let first = bridge.backend_pids("wrapped").await?;
    let recycled = eventually(Duration::from_secs(20), async || {
        bridge
            .backend_pids("wrapped")
            .await
            .is_ok_and(|pids| !pids.is_empty() && pids != first)
    })
    .await;
    ensure!(recycled, "the process was never recycled");
    let left = survivors_after(&generation).await;
    report("recycle (max_lifetime)", &generation, left);
    ensure!(
        left == 0,
        "{left} processes of the recycled tree still run: {:?}",
        surviving(&generation)
    );
    Ok(())
}

#[tokio::test]
async fn closing_an_idle_process_leaves_no_process_of_its_tree() -> Result<()> {
    let mark = unique_mark("idle");
    let _cleanup = Cleanup(mark.clone());
    let bridge = start_bridge(&wrapped_server_toml(
        &mark,
        "min_connections = 0\nidle_timeout = \"1s\"",
    ))?;
    bridge.wait_ready().await?;
    // With min_connections = 0 a call starts the first process.
    let session = RawSession::open(&bridge.url("/mcp/wrapped")).await?;
    let answer = session
        .call_tool(json!(1), "get_tasks", json!({ "limit": 1 }))
        .await?;
    ensure!(answer.get("result").is_some(), "{answer}");
    let generation = one_generation(&bridge, &mark).await?;
    let closed = eventually(Duration::from_secs(15), async || {
        bridge
            .backend_pids("wrapped")
            .await
            .is_ok_and(|pids| pids.is_empty())
    })
    .await;
    ensure!(closed, "the idle process was never closed");
    let left = survivors_after(&generation).await;
    report("idle close", &generation, left);
    ensure!(
        left == 0,
        "{left} processes of the closed tree still run: {:?}",
        surviving(&generation)
    );
    Ok(())
}

#[tokio::test]
async fn a_crashed_wrapper_leaves_no_process_of_its_tree() -> Result<()> {
    let mark = unique_mark("wrapper-crash");
    let _cleanup = Cleanup(mark.clone());
    let bridge = start_bridge(&wrapped_server_toml(&mark, "min_connections = 1"))?;
    bridge.wait_ready().await?;
    let generation = one_generation(&bridge, &mark).await?;
    // The pid /admin/stats shows is the server command's own process: the wrapper.
    let wrapper = *bridge
        .backend_pids("wrapped")
        .await?
        .first()
        .context("no pid in /admin/stats")?;
    let cmdline = std::fs::read(format!("/proc/{wrapper}/cmdline"))?;
    ensure!(
        cmdline.starts_with(b"sh\0-c\0"),
        "/admin/stats shows pid {wrapper}, which is not the wrapper: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    // Its supervisor is shown too, and is the wrapper's parent.
    let stats = bridge.server_stats("wrapped").await?;
    let supervisor = stats
        .pointer("/processes/0/supervisor_pid")
        .and_then(serde_json::Value::as_u64)
        .with_context(|| format!("no supervisor_pid in {stats}"))?;
    let stat = std::fs::read_to_string(format!("/proc/{wrapper}/stat"))?;
    let parent = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .context("no parent in /proc/PID/stat")?;
    ensure!(
        parent == supervisor.to_string(),
        "the wrapper's parent is {parent}, not the supervisor {supervisor} that /admin/stats shows"
    );
    // SAFETY: kill has no memory-safety preconditions; the pid is the wrapper this
    // test's bridge started (it carries the test's mark).
    unsafe {
        libc::kill(wrapper as i32, libc::SIGKILL);
    }
    let left = survivors_after(&generation).await;
    report("wrapper crash", &generation, left);
    ensure!(
        left == 0,
        "{left} processes of the crashed wrapper's tree still run: {:?}",
        surviving(&generation)
    );
    // The pool replaces the server.
    let replaced = eventually(Duration::from_secs(15), async || {
        bridge
            .backend_pids("wrapped")
            .await
            .is_ok_and(|pids| pids.len() == 1 && pids[0] != wrapper)
    })
    .await;
    ensure!(replaced, "the crashed server was not replaced");
    Ok(())
}
