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
    #[error("load target {target}: {message}")]
    Load { target: String, message: String },
}

impl LabError {
    /// Whether trying again with the same input could succeed (only I/O and load
    /// failures can: a bad file stays bad).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            LabError::Read { .. } | LabError::Write { .. } | LabError::Load { .. }
        )
    }
}

/// A trace file's error, in the lab's terms: the same message, and retryable exactly when
/// the lab's own error of that kind is.
impl From<TraceError> for LabError {
    fn from(error: TraceError) -> Self {
        match error {
            TraceError::Read { path, source } => LabError::Read { path, source },
            TraceError::Write { path, source } => LabError::Write { path, source },
            TraceError::Line {
                path,
                line,
                message,
            } => LabError::Trace {
                path,
                line,
                message,
            },
            TraceError::Options(message) => LabError::Usage(message),
        }
    }
}
