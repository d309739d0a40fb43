//! Checks `[processes]`, `[principal_secrets]` and each server's `isolation`,
//! `max_total_processes`, `identity_meta` and caller references in `env`.

use std::collections::BTreeMap;
use std::path::Path;

use super::checked::PoolConfig;
use super::error::ConfigError;
use super::expand::Lookup;
use super::isolation::*;
use super::load::ServerEntry;
use super::raw::{OrderedMap, RawPool};
use super::secret::Secret;
use super::source::{FieldPath, SourceText};
use super::validate::expand_at;

/// `[processes]`.
pub(super) fn processes(
    main: &SourceText,
    raw: RawProcesses,
) -> Result<ProcessesConfig, ConfigError> {
    let max_total = raw.max_total.unwrap_or(DEFAULT_MAX_BACKEND_PROCESSES);
    if max_total == 0 {
        return Err(main
            .error(&FieldPath::root().key("processes").key("max_total"), "must be at least 1")
            .with_help(format!(
                "write how many backend processes all servers together may run, such as {DEFAULT_MAX_BACKEND_PROCESSES}"
            )));
    }
    Ok(ProcessesConfig { max_total })
}

/// `[principal_secrets.NAME]`: each principal's value, read now from the environment or a
/// file. Errors name the secret and the principal, never a value.
pub(super) fn principal_secrets(
    main: &SourceText,
    base_dir: &Path,
    raw: OrderedMap<OrderedMap<RawPrincipalSecret>>,
    lookup: Lookup<'_>,
) -> Result<(PrincipalSecrets, SecretSources), ConfigError> {
    let mut secrets = PrincipalSecrets::default();
    let mut sources = SecretSources::default();
    for (name, principals) in raw.0 {
        let table = FieldPath::root().key("principal_secrets").key(&name);
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(main
                .error(&table, format!("`{name}` is not a valid secret name"))
                .with_help("use letters, digits, `_` and `-`, such as GITHUB_TOKEN; `${secret.GITHUB_TOKEN}` names it in env"));
        }
        let mut values = BTreeMap::new();
        for (principal, source) in principals.0 {
            let at = table.key(&principal);
            let value = match (source.env, source.file) {
                (Some(variable), None) => {
                    let value = lookup(&variable).ok_or_else(|| {
                        main.error(&at.key("env"), format!("environment variable `{variable}` is not set"))
                            .with_help(format!("set {variable} in the bridge's environment to {principal}'s value of {name}"))
                    })?;
                    sources.0.push(variable);
                    value
                }
                (None, Some(file)) => {
                    let file = expand_at(main, &at.key("file"), &file, lookup)?;
                    let path = base_dir.join(&file);
                    let text = std::fs::read_to_string(&path).map_err(|error| {
                        main.error(&at.key("file"), format!("cannot read {}: {error}", path.display()))
                            .with_help("make the file readable by the bridge, or name an environment variable with `env = \"VAR\"`")
                    })?;
                    // A trailing newline is how editors and `echo` end a file, not part of a token.
                    text.trim_end_matches(['\n', '\r']).to_owned()
                }
                _ => {
                    return Err(main
                        .error(&at, "write exactly one of `env` and `file`")
                        .with_help(format!("such as {principal} = {{ env = \"{}_{}\" }} or {principal} = {{ file = \"/run/secrets/{principal}-{name}\" }}", principal.to_uppercase(), name)));
                }
            };
            if value.is_empty() || value.contains('\0') {
                return Err(main
                    .error(&at, "the value is empty or holds a NUL character")
                    .with_help("a secret is passed in a process's environment: give it a non-empty value without NUL"));
            }
            values.insert(principal, Secret::new(value));
        }
        secrets.0.insert(name, values);
    }
    Ok((secrets, sources))
}

/// What a server's table says about isolation, once checked.
pub(super) struct ServerIsolation {
    pub isolation: Isolation,
    pub max_total_processes: usize,
    pub identity_meta: bool,
}

/// Checks a server's isolation settings and adjusts its pool for them: an isolated server's
/// processes start on first use (no `min_connections`), and `max_connections` is per
/// principal or session.
pub(super) fn server_isolation(
    entry: &ServerEntry,
    pool: &mut PoolConfig,
    has_caller_env: bool,
) -> Result<ServerIsolation, ConfigError> {
    let source = &entry.source;
    let raw = &entry.raw;
    let at = |field: &str| entry.path.key(field);
    let isolation = match raw.isolation.as_deref() {
        None => DEFAULT_ISOLATION,
        Some(text) => Isolation::parse(text).ok_or_else(|| {
            source
                .error(&at("isolation"), format!("unknown isolation `{text}`"))
                .with_help("write \"shared\" (one pool for every caller), \"principal\" (processes of its own for each principal) or \"session\" (one process per MCP session)")
        })?,
    };
    let identity_meta = raw.identity_meta.unwrap_or(DEFAULT_IDENTITY_META);
    if has_caller_env && !isolation.is_isolated() {
        return Err(source
            .error(&at("env"), "`${principal.name}` or `${secret.…}` in env needs isolation = \"principal\" or \"session\"")
            .with_help("a shared process serves every principal, so it cannot carry one principal's values: set isolation = \"principal\" on this server, or remove the reference"));
    }
    let own = RawPool::from(raw);
    if isolation.is_isolated() {
        if own.min_connections.is_some_and(|min| min > 0) {
            return Err(source
                .error(&at("min_connections"), format!("an {isolation}-isolated server starts its processes on first use"))
                .with_help("remove min_connections: each principal's or session's processes start when it first calls and stop when idle"));
        }
        pool.min_connections = 0;
        if own.max_connections.is_none() {
            pool.max_connections = DEFAULT_ISOLATED_MAX_CONNECTIONS;
        }
        if isolation == Isolation::Session {
            pool.max_connections = 1;
        }
    }
    let default_total = if isolation.is_isolated() {
        DEFAULT_ISOLATED_MAX_TOTAL_PROCESSES
    } else {
        pool.max_connections
    };
    let max_total_processes = raw.max_total_processes.unwrap_or(default_total);
    if max_total_processes == 0 {
        return Err(source
            .error(&at("max_total_processes"), "must be at least 1")
            .with_help(format!("write how many processes this server may run across all principals and sessions, such as {DEFAULT_ISOLATED_MAX_TOTAL_PROCESSES}")));
    }
    if max_total_processes < pool.max_connections {
        return Err(source
            .error(&at("max_total_processes"), format!("max_total_processes ({max_total_processes}) is less than max_connections ({})", pool.max_connections))
            .with_help("raise max_total_processes, or lower max_connections (per principal or session on an isolated server)"));
    }
    if !isolation.is_isolated() && pool.min_connections > max_total_processes {
        return Err(source
            .error(
                &at("max_total_processes"),
                "max_total_processes is less than min_connections",
            )
            .with_help("raise max_total_processes or lower min_connections"));
    }
    Ok(ServerIsolation {
        isolation,
        max_total_processes,
        identity_meta,
    })
}

/// An `env` value as written: plain text to expand now, or a template when it names the
/// caller. Secrets it names must be declared.
pub(super) enum CheckedEnvValue {
    Plain(String),
    Template(EnvTemplate),
}

pub(super) fn env_value(
    source: &SourceText,
    path: &FieldPath,
    written: &str,
    lookup: Lookup<'_>,
    secrets: &PrincipalSecrets,
) -> Result<CheckedEnvValue, ConfigError> {
    let pieces = super::isolation::split_caller_references(written).map_err(|bad| {
        source
            .error(path, format!("`${{{}}}` is not a caller reference", bad.0))
            .with_help("write ${principal.name} or ${secret.NAME} (declared in [principal_secrets.NAME]); write $$ for a literal `$`")
    })?;
    let Some(pieces) = pieces else {
        return Ok(CheckedEnvValue::Plain(expand_at(
            source, path, written, lookup,
        )?));
    };
    let mut template = Vec::with_capacity(pieces.len());
    for piece in pieces {
        template.push(match piece {
            WrittenPiece::Text(text) => EnvPiece::Text(expand_at(source, path, text, lookup)?),
            WrittenPiece::PrincipalName => EnvPiece::PrincipalName,
            WrittenPiece::Secret(name) => {
                if !secrets.is_declared(name) {
                    let declared: Vec<&str> = secrets.names().collect();
                    return Err(source
                        .error(path, format!("`${{secret.{name}}}` names a secret no [principal_secrets.{name}] table declares"))
                        .with_help(if declared.is_empty() {
                            format!("declare it: [principal_secrets.{name}] with one `PRINCIPAL = {{ env = \"VAR\" }}` line per principal")
                        } else {
                            format!("declared secrets: {}", declared.join(", "))
                        }));
                }
                EnvPiece::Secret(name.to_owned())
            }
        });
    }
    Ok(CheckedEnvValue::Template(EnvTemplate(template)))
}
