//! `mcpServers` JSON files, as written by Claude Desktop, `.mcp.json` (Claude Code) and VS Code, read into server entries.
//!
//! The accepted shape is `{"mcpServers": {"NAME": {"command": "...", "args": [...], "env": {...},
//! "cwd": "..."}}}`; VS Code's `mcp.json` spells the object `"servers"` and may mark each entry
//! `"type": "stdio"`. Only stdio servers can be pooled, so an entry with another `type` (or
//! Cline's `transportType`), a `url` or `headers` is an error naming that server.
//!
//! Keys those tools write that mean nothing to a pool are accepted and ignored:
//! `autoApprove` and `alwaysAllow` (client-side tool approval lists), `timeout` (a client-side
//! request timeout: the pool's own timeouts come from `[defaults]`), `description` and `dev`
//! (VS Code's debug-mode settings). `disabled: true` is honoured: the entry is skipped, as the
//! tool that wrote it would skip it. `envFile` is rejected rather than ignored, because ignoring
//! it would start the server without the variables it expects. At the top level, VS Code's
//! `inputs` list and Claude Desktop's `globalShortcut` are ignored. Any other key is an error
//! that names it and suggests the closest known key.

use std::path::Path;
use std::rc::Rc;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::error::ConfigError;
use super::load::{ServerEntry, serde_error};
use super::raw::{OrderedMap, RawServer};
use super::secret::RawSecret;
use super::source::{FieldPath, SourceText};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServersFile {
    #[serde(rename = "mcpServers")]
    mcp_servers: Option<OrderedMap<RawJsonServer>>,
    servers: Option<OrderedMap<RawJsonServer>>,
    #[serde(rename = "inputs")]
    _inputs: Option<IgnoredAny>,
    #[serde(rename = "globalShortcut")]
    _global_shortcut: Option<IgnoredAny>,
}

/// One server entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJsonServer {
    command: Option<String>,
    args: Option<Vec<String>>,
    env: Option<OrderedMap<RawSecret>>,
    cwd: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "transportType")]
    transport_type: Option<String>,
    url: Option<IgnoredAny>,
    headers: Option<IgnoredAny>,
    disabled: Option<bool>,
    #[serde(rename = "envFile")]
    env_file: Option<IgnoredAny>,
    #[serde(rename = "autoApprove")]
    _auto_approve: Option<IgnoredAny>,
    #[serde(rename = "alwaysAllow")]
    _always_allow: Option<IgnoredAny>,
    #[serde(rename = "timeout")]
    _timeout: Option<IgnoredAny>,
    #[serde(rename = "description")]
    _description: Option<IgnoredAny>,
    #[serde(rename = "dev")]
    _dev: Option<IgnoredAny>,
}

const ONLY_STDIO_HELP: &str = "mcp-bridge starts and pools local processes that speak MCP over stdio; remove this entry (or mark it \"disabled\": true) and connect your client to that server directly";

/// Parses an `mcpServers` file into server entries, skipping disabled ones. `base_dir` is the
/// file's directory, against which relative `cwd` values are resolved.
pub(crate) fn parse(
    source: &Rc<SourceText>,
    base_dir: &Path,
) -> Result<Vec<ServerEntry>, ConfigError> {
    let mut deserializer = serde_json::Deserializer::from_str(&source.text);
    let file: RawServersFile = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| json_error(source, &FieldPath::from_serde(e.path()), e.inner()))?;
    deserializer
        .end()
        .map_err(|e| json_error(source, &FieldPath::root(), &e))?;

    let (key, servers) = match (file.mcp_servers, file.servers) {
        (Some(servers), None) => ("mcpServers", servers),
        (None, Some(servers)) => ("servers", servers),
        (Some(_), Some(_)) => {
            return Err(source
                .error(
                    &FieldPath::root().key("servers"),
                    "the file has both `mcpServers` and `servers`",
                )
                .with_help(
                    "keep one of the two objects; `servers` is VS Code's name for `mcpServers`",
                ));
        }
        (None, None) => {
            return Err(ConfigError::new(&source.name, "the file has no `mcpServers` object")
                .with_help("an mcpServers file looks like {\"mcpServers\": {\"NAME\": {\"command\": \"...\", \"args\": []}}}"));
        }
    };

    let mut entries = Vec::new();
    for (name, server) in servers.0 {
        let path = FieldPath::root().key(key).key(&name);
        if server.disabled == Some(true) {
            continue;
        }
        if let Some(kind) = server.kind.as_deref().filter(|k| *k != "stdio") {
            return Err(only_stdio(
                source,
                &path.key("type"),
                &name,
                &format!("has type \"{kind}\""),
            ));
        }
        if let Some(kind) = server.transport_type.as_deref().filter(|k| *k != "stdio") {
            let path = path.key("transportType");
            return Err(only_stdio(
                source,
                &path,
                &name,
                &format!("has transport type \"{kind}\""),
            ));
        }
        if server.url.is_some() {
            return Err(only_stdio(source, &path.key("url"), &name, "has a `url`"));
        }
        if server.headers.is_some() {
            return Err(only_stdio(
                source,
                &path.key("headers"),
                &name,
                "has HTTP `headers`",
            ));
        }
        if server.env_file.is_some() {
            return Err(source
                .error(&path.key("envFile"), "`envFile` is not supported")
                .with_help("copy the variables into `env`; write \"${NAME}\" to take a value from the bridge's environment"));
        }
        let raw = RawServer {
            command: server.command,
            args: server.args,
            env: server.env,
            cwd: server.cwd,
            ..RawServer::default()
        };
        entries.push(ServerEntry {
            name,
            path,
            source: Rc::clone(source),
            base_dir: base_dir.to_path_buf(),
            raw,
        });
    }
    Ok(entries)
}

fn only_stdio(source: &SourceText, path: &FieldPath, name: &str, what: &str) -> ConfigError {
    source
        .error(
            path,
            format!("server `{name}` {what}: only stdio servers can be pooled"),
        )
        .with_help(ONLY_STDIO_HELP)
}

/// Turns a serde_json error into a configuration error at the line and column it reports.
fn json_error(source: &SourceText, path: &FieldPath, inner: &serde_json::Error) -> ConfigError {
    let position = (inner.line() > 0).then(|| (inner.line(), inner.column().max(1)));
    // serde_json appends " at line L column C" to its messages; the position has its own fields.
    let text = inner.to_string();
    let message = match text.rfind(" at line ") {
        Some(end) if inner.line() > 0 => &text[..end],
        _ => text.as_str(),
    };
    if inner.is_data() {
        return serde_error(source, path, message, position);
    }
    ConfigError {
        line: position.map(|p| p.0),
        column: position.map(|p| p.1),
        ..ConfigError::new(source.name.clone(), format!("invalid JSON: {message}"))
    }
    .with_help(
        "JSON needs double-quoted keys and strings, and allows no comments or trailing commas",
    )
}
