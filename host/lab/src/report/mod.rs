//! Report outputs: the terminal table, report.json, report.csv and report.html.

pub mod csv;
pub mod gate;
pub mod html;
mod svg;
pub mod table;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use super::LabError;
use super::results::{BaselineDiff, Change, DiffRow, LabReport, PolicyRun, REPORT_VERSION};

/// Writes report.json, report.csv and report.html into `dir` (created if missing) and
/// returns their paths.
pub fn write_all(report: &LabReport, dir: &Path) -> Result<Vec<PathBuf>, LabError> {
    std::fs::create_dir_all(dir).map_err(|source| LabError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = dir.join("report.json");
    let text = serde_json::to_string_pretty(report).map_err(|error| LabError::Write {
        path: json.clone(),
        source: error.into(),
    })?;
    std::fs::write(&json, text).map_err(|source| LabError::Write {
        path: json.clone(),
        source,
    })?;
    let csv = dir.join("report.csv");
    csv::write(report, &csv)?;
    let html = dir.join("report.html");
    html::write(report, &html)?;
    Ok(vec![json, csv, html])
}

/// Reads an earlier run's report.json to compare with.
pub fn read_baseline(path: &Path) -> Result<LabReport, LabError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let report: LabReport = serde_json::from_str(&text).map_err(|error| LabError::Trace {
        path: path.to_path_buf(),
        line: error.line(),
        message: format!("not a `bench policies` report.json: {error}"),
    })?;
    if report.version != REPORT_VERSION {
        return Err(LabError::Usage(format!(
            "--baseline {}: report version {} cannot be compared with this version's {REPORT_VERSION}; rerun the baseline with this build",
            path.display(),
            report.version
        )));
    }
    Ok(report)
}

/// This run against a baseline, policy by policy (bounds included), matched by name.
pub fn diff(baseline: &LabReport, path: Option<&Path>, now: &LabReport) -> BaselineDiff {
    let runs = |report: &LabReport| -> Vec<PolicyRun> {
        report
            .policies
            .iter()
            .chain(&report.bounds)
            .cloned()
            .collect()
    };
    let (before, after) = (runs(baseline), runs(now));
    let change = |then: f64, now: f64| Change {
        before: then,
        after: now,
    };
    let rows = after
        .iter()
        .filter_map(|run| {
            let old = before.iter().find(|old| old.name == run.name)?;
            let (then, now) = (&old.metrics, &run.metrics);
            Some(DiffRow {
                policy: run.name.clone(),
                hit_ratio: change(then.hit_ratio, now.hit_ratio),
                stale_hit_ratio: change(then.stale_hit_ratio, now.stale_hit_ratio),
                backend_time_saved_ms: change(
                    then.backend_time_saved_ms,
                    now.backend_time_saved_ms,
                ),
                latency_p99_ms: change(then.latency_p99_ms, now.latency_p99_ms),
                decision_ns: change(then.decision_ns, now.decision_ns),
            })
        })
        .collect();
    let names = |runs: &[PolicyRun], others: &[PolicyRun]| -> Vec<String> {
        runs.iter()
            .filter(|run| !others.iter().any(|other| other.name == run.name))
            .map(|run| run.name.clone())
            .collect()
    };
    BaselineDiff {
        source: path.map_or_else(|| "baseline".to_owned(), |path| path.display().to_string()),
        created_at: baseline.created_at,
        rows,
        only_in_baseline: names(&before, &after),
        only_in_this_run: names(&after, &before),
    }
}
