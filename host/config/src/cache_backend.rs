//! Checks `[cache] backend` and the disk backend's `path`.

use std::path::Path;

use super::checked::{CACHE_BACKEND_DISK, CACHE_BACKEND_MEMORY, CacheBackend};
use super::error::{ConfigError, suggest};
use super::expand::Lookup;
use super::source::{FieldPath, SourceText};
use super::validate::expand_at;

/// The backend names, as the configuration writes them.
const BACKENDS: [&str; 2] = [CACHE_BACKEND_MEMORY, CACHE_BACKEND_DISK];

/// Checks `backend` and `path` together: the disk backend needs a file, and a `path` with
/// another backend would be silently ignored, so it is refused. A relative `path` is
/// resolved against `base_dir`, the config file's directory.
pub(super) fn cache_backend(
    main: &SourceText,
    base_dir: &Path,
    backend: Option<&str>,
    path: Option<&str>,
    lookup: Lookup<'_>,
) -> Result<CacheBackend, ConfigError> {
    let at = |field: &str| FieldPath::root().key("cache").key(field);
    let name = match backend.map(str::trim) {
        None => CACHE_BACKEND_MEMORY,
        Some(text) => match BACKENDS
            .into_iter()
            .find(|name| text.eq_ignore_ascii_case(name))
        {
            Some(name) => name,
            None => {
                let close = suggest(text, BACKENDS)
                    .map_or_else(String::new, |name| format!("did you mean \"{name}\"? "));
                return Err(main
                    .error(&at("backend"), format!("unknown cache backend `{text}`"))
                    .with_help(format!("{close}write \"memory\" (the bridge's own memory; a restart starts empty) or \"disk\" (memory plus a file, with `path`, that survives restarts)")));
            }
        },
    };
    if name == CACHE_BACKEND_MEMORY {
        if path.is_some() {
            return Err(main
                .error(
                    &at("path"),
                    "`path` is set but the cache backend is \"memory\", which keeps no file",
                )
                .with_help("write backend = \"disk\" to keep the cache in this file across restarts, or remove `path`"));
        }
        return Ok(CacheBackend::Memory);
    }
    let Some(written) = path else {
        return Err(main
            .error(&at("backend"), "the disk cache backend needs a `path`")
            .with_help("write path = \"cache.redb\" (a file the bridge creates; relative paths start at the config file's directory)"));
    };
    let value = expand_at(main, &at("path"), written, lookup)?;
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(main
            .error(
                &at("path"),
                "the disk cache's path is empty or contains control characters",
            )
            .with_help("write the file the cache is kept in, such as \"cache.redb\""));
    }
    if value.ends_with('/') {
        return Err(main
            .error(
                &at("path"),
                format!("the disk cache's path `{value}` names a directory"),
            )
            .with_help("write a file name in that directory, such as \"cache.redb\""));
    }
    Ok(CacheBackend::Disk {
        path: base_dir.join(value),
    })
}
