//! What every harness bench (bridge, plugins, lab, seed_tables) does the same way: run its
//! async body on one thread and turn the outcome into an exit code, and write its JSON
//! report under `<target>/bench-results/`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde_json::Value;

/// Runs `body` on a current-thread runtime (so the load generator takes at most one core)
/// and reports an error on stderr.
pub fn run_on_one_thread(body: impl Future<Output = Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `$CARGO_TARGET_DIR/bench-results/FILE`, else the same under the `target` directory that
/// holds `bridge_exe` (`<target>/<profile>/mcp-bridge`).
pub fn results_path(bridge_exe: &Path, file: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            bridge_exe
                .parent()
                .and_then(Path::parent)
                .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        });
    target.join("bench-results").join(file)
}

/// Writes `document` as pretty JSON, creating the directory.
pub fn write_json(path: &Path, document: &Value) -> Result<()> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let mut text = serde_json::to_string_pretty(document).context("serialize the report")?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The options every harness bench takes, flattened into its own clap parser: which mode it
/// runs in. Without `--bench` on the command line (as under `cargo test --bench NAME`) a
/// bench runs its smoke mode; `cargo bench` passes `--bench` and gets the full mode.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchMode {
    /// Run the quick smoke mode, which only proves the harness works.
    #[arg(long, env = "BENCH_SMOKE")]
    pub smoke: bool,
    /// Passed by `cargo bench`: run the full mode unless --smoke says otherwise.
    #[arg(long, hide = true)]
    pub bench: bool,
    /// Test runners list a binary's cases with --list; a harness bench has none, so it
    /// lists nothing and runs nothing.
    #[arg(long, hide = true)]
    pub list: bool,
}

impl BenchMode {
    /// Whether this run is the smoke mode.
    pub fn smoke(&self) -> bool {
        self.smoke || !self.bench
    }

    /// "smoke" or "full", for the report.
    pub fn name(&self) -> &'static str {
        if self.smoke() { "smoke" } else { "full" }
    }
}

/// The bridge's one duration grammar ("5" is five seconds, "500ms", "1.5s", "1h 30m"), so a
/// bench flag means what the same text means in a config file.
pub use mcp_bridge::policy::parse_duration;
