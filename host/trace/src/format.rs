//! The trace file format: one JSON object per line (JSON Lines), one line per call the
//! bridge answered, as `serve --record` writes it and `bench workload` generates it.
//!
//! A line is a [`TraceRecord`]. Unknown fields are refused, so a file from an
//! incompatible writer fails on its first line instead of replaying wrongly; the format
//! carries no version number, and a change to it must stay readable by this parser or
//! add one. Hashes (arguments, results, principals) are 64-bit FNV-1a ([`Fnv64`]),
//! written as 16 lowercase hex digits, so traces hash alike on every platform.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::TraceError;
use mcp_bridge_policy::{Annotations, ServerHints};

/// One line of a trace file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRecord {
    /// When the call arrived, in microseconds since the Unix epoch (or since the start
    /// of a generated workload).
    pub t_us: u64,
    pub server: String,
    pub method: String,
    /// The tool name, the resource URI, or empty for a list.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A 64-bit FNV-1a hash of the canonical arguments, as 16 hex digits.
    pub args: String,
    /// The canonical arguments themselves, when recorded with `--record-arguments` or
    /// generated: needed to drive a live bridge from the trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    pub access: Access,
    /// The tool's annotations as the server declared them (only those it declared).
    #[serde(default, skip_serializing_if = "RecordedAnnotations::is_empty")]
    pub annotations: RecordedAnnotations,
    /// How long the backend took, zero for a call answered from the cache.
    pub latency_us: u64,
    /// The size of the result as JSON.
    pub bytes: u64,
    /// A 64-bit FNV-1a hash of the result's JSON, as 16 hex digits (empty without one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    pub status: RecordedStatus,
    /// A hash of the principal the result would be cached under, empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    /// Whether the bridge answered from its cache.
    pub hit: bool,
    /// The caching hints the server put on the result (`ttlMs`, `cacheScope`), only those
    /// it gave. Traces written before hints were recorded have none.
    #[serde(default, skip_serializing_if = "RecordedHints::is_empty")]
    pub hints: RecordedHints,
}

/// Whether a call reads or may write, per the tool's annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

/// How the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedStatus {
    Ok,
    /// A JSON-RPC error or an `isError` result.
    Error,
    /// No answer (timeout, crash).
    Unknown,
}

/// [`Annotations`] in a trace line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedAnnotations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world: Option<bool>,
}

impl RecordedAnnotations {
    /// Whether the server declared none of them (the line then leaves them out).
    pub fn is_empty(&self) -> bool {
        *self == RecordedAnnotations::default()
    }
}

impl From<Annotations> for RecordedAnnotations {
    fn from(annotations: Annotations) -> Self {
        RecordedAnnotations {
            read_only: annotations.read_only,
            destructive: annotations.destructive,
            idempotent: annotations.idempotent,
            open_world: annotations.open_world,
        }
    }
}

impl From<RecordedAnnotations> for Annotations {
    fn from(recorded: RecordedAnnotations) -> Self {
        Annotations {
            read_only: recorded.read_only,
            destructive: recorded.destructive,
            idempotent: recorded.idempotent,
            open_world: recorded.open_world,
        }
    }
}

/// [`ServerHints`] in a trace line: `ttlMs` in milliseconds as the server wrote it, and
/// whether its `cacheScope` was `private`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedHints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_scope: Option<bool>,
}

impl RecordedHints {
    /// Whether the server gave no hint (the line then leaves them out).
    pub fn is_empty(&self) -> bool {
        *self == RecordedHints::default()
    }
}

impl From<ServerHints> for RecordedHints {
    fn from(hints: ServerHints) -> Self {
        RecordedHints {
            ttl_ms: hints
                .ttl
                .map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            private_scope: hints.private_scope,
        }
    }
}

impl From<RecordedHints> for ServerHints {
    fn from(recorded: RecordedHints) -> Self {
        ServerHints {
            ttl: recorded.ttl_ms.map(Duration::from_millis),
            private_scope: recorded.private_scope,
        }
    }
}

/// A 64-bit FNV-1a hash: tiny, stable across Rust versions and platforms, so traces
/// and generated workloads hash alike everywhere. Used through [`std::io::Write`] so a
/// JSON value can be hashed while it is serialized, without building its text.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    /// The hash of `bytes` alone.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut hasher = Fnv64::default();
        hasher.update(bytes);
        hasher.finish()
    }
}

impl Write for Fnv64 {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The size and FNV-1a digest of a value's JSON text, computed in one pass without
/// building the text.
pub fn size_and_digest(value: &Value) -> (u64, u64) {
    struct Counting {
        hasher: Fnv64,
        bytes: u64,
    }
    impl Write for Counting {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.hasher.update(bytes);
            self.bytes += bytes.len() as u64;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counting = Counting {
        hasher: Fnv64::default(),
        bytes: 0,
    };
    match serde_json::to_writer(&mut counting, value) {
        Ok(()) => (counting.bytes, counting.hasher.finish()),
        Err(_) => (0, 0),
    }
}

/// A hash as a trace writes it: 16 lowercase hex digits.
pub fn hex64(hash: u64) -> String {
    format!("{hash:016x}")
}

/// A hash as a trace writes it (16 hex digits; empty reads as 0), or `None` when the
/// text is not one.
pub fn parse_hex64(text: &str) -> Option<u64> {
    if text.is_empty() {
        return Some(0);
    }
    if text.len() > 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// Writes records as JSON Lines.
pub fn write_records<'a>(
    path: &Path,
    records: impl IntoIterator<Item = &'a TraceRecord>,
) -> Result<u64, TraceError> {
    let write_error = |source| TraceError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(write_error)?;
    let mut out = std::io::BufWriter::new(file);
    let mut count = 0;
    for record in records {
        serde_json::to_writer(&mut out, record).map_err(|error| write_error(error.into()))?;
        out.write_all(b"\n").map_err(write_error)?;
        count += 1;
    }
    out.flush().map_err(write_error)?;
    Ok(count)
}

/// Reads a JSON Lines trace one record at a time, each with its line number (from 1),
/// skipping blank lines. An error (the file cannot be read, or a line is not a record:
/// named by file and line) is the last item it yields.
pub struct RecordReader {
    path: PathBuf,
    lines: std::iter::Enumerate<std::io::Lines<BufReader<std::fs::File>>>,
    failed: bool,
}

impl RecordReader {
    pub fn open(path: &Path) -> Result<RecordReader, TraceError> {
        let file = std::fs::File::open(path).map_err(|source| TraceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(RecordReader {
            path: path.to_path_buf(),
            lines: BufReader::new(file).lines().enumerate(),
            failed: false,
        })
    }
}

impl Iterator for RecordReader {
    type Item = Result<(usize, TraceRecord), TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_record();
        self.failed = matches!(item, Some(Err(_)));
        item
    }
}

impl RecordReader {
    fn next_record(&mut self) -> Option<Result<(usize, TraceRecord), TraceError>> {
        for (index, line) in self.lines.by_ref() {
            let number = index + 1;
            let line = match line {
                Ok(line) => line,
                Err(source) => {
                    return Some(Err(TraceError::Read {
                        path: self.path.clone(),
                        source,
                    }));
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(&line).map_err(|error| TraceError::Line {
                path: self.path.clone(),
                line: number,
                message: format!(
                    "{error}; each line must be one call as `serve --record` writes it"
                ),
            });
            return Some(record.map(|record| (number, record)));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as traces were written before hints were recorded.
    const OLD_LINE: &str = r#"{"t_us":1700000000000000,"server":"demo","method":"tools/call","name":"get_tasks","args":"0123456789abcdef","access":"read","annotations":{"read_only":true},"latency_us":250,"bytes":42,"digest":"00000000000000ff","status":"ok","partition":"00000000000000fe","hit":false}"#;

    #[test]
    fn a_line_without_hints_loads_with_none() {
        let record: TraceRecord =
            serde_json::from_str(OLD_LINE).unwrap_or_else(|error| panic!("{error}"));
        assert!(record.hints.is_empty());
        assert_eq!(ServerHints::from(record.hints), ServerHints::default());
        // Written back, it is the same line: no empty hints field appears.
        let written = serde_json::to_string(&record).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(written, OLD_LINE);
    }

    #[test]
    fn hints_round_trip_and_unknown_hint_fields_are_refused() {
        let line = OLD_LINE.replace(
            r#""hit":false}"#,
            r#""hit":false,"hints":{"ttl_ms":1500,"private_scope":true}}"#,
        );
        let record: TraceRecord =
            serde_json::from_str(&line).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            ServerHints::from(record.hints),
            ServerHints {
                ttl: Some(Duration::from_millis(1500)),
                private_scope: Some(true),
            }
        );
        let written = serde_json::to_string(&record).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(written, line);
        let unknown = OLD_LINE.replace(r#""hit":false}"#, r#""hit":false,"hints":{"scope":1}}"#);
        assert!(serde_json::from_str::<TraceRecord>(&unknown).is_err());
    }
}
