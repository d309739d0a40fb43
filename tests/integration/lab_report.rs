//! The policy lab's report as users get it: `mcp-bridge bench policies` on a generated
//! workload writes report.json, report.csv and report.html, and the HTML page renders in
//! a real headless Chromium (scripts/render-report.mjs) with every chart drawn, no
//! console error and no network request, into a full-page PNG screenshot.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::support::{bridge_exe, repo_root, test_deps};

/// A full-page screenshot of the report with four charts is hundreds of KB; a blank or
/// truncated page is far smaller.
const MIN_SCREENSHOT_BYTES: u64 = 40 * 1024;

/// Runs a command to completion within `limit`, killing it if it overruns.
pub(crate) async fn run(
    mut command: tokio::process::Command,
    what: &str,
    limit: Duration,
) -> Result<Output> {
    command.kill_on_drop(true);
    tokio::time::timeout(limit, command.output())
        .await
        .with_context(|| format!("{what} did not finish within {limit:?}"))?
        .with_context(|| format!("start {what}"))
}

pub(crate) fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Installs Debian's Chromium when it is missing (scripts/install-chromium.sh is
/// idempotent and serialises concurrent callers with a lock).
pub(crate) async fn install_chromium() -> Result<()> {
    let mut command = tokio::process::Command::new("bash");
    command.arg(repo_root().join("scripts/install-chromium.sh"));
    let output = run(
        command,
        "scripts/install-chromium.sh",
        Duration::from_secs(900),
    )
    .await?;
    ensure!(
        output.status.success(),
        "scripts/install-chromium.sh failed: {}",
        describe(&output)
    );
    Ok(())
}

/// The Node 22 that tests/deps/install.sh installs beside playwright-core.
pub(crate) fn node() -> PathBuf {
    repo_root().join("build/test-deps/node_modules/node/bin/node")
}

/// Checks the PNG signature and the IHDR chunk's width and height.
pub(crate) fn png_dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    ensure!(bytes.len() > 24, "only {} bytes", bytes.len());
    ensure!(bytes[..8] == SIGNATURE, "no PNG signature");
    ensure!(&bytes[12..16] == b"IHDR", "the first chunk is not IHDR");
    let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    Ok((width, height))
}

/// Renders `html` with scripts/render-report.mjs into `png`, returning its output.
async fn render(html: &Path, png: &Path) -> Result<Output> {
    let deps = repo_root().join("build/test-deps");
    let mut command = tokio::process::Command::new(node());
    command
        .arg(repo_root().join("scripts/render-report.mjs"))
        .arg(html)
        .arg(png)
        // The script finds playwright-core in build/test-deps by itself; NODE_PATH is a
        // second way for anyone running it by hand with another layout.
        .env("NODE_PATH", deps.join("node_modules"))
        .current_dir(&deps);
    run(
        command,
        "scripts/render-report.mjs",
        Duration::from_secs(180),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_policies_report_renders_in_headless_chromium() -> Result<()> {
    // Pinned playwright-core and Node (tests/deps), then the browser itself.
    let _ = test_deps();
    install_chromium().await?;

    let out = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(bridge_exe());
    command
        .args([
            "bench",
            "policies",
            "--workload",
            "seed-tasks",
            "--calls",
            "3000",
        ])
        .args(["--policy", "builtin", "--out"])
        .arg(out.path())
        .env_remove("RUST_LOG");
    let bench = run(command, "bench policies", Duration::from_secs(600)).await?;
    ensure!(
        bench.status.success(),
        "bench policies failed: {}",
        describe(&bench)
    );

    let html = out.path().join("report.html");
    for file in ["report.json", "report.csv", "report.html"] {
        let path = out.path().join(file);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("bench policies wrote no {file}"))?
            .len();
        ensure!(size > 0, "{file} is empty");
    }
    let csv = std::fs::read_to_string(out.path().join("report.csv"))?;
    ensure!(
        csv.starts_with("section,policy,kind,size_fraction,cache_bytes,ttl_scale,"),
        "report.csv has an unexpected header: {}",
        csv.lines().next().unwrap_or_default()
    );
    ensure!(
        csv.lines().any(|line| line.starts_with("policy,builtin,")),
        "report.csv has no row for the builtin policy"
    );

    check_renders(&html, &out.path().join("report.png"), 1500).await
}

/// Renders an HTML page in headless Chromium (installing it when missing) into `png`
/// and checks the render: every chart drawn, no console error, no request but the page,
/// and a screenshot at least `min_height` pixels tall of a real page's size.
pub(crate) async fn check_renders(html: &Path, png: &Path, min_height: u32) -> Result<()> {
    // Pinned playwright-core and Node (tests/deps), then the browser itself.
    let _ = test_deps();
    install_chromium().await?;
    let rendered = render(html, png).await?;
    ensure!(
        rendered.status.success(),
        "the render check failed: {}",
        describe(&rendered)
    );
    let bytes = std::fs::read(png).context("the render check wrote no screenshot")?;
    let (width, height) = png_dimensions(&bytes).context("the screenshot is not a PNG")?;
    ensure!(
        width >= 800 && height >= min_height,
        "the screenshot is {width}×{height}, too small for the whole page"
    );
    ensure!(
        bytes.len() as u64 >= MIN_SCREENSHOT_BYTES,
        "the screenshot is only {} bytes: {}",
        bytes.len(),
        describe(&rendered)
    );
    Ok(())
}
