//! Configuration from the outside: `check-config` and `serve` on bad files (exit code 2,
//! file, line and field named, nothing spawned), secrets kept out of every output, the
//! shipped example files, and `mcpServers` JSON served as it is or through `include`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::faults::guarded_call;
use crate::support::{
    RawSession, SETTLE, bridge_exe, demo_server_toml, eventually, repo_root, start_bridge,
    start_bridge_with_file, toml_string,
};

/// The exit code of `serve` and `check-config` for an invalid configuration.
const CONFIG_ERROR_EXIT: i32 = 2;

/// Runs `mcp-bridge ARGS` with extra environment variables, bounded in time.
async fn run_bridge(args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    let mut command = tokio::process::Command::new(bridge_exe());
    command
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .with_context(|| format!("mcp-bridge {args:?} did not exit within 20 s"))?
        .context("run mcp-bridge")
}

/// Everything a command printed, stdout then stderr.
fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A shell command that leaves `marker` behind when it runs and then serves the demo
/// server, so a test can tell whether `serve` started the server at all.
fn marker_command(marker: &Path) -> String {
    format!(
        "touch '{}'; exec '{}' demo-server",
        marker.display(),
        bridge_exe()
    )
}

/// A `[servers.marker]` table of exactly three lines that runs [`marker_command`].
fn marker_server_toml(marker: &Path) -> String {
    format!(
        "[servers.marker]\ncommand = \"sh\"\nargs = [\"-c\", {}]\n",
        toml_string(&marker_command(marker))
    )
}

/// One bad configuration and what its error must say.
struct BadConfig {
    file_name: &'static str,
    /// The file's text, given the marker server's TOML table (or command, for JSON).
    contents: fn(&Path) -> String,
    /// `file:LINE` is expected in the error.
    line: usize,
    /// Further text the error must contain (the field, the suggestion).
    expected: &'static [&'static str],
}

fn bad_configs() -> Vec<BadConfig> {
    vec![
        BadConfig {
            file_name: "typo.toml",
            contents: |marker| {
                format!(
                    "{}\n[servers.demo]\ncommand = \"sh\"\nmax_conections = 3\n",
                    marker_server_toml(marker)
                )
            },
            line: 7,
            expected: &[
                "`servers.demo.max_conections`",
                "did you mean `max_connections`",
            ],
        },
        BadConfig {
            file_name: "min-over-max.toml",
            contents: |marker| {
                format!(
                    "{}\n[servers.demo]\ncommand = \"sh\"\nmin_connections = 5\nmax_connections = 2\n",
                    marker_server_toml(marker)
                )
            },
            line: 7,
            expected: &["`servers.demo.min_connections`", "max_connections"],
        },
        BadConfig {
            file_name: "duration.toml",
            contents: |marker| {
                format!(
                    "{}\n[servers.demo]\ncommand = \"sh\"\nrequest_timeout = \"soon\"\n",
                    marker_server_toml(marker)
                )
            },
            line: 7,
            expected: &["`servers.demo.request_timeout`", "soon"],
        },
        BadConfig {
            file_name: "http-server.json",
            contents: |marker| {
                let servers = json!({
                    "marker": { "command": "sh", "args": ["-c", marker_command(marker)] },
                    "remote": { "type": "http", "url": "http://127.0.0.1:9/mcp" },
                });
                // One server per line, so the error's line number is predictable.
                format!(
                    "{{\"mcpServers\": {{\n  \"marker\": {},\n  \"remote\": {}\n}}}}\n",
                    servers["marker"], servers["remote"]
                )
            },
            line: 3,
            expected: &["`mcpServers.remote.type`", "stdio"],
        },
        BadConfig {
            file_name: "syntax.toml",
            contents: |marker| {
                format!(
                    "{}\n[servers.demo\ncommand = \"sh\"\n",
                    marker_server_toml(marker)
                )
            },
            line: 5,
            expected: &["TOML"],
        },
    ]
}

#[tokio::test]
async fn bad_configs_are_rejected_with_file_line_and_field_before_anything_starts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for case in bad_configs() {
        let marker = dir.path().join(format!("{}.spawned", case.file_name));
        let path = dir.path().join(case.file_name);
        std::fs::write(&path, (case.contents)(&marker))?;
        let path_arg = path.display().to_string();
        let location = format!("{path_arg}:{}", case.line);

        for args in [
            vec!["check-config", "--config", &path_arg],
            vec!["serve", "--config", &path_arg, "--listen", "127.0.0.1:0"],
        ] {
            let output = run_bridge(&args, &[]).await?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(CONFIG_ERROR_EXIT),
                "{args:?} must fail with exit code 2:\n{stderr}"
            );
            assert!(
                stderr.contains(&location),
                "{args:?}: the error must name {location}:\n{stderr}"
            );
            for expected in case.expected {
                assert!(
                    stderr.contains(expected),
                    "{args:?}: the error must mention {expected}:\n{stderr}"
                );
            }
        }
        assert!(
            !marker.exists(),
            "{}: serve started a server despite the bad config",
            case.file_name
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_marker_server_does_start_from_a_valid_config() -> Result<()> {
    // The control for the test above: the same marker server, in a valid file, is started
    // by `serve`, so a marker that never appears there really means nothing was spawned.
    let dir = tempfile::tempdir()?;
    let marker = dir.path().join("valid.spawned");
    let path = dir.path().join("valid.toml");
    std::fs::write(&path, marker_server_toml(&marker))?;
    let check = run_bridge(
        &["check-config", "--config", &path.display().to_string()],
        &[],
    )
    .await?;
    assert!(check.status.success(), "{}", printed(&check));
    let bridge = start_bridge_with_file(dir, path, &[])?;
    bridge.wait_ready().await?;
    assert!(
        eventually(SETTLE, async || marker.exists()).await,
        "the marker server never ran"
    );
    Ok(())
}

#[tokio::test]
async fn secrets_never_appear_in_check_config_output_or_logs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let env_secret = "zz-env-secret-5b1f0c";
    let token_secret = "zz-token-secret-77ad2e";
    let literal_secret = "zz-literal-secret-90c4aa";
    let expanded = dir.path().join("expanded.toml");
    std::fs::write(
        &expanded,
        format!(
            "[http]\nauth_token = \"${{SECRET_TOKEN_FOR_TEST}}\"\nadmin_token = \"{literal_secret}\"\n\n\
             [servers.demo]\ncommand = {}\nargs = [\"demo-server\"]\n\
             env = {{ TOKEN = \"${{SECRET_FOR_TEST}}\", OTHER = \"{literal_secret}\" }}\n",
            toml_string(bridge_exe())
        ),
    )?;
    let secrets_env = [
        ("SECRET_FOR_TEST", env_secret),
        ("SECRET_TOKEN_FOR_TEST", token_secret),
    ];
    let output = run_bridge(
        &["check-config", "--config", &expanded.display().to_string()],
        &secrets_env,
    )
    .await?;
    let text = printed(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("TOKEN"),
        "check-config should still name the variables: {text}"
    );
    for secret in [env_secret, token_secret, literal_secret] {
        assert!(
            !text.contains(secret),
            "check-config printed the secret {secret}:\n{text}"
        );
    }

    // Errors about secret-bearing keys name the key, never the value.
    let misspelled = dir.path().join("misspelled.toml");
    std::fs::write(
        &misspelled,
        format!("[http]\nauth_tokn = \"{literal_secret}\"\n\n[servers.demo]\ncommand = \"sh\"\n"),
    )?;
    let wrong_type = dir.path().join("wrong-type.toml");
    std::fs::write(
        &wrong_type,
        format!(
            "[servers.demo]\ncommand = \"sh\"\nenv = {{ TOKEN = \"{literal_secret}\", COUNT = 42 }}\n"
        ),
    )?;
    for path in [&misspelled, &wrong_type] {
        let output = run_bridge(
            &["check-config", "--config", &path.display().to_string()],
            &[],
        )
        .await?;
        let text = printed(&output);
        assert_eq!(output.status.code(), Some(CONFIG_ERROR_EXIT), "{text}");
        assert!(
            !text.contains(literal_secret),
            "the error printed a secret:\n{text}"
        );
    }

    // The running bridge does not log them either (literal values: the bridge inherits
    // this test's environment, which must not be changed while other tests run).
    let literal_config = format!(
        "[http]\nauth_token = \"{literal_secret}\"\n\n{}env = {{ TOKEN = \"{literal_secret}\" }}\n",
        demo_server_toml("demo", &[], "")
    );
    let bridge = start_bridge(&literal_config)?;
    bridge.wait_ready().await?;
    let log = bridge.log_text();
    assert!(
        !log.contains(literal_secret),
        "the bridge logged a secret:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn the_shipped_example_configs_pass_check_config() -> Result<()> {
    for example in [
        "config/mcp-bridge.example.toml",
        "config/mcp-servers.example.json",
    ] {
        let path: PathBuf = repo_root().join(example);
        ensure!(path.exists(), "{example} is missing");
        let output = run_bridge(
            &["check-config", "--config", &path.display().to_string()],
            &[],
        )
        .await?;
        assert!(
            output.status.success(),
            "{example} is rejected:\n{}",
            printed(&output)
        );
        assert!(
            printed(&output).contains("configuration is valid"),
            "{}",
            printed(&output)
        );
    }
    Ok(())
}

#[tokio::test]
async fn mcp_servers_json_is_served_directly_and_through_include() -> Result<()> {
    let servers = json!({ "mcpServers": { "tasks": {
        "command": bridge_exe(),
        "args": ["demo-server", "--test-tools"],
        "env": { "DEMO_LOG": "warn" },
    }}});

    // A Claude Desktop style file passed as the whole configuration.
    let dir = tempfile::tempdir()?;
    let json_path = dir.path().join("claude_desktop_config.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&servers)?)?;
    let bridge = start_bridge_with_file(dir, json_path, &[])?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/tasks")).await?;
    let response = guarded_call(&session, json!(1), "get_tasks", json!({ "limit": 2 })).await?;
    let tasks = response["result"]["structuredContent"]["tasks"].as_array();
    assert_eq!(tasks.map(Vec::len), Some(2), "{response}");
    drop(bridge);

    // The same file referenced from TOML, with the TOML's pool defaults applied to it.
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("servers.json"),
        serde_json::to_string_pretty(&servers)?,
    )?;
    let toml_path = dir.path().join("mcp-bridge.toml");
    std::fs::write(
        &toml_path,
        "include = [\"./servers.json\"]\n\n[defaults]\nmin_connections = 2\n",
    )?;
    let bridge = start_bridge_with_file(dir, toml_path, &[])?;
    bridge.wait_ready().await?;
    let session = RawSession::open(&bridge.url("/mcp/tasks")).await?;
    let response = guarded_call(&session, json!(2), "get_clients", json!({})).await?;
    assert!(response.get("result").is_some(), "{response}");
    let stats = bridge.server_stats("tasks").await?;
    assert_eq!(
        stats["min_connections"], 2,
        "[defaults] must apply to included servers: {stats}"
    );
    Ok(())
}
