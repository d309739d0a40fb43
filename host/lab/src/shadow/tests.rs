//! The evaluator on hand-made calls: every row sees every call, a window restarts past
//! `max_keys` without losing the counts, and a truth sample makes a live hit stale.

use std::sync::Arc;

use super::evaluator::{Evaluator, Row};
use crate::results::RunKind;
use mcp_bridge_policy::{Annotations, BuiltinPolicy, BuiltinSettings, PolicyChain};
use mcp_bridge_trace::{RecordedCall, RecordedResult, RecordedStatus};

fn settings() -> BuiltinSettings {
    BuiltinSettings {
        default_ttl: Some(std::time::Duration::from_secs(60)),
        list_ttl: std::time::Duration::from_secs(60),
        stale_while_revalidate: std::time::Duration::ZERO,
        stale_if_error: std::time::Duration::ZERO,
        ttl_table: mcp_bridge_policy::TtlMap::new(),
        invalidation_rules: Vec::new(),
        uncached_servers: Default::default(),
    }
}

fn chain() -> PolicyChain {
    PolicyChain::new(Vec::new(), Arc::new(BuiltinPolicy::new(settings())))
}

fn evaluator(max_keys: u32) -> Evaluator {
    let row = |name: &str| {
        Row::new(
            name,
            RunKind::Builtin,
            "builtin".to_owned(),
            chain(),
            Vec::new(),
        )
    };
    Evaluator::new(
        row("production-simulated"),
        vec![row("candidate")],
        max_keys,
        crate::replay::sim::SimLimits::unbounded(),
        100.0,
    )
}

fn rows(evaluator: &Evaluator) -> serde_json::Value {
    evaluator.rows_status(&evaluator.report())
}

/// A read of `get_tasks` with `arguments`, answered `digest` (a hit when `hit`).
fn read(t_us: u64, arguments: &str, digest: u64, hit: bool) -> RecordedCall {
    RecordedCall {
        t_us,
        server: Arc::from("demo"),
        method: "tools/call".into(),
        name: "get_tasks".into(),
        args_hash: mcp_bridge_trace::Fnv64::of(arguments.as_bytes()),
        arguments: None,
        read_only: true,
        annotations: Annotations {
            read_only: Some(true),
            ..Annotations::default()
        },
        latency_us: if hit { 0 } else { 1000 },
        result: RecordedResult::Measured {
            bytes: 10,
            digest,
            hints: mcp_bridge_policy::ServerHints::default(),
        },
        status: RecordedStatus::Ok,
        partition: 0,
        hit,
        arguments_text: Some(arguments.into()),
        truth: None,
    }
}

fn row<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn every_row_sees_every_call_and_the_live_row_counts_what_was_served() {
    let mut evaluator = evaluator(1000);
    evaluator.process(read(1, "{}", 7, false));
    evaluator.process(read(2, "{}", 7, true));
    evaluator.process(read(3, "{}", 7, true));
    let rows = rows(&evaluator);
    for name in ["production", "production-simulated", "candidate"] {
        let row = row(&rows, name);
        assert_eq!(
            (row["reads"].as_u64(), row["hits"].as_u64()),
            (Some(3), Some(2)),
            "{name}: {row}"
        );
    }
}

#[test]
fn a_window_restarts_past_max_keys_and_the_counts_go_on() {
    let mut evaluator = evaluator(4);
    for index in 0..10 {
        evaluator.process(read(index, &format!("{{\"n\":{index}}}"), index, false));
    }
    assert!(evaluator.resets >= 2, "{} resets", evaluator.resets);
    let rows = rows(&evaluator);
    assert_eq!(row(&rows, "candidate")["reads"].as_u64(), Some(10));
    // The same call again after a restart is a miss for the simulated rows.
    evaluator.process(read(11, "{\"n\":9}", 9, false));
    assert_eq!(evaluator.calls, 11);
}

#[test]
fn a_truth_sample_that_differs_makes_a_live_hit_stale() {
    let mut evaluator = evaluator(1000);
    evaluator.process(read(1, "{}", 7, false));
    let mut sampled = read(2, "{}", 7, true);
    sampled.truth = Some(8);
    evaluator.process(sampled);
    let rows = rows(&evaluator);
    assert_eq!(row(&rows, "production")["stale_hits"].as_u64(), Some(1));
    // The simulated rows hold the same entry, so their hit is stale by the same truth.
    assert_eq!(row(&rows, "candidate")["stale_hits"].as_u64(), Some(1));
}
