//! Per-tool quarantine at run time: a plugin that faults for one tool only is quarantined
//! for that tool, its other tools keep being asked and cached, the admin view names the
//! tool and the fault that tipped it, and an operator can lift it.

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use mcp_bridge::plugin::wasm_policy::arguments_digest;

use crate::plugins::{call, call_times, faulty, metrics_text};
use crate::support::{SETTLE, http, poll_until};

/// `POST /admin/plugins/quarantine/lift` with `body`: the status and the answer.
async fn lift(bridge: &crate::support::Bridge, body: Value) -> Result<(u16, Value)> {
    let response = http()
        .post(bridge.url("/admin/plugins/quarantine/lift"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn a_tool_that_faults_live_is_quarantined_alone() -> Result<()> {
    // fault-trap panics in `decide` for calls whose arguments ask for a fault, and
    // abstains otherwise (so it passes the smoke call over the demo server's tools, and
    // the built-in policy caches the other tools). Live, only get_tasks asks for one.
    let demo = faulty("fault-trap", "{}").await?;
    let session = demo.session().await?;
    for id in 0..4 {
        call(&session, id + 100, "get_tasks", json!({"fault": true}))
            .await?
            .ensure_success("get_tasks")?;
    }
    call_times(&session, "get_clients", 3).await?;
    ensure!(
        demo.calls("get_tasks") == 4,
        "a faulted decision was cached ({} backend calls)",
        demo.calls("get_tasks")
    );
    ensure!(
        demo.calls("get_clients") == 1,
        "get_clients is not cached while only get_tasks is quarantined ({} backend calls)",
        demo.calls("get_clients")
    );

    let admin = demo.admin().await?;
    let binding = &admin["bindings"][0];
    ensure!(
        binding["name"] == "fault-trap" && binding["state"] == "partly_quarantined",
        "{binding}"
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
        reason.starts_with("3 faults within")
            && reason.contains("demo/get_tasks")
            && reason.contains("trapped: panicked at ")
            && reason.contains("deliberate trap")
            && !reason.contains("wasm backtrace"),
        "the reason names the tool and the panic first: {reason}"
    );
    let trigger = &tools[0]["trigger"];
    ensure!(
        trigger["tool"] == "get_tasks"
            && trigger["interface"] == "decide"
            && trigger["arguments"] == r#"{"fault":true}"#
            && trigger["args_sha256"] == arguments_digest(r#"{"fault":true}"#)
            && trigger["panic"]
                .as_str()
                .is_some_and(|panic| panic.starts_with("panicked at ")),
        "the triggering fault: {trigger}"
    );
    // Three faults, newest first; the quarantined fourth call never asked the plugin.
    let recent = binding["recent_faults"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        recent.len() == 3
            && recent.iter().all(|fault| fault["tool"] == "get_tasks")
            && recent[0]["backtrace"].is_string()
            && recent[1]["backtrace"].is_null(),
        "recent faults: {binding}"
    );
    ensure!(binding["faults"]["trap"] == 3, "{binding}");
    let plugin = demo.plugin("fault-trap").await?;
    ensure!(plugin["state"] == "partly_quarantined", "{plugin}");

    let gauges = [
        "mcp_bridge_plugin_quarantined_tools{plugin=\"fault-trap\"} 1",
        "mcp_bridge_plugin_quarantined{plugin=\"fault-trap\"} 0",
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
    for gauge in gauges {
        ensure!(metrics.contains(gauge), "no `{gauge}` in /metrics");
    }

    // Lifting: a bad request, an unknown binding, then the tool, which is asked again.
    let (status, _) = lift(&demo.bridge, json!({"tool": "get_tasks"})).await?;
    ensure!(status == 400, "a lift without a binding answered {status}");
    let (status, _) = lift(&demo.bridge, json!({"binding": "nobody"})).await?;
    ensure!(
        status == 404,
        "a lift of an unknown binding answered {status}"
    );
    let (status, answer) = lift(
        &demo.bridge,
        json!({"binding": "fault-trap", "server": "demo", "tool": "get_tasks"}),
    )
    .await?;
    ensure!(
        status == 200 && answer["lifted"] == json!(["demo/get_tasks"]),
        "lift answered {status}: {answer}"
    );
    call(&session, 200, "get_tasks", json!({"fault": true}))
        .await?
        .ensure_success("get_tasks")?;
    let binding = &demo.admin().await?["bindings"][0];
    ensure!(
        binding["state"] == "active" && binding["faults"]["trap"] == 4,
        "after the lift, get_tasks is asked again: {binding}"
    );
    Ok(())
}

#[tokio::test]
async fn faults_about_tools_the_server_does_not_list_share_one_quarantine() -> Result<()> {
    // A client picks the tool name: faults about names the demo server does not list are
    // kept under one key, so made-up names can neither spread faults thin to dodge the
    // quarantine nor add up to quarantining the binding for everyone.
    let demo = faulty("fault-trap", "{}").await?;
    let session = demo.session().await?;
    for id in 0..12 {
        let name = format!(
            "made_up_{id}_{}",
            "x".repeat(if id == 0 { 10_000 } else { 0 })
        );
        call(&session, id + 200, &name, json!({"fault": true})).await?;
    }
    let admin = demo.admin().await?;
    let binding = &admin["bindings"][0];
    let tools = binding["quarantined_tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        binding["state"] == "partly_quarantined"
            && tools.len() == 1
            && tools[0]["server"] == "demo"
            && tools[0]["tool"] == "<unlisted>",
        "made-up names were not kept under one key, or escalated: {binding}"
    );
    let recorded = binding["recent_faults"].to_string();
    ensure!(
        recorded.len() < 16 * 1024,
        "a long made-up name was recorded whole ({} bytes)",
        recorded.len()
    );
    // The tools the server lists are still asked and cached.
    call_times(&session, "get_clients", 2).await?;
    ensure!(
        demo.calls("get_clients") == 1,
        "get_clients is not cached ({} backend calls)",
        demo.calls("get_clients")
    );
    Ok(())
}
