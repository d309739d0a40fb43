//! Policy plugins in a running bridge: the example plugins built from `plugins/` deciding
//! real calls to the demo server (hit counts, TTLs, invalidations), faulty plugins
//! rejected at load or quarantined at run time while every request still succeeds, and
//! the compiled-component cache across a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::support::{
    Bridge, RawSession, SETTLE, count_calls, demo_server_toml, eventually, http, metric,
    plugin_wasm, poll_until, post_json, read_response, start_bridge_with_file, toml_string,
};

/// The response header naming the policy generation and the TTL of a cached result.
const CACHE_HEADER: &str = "mcp-bridge-cache";

/// The decision deadline of the plugins these tests load, unless a test sets its own.
/// The default (50 ms) is wall-clock time, and a loaded machine can keep a decision off
/// the CPU for longer: the bridge then rightly treats it as a fault and answers the safe
/// default (no caching), which is not what a test of anything but the deadline expects.
const TEST_DECISION_TIMEOUT: &str = "decision_timeout = \"10s\"\n";

/// A bridge serving the demo server with a plugin directory.
pub(crate) struct PluginBridge {
    pub bridge: Bridge,
    pub plugins: PathBuf,
    calls: PathBuf,
}

impl PluginBridge {
    /// Starts a bridge whose plugin directory holds `files` (built plugin, as a path
    /// from `plugin_artifacts`, and file name) before it starts. `plugins_toml` goes right under `[plugins]`: its keys,
    /// then any `[[plugins.policy]]` bindings. `compiled` is the compiled-component cache
    /// (a fresh one in the bridge's directory when `None`).
    pub(crate) async fn start(
        files: &[(&str, &str)],
        plugins_toml: &str,
        compiled: Option<&Path>,
    ) -> Result<PluginBridge> {
        let dir = tempfile::tempdir()?;
        let plugins = dir.path().join("plugins.d");
        std::fs::create_dir_all(&plugins)?;
        for (built, file) in files {
            std::fs::copy(built, plugins.join(file))?;
        }
        let calls = dir.path().join("calls.log");
        let calls_arg = calls.display().to_string();
        let server = demo_server_toml("demo", &["--calls-log", &calls_arg], "max_connections = 1");
        let compiled = compiled.map_or_else(|| dir.path().join("compiled"), Path::to_path_buf);
        let deadline = if plugins_toml.contains("decision_timeout") {
            ""
        } else {
            TEST_DECISION_TIMEOUT
        };
        let config = format!(
            "{server}\n[cache]\nenabled = true\n\n[plugins]\ndir = \"plugins.d\"\ncompiled_cache_dir = {}\n{deadline}{plugins_toml}\n",
            toml_string(&compiled.display().to_string())
        );
        let config_path = dir.path().join("mcp-bridge.toml");
        std::fs::write(&config_path, config)?;
        let bridge = start_bridge_with_file(dir, config_path, &[])?;
        bridge.wait_ready().await?;
        Ok(PluginBridge {
            bridge,
            plugins,
            calls,
        })
    }

    /// `GET /admin/plugins`.
    pub(crate) async fn admin(&self) -> Result<Value> {
        let response = http().get(self.bridge.url("/admin/plugins")).send().await?;
        ensure!(
            response.status() == 200,
            "/admin/plugins answered {}",
            response.status()
        );
        Ok(response.json().await?)
    }

    /// The admin entry of one plugin by name.
    pub(crate) async fn plugin(&self, name: &str) -> Result<Value> {
        let admin = self.admin().await?;
        admin["plugins"]
            .as_array()
            .and_then(|plugins| plugins.iter().find(|p| p["name"] == name).cloned())
            .with_context(|| format!("plugin `{name}` is not listed: {admin}"))
    }

    /// How many `tools/call` of `tool` reached the demo server.
    pub(crate) fn calls(&self, tool: &str) -> usize {
        count_calls(&self.calls, tool)
    }

    pub(crate) async fn session(&self) -> Result<RawSession> {
        RawSession::open(&self.bridge.url("/mcp/demo")).await
    }
}

/// A forwarded call's response and its `mcp-bridge-cache` header.
pub(crate) struct Answered {
    pub response: Value,
    pub cache: Option<String>,
}

impl Answered {
    /// A `key=value` field of the cache header.
    pub(crate) fn field(&self, key: &str) -> Option<u64> {
        self.cache.as_deref()?.split(';').find_map(|part| {
            let (name, value) = part.trim().split_once('=')?;
            (name == key).then(|| value.parse().ok())?
        })
    }

    /// Fails unless the call returned a tool result (not a JSON-RPC error or `isError`).
    pub(crate) fn ensure_success(&self, what: &str) -> Result<()> {
        ensure!(
            self.response["result"].is_object()
                && self.response["result"]["isError"] != json!(true),
            "{what}: {}",
            self.response
        );
        Ok(())
    }
}

/// Calls a tool in a session and keeps the cache header.
pub(crate) async fn call(
    session: &RawSession,
    id: u64,
    tool: &str,
    arguments: Value,
) -> Result<Answered> {
    let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}});
    let response = post_json(&session.url, Some(&session.session_id), &message).await?;
    let cache = response
        .headers()
        .get(CACHE_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Ok(Answered {
        response: read_response(response).await?,
        cache,
    })
}

/// Calls a tool `times` times with the same arguments, each time expecting success.
pub(crate) async fn call_times(
    session: &RawSession,
    tool: &str,
    times: u64,
) -> Result<Vec<Answered>> {
    let mut answers = Vec::new();
    for id in 0..times {
        let answer = call(session, id + 100, tool, json!({})).await?;
        answer.ensure_success(tool)?;
        answers.push(answer);
    }
    Ok(answers)
}

#[tokio::test]
async fn the_seed_table_and_crud_rules_decide_real_calls() -> Result<()> {
    let demo = PluginBridge::start(
        &[
            (plugin_artifacts::SEED_TTL_TABLE, "seed-ttl-table.wasm"),
            (
                plugin_artifacts::CRUD_INVALIDATION,
                "crud-invalidation.wasm",
            ),
        ],
        r#"
[[plugins.policy]]
name = "tasks-ttl"
file = "seed-ttl-table.wasm"
servers = ["demo"]
config = { ttl = { demo = { get_tasks = "30s", get_clients = 0 } } }

[[plugins.policy]]
name = "crud"
file = "crud-invalidation.wasm"
servers = ["demo"]
"#,
        None,
    )
    .await?;
    let session = demo.session().await?;

    // The TTL table's row shapes the cached entry; the crud plugin decided to cache.
    let tasks = call_times(&session, "get_tasks", 3).await?;
    ensure!(
        demo.calls("get_tasks") == 1,
        "get_tasks reached the server {} times",
        demo.calls("get_tasks")
    );
    ensure!(
        tasks[0].field("ttl-ms") == Some(30_000),
        "header: {:?}",
        tasks[0].cache
    );

    // A zero TTL never caches.
    call_times(&session, "get_clients", 2).await?;
    ensure!(demo.calls("get_clients") == 2, "get_clients was cached");

    // No row: the crud plugin's own TTL (60 s by default) applies.
    let habits = call_times(&session, "get_habits", 2).await?;
    ensure!(demo.calls("get_habits") == 1, "get_habits was not cached");
    ensure!(
        habits[0].field("ttl-ms") == Some(60_000),
        "header: {:?}",
        habits[0].cache
    );

    // create_task drops the task reads (by name and by the entity tag), nothing else.
    call(
        &session,
        1,
        "create_task",
        json!({"title": "from the plugin test"}),
    )
    .await?
    .ensure_success("create_task")?;
    let after = call(&session, 2, "get_tasks", json!({})).await?;
    after.ensure_success("get_tasks after create_task")?;
    ensure!(
        demo.calls("get_tasks") == 2,
        "create_task did not invalidate get_tasks"
    );
    ensure!(
        after.response.to_string().contains("from the plugin test"),
        "stale tasks served after the write: {}",
        after.response
    );
    call(&session, 3, "get_habits", json!({})).await?;
    ensure!(
        demo.calls("get_habits") == 1,
        "create_task invalidated get_habits too"
    );

    let admin = demo.admin().await?;
    let seed = demo.plugin("seed-ttl-table").await?;
    ensure!(
        seed["exports"] == json!(["ttl-table", "lifecycle"]),
        "{seed}"
    );
    ensure!(seed["contract"] == "mcp-bridge:policy@0.3.0", "{seed}");
    // The example plugins keep no state between calls and say so at `init`.
    ensure!(seed["pure"] == true, "{seed}");
    // The TTL table implements only `ttl-table`: its `init` said so, and no decision or
    // invalidation cost a call into it.
    for (interface, called) in [
        ("cache-policy", false),
        ("ttl-table", true),
        ("invalidation-rules", false),
    ] {
        let calls = metric(
            &demo.bridge,
            "mcp_bridge_plugin_decisions_total",
            &[
                "plugin=\"tasks-ttl\"",
                &format!("interface=\"{interface}\""),
            ],
        )
        .await?;
        ensure!(
            (calls > 0.0) == called,
            "tasks-ttl got {calls} {interface} calls"
        );
    }
    ensure!(seed["state"] == "active", "{seed}");
    let crud = demo.plugin("crud-invalidation").await?;
    ensure!(
        crud["exports"] == json!(["cache-policy", "invalidation-rules", "lifecycle"]),
        "{crud}"
    );
    ensure!(crud["pure"] == true, "{crud}");
    ensure!(admin["generation"].as_u64() >= Some(1), "{admin}");
    let names: Vec<&str> = admin["bindings"]
        .as_array()
        .map(|b| b.iter().filter_map(|b| b["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(names == ["tasks-ttl", "crud"], "binding order: {names:?}");
    Ok(())
}

#[tokio::test]
async fn the_annotations_plugin_caches_reads_and_applies_rules() -> Result<()> {
    let demo = PluginBridge::start(
        &[(plugin_artifacts::ANNOTATIONS, "annotations.wasm")],
        r#"
auto_bind = false

[[plugins.policy]]
file = "annotations.wasm"
servers = ["*"]
config = { default_ttl = "45s", invalidate = [{ on = "complete_task", tools = ["get_tasks"] }] }
"#,
        None,
    )
    .await?;
    let session = demo.session().await?;
    let reads = call_times(&session, "get_tasks", 3).await?;
    ensure!(
        demo.calls("get_tasks") == 1,
        "read-only get_tasks was not cached"
    );
    ensure!(
        reads[0].field("ttl-ms") == Some(45_000),
        "{:?}",
        reads[0].cache
    );
    call_times(&session, "get_today_metrics", 2).await?;
    ensure!(
        demo.calls("get_today_metrics") == 1,
        "get_today_metrics was not cached"
    );

    // The rule names only get_tasks: the metrics entry survives.
    call(&session, 1, "complete_task", json!({"id": 1}))
        .await?
        .ensure_success("complete_task")?;
    call_times(&session, "get_tasks", 1).await?;
    call_times(&session, "get_today_metrics", 1).await?;
    ensure!(
        demo.calls("get_tasks") == 2,
        "complete_task did not invalidate get_tasks"
    );
    ensure!(
        demo.calls("get_today_metrics") == 1,
        "the rule's other reads were dropped"
    );

    // A write without a rule invalidates the whole server: the built-in's default, the
    // plugin abstains.
    call(
        &session,
        2,
        "update_task",
        json!({"id": 1, "status": "done"}),
    )
    .await?
    .ensure_success("update_task")?;
    call_times(&session, "get_today_metrics", 1).await?;
    ensure!(
        demo.calls("get_today_metrics") == 2,
        "update_task invalidated nothing"
    );
    Ok(())
}

/// The text of `GET /metrics`.
pub(crate) async fn metrics_text(bridge: &Bridge) -> Result<String> {
    Ok(http()
        .get(bridge.url("/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// Starts a bridge with one faulty plugin bound to the demo server. Only the plugin that
/// loops until its deadline gets a short one (so its faults come quickly); the others
/// keep the tests' generous deadline, so that on a loaded machine a trap or an
/// out-of-memory is not overtaken by a deadline and counted as the wrong kind of fault.
pub(crate) async fn faulty(plugin: &str, config: &str) -> Result<PluginBridge> {
    let deadline = if plugin == "fault-loop" {
        "decision_timeout = \"20ms\"\n"
    } else {
        TEST_DECISION_TIMEOUT
    };
    PluginBridge::start(
        &[(plugin_wasm(plugin), &format!("{plugin}.wasm"))],
        &format!(
            "quarantine_after = 3\n{deadline}max_memory = \"16MiB\"\n\n[[plugins.policy]]\nfile = \"{plugin}.wasm\"\nservers = [\"demo\"]\nconfig = {config}\n"
        ),
        None,
    )
    .await
}

#[tokio::test]
async fn faulting_plugins_are_quarantined_and_requests_still_succeed() -> Result<()> {
    let cases = [
        ("fault-trap", "trap", "deliberate trap"),
        ("fault-loop", "deadline", "interrupt"),
        ("fault-oom", "out_of_memory", "memory"),
    ];
    let runs = cases.map(|(plugin, kind, says)| async move {
        let demo = faulty(plugin, "{}").await?;
        let session = demo.session().await?;
        // A call that does not ask for a fault is decided as usual (cached).
        call_times(&session, "get_clients", 2).await?;
        ensure!(
            demo.calls("get_clients") == 1,
            "{plugin}: a call without `fault` was not cached ({} backend calls)",
            demo.calls("get_clients")
        );
        // Every call is answered, each one by the backend: the safe default is "do
        // not cache". The plugins fault in calls whose arguments ask for a fault.
        for id in 0..6 {
            call(&session, id + 100, "get_tasks", json!({"fault": true}))
                .await?
                .ensure_success("get_tasks")?;
        }
        ensure!(
            demo.calls("get_tasks") == 6,
            "{plugin}: a faulted decision was cached ({} backend calls)",
            demo.calls("get_tasks")
        );
        // Only the faulting tool is quarantined: the plugin's other tools would still
        // be asked (a_tool_that_faults_live_is_quarantined_alone checks that they are).
        let entry = demo.plugin(plugin).await?;
        ensure!(entry["state"] == "partly_quarantined", "{plugin}: {entry}");
        ensure!(
            entry["faults"][kind].as_u64() >= Some(3),
            "{plugin}: {entry}"
        );
        let reason = entry["quarantine_reason"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        ensure!(
            reason.contains(says) && reason.contains("demo/get_tasks"),
            "{plugin}: the reason does not say `{says}` and name the tool: {reason}"
        );
        let admin = demo.admin().await?;
        let binding = &admin["bindings"][0];
        ensure!(
            binding["state"] == "partly_quarantined"
                && binding["quarantined_tools"][0]["tool"] == "get_tasks"
                && binding["quarantine"].is_null()
                && binding["recent_faults"][0]["kind"] == kind,
            "{plugin}: {binding}"
        );
        ensure!(
            demo.bridge
                .logged("plugin quarantined for demo/get_tasks")
                .await,
            "{plugin}: quarantine not logged"
        );
        let gauges = [
            format!("mcp_bridge_plugin_quarantined_tools{{plugin=\"{plugin}\"}} 1"),
            format!("mcp_bridge_plugin_quarantined{{plugin=\"{plugin}\"}} 0"),
        ];
        let metrics = poll_until(
            SETTLE,
            async || metrics_text(&demo.bridge).await,
            |text| {
                text.as_ref()
                    .is_ok_and(|text| gauges.iter().all(|gauge| text.contains(gauge)))
            },
        )
        .await?;
        for gauge in &gauges {
            ensure!(
                metrics.contains(gauge),
                "{plugin}: no `{gauge}` in /metrics"
            );
        }
        // Quarantined, it is no longer called, and calls still succeed.
        call_times(&session, "get_tasks", 2).await?;
        Ok::<(), anyhow::Error>(())
    });
    for result in futures_util::future::join_all(runs).await {
        result?;
    }
    Ok(())
}

#[tokio::test]
async fn bad_plugins_are_rejected_at_load_with_the_reason() -> Result<()> {
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "fault-init",
            "{}",
            &["init rejected its config", "deliberate init failure"],
        ),
        (
            "wrong-wit",
            "{}",
            &["cache-policy", "does not match the WIT contract"],
        ),
        (
            "no-policy",
            "{}",
            &["exports none of cache-policy, ttl-table or invalidation-rules"],
        ),
        (
            "fault-trap",
            "{ on_smoke = true }",
            &["smoke", "deliberate trap"],
        ),
        // A plugin that reads a file: the message names the import, what usually calls
        // it and what to do instead, not only wasmtime's "unknown import".
        (
            "sandbox-escape",
            "{}",
            &[
                "smoke",
                "the plugin called `wasi:filesystem/",
                "which the sandbox does not provide (usually `std::fs`",
                "pass what it needs in the binding's `config`",
            ],
        ),
    ];
    let runs = cases.map(|(plugin, config, says)| async move {
        let demo = faulty(plugin, config).await?;
        let entry = demo.plugin(plugin).await?;
        ensure!(entry["state"] == "rejected", "{plugin}: {entry}");
        let message = entry["last_rejection"]["message"]
            .as_str()
            .unwrap_or_default();
        for phrase in says {
            ensure!(
                message.contains(phrase),
                "{plugin}: `{phrase}` missing from: {message}"
            );
        }
        ensure!(
            demo.bridge.logged("plugin version rejected").await,
            "{plugin}: not logged"
        );
        // The built-in policy serves instead.
        let session = demo.session().await?;
        call_times(&session, "get_tasks", 2).await?;
        ensure!(
            demo.calls("get_tasks") == 1,
            "{plugin}: the built-in policy is not serving"
        );
        Ok::<(), anyhow::Error>(())
    });
    for result in futures_util::future::join_all(runs).await {
        result?;
    }
    Ok(())
}

#[tokio::test]
async fn a_plugin_built_against_the_0_1_0_contract_still_serves() -> Result<()> {
    let demo =
        PluginBridge::start(&[(plugin_artifacts::LEGACY_V0_1, "legacy.wasm")], "", None).await?;
    let entry = demo.plugin("legacy").await?;
    ensure!(entry["state"] == "active", "{entry}");
    ensure!(entry["contract"] == "mcp-bridge:policy@0.1.0", "{entry}");
    ensure!(
        entry["exports"] == json!(["cache-policy", "ttl-table", "lifecycle"]),
        "{entry}"
    );
    ensure!(
        entry["pure"] == false,
        "0.1.0 cannot declare purity: {entry}"
    );
    let session = demo.session().await?;
    let reads = call_times(&session, "get_tasks", 2).await?;
    ensure!(
        demo.calls("get_tasks") == 1,
        "the 0.1.0 plugin's decision did not cache get_tasks"
    );
    ensure!(
        reads[0].field("ttl-ms") == Some(333_000),
        "the 0.1.0 plugin did not decide: {:?}",
        reads[0].cache
    );
    Ok(())
}

#[tokio::test]
async fn a_plugin_built_against_the_0_2_0_contract_still_serves() -> Result<()> {
    let demo =
        PluginBridge::start(&[(plugin_artifacts::LEGACY_V0_2, "legacy.wasm")], "", None).await?;
    let entry = demo.plugin("legacy").await?;
    ensure!(entry["state"] == "active", "{entry}");
    ensure!(entry["contract"] == "mcp-bridge:policy@0.2.0", "{entry}");
    // Its `init` reported two of the three policy interfaces, and 0.2.0 has no `pure`.
    ensure!(
        entry["exports"] == json!(["cache-policy", "ttl-table", "lifecycle"]),
        "{entry}"
    );
    ensure!(
        entry["pure"] == false,
        "0.2.0 cannot declare purity: {entry}"
    );
    // Its `init` logged through the 0.2.0 `log` import.
    ensure!(
        demo.bridge.logged("legacy 0.2.0 plugin started").await,
        "the 0.2.0 plugin's log line did not reach the bridge's log"
    );
    let session = demo.session().await?;
    let reads = call_times(&session, "get_tasks", 2).await?;
    ensure!(
        demo.calls("get_tasks") == 1,
        "the 0.2.0 plugin's decision did not cache get_tasks"
    );
    ensure!(
        reads[0].field("ttl-ms") == Some(222_000),
        "the 0.2.0 plugin did not decide: {:?}",
        reads[0].cache
    );
    Ok(())
}

/// The lines each decision of the `chatty` plugin prints to stdout: more than the
/// bridge lets one plugin version log per second (20).
const CHATTY_LINES: u32 = 30;

#[tokio::test]
async fn println_in_a_plugin_reaches_the_bridge_log_rate_limited() -> Result<()> {
    let demo = PluginBridge::start(
        &[(plugin_artifacts::CHATTY, "chatty.wasm")],
        &format!(
            "\n[[plugins.policy]]\nfile = \"chatty.wasm\"\nconfig = {{ lines = {CHATTY_LINES} }}\n"
        ),
        None,
    )
    .await?;
    let entry = demo.plugin("chatty").await?;
    ensure!(
        entry["state"] == "active",
        "printing must not fault: {entry}"
    );
    ensure!(
        demo.bridge
            .logged("chatty: init says hello on stdout")
            .await,
        "init's println! is not in the log"
    );

    // Each decision prints more lines than a second's budget, so every second
    // suppresses some, and the first line of the next second says how many. A call
    // that lands in a fresh second gets its first lines through.
    let session = demo.session().await?;
    let wanted = [
        "chatty: stderr for get_tasks",
        "chatty: pieces for get_tasks end",
        "chatty: stdout line 0 for get_tasks",
        "plugin log lines suppressed",
    ];
    let mut id = 0;
    let log = poll_until(
        SETTLE,
        async || {
            id += 1;
            let answer = call(&session, id, "get_tasks", json!({"n": id})).await;
            let answered = answer.is_ok_and(|answer| answer.ensure_success("get_tasks").is_ok());
            (answered, demo.bridge.log_text())
        },
        |(answered, log)| *answered && wanted.iter().all(|line| log.contains(line)),
    )
    .await;
    ensure!(log.0, "a call failed while the plugin printed");
    for line in wanted {
        ensure!(log.1.contains(line), "`{line}` is not in the bridge's log");
    }
    ensure!(
        !log.1.contains(&format!(
            "stdout line {} for mcp-bridge-smoke",
            CHATTY_LINES - 1
        )),
        "the smoke call's lines past the budget were logged"
    );
    plugin_log_lines_carry_the_binding_and_target(&log.1)?;
    let faults = &demo.plugin("chatty").await?["faults"];
    ensure!(
        faults
            .as_object()
            .is_some_and(|f| f.values().all(|n| n == 0)),
        "{faults}"
    );
    Ok(())
}

/// The plugin's own lines (JSON log) are under the documented target, with the binding,
/// the file and where the line came from; so is the summary of suppressed lines.
fn plugin_log_lines_carry_the_binding_and_target(log: &str) -> Result<()> {
    let line_with = |needle: &str| -> Result<Value> {
        let line = log
            .lines()
            .find(|line| line.contains(needle))
            .with_context(|| format!("`{needle}` is not in the log"))?;
        Ok(serde_json::from_str(line)?)
    };
    for (needle, source, level) in [
        ("chatty: stderr for get_tasks", Some("stderr"), "WARN"),
        (
            "chatty: stdout line 0 for get_tasks",
            Some("stdout"),
            "INFO",
        ),
        ("plugin log lines suppressed", None, "WARN"),
    ] {
        let line = line_with(needle)?;
        let fields = &line["fields"];
        ensure!(
            line["target"] == "mcp_bridge::plugin"
                && line["level"] == level
                && fields["file"] == "chatty.wasm",
            "{line}"
        );
        if let Some(source) = source {
            ensure!(
                fields["binding"] == "chatty" && fields["source"] == source,
                "{line}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_bad_new_version_leaves_the_old_one_serving() -> Result<()> {
    let demo = PluginBridge::start(
        &[(plugin_artifacts::RELOAD_PROBE_V1, "probe.wasm")],
        "",
        None,
    )
    .await?;
    let session = demo.session().await?;
    let before = demo.plugin("probe").await?;
    let first = call(&session, 1, "get_tasks", json!({"n": 1})).await?;
    ensure!(first.field("ttl-ms") == Some(111_000), "{:?}", first.cache);

    // Garbage, then a component with the wrong types, under the same name.
    let junk = demo.bridge.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm not really")?;
    let wrong = Path::new(plugin_artifacts::WRONG_WIT);
    let attempts = [
        (junk.as_path(), "not a valid WebAssembly component"),
        (wrong, "does not match the WIT contract"),
    ];
    for (n, (source, says)) in (2u64..).zip(attempts) {
        crate::support::publish_plugin(source, &demo.plugins, "probe.wasm")?;
        let rejected = eventually(Duration::from_secs(20), async || {
            demo.plugin("probe").await.is_ok_and(|p| {
                p["last_rejection"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(says))
            })
        })
        .await;
        ensure!(
            rejected,
            "no rejection saying `{says}`: {}",
            demo.admin().await?
        );
        let entry = demo.plugin("probe").await?;
        ensure!(
            entry["hash"] == before["hash"],
            "the serving version changed: {entry}"
        );
        ensure!(entry["generation"] == before["generation"], "{entry}");
        let answer = call(&session, n, "get_tasks", json!({"n": n})).await?;
        answer.ensure_success("get_tasks")?;
        ensure!(
            answer.field("ttl-ms") == Some(111_000),
            "the old version stopped serving: {:?}",
            answer.cache
        );
    }

    // Deleting the file unloads the plugin: the built-in policy decides again.
    std::fs::remove_file(demo.plugins.join("probe.wasm"))?;
    let unloaded = eventually(Duration::from_secs(20), async || {
        demo.admin().await.is_ok_and(|admin| {
            admin["plugins"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p["state"] != "active"))
        })
    })
    .await;
    ensure!(unloaded, "{}", demo.admin().await?);
    let builtin = call(&session, 3, "get_tasks", json!({"n": 3})).await?;
    ensure!(
        builtin.field("ttl-ms") != Some(111_000),
        "{:?}",
        builtin.cache
    );
    Ok(())
}

#[tokio::test]
async fn a_restart_loads_compiled_plugins_from_the_cache() -> Result<()> {
    let shared = tempfile::tempdir()?;
    let files = [(plugin_artifacts::SEED_TTL_TABLE, "seed-ttl-table.wasm")];
    let first = PluginBridge::start(&files, "", Some(shared.path())).await?;
    let compiled = first.plugin("seed-ttl-table").await?;
    ensure!(compiled["compile"]["source"] == "compiled", "{compiled}");
    drop(first);
    let second = PluginBridge::start(&files, "", Some(shared.path())).await?;
    let cached = second.plugin("seed-ttl-table").await?;
    ensure!(cached["compile"]["source"] == "cached", "{cached}");
    ensure!(cached["hash"] == compiled["hash"], "{cached}");
    Ok(())
}
