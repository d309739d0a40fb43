//! `--fail-if-worse`: whether a run is worse than its baseline, policy by policy, so a
//! plugin repository can refuse a change that makes its policy worse.
//!
//! Each policy of this run is compared with the baseline's policy of the same name on the
//! headline numbers: it is worse when its hit ratio fell, its stale-hit ratio rose, or its
//! decisions got slower by more than the thresholds. The bounds (no cache, perfect,
//! Belady) depend on the trace alone and are not judged. A policy the baseline had and this
//! run lacks is a failure too: the comparison it asked for did not happen.

use std::fmt;

use crate::results::LabReport;

/// Default for `--max-hit-ratio-drop`, in percentage points.
pub const DEFAULT_MAX_HIT_RATIO_DROP_PP: f64 = 0.5;
/// Default for `--max-stale-rise`, in percentage points.
pub const DEFAULT_MAX_STALE_RISE_PP: f64 = 0.1;
/// Default for `--max-decision-slowdown`, as a factor of the baseline's mean decision cost.
pub const DEFAULT_MAX_DECISION_SLOWDOWN: f64 = 2.0;
/// Decision costs this close are never called a slowdown: below it, timer and scheduling
/// noise on a busy machine is larger than any real change.
const DECISION_NOISE_FLOOR_NS: f64 = 200.0;

/// How much worse a policy may get before the run fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Percentage points of hit ratio a policy may lose.
    pub max_hit_ratio_drop_pp: f64,
    /// Percentage points of stale-hit ratio a policy may gain.
    pub max_stale_rise_pp: f64,
    /// The factor a policy's mean decision cost may grow by.
    pub max_decision_slowdown: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_hit_ratio_drop_pp: DEFAULT_MAX_HIT_RATIO_DROP_PP,
            max_stale_rise_pp: DEFAULT_MAX_STALE_RISE_PP,
            max_decision_slowdown: DEFAULT_MAX_DECISION_SLOWDOWN,
        }
    }
}

/// One way one policy got worse.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    pub policy: String,
    pub what: Worse,
}

/// What got worse, with the numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum Worse {
    HitRatio {
        before: f64,
        after: f64,
        limit_pp: f64,
    },
    StaleHitRatio {
        before: f64,
        after: f64,
        limit_pp: f64,
    },
    DecisionCost {
        before_ns: f64,
        after_ns: f64,
        limit: f64,
    },
    /// The baseline had the policy; this run did not replay it.
    Missing,
}

impl fmt::Display for Regression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = &self.policy;
        match self.what {
            Worse::HitRatio {
                before,
                after,
                limit_pp,
            } => write!(
                f,
                "{policy}: hit ratio fell from {:.2}% to {:.2}% ({:+.2} pp; at most -{limit_pp} pp allowed, --max-hit-ratio-drop)",
                before * 100.0,
                after * 100.0,
                (after - before) * 100.0
            ),
            Worse::StaleHitRatio {
                before,
                after,
                limit_pp,
            } => write!(
                f,
                "{policy}: stale-hit ratio rose from {:.3}% to {:.3}% ({:+.3} pp; at most +{limit_pp} pp allowed, --max-stale-rise)",
                before * 100.0,
                after * 100.0,
                (after - before) * 100.0
            ),
            Worse::DecisionCost {
                before_ns,
                after_ns,
                limit,
            } => write!(
                f,
                "{policy}: a decision costs {after_ns:.0} ns, {:.2}x the baseline's {before_ns:.0} ns (at most {limit}x allowed, --max-decision-slowdown)",
                after_ns / before_ns.max(f64::MIN_POSITIVE)
            ),
            Worse::Missing => write!(
                f,
                "{policy}: in the baseline but not replayed in this run; replay it under the same name (--policy {policy}=FILE.wasm)"
            ),
        }
    }
}

/// Every way this run's policies are worse than the baseline's; empty when none is.
pub fn regressions(
    baseline: &LabReport,
    now: &LabReport,
    thresholds: &Thresholds,
) -> Vec<Regression> {
    let mut found = Vec::new();
    for old in &baseline.policies {
        let Some(new) = now.policies.iter().find(|run| run.name == old.name) else {
            found.push(Regression {
                policy: old.name.clone(),
                what: Worse::Missing,
            });
            continue;
        };
        let (then, current) = (&old.metrics, &new.metrics);
        let mut worse = |what| {
            found.push(Regression {
                policy: old.name.clone(),
                what,
            })
        };
        if (then.hit_ratio - current.hit_ratio) * 100.0 > thresholds.max_hit_ratio_drop_pp {
            worse(Worse::HitRatio {
                before: then.hit_ratio,
                after: current.hit_ratio,
                limit_pp: thresholds.max_hit_ratio_drop_pp,
            });
        }
        if (current.stale_hit_ratio - then.stale_hit_ratio) * 100.0 > thresholds.max_stale_rise_pp {
            worse(Worse::StaleHitRatio {
                before: then.stale_hit_ratio,
                after: current.stale_hit_ratio,
                limit_pp: thresholds.max_stale_rise_pp,
            });
        }
        let slower = current.decision_ns > then.decision_ns * thresholds.max_decision_slowdown
            && current.decision_ns - then.decision_ns > DECISION_NOISE_FLOOR_NS;
        if slower {
            worse(Worse::DecisionCost {
                before_ns: then.decision_ns,
                after_ns: current.decision_ns,
                limit: thresholds.max_decision_slowdown,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{PolicyRun, ReplayMetrics, RunKind};

    fn report(runs: &[(&str, f64, f64, f64)]) -> LabReport {
        let policies = runs
            .iter()
            .map(|(name, hit, stale, decision)| PolicyRun {
                name: (*name).to_owned(),
                kind: RunKind::Wasm,
                source: String::new(),
                metrics: ReplayMetrics {
                    hit_ratio: *hit,
                    stale_hit_ratio: *stale,
                    decision_ns: *decision,
                    ..ReplayMetrics::default()
                },
                events_per_second: 0.0,
            })
            .collect();
        let empty: LabReport = serde_json::from_value(serde_json::json!({
            "version": 1, "created_at": 0,
            "trace": {"source": "", "events": 0, "reads": 0, "writes": 0, "servers": 0,
                "working_set_entries": 0, "working_set_bytes": 0, "duration_ms": 0.0,
                "unverifiable_reads": 0},
            "settings": {"cache_bytes": 0, "max_entries": 1, "size_fraction": 1.0, "hit_latency_us": 0.0,
                "size_fractions": [], "ttl_scales": [], "eviction": ""},
            "policies": [], "bounds": [], "size_sweep": [], "ttl_sweep": []
        }))
        .expect("an empty report");
        LabReport { policies, ..empty }
    }

    #[test]
    fn the_same_numbers_and_small_changes_pass() {
        let before = report(&[("p", 0.50, 0.010, 1000.0)]);
        assert!(regressions(&before, &before, &Thresholds::default()).is_empty());
        let close = report(&[("p", 0.497, 0.0105, 1900.0)]);
        assert!(regressions(&before, &close, &Thresholds::default()).is_empty());
        // A cheap decision that doubles stays under the noise floor.
        let cheap = report(&[("p", 0.50, 0.010, 100.0)]);
        let doubled = report(&[("p", 0.50, 0.010, 200.0)]);
        assert!(regressions(&cheap, &doubled, &Thresholds::default()).is_empty());
    }

    #[test]
    fn each_way_of_getting_worse_is_named_with_its_numbers() {
        let before = report(&[("p", 0.50, 0.010, 1000.0), ("gone", 0.1, 0.0, 10.0)]);
        let after = report(&[("p", 0.40, 0.020, 5000.0), ("new", 0.9, 0.0, 10.0)]);
        let found = regressions(&before, &after, &Thresholds::default());
        let kinds: Vec<&Worse> = found.iter().map(|regression| &regression.what).collect();
        assert!(matches!(kinds[0], Worse::HitRatio { .. }));
        assert!(matches!(kinds[1], Worse::StaleHitRatio { .. }));
        assert!(matches!(kinds[2], Worse::DecisionCost { .. }));
        assert_eq!(kinds[3], &Worse::Missing);
        assert_eq!(found.len(), 4);
        let text = found[0].to_string();
        assert!(text.contains("50.00%") && text.contains("40.00%"), "{text}");
        // Looser thresholds let the same change through.
        let loose = Thresholds {
            max_hit_ratio_drop_pp: 20.0,
            max_stale_rise_pp: 5.0,
            max_decision_slowdown: 10.0,
        };
        let found = regressions(&before, &after, &loose);
        assert_eq!(found.len(), 1, "{found:?}");
    }
}
