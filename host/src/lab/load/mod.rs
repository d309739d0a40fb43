//! `bench load`: drives a running bridge over HTTP with a workload preset or a trace.

use super::LabError;

/// `bench load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The bridge's MCP endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080/mcp/demo")]
    pub url: String,
}

/// Runs `bench load`.
pub fn run(args: LoadArgs) -> Result<(), LabError> {
    Err(LabError::Usage(format!("bench load is not built yet ({})", args.url)))
}
