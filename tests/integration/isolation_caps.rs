//! Isolation under its caps: 50 principals on 8 processes with `/proc` sampled throughout,
//! a call refused naming the cap when every process is busy, and an `initialize` at the cap
//! served by evicting an idle process. The helpers are the isolation tests' own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::auth::Session;
use crate::isolation::*;
use crate::support::{SETTLE, demo_server_toml, metric, poll_until};

/// Samples `/proc` every ~20 ms for this test's demo-server processes (argv[1] is
/// `demo-server` and the marker is among the arguments; their supervisors, `mcp-bridge
/// __supervise ...`, are counted apart) and keeps the largest counts seen.
struct ProcessSampler {
    stop: Arc<AtomicBool>,
    max_servers: Arc<AtomicUsize>,
    max_supervisors: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How many of this test's backend processes and supervisors run now.
fn count_marked(marker: &str) -> (usize, usize) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (0, 0);
    };
    // One pass over /proc is not an instant: a process that exits during the pass and its
    // replacement, started after, could both be seen. So the pass collects candidates, and
    // only those still alive once it has ended are counted: they all live at that moment.
    let mut seen: Vec<(u32, &'static str)> = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(kind) = marked_kind(pid, marker) {
            seen.push((pid, kind));
        }
    }
    let alive = seen
        .into_iter()
        .filter(|(pid, kind)| marked_kind(*pid, marker) == Some(*kind));
    let (mut servers, mut supervisors) = (0, 0);
    for (_, kind) in alive {
        match kind {
            "server" => servers += 1,
            _ => supervisors += 1,
        }
    }
    (servers, supervisors)
}

/// Whether `pid` is one of this test's backends ("server") or their supervisors.
fn marked_kind(pid: u32, marker: &str) -> Option<&'static str> {
    // A zombie's cmdline is empty, so an exited process is never counted.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
    if !args.contains(&marker.as_bytes()) {
        return None;
    }
    match args.get(1).copied() {
        Some(b"demo-server") => Some("server"),
        // A supervisor's child between its fork and its exec still shows the supervisor's
        // command line: it is the server to be, not another supervisor.
        Some(b"__supervise") if parent_is_supervisor(pid, marker) => Some("server"),
        Some(b"__supervise") => Some("supervisor"),
        _ => None,
    }
}

fn parent_is_supervisor(pid: u32, marker: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name may hold spaces: the fields after it start past the last ')'.
    let parent = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|ppid| ppid.parse::<u32>().ok());
    let Some(parent) = parent else {
        return false;
    };
    let Ok(cmdline) = std::fs::read(format!("/proc/{parent}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
    args.contains(&marker.as_bytes()) && args.get(1).copied() == Some(b"__supervise".as_slice())
}

impl ProcessSampler {
    fn start(marker: &str) -> ProcessSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max_servers = Arc::new(AtomicUsize::new(0));
        let max_supervisors = Arc::new(AtomicUsize::new(0));
        let samples = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, max_servers, max_supervisors, samples) = (
                stop.clone(),
                max_servers.clone(),
                max_supervisors.clone(),
                samples.clone(),
            );
            let marker = marker.to_owned();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let (servers, supervisors) = count_marked(&marker);
                    max_servers.fetch_max(servers, Ordering::AcqRel);
                    max_supervisors.fetch_max(supervisors, Ordering::AcqRel);
                    samples.fetch_add(1, Ordering::AcqRel);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        ProcessSampler {
            stop,
            max_servers,
            max_supervisors,
            samples,
            thread: Some(thread),
        }
    }

    /// Stops sampling: the most servers and supervisors seen at once, and how many samples.
    fn finish(mut self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        (
            self.max_servers.load(Ordering::Acquire),
            self.max_supervisors.load(Ordering::Acquire),
            self.samples.load(Ordering::Acquire),
        )
    }
}

impl Drop for ProcessSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// 50 principals on a server capped at 8 processes, in 3 rounds with 8 callers at a time:
/// every call is served (least recently used idle processes are evicted to make room), and
/// `/proc` never shows more than 8 of the server's processes. The callers are sessionless
/// (2026-07-28), so every process start is asked for by a call (see
/// `an_initialize_at_the_cap_evicts_an_idle_process_and_is_served` for `initialize`).
#[tokio::test]
async fn fifty_principals_share_eight_processes_without_losing_a_call() -> Result<()> {
    const PRINCIPALS: usize = 50;
    const ROUNDS: usize = 3;
    const AT_ONCE: usize = 8;
    const CAP: usize = 8;
    let marker = unique_marker("cap");
    let names: Vec<String> = (0..PRINCIPALS).map(|n| format!("p{n:02}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let server = demo_server_toml(
        SERVER,
        &["--name", &marker],
        &format!("isolation = \"principal\"\nmax_total_processes = {CAP}\nidle_timeout = \"10m\""),
    );
    let bridge = Arc::new(start(&format!("{server}\n{}", keys(&name_refs)), &[]).await?);
    let sampler = ProcessSampler::start(&marker);
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    let mut served = 0;
    for round in 0..ROUNDS {
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..AT_ONCE {
            let (bridge, next, names) = (bridge.clone(), next.clone(), names.clone());
            workers.spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::AcqRel);
                    let Some(name) = names.get(index) else {
                        return outcomes;
                    };
                    let outcome = sessionless_titles(&bridge, name).await;
                    outcomes
                        .push(outcome.map_err(|error| format!("round {round}, {name}: {error:#}")));
                }
            });
        }
        while let Some(joined) = workers.join_next().await {
            for outcome in joined? {
                match outcome {
                    Ok(_) => served += 1,
                    Err(error) => failures.push(error),
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let stats = server_stats(&bridge).await?;
    let (max_servers, max_supervisors, samples) = sampler.finish();
    let evictions = metric(
        &bridge,
        "mcp_bridge_pool_evictions_total",
        &[&format!("server=\"{SERVER}\"")],
    )
    .await?;
    println!(
        "isolation cap: {PRINCIPALS} principals x {ROUNDS} rounds, {AT_ONCE} at a time, \
         max_total_processes = {CAP}: {served} calls served, {} failed, in {:.1} s; \
         max demo-server processes seen in /proc = {max_servers} (supervisors {max_supervisors}), \
         {samples} samples; evictions = {evictions}",
        failures.len(),
        elapsed.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} calls failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(served, PRINCIPALS * ROUNDS);
    assert!(samples > 10, "the sampler ran only {samples} times");
    assert!(
        max_servers <= CAP,
        "{max_servers} demo-server processes ran at once, over max_total_processes = {CAP}"
    );
    assert!(
        max_supervisors <= CAP,
        "{max_supervisors} backend supervisors ran at once, over max_total_processes = {CAP}"
    );
    assert!(max_servers > 0, "the sampler never saw a backend process");
    assert!(evictions > 0.0, "no eviction was counted: {evictions}");
    assert_eq!(
        stats["evictions"].as_f64(),
        Some(evictions),
        "/admin/stats and /metrics disagree on evictions: {stats}"
    );
    let live = stats["live_processes"].as_u64().unwrap_or(u64::MAX);
    assert!(
        live <= CAP as u64,
        "/admin/stats: {live} live processes: {stats}"
    );
    Ok(())
}

/// At the cap with every process busy, a third principal's call waits `acquire_timeout` and
/// then fails with an error naming `max_total_processes`; the two busy calls are served.
#[tokio::test]
async fn a_call_at_the_cap_with_every_process_busy_names_the_cap() -> Result<()> {
    let marker = unique_marker("busy");
    let server = demo_server_toml(
        SERVER,
        &["--name", &marker],
        "isolation = \"principal\"\nmax_total_processes = 2\nacquire_timeout = \"1s\"\n\
         max_queue = 2\nidle_timeout = \"10m\"",
    );
    let bridge =
        Arc::new(start(&format!("{server}\n{}", keys(&["ann", "ben", "cat"])), &[]).await?);
    let sampler = ProcessSampler::start(&marker);
    // Ann's and ben's processes start first (so their own starts are not raced against
    // the 1 s acquire_timeout), then both are kept busy for 3 s.
    for principal in ["ann", "ben"] {
        sessionless_titles(&bridge, principal).await?;
    }
    let sleepers: Vec<_> = ["ann", "ben"]
        .into_iter()
        .map(|principal| {
            let bridge = bridge.clone();
            tokio::spawn(async move {
                sessionless_call(&bridge, principal, "debug_sleep", json!({ "ms": 3000 })).await
            })
        })
        .collect();
    let busy = poll_until(
        SETTLE,
        async || server_stats(&bridge).await.unwrap_or(Value::Null),
        |stats| {
            stats["groups"].as_array().is_some_and(|groups| {
                groups.len() == 2 && groups.iter().all(|group| group["inflight"] == 1)
            })
        },
    )
    .await;
    let in_flight = busy["groups"]
        .as_array()
        .is_some_and(|groups| groups.iter().all(|group| group["inflight"] == 1));
    assert!(
        in_flight,
        "ann's and ben's calls never were both in flight: {busy}"
    );

    let began = Instant::now();
    let refused = sessionless_call(&bridge, "cat", "debug_sleep", json!({ "ms": 3000 })).await?;
    let waited = began.elapsed();
    let message = failure_message(&refused)
        .with_context(|| format!("cat's call was served over a cap of 2: {refused}"))?;
    assert!(
        message.contains("max_total_processes"),
        "the refusal does not name the cap: {refused}"
    );
    // It queued for room (acquire_timeout, 1 s) rather than failing at once.
    assert!(
        waited >= Duration::from_millis(900),
        "cat's call failed after {waited:?}, without waiting acquire_timeout (1 s)"
    );
    for (principal, sleeper) in ["ann", "ben"].into_iter().zip(sleepers) {
        let response = sleeper.await??;
        assert!(
            failure_message(&response).is_none(),
            "{principal}'s busy call failed: {response}"
        );
    }
    let (max_servers, _, _) = sampler.finish();
    println!(
        "isolation busy: max_total_processes = 2, cat refused after {:.2} s, max demo-server \
         processes seen = {max_servers}",
        waited.as_secs_f64()
    );
    assert!(
        max_servers <= 2,
        "{max_servers} processes ran at once over a cap of 2"
    );
    Ok(())
}

/// `initialize` on a principal-isolated server starts the caller's group. At the cap, with
/// the other principals' processes idle, it must evict the least recently used one and be
/// served promptly (not wait out `connection_timeout` for a process nobody starts).
#[tokio::test]
async fn an_initialize_at_the_cap_evicts_an_idle_process_and_is_served() -> Result<()> {
    let marker = unique_marker("init");
    let server = demo_server_toml(
        SERVER,
        &["--name", &marker],
        "isolation = \"principal\"\nmax_total_processes = 2\nidle_timeout = \"10m\"\n\
         connection_timeout = \"30s\"",
    );
    let principals = ["ann", "ben", "cat"];
    let bridge = start(&format!("{server}\n{}", keys(&principals)), &[]).await?;
    let sampler = ProcessSampler::start(&marker);
    let mut sessions = Vec::new();
    for principal in principals {
        let began = Instant::now();
        let opened = tokio::time::timeout(
            Duration::from_secs(10),
            Session::open(&bridge.url(ENDPOINT), &key_of(principal)),
        )
        .await;
        let session = match opened {
            Ok(Ok(session)) => session,
            Ok(Err(error)) => anyhow::bail!(
                "initialize for {principal} (after {:.1} s) failed at the cap: {error:#}",
                began.elapsed().as_secs_f64()
            ),
            Err(_) => anyhow::bail!(
                "initialize for {principal} did not finish within 10 s at the cap; /admin/stats: {}",
                server_stats(&bridge).await.unwrap_or_default()
            ),
        };
        task_titles(&session).await?;
        sessions.push(session);
    }
    let (max_servers, _, _) = sampler.finish();
    assert!(
        max_servers <= 2,
        "{max_servers} processes ran at once over a cap of 2"
    );
    let evictions = metric(
        &bridge,
        "mcp_bridge_pool_evictions_total",
        &[&format!("server=\"{SERVER}\"")],
    )
    .await?;
    assert!(evictions >= 1.0, "no eviction was counted: {evictions}");
    Ok(())
}
