//! "Explain any call": `POST /admin/explain` over a running bridge's chain of the example
//! plugins (`seed-ttl-table`, `crud-invalidation`, `annotations`) and a config whose
//! `[cache.ttl]` row overrides the plugins' TTL, and `bench explain`, which gives the
//! same answer offline for the same config, plugins and call. Neither reaches the
//! backend.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::lab::run_bridge;
use crate::plugins::{PluginBridge, call, faulty};
use crate::support::{http, plugin_wasm};

const ADMIN_TOKEN: &str = "explain-admin-secret";

/// Three bindings in this order, the admin token, and the config row
/// `demo.get_clients = "7m"`, which overrides every plugin's TTL for that tool.
fn plugins_toml() -> String {
    format!(
        r#"
[[plugins.policy]]
name = "ttl-table"
file = "seed-ttl-table.wasm"
servers = ["demo"]
config = {{ ttl = {{ demo = {{ get_tasks = "30s", create_task = 0 }} }} }}

[[plugins.policy]]
name = "crud"
file = "crud-invalidation.wasm"

[[plugins.policy]]
name = "annotations"
file = "annotations.wasm"
config = {{ default_ttl = "90s" }}

[http]
admin_token = "{ADMIN_TOKEN}"

[cache.ttl.demo]
get_clients = "7m"
"#
    )
}

async fn start() -> Result<PluginBridge> {
    PluginBridge::start(
        &[
            (plugin_wasm("seed-ttl-table"), "seed-ttl-table.wasm"),
            (plugin_wasm("crud-invalidation"), "crud-invalidation.wasm"),
            (plugin_wasm("annotations"), "annotations.wasm"),
        ],
        &plugins_toml(),
        None,
    )
    .await
}

/// `POST /admin/explain` with the admin token (or `token`): the status and the body.
async fn post_explain(pb: &PluginBridge, token: Option<&str>, body: &str) -> Result<(u16, Value)> {
    let mut request = http()
        .post(pb.bridge.url("/admin/explain"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

async fn explain(pb: &PluginBridge, call: &Value) -> Result<Value> {
    let (status, body) = post_explain(pb, Some(ADMIN_TOKEN), &call.to_string()).await?;
    ensure!(
        status == 200,
        "/admin/explain {call} answered {status}: {body}"
    );
    Ok(body)
}

/// The binding of `name` in an explanation.
fn binding<'a>(explained: &'a Value, name: &str) -> Result<&'a Value> {
    explained["bindings"]
        .as_array()
        .and_then(|bindings| bindings.iter().find(|b| b["name"] == name))
        .with_context(|| format!("no binding {name} in {explained}"))
}

#[tokio::test]
async fn the_endpoint_names_each_answer_the_winner_the_ttl_source_and_the_key() -> Result<()> {
    let pb = start().await?;
    let read = explain(
        &pb,
        &json!({"server": "demo", "tool": "get_clients", "arguments": {"company": "acme"}}),
    )
    .await?;
    let names: Vec<&str> = read["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["name"].as_str())
        .collect();
    ensure!(
        names == ["ttl-table", "crud", "annotations", "builtin"],
        "{read}"
    );
    ensure!(
        read["tool"]["known"] == true,
        "the catalogue lists get_clients: {read}"
    );
    ensure!(
        read["tool"]["annotations"]["readOnlyHint"] == true,
        "{read}"
    );
    // seed-ttl-table has no cache-policy: it abstains, and its table has no row here.
    let table = binding(&read, "ttl-table")?;
    ensure!(
        table["answer"]["decision"] == "abstain" && table["ttl"]["answer"] == "abstain",
        "{table}"
    );
    ensure!(
        table["kind"] == "plugin" && table["applies"] == true,
        "{table}"
    );
    // crud-invalidation decides first: a read verb on a read-only tool, 60 s, tagged.
    let crud = binding(&read, "crud")?;
    ensure!(
        crud["answer"]["decision"] == "cache" && crud["answer"]["ttl_ms"] == 60_000,
        "{crud}"
    );
    ensure!(crud["answer"]["tags"] == json!(["entity:client"]), "{crud}");
    ensure!(
        binding(&read, "annotations")?["answer"]["ttl_ms"] == 90_000,
        "{read}"
    );
    let builtin = binding(&read, "builtin")?;
    ensure!(
        builtin["kind"] == "builtin" && builtin["ttl"]["answer"]["ttl_ms"] == 420_000,
        "{builtin}"
    );
    // The winner is crud, but the config row sets the TTL.
    ensure!(read["decided_by"] == "crud", "{read}");
    ensure!(read["ttl_ms"] == 420_000, "{read}");
    ensure!(read["ttl_source"] == "config:demo/get_clients", "{read}");
    ensure!(
        read["writes"] == false && read["invalidations"].is_null(),
        "{read}"
    );
    let key = read["cache"]["key"].as_str().context("no key")?;
    ensure!(read["cache"]["partition"] == "shared", "{read}");
    ensure!(
        key == "demo\u{1f}tools/call\u{1f}get_clients\u{1f}\u{1f}{\"company\":\"acme\"}",
        "{key:?}"
    );

    // A plugin's table sets get_tasks' TTL, over crud's directive and the built-in's.
    let tasks = explain(&pb, &json!({"server": "demo", "tool": "get_tasks"})).await?;
    ensure!(
        tasks["ttl_source"] == "table:ttl-table" && tasks["ttl_ms"] == 30_000,
        "{tasks}"
    );

    // A write: crud's invalidations, and the union the chain applies.
    let write = explain(
        &pb,
        &json!({"server": "demo", "tool": "create_task", "arguments": {"title": "t"}}),
    )
    .await?;
    ensure!(write["writes"] == true, "{write}");
    ensure!(
        write["decision"]["decision"] == "bypass" && write["cache"].is_null(),
        "{write}"
    );
    let contributed = &binding(&write, "crud")?["invalidations"]["answer"];
    ensure!(
        contributed
            .as_array()
            .is_some_and(|rules| rules.contains(&json!({"tag": "entity:task"}))),
        "{write}"
    );
    ensure!(
        contributed
            .as_array()
            .is_some_and(|rules| rules.contains(&json!({"server": "demo", "tool": "get_tasks"}))),
        "{write}"
    );
    ensure!(
        binding(&write, "builtin")?["invalidations"]["answer"] == "abstain",
        "{write}"
    );
    ensure!(write["invalidations"]["applied"] == *contributed, "{write}");
    ensure!(write["invalidations"]["shaped_by"] == "plugin", "{write}");

    // An unknown tool is said to be unknown.
    let unknown = explain(&pb, &json!({"server": "demo", "tool": "launch_rocket"})).await?;
    ensure!(unknown["tool"]["known"] == false, "{unknown}");

    // None of it reached the backend.
    for tool in ["get_clients", "get_tasks", "create_task", "launch_rocket"] {
        ensure!(pb.calls(tool) == 0, "{tool} reached the demo server");
    }
    Ok(())
}

#[tokio::test]
async fn the_endpoint_refuses_without_the_admin_token_and_names_a_bad_field() -> Result<()> {
    let pb = start().await?;
    let call = json!({"server": "demo", "tool": "get_clients"}).to_string();
    let (status, _) = post_explain(&pb, None, &call).await?;
    ensure!(status == 401, "no token: {status}");
    let (status, _) = post_explain(&pb, Some("wrong"), &call).await?;
    ensure!(status == 401 || status == 403, "a wrong token: {status}");
    for (body, field) in [
        (r#"{"server": "demo", "tool": 5}"#, "tool"),
        (
            r#"{"server": "demo", "tool": "get_clients", "arguments": "x"}"#,
            "arguments",
        ),
        (r#"{"tool": "get_clients"}"#, "server"),
        (
            r#"{"server": "demo", "tool": "get_clients", "colour": 1}"#,
            "colour",
        ),
        (r#"{"server": "demo", "method": "prompts/get"}"#, "method"),
    ] {
        let (status, answer) = post_explain(&pb, Some(ADMIN_TOKEN), body).await?;
        ensure!(status == 400, "{body}: {status} {answer}");
        ensure!(
            answer.to_string().contains(&format!("{field}:")),
            "{body}: {answer}"
        );
    }
    let (status, answer) = post_explain(&pb, Some(ADMIN_TOKEN), "{not json").await?;
    ensure!(status == 400, "not JSON: {status} {answer}");
    let (status, answer) = post_explain(
        &pb,
        Some(ADMIN_TOKEN),
        r#"{"server": "nowhere", "tool": "t"}"#,
    )
    .await?;
    ensure!(
        status == 404 && answer.to_string().contains("nowhere"),
        "{status} {answer}"
    );
    Ok(())
}

#[tokio::test]
async fn bench_explain_answers_as_the_endpoint_does() -> Result<()> {
    let pb = start().await?;
    let dir = pb
        .plugins
        .parent()
        .context("the plugin directory has a parent")?;
    let config = dir.join("mcp-bridge.toml");
    // The server's catalogue, as a client lists it, for the offline annotations.
    let session = pb.session().await?;
    let listed = session.request(json!(1), "tools/list", json!({})).await?;
    let catalog = dir.join("catalog.json");
    std::fs::write(&catalog, listed.to_string())?;
    for call in [
        json!({"server": "demo", "tool": "get_clients", "arguments": {"company": "acme"}}),
        json!({"server": "demo", "tool": "create_task", "arguments": {"title": "t"}, "principal": "alice"}),
        json!({"server": "demo", "method": "tools/list"}),
    ] {
        let mut live = explain(&pb, &call).await?;
        let (code, stdout, stderr) = run_bridge(&[
            "bench",
            "explain",
            "--config",
            &config.display().to_string(),
            "--catalog",
            &catalog.display().to_string(),
            "--call",
            &call.to_string(),
        ])?;
        ensure!(
            code == 0,
            "bench explain {call} exited {code}:\n{stdout}\n{stderr}"
        );
        let mut offline: Value = serde_json::from_str(&stdout)
            .with_context(|| format!("bench explain printed no JSON:\n{stdout}\n{stderr}"))?;
        for document in [&mut live, &mut offline] {
            document
                .as_object_mut()
                .map(|fields| fields.remove("generation"));
        }
        ensure!(
            live == offline,
            "{call}:\nlive:    {live}\noffline: {offline}"
        );
    }
    // The short form for a person, and a --policy chain of one plugin.
    let (code, stdout, stderr) = run_bridge(&[
        "bench",
        "explain",
        "--config",
        &config.display().to_string(),
        "--policy",
        &format!("crud={}", plugin_wasm("crud-invalidation")),
        "--catalog",
        &catalog.display().to_string(),
        "--human",
        "--call",
        r#"{"server": "demo", "tool": "get_clients"}"#,
    ])?;
    ensure!(code == 0, "{stdout}\n{stderr}");
    ensure!(
        stdout.contains("1. crud (plugin): cache for 1m"),
        "{stdout}"
    );
    ensure!(
        stdout.contains("decided by crud: cache for 7m, ttl from config:demo/get_clients"),
        "{stdout}"
    );
    // An unknown server is refused, naming it.
    let (code, _, stderr) = run_bridge(&[
        "bench",
        "explain",
        "--config",
        &config.display().to_string(),
        "--call",
        r#"{"server": "nowhere", "tool": "t"}"#,
    ])?;
    ensure!(code != 0 && stderr.contains("nowhere"), "{stderr}");
    ensure!(
        pb.calls("get_clients") == 0 && pb.calls("create_task") == 0,
        "a call reached the demo server"
    );
    Ok(())
}

#[tokio::test]
async fn an_explained_fault_is_shown_with_its_panic_and_never_quarantines() -> Result<()> {
    // fault-trap panics in a decision whose arguments have `fault`; quarantine_after = 3.
    let demo = faulty("fault-trap", "{}").await?;
    let faulting = json!({"server": "demo", "tool": "get_tasks", "arguments": {"fault": true}});
    for _ in 0..5 {
        let (status, explained) = post_explain(&demo, None, &faulting.to_string()).await?;
        ensure!(status == 200, "{status} {explained}");
        let trap = binding(&explained, "fault-trap")?;
        let fault = trap["fault"].as_str().unwrap_or_default();
        ensure!(
            fault.starts_with("panicked at ")
                && fault.contains("deliberate trap")
                && fault.ends_with("(trap)"),
            "the fault, the guest's panic first: {trap}"
        );
        // The safe default a live call would use, and the chain's answer with it.
        ensure!(
            trap["answer"]["decision"] == "bypass" && trap["quarantined"] == false,
            "{trap}"
        );
        ensure!(explained["decided_by"] == "fault-trap", "{explained}");
    }
    // Five explained faults, more than quarantine_after: nothing counted, nothing quarantined.
    let admin = demo.admin().await?;
    let health = &admin["bindings"][0];
    ensure!(
        health["state"] == "active" && health["faults"]["trap"] == 0,
        "{health}"
    );
    ensure!(
        demo.calls("get_tasks") == 0,
        "an explanation reached the demo server"
    );

    // Live faults quarantine the tool; an explanation then says so and does not ask.
    let session = demo.session().await?;
    for id in 0..3 {
        call(&session, 500 + id, "get_tasks", json!({"fault": true})).await?;
    }
    let (_, explained) = post_explain(&demo, None, &faulting.to_string()).await?;
    let trap = binding(&explained, "fault-trap")?;
    ensure!(
        trap["quarantined"] == true && trap["fault"].is_null(),
        "{trap}"
    );
    ensure!(trap["answer"]["decision"] == "bypass", "{trap}");
    // Another tool is still asked: it abstains, and the built-in policy decides.
    let (_, other) =
        post_explain(&demo, None, r#"{"server": "demo", "tool": "get_clients"}"#).await?;
    let trap = binding(&other, "fault-trap")?;
    ensure!(
        trap["quarantined"] == false && trap["answer"]["decision"] == "abstain",
        "{other}"
    );
    ensure!(other["decided_by"] == "builtin", "{other}");
    Ok(())
}
