//! Who shares a server's processes (`isolation`), through the real binary with several
//! principals (API keys) and the demo server, whose task store lives in each process's
//! memory: one shared pool shows every caller the same state; `principal` gives each
//! principal processes of its own and `session` each MCP session one (stopped by a DELETE),
//! or each `Mcp-Bridge-Affinity` key of a sessionless principal; per-principal environments
//! and secrets reach only their principal's process and never an output; the caller's
//! identity and the W3C trace context reach the backend in `_meta`; and an isolated server's
//! (or one told who calls) cached results stay with their principal. The caps are tested in
//! `isolation_caps.rs`, with these helpers.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::{Session, api_key_toml, send, tool_call};
use crate::support::{
    Bridge, SETTLE, bridge_exe, count_calls, demo_server_toml, http, poll_until, process_alive,
    start_bridge, start_bridge_with_env, toml_string,
};

/// The server every test here configures.
pub(crate) const SERVER: &str = "iso";

/// The per-server endpoint.
pub(crate) const ENDPOINT: &str = "/mcp/iso";

/// The credential of the principal that reads `/admin/*` (role "admin").
pub(crate) const ADMIN_KEY: &str = "root-iso-key-7e21c9d04b3a";

/// How long any one step of these tests may take before it counts as hung.
pub(crate) const STEP: Duration = Duration::from_secs(30);

/// The API key of a test principal (at least 16 printable characters).
pub(crate) fn key_of(principal: &str) -> String {
    format!("{principal}-iso-key-5c8e1f3a90d2")
}

/// `[[auth.api_keys]]` entries for `principals` (no roles) and the admin.
pub(crate) fn keys(principals: &[&str]) -> String {
    let mut toml: String = principals
        .iter()
        .map(|principal| api_key_toml(principal, &[], &key_of(principal)))
        .collect::<Vec<_>>()
        .join("\n");
    toml.push('\n');
    toml.push_str(&api_key_toml("root", &["admin"], ADMIN_KEY));
    toml
}

/// A marker no other test or run shares, for the demo server's `--name` (so `/proc` tells
/// this test's backends from everyone else's).
pub(crate) fn unique_marker(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("iso-{what}-{}-{nanos}", std::process::id())
}

/// Starts a bridge with `config` (and `env` in its environment) and waits until it is ready.
pub(crate) async fn start(config: &str, env: &[(&str, &str)]) -> Result<Bridge> {
    crate::support::install_tls_provider();
    let bridge = if env.is_empty() {
        start_bridge(config)?
    } else {
        start_bridge_with_env(config, env)?
    };
    bridge.wait_ready().await?;
    Ok(bridge)
}

/// Opens a session on the isolated server as `principal`.
pub(crate) async fn open(bridge: &Bridge, principal: &str) -> Result<Session> {
    tokio::time::timeout(
        STEP,
        Session::open(&bridge.url(ENDPOINT), &key_of(principal)),
    )
    .await
    .with_context(|| format!("initialize for {principal} took over {STEP:?}"))?
    .with_context(|| format!("initialize for {principal}"))
}

/// Calls `tool` on `session`, bounded in time, returning its `structuredContent`.
pub(crate) async fn structured(session: &Session, tool: &str, arguments: Value) -> Result<Value> {
    tokio::time::timeout(STEP, session.structured(tool, arguments))
        .await
        .with_context(|| format!("{tool} took over {STEP:?}"))?
}

/// Calls `tool` on `session`, bounded in time, returning the JSON-RPC response.
pub(crate) async fn call(session: &Session, tool: &str, arguments: Value) -> Result<Value> {
    tokio::time::timeout(STEP, session.call(tool, arguments))
        .await
        .with_context(|| format!("{tool} took over {STEP:?}"))?
}

/// The titles of the active tasks the session's process holds.
pub(crate) async fn task_titles(session: &Session) -> Result<Vec<String>> {
    let tasks = structured(session, "get_tasks", json!({})).await?;
    let list = tasks["tasks"]
        .as_array()
        .with_context(|| format!("get_tasks answered no task list: {tasks}"))?;
    Ok(list
        .iter()
        .filter_map(|task| task["title"].as_str().map(str::to_owned))
        .collect())
}

pub(crate) async fn create_task(session: &Session, title: &str) -> Result<()> {
    structured(session, "create_task", json!({ "title": title })).await?;
    Ok(())
}

/// The pid of the backend process serving `session`.
pub(crate) async fn backend_pid(session: &Session) -> Result<u32> {
    let env = structured(session, "debug_env", json!({ "names": [] })).await?;
    env["pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .with_context(|| format!("debug_env answered no pid: {env}"))
}

/// `GET path` with the admin's credential, as JSON.
pub(crate) async fn admin_json(bridge: &Bridge, path: &str) -> Result<Value> {
    let reply = send(Method::GET, &bridge.url(path), Some(ADMIN_KEY), None, None).await?;
    ensure!(reply.status == 200, "{path}: {}", reply.explanation());
    serde_json::from_str(&reply.body).with_context(|| format!("{path} is not JSON"))
}

/// The isolated server's entry in `/admin/stats`.
pub(crate) async fn server_stats(bridge: &Bridge) -> Result<Value> {
    let stats = admin_json(bridge, "/admin/stats").await?;
    stats["servers"]
        .as_array()
        .and_then(|servers| servers.iter().find(|s| s["server"] == SERVER).cloned())
        .with_context(|| format!("no stats for {SERVER}: {stats}"))
}

/// The group keys `/admin/stats` lists for the server, sorted.
pub(crate) fn group_keys(stats: &Value) -> Vec<String> {
    let mut keys: Vec<String> = stats["groups"]
        .as_array()
        .map(|groups| {
            groups
                .iter()
                .filter_map(|group| group["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

/// The pids of a group's processes in a server's stats.
pub(crate) fn group_pids(group: &Value) -> Vec<u64> {
    group["processes"]
        .as_array()
        .map(|processes| {
            processes
                .iter()
                .filter_map(|process| process["pid"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// The message of a JSON-RPC error response, or of a tool result with `isError: true`;
/// `None` when the call succeeded.
pub(crate) fn failure_message(response: &Value) -> Option<String> {
    if let Some(message) = response["error"]["message"].as_str() {
        return Some(message.to_owned());
    }
    if response["result"]["isError"] == true {
        return Some(response["result"]["content"].to_string());
    }
    None
}

/// The default: one pool for everyone, so one principal's write is every principal's state.
#[tokio::test]
async fn shared_mode_shows_every_principal_the_same_process() -> Result<()> {
    let server = demo_server_toml(SERVER, &[], "min_connections = 1\nmax_connections = 1");
    let bridge = start(&format!("{server}\n{}", keys(&["alice", "bob"])), &[]).await?;
    let alice = open(&bridge, "alice").await?;
    let bob = open(&bridge, "bob").await?;
    create_task(&alice, "alice-shared-task").await?;
    let seen = task_titles(&bob).await?;
    assert!(
        seen.iter().any(|title| title == "alice-shared-task"),
        "bob does not see the task alice created in the shared process: {seen:?}"
    );
    assert_eq!(backend_pid(&alice).await?, backend_pid(&bob).await?);
    let stats = server_stats(&bridge).await?;
    assert_eq!(stats["isolation"], "shared", "{stats}");
    assert_eq!(stats["max_total_processes"], 1, "{stats}");
    assert_eq!(
        stats["processes"].as_array().map(Vec::len),
        Some(1),
        "{stats}"
    );
    assert!(
        stats.get("groups").is_none(),
        "a shared server has no groups: {stats}"
    );
    Ok(())
}

/// `isolation = "principal"`: each principal's calls reach its own process, whichever of its
/// sessions it uses; no session of another principal ever sees its state.
#[tokio::test]
async fn principal_mode_keeps_each_principals_state_its_own() -> Result<()> {
    let server = demo_server_toml(SERVER, &[], "isolation = \"principal\"");
    let bridge = start(&format!("{server}\n{}", keys(&["alice", "bob"])), &[]).await?;
    let alice = [open(&bridge, "alice").await?, open(&bridge, "alice").await?];
    let bob = [open(&bridge, "bob").await?, open(&bridge, "bob").await?];

    create_task(&alice[0], "alice-secret-task").await?;
    create_task(&bob[1], "bob-own-task").await?;
    for (index, session) in alice.iter().enumerate() {
        let seen = task_titles(session).await?;
        assert!(
            seen.iter().any(|title| title == "alice-secret-task"),
            "alice's session {index} does not see her own task: {seen:?}"
        );
        assert!(
            !seen.iter().any(|title| title == "bob-own-task"),
            "alice's session {index} sees bob's task: {seen:?}"
        );
    }
    for (index, session) in bob.iter().enumerate() {
        let seen = task_titles(session).await?;
        assert!(
            !seen.iter().any(|title| title == "alice-secret-task"),
            "bob's session {index} sees alice's task: {seen:?}"
        );
        assert!(
            seen.iter().any(|title| title == "bob-own-task"),
            "bob's session {index} does not see his own task: {seen:?}"
        );
    }
    let alice_pids: BTreeSet<u32> =
        [backend_pid(&alice[0]).await?, backend_pid(&alice[1]).await?].into();
    let bob_pids: BTreeSet<u32> = [backend_pid(&bob[0]).await?, backend_pid(&bob[1]).await?].into();
    assert_eq!(
        alice_pids.len(),
        1,
        "alice's sessions reached several processes"
    );
    assert_eq!(
        bob_pids.len(),
        1,
        "bob's sessions reached several processes"
    );
    assert!(
        alice_pids.is_disjoint(&bob_pids),
        "alice and bob share a process"
    );

    let stats = server_stats(&bridge).await?;
    assert_eq!(stats["isolation"], "principal", "{stats}");
    assert_eq!(stats["evictions"], 0, "{stats}");
    assert_eq!(
        stats["reaped"],
        json!({ "idle": 0, "session_closed": 0 }),
        "{stats}"
    );
    assert_eq!(
        group_keys(&stats),
        ["principal:alice", "principal:bob"],
        "{stats}"
    );
    let groups = stats["groups"].as_array().cloned().unwrap_or_default();
    for group in &groups {
        let expected = if group["key"] == "principal:alice" {
            &alice_pids
        } else {
            &bob_pids
        };
        let pids: BTreeSet<u32> = group_pids(group)
            .into_iter()
            .filter_map(|pid| u32::try_from(pid).ok())
            .collect();
        assert_eq!(&pids, expected, "the group's processes: {group}");
    }
    Ok(())
}

/// `isolation = "session"`: each session of one principal has its own process, and a DELETE
/// of the session stops it (its group leaves `/admin/stats`, its pid leaves `/proc`).
#[tokio::test]
async fn session_mode_gives_each_session_a_process_that_delete_stops() -> Result<()> {
    let server = demo_server_toml(SERVER, &[], "isolation = \"session\"");
    let bridge = start(&format!("{server}\n{}", keys(&["alice"])), &[]).await?;
    let first = open(&bridge, "alice").await?;
    let second = open(&bridge, "alice").await?;
    create_task(&first, "first-session-task").await?;
    let seen_first = task_titles(&first).await?;
    let seen_second = task_titles(&second).await?;
    assert!(
        seen_first.iter().any(|title| title == "first-session-task"),
        "the first session lost its task: {seen_first:?}"
    );
    assert!(
        !seen_second
            .iter()
            .any(|title| title == "first-session-task"),
        "the second session sees the first's task: {seen_second:?}"
    );
    let (first_pid, second_pid) = (backend_pid(&first).await?, backend_pid(&second).await?);
    assert_ne!(first_pid, second_pid, "two sessions share a process");

    let stats = server_stats(&bridge).await?;
    assert_eq!(stats["isolation"], "session", "{stats}");
    let keys = group_keys(&stats);
    assert_eq!(keys.len(), 2, "{stats}");
    assert!(
        keys.iter().all(|key| key.starts_with("session:")),
        "{keys:?}"
    );

    let deleted = send(
        Method::DELETE,
        &bridge.url(ENDPOINT),
        Some(&key_of("alice")),
        Some(&first.id),
        None,
    )
    .await?;
    assert_eq!(deleted.status, 204, "{}", deleted.explanation());
    let holds_first = |stats: &Value| {
        stats["groups"].as_array().is_some_and(|groups| {
            groups
                .iter()
                .any(|group| group_pids(group).contains(&u64::from(first_pid)))
        })
    };
    let after = poll_until(
        SETTLE,
        async || server_stats(&bridge).await.unwrap_or(Value::Null),
        |stats| !stats.is_null() && !holds_first(stats) && group_keys(stats).len() == 1,
    )
    .await;
    assert!(
        !after.is_null() && !holds_first(&after) && group_keys(&after).len() == 1,
        "the deleted session's group is still listed: {after}"
    );
    assert_eq!(after["reaped"]["session_closed"], 1, "{after}");
    let gone = poll_until(SETTLE, async || process_alive(first_pid), |alive| !alive).await;
    assert!(
        !gone,
        "the deleted session's process {first_pid} still runs"
    );
    // The other session keeps its process and its state.
    assert_eq!(backend_pid(&second).await?, second_pid);
    assert!(process_alive(second_pid));
    Ok(())
}

/// The values of the per-principal secret in this test.
const ALICE_GH: &str = "gh-alice-value-1f9e3c7a";
const BOB_GH: &str = "gh-bob-value-6d2b8e40";

/// A config whose isolated server's environment names the caller and a per-principal
/// secret: alice's from the bridge's environment, bob's from `bob_file`, carol's nowhere.
fn secrets_config(bob_file: &std::path::Path) -> String {
    let server = demo_server_toml(
        SERVER,
        &[],
        "isolation = \"principal\"\nenv = { GH = \"${secret.GH}\", WHO = \"${principal.name}\" }",
    );
    format!(
        "{server}\n[principal_secrets.GH]\nalice = {{ env = \"ISO_TEST_ALICE_GH\" }}\n\
         bob = {{ file = {} }}\n\n{}",
        toml_string(&bob_file.display().to_string()),
        keys(&["alice", "bob", "carol"])
    )
}

/// `${secret.NAME}` and `${principal.name}` in `env`: each principal's process gets its own
/// values, a principal without a value gets an error naming the secret and itself, and
/// neither `check-config` nor the log shows a value.
#[tokio::test]
async fn per_principal_env_reaches_only_that_principals_process() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bob_file = dir.path().join("bob-gh");
    std::fs::write(&bob_file, format!("{BOB_GH}\n"))?;
    let config = secrets_config(&bob_file);
    let env = [("ISO_TEST_ALICE_GH", ALICE_GH)];
    let bridge = start(&config, &env).await?;

    let names = json!({ "names": ["GH", "WHO"] });
    let alice = open(&bridge, "alice").await?;
    let bob = open(&bridge, "bob").await?;
    let alice_env = structured(&alice, "debug_env", names.clone()).await?;
    let bob_env = structured(&bob, "debug_env", names.clone()).await?;
    assert_eq!(
        alice_env["env"],
        json!({ "GH": ALICE_GH, "WHO": "alice" }),
        "{alice_env}"
    );
    assert_eq!(
        bob_env["env"],
        json!({ "GH": BOB_GH, "WHO": "bob" }),
        "{bob_env}"
    );
    assert_ne!(
        alice_env["pid"], bob_env["pid"],
        "alice and bob share a process"
    );

    // Carol has no value of GH: her call fails, naming the secret and her, and no process
    // of hers starts.
    let carol = open(&bridge, "carol").await?;
    let refused = call(&carol, "debug_env", names.clone()).await?;
    let message = failure_message(&refused)
        .with_context(|| format!("carol's call succeeded without a value of GH: {refused}"))?;
    assert!(
        message.contains("GH") && message.contains("carol"),
        "the error names neither the secret nor the principal: {message}"
    );
    for secret in [ALICE_GH, BOB_GH] {
        assert!(!refused.to_string().contains(secret), "{refused}");
    }
    let stats = server_stats(&bridge).await?;
    assert_eq!(
        group_keys(&stats),
        ["principal:alice", "principal:bob"],
        "{stats}"
    );

    // check-config names the secret and who has it, never a value.
    let output = tokio::time::timeout(
        STEP,
        tokio::process::Command::new(bridge_exe())
            .args(["check-config", "--config"])
            .arg(&bridge.config_path)
            .envs(env)
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("check-config took too long")??;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "check-config failed:\n{printed}");
    assert!(
        printed.contains("GH"),
        "check-config does not name the secret:\n{printed}"
    );
    for secret in [ALICE_GH, BOB_GH] {
        assert!(
            !printed.contains(secret),
            "check-config printed a secret value:\n{printed}"
        );
        assert!(
            !bridge.log_text().contains(secret),
            "the bridge logged a secret value"
        );
    }
    Ok(())
}

/// The secret source variable (`env = "ISO_TEST_ALICE_GH"`) is the bridge's own environment,
/// which every backend inherits: bob's process must not find alice's value under that name.
#[tokio::test]
async fn a_secrets_source_variable_does_not_reach_other_principals() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bob_file = dir.path().join("bob-gh");
    std::fs::write(&bob_file, BOB_GH)?;
    let bridge = start(
        &secrets_config(&bob_file),
        &[("ISO_TEST_ALICE_GH", ALICE_GH)],
    )
    .await?;
    let bob = open(&bridge, "bob").await?;
    let bob_env = structured(
        &bob,
        "debug_env",
        json!({ "names": ["ISO_TEST_ALICE_GH", "GH"] }),
    )
    .await?;
    assert_eq!(bob_env["env"]["GH"], BOB_GH, "{bob_env}");
    assert_eq!(
        bob_env["env"]["ISO_TEST_ALICE_GH"],
        Value::Null,
        "bob's process inherited alice's secret from the bridge's environment: {bob_env}"
    );
    Ok(())
}

/// A valid W3C traceparent.
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// `tools/call` of `debug_meta` on `session` with extra HTTP headers and `params._meta`,
/// returning what the backend received in `_meta`.
async fn meta_seen(
    session: &Session,
    headers: &[(&str, &str)],
    meta: Option<Value>,
) -> Result<Value> {
    let mut message = tool_call(7, "debug_meta", json!({}));
    if let Some(meta) = meta {
        message["params"]["_meta"] = meta;
    }
    let mut request = http()
        .post(&session.url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .header("authorization", format!("Bearer {}", session.token))
        .header("mcp-session-id", &session.id);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(STEP, request.body(message.to_string()).send())
        .await
        .context("debug_meta took too long")??;
    let status = response.status();
    let response = crate::support::read_response(response).await?;
    ensure!(status == 200, "debug_meta: HTTP {status}: {response}");
    let result = &response["result"];
    ensure!(
        response.get("error").is_none() && result["isError"] != true,
        "debug_meta failed: {response}"
    );
    Ok(result["structuredContent"]["meta"].clone())
}

/// `identity_meta = true` names the caller (principal and roles, never a credential) in
/// `params._meta`; the W3C trace context from the HTTP header reaches the backend, and a
/// request's own `_meta.traceparent` wins over the header.
#[tokio::test]
async fn identity_and_trace_context_reach_the_backend_in_meta() -> Result<()> {
    let server = demo_server_toml(SERVER, &[], "identity_meta = true\nmax_connections = 1");
    let plain = demo_server_toml("plain", &[], "max_connections = 1");
    let config = format!(
        "{server}\n{plain}\n{}\n{}",
        api_key_toml("alice", &["dev", "ops"], &key_of("alice")),
        api_key_toml("root", &["admin"], ADMIN_KEY)
    );
    let bridge = start(&config, &[]).await?;
    let alice = open(&bridge, "alice").await?;

    let meta = meta_seen(&alice, &[], None).await?;
    assert_eq!(
        meta["dev.mcp-bridge/caller"],
        json!({ "principal": "alice", "roles": ["dev", "ops"] }),
        "{meta}"
    );
    assert!(
        !meta.to_string().contains(&key_of("alice")),
        "the backend received the caller's credential: {meta}"
    );
    assert!(meta.get("traceparent").is_none(), "{meta}");

    let traced = meta_seen(
        &alice,
        &[("traceparent", TRACEPARENT), ("tracestate", "vendor=abc")],
        None,
    )
    .await?;
    assert_eq!(traced["traceparent"], TRACEPARENT, "{traced}");
    assert_eq!(traced["tracestate"], "vendor=abc", "{traced}");
    assert_eq!(traced["dev.mcp-bridge/caller"]["principal"], "alice");

    let own = "00-11111111111111111111111111111111-2222222222222222-00";
    let kept = meta_seen(
        &alice,
        &[("traceparent", TRACEPARENT)],
        Some(json!({ "traceparent": own})),
    )
    .await?;
    assert_eq!(
        kept["traceparent"], own,
        "the request's own traceparent was replaced: {kept}"
    );

    // Without identity_meta the caller is not named, but the trace context still arrives.
    let other = Session::open(&bridge.url("/mcp/plain"), &key_of("alice")).await?;
    let plain_meta = meta_seen(&other, &[("traceparent", TRACEPARENT)], None).await?;
    assert!(
        plain_meta.get("dev.mcp-bridge/caller").is_none(),
        "a server without identity_meta learned the caller: {plain_meta}"
    );
    assert_eq!(plain_meta["traceparent"], TRACEPARENT, "{plain_meta}");

    // A client's own value under the bridge's key never reaches a server: removed where the
    // server is not told who calls, replaced where it is.
    let forged = json!({ "dev.mcp-bridge/caller": {"principal": "root", "roles": ["admin"]} });
    let stripped = meta_seen(&other, &[], Some(forged.clone())).await?;
    assert!(
        stripped.get("dev.mcp-bridge/caller").is_none(),
        "a forged caller reached the server: {stripped}"
    );
    let replaced = meta_seen(&alice, &[], Some(forged)).await?;
    assert_eq!(
        replaced["dev.mcp-bridge/caller"]["principal"], "alice",
        "{replaced}"
    );
    Ok(())
}

/// A bridge for alice and bob whose demo server (with `pool` settings) logs its calls to
/// the returned file, with the cache on and `get_tasks` cacheable for 60 s by a TTL row
/// (which the policy would share). The directory holds the log while the test runs.
async fn cached_bridge(pool: &str) -> Result<(tempfile::TempDir, std::path::PathBuf, Bridge)> {
    let dir = tempfile::tempdir()?;
    let calls = dir.path().join("calls.log");
    let calls_arg = calls.display().to_string();
    let server = demo_server_toml(SERVER, &["--calls-log", &calls_arg], pool);
    let config = format!(
        "{server}\n{}\n[cache]\nenabled = true\n\n[cache.ttl.{SERVER}]\nget_tasks = \"60s\"\n",
        keys(&["alice", "bob"])
    );
    let bridge = start(&config, &[]).await?;
    Ok((dir, calls, bridge))
}

/// A server told who calls (`identity_meta`) may answer each caller differently, so its
/// results are cached per caller even when the policy would share them: bob's identical
/// call right after alice's was cached reaches the server.
#[tokio::test]
async fn a_server_told_who_calls_gets_its_results_cached_per_caller() -> Result<()> {
    let (_dir, calls, bridge) = cached_bridge("identity_meta = true\nmax_connections = 1").await?;
    let alice = open(&bridge, "alice").await?;
    let bob = open(&bridge, "bob").await?;
    task_titles(&alice).await?;
    let reached = count_calls(&calls, "get_tasks");
    task_titles(&alice).await?;
    assert_eq!(
        count_calls(&calls, "get_tasks"),
        reached,
        "alice's repeat was not served from the cache, so this test shows nothing"
    );
    task_titles(&bob).await?;
    assert_eq!(
        count_calls(&calls, "get_tasks"),
        reached + 1,
        "bob was served alice's cached result from a server that answers per caller"
    );
    Ok(())
}

/// A `tools/call` as a 2026-07-28 client sends it (no session, so no `initialize` ever
/// starts a process: the call itself asks the pool for one), as `principal`; the JSON-RPC
/// response.
pub(crate) async fn sessionless_call(
    bridge: &Bridge,
    principal: &str,
    tool: &str,
    arguments: Value,
) -> Result<Value> {
    sessionless_call_with(bridge, principal, tool, arguments, &[]).await
}

/// [`sessionless_call`] with extra HTTP headers.
pub(crate) async fn sessionless_call_with(
    bridge: &Bridge,
    principal: &str,
    tool: &str,
    arguments: Value,
    headers: &[(&str, &str)],
) -> Result<Value> {
    let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}});
    let request = http()
        .post(bridge.url(ENDPOINT))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .header("authorization", format!("Bearer {}", key_of(principal)));
    let request = headers
        .iter()
        .fold(request, |request, (name, value)| {
            request.header(*name, *value)
        })
        .body(message.to_string());
    let exchange = async {
        let response = request.send().await?;
        let status = response.status();
        let body = crate::support::read_response(response).await?;
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(STEP, exchange)
        .await
        .with_context(|| format!("{tool} for {principal} took over {STEP:?}"))??;
    ensure!(
        status == 200 || body.get("error").is_some(),
        "{tool} for {principal}: HTTP {status}: {body}"
    );
    Ok(body)
}

/// The titles of the active tasks `principal`'s process holds, asked without a session.
pub(crate) async fn sessionless_titles(bridge: &Bridge, principal: &str) -> Result<Vec<String>> {
    let response = sessionless_call(bridge, principal, "get_tasks", json!({})).await?;
    if let Some(message) = failure_message(&response) {
        anyhow::bail!("get_tasks for {principal} failed: {message}");
    }
    let tasks = &response["result"]["structuredContent"]["tasks"];
    let list = tasks
        .as_array()
        .with_context(|| format!("get_tasks answered no task list: {response}"))?;
    Ok(list
        .iter()
        .filter_map(|task| task["title"].as_str().map(str::to_owned))
        .collect())
}

/// With the cache on and a TTL row that makes `get_tasks` cacheable (shared, by the policy),
/// an isolated server's cached result belongs to its principal: bob never gets alice's.
#[tokio::test]
async fn an_isolated_servers_cached_results_never_cross_principals() -> Result<()> {
    let (_dir, calls, bridge) = cached_bridge("isolation = \"principal\"").await?;
    let alice = open(&bridge, "alice").await?;
    let bob = open(&bridge, "bob").await?;
    let alice_other = open(&bridge, "alice").await?;

    create_task(&alice, "alice-cached-task").await?;
    let first = task_titles(&alice).await?;
    assert!(
        first.iter().any(|title| title == "alice-cached-task"),
        "{first:?}"
    );
    let reached = count_calls(&calls, "get_tasks");
    // Alice's repeat, from another session of hers, is served from the cache.
    let again = task_titles(&alice_other).await?;
    assert_eq!(again, first);
    assert_eq!(
        count_calls(&calls, "get_tasks"),
        reached,
        "alice's repeat was not served from the cache, so this test shows nothing"
    );
    // Bob's identical call, right after alice's was cached, reaches his own process.
    let seen = task_titles(&bob).await?;
    assert!(
        !seen.iter().any(|title| title == "alice-cached-task"),
        "bob was served alice's cached result: {seen:?}"
    );
    assert_eq!(
        count_calls(&calls, "get_tasks"),
        reached + 1,
        "bob's call did not reach a backend"
    );
    let cache = admin_json(&bridge, "/admin/cache/stats").await?;
    assert!(cache["hits"].as_u64().unwrap_or(0) >= 1, "{cache}");
    Ok(())
}

/// A sessionless (2026-07-28) client of a session-isolated server names its group with
/// `Mcp-Bridge-Affinity`, scoped to its principal; without the header its call is refused
/// with an error that says to send it.
#[tokio::test]
async fn sessionless_callers_of_a_session_server_name_their_group_by_affinity() -> Result<()> {
    let server = demo_server_toml(SERVER, &[], "isolation = \"session\"");
    let bridge = start(&format!("{server}\n{}", keys(&["alice", "bob"])), &[]).await?;
    let as_ = async |principal: &str, key: &str, tool: &str, arguments: Value| {
        let response = sessionless_call_with(
            &bridge,
            principal,
            tool,
            arguments,
            &[("mcp-bridge-affinity", key)],
        )
        .await?;
        if let Some(message) = failure_message(&response) {
            anyhow::bail!("{tool} for {principal} ({key}) failed: {message}");
        }
        anyhow::Ok(response["result"]["structuredContent"].clone())
    };
    let titles = |content: &Value| -> Vec<String> {
        content["tasks"]
            .as_array()
            .map(|tasks| {
                tasks
                    .iter()
                    .filter_map(|task| task["title"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    as_(
        "alice",
        "k1",
        "create_task",
        json!({ "title": "alice-k1-task" }),
    )
    .await?;
    let same = titles(&as_("alice", "k1", "get_tasks", json!({})).await?);
    assert!(
        same.iter().any(|title| title == "alice-k1-task"),
        "{same:?}"
    );
    let other_key = titles(&as_("alice", "k2", "get_tasks", json!({})).await?);
    assert!(
        !other_key.iter().any(|title| title == "alice-k1-task"),
        "{other_key:?}"
    );
    let other_principal = titles(&as_("bob", "k1", "get_tasks", json!({})).await?);
    assert!(
        !other_principal.iter().any(|title| title == "alice-k1-task"),
        "bob's k1 reached alice's k1 group: {other_principal:?}"
    );
    let stats = server_stats(&bridge).await?;
    assert_eq!(
        group_keys(&stats),
        ["affinity:alice:k1", "affinity:alice:k2", "affinity:bob:k1"],
        "{stats}"
    );

    let refused = sessionless_call(&bridge, "alice", "get_tasks", json!({})).await?;
    let message = failure_message(&refused)
        .with_context(|| format!("a call without a session or affinity was served: {refused}"))?;
    assert!(
        message.contains("Mcp-Bridge-Affinity"),
        "the refusal does not say to send the header: {refused}"
    );
    Ok(())
}
