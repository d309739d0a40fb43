//! The shipped dashboard (`config/grafana/mcp-bridge.json`) and Prometheus rules
//! (`config/prometheus/`) proven against the real thing: promtool checks the rule files and
//! runs their unit tests (each alert fires on synthetic series and stays silent on healthy
//! ones), and a real Prometheus scraping a bridge under load evaluates every dashboard panel's
//! expressions, every recording rule and the dashboard's template-variable queries through its
//! HTTP API, each of which must return data: a panel that can never show anything is a
//! defect.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use mcp_bridge_test_support::{Prometheus, SCRAPE_INTERVAL, promtool};
use serde_json::Value;

use crate::support::{
    Bridge, SETTLE, bridge_exe, demo_server_toml, metric, poll_until, publish_plugin, repo_root,
    start_bridge_with_file, toml_string,
};

/// The dashboard, relative to the repository.
const DASHBOARD: &str = "config/grafana/mcp-bridge.json";

/// The rule directory and its files, relative to the repository.
const RULES_DIR: &str = "config/prometheus";
const RULES_FILE: &str = "mcp-bridge.rules.yml";
const EXAMPLE_CONFIG: &str = "prometheus.example.yml";
const ALERT_TESTS: &str = "tests/alerts.test.yml";

/// The datasource reference every panel and target must use: the dashboard's `datasource`
/// variable, so the dashboard imports into any Grafana whatever its Prometheus is called.
const DATASOURCE_UID: &str = "${datasource}";

/// What the Grafana variables and interval macros become when the expressions are run
/// directly: the template variables match every value (as the dashboard's "All" does, its
/// allValue being `.*`), and the intervals are fixed windows that hold several of the test
/// Prometheus's 1-second scrapes. Longer names first, so `$__interval_ms` is not read as
/// `$__interval` followed by `_ms`.
const SUBSTITUTIONS: [(&str, &str); 12] = [
    ("${server}", ".*"),
    ("$server", ".*"),
    ("${instance}", ".*"),
    ("$instance", ".*"),
    ("${__rate_interval}", "1m"),
    ("$__rate_interval", "1m"),
    ("${__interval_ms}", "15000"),
    ("$__interval_ms", "15000"),
    ("${__interval}", "15s"),
    ("$__interval", "15s"),
    ("${__range}", "5m"),
    ("$__range", "5m"),
];

/// Metrics the dashboard must show, one for each thing the issue lists: calls and latency,
/// success, pool processes, in-flight and queue, spawn failures and restarts, health, cache
/// results, hit ratio, bytes and evictions, time saved, plugin generation, reloads, faults and
/// quarantines, bridge and backend memory, CPU and sessions.
const REQUIRED_METRICS: [&str; 22] = [
    "mcp_bridge_calls",
    "mcp_bridge_call_duration_seconds",
    "mcp_bridge_calls_success",
    "mcp_bridge_pool_processes",
    "mcp_bridge_pool_inflight",
    "mcp_bridge_pool_queue_depth",
    "mcp_bridge_pool_spawn_failures_total",
    "mcp_bridge_pool_restarts_total",
    "mcp_bridge_health_status",
    "mcp_bridge_cache_requests",
    "mcp_bridge_cache_hit",
    "mcp_bridge_cache_bytes",
    "mcp_bridge_cache_evictions_total",
    "mcp_bridge_cache_backend_seconds_saved_total",
    "mcp_bridge_plugin_generation",
    "mcp_bridge_plugin_reloads_total",
    "mcp_bridge_plugin_faults_total",
    "mcp_bridge_plugin_quarantined",
    "process_resident_memory_bytes",
    "mcp_bridge_backend_resident_bytes",
    "process_cpu_seconds_total",
    "mcp_bridge_sessions_active",
];

/// How long the test waits for Prometheus to hold what every expression needs: a few scrapes
/// after the load, and a rule evaluation on top of them. Seconds on an idle machine; the
/// bound is for a loaded one.
const DATA_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one `bench load` run may take in all (it runs for `LOAD_DURATION`).
const LOAD_TIMEOUT: Duration = Duration::from_secs(90);

/// How long each load runs, and at what fixed rate: bounded, and light enough for a loaded
/// 2-core machine.
const LOAD_DURATION: &str = "6s";
const LOAD_RATE: &str = "40";

/// A panel's expression, with where it came from for messages.
struct PanelQuery {
    panel: String,
    expr: String,
}

fn rules_dir() -> PathBuf {
    repo_root().join(RULES_DIR)
}

fn load_dashboard() -> Result<Value> {
    let path = repo_root().join(DASHBOARD);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Every panel, those nested in collapsed rows included.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut panels = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(panel);
        for nested in panel["panels"].as_array().into_iter().flatten() {
            panels.push(nested);
        }
    }
    panels
}

/// Every target expression of every panel that draws something, as Prometheus gets it.
fn panel_queries(dashboard: &Value) -> Result<Vec<PanelQuery>> {
    let mut queries = Vec::new();
    for panel in all_panels(dashboard) {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .with_context(|| format!("panel `{title}` has a target without expr"))?;
            queries.push(PanelQuery {
                panel: title.to_owned(),
                expr: concrete(expr),
            });
        }
    }
    Ok(queries)
}

/// A dashboard expression with its Grafana variables and macros replaced (see
/// [`SUBSTITUTIONS`]).
fn concrete(expr: &str) -> String {
    SUBSTITUTIONS
        .iter()
        .fold(expr.to_owned(), |expr, (variable, value)| {
            expr.replace(variable, value)
        })
}

/// A template variable's `label_values(SELECTOR, LABEL)` as the query Prometheus answers
/// with one series per value.
fn variable_query(definition: &str) -> Result<String> {
    let inner = definition
        .trim()
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .with_context(|| format!("not a label_values(SELECTOR, LABEL) query: {definition}"))?;
    let (selector, label) = inner
        .rsplit_once(',')
        .with_context(|| format!("label_values without a label: {definition}"))?;
    Ok(format!(
        "group by ({}) ({})",
        label.trim(),
        concrete(selector.trim())
    ))
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The alert names in the rules file (`- alert: NAME` lines).
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn the_shipped_rules_pass_promtool_check_and_their_unit_tests() -> Result<()> {
    let dir = rules_dir();
    let check = promtool(&dir, &["check", "rules", RULES_FILE]).await?;
    ensure!(
        check.status.success(),
        "promtool check rules {RULES_FILE} failed:\n{}",
        printed(&check)
    );
    let config = promtool(&dir, &["check", "config", EXAMPLE_CONFIG]).await?;
    ensure!(
        config.status.success(),
        "promtool check config {EXAMPLE_CONFIG} failed:\n{}",
        printed(&config)
    );

    let mut test_files: Vec<String> = std::fs::read_dir(dir.join("tests"))
        .context("read config/prometheus/tests")?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yml"))
        .map(|name| format!("tests/{name}"))
        .collect();
    test_files.sort();
    ensure!(
        test_files.len() >= 2,
        "expected the alert and recording-rule tests in config/prometheus/tests, found {test_files:?}"
    );
    let mut args = vec!["test", "rules"];
    args.extend(test_files.iter().map(String::as_str));
    let tests = promtool(&dir, &args).await?;
    let said = printed(&tests);
    ensure!(
        tests.status.success(),
        "promtool test rules failed:\n{said}"
    );
    for file in &test_files {
        ensure!(said.contains(file.as_str()), "{file} did not run:\n{said}");
    }

    // Each alert has a case that fires it and one that keeps it silent: promtool ran them
    // all above; this holds the file to having both for every alert in the rules.
    let rules = std::fs::read_to_string(dir.join(RULES_FILE))?;
    let alerts = alert_names(&rules);
    ensure!(
        alerts.len() >= 10,
        "only {} alerts: {alerts:?}",
        alerts.len()
    );
    let tested = std::fs::read_to_string(dir.join(ALERT_TESTS))?;
    for alert in &alerts {
        for case in ["fires", "stays silent on healthy series"] {
            ensure!(
                tested.contains(&format!("name: {alert} {case}")),
                "{ALERT_TESTS} has no `{alert} {case}` case"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_dashboard_is_importable_with_the_datasource_and_template_variables() -> Result<()> {
    let dashboard = load_dashboard()?;
    ensure!(
        dashboard["schemaVersion"].as_u64() >= Some(36),
        "schemaVersion {}: a modern Grafana expects 36 or later",
        dashboard["schemaVersion"]
    );
    ensure!(
        dashboard["uid"].is_string() && dashboard["title"].is_string(),
        "uid and title"
    );

    let variables: BTreeMap<&str, &Value> = dashboard["templating"]["list"]
        .as_array()
        .context("templating.list")?
        .iter()
        .filter_map(|variable| Some((variable["name"].as_str()?, variable)))
        .collect();
    let datasource = variables
        .get("datasource")
        .context("no `datasource` variable")?;
    ensure!(
        datasource["type"] == "datasource" && datasource["query"] == "prometheus",
        "the datasource variable must pick a Prometheus datasource: {datasource}"
    );
    for name in ["instance", "server"] {
        let variable = variables
            .get(name)
            .with_context(|| format!("no `{name}` variable"))?;
        ensure!(variable["type"] == "query", "{name}: {variable}");
        ensure!(
            variable["datasource"]["uid"] == DATASOURCE_UID,
            "{name} does not query the datasource variable: {variable}"
        );
        ensure!(
            variable["multi"] == true && variable["includeAll"] == true,
            "{name} must allow several values and All: {variable}"
        );
        ensure!(
            variable["definition"]
                .as_str()
                .is_some_and(|query| query.contains(&format!(", {name})"))),
            "{name} is not label_values(..., {name}): {variable}"
        );
    }

    let mut ids = BTreeSet::new();
    let mut exprs = String::new();
    let mut drawn = 0;
    for panel in all_panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        ensure!(!title.is_empty(), "a panel without a title: {panel}");
        let id = panel["id"]
            .as_u64()
            .with_context(|| format!("panel `{title}` has no id"))?;
        ensure!(ids.insert(id), "panel id {id} (`{title}`) is used twice");
        ensure!(
            panel["gridPos"]["w"].is_u64() && panel["gridPos"]["h"].is_u64(),
            "panel `{title}` has no gridPos"
        );
        if panel["type"] == "row" {
            continue;
        }
        drawn += 1;
        ensure!(
            panel["datasource"]["uid"] == DATASOURCE_UID,
            "panel `{title}` does not use the datasource variable: {}",
            panel["datasource"]
        );
        let targets = panel["targets"]
            .as_array()
            .filter(|targets| !targets.is_empty())
            .with_context(|| format!("panel `{title}` has no targets"))?;
        for target in targets {
            ensure!(
                target["datasource"]["uid"] == DATASOURCE_UID,
                "a target of panel `{title}` does not use the datasource variable: {target}"
            );
            let expr = target["expr"].as_str().unwrap_or_default();
            ensure!(
                !expr.trim().is_empty(),
                "panel `{title}` has an empty target"
            );
            ensure!(
                !concrete(expr).contains('$'),
                "panel `{title}` uses a variable the dashboard does not define: {expr}"
            );
            exprs.push_str(expr);
            exprs.push('\n');
        }
    }
    ensure!(drawn >= 20, "only {drawn} panels");
    for metric in REQUIRED_METRICS {
        ensure!(
            exprs.contains(metric),
            "no panel shows {metric}; the dashboard's expressions:\n{exprs}"
        );
    }
    Ok(())
}

/// A bridge that gives every panel something to show: the demo server with the cache and a
/// TTL-table plugin, a second demo server whose plugin traps on every call (faults, then a
/// quarantine), and a server whose command does not exist (spawn failures, unhealthy).
async fn observed_bridge() -> Result<(Bridge, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins.d");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(
        plugin_artifacts::SEED_TTL_TABLE,
        plugins.join("seed-ttl-table.wasm"),
    )?;
    std::fs::copy(
        plugin_artifacts::FAULT_TRAP,
        plugins.join("fault-trap.wasm"),
    )?;
    let config = format!(
        "{demo}\n{faulty}\n\
         [servers.broken]\ncommand = \"/nonexistent/mcp-bridge-no-such-server\"\nrequired = false\n\
         reconnect_backoff_initial = \"50ms\"\nreconnect_backoff_max = \"500ms\"\n\n\
         [cache]\nenabled = true\n\n\
         [plugins]\ndir = \"plugins.d\"\ncompiled_cache_dir = {compiled}\nauto_bind = false\n\
         watch_debounce = \"20ms\"\nquarantine_after = 3\ndecision_timeout = \"10s\"\n\n\
         [[plugins.policy]]\nname = \"ttl\"\nfile = \"seed-ttl-table.wasm\"\nservers = [\"demo\"]\n\n\
         [[plugins.policy]]\nname = \"trap\"\nfile = \"fault-trap.wasm\"\nservers = [\"faulty\"]\nconfig = {{ always = true }}\n",
        demo = demo_server_toml("demo", &[], "max_connections = 2"),
        faulty = demo_server_toml("faulty", &[], "max_connections = 1"),
        compiled = toml_string(&dir.path().join("compiled").display().to_string()),
    );
    let config_path = dir.path().join("mcp-bridge.toml");
    std::fs::write(&config_path, config)?;
    let bridge = start_bridge_with_file(dir, config_path, &[])?;
    bridge.wait_ready().await?;
    Ok((bridge, plugins))
}

/// Runs `mcp-bridge bench load` against one endpoint at a fixed rate for a fixed time.
async fn bench_load(bridge: &Bridge, server: &str) -> Result<()> {
    let url = bridge.url(&format!("/mcp/{server}"));
    let args = [
        "bench",
        "load",
        "--url",
        &url,
        "--workload",
        "seed-tasks",
        "--rate",
        LOAD_RATE,
        "--duration",
        LOAD_DURATION,
    ];
    let mut command = tokio::process::Command::new(bridge_exe());
    command.args(args).env_remove("RUST_LOG").kill_on_drop(true);
    let output = tokio::time::timeout(LOAD_TIMEOUT, command.output())
        .await
        .with_context(|| format!("bench load on {server} ran past {LOAD_TIMEOUT:?}"))?
        .context("run mcp-bridge bench load")?;
    ensure!(
        output.status.success(),
        "bench load on {server} failed ({}):\n{}",
        output.status,
        printed(&output)
    );
    Ok(())
}

/// What Prometheus says about one expression, for the failure message.
fn describe(answer: &Result<Value>) -> String {
    match answer {
        Ok(answer) if answer["status"] == "success" => "no series".to_owned(),
        Ok(answer) => format!("{}: {}", answer["errorType"], answer["error"]),
        Err(error) => format!("{error:#}"),
    }
}

fn has_data(answer: &Result<Value>) -> bool {
    answer.as_ref().is_ok_and(|answer| {
        answer["status"] == "success"
            && answer["data"]["result"]
                .as_array()
                .is_some_and(|result| !result.is_empty())
    })
}

/// Evaluates every query until each returns data or [`DATA_TIMEOUT`] passes; returns the
/// ones still without data (with what Prometheus said), empty when all have data.
async fn queries_without_data(
    prometheus: &Prometheus,
    queries: &[(String, String)],
) -> Vec<String> {
    let deadline = Instant::now() + DATA_TIMEOUT;
    let mut pending: Vec<&(String, String)> = queries.iter().collect();
    loop {
        let mut still = Vec::new();
        let mut reasons = Vec::new();
        for query in pending {
            let answer = prometheus.query(&query.1).await;
            if !has_data(&answer) {
                reasons.push(format!(
                    "{}: `{}` returned {}",
                    query.0,
                    query.1,
                    describe(&answer)
                ));
                still.push(query);
            }
        }
        if still.is_empty() || Instant::now() > deadline {
            return reasons;
        }
        pending = still;
        tokio::time::sleep(SCRAPE_INTERVAL).await;
    }
}

#[tokio::test]
async fn every_dashboard_panel_and_recording_rule_shows_data_from_a_real_prometheus() -> Result<()>
{
    let dashboard = load_dashboard()?;
    let (bridge, plugins) = observed_bridge().await?;
    let rules = rules_dir().join(RULES_FILE);
    let prometheus = Prometheus::start(&[bridge.address], &[rules.as_path()]).await?;

    // Prometheus scrapes the bridge.
    let up = poll_until(
        DATA_TIMEOUT,
        async || prometheus.series("up{job=\"mcp-bridge\"} == 1").await,
        |series| series.as_ref().is_ok_and(|series| !series.is_empty()),
    )
    .await?;
    ensure!(
        !up.is_empty(),
        "Prometheus never scraped the bridge: {}\n{}",
        prometheus
            .get("/api/v1/targets")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default(),
        prometheus.log_tail(20)
    );

    // A plugin file that is rejected on reload: not a component.
    let junk = bridge.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm not really")?;
    publish_plugin(&junk, &plugins, "junk.wasm")?;
    let rejected = poll_until(
        SETTLE,
        async || {
            metric(
                &bridge,
                "mcp_bridge_plugin_reloads_total",
                &["result=\"rejected\""],
            )
            .await
        },
        |count| count.as_ref().is_ok_and(|count| *count >= 1.0),
    )
    .await?;
    ensure!(
        rejected >= 1.0,
        "the junk plugin was not rejected: {}",
        bridge.log_tail(20)
    );

    // A backend process that dies and is replaced: a restart.
    let pids = bridge.backend_pids("demo").await?;
    let pid = *pids.first().context("the demo server has no process")?;
    let pid = libc::pid_t::try_from(pid)?;
    // SAFETY: kill has no memory-safety preconditions; the pid is the bridge's live child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let restarts = poll_until(
        SETTLE,
        async || {
            metric(
                &bridge,
                "mcp_bridge_pool_restarts_total",
                &["server=\"demo\""],
            )
            .await
        },
        |count| count.as_ref().is_ok_and(|count| *count >= 1.0),
    )
    .await?;
    ensure!(restarts >= 1.0, "the killed process was not replaced");
    // Prometheus sees it as an event: the counter existed at 0 before it (the pool creates its
    // counters at start), so `increase`, which the restarts panel uses, counts it.
    let seen = "increase(mcp_bridge_pool_restarts_total{server=\"demo\"}[5m]) > 0";
    let restart_seen = poll_until(
        DATA_TIMEOUT,
        async || prometheus.series(seen).await,
        |series| series.as_ref().is_ok_and(|series| !series.is_empty()),
    )
    .await?;
    ensure!(
        !restart_seen.is_empty(),
        "Prometheus never saw the restart: {seen} is empty"
    );

    // Bounded load on the cached server and on the one whose plugin traps (it faults, then is
    // quarantined; its calls still succeed).
    let (demo, faulty) = tokio::join!(bench_load(&bridge, "demo"), bench_load(&bridge, "faulty"));
    demo?;
    faulty?;

    // Every panel's every target returns data.
    let queries: Vec<(String, String)> = panel_queries(&dashboard)?
        .into_iter()
        .map(|query| (format!("panel `{}`", query.panel), query.expr))
        .collect();
    ensure!(queries.len() >= 30, "only {} panel queries", queries.len());
    let empty = queries_without_data(&prometheus, &queries).await;
    ensure!(
        empty.is_empty(),
        "{} of {} panel queries show nothing:\n{}",
        empty.len(),
        queries.len(),
        empty.join("\n")
    );

    // The template variables' queries find this bridge and its servers.
    for variable in ["instance", "server"] {
        let definition = dashboard["templating"]["list"]
            .as_array()
            .and_then(|list| list.iter().find(|v| v["name"] == variable))
            .and_then(|v| v["definition"].as_str())
            .with_context(|| format!("no {variable} variable"))?;
        let values: BTreeSet<String> = prometheus
            .series(&variable_query(definition)?)
            .await?
            .iter()
            .filter_map(|series| Some(series["metric"][variable].as_str()?.to_owned()))
            .collect();
        let expected: &[String] = &match variable {
            "instance" => vec![bridge.address.to_string()],
            _ => vec!["broken".into(), "demo".into(), "faulty".into()],
        };
        ensure!(
            expected.iter().all(|value| values.contains(value)),
            "variable {variable} ({definition}) offers {values:?}, expected {expected:?}"
        );
    }

    // Prometheus loaded every rule; each recording rule records series, and each alert has
    // what an on-call person needs.
    let (status, body) = prometheus.get("/api/v1/rules").await?;
    ensure!(status == 200, "/api/v1/rules answered {status}: {body}");
    let loaded: Value = serde_json::from_str(&body)?;
    let mut recorded = Vec::new();
    let mut alerts = Vec::new();
    for group in loaded["data"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            match rule["type"].as_str() {
                Some("recording") => recorded.push(rule.clone()),
                Some("alerting") => alerts.push(rule.clone()),
                _ => bail!("a rule of unknown type: {rule}"),
            }
        }
    }
    let rules_text = std::fs::read_to_string(&rules)?;
    let names = alert_names(&rules_text);
    ensure!(
        alerts.len() == names.len() && !recorded.is_empty(),
        "Prometheus loaded {} alerts and {} recording rules; the file has alerts {names:?}",
        alerts.len(),
        recorded.len()
    );
    for alert in &alerts {
        let name = alert["name"].as_str().unwrap_or_default();
        ensure!(
            alert["health"] == "ok",
            "alert {name} does not evaluate: {alert}"
        );
        ensure!(
            alert["duration"].as_f64() >= Some(60.0),
            "alert {name} has no `for` of a minute or more, so it may flap: {alert}"
        );
        ensure!(
            matches!(
                alert["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "alert {name} has no severity: {alert}"
        );
        for annotation in ["summary", "description"] {
            ensure!(
                alert["annotations"][annotation]
                    .as_str()
                    .is_some_and(|text| text.len() > 20),
                "alert {name} has no {annotation}: {alert}"
            );
        }
        ensure!(
            alert["annotations"]["description"]
                .as_str()
                .is_some_and(|text| text.contains("/admin/") || text.contains("/health")),
            "alert {name}'s description names no endpoint to look at: {alert}"
        );
    }
    let record_queries: Vec<(String, String)> = recorded
        .iter()
        .map(|rule| {
            let name = rule["name"].as_str().unwrap_or_default().to_owned();
            (format!("recording rule {name}"), name)
        })
        .collect();
    let empty = queries_without_data(&prometheus, &record_queries).await;
    ensure!(
        empty.is_empty(),
        "recording rules without series:\n{}",
        empty.join("\n")
    );
    for rule in &recorded {
        ensure!(
            rule["health"] == "ok",
            "recording rule {} does not evaluate: {rule}",
            rule["name"]
        );
    }

    // The alerts whose conditions this bridge meets are live in the real Prometheus (pending
    // or firing; their `for` is longer than this test): the server that cannot start, the
    // quarantined binding and the rejected plugin file.
    let expected_alerts = [
        ("McpBridgeBackendUnhealthy", "server", "broken"),
        ("McpBridgePluginQuarantined", "plugin", "trap"),
        ("McpBridgePluginReloadRejected", "plugin", "junk"),
    ];
    for (alert, label, value) in expected_alerts {
        let query = format!("ALERTS{{alertname=\"{alert}\",{label}=\"{value}\"}}");
        let live = poll_until(
            DATA_TIMEOUT,
            async || prometheus.series(&query).await,
            |series| series.as_ref().is_ok_and(|series| !series.is_empty()),
        )
        .await?;
        ensure!(
            !live.is_empty(),
            "{alert} is not pending for {label}={value}; Prometheus's alerts: {}",
            prometheus
                .get("/api/v1/alerts")
                .await
                .map(|(_, body)| body)
                .unwrap_or_default()
        );
    }

    ensure!(
        prometheus.is_running(),
        "Prometheus died: {}",
        prometheus.log_tail(20)
    );
    let mut prometheus = prometheus;
    prometheus.stop().await?;
    bridge.stop(Duration::from_secs(30)).await?;
    Ok(())
}

#[test]
fn grafana_variables_and_macros_become_plain_promql() -> Result<()> {
    assert_eq!(
        concrete(
            r#"sum by (server) (rate(x{instance=~"$instance", server=~"${server}"}[$__rate_interval]))"#
        ),
        r#"sum by (server) (rate(x{instance=~".*", server=~".*"}[1m]))"#
    );
    assert_eq!(
        concrete("increase(x[$__range]) / $__interval_ms"),
        "increase(x[5m]) / 15000"
    );
    assert_eq!(
        variable_query(r#"label_values(mcp_bridge_health_status{instance=~"$instance"}, server)"#)?,
        r#"group by (server) (mcp_bridge_health_status{instance=~".*"})"#
    );
    assert!(variable_query("query_result(up)").is_err());
    assert_eq!(
        alert_names("  - alert: A\n    expr: x\n  - record: r\n  - alert: B\n"),
        vec!["A".to_owned(), "B".to_owned()]
    );
    Ok(())
}
