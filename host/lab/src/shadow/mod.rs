//! Shadow evaluation (`[lab.shadow]`): candidate cache policies judged on live traffic.
//!
//! The router hands every answered call to [`Shadow`] (a [`CallTap`]) as it hands the
//! trace recorder one: into a bounded queue, never waiting, dropping and counting when
//! the evaluator falls behind, so a call is never slowed. The evaluator's thread replays
//! each call against every candidate in a simulated cache of its own, with the replay
//! `bench policies` uses, beside what the live cache did and the production chain in a
//! simulated cache. `/admin/lab` shows the rows, `/admin/lab/report.json` exports them as
//! the offline lab's report, and `/admin/lab/page` renders them as its HTML.
//!
//! A candidate plugin runs in the shadow's own instances, with the production limits:
//! when it faults often enough to be quarantined, only its shadow row stops.

mod candidates;
mod evaluator;
mod metrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::LabError;
use crate::results::{LabReport, ShadowSummary};
use evaluator::Evaluator;
use mcp_bridge_config::{PluginsConfig, ShadowConfig};
use mcp_bridge_metrics::Registry;
use mcp_bridge_plugin_host::PluginEngine;
use mcp_bridge_policy::BuiltinSettings;
use mcp_bridge_trace::{CallTap, RecordedCall, TruthSampler};
pub use metrics::ShadowMetrics;

/// How often the evaluator drains its queue. It never blocks in `recv`, so a call handing
/// over its record never has to wake it (as the trace writer does).
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// How many calls the evaluator replays between looks at the clock.
const BATCH: usize = 256;
/// How often the metrics and the admin views are brought up to date.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// The argument and name bytes the queue may hold at once; past this a call is dropped
/// from the shadow like one that finds the queue full.
const MAX_QUEUED_BYTES: usize = 32 << 20;

/// What the shadow needs from the rest of the bridge.
pub struct ShadowSetup<'a> {
    pub config: &'a ShadowConfig,
    pub plugins: &'a PluginsConfig,
    /// The built-in policy's settings from the config, which every row's chain ends with.
    pub builtin: BuiltinSettings,
    /// The production cache's bounds and eviction: each row's simulated cache gets the
    /// same.
    pub limits: crate::replay::sim::SimLimits,
    /// What a hit costs, for the latency numbers.
    pub hit_latency: Duration,
    pub registry: &'a Registry,
}

/// What the admin views read: made by the evaluator's thread at each publish, so a request
/// never waits for the evaluator (which may be deciding a batch with slow plugins).
struct Snapshot {
    report: LabReport,
    rows: Value,
    calls: u64,
    window_resets: u64,
    unusable: u64,
    started_at: u64,
}

/// The shadow evaluator: the router's tap and the admin API's view.
pub struct Shadow {
    sender: Mutex<Option<SyncSender<RecordedCall>>>,
    snapshot: Arc<Mutex<Arc<Snapshot>>>,
    metrics: Arc<ShadowMetrics>,
    sampler: Option<TruthSampler>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    queued_bytes: Arc<AtomicUsize>,
    queue: usize,
    truth_samples_per_second: f64,
    /// The engine's epoch ticker must outlive every plugin call the rows make.
    _engine: PluginEngine,
}

impl Shadow {
    /// Loads every row's plugins into the shadow's own instances and starts the
    /// evaluator's thread. A plugin that cannot load fails its row, not the bridge.
    pub fn start(setup: ShadowSetup<'_>) -> Result<Arc<Shadow>, LabError> {
        let engine =
            PluginEngine::new(setup.plugins.compiled_cache_dir.clone()).map_err(|error| {
                LabError::Policy {
                    name: "shadow".to_owned(),
                    message: error.to_string(),
                }
            })?;
        let loader = candidates::Loader {
            engine: &engine,
            plugins: setup.plugins,
            builtin: &setup.builtin,
        };
        let metrics = Arc::new(ShadowMetrics::register(setup.registry));
        let config = setup.config;
        let evaluator = Evaluator::new(
            loader.production(),
            loader.candidates(config),
            config.max_keys,
            setup.limits,
            setup.hit_latency.as_secs_f64() * 1e6,
        );
        let snapshot = Arc::new(Mutex::new(Arc::new(snapshot_of(&evaluator))));
        let (sender, receiver) = std::sync::mpsc::sync_channel(config.queue);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let worker = {
            let snapshot = snapshot.clone();
            let metrics = metrics.clone();
            let queued_bytes = queued_bytes.clone();
            std::thread::Builder::new()
                .name("shadow-lab".to_owned())
                .spawn(move || run(evaluator, &receiver, &snapshot, &metrics, &queued_bytes))
                .map_err(|source| LabError::Policy {
                    name: "shadow".to_owned(),
                    message: format!("cannot start the evaluator's thread: {source}"),
                })?
        };
        let sampler = config.samples_truth().then(|| {
            TruthSampler::new(
                config.truth_samples_per_second,
                config.truth_max_in_flight,
                config.truth_timeout,
                metrics.truth_samples_total.clone(),
            )
        });
        tracing::info!(
            candidates = config.candidates.len(),
            truth_samples_per_second = config.truth_samples_per_second,
            "shadow evaluation on: every answered call is replayed against the candidates off the request path"
        );
        Ok(Arc::new(Shadow {
            sender: Mutex::new(Some(sender)),
            snapshot,
            metrics,
            sampler,
            worker: Mutex::new(Some(worker)),
            queued_bytes,
            queue: config.queue,
            truth_samples_per_second: config.truth_samples_per_second,
            _engine: engine,
        }))
    }

    /// `GET /admin/lab`: the counters now, the rows as of the last publish (at most a
    /// second old).
    pub fn status(&self) -> Value {
        let snapshot = self.snapshot.lock().clone();
        let truth = |result: &str| self.metrics.truth_samples(result);
        json!({
            "enabled": true,
            "calls": snapshot.calls,
            "dropped": self.metrics.dropped_total.get(),
            "queue": {
                "depth": self.metrics.queue_depth.get(),
                "capacity": self.queue,
            },
            "window_resets": snapshot.window_resets,
            "unusable_records": snapshot.unusable,
            "truth_sampling": {
                "per_second": self.truth_samples_per_second,
                "fresh": truth("fresh"),
                "stale": truth("stale"),
                "failed": truth("failed"),
                "skipped": truth("skipped"),
            },
            "rows": snapshot.rows,
        })
    }

    /// The comparison as of the last publish, as `bench policies` writes `report.json`,
    /// with how the shadow saw the calls.
    pub fn report(&self) -> LabReport {
        let snapshot = self.snapshot.lock().clone();
        let truth = |result: &str| self.metrics.truth_samples(result);
        let mut report = snapshot.report.clone();
        report.shadow = Some(ShadowSummary {
            since: snapshot.started_at,
            dropped: self.metrics.dropped_total.get(),
            window_resets: snapshot.window_resets,
            truth_fresh: truth("fresh"),
            truth_stale: truth("stale"),
            truth_failed: truth("failed"),
            truth_skipped: truth("skipped"),
        });
        report
    }

    /// The comparison as a self-contained HTML page that reloads itself every
    /// `refresh_seconds`.
    pub fn page(&self, refresh_seconds: u32) -> String {
        let html = crate::report::html::render(&self.report());
        let refresh = format!("<meta http-equiv=\"refresh\" content=\"{refresh_seconds}\">");
        match html.find("<head>") {
            Some(at) => {
                let at = at + "<head>".len();
                format!("{}{refresh}{}", &html[..at], &html[at..])
            }
            None => html,
        }
    }

    /// Stops the evaluator after it has replayed what is queued.
    pub fn close(&self) {
        self.sender.lock().take();
        if let Some(worker) = self.worker.lock().take() {
            let _ = worker.join();
        }
    }
}

impl CallTap for Shadow {
    fn submit(&self, call: RecordedCall) {
        let sender = self.sender.lock();
        let Some(sender) = sender.as_ref() else {
            return;
        };
        let bytes = queued_bytes(&call);
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        // Counted before it is sent, so the evaluator never takes it below zero.
        self.metrics.queue_depth.inc();
        if queued + bytes <= MAX_QUEUED_BYTES && sender.try_send(call).is_ok() {
            return;
        }
        self.metrics.queue_depth.dec();
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.metrics.dropped_total.inc();
        let dropped = self.metrics.dropped_total.get();
        if dropped.is_power_of_two() {
            tracing::warn!(
                dropped,
                "the shadow evaluator cannot keep up; dropped calls from the shadow (the calls themselves were answered)"
            );
        }
    }

    fn truth_sampler(&self) -> Option<&TruthSampler> {
        self.sampler.as_ref()
    }
}

/// The admin views of the evaluator now.
fn snapshot_of(evaluator: &Evaluator) -> Snapshot {
    let report = evaluator.report();
    Snapshot {
        rows: evaluator.rows_status(&report),
        report,
        calls: evaluator.calls,
        window_resets: evaluator.resets,
        unusable: evaluator.unusable,
        started_at: evaluator.started_at,
    }
}

/// The evaluator's thread: drains the queue in batches, publishes the metrics and the
/// admin views now and then, sleeps when there is nothing to do, and ends when the queue
/// is closed.
fn run(
    mut evaluator: Evaluator,
    receiver: &Receiver<RecordedCall>,
    snapshot: &Mutex<Arc<Snapshot>>,
    metrics: &ShadowMetrics,
    queued: &AtomicUsize,
) {
    let mut published = Instant::now();
    let mut changed = false;
    loop {
        let mut drained = 0;
        let mut disconnected = false;
        while drained < BATCH {
            match receiver.try_recv() {
                Ok(call) => {
                    metrics.queue_depth.dec();
                    queued.fetch_sub(queued_bytes(&call), Ordering::AcqRel);
                    metrics.calls_total.inc();
                    evaluator.process(call);
                    drained += 1;
                    changed = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if changed && (disconnected || published.elapsed() >= PUBLISH_EVERY) {
            evaluator.publish(metrics);
            *snapshot.lock() = Arc::new(snapshot_of(&evaluator));
            published = Instant::now();
            changed = false;
        }
        if disconnected {
            return;
        }
        if drained < BATCH {
            std::thread::sleep(DRAIN_EVERY);
        }
    }
}

/// What a queued call holds in memory beyond its fixed size: its arguments and name.
fn queued_bytes(call: &RecordedCall) -> usize {
    call.arguments_text.as_ref().map_or(0, |text| text.len()) + call.name.len()
}

#[cfg(test)]
mod tests;
