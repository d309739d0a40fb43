//! Checks `[cache.shared]` into a [`SharedCacheConfig`].

use std::path::Path;
use std::time::Duration;

use super::error::{ConfigError, suggest};
use super::expand::Lookup;
use super::raw::RawSharedCache;
use super::secret::Secret;
use super::shared::*;
use super::source::{FieldPath, SourceText};
use super::validate::expand_at;
use mcp_bridge_policy::units::format_duration;

pub(super) fn shared(
    main: &SourceText,
    base_dir: &Path,
    raw: RawSharedCache,
    lookup: Lookup<'_>,
) -> Result<SharedCacheConfig, ConfigError> {
    let table = FieldPath::root().key("cache").key("shared");
    let at = |field: &str| table.key(field);
    let Some(url) = raw.url else {
        return Err(main
            .error(&table, "[cache.shared] has no `url`")
            .with_help("write url = \"redis://HOST:6379\" (or \"rediss://HOST:6380\" for TLS), usually \"${REDIS_URL}\"; remove the table to run without a shared tier"));
    };
    let url = expand_at(main, &at("url"), &url.0, lookup)?;
    if let Err(why) = check_redis_url(&url) {
        return Err(main
            .error(&at("url"), format!("not a Redis URL: {why}"))
            .with_help("write redis://[user:password@]HOST:PORT[/DB] or rediss://… for TLS, such as \"redis://127.0.0.1:6379\""));
    }
    let password = match raw.password {
        Some(password) => {
            let password = expand_at(main, &at("password"), &password.0, lookup)?;
            if password.is_empty() {
                return Err(main
                    .error(&at("password"), "the password is empty")
                    .with_help("write the Redis password (usually \"${REDIS_PASSWORD}\"), or remove the key when Redis has none"));
            }
            Some(Secret::new(password))
        }
        None => None,
    };
    let ca_file = match raw.ca_file {
        Some(file) => {
            if !url.starts_with("rediss://") {
                return Err(main
                    .error(&at("ca_file"), "`ca_file` is set but the URL is not rediss://")
                    .with_help("trusted roots only matter for TLS: write the URL as rediss://…, or remove `ca_file`"));
            }
            let file = expand_at(main, &at("ca_file"), &file, lookup)?;
            Some(base_dir.join(file))
        }
        None => None,
    };
    let consistency = match raw.consistency.as_deref() {
        None => Consistency::default(),
        Some(text) => Consistency::ALL
            .into_iter()
            .find(|mode| text.trim().eq_ignore_ascii_case(mode.as_str()))
            .ok_or_else(|| {
                let close = suggest(text, Consistency::ALL.iter().map(|mode| mode.as_str()))
                    .map_or_else(String::new, |name| format!("did you mean \"{name}\"? "));
                main.error(&at("consistency"), format!("unknown consistency mode `{text}`"))
                    .with_help(format!("{close}write \"strict\" (every hit checked against Redis: never stale after a write) or \"bounded\" (replicas trust their own level until the broadcast arrives)"))
            })?,
    };
    let key_prefix = raw
        .key_prefix
        .unwrap_or_else(|| DEFAULT_SHARED_KEY_PREFIX.to_owned());
    if key_prefix.len() > 64
        || key_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(main
            .error(&at("key_prefix"), "the key prefix is longer than 64 bytes or contains spaces or control characters")
            .with_help(format!("write a short printable prefix such as \"{DEFAULT_SHARED_KEY_PREFIX}\"; replicas that share a cache must use the same one")));
    }
    let duration =
        |field: &str, written: Option<_>, default: Duration| -> Result<Duration, ConfigError> {
            let value = written.map_or(default, Duration::from);
            if value.is_zero() {
                return Err(main
                    .error(&at(field), "must be longer than zero")
                    .with_help(format!(
                        "remove it for the default, {}",
                        format_duration(default)
                    )));
            }
            Ok(value)
        };
    let connect_timeout = duration(
        "connect_timeout",
        raw.connect_timeout,
        DEFAULT_SHARED_CONNECT_TIMEOUT,
    )?;
    let command_timeout = duration(
        "command_timeout",
        raw.command_timeout,
        DEFAULT_SHARED_COMMAND_TIMEOUT,
    )?;
    let health_check_interval = duration(
        "health_check_interval",
        raw.health_check_interval,
        DEFAULT_SHARED_HEALTH_CHECK_INTERVAL,
    )?;
    let generation_retention = duration(
        "generation_retention",
        raw.generation_retention,
        DEFAULT_SHARED_GENERATION_RETENTION,
    )?;
    if generation_retention < MIN_SHARED_GENERATION_RETENTION {
        return Err(main
            .error(&at("generation_retention"), "must be at least two minutes")
            .with_help("entries live at most half of it, so a short retention means short-lived entries; write \"7d\""));
    }
    let max_value_bytes = raw
        .max_value_bytes
        .map_or(DEFAULT_SHARED_MAX_VALUE_BYTES, |size| size.0 as u64);
    if !(1..=MAX_SHARED_VALUE_BYTES).contains(&max_value_bytes) {
        return Err(main
            .error(&at("max_value_bytes"), "must be between 1 byte and 64 MiB")
            .with_help("larger results stay in each replica's own level; write \"1MiB\""));
    }
    let count =
        |field: &str, written: Option<usize>, default: usize| -> Result<usize, ConfigError> {
            let value = written.unwrap_or(default);
            if value == 0 {
                return Err(main
                    .error(&at(field), "must be at least 1")
                    .with_help(format!("remove it for the default, {default}")));
            }
            Ok(value)
        };
    Ok(SharedCacheConfig {
        url: Secret::new(url),
        password,
        ca_file,
        consistency,
        key_prefix,
        connect_timeout,
        command_timeout,
        health_check_interval,
        max_value_bytes,
        max_pending_invalidations: count(
            "max_pending_invalidations",
            raw.max_pending_invalidations,
            DEFAULT_SHARED_MAX_PENDING_INVALIDATIONS,
        )?,
        max_pending_writes: count(
            "max_pending_writes",
            raw.max_pending_writes,
            DEFAULT_SHARED_MAX_PENDING_WRITES,
        )?,
        generation_retention,
        required_for_readiness: raw.required_for_readiness.unwrap_or(false),
    })
}

/// Checks the shape of a Redis URL: the scheme and a host. The driver parses the rest.
fn check_redis_url(url: &str) -> Result<(), String> {
    let (scheme, host) =
        redis_endpoint(url).ok_or_else(|| "it has no scheme (redis:// or rediss://)".to_owned())?;
    if scheme != "redis" && scheme != "rediss" {
        return Err(format!("the scheme `{scheme}` is neither redis nor rediss"));
    }
    if host.is_empty() || host.starts_with(':') {
        return Err("it has no host".to_owned());
    }
    Ok(())
}
