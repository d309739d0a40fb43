//! The status page (`GET /` and `/ui`) as a person uses it: a static, self-contained
//! shell whose data comes from `GET /admin/status` behind the admin token. In a real
//! headless Chromium (scripts/status-page.mjs) the page first shows that it needs the
//! token, then, with it, fills the servers, processes and plugins tables, and follows a
//! tool call (the cache counters) and a plugin reload (the new generation and the reload
//! in "recent reloads"), then a rejected file (its last rejection), without being
//! reloaded; any console error, failed request or request to another origin fails.
//! Screenshots are saved in the test's temp dir, and
//! also copied to `$STATUS_PAGE_SCREENSHOTS` (as `status-page-NAME.png`) when it is set,
//! for a person to look at.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::lab_report::{install_chromium, node, png_dimensions};
use crate::plugins::{PluginBridge, call};
use crate::support::{demo_server_toml, http, publish_plugin, repo_root, start_bridge, test_deps};

const ADMIN_TOKEN: &str = "status-page-admin-secret";

/// Where to copy the screenshots for a person to look at, when set.
const SCREENSHOT_COPY_ENV: &str = "STATUS_PAGE_SCREENSHOTS";

/// How long the browser script may take for one step (its own waits are 30 s each).
const STEP_LIMIT: Duration = Duration::from_secs(120);

/// A screenshot of the page with its tables filled is tens of KB; a blank page is far
/// smaller.
const MIN_SCREENSHOT_BYTES: u64 = 20 * 1024;

/// A bridge serving the demo server through the cache, with the reload-probe plugin
/// and an admin token.
async fn bridge_with_a_plugin() -> Result<PluginBridge> {
    // The plugins TOML ends the config, so an `[http]` table can follow it.
    let plugins_toml =
        format!("watch_debounce = \"20ms\"\n\n[http]\nadmin_token = \"{ADMIN_TOKEN}\"\n");
    PluginBridge::start(
        &[(plugin_artifacts::RELOAD_PROBE_V1, "probe.wasm")],
        &plugins_toml,
        None,
    )
    .await
}

/// `GET /admin/status`, with `authorization` when given.
async fn status(bridge: &PluginBridge, authorization: Option<&str>) -> Result<reqwest::Response> {
    let mut request = http().get(bridge.bridge.url("/admin/status"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    Ok(request.send().await?)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_page_is_a_static_shell_and_its_data_needs_the_admin_token() -> Result<()> {
    let demo = bridge_with_a_plugin().await?;

    for path in ["/", "/ui"] {
        let page = http().get(demo.bridge.url(path)).send().await?;
        ensure!(
            page.status() == 200,
            "GET {path} answered {}",
            page.status()
        );
        ensure!(header(&page, "content-type").starts_with("text/html"));
        let policy = header(&page, "content-security-policy").to_owned();
        for part in [
            "default-src 'none'",
            "script-src 'sha256-",
            "style-src 'sha256-",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            ensure!(policy.contains(part), "GET {path}: no {part:?} in {policy}");
        }
        ensure!(!policy.contains("unsafe"), "{policy}");
        ensure!(header(&page, "x-content-type-options") == "nosniff");
        ensure!(header(&page, "referrer-policy") == "no-referrer");
        // The shell carries no data: neither the server's nor the plugin's name.
        let body = page.text().await?;
        ensure!(body.contains("/admin/status"));
        ensure!(!body.contains("demo") && !body.contains("probe.wasm"));
    }
    // Other methods on `/` answer as before: there is no route for them.
    let post = http().post(demo.bridge.url("/")).body("{}").send().await?;
    ensure!(post.status() == 404, "POST / answered {}", post.status());

    // The data needs the admin token, in the header only.
    let refused = status(&demo, None).await?;
    ensure!(refused.status() == 401, "{}", refused.status());
    ensure!(header(&refused, "www-authenticate") == "Bearer");
    ensure!(status(&demo, Some("Bearer wrong")).await?.status() == 401);
    for query in [
        format!("?token={ADMIN_TOKEN}"),
        format!("?access_token={ADMIN_TOKEN}"),
    ] {
        let url = demo.bridge.url(&format!("/admin/status{query}"));
        let answer = http().get(url).send().await?;
        ensure!(
            answer.status() == 401,
            "a token in the query was accepted: {}",
            answer.status()
        );
    }

    let answer = status(&demo, Some(&format!("Bearer {ADMIN_TOKEN}"))).await?;
    ensure!(answer.status() == 200, "{}", answer.status());
    let document: Value = answer.json().await?;
    ensure!(document["version"].is_string(), "{document}");
    ensure!(
        document["uptime_seconds"].as_f64() > Some(0.0),
        "{document}"
    );
    ensure!(document["sessions"]["open"].is_u64(), "{document}");
    ensure!(
        document["health"]["servers"]["demo"]["status"].is_string(),
        "{document}"
    );
    let server = &document["servers"][0];
    ensure!(server["server"] == "demo", "{document}");
    ensure!(
        server["queued"].is_u64() && server["max_queue"].is_u64(),
        "{server}"
    );
    let process = &server["processes"][0];
    for field in [
        "pid",
        "state",
        "age_seconds",
        "inflight",
        "resident_bytes",
        "cpu_seconds",
    ] {
        ensure!(!process[field].is_null(), "no {field} in {process}");
    }
    let cache = &document["cache"];
    ensure!(
        cache["enabled"] == true && cache["hit_rate"].is_number(),
        "{cache}"
    );
    ensure!(
        cache["bytes"].is_u64() && cache["entries"].is_u64(),
        "{cache}"
    );
    let plugins = &document["plugins"];
    ensure!(plugins["enabled"] == true, "{plugins}");
    let probe = &plugins["plugins"][0];
    ensure!(
        probe["name"] == "probe" && probe["state"] == "active",
        "{probe}"
    );
    ensure!(
        probe["generation"].as_u64() >= Some(1) && probe["faults"].is_object(),
        "{probe}"
    );
    ensure!(plugins["recent_reloads_kept"] == 16, "{plugins}");
    let reload = &plugins["recent_reloads"][0];
    ensure!(
        reload["file"] == "probe.wasm" && reload["outcome"] == "loaded",
        "{plugins}"
    );
    Ok(())
}

/// With only the client token set the admin API is closed: the page is still served
/// (it carries nothing), and its data endpoint answers 403 naming `http.admin_token`,
/// which the page shows.
#[tokio::test]
async fn with_the_admin_api_closed_the_page_loads_and_its_data_is_refused() -> Result<()> {
    let config = format!(
        "[http]\nauth_token = \"client-secret\"\n\n{}",
        demo_server_toml("demo", &[], "")
    );
    let bridge = start_bridge(&config)?;
    bridge.wait_ready().await?;
    let page = http().get(bridge.url("/")).send().await?;
    ensure!(page.status() == 200, "GET / answered {}", page.status());
    for authorization in [None, Some("Bearer client-secret")] {
        let mut request = http().get(bridge.url("/admin/status"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let answer = request.send().await?;
        ensure!(
            answer.status() == 403,
            "{authorization:?}: {}",
            answer.status()
        );
        let text = answer.text().await?;
        ensure!(text.contains("http.admin_token"), "{text}");
    }
    Ok(())
}

/// `GET /admin/status` with the request addressed to `host` (the Host header), as a page
/// served under another name would send it after DNS rebinding: a same-origin GET carries
/// no Origin header.
async fn status_addressed_to(
    bridge: &crate::support::Bridge,
    host: &str,
    authorization: Option<&str>,
) -> Result<(u16, String)> {
    let mut request = http().get(bridge.url("/admin/status")).header("host", host);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let answer = request.send().await?;
    Ok((answer.status().as_u16(), answer.text().await?))
}

/// With no admin credential the admin routes are open on loopback, so a web page that
/// rebinds its own name to 127.0.0.1 could read them: they answer only requests addressed
/// to a loopback name or an allowed origin's host. With an admin token the token decides.
#[tokio::test]
async fn an_open_admin_api_answers_only_requests_addressed_to_a_loopback_name() -> Result<()> {
    let config = format!(
        "[http]\nallowed_origins = [\"http://localhost\", \"http://bridge.internal:*\"]\n\n{}",
        demo_server_toml("demo", &[], "")
    );
    let open = start_bridge(&config)?;
    open.wait_ready().await?;
    let port = open.address.port();
    for host in [
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        "evil.example".to_owned(),
    ] {
        let (status, text) = status_addressed_to(&open, &host, None).await?;
        ensure!(status == 403, "Host {host}: {status} {text}");
        ensure!(
            text.contains(&host) && text.contains("allowed_origins"),
            "Host {host}: {text}"
        );
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("bridge.internal:{port}"),
    ] {
        let (status, text) = status_addressed_to(&open, &host, None).await?;
        ensure!(status == 200, "Host {host}: {status} {text}");
    }
    // The status page itself carries no data and is served under any name.
    let page = http()
        .get(open.url("/"))
        .header("host", format!("evil.example:{port}"))
        .send()
        .await?;
    ensure!(page.status() == 200, "GET / answered {}", page.status());

    let config = format!(
        "[http]\nadmin_token = \"{ADMIN_TOKEN}\"\n\n{}",
        demo_server_toml("demo", &[], "")
    );
    let guarded = start_bridge(&config)?;
    guarded.wait_ready().await?;
    let host = format!("evil.example:{}", guarded.address.port());
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let (status, text) = status_addressed_to(&guarded, &host, Some(&bearer)).await?;
    ensure!(status == 200, "with the admin token: {status} {text}");
    let (status, text) = status_addressed_to(&guarded, &host, None).await?;
    ensure!(status == 401, "without the admin token: {status} {text}");
    Ok(())
}

/// scripts/status-page.mjs, driven one step at a time over its stdin and stdout.
struct PageDriver {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl PageDriver {
    async fn start(url: &str, out: &Path) -> Result<PageDriver> {
        let deps = repo_root().join("build/test-deps");
        let mut command = tokio::process::Command::new(node());
        command
            .arg(repo_root().join("scripts/status-page.mjs"))
            .arg(url)
            .arg(out)
            .env("STATUS_PAGE_TOKEN", ADMIN_TOKEN)
            .env("NODE_PATH", deps.join("node_modules"))
            .current_dir(&deps)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().context("start scripts/status-page.mjs")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(PageDriver {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The script's next report, which must be `expected`.
    async fn next(&mut self, expected: &str) -> Result<Value> {
        let line = tokio::time::timeout(STEP_LIMIT, self.lines.next_line())
            .await
            .with_context(|| format!("no `{expected}` from the browser within {STEP_LIMIT:?}"))??
            .with_context(|| format!("the browser script ended before `{expected}`"))?;
        let event: Value =
            serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
        if event["event"] != expected {
            bail!("expected `{expected}` from the browser, got {event:#}");
        }
        Ok(event)
    }

    async fn send(&mut self, command: Value, expected: &str) -> Result<Value> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        self.next(expected).await
    }

    /// Ends the run: the script must report no problem and exit 0.
    async fn finish(mut self) -> Result<()> {
        self.stdin.write_all(b"{\"cmd\":\"done\"}\n").await?;
        let finished = self.next("finished").await?;
        ensure!(
            finished["problems"].as_array().is_some_and(Vec::is_empty),
            "the page had problems: {finished:#}"
        );
        let status = tokio::time::timeout(STEP_LIMIT, self.child.wait()).await??;
        ensure!(status.success(), "scripts/status-page.mjs exited {status}");
        Ok(())
    }
}

/// The text of one field of the page's view.
fn shown(view: &Value, field: &str) -> Result<String> {
    view["view"]["fields"][field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the page shows no `{field}`: {view:#}"))
}

/// The rows of one of the page's tables.
fn rows<'a>(view: &'a Value, table: &str) -> Result<&'a Vec<Value>> {
    view["view"]["tables"][table]
        .as_array()
        .with_context(|| format!("the page has no table `{table}`: {view:#}"))
}

/// Checks a screenshot is a real page's PNG, and copies it for a person to look at.
fn keep_screenshot(path: &Path, name: &str) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("no screenshot {name}"))?;
    let (width, height) = png_dimensions(&bytes)?;
    ensure!(width >= 1000 && height >= 600, "{name} is {width}×{height}");
    ensure!(
        bytes.len() as u64 >= MIN_SCREENSHOT_BYTES,
        "{name} is only {} bytes",
        bytes.len()
    );
    if let Some(dir) = std::env::var_os(SCREENSHOT_COPY_ENV) {
        let copy = PathBuf::from(dir).join(format!("status-page-{name}.png"));
        std::fs::copy(path, &copy).with_context(|| format!("copy to {}", copy.display()))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_renders_in_chromium_and_follows_a_call_and_a_reload() -> Result<()> {
    // Pinned playwright-core and Node (tests/deps), then the browser itself.
    let _ = test_deps();
    install_chromium().await?;
    let demo = bridge_with_a_plugin().await?;
    let shots = tempfile::tempdir()?;
    let mut page = PageDriver::start(&demo.bridge.url(""), shots.path()).await?;

    // Without the token: the data is refused and the page says so.
    let locked = page.next("locked").await?;
    ensure!(
        locked["view"]["stateText"]
            .as_str()
            .is_some_and(|text| text.contains("401")),
        "{locked:#}"
    );
    ensure!(
        rows(&locked, "servers")?.is_empty(),
        "data shown without a token"
    );

    // With it: every table is filled from the bridge.
    let live = page.next("live").await?;
    let servers = rows(&live, "servers")?;
    ensure!(
        servers[0][0] == "demo" && servers[0][1] == "healthy",
        "{live:#}"
    );
    let process = &rows(&live, "processes")?[0];
    let document: Value = status(&demo, Some(&format!("Bearer {ADMIN_TOKEN}")))
        .await?
        .json()
        .await?;
    let pid = &document["servers"][0]["processes"][0]["pid"];
    ensure!(
        process[2] == pid.to_string().as_str() && process[3] == "ready",
        "the process row {process} is not the demo server's process {pid}"
    );
    ensure!(
        process[7]
            .as_str()
            .is_some_and(|memory| memory.ends_with("MiB") || memory.ends_with("KiB")),
        "no resident memory in {process}"
    );
    let plugin = &rows(&live, "plugins")?[0];
    let generation = shown(&live, "generation")?;
    ensure!(
        plugin[0] == "probe" && plugin[2] == generation.as_str() && plugin[3] == "active",
        "plugin row {plugin}, generation {generation}"
    );
    ensure!(
        rows(&live, "reloads")?
            .iter()
            .any(|row| row[1] == "probe.wasm" && row[2] == "loaded"),
        "{live:#}"
    );
    let hits = shown(&live, "cache-hits")?;
    ensure!(hits == "0", "cache hits before any call: {hits}");

    // A call, twice with the same arguments (a miss, then a hit): the page follows.
    let session = demo.session().await?;
    for id in 1..=2 {
        call(&session, id, "get_tasks", json!({"page": "status"}))
            .await?
            .ensure_success("get_tasks")?;
    }
    let changed = page
        .send(
            json!({"cmd": "wait_change", "field": "cache-hits", "from": hits}),
            "changed",
        )
        .await?;
    ensure!(shown(&changed, "cache-hits")? == "1", "{changed:#}");
    ensure!(shown(&changed, "cache-misses")? == "1", "{changed:#}");
    ensure!(shown(&changed, "cache-ratio")? == "50.0 %", "{changed:#}");
    ensure!(shown(&changed, "cache-entries")? == "1", "{changed:#}");
    ensure!(shown(&changed, "sessions")? == "1", "{changed:#}");
    page.send(
        json!({"cmd": "screenshot", "name": "after-call"}),
        "screenshot",
    )
    .await?;

    // A reload: the new generation, and the reload listed first.
    publish_plugin(
        Path::new(plugin_artifacts::RELOAD_PROBE_V2),
        &demo.plugins,
        "probe.wasm",
    )?;
    let reloaded = page
        .send(
            json!({"cmd": "wait_change", "field": "generation", "from": generation}),
            "changed",
        )
        .await?;
    let next: u64 = generation.parse::<u64>()? + 1;
    ensure!(
        shown(&reloaded, "generation")? == next.to_string(),
        "{reloaded:#}"
    );
    let plugin = &rows(&reloaded, "plugins")?[0];
    ensure!(plugin[2] == next.to_string().as_str(), "{plugin}");
    let newest = &rows(&reloaded, "reloads")?[0];
    ensure!(
        newest[1] == "probe.wasm"
            && newest[2] == "loaded"
            && newest[3] == next.to_string().as_str(),
        "the newest reload row is {newest}"
    );
    page.send(
        json!({"cmd": "screenshot", "name": "after-reload"}),
        "screenshot",
    )
    .await?;

    // A broken file: rejected, listed as such, and shown as the plugin's last
    // rejection while the previous version keeps serving at the same generation.
    let broken = shots.path().join("broken.wasm");
    std::fs::write(&broken, b"not a wasm component")?;
    publish_plugin(&broken, &demo.plugins, "probe.wasm")?;
    let rejected = page
        .send(
            json!({"cmd": "wait_text", "table": "reloads", "contains": "rejected"}),
            "found",
        )
        .await?;
    let newest = &rows(&rejected, "reloads")?[0];
    ensure!(
        newest[1] == "probe.wasm"
            && newest[2] == "rejected"
            && newest[3] == next.to_string().as_str(),
        "the newest reload row is {newest}"
    );
    let plugin = &rows(&rejected, "plugins")?[0];
    ensure!(
        plugin[3] == "active"
            && plugin[2] == next.to_string().as_str()
            && plugin[6]
                .as_str()
                .is_some_and(|text| text != "none" && !text.is_empty()),
        "the plugin row after a rejected file is {plugin}"
    );
    page.send(
        json!({"cmd": "screenshot", "name": "after-rejection"}),
        "screenshot",
    )
    .await?;
    page.finish().await?;

    for name in [
        "locked",
        "live",
        "after-call",
        "after-reload",
        "after-rejection",
    ] {
        keep_screenshot(&shots.path().join(format!("{name}.png")), name)?;
    }
    Ok(())
}
