//! The plugin host's metrics: reloads, generations, decisions, faults, decision time and
//! quarantine, by plugin.

use mcp_bridge_metrics::Registry;
use prometheus::{HistogramVec, IntCounterVec, IntGauge, IntGaugeVec};

/// Plugin call latency buckets in seconds: a warm decision takes about a microsecond;
/// the top buckets reach the decision timeout.
const PLUGIN_CALL_BUCKETS: &[f64] = &[
    0.000_000_5,
    0.000_001,
    0.000_002,
    0.000_005,
    0.000_01,
    0.000_05,
    0.000_1,
    0.001,
    0.01,
    0.1,
];

/// What the plugin host reports.
pub struct PluginMetrics {
    pub plugin_reloads_total: IntCounterVec,
    pub plugin_generation: IntGaugeVec,
    pub policy_generation: IntGauge,
    pub plugin_decisions_total: IntCounterVec,
    pub plugin_faults_total: IntCounterVec,
    pub plugin_decision_seconds: HistogramVec,
    pub plugin_quarantined: IntGaugeVec,
    pub plugin_quarantined_tools: IntGaugeVec,
}

impl PluginMetrics {
    /// Registers the plugin host's metrics. Call once per registry: a second call is a
    /// programming error (the names are taken) and panics.
    pub fn register(registry: &Registry) -> PluginMetrics {
        PluginMetrics {
            plugin_reloads_total: registry.counter_vec(
                    "plugin_reloads_total",
                    "Plugin file loads by result: loaded (new or changed version serving), rejected (the old one keeps serving), unloaded (file deleted).",
                    &["plugin", "result"],
                ),
            plugin_generation: registry.gauge_vec(
                    "plugin_generation",
                    "The policy generation at which each plugin's serving version was swapped in.",
                    &["plugin"],
                ),
            policy_generation: registry.gauge(
                    "policy_generation",
                    "The current policy generation: it increases with every plugin swap and config reload.",
                ),
            plugin_decisions_total: registry.counter_vec(
                    "plugin_decisions_total",
                    "Calls into plugin bindings by interface (cache-policy, ttl-table, invalidation-rules).",
                    &["plugin", "interface"],
                ),
            plugin_faults_total: registry.counter_vec(
                    "plugin_faults_total",
                    "Plugin calls that faulted and fell back to the safe default, by kind (trap, deadline, out_of_memory, instantiate).",
                    &["plugin", "kind"],
                ),
            plugin_decision_seconds: registry.histogram_vec(
                    "plugin_decision_seconds",
                    "Time spent in one plugin call, instance checkout included.",
                    &["plugin"],
                    PLUGIN_CALL_BUCKETS,
                ),
            plugin_quarantined: registry.gauge_vec(
                    "plugin_quarantined",
                    "1 while a plugin binding is quarantined for every tool (faults not tied to a tool, or too many quarantined tools).",
                    &["plugin"],
                ),
            plugin_quarantined_tools: registry.gauge_vec(
                    "plugin_quarantined_tools",
                    "Tools a plugin binding is quarantined for on their own (repeated faults for that tool); its other tools are still asked.",
                    &["plugin"],
                ),
        }
    }
}
