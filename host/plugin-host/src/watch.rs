//! Watches the plugin directory and rescans it when a `.wasm` file appears, changes or
//! goes, after a short quiet period; also runs rescans asked for by the admin API.
//!
//! Publishing a plugin is an atomic rename into the directory (write `x.wasm.tmp` or
//! `.x.wasm`, then `mv` it to `x.wasm`): hidden and non-`.wasm` names are ignored, so a
//! half-written file is never loaded. A file written in place is debounced, and if it is
//! still incomplete when read it fails validation and the old version keeps serving
//! until the final write triggers another rescan.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a stream of changes can delay a rescan.
const MAX_DELAY: Duration = Duration::from_secs(1);

use notify::{RecursiveMode, Watcher};
use tokio::sync::oneshot;

use super::host::{PluginHost, RescanReport, is_plugin_file_name};

enum Command {
    Changed,
    Rescan(oneshot::Sender<RescanReport>),
    Stop,
}

/// Keeps the watch running; dropping it stops the watcher and its thread.
pub struct PluginWatcher {
    commands: mpsc::Sender<Command>,
    _watcher: notify::RecommendedWatcher,
    thread: Option<JoinHandle<()>>,
}

impl PluginWatcher {
    /// Watches `host`'s directory; a change is acted on once the directory has been
    /// quiet for `debounce`.
    pub fn start(host: Arc<PluginHost>, debounce: Duration) -> notify::Result<PluginWatcher> {
        let (commands, inbox) = mpsc::channel::<Command>();
        let events = commands.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match event {
                    // Reads (including the rescan's own) are not changes.
                    Ok(event) if event.kind.is_access() => false,
                    Ok(event) => event.paths.iter().any(|path| is_relevant(path)),
                    // An error (such as a queue overflow) may hide changes: rescan.
                    Err(_) => true,
                };
                if relevant {
                    let _ = events.send(Command::Changed);
                }
            })?;
        watcher.watch(host.dir(), RecursiveMode::NonRecursive)?;
        let thread = std::thread::Builder::new()
            .name("plugin-watch".into())
            .spawn(move || run(&host, &inbox, debounce))
            .map_err(|error| notify::Error::generic(&error.to_string()))?;
        Ok(PluginWatcher {
            commands,
            _watcher: watcher,
            thread: Some(thread),
        })
    }

    /// Rescans now, retrying files rejected before, and reports what changed.
    pub async fn rescan(&self) -> Option<RescanReport> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Rescan(reply)).ok()?;
        answer.await.ok()
    }
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn is_relevant(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(is_plugin_file_name)
}

fn run(host: &PluginHost, inbox: &mpsc::Receiver<Command>, debounce: Duration) {
    let mut waiting: Vec<oneshot::Sender<RescanReport>> = Vec::new();
    while let Ok(command) = inbox.recv() {
        let mut changed = false;
        match command {
            Command::Stop => return,
            Command::Changed => changed = true,
            Command::Rescan(reply) => waiting.push(reply),
        }
        // Wait for the directory to go quiet (but not forever: a directory that never
        // goes quiet is still rescanned every MAX_DELAY); requests that arrive meanwhile
        // share the one rescan.
        if changed {
            let started = Instant::now();
            while started.elapsed() < MAX_DELAY {
                match inbox.recv_timeout(debounce) {
                    Ok(Command::Changed) => {}
                    Ok(Command::Rescan(reply)) => waiting.push(reply),
                    Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) => break,
                }
            }
        }
        let report = host.rescan(!waiting.is_empty());
        for reply in waiting.drain(..) {
            let _ = reply.send(report.clone());
        }
    }
}
