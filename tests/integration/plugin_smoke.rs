//! The smoke call over the servers' real tool catalogues: a plugin whose decision faults
//! for one real tool only (fault-trap with `tool = "get_tasks"`, which answers a dummy
//! tool fine) is rejected when it is dropped into a running bridge, with the tool named,
//! while the previous version keeps serving; present at startup, its tool is quarantined
//! before any client call and its other tools are cached.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::json;

use crate::plugins::{PluginBridge, call, faulty};
use crate::support::{eventually, metric, plugin_wasm, publish_plugin};

/// The fault-trap config that panics in every question about `get_tasks` (smoke included)
/// and abstains for every other tool.
const TRAPS_GET_TASKS: &str = "{ tool = \"get_tasks\" }";

#[tokio::test]
async fn a_version_that_faults_for_one_catalogue_tool_is_rejected_before_it_serves() -> Result<()> {
    // reload-probe v1 ignores its config and caches every read for 111 s; the binding's
    // config is the one fault-trap reads once it replaces the file.
    let demo = PluginBridge::start(
        &[(plugin_wasm("reload-probe-v1"), "probe.wasm")],
        &format!(
            "auto_bind = false\n\n[[plugins.policy]]\nname = \"probe\"\nfile = \"probe.wasm\"\nservers = [\"demo\"]\nconfig = {TRAPS_GET_TASKS}\n"
        ),
        None,
    )
    .await?;
    let session = demo.session().await?;
    let before = demo.plugin("probe").await?;
    ensure!(before["state"] == "active", "{before}");
    let first = call(&session, 1, "get_clients", json!({})).await?;
    first.ensure_success("get_clients")?;
    ensure!(first.field("ttl-ms") == Some(111_000), "{:?}", first.cache);

    publish_plugin(
        std::path::Path::new(&plugin_wasm("fault-trap")),
        &demo.plugins,
        "probe.wasm",
    )?;
    let rejected = eventually(Duration::from_secs(20), async || {
        demo.plugin("probe")
            .await
            .is_ok_and(|p| p["last_rejection"]["kind"] == "smoke")
    })
    .await;
    ensure!(rejected, "no smoke rejection: {}", demo.admin().await?);
    let entry = demo.plugin("probe").await?;
    let message = entry["last_rejection"]["message"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        message.contains("the smoke decide call for demo/get_tasks")
            && message.contains("trapped: panicked at ")
            && message.contains("deliberate trap in `decide` for tool `get_tasks`")
            && !message.contains("wasm backtrace"),
        "the rejection names the server, the tool and the panic: {message}"
    );
    let admin = demo.admin().await?;
    // What the host knows of the demo server's tools, which the new version was asked about.
    ensure!(
        admin["catalogues"]["demo"]["tools"].as_u64() > Some(1),
        "the plugin host does not know the demo server's tools: {admin}"
    );
    ensure!(
        admin["recent_reloads"][0]["outcome"] == "rejected"
            && admin["recent_reloads"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("demo/get_tasks")),
        "{admin}"
    );
    ensure!(
        metric(
            &demo.bridge,
            "mcp_bridge_plugin_reloads_total",
            &["plugin=\"probe\"", "result=\"rejected\""]
        )
        .await?
            == 1.0,
        "the rejection is not counted"
    );
    ensure!(
        demo.bridge.logged("plugin version rejected").await,
        "the rejection is not logged"
    );

    // The previous version keeps serving: same hash and generation, get_clients still
    // cached by it (a hit: the backend saw one call), get_tasks decided by it too.
    ensure!(
        entry["hash"] == before["hash"] && entry["generation"] == before["generation"],
        "the serving version changed: {entry}"
    );
    let again = call(&session, 2, "get_clients", json!({})).await?;
    again.ensure_success("get_clients")?;
    // A hit's header gives the entry's remaining TTL.
    ensure!(
        again
            .field("ttl-ms")
            .is_some_and(|ttl| ttl > 0 && ttl <= 111_000)
            && again.field("generation") == first.field("generation")
            && again
                .cache
                .as_deref()
                .is_some_and(|h| h.contains("result=hit")),
        "{:?}",
        again.cache
    );
    ensure!(
        demo.calls("get_clients") == 1,
        "get_clients is no longer cached ({} backend calls)",
        demo.calls("get_clients")
    );
    let tasks = call(&session, 3, "get_tasks", json!({})).await?;
    tasks.ensure_success("get_tasks")?;
    ensure!(tasks.field("ttl-ms") == Some(111_000), "{:?}", tasks.cache);
    Ok(())
}

#[tokio::test]
async fn at_startup_a_tool_that_faults_is_quarantined_before_any_call() -> Result<()> {
    // The plugins load before the demo server's tool list is known; the list is smoked
    // before the server serves with it, and readiness waits for that.
    let demo = faulty("fault-trap", TRAPS_GET_TASKS).await?;
    let admin = demo.admin().await?;
    let binding = &admin["bindings"][0];
    ensure!(
        binding["name"] == "fault-trap" && binding["state"] == "partly_quarantined",
        "get_tasks is not quarantined before the first call: {admin}"
    );
    let tools = binding["quarantined_tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        tools.len() == 1 && tools[0]["server"] == "demo" && tools[0]["tool"] == "get_tasks",
        "only demo/get_tasks is quarantined: {binding}"
    );
    let reason = tools[0]["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with("failed the smoke call on the server's tool catalogue for demo/get_tasks (decide with arguments {}): trapped: panicked at ")
            && reason.contains("deliberate trap"),
        "the reason says the smoke call on the catalogue failed: {reason}"
    );
    ensure!(
        tools[0]["trigger"]["arguments"] == "{}" && binding["faults"]["trap"] == 1,
        "{binding}"
    );
    ensure!(
        demo.bridge
            .logged("plugin failed the smoke call on the server's tool catalogue")
            .await
            && demo
                .bridge
                .logged("plugin quarantined for demo/get_tasks")
                .await,
        "the smoke fault and the quarantine are not logged"
    );
    ensure!(
        demo.calls("get_tasks") == 0 && demo.calls("get_clients") == 0,
        "a client call reached the server before the check"
    );

    // The binding keeps serving its other tools: get_clients is cached (the second call
    // is a hit), get_tasks answered every time by the server, the plugin not asked.
    let session = demo.session().await?;
    for id in 0..2 {
        let answer = call(&session, id, "get_clients", json!({})).await?;
        answer.ensure_success("get_clients")?;
        let result = if id == 0 { "result=miss" } else { "result=hit" };
        ensure!(
            answer.field("ttl-ms").is_some()
                && answer.cache.as_deref().is_some_and(|h| h.contains(result)),
            "call {id}: {:?}",
            answer.cache
        );
    }
    ensure!(
        demo.calls("get_clients") == 1,
        "get_clients is not cached ({} backend calls)",
        demo.calls("get_clients")
    );
    for id in 10..12 {
        call(&session, id, "get_tasks", json!({}))
            .await?
            .ensure_success("get_tasks")?;
    }
    ensure!(
        demo.calls("get_tasks") == 2,
        "a quarantined tool was cached"
    );
    let binding = &demo.admin().await?["bindings"][0];
    ensure!(
        binding["faults"]["trap"] == 1,
        "the quarantined tool was asked: {binding}"
    );
    Ok(())
}
