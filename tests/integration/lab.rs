//! The policy lab end to end: `serve --record` writes a trace of real calls (rotated,
//! paused and resumed from the admin API), `bench policies` replays it and the presets
//! against the built-in policy and the example plugins, and `bench workload` writes
//! reproducible synthetic traces.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

use crate::support::{
    Bridge, RawSession, SETTLE, bridge_exe, demo_server_toml, http, poll_until, repo_root,
    start_bridge_with_file,
};

const CACHED: &str = "[cache]\nenabled = true\ndefault_ttl = \"10m\"\n";

pub(crate) fn trace_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The trace's parsed lines once it holds at least `count` (the writer thread drains
/// its queue in batches and flushes after each), or what it holds after [`SETTLE`].
async fn wait_for_lines(path: &Path, count: usize) -> Vec<Value> {
    poll_until(
        SETTLE,
        async || trace_lines(path),
        |lines| lines.len() >= count,
    )
    .await
}

/// `GET /admin/record`.
async fn record_status(bridge: &Bridge) -> Result<Value> {
    Ok(http()
        .get(bridge.url("/admin/record"))
        .send()
        .await?
        .json()
        .await?)
}

/// The recorder's `recorded` count once it reaches `count`, or the last one read after
/// [`SETTLE`]. The writer thread counts a record when it writes it, after the call
/// that made it was answered.
async fn wait_for_recorded(bridge: &Bridge, count: u64) -> Value {
    let status = poll_until(
        SETTLE,
        async || record_status(bridge).await.unwrap_or_default(),
        |status| status["recorded"].as_u64() >= Some(count),
    )
    .await;
    status["recorded"].clone()
}

/// Runs `mcp-bridge ARGS...` and returns (exit code, stdout, stderr).
pub(crate) fn run_bridge(args: &[&str]) -> Result<(i32, String, String)> {
    let output = Command::new(bridge_exe())
        .args(args)
        .output()
        .with_context(|| format!("run mcp-bridge {args:?}"))?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

fn bench_policies(args: &[&str]) -> Result<Value> {
    let (code, stdout, stderr) = run_bridge(&[&["bench", "policies", "--quiet"], args].concat())?;
    if code != 0 {
        bail!("bench policies {args:?} exited {code}:\n{stdout}\n{stderr}");
    }
    let out = args
        .iter()
        .position(|arg| *arg == "--out")
        .and_then(|index| args.get(index + 1))
        .context("the test passes --out")?;
    let text = std::fs::read_to_string(Path::new(out).join("report.json"))?;
    Ok(serde_json::from_str(&text)?)
}

fn run_of<'a>(report: &'a Value, section: &str, name: &str) -> &'a Value {
    report[section]
        .as_array()
        .and_then(|runs| runs.iter().find(|run| run["name"] == name))
        .unwrap_or_else(|| panic!("no {section} run named {name} in {report}"))
}

async fn admin_post(bridge: &Bridge, path: &str) -> Result<Value> {
    let response = http().post(bridge.url(path)).send().await?;
    Ok(response.json().await?)
}

#[tokio::test]
async fn a_recorded_trace_holds_every_call_and_replays_to_the_same_hits() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("calls.jsonl");
    let config_path = dir.path().join("bridge.toml");
    std::fs::write(
        &config_path,
        format!("{}{CACHED}", demo_server_toml("demo", &[], "")),
    )?;
    let trace_arg = trace.display().to_string();
    let bridge = start_bridge_with_file(
        tempfile::tempdir()?,
        config_path.clone(),
        &["--record", &trace_arg, "--record-arguments"],
    )?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    let calls = [
        ("get_tasks", json!({"limit": 2})),
        ("get_tasks", json!({"limit": 2})),
        ("get_tasks", json!({"limit": 2})),
        ("create_task", json!({"title": "recorded"})),
        ("get_tasks", json!({"limit": 2})),
        ("get_clients", json!({})),
        ("get_clients", json!({})),
    ];
    for (id, (tool, arguments)) in calls.iter().enumerate() {
        let response = session
            .call_tool(json!(id), tool, arguments.clone())
            .await?;
        assert!(response.get("result").is_some(), "{response}");
    }
    let lines = wait_for_lines(&trace, calls.len()).await;
    assert_eq!(lines.len(), calls.len(), "{lines:#?}");
    let hits: Vec<bool> = lines.iter().map(|line| line["hit"] == true).collect();
    assert_eq!(hits, [false, true, true, false, false, false, true]);
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|line| line["name"].as_str())
        .collect();
    assert_eq!(
        names,
        calls.iter().map(|(tool, _)| *tool).collect::<Vec<_>>()
    );
    // A hit carries the digest of the result it served: the one the miss fetched.
    assert_eq!(lines[0]["digest"], lines[1]["digest"]);
    assert_eq!(lines[0]["args"], lines[2]["args"]);
    assert_ne!(lines[0]["args"], lines[5]["args"]);
    assert_eq!(lines[3]["access"], "write");
    assert_eq!(lines[0]["access"], "read");
    assert_eq!(lines[0]["arguments"], json!({"limit": 2}));
    assert!(lines[0]["latency_us"].as_u64() > Some(0) && lines[1]["latency_us"] == 0);
    assert!(lines[0]["bytes"].as_u64() > Some(50));
    let partition = &lines[0]["partition"];
    assert!(
        partition.as_str().is_some_and(|p| p.len() == 16),
        "{partition}"
    );
    assert!(lines.iter().all(|line| &line["partition"] == partition));

    // Paused, nothing is written; resumed, recording goes on.
    let status = admin_post(&bridge, "/admin/record/stop").await?;
    assert_eq!(
        (status["active"].clone(), status["was_active"].clone()),
        (json!(false), json!(true))
    );
    session
        .call_tool(json!(100), "get_habits", json!({}))
        .await?;
    admin_post(&bridge, "/admin/record/start").await?;
    session
        .call_tool(json!(101), "get_today_metrics", json!({}))
        .await?;
    let lines = wait_for_lines(&trace, calls.len() + 1).await;
    let last: Vec<&str> = lines
        .iter()
        .skip(calls.len())
        .filter_map(|line| line["name"].as_str())
        .collect();
    assert_eq!(last, ["get_today_metrics"]);
    let recorded = wait_for_recorded(&bridge, calls.len() as u64 + 1).await;
    assert_eq!(recorded, json!(calls.len() + 1));
    drop(bridge);

    // The built-in policy of the same config, replayed, hits where the bridge hit.
    let out = dir.path().join("report");
    let report = bench_policies(&[
        "--trace",
        &trace_arg,
        "--config",
        &config_path.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--sizes",
        "0.5,1",
        "--ttl-scales",
        "1",
    ])?;
    let builtin = &run_of(&report, "policies", "builtin")["metrics"];
    let recorded_hits = lines.iter().filter(|line| line["hit"] == true).count();
    assert_eq!(builtin["hits"], json!(recorded_hits), "{builtin}");
    assert_eq!(builtin["stale_hits"], 0);
    assert_eq!(report["trace"]["writes"], 1);
    // get_tasks {limit: 2}, get_clients and get_today_metrics (get_habits was paused).
    assert_eq!(report["trace"]["working_set_entries"], 3);
    Ok(())
}

#[tokio::test]
async fn a_trace_rotates_by_size_and_keeps_the_newest_files() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("rotating.jsonl");
    let trace_arg = trace.display().to_string();
    let config_path = dir.path().join("bridge.toml");
    std::fs::write(
        &config_path,
        format!("{}{CACHED}", demo_server_toml("demo", &[], "")),
    )?;
    let mut bridge = start_bridge_with_file(
        tempfile::tempdir()?,
        config_path,
        &[
            "--record",
            &trace_arg,
            "--record-max-bytes",
            "2KiB",
            "--record-files",
            "3",
        ],
    )?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    for id in 0..60 {
        session
            .call_tool(json!(id), "get_tasks", json!({"limit": id % 7}))
            .await?;
    }
    let numbered = |index: u32| PathBuf::from(format!("{trace_arg}.{index}"));
    // The writer thread counts a record when it writes it, in batches after the calls
    // were answered: wait for all sixty.
    let recorded = wait_for_recorded(&bridge, 60).await;
    assert_eq!(recorded, 60);
    // SIGTERM closes the recorder, which flushes what it buffered: from here on the
    // files are final, so none is read while the writer is half-way through a flush.
    bridge.signal(libc::SIGTERM);
    let status = bridge.wait_exit(SETTLE)?;
    assert!(status.success(), "{status}:\n{}", bridge.log_text());
    assert!(
        numbered(2).exists(),
        "expected {} to exist",
        numbered(2).display()
    );
    assert!(
        !numbered(3).exists(),
        "three files are kept: the trace, .1 and .2"
    );
    for path in [trace.clone(), numbered(1), numbered(2)] {
        let size = std::fs::metadata(&path)?.len();
        assert!(size <= 2048, "{} is {size} bytes", path.display());
        let text = std::fs::read_to_string(&path)?;
        let parsed = trace_lines(&path).len();
        assert_eq!(
            parsed,
            text.lines().count(),
            "{} holds whole lines",
            path.display()
        );
        // A part is rotated away only when the next line would not fit: it is nearly full.
        let longest = text.lines().map(str::len).max().unwrap_or(0) as u64;
        if path != trace {
            assert!(
                size + longest + 1 > 2048,
                "{} was rotated at {size} bytes",
                path.display()
            );
        }
    }
    Ok(())
}

/// A config for the built-in policy with TTLs but no invalidation rules: a write drops
/// its whole server unless a plugin says what it changes.
const NO_RULES: &str = "[servers.demo]\ncommand = \"demo\"\n\n[cache]\ndefault_ttl = \"60s\"\n";

#[tokio::test]
async fn policies_replay_side_by_side_within_their_bounds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("no-rules.toml");
    std::fs::write(&config, NO_RULES)?;
    let out = dir.path().join("first");
    // Named, since the built files are named after their crates (`crud_invalidation.wasm`).
    let (annotations, crud, seed) = (
        format!("annotations={}", plugin_artifacts::ANNOTATIONS),
        format!("crud-invalidation={}", plugin_artifacts::CRUD_INVALIDATION),
        format!("seed-ttl-table={}", plugin_artifacts::SEED_TTL_TABLE),
    );
    let config_arg = config.display().to_string();
    let out_arg = out.display().to_string();
    let args = [
        "--workload",
        "seed-tasks",
        "--calls",
        "6000",
        "--config",
        &config_arg,
        "--policy",
        "builtin",
        "--policy",
        &annotations,
        "--policy",
        &crud,
        "--policy",
        &seed,
        "--sizes",
        "0.1,0.5,1",
        "--ttl-scales",
        "0.5,1,2",
        "--out",
        &out_arg,
    ];
    let report = bench_policies(&args)?;
    let names: Vec<&str> = report["policies"]
        .as_array()
        .map(|runs| runs.iter().filter_map(|run| run["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "builtin",
            "annotations",
            "crud-invalidation",
            "seed-ttl-table"
        ]
    );
    let metrics = |name: &str| run_of(&report, "policies", name)["metrics"].clone();
    let ratio = |name: &str, field: &str| metrics(name)[field].as_f64().unwrap_or(f64::NAN);
    // The annotations plugin is the built-in policy re-expressed: identical replays.
    assert_eq!(metrics("builtin")["hits"], metrics("annotations")["hits"]);
    // Without rules the built-in policy drops the whole server on a write: never stale.
    // crud-invalidation drops only the task reads, so clients and habits survive
    // (more hits) but get_today_metrics, which it does not know, goes stale.
    assert_eq!(ratio("builtin", "stale_hit_ratio"), 0.0);
    assert!(ratio("crud-invalidation", "hit_ratio") > ratio("builtin", "hit_ratio") + 0.05);
    assert!(ratio("crud-invalidation", "stale_hit_ratio") > 0.0);
    assert!(ratio("crud-invalidation", "staleness_p99_ms") > 0.0);
    assert!(ratio("crud-invalidation", "decision_ns") > 0.0);
    // Bounds: nothing beats perfect invalidation or Belady, nothing does worse than no cache.
    let bound = |name: &str, field: &str| {
        run_of(&report, "bounds", name)["metrics"][field]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    assert_eq!(bound("no-cache", "hit_ratio"), 0.0);
    assert_eq!(bound("perfect", "stale_hit_ratio"), 0.0);
    for name in names.iter() {
        assert!(
            ratio(name, "hit_ratio") - ratio(name, "stale_hit_ratio")
                <= bound("perfect", "hit_ratio") + 1e-9,
            "{name}"
        );
    }
    let sweep = report["size_sweep"].as_array().context("size_sweep")?;
    assert_eq!(
        sweep.len(),
        5 * 3,
        "four policies and Belady at three sizes"
    );
    for point in sweep.iter().filter(|point| point["policy"] != "belady") {
        let belady = sweep
            .iter()
            .find(|other| {
                other["policy"] == "belady" && other["size_fraction"] == point["size_fraction"]
            })
            .context("a Belady point per size")?;
        let fresh_hits = |p: &Value| {
            p["metrics"]["hits"].as_u64().unwrap_or(0)
                - p["metrics"]["stale_hits"].as_u64().unwrap_or(0)
        };
        assert!(
            fresh_hits(point) <= fresh_hits(belady),
            "{point} vs {belady}"
        );
    }
    // A longer TTL never lowers the stale ratio of a policy that goes stale.
    let crud_ttl: Vec<f64> = report["ttl_sweep"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .filter(|point| point["policy"] == "crud-invalidation")
                .filter_map(|point| point["metrics"]["stale_hit_ratio"].as_f64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(crud_ttl.len(), 3);
    assert!(
        crud_ttl.windows(2).all(|pair| pair[0] <= pair[1]),
        "{crud_ttl:?}"
    );
    for file in ["report.json", "report.csv", "report.html"] {
        assert!(out.join(file).exists(), "{file}");
    }

    // The same run again is identical, and compared with the first it shows no change.
    let second = dir.path().join("second");
    let baseline = out.join("report.json").display().to_string();
    let second_arg = second.display().to_string();
    let mut again = args.to_vec();
    let last = again.len() - 1;
    again[last] = &second_arg;
    again.extend(["--baseline", &baseline]);
    let rerun = bench_policies(&again)?;
    for name in names {
        assert_eq!(
            run_of(&rerun, "policies", name)["metrics"]["hits"],
            metrics(name)["hits"],
            "{name}"
        );
    }
    let rows = rerun["baseline"]["rows"]
        .as_array()
        .context("baseline rows")?;
    assert_eq!(rows.len(), 7, "four policies and three bounds");
    assert!(
        rows.iter()
            .all(|row| row["hit_ratio"]["before"] == row["hit_ratio"]["after"])
    );
    Ok(())
}

/// The README's first lab command (step 2: the example plugins and the built-in policy, on
/// the seed-tasks preset, with `config/with-plugins.toml`, whose built-in policy has no TTL
/// rows or invalidation rules) shows policies that differ, as the README says it does.
#[tokio::test]
async fn the_readmes_first_lab_command_shows_differing_policies() -> Result<()> {
    let readme = std::fs::read_to_string(repo_root().join("README.md"))?;
    ensure!(
        readme.contains("bench policies --workload seed-tasks --config config/with-plugins.toml"),
        "the README's lab command is not the one this test runs"
    );
    let config = repo_root().join("config/with-plugins.toml");
    let config_arg = config.display().to_string();
    let plugin = |name: &str, path: &str| format!("{name}={path}");
    let policies = [
        plugin("annotations", plugin_artifacts::ANNOTATIONS),
        plugin("crud-invalidation", plugin_artifacts::CRUD_INVALIDATION),
        plugin("seed-ttl-table", plugin_artifacts::SEED_TTL_TABLE),
    ];
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    let mut args = vec![
        "bench",
        "policies",
        "--quiet",
        "--workload",
        "seed-tasks",
        "--calls",
        "20000",
        "--config",
        &config_arg,
        "--sizes",
        "",
        "--ttl-scales",
        "",
        "--out",
        &out_arg,
        "--policy",
        "builtin",
    ];
    for policy in &policies {
        args.extend(["--policy", policy.as_str()]);
    }
    let (code, stdout, stderr) = run_bridge(&args)?;
    ensure!(code == 0, "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    let metric = |name: &str, field: &str| {
        run_of(&report, "policies", name)["metrics"][field]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    // The plugin's targeted invalidations keep far more hits than the built-in policy's
    // whole-server drop, at a price in stale hits the report shows.
    ensure!(
        metric("crud-invalidation", "hit_ratio") > metric("builtin", "hit_ratio") + 0.1
            && metric("crud-invalidation", "stale_hit_ratio") > 0.0
            && metric("builtin", "stale_hit_ratio") == 0.0
            && metric("crud-invalidation", "backend_time_saved_ms")
                > metric("builtin", "backend_time_saved_ms"),
        "the policies do not differ as the README says:\n{stdout}"
    );
    // The plugins decided their calls: the config's rules shaped none.
    for name in ["annotations", "crud-invalidation", "seed-ttl-table"] {
        ensure!(
            metric(name, "shaped_by_config") == 0.0 && metric(name, "shaped_by_plugin") > 0.0,
            "{name} did not decide its calls:\n{stdout}"
        );
    }
    Ok(())
}

/// With the default config, whose TTL rows and invalidation rules join every chain, the
/// deployed rows of different plugins can be identical; the report says why (the config's
/// rules shaped the calls) and shows each plugin alone, where they differ.
#[tokio::test]
async fn identical_rows_are_explained_by_who_decided_and_alone_runs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    let crud = format!("crud-invalidation={}", plugin_artifacts::CRUD_INVALIDATION);
    let args = [
        "--workload",
        "seed-tasks",
        "--calls",
        "4000",
        "--sizes",
        "",
        "--ttl-scales",
        "",
        "--policy",
        "builtin",
        "--policy",
        &crud,
        "--out",
        &out_arg,
    ];
    let (code, stdout, stderr) =
        run_bridge(&[&["bench", "policies", "--quiet"], &args[..]].concat())?;
    ensure!(code == 0, "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    let deployed = |name: &str| run_of(&report, "policies", name)["metrics"].clone();
    let alone = |name: &str| run_of(&report, "alone", name)["metrics"].clone();
    let events = report["trace"]["events"].as_u64().unwrap_or(0);
    for name in ["builtin", "crud-invalidation"] {
        let metrics = deployed(name);
        let shaped: u64 = ["shaped_by_plugin", "shaped_by_config", "shaped_by_default"]
            .iter()
            .map(|field| metrics[*field].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(
            shaped, events,
            "{name}: every call is shaped by one part: {metrics}"
        );
    }
    // As deployed, the config's rules shape most of the plugin's calls...
    let crud_deployed = deployed("crud-invalidation");
    assert!(
        crud_deployed["shaped_by_config"].as_u64() > crud_deployed["shaped_by_plugin"].as_u64(),
        "{crud_deployed}"
    );
    // ...while alone the plugin keeps more (and goes stale), unlike the built-in defaults.
    let ratio = |metrics: &Value, field: &str| metrics[field].as_f64().unwrap_or(f64::NAN);
    assert!(
        ratio(&alone("crud-invalidation"), "hit_ratio")
            > ratio(&alone("builtin"), "hit_ratio") + 0.05,
        "alone, the plugin should differ: {} vs {}",
        alone("crud-invalidation"),
        alone("builtin")
    );
    assert!(stdout.contains("who decided"), "{stdout}");
    let html = std::fs::read_to_string(out.join("report.html"))?;
    assert!(html.contains("Who decided, and each policy alone"));
    Ok(())
}

/// A pure plugin (the `annotations` example declares it at `init`) is asked once per
/// distinct call and its decisions reused; a stateful one (`call-counter`, which does not
/// declare it) is asked on every event, and its replay shows its state: it bypasses every
/// other call.
#[tokio::test]
async fn pure_plugins_are_asked_once_per_call_and_stateful_ones_on_every_event() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    let annotations = format!("annotations={}", plugin_artifacts::ANNOTATIONS);
    let counter = format!("counter={}", plugin_artifacts::CALL_COUNTER);
    // One replay thread: the counter's one warm instance answers each replay in turn.
    let report = bench_policies(&[
        "--workload",
        "seed-tasks",
        "--calls",
        "4000",
        "--sizes",
        "",
        "--ttl-scales",
        "",
        "--jobs",
        "1",
        "--policy",
        &annotations,
        "--policy",
        &counter,
        "--out",
        &out_arg,
    ])?;
    let events = report["trace"]["events"].as_u64().unwrap_or(0);
    ensure!(events == 4000, "{}", report["trace"]);
    let count = |metrics: &Value, field: &str| metrics[field].as_u64().unwrap_or(u64::MAX);
    for section in ["policies", "alone"] {
        let pure = &run_of(&report, section, "annotations")["metrics"];
        let reused = count(pure, "decisions_reused");
        ensure!(
            reused > events / 2 && count(pure, "policy_calls") + reused == events,
            "{section}: the pure plugin's decisions were not reused: {pure}"
        );
        let stateful = &run_of(&report, section, "counter")["metrics"];
        ensure!(
            count(stateful, "decisions_reused") == 0 && count(stateful, "policy_calls") == events,
            "{section}: the stateful plugin was not asked on every event: {stateful}"
        );
    }
    // Alone (no configured TTL rows), every bypass is the counter's: half of the reads.
    let stateful = &run_of(&report, "alone", "counter")["metrics"];
    let reads = count(stateful, "reads");
    ensure!(
        count(stateful, "bypasses").abs_diff(reads / 2) <= 1,
        "the counter's alternating answers do not show: {stateful}"
    );
    Ok(())
}

/// `--fail-if-worse` gates a plugin's CI: a candidate that loses hit ratio (or gains
/// stale hits) against the baseline's policy of the same name fails the run with the
/// numbers; the same candidate again passes. The report is written either way.
#[tokio::test]
async fn a_policy_worse_than_its_baseline_fails_the_gate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("no-rules.toml");
    std::fs::write(&config, NO_RULES)?;
    let config_arg = config.display().to_string();
    let run = |candidate: &str, out: &str, baseline: Option<&str>| {
        let policy = format!("candidate={candidate}");
        let out = dir.path().join(out).display().to_string();
        let mut args: Vec<String> = [
            "bench",
            "policies",
            "--quiet",
            "--workload",
            "seed-tasks",
            "--calls",
            "3000",
            "--config",
            &config_arg,
            "--sizes",
            "",
            "--ttl-scales",
            "",
            "--out",
            &out,
            "--policy",
            &policy,
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        if let Some(baseline) = baseline {
            // Decision cost depends on the machine (and a debug build on a busy one
            // varies widely); this test is about the ratios, which do not.
            args.extend([
                "--baseline".to_owned(),
                baseline.to_owned(),
                "--fail-if-worse".to_owned(),
                "--max-decision-slowdown".to_owned(),
                "1000".to_owned(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_bridge(&args)
    };
    // crud-invalidation keeps more hits than the annotation policy, and goes stale.
    let (code, _, stderr) = run(plugin_artifacts::CRUD_INVALIDATION, "first", None)?;
    assert_eq!(code, 0, "{stderr}");
    let baseline = dir
        .path()
        .join("first")
        .join("report.json")
        .display()
        .to_string();

    let (code, _, stderr) = run(plugin_artifacts::ANNOTATIONS, "worse", Some(&baseline))?;
    assert_ne!(code, 0, "a worse candidate passed the gate: {stderr}");
    assert!(
        stderr.contains("candidate: hit ratio fell from")
            && stderr.contains("--max-hit-ratio-drop"),
        "{stderr}"
    );
    assert!(
        dir.path().join("worse").join("report.json").exists(),
        "a failing run still writes its report"
    );

    let (code, _, stderr) = run(plugin_artifacts::CRUD_INVALIDATION, "same", Some(&baseline))?;
    assert_eq!(code, 0, "the same candidate failed the gate: {stderr}");
    assert!(
        stderr.contains("no policy is worse than the baseline"),
        "{stderr}"
    );

    // The other way round, the stale-hit ratio rises: also worse.
    let (code, _, _) = run(plugin_artifacts::ANNOTATIONS, "clean", None)?;
    assert_eq!(code, 0);
    let clean = dir
        .path()
        .join("clean")
        .join("report.json")
        .display()
        .to_string();
    let (code, _, stderr) = run(plugin_artifacts::CRUD_INVALIDATION, "staler", Some(&clean))?;
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("candidate: stale-hit ratio rose from"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_lab_input_gets_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("bad.jsonl");
    let good = r#"{"t_us":1,"server":"demo","method":"tools/call","name":"get_tasks","args":"0000000000000001","access":"read","latency_us":5,"bytes":5,"digest":"0000000000000002","status":"ok","hit":false}"#;
    std::fs::write(&trace, format!("{good}\n{{\"t_us\": \"soon\"}}\n"))?;
    let trace_arg = trace.display().to_string();
    let (code, _, stderr) = run_bridge(&["bench", "policies", "--trace", &trace_arg])?;
    assert_eq!(code, 2);
    assert!(stderr.contains(&format!("{trace_arg}:2:")), "{stderr}");
    let (code, _, stderr) = run_bridge(&[
        "bench",
        "policies",
        "--workload",
        "seed-tasks",
        "--calls",
        "10",
        "--policy",
        "/nonexistent/p.wasm",
    ])?;
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/p.wasm"), "{stderr}");
    let (code, _, stderr) = run_bridge(&["bench", "policies", "--workload", "nope"])?;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("seed-tasks, read-heavy, write-storm"),
        "{stderr}"
    );
    let (code, _, stderr) = run_bridge(&[
        "bench",
        "policies",
        "--workload",
        "seed-tasks",
        "--sizes",
        "0.5,big",
    ])?;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--sizes") && stderr.contains("big"),
        "{stderr}"
    );
    // A bare number used to count entries: now the cache is weighed in bytes, it is refused
    // rather than read as a few bytes.
    let (code, _, stderr) = run_bridge(&[
        "bench",
        "policies",
        "--workload",
        "seed-tasks",
        "--cache-size",
        "5000",
    ])?;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--cache-size") && stderr.contains("64MiB"),
        "{stderr}"
    );
    Ok(())
}

/// A server's `cacheScope: private` is recorded with each call and applied by the replay
/// as `serve` applied it: the replay of the recorded trace hits where the bridge hit, and
/// the same trace with the hints removed (as an older trace would be) shares the result.
#[tokio::test]
async fn recorded_server_hints_replay_as_serve_applied_them() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("calls.jsonl");
    let config_path = dir.path().join("bridge.toml");
    let script = repo_root().join("tests/clients/cache_private_server.py");
    let args = serde_json::to_string(&[script.display().to_string()])?;
    std::fs::write(
        &config_path,
        format!("[servers.private]\ncommand = \"python3\"\nargs = {args}\n\n{CACHED}"),
    )?;
    let trace_arg = trace.display().to_string();
    let bridge = start_bridge_with_file(
        tempfile::tempdir()?,
        config_path.clone(),
        &["--record", &trace_arg],
    )?;
    bridge.wait_ready().await?;
    let url = bridge.url("/mcp/private");
    let (alice, bob) = (RawSession::open(&url).await?, RawSession::open(&url).await?);
    for (id, session) in [&alice, &bob, &alice, &bob].into_iter().enumerate() {
        let response = session.call_tool(json!(id), "whoami", json!({})).await?;
        ensure!(response.get("result").is_some(), "{response}");
    }
    let lines = wait_for_lines(&trace, 4).await;
    drop(bridge);
    ensure!(lines.len() == 4, "{lines:#?}");
    let hits: Vec<bool> = lines.iter().map(|line| line["hit"] == true).collect();
    assert_eq!(hits, [false, false, true, true], "each session hit its own");
    for line in &lines {
        assert_eq!(line["hints"], json!({"private_scope": true}), "{line}");
    }
    let replayed_hits = |trace: &Path, out: &str| -> Result<Value> {
        let report = bench_policies(&[
            "--trace",
            &trace.display().to_string(),
            "--config",
            &config_path.display().to_string(),
            "--out",
            &dir.path().join(out).display().to_string(),
            "--sizes",
            "",
            "--ttl-scales",
            "",
        ])?;
        Ok(run_of(&report, "policies", "builtin")["metrics"]["hits"].clone())
    };
    assert_eq!(replayed_hits(&trace, "with-hints")?, json!(2));
    let without = dir.path().join("without-hints.jsonl");
    let stripped: Vec<String> = lines
        .iter()
        .map(|line| {
            let mut line = line.clone();
            if let Some(fields) = line.as_object_mut() {
                fields.remove("hints");
            }
            line.to_string()
        })
        .collect();
    std::fs::write(&without, stripped.join("\n"))?;
    // Without the hint, Bob's first call finds Alice's result under the shared key.
    assert_eq!(replayed_hits(&without, "without-hints")?, json!(3));
    Ok(())
}

#[tokio::test]
async fn bench_workload_writes_the_same_trace_for_the_same_seed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name).display().to_string();
    for (file, seed) in [("a.jsonl", "5"), ("b.jsonl", "5"), ("c.jsonl", "6")] {
        let (code, _, stderr) = run_bridge(&[
            "bench",
            "workload",
            "--workload",
            "write-storm",
            "--calls",
            "3000",
            "--seed",
            seed,
            "--out",
            &path(file),
        ])?;
        assert_eq!(code, 0, "{stderr}");
    }
    let read = |file: &str| std::fs::read(path(file)).unwrap_or_default();
    assert_eq!(read("a.jsonl"), read("b.jsonl"));
    assert_ne!(read("a.jsonl"), read("c.jsonl"));
    let lines = trace_lines(Path::new(&path("a.jsonl")));
    assert_eq!(lines.len(), 3000);
    let writes = lines
        .iter()
        .filter(|line| line["access"] == "write")
        .count();
    assert!(
        (1300..1700).contains(&writes),
        "write-storm is half writes: {writes}"
    );
    Ok(())
}
