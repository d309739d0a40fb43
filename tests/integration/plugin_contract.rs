//! The contract between host and plugins: `wit/` is its only copy, the host and the SDK
//! are both generated from it, and the `annotations` example plugin (built with the SDK)
//! answers exactly as the built-in Rust policy does for the same settings. The plugin
//! wraps that same built-in policy, so the agreement test checks the WASM boundary: the
//! host's and the SDK's conversions of every call, decision, TTL and invalidation, and the
//! plugin config's reading of the settings the bridge config writes in TOML.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};

use mcp_bridge::config::{PluginsConfig, load_str};
use mcp_bridge::metrics::Registry;
use mcp_bridge::plugin::PluginMetrics;
use mcp_bridge::plugin::bindings::Contract;
use mcp_bridge::plugin::{Limits, PluginEngine, PluginVersion, WasmPolicy};
use mcp_bridge::policy::{Annotations, Call, CallKind, Outcome, Policy, ServerHints, Status};

use crate::support::repo_root;

/// Cache settings exercising every part of the built-in policy.
const SETTINGS: &str = r#"
[servers.demo]
command = "demo"

[servers.other]
command = "other"
cache = false

[cache]
default_ttl = "90s"
list_ttl = "2m"
stale_while_revalidate = "5s"
stale_if_error = "1m"

[cache.ttl."*"]
get_tool_schema = "1h"

[cache.ttl.demo]
get_clients = "5m"
create_task = 0
"*" = "10m"

[[cache.invalidate]]
server = "demo"
on = "create_task"
tools = ["get_tasks"]
tags = ["tasks"]

[[cache.invalidate]]
on = "complete_task"
tools = ["get_tasks", "get_today_metrics"]
"#;

/// The same settings as the annotations plugin's config.
const PLUGIN_CONFIG: &str = r#"{
  "default_ttl": "90s", "list_ttl": "2m", "stale_while_revalidate": "5s", "stale_if_error": "1m",
  "uncached_servers": ["other"],
  "ttl": {"*": {"get_tool_schema": "1h"}, "demo": {"get_clients": "5m", "create_task": 0, "*": "10m"}},
  "invalidate": [
    {"server": "demo", "on": "create_task", "tools": ["get_tasks"], "tags": ["tasks"]},
    {"on": "complete_task", "tools": ["get_tasks", "get_today_metrics"]}
  ]
}"#;

#[test]
fn the_annotations_plugin_agrees_with_the_builtin_policy() -> Result<()> {
    let config = load_str(SETTINGS, "agreement.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    let builtin = config.builtin_policy();
    let engine = PluginEngine::new(None)?;
    let bytes = std::fs::read(plugin_artifacts::ANNOTATIONS)?;
    let version = Arc::new(PluginVersion::load(
        &engine,
        "annotations.wasm",
        &bytes,
        Limits::from_config(&PluginsConfig::default()),
    )?);
    let plugin = WasmPolicy::start(
        "annotations",
        Vec::new(),
        PLUGIN_CONFIG.to_owned(),
        version,
        1,
        &Arc::new(PluginMetrics::register(&Registry::new())),
    )?;

    let read_only = [Some(true), Some(false), None];
    let tools = [
        "get_tasks",
        "get_clients",
        "get_tool_schema",
        "create_task",
        "complete_task",
        "update_task",
    ];
    let mut compared = 0;
    for server in ["demo", "other", "elsewhere"] {
        for kind in [
            CallKind::Tool,
            CallKind::ReadResource,
            CallKind::ListRequest,
        ] {
            for name in tools {
                for hint in read_only {
                    let call = Call {
                        server,
                        method: "tools/call",
                        kind,
                        name,
                        canonical_arguments: "{}",
                        annotations: Annotations {
                            read_only: hint,
                            ..Annotations::default()
                        },
                        hints: ServerHints::default(),
                        principal: Some("someone"),
                    };
                    ensure!(
                        plugin.decide(&call) == builtin.decide(&call),
                        "decide differs for {server}/{name} {kind:?} readOnly={hint:?}: plugin {:?}, built-in {:?}",
                        plugin.decide(&call),
                        builtin.decide(&call)
                    );
                    for status in [Status::Success, Status::Error, Status::Unknown] {
                        let outcome = Outcome::of(status);
                        ensure!(
                            plugin.invalidations(&call, &outcome)
                                == builtin.invalidations(&call, &outcome),
                            "invalidations differ for {server}/{name} {kind:?} {status:?}"
                        );
                    }
                    compared += 1;
                }
            }
            for name in tools {
                ensure!(
                    plugin.ttl(server, name) == builtin.ttl(server, name),
                    "ttl differs for {server}/{name}: plugin {:?}, built-in {:?}",
                    plugin.ttl(server, name),
                    builtin.ttl(server, name)
                );
            }
        }
    }
    ensure!(compared == 3 * 3 * 6 * 3, "compared {compared} calls");
    Ok(())
}

/// Every `.wit` file under `dir` (skipping build output and dependencies).
fn wit_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if !matches!(name, "target" | "build" | "node_modules" | ".git") {
                wit_files(&path, found)?;
            }
        } else if name.ends_with(".wit") {
            found.push(path);
        }
    }
    Ok(())
}

#[test]
fn the_wit_package_is_the_only_copy_of_the_contract() -> Result<()> {
    let root = repo_root();
    let mut files = Vec::new();
    wit_files(&root, &mut files)?;
    // The current contract, and the frozen earlier ones the host still serves.
    let versions = [
        (Contract::V0_3, root.join("wit/policy.wit")),
        (Contract::V0_2, root.join("wit/v0.2.0/policy.wit")),
        (Contract::V0_1, root.join("wit/v0.1.0/policy.wit")),
    ];
    for (contract, path) in &versions {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        ensure!(
            text.contains(&format!("package {};", contract.package())),
            "{} does not declare {}",
            path.display(),
            contract.package()
        );
        // The host looks up the same names the WIT declares.
        let names = contract.names();
        let version = contract
            .package()
            .rsplit_once('@')
            .map(|(_, v)| v)
            .unwrap_or_default();
        for (constant, interface) in [
            (names.cache_policy, "cache-policy"),
            (names.ttl_table, "ttl-table"),
            (names.invalidation_rules, "invalidation-rules"),
            (names.lifecycle, "lifecycle"),
        ] {
            ensure!(
                constant == format!("mcp-bridge:policy/{interface}@{version}"),
                "{constant}"
            );
            ensure!(
                text.contains(&format!("interface {interface} {{")),
                "no interface {interface} in {}",
                path.display()
            );
        }
    }
    for file in &files {
        if versions.iter().any(|(_, path)| path == file) {
            continue;
        }
        let other = std::fs::read_to_string(file)?;
        // Only the deliberately wrong test plugin may declare the package elsewhere.
        let fixture = file.components().any(|c| c.as_os_str() == "wrong-wit");
        ensure!(
            fixture || !other.contains("package mcp-bridge:policy"),
            "{} declares the contract's package: the SDK and host must use wit/ itself",
            file.display()
        );
    }
    let sdk = std::fs::read_to_string(root.join("plugins/sdk/src/lib.rs"))?;
    ensure!(
        sdk.contains("path: \"../../wit\""),
        "the SDK does not generate from wit/"
    );
    Ok(())
}
