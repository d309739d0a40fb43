//! The lab predicts production: a live bridge with its cache on and a policy plugin
//! loaded is driven by `bench load` from a preset while it records; replaying the recorded
//! trace with the same plugin and config gives the hit ratio the bridge had (within one
//! percentage point) and the backend calls it made (within 2%).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use crate::lab::{run_bridge, trace_lines};
use crate::support::{
    demo_server_toml, poll_until, publish_plugin, start_bridge_with_file, toml_string,
};

/// Calls the load sends: enough for ratios to settle, few enough for a 2-core CI machine.
const CALLS: u64 = 4000;

#[tokio::test]
async fn a_replay_predicts_the_live_hit_ratio_and_backend_calls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins.d");
    std::fs::create_dir_all(&plugins)?;
    let plugin = Path::new(plugin_artifacts::CRUD_INVALIDATION);
    publish_plugin(plugin, &plugins, "crud-invalidation.wasm")?;
    let trace = dir.path().join("calls.jsonl");
    let config_path = dir.path().join("bridge.toml");
    // No TTL rows or invalidation rules: the plugin decides, as the replay will have it.
    std::fs::write(
        &config_path,
        format!(
            "{}\n[cache]\nenabled = true\ndefault_ttl = \"60s\"\n\n[plugins]\ndir = {}\n",
            demo_server_toml("demo", &[], "max_connections = 2"),
            toml_string(&plugins.display().to_string())
        ),
    )?;
    let trace_arg = trace.display().to_string();
    let bridge = start_bridge_with_file(
        tempfile::tempdir()?,
        config_path.clone(),
        &["--record", &trace_arg, "--record-arguments"],
    )?;
    bridge.wait_ready().await?;
    let url = bridge.url("/mcp/demo");
    let calls = CALLS.to_string();
    let (code, stdout, stderr) = run_bridge(&[
        "bench",
        "load",
        "--url",
        &url,
        "--workload",
        "seed-tasks",
        "--connections",
        "1",
        "--calls",
        &calls,
        "--require-success",
        "1.0",
    ])?;
    ensure!(code == 0, "bench load failed:\n{stdout}\n{stderr}");
    // The recorder writes on its own thread: wait until every answered call is a line.
    let recorded = poll_until(
        Duration::from_secs(30),
        async || trace_lines(&trace).len() as u64,
        |count| *count >= CALLS,
    )
    .await;
    ensure!(
        recorded >= CALLS,
        "only {recorded} of {CALLS} calls were recorded"
    );
    drop(bridge);
    let live = trace_lines(&trace);
    let reads: Vec<&Value> = live
        .iter()
        .filter(|line| line["access"] == "read")
        .collect();
    let live_hits = reads.iter().filter(|line| line["hit"] == true).count();
    let live_hit_ratio = live_hits as f64 / reads.len().max(1) as f64;
    let live_backend_calls = live.iter().filter(|line| line["hit"] != true).count();
    ensure!(
        live_hits > 0,
        "the live bridge never hit: the test shows nothing"
    );

    let out = dir.path().join("report");
    let policy = format!("crud-invalidation={}", plugin_artifacts::CRUD_INVALIDATION);
    let (code, _, stderr) = run_bridge(&[
        "bench",
        "policies",
        "--quiet",
        "--trace",
        &trace_arg,
        "--config",
        &config_path.display().to_string(),
        "--policy",
        &policy,
        "--sizes",
        "",
        "--ttl-scales",
        "",
        "--out",
        &out.display().to_string(),
    ])?;
    ensure!(code == 0, "bench policies failed: {stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    let replayed = report["policies"]
        .as_array()
        .and_then(|runs| runs.iter().find(|run| run["name"] == "crud-invalidation"))
        .context("no replayed policy")?["metrics"]
        .clone();
    let replay_hit_ratio = replayed["hit_ratio"].as_f64().unwrap_or(f64::NAN);
    let replay_backend_calls = replayed["backend_calls"].as_u64().unwrap_or(0);
    let backend_gap = (replay_backend_calls as f64 - live_backend_calls as f64).abs()
        / live_backend_calls.max(1) as f64;
    println!(
        "fidelity: {} calls ({} reads); live hit ratio {:.2}%, replayed {:.2}% ({:+.2} pp); \
         live backend calls {live_backend_calls}, replayed {replay_backend_calls} ({:+.2}%)",
        live.len(),
        reads.len(),
        live_hit_ratio * 100.0,
        replay_hit_ratio * 100.0,
        (replay_hit_ratio - live_hit_ratio) * 100.0,
        backend_gap * 100.0
    );
    assert!(
        (replay_hit_ratio - live_hit_ratio).abs() <= 0.01,
        "the replayed hit ratio {replay_hit_ratio} is over 1 pp from the live {live_hit_ratio}"
    );
    assert!(
        backend_gap <= 0.02,
        "replayed backend calls {replay_backend_calls} are over 2% from the live {live_backend_calls}"
    );
    Ok(())
}
