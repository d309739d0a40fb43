//! Closed-loop load: a fixed number of keep-alive connections, each sending its next call as soon
//! as the previous one is answered, for a warm-up and then a measured window.
//!
//! A load test is made of rounds ([`run_round`]) so that two targets can take turns: background
//! work on the machine then slows both alike instead of whichever ran during it.
//! [`LoadReport::from_rounds`] adds the rounds of one target up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};

use mcp_bridge_test_support::bench::BenchMode;
use mcp_bridge_test_support::client::Session;
use mcp_bridge_test_support::{Bridge, Target, metric};

use super::stats::{CpuProbe, Summary, round, round2};

/// The demo server's tool every measured call invokes: a read-only tool with a small result.
pub(crate) const TOOL: &str = "get_today_metrics";

/// The `params` of every measured `tools/call`: [`TOOL`] with no arguments.
pub(crate) const CALL_PARAMS: &str = r#"{"name":"get_today_metrics","arguments":{}}"#;

/// A CPU-time probe with its JSON key and its label in the table.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub key: &'static str,
    pub label: String,
    pub probe: CpuProbe,
}

impl Probe {
    pub(crate) fn new(key: &'static str, label: impl Into<String>, probe: CpuProbe) -> Self {
        Self {
            key,
            label: label.into(),
            probe,
        }
    }
}

/// What one round measured.
pub(crate) struct Round {
    window: Duration,
    latencies: Vec<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// CPU time used inside the window, in the order of the probes.
    cpu: Vec<Option<Duration>>,
}

impl Round {
    pub(crate) fn calls_per_second(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }
}

/// What all the rounds of one target measured.
pub(crate) struct LoadReport {
    pub connections: usize,
    /// Total measured time.
    pub window: Duration,
    /// Successful calls completed inside the measured windows.
    pub ok: u64,
    /// Failed calls, warm-ups included.
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Summary,
    /// Calls per second of each round.
    pub per_round: Vec<f64>,
    /// CPU time used inside the measured windows, per probe.
    pub cpu: Vec<(Probe, Option<Duration>)>,
}

impl LoadReport {
    pub(crate) fn from_rounds(connections: usize, probes: &[Probe], rounds: Vec<Round>) -> Self {
        let mut latencies = Vec::new();
        let mut report = Self {
            connections,
            window: Duration::ZERO,
            ok: 0,
            errors: 0,
            first_error: None,
            latency: Summary::default(),
            per_round: Vec::with_capacity(rounds.len()),
            cpu: probes
                .iter()
                .map(|probe| (probe.clone(), Some(Duration::ZERO)))
                .collect(),
        };
        for round in rounds {
            report.per_round.push(round.calls_per_second());
            report.window += round.window;
            report.ok += round.ok;
            report.errors += round.errors;
            if report.first_error.is_none() {
                report.first_error = round.first_error;
            }
            latencies.extend(round.latencies);
            for ((_, total), cpu) in report.cpu.iter_mut().zip(round.cpu) {
                *total = total.zip(cpu).map(|(total, cpu)| total + cpu);
            }
        }
        report.latency = Summary::from_nanos(&mut latencies);
        report
    }

    pub(crate) fn calls_per_second(&self) -> f64 {
        if self.window.is_zero() {
            0.0
        } else {
            self.ok as f64 / self.window.as_secs_f64()
        }
    }

    /// CPU time a probe used per successful call, in microseconds.
    pub(crate) fn cpu_per_call_us(&self, cpu: Duration) -> f64 {
        if self.ok == 0 {
            0.0
        } else {
            cpu.as_secs_f64() * 1e6 / self.ok as f64
        }
    }

    /// The CPU time the probe with this key measured, when it could.
    pub(crate) fn cpu_of(&self, key: &str) -> Option<Duration> {
        self.cpu
            .iter()
            .find(|(probe, _)| probe.key == key)
            .and_then(|(_, cpu)| *cpu)
    }

    /// Successful calls per second of the probe's CPU time: how many calls one core running
    /// only that process would answer, if its cost per call stayed the same.
    pub(crate) fn calls_per_cpu_second(&self, key: &str) -> Option<f64> {
        self.cpu_of(key)
            .filter(|cpu| !cpu.is_zero())
            .map(|cpu| self.ok as f64 / cpu.as_secs_f64())
    }

    /// The cores a probe kept busy on average.
    pub(crate) fn cores(&self, cpu: Duration) -> f64 {
        if self.window.is_zero() {
            0.0
        } else {
            cpu.as_secs_f64() / self.window.as_secs_f64()
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let cpu: serde_json::Map<String, Value> = self
            .cpu
            .iter()
            .map(|(probe, cpu)| {
                let value = match cpu {
                    Some(cpu) => json!({
                        "cpu_seconds": round2(cpu.as_secs_f64()),
                        "cores_used": round2(self.cores(*cpu)),
                        "cpu_us_per_call": round(self.cpu_per_call_us(*cpu)),
                    }),
                    None => Value::Null,
                };
                (probe.key.to_owned(), value)
            })
            .collect();
        json!({
            "connections": self.connections,
            "window_s": round2(self.window.as_secs_f64()),
            "calls_per_s": self.calls_per_second().round(),
            "calls_per_s_per_round": self.per_round.iter().map(|rate| rate.round()).collect::<Vec<_>>(),
            "ok": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "latency": self.latency.to_json(),
            "cpu": cpu,
        })
    }
}

#[derive(Default)]
struct TaskResult {
    latencies: Vec<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Runs one round on already connected (and, for the bridge, initialized) sessions and
/// hands them back. `probes` are sampled at the start and end of the measured window; they must be
/// sampled on the thread that drives the clients for [`CpuProbe::CurrentThread`] to mean the
/// load generator.
pub(crate) async fn run_round(
    clients: Vec<Session>,
    warmup: Duration,
    window: Duration,
    probes: &[Probe],
) -> Result<(Round, Vec<Session>)> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + window;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut result = TaskResult::default();
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let outcome = client.call(CALL_PARAMS).await;
                    let done = Instant::now();
                    match outcome {
                        Ok(_) => {
                            // Throughput counts the calls completed inside the window.
                            if done >= measure_from && done <= end {
                                result.ok += 1;
                                result.latencies.push(
                                    u64::try_from((done - sent).as_nanos()).unwrap_or(u64::MAX),
                                );
                            }
                        }
                        Err(failure) => {
                            result.errors += 1;
                            result.first_error.get_or_insert(failure.message);
                            // A broken connection is counted and not used again this round.
                            if !client.usable() {
                                break;
                            }
                        }
                    }
                }
                (result, client)
            })
        })
        .collect();
    tokio::time::sleep_until(measure_from.into()).await;
    let before: Vec<Option<Duration>> = probes.iter().map(|probe| probe.probe.cpu_time()).collect();
    tokio::time::sleep_until(end.into()).await;
    let after: Vec<Option<Duration>> = probes.iter().map(|probe| probe.probe.cpu_time()).collect();
    let mut round = Round {
        window,
        latencies: Vec::new(),
        ok: 0,
        errors: 0,
        first_error: None,
        cpu: before
            .into_iter()
            .zip(after)
            .map(|(b, a)| b.zip(a).map(|(b, a)| a.saturating_sub(b)))
            .collect(),
    };
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (result, client) = task.await.context("a load connection panicked")?;
        clients.push(client);
        round.latencies.extend(result.latencies);
        round.ok += result.ok;
        round.errors += result.errors;
        if round.first_error.is_none() {
            round.first_error = result.first_error;
        }
    }
    Ok((round, clients))
}

/// One bridge measured by [`taking_turns`]: its connected sessions and CPU probes.
pub(crate) struct Contender {
    pub(crate) clients: Vec<Session>,
    pub(crate) probes: Vec<Probe>,
}

impl Contender {
    /// One session per target on the bridge whose process is `pid`, probed for the bridge's
    /// and the machine's CPU; the first call fills the cache, so every later one is a hit.
    pub(crate) async fn cached(
        pid: u32,
        targets: impl IntoIterator<Item = Arc<Target>>,
    ) -> Result<Contender> {
        let probes = vec![
            Probe::new("bridge", "bridge", CpuProbe::Processes(vec![pid])),
            Probe::new("machine", "whole machine", CpuProbe::Machine),
        ];
        let mut clients = Vec::new();
        for target in targets {
            clients.push(Session::open(target).await?);
        }
        let first = clients
            .first_mut()
            .context("a contender needs a connection")?;
        first.call(CALL_PARAMS).await?;
        Ok(Contender { clients, probes })
    }
}

/// Measures several bridges under the same closed-loop load, taking turns round by round so
/// a busy machine weighs on each alike, and returns one report per bridge (in order). A
/// failed call fails the measurement.
pub(crate) async fn taking_turns(
    contenders: Vec<Contender>,
    rounds: usize,
    warmup: Duration,
    window: Duration,
) -> Result<Vec<LoadReport>> {
    let mut measured: Vec<(Contender, Vec<Round>)> = contenders
        .into_iter()
        .map(|contender| (contender, Vec::new()))
        .collect();
    for round_index in 0..rounds {
        // The first round warms the bridges up; later ones only settle the connections.
        let warmup = if round_index == 0 { warmup } else { warmup / 4 };
        for (contender, done) in &mut measured {
            let clients = std::mem::take(&mut contender.clients);
            let (round, back) = run_round(clients, warmup, window, &contender.probes).await?;
            contender.clients = back;
            done.push(round);
        }
    }
    let mut reports = Vec::with_capacity(measured.len());
    for (contender, done) in measured {
        let connections = contender.clients.len();
        let report = LoadReport::from_rounds(connections, &contender.probes, done);
        ensure!(
            report.errors == 0,
            "{} calls failed: {:?}",
            report.errors,
            report.first_error
        );
        reports.push(report);
    }
    Ok(reports)
}

impl LoadReport {
    /// The part of a report the comparison benches print per bridge.
    pub(crate) fn comparison_json(&self) -> Value {
        json!({
            "calls_per_second": round(self.calls_per_second()),
            "ok": self.ok,
            "latency_us": self.latency.to_json(),
            "per_round": self.per_round.iter().map(|r| round(*r)).collect::<Vec<_>>(),
            "bridge_calls_per_cpu_second": self.calls_per_cpu_second("bridge").map(round),
        })
    }
}

/// The rounds of a comparison of two bridges taking turns with cached calls: a few short
/// ones in a smoke run (the harness end to end), enough long ones in a full run to judge a
/// ratio on a shared machine.
pub(crate) struct TurnsPlan {
    pub smoke: bool,
    pub connections: usize,
    pub rounds: usize,
    pub round_window: Duration,
    pub warmup: Duration,
}

impl TurnsPlan {
    pub(crate) fn new(mode: &BenchMode) -> TurnsPlan {
        if mode.smoke() {
            return TurnsPlan {
                smoke: true,
                connections: 4,
                rounds: 2,
                round_window: Duration::from_millis(300),
                warmup: Duration::from_millis(100),
            };
        }
        TurnsPlan {
            smoke: false,
            connections: 16,
            rounds: 8,
            round_window: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
        }
    }
}

/// Checks that `bridge` (called `name` in the error) answered the measured calls from its
/// cache, as a comparison of cached throughput needs. Reads `/metrics`, which needs no
/// credential.
pub(crate) async fn ensure_cached(bridge: &Bridge, name: &str) -> Result<()> {
    let requests = "mcp_bridge_cache_requests_total";
    let hits = metric(bridge, requests, &["result=\"hit\""]).await?;
    let misses = metric(bridge, requests, &["result=\"miss\""]).await?;
    ensure!(
        hits / (hits + misses).max(1.0) > 0.99,
        "the {name} bridge missed: {hits} hits, {misses} misses"
    );
    Ok(())
}
