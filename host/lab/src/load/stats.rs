//! What a load run measured: every call's latency and outcome, recorded while it runs, then
//! summarized into a [`LoadReport`] with exact (nearest-rank) percentiles over all measured
//! calls, per tool and for reads and writes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::Failure;
use crate::percentile;

/// How many error messages a report keeps.
const KEPT_ERRORS: usize = 5;

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The bridge answered with an HTTP status other than 200.
    HttpStatus,
    /// A JSON-RPC error answer.
    #[serde(rename = "jsonrpc")]
    JsonRpc,
    /// A result with `isError: true`.
    Tool,
    /// No answer within the call timeout (or the call could not even start in time).
    Timeout,
    /// The connection failed: refused, reset, closed mid-response.
    Connection,
    /// An answer that is not a JSON-RPC response to the call (bad JSON, wrong id).
    Protocol,
}

/// Failed calls by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub http_status: u64,
    pub jsonrpc: u64,
    pub tool: u64,
    pub timeout: u64,
    pub connection: u64,
    pub protocol: u64,
}

impl ErrorCounts {
    fn add(&mut self, kind: ErrorKind) {
        let counter = match kind {
            ErrorKind::HttpStatus => &mut self.http_status,
            ErrorKind::JsonRpc => &mut self.jsonrpc,
            ErrorKind::Tool => &mut self.tool,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Connection => &mut self.connection,
            ErrorKind::Protocol => &mut self.protocol,
        };
        *counter += 1;
    }

    pub fn total(&self) -> u64 {
        self.http_status + self.jsonrpc + self.tool + self.timeout + self.connection + self.protocol
    }
}

/// A latency distribution in microseconds; percentiles are nearest-rank over all samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Summarizes samples in nanoseconds (reordered in place).
    pub fn from_nanos(samples: &mut [u64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        let micros = |nanos: u64| round1(nanos as f64 / 1_000.0);
        let total: u128 = samples.iter().map(|&nanos| u128::from(nanos)).sum();
        let min = samples.iter().copied().min().unwrap_or_default();
        let max = samples.iter().copied().max().unwrap_or_default();
        Latency {
            count: samples.len() as u64,
            mean_us: round1(total as f64 / samples.len() as f64 / 1_000.0),
            min_us: micros(min),
            p50_us: micros(percentile(samples, 0.50)),
            p90_us: micros(percentile(samples, 0.90)),
            p95_us: micros(percentile(samples, 0.95)),
            p99_us: micros(percentile(samples, 0.99)),
            p999_us: micros(percentile(samples, 0.999)),
            max_us: micros(max),
        }
    }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// The calls of one group (a tool, the reads, the writes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    pub calls: u64,
    pub ok: u64,
    pub errors: u64,
    /// Latency of the successful calls.
    pub latency: Latency,
}

/// The bridge's cache counters over the run: `/admin/cache/stats` read before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheDelta {
    pub hits: u64,
    pub misses: u64,
    pub stale_served: u64,
    pub coalesced: u64,
    pub bypass: u64,
    /// (hits + stale) / (hits + stale + misses) over the run; warm-up calls included, since
    /// the counters cannot tell them apart.
    pub hit_rate: f64,
    /// Entries in the cache after the run.
    pub entries_after: u64,
    pub bytes_after: u64,
}

/// The arrival model a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum ModeReport {
    /// A fixed schedule; `rate` is null when the source's own arrival times were replayed.
    Open {
        rate: Option<f64>,
        arrivals: String,
        max_inflight: usize,
    },
    /// N connections, each sending its next call when the previous one is answered.
    Closed { connections: usize },
}

/// Everything one `bench load` run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub target: String,
    /// The workload or trace the calls came from.
    pub source: String,
    pub mode: ModeReport,
    pub warmup_s: f64,
    /// From the end of the warm-up to the last measured answer.
    pub window_s: f64,
    /// Measured calls (started after the warm-up), answered or failed.
    pub calls: u64,
    pub ok: u64,
    pub failed: u64,
    /// ok / calls (1.0 when no call was measured, so an empty run is flagged by `calls`).
    pub success_rate: f64,
    /// Successful calls per second of the window.
    pub throughput: f64,
    /// For the open model: the latency from each call's intended send time to its answer,
    /// so time spent waiting to be sent counts. For the closed loop: from the send.
    pub latency: Latency,
    /// From the actual send to the answer: the bridge's part, without the generator's lag.
    pub service_time: Latency,
    /// How late calls were sent after their intended time (open model; zero when closed).
    pub send_lag: Latency,
    pub errors: ErrorCounts,
    /// The first few error messages, each prefixed with its kind.
    pub first_errors: Vec<String>,
    pub reads: GroupReport,
    pub writes: GroupReport,
    pub tools: BTreeMap<String, GroupReport>,
    /// Null when the bridge has no cache (`/admin/cache/stats` answers 404) or it could not
    /// be read.
    pub cache: Option<CacheDelta>,
    /// MCP sessions (keep-alive connections) opened, warm-up included.
    pub sessions_opened: u64,
    /// Calls in flight at most at one time.
    pub peak_inflight: u64,
}

impl LoadReport {
    /// Whether the success rate meets `required` (a ratio such as 1.0).
    pub fn meets(&self, required: f64) -> bool {
        self.calls > 0 && self.success_rate + 1e-12 >= required
    }
}

/// One measured call.
#[derive(Debug, Clone, Copy)]
struct Sample {
    tool: u32,
    write: bool,
    ok: bool,
    latency_ns: u64,
    service_ns: u64,
    lag_ns: u64,
}

/// Collects calls while a run goes on.
#[derive(Debug)]
pub(super) struct Recorder {
    samples: Vec<Sample>,
    errors: ErrorCounts,
    first_errors: Vec<String>,
    last_answer: Option<Instant>,
    pub sessions_opened: u64,
    inflight: u64,
    pub peak_inflight: u64,
}

/// When one call was meant to go, went, and was answered.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub intended: Instant,
    pub sent: Instant,
    pub answered: Instant,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Recorder {
    pub(super) fn new(expected: usize) -> Recorder {
        Recorder {
            samples: Vec::with_capacity(expected.min(4_000_000)),
            errors: ErrorCounts::default(),
            first_errors: Vec::new(),
            last_answer: None,
            sessions_opened: 0,
            inflight: 0,
            peak_inflight: 0,
        }
    }

    pub(super) fn started(&mut self) {
        self.inflight += 1;
        self.peak_inflight = self.peak_inflight.max(self.inflight);
    }

    /// Records a measured call's outcome.
    pub(super) fn finished(
        &mut self,
        tool: u32,
        write: bool,
        timing: Timing,
        outcome: &Result<(), Failure>,
    ) {
        self.inflight = self.inflight.saturating_sub(1);
        self.last_answer = Some(
            self.last_answer
                .map_or(timing.answered, |last| last.max(timing.answered)),
        );
        if let Err(failure) = outcome {
            self.failed(failure);
        }
        self.samples.push(Sample {
            tool,
            write,
            ok: outcome.is_ok(),
            latency_ns: nanos(timing.answered.saturating_duration_since(timing.intended)),
            service_ns: nanos(timing.answered.saturating_duration_since(timing.sent)),
            lag_ns: nanos(timing.sent.saturating_duration_since(timing.intended)),
        });
    }

    /// A call that ended outside the measured window: only its inflight count changes.
    pub(super) fn unmeasured(&mut self) {
        self.inflight = self.inflight.saturating_sub(1);
    }

    fn failed(&mut self, failure: &Failure) {
        self.errors.add(failure.kind);
        if self.first_errors.len() < KEPT_ERRORS {
            let kind = serde_json::to_value(failure.kind)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default();
            self.first_errors
                .push(format!("{kind}: {}", failure.message));
        }
    }

    /// Summarizes the run. `tools` names the tool indexes the samples carry; `measure_from`
    /// is the end of the warm-up.
    pub(super) fn into_report(
        self,
        header: ReportHeader,
        tools: &[String],
        measure_from: Instant,
    ) -> LoadReport {
        let window = self.last_answer.map_or(Duration::ZERO, |last| {
            last.saturating_duration_since(measure_from)
        });
        let calls = self.samples.len() as u64;
        let ok = self.samples.iter().filter(|sample| sample.ok).count() as u64;
        let mut ok_latency: Vec<u64> = Vec::with_capacity(self.samples.len());
        let mut service: Vec<u64> = Vec::with_capacity(self.samples.len());
        let mut lag: Vec<u64> = Vec::with_capacity(self.samples.len());
        let mut by_tool: Vec<(GroupReport, Vec<u64>)> =
            vec![(GroupReport::default(), Vec::new()); tools.len()];
        let mut by_access: [(GroupReport, Vec<u64>); 2] = Default::default();
        for sample in &self.samples {
            lag.push(sample.lag_ns);
            let groups = [
                by_tool.get_mut(sample.tool as usize),
                Some(&mut by_access[usize::from(sample.write)]),
            ];
            for (group, latencies) in groups.into_iter().flatten() {
                group.calls += 1;
                if sample.ok {
                    group.ok += 1;
                    latencies.push(sample.latency_ns);
                } else {
                    group.errors += 1;
                }
            }
            if sample.ok {
                ok_latency.push(sample.latency_ns);
                service.push(sample.service_ns);
            }
        }
        let finish = |(mut group, mut latencies): (GroupReport, Vec<u64>)| {
            group.latency = Latency::from_nanos(&mut latencies);
            group
        };
        let [reads, writes] = by_access.map(finish);
        let tools = tools
            .iter()
            .cloned()
            .zip(by_tool.into_iter().map(finish))
            .filter(|(_, group)| group.calls > 0)
            .collect();
        let window_s = window.as_secs_f64();
        LoadReport {
            target: header.target,
            source: header.source,
            mode: header.mode,
            warmup_s: header.warmup.as_secs_f64(),
            window_s: (window_s * 1000.0).round() / 1000.0,
            calls,
            ok,
            failed: calls - ok,
            success_rate: if calls == 0 {
                1.0
            } else {
                ok as f64 / calls as f64
            },
            throughput: if window_s > 0.0 {
                round1(ok as f64 / window_s)
            } else {
                0.0
            },
            latency: Latency::from_nanos(&mut ok_latency),
            service_time: Latency::from_nanos(&mut service),
            send_lag: Latency::from_nanos(&mut lag),
            errors: self.errors,
            first_errors: self.first_errors,
            reads,
            writes,
            tools,
            cache: header.cache,
            sessions_opened: self.sessions_opened,
            peak_inflight: self.peak_inflight,
        }
    }
}

/// The parts of a report that do not come from the calls.
#[derive(Debug, Clone)]
pub(super) struct ReportHeader {
    pub target: String,
    pub source: String,
    pub mode: ModeReport,
    pub warmup: Duration,
    pub cache: Option<CacheDelta>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<u64> = (1..=1000).map(|n| n * 1000).collect();
        let latency = Latency::from_nanos(&mut samples);
        assert_eq!(latency.p50_us, 500.0);
        assert_eq!(latency.p99_us, 990.0);
        assert_eq!(latency.max_us, 1000.0);
        assert_eq!(latency.count, 1000);
    }

    #[test]
    fn outcomes_are_grouped_by_tool_and_access() {
        let mut recorder = Recorder::new(4);
        let start = Instant::now();
        let timing = Timing {
            intended: start,
            sent: start,
            answered: start + Duration::from_millis(2),
        };
        recorder.started();
        recorder.finished(0, false, timing, &Ok(()));
        recorder.started();
        let failure = Failure {
            kind: ErrorKind::Tool,
            message: "boom".into(),
        };
        recorder.finished(1, true, timing, &Err(failure));
        let header = ReportHeader {
            target: "t".into(),
            source: "s".into(),
            mode: ModeReport::Closed { connections: 1 },
            warmup: Duration::ZERO,
            cache: None,
        };
        let report = recorder.into_report(header, &["a".into(), "b".into()], start);
        assert_eq!((report.calls, report.ok, report.errors.tool), (2, 1, 1));
        assert_eq!((report.reads.ok, report.writes.errors), (1, 1));
        assert_eq!(report.tools.len(), 2);
        assert_eq!(report.first_errors, vec!["tool: boom".to_owned()]);
        assert!(!report.meets(1.0));
    }
}
