//! Protocol behaviour as real clients written by others see it: the official Python
//! `mcp` SDK (legacy handshake, pinned 2026-07-28 and auto-negotiation) and `rmcp`
//! (legacy `serve()`, `Discover` and `Auto` lifecycles) list and call tools through
//! `/mcp/demo` and the aggregated `/mcp`, receive progress and log notifications, see
//! `tools/list_changed` take effect, and answer a server's sampling request.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures_util::StreamExt;
use rmcp::handler::client::progress::ProgressDispatcher;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
    ClientRequest, Implementation, ProgressNotificationParam, ProtocolVersion, ServerResult,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, PeerRequestOptions, RoleClient,
    RunningService,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{Value, json};

use crate::support::{
    Bridge, demo_server_toml, eventually, http, install_tls_provider, run_python_client,
    start_bridge,
};

/// The longest a whole client run may take before the test fails instead of hanging.
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

/// A bridge running the demo server with these pool settings.
async fn demo_bridge(pool: &str) -> Result<Bridge> {
    let bridge = start_bridge(&demo_server_toml("demo", &[], pool))?;
    bridge.wait_ready().await?;
    Ok(bridge)
}

/// Runs `tests/clients/proto_client.py` with a spec (see the script) and returns its report.
pub(crate) async fn python(spec: Value) -> Result<Value> {
    let arg = spec.to_string();
    let args = [arg.as_str()];
    let run = run_python_client("proto_client.py", &args);
    let deadline =
        || anyhow!("the Python client did not finish within {CLIENT_DEADLINE:?}: {spec}");
    tokio::time::timeout(CLIENT_DEADLINE, run)
        .await
        .map_err(|_| deadline())?
}

/// The `(progress, total)` pairs a Python call step received.
pub(crate) fn progress_pairs(call: &Value) -> Vec<(f64, f64)> {
    let pairs = call["progress"].as_array().map(|progress| {
        let pair = |p: &Value| (p[0].as_f64().unwrap_or(-1.0), p[1].as_f64().unwrap_or(-1.0));
        progress.iter().map(pair).collect()
    });
    pairs.unwrap_or_default()
}

/// `(1, n), (2, n), ... (n, n)`: the progress of a call with `n` steps.
pub(crate) fn steps_of(n: u64) -> Vec<(f64, f64)> {
    (1..=n).map(|step| (step as f64, n as f64)).collect()
}

/// The ids of the tasks in a `get_tasks` result.
fn task_ids(structured: &Value) -> Vec<u64> {
    let ids = structured["tasks"]
        .as_array()
        .map(|tasks| tasks.iter().filter_map(|t| t["id"].as_u64()));
    ids.map(Iterator::collect).unwrap_or_default()
}

/// The Python SDK lists tools, reads tasks, creates one and sees it in a later read, on
/// the server's own endpoint and on the aggregated one, negotiating `expected_version`.
async fn python_round_trip(mode: &str, expected_version: &str) -> Result<()> {
    let bridge = demo_bridge("max_connections = 1").await?;
    for (path, prefix, server) in [
        ("/mcp/demo", "", "mcp-bridge-demo"),
        ("/mcp", "demo__", "mcp-bridge"),
    ] {
        // Non-ASCII text must survive both eras' encodings unchanged.
        let title = format!("python {mode} via {path}: Grüße ✓");
        let (get_tasks, create_task) =
            (format!("{prefix}get_tasks"), format!("{prefix}create_task"));
        let report = python(json!({"url": bridge.url(path), "mode": mode, "steps": [
            {"op": "list_tools"},
            {"op": "call", "tool": get_tasks, "args": {"status": "all"}},
            {"op": "call", "tool": create_task, "args": {"title": title, "points": 3}},
            {"op": "call", "tool": get_tasks, "args": {"status": "all"}},
        ]}))
        .await?;
        assert_eq!(
            report["protocol_version"], expected_version,
            "{path}: {report}"
        );
        // A client pinned to 2026-07-28 skips discovery, so it never learns the server's name.
        if mode != "2026-07-28" {
            assert_eq!(report["server_name"], server, "{path}: {report}");
        }
        let results = &report["results"];
        let tools = results[0]["tools"]
            .as_array()
            .context("tools/list result")?;
        for tool in [&get_tasks, &create_task, &format!("{prefix}debug_progress")] {
            assert!(
                tools.contains(&json!(tool)),
                "{path}: {tool} missing from {tools:?}"
            );
        }
        let created = &results[2]["structured"]["task"];
        assert_eq!(created["title"], title.as_str(), "{path}: {report}");
        let id = created["id"].as_u64().context("created task id")?;
        let (before, after) = (
            task_ids(&results[1]["structured"]),
            task_ids(&results[3]["structured"]),
        );
        assert!(
            !before.contains(&id) && after.contains(&id),
            "{path}: {id} not new in {report}"
        );
        assert_eq!(after.len(), before.len() + 1, "{path}: {report}");
    }
    Ok(())
}

#[tokio::test]
async fn python_legacy_client_lists_and_calls_on_both_endpoints() -> Result<()> {
    python_round_trip("legacy", "2025-11-25").await
}

#[tokio::test]
async fn python_2026_client_lists_and_calls_on_both_endpoints() -> Result<()> {
    python_round_trip("2026-07-28", "2026-07-28").await
}

#[tokio::test]
async fn python_auto_client_discovers_2026_and_calls_on_both_endpoints() -> Result<()> {
    python_round_trip("auto", "2026-07-28").await
}

/// `debug_progress` with a progress callback, through both endpoints, in one era.
async fn python_progress(mode: &str) -> Result<()> {
    let bridge = demo_bridge("").await?;
    for (path, tool) in [
        ("/mcp/demo", "debug_progress"),
        ("/mcp", "demo__debug_progress"),
    ] {
        let args = json!({"steps": 3, "delay_ms": 20});
        let step = json!({"op": "call", "tool": tool, "args": args, "progress": true});
        let report =
            python(json!({"url": bridge.url(path), "mode": mode, "steps": [step]})).await?;
        let call = &report["results"][0];
        assert_eq!(
            call["structured"],
            json!({"steps": 3}),
            "{mode} {path}: {report}"
        );
        assert_eq!(
            progress_pairs(call),
            steps_of(3),
            "{mode} {path}: no progress: {report}"
        );
        assert_eq!(
            call["progress"][0][2], "step 1 of 3",
            "{mode} {path}: {report}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn python_legacy_client_receives_progress() -> Result<()> {
    python_progress("legacy").await
}

#[tokio::test]
async fn python_2026_client_receives_progress() -> Result<()> {
    python_progress("2026-07-28").await
}

/// Clients whose requests carry the same ids (and so the same progress tokens) call
/// `debug_progress` at once on one shared process: each gets only its own progress.
#[tokio::test]
async fn concurrent_clients_each_get_only_their_own_progress() -> Result<()> {
    let bridge = demo_bridge("max_connections = 1").await?;
    let run = |mode: &str, steps: u64| {
        let args = json!({"steps": steps, "delay_ms": 40});
        let step = json!({"op": "call", "tool": "debug_progress", "args": args, "progress": true});
        python(json!({"url": bridge.url("/mcp/demo"), "mode": mode, "steps": [step]}))
    };
    let (a, b, c) = tokio::join!(run("legacy", 3), run("legacy", 5), run("2026-07-28", 4));
    for (report, steps) in [(a?, 3), (b?, 5), (c?, 4)] {
        let progress = progress_pairs(&report["results"][0]);
        assert_eq!(
            progress,
            steps_of(steps),
            "a client got another call's progress: {report}"
        );
    }
    Ok(())
}

/// Log notifications follow each era's rules: a session gets them at the default level,
/// and a 2026-07-28 request gets them only when it opts in with a `logLevel`.
#[tokio::test]
async fn log_messages_reach_only_clients_that_asked_for_them() -> Result<()> {
    let bridge = demo_bridge("").await?;
    let info_logs = json!([["info", "step 1"], ["info", "step 2"]]);
    for (path, prefix) in [("/mcp/demo", ""), ("/mcp", "demo__")] {
        let call =
            json!({"op": "call", "tool": format!("{prefix}debug_progress"), "args": {"steps": 2}});
        let url = bridge.url(path);
        let legacy = python(json!({"url": url, "mode": "legacy", "steps": [call]})).await?;
        assert_eq!(
            legacy["logs"], info_logs,
            "legacy session on {path}: {legacy}"
        );
        let silent = python(json!({"url": url, "mode": "2026-07-28", "steps": [call]})).await?;
        assert_eq!(
            silent["logs"],
            json!([]),
            "2026-07-28 without logLevel on {path}: {silent}"
        );
        let spec = json!({"url": url, "mode": "2026-07-28", "log_level": "info", "steps": [call]});
        let opted = python(spec).await?;
        assert_eq!(
            opted["logs"], info_logs,
            "2026-07-28 with logLevel info on {path}: {opted}"
        );
    }
    Ok(())
}

/// A client that asks for warnings and above (per session with `logging/setLevel`, or per
/// request with `logLevel`) must not receive the server's info messages.
#[tokio::test]
async fn log_level_filters_messages_below_the_requested_level() -> Result<()> {
    let bridge = demo_bridge("").await?;
    let url = bridge.url("/mcp/demo");
    let call = json!({"op": "call", "tool": "debug_progress", "args": {"steps": 2}});
    let set_level = json!({"op": "set_logging_level", "level": "warning"});
    let legacy = python(json!({"url": url, "mode": "legacy", "steps": [set_level, call]})).await?;
    let spec = json!({"url": url, "mode": "2026-07-28", "log_level": "warning", "steps": [call]});
    let modern = python(spec).await?;
    assert_eq!(
        legacy["logs"],
        json!([]),
        "setLevel warning let info messages through: {legacy}"
    );
    assert_eq!(
        modern["logs"],
        json!([]),
        "logLevel warning let info messages through: {modern}"
    );
    Ok(())
}

/// A server's `sampling/createMessage` reaches the Python client that made the call,
/// and the callback's answer comes back in the tool result. Two clients sample at once
/// (one per endpoint) and each must get its own answer.
#[tokio::test]
async fn python_sampling_callback_answers_debug_sample_with_exclusive_processes() -> Result<()> {
    let bridge = demo_bridge("exclusive = true\nmin_connections = 2\nmax_connections = 2").await?;
    let run = |path: &str, tool: &str, prompt: &str| {
        let step = json!({"op": "call", "tool": tool, "args": {"prompt": prompt}});
        python(
            json!({"url": bridge.url(path), "mode": "legacy", "sampling": true, "steps": [step]}),
        )
    };
    let (alpha, beta) = ("alpha from /mcp/demo", "beta from /mcp");
    let (own, aggregated) = tokio::join!(
        run("/mcp/demo", "debug_sample", alpha),
        run("/mcp", "demo__debug_sample", beta)
    );
    for (report, prompt) in [(own?, alpha), (aggregated?, beta)] {
        assert_eq!(
            report["sampled"],
            json!([prompt]),
            "the callback saw other prompts: {report}"
        );
        let reply = &report["results"][0]["structured"]["reply"];
        assert_eq!(*reply, format!("sampled: {prompt}"), "{report}");
    }
    Ok(())
}

/// A 2026-07-28 client cannot receive server requests, so a backend's sampling request
/// during its call is either turned into an `input_required` round the SDK answers with
/// its callback, or refused by the bridge with an explanation; the call never hangs.
#[tokio::test]
async fn python_2026_client_gets_an_answer_to_debug_sample_either_way() -> Result<()> {
    let bridge = demo_bridge("exclusive = true").await?;
    let step = json!({"op": "call", "tool": "debug_sample", "args": {"prompt": "modern prompt"}});
    let spec = json!({"url": bridge.url("/mcp/demo"), "mode": "2026-07-28", "sampling": true, "steps": [step]});
    let report = python(spec).await?;
    let reply = report["results"][0]["structured"]["reply"]
        .as_str()
        .unwrap_or_default();
    let answered = reply == "sampled: modern prompt";
    let explained = reply.contains("2026-07-28") && reply.contains("sampling/createMessage");
    assert!(
        answered || explained,
        "neither the callback's answer nor an explanation: {report}"
    );
    Ok(())
}

/// An `rmcp` client handler that routes progress to a [`ProgressDispatcher`], offering
/// `offer` in a legacy `initialize` (rmcp's default version when unset).
#[derive(Clone, Default)]
struct RmcpHandler {
    progress: ProgressDispatcher,
    offer: Option<ProtocolVersion>,
}

impl ClientHandler for RmcpHandler {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.progress.handle_notification(params).await;
    }

    fn get_info(&self) -> ClientConfig {
        let implementation = Implementation::new("proto-rmcp", "1.0.0");
        let config = ClientConfig::new(ClientCapabilities::default(), implementation);
        match &self.offer {
            Some(version) => config.with_protocol_version(version.clone()),
            None => config,
        }
    }
}

type RmcpClient = RunningService<RoleClient, RmcpHandler>;

/// Which `rmcp` entry point a test connects with: `ServiceExt::serve` (the `initialize`
/// handshake), `ClientLifecycleMode::Discover` pinned to 2026-07-28, or `Auto`, which
/// prefers 2026-07-28 and can fall back to 2025-11-25.
#[derive(Clone, Copy, Debug)]
enum Lifecycle {
    Legacy,
    Discover,
    Auto,
}

impl Lifecycle {
    fn expected_version(self) -> ProtocolVersion {
        match self {
            Lifecycle::Legacy => ProtocolVersion::V_2025_11_25,
            Lifecycle::Discover | Lifecycle::Auto => ProtocolVersion::V_2026_07_28,
        }
    }

    fn mode(self) -> Option<ClientLifecycleMode> {
        let (modern, legacy) = (ProtocolVersion::V_2026_07_28, ProtocolVersion::V_2025_11_25);
        match self {
            Lifecycle::Legacy => None,
            Lifecycle::Discover => Some(ClientLifecycleMode::Discover {
                preferred_versions: vec![modern],
            }),
            Lifecycle::Auto => Some(ClientLifecycleMode::Auto {
                preferred_versions: vec![modern, legacy.clone()],
                legacy_version: Some(legacy),
            }),
        }
    }
}

async fn rmcp_connect(url: &str, lifecycle: Lifecycle) -> Result<(RmcpHandler, RmcpClient)> {
    rmcp_connect_with(RmcpHandler::default(), url, lifecycle).await
}

async fn rmcp_connect_with(
    handler: RmcpHandler,
    url: &str,
    lifecycle: Lifecycle,
) -> Result<(RmcpHandler, RmcpClient)> {
    // rmcp builds its own reqwest client, whose TLS needs the process-wide provider.
    install_tls_provider();
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    let service = handler.clone();
    let connecting = async {
        match lifecycle.mode() {
            None => Ok::<_, anyhow::Error>(service.serve(transport).await?),
            Some(mode) => Ok(service.serve_with_lifecycle(transport, mode).await?),
        }
    };
    let late = || anyhow!("rmcp {lifecycle:?} could not connect to {url} in time");
    let client = tokio::time::timeout(CLIENT_DEADLINE, connecting)
        .await
        .map_err(|_| late())??;
    Ok((handler, client))
}

fn call_params(tool: &str, args: Value) -> CallToolRequestParams {
    let args = args.as_object().cloned().unwrap_or_default();
    CallToolRequestParams::new(tool.to_owned()).with_arguments(args)
}

async fn rmcp_call(client: &RmcpClient, tool: &str, args: Value) -> Result<CallToolResult> {
    let call = client.call_tool(call_params(tool, args));
    Ok(tokio::time::timeout(CLIENT_DEADLINE, call).await??)
}

/// A tool call's `structuredContent`, which every demo tool returns.
async fn rmcp_structured(client: &RmcpClient, tool: &str, args: Value) -> Result<Value> {
    let result = rmcp_call(client, tool, args).await?;
    ensure!(result.is_error != Some(true), "{tool} failed: {result:?}");
    result
        .structured_content
        .with_context(|| format!("{tool} has no structuredContent"))
}

async fn rmcp_tool_names(client: &RmcpClient) -> Result<Vec<String>> {
    let tools = tokio::time::timeout(CLIENT_DEADLINE, client.list_all_tools()).await??;
    Ok(tools
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect())
}

/// `rmcp` negotiates the expected version, lists tools and sees its own write in a later
/// read, on the server's endpoint and the aggregated one.
async fn rmcp_round_trip(lifecycle: Lifecycle) -> Result<()> {
    let bridge = demo_bridge("max_connections = 1").await?;
    for (path, prefix) in [("/mcp/demo", ""), ("/mcp", "demo__")] {
        let context = format!("{lifecycle:?} {path}");
        let (_handler, client) = rmcp_connect(&bridge.url(path), lifecycle).await?;
        let info = client
            .peer_info()
            .context("no peer info after connecting")?;
        assert_eq!(
            info.protocol_version,
            lifecycle.expected_version(),
            "{context}"
        );
        let tools = rmcp_tool_names(&client).await?;
        let (get_tasks, create_task) =
            (format!("{prefix}get_tasks"), format!("{prefix}create_task"));
        for tool in [
            &get_tasks,
            &create_task,
            &format!("{prefix}debug_toggle_tool"),
        ] {
            assert!(tools.contains(tool), "{context}: {tool} missing: {tools:?}");
        }
        let all = json!({"status": "all"});
        let before = task_ids(&rmcp_structured(&client, &get_tasks, all.clone()).await?);
        let title = format!("rmcp {context}");
        let created = rmcp_structured(&client, &create_task, json!({"title": title})).await?;
        assert_eq!(created["task"]["title"], title.as_str(), "{context}");
        let id = created["task"]["id"].as_u64().context("created id")?;
        let after = task_ids(&rmcp_structured(&client, &get_tasks, all).await?);
        let fresh = !before.contains(&id) && after.contains(&id);
        assert!(
            fresh,
            "{context}: task {id} not new in a later read: {before:?} -> {after:?}"
        );
        client.cancel().await?;
    }
    Ok(())
}

#[tokio::test]
async fn rmcp_legacy_client_lists_and_calls_on_both_endpoints() -> Result<()> {
    rmcp_round_trip(Lifecycle::Legacy).await
}

#[tokio::test]
async fn rmcp_discover_client_lists_and_calls_on_both_endpoints() -> Result<()> {
    rmcp_round_trip(Lifecycle::Discover).await
}

#[tokio::test]
async fn rmcp_auto_client_negotiates_2026_and_calls_on_both_endpoints() -> Result<()> {
    rmcp_round_trip(Lifecycle::Auto).await
}

/// Every session-based version the front serves is negotiated as offered, and a client
/// on it is served; `/admin/stats` counts the sessions by version.
#[tokio::test]
async fn rmcp_legacy_clients_of_each_session_version_are_served() -> Result<()> {
    let bridge = demo_bridge("").await?;
    let versions = [
        ProtocolVersion::V_2025_03_26,
        ProtocolVersion::V_2025_06_18,
        ProtocolVersion::V_2025_11_25,
    ];
    let mut clients = Vec::new();
    for version in versions.clone() {
        let handler = RmcpHandler {
            offer: Some(version.clone()),
            ..RmcpHandler::default()
        };
        let url = bridge.url("/mcp/demo");
        let (_handler, client) = rmcp_connect_with(handler, &url, Lifecycle::Legacy).await?;
        let negotiated = client
            .peer_info()
            .context("peer info")?
            .protocol_version
            .clone();
        assert_eq!(
            negotiated, version,
            "the bridge did not accept the offered version"
        );
        let metrics = rmcp_structured(&client, "get_today_metrics", json!({})).await?;
        assert_eq!(metrics["total_tasks"], 5, "{version}");
        clients.push(client);
    }
    let stats: Value = http()
        .get(bridge.url("/admin/stats"))
        .send()
        .await?
        .json()
        .await?;
    let sessions = &stats["sessions"];
    for version in versions {
        assert_eq!(
            sessions["by_protocol_version"][version.as_str()],
            1,
            "{stats}"
        );
    }
    assert_eq!(sessions["by_client"]["proto-rmcp"], 3, "{stats}");
    for client in clients {
        client.cancel().await?;
    }
    Ok(())
}

/// Calls `debug_progress` and collects the progress the dispatcher routes to this call.
async fn rmcp_progress(
    handler: &RmcpHandler,
    client: &RmcpClient,
    tool: &str,
) -> Result<Vec<ProgressNotificationParam>> {
    let params = call_params(tool, json!({"steps": 3, "delay_ms": 100}));
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = client
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await?;
    // The first step is sent 100 ms after the request, well after this subscription.
    let subscriber = handler
        .progress
        .subscribe(handle.progress_token.clone())
        .await;
    let collected = tokio::spawn(subscriber.take(3).collect::<Vec<_>>());
    let response = tokio::time::timeout(CLIENT_DEADLINE, handle.await_response()).await??;
    let ServerResult::CallToolResult(result) = response else {
        bail!("not a tool result: {response:?}")
    };
    let structured = result.structured_content.clone();
    ensure!(
        structured == Some(json!({"steps": 3})),
        "unexpected result {result:?}"
    );
    match tokio::time::timeout(Duration::from_secs(5), collected).await {
        Ok(progress) => Ok(progress?),
        Err(_) => bail!("fewer than 3 progress notifications reached the rmcp client for {tool}"),
    }
}

async fn rmcp_progress_round(lifecycle: Lifecycle) -> Result<()> {
    let bridge = demo_bridge("").await?;
    for (path, tool) in [
        ("/mcp/demo", "debug_progress"),
        ("/mcp", "demo__debug_progress"),
    ] {
        let (handler, client) = rmcp_connect(&bridge.url(path), lifecycle).await?;
        let progress = rmcp_progress(&handler, &client, tool).await?;
        let steps: Vec<_> = progress
            .iter()
            .map(|p| (p.progress, p.total.unwrap_or(-1.0)))
            .collect();
        assert_eq!(steps, steps_of(3), "{lifecycle:?} {path}");
        assert_eq!(progress[0].message.as_deref(), Some("step 1 of 3"));
        client.cancel().await?;
    }
    Ok(())
}

#[tokio::test]
async fn rmcp_legacy_client_receives_progress_through_its_dispatcher() -> Result<()> {
    rmcp_progress_round(Lifecycle::Legacy).await
}

#[tokio::test]
async fn rmcp_2026_client_receives_progress_through_its_dispatcher() -> Result<()> {
    rmcp_progress_round(Lifecycle::Discover).await
}

/// Whether the aggregated `tools/list` offers `demo__extra_tool`.
async fn offers_extra_tool(client: &RmcpClient) -> bool {
    let tools = rmcp_tool_names(client).await;
    tools.is_ok_and(|tools| tools.iter().any(|name| name == "demo__extra_tool"))
}

/// After `debug_toggle_tool` the server's `tools/list_changed` makes the bridge re-read
/// the tool list, so the aggregated `tools/list` offers `demo__extra_tool` and a call
/// to it reaches the server; toggling back removes it again.
#[tokio::test]
async fn aggregated_tool_list_follows_tools_list_changed() -> Result<()> {
    let bridge = demo_bridge("max_connections = 1").await?;
    for lifecycle in [Lifecycle::Auto, Lifecycle::Legacy] {
        let (_handler, client) = rmcp_connect(&bridge.url("/mcp"), lifecycle).await?;
        assert!(
            !offers_extra_tool(&client).await,
            "{lifecycle:?}: offered before the toggle"
        );
        let toggled = rmcp_structured(&client, "demo__debug_toggle_tool", json!({})).await?;
        assert_eq!(toggled, json!({"extra_tool": true}));
        let listed = eventually(Duration::from_secs(10), async || {
            offers_extra_tool(&client).await
        });
        assert!(
            listed.await,
            "{lifecycle:?}: demo__extra_tool never appeared on /mcp"
        );
        let extra = rmcp_structured(&client, "demo__extra_tool", json!({})).await?;
        assert_eq!(extra, json!({"extra": true}));
        rmcp_call(&client, "demo__debug_toggle_tool", json!({})).await?;
        let gone = eventually(Duration::from_secs(10), async || {
            !offers_extra_tool(&client).await
        });
        assert!(
            gone.await,
            "{lifecycle:?}: demo__extra_tool stayed on /mcp after its removal"
        );
        client.cancel().await?;
    }
    Ok(())
}
