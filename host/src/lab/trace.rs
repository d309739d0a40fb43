//! The trace format: one JSON object per line, one line per call the bridge answered
//! (recorded by `serve --record`, or generated from a workload preset), and its
//! in-memory form for replay with every string interned.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::LabError;
use crate::policy::{Annotations, CallKind};

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

fn parse_hex64(text: &str) -> Option<u64> {
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
) -> Result<u64, LabError> {
    let write_error = |source| LabError::Write {
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

/// One call of a loaded trace, with its strings interned (indexes into
/// [`Trace::strings`]) so replaying it allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// Microseconds since the trace's first event.
    pub t_us: u64,
    pub server: u32,
    pub method: u32,
    pub name: u32,
    pub kind: CallKind,
    /// The canonical arguments' text when the trace has it, else the empty string.
    pub arguments: u32,
    pub args_hash: u64,
    pub write: bool,
    pub annotations: Annotations,
    pub latency_us: u64,
    pub bytes: u64,
    pub digest: u64,
    pub status: RecordedStatus,
    /// 0 for no principal.
    pub partition: u32,
    pub hit: bool,
    /// The result the backend would have answered at this moment, when known.
    pub truth: Option<u64>,
    /// The read key (server, method, name, arguments, partition) as a dense index.
    pub key: u32,
    /// The same key without the partition: where a result shared across principals
    /// is filed.
    pub shared_key: u32,
    /// Whether `latency_us` was estimated (the call was a recorded hit, so the trace
    /// has no backend latency of its own for it).
    pub latency_estimated: bool,
}

/// A trace loaded for replay.
#[derive(Debug, Clone)]
pub struct Trace {
    pub source: String,
    pub events: Vec<Event>,
    pub strings: Vec<Arc<str>>,
    /// Each interned string's index in `strings`.
    pub string_index: HashMap<Arc<str>, u32>,
    /// How many distinct read keys there are ([`Event::key`] is below this).
    pub keys: u32,
}

/// Interns strings while a trace loads.
#[derive(Default)]
struct Interner {
    index: HashMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
}

impl Interner {
    fn new() -> Interner {
        let mut interner = Interner::default();
        // Index 0 is the empty string, so "no arguments" and "no principal" are 0.
        interner.intern("");
        interner
    }

    fn intern(&mut self, text: &str) -> u32 {
        if let Some(index) = self.index.get(text) {
            return *index;
        }
        let index = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        let shared: Arc<str> = Arc::from(text);
        self.index.insert(shared.clone(), index);
        self.strings.push(shared);
        index
    }
}

impl Trace {
    pub fn string(&self, index: u32) -> &str {
        self.strings.get(index as usize).map_or("", |text| text)
    }

    /// Reads a JSON Lines trace. A bad line is an error naming the file and line.
    pub fn load(path: &Path) -> Result<Trace, LabError> {
        let file = std::fs::File::open(path).map_err(|source| LabError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut records = Vec::new();
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| LabError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let record: TraceRecord =
                serde_json::from_str(&line).map_err(|error| LabError::Trace {
                    path: path.to_path_buf(),
                    line: number + 1,
                    message: format!(
                        "{error}; each line must be one call as `serve --record` writes it"
                    ),
                })?;
            records.push((number + 1, record));
        }
        if records.is_empty() {
            return Err(LabError::Trace {
                path: path.to_path_buf(),
                line: 1,
                message: "the trace has no calls; record one with `mcp-bridge serve --record FILE` or generate one with `mcp-bridge bench workload`".to_owned(),
            });
        }
        Trace::from_records(&path.display().to_string(), records, |line, message| {
            LabError::Trace {
                path: path.to_path_buf(),
                line,
                message,
            }
        })
    }

    /// Builds a trace from records (numbered for error messages), sorting them by time
    /// and working out what the backend would have answered at each read.
    pub fn from_records(
        source: &str,
        mut records: Vec<(usize, TraceRecord)>,
        error: impl Fn(usize, String) -> LabError,
    ) -> Result<Trace, LabError> {
        // A recorder writes calls as they finish, not as they arrive: order by arrival.
        records.sort_by_key(|(line, record)| (record.t_us, *line));
        let start = records.first().map_or(0, |(_, record)| record.t_us);
        let mut strings = Interner::new();
        let mut keys: HashMap<(u32, u32, u32, u64, u32), u32> = HashMap::new();
        let mut events = Vec::with_capacity(records.len());
        for (line, record) in records {
            let hex = |field: &str, text: &str| {
                parse_hex64(text).ok_or_else(|| {
                    error(
                        line,
                        format!("`{field}` must be 16 hex digits, found {text:?}"),
                    )
                })
            };
            let args_hash = hex("args", &record.args)?;
            let digest = hex("digest", &record.digest)?;
            let kind = match record.method.as_str() {
                "tools/call" => CallKind::Tool,
                "resources/read" => CallKind::ReadResource,
                _ => CallKind::ListRequest,
            };
            let arguments = match &record.arguments {
                Some(arguments) => {
                    let mut text = String::new();
                    crate::cache::canonical_json(arguments, &mut text);
                    strings.intern(&text)
                }
                None => 0,
            };
            let server = strings.intern(&record.server);
            let method = strings.intern(&record.method);
            let name = strings.intern(&record.name);
            let partition = strings.intern(&record.partition);
            let mut key_of = |partition: u32| {
                let next_key = u32::try_from(keys.len()).unwrap_or(u32::MAX);
                *keys
                    .entry((server, method, name, args_hash, partition))
                    .or_insert(next_key)
            };
            let key = key_of(partition);
            let shared_key = key_of(0);
            events.push(Event {
                t_us: record.t_us.saturating_sub(start),
                server,
                method,
                name,
                kind,
                arguments,
                args_hash,
                write: record.access == Access::Write,
                annotations: record.annotations.into(),
                latency_us: record.latency_us,
                bytes: record.bytes,
                digest,
                status: record.status,
                partition,
                hit: record.hit,
                truth: None,
                key,
                shared_key,
                latency_estimated: false,
            });
        }
        let mut trace = Trace {
            source: source.to_owned(),
            events,
            strings: strings.strings,
            string_index: strings.index,
            keys: u32::try_from(keys.len()).unwrap_or(u32::MAX),
        };
        trace.infer_truth();
        trace.estimate_hit_latencies();
        Ok(trace)
    }

    /// A recorded hit has no backend latency, yet replaying it as a miss costs one:
    /// use the mean recorded latency of the same tool (or of the whole trace).
    fn estimate_hit_latencies(&mut self) {
        let mut sums: HashMap<(u32, u32), (u64, u64)> = HashMap::new();
        let (mut total, mut count) = (0u64, 0u64);
        for event in self.events.iter().filter(|event| !event.hit) {
            let sum = sums.entry((event.server, event.name)).or_default();
            sum.0 += event.latency_us;
            sum.1 += 1;
            total += event.latency_us;
            count += 1;
        }
        let overall = total.checked_div(count).unwrap_or(0);
        for event in self.events.iter_mut().filter(|event| event.hit) {
            event.latency_us = sums
                .get(&(event.server, event.name))
                .and_then(|(sum, count)| sum.checked_div(*count))
                .unwrap_or(overall);
            event.latency_estimated = true;
        }
    }

    /// The index of an interned string, if the trace has it.
    pub fn find_string(&self, text: &str) -> Option<u32> {
        self.string_index.get(text).copied()
    }

    /// What the backend would have answered at each read. A read the backend answered
    /// is its own truth. A recorded hit is true only if nothing could have changed it
    /// since the backend last answered that key: no write on its server since then.
    /// Otherwise its truth is unknown and its replayed hits count as unverified.
    fn infer_truth(&mut self) {
        // Per key: the last digest the backend gave and the write count of its server then.
        let mut known: HashMap<u32, (u64, u64)> = HashMap::new();
        let mut writes_per_server: HashMap<u32, u64> = HashMap::new();
        for event in &mut self.events {
            let writes = writes_per_server.entry(event.server).or_default();
            if event.write {
                *writes += 1;
                continue;
            }
            if event.status != RecordedStatus::Ok {
                continue;
            }
            if !event.hit {
                event.truth = Some(event.digest);
                known.insert(event.key, (event.digest, *writes));
                continue;
            }
            event.truth = known
                .get(&event.key)
                .filter(|(_, seen_at)| seen_at == writes)
                .map(|(digest, _)| *digest);
        }
    }
}
