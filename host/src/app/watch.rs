//! Watching the configuration file (`serve --config` hot reload, applied by `reload.rs`): each valid new version is handed to a callback, an invalid one is logged and skipped.
//!
//! The watcher observes the file's directory rather than the file, because editors and
//! deployment tools replace a file by writing a temporary one and renaming it over the original,
//! which a watch on the old file would not follow. When the path is a symbolic link, the
//! directory of its target is watched too, so that edits made through the target are seen.
//! Events are debounced: a reload starts once the directory has been quiet for
//! [`WATCH_DEBOUNCE`], or at the latest [`WATCH_MAX_DELAY`] after the first event.
//!
//! A reload reads the file and does nothing when its bytes are the ones last seen, so activity
//! on other files of the directory costs one read. Otherwise the file is loaded with
//! [`load_file`](mcp_bridge::config::load_file): a valid configuration that differs from the last one
//! delivered is passed to the callback, and an invalid one is logged with `tracing::warn!` (the
//! full error, with file, line and field) while the previous configuration stays in force.
//! Files named in `include` are not watched; a change to one is picked up with the next change
//! to the main file.
//!
//! Debouncing and reloading run on one plain thread that this module starts, and notify's own
//! callback only sends on a std channel, so neither needs a tokio runtime: the callback passed to
//! [`watch`] runs on that thread and should hand the configuration over (to a channel, an
//! `ArcSwap`, a lock) rather than block for long.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use mcp_bridge::config::{self, BridgeConfig, ConfigError};

/// How long the directory must stay quiet after an event before the file is reloaded, so that
/// an editor's several writes for one save cause one reload.
pub(super) const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

/// The longest a reload waits for the directory to become quiet, so that a directory with
/// steady activity on other files still gets its changes applied.
pub(super) const WATCH_MAX_DELAY: Duration = Duration::from_secs(2);

/// Watches a configuration file until it is dropped; see [`watch`].
///
/// Dropping it stops the watch. A reload that is already running when it is dropped may still
/// call the callback once; a reload that is only waiting out the debounce is abandoned.
pub(super) struct ConfigWatcher {
    path: PathBuf,
    _watcher: RecommendedWatcher,
}

impl fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Starts watching the configuration file at `path`, calling `on_change` with each new valid
/// version of it.
///
/// The file as it is when this is called is the baseline: a version is delivered when the
/// file's bytes differ from the last ones read (the baseline first) and its configuration
/// differs from the last one delivered (a change to comments alone delivers nothing). The
/// baseline is read before this returns, so every write after it is seen. The file need not be valid,
/// or even exist, when watching starts, but its directory must.
///
/// Fails when the path has no file name, or when the directory cannot be watched (it does not
/// exist, or the system's limit on watches is reached).
// `ConfigError` is large (file, line, field, help), but it is built once, when watching
// starts, never on a request path; boxing it would only change the signature.
#[allow(clippy::result_large_err)]
pub(super) fn watch(
    path: PathBuf,
    on_change: impl Fn(BridgeConfig) + Send + Sync + 'static,
    on_invalid: impl Fn(&ConfigError) + Send + Sync + 'static,
) -> Result<ConfigWatcher, ConfigError> {
    let name = path.display().to_string();
    if path.file_name().is_none() {
        return Err(
            ConfigError::new(&name, "cannot watch this path: it does not name a file").with_help(
                "give the path of the configuration file itself, such as ./mcp-bridge.toml",
            ),
        );
    }
    let mut directories = vec![directory_of(&path)];
    if let Ok(target) = std::fs::canonicalize(&path) {
        let target_directory = directory_of(&target);
        let same = std::fs::canonicalize(&directories[0])
            .is_ok_and(|directory| directory == target_directory);
        if !same {
            directories.push(target_directory);
        }
    }

    let (events, received) = mpsc::channel::<()>();
    let handler = move |event: notify::Result<notify::Event>| match event {
        // Reading the file (ours included) is not a change.
        Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
        Ok(_) => {
            // The reload thread has stopped only when the watcher is being dropped.
            let _ = events.send(());
        }
        Err(error) => {
            tracing::warn!(%error, "watching the configuration file reported an error; reloading it to be safe");
            let _ = events.send(());
        }
    };
    // The running configuration came from the file as it is now: a first event from
    // something else in the directory must not re-apply it. Read here, before this returns,
    // not on the reload thread: a change written right after `watch` returns must differ
    // from the baseline, however late the thread starts.
    let baseline = std::fs::read(&path).ok();
    let reload_path = path.clone();
    std::thread::Builder::new()
        .name("config-watch".to_owned())
        .spawn(move || {
            reload_loop(
                &reload_path,
                &received,
                &on_change,
                &on_invalid,
                baseline,
            )
        })
        .map_err(|e| {
            ConfigError::new(&name, format!("cannot start the configuration watcher: {e}"))
                .with_help("the system is out of threads or memory; run without watching the configuration, or free resources")
        })?;

    let watch_error = |directory: &Path, e: notify::Error| {
        ConfigError::new(
            &name,
            format!(
                "cannot watch the directory `{}` for changes: {e}",
                directory.display()
            ),
        )
        .with_help("check that the directory exists and is readable; on Linux, a full inotify watch limit is raised with sysctl fs.inotify.max_user_watches")
    };
    let mut watcher =
        notify::recommended_watcher(handler).map_err(|e| watch_error(&directories[0], e))?;
    for directory in &directories {
        watcher
            .watch(directory, RecursiveMode::NonRecursive)
            .map_err(|e| watch_error(directory, e))?;
    }
    Ok(ConfigWatcher {
        path,
        _watcher: watcher,
    })
}

/// The directory holding `path`; a bare file name is in the current directory.
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Waits for events, debounces them and reloads, until the watcher is dropped (which closes the
/// channel).
fn reload_loop(
    path: &Path,
    events: &Receiver<()>,
    on_change: &(dyn Fn(BridgeConfig) + Sync),
    on_invalid: &(dyn Fn(&ConfigError) + Sync),
    baseline: Option<Vec<u8>>,
) {
    let mut last_bytes = baseline;
    let mut last_config: Option<BridgeConfig> = None;
    while events.recv().is_ok() {
        let deadline = Instant::now() + WATCH_MAX_DELAY;
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(WATCH_DEBOUNCE);
            match events.recv_timeout(wait) {
                Ok(()) if Instant::now() < deadline => {}
                Ok(()) | Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the changed configuration file; keeping the current configuration");
                // The next version that can be read is new, whatever its content.
                last_bytes = None;
                continue;
            }
        };
        if last_bytes.as_ref() == Some(&bytes) {
            continue;
        }
        last_bytes = Some(bytes);
        match config::load_file(path) {
            Ok(config) if last_config.as_ref() == Some(&config) => {
                tracing::debug!(path = %path.display(), "the configuration file changed without changing the configuration");
            }
            Ok(config) => {
                tracing::info!(path = %path.display(), "the configuration file changed; applying it");
                last_config = Some(config.clone());
                if catch_unwind(AssertUnwindSafe(|| on_change(config))).is_err() {
                    tracing::error!(path = %path.display(), "applying the reloaded configuration panicked; watching goes on");
                }
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), "the configuration file changed but is not valid; keeping the current configuration:\n{error}");
                on_invalid(&error);
                // Saving the last applied configuration again must apply it again: that is
                // what clears the rejection the invalid version left in the admin view.
                last_config = None;
            }
        }
    }
}

/// Tests of the configuration watcher against real files in a temporary directory.
#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::mpsc::{self, Receiver};
    use std::time::Duration;

    use super::*;

    /// How long a test waits for a reload that should happen: far more than the debounce, so a
    /// slow machine does not fail the test.
    const EXPECTED_WITHIN: Duration = Duration::from_secs(10);

    /// How long a test waits to be sure a reload does not happen: the debounce plus a margin.
    const NOTHING_WITHIN: Duration = Duration::from_millis(1500);

    fn config_text(max_entries: u64) -> String {
        format!("[servers.a]\ncommand = \"x\"\n\n[cache]\nmax_entries = {max_entries}\n")
    }

    /// Starts watching `path`, forwarding each delivered configuration to the first returned
    /// channel and each refused version's error to the second.
    fn start(path: &Path) -> (ConfigWatcher, Receiver<BridgeConfig>, Receiver<String>) {
        let (sender, receiver) = mpsc::channel();
        let (invalid_sender, invalid) = mpsc::channel();
        let watcher = watch(
            path.to_path_buf(),
            move |config| {
                // The test may have finished and dropped the receiver; nothing is lost then.
                let _ = sender.send(config);
            },
            move |error| {
                let _ = invalid_sender.send(error.to_string());
            },
        );
        match watcher {
            Ok(watcher) => (watcher, receiver, invalid),
            Err(e) => panic!("cannot watch {}: {e}", path.display()),
        }
    }

    fn next(receiver: &Receiver<BridgeConfig>) -> BridgeConfig {
        match receiver.recv_timeout(EXPECTED_WITHIN) {
            Ok(config) => config,
            Err(e) => panic!("no configuration was delivered within {EXPECTED_WITHIN:?}: {e}"),
        }
    }

    #[test]
    fn rewrites_are_delivered_and_invalid_ones_are_not() {
        let dir = temp_dir();
        let path = write(dir.path(), "bridge.toml", &config_text(1));
        let (watcher, receiver, invalid) = start(&path);
        assert_eq!(watcher.path, path);

        write(dir.path(), "bridge.toml", &config_text(2));
        let config = next(&receiver);
        assert_eq!(config.cache.max_entries, 2);
        assert_eq!(config.source, path.display().to_string());

        // An invalid version is logged and skipped: nothing is delivered, and its error is
        // reported, naming the field.
        write(dir.path(), "bridge.toml", &config_text(0));
        assert!(receiver.recv_timeout(NOTHING_WITHIN).is_err());
        match invalid.recv_timeout(EXPECTED_WITHIN) {
            Ok(error) => assert!(error.contains("max_entries"), "{error}"),
            Err(e) => panic!("the invalid version was not reported: {e}"),
        }

        // Editors save by writing a temporary file and renaming it over the original.
        let temporary = write(dir.path(), ".bridge.toml.swp", &config_text(3));
        if let Err(e) = std::fs::rename(&temporary, &path) {
            panic!("cannot rename: {e}");
        }
        assert_eq!(next(&receiver).cache.max_entries, 3);

        // A change that leaves the configuration as it was (a comment) delivers nothing, and
        // neither does activity on other files in the directory.
        write(
            dir.path(),
            "bridge.toml",
            &format!("# a comment\n{}", config_text(3)),
        );
        write(dir.path(), "other.txt", "unrelated");
        assert!(receiver.recv_timeout(NOTHING_WITHIN).is_err());

        // After the watcher is dropped, changes are no longer delivered.
        drop(watcher);
        write(dir.path(), "bridge.toml", &config_text(4));
        assert!(receiver.recv_timeout(NOTHING_WITHIN).is_err());
    }

    #[test]
    fn watching_needs_an_existing_directory() {
        let dir = temp_dir();
        let missing = dir.path().join("no-such-directory").join("bridge.toml");
        let error = watch(missing.clone(), |_| {}, |_| {}).err();
        let error = error.unwrap_or_else(|| ConfigError::new("", ""));
        assert_eq!(error.file, missing.display().to_string());
        assert!(error.message.contains("cannot watch"), "{error}");
        assert!(error.help.is_some(), "{error}");

        let error = watch(dir.path().join(".."), |_| {}, |_| {}).err();
        assert!(
            error.is_some_and(|e| e.message.contains("does not name a file")),
            "a path without a file name must be refused"
        );
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            panic!("cannot write {}: {e}", path.display());
        }
        path
    }

    fn temp_dir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        }
    }
}
