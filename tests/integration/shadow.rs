//! Shadow evaluation (`[lab.shadow]`) on a live bridge: candidate policies are judged on
//! the calls the bridge answers, and judging them changes nothing a client sees.
//!
//! Two bridges with the same production policy (the crud-invalidation plugin) answer the
//! same generated calls, one client at a time; one of them also shadows four candidates
//! (two plugins, the built-in policy with other settings, and a plugin that faults). The
//! answers are the same byte for byte, the backends see the same calls, `/admin/lab` has
//! every candidate's numbers from those calls (the faulting one quarantined in the shadow
//! only), and the report exports and renders. With truth sampling on, fresh hits of
//! read-only tools are asked again and a stale one is caught; writes never are.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};

use crate::lab_report::check_renders;
use crate::support::{
    Bridge, RawSession, count_calls, demo_server_toml, metric, poll_until, publish_plugin,
    start_bridge_with_file, toml_string,
};
use mcp_bridge::lab::results::LabReport;
use mcp_bridge::lab::workload::Workload;

/// Calls each bridge answers: enough for hits, misses and writes of every tool.
const CALLS: u64 = 400;

/// The generated calls: (tool, arguments, whether it writes).
fn planned_calls() -> Result<Vec<(String, Value, bool)>> {
    let mut workload = Workload::resolve("seed-tasks")?;
    workload.calls = CALLS;
    workload.seed = 7;
    Ok(workload
        .calls()
        .map(|call| (call.tool.to_string(), call.arguments, call.write))
        .collect())
}

/// Starts a bridge over one demo process that logs its calls, with `extra` config.
async fn start(dir: &Path, calls_log: &Path, extra: &str) -> Result<Bridge> {
    let config = dir.join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[cache]\nenabled = true\ndefault_ttl = \"60s\"\n\n{extra}",
            demo_server_toml(
                "demo",
                &["--calls-log", &calls_log.display().to_string()],
                "min_connections = 1\nmax_connections = 1"
            ),
        ),
    )?;
    let bridge = start_bridge_with_file(tempfile::tempdir()?, config, &[])?;
    bridge.wait_ready().await?;
    Ok(bridge)
}

/// Sends every call in order on one session; returns each answer's `result` (or error).
async fn answer_all(bridge: &Bridge, calls: &[(String, Value, bool)]) -> Result<Vec<Value>> {
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let mut answers = Vec::with_capacity(calls.len());
    for (index, (tool, arguments, _)) in calls.iter().enumerate() {
        let response = session
            .call_tool(json!(index + 1), tool, arguments.clone())
            .await?;
        answers.push(
            response
                .get("result")
                .or_else(|| response.get("error"))
                .cloned()
                .with_context(|| format!("call {index} ({tool}) got {response}"))?,
        );
    }
    Ok(answers)
}

/// `/admin/lab` once the shadow has replayed `calls` calls.
async fn lab_after(bridge: &Bridge, calls: u64) -> Result<Value> {
    let lab = poll_until(
        Duration::from_secs(30),
        async || -> Value {
            match bridge.get("/admin/lab").await {
                Ok((200, body)) => serde_json::from_slice(&body).unwrap_or(Value::Null),
                _ => Value::Null,
            }
        },
        |lab| lab["calls"].as_u64() >= Some(calls),
    )
    .await;
    ensure!(
        lab["calls"].as_u64() >= Some(calls),
        "the shadow did not replay {calls} calls: {lab}"
    );
    Ok(lab)
}

fn row<'a>(lab: &'a Value, name: &str) -> Result<&'a Value> {
    lab["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["name"] == name))
        .with_context(|| format!("/admin/lab has no row {name}: {lab}"))
}

fn number(row: &Value, field: &str) -> f64 {
    row[field].as_f64().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_candidates_are_judged_on_live_calls_without_changing_an_answer() -> Result<()> {
    let calls = planned_calls()?;
    let reads = calls.iter().filter(|(_, _, write)| !write).count() as f64;
    let production_binding = "[[plugins.policy]]\nname = \"crud\"\nfile = \"crud-invalidation.wasm\"\nservers = [\"demo\"]\n";

    // The bridge without a shadow.
    let plain_dir = tempfile::tempdir()?;
    let plain_plugins = plain_dir.path().join("plugins.d");
    std::fs::create_dir_all(&plain_plugins)?;
    publish_plugin(
        Path::new(plugin_artifacts::CRUD_INVALIDATION),
        &plain_plugins,
        "crud-invalidation.wasm",
    )?;
    let plain_log = plain_dir.path().join("calls.log");
    let plain = start(
        plain_dir.path(),
        &plain_log,
        &format!(
            "[plugins]\ndir = {}\n\n{production_binding}",
            toml_string(&plain_plugins.display().to_string())
        ),
    )
    .await?;

    // The bridge with one: production's plugin in its watched directory (auto_bind on),
    // the candidates in a directory of their own.
    let shadow_dir = tempfile::tempdir()?;
    let shadow_plugins = shadow_dir.path().join("plugins.d");
    let candidates = shadow_dir.path().join("candidates.d");
    for (source, dir, file) in [
        (
            plugin_artifacts::CRUD_INVALIDATION,
            &shadow_plugins,
            "crud-invalidation.wasm",
        ),
        (
            plugin_artifacts::SEED_TTL_TABLE,
            &candidates,
            "seed-ttl-table.wasm",
        ),
        (
            plugin_artifacts::ANNOTATIONS,
            &candidates,
            "annotations.wasm",
        ),
        (plugin_artifacts::FAULT_TRAP, &candidates, "fault-trap.wasm"),
    ] {
        std::fs::create_dir_all(dir)?;
        publish_plugin(Path::new(source), dir, file)?;
    }
    let shadow_log = shadow_dir.path().join("calls.log");
    let shadowed = start(
        shadow_dir.path(),
        &shadow_log,
        &format!(
            "[plugins]\ndir = {}\nquarantine_after = 3\n\n{production_binding}\n\
             [lab.shadow]\ndir = {}\n\n\
             [[lab.shadow.candidate]]\nname = \"seed-ttls\"\nfile = \"seed-ttl-table.wasm\"\n\n\
             [[lab.shadow.candidate]]\nname = \"annotations-alone\"\nfile = \"annotations.wasm\"\nconfig_rules = false\n\n\
             [[lab.shadow.candidate]]\nname = \"builtin-no-ttl-rows\"\ndefault_ttl = \"30s\"\nconfig_rules = false\n\n\
             [[lab.shadow.candidate]]\nname = \"trap\"\nfile = \"fault-trap.wasm\"\nconfig = {{ always = true }}\n\n\
             [[lab.shadow.candidate]]\nname = \"missing\"\nfile = \"not-there.wasm\"\n",
            toml_string(&shadow_plugins.display().to_string()),
            toml_string(&candidates.display().to_string())
        ),
    )
    .await?;
    let (_, plugins) = shadowed.get("/admin/plugins").await?;
    let plugins: Value = serde_json::from_slice(&plugins)?;
    let bound: Vec<&str> = plugins["bindings"]
        .as_array()
        .map(|bindings| bindings.iter().filter_map(|b| b["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        bound == ["crud"],
        "only the configured binding serves production, not the shadow candidates: {plugins}"
    );

    let plain_answers = answer_all(&plain, &calls).await?;
    let shadowed_answers = answer_all(&shadowed, &calls).await?;
    for (index, (plain, shadowed)) in plain_answers.iter().zip(&shadowed_answers).enumerate() {
        ensure!(
            plain == shadowed,
            "call {index} ({}) was answered differently with a shadow:\n{plain}\n{shadowed}",
            calls[index].0
        );
    }
    // Truth sampling is off: the backends saw exactly the same calls.
    for tool in [
        "get_tasks",
        "get_habits",
        "get_today_metrics",
        "create_task",
        "update_task",
    ] {
        let (without, with) = (
            count_calls(&plain_log, tool),
            count_calls(&shadow_log, tool),
        );
        ensure!(
            without == with,
            "the backend got {with} {tool} calls with a shadow and {without} without"
        );
    }

    let lab = lab_after(&shadowed, CALLS).await?;
    ensure!(lab["dropped"] == 0, "the shadow dropped calls: {lab}");
    let production = row(&lab, "production")?;
    let live_hits = metric(
        &shadowed,
        "mcp_bridge_cache_requests_total",
        &["result=\"hit\""],
    )
    .await?;
    ensure!(
        number(production, "reads") == reads && number(production, "hits") == live_hits,
        "the production row is not what the live cache did ({reads} reads, {live_hits} hits): {production}"
    );
    // One client at a time: the simulated production chain sees what the live cache saw.
    let simulated = row(&lab, "production-simulated")?;
    ensure!(
        (number(simulated, "hit_ratio") - number(production, "hit_ratio")).abs() < 0.01,
        "the simulated production chain is more than a point from the live cache: {lab}"
    );
    for name in ["seed-ttls", "annotations-alone", "builtin-no-ttl-rows"] {
        let candidate = row(&lab, name)?;
        ensure!(
            number(candidate, "reads") == reads && candidate["state"] == "evaluating",
            "candidate {name} did not see every read: {candidate}"
        );
        // Without the plugin's targeted invalidations, every write drops the whole
        // server: the candidates hit less than production on this workload.
        ensure!(
            number(candidate, "hits") < number(production, "hits"),
            "candidate {name} is not told apart from production: {lab}"
        );
    }
    let trap = row(&lab, "trap")?;
    ensure!(
        trap["state"] == "quarantined"
            && trap["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("deliberate trap")),
        "the faulting candidate is not quarantined in the shadow: {trap}"
    );
    ensure!(
        metric(
            &shadowed,
            "mcp_bridge_shadow_quarantined",
            &["candidate=\"trap\""]
        )
        .await?
            == 1.0,
        "the shadow's quarantine is not in the metrics"
    );
    // A candidate whose file is missing is a row that failed, not a bridge that did not
    // start.
    let missing = row(&lab, "missing")?;
    ensure!(
        missing["state"] == "failed"
            && missing["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("not-there.wasm")),
        "a candidate that cannot load is not shown as failed: {missing}"
    );
    ensure!(
        metric(&shadowed, "mcp_bridge_plugin_quarantined", &[]).await? == 0.0,
        "production's plugins must not be quarantined by a shadow candidate"
    );

    // The same comparison as the offline lab's report, and as a page that renders.
    let (status, body) = shadowed.get("/admin/lab/report.json").await?;
    ensure!(status == 200, "report.json answered {status}");
    let report: LabReport = serde_json::from_slice(&body).context("report.json is a lab report")?;
    let names: Vec<&str> = report
        .policies
        .iter()
        .map(|run| run.name.as_str())
        .collect();
    ensure!(
        names
            == [
                "production",
                "production-simulated",
                "seed-ttls",
                "annotations-alone",
                "builtin-no-ttl-rows",
                "trap",
                "missing"
            ]
            && report.shadow.is_some(),
        "report.json rows: {names:?}"
    );
    let (status, page) = shadowed.get("/admin/lab/page").await?;
    ensure!(status == 200, "the lab page answered {status}");
    let out = tempfile::tempdir()?;
    let html = out.path().join("lab.html");
    std::fs::write(&html, &page)?;
    check_renders(&html, &out.path().join("lab.png"), 1200).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truth_sampling_asks_again_only_for_read_only_hits_and_catches_a_stale_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("calls.log");
    // Production is wrong on purpose: an update invalidates nothing, so get_tasks goes stale.
    let bridge = start(
        dir.path(),
        &log,
        "[[cache.invalidate]]\nserver = \"demo\"\non = \"update_task\"\ntools = []\n\n\
         [lab.shadow]\ntruth_samples_per_second = 1000\ntruth_max_in_flight = 1\n\n\
         [[lab.shadow.candidate]]\nname = \"builtin\"\n",
    )
    .await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let samples = async || -> f64 {
        metric(&bridge, "mcp_bridge_shadow_truth_samples_total", &[])
            .await
            .unwrap_or(-1.0)
    };
    let mut id = 0;
    let mut call = async |tool: &str, arguments: Value| -> Result<Value> {
        id += 1;
        session.call_tool(json!(id), tool, arguments).await
    };
    let tasks = call("get_tasks", json!({})).await?;
    let first = tasks["result"]["structuredContent"]["tasks"][0]["id"].clone();
    ensure!(!first.is_null(), "the demo lists no task: {tasks}");
    let mut sampled = 0.0;
    for round in 0..3 {
        // A hit (sampled: still true until the first write), then a write production
        // ignores, then a hit that is stale (sampled: caught); production never drops the
        // entry, so every hit after the first write is stale. Each sample is waited for,
        // so none is skipped.
        call("get_tasks", json!({})).await?;
        sampled = poll_until(Duration::from_secs(10), samples, |count| *count > sampled).await;
        call(
            "update_task",
            json!({"id": first, "title": format!("renamed {round}")}),
        )
        .await?;
        call("get_tasks", json!({})).await?;
        sampled = poll_until(Duration::from_secs(10), samples, |count| *count > sampled).await;
    }
    let stale = metric(
        &bridge,
        "mcp_bridge_shadow_truth_samples_total",
        &["result=\"stale\""],
    )
    .await?;
    let fresh = metric(
        &bridge,
        "mcp_bridge_shadow_truth_samples_total",
        &["result=\"fresh\""],
    )
    .await?;
    ensure!(
        fresh == 1.0 && stale == 5.0,
        "expected 1 fresh and 5 stale samples, got {fresh} fresh and {stale} stale"
    );
    // What the samples cost is visible at the backend: one get_tasks per sample on top of
    // the first miss; a write is never sent twice.
    ensure!(
        count_calls(&log, "get_tasks") == 7 && count_calls(&log, "update_task") == 3,
        "backend calls: {} get_tasks, {} update_task",
        count_calls(&log, "get_tasks"),
        count_calls(&log, "update_task")
    );
    let lab = lab_after(&bridge, 10).await?;
    let production = row(&lab, "production")?;
    ensure!(
        number(production, "stale_hits") == 5.0,
        "the live cache's stale hits are not known from the samples: {production}"
    );
    Ok(())
}
