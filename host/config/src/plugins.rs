//! Checks the `[plugins]` table: the plugin directory, the sandbox limits and the
//! `[[plugins.policy]]` bindings that say which plugin applies to which servers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checked::*;
use super::error::{ConfigError, suggest};
use super::expand::Lookup;
use super::raw::{RawPluginBinding, RawPlugins};
use super::source::{FieldPath, SourceText};
use super::validate::expand_at;
use mcp_bridge_policy::units::format_duration;

/// The file name plugins must end with.
const PLUGIN_EXTENSION: &str = ".wasm";

pub(super) fn plugins(
    main: &SourceText,
    base_dir: &Path,
    raw: RawPlugins,
    servers: &[ServerConfig],
    lookup: Lookup<'_>,
) -> Result<PluginsConfig, ConfigError> {
    let at = |field: &str| FieldPath::root().key("plugins").key(field);
    let defaults = PluginsConfig::default();

    let dir = match raw.dir.as_deref() {
        None => None,
        Some(written) => {
            let value = expand_at(main, &at("dir"), written, lookup)?;
            if value.trim().is_empty() {
                return Err(main
                    .error(&at("dir"), "the plugin directory is empty")
                    .with_help("write the directory the bridge watches for .wasm files, or remove `dir` to run without plugins"));
            }
            Some(base_dir.join(value))
        }
    };

    let compiled_cache = raw.compiled_cache.unwrap_or(DEFAULT_PLUGIN_COMPILED_CACHE);
    let compiled_cache_dir = match raw.compiled_cache_dir.as_deref() {
        _ if !compiled_cache => None,
        Some(written) => {
            let value = expand_at(main, &at("compiled_cache_dir"), written, lookup)?;
            Some(base_dir.join(value))
        }
        None => default_compiled_cache_dir(lookup),
    };

    let decision_timeout = raw
        .decision_timeout
        .map_or(defaults.decision_timeout, Duration::from);
    if decision_timeout < MIN_PLUGIN_DECISION_TIMEOUT {
        return Err(main
            .error(
                &at("decision_timeout"),
                format!(
                    "a decision timeout of {} is shorter than the {} the bridge can measure",
                    format_duration(decision_timeout),
                    format_duration(MIN_PLUGIN_DECISION_TIMEOUT)
                ),
            )
            .with_help("write at least \"1ms\"; the default is \"50ms\""));
    }

    let max_memory = raw.max_memory.map_or(defaults.max_memory, |size| size.0);
    if max_memory < MIN_PLUGIN_MAX_MEMORY {
        return Err(main
            .error(
                &at("max_memory"),
                format!("{max_memory} bytes is too little memory for a plugin instance"),
            )
            .with_help("write at least \"2MiB\"; the default is \"32MiB\""));
    }

    let max_idle_instances = raw
        .max_idle_instances
        .unwrap_or(defaults.max_idle_instances);
    let quarantine_after = raw.quarantine_after.unwrap_or(defaults.quarantine_after);
    if quarantine_after == 0 {
        return Err(main
            .error(
                &at("quarantine_after"),
                "quarantine_after must be at least 1",
            )
            .with_help(
                "write how many faults within quarantine_window quarantine a plugin, for example 5",
            ));
    }
    let quarantine_window = raw
        .quarantine_window
        .map_or(defaults.quarantine_window, Duration::from);
    if quarantine_window.is_zero() {
        return Err(main
            .error(
                &at("quarantine_window"),
                "quarantine_window must not be zero",
            )
            .with_help("write a window such as \"60s\""));
    }

    let raw_bindings = raw.policy.unwrap_or_default();
    let mut bindings: Vec<PluginBinding> = Vec::with_capacity(raw_bindings.len());
    for (index, raw_binding) in raw_bindings.into_iter().enumerate() {
        let path = FieldPath::root().key("plugins").key("policy").index(index);
        let binding = binding(main, &path, raw_binding, servers)?;
        if bindings.iter().any(|other| other.name == binding.name) {
            return Err(main
                .error(
                    &path.key("name"),
                    format!("plugin binding name `{}` is used twice", binding.name),
                )
                .with_help("give each [[plugins.policy]] its own `name`; it labels logs, metrics and /admin/plugins"));
        }
        bindings.push(binding);
    }
    if dir.is_none() && !bindings.is_empty() {
        return Err(main
            .error(
                &at("policy"),
                "[[plugins.policy]] names plugin files but [plugins] has no `dir` to find them in",
            )
            .with_help("add dir = \"plugins.d\" (any directory) under [plugins] and put the .wasm files there"));
    }

    Ok(PluginsConfig {
        dir,
        compiled_cache_dir,
        decision_timeout,
        max_memory,
        max_idle_instances,
        quarantine_after,
        quarantine_window,
        auto_bind: raw.auto_bind.unwrap_or(defaults.auto_bind),
        watch_debounce: raw
            .watch_debounce
            .map_or(defaults.watch_debounce, Duration::from),
        bindings,
    })
}

fn binding(
    main: &SourceText,
    path: &FieldPath,
    raw: RawPluginBinding,
    servers: &[ServerConfig],
) -> Result<PluginBinding, ConfigError> {
    let Some(file) = raw.file else {
        return Err(main
            .error(path, "a [[plugins.policy]] entry has no `file`")
            .with_help("write file = \"NAME.wasm\", a file inside [plugins] dir"));
    };
    check_file_name(main, &path.key("file"), &file)?;
    let name = raw
        .name
        .unwrap_or_else(|| file.trim_end_matches(PLUGIN_EXTENSION).to_owned());
    if name.trim().is_empty() {
        return Err(main
            .error(&path.key("name"), "the binding's name is empty")
            .with_help("write a short name, or remove `name` to use the file name"));
    }

    let mut bound_servers = Vec::new();
    for (index, server) in raw.servers.unwrap_or_default().into_iter().enumerate() {
        if server == "*" {
            bound_servers.clear();
            break;
        }
        if !servers.iter().any(|known| known.name == server) {
            let close = suggest(&server, servers.iter().map(|known| known.name.as_str()))
                .map_or_else(String::new, |name| format!("did you mean \"{name}\"? "));
            return Err(main
                .error(
                    &path.key("servers").index(index),
                    format!(
                        "plugin binding `{name}` names server `{server}`, which is not configured"
                    ),
                )
                .with_help(format!(
                    "{close}name a server from [servers], or write \"*\" for every server"
                )));
        }
        bound_servers.push(server);
    }

    let config_json = config_json(main, &path.key("config"), raw.config)?;

    Ok(PluginBinding {
        name,
        file,
        servers: bound_servers,
        config_json,
    })
}

/// Checks that `file` is the bare name of a `.wasm` file (it is looked up in `[plugins]
/// dir`, so it must not reach outside it).
pub(super) fn check_file_name(
    main: &SourceText,
    path: &FieldPath,
    file: &str,
) -> Result<(), ConfigError> {
    if !file.ends_with(PLUGIN_EXTENSION)
        || file.contains('/')
        || file.contains('\\')
        || file.starts_with('.')
    {
        return Err(main
            .error(path, format!("`{file}` is not a plugin file name"))
            .with_help("write the bare name of a .wasm file inside [plugins] dir, such as \"seed-ttl-table.wasm\" (no directories, not starting with a dot)"));
    }
    Ok(())
}

/// A plugin's `config` table as the JSON text its `init` receives (`{}` without one).
pub(super) fn config_json(
    main: &SourceText,
    path: &FieldPath,
    table: Option<toml::Table>,
) -> Result<String, ConfigError> {
    let Some(table) = table else {
        return Ok("{}".to_owned());
    };
    serde_json::to_string(&table).map_err(|error| {
        main.error(
            path,
            format!("the plugin config cannot be passed on as JSON: {error}"),
        )
        .with_help("use strings, numbers, booleans, arrays and tables; dates have no JSON form")
    })
}

/// `$XDG_CACHE_HOME/mcp-bridge/compiled`, else `$HOME/.cache/mcp-bridge/compiled`, else
/// none (plugins are then compiled on every load).
fn default_compiled_cache_dir(lookup: Lookup<'_>) -> Option<PathBuf> {
    let nonempty = |name: &str| lookup(name).filter(|value| !value.is_empty());
    let base = nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("mcp-bridge").join("compiled"))
}
