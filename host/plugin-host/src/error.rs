//! Plugin errors: why a plugin version was rejected, and why one call into it faulted.

use std::path::PathBuf;

/// Why a plugin file could not be loaded or a binding of it could not start. The old
/// version (if any) keeps serving; none of these is retryable with the same file.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "plugin file {file} is a core WebAssembly module, not a component; build it with `cargo build --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule { file: String },
    #[error("plugin file {file} is not a valid WebAssembly component: {message}")]
    Compile { file: String, message: String },
    #[error("plugin {file} does not link against the host: {message}")]
    Link { file: String, message: String },
    #[error(
        "plugin {file} exports none of cache-policy, ttl-table or invalidation-rules (of mcp-bridge:policy@0.3.0, @0.2.0 or @0.1.0); it exports: {exports}"
    )]
    NoPolicyExports { file: String, exports: String },
    #[error(
        "plugin {file} is built against {found}, which this bridge does not serve (it serves mcp-bridge:policy@0.3.0, @0.2.0 and @0.1.0); rebuild it against a version the bridge serves"
    )]
    UnsupportedContract { file: String, found: String },
    #[error(
        "plugin {file} exports none of cache-policy, ttl-table or invalidation-rules as a capability: its init reported none; an SDK plugin implements at least one of CachePolicy, TtlTable, InvalidationRules"
    )]
    NoCapabilities { file: String },
    #[error(
        "plugin {file}: init reported the capabilities [{now}], an earlier instance [{first}]; a plugin's capabilities (purity included) must not depend on its config"
    )]
    CapabilitiesChanged {
        file: String,
        first: String,
        now: String,
    },
    #[error("plugin {file}: export `{interface}` does not match the WIT contract: {message}")]
    Contract {
        file: String,
        interface: &'static str,
        message: String,
    },
    #[error("plugin binding `{binding}` ({file}): init rejected its config: {message}")]
    InitRejected {
        binding: String,
        file: String,
        message: String,
    },
    #[error("plugin binding `{binding}` ({file}): {stage} failed: {fault}")]
    Smoke {
        binding: String,
        file: String,
        stage: &'static str,
        fault: Fault,
    },
    #[error("the plugin engine could not start: {message}")]
    Engine { message: String },
    #[error("cannot watch the plugin directory {dir}: {message}")]
    Watch { dir: PathBuf, message: String },
}

impl PluginError {
    /// Whether trying again with the same file might succeed: only a read can (the
    /// file may be mid-write); every other failure is in the file's content.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PluginError::Read { .. })
    }

    /// A short label for metrics and the admin API.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Read { .. } => "read",
            PluginError::CoreModule { .. } | PluginError::Compile { .. } => "compile",
            PluginError::Link { .. } => "link",
            PluginError::NoPolicyExports { .. }
            | PluginError::UnsupportedContract { .. }
            | PluginError::NoCapabilities { .. }
            | PluginError::CapabilitiesChanged { .. }
            | PluginError::Contract { .. } => "contract",
            PluginError::InitRejected { .. } => "init",
            PluginError::Smoke { .. } => "smoke",
            PluginError::Engine { .. } => "engine",
            PluginError::Watch { .. } => "watch",
        }
    }
}

/// What went wrong in one call into a plugin instance. The call falls back to the safe
/// default and the instance is dropped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The plugin trapped (a panic, `unreachable`, an out-of-bounds access).
    Trap,
    /// The call ran past `decision_timeout`.
    Deadline,
    /// The instance tried to grow its memory past `max_memory`.
    OutOfMemory,
    /// A new instance could not be created or initialised.
    Instantiate,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Trap,
        FaultKind::Deadline,
        FaultKind::OutOfMemory,
        FaultKind::Instantiate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Deadline => "deadline",
            FaultKind::OutOfMemory => "out_of_memory",
            FaultKind::Instantiate => "instantiate",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FaultKind::Trap => "trapped",
            FaultKind::Deadline => "ran past its decision timeout",
            FaultKind::OutOfMemory => "ran out of memory",
            FaultKind::Instantiate => "could not be instantiated",
        })
    }
}

impl Fault {
    /// Classifies a wasmtime error from a call; `said` is the last error line the
    /// plugin logged (the SDK logs panic messages), which names the cause of a trap.
    pub fn from_call(error: &wasmtime::Error, said: Option<String>) -> Fault {
        // The store limiter reports a refused memory growth as a trap whose message
        // says so ("forcing trap when growing memory to N bytes").
        let text = format!("{error:?}");
        let kind = if text.contains("growing memory") || text.contains("memory growth failure") {
            FaultKind::OutOfMemory
        } else if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            FaultKind::Deadline
        } else {
            FaultKind::Trap
        };
        let mut message = format!("{error:#}");
        if let Some(said) = said {
            message = format!("{message}; the plugin said: {said}");
        }
        Fault { kind, message }
    }
}
