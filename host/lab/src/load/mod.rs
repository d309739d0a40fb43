//! `bench load`: drives a running bridge over HTTP with a workload preset or a trace, at a
//! fixed arrival rate (open model) or with N connections (closed loop), and reports
//! throughput, success, latency percentiles, per-tool figures and the bridge's cache hits.
//!
//! The command is a thin layer over the library API, [`drive`], which benches call
//! in-process with a [`LoadPlan`] they build themselves.

pub mod client;
mod closed;
mod driver;
mod open;
mod render;
mod source;
mod stats;
mod target;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::driver::{Arrivals, LoadPlan, Mode, cache_stats, drive};
pub use self::render::table;
pub use self::source::{CallSource, LoadCall, ToolNaming};
pub use self::stats::{
    CacheDelta, ErrorCounts, ErrorKind, GroupReport, Latency, LoadReport, ModeReport,
};
pub use self::target::Target;

use super::LabError;
use super::workload::Workload;

/// The separator the bridge puts between server and tool on the aggregated endpoint, by
/// default (`http.name_separator`).
const DEFAULT_SEPARATOR: &str = "__";

/// How many calls a workload source generates at most; longer runs cycle through them.
const MAX_GENERATED_CALLS: u64 = 1_000_000;

/// `bench load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The bridge's MCP endpoint: `/mcp/SERVER` (tool names as the source gives them) or the
    /// aggregated `/mcp` (tools named SERVER__TOOL, from each call's server).
    #[arg(long, default_value = "http://127.0.0.1:8080/mcp/demo")]
    pub url: String,
    /// Allow a host that is not loopback (127.0.0.1, ::1, localhost).
    #[arg(long)]
    pub allow_remote: bool,
    /// A workload preset name (seed-tasks, read-heavy, write-storm) or a preset TOML file.
    #[arg(long, short, conflicts_with = "trace")]
    pub workload: Option<String>,
    /// A JSON Lines trace recorded with `serve --record FILE --record-arguments` (or written
    /// by `bench workload`); its tools/call records are sent in arrival order.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Prefix every tool name with this (e.g. `demo__` on the aggregated endpoint), instead of
    /// the automatic SERVER__ prefix there and none on a per-server endpoint.
    #[arg(long)]
    pub tool_prefix: Option<String>,
    /// Open model: send calls at this fixed rate (calls per second), whatever the answers
    /// do. Without --rate and --connections, the source's own arrival times are replayed.
    #[arg(long, conflicts_with = "connections")]
    pub rate: Option<f64>,
    /// How the open model spaces its calls.
    #[arg(long, value_enum, default_value = "uniform")]
    pub arrivals: Arrivals,
    /// The open model's cap on calls in flight; calls beyond it wait, and their waiting
    /// counts in their latency.
    #[arg(long, default_value_t = 1024)]
    pub max_inflight: usize,
    /// Closed loop: this many connections, each sending its next call when the previous
    /// one is answered.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Measured time, after the warm-up (e.g. "10s"). Without it and --calls: 10s.
    #[arg(long, value_parser = mcp_bridge_policy::parse_duration)]
    pub duration: Option<Duration>,
    /// At most this many measured calls; the source is cycled if it has fewer.
    #[arg(long)]
    pub calls: Option<u64>,
    /// Calls sent during this first stretch are not measured.
    #[arg(long, value_parser = mcp_bridge_policy::parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// A call without an answer after this long counts as a timeout.
    #[arg(long, value_parser = mcp_bridge_policy::parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// The seed of the Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Authentication and output options, boxed so the `bench` command enum stays small.
    #[command(flatten)]
    pub extras: Box<LoadExtras>,
}

/// `bench load` options about authentication and output.
#[derive(Debug, clap::Args)]
pub struct LoadExtras {
    /// Bearer token for the MCP endpoint (the bridge's `http.auth_token`).
    #[arg(long)]
    pub token: Option<String>,
    /// Bearer token for `/admin/cache/stats` (the bridge's `http.admin_token`).
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit non-zero unless this share of the measured calls succeeded (e.g. 1.0).
    #[arg(long)]
    pub require_success: Option<f64>,
}

/// Runs `bench load` on a runtime of its own.
pub fn run(args: LoadArgs) -> Result<(), LabError> {
    let out = args.extras.out.clone();
    let require = args.extras.require_success;
    if let Some(required) = require
        && !(0.0..=1.0).contains(&required)
    {
        return Err(LabError::Usage(format!(
            "--require-success is a ratio from 0 to 1, found {required}"
        )));
    }
    let plan = plan_from_args(args)?;
    let url = plan.target.url.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| LabError::Load {
            target: url.clone(),
            message: format!("cannot start the async runtime: {error}"),
        })?;
    let report = runtime.block_on(drive(plan))?;
    println!("{}", table(&report));
    if let Some(path) = &out {
        write_report(path, &report)?;
        eprintln!("wrote the report to {}", path.display());
    }
    if let Some(required) = require
        && !report.meets(required)
    {
        return Err(LabError::Load {
            target: url,
            message: format!(
                "{} of {} measured calls succeeded ({:.4}), below the required {required}",
                report.ok, report.calls, report.success_rate
            ),
        });
    }
    Ok(())
}

/// Builds the plan the arguments describe.
pub fn plan_from_args(args: LoadArgs) -> Result<LoadPlan, LabError> {
    let mut target = Target::parse(&args.url, args.allow_remote)?;
    target.token = args.extras.token;
    target.admin_token = args.extras.admin_token;
    let naming = match args.tool_prefix {
        Some(prefix) => ToolNaming::Prefix(prefix),
        None if target.aggregated => ToolNaming::Server {
            separator: DEFAULT_SEPARATOR.to_owned(),
        },
        None => ToolNaming::Plain,
    };
    // Ten seconds when the run has no bound at all, so a bare command ends on its own.
    let duration = match (args.duration, args.calls) {
        (None, None) => Some(Duration::from_secs(10)),
        (duration, _) => duration,
    };
    let mode = match args.connections {
        Some(connections) => Mode::Closed { connections },
        None => Mode::Open {
            rate: args.rate,
            arrivals: args.arrivals,
            max_inflight: args.max_inflight,
            seed: args.seed,
        },
    };
    let source = match (args.workload, args.trace) {
        (Some(workload), None) => {
            let workload = Workload::resolve(&workload)?;
            let needed = calls_needed(&mode, &workload, duration, args.calls, args.warmup);
            CallSource::from_workload(&workload, needed, &naming)
        }
        (None, Some(trace)) => CallSource::from_trace(&trace, &naming)?,
        _ => {
            return Err(LabError::Usage(
                "bench load needs a source: --workload NAME|FILE or --trace FILE".to_owned(),
            ));
        }
    };
    Ok(LoadPlan {
        target,
        source,
        mode,
        duration,
        max_calls: args.calls,
        warmup: args.warmup,
        call_timeout: args.timeout,
    })
}

/// How many calls to generate from a workload: what the run can send (warm-up included) when
/// that can be told, else the preset's own count; fewer are cycled.
fn calls_needed(
    mode: &Mode,
    workload: &Workload,
    duration: Option<Duration>,
    max_calls: Option<u64>,
    warmup: Duration,
) -> u64 {
    let rate = match mode {
        Mode::Open {
            rate: Some(rate), ..
        } => *rate,
        Mode::Open { rate: None, .. } => workload.rate,
        Mode::Closed { .. } => 0.0,
    };
    let by_time = duration
        .filter(|_| rate > 0.0)
        .map(|duration| ((duration + warmup).as_secs_f64() * rate).ceil() as u64 + 1);
    let warmup_calls = (warmup.as_secs_f64() * rate).ceil() as u64;
    let by_count = max_calls.map(|calls| calls + warmup_calls);
    let needed = match (by_time, by_count) {
        (Some(time), Some(count)) => time.min(count),
        (Some(bound), None) | (None, Some(bound)) => bound,
        (None, None) => workload.calls,
    };
    needed.clamp(1, workload.calls.min(MAX_GENERATED_CALLS))
}

/// Writes a report as pretty JSON, creating the directory.
pub fn write_report(path: &Path, report: &LoadReport) -> Result<(), LabError> {
    let write_error = |source: std::io::Error| LabError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let mut text =
        serde_json::to_string_pretty(report).map_err(|error| write_error(error.into()))?;
    text.push('\n');
    std::fs::write(path, text).map_err(write_error)
}
