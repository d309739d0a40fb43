//! Lab errors: why a trace, a workload preset, a policy or a report could not be used.

use std::path::PathBuf;

use mcp_bridge_trace::TraceError;

/// What went wrong in the lab (`bench policies`, `bench load`, `bench workload`). Each names
/// the file and, for input files, the line, so the user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Trace {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Workload { path: PathBuf, message: String },
    #[error("policy {name}: {message}")]
    Policy { name: String, message: String },
    #[error("{0}")]
    Usage(String),
    /// `--fail-if-worse` found policies worse than the baseline (each line says how).
    #[error("worse than the baseline:\n{0}")]
    Worse(String),
    #[error("load target {target}: {message}")]
    Load { target: String, message: String },
    /// A trace file could not be read or written, or recording could not start; the trace
    /// layer's own error, with its message unchanged.
    #[error(transparent)]
    TraceFile(#[from] TraceError),
}

impl LabError {
    /// Whether trying again with the same input could succeed (only I/O and load
    /// failures can: a bad file stays bad).
    pub fn retryable(&self) -> bool {
        match self {
            LabError::TraceFile(error) => error.retryable(),
            _ => matches!(
                self,
                LabError::Read { .. } | LabError::Write { .. } | LabError::Load { .. }
            ),
        }
    }
}
