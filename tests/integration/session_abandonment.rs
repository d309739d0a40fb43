//! Sessions that cost nothing when abandoned: 10,000 sessions opened and never ended
//! (as 99% of real clients do) are reaped after `session_idle_timeout`, and a second wave
//! reuses the memory the first freed, so resident memory stays flat. Prints the bytes each idle session held and
//! RSS before, at the peak and after reaping (the issue asks for these numbers).

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::support::{demo_server_toml, eventually, http, metric, rss_kib, start_bridge};

/// Sessions opened and abandoned.
const SESSIONS: usize = 10_000;
/// Opened this many at a time (a few clients' worth of connections).
const CONCURRENCY: usize = 16;

#[tokio::test]
async fn ten_thousand_abandoned_sessions_are_reaped_and_memory_returns() -> Result<()> {
    let demo = demo_server_toml("demo", &[], "");
    let bridge = start_bridge(&format!(
        "[http]\nsession_idle_timeout = \"4s\"\nmax_sessions = {SESSIONS}\n\
         max_sessions_per_principal = {SESSIONS}\n\n{demo}"
    ))?;
    bridge.wait_ready().await?;
    let url = bridge.url("/mcp/demo");
    let client = http().clone();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "abandoner", "version": "1"}}});
    // Warm the paths a session takes once, so the baseline includes what every session
    // shares (the first session's allocations are not per session).
    open_sessions(&client, &url, &init, 64).await?;
    let gone = eventually(Duration::from_secs(30), async || {
        active_sessions(&bridge)
            .await
            .is_ok_and(|active| active == 0.0)
    })
    .await;
    anyhow::ensure!(gone, "the warm-up sessions were never reaped");
    let before = rss_kib(bridge.pid()).context("RSS before")?;

    open_sessions(&client, &url, &init, SESSIONS).await?;
    let held = active_sessions(&bridge).await?;
    let peak = rss_kib(bridge.pid()).context("RSS at the peak")?;
    assert!(
        held >= (SESSIONS as f64) * 0.9,
        "only {held} of {SESSIONS} sessions were held at the peak"
    );

    // Nobody uses them again: after the idle timeout every one is reaped.
    let reaped = eventually(Duration::from_secs(60), async || {
        active_sessions(&bridge)
            .await
            .is_ok_and(|active| active == 0.0)
    })
    .await;
    assert!(reaped, "abandoned sessions were not reaped within 60 s");
    let closed = metric(
        &bridge,
        "mcp_bridge_sessions_closed_total",
        &["reason=\"idle\""],
    )
    .await?;
    assert!(
        closed >= SESSIONS as f64,
        "only {closed} sessions were closed as idle"
    );
    // The allocator keeps freed pages mapped, so RSS does not drop at once; what matters is
    // that abandoned sessions stop costing memory: a second wave of as many sessions reuses
    // what the first freed, and RSS stays flat instead of growing again.
    let after = rss_kib(bridge.pid()).context("RSS after reaping")?;
    let grown = peak.saturating_sub(before);
    let bytes_per_session = grown * 1024 / SESSIONS as u64;
    open_sessions(&client, &url, &init, SESSIONS).await?;
    let second_peak = rss_kib(bridge.pid()).context("RSS at the second peak")?;
    let reaped_again = eventually(Duration::from_secs(60), async || {
        active_sessions(&bridge)
            .await
            .is_ok_and(|active| active == 0.0)
    })
    .await;
    assert!(reaped_again, "the second wave was not reaped within 60 s");
    let after_second = rss_kib(bridge.pid()).context("RSS after the second reaping")?;
    println!(
        "abandoned sessions: 2 waves of {SESSIONS}; RSS before {before} KiB, first peak {peak} KiB, \
         after reaping {after} KiB, second peak {second_peak} KiB, after reaping again {after_second} KiB; \
         {bytes_per_session} bytes per idle session"
    );
    assert!(
        second_peak <= peak + grown / 4 + 2048,
        "a second wave of abandoned sessions grew RSS again: first peak {peak} KiB, second {second_peak} KiB"
    );
    assert!(
        bytes_per_session < 16 * 1024,
        "an idle session holds {bytes_per_session} bytes"
    );
    Ok(())
}

/// Opens `count` sessions and drops their tokens, `CONCURRENCY` at a time.
async fn open_sessions(
    client: &reqwest::Client,
    url: &str,
    init: &serde_json::Value,
    count: usize,
) -> Result<()> {
    use futures_util::StreamExt;
    let opened = futures_util::stream::iter(0..count)
        .map(|_| async move {
            let response = client
                .post(url)
                .header("accept", "application/json, text/event-stream")
                .json(init)
                .send()
                .await?;
            anyhow::ensure!(
                response.status() == 200 && response.headers().contains_key("mcp-session-id"),
                "initialize answered {}",
                response.status()
            );
            Ok(())
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<Result<()>>>()
        .await;
    opened.into_iter().collect()
}

async fn active_sessions(bridge: &crate::support::Bridge) -> Result<f64> {
    metric(bridge, "mcp_bridge_sessions_active", &[]).await
}
