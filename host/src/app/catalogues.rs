//! The servers' tool catalogues, told to the plugin host: every tool list a backend's
//! handshake or `list_changed` reads reaches `PluginHost::learn_catalogue`, so a binding
//! is smoke-called about the real tools of the servers it covers (at its start, and for
//! tools learned while it serves). The backend knows only its `CatalogObserver` seam; the
//! plugin host knows only names and annotations.

use std::sync::Arc;
use std::time::Duration;

use mcp_bridge::backend::{Catalog, CatalogObserver, CatalogReport};
use mcp_bridge::plugin::smoke::SMOKE_TIME_BUDGET;
use mcp_bridge::plugin::{CatalogueTool, PluginHost};
use mcp_bridge::policy::CallKind;
use mcp_bridge::router::{Router, annotations_of};

/// How long a pool waits for the smoke of a catalogue it read before serving with it:
/// the smoke's own budget and one slow last call. Past it the smoke goes on in the
/// background and the pool serves.
const SMOKE_WAIT: Duration = SMOKE_TIME_BUDGET.saturating_add(Duration::from_secs(1));

/// Tells every server's pools (an isolated server's groups included) to report their
/// catalogues to the plugin host. Called once the host has loaded the plugin directory
/// and before the front serves: a catalogue read before that is reported (and its smoke
/// done) here, one read later before its pool serves with it.
pub(crate) async fn observe(router: &Router, host: &Arc<PluginHost>) {
    let observer: Arc<dyn CatalogObserver> = Arc::new(PluginSmoke { host: host.clone() });
    // Every server's smoke at once: startup waits for the slowest, not for their sum.
    let reports: Vec<CatalogReport> = router
        .servers()
        .iter()
        .flat_map(|server| server.observe_catalogs(observer.clone()))
        .collect();
    futures_util::future::join_all(reports).await;
}

struct PluginSmoke {
    host: Arc<PluginHost>,
}

impl CatalogObserver for PluginSmoke {
    fn catalog_read(&self, server: &str, catalog: &Arc<Catalog>) -> CatalogReport {
        let tools: Vec<CatalogueTool> = catalog
            .tools
            .iter()
            .filter_map(|tool| tool.get("name")?.as_str())
            .map(|name| CatalogueTool {
                name: name.to_owned(),
                annotations: annotations_of(catalog, CallKind::Tool, name),
            })
            .collect();
        let host = self.host.clone();
        let server = server.to_owned();
        Box::pin(async move {
            // WASM calls block: on a blocking thread, never a runtime worker.
            let named = server.clone();
            let smoke = tokio::task::spawn_blocking(move || host.learn_catalogue(&server, tools));
            match tokio::time::timeout(SMOKE_WAIT, smoke).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::error!(server = %named, %error, "the plugin smoke over the server's tool catalogue failed")
                }
                Err(_) => {
                    tracing::warn!(server = %named, wait = ?SMOKE_WAIT, "the plugin smoke over the server's tool catalogue runs on in the background; the server serves meanwhile")
                }
            }
        })
    }
}
