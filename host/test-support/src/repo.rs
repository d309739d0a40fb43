//! The repository around the tests and benches: its root, its bash scripts, the plugins
//! built from `plugins/`, and quoting for the TOML configs they write.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

/// The repository root (this crate lives in `host/test-support/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs one of the project's bash scripts (relative to the repo root); panics if it fails,
/// since nothing that needs it can run without it.
pub fn run_script(script: &str) {
    let status = Command::new("bash")
        .arg(repo_root().join(script))
        .status()
        .unwrap_or_else(|error| panic!("run {script}: {error}"));
    assert!(status.success(), "{script} failed: {status}");
}

/// The built `.wasm` of an example plugin (`seed-ttl-table`) or a test-only one
/// (`fault-trap`), by package name. The `mcp-bridge-plugin-artifacts` crate's build script
/// builds every plugin under `plugins/` in one cargo invocation before this crate compiles,
/// so cargo rebuilds a plugin whenever its sources change.
pub fn plugin_wasm(package: &str) -> &'static str {
    let Some(artifact) = plugin_artifacts::named(package) else {
        panic!("no plugin package `{package}` under plugins/");
    };
    assert!(
        Path::new(artifact.path).is_file(),
        "{} was not built",
        artifact.path
    );
    artifact.path
}

/// Publishes a plugin the way operators are told to: copy to a hidden temporary name
/// in the directory, then rename it into place (one atomic step for the watcher).
pub fn publish_plugin(source: &Path, dir: &Path, file: &str) -> Result<()> {
    let temporary = dir.join(format!(".{file}.tmp"));
    std::fs::copy(source, &temporary)?;
    std::fs::rename(&temporary, dir.join(file))?;
    Ok(())
}

/// `value` as a TOML basic string (a JSON string is one). `$` is not escaped: a config that
/// names a command should double it, since the bridge expands `${VAR}` there.
pub fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A server's `command` (or argument) as a TOML string: quoted, with `$` doubled, since the
/// bridge expands `${VAR}` there and a path is meant literally.
pub fn toml_command(text: &str) -> String {
    toml_string(text).replace('$', "$$")
}
