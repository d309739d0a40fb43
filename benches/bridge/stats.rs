//! Latency summaries in the shape the bench's report uses, CPU-time probes read from `/proc`,
//! and facts about the machine for the report.

use std::time::Duration;

use mcp_bridge::lab::load::Latency;
use serde_json::{Value, json};

/// A latency distribution, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Summary {
    pub count: usize,
    pub mean: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Summary {
    /// Summarizes samples given in nanoseconds (reordered in place), with `bench load`'s
    /// summary (the project's one percentile, by nearest rank).
    pub(crate) fn from_nanos(samples: &mut [u64]) -> Self {
        let latency = Latency::from_nanos(samples);
        Self {
            count: samples.len(),
            mean: latency.mean_us,
            min: latency.min_us,
            p50: latency.p50_us,
            p90: latency.p90_us,
            p99: latency.p99_us,
            p999: latency.p999_us,
            max: latency.max_us,
        }
    }

    pub(crate) fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "mean_us": round(self.mean),
            "min_us": round(self.min),
            "p50_us": round(self.p50),
            "p90_us": round(self.p90),
            "p99_us": round(self.p99),
            "p999_us": round(self.p999),
            "max_us": round(self.max),
        })
    }
}

/// Rounds to 0.1 for the JSON report.
pub(crate) fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Rounds to 0.01 for the JSON report.
pub(crate) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Rounds to 0.0001 for the JSON report, for ratios far below one.
pub(crate) fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// Whose CPU time to measure.
#[derive(Clone, Debug)]
pub(crate) enum CpuProbe {
    /// Processes, by pid (user + system time of all their threads, summed).
    Processes(Vec<u32>),
    /// The calling thread (the bench's load generator).
    CurrentThread,
    /// All CPUs of the machine (busy time from `/proc/stat`), which shows how much other work
    /// competed with the bench.
    Machine,
}

impl CpuProbe {
    /// CPU time used so far, or `None` when `/proc` cannot tell (the process is gone, or the
    /// system is not Linux).
    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        match self {
            CpuProbe::Processes(pids) => pids
                .iter()
                .map(|pid| stat_cpu_time(&format!("/proc/{pid}/stat")))
                .sum::<Option<Duration>>(),
            CpuProbe::CurrentThread => stat_cpu_time("/proc/thread-self/stat"),
            CpuProbe::Machine => machine_busy_time(),
        }
    }
}

/// User + system time from a `/proc/.../stat` file.
fn stat_cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces and parentheses, so fields are counted from the
    // last ')'. After it come state (field 3) ... utime (14) and stime (15).
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks_per_second(),
    ))
}

/// Busy time of all CPUs since boot: user, nice, system, irq, softirq and steal (the first
/// line of `/proc/stat`; guest time is already inside user).
fn machine_busy_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&index| ticks.get(index).copied().unwrap_or(0))
        .sum();
    Some(Duration::from_secs_f64(
        busy as f64 / clock_ticks_per_second(),
    ))
}

#[allow(unsafe_code)] // sysconf has no safe wrapper in std.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The CPU model from `/proc/cpuinfo`, for the report.
pub(crate) fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|line| line.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// The 1-minute load average from `/proc/loadavg`: how busy the machine was apart from the
/// bench, for the report.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
