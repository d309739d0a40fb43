//! Hot reload in a running bridge: a plugin file replaced 100 times by atomic rename
//! while clients call continuously (no failed call, each call decided by exactly one
//! generation, the last file serving at the end), and 1,000 reloads without memory
//! growth.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use parking_lot::Mutex;
use serde_json::json;

use crate::plugins::{PluginBridge, call};
use crate::support::{publish_plugin, rss_kib};

/// The TTLs the two builds of `reload-probe` give every read.
const V1_TTL_MS: u64 = 111_000;
const V2_TTL_MS: u64 = 222_000;

/// What one call under load saw.
struct Seen {
    generation: Option<u64>,
    ttl_ms: Option<u64>,
    failure: Option<String>,
}

/// Waits until the probe plugin serves at `generation`, asking with real calls.
async fn wait_for_generation(demo: &PluginBridge, generation: u64) -> Result<()> {
    let session = demo.session().await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut id = 0;
    loop {
        id += 1;
        let answer = call(&session, id, "get_tasks", json!({"probe": id})).await?;
        if answer.field("generation") >= Some(generation) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "generation {generation} never served: {:?}",
            answer.cache
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_plugin_replaced_100_times_under_load_drops_no_call() -> Result<()> {
    let demo = PluginBridge::start(
        &[(plugin_artifacts::RELOAD_PROBE_V1, "probe.wasm")],
        "watch_debounce = \"20ms\"\n",
        None,
    )
    .await?;
    let demo = Arc::new(demo);
    let versions = [
        Path::new(plugin_artifacts::RELOAD_PROBE_V1),
        Path::new(plugin_artifacts::RELOAD_PROBE_V2),
    ];
    let base = demo.plugin("probe").await?["generation"]
        .as_u64()
        .context("no generation")?;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let mut clients = Vec::new();
    for client in 0..2u64 {
        let (demo, stop, seen) = (demo.clone(), stop.clone(), seen.clone());
        clients.push(tokio::spawn(async move {
            let session = demo.session().await?;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Distinct arguments make every call a miss decided by the policy.
                let arguments = json!({"client": client, "n": n});
                let record = match call(&session, n, "get_tasks", arguments).await {
                    Ok(answer) => Seen {
                        generation: answer.field("generation"),
                        ttl_ms: answer.field("ttl-ms"),
                        failure: answer
                            .ensure_success("get_tasks")
                            .err()
                            .map(|e| e.to_string()),
                    },
                    Err(error) => Seen {
                        generation: None,
                        ttl_ms: None,
                        failure: Some(format!("{error:#}")),
                    },
                };
                seen.lock().push(record);
            }
            anyhow::Ok(())
        }));
    }

    let mut swap_times = Vec::new();
    for k in 1..=100u64 {
        let source = &versions[(k % 2) as usize];
        let renamed = Instant::now();
        publish_plugin(source, &demo.plugins, "probe.wasm")?;
        wait_for_generation(&demo, base + k).await?;
        swap_times.push(renamed.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await??;
    }

    let seen = std::mem::take(&mut *seen.lock());
    let failures: Vec<&String> = seen.iter().filter_map(|s| s.failure.as_ref()).collect();
    ensure!(
        failures.is_empty(),
        "{} of {} calls failed: {:?}",
        failures.len(),
        seen.len(),
        &failures[..failures.len().min(3)]
    );
    ensure!(
        seen.len() >= 200,
        "only {} calls ran during the reloads",
        seen.len()
    );
    for s in seen.iter() {
        let generation = s.generation.context("a call without a generation")?;
        ensure!(
            (base..=base + 100).contains(&generation),
            "generation {generation} out of range"
        );
        let expected = if (generation - base) % 2 == 0 {
            V1_TTL_MS
        } else {
            V2_TTL_MS
        };
        ensure!(
            s.ttl_ms == Some(expected),
            "a call decided at generation {generation} got TTL {:?}, that generation's plugin gives {expected}",
            s.ttl_ms
        );
    }
    let admin = demo.admin().await?;
    ensure!(admin["generation"] == base + 100, "{admin}");
    let probe = demo.plugin("probe").await?;
    let last = std::fs::read(versions[0])?;
    ensure!(
        probe["hash"] == mcp_bridge::plugin::engine::hex_sha256(&last),
        "the serving version is not the last file published: {probe}"
    );

    swap_times.sort();
    eprintln!(
        "rename to new generation serving over 100 reloads: p50 {:?}, max {:?}; {} calls under load, 0 failed",
        swap_times[swap_times.len() / 2],
        swap_times[swap_times.len() - 1],
        seen.len()
    );
    Ok(())
}

/// RSS may grow this much between the 100th and the 1,000th reload: allocator noise
/// and lazily touched pages, far below what a leaked generation (instances, compiled
/// code, a store per binding: over a megabyte each) would add over 900 reloads.
const RSS_GROWTH_BOUND_KIB: u64 = 8 * 1024;

#[tokio::test]
async fn a_thousand_reloads_do_not_grow_memory() -> Result<()> {
    let demo = PluginBridge::start(
        &[(plugin_artifacts::RELOAD_PROBE_V1, "probe.wasm")],
        "watch_debounce = \"1ms\"\n",
        None,
    )
    .await?;
    let versions = [
        Path::new(plugin_artifacts::RELOAD_PROBE_V1),
        Path::new(plugin_artifacts::RELOAD_PROBE_V2),
    ];
    let base = demo.plugin("probe").await?["generation"]
        .as_u64()
        .context("no generation")?;
    let pid = demo.bridge.pid();
    let mut warm = None;
    for k in 1..=1000u64 {
        publish_plugin(versions[(k % 2) as usize], &demo.plugins, "probe.wasm")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let admin = demo.admin().await?;
            if admin["generation"].as_u64() >= Some(base + k) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "reload {k} never landed: {admin}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if k == 100 {
            warm = rss_kib(pid);
        }
    }
    let warm = warm.context("no RSS reading")?;
    let end = rss_kib(pid).context("no RSS reading")?;
    eprintln!("bridge RSS after 100 reloads: {warm} KiB; after 1,000: {end} KiB");
    ensure!(
        end <= warm + RSS_GROWTH_BOUND_KIB,
        "RSS grew from {warm} KiB to {end} KiB over 900 reloads (bound {RSS_GROWTH_BOUND_KIB} KiB)"
    );
    // The bridge still answers through the last generation.
    let session = demo.session().await?;
    let answer = call(&session, 1, "get_tasks", json!({"after": "reloads"})).await?;
    answer.ensure_success("get_tasks")?;
    ensure!(
        answer.field("generation") == Some(base + 1000),
        "{:?}",
        answer.cache
    );
    Ok(())
}
