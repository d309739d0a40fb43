//! Command-line and environment options of the bench.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

pub const USAGE: &str = "\
Benchmarks mcp-bridge against direct stdio and a bare hyper server, side by side in one run.

usage: cargo bench --bench bridge [-- OPTIONS]

options (each also settable through the environment variable in brackets):
  --smoke                 a quick run that only proves the harness works [BENCH_SMOKE=1]
  --calls N               measured sequential calls per path [BENCH_CALLS]
  --warmup-calls N        unmeasured sequential calls per path first [BENCH_WARMUP_CALLS]
  --rounds N              interleaved rounds the sequential calls are split into [BENCH_ROUNDS]
  --spawn-calls N         measured spawn-per-call calls, each a fresh demo server process
                          (default: calls / 20, at least 5) [BENCH_SPAWN_CALLS]
  --connections N         concurrent connections in the throughput runs [BENCH_CONNECTIONS]
  --duration D            measured time of each throughput target, e.g. 5s, 500ms, 5 (seconds) [BENCH_DURATION]
  --warmup D              unmeasured warm-up before a target's first round [BENCH_WARMUP]
  --load-rounds N         rounds the throughput time is split into; the bridge and the
                          baseline take turns round by round [BENCH_LOAD_ROUNDS]
  --max-connections N     the bridge pool's max_connections [BENCH_MAX_CONNECTIONS]
  --min-connections N     the bridge pool's min_connections, prewarmed
                          (default: max-connections) [BENCH_MIN_CONNECTIONS]
  --max-inflight N        the bridge pool's max_inflight [BENCH_MAX_INFLIGHT]
  --out PATH              where the JSON report goes [BENCH_OUT]
                          (default: <target>/bench-results/bridge.json)
  --help                  this text

Without --bench on the command line (as under `cargo test --benches`), it runs the smoke mode.";

/// The fewest measured spawn-per-call calls by default, so even a smoke run has a few.
const MIN_SPAWN_CALLS: usize = 5;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub smoke: bool,
    pub calls: usize,
    pub warmup_calls: usize,
    pub rounds: usize,
    /// `None` makes the spawn-per-call path run [`Options::spawn_calls`]'s default.
    pub spawn_calls: Option<usize>,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub load_rounds: usize,
    pub max_connections: u32,
    /// `None` prewarms the whole pool (`min_connections = max_connections`).
    pub min_connections: Option<u32>,
    pub max_inflight: u32,
    pub out: Option<PathBuf>,
}

impl Options {
    /// The pool's min_connections.
    pub fn min_connections(&self) -> u32 {
        self.min_connections.unwrap_or(self.max_connections)
    }

    /// Measured calls of the spawn-per-call path: each starts a process, so it makes a
    /// twentieth of the other paths' calls unless told otherwise, and at least a few.
    pub fn spawn_calls(&self) -> usize {
        self.spawn_calls
            .unwrap_or_else(|| (self.calls / 20).max(MIN_SPAWN_CALLS))
    }

    /// Unmeasured spawn-per-call calls first, in the same proportion as the measured ones.
    pub fn spawn_warmup_calls(&self) -> usize {
        (self.warmup_calls / 20).max(1)
    }

    fn full() -> Self {
        Self {
            smoke: false,
            calls: 20_000,
            warmup_calls: 2_000,
            rounds: 20,
            spawn_calls: None,
            connections: 32,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            load_rounds: 5,
            max_connections: 2,
            min_connections: None,
            max_inflight: 64,
            out: None,
        }
    }

    fn smoke() -> Self {
        Self {
            smoke: true,
            calls: 300,
            warmup_calls: 50,
            rounds: 2,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(250),
            load_rounds: 2,
            ..Self::full()
        }
    }

    /// Reads the options; `Ok(None)` means only help or a listing was asked for.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let args: Vec<String> = args.into_iter().collect();
        if args.iter().any(|arg| arg == "--help" || arg == "-h") {
            println!("{USAGE}");
            return Ok(None);
        }
        if args.iter().any(|arg| arg == "--list") {
            // Test runners list targets with --list; this bench has no separate cases.
            return Ok(None);
        }
        let env_smoke = std::env::var("BENCH_SMOKE")
            .is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"));
        let benchmarking = args.iter().any(|arg| arg == "--bench");
        let smoke = env_smoke || !benchmarking || args.iter().any(|arg| arg == "--smoke");
        let mut options = if smoke { Self::smoke() } else { Self::full() };
        options.apply_env()?;
        options.apply_args(&args)?;
        if options.calls == 0
            || options.rounds == 0
            || options.connections == 0
            || options.load_rounds == 0
        {
            bail!("--calls, --rounds, --connections and --load-rounds must be at least 1");
        }
        if options.spawn_calls == Some(0) {
            bail!("--spawn-calls must be at least 1");
        }
        if options.max_connections == 0 || options.max_inflight == 0 {
            bail!("--max-connections and --max-inflight must be at least 1");
        }
        if options
            .min_connections
            .is_some_and(|min| min > options.max_connections)
        {
            bail!("--min-connections must not exceed --max-connections");
        }
        if options.duration.is_zero() {
            bail!("--duration must be more than zero");
        }
        Ok(Some(options))
    }

    fn apply_env(&mut self) -> Result<()> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        if let Some(value) = var("BENCH_CALLS") {
            self.calls = parse_count("BENCH_CALLS", &value)?;
        }
        if let Some(value) = var("BENCH_WARMUP_CALLS") {
            self.warmup_calls = parse_count("BENCH_WARMUP_CALLS", &value)?;
        }
        if let Some(value) = var("BENCH_ROUNDS") {
            self.rounds = parse_count("BENCH_ROUNDS", &value)?;
        }
        if let Some(value) = var("BENCH_SPAWN_CALLS") {
            self.spawn_calls = Some(parse_count("BENCH_SPAWN_CALLS", &value)?);
        }
        if let Some(value) = var("BENCH_CONNECTIONS") {
            self.connections = parse_count("BENCH_CONNECTIONS", &value)?;
        }
        if let Some(value) = var("BENCH_DURATION") {
            self.duration = duration_option("BENCH_DURATION", &value)?;
        }
        if let Some(value) = var("BENCH_WARMUP") {
            self.warmup = duration_option("BENCH_WARMUP", &value)?;
        }
        if let Some(value) = var("BENCH_LOAD_ROUNDS") {
            self.load_rounds = parse_count("BENCH_LOAD_ROUNDS", &value)?;
        }
        if let Some(value) = var("BENCH_MAX_CONNECTIONS") {
            self.max_connections = parse_u32("BENCH_MAX_CONNECTIONS", &value)?;
        }
        if let Some(value) = var("BENCH_MIN_CONNECTIONS") {
            self.min_connections = Some(parse_u32("BENCH_MIN_CONNECTIONS", &value)?);
        }
        if let Some(value) = var("BENCH_MAX_INFLIGHT") {
            self.max_inflight = parse_u32("BENCH_MAX_INFLIGHT", &value)?;
        }
        if let Some(value) = var("BENCH_OUT") {
            self.out = Some(PathBuf::from(value));
        }
        Ok(())
    }

    fn apply_args(&mut self, args: &[String]) -> Result<()> {
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
                _ => (arg.as_str(), None),
            };
            if matches!(name, "--bench" | "--smoke") {
                continue;
            }
            let mut value = || -> Result<String> {
                match &inline {
                    Some(value) => Ok(value.clone()),
                    None => args
                        .next()
                        .cloned()
                        .with_context(|| format!("{name} needs a value")),
                }
            };
            match name {
                "--calls" => self.calls = parse_count(name, &value()?)?,
                "--warmup-calls" => self.warmup_calls = parse_count(name, &value()?)?,
                "--rounds" => self.rounds = parse_count(name, &value()?)?,
                "--spawn-calls" => self.spawn_calls = Some(parse_count(name, &value()?)?),
                "--connections" => self.connections = parse_count(name, &value()?)?,
                "--duration" => self.duration = duration_option(name, &value()?)?,
                "--warmup" => self.warmup = duration_option(name, &value()?)?,
                "--load-rounds" => self.load_rounds = parse_count(name, &value()?)?,
                "--max-connections" => self.max_connections = parse_u32(name, &value()?)?,
                "--min-connections" => self.min_connections = Some(parse_u32(name, &value()?)?),
                "--max-inflight" => self.max_inflight = parse_u32(name, &value()?)?,
                "--out" => self.out = Some(PathBuf::from(value()?)),
                other => bail!("unknown argument {other:?}\n\n{USAGE}"),
            }
        }
        Ok(())
    }
}

fn parse_count(name: &str, value: &str) -> Result<usize> {
    value
        .trim()
        .replace('_', "")
        .parse()
        .with_context(|| format!("{name}: {value:?} is not a whole number"))
}

fn parse_u32(name: &str, value: &str) -> Result<u32> {
    value
        .trim()
        .parse()
        .with_context(|| format!("{name}: {value:?} is not a whole number"))
}

/// Parses a duration in the bridge's one grammar ("5", "5s", "1.5s", "500ms", "1m 30s"; a
/// bare number is seconds), naming the option in the error.
fn duration_option(name: &str, value: &str) -> Result<Duration> {
    mcp_bridge::policy::parse_duration(value).map_err(|message| anyhow!("{name}: {message}"))
}
