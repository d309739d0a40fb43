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
        let mut builder = TraceBuilder::new(source);
        builder.trace.events.reserve(records.len());
        for (line, record) in records {
            let event = builder
                .event(&record, start)
                .map_err(|message| error(line, message))?;
            builder.trace.events.push(event);
        }
        let mut trace = builder.trace;
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
}

/// Turns records into events one at a time: interns their strings, gives each read its
/// dense keys and works out its truth from what came before it. A loaded trace is built
/// by one; the shadow evaluator keeps one for the calls it sees live.
pub struct TraceBuilder {
    /// The strings and keys so far (its `events` are whatever the owner pushes).
    pub trace: Trace,
    keys: HashMap<(u32, u32, u32, u64, u32), u32>,
    /// Per key: the last digest the backend gave and the write count of its server then.
    known: HashMap<u32, (u64, u64)>,
    writes_per_server: HashMap<u32, u64>,
    /// Backend latency sums per (server, tool) and overall, for a hit's estimate.
    latencies: HashMap<(u32, u32), (u64, u64)>,
    overall_latency: (u64, u64),
    interned_bytes: usize,
}

impl TraceBuilder {
    pub fn new(source: &str) -> TraceBuilder {
        let mut builder = TraceBuilder {
            trace: Trace {
                source: source.to_owned(),
                events: Vec::new(),
                strings: Vec::new(),
                string_index: HashMap::new(),
                keys: 0,
            },
            keys: HashMap::new(),
            known: HashMap::new(),
            writes_per_server: HashMap::new(),
            latencies: HashMap::new(),
            overall_latency: (0, 0),
            interned_bytes: 0,
        };
        // Index 0 is the empty string, so "no arguments" and "no principal" are 0.
        builder.intern("");
        builder
    }

    fn intern(&mut self, text: &str) -> u32 {
        let trace = &mut self.trace;
        if let Some(index) = trace.string_index.get(text) {
            return *index;
        }
        let index = u32::try_from(trace.strings.len()).unwrap_or(u32::MAX);
        let shared: Arc<str> = Arc::from(text);
        self.interned_bytes += text.len();
        trace.string_index.insert(shared.clone(), index);
        trace.strings.push(shared);
        index
    }

    /// The event of one record, its time counted from `start`. A read the backend
    /// answered is its own truth. A recorded hit is true only if nothing could have
    /// changed it since the backend last answered that key: no write on its server since
    /// then; otherwise its truth is unknown and its replayed hits count as unverified. A
    /// recorded hit's latency is the mean so far of its tool's backend calls (a loaded
    /// trace replaces it with the whole trace's mean). The error names the bad field.
    pub fn event(&mut self, record: &TraceRecord, start: u64) -> Result<Event, String> {
        let hex = |field: &str, text: &str| {
            parse_hex64(text)
                .ok_or_else(|| format!("`{field}` must be 16 hex digits, found {text:?}"))
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
                self.intern(&text)
            }
            None => 0,
        };
        let server = self.intern(&record.server);
        let method = self.intern(&record.method);
        let name = self.intern(&record.name);
        let partition = self.intern(&record.partition);
        let key = self.key_of((server, method, name, args_hash, partition));
        let shared_key = self.key_of((server, method, name, args_hash, 0));
        let mut event = Event {
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
        };
        self.learn(&mut event);
        Ok(event)
    }

    /// The bytes of every string interned so far.
    pub fn interned_bytes(&self) -> usize {
        self.interned_bytes
    }

    /// How many distinct keys there are so far.
    pub fn keys(&self) -> u32 {
        self.trace.keys
    }

    fn key_of(&mut self, parts: (u32, u32, u32, u64, u32)) -> u32 {
        let next = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        let key = *self.keys.entry(parts).or_insert(next);
        self.trace.keys = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        key
    }

    /// Fills in the event's truth and, for a hit, its estimated latency.
    fn learn(&mut self, event: &mut Event) {
        if event.hit {
            let (sum, count) = self
                .latencies
                .get(&(event.server, event.name))
                .copied()
                .unwrap_or(self.overall_latency);
            event.latency_us = sum.checked_div(count).unwrap_or(0);
            event.latency_estimated = true;
        } else {
            let sum = self
                .latencies
                .entry((event.server, event.name))
                .or_default();
            sum.0 += event.latency_us;
            sum.1 += 1;
            self.overall_latency.0 += event.latency_us;
            self.overall_latency.1 += 1;
        }
        let writes = self.writes_per_server.entry(event.server).or_default();
        if event.write {
            *writes += 1;
            return;
        }
        if event.status != RecordedStatus::Ok {
            return;
        }
        if !event.hit {
            event.truth = Some(event.digest);
            self.known.insert(event.key, (event.digest, *writes));
            return;
        }
        event.truth = self
            .known
            .get(&event.key)
            .filter(|(_, seen_at)| seen_at == writes)
            .map(|(digest, _)| *digest);
    }
}
