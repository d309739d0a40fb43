//! `bench policies`: load the trace and the policies, replay, report.

use super::LabError;

/// `bench policies`.
#[derive(Debug, clap::Args)]
pub struct PoliciesArgs {
    /// A trace file (JSON Lines).
    #[arg(long)]
    pub trace: Option<std::path::PathBuf>,
}

pub fn run(_args: PoliciesArgs) -> Result<(), LabError> {
    Err(LabError::Usage("not built yet".into()))
}
