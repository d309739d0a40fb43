//! Recording: `serve --record FILE` writes every call the bridge answers as one trace
//! line. The hot path only hands a small record to a bounded channel; a writer thread
//! formats, writes and rotates. A full channel drops the record and counts it (the
//! `trace_records_dropped_total` metric), so recording can never stall a call.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use mcp_bridge_metrics::Registry;
use parking_lot::Mutex;
use prometheus::IntCounter;
use serde::Serialize;
use serde_json::{Value, json};

use super::TraceError;
use super::format::{Access, RecordedAnnotations, RecordedHints, RecordedStatus, size_and_digest};
use mcp_bridge_policy::{Annotations, ServerHints};

/// A trace file is rotated once it passes this size (`--record-max-bytes`).
pub const DEFAULT_RECORD_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// How many files a trace keeps: the current one and `FILE.1` ... (`--record-files`).
pub const DEFAULT_RECORD_FILES: u32 = 4;
/// Records waiting for the writer; past this, new ones are dropped and counted. At the
/// drain interval below it holds over a million calls per second.
const CHANNEL_CAPACITY: usize = 65_536;
/// How often the writer drains the queue and flushes, so a trace being read is at most
/// this far behind.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// How to record.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub max_files: u32,
    /// Keep each call's canonical arguments, so the trace can drive `bench load`.
    /// Off by default: arguments may hold what users would not want on disk.
    pub arguments: bool,
    /// Start with recording paused (`POST /admin/record/start` resumes it).
    pub paused: bool,
}

/// One answered call, as the hot path hands it over: no formatting, few allocations.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub t_us: u64,
    pub server: Arc<str>,
    pub method: Box<str>,
    pub name: Box<str>,
    pub args_hash: u64,
    pub arguments: Option<Value>,
    pub read_only: bool,
    pub annotations: Annotations,
    pub latency_us: u64,
    pub result: RecordedResult,
    pub status: RecordedStatus,
    pub partition: u64,
    pub hit: bool,
    /// The canonical arguments' text, kept for a [`CallTap`](crate::CallTap) (whose
    /// policies see it) and parsed on its thread, never on the call's.
    pub arguments_text: Option<Box<str>>,
    /// For a hit that was truth-sampled: the digest of what the backend answered when
    /// asked again (none when it was not sampled or the sample failed).
    pub truth: Option<u64>,
}

/// A call's result, as far as the trace needs it: its size, digest and the server's
/// caching hints on it.
#[derive(Debug, Clone)]
pub enum RecordedResult {
    /// No result (an error or no answer).
    None,
    /// Already measured on the call's path.
    Measured {
        bytes: u64,
        digest: u64,
        hints: ServerHints,
    },
    /// A cached result, shared by reference: the writer thread measures it, so a hit
    /// pays nothing for it.
    Shared(Arc<Value>),
}

impl RecordedResult {
    /// Measures a result on the spot.
    pub fn measure(result: Option<&Value>) -> RecordedResult {
        match result {
            None => RecordedResult::None,
            Some(result) => {
                let (bytes, digest) = size_and_digest(result);
                RecordedResult::Measured {
                    bytes,
                    digest,
                    hints: ServerHints::of_result(result),
                }
            }
        }
    }

    /// The server's caching hints on the result. A cached result's are read here, on the
    /// writer thread, like its digest.
    fn hints(&self) -> ServerHints {
        match self {
            RecordedResult::None => ServerHints::default(),
            RecordedResult::Measured { hints, .. } => *hints,
            RecordedResult::Shared(value) => ServerHints::of_result(value),
        }
    }
}

/// Digests of cached results the writer has measured, by the result's address. Hits on a
/// popular entry hand over the same `Arc` again and again; measuring it once saves the
/// writer a serialization per hit. Each `Arc` is kept, so its address cannot be reused
/// by another value while it is remembered.
#[derive(Default)]
pub struct DigestMemo {
    known: HashMap<usize, (Arc<Value>, u64, u64)>,
    /// The JSON size of the results it keeps alive.
    bytes: u64,
}

/// How many cached results, and how many bytes of them, the memo keeps alive before it
/// starts over: it must not hold on to much memory the cache has let go of.
const DIGEST_MEMO_ENTRIES: usize = 4096;
const DIGEST_MEMO_BYTES: u64 = 8 * 1024 * 1024;

impl DigestMemo {
    /// The result's size and digest, measured once per cached result.
    pub fn size_and_digest(&mut self, result: &RecordedResult) -> (u64, u64) {
        match result {
            RecordedResult::None => (0, 0),
            RecordedResult::Measured { bytes, digest, .. } => (*bytes, *digest),
            RecordedResult::Shared(value) => {
                let address = Arc::as_ptr(value) as usize;
                if let Some((_, bytes, digest)) = self.known.get(&address) {
                    return (*bytes, *digest);
                }
                let (bytes, digest) = size_and_digest(value);
                if self.known.len() >= DIGEST_MEMO_ENTRIES || self.bytes + bytes > DIGEST_MEMO_BYTES
                {
                    self.known.clear();
                    self.bytes = 0;
                }
                self.bytes += bytes;
                self.known.insert(address, (value.clone(), bytes, digest));
                (bytes, digest)
            }
        }
    }
}

impl RecordedCall {
    /// Two records of one call: the recorder's (with the parsed arguments it writes) and a
    /// tap's (with their text, capped, which it parses on its own thread). Nothing large
    /// is copied: a cached result is shared, and each side keeps only its arguments.
    pub fn split_for_tap(self) -> (RecordedCall, RecordedCall) {
        let tap = RecordedCall {
            t_us: self.t_us,
            server: self.server.clone(),
            method: self.method.clone(),
            name: self.name.clone(),
            args_hash: self.args_hash,
            arguments: None,
            read_only: self.read_only,
            annotations: self.annotations,
            latency_us: self.latency_us,
            result: self.result.clone(),
            status: self.status,
            partition: self.partition,
            hit: self.hit,
            arguments_text: self.arguments_text,
            truth: self.truth,
        };
        let recorder = RecordedCall {
            arguments_text: None,
            ..self
        };
        (recorder, tap)
    }

    /// The call as an owned trace record, for a reader in the same process (the shadow
    /// evaluator); the arguments come from `arguments_text` when it is kept.
    pub fn to_record(&self, memo: &mut DigestMemo) -> crate::TraceRecord {
        let line = self.line(memo);
        let arguments = match (&self.arguments, &self.arguments_text) {
            (Some(arguments), _) => Some(arguments.clone()),
            (None, Some(text)) => serde_json::from_str(text).ok(),
            (None, None) => None,
        };
        crate::TraceRecord {
            t_us: line.t_us,
            server: line.server.to_owned(),
            method: line.method.to_owned(),
            name: line.name.to_owned(),
            args: crate::hex64(self.args_hash),
            arguments,
            access: line.access,
            annotations: line.annotations,
            latency_us: line.latency_us,
            bytes: line.bytes,
            digest: line
                .digest
                .map(|hex| crate::hex64(hex.0))
                .unwrap_or_default(),
            status: line.status,
            partition: line
                .partition
                .map(|hex| crate::hex64(hex.0))
                .unwrap_or_default(),
            hit: line.hit,
            hints: line.hints,
        }
    }

    /// The call as a trace line, borrowing every string: the writer formats hundreds of
    /// thousands of these a second and must not take CPU from the calls themselves.
    fn line<'a>(&'a self, memo: &mut DigestMemo) -> RecordLine<'a> {
        let (bytes, digest) = memo.size_and_digest(&self.result);
        RecordLine {
            t_us: self.t_us,
            server: &self.server,
            method: &self.method,
            name: &self.name,
            args: Hex(self.args_hash),
            arguments: self.arguments.as_ref(),
            access: if self.read_only {
                Access::Read
            } else {
                Access::Write
            },
            annotations: RecordedAnnotations::from(self.annotations),
            latency_us: self.latency_us,
            bytes,
            digest: (digest != 0).then_some(Hex(digest)),
            status: self.status,
            partition: (self.partition != 0).then_some(Hex(self.partition)),
            hit: self.hit,
            hints: RecordedHints::from(self.result.hints()),
        }
    }
}

/// [`TraceRecord`] as the writer serializes it: the same fields, names and order,
/// borrowed.
#[derive(Serialize)]
struct RecordLine<'a> {
    t_us: u64,
    server: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    args: Hex,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a Value>,
    access: Access,
    #[serde(skip_serializing_if = "RecordedAnnotations::is_empty")]
    annotations: RecordedAnnotations,
    latency_us: u64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<Hex>,
    status: RecordedStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<Hex>,
    hit: bool,
    #[serde(skip_serializing_if = "RecordedHints::is_empty")]
    hints: RecordedHints,
}

/// A 64-bit hash serialized as 16 lowercase hex digits, without allocating.
#[derive(Clone, Copy)]
struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 16];
        for (index, digit) in text.iter_mut().enumerate() {
            let shift = 60 - 4 * index;
            *digit = DIGITS[((self.0 >> shift) & 0xf) as usize];
        }
        // Hex digits are ASCII, so this never fails.
        serializer.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

/// The recorder a running bridge shares between its calls and its admin endpoints.
pub struct Recorder {
    options: RecordOptions,
    active: AtomicBool,
    sender: Mutex<Option<SyncSender<RecordedCall>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    recorded: Arc<AtomicU64>,
    dropped: AtomicU64,
    /// `mcp_bridge_trace_records_dropped_total`.
    dropped_total: IntCounter,
}

/// Registers the recorder's one metric, `mcp_bridge_trace_records_dropped_total`, and returns
/// the counter [`Recorder::start`] takes. Registered whether or not a recorder starts, so the
/// series exists (at zero) on every bridge.
pub fn register_dropped_records(registry: &Registry) -> IntCounter {
    registry.counter(
        "trace_records_dropped_total",
        "Trace records (`serve --record`) dropped because the trace writer fell behind; the calls were answered.",
    )
}

impl Recorder {
    /// Opens the trace file (appending) and starts the writer thread. Every record it
    /// drops is also counted in `dropped_total`.
    pub fn start(
        options: RecordOptions,
        dropped_total: IntCounter,
    ) -> Result<Arc<Recorder>, TraceError> {
        if options.max_files == 0 || options.max_bytes == 0 {
            return Err(TraceError::Options(
                "--record-files and --record-max-bytes must be at least 1".to_owned(),
            ));
        }
        let file = open_append(&options.path)?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(CHANNEL_CAPACITY);
        let recorded = Arc::new(AtomicU64::new(0));
        let writer = TraceWriter {
            out: BufWriter::new(file),
            line: Vec::with_capacity(1024),
            digests: DigestMemo::default(),
            written: file_size(&options.path),
            options: options.clone(),
            recorded: recorded.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("trace-writer".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|source| TraceError::Write {
                path: options.path.clone(),
                source,
            })?;
        Ok(Arc::new(Recorder {
            active: AtomicBool::new(!options.paused),
            options,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
            recorded,
            dropped: AtomicU64::new(0),
            dropped_total,
        }))
    }

    /// Whether calls are being recorded now: the one check the hot path makes.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub fn records_arguments(&self) -> bool {
        self.options.arguments
    }

    /// Resumes (`true`) or pauses recording; returns whether it was active.
    pub fn set_active(&self, active: bool) -> bool {
        let was = self.active.swap(active, Ordering::Relaxed);
        if was != active {
            tracing::info!(path = %self.options.path.display(), active, "trace recording {}", if active { "resumed" } else { "paused" });
        }
        was
    }

    /// Hands one call to the writer. Never blocks: a full queue drops the record.
    pub fn submit(&self, call: RecordedCall) {
        let sender = self.sender.lock();
        let Some(sender) = sender.as_ref() else {
            return;
        };
        match sender.try_send(call) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                self.dropped_total.inc();
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "the trace writer cannot keep up; dropped trace records (the calls themselves were answered)"
                    );
                }
            }
        }
    }

    /// `GET /admin/record`.
    pub fn status(&self) -> Value {
        json!({
            "path": self.options.path.display().to_string(),
            "active": self.is_active(),
            "recorded": self.recorded.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "max_bytes": self.options.max_bytes,
            "max_files": self.options.max_files,
            "arguments": self.options.arguments,
        })
    }

    /// Stops recording, writes out what is queued and closes the file.
    pub fn close(&self) {
        self.active.store(false, Ordering::Relaxed);
        self.sender.lock().take();
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

struct TraceWriter {
    out: BufWriter<File>,
    /// The line being formatted, reused so formatting allocates nothing.
    line: Vec<u8>,
    digests: DigestMemo,
    written: u64,
    options: RecordOptions,
    recorded: Arc<AtomicU64>,
}

impl TraceWriter {
    /// Drains the queue in batches, sleeping between them. The writer never blocks in
    /// `recv`, so a call handing over its record never has to wake it: one futex wake
    /// and context switch per call would cost more than the record itself.
    fn run(mut self, receiver: Receiver<RecordedCall>) {
        loop {
            loop {
                match receiver.try_recv() {
                    Ok(call) => self.write(call),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush();
                        return;
                    }
                }
            }
            self.flush();
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    fn write(&mut self, call: RecordedCall) {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        if let Err(error) = serde_json::to_writer(&mut line, &call.line(&mut self.digests)) {
            tracing::warn!(%error, "cannot encode a trace record");
            self.line = line;
            return;
        }
        line.push(b'\n');
        if self.written > 0 && self.written + line.len() as u64 > self.options.max_bytes {
            self.rotate();
        }
        let written = self.out.write_all(&line);
        let length = line.len() as u64;
        self.line = line;
        if let Err(error) = written {
            tracing::warn!(path = %self.options.path.display(), %error, "cannot write the trace");
            return;
        }
        self.written += length;
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    fn flush(&mut self) {
        if let Err(error) = self.out.flush() {
            tracing::warn!(path = %self.options.path.display(), %error, "cannot flush the trace");
        }
    }

    /// FILE becomes FILE.1, FILE.1 becomes FILE.2, ...; the oldest past `max_files` goes.
    fn rotate(&mut self) {
        self.flush();
        let path = &self.options.path;
        let numbered = |index: u32| PathBuf::from(format!("{}.{index}", path.display()));
        let keep = self.options.max_files.saturating_sub(1);
        if keep == 0 {
            let _ = std::fs::remove_file(path);
        } else {
            let _ = std::fs::remove_file(numbered(keep));
            for index in (1..keep).rev() {
                let _ = std::fs::rename(numbered(index), numbered(index + 1));
            }
            let _ = std::fs::rename(path, numbered(1));
        }
        match open_append(path) {
            Ok(file) => {
                self.out = BufWriter::new(file);
                self.written = 0;
            }
            Err(error) => tracing::warn!(%error, "cannot reopen the trace after rotating it"),
        }
    }
}

fn open_append(path: &Path) -> Result<File, TraceError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| TraceError::Write {
            path: path.to_path_buf(),
            source,
        })
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{TraceRecord, hex64};

    #[test]
    fn a_written_line_is_a_trace_record() {
        let call = RecordedCall {
            t_us: 17,
            server: Arc::from("demo"),
            method: "tools/call".into(),
            name: "get_tasks".into(),
            args_hash: 0x0123_4567_89ab_cdef,
            arguments: Some(json!({"limit": 2})),
            read_only: true,
            annotations: Annotations {
                read_only: Some(true),
                ..Annotations::default()
            },
            latency_us: 250,
            result: RecordedResult::Shared(Arc::new(
                json!({"content": [], "ttlMs": 1500, "cacheScope": "private"}),
            )),
            status: RecordedStatus::Ok,
            partition: 0xfe,
            hit: true,
            arguments_text: None,
            truth: None,
        };
        let text = serde_json::to_string(&call.line(&mut DigestMemo::default()))
            .unwrap_or_else(|error| panic!("{error}"));
        let record: TraceRecord =
            serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"));
        let (bytes, digest) =
            size_and_digest(&json!({"content": [], "ttlMs": 1500, "cacheScope": "private"}));
        assert_eq!(
            record,
            TraceRecord {
                t_us: 17,
                server: "demo".into(),
                method: "tools/call".into(),
                name: "get_tasks".into(),
                args: "0123456789abcdef".into(),
                arguments: Some(json!({"limit": 2})),
                access: Access::Read,
                annotations: RecordedAnnotations {
                    read_only: Some(true),
                    ..RecordedAnnotations::default()
                },
                latency_us: 250,
                bytes,
                digest: hex64(digest),
                status: RecordedStatus::Ok,
                partition: "00000000000000fe".into(),
                hit: true,
                hints: RecordedHints {
                    ttl_ms: Some(1500),
                    private_scope: Some(true),
                },
            }
        );
        // A tap's reader gets the same record without a round trip through text, and
        // the arguments from their kept text when they were not recorded.
        assert_eq!(call.to_record(&mut DigestMemo::default()), record);
        let kept_as_text = RecordedCall {
            arguments: None,
            arguments_text: Some(r#"{"limit":2}"#.into()),
            ..call
        };
        assert_eq!(kept_as_text.to_record(&mut DigestMemo::default()), record);
    }

    #[test]
    fn a_call_without_hints_writes_no_hints_field() {
        let call = RecordedCall {
            t_us: 1,
            server: Arc::from("demo"),
            method: "tools/list".into(),
            name: "".into(),
            args_hash: 0,
            arguments: None,
            read_only: true,
            annotations: Annotations::default(),
            latency_us: 3,
            result: RecordedResult::measure(Some(&json!({"tools": []}))),
            status: RecordedStatus::Ok,
            partition: 0,
            hit: false,
            arguments_text: None,
            truth: None,
        };
        let text = serde_json::to_string(&call.line(&mut DigestMemo::default()))
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(!text.contains("hints"), "{text}");
    }
}
