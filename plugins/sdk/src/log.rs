//! Lines in the bridge's log, attributed to the plugin. The host rate-limits them (a
//! few dozen a second) and cuts long lines, so log what helps an operator, not every call.
//!
//! ```no_run
//! use mcp_bridge_plugin_sdk::log;
//! log::info("loaded 12 TTL rows");
//! log::warn(format!("unknown verb in `{}`", "frob_task"));
//! ```

/// How important a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes one line at `level`.
pub fn write(level: Level, message: impl AsRef<str>) {
    imp::write(level, message.as_ref());
}

/// Writes a debug line.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message);
}

/// Writes an info line.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message);
}

/// Writes a warning.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message);
}

/// Writes an error line. The host remembers the last one and reports it with a trap,
/// which is how a panic's message reaches the bridge's log.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message);
}

#[cfg(target_family = "wasm")]
mod imp {
    use super::Level;
    use crate::bindings::mcp_bridge::policy::log as wit;

    pub(super) fn write(level: Level, message: &str) {
        let level = match level {
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::write(level, message);
    }
}

/// Outside WebAssembly (a plugin's unit tests on the build machine) there is no host to
/// import from, so lines go to stderr.
#[cfg(not(target_family = "wasm"))]
mod imp {
    use super::Level;

    pub(super) fn write(level: Level, message: &str) {
        eprintln!("[plugin {level:?}] {message}");
    }
}
