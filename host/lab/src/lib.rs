//! The policy lab: record real traffic as a trace (`serve --record`), generate synthetic
//! workloads from presets, replay either against several policies side by side in
//! virtual time (`bench policies`), and drive a live bridge with them (`bench load`).
//!
//! The replay reuses the production [`mcp_bridge_policy::PolicyChain`] and the production
//! WASM host, so a policy is judged by the very code that would run it; only the cache
//! and the clock are simulated.

mod error;
pub mod explain;
pub mod load;
pub mod loaded;
pub mod policies;
pub mod replay;
pub mod report;
pub mod results;
pub mod shadow;
pub mod workload;

use std::path::PathBuf;

pub use error::LabError;
pub use mcp_bridge_metrics::percentile;

use mcp_bridge_trace::{TraceRecord, write_records};

/// `mcp-bridge bench ...`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Replay a trace or a workload preset against policies side by side, in virtual
    /// time, and report hit ratio, stale hits, backend time saved and decision cost.
    ///
    /// Each `--policy` (a `.wasm` component, or `builtin`) gets its own simulated cache;
    /// bounds (no cache, perfect invalidation, Belady) are computed beside them, and the
    /// cache size and TTL scale are swept. `--out DIR` writes report.json, report.csv
    /// and a self-contained report.html.
    Policies(policies::PoliciesArgs),
    /// Drive a running bridge over HTTP with a workload preset or a trace, at a fixed
    /// arrival rate (open model) or with N connections (closed loop).
    Load(load::LoadArgs),
    /// Write a workload preset's generated calls as a trace file (JSON Lines).
    Workload(WorkloadArgs),
    /// Explain what a policy chain decides for one call, offline: each binding's answer
    /// in chain order, the winner, the TTL and its source, the cache key and partition,
    /// and a write's invalidations. The same JSON as `POST /admin/explain`; no server
    /// is started or called.
    Explain(explain::ExplainArgs),
}

/// `bench workload`.
#[derive(Debug, clap::Args)]
pub struct WorkloadArgs {
    /// A preset name (seed-tasks, read-heavy, write-storm) or a preset TOML file.
    #[arg(long, short)]
    pub workload: String,
    /// Where to write the trace.
    #[arg(long, short)]
    pub out: PathBuf,
    /// How many calls, overriding the preset's `calls`.
    #[arg(long)]
    pub calls: Option<u64>,
    /// The generator's seed, overriding the preset's `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs one `bench` command.
pub fn run(command: BenchCommand) -> Result<(), LabError> {
    match command {
        BenchCommand::Policies(args) => policies::run(args),
        BenchCommand::Load(args) => load::run(args),
        BenchCommand::Workload(args) => write_workload(args),
        BenchCommand::Explain(args) => explain::run(args),
    }
}

fn write_workload(args: WorkloadArgs) -> Result<(), LabError> {
    let mut workload = workload::Workload::resolve(&args.workload)?;
    if let Some(calls) = args.calls {
        workload.calls = calls;
    }
    if let Some(seed) = args.seed {
        workload.seed = seed;
    }
    let records: Vec<TraceRecord> = workload.calls().map(|call| call.to_record()).collect();
    let written = write_records(&args.out, &records)?;
    eprintln!(
        "wrote {written} calls of workload {} (seed {}, {:.0}% writes) to {}",
        workload.name,
        workload.seed,
        workload.write_ratio() * 100.0,
        args.out.display()
    );
    Ok(())
}
