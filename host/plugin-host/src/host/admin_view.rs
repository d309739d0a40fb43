//! The plugin host's admin view (`GET /admin/plugins`): every plugin file with its state,
//! limits and faults, every binding with its health, the recent reloads, the refused config
//! reload and the tool catalogues the smoke calls cover.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{PluginHost, RECENT_RELOADS, specs, stem};
use crate::error::FaultKind;
use crate::wasm_policy::WasmPolicy;
use mcp_bridge_policy::Policy;

impl PluginHost {
    /// The admin view: every plugin file, every binding, the generation.
    pub fn snapshot(&self) -> Value {
        let state = self.state.lock();
        let specs = specs(&state.config, &state.versions);
        let mut plugins: Vec<Value> = Vec::new();
        for (file, version) in &state.versions {
            // Health belongs to the bindings: the plugin shows what its serving bindings saw.
            let serving: Vec<&Arc<WasmPolicy>> = state
                .active
                .iter()
                .filter(|policy| Arc::ptr_eq(policy.version(), version))
                .collect();
            let faults: serde_json::Map<String, Value> = FaultKind::ALL
                .iter()
                .map(|kind| {
                    let count: u64 = serving.iter().map(|p| p.health().count(*kind)).sum();
                    (kind.as_str().to_owned(), json!(count))
                })
                .collect();
            let plugin_state = plugin_state(&serving);
            let quarantine_reason = serving
                .iter()
                .find_map(|policy| policy.health().any_quarantine_reason());
            plugins.push(json!({
                "name": stem(file),
                "file": file,
                "path": self.dir.join(file),
                "hash": version.hash,
                "size": version.size,
                "contract": version.contract.package(),
                "exports": version.exports.names(),
                // Whether its `init` declared it pure (null until the first `init`).
                "pure": version.exports.pure(),
                "generation": version.generation.load(Ordering::Relaxed),
                "limits": version.limits().to_json(),
                "loaded_at": humantime::format_rfc3339_millis(version.loaded_at).to_string(),
                "state": plugin_state,
                "quarantine_reason": quarantine_reason,
                "faults": faults,
                "compile": {
                    "source": version.compile_source.as_str(),
                    "ms": version.compile_time.as_secs_f64() * 1e3,
                },
                "bindings": specs.iter().filter(|s| s.file == *file).map(|s| s.name.clone()).collect::<Vec<_>>(),
                "last_rejection": state.rejected.get(file),
            }));
        }
        for (file, rejection) in &state.rejected {
            if state.versions.contains_key(file) {
                continue;
            }
            plugins.push(json!({
                "name": stem(file),
                "file": file,
                "path": self.dir.join(file),
                "hash": rejection.hash,
                "state": "rejected",
                "last_rejection": rejection,
            }));
        }
        let bindings: Vec<Value> = state
            .config
            .bindings
            .iter()
            .map(|binding| {
                let serving = state.active.iter().find(|policy| policy.name() == binding.name);
                let status = match serving {
                    None if !state.versions.contains_key(&binding.file) => "missing",
                    None => "active",
                    Some(policy) => binding_state(policy),
                };
                let mut entry = json!({
                    "name": binding.name,
                    "file": binding.file,
                    "servers": if binding.servers.is_empty() { vec!["*".to_owned()] } else { binding.servers.clone() },
                    "state": status,
                });
                if let (Some(policy), Some(fields)) = (serving, entry.as_object_mut()) {
                    fields.extend(health_fields(policy));
                }
                let refused_edit = state
                    .config_rejection
                    .as_ref()
                    .filter(|rejection| rejection.binding.as_deref() == Some(&binding.name));
                if let (Some(rejection), Some(fields)) = (refused_edit, entry.as_object_mut()) {
                    fields.insert("rejected_edit".to_owned(), json!(rejection));
                }
                entry
            })
            .chain(
                specs
                    .iter()
                    .filter(|spec| !state.config.bindings.iter().any(|b| b.name == spec.name))
                    .map(|spec| {
                        let serving = state.active.iter().find(|policy| policy.name() == spec.name);
                        let mut entry = json!({
                            "name": spec.name,
                            "file": spec.file,
                            "servers": ["*"],
                            "state": serving.map_or("active", |policy| binding_state(policy)),
                            "auto_bound": true,
                        });
                        if let (Some(policy), Some(fields)) = (serving, entry.as_object_mut()) {
                            fields.extend(health_fields(policy));
                        }
                        entry
                    }),
            )
            .collect();
        // Newest first, as a person reads a log of recent events.
        let recent_reloads = state.recent_reloads.newest_first();
        json!({
            "dir": self.dir,
            "generation": self.generation(),
            "auto_bind": state.config.auto_bind,
            "plugins": plugins,
            "bindings": bindings,
            "recent_reloads": recent_reloads,
            "recent_reloads_kept": RECENT_RELOADS,
            "config_rejection": state.config_rejection,
            // The tool catalogues bindings are smoke-called about, per server.
            "catalogues": state.catalogues.view(),
        })
    }
}

/// How many fault records the admin view shows per binding (the newest).
const SHOWN_FAULTS: usize = 8;

/// A serving binding's state: `quarantined` (every tool), `partly_quarantined` (some
/// tools) or `active`.
fn binding_state(policy: &WasmPolicy) -> &'static str {
    let health = policy.health();
    if health.binding_quarantined() {
        "quarantined"
    } else if health.quarantined_tool_count() > 0 {
        "partly_quarantined"
    } else {
        "active"
    }
}

/// A plugin's state from its serving bindings: `quarantined` when every one is,
/// `partly_quarantined` when any binding or tool is, else `active`.
fn plugin_state(serving: &[&Arc<WasmPolicy>]) -> &'static str {
    let states: Vec<&str> = serving.iter().map(|policy| binding_state(policy)).collect();
    if !states.is_empty() && states.iter().all(|state| *state == "quarantined") {
        "quarantined"
    } else if states.iter().any(|state| *state != "active") {
        "partly_quarantined"
    } else {
        "active"
    }
}

/// A serving binding's health in the admin view: its quarantines (each naming the tool
/// and the fault that tipped it, the panic first), its last faults, newest first, and
/// its fault counts.
fn health_fields(policy: &WasmPolicy) -> serde_json::Map<String, Value> {
    let health = policy.health();
    let faults: serde_json::Map<String, Value> = FaultKind::ALL
        .iter()
        .map(|kind| (kind.as_str().to_owned(), json!(health.count(*kind))))
        .collect();
    let mut fields = serde_json::Map::new();
    fields.insert("quarantine".to_owned(), json!(health.binding_quarantine()));
    fields.insert(
        "quarantined_tools".to_owned(),
        json!(health.quarantined_tools()),
    );
    fields.insert(
        "recent_faults".to_owned(),
        json!(health.recent_faults(SHOWN_FAULTS)),
    );
    fields.insert("faults".to_owned(), Value::Object(faults));
    fields
}
