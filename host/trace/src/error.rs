//! Trace errors: why a trace file could not be read or written, or recording started.

use std::path::PathBuf;

/// What went wrong with a trace file. Each names the file and, for a bad line, the line,
/// so the user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
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
    /// A line that is not a trace record.
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Recording options that cannot work (no file may be kept, no byte written).
    #[error("{0}")]
    Options(String),
}

impl TraceError {
    /// Whether trying again could succeed: only I/O can; a bad line or bad options stay bad.
    pub fn retryable(&self) -> bool {
        matches!(self, TraceError::Read { .. } | TraceError::Write { .. })
    }
}
