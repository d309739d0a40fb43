//! The rows a shadow evaluates: each `[[lab.shadow.candidate]]` as the chain it would
//! run if deployed (a plugin before the built-in policy, or the built-in policy with
//! other settings), and the production chain as configured, in a simulated cache. Every
//! plugin a row runs is loaded into the shadow's own instances: production's plugin
//! objects (their warm instances, fault records and metrics) are never touched.

use std::path::Path;
use std::sync::Arc;

use super::evaluator::Row;
use crate::LabError;
use crate::results::RunKind;
use mcp_bridge_config::{CandidatePolicy, PluginsConfig, ShadowCandidate, ShadowConfig};
use mcp_bridge_plugin_host::{Limits, PluginEngine, PluginMetrics, WasmPolicy};
use mcp_bridge_policy::{BuiltinPolicy, BuiltinSettings, Policy, PolicyChain, TtlMap};

/// The row of the production chain in a simulated cache: it shows how far the
/// simulation is from the live cache on the same calls.
pub(super) const PRODUCTION_SIMULATED: &str = "production-simulated";
/// The row of what the live cache did.
pub(super) const PRODUCTION: &str = "production";

/// What loading a row's plugins needs.
pub(super) struct Loader<'a> {
    pub engine: &'a PluginEngine,
    pub plugins: &'a PluginsConfig,
    pub builtin: &'a BuiltinSettings,
}

impl Loader<'_> {
    /// The production chain as the config binds it (`[[plugins.policy]]`, in order, with
    /// each binding's servers and config), before the config's built-in policy. Files
    /// `auto_bind` would add are not in it; a binding that does not load makes the row
    /// one that failed, with why.
    pub(super) fn production(&self) -> Row {
        let mut policies: Vec<Arc<dyn Policy>> = Vec::new();
        let mut versions = Vec::new();
        let source = "the configured [[plugins.policy]] bindings and the config's built-in policy, in a simulated cache";
        for binding in &self.plugins.bindings {
            let Some(dir) = &self.plugins.dir else {
                break;
            };
            match self.plugin(
                &binding.name,
                &dir.join(&binding.file),
                binding.servers.clone(),
                &binding.config_json,
            ) {
                Ok(policy) => {
                    policies.push(policy.clone());
                    versions.push(policy);
                }
                Err(error) => {
                    return Row::failed(PRODUCTION_SIMULATED, RunKind::Wasm, source, error);
                }
            }
        }
        let kind = if policies.is_empty() {
            RunKind::Builtin
        } else {
            RunKind::Wasm
        };
        let builtin = Arc::new(BuiltinPolicy::new(self.builtin.clone()));
        Row::new(
            PRODUCTION_SIMULATED,
            kind,
            source.to_owned(),
            PolicyChain::new(policies, builtin),
            versions,
        )
    }

    /// Every candidate's row; one that cannot load is a row that failed, saying why.
    pub(super) fn candidates(&self, shadow: &ShadowConfig) -> Vec<Row> {
        shadow
            .candidates
            .iter()
            .map(|candidate| self.candidate(candidate, shadow.dir.as_deref()))
            .collect()
    }

    fn candidate(&self, candidate: &ShadowCandidate, dir: Option<&Path>) -> Row {
        // What the config contributes to every chain: its TTL rows and invalidation rules,
        // unless the candidate is judged without them.
        let mut settings = self.builtin.clone();
        if !candidate.config_rules {
            settings.ttl_table = TtlMap::new();
            settings.invalidation_rules = Vec::new();
        }
        let (file, config_json) = match &candidate.policy {
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
                return Row::new(
                    &candidate.name,
                    RunKind::Builtin,
                    "builtin".to_owned(),
                    chain,
                    Vec::new(),
                );
            }
            CandidatePolicy::Plugin { file, config_json } => (file, config_json),
        };
        // The config check makes sure a plugin candidate has a directory.
        let path = dir.map_or_else(|| Path::new(file).to_path_buf(), |dir| dir.join(file));
        let source = path.display().to_string();
        match self.plugin(&candidate.name, &path, Vec::new(), config_json) {
            Ok(policy) => {
                let builtin = Arc::new(BuiltinPolicy::new(settings));
                Row::new(
                    &candidate.name,
                    RunKind::Wasm,
                    source,
                    PolicyChain::new(vec![policy.clone()], builtin),
                    vec![policy],
                )
            }
            Err(error) => Row::failed(&candidate.name, RunKind::Wasm, &source, error),
        }
    }

    /// One plugin in the shadow's own instance, with the `[plugins]` limits and metrics of
    /// its own (a candidate's faults must not show as production's).
    fn plugin(
        &self,
        name: &str,
        path: &Path,
        servers: Vec<String>,
        config_json: &str,
    ) -> Result<Arc<WasmPolicy>, LabError> {
        let metrics = Arc::new(PluginMetrics::register(&mcp_bridge_metrics::Registry::new()));
        let load = crate::policies::PluginLoad {
            name,
            file: path,
            config_json: config_json.to_owned(),
            servers,
            instances: 1,
            limits: Some(Limits::from_config(self.plugins)),
        };
        Ok(Arc::new(crate::policies::load_plugin(
            self.engine,
            load,
            &metrics,
        )?))
    }
}
