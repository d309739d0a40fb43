//! The audit log: one JSON line per MCP request the bridge answered or refused, naming
//! who, what, and how it ended. It never holds a token, a key or an argument value: only
//! names the access rules also see (server, method, tool, prompt or resource URI).
//!
//! Lines are handed to a writer task through a bounded queue, so a slow disk never
//! slows a call; a line that does not fit is counted in `mcp_bridge_audit_dropped_total`
//! rather than lost silently.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcp_bridge_auth::access::Item;
use mcp_bridge_config::AuditConfig;
use mcp_bridge_jsonrpc::code;
use mcp_bridge_metrics::Registry;
use prometheus::IntCounter;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::AppState;

/// Lines waiting for the writer; past this a burst is counted as dropped.
const AUDIT_QUEUE: usize = 16_384;
/// How often the writer flushes lines it has buffered.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// One audited request.
#[derive(Debug, Serialize)]
pub(crate) struct AuditRecord<'a> {
    /// Milliseconds since the Unix epoch.
    pub(crate) time_ms: u64,
    pub(crate) principal: &'a str,
    pub(crate) credential: &'a str,
    pub(crate) server: &'a str,
    pub(crate) method: &'a str,
    /// The tool, prompt or resource the request named, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<&'a str>,
    /// `ok`, `error` (the server or the bridge answered with an error), `denied`
    /// (access rules), `limited` (rate limits), `unauthenticated`.
    pub(crate) outcome: &'a str,
    pub(crate) cache: &'a str,
    pub(crate) latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<&'a str>,
}

impl AuditRecord<'_> {
    pub(crate) fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64)
    }

    pub(crate) fn latency_since(started: Instant) -> f64 {
        started.elapsed().as_secs_f64() * 1000.0
    }
}

/// Where audit lines go.
pub(crate) struct AuditLog {
    lines: mpsc::Sender<String>,
    dropped: IntCounter,
}

impl AuditLog {
    /// Starts the writer, or `None` when auditing is off. A file that cannot be opened is
    /// an error at start.
    pub(crate) fn start(
        config: &AuditConfig,
        registry: &Registry,
    ) -> std::io::Result<Option<AuditLog>> {
        if !config.enabled {
            return Ok(None);
        }
        let dropped = registry.counter(
            "audit_dropped_total",
            "Audit lines dropped because the writer fell behind by more than its queue.",
        );
        let (lines, receiver) = mpsc::channel(AUDIT_QUEUE);
        match &config.file {
            Some(path) => {
                let file = open_append(path)?;
                tokio::task::spawn_blocking(move || write_lines(receiver, file));
            }
            None => {
                tokio::spawn(log_lines(receiver));
            }
        }
        Ok(Some(AuditLog { lines, dropped }))
    }

    pub(crate) fn record(&self, record: &AuditRecord<'_>) {
        let Ok(line) = serde_json::to_string(record) else {
            return;
        };
        if self.lines.try_send(line).is_err() {
            self.dropped.inc();
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!(
                    "cannot open the audit file {} (audit.file): {error}",
                    path.display()
                ),
            )
        })
}

/// Writes lines to the file as they come, flushing at least every [`FLUSH_INTERVAL`].
fn write_lines(mut receiver: mpsc::Receiver<String>, file: std::fs::File) {
    let mut out = std::io::BufWriter::new(file);
    let mut last_flush = Instant::now();
    while let Some(line) = receiver.blocking_recv() {
        let written = out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"));
        if let Err(error) = written {
            tracing::error!(%error, "cannot write the audit file");
        }
        if receiver.is_empty() || last_flush.elapsed() >= FLUSH_INTERVAL {
            if let Err(error) = out.flush() {
                tracing::error!(%error, "cannot flush the audit file");
            }
            last_flush = Instant::now();
        }
    }
    let _ = out.flush();
}

async fn log_lines(mut receiver: mpsc::Receiver<String>) {
    while let Some(line) = receiver.recv().await {
        tracing::info!(target: "audit", "{line}");
    }
}

/// A request being answered, to be written to the audit log when it ends.
pub(crate) struct Audited {
    started: Instant,
    principal: Arc<str>,
    credential: &'static str,
    server: Arc<str>,
    method: String,
    /// A tool's or prompt's name; resource URIs are left out, as they can carry values.
    target: Option<String>,
}

impl Audited {
    /// The record of a request about to be answered, or `None` when the audit log is off
    /// (so a call pays nothing for it).
    pub(crate) fn begin(
        state: &AppState,
        caller: &super::identity::Caller,
        server: &Arc<str>,
        method: &str,
        message: &Value,
    ) -> Option<Audited> {
        state.audit.as_ref()?;
        let target = match super::identity::item_of(message) {
            Some(Item::Tool(name) | Item::Prompt(name)) => Some(name.to_owned()),
            _ => None,
        };
        Some(Audited {
            started: Instant::now(),
            principal: caller.principal.name.clone(),
            credential: caller.principal.credential.as_str(),
            server: server.clone(),
            method: method.to_owned(),
            target,
        })
    }

    /// Writes the line for `response` (a JSON-RPC response) if the audit log is on.
    pub(crate) fn finish(&self, state: &AppState, response: &Value, cache: &str) {
        let Some(log) = &state.audit else { return };
        let (outcome, reason) = outcome_of(response);
        log.record(&AuditRecord {
            time_ms: AuditRecord::now_ms(),
            principal: &self.principal,
            credential: self.credential,
            server: &self.server,
            method: &self.method,
            target: self.target.as_deref(),
            outcome,
            cache,
            latency_ms: AuditRecord::latency_since(self.started),
            reason,
        });
    }
}

/// How a request ended, and why when it was refused.
fn outcome_of(response: &Value) -> (&'static str, Option<&str>) {
    let Some(error) = response.get("error") else {
        return ("ok", None);
    };
    let reason = || error.pointer("/data/reason").and_then(Value::as_str);
    let rule = error.pointer("/data/rule").and_then(Value::as_str);
    match error.get("code").and_then(Value::as_i64) {
        Some(code::ACCESS_DENIED) => ("denied", rule.or_else(reason)),
        Some(code::RATE_LIMITED) => ("limited", reason()),
        _ => ("error", None),
    }
}

/// Writes the line for a request refused before it was read: its credential was not
/// accepted.
pub(crate) fn unauthenticated(state: &AppState, path: &str, reason: &str) {
    let Some(log) = &state.audit else { return };
    log.record(&AuditRecord {
        time_ms: AuditRecord::now_ms(),
        principal: "",
        credential: "none",
        server: path,
        method: "",
        target: None,
        outcome: "unauthenticated",
        cache: "none",
        latency_ms: 0.0,
        reason: Some(reason),
    });
}
