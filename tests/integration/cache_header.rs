//! What a running bridge tells a plugin author about the TTLs its plugin chose: the
//! `mcp-bridge-cache` header of each call names the result, the binding that decided,
//! the source of the TTL and the generation that filled the entry; and a `[cache.ttl]`
//! row that overrides a plugin's directive is logged once when the chain is published.
//! Real bridge, real demo server, real example plugins.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::plugins::{Answered, PluginBridge, call};
use crate::support::{RawSession, SETTLE, plugin_wasm, poll_until, publish_plugin};

/// A text field of the cache header (`Answered::field` reads numbers).
fn text_field(answer: &Answered, key: &str) -> Option<String> {
    answer.cache.as_deref()?.split(';').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        (name == key).then(|| value.to_owned())
    })
}

/// Fails unless the header's text fields are as expected (`None`: absent).
fn ensure_fields(answer: &Answered, expected: &[(&str, Option<&str>)]) -> Result<()> {
    for (key, value) in expected {
        let got = text_field(answer, key);
        ensure!(
            got.as_deref() == *value,
            "{key} is {got:?}, not {value:?}: {:?}",
            answer.cache
        );
    }
    Ok(())
}

/// The bridge's JSON log lines whose message contains `needle`.
fn log_lines(log: &str, needle: &str) -> Result<Vec<Value>> {
    log.lines()
        .filter(|line| line.contains(needle))
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect()
}

#[tokio::test]
async fn a_config_row_over_a_plugin_ttl_is_logged_once_and_named_in_the_header() -> Result<()> {
    // The annotations example decides every read-only tool with its own default TTL,
    // 5 minutes here; the config's row for get_clients says 7.
    let demo = PluginBridge::start(
        &[(plugin_wasm("annotations"), "annotations.wasm")],
        r#"
[[plugins.policy]]
name = "flat"
file = "annotations.wasm"
servers = ["demo"]
config = { default_ttl = "5m" }

[cache.ttl.demo]
get_clients = "7m"
"#,
        None,
    )
    .await?;
    let session = demo.session().await?;

    let miss = call(&session, 1, "get_clients", json!({})).await?;
    miss.ensure_success("get_clients")?;
    let generation = miss.field("generation").context("no generation")?;
    ensure_fields(
        &miss,
        &[
            ("result", Some("miss")),
            ("decided-by", Some("flat")),
            ("ttl-source", Some("config:demo/get_clients")),
            ("filled", None),
        ],
    )?;
    ensure!(miss.field("ttl-ms") == Some(420_000), "{:?}", miss.cache);

    let hit = call(&session, 2, "get_clients", json!({})).await?;
    hit.ensure_success("get_clients")?;
    ensure_fields(
        &hit,
        &[
            ("result", Some("hit")),
            ("decided-by", Some("flat")),
            ("ttl-source", Some("config:demo/get_clients")),
        ],
    )?;
    ensure!(
        hit.field("filled") == Some(generation) && hit.field("generation") == Some(generation),
        "a hit names the generation that filled it: {:?}",
        hit.cache
    );

    // A tool without a row keeps the plugin's own TTL, and says so.
    let tasks = call(&session, 3, "get_tasks", json!({})).await?;
    tasks.ensure_success("get_tasks")?;
    ensure_fields(&tasks, &[("ttl-source", Some("plugin:flat"))])?;
    ensure!(tasks.field("ttl-ms") == Some(300_000), "{:?}", tasks.cache);

    // The override was logged when the chain was published: once, not per call, with the
    // row as written and the binding named.
    let line = "ttl for demo/get_clients is set by config row [cache.ttl.demo] get_clients = 7m, overriding plugin flat's directive (5m)";
    let log = poll_until(
        SETTLE,
        async || demo.bridge.log_text(),
        |log| log.contains(line),
    )
    .await;
    let lines = log_lines(&log, line)?;
    ensure!(
        lines.len() == 1,
        "the override is logged {} times:\n{log}",
        lines.len()
    );
    let logged = &lines[0];
    for (field, expected) in [
        (&logged["level"], "INFO"),
        (&logged["target"], "mcp_bridge::plugin"),
        (&logged["fields"]["binding"], "flat"),
        (&logged["fields"]["ttl_source"], "config:demo/get_clients"),
    ] {
        ensure!(field == expected, "{field} is not {expected}: {logged}");
    }
    ensure!(
        log_lines(&log, "is set by")?.len() == 1,
        "get_tasks has no row, so nothing else is an override:\n{log}"
    );
    Ok(())
}

/// Calls until a response says `generation` decided it (the swap is served).
async fn wait_for_generation(session: &RawSession, generation: u64) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    for id in 1000.. {
        let answer = call(session, id, "get_tasks", json!({"probe": id})).await?;
        if answer.field("generation") >= Some(generation) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "generation {generation} never served: {:?}",
            answer.cache
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_hit_after_a_swap_names_the_generation_that_filled_it() -> Result<()> {
    // reload-probe v1 caches every read for 111 s (its table says so too); v2 for 222 s.
    let demo = PluginBridge::start(
        &[(plugin_wasm("reload-probe-v1"), "probe.wasm")],
        "watch_debounce = \"20ms\"\n",
        None,
    )
    .await?;
    let session = demo.session().await?;
    let filled = call(&session, 1, "get_clients", json!({})).await?;
    filled.ensure_success("get_clients")?;
    let old = filled.field("generation").context("no generation")?;
    ensure_fields(
        &filled,
        &[
            ("result", Some("miss")),
            ("decided-by", Some("probe")),
            ("ttl-source", Some("table:probe")),
        ],
    )?;

    publish_plugin(
        Path::new(plugin_wasm("reload-probe-v2")),
        &demo.plugins,
        "probe.wasm",
    )?;
    wait_for_generation(&session, old + 1).await?;

    // The entry v1 filled still answers, with v1's TTL: the header says v2 decided and
    // v1 filled.
    let hit = call(&session, 2, "get_clients", json!({})).await?;
    hit.ensure_success("get_clients")?;
    let new = hit.field("generation").context("no generation")?;
    ensure!(new > old, "the swap is served: {:?}", hit.cache);
    ensure!(
        hit.field("filled") == Some(old),
        "the hit names the generation that filled it ({old}): {:?}",
        hit.cache
    );
    ensure_fields(
        &hit,
        &[("result", Some("hit")), ("decided-by", Some("probe"))],
    )?;
    ensure!(
        hit.field("ttl-ms").is_some_and(|ttl| ttl <= 111_000),
        "the entry keeps the old version's TTL: {:?}",
        hit.cache
    );
    // A new entry gets the new version's TTL.
    let fresh = call(&session, 3, "get_clients", json!({"fresh": true})).await?;
    ensure!(
        fresh.field("ttl-ms") == Some(222_000)
            && text_field(&fresh, "result").as_deref() == Some("miss"),
        "{:?}",
        fresh.cache
    );
    Ok(())
}
