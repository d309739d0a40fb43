//! What the bridge logs about a plugin: one line per fault, the guest's panic message
//! first and the wasm backtrace only at debug level; one more line, as compact, when a
//! fault quarantines the plugin. Lines are read from the bridge's JSON log between
//! marker lines a second plugin prints, so the lines of exactly one call are counted.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::plugins::{PluginBridge, call};
use crate::support::{RawSession, SETTLE, demo_server_toml, plugin_wasm, poll_until};

/// The line the `chatty` plugin prints to stdout when it is asked about `tool`: the
/// marker calls go to a server only `chatty` is bound to.
fn marker(tool: &str) -> String {
    format!("chatty: stdout line 0 for {tool}")
}

/// The JSON log lines naming `plugin` that the bridge wrote after the marker line for
/// `from` and before the one for `to`. The last marker of each tool is the live call's:
/// the smoke call over the marker server's tools printed one for each at startup.
fn lines_between(log: &str, plugin: &str, from: &str, to: &str) -> Result<Vec<Value>> {
    let lines: Vec<&str> = log.lines().collect();
    let at = |tool: &str| {
        lines
            .iter()
            .rposition(|line| line.contains(&marker(tool)))
            .with_context(|| format!("no marker for {tool} in the log:\n{log}"))
    };
    let (start, end) = (at(from)?, at(to)?);
    ensure!(start < end, "the markers are out of order:\n{log}");
    lines[start + 1..end]
        .iter()
        .filter(|line| line.contains(plugin))
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect()
}

#[tokio::test]
async fn one_plugin_fault_logs_one_line_with_the_panic_first() -> Result<()> {
    // fault-trap panics in calls whose arguments ask for a fault; chatty prints the
    // markers for calls on `marker` and abstains.
    let marker_server = demo_server_toml("marker", &[], "max_connections = 1");
    let demo = PluginBridge::start(
        &[
            (plugin_wasm("fault-trap"), "fault-trap.wasm"),
            (plugin_wasm("chatty"), "chatty.wasm"),
        ],
        &format!(
            "quarantine_after = 2\n\n[[plugins.policy]]\nfile = \"fault-trap.wasm\"\nservers = [\"demo\"]\n\n[[plugins.policy]]\nfile = \"chatty.wasm\"\nservers = [\"marker\"]\n\n{marker_server}"
        ),
        None,
    )
    .await?;
    let session = demo.session().await?;
    let markers = RawSession::open(&demo.bridge.url("/mcp/marker")).await?;
    // The smoke call over the marker server's tools printed chatty's lines for every
    // tool, past its log budget of 20 lines a second: lines of the calls below written in
    // that second would be suppressed. Wait until that smoke has finished (the host logs
    // it), then a second more: the budget counts from a window's first line, so the calls
    // below start a fresh window.
    let smoked = poll_until(
        SETTLE,
        async || demo.bridge.log_text(),
        |log| {
            log.lines().any(|line| {
                line.contains("smoke-called about the server's new tools")
                    && line.contains("marker")
            })
        },
    )
    .await;
    ensure!(
        smoked.contains("smoke-called about the server's new tools"),
        "the marker server's tools were never smoke-called:\n{smoked}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let steps = [
        (&markers, "get_clients"),
        (&session, "get_tasks"),
        (&markers, "get_habits"),
        (&session, "get_tasks"),
        (&markers, "get_today_metrics"),
    ];
    for (id, (on, tool)) in (1..).zip(steps) {
        call(on, id, tool, json!({"fault": true}))
            .await?
            .ensure_success(tool)?;
    }
    let last = marker("get_today_metrics");
    let log = poll_until(
        SETTLE,
        async || demo.bridge.log_text(),
        |log| log.contains(&last),
    )
    .await;

    // The first fault: one warning, and nothing else names the plugin.
    let first = lines_between(&log, "fault-trap", "get_clients", "get_habits")?;
    ensure!(
        first.len() == 1,
        "one fault logged {} lines: {first:#?}",
        first.len()
    );
    let line = &first[0];
    let fields = &line["fields"];
    let message = fields["message"].as_str().unwrap_or_default();
    for (key, value) in [
        ("level", &line["level"]),
        ("target", &line["target"]),
        ("binding", &fields["binding"]),
        ("file", &fields["file"]),
        ("server", &fields["server"]),
        ("tool", &fields["tool"]),
        ("interface", &fields["interface"]),
        ("kind", &fields["kind"]),
        ("default", &fields["default"]),
    ] {
        let expected = match key {
            "level" => "WARN",
            "target" => "mcp_bridge::plugin::fault",
            "binding" => "fault-trap",
            "file" => "fault-trap.wasm",
            "server" => "demo",
            "tool" => "get_tasks",
            "interface" => "decide",
            "kind" => "trap",
            _ => "bypass",
        };
        ensure!(
            value == expected,
            "{key} is {value}, not {expected}: {line}"
        );
    }
    // The arguments are named by their digest only (the admin view's fault record has
    // the same digest).
    ensure!(
        fields["args_sha256"]
            .as_str()
            .is_some_and(|digest| digest.len() == 16),
        "no args_sha256: {line}"
    );
    ensure!(
        message.starts_with("plugin fault, safe default used: panicked at ")
            && message.contains("deliberate trap in `decide` for server `demo`"),
        "the panic message does not lead: {message}"
    );
    ensure!(
        !line.to_string().contains("wasm backtrace") && !message.contains('\n'),
        "the backtrace is logged above debug level: {line}"
    );

    // The second fault quarantines the plugin: its warning and one error, one line each.
    let second = lines_between(&log, "fault-trap", "get_habits", "get_today_metrics")?;
    ensure!(
        second.len() == 2,
        "the quarantining fault logged {} lines: {second:#?}",
        second.len()
    );
    let quarantine = &second[1];
    let reason = quarantine["fields"]["message"].as_str().unwrap_or_default();
    ensure!(
        quarantine["level"] == "ERROR"
            && quarantine["fields"]["binding"] == "fault-trap"
            && quarantine["fields"]["tool"] == "get_tasks",
        "{quarantine}"
    );
    ensure!(
        reason.starts_with("plugin quarantined")
            && reason.contains("2 faults within")
            && reason.contains("trapped: panicked at ")
            && !reason.contains('\n')
            && !reason.contains("wasm backtrace"),
        "{reason}"
    );
    // The admin view's reason is the same one line.
    let entry = demo.plugin("fault-trap").await?;
    let admin_reason = entry["quarantine_reason"].as_str().unwrap_or_default();
    ensure!(
        admin_reason.contains("panicked at ") && !admin_reason.contains("wasm backtrace"),
        "{entry}"
    );
    Ok(())
}
