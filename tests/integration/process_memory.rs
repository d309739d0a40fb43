//! Backend memory, as the seed guide asks: each backend's process tree's resident memory
//! and CPU are read from `/proc` into `/admin/stats` and the metrics; a process whose tree
//! stays past `max_process_memory` is drained and replaced without losing a call; and a
//! limit below what the server needs at start replaces nothing (a new process would be as
//! large) and says so, instead of replacing processes forever.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::support::{Bridge, RawSession, demo_server_toml, metric, poll_until, start_bridge};

/// The limit of the leak test, and what each call makes the demo server keep.
const LIMIT_MIB: u64 = 64;
const LEAK_PER_CALL: &str = "2MiB";
const MIB: f64 = 1_048_576.0;

async fn memory_recycles(bridge: &Bridge) -> f64 {
    metric(
        bridge,
        "mcp_bridge_pool_memory_recycles_total",
        &["server=\"demo\""],
    )
    .await
    .unwrap_or(0.0)
}

/// Each listed process's pid and sampled resident bytes.
fn processes(stats: &Value) -> Vec<(u64, u64)> {
    stats["processes"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    (
                        p["pid"].as_u64().unwrap_or(0),
                        p["resident_bytes"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_process_is_replaced_under_concurrent_calls_without_losing_one() -> Result<()> {
    let bridge = start_bridge(&format!(
        "{}\n[cache]\nenabled = false\n",
        demo_server_toml(
            "demo",
            &["--leak-per-call", LEAK_PER_CALL],
            &format!(
                "min_connections = 1\nmax_connections = 2\nmax_process_memory = \"{LIMIT_MIB}MiB\""
            )
        )
    ))?;
    bridge.wait_ready().await?;
    // The first process is sampled before any call: well under the limit, so what follows
    // is the leak's doing, not a limit below the server's size.
    let first = poll_until(
        Duration::from_secs(20),
        async || processes(&bridge.server_stats("demo").await.unwrap_or_default()),
        |list| list.iter().any(|(_, bytes)| *bytes > 0),
    )
    .await;
    let Some(&(_, baseline)) = first.iter().find(|(_, bytes)| *bytes > 0) else {
        anyhow::bail!("the first process's memory was never sampled: {first:?}");
    };
    let first_pids: Vec<u64> = first.iter().map(|(pid, _)| *pid).collect();
    ensure!(
        (baseline as f64) < (LIMIT_MIB as f64 - 16.0) * MIB,
        "the demo server alone uses {baseline} bytes, too close to the {LIMIT_MIB} MiB limit"
    );
    // Four clients call at once, slow calls among them, so processes drain with calls in
    // flight; every call must be answered.
    let url = bridge.url("/mcp/demo");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut clients = Vec::new();
    for client in 0..4u32 {
        let url = url.clone();
        let bridge_url = bridge.url("/metrics");
        clients.push(tokio::spawn(async move {
            let session = RawSession::open(&url).await?;
            let mut calls = 0u32;
            loop {
                let metrics = tokio::time::timeout(Duration::from_secs(30), async {
                    reqwest::get(&bridge_url).await?.text().await
                })
                .await??;
                let done = metrics
                    .lines()
                    .any(|line| {
                        line.starts_with("mcp_bridge_pool_memory_recycles_total{server=\"demo\"}")
                            && !line.ends_with(" 0")
                    });
                if done || tokio::time::Instant::now() > deadline {
                    return anyhow::Ok(calls);
                }
                calls += 1;
                let (tool, arguments) = if client == 0 {
                    ("debug_sleep", json!({ "ms": 300 }))
                } else {
                    ("get_today_metrics", json!({}))
                };
                let response = session
                    .call_tool(json!(calls), tool, arguments)
                    .await?;
                ensure!(
                    response.get("result").is_some(),
                    "client {client}'s call {calls} ({tool}) failed while processes were recycled: {response}"
                );
            }
        }));
    }
    let mut calls = 0;
    for client in clients {
        calls += client.await??;
    }
    ensure!(
        memory_recycles(&bridge).await >= 1.0,
        "no process was recycled for memory after {calls} calls"
    );
    // A process that served before the calls leaked its way out: drained and gone.
    let gone = |list: &Vec<(u64, u64)>| {
        first_pids
            .iter()
            .any(|pid| !list.iter().any(|(p, _)| p == pid))
    };
    let after = poll_until(
        Duration::from_secs(30),
        async || processes(&bridge.server_stats("demo").await.unwrap_or_default()),
        gone,
    )
    .await;
    ensure!(
        gone(&after),
        "every process from before the calls still serves: {first_pids:?} in {after:?}"
    );
    // With the calls over, the server's gauge is the sum of its processes' samples: what
    // recycled processes held was taken out, nothing went negative.
    let (gauge, listed) = poll_until(
        Duration::from_secs(20),
        async || {
            let gauge = metric(
                &bridge,
                "mcp_bridge_backend_resident_bytes",
                &["server=\"demo\""],
            )
            .await
            .unwrap_or(-1.0);
            let stats = bridge.server_stats("demo").await.unwrap_or_default();
            let listed: u64 = processes(&stats).iter().map(|(_, bytes)| bytes).sum();
            (gauge, listed)
        },
        |(gauge, listed)| *gauge > 0.0 && (*gauge - *listed as f64).abs() < 1.0,
    )
    .await;
    ensure!(
        gauge > 0.0 && (gauge - listed as f64).abs() < 1.0,
        "the server's resident gauge ({gauge}) is not the sum of its processes' ({listed})"
    );
    let cpu = metric(
        &bridge,
        "mcp_bridge_backend_cpu_seconds_total",
        &["server=\"demo\""],
    )
    .await?;
    ensure!(cpu > 0.0, "the server's CPU time was not counted: {cpu}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_below_the_servers_size_at_start_replaces_nothing_and_says_so() -> Result<()> {
    // Every demo process is larger than 1 MiB from its start: replacing it would only
    // start another as large, every few seconds, for as long as the bridge runs.
    let bridge = start_bridge(&format!(
        "{}\n[cache]\nenabled = false\n",
        demo_server_toml(
            "demo",
            &[],
            "min_connections = 1\nmax_connections = 2\nmax_process_memory = \"1MiB\""
        )
    ))?;
    bridge.wait_ready().await?;
    let warned = poll_until(
        Duration::from_secs(60),
        async || {
            bridge
                .logged("past max_process_memory as soon as it starts")
                .await
        },
        |logged| *logged,
    )
    .await;
    ensure!(
        warned && bridge.log_text().contains("raise max_process_memory"),
        "no warning that the limit is below the server's size; log:\n{}",
        bridge.log_tail(40)
    );
    // Three samples over the limit (about three seconds) would recycle a process that
    // grew past it; this one is left alone.
    let recycles = poll_until(
        Duration::from_secs(8),
        async || memory_recycles(&bridge).await,
        |recycles| *recycles > 0.0,
    )
    .await;
    ensure!(
        recycles == 0.0,
        "{recycles} memory recycles of a process that never grew"
    );
    ensure!(
        bridge.log_text().matches("as soon as it starts").count() == 1,
        "the warning is repeated"
    );
    // The pool serves as before.
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let response = session
        .call_tool(json!(1), "get_today_metrics", json!({}))
        .await?;
    ensure!(response.get("result").is_some(), "{response}");
    Ok(())
}
