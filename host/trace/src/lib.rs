//! Traces: the record of every call a bridge answered, as one file format and the
//! recorder that writes it.
//!
//! - `format`: one line per call ([`TraceRecord`]), the FNV-1a hashes it carries, and
//!   reading and writing whole files.
//! - `recorder`: `serve --record`: a bounded channel the router's hot path hands calls
//!   to, and a writer thread that formats, appends and rotates.
//! - `tap`: [`CallTap`], what else receives every answered call (the shadow evaluator),
//!   and the [`TruthSampler`] that picks cache hits to check against the backend.
//!
//! This layer sits below both its users: the router records through it, and the lab
//! reads what it wrote (or generates the same records). It imports neither of them, nor
//! the front.

mod error;
pub mod format;
pub mod recorder;
pub mod tap;

pub use error::TraceError;
pub use format::{
    Access, Fnv64, RecordReader, RecordedAnnotations, RecordedHints, RecordedStatus, TraceRecord,
    hex64, parse_hex64, size_and_digest, write_records,
};
pub use recorder::{
    DEFAULT_RECORD_FILES, DEFAULT_RECORD_MAX_BYTES, DigestMemo, RecordOptions, RecordedCall,
    RecordedResult, Recorder, register_dropped_records,
};
pub use tap::{CallTap, TAP_MAX_ARGUMENTS_BYTES, TruthPermit, TruthSampler};
