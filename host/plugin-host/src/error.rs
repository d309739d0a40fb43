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
        /// `init`, or the smoke call that faulted, with its server and tool when the
        /// call asked about a tool of a server's catalogue.
        stage: String,
        /// Boxed: a fault's parts would make every `Result<_, PluginError>` large.
        fault: Box<Fault>,
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

    /// The binding that could not start, for an error about one binding.
    pub fn binding(&self) -> Option<&str> {
        match self {
            PluginError::InitRejected { binding, .. } | PluginError::Smoke { binding, .. } => {
                Some(binding)
            }
            _ => None,
        }
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
///
/// Its parts are kept apart so each can be shown where it helps: the guest's panic
/// message (what the author wrote) and a one-line summary go into the one log line a
/// fault makes and into `/admin/plugins`; the wasm backtrace, many lines long, is logged
/// at debug level only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// The guest's panic message (`panicked at src/lib.rs:12:9: …`), when the fault is
    /// a panic the SDK reported.
    pub panic: Option<String>,
    /// The host's one-line account: the trap (`wasm trap: interrupt`), the failed memory
    /// growth, the unknown import, or why an instance could not be made.
    pub summary: String,
    /// The wasm backtrace of a trap, at most [`MAX_BACKTRACE`] bytes.
    pub backtrace: Option<String>,
}

/// A backtrace longer than this is cut (a deep recursion can have thousands of frames).
pub const MAX_BACKTRACE: usize = 4096;

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

/// One line: the kind, then the panic message when there is one, else the summary.
impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.headline())
    }
}

impl std::error::Error for Fault {}

impl Fault {
    /// A fault with no panic or backtrace: the host's own account of it.
    pub fn new(kind: FaultKind, summary: impl Into<String>) -> Fault {
        Fault {
            kind,
            panic: None,
            summary: first_line(&summary.into()).to_owned(),
            backtrace: None,
        }
    }

    /// Classifies a wasmtime error from a call; `panic` is the panic line the plugin
    /// wrote during the call (the SDK's panic hook writes it), which names the cause of
    /// a trap better than the trap does.
    pub fn from_call(error: &wasmtime::Error, panic: Option<String>) -> Fault {
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
        let backtrace = error
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|backtrace| cap(backtrace.to_string(), MAX_BACKTRACE));
        let root_cause = error.root_cause().to_string();
        let summary = outside_the_sandbox(&root_cause).unwrap_or(root_cause);
        Fault::from_parts(kind, panic, &summary, backtrace)
    }

    /// A fault from its parts: `summary` is cut to its first line, `panic` kept only
    /// when it is a panic line.
    pub fn from_parts(
        kind: FaultKind,
        panic: Option<String>,
        summary: &str,
        backtrace: Option<String>,
    ) -> Fault {
        Fault {
            kind,
            panic: panic.filter(|line| is_panic_line(line)),
            summary: first_line(summary).to_owned(),
            backtrace,
        }
    }

    /// What to show first: the guest's panic message, else the host's summary.
    pub fn headline(&self) -> &str {
        self.panic.as_deref().unwrap_or(&self.summary)
    }
}

/// What a call into an import the sandbox does not provide means, and what to do: the
/// host links every such import as a trap (see `sandbox::linker_for`), whose message
/// (``unknown import: `wasi:filesystem/preopens@0.2.6#get-directories` has not been
/// defined``) names the function but not why it is missing; an import that cannot even
/// be linked is reported as ``component imports instance `…`, but …``. `None` for
/// anything else.
pub(crate) fn outside_the_sandbox(root_cause: &str) -> Option<String> {
    let import = root_cause
        .strip_prefix("unknown import: `")
        .or_else(|| root_cause.strip_prefix("component imports instance `"))?
        .split('`')
        .next()?;
    let verb = if root_cause.starts_with("unknown import") {
        "called"
    } else {
        "imports"
    };
    let interface = import.split(['@', '#']).next().unwrap_or(import);
    let usual_cause = match interface.split('/').next().unwrap_or(interface) {
        "wasi:filesystem" => "`std::fs` or a crate that reads or writes files",
        "wasi:sockets" => "`std::net` or a crate that opens connections",
        "wasi:http" => "an HTTP client crate",
        "wasi:cli" if interface == "wasi:cli/exit" => "`std::process::exit` or `abort`",
        "wasi:cli" if interface == "wasi:cli/stdin" => "reading standard input",
        _ => "a crate that reaches outside the plugin",
    };
    Some(format!(
        "the plugin {verb} `{import}`, which the sandbox does not provide (usually {usual_cause}): \
         a plugin gets no files, sockets, environment, clock or process control; pass what it \
         needs in the binding's `config`, and write log lines with the SDK's `log` functions \
         (stdout and stderr become log lines too)"
    ))
}

/// Whether a plugin's error line is the SDK's report of a panic (`panicked at FILE:LINE:COL:
/// …`, or `panicked: …` without a location).
pub fn is_panic_line(line: &str) -> bool {
    line.starts_with("panicked at ") || line.starts_with("panicked: ")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim_end()
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn cap(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n  … (cut)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panic_comes_first_and_the_backtrace_apart() {
        let backtrace = "error while executing at wasm backtrace:\n    0: 0x1a2b - fault_trap.wasm!decide\n    1: 0x3c4d - fault_trap.wasm!glue".to_owned();
        let fault = Fault::from_parts(
            FaultKind::Trap,
            Some("panicked at src/lib.rs:25:13: deliberate trap".to_owned()),
            "wasm trap: wasm `unreachable` instruction executed\nmore",
            Some(backtrace.clone()),
        );
        let line = fault.to_string();
        assert_eq!(
            line,
            "trapped: panicked at src/lib.rs:25:13: deliberate trap"
        );
        assert!(
            !line.contains('\n') && !line.contains("backtrace"),
            "{line}"
        );
        assert_eq!(
            fault.summary,
            "wasm trap: wasm `unreachable` instruction executed"
        );
        assert_eq!(fault.backtrace, Some(backtrace));
        // Without a panic line, the summary leads; a non-panic error line is no panic.
        let deadline = Fault::from_parts(
            FaultKind::Deadline,
            Some("some other error line".to_owned()),
            "wasm trap: interrupt",
            None,
        );
        assert_eq!(deadline.panic, None);
        assert_eq!(
            deadline.to_string(),
            "ran past its decision timeout: wasm trap: interrupt"
        );
        assert!(is_panic_line("panicked: no location"));
        assert!(!is_panic_line("a panicked at line"));
    }

    #[test]
    fn a_call_outside_the_sandbox_says_what_it_means_and_what_to_do() {
        let hint = outside_the_sandbox(
            "unknown import: `wasi:filesystem/preopens@0.2.6#get-directories` has not been defined",
        )
        .expect("an unknown import is explained");
        assert!(
            hint.starts_with("the plugin called `wasi:filesystem/preopens@0.2.6#get-directories`"),
            "{hint}"
        );
        assert!(
            hint.contains("`std::fs`") && hint.contains("`config`"),
            "{hint}"
        );
        let exit =
            outside_the_sandbox("unknown import: `wasi:cli/exit@0.2.0#exit` has not been defined")
                .expect("exit is explained");
        assert!(exit.contains("`std::process::exit`"), "{exit}");
        assert_eq!(outside_the_sandbox("wasm trap: interrupt"), None);
        // An import that cannot be linked at all says the same, as an import.
        let link = outside_the_sandbox(
            "component imports instance `wasi:sockets/tcp@0.2.6`, but a matching implementation was not found in the linker",
        )
        .expect("a link failure is explained");
        assert!(
            link.starts_with("the plugin imports `wasi:sockets/tcp@0.2.6`")
                && link.contains("`std::net`"),
            "{link}"
        );
    }

    #[test]
    fn a_long_backtrace_is_cut() {
        let long = "é".repeat(MAX_BACKTRACE);
        let cut = cap(long, MAX_BACKTRACE);
        assert!(cut.len() <= MAX_BACKTRACE + "\n  … (cut)".len());
        assert!(cut.ends_with("(cut)"));
        assert_eq!(cap("short".to_owned(), MAX_BACKTRACE), "short");
    }
}
