//! The `[sessions]` table: the keys that sign and verify `Mcp-Session-Id` tokens, and how
//! long a token stays valid.
//!
//! A session id is a token the bridge signs (HMAC-SHA256), carrying what any replica needs
//! to continue the session. Replicas that share the keys accept each other's sessions. The
//! first key signs new tokens and every key verifies, so a key is rotated by putting the new
//! one first and keeping the old one second until the sessions it signed are gone (at most
//! `max_age`). Both settings reload with the config file.

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::expand::Lookup;
use super::secret::{RawSecret, Secret};
use super::source::{FieldPath, SourceText};
use super::validate::expand_at;
use mcp_bridge_policy::units::{ConfigDuration, format_duration};

/// How long a session token stays valid after `initialize`; an older one is an unknown
/// session (404) and the client opens a new one. It also bounds how long a revoked session
/// must be remembered.
pub const DEFAULT_SESSION_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest key accepted, in bytes: HMAC-SHA256 is as strong as its key up to 32 bytes.
pub const MIN_SESSION_KEY_BYTES: usize = 32;
/// The most keys `[sessions] keys` may list: one signs, the others are rotations on their
/// way out, and every unknown token is checked against each.
pub const MAX_SESSION_KEYS: usize = 8;

/// The `[sessions]` table as serde reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSessions {
    pub keys: Option<Vec<RawSecret>>,
    pub max_age: Option<ConfigDuration>,
}

/// The checked `[sessions]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionsConfig {
    /// The session keys: the first signs, every one verifies. Empty means none was
    /// configured: the bridge then makes a random key at start, so its sessions survive
    /// neither a restart nor a move to another replica.
    pub keys: Vec<Secret>,
    /// How long a token stays valid after it was issued.
    pub max_age: Duration,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            keys: Vec::new(),
            max_age: DEFAULT_SESSION_MAX_AGE,
        }
    }
}

/// The advice every key error ends with.
const MAKE_A_KEY: &str = "make a key with `openssl rand -base64 48`, give every replica the same one (usually keys = [\"${MCP_BRIDGE_SESSION_KEY}\"]), and to rotate put the new key first and keep the old one second until max_age has passed";

/// Checks `[sessions]`.
pub(super) fn sessions(
    main: &SourceText,
    raw: RawSessions,
    lookup: Lookup<'_>,
) -> Result<SessionsConfig, ConfigError> {
    let at = |field: &str| FieldPath::root().key("sessions").key(field);
    let mut keys: Vec<Secret> = Vec::new();
    if let Some(written) = raw.keys {
        if written.is_empty() {
            return Err(main
                .error(&at("keys"), "the list of session keys is empty")
                .with_help(format!("remove `keys` to let the bridge make a random key at start (sessions then stay on one replica and end with a restart), or {MAKE_A_KEY}")));
        }
        if written.len() > MAX_SESSION_KEYS {
            return Err(main
                .error(
                    &at("keys"),
                    format!(
                        "{} session keys are listed; at most {MAX_SESSION_KEYS} are accepted",
                        written.len()
                    ),
                )
                .with_help("keep the key that signs and the ones still being rotated out"));
        }
        for (i, secret) in written.into_iter().enumerate() {
            let path = at("keys").index(i);
            let key = expand_at(main, &path, &secret.0, lookup)?;
            if key.len() < MIN_SESSION_KEY_BYTES {
                return Err(main
                    .error(
                        &path,
                        format!(
                            "the session key is {} bytes long; it must be at least {MIN_SESSION_KEY_BYTES}",
                            key.len()
                        ),
                    )
                    .with_help(MAKE_A_KEY));
            }
            if keys.iter().any(|known| known.expose() == key) {
                return Err(main
                    .error(&path, "this session key is listed twice")
                    .with_help("list each key once: the first signs, the others only verify"));
            }
            keys.push(Secret::new(key));
        }
    }
    let max_age = raw.max_age.map_or(DEFAULT_SESSION_MAX_AGE, Duration::from);
    if max_age < Duration::from_secs(1) {
        return Err(main
            .error(&at("max_age"), "must be at least one second")
            .with_help(format!(
                "write how long a session may last after initialize, such as \"{}\"",
                format_duration(DEFAULT_SESSION_MAX_AGE)
            )));
    }
    Ok(SessionsConfig { keys, max_age })
}
