//! Where a load run's calls come from: a workload preset's generated calls or a trace's
//! `tools/call` records, each turned once, before the run, into the `params` text it sends.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::super::LabError;
use super::super::workload::{PlannedCall, Workload};
use mcp_bridge_trace::{Access, RecordReader, TraceRecord};

/// How tool names are written on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolNaming {
    /// As the source names them: the per-server endpoint `/mcp/{server}`.
    Plain,
    /// With this prefix (`--tool-prefix demo__`).
    Prefix(String),
    /// `{server}{separator}{tool}`: the aggregated `/mcp` endpoint, with the server each
    /// call names in the source.
    Server { separator: String },
}

impl ToolNaming {
    fn wire_name(&self, server: &str, tool: &str) -> String {
        match self {
            ToolNaming::Plain => tool.to_owned(),
            ToolNaming::Prefix(prefix) => format!("{prefix}{tool}"),
            ToolNaming::Server { separator } => format!("{server}{separator}{tool}"),
        }
    }
}

/// One call a run can send.
#[derive(Debug, Clone)]
pub struct LoadCall {
    /// Index into [`CallSource::tools`].
    pub tool: u32,
    /// The `tools/call` params, serialized: `{"name":…,"arguments":…}`.
    pub params: Arc<str>,
    pub write: bool,
    /// When the source says the call arrives, from its first call.
    pub at: Duration,
}

/// The calls of a run, cycled when it needs more.
#[derive(Debug, Clone)]
pub struct CallSource {
    /// What the calls came from, for the report.
    pub name: String,
    /// Tool names as the source gives them (unprefixed), for the report.
    pub tools: Vec<String>,
    pub calls: Vec<LoadCall>,
}

impl CallSource {
    /// A workload preset's first `count` generated calls.
    pub fn from_workload(workload: &Workload, count: u64, naming: &ToolNaming) -> CallSource {
        let mut workload = workload.clone();
        workload.calls = count.max(1);
        let mut source = CallSource {
            name: format!(
                "workload {} ({}, seed {})",
                workload.name, workload.origin, workload.seed
            ),
            tools: Vec::new(),
            calls: Vec::new(),
        };
        for call in workload.calls() {
            source.push_planned(&call, naming);
        }
        source
    }

    /// Calls already generated, e.g. by a bench that shapes its own workload.
    pub fn from_planned(name: &str, calls: &[PlannedCall], naming: &ToolNaming) -> CallSource {
        let mut source = CallSource {
            name: name.to_owned(),
            tools: Vec::new(),
            calls: Vec::with_capacity(calls.len()),
        };
        for call in calls {
            source.push_planned(call, naming);
        }
        source
    }

    fn push_planned(&mut self, call: &PlannedCall, naming: &ToolNaming) {
        let wire = naming.wire_name(&call.server, &call.tool);
        let tool = self.tool_index(&call.tool);
        self.calls.push(LoadCall {
            tool,
            params: params_text(&wire, &call.arguments),
            write: call.write,
            at: call.at,
        });
    }

    fn tool_index(&mut self, tool: &str) -> u32 {
        let position = match self.tools.iter().position(|known| known == tool) {
            Some(position) => position,
            None => {
                self.tools.push(tool.to_owned());
                self.tools.len() - 1
            }
        };
        u32::try_from(position).unwrap_or(u32::MAX)
    }

    /// The `tools/call` records of a JSON Lines trace, in arrival order. Every one must carry
    /// its `arguments`; other methods are skipped (and counted in the source's name).
    pub fn from_trace(path: &Path, naming: &ToolNaming) -> Result<CallSource, LabError> {
        let trace_error = |line: usize, message: String| LabError::Trace {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut records: Vec<(usize, TraceRecord)> = Vec::new();
        let mut skipped = 0usize;
        for numbered in RecordReader::open(path)? {
            let (number, record) = numbered?;
            if record.method != "tools/call" {
                skipped += 1;
                continue;
            }
            if record.arguments.is_none() {
                return Err(trace_error(
                    number,
                    format!(
                        "this `tools/call {}` record has no `arguments`, and `bench load` must send \
                         each call's arguments: record the trace with `mcp-bridge serve --record FILE \
                         --record-arguments`, or generate one with `mcp-bridge bench workload`",
                        record.name
                    ),
                ));
            }
            records.push((number, record));
        }
        if records.is_empty() {
            return Err(trace_error(
                1,
                format!("the trace has no tools/call records to send ({skipped} other records)"),
            ));
        }
        // A recorder writes calls as they finish, not as they arrive: order by arrival.
        records.sort_by_key(|(line, record)| (record.t_us, *line));
        let start = records.first().map_or(0, |(_, record)| record.t_us);
        let mut source = CallSource {
            name: if skipped == 0 {
                format!("trace {}", path.display())
            } else {
                format!(
                    "trace {} ({skipped} non-tool records skipped)",
                    path.display()
                )
            },
            tools: Vec::new(),
            calls: Vec::with_capacity(records.len()),
        };
        for (_, record) in records {
            let arguments = record.arguments.unwrap_or(Value::Null);
            let wire = naming.wire_name(&record.server, &record.name);
            let tool = source.tool_index(&record.name);
            source.calls.push(LoadCall {
                tool,
                params: params_text(&wire, &arguments),
                write: record.access == Access::Write,
                at: Duration::from_micros(record.t_us.saturating_sub(start)),
            });
        }
        Ok(source)
    }

    /// How long one pass over the source lasts when replayed at its own times: up to the last
    /// arrival plus one mean gap, so the next pass keeps the spacing.
    pub fn span(&self) -> Duration {
        let Some(last) = self.calls.last() else {
            return Duration::ZERO;
        };
        let gap = last.at / u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
        last.at + gap.max(Duration::from_micros(1))
    }
}

fn params_text(name: &str, arguments: &Value) -> Arc<str> {
    Arc::from(json!({ "name": name, "arguments": arguments }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_calls_carry_arguments_and_names() {
        let workload = Workload::resolve("seed-tasks").ok();
        let Some(workload) = workload else {
            panic!("the seed-tasks preset must resolve");
        };
        let source = CallSource::from_workload(
            &workload,
            200,
            &ToolNaming::Server {
                separator: "__".into(),
            },
        );
        assert_eq!(source.calls.len(), 200);
        assert!(
            source
                .calls
                .iter()
                .all(|call| call.params.contains("\"demo__"))
        );
        assert!(source.calls.iter().any(|call| call.write));
        assert!(source.tools.iter().all(|tool| !tool.starts_with("demo__")));
        assert!(source.span() > Duration::ZERO);
    }
}
