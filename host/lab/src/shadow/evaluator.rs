//! The shadow evaluator's state, owned by its thread: the live calls turned into events
//! (a [`TraceBuilder`] and a [`History`] that only ever see the past), one [`Replayer`]
//! per row, and what the live cache itself did. Every row replays the same events, in
//! arrival order, with the same code `bench policies` uses offline.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::candidates::PRODUCTION;
use super::metrics::ShadowMetrics;
use crate::LabError;
use crate::loaded::{Event, TraceBuilder};
use crate::replay::sim::SimLimits;
use crate::replay::{Context, History, Replayer, Setting, Tally};
use crate::results::{
    LabReport, PolicyRun, REPORT_VERSION, ReplayMetrics, ReplaySettings, RunKind, TraceSummary,
};
use mcp_bridge_plugin_host::WasmPolicy;
use mcp_bridge_policy::{BuiltinPolicy, BuiltinSettings, PolicyChain};
use mcp_bridge_trace::{DigestMemo, RecordedCall};

/// Latency and staleness samples each row keeps for its percentiles: the latest ones.
const SAMPLES_KEPT: usize = 65_536;
/// Write times kept per server to date a stale hit's staleness.
const WRITES_KEPT: usize = 4096;
/// How often (in calls) a row times its policy call.
const SAMPLE_EVERY: u64 = 8;
/// The bytes of names, arguments and principals a window keeps; past this a new window
/// starts, as past `max_keys`.
const MAX_WINDOW_STRING_BYTES: usize = 64 << 20;

/// Whether a row is still being evaluated.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RowState {
    Evaluating,
    /// Its plugin faulted often enough to be quarantined (in the shadow only), or the
    /// row panicked; its numbers stop where they were.
    Quarantined(String),
    /// Its plugin did not load; it has no numbers.
    Failed(String),
}

/// One row of the comparison: a candidate, or the production chain simulated.
pub(super) struct Row {
    pub name: String,
    pub kind: RunKind,
    pub source: String,
    chain: PolicyChain,
    replayer: Replayer,
    /// The row's plugin bindings, whose fault records quarantine it: any quarantine, a
    /// single tool's included, stops the row, as its numbers no longer judge the
    /// candidate.
    plugins: Vec<Arc<WasmPolicy>>,
    pub state: RowState,
    published: (ReplayMetrics, u64),
}

impl Row {
    pub(super) fn new(
        name: &str,
        kind: RunKind,
        source: String,
        chain: PolicyChain,
        plugins: Vec<Arc<WasmPolicy>>,
    ) -> Row {
        // Sized when the evaluator adopts the row.
        let unsized_setting = Setting {
            limits: SimLimits::unbounded(),
            ttl_scale: 1.0,
        };
        let replayer = Replayer::new(0, 0, unsized_setting, &chain);
        Row {
            name: name.to_owned(),
            kind,
            source,
            chain,
            replayer,
            plugins,
            state: RowState::Evaluating,
            published: (ReplayMetrics::default(), 0),
        }
    }

    /// A row whose policy could not load.
    pub(super) fn failed(name: &str, kind: RunKind, source: &str, error: LabError) -> Row {
        tracing::error!(row = %name, %error, "a shadow row's policy did not load; the row is skipped and serving goes on");
        let mut row = Row::new(
            name,
            kind,
            source.to_owned(),
            PolicyChain::new(
                Vec::new(),
                Arc::new(BuiltinPolicy::new(BuiltinSettings::default())),
            ),
            Vec::new(),
        );
        row.state = RowState::Failed(error.to_string());
        row
    }

    /// Why the row stopped, if it did.
    fn stopped(&self) -> Option<(&'static str, &str)> {
        match &self.state {
            RowState::Evaluating => None,
            RowState::Quarantined(reason) => Some(("quarantined", reason)),
            RowState::Failed(reason) => Some(("failed", reason)),
        }
    }
}

/// Everything the shadow thread keeps.
pub(super) struct Evaluator {
    builder: TraceBuilder,
    history: History,
    digests: DigestMemo,
    max_keys: u32,
    setting: Setting,
    hit_latency_us: f64,
    /// What the live cache did, from the calls' own records.
    live: Tally,
    live_published: (ReplayMetrics, u64),
    pub rows: Vec<Row>,
    servers: HashSet<String>,
    pub calls: u64,
    pub resets: u64,
    resets_published: u64,
    /// Records that could not become events (cannot happen for the router's own).
    pub unusable: u64,
    /// The evaluator's clock: calls reach it as they finish, not as they arrive, and a
    /// truth-sampled hit arrives once its sample is back, so a call's time is never
    /// earlier than the latest one seen.
    clock_us: u64,
    first_t_us: Option<u64>,
    pub started_at: u64,
}

impl Evaluator {
    /// `production` is the production chain's row; the candidates' follow it.
    pub(super) fn new(
        production: Row,
        candidates: Vec<Row>,
        max_keys: u32,
        limits: SimLimits,
        hit_latency_us: f64,
    ) -> Evaluator {
        let setting = Setting {
            limits,
            ttl_scale: 1.0,
        };
        let mut rows = vec![production];
        rows.extend(candidates);
        let shaped_from = shaped_from(max_keys);
        for row in &mut rows {
            row.replayer = Replayer::new(0, shaped_from, setting, &row.chain);
        }
        Evaluator {
            builder: TraceBuilder::new("live"),
            history: History::default(),
            digests: DigestMemo::default(),
            max_keys,
            setting,
            hit_latency_us,
            live: Tally::default(),
            live_published: (ReplayMetrics::default(), 0),
            rows,
            servers: HashSet::new(),
            calls: 0,
            resets: 0,
            resets_published: 0,
            unusable: 0,
            clock_us: 0,
            first_t_us: None,
            started_at: now_seconds(),
        }
    }

    /// Replays one answered call against every row still evaluating.
    pub(super) fn process(&mut self, call: RecordedCall) {
        if self.builder.keys() >= self.max_keys
            || self.builder.interned_bytes() >= MAX_WINDOW_STRING_BYTES
            || self
                .rows
                .iter()
                .any(|row| row.replayer.shaped_keys(shaped_from(self.max_keys)) >= self.max_keys)
        {
            self.new_window();
        }
        let record = call.to_record(&mut self.digests);
        let Ok(mut event) = self.builder.event(&record, 0) else {
            self.unusable += 1;
            return;
        };
        // A sampled hit's truth is this event's only: a sample can come back after later
        // calls were seen, so it must not stand for what the key holds now.
        if let Some(truth) = call.truth
            && !event.write
        {
            event.truth = Some(truth);
        }
        self.clock_us = self.clock_us.max(event.t_us);
        event.t_us = self.clock_us;
        if !self.servers.contains(record.server.as_str()) {
            self.servers.insert(record.server);
        }
        self.first_t_us.get_or_insert(event.t_us);
        self.history.note(&self.builder.trace, &event);
        self.observe_live(&event);
        let sampled = self.calls.is_multiple_of(SAMPLE_EVERY);
        self.calls += 1;
        let context = Context {
            trace: &self.builder.trace,
            history: &self.history,
            hit_latency_us: self.hit_latency_us,
        };
        for row in self
            .rows
            .iter_mut()
            .filter(|row| row.state == RowState::Evaluating)
        {
            let (replayer, chain) = (&mut row.replayer, &row.chain);
            // A row that panics (a bug in the lab, or in a policy) stops alone; the
            // thread, the other rows and production go on.
            let stepped = std::panic::catch_unwind(AssertUnwindSafe(|| {
                replayer.step(&context, chain, &event, sampled);
            }));
            if let Err(panic) = stepped {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                tracing::error!(row = %row.name, message, "a shadow row panicked; it stops, serving goes on");
                row.state = RowState::Quarantined(format!("the replay panicked: {message}"));
            }
        }
    }

    /// What the live cache did with the call: a recorded hit is a hit, stale only when
    /// a truth sample (or an earlier answer with no write since) says so.
    fn observe_live(&mut self, event: &Event) {
        let tally = &mut self.live;
        if event.write {
            tally.metrics.writes += 1;
            tally.backend_call(event.latency_us);
            return;
        }
        tally.metrics.reads += 1;
        if !event.hit {
            tally.metrics.misses += 1;
            tally.backend_call(event.latency_us);
            return;
        }
        match event.truth {
            None => tally.metrics.unverified_hits += 1,
            Some(truth) if truth != event.digest => tally.metrics.stale_hits += 1,
            Some(_) => {}
        }
        tally.hit(event.latency_us, self.hit_latency_us);
    }

    /// More distinct keys than `max_keys` (or more string bytes than a window keeps): every
    /// simulated cache starts empty again; the counts go on.
    fn new_window(&mut self) {
        self.builder = TraceBuilder::new("live");
        self.history = History::default();
        for row in &mut self.rows {
            row.replayer.forget_keys(shaped_from(self.max_keys));
        }
        self.resets += 1;
    }

    /// Bounds the samples, quarantines rows whose plugins the shadow quarantined, and
    /// adds what each row counted since the last call to the metrics.
    pub(super) fn publish(&mut self, metrics: &ShadowMetrics) {
        self.history.forget_writes_beyond(WRITES_KEPT);
        self.live.forget_samples_beyond(SAMPLES_KEPT);
        metrics
            .window_resets_total
            .inc_by(self.resets - self.resets_published);
        self.resets_published = self.resets;
        let now = (self.live.metrics.clone(), self.live.saved_us);
        metrics.publish(
            PRODUCTION,
            &self.live_published.0,
            &now.0,
            (self.live_published.1, now.1),
        );
        self.live_published = now;
        for row in &mut self.rows {
            row.replayer.forget_samples_beyond(SAMPLES_KEPT);
            if row.state == RowState::Evaluating
                && let Some(reason) = row
                    .plugins
                    .iter()
                    .find_map(|plugin| plugin.health().any_quarantine_reason())
            {
                tracing::warn!(row = %row.name, %reason, "a shadow row's plugin is quarantined in the shadow only; production is not affected, and the row stops until a restart");
                row.state = RowState::Quarantined(reason);
            }
            if row.stopped().is_some() {
                metrics
                    .quarantined
                    .with_label_values(&[row.name.as_str()])
                    .set(1);
            }
            let now = (row.replayer.counts().clone(), row.replayer.saved_us());
            metrics.publish(
                &row.name,
                &row.published.0,
                &now.0,
                (row.published.1, now.1),
            );
            row.published = now;
        }
    }

    /// The comparison so far as the offline lab's report: the live cache first, then the
    /// production chain simulated, then each candidate.
    pub(super) fn report(&self) -> LabReport {
        let live = self.live.clone().finish(None);
        let mut policies = vec![PolicyRun {
            name: PRODUCTION.to_owned(),
            kind: RunKind::Live,
            source: "the live cache".to_owned(),
            metrics: live.clone(),
            events_per_second: 0.0,
        }];
        for row in &self.rows {
            let source = match row.stopped() {
                Some((state, reason)) => {
                    format!("{} ({state} in the shadow: {reason})", row.source)
                }
                None => row.source.clone(),
            };
            policies.push(PolicyRun {
                name: row.name.clone(),
                kind: row.kind,
                source,
                metrics: row.replayer.metrics(),
                events_per_second: 0.0,
            });
        }
        let duration_ms = self.first_t_us.map_or(0.0, |first| {
            self.clock_us.saturating_sub(first) as f64 / 1e3
        });
        LabReport {
            version: REPORT_VERSION,
            created_at: now_seconds(),
            trace: TraceSummary {
                source: format!("live calls since {}", self.started_at),
                events: self.calls,
                reads: live.reads,
                writes: live.writes,
                servers: self.servers.len() as u64,
                working_set_entries: u64::from(self.builder.keys()),
                working_set_bytes: 0,
                duration_ms,
                unverifiable_reads: live.unverified_hits,
            },
            settings: ReplaySettings {
                cache_bytes: self.setting.limits.max_bytes,
                max_entries: self.setting.limits.max_entries,
                size_fraction: 0.0,
                hit_latency_us: self.hit_latency_us,
                size_fractions: Vec::new(),
                ttl_scales: Vec::new(),
                eviction: crate::policies::eviction_text(self.setting.limits),
            },
            policies,
            alone: Vec::new(),
            bounds: Vec::new(),
            size_sweep: Vec::new(),
            ttl_sweep: Vec::new(),
            baseline: None,
            shadow: None,
        }
    }

    /// `GET /admin/lab`'s view of the rows, from a report of them.
    pub(super) fn rows_status(&self, report: &LabReport) -> Value {
        let rows: Vec<Value> = report
            .policies
            .iter()
            .map(|run| {
                let stopped = self
                    .rows
                    .iter()
                    .find(|row| row.name == run.name)
                    .and_then(Row::stopped);
                let metrics = &run.metrics;
                json!({
                    "name": run.name,
                    "kind": run.kind,
                    "source": run.source,
                    "state": stopped.map_or("evaluating", |(state, _)| state),
                    "reason": stopped.map(|(_, reason)| reason),
                    "reads": metrics.reads,
                    "hits": metrics.hits,
                    "hit_ratio": metrics.hit_ratio,
                    "stale_hits": metrics.stale_hits,
                    "stale_hit_ratio": metrics.stale_hit_ratio,
                    "unverified_hits": metrics.unverified_hits,
                    "backend_calls": metrics.backend_calls,
                    "backend_time_saved_ms": metrics.backend_time_saved_ms,
                    "final_bytes": metrics.final_bytes,
                    "peak_bytes": metrics.peak_bytes,
                    "decision_ns": metrics.decision_ns,
                    "shaped_by_plugin": metrics.shaped_by_plugin,
                    "shaped_by_config": metrics.shaped_by_config,
                    "shaped_by_default": metrics.shaped_by_default,
                })
            })
            .collect();
        Value::Array(rows)
    }
}

/// Shaped keys are numbered past every key a window may hold (an event adds two).
fn shaped_from(max_keys: u32) -> u32 {
    max_keys.saturating_add(2)
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
