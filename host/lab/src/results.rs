//! The policy lab's report: what one `bench policies` run measured, as plain data that
//! the terminal table, the JSON, the CSV and the HTML report are all written from, and
//! that a later run reads back as its `--baseline`.

use serde::{Deserialize, Serialize};

/// The report format's version; a baseline of another version is refused. Version 2
/// measures the cache in bytes (`cache_bytes`) where version 1 counted entries.
pub const REPORT_VERSION: u32 = 2;

/// Everything one `bench policies` run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabReport {
    pub version: u32,
    /// When the run finished, in seconds since the Unix epoch.
    pub created_at: u64,
    pub trace: TraceSummary,
    pub settings: ReplaySettings,
    /// Each policy at the base setting (`settings.cache_bytes`, TTL scale 1), as it would
    /// be deployed: chained before the built-in policy of the given config.
    pub policies: Vec<PolicyRun>,
    /// Each policy alone at the base setting: chained before the built-in policy's defaults
    /// only (no `[cache.ttl]` rows, no invalidation rules), so that what the policy itself
    /// does shows even where the config's rules decide everything. Absent in older reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alone: Vec<PolicyRun>,
    /// The bounds at the base setting: no cache, perfect invalidation, Belady.
    pub bounds: Vec<PolicyRun>,
    /// Every policy and Belady at each cache size of `settings.size_fractions`.
    pub size_sweep: Vec<SweepPoint>,
    /// Every policy at each TTL scale of `settings.ttl_scales`, at the base size.
    pub ttl_sweep: Vec<SweepPoint>,
    /// The change against `--baseline`, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineDiff>,
    /// Present when the report comes from shadow evaluation on live calls
    /// (`/admin/lab/report.json`) rather than a replay of a trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSummary>,
}

/// How a shadow evaluation saw the live calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowSummary {
    /// When the evaluation started, in seconds since the Unix epoch.
    pub since: u64,
    /// Calls dropped because the evaluator fell behind (the calls were answered).
    pub dropped: u64,
    /// Times every simulated cache was emptied because the key limit was reached.
    pub window_resets: u64,
    /// Truth samples by result: fresh, stale, failed (no usable answer), skipped.
    pub truth_fresh: u64,
    pub truth_stale: u64,
    pub truth_failed: u64,
    pub truth_skipped: u64,
}

/// What was replayed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSummary {
    /// The trace file, or `workload:NAME (seed N)` for a generated one.
    pub source: String,
    pub events: u64,
    pub reads: u64,
    pub writes: u64,
    /// Distinct servers in the trace.
    pub servers: u64,
    /// Distinct read keys (server, method, name, arguments, partition): the working set.
    pub working_set_entries: u64,
    /// The sum of the largest result size seen for each read key.
    pub working_set_bytes: u64,
    /// Virtual time from the first event to the last.
    pub duration_ms: f64,
    /// Reads whose true result at that moment the trace cannot tell (a recorded hit
    /// after a write on its server); their hits count as neither fresh nor stale.
    pub unverifiable_reads: u64,
}

/// How the replay was run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySettings {
    /// The cache's byte budget at the base setting (`[cache] max_bytes`).
    pub cache_bytes: u64,
    /// The most entries the cache holds (`[cache] max_entries`): every entry weighs at
    /// least `cache_bytes / max_entries`, as in `serve`.
    pub max_entries: u64,
    /// The base budget as a fraction of the working set's bytes.
    pub size_fraction: f64,
    /// What a hit costs, added to every hit's latency.
    pub hit_latency_us: f64,
    /// The size sweep's budgets, as fractions of the working set's bytes.
    pub size_fractions: Vec<f64>,
    /// The TTL sweep's factors (every TTL a policy answers is multiplied by one).
    pub ttl_scales: Vec<f64>,
    /// How entries are admitted and evicted when the cache is full (`[cache] eviction`).
    pub eviction: String,
}

/// Whether a row is a policy under test or a bound beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// The built-in policy of the given config.
    Builtin,
    /// A WASM component policy, chained before the built-in one as `serve` does.
    Wasm,
    /// A bound: no cache, perfect invalidation or Belady's optimal.
    Bound,
    /// What the live cache did (the shadow evaluator's first row).
    Live,
}

/// One policy (or bound) replayed over the whole trace at one setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRun {
    /// The name shown in tables and charts (`builtin`, the file stem, or the bound).
    pub name: String,
    pub kind: RunKind,
    /// `builtin`, the plugin's path, or how the bound is computed.
    pub source: String,
    pub metrics: ReplayMetrics,
    /// Replay speed: trace events per second of this policy's own replay thread.
    pub events_per_second: f64,
}

/// What one replay measured. Ratios are over reads (the calls a cache could answer).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayMetrics {
    pub reads: u64,
    pub writes: u64,
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads the policy let be cached but the cache did not have (or had expired).
    pub misses: u64,
    /// Reads the policy did not cache.
    pub bypasses: u64,
    /// Hits whose cached result differs from what the backend would have answered.
    pub stale_hits: u64,
    /// Hits whose truth the trace cannot tell.
    pub unverified_hits: u64,
    /// hits / reads.
    pub hit_ratio: f64,
    /// stale_hits / reads: the share of reads answered with a result that was no
    /// longer true.
    pub stale_hit_ratio: f64,
    /// stale_hits / hits.
    pub stale_share_of_hits: f64,
    /// How long a stale hit's result had been untrue when it was served.
    pub staleness_p50_ms: f64,
    pub staleness_p99_ms: f64,
    /// Calls that reached the backend (misses, bypasses and writes).
    pub backend_calls: u64,
    /// Backend calls a cache avoided: the hits.
    pub backend_calls_saved: u64,
    /// Backend time spent, from the recorded latencies.
    pub backend_time_ms: f64,
    /// Backend time the hits avoided.
    pub backend_time_saved_ms: f64,
    /// Per call (reads and writes): the backend latency on a miss, the hit cost on a hit.
    pub latency_mean_ms: f64,
    pub latency_p99_ms: f64,
    /// The most entries and bytes the cache held at once, and what it held at the end.
    pub peak_entries: u64,
    pub peak_bytes: u64,
    pub final_entries: u64,
    pub final_bytes: u64,
    /// Entries dropped to make room, and by invalidations.
    pub evictions: u64,
    pub invalidated: u64,
    /// Policy calls (decide, TTL, invalidations) made, and their mean cost. A decision
    /// reused for a repeated call of a pure policy is no call (`decisions_reused`).
    pub policy_calls: u64,
    pub decision_ns: f64,
    /// Calls whose fate a plugin shaped (its decision, its TTL table or its invalidation
    /// rules), the config's rules did (a `[cache.ttl]` row or a `[[cache.invalidate]]`
    /// rule, which join every chain), or the built-in defaults did (annotations, the
    /// default TTL, dropping the whole server after a write). Absent in older reports.
    #[serde(default)]
    pub shaped_by_plugin: u64,
    #[serde(default)]
    pub shaped_by_config: u64,
    #[serde(default)]
    pub shaped_by_default: u64,
    /// Reads answered with the decision a pure chain gave the same call earlier, without
    /// asking it again. Absent in older reports.
    #[serde(default)]
    pub decisions_reused: u64,
}

/// One policy at one sweep setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepPoint {
    pub policy: String,
    pub kind: RunKind,
    pub size_fraction: f64,
    /// The byte budget at this point.
    pub cache_bytes: u64,
    pub ttl_scale: f64,
    pub metrics: ReplayMetrics,
}

/// How this run compares with a stored one, policy by policy (matched by name).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineDiff {
    /// The baseline report's path and when it was made.
    pub source: String,
    pub created_at: u64,
    pub rows: Vec<DiffRow>,
    /// Policies in only one of the two runs.
    pub only_in_baseline: Vec<String>,
    pub only_in_this_run: Vec<String>,
}

/// One policy's headline numbers then and now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffRow {
    pub policy: String,
    pub hit_ratio: Change,
    pub stale_hit_ratio: Change,
    pub backend_time_saved_ms: Change,
    pub latency_p99_ms: Change,
    pub decision_ns: Change,
}

/// A number in the baseline and in this run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub before: f64,
    pub after: f64,
}

impl Change {
    pub fn delta(&self) -> f64 {
        self.after - self.before
    }
}
