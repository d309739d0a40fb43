//! Tests of the configuration watcher against real files in a temporary directory.

use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use super::super::*;
use super::{temp_dir, write};

/// How long a test waits for a reload that should happen: far more than the debounce, so a
/// slow machine does not fail the test.
const EXPECTED_WITHIN: Duration = Duration::from_secs(10);

/// How long a test waits to be sure a reload does not happen: the debounce plus a margin.
const NOTHING_WITHIN: Duration = Duration::from_millis(1500);

fn config_text(max_entries: u64) -> String {
    format!("[servers.a]\ncommand = \"x\"\n\n[cache]\nmax_entries = {max_entries}\n")
}

/// Starts watching `path`, forwarding each delivered configuration to the returned channel.
fn start(path: &Path) -> (ConfigWatcher, Receiver<BridgeConfig>) {
    let (sender, receiver) = mpsc::channel();
    let watcher = watch(path.to_path_buf(), move |config| {
        // The test may have finished and dropped the receiver; nothing is lost then.
        let _ = sender.send(config);
    });
    match watcher {
        Ok(watcher) => (watcher, receiver),
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
    let (watcher, receiver) = start(&path);
    assert_eq!(watcher.path(), path);

    write(dir.path(), "bridge.toml", &config_text(2));
    let config = next(&receiver);
    assert_eq!(config.cache.max_entries, 2);
    assert_eq!(config.source, path.display().to_string());

    // An invalid version is logged and skipped: nothing is delivered.
    write(dir.path(), "bridge.toml", &config_text(0));
    assert!(receiver.recv_timeout(NOTHING_WITHIN).is_err());

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
    let error = watch(missing.clone(), |_| {}).err();
    let error = error.unwrap_or_else(|| ConfigError::new("", ""));
    assert_eq!(error.file, missing.display().to_string());
    assert!(error.message.contains("cannot watch"), "{error}");
    assert!(error.help.is_some(), "{error}");

    let error = watch(dir.path().join(".."), |_| {}).err();
    assert!(
        error.is_some_and(|e| e.message.contains("does not name a file")),
        "a path without a file name must be refused"
    );
}
