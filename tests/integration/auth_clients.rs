//! Official clients written by others, authenticating to the bridge with tokens the test
//! issuer minted: the Python SDK with a bearer header and with its own OAuth discovery
//! (from the 401 to the protected-resource metadata, the authorization server's metadata,
//! dynamic registration, the authorization code with PKCE and the token), the TypeScript
//! SDK with `requestInit` headers, and `rmcp` with its transport's auth header.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::auth::{AUDIENCE, Guarded, Issuer};
use crate::support::{SETTLE, http, poll_until, repo_root, run_python_client};

/// The longest one client run may take before the test fails instead of hanging.
const CLIENT_DEADLINE: Duration = Duration::from_secs(90);

/// Runs `tests/clients/auth_oauth_client.py` with `spec` and returns its report.
async fn python(spec: Value) -> Result<Value> {
    let arg = spec.to_string();
    let args = [arg.as_str()];
    let run = run_python_client("auth_oauth_client.py", &args);
    tokio::time::timeout(CLIENT_DEADLINE, run)
        .await
        .map_err(|_| anyhow!("the Python client did not finish in time: {spec}"))?
}

/// A bridge trusting `issuer` for `audience`.
async fn bridge_for(issuer: &Issuer, audience: &str) -> Result<Guarded> {
    Guarded::start(&issuer.jwt_toml(audience, ""), "max_connections = 1").await
}

/// The three seeded clients `get_clients` answers with.
fn client_ids(structured: &Value) -> Vec<String> {
    let clients = structured["clients"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    clients
        .iter()
        .filter_map(|client| client["id"].as_str().map(str::to_owned))
        .collect()
}

const SEEDED_CLIENTS: [&str; 3] = ["acme", "globex", "initech"];

/// The Python SDK with `Authorization: Bearer` in its HTTP client's headers lists and calls
/// on a server's endpoint (session-based) and on the aggregated one (2026-07-28, no session).
#[tokio::test]
async fn python_sdk_with_a_bearer_token_lists_and_calls() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = bridge_for(&issuer, AUDIENCE).await?;
    let token = issuer.token("alice", &[]).await?;
    for (path, mode, tool) in [
        ("/mcp/demo", "legacy", "get_clients"),
        ("/mcp", "2026-07-28", "demo__get_clients"),
    ] {
        let steps = json!([{"op": "list_tools"}, {"op": "call", "tool": tool}]);
        let spec = json!({"url": demo.url(path), "mode": mode, "bearer": token, "steps": steps});
        let report = python(spec).await?;
        let tools = report["results"][0]["tools"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(tools.contains(&json!(tool)), "{path}: {report}");
        let ids = client_ids(&report["results"][1]["structured"]);
        assert_eq!(ids, SEEDED_CLIENTS, "{path}: {report}");
    }
    assert_eq!(demo.calls_of("get_clients"), 2);
    // The same client without the token is refused: the header is what let it in.
    let steps = json!([{"op": "list_tools"}]);
    let spec = json!({"url": demo.url("/mcp/demo"), "bearer": "forged", "steps": steps});
    let refused = python(spec).await.err().map(|error| format!("{error:#}"));
    let refused = refused.context("a forged token was accepted")?;
    assert!(refused.contains("401"), "not refused with 401: {refused}");
    Ok(())
}

/// The TypeScript SDK's Streamable HTTP transport with the token in `requestInit.headers`
/// (an ES256 token, so the EC key is exercised too) lists and calls.
#[tokio::test]
async fn typescript_sdk_with_a_bearer_token_lists_and_calls() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = bridge_for(&issuer, AUDIENCE).await?;
    let token = issuer.mint(json!({"sub": "alice", "alg": "ES256"})).await?;
    let spec =
        json!({"url": demo.url("/mcp/demo"), "token": token, "call": {"tool": "get_clients"}});
    let node = repo_root().join("build/test-deps/node_modules/node/bin/node");
    let script = repo_root().join("tests/clients/auth_ts_client.mjs");
    let run = tokio::process::Command::new(node)
        .arg(script)
        .arg(spec.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(CLIENT_DEADLINE, run)
        .await
        .context("the TypeScript client did not finish in time")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "the TypeScript client failed:\n{stdout}\n{stderr}"
    );
    let report: Value = serde_json::from_str(stdout.trim()).context("its report")?;
    assert_eq!(report["server"], "mcp-bridge-demo", "{report}");
    let tools = report["tools"].as_array().cloned().unwrap_or_default();
    assert!(tools.contains(&json!("get_clients")), "{report}");
    assert_eq!(
        client_ids(&report["call"]["structured"]),
        SEEDED_CLIENTS,
        "{report}"
    );
    assert_eq!(demo.calls_of("get_clients"), 1);
    Ok(())
}

/// `rmcp` with the token as its transport's auth header lists and calls; with a wrong token
/// it cannot connect.
#[tokio::test]
async fn rmcp_with_a_bearer_token_lists_and_calls() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = bridge_for(&issuer, AUDIENCE).await?;
    let token = issuer.token("alice", &[]).await?;
    let connect = |token: String| {
        let config =
            StreamableHttpClientTransportConfig::with_uri(demo.url("/mcp/demo")).auth_header(token);
        let transport = StreamableHttpClientTransport::from_config(config);
        tokio::time::timeout(CLIENT_DEADLINE, ().serve(transport))
    };
    let client = connect(token)
        .await
        .context("rmcp did not connect in time")??;
    let tools = tokio::time::timeout(CLIENT_DEADLINE, client.list_all_tools()).await??;
    assert!(
        tools.iter().any(|tool| tool.name == "get_clients"),
        "{tools:?}"
    );
    let call = client.call_tool(CallToolRequestParams::new("get_clients"));
    let result = tokio::time::timeout(CLIENT_DEADLINE, call).await??;
    let structured = result.structured_content.context("no structuredContent")?;
    assert_eq!(client_ids(&structured), SEEDED_CLIENTS);
    client.cancel().await?;
    assert_eq!(demo.calls_of("get_clients"), 1);

    let refused = connect("forged".to_owned())
        .await
        .context("rmcp hung on a 401")?;
    ensure!(refused.is_err(), "rmcp connected with a forged token");
    Ok(())
}

/// The Python SDK's OAuth client starts with no token and finds its own way in: the 401's
/// `resource_metadata`, the bridge's protected-resource metadata, the issuer's metadata,
/// dynamic registration, the authorization code (PKCE) and the token for the bridge's
/// resource; then it lists and calls through the aggregated endpoint.
#[tokio::test]
async fn python_sdk_oauth_discovery_starts_from_the_401() -> Result<()> {
    let issuer = Issuer::start(&["--oauth-sub", "oauth-alice"]).await?;
    let demo = bridge_for(&issuer, AUDIENCE).await?;
    // The resource URI must be where clients reach the bridge, which is known only now that
    // it listens: the config is rewritten with it and the bridge reloads.
    let resource = demo.url("/mcp");
    let metadata_url = demo.url("/.well-known/oauth-protected-resource/mcp");
    demo.edit_config(|text| text.replace(AUDIENCE, &resource))?;
    let served = poll_until(
        SETTLE,
        async || {
            let response = http().get(&metadata_url).send().await.ok()?;
            response.json::<Value>().await.ok()
        },
        |metadata| {
            metadata
                .as_ref()
                .is_some_and(|m| m["resource"] == resource.as_str())
        },
    )
    .await;
    ensure!(
        served
            .as_ref()
            .is_some_and(|m| m["resource"] == resource.as_str()),
        "the reloaded resource is not served: {served:?}\n{}",
        demo.bridge.log_tail(30)
    );

    let steps = json!([{"op": "list_tools"}, {"op": "call", "tool": "demo__get_clients"}]);
    let report = python(json!({"url": resource, "steps": steps})).await?;
    let tools = report["results"][0]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(tools.contains(&json!("demo__get_clients")), "{report}");
    assert_eq!(
        client_ids(&report["results"][1]["structured"]),
        SEEDED_CLIENTS,
        "{report}"
    );

    // The exchanges, in order: the refused request, then discovery, then the retried one.
    let exchanges: Vec<(String, String, u64)> = report["http"]
        .as_array()
        .context("no http log")?
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap_or("").to_owned(),
                e[1].as_str().unwrap_or("").to_owned(),
                e[2].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let position = |method: &str, url: &str, status: u64| {
        exchanges
            .iter()
            .position(|(m, u, s)| m == method && u.split('?').next() == Some(url) && *s == status)
            .with_context(|| format!("no {method} {url} answered {status} in {exchanges:?}"))
    };
    let first_401 = position("POST", &resource, 401)?;
    let prm = position("GET", &metadata_url, 200)?;
    let asm = position(
        "GET",
        &format!("{}/.well-known/oauth-authorization-server", issuer.url),
        200,
    )?;
    let register = position("POST", &format!("{}/register", issuer.url), 201)?;
    let authorize = position("GET", &format!("{}/authorize", issuer.url), 302)?;
    let token = position("POST", &format!("{}/token", issuer.url), 200)?;
    let served = position("POST", &resource, 200)?;
    let order = [first_401, prm, asm, register, authorize, token, served];
    assert!(
        order.is_sorted(),
        "discovery out of order {order:?}: {exchanges:?}"
    );
    assert_eq!(demo.calls_of("get_clients"), 1);
    Ok(())
}
