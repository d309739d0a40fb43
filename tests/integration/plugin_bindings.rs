//! Editing `[[plugins.policy]]` bindings in a running bridge's config file: an edit that
//! applies swaps the chain; one that is refused (a binding whose `init` rejects its new
//! config, or a file that does not validate) leaves the running bindings serving and
//! shows in `/admin/plugins`, not only in the log, until a later edit applies.

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::plugins::{PluginBridge, call_times};
use crate::support::{SETTLE, plugin_wasm, poll_until};

const BINDING: &str =
    "[[plugins.policy]]\nname = \"table\"\nfile = \"seed-ttl-table.wasm\"\nservers = [\"demo\"]\n";

/// Replaces `from` with `to` in the bridge's config file, as an operator's editor would
/// (a temporary file renamed over it).
fn edit_config(demo: &PluginBridge, from: &str, to: &str) -> Result<()> {
    let path = &demo.bridge.config_path;
    let text = std::fs::read_to_string(path)?;
    ensure!(text.contains(from), "the config has no `{from}`:\n{text}");
    let edited = path.with_extension("toml.tmp");
    std::fs::write(&edited, text.replacen(from, to, 1))?;
    std::fs::rename(&edited, path)?;
    Ok(())
}

fn binding_entry<'a>(admin: &'a Value, name: &str) -> Result<&'a Value> {
    admin["bindings"]
        .as_array()
        .and_then(|bindings| bindings.iter().find(|b| b["name"] == name))
        .with_context(|| format!("binding `{name}` is not listed: {admin}"))
}

#[tokio::test]
async fn a_refused_binding_edit_shows_in_the_admin_view_and_the_old_binding_serves() -> Result<()> {
    let demo = PluginBridge::start(
        &[(plugin_wasm("seed-ttl-table"), "seed-ttl-table.wasm")],
        &format!("{BINDING}config = {{}}\n"),
        None,
    )
    .await?;
    let admin = demo.admin().await?;
    let generation = admin["generation"].as_u64().context("no generation")?;
    ensure!(
        admin["config_rejection"].is_null(),
        "a fresh bridge shows a rejection: {admin}"
    );

    // The binding's new config is one its `init` refuses (the plugin denies unknown fields).
    edit_config(&demo, "config = {}", "config = { bogus = 1 }")?;
    let admin = poll_until(
        SETTLE,
        async || demo.admin().await,
        |admin| {
            admin
                .as_ref()
                .is_ok_and(|admin| !admin["config_rejection"].is_null())
        },
    )
    .await?;
    let rejection = &admin["config_rejection"];
    ensure!(rejection["binding"] == "table", "{rejection}");
    let message = rejection["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("init rejected its config") && message.contains("bogus"),
        "the rejection does not say why: {message}"
    );
    let entry = binding_entry(&admin, "table")?;
    ensure!(
        entry["state"] == "active" && entry["rejected_edit"]["message"] == message,
        "the binding does not show its refused edit: {entry}"
    );
    ensure!(
        admin["generation"].as_u64() == Some(generation),
        "a refused edit changed the generation: {admin}"
    );
    ensure!(
        admin["recent_reloads"][0]["outcome"] == "reconfigure_failed",
        "{admin}"
    );
    // The running binding still serves.
    let session = demo.session().await?;
    call_times(&session, "get_tasks", 1).await?;

    // A file that does not validate is refused before it reaches the bindings; the view
    // names the field.
    edit_config(
        &demo,
        "config = { bogus = 1 }",
        "config = {}\nno_such_setting = 1",
    )?;
    let admin = poll_until(
        SETTLE,
        async || demo.admin().await,
        |admin| {
            admin.as_ref().is_ok_and(|admin| {
                admin["config_rejection"]["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("no_such_setting"))
            })
        },
    )
    .await?;
    ensure!(
        admin["config_rejection"]["binding"].is_null(),
        "{}",
        admin["config_rejection"]
    );
    ensure!(
        binding_entry(&admin, "table")?["rejected_edit"].is_null(),
        "a file-level rejection is pinned on a binding: {admin}"
    );

    // An edit that applies clears it; one that changes a `[plugins]` limit restarts the
    // binding under the new limit (the file's version is swapped in again).
    let before = demo.plugin("seed-ttl-table").await?;
    ensure!(
        before["limits"]["decision_timeout_ms"] == 10_000.0,
        "{before}"
    );
    edit_config(
        &demo,
        "config = {}\nno_such_setting = 1",
        "config = { ttl = {} }",
    )?;
    edit_config(
        &demo,
        "decision_timeout = \"10s\"",
        "decision_timeout = \"7s\"",
    )?;
    let admin = poll_until(
        SETTLE,
        async || demo.admin().await,
        |admin| {
            admin
                .as_ref()
                .is_ok_and(|admin| admin["config_rejection"].is_null())
        },
    )
    .await?;
    ensure!(
        admin["generation"].as_u64() > Some(generation)
            && admin["recent_reloads"][0]["outcome"] == "reconfigured",
        "the applied edit is not shown: {admin}"
    );
    let after = poll_until(
        SETTLE,
        async || demo.plugin("seed-ttl-table").await,
        |plugin| {
            plugin
                .as_ref()
                .is_ok_and(|plugin| plugin["limits"]["decision_timeout_ms"] == 7_000.0)
        },
    )
    .await?;
    ensure!(
        after["generation"].as_u64() > before["generation"].as_u64() && after["state"] == "active",
        "the new limit did not restart the binding: before {before}, after {after}"
    );
    demo.bridge.stop(std::time::Duration::from_secs(10)).await?;
    Ok(())
}

#[tokio::test]
async fn a_reload_that_restarts_a_binding_keeps_its_smoke_quarantine_and_applies() -> Result<()> {
    // At startup the late smoke over the demo server's tools quarantines get_tasks (the
    // plugin traps for it). New limits restart every binding: the replacement must not
    // ask about get_tasks again and refuse the whole reload; it carries the quarantine.
    let demo = crate::plugins::faulty("fault-trap", "{ tool = \"get_tasks\" }").await?;
    let before = demo.admin().await?;
    ensure!(
        binding_entry(&before, "fault-trap")?["state"] == "partly_quarantined",
        "get_tasks was not quarantined at startup: {before}"
    );
    edit_config(
        &demo,
        "decision_timeout = \"10s\"",
        "decision_timeout = \"9s\"",
    )?;
    let after = poll_until(
        SETTLE,
        async || demo.plugin("fault-trap").await,
        |plugin| {
            plugin
                .as_ref()
                .is_ok_and(|plugin| plugin["limits"]["decision_timeout_ms"] == 9_000.0)
        },
    )
    .await?;
    ensure!(
        after["limits"]["decision_timeout_ms"] == 9_000.0,
        "the new limits were not applied: {after}"
    );
    let admin = demo.admin().await?;
    ensure!(
        admin["config_rejection"].is_null(),
        "the reload was refused: {}",
        admin["config_rejection"]
    );
    let binding = binding_entry(&admin, "fault-trap")?;
    let tools = binding["quarantined_tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        binding["state"] == "partly_quarantined"
            && tools.len() == 1
            && tools[0]["tool"] == "get_tasks",
        "the replacement does not carry the quarantine: {binding}"
    );
    // Its other tools are still asked and cached.
    let session = demo.session().await?;
    call_times(&session, "get_clients", 2).await?;
    ensure!(
        demo.calls("get_clients") == 1,
        "get_clients is not cached ({} backend calls)",
        demo.calls("get_clients")
    );
    Ok(())
}
