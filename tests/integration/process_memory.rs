//! Backend memory, as the seed guide asks: each process's resident memory and CPU are read
//! from `/proc` into `/admin/stats` and the metrics, and a process past
//! `max_process_memory` is drained and replaced without losing a call.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::json;

use crate::support::{RawSession, demo_server_toml, metric, poll_until, start_bridge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_past_max_process_memory_is_replaced_without_losing_a_call() -> Result<()> {
    // Every demo process is larger than 1 MiB, so each is recycled in turn.
    let bridge = start_bridge(&format!(
        "{}\n[cache]\nenabled = false\n",
        demo_server_toml(
            "demo",
            &[],
            "min_connections = 1\nmax_connections = 2\nmax_process_memory = \"1MiB\""
        )
    ))?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let recycles = async || {
        metric(
            &bridge,
            "mcp_bridge_pool_memory_recycles_total",
            &["server=\"demo\""],
        )
        .await
        .unwrap_or(0.0)
    };
    let mut calls = 0;
    // Calls keep going while processes are recycled under them; every one is answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while recycles().await < 2.0 && tokio::time::Instant::now() < deadline {
        calls += 1;
        let response = session
            .call_tool(json!(calls), "get_today_metrics", json!({}))
            .await?;
        ensure!(
            response.get("result").is_some(),
            "call {calls} failed while processes were recycled: {response}"
        );
    }
    ensure!(
        recycles().await >= 2.0,
        "no process was recycled for memory after {calls} calls"
    );
    // The server's resident memory is in the metrics, and each process's in the stats.
    let resident = poll_until(
        Duration::from_secs(10),
        async || {
            metric(
                &bridge,
                "mcp_bridge_backend_resident_bytes",
                &["server=\"demo\""],
            )
            .await
            .unwrap_or(0.0)
        },
        |bytes| *bytes > 1_048_576.0,
    )
    .await;
    ensure!(
        resident > 1_048_576.0,
        "resident memory not reported: {resident}"
    );
    let stats = bridge.server_stats("demo").await?;
    let sampled = stats["processes"].as_array().is_some_and(|processes| {
        processes
            .iter()
            .any(|p| p["resident_bytes"].as_u64() > Some(0))
    });
    ensure!(sampled, "no process shows its resident memory: {stats}");
    Ok(())
}
