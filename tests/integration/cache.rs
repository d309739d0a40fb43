//! The response cache through the real binary: repeated reads served from the cache,
//! writes that show through at once, single-flight for concurrent misses, fills that lose
//! the race against a write, errors and private results kept out, lists refreshed on
//! `list_changed`, the admin routes, the 2026-07-28 freshness hints, and progress calls
//! that always reach the server. Backend calls are counted on the server side (the demo
//! server's `--calls-log`), cache behaviour through `/admin/cache/stats` and `/metrics`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::{
    Bridge, RawSession, SETTLE, count_calls, demo_server_toml, eventually, http, node_server_toml,
    poll_until, repo_root, run_python_client, start_bridge, test_deps,
};

/// The seed's TTL table for the demo server, as the example config carries it.
const SEED_TTLS: &str = r#"
[cache]
enabled = true

[cache.ttl.demo]
get_clients = "5m"
get_habits = "5m"
get_tasks = "60s"
get_today_metrics = "60s"
create_task = 0
update_task = 0
complete_task = 0
"#;

/// The seed's invalidation rule for `create_task`.
const SEED_RULES: &str = r#"
[[cache.invalidate]]
server = "demo"
on = "create_task"
tools = ["get_tasks", "get_today_metrics"]
"#;

/// The cache on with its defaults and no rules.
const CACHE_ON: &str = "\n[cache]\nenabled = true\n";

/// The metric family counting how cacheable requests were served.
const REQUESTS: &str = "mcp_bridge_cache_requests_total";

/// The metric family counting invalidations by reason.
const INVALIDATIONS: &str = "mcp_bridge_cache_invalidations_total";

/// How long a Python client run may take before the test gives up on it.
const CLIENT_DEADLINE: Duration = Duration::from_secs(90);

/// A bridge serving the demo server as `demo` (one process, so one task store), with
/// its calls log in a directory the fixture keeps alive.
struct Demo {
    bridge: Bridge,
    calls: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Starts the bridge; `cache_toml` must hold a `[cache]` section of its own.
    async fn start(demo_args: &[&str], cache_toml: &str) -> Result<Demo> {
        let dir = tempfile::tempdir()?;
        let calls = dir.path().join("calls.log");
        let calls_arg = calls.display().to_string();
        let mut args = vec!["--calls-log", calls_arg.as_str()];
        args.extend_from_slice(demo_args);
        let server = demo_server_toml("demo", &args, "max_connections = 1");
        let bridge = start_bridge(&format!("{server}\n{cache_toml}"))?;
        bridge.wait_ready().await?;
        Ok(Demo {
            bridge,
            calls,
            _dir: dir,
        })
    }

    /// How many `tools/call` of `tool` the demo server received.
    fn calls(&self, tool: &str) -> usize {
        count_calls(&self.calls, tool)
    }

    /// Fails unless the demo server received exactly these calls per tool.
    fn expect_calls(&self, expected: &[(&str, usize)], after: &str) -> Result<()> {
        let got: Vec<(&str, usize)> = expected
            .iter()
            .map(|(tool, _)| (*tool, self.calls(tool)))
            .collect();
        ensure!(
            got == expected,
            "after {after}: backend calls {got:?}, expected {expected:?}"
        );
        Ok(())
    }

    /// Opens a session on the demo server's endpoint.
    async fn session(&self) -> Result<RawSession> {
        RawSession::open(&self.bridge.url("/mcp/demo")).await
    }
}

/// `GET /admin/cache/stats`.
async fn cache_stats(bridge: &Bridge) -> Result<Value> {
    let response = http().get(bridge.url("/admin/cache/stats")).send().await?;
    ensure!(
        response.status() == 200,
        "cache stats answered {}",
        response.status()
    );
    Ok(response.json().await?)
}

/// `GET /admin/cache/stats` once `done` holds for it, or the last answer after
/// [`SETTLE`]. The entry count and size come from moka, which applies inserts and
/// removals (including a `DELETE /admin/cache`) to its counts lazily, on its own
/// maintenance; the hit and miss counters are exact at once.
async fn cache_stats_when(bridge: &Bridge, done: impl Fn(&Value) -> bool) -> Result<Value> {
    poll_until(
        SETTLE,
        async || cache_stats(bridge).await,
        |stats| stats.as_ref().is_ok_and(&done),
    )
    .await
}

/// One counter of the cache stats.
fn counter(stats: &Value, field: &str) -> u64 {
    stats[field].as_u64().unwrap_or(u64::MAX)
}

/// The value of one Prometheus sample whose labels include `labels` (0 when absent).
async fn metric(bridge: &Bridge, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    let text = http()
        .get(bridge.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let matching = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let Some((series, _)) = line.rsplit_once(' ') else {
                return false;
            };
            let (metric_name, label_text) = series.split_once('{').unwrap_or((series, ""));
            metric_name == name
                && labels
                    .iter()
                    .all(|(key, value)| label_text.contains(&format!("{key}=\"{value}\"")))
        });
    Ok(matching
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0.0))
}

/// `mcp_bridge_cache_requests_total{result}`.
async fn served(bridge: &Bridge, result: &str) -> Result<f64> {
    metric(bridge, REQUESTS, &[("result", result)]).await
}

/// `mcp_bridge_cache_invalidations_total{reason}`.
async fn invalidations(bridge: &Bridge, reason: &str) -> Result<f64> {
    metric(bridge, INVALIDATIONS, &[("reason", reason)]).await
}

/// Runs `tests/clients/cache_client.py` (the official Python SDK, its own client cache
/// off) with a spec and returns its report.
async fn python(spec: Value) -> Result<Value> {
    let arg = spec.to_string();
    let args = [arg.as_str()];
    let run = run_python_client("cache_client.py", &args);
    tokio::time::timeout(CLIENT_DEADLINE, run)
        .await
        .map_err(|_| {
            anyhow!("the Python client did not finish within {CLIENT_DEADLINE:?}: {spec}")
        })?
}

/// A `tools/call` step for the Python client.
fn call_step(tool: &str, args: Value) -> Value {
    json!({"op": "call", "tool": tool, "args": args})
}

/// The `result` of a raw JSON-RPC response, or an error naming what came back.
fn result_of(response: Value) -> Result<Value> {
    response
        .get("result")
        .cloned()
        .with_context(|| format!("no result in {response}"))
}

/// A raw `tools/call` on a session, returning its `result`.
async fn call(session: &RawSession, tool: &str, arguments: Value) -> Result<Value> {
    result_of(session.call_tool(json!(tool), tool, arguments).await?)
}

/// The titles of the tasks in a `get_tasks` result (raw or from the Python client).
fn titles(structured: &Value) -> Vec<String> {
    let tasks = structured["tasks"].as_array().cloned().unwrap_or_default();
    tasks
        .iter()
        .filter_map(|task| task["title"].as_str().map(str::to_owned))
        .collect()
}

/// The entity names in a memory server `read_graph` result from the Python client.
fn entity_names(call: &Value) -> Vec<String> {
    let graph = if call["structured"].is_object() {
        call["structured"].clone()
    } else {
        serde_json::from_str(call["text"][0].as_str().unwrap_or_default()).unwrap_or_default()
    };
    let entities = graph["entities"].as_array().cloned().unwrap_or_default();
    entities
        .iter()
        .filter_map(|entity| entity["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn memory_read_graph_is_served_from_cache_and_never_stale_in_both_eras() -> Result<()> {
    let deps = test_deps();
    let dir = tempfile::tempdir()?;
    let memory_file = dir.path().join("memory.jsonl").display().to_string();
    let env = [("MEMORY_FILE_PATH", memory_file.as_str())];
    let one = "max_connections = 1";
    let server = node_server_toml("memory", &deps.server_memory, &[], &env, one);
    let bridge = start_bridge(&format!("{server}{CACHE_ON}"))?;
    bridge.wait_ready().await?;
    let hit_labels = [
        ("server", "memory"),
        ("method", "tools/call"),
        ("outcome", "hit"),
    ];
    for mode in ["legacy", "2026-07-28"] {
        // Each era starts cold, so its first read_graph is not the other era's last fill.
        let cleared = http().delete(bridge.url("/admin/cache")).send().await?;
        ensure!(
            cleared.status() == 200,
            "DELETE /admin/cache: {}",
            cleared.status()
        );
        let entity = format!("cache-entity-{}", mode.replace('-', ""));
        let before = cache_stats(&bridge).await?;
        let tool_hits_before = metric(&bridge, "mcp_bridge_calls_total", &hit_labels).await?;
        let observations = [format!("{entity} was written through the cache")];
        let entities = json!({"entities": [{"name": entity, "entityType": "test", "observations": observations}]});
        let read = call_step("read_graph", json!({}));
        let steps = [
            read.clone(),
            read.clone(),
            call_step("create_entities", entities),
            read,
        ];
        let url = bridge.url("/mcp/memory");
        let report = python(json!({"url": url, "mode": mode, "steps": steps})).await?;
        let results = &report["results"];
        ensure!(
            results[0] == results[1],
            "{mode}: a repeated read_graph changed: {report}"
        );
        let (early, late) = (entity_names(&results[1]), entity_names(&results[3]));
        ensure!(
            !early.contains(&entity),
            "{mode}: {entity} existed too early: {report}"
        );
        ensure!(
            late.contains(&entity),
            "{mode}: read_graph after the write lacks {entity}: {late:?}"
        );
        // The second read_graph was a hit; the one after the write was not.
        let tool_hits =
            metric(&bridge, "mcp_bridge_calls_total", &hit_labels).await? - tool_hits_before;
        ensure!(
            tool_hits == 1.0,
            "{mode}: {tool_hits} tools/call hits on memory, expected 1"
        );
        let after = cache_stats(&bridge).await?;
        let hits = counter(&after, "hits") - counter(&before, "hits");
        ensure!(
            hits == 1,
            "{mode}: stats hits moved by {hits}, expected 1: {after}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn seed_table_keeps_reads_cached_and_create_task_drops_only_what_its_rule_names() -> Result<()>
{
    let demo = Demo::start(&[], &format!("{SEED_TTLS}{SEED_RULES}")).await?;
    let read = |tool: &str| call_step(tool, json!({}));
    let steps = [
        read("get_tasks"),
        read("get_tasks"),
        read("get_clients"),
        read("get_today_metrics"),
        call_step("create_task", json!({"title": "written through the cache"})),
        read("get_tasks"),
        read("get_clients"),
        read("get_today_metrics"),
    ];
    let url = demo.bridge.url("/mcp/demo");
    let report = python(json!({"url": url, "mode": "legacy", "steps": steps})).await?;
    let results = &report["results"];
    ensure!(
        results[0] == results[1],
        "a repeated get_tasks changed: {report}"
    );
    let after_write = titles(&results[5]["structured"]);
    let created = after_write
        .iter()
        .any(|title| title == "written through the cache");
    ensure!(
        created,
        "get_tasks after create_task is stale: {after_write:?}"
    );
    ensure!(results[2] == results[6], "get_clients changed: {report}");
    let total = |index: usize| results[index]["structured"]["total_tasks"].as_u64();
    let totals = (total(3), total(7));
    ensure!(
        totals.1.is_some() && totals.1 == totals.0.map(|n| n + 1),
        "metrics {totals:?}: {report}"
    );
    // The reads the rule names went back to the backend after the write; get_clients did
    // not, since the rule replaced the drop-the-whole-server default.
    let expected = [
        ("get_tasks", 2),
        ("get_clients", 1),
        ("get_today_metrics", 2),
        ("create_task", 1),
    ];
    demo.expect_calls(&expected, "create_task under the seed rule")
}

#[tokio::test]
async fn without_rules_a_write_drops_every_entry_of_its_server() -> Result<()> {
    let demo = Demo::start(&[], SEED_TTLS).await?;
    let session = demo.session().await?;
    for tool in ["get_tasks", "get_clients", "get_tasks", "get_clients"] {
        call(&session, tool, json!({})).await?;
    }
    demo.expect_calls(&[("get_tasks", 1), ("get_clients", 1)], "repeated reads")?;
    let writes_before = invalidations(&demo.bridge, "write").await?;
    call(
        &session,
        "create_task",
        json!({"title": "no rule names me"}),
    )
    .await?;
    let tasks = call(&session, "get_tasks", json!({})).await?;
    call(&session, "get_clients", json!({})).await?;
    let created = titles(&tasks["structuredContent"])
        .iter()
        .any(|t| t == "no rule names me");
    ensure!(created, "get_tasks after create_task is stale: {tasks}");
    demo.expect_calls(
        &[("get_tasks", 2), ("get_clients", 2)],
        "a write with no rule",
    )?;
    let writes = invalidations(&demo.bridge, "write").await? - writes_before;
    ensure!(writes >= 1.0, "no write invalidation was counted");
    Ok(())
}

/// Sends `count` identical `get_tasks` reads at once, spread over `sessions`, and
/// returns their results.
async fn concurrent_reads(sessions: &[Arc<RawSession>], count: usize) -> Result<Vec<Value>> {
    let mut reads = JoinSet::new();
    for id in 0..count {
        let session = sessions[id % sessions.len()].clone();
        let arguments = json!({"status": "all"});
        reads.spawn(async move { session.call_tool(json!(id), "get_tasks", arguments).await });
    }
    let mut results = Vec::new();
    while let Some(joined) = reads.join_next().await {
        results.push(result_of(joined??)?);
    }
    ensure!(
        results.iter().all(|result| *result == results[0]),
        "the reads did not agree"
    );
    ensure!(
        !titles(&results[0]["structuredContent"]).is_empty(),
        "no tasks: {}",
        results[0]
    );
    Ok(results)
}

/// The seed table with room for 128 callers to wait on one fill.
fn coalescing_cache() -> String {
    SEED_TTLS.replace(
        "enabled = true",
        "enabled = true\nmax_coalesced_waiters = 128",
    )
}

#[tokio::test]
async fn one_hundred_concurrent_identical_reads_make_one_backend_call() -> Result<()> {
    let demo = Demo::start(&["--latency", "300ms"], &coalescing_cache()).await?;
    let session = Arc::new(demo.session().await?);
    let before = cache_stats(&demo.bridge).await?;
    let coalesced_before = served(&demo.bridge, "coalesced").await?;
    concurrent_reads(&[session], 100).await?;
    demo.expect_calls(&[("get_tasks", 1)], "100 concurrent identical reads")?;
    let after = cache_stats(&demo.bridge).await?;
    let coalesced = counter(&after, "coalesced") - counter(&before, "coalesced");
    let hits = counter(&after, "hits") - counter(&before, "hits");
    ensure!(coalesced >= 1, "nothing was coalesced: {after}");
    ensure!(
        coalesced + hits == 99,
        "of 99 followers {coalesced} coalesced and {hits} hit: {after}"
    );
    let moved = served(&demo.bridge, "coalesced").await? - coalesced_before;
    ensure!(moved >= 1.0, "the coalesced metric did not move");
    Ok(())
}

#[tokio::test]
async fn concurrent_identical_reads_from_many_sessions_make_one_backend_call() -> Result<()> {
    // get_tasks is shared (no cacheScope: private), so it is one key for every session,
    // and clients that each hold a session of their own must not each reach the server.
    let demo = Demo::start(&["--latency", "300ms"], &coalescing_cache()).await?;
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(Arc::new(demo.session().await?));
    }
    concurrent_reads(&sessions, 100).await?;
    demo.expect_calls(&[("get_tasks", 1)], "100 identical reads from 20 sessions")
}

#[tokio::test]
async fn a_fill_that_started_before_a_write_is_not_stored() -> Result<()> {
    // No rules: create_task drops every demo entry, including a debug_sleep in flight.
    // The write must land while the slow read runs, however slowly a loaded machine
    // reports that the read reached the backend.
    const SLOW_MS: u64 = 4000;
    let demo = Demo::start(&[], CACHE_ON).await?;
    let session = Arc::new(demo.session().await?);
    // Control: without a write in between, the repeat is a hit.
    call(&session, "debug_sleep", json!({"ms": 1})).await?;
    call(&session, "debug_sleep", json!({"ms": 1})).await?;
    demo.expect_calls(&[("debug_sleep", 1)], "a repeated debug_sleep")?;
    let slow = {
        let session = session.clone();
        let arguments = json!({"ms": SLOW_MS});
        tokio::spawn(async move {
            session
                .call_tool(json!("slow"), "debug_sleep", arguments)
                .await
        })
    };
    let reached = eventually(SETTLE, async || demo.calls("debug_sleep") == 2).await;
    ensure!(reached, "the slow read never reached the backend");
    call(
        &session,
        "create_task",
        json!({"title": "lands while a read is in flight"}),
    )
    .await?;
    let slow = result_of(slow.await??)?;
    ensure!(
        slow["structuredContent"]["slept_ms"] == SLOW_MS,
        "slow read: {slow}"
    );
    let stats = cache_stats(&demo.bridge).await?;
    ensure!(
        counter(&stats, "stale_fills_discarded") >= 1,
        "no stale fill was discarded: {stats}"
    );
    // Had the slow read's result been stored, this would be a hit.
    call(&session, "debug_sleep", json!({"ms": SLOW_MS})).await?;
    demo.expect_calls(&[("debug_sleep", 3)], "the read that followed the write")
}

#[tokio::test]
async fn is_error_results_are_not_cached() -> Result<()> {
    let demo = Demo::start(&[], SEED_TTLS).await?;
    let session = demo.session().await?;
    for _ in 0..2 {
        let result = call(&session, "get_tasks", json!({"limit": "not a number"})).await?;
        ensure!(result["isError"] == true, "expected isError: {result}");
    }
    demo.expect_calls(&[("get_tasks", 2)], "two calls answered with isError")?;
    // Control: the same tool with valid arguments is cached.
    call(&session, "get_tasks", json!({})).await?;
    call(&session, "get_tasks", json!({})).await?;
    demo.expect_calls(&[("get_tasks", 3)], "two valid calls")
}

#[tokio::test]
async fn json_rpc_errors_are_not_cached() -> Result<()> {
    let demo = Demo::start(&["--fail-rate", "1.0"], SEED_TTLS).await?;
    let session = demo.session().await?;
    for id in 0..2 {
        let response = session.call_tool(json!(id), "get_tasks", json!({})).await?;
        ensure!(
            response["error"]["code"] == -32603,
            "expected the injected failure: {response}"
        );
    }
    demo.expect_calls(
        &[("get_tasks", 2)],
        "two calls answered with a JSON-RPC error",
    )?;
    let stats = cache_stats(&demo.bridge).await?;
    ensure!(
        counter(&stats, "entries") == 0,
        "an error was stored: {stats}"
    );
    Ok(())
}

#[tokio::test]
async fn private_results_never_cross_principals() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let calls = dir.path().join("calls.log");
    let script = repo_root().join("tests/clients/cache_private_server.py");
    let calls_arg = calls.display().to_string();
    let args = [
        &script.display().to_string(),
        "--calls-log",
        &calls_arg,
        "--delay-ms",
        "300",
    ];
    let args = serde_json::to_string(&args)?;
    let server =
        format!("[servers.private]\ncommand = \"python3\"\nargs = {args}\nmax_connections = 1\n");
    let bridge = start_bridge(&format!("{server}{CACHE_ON}"))?;
    bridge.wait_ready().await?;
    let url = bridge.url("/mcp/private");
    let whoami = async |session: &RawSession| -> Result<Option<u64>> {
        Ok(call(session, "whoami", json!({})).await?["structuredContent"]["call"].as_u64())
    };
    // Each session gets the server's answer for it, and its repeat is a hit from its own
    // partition: never the other session's answer.
    let (alice, bob) = (RawSession::open(&url).await?, RawSession::open(&url).await?);
    let first = (whoami(&alice).await?, whoami(&bob).await?);
    ensure!(
        first == (Some(1), Some(2)),
        "first answers (alice, bob) = {first:?}"
    );
    let repeat = (whoami(&alice).await?, whoami(&bob).await?);
    ensure!(
        repeat == first,
        "repeated answers (alice, bob) = {repeat:?}, first {first:?}"
    );
    ensure!(
        count_calls(&calls, "whoami") == 2,
        "whoami repeats reached the server"
    );
    // Two sessions asking at the same moment do not share one fill: either may be private.
    let (carol, dave) = (RawSession::open(&url).await?, RawSession::open(&url).await?);
    let (for_carol, for_dave) = tokio::join!(whoami(&carol), whoami(&dave));
    let mut together = [for_carol?, for_dave?];
    together.sort();
    ensure!(
        together == [Some(3), Some(4)],
        "concurrent answers (carol, dave) = {together:?}"
    );
    // A 2026-07-28 client has no session: it must get an answer of its own.
    let steps = [call_step("whoami", json!({}))];
    let report = python(json!({"url": url, "mode": "2026-07-28", "steps": steps})).await?;
    let stateless = report["results"][0]["structured"]["call"].as_u64();
    ensure!(
        stateless == Some(5),
        "a sessionless client got {stateless:?}: {report}"
    );
    Ok(())
}

/// The tool names in a `tools/list` result.
fn tool_names(list: &Value) -> Vec<String> {
    let tools = list["tools"].as_array().cloned().unwrap_or_default();
    tools
        .iter()
        .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn tools_list_is_cached_until_the_server_says_it_changed() -> Result<()> {
    // The toggle is a write; a rule with no tools makes it drop nothing itself, so only the
    // list_changed notification can refresh the list.
    let rule =
        "\n[[cache.invalidate]]\nserver = \"demo\"\non = \"debug_toggle_tool\"\ntools = []\n";
    let demo = Demo::start(&[], &format!("{CACHE_ON}{rule}")).await?;
    let bridge = &demo.bridge;
    let session = demo.session().await?;
    let extra = "extra_tool".to_owned();
    let list = result_of(session.request(json!(1), "tools/list", json!({})).await?)?;
    ensure!(
        !tool_names(&list).contains(&extra),
        "extra_tool listed too early: {list}"
    );
    let before = cache_stats(bridge).await?;
    let again = result_of(session.request(json!(2), "tools/list", json!({})).await?)?;
    let after = cache_stats(bridge).await?;
    ensure!(again == list, "the cached list differs: {again}");
    let hits = counter(&after, "hits") - counter(&before, "hits");
    ensure!(hits == 1, "the second tools/list was not a hit: {after}");
    call(&session, "get_clients", json!({})).await?;
    let list_changed = invalidations(bridge, "list_changed").await?;
    let writes = invalidations(bridge, "write").await?;
    let toggled = call(&session, "debug_toggle_tool", json!({})).await?;
    ensure!(
        toggled["structuredContent"]["extra_tool"] == true,
        "toggle: {toggled}"
    );
    let noticed = eventually(SETTLE, async || {
        invalidations(bridge, "list_changed")
            .await
            .is_ok_and(|now| now > list_changed)
    })
    .await;
    ensure!(
        noticed,
        "no list_changed invalidation was counted after the notification"
    );
    let refreshed = result_of(session.request(json!(3), "tools/list", json!({})).await?)?;
    ensure!(
        tool_names(&refreshed).contains(&extra),
        "the list was not refreshed: {refreshed}"
    );
    // The write itself dropped nothing: get_clients is still cached.
    call(&session, "get_clients", json!({})).await?;
    demo.expect_calls(&[("get_clients", 1)], "a toggle whose rule names no tools")?;
    let write_delta = invalidations(bridge, "write").await? - writes;
    ensure!(
        write_delta == 0.0,
        "the toggle counted a write invalidation"
    );
    Ok(())
}

/// `POST /admin/cache/invalidate` with a raw body: the status and the parsed answer.
async fn invalidate(bridge: &Bridge, body: &str) -> Result<(u16, Value)> {
    let url = bridge.url("/admin/cache/invalidate");
    let request = http().post(url).header("content-type", "application/json");
    let response = request.body(body.to_owned()).send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

#[tokio::test]
async fn admin_routes_report_invalidate_and_clear_the_cache() -> Result<()> {
    let demo = Demo::start(&[], SEED_TTLS).await?;
    let bridge = &demo.bridge;
    let session = demo.session().await?;
    let stats = cache_stats(bridge).await?;
    for field in [
        "hits",
        "misses",
        "entries",
        "bytes",
        "coalesced",
        "stale_served",
    ] {
        ensure!(
            stats[field].is_u64(),
            "stats field {field} is not a count: {stats}"
        );
    }
    ensure!(
        stats["hit_rate"].is_number(),
        "stats hit_rate is not a number: {stats}"
    );
    let evictions = &stats["evictions"];
    ensure!(
        evictions.is_object() || evictions.is_u64(),
        "stats evictions: {stats}"
    );
    for tool in ["get_tasks", "get_clients", "get_tasks", "get_clients"] {
        call(&session, tool, json!({})).await?;
    }
    let stats = cache_stats_when(bridge, |stats| {
        counter(stats, "entries") == 2 && counter(stats, "bytes") > 0
    })
    .await?;
    let (hits, misses) = (counter(&stats, "hits"), counter(&stats, "misses"));
    ensure!(
        (hits, misses) == (2, 2),
        "(hits, misses) = ({hits}, {misses}): {stats}"
    );
    let rate = stats["hit_rate"].as_f64().unwrap_or(-1.0);
    ensure!((rate - 0.5).abs() < 1e-9, "hit_rate {rate}: {stats}");
    let (entries, bytes) = (counter(&stats, "entries"), counter(&stats, "bytes"));
    ensure!(
        entries == 2 && bytes > 0,
        "entries {entries}, bytes {bytes}: {stats}"
    );
    // By server and tool: only get_tasks goes back to the backend.
    let (status, answer) = invalidate(bridge, r#"{"server": "demo", "tool": "get_tasks"}"#).await?;
    ensure!(
        status == 200 && answer["dropped"] == 1,
        "invalidate by tool: {status} {answer}"
    );
    call(&session, "get_tasks", json!({})).await?;
    call(&session, "get_clients", json!({})).await?;
    demo.expect_calls(
        &[("get_tasks", 2), ("get_clients", 1)],
        "invalidating get_tasks",
    )?;
    // By server: everything of demo goes.
    let (status, answer) = invalidate(bridge, r#"{"server": "demo"}"#).await?;
    ensure!(
        status == 200 && answer["dropped"] == 2,
        "invalidate by server: {status} {answer}"
    );
    call(&session, "get_clients", json!({})).await?;
    demo.expect_calls(&[("get_clients", 2)], "invalidating the server")?;
    // A tag nothing carries drops nothing.
    let (status, answer) = invalidate(bridge, r#"{"tag": "no-such-tag"}"#).await?;
    ensure!(
        status == 200 && answer["dropped"] == 0,
        "invalidate by tag: {status} {answer}"
    );
    // DELETE empties the cache.
    let response = http().delete(bridge.url("/admin/cache")).send().await?;
    ensure!(
        response.status() == 200,
        "DELETE /admin/cache answered {}",
        response.status()
    );
    let stats = cache_stats_when(bridge, |stats| counter(stats, "entries") == 0).await?;
    ensure!(
        counter(&stats, "entries") == 0,
        "entries after DELETE: {stats}"
    );
    call(&session, "get_clients", json!({})).await?;
    demo.expect_calls(&[("get_clients", 3)], "DELETE /admin/cache")?;
    let bad = [
        "not json",
        "{}",
        r#"{"tool": "get_tasks"}"#,
        r#"{"server": "demo", "tag": "x"}"#,
    ];
    for body in bad.into_iter().chain([r#"{"server": 7}"#]) {
        let (status, answer) = invalidate(bridge, body).await?;
        ensure!(
            status == 400,
            "invalidate with {body} answered {status}: {answer}"
        );
    }
    call(&session, "get_clients", json!({})).await?;
    demo.expect_calls(&[("get_clients", 3)], "bad invalidation requests")
}

#[tokio::test]
async fn sessionless_clients_receive_the_bridges_ttl_and_scope() -> Result<()> {
    let cache = "\n[cache]\nenabled = true\nlist_ttl = \"30s\"\ndefault_ttl = \"45s\"\n";
    let demo = Demo::start(&[], cache).await?;
    let hits_before = served(&demo.bridge, "hit").await?;
    let (list, read) = (
        json!({"op": "list_tools"}),
        json!({"op": "read_resource", "uri": "demo://tasks"}),
    );
    let steps = [
        list.clone(),
        read.clone(),
        json!({"op": "sleep", "seconds": 1.2}),
        list,
        read,
    ];
    let url = demo.bridge.url("/mcp/demo");
    let report = python(json!({"url": url, "mode": "2026-07-28", "steps": steps})).await?;
    ensure!(report["protocol_version"] == "2026-07-28", "{report}");
    let results = &report["results"];
    let ttl = |index: usize| results[index]["ttl_ms"].as_u64().unwrap_or(u64::MAX);
    let public = |index: usize| results[index]["cache_scope"] == "public";
    // The fill tells the client the whole TTL; a later hit only what is left of it.
    ensure!(ttl(0) == 30_000 && public(0), "tools/list fill: {report}");
    ensure!(
        ttl(1) == 45_000 && public(1),
        "resources/read fill: {report}"
    );
    ensure!(
        ttl(3) > 0 && ttl(3) <= 29_000 && public(3),
        "tools/list hit: {report}"
    );
    ensure!(
        ttl(4) > 0 && ttl(4) <= 44_000 && public(4),
        "resources/read hit: {report}"
    );
    ensure!(results[0]["tools"] == results[3]["tools"], "{report}");
    let hits = served(&demo.bridge, "hit").await? - hits_before;
    ensure!(hits >= 2.0, "the repeats were not hits ({hits})");
    Ok(())
}

#[tokio::test]
async fn calls_with_a_progress_token_always_reach_the_server() -> Result<()> {
    let demo = Demo::start(&[], SEED_TTLS).await?;
    let progress = |with: bool| json!({"op": "call", "tool": "debug_progress", "args": {"steps": 3}, "progress": with});
    let steps = [
        progress(true),
        progress(true),
        progress(false),
        progress(false),
    ];
    let url = demo.bridge.url("/mcp/demo");
    let report = python(json!({"url": url, "mode": "legacy", "steps": steps})).await?;
    for index in [0, 1] {
        let updates = report["results"][index]["progress"]
            .as_array()
            .map_or(0, Vec::len);
        ensure!(
            updates == 3,
            "call {index} got {updates} progress updates: {report}"
        );
    }
    // Both token-carrying calls reached the server; of the two without one, only the
    // first did (the control: the same call is otherwise cacheable).
    demo.expect_calls(
        &[("debug_progress", 3)],
        "two calls with a progress token and two without",
    )
}
