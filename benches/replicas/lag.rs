//! Invalidation propagation across bounded-mode replicas: writes through replica A, reads
//! through replica B right after each write's response, and the lag B measured for each
//! broadcast it applied (`/admin/cache/stats` → `shared.invalidation_lag_us`, and the
//! `mcp_bridge_shared_invalidation_lag_seconds` histogram).

use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};

use mcp_bridge_test_support::client::{Answer, Session};
use mcp_bridge_test_support::{Bridge, metric};

use super::ENDPOINT;
use super::setup::tier_status;

/// The task every round renames, in place, so the shared state file stays small.
const TASK_ID: u64 = 1;

/// The read each round checks: every task, so the renamed one is in the list.
const READ_PARAMS: &str = r#"{"name":"get_tasks","arguments":{"status":"all"}}"#;

/// The lag histogram's name (its `_count` and `_sum` series are read).
const LAG_HISTOGRAM: &str = "mcp_bridge_shared_invalidation_lag_seconds";

/// What the write-then-read rounds saw.
pub(crate) struct LagReport {
    pub rounds: usize,
    /// Reads through B, right after a write's response from A, that still saw the old title.
    pub stale_reads: usize,
    /// B's propagation lag over its last broadcasts, in microseconds.
    pub p50_us: u64,
    pub p99_us: u64,
    pub samples: u64,
    /// The histogram's count and mean over the rounds alone.
    pub histogram_count: f64,
    pub histogram_mean_us: f64,
}

impl LagReport {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "rounds": self.rounds,
            "stale_reads_bounded": self.stale_reads,
            "invalidation_lag_us": {
                "p50": self.p50_us,
                "p99": self.p99_us,
                "samples": self.samples,
            },
            "histogram": {
                "count": self.histogram_count,
                "mean_us": self.histogram_mean_us.round(),
            },
        })
    }
}

/// Runs `rounds` rounds: B reads (so its first level holds the list), A renames the task, B
/// reads again at once and is stale if it still has the old title. Each write is one
/// invalidation A publishes and B applies, so B measures one lag per round.
pub(crate) async fn measure(writer: &Bridge, reader: &Bridge, rounds: usize) -> Result<LagReport> {
    let mut write_session = Session::open(Arc::new(writer.target(ENDPOINT))).await?;
    let mut read_session = Session::open(Arc::new(reader.target(ENDPOINT))).await?;
    let count_before = metric(reader, &format!("{LAG_HISTOGRAM}_count"), &[]).await?;
    let sum_before = metric(reader, &format!("{LAG_HISTOGRAM}_sum"), &[]).await?;
    let mut stale_reads = 0;
    for round in 0..rounds {
        let title = format!("lag round {round}");
        read_title(&mut read_session).await?;
        let params = json!({
            "name": "update_task",
            "arguments": {"id": TASK_ID, "title": title},
        });
        write_session.call(&params.to_string()).await?;
        if read_title(&mut read_session).await? != title {
            stale_reads += 1;
        }
    }
    // The lag is recorded when B applies a broadcast, which may be just after its read.
    let histogram_count = mcp_bridge_test_support::poll_until(
        mcp_bridge_test_support::SETTLE,
        async || {
            metric(reader, &format!("{LAG_HISTOGRAM}_count"), &[])
                .await
                .unwrap_or_default()
                - count_before
        },
        |count| *count >= rounds as f64,
    )
    .await;
    ensure!(
        histogram_count >= rounds as f64,
        "replica B measured {histogram_count} lags for {rounds} writes through replica A"
    );
    let sum = metric(reader, &format!("{LAG_HISTOGRAM}_sum"), &[]).await? - sum_before;
    let status = tier_status(reader).await?;
    let lag = &status["invalidation_lag_us"];
    let number = |field: &str| {
        lag[field]
            .as_u64()
            .with_context(|| format!("no invalidation_lag_us.{field} in {status}"))
    };
    Ok(LagReport {
        rounds,
        stale_reads,
        p50_us: number("p50")?,
        p99_us: number("p99")?,
        samples: number("samples")?,
        histogram_count,
        histogram_mean_us: sum / histogram_count.max(1.0) * 1e6,
    })
}

/// Reads the task list and returns the title of [`TASK_ID`].
async fn read_title(session: &mut Session) -> Result<String> {
    let answer = answer_json(&session.call(READ_PARAMS).await?)?;
    let tasks = answer["result"]["structuredContent"]["tasks"]
        .as_array()
        .with_context(|| format!("no task list in {answer}"))?;
    let task = tasks
        .iter()
        .find(|task| task["id"] == TASK_ID)
        .with_context(|| format!("no task {TASK_ID} in {answer}"))?;
    Ok(task["title"].as_str().unwrap_or_default().to_owned())
}

/// The JSON-RPC answer in a response: the body, or the last `data:` event of an SSE stream.
fn answer_json(answer: &Answer) -> Result<Value> {
    if answer.content_type.starts_with("text/event-stream") {
        let text = std::str::from_utf8(&answer.body).context("the SSE body is not UTF-8")?;
        let data = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .next_back()
            .context("an SSE stream without a data event")?;
        return serde_json::from_str(data.trim()).context("SSE data is not JSON");
    }
    serde_json::from_slice(&answer.body).context("the answer is not JSON")
}
