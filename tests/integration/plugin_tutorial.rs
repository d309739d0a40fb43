//! The SDK README's tutorial, followed verbatim: its `Cargo.toml` and `src/lib.rs` are
//! built for `wasm32-wasip2` as a crate of their own (the SDK `path` pointed at this
//! checkout, the one line an author changes too), published the way step 4 says, and bound
//! with step 5's config block as written; then the plugin does what the tutorial says it
//! does, against the real demo server.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use crate::plugins::call;

use crate::support::{
    RawSession, SETTLE, count_calls, demo_server_toml, eventually, http, plugin_wasm, poll_until,
    repo_root, start_bridge_with_file,
};

/// The first fenced block of `language` after the line that contains `marker`.
fn block_after(readme: &str, marker: &str, language: &str) -> Result<String> {
    let start = readme
        .find(marker)
        .with_context(|| format!("the SDK README no longer says `{marker}`"))?;
    let fence = format!("```{language}\n");
    let body = readme[start..]
        .find(&fence)
        .map(|at| start + at + fence.len())
        .with_context(|| format!("no ```{language} block after `{marker}`"))?;
    let end = readme[body..]
        .find("\n```")
        .with_context(|| format!("the ```{language} block after `{marker}` is not closed"))?;
    Ok(readme[body..body + end + 1].to_owned())
}

/// The words of a shell command as `sh` splits them: line continuations joined, single
/// quotes kept together (the README's commands use nothing else).
fn shell_words(command: &str) -> Vec<String> {
    let joined = command.replace("\\\n", " ");
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    for character in joined.chars() {
        match character {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// The JSON body of the first `curl … -d '…'` in the ```sh block after `marker`.
fn curl_body(readme: &str, marker: &str) -> Result<serde_json::Value> {
    let command = block_after(readme, marker, "sh")?;
    let words = shell_words(&command);
    let body = words
        .iter()
        .position(|word| word == "-d")
        .and_then(|at| words.get(at + 1))
        .with_context(|| format!("no `-d` body in:\n{command}"))?;
    serde_json::from_str(body).with_context(|| format!("the body `{body}` is not JSON"))
}

/// Builds the tutorial's crate in `dir` and returns the component's path.
fn build_the_tutorial(readme: &str, dir: &Path) -> Result<std::path::PathBuf> {
    let root = repo_root();
    let manifest = block_after(readme, "In `Cargo.toml`", "toml")?;
    let sdk_line = "mcp-bridge-plugin-sdk = { path = \"../mcp-bridge/plugins/sdk\" }";
    ensure!(
        manifest.contains(sdk_line),
        "the tutorial's Cargo.toml no longer has `{sdk_line}`:\n{manifest}"
    );
    let sdk = root.join("plugins/sdk").canonicalize()?;
    let manifest = manifest.replace(
        sdk_line,
        &format!(
            "mcp-bridge-plugin-sdk = {{ path = {:?} }}",
            sdk.display().to_string()
        ),
    );
    let source = block_after(readme, "`src/lib.rs`:", "rust")?;
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), source)?;
    // The checkout's lock file pins what the SDK was tested with, and lets the build run
    // without the network (cargo drops the entries this crate does not use).
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--offline",
            "--quiet",
        ])
        .current_dir(dir)
        // The plugins' own target directory: the SDK and its dependencies are built there
        // already for this target.
        .env("CARGO_TARGET_DIR", root.join("target/plugins"))
        .env_remove("RUSTFLAGS")
        .output()
        .context("run cargo to build the tutorial's plugin")?;
    if !output.status.success() {
        bail!(
            "the tutorial's plugin does not build:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let built = root.join("target/plugins/wasm32-wasip2/release/flat_ttl.wasm");
    ensure!(built.is_file(), "cargo built no {}", built.display());
    Ok(built)
}

#[tokio::test]
async fn the_sdk_tutorial_followed_verbatim_builds_loads_and_decides() -> Result<()> {
    let readme = std::fs::read_to_string(repo_root().join("plugins/sdk/README.md"))?;
    let crate_dir = tempfile::tempdir()?;
    let built = build_the_tutorial(&readme, &crate_dir.path().join("flat-ttl"))?;

    // Step 5's config block, as written, below a demo server and an enabled cache.
    let binding = block_after(&readme, "this is the binding format:", "toml")?;
    ensure!(
        binding.contains("file = \"flat-ttl.wasm\"") && binding.contains("dir = \"plugins.d\""),
        "step 5 no longer binds flat-ttl.wasm from plugins.d:\n{binding}"
    );
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins.d");
    std::fs::create_dir_all(&plugins)?;
    // Step 5 binds the seed-ttl-table example too.
    std::fs::copy(
        plugin_wasm("seed-ttl-table"),
        plugins.join("seed-ttl-table.wasm"),
    )?;
    let calls = dir.path().join("calls.log");
    let server = demo_server_toml(
        "demo",
        &["--calls-log", &calls.display().to_string()],
        "max_connections = 1",
    );
    let config_path = dir.path().join("mcp-bridge.toml");
    std::fs::write(
        &config_path,
        format!("{server}\n[cache]\nenabled = true\n\n{binding}"),
    )?;
    let bridge = start_bridge_with_file(dir, config_path, &[])?;
    bridge.wait_ready().await?;

    // Step 4: publish under a temporary name, then rename into place.
    let temporary = plugins.join(".flat-ttl.wasm.tmp");
    std::fs::copy(&built, &temporary)?;
    std::fs::rename(&temporary, plugins.join("flat-ttl.wasm"))?;
    let admin_url = bridge.url("/admin/plugins");
    let admin = poll_until(
        SETTLE,
        async || -> Result<serde_json::Value> {
            Ok(http().get(&admin_url).send().await?.json().await?)
        },
        |admin| {
            admin.as_ref().is_ok_and(|admin| {
                admin["bindings"].as_array().is_some_and(|b| {
                    b.iter()
                        .any(|b| b["name"] == "flat" && b["state"] == "active")
                })
            })
        },
    )
    .await?;
    let plugin = admin["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == "flat-ttl"))
        .with_context(|| format!("flat-ttl is not listed: {admin}"))?;
    ensure!(
        ["cache-policy", "ttl-table", "invalidation-rules"]
            .iter()
            .all(|interface| plugin["exports"]
                .as_array()
                .is_some_and(|e| e.contains(&json!(interface))))
            && plugin["pure"] == true,
        "the tutorial's plugin does not answer all three questions: {plugin}"
    );
    // Its `init` logged under the plugins' target, with the binding's name.
    ensure!(
        eventually(SETTLE, async || bridge
            .logged("caching read-only tools for 30s")
            .await)
        .await,
        "the tutorial's init line is not in the log: {}",
        bridge.log_tail(20)
    );

    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    // A read-only tool is cached for the binding's ttl; `never` is never cached.
    for id in 0..2 {
        call(&session, id, "get_tasks", json!({}))
            .await?
            .ensure_success("get_tasks")?;
        call(&session, 10 + id, "get_today_metrics", json!({}))
            .await?
            .ensure_success("get_today_metrics")?;
    }
    ensure!(
        count_calls(&calls, "get_tasks") == 1,
        "get_tasks was not cached"
    );
    ensure!(
        count_calls(&calls, "get_today_metrics") == 2,
        "get_today_metrics, listed in `never`, was cached"
    );
    // `on_write`: a created task makes get_tasks stale, so the next read reaches the server.
    call(
        &session,
        20,
        "create_task",
        json!({"title": "follow the tutorial"}),
    )
    .await?
    .ensure_success("create_task")?;
    call(&session, 21, "get_tasks", json!({}))
        .await?
        .ensure_success("get_tasks")?;
    ensure!(
        count_calls(&calls, "get_tasks") == 2,
        "create_task did not invalidate get_tasks through the tutorial's InvalidationRules"
    );

    // "Debugging your policy", followed as written. 1: the header of a hit names the binding.
    let hit = call(&session, 22, "get_tasks", json!({})).await?;
    let header = hit.cache.clone().unwrap_or_default();
    ensure!(
        header.contains("result=hit") && header.contains("decided-by=flat"),
        "the header does not say who decided: {header}"
    );
    // 2: the explain request's body, as the README writes it: create_task is a write, and
    // the tutorial's binding says it makes get_tasks stale.
    let body = curl_body(&readme, "**2. Ask the bridge to explain a call.**")?;
    let explained: serde_json::Value = http()
        .post(bridge.url("/admin/explain"))
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let flat = explained["bindings"]
        .as_array()
        .and_then(|bindings| bindings.iter().find(|b| b["name"] == "flat"))
        .with_context(|| format!("the explanation has no binding flat: {explained}"))?;
    ensure!(
        explained["writes"] == true
            && flat["invalidations"]["answer"] == json!([{"server": "demo", "tool": "get_tasks"}]),
        "the explanation does not show the tutorial's invalidation: {explained}"
    );
    ensure!(
        count_calls(&calls, "create_task") == 1,
        "explaining a write called the server"
    );
    // The offline command, with the server's tool list saved as the README says.
    let tools = session.request(json!(30), "tools/list", json!({})).await?;
    let catalog = crate_dir.path().join("tools.json");
    std::fs::write(&catalog, tools["result"].to_string())?;
    let command = block_after(&readme, "Before you deploy, ask the same", "sh")?;
    let words = shell_words(&command);
    ensure!(
        words.first().map(String::as_str) == Some("mcp-bridge"),
        "not an mcp-bridge command: {command}"
    );
    let built_path = built.display().to_string();
    let config_arg = bridge.config_path.display().to_string();
    let catalog_arg = catalog.display().to_string();
    let args: Vec<String> = words[1..]
        .iter()
        .map(|word| match word.as_str() {
            "mcp-bridge.toml" => config_arg.clone(),
            "tools.json" => catalog_arg.clone(),
            other => other.replace("target/wasm32-wasip2/release/flat_ttl.wasm", &built_path),
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = crate::lab::run_bridge(&args)?;
    ensure!(
        code == 0 && stdout.contains("decided by flat: cache for 30s"),
        "the offline explain did not explain the tutorial's plugin ({code}):\n{stdout}\n{stderr}"
    );
    // 4: the lift request's body is one the bridge takes (nothing is quarantined here).
    let body = curl_body(&readme, "Fix the plugin and publish the new")?;
    let lift = http()
        .post(bridge.url("/admin/plugins/quarantine/lift"))
        .json(&body)
        .send()
        .await?;
    ensure!(
        lift.status() == 200,
        "the lift request was refused: {}",
        lift.status()
    );
    bridge.stop(Duration::from_secs(10)).await?;
    Ok(())
}

#[test]
fn shell_words_split_as_sh_does() {
    assert_eq!(
        shell_words("mcp-bridge a \\\n  --call '{\"x\": 1}' b"),
        ["mcp-bridge", "a", "--call", "{\"x\": 1}", "b"]
    );
}
