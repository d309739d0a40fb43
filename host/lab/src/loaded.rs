//! A trace loaded for replay: the records of a trace file (see [`mcp_bridge_trace`]) sorted
//! by arrival, every string interned, each read given a dense key and its truth (what the
//! backend would have answered at that moment, inferred from the recorded misses).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::LabError;
use mcp_bridge_policy::{Annotations, CallKind, ServerHints};
use mcp_bridge_trace::{Access, RecordReader, RecordedStatus, TraceRecord, parse_hex64};

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
    /// The server's caching hints on the result, as recorded (none in older traces).
    pub hints: ServerHints,
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
        let records = RecordReader::open(path)?.collect::<Result<Vec<_>, _>>()?;
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
                    mcp_bridge_cache::canonical_json(arguments, &mut text);
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
                hints: record.hints.into(),
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
