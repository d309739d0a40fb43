//! The official npm reference servers (`@modelcontextprotocol/server-everything` and
//! `@modelcontextprotocol/server-memory`, pinned by `tests/deps`) behind the bridge, driven
//! by the official Python SDK in both protocol eras: their tools, progress, state kept
//! across calls, both side by side on `/mcp`, and their resources under `mcp-bridge://`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::clients::python;
use crate::support::{Bridge, node_server_toml, start_bridge, start_bridge_with_file, test_deps};

/// The protocol eras a client can speak to the bridge, by the SDK's connect mode.
const MODES: [&str; 2] = ["legacy", "2026-07-28"];

/// A bridge serving `everything` and `memory`; the memory server keeps its graph in a
/// file inside the bridge's temporary directory, whose path is returned.
async fn reference_bridge() -> Result<(Bridge, PathBuf)> {
    let deps = test_deps();
    let dir = tempfile::tempdir()?;
    let memory_file = dir.path().join("memory.jsonl");
    let memory_path = memory_file.display().to_string();
    let config = format!(
        "{}\n{}",
        node_server_toml("everything", &deps.server_everything, &["stdio"], &[], ""),
        // One process: the memory server rewrites its whole file on every change.
        node_server_toml(
            "memory",
            &deps.server_memory,
            &[],
            &[("MEMORY_FILE_PATH", &memory_path)],
            "max_connections = 1"
        ),
    );
    let config_path = dir.path().join("mcp-bridge.toml");
    std::fs::write(&config_path, config)?;
    let bridge = start_bridge_with_file(dir, config_path, &[])?;
    bridge.wait_ready().await?;
    Ok((bridge, memory_file))
}

/// The text of a tool result's first content block.
fn first_text(call: &Value) -> &str {
    call["text"][0].as_str().unwrap_or_default()
}

/// The entity names in a memory `read_graph` result.
fn entity_names(call: &Value) -> Vec<String> {
    let graph = if call["structured"].is_object() {
        call["structured"].clone()
    } else {
        serde_json::from_str(first_text(call)).unwrap_or_default()
    };
    graph["entities"]
        .as_array()
        .map(|entities| {
            entities
                .iter()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn entity(name: &str) -> Value {
    json!({"entities": [{"name": name, "entityType": "test", "observations": [format!("{name} was written through mcp-bridge")]}]})
}

#[tokio::test]
async fn everything_echo_and_get_sum_in_both_eras() -> Result<()> {
    let (bridge, _) = reference_bridge().await?;
    for mode in MODES {
        let report = python(json!({
            "url": bridge.url("/mcp/everything"),
            "mode": mode,
            "steps": [
                {"op": "list_tools"},
                {"op": "call", "tool": "echo", "args": {"message": format!("hello over {mode}")}},
                {"op": "call", "tool": "get-sum", "args": {"a": 19, "b": 23}},
            ],
        }))
        .await?;
        let expected_version = if mode == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(report["protocol_version"], expected_version, "{report}");
        if mode == "legacy" {
            // The session describes the server behind the endpoint, not the bridge.
            assert_eq!(report["server_name"], "mcp-servers/everything", "{report}");
        }
        let results = &report["results"];
        let tools = results[0]["tools"].as_array().context("tools")?;
        for tool in ["echo", "get-sum", "trigger-long-running-operation"] {
            assert!(
                tools.contains(&json!(tool)),
                "{mode}: {tool} missing from {tools:?}"
            );
        }
        assert_eq!(
            first_text(&results[1]),
            format!("Echo: hello over {mode}"),
            "{report}"
        );
        assert_eq!(
            first_text(&results[2]),
            "The sum of 19 and 23 is 42.",
            "{report}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn everything_long_running_operation_reports_progress_in_both_eras() -> Result<()> {
    let (bridge, _) = reference_bridge().await?;
    for (mode, path, tool) in [
        (
            "legacy",
            "/mcp/everything",
            "trigger-long-running-operation",
        ),
        (
            "2026-07-28",
            "/mcp/everything",
            "trigger-long-running-operation",
        ),
        (
            "2026-07-28",
            "/mcp",
            "everything__trigger-long-running-operation",
        ),
    ] {
        let report = python(json!({
            "url": bridge.url(path),
            "mode": mode,
            "steps": [{"op": "call", "tool": tool, "args": {"duration": 1, "steps": 4}, "progress": true}],
        }))
        .await?;
        let call = &report["results"][0];
        assert_eq!(call["is_error"], false, "{report}");
        assert!(
            first_text(call).starts_with("Long running operation completed"),
            "{report}"
        );
        let progress: Vec<(f64, f64)> = call["progress"]
            .as_array()
            .context("progress")?
            .iter()
            .map(|p| (p[0].as_f64().unwrap_or(-1.0), p[1].as_f64().unwrap_or(-1.0)))
            .collect();
        assert_eq!(
            progress,
            vec![(1.0, 4.0), (2.0, 4.0), (3.0, 4.0), (4.0, 4.0)],
            "{mode} {path}: {report}"
        );
    }
    Ok(())
}

/// Entities written with `create_entities` are in a later `read_graph`, in the file the
/// bridge's environment pointed the server at, and survive across client sessions.
#[tokio::test]
async fn memory_keeps_entities_across_calls_and_clients() -> Result<()> {
    let (bridge, memory_file) = reference_bridge().await?;
    for mode in MODES {
        let name = format!("entity-{mode}");
        let report = python(json!({
            "url": bridge.url("/mcp/memory"),
            "mode": mode,
            "steps": [
                {"op": "call", "tool": "read_graph", "args": {}},
                {"op": "call", "tool": "create_entities", "args": entity(&name)},
                {"op": "call", "tool": "read_graph", "args": {}},
            ],
        }))
        .await?;
        let results = &report["results"];
        assert!(!entity_names(&results[0]).contains(&name), "{report}");
        assert_eq!(results[1]["is_error"], false, "{report}");
        assert!(
            entity_names(&results[2]).contains(&name),
            "read_graph lacks {name}: {report}"
        );
        let stored =
            std::fs::read_to_string(&memory_file).context("the memory file was not written")?;
        assert!(
            stored.contains(&name),
            "{} lacks {name}: {stored}",
            memory_file.display()
        );
    }
    // The second client saw the first client's entity too (one shared server process).
    let report = python(json!({
        "url": bridge.url("/mcp/memory"),
        "mode": "legacy",
        "steps": [{"op": "call", "tool": "read_graph", "args": {}}],
    }))
    .await?;
    let names = entity_names(&report["results"][0]);
    assert!(
        names.contains(&"entity-legacy".to_owned())
            && names.contains(&"entity-2026-07-28".to_owned()),
        "{report}"
    );
    Ok(())
}

/// Both servers on the aggregated endpoint: namespaced names in one list, each call
/// routed to its own server, and an unknown namespace refused with the server names.
#[tokio::test]
async fn both_servers_side_by_side_on_the_aggregated_endpoint() -> Result<()> {
    let (bridge, _) = reference_bridge().await?;
    for mode in MODES {
        let name = format!("side-by-side-{mode}");
        let report = python(json!({
            "url": bridge.url("/mcp"),
            "mode": mode,
            "steps": [
                {"op": "list_tools"},
                {"op": "call", "tool": "everything__echo", "args": {"message": "from /mcp"}},
                {"op": "call", "tool": "memory__create_entities", "args": entity(&name)},
                {"op": "call", "tool": "memory__read_graph", "args": {}},
                {"op": "call", "tool": "everything__get-sum", "args": {"a": 1, "b": 2}},
                {"op": "call", "tool": "nowhere__echo", "args": {"message": "lost"}},
                {"op": "list_prompts"},
                {"op": "get_prompt", "name": "everything__args-prompt", "args": {"city": "Lyon"}},
            ],
        }))
        .await?;
        let results = &report["results"];
        let tools = results[0]["tools"].as_array().context("tools")?;
        for tool in [
            "everything__echo",
            "everything__get-sum",
            "memory__create_entities",
            "memory__read_graph",
        ] {
            assert!(
                tools.contains(&json!(tool)),
                "{mode}: {tool} missing from {tools:?}"
            );
        }
        assert!(tools.iter().all(|t| {
            t.as_str()
                .is_some_and(|t| t.starts_with("everything__") || t.starts_with("memory__"))
        }));
        assert_eq!(first_text(&results[1]), "Echo: from /mcp", "{report}");
        assert!(entity_names(&results[3]).contains(&name), "{report}");
        assert_eq!(
            first_text(&results[4]),
            "The sum of 1 and 2 is 3.",
            "{report}"
        );
        // A name with an unknown server is refused by the bridge and names the real ones.
        let refused = &results[5];
        let message = refused["error"]["message"]
            .as_str()
            .or_else(|| refused["text"][0].as_str())
            .unwrap_or_default();
        assert!(
            refused["error"].is_object() || refused["is_error"] == true,
            "{mode}: a call to nowhere__echo was not refused: {report}"
        );
        assert!(
            message.contains("everything") && message.contains("memory"),
            "{mode}: {message}"
        );
        // Prompts are namespaced like tools, and a namespaced prompts/get reaches its server.
        let prompts = results[6]["prompts"].as_array().context("prompts")?;
        assert!(
            prompts.contains(&json!("everything__simple-prompt")),
            "{mode}: {prompts:?}"
        );
        assert_eq!(
            results[7]["messages"][0]["text"], "What's weather in Lyon?",
            "{report}"
        );
    }
    Ok(())
}

/// Resources from both servers are listed on `/mcp` under `mcp-bridge://{server}/` URIs
/// and read back through those URIs, with the contents' URIs prefixed the same way. A
/// resource link in a tool result carries such a URI too, and following it works.
#[tokio::test]
async fn resources_are_namespaced_and_readable_on_the_aggregated_endpoint() -> Result<()> {
    let (bridge, _) = reference_bridge().await?;
    let graph_uri = "mcp-bridge://memory/memory://knowledge-graph";
    let doc_uri = "mcp-bridge://everything/demo://resource/static/document/architecture.md";
    let link_uri = "mcp-bridge://everything/demo://resource/dynamic/text/2";
    for mode in MODES {
        let name = format!("resource-{mode}");
        let steps = json!([
            {"op": "list_resources"},
            {"op": "call", "tool": "memory__create_entities", "args": entity(&name)},
            {"op": "read_resource", "uri": graph_uri},
            {"op": "read_resource", "uri": doc_uri},
            {"op": "call", "tool": "everything__get-resource-links", "args": {"count": 2}},
            {"op": "read_resource", "uri": link_uri},
        ]);
        let report =
            python(json!({"url": bridge.url("/mcp"), "mode": mode, "steps": steps})).await?;
        let results = &report["results"];
        let listed = results[0]["resources"].as_array().context("resources")?;
        let uris: Vec<&str> = listed.iter().filter_map(|r| r["uri"].as_str()).collect();
        assert!(
            uris.contains(&graph_uri) && uris.contains(&doc_uri),
            "{mode}: {uris:?}"
        );
        let prefixed = uris.iter().all(|uri| uri.starts_with("mcp-bridge://"));
        assert!(prefixed, "{mode}: unprefixed URI in {uris:?}");

        let graph = &results[2]["contents"][0];
        assert_eq!(graph["uri"], graph_uri, "{report}");
        let has_entity = graph["text"]
            .as_str()
            .is_some_and(|text| text.contains(&name));
        assert!(has_entity, "{mode}: the graph lacks {name}: {report}");
        let doc = &results[3]["contents"][0];
        assert_eq!(doc["uri"], doc_uri, "{report}");
        assert_eq!(doc["mime_type"], "text/markdown", "{report}");
        let heading = doc["text"]
            .as_str()
            .is_some_and(|text| text.starts_with("# Everything"));
        assert!(heading, "{report}");

        let links = results[4]["content"].as_array().context("tool content")?;
        let linked = links
            .iter()
            .any(|c| c["type"] == "resource_link" && c["uri"] == link_uri);
        assert!(linked, "{mode}: no namespaced link to {link_uri}: {report}");
        let followed = &results[5]["contents"][0];
        assert_eq!(followed["uri"], link_uri, "{report}");
        let text = followed["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("Resource 2:"),
            "{mode}: following the link read {text:?}"
        );
    }
    Ok(())
}

/// With `exclusive = true` the bridge offers sampling and elicitation to server-everything,
/// which then lists its tools that need them; their requests reach the legacy client that
/// made the call (on both endpoints) and the callbacks' answers come back in the result.
#[tokio::test]
async fn everything_sampling_and_elicitation_reach_the_calling_client() -> Result<()> {
    let deps = test_deps();
    let config = node_server_toml(
        "everything",
        &deps.server_everything,
        &["stdio"],
        &[],
        "exclusive = true",
    );
    let bridge = start_bridge(&config)?;
    bridge.wait_ready().await?;
    for (path, prefix) in [("/mcp/everything", ""), ("/mcp", "everything__")] {
        let prompt = format!("capital of France via {path}?");
        let report = python(json!({
            "url": bridge.url(path),
            "mode": "legacy",
            "sampling": true,
            "elicitation": true,
            "steps": [
                {"op": "list_tools"},
                {"op": "call", "tool": format!("{prefix}trigger-sampling-request"), "args": {"prompt": prompt, "maxTokens": 50}},
                {"op": "call", "tool": format!("{prefix}trigger-elicitation-request"), "args": {}},
            ],
        }))
        .await?;
        let results = &report["results"];
        let tools = results[0]["tools"].as_array().context("tools")?;
        for tool in ["trigger-sampling-request", "trigger-elicitation-request"] {
            assert!(
                tools.contains(&json!(format!("{prefix}{tool}"))),
                "{path}: {tool} not offered: {tools:?}"
            );
        }
        let sampled = report["sampled"].as_array().context("sampled")?;
        assert_eq!(sampled.len(), 1, "{report}");
        assert!(
            sampled[0]
                .as_str()
                .is_some_and(|text| text.contains(&prompt)),
            "{report}"
        );
        assert!(first_text(&results[1]).contains("sampled: "), "{report}");
        assert!(
            first_text(&results[1]).contains(&prompt),
            "the callback's reply is not in the result: {report}"
        );
        assert_eq!(
            report["elicited"].as_array().map(Vec::len),
            Some(1),
            "{report}"
        );
        assert!(
            first_text(&results[2]).contains("declined"),
            "the elicitation answer is not in the result: {report}"
        );
    }
    Ok(())
}
