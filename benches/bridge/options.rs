//! Command-line and environment options of the bench, parsed with clap.
//!
//! Every option is also settable through the environment variable `--help` names; the
//! command line wins. Options left unset take the mode's default: a full run under
//! `cargo bench`, the smoke run otherwise (see [`BenchMode`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use mcp_bridge_test_support::bench::{BenchMode, parse_duration};

/// The fewest measured spawn-per-call calls by default, so even a smoke run has a few.
const MIN_SPAWN_CALLS: usize = 5;

/// Benchmarks mcp-bridge against direct stdio and a bare hyper server, side by side in one
/// run.
#[derive(Debug, clap::Parser)]
#[command(
    bin_name = "cargo bench --bench bridge --",
    after_help = "Without --bench on the command line (as under `cargo test --bench bridge`), \
                  it runs the smoke mode. Durations are written as in the bridge's config: \
                  5 (seconds), 500ms, 1.5s, 1m."
)]
pub(crate) struct Args {
    #[command(flatten)]
    pub mode: BenchMode,
    /// Measured sequential calls per path [full: 20000, smoke: 300].
    #[arg(long, env = "BENCH_CALLS", value_parser = count)]
    pub calls: Option<usize>,
    /// Unmeasured sequential calls per path first [full: 2000, smoke: 50].
    #[arg(long, env = "BENCH_WARMUP_CALLS", value_parser = whole_number)]
    pub warmup_calls: Option<usize>,
    /// Interleaved rounds the sequential calls are split into [full: 20, smoke: 2].
    #[arg(long, env = "BENCH_ROUNDS", value_parser = count)]
    pub rounds: Option<usize>,
    /// Measured spawn-per-call calls, each a fresh demo server process [default: calls / 20,
    /// at least 5].
    #[arg(long, env = "BENCH_SPAWN_CALLS", value_parser = count)]
    pub spawn_calls: Option<usize>,
    /// Concurrent connections in the throughput runs [default: 32].
    #[arg(long, env = "BENCH_CONNECTIONS", value_parser = count)]
    pub connections: Option<usize>,
    /// Measured time of each throughput target [full: 5s, smoke: 1s].
    #[arg(long, env = "BENCH_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Unmeasured warm-up before a target's first round [full: 1s, smoke: 250ms].
    #[arg(long, env = "BENCH_WARMUP", value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Rounds the throughput time is split into; the bridge and the baseline take turns
    /// round by round [full: 5, smoke: 2].
    #[arg(long, env = "BENCH_LOAD_ROUNDS", value_parser = count)]
    pub load_rounds: Option<usize>,
    /// The bridge pool's max_connections.
    #[arg(long, env = "BENCH_MAX_CONNECTIONS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// The bridge pool's min_connections, prewarmed [default: max-connections].
    #[arg(long, env = "BENCH_MIN_CONNECTIONS")]
    pub min_connections: Option<u32>,
    /// The bridge pool's max_inflight.
    #[arg(long, env = "BENCH_MAX_INFLIGHT", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_inflight: u32,
    /// Where the JSON report goes [default: <target>/bench-results/bridge.json].
    #[arg(long, env = "BENCH_OUT")]
    pub out: Option<PathBuf>,
}

/// What to run: the arguments with the mode's defaults filled in.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub smoke: bool,
    pub calls: usize,
    pub warmup_calls: usize,
    pub rounds: usize,
    pub spawn_calls: usize,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub load_rounds: usize,
    pub max_connections: u32,
    pub min_connections: u32,
    pub max_inflight: u32,
    pub out: Option<PathBuf>,
}

impl Options {
    /// Fills in the mode's defaults and checks what clap cannot check alone.
    pub(crate) fn from_args(args: Args) -> Result<Options> {
        let smoke = args.mode.smoke();
        let pick = |full: usize, quick: usize| if smoke { quick } else { full };
        let calls = args.calls.unwrap_or(pick(20_000, 300));
        let options = Options {
            smoke,
            calls,
            warmup_calls: args.warmup_calls.unwrap_or(pick(2_000, 50)),
            rounds: args.rounds.unwrap_or(pick(20, 2)),
            // Each spawn-per-call call starts a process, so that path makes a twentieth of
            // the other paths' calls unless told otherwise, and at least a few.
            spawn_calls: args
                .spawn_calls
                .unwrap_or((calls / 20).max(MIN_SPAWN_CALLS)),
            connections: args.connections.unwrap_or(32),
            duration: args.duration.unwrap_or(if smoke {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(5)
            }),
            warmup: args.warmup.unwrap_or(if smoke {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(1)
            }),
            load_rounds: args.load_rounds.unwrap_or(pick(5, 2)),
            max_connections: args.max_connections,
            min_connections: args.min_connections.unwrap_or(args.max_connections),
            max_inflight: args.max_inflight,
            out: args.out,
        };
        if options.min_connections > options.max_connections {
            bail!("--min-connections must not exceed --max-connections");
        }
        if options.duration.is_zero() {
            bail!("--duration must be more than zero");
        }
        Ok(options)
    }

    /// Unmeasured spawn-per-call calls first, in the same proportion as the measured ones.
    pub(crate) fn spawn_warmup_calls(&self) -> usize {
        (self.warmup_calls / 20).max(1)
    }
}

/// A whole number, `_` allowed as a digit separator (`20_000`).
fn whole_number(text: &str) -> Result<usize, String> {
    text.trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

/// A whole number of at least one.
fn count(text: &str) -> Result<usize, String> {
    match whole_number(text)? {
        0 => Err("must be at least 1".to_owned()),
        count => Ok(count),
    }
}
