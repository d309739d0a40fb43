//! The rows a shadow evaluates: each `[[lab.shadow.candidate]]` as the chain it would
//! run if deployed (a plugin before the built-in policy, or the built-in policy with
//! other settings), and the production chain itself in a simulated cache.

use std::sync::Arc;

use super::evaluator::{Row, RowPolicy};
use crate::LabError;
use crate::results::RunKind;
use mcp_bridge_config::{CandidatePolicy, PluginsConfig, ShadowCandidate};
use mcp_bridge_plugin_host::{Limits, PluginEngine, PluginMetrics};
use mcp_bridge_policy::{BuiltinPolicy, BuiltinSettings, PolicyChain, TtlMap};

/// The row of the production chain in a simulated cache: it shows how far the
/// simulation is from the live cache on the same calls.
pub(super) const PRODUCTION_SIMULATED: &str = "production-simulated";
/// The row of what the live cache did.
pub(super) const PRODUCTION: &str = "production";

/// Builds every candidate's row. A plugin that cannot load is an error naming it: a
/// shadow the operator asked for does not silently lose a candidate.
pub(super) fn rows(
    candidates: &[ShadowCandidate],
    plugins: &PluginsConfig,
    builtin: &BuiltinSettings,
    engine: &PluginEngine,
) -> Result<Vec<Row>, LabError> {
    candidates
        .iter()
        .map(|candidate| row(candidate, plugins, builtin, engine))
        .collect()
}

fn row(
    candidate: &ShadowCandidate,
    plugins: &PluginsConfig,
    builtin: &BuiltinSettings,
    engine: &PluginEngine,
) -> Result<Row, LabError> {
    // What the config contributes to every chain: its TTL rows and invalidation rules,
    // unless the candidate is judged without them.
    let mut settings = builtin.clone();
    if !candidate.config_rules {
        settings.ttl_table = TtlMap::new();
        settings.invalidation_rules = Vec::new();
    }
    match &candidate.policy {
        CandidatePolicy::Builtin {
            default_ttl,
            list_ttl,
            ttl,
        } => {
            if let Some(default_ttl) = default_ttl {
                settings.default_ttl = *default_ttl;
            }
            if let Some(list_ttl) = list_ttl {
                settings.list_ttl = *list_ttl;
            }
            if let Some(ttl) = ttl {
                settings.ttl_table = ttl.clone();
            }
            let chain = PolicyChain::new(Vec::new(), Arc::new(BuiltinPolicy::new(settings)));
            Ok(Row::new(
                &candidate.name,
                RunKind::Builtin,
                "builtin".to_owned(),
                RowPolicy::Fixed(chain),
                None,
            ))
        }
        CandidatePolicy::Plugin { file, config_json } => {
            let Some(dir) = &plugins.dir else {
                return Err(LabError::Policy {
                    name: candidate.name.clone(),
                    message: "a plugin candidate needs [plugins] dir".to_owned(),
                });
            };
            let path = dir.join(file);
            // Its own metrics registry: a candidate's faults must not show as production's.
            let metrics = Arc::new(PluginMetrics::register(&mcp_bridge_metrics::Registry::new()));
            let policy = crate::policies::load_plugin(
                engine,
                &candidate.name,
                &path,
                config_json.clone(),
                1,
                &metrics,
                Some(Limits::from_config(plugins)),
            )?;
            let version = policy.version().clone();
            let policy: Arc<dyn mcp_bridge_policy::Policy> = Arc::new(policy);
            let chain = PolicyChain::new(vec![policy], Arc::new(BuiltinPolicy::new(settings)));
            Ok(Row::new(
                &candidate.name,
                RunKind::Wasm,
                path.display().to_string(),
                RowPolicy::Fixed(chain),
                Some(version),
            ))
        }
    }
}
