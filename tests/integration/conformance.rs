//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! `tests/deps/package.json` and run with the Node 22 installed beside it) against the bridge:
//! its whole active server suite through `/mcp/demo`, backed by the demo server with
//! `--conformance-fixtures`, must pass with no failed check and no warning.
//!
//! The server is `exclusive = true` so the suite's sampling and elicitation requests reach the
//! client whose call caused them. No scenario needs an expected-failures baseline: every active
//! one passes through the bridge. (On the aggregated `/mcp` the suite cannot pass by design,
//! since names there are namespaced `demo__test_simple_text`, so it is not run there.)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;

use crate::support::{demo_server_toml, repo_root, start_bridge, test_deps};

/// The longest the whole suite may run; it takes a few seconds when all is well.
const SUITE_DEADLINE: Duration = Duration::from_secs(90);

/// Scenarios whose presence proves the run exercised the bridge's server-to-client relays and
/// its notification streaming, not just plain requests.
const MUST_RUN: [&str; 5] = [
    "tools-call-sampling",
    "tools-call-elicitation",
    "tools-call-with-progress",
    "tools-call-with-logging",
    "resources-subscribe",
];

struct Suite {
    node: PathBuf,
    script: PathBuf,
}

fn suite() -> Result<Suite> {
    // Installs the pinned npm packages (the suite and the `node@22` package) if needed.
    let _ = test_deps();
    let modules = repo_root().join("build/test-deps/node_modules");
    let suite = Suite {
        node: modules.join("node/bin/node"),
        script: modules.join("@modelcontextprotocol/conformance/dist/index.js"),
    };
    for path in [&suite.node, &suite.script] {
        ensure!(
            path.exists(),
            "{} is missing after tests/deps/install.sh",
            path.display()
        );
    }
    Ok(suite)
}

/// One check the suite recorded that was neither a success nor informational.
struct Problem {
    scenario: String,
    status: String,
    check: String,
    message: String,
}

/// Reads every `checks.json` the suite wrote under `out` (one directory per scenario, named
/// `server-<scenario>-<timestamp>`) and returns the scenarios seen and the problems found.
fn read_results(out: &Path) -> Result<(Vec<String>, Vec<Problem>)> {
    let mut scenarios = Vec::new();
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(out).with_context(|| format!("read {}", out.display()))? {
        let dir = entry?.path();
        let name = dir
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        // The timestamp (`2026-01-31T12-00-00-000Z`) is the last six dash-separated parts.
        let scenario = name
            .strip_prefix("server-")
            .and_then(|rest| rest.rsplitn(7, '-').nth(6))
            .ok_or_else(|| anyhow!("unexpected result directory {name}"))?
            .to_owned();
        let text = std::fs::read_to_string(dir.join("checks.json"))
            .with_context(|| format!("read {}/checks.json", dir.display()))?;
        let checks: Vec<Value> = serde_json::from_str(&text)
            .with_context(|| format!("parse {}/checks.json", dir.display()))?;
        for check in checks {
            let status = check["status"].as_str().unwrap_or("(none)");
            if !matches!(status, "SUCCESS" | "INFO") {
                problems.push(Problem {
                    scenario: scenario.clone(),
                    status: status.to_owned(),
                    check: check["id"].as_str().unwrap_or("(no id)").to_owned(),
                    message: check["errorMessage"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        scenarios.push(scenario);
    }
    scenarios.sort();
    problems.sort_by(|a, b| (&a.scenario, &a.check).cmp(&(&b.scenario, &b.check)));
    Ok((scenarios, problems))
}

/// The suite's own summary (from "=== SUMMARY ===" on), for failure messages.
fn summary(stdout: &str) -> &str {
    stdout
        .find("=== SUMMARY ===")
        .map_or(stdout, |at| &stdout[at..])
}

#[tokio::test]
async fn official_conformance_suite_passes_through_the_bridge() -> Result<()> {
    let suite = suite()?;
    let toml = demo_server_toml("demo", &["--conformance-fixtures"], "exclusive = true");
    let bridge = start_bridge(&toml)?;
    bridge.wait_ready().await?;
    let out = bridge.dir.path().join("conformance");
    let url = bridge.url("/mcp/demo");

    let mut command = tokio::process::Command::new(&suite.node);
    command
        .arg(&suite.script)
        .args(["server", "--url", &url, "-o"])
        .arg(&out)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        // Dropping the future on timeout kills the suite, so no child outlives the test.
        .kill_on_drop(true);
    let output = match tokio::time::timeout(SUITE_DEADLINE, command.output()).await {
        Ok(output) => output.context("run the conformance suite")?,
        Err(_) => bail!(
            "the conformance suite did not finish within {SUITE_DEADLINE:?}; bridge log:\n{}",
            bridge.log_text()
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = || {
        format!(
            "{}\n--- stderr ---\n{stderr}\n--- bridge log ---\n{}",
            summary(&stdout),
            bridge.log_text()
        )
    };

    let (scenarios, problems) = read_results(&out).with_context(report)?;
    let listed: Vec<String> = problems
        .iter()
        .map(|problem| {
            format!(
                "{} {} [{}]: {}",
                problem.status, problem.scenario, problem.check, problem.message
            )
        })
        .collect();
    ensure!(
        output.status.success() && problems.is_empty(),
        "the conformance suite failed ({}):\n{}\n\n{}",
        output.status,
        listed.join("\n"),
        report()
    );
    let announced = stdout
        .split("Running active suite (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse::<usize>().ok())
        .with_context(report)?;
    ensure!(
        scenarios.len() == announced,
        "the suite announced {announced} scenarios but wrote results for {}: {scenarios:?}",
        scenarios.len()
    );
    for scenario in MUST_RUN {
        ensure!(
            scenarios.iter().any(|seen| seen == scenario),
            "scenario {scenario} did not run; ran {scenarios:?}"
        );
    }
    Ok(())
}
