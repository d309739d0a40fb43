//! Configuration: parsing, validation and the checked types the rest of the host runs on.
//!
//! A configuration is either the bridge's own TOML file (see `config/mcp-bridge.example.toml`
//! for every key, its meaning and its default) or an `mcpServers` JSON file as written by Claude
//! Desktop, `.mcp.json` or VS Code, which gets every default. The format is detected from the
//! content, not the file name: text whose first non-blank character is `{` is JSON.
//!
//! Loading happens in two steps. Serde reads the text into raw structs whose fields are all
//! optional and which reject unknown keys (`raw`, `mcp_servers`); validation then applies
//! defaults, expands `${VAR}` references and checks ranges, producing the checked types
//! re-exported here (`checked`). Every failure is a [`ConfigError`] naming the file, line, column and dotted
//! field, with advice on the fix.
//!
//! Durations and sizes are written in the policy crate's grammar
//! ([`mcp_bridge_policy::units`]), the one every part of the bridge reads; the TTL table and
//! the invalidation rules are the policy crate's types, and [`BridgeConfig::builtin_policy`]
//! builds the built-in policy from them.
//!
//! Following the file after startup (hot reload) is the binary's job (`host/src/app/watch.rs`):
//! this crate only reads, checks and describes configurations, and starts no thread.

// `ConfigError`'s public fields (fixed by the API the rest of the host codes against) make it
// 128 bytes, which trips clippy's `result_large_err`. Errors here are built once, at startup or
// on a reload, never on a request path, so the size of the `Err` variant costs nothing that
// matters, while boxing it would change the public signatures.
#![allow(clippy::result_large_err)]

mod auth;
mod cache_backend;
mod checked;
mod display;
mod error;
mod expand;
mod isolation;
mod lab;
mod load;
mod mcp_servers;
mod plugins;
mod raw;
mod secret;
mod sessions;
mod shared;
mod source;
mod telemetry;
mod validate;
mod validate_auth;
mod validate_isolation;
mod validate_shared;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use auth::*;
pub use checked::*;
pub use error::ConfigError;
pub use expand::EXE_VARIABLE;
pub use isolation::{
    CALLER_META_KEY, DEFAULT_IDENTITY_META, DEFAULT_ISOLATED_MAX_CONNECTIONS,
    DEFAULT_ISOLATED_MAX_TOTAL_PROCESSES, DEFAULT_ISOLATION, DEFAULT_MAX_BACKEND_PROCESSES,
    EnvPiece, EnvTemplate, Isolation, MissingSecret, PrincipalSecrets, ProcessesConfig,
};
pub use lab::*;
pub use secret::{REDACTED, Secret};
pub use sessions::{
    DEFAULT_SESSION_MAX_AGE, MAX_SESSION_KEYS, MIN_SESSION_KEY_BYTES, SessionsConfig,
};
pub use shared::*;
pub use telemetry::*;
pub use validate_auth::is_loopback_authority;

/// The embedded default configuration: the bridge's own demo server on 127.0.0.1:8080.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../config/default.toml");

/// The name errors and [`BridgeConfig::source`] use for the embedded default.
pub const EMBEDDED_DEFAULT_ORIGIN: &str = "<embedded default>";

/// Reads the file at `path`, detects its format from its content, parses and validates it.
///
/// Relative `include` paths and relative `cwd` values are resolved against the file's
/// directory; `${VAR}` references are expanded from the process environment.
pub fn load_file(path: &Path) -> Result<BridgeConfig, ConfigError> {
    load::load_path(path, &expand::process_environment)
}

/// Parses and validates configuration text. `origin` names the text in errors; relative paths
/// in it are resolved against `origin`'s directory (the current directory when it has none).
pub fn load_str(text: &str, origin: &str) -> Result<BridgeConfig, ConfigError> {
    load::load_text(
        text,
        origin,
        Path::new(origin).parent(),
        &expand::process_environment,
    )
}

/// Loads the embedded default configuration, [`DEFAULT_CONFIG_TOML`].
pub fn embedded_default() -> Result<BridgeConfig, ConfigError> {
    load_str(DEFAULT_CONFIG_TOML, EMBEDDED_DEFAULT_ORIGIN)
}
