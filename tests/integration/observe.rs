//! What operators see: Prometheus metrics that move as calls happen, liveness and
//! readiness, per-server health (including a required server that cannot start), and
//! the admin view of each pool's processes.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::support::{
    Bridge, RawSession, SETTLE, demo_server_toml, eventually, http, poll_until, process_alive,
    start_bridge,
};

/// One sample of the Prometheus text format: metric name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (the subset the bridge writes: no timestamps).
fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once("=\"")?;
                    Some((key.to_owned(), value.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// A scrape of `/metrics`, with its raw text for messages.
struct Scrape {
    samples: Vec<Sample>,
    text: String,
}

impl Scrape {
    async fn take(bridge: &Bridge) -> Result<Scrape> {
        let response = http().get(bridge.url("/metrics")).send().await?;
        assert_eq!(response.status(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/plain"),
            "metrics content type {content_type}"
        );
        let text = response.text().await?;
        Ok(Scrape {
            samples: parse_metrics(&text),
            text,
        })
    }

    /// The value of the one series with this name and these labels (0 when absent, as a
    /// counter that has not been touched yet).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Scrapes until `done` holds for a scrape (a gauge published later, on a tick) or
    /// [`SETTLE`] passes, and returns the last scrape for the caller to assert on.
    async fn wait_for(bridge: &Bridge, done: impl Fn(&Scrape) -> bool) -> Result<Scrape> {
        poll_until(
            SETTLE,
            async || Scrape::take(bridge).await,
            |scrape| scrape.as_ref().is_ok_and(&done),
        )
        .await
    }

    fn has_family(&self, name: &str, kind: &str) -> bool {
        self.text
            .lines()
            .any(|line| line == format!("# TYPE {name} {kind}"))
    }
}

#[tokio::test]
async fn metrics_count_calls_by_outcome_and_move_as_calls_happen() -> Result<()> {
    let bridge = start_bridge(&demo_server_toml(
        "demo",
        &[],
        "min_connections = 1\nmax_connections = 2",
    ))?;
    bridge.wait_ready().await?;
    // The supervisor publishes the process gauges on its tick, after /readyz already
    // counts the process as ready.
    let ready = [("server", "demo"), ("state", "ready")];
    let before = Scrape::wait_for(&bridge, |scrape| {
        scrape.value("mcp_bridge_pool_processes", &ready) == 1.0
    })
    .await?;
    assert_eq!(
        before.value(
            "mcp_bridge_pool_processes",
            &[("server", "demo"), ("state", "ready")]
        ),
        1.0,
        "{}",
        before.text
    );

    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    for id in 1..=3 {
        let ok = session.call_tool(json!(id), "get_tasks", json!({})).await?;
        assert!(ok.get("result").is_some(), "{ok}");
    }
    let failed = session
        .call_tool(json!(4), "no_such_tool", json!({}))
        .await?;
    assert!(failed.get("error").is_some(), "{failed}");
    let after = Scrape::take(&bridge).await?;
    // Label-less families appear once they have a series; after calls all of these do.
    for (name, kind) in [
        ("mcp_bridge_calls_total", "counter"),
        ("mcp_bridge_call_duration_seconds", "histogram"),
        ("mcp_bridge_pool_processes", "gauge"),
        ("mcp_bridge_http_requests_total", "counter"),
    ] {
        assert!(
            after.has_family(name, kind),
            "no {kind} {name} in:\n{}",
            after.text
        );
    }

    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let calls = |outcome| {
        [
            ("server", "demo"),
            ("method", "tools/call"),
            ("outcome", outcome),
        ]
    };
    assert_eq!(
        delta("mcp_bridge_calls_total", &calls("ok")),
        3.0,
        "{}",
        after.text
    );
    assert_eq!(
        delta("mcp_bridge_calls_total", &calls("error")),
        1.0,
        "{}",
        after.text
    );
    let timed = [
        ("server", "demo"),
        ("method", "tools/call"),
        ("tool", "get_tasks"),
        ("outcome", "ok"),
    ];
    assert_eq!(
        delta("mcp_bridge_call_duration_seconds_count", &timed),
        3.0,
        "{}",
        after.text
    );
    assert!(
        delta("mcp_bridge_call_duration_seconds_sum", &timed) > 0.0,
        "{}",
        after.text
    );
    // Every call is under the largest finite bucket, and the buckets are cumulative.
    let in_a_minute = [timed.as_slice(), &[("le", "60")]].concat();
    assert_eq!(
        delta("mcp_bridge_call_duration_seconds_bucket", &in_a_minute),
        3.0,
        "{}",
        after.text
    );
    // A client-chosen tool name never becomes a label value.
    assert!(
        !after.text.contains("no_such_tool"),
        "unbounded label value in:\n{}",
        after.text
    );
    // initialize plus four calls, all answered 200 on the per-server route.
    let http_ok = [("route", "/mcp/{server}"), ("status", "200")];
    assert_eq!(
        delta("mcp_bridge_http_requests_total", &http_ok),
        5.0,
        "{}",
        after.text
    );
    assert_eq!(
        delta(
            "mcp_bridge_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ),
        1.0
    );

    let missing = http().get(bridge.url("/mcp/nope")).send().await?;
    assert_eq!(missing.status(), 404);
    let last = Scrape::take(&bridge).await?;
    let not_found = [("route", "/mcp/{server}"), ("status", "404")];
    assert_eq!(
        last.value("mcp_bridge_http_requests_total", &not_found)
            - after.value("mcp_bridge_http_requests_total", &not_found),
        1.0
    );

    // The admin routes the application plugs into the front are labelled by their path
    // and refuse another method with 405, like the front's own routes; an unknown admin
    // path is 404 under `other`.
    let stats = http().get(bridge.url("/admin/stats")).send().await?;
    assert_eq!(stats.status(), 200);
    let wrong_method = http().delete(bridge.url("/admin/stats")).send().await?;
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET, POST, DELETE");
    let unknown = http().get(bridge.url("/admin/nope")).send().await?;
    assert_eq!(unknown.status(), 404);
    let admin = Scrape::take(&bridge).await?;
    let label_delta = |route: &str, status: &str| {
        let labels = [("route", route), ("status", status)];
        admin.value("mcp_bridge_http_requests_total", &labels)
            - last.value("mcp_bridge_http_requests_total", &labels)
    };
    assert_eq!(label_delta("/admin/stats", "200"), 1.0, "{}", admin.text);
    assert_eq!(label_delta("/admin/stats", "405"), 1.0, "{}", admin.text);
    assert_eq!(label_delta("other", "404"), 1.0, "{}", admin.text);
    Ok(())
}

#[tokio::test]
async fn liveness_readiness_and_health_of_a_working_bridge() -> Result<()> {
    let bridge = start_bridge(&demo_server_toml("demo", &[], ""))?;
    let healthz = http().get(bridge.url("/healthz")).send().await?;
    assert_eq!(healthz.status(), 200, "liveness does not wait for servers");
    bridge.wait_ready().await?;
    let ready = http().get(bridge.url("/readyz")).send().await?;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await?["ready"], true);

    let health = http().get(bridge.url("/health")).send().await?;
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await?;
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["servers"]["demo"]["status"], "healthy", "{health}");
    assert_eq!(health["servers"]["demo"]["ready_processes"], 1, "{health}");
    assert!(health["uptime_seconds"].as_f64().is_some(), "{health}");

    let wrong_method = http().post(bridge.url("/healthz")).send().await?;
    assert_eq!(wrong_method.status(), 405);
    Ok(())
}

/// A config with the demo server and a server whose command does not exist.
fn broken_config(required: bool) -> String {
    format!(
        "{}\n[servers.broken]\ncommand = \"/nonexistent/mcp-bridge-no-such-server\"\nrequired = {required}\n\
         reconnect_backoff_initial = \"50ms\"\nreconnect_backoff_max = \"200ms\"\nmax_reconnect_attempts = 2\n",
        demo_server_toml("demo", &[], "")
    )
}

async fn get_json(bridge: &Bridge, path: &str) -> Result<(u16, Value)> {
    let response = http().get(bridge.url(path)).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn a_required_server_that_cannot_start_makes_the_bridge_unready_and_unhealthy() -> Result<()>
{
    let bridge = start_bridge(&broken_config(true))?;
    assert_eq!(
        http().get(bridge.url("/healthz")).send().await?.status(),
        200
    );
    let mut readyz = (0, Value::Null);
    let unready = eventually(Duration::from_secs(10), async || {
        readyz = get_json(&bridge, "/readyz").await.unwrap_or_default();
        readyz.0 == 503 && readyz.1["waiting_for"] == json!(["broken"])
    })
    .await;
    assert!(
        unready,
        "/readyz did not name the broken server: {readyz:?}"
    );

    let mut health = (0, Value::Null);
    let judged = eventually(Duration::from_secs(10), async || {
        health = get_json(&bridge, "/health").await.unwrap_or_default();
        health.1["servers"]["broken"]["status"] == "unhealthy"
            && health.1["servers"]["demo"]["status"] == "healthy"
    })
    .await;
    assert!(judged, "/health never judged the servers: {health:?}");
    assert_eq!(health.0, 503, "{health:?}");
    assert_eq!(health.1["status"], "unhealthy", "{health:?}");
    // The report says why, not only that.
    let reasons = health.1["servers"]["broken"]["reasons"]
        .as_array()
        .map(Vec::len);
    assert!(
        reasons.unwrap_or(0) > 0,
        "no reasons for an unhealthy server: {health:?}"
    );

    let stats = bridge.server_stats("broken").await?;
    assert!(
        stats["spawn_failures"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
    let last_error = stats["last_spawn_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("/nonexistent/mcp-bridge-no-such-server"),
        "spawn error does not name the command: {stats}"
    );

    // The working server keeps serving, alone on the aggregated endpoint too.
    let aggregated = RawSession::open(&bridge.url("/mcp")).await?;
    let tools = aggregated
        .request(json!(1), "tools/list", json!({}))
        .await?;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .context("tools")?
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"demo__get_tasks"), "{tools}");
    let metrics = aggregated
        .call_tool(json!(2), "demo__get_today_metrics", json!({}))
        .await?;
    assert_eq!(
        metrics["result"]["structuredContent"]["total_tasks"], 5,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn an_optional_server_that_cannot_start_is_unhealthy_but_not_blocking() -> Result<()> {
    let bridge = start_bridge(&broken_config(false))?;
    bridge.wait_ready().await?;
    let mut health = (0, Value::Null);
    let judged = eventually(Duration::from_secs(10), async || {
        health = get_json(&bridge, "/health").await.unwrap_or_default();
        health.1["servers"]["broken"]["status"] == "unhealthy"
    })
    .await;
    assert!(judged, "{health:?}");
    assert_eq!(
        health.0, 200,
        "an optional server must not fail /health: {health:?}"
    );
    assert_eq!(health.1["status"], "healthy", "{health:?}");
    assert_eq!(get_json(&bridge, "/readyz").await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn admin_stats_show_processes_inflight_and_pool_bounds() -> Result<()> {
    const SLEEP_MS: u64 = 4000;
    let bridge = start_bridge(&demo_server_toml(
        "demo",
        &[],
        "min_connections = 1\nmax_connections = 3\nmax_inflight = 8",
    ))?;
    bridge.wait_ready().await?;
    let stats = bridge.server_stats("demo").await?;
    assert_eq!(stats["min_connections"], 1, "{stats}");
    assert_eq!(stats["max_connections"], 3, "{stats}");
    assert_eq!(stats["max_inflight"], 8, "{stats}");
    assert_eq!(stats["inflight"], 0, "{stats}");
    let pids = bridge.backend_pids("demo").await?;
    assert_eq!(pids.len(), 1, "{stats}");
    assert!(
        pids.iter().all(|pid| process_alive(*pid)),
        "a listed pid is not a live process: {pids:?}"
    );
    assert_eq!(stats["processes"][0]["state"], "ready", "{stats}");
    // The backend handshake negotiated a version the bridge knows.
    let version = stats["processes"][0]["protocol_version"]
        .as_str()
        .unwrap_or_default();
    let known = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
    assert!(known.contains(&version), "{stats}");

    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    // Long enough that the stats and the gauge are read while it runs, even when a
    // loaded machine answers each admin request slowly.
    let sleeper = tokio::spawn(async move {
        session
            .call_tool(json!(1), "debug_sleep", json!({"ms": SLEEP_MS}))
            .await
    });
    let mut seen = Value::Null;
    let busy = eventually(SETTLE, async || {
        seen = bridge.server_stats("demo").await.unwrap_or_default();
        seen["inflight"] == 1
            && seen["processes"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["inflight"] == 1))
    })
    .await;
    assert!(busy, "the sleeping call never showed as in flight: {seen}");
    // The gauge moves right after the process's own count, on another thread.
    let inflight = [("server", "demo")];
    let gauge = Scrape::wait_for(&bridge, |scrape| {
        scrape.value("mcp_bridge_pool_inflight", &inflight) == 1.0
    })
    .await?
    .value("mcp_bridge_pool_inflight", &inflight);
    assert_eq!(gauge, 1.0, "mcp_bridge_pool_inflight while one call sleeps");
    let answer = tokio::time::timeout(Duration::from_secs(20), sleeper).await???;
    assert_eq!(
        answer["result"]["structuredContent"]["slept_ms"], SLEEP_MS,
        "{answer}"
    );
    let idle = eventually(SETTLE, async || {
        bridge
            .server_stats("demo")
            .await
            .is_ok_and(|stats| stats["inflight"] == 0)
    })
    .await;
    assert!(idle, "inflight did not return to 0 after the call");

    let all: Value = http()
        .get(bridge.url("/admin/stats"))
        .send()
        .await?
        .json()
        .await?;
    assert!(all["sessions"]["open"].as_u64().unwrap_or(0) >= 1, "{all}");
    assert!(
        all["sessions"]["by_client"]["raw-test"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{all}"
    );
    Ok(())
}
