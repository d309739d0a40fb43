//! The application: wires the layers into the bridge `serve` runs. It starts the router
//! (pools, cache), the trace recorder, the plugin host (publishing its chains into the
//! router's cache layer through a [`PolicySink`]), composes the admin API from them
//! ([`admin`]), hands the front what it serves (with the shared tier's session directory,
//! [`replicas`]), tells the plugin host the servers' tool catalogues ([`catalogues`]),
//! and watches the config file ([`reload`]). It is the one place that knows every layer; the layers know only the
//! ones below them.

mod admin;
mod catalogues;
mod reload;
mod replicas;
mod systemd;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use mcp_bridge::auth::{AuthMetrics, IdentityHandle};
use mcp_bridge::config::BridgeConfig;
use mcp_bridge::front::{self, AppState, SessionDirectory};
use mcp_bridge::lab::shadow::{Shadow, ShadowSetup};
use mcp_bridge::metrics::Registry;
use mcp_bridge::plugin::PluginMetrics;
use mcp_bridge::plugin::PluginRuntime;
use mcp_bridge::policy::{PolicyChain, PolicySink};
use mcp_bridge::router::Router;
use mcp_bridge::shared::SharedTier;
use mcp_bridge::trace::{self, RecordOptions, Recorder};
use prometheus::IntCounter;

/// Serves the bridge on `config.http.listen` until `shutdown` resolves; `watched` is the
/// config file to hot-reload, `record` the trace to write (`serve --record`).
pub(crate) async fn serve(
    config: BridgeConfig,
    watched: Option<PathBuf>,
    record: Option<RecordOptions>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (http.listen or --listen)",
                config.http.listen
            )
        })?;
    let address = listener.local_addr()?;
    let names: Vec<&str> = config
        .servers
        .iter()
        .map(|server| server.name.as_str())
        .collect();
    tracing::info!(config = %config.source, servers = %names.join(","), "listening on http://{address}/mcp");
    // One registry; each layer registers its own metrics in it as it starts.
    let registry = Registry::new();
    registry.register_process_metrics();
    let shared = start_shared_tier(&config, &registry)?;
    let mut router =
        Router::start(&config, &registry, shared.clone()).context("cannot start the cache")?;
    // Kept to write the disk cache's last fills once serving has stopped.
    let cache = router.cache().cloned();
    let dropped_records = trace::register_dropped_records(&registry);
    let recorder = match record {
        Some(options) => {
            let recorder = start_recorder(options, dropped_records)?;
            router.set_recorder(recorder.clone());
            Some(recorder)
        }
        None => None,
    };
    let shadow = start_shadow(&config, &router, &registry)?;
    if let Some(shadow) = &shadow {
        router.set_tap(shadow.clone());
    }
    // Without a cache no policy is ever asked, so there is nowhere to publish one.
    let policies = router.cache_layer().map(|layer| {
        let layer = layer.clone();
        Arc::new(move |chain: PolicyChain| layer.set_policies(chain)) as Arc<dyn PolicySink>
    });
    let plugins = PluginRuntime::start(
        &config,
        policies.clone(),
        &Arc::new(PluginMetrics::register(&registry)),
    )
    .context("cannot start the plugin host")?;
    let plugin_host = plugins.as_ref().map(|plugins| plugins.host.clone());
    // From here on every tool list a backend reads is smoke-called on the plugins before
    // the backend serves with it (the prewarmed processes' first handshakes usually end
    // after the plugins have loaded).
    if let Some(host) = &plugin_host {
        catalogues::observe(&router, host).await;
    }
    let admin = Arc::new(admin::Admin {
        servers: router.servers().to_vec(),
        cache: router.cache_layer().cloned(),
        plugins,
        recorder: recorder.clone(),
        shadow: shadow.clone(),
    });
    let identity = Arc::new(
        IdentityHandle::new(&config, Arc::new(AuthMetrics::register(&registry)))
            .context("cannot start the identity layer ([auth])")?,
    );
    let directory: Arc<dyn SessionDirectory> = match &shared {
        Some(tier) => Arc::new(replicas::SharedSessions { tier: tier.clone() }),
        None => Arc::new(front::NoDirectory),
    };
    let state = AppState::new(
        Arc::new(router),
        config.http.clone(),
        admin,
        &registry,
        identity.clone(),
        &config.audit,
        &config.sessions,
        directory,
    )?;
    if let Some(tier) = &shared {
        tier.add_listener(Arc::new(replicas::SessionEvents {
            front: Arc::downgrade(&state),
        }));
    }
    // Kept alive while serving: dropping the watcher stops hot reloading.
    let _watcher = match watched {
        Some(path) => Some(reload::watch(
            path,
            config,
            policies,
            plugin_host,
            identity,
            state.clone(),
        )?),
        None => None,
    };
    // Everything has started: a `Type=notify` unit may now count the bridge as up.
    systemd::notify("READY=1");
    let shutdown = async {
        shutdown.await;
        systemd::notify("STOPPING=1");
    };
    front::serve(listener, state, shutdown).await?;
    // The trace's last records are written before the process exits.
    if let Some(recorder) = recorder {
        tokio::task::spawn_blocking(move || recorder.close()).await?;
    }
    if let Some(shadow) = shadow {
        tokio::task::spawn_blocking(move || shadow.close()).await?;
    }
    // So are the disk cache's queued fills.
    if let Some(cache) = cache {
        tokio::task::spawn_blocking(move || cache.close()).await?;
    }
    Ok(())
}

/// The shared tier (`[cache.shared]`), when configured and the cache is on. Redis need not
/// answer yet: the tier connects in the background and calls go without it meanwhile.
fn start_shared_tier(
    config: &BridgeConfig,
    registry: &Registry,
) -> anyhow::Result<Option<Arc<SharedTier>>> {
    let Some(shared) = config
        .cache
        .shared
        .as_ref()
        .filter(|_| config.cache.enabled)
    else {
        return Ok(None);
    };
    // `rediss://` runs on rustls with ring, the provider the JWKS fetches use too.
    mcp_bridge::auth::install_tls_crypto_provider();
    let tier = SharedTier::start(shared, registry)
        .context("cannot start the shared tier ([cache.shared])")?;
    tracing::info!(
        consistency = shared.consistency.as_str(),
        "the cache has a shared tier"
    );
    Ok(Some(tier))
}

/// The shadow evaluator (`[lab.shadow]`), when candidates are configured; the config
/// check has made sure the cache is on.
fn start_shadow(
    config: &BridgeConfig,
    router: &Router,
    registry: &Registry,
) -> anyhow::Result<Option<Arc<Shadow>>> {
    if router.cache_layer().is_none() || !config.shadow.is_enabled() {
        return Ok(None);
    }
    let shadow = Shadow::start(ShadowSetup {
        config: &config.shadow,
        plugins: &config.plugins,
        builtin: config.builtin_settings(),
        limits: mcp_bridge::lab::replay::sim::SimLimits::of(&config.cache),
        hit_latency: SHADOW_HIT_LATENCY,
        registry,
    })
    .context("cannot start shadow evaluation ([lab.shadow])")?;
    Ok(Some(shadow))
}

/// What a hit costs in the shadow's latency numbers: the lab's default.
const SHADOW_HIT_LATENCY: std::time::Duration = std::time::Duration::from_micros(100);

fn start_recorder(
    options: RecordOptions,
    dropped_records: IntCounter,
) -> anyhow::Result<Arc<Recorder>> {
    let path = options.path.display().to_string();
    let recorder =
        Recorder::start(options, dropped_records).context("cannot start recording (--record)")?;
    tracing::info!(trace = %path, active = recorder.is_active(), "recording answered calls");
    Ok(recorder)
}
