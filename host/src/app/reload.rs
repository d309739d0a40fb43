//! Configuration hot reload: what a running bridge applies when its config file changes.

use std::path::PathBuf;
use std::sync::Arc;

use mcp_bridge::auth::IdentityHandle;
use mcp_bridge::config::BridgeConfig;
use mcp_bridge::front::AppState;
use mcp_bridge::plugin::PluginHost;
use mcp_bridge::policy::{PolicyChain, PolicySink};

use super::watch::{self, ConfigWatcher};

/// Re-reads the config file when it changes and applies what can change while running:
/// the cache's TTL table and invalidation rules, as a new policy chain (through the plugin
/// host when plugins run, so the chain keeps them), and the session keys. Pools and HTTP settings need a
/// restart, which the log says; an invalid file is logged (and, with plugins, shown in
/// `/admin/plugins` as `config_rejection`) and the running config stays.
pub(crate) fn watch(
    path: PathBuf,
    running: BridgeConfig,
    policies: Option<Arc<dyn PolicySink>>,
    plugins: Option<Arc<PluginHost>>,
    identity: Arc<IdentityHandle>,
    front: Arc<AppState>,
) -> anyhow::Result<ConfigWatcher> {
    let refused_plugins = plugins.clone();
    let on_invalid = move |error: &mcp_bridge::config::ConfigError| {
        if let Some(plugins) = &refused_plugins {
            plugins.config_rejected(error.to_string());
        }
    };
    let watcher = watch::watch(
        path,
        move |new| {
            // Session keys apply to the next request: sessions signed by a key still listed
            // keep working, the others end.
            front.reload_sessions(&new.sessions);
            if new.sessions != running.sessions {
                tracing::info!(config = %new.source, keys = new.sessions.keys.len(), "reloaded [sessions]");
            }
            // Credentials, access rules and limits apply to the next request; keys that cannot
            // be read leave the running identity layer in place.
            match identity.reload(&new) {
                Ok(()) => tracing::info!(
                    config = %new.source,
                    api_keys = new.auth.api_keys.len(),
                    access_rules = new.access.rules.len(),
                    limit_rules = new.limits.rules.len(),
                    "reloaded [auth], [access] and [limits]"
                ),
                Err(error) => {
                    tracing::error!(config = %new.source, %error, "the new [auth] settings do not load; the running ones stay")
                }
            }
            // `--listen` overrides the file, so the listen address is not a change.
            let mut new_http = new.http.clone();
            new_http.listen = running.http.listen;
            if new.servers != running.servers || new_http != running.http {
                tracing::warn!(
                    config = %new.source,
                    "the config file changed [http] or [servers]; those apply on restart, the cache rules apply now"
                );
            }
            if new.principal_secrets != running.principal_secrets
                || new.processes != running.processes
            {
                tracing::warn!(
                    config = %new.source,
                    "the config file changed [principal_secrets] or [processes]; those apply on restart"
                );
            }
            if new.shadow != running.shadow {
                tracing::warn!(
                    config = %new.source,
                    "the config file changed [lab.shadow]; shadow candidates apply on restart"
                );
            }
            if new.telemetry != running.telemetry {
                tracing::warn!(
                    config = %new.source,
                    "the config file changed [telemetry]; tracing settings apply on restart"
                );
            }
            if new.cache.backend != running.cache.backend {
                tracing::warn!(
                    config = %new.source,
                    "the config file changed [cache] backend or path; that applies on restart"
                );
            }
            let Some(policies) = &policies else {
                tracing::warn!(
                    "the cache is disabled in the running bridge; enabling it needs a restart"
                );
                return;
            };
            let builtin = Arc::new(new.builtin_policy());
            match &plugins {
                Some(plugins) => {
                    if let Err(error) = plugins.reconfigure(new.plugins.clone(), builtin) {
                        tracing::error!(config = %new.source, %error, "the new [plugins] bindings do not start; the running policies stay");
                        return;
                    }
                }
                None => policies.install(PolicyChain::new(Vec::new(), builtin)),
            }
            tracing::info!(
                config = %new.source,
                ttl_rows = new.cache.ttl_table.len(),
                rules = new.cache.invalidation_rules.len(),
                "reloaded the cache's TTL table and invalidation rules"
            );
        },
        on_invalid,
    )?;
    Ok(watcher)
}
