//! Latency summaries (percentiles by nearest rank) and CPU-time probes read from `/proc`.

use std::time::Duration;

use serde_json::{Value, json};

/// A latency distribution, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
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
    /// Summarizes samples given in nanoseconds (sorted in place).
    pub fn from_nanos(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let micros = |nanos: u64| nanos as f64 / 1_000.0;
        let total: u128 = samples.iter().map(|&nanos| u128::from(nanos)).sum();
        Self {
            count: samples.len(),
            mean: total as f64 / samples.len() as f64 / 1_000.0,
            min: micros(samples[0]),
            p50: micros(percentile(samples, 0.50)),
            p90: micros(percentile(samples, 0.90)),
            p99: micros(percentile(samples, 0.99)),
            p999: micros(percentile(samples, 0.999)),
            max: micros(samples[samples.len() - 1]),
        }
    }

    pub fn to_json(self) -> Value {
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

/// The nearest-rank percentile of sorted, non-empty samples.
fn percentile(sorted: &[u64], quantile: f64) -> u64 {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Rounds to 0.1 for the JSON report.
pub fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Rounds to 0.01 for the JSON report.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Rounds to 0.0001 for the JSON report, for ratios far below one.
pub fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// Whose CPU time to measure.
#[derive(Clone, Debug)]
pub enum CpuProbe {
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
    pub fn cpu_time(&self) -> Option<Duration> {
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

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The resident set size of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The CPU model from `/proc/cpuinfo`, for the report.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|line| line.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// The 1-minute load average from `/proc/loadavg`: how busy the machine was apart from the
/// bench, for the report.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
