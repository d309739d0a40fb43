//! Unit tests of the plugin host (`host.rs`).
use super::*;
use mcp_bridge_policy::BuiltinSettings;

#[test]
fn the_reload_log_keeps_only_the_newest_events() {
    let mut log = ReloadLog::default();
    for generation in 1..=(RECENT_RELOADS as u64 + 5) {
        log.record("probe.wasm", "loaded", generation, String::new());
    }
    let events = log.newest_first();
    assert_eq!(events.len(), RECENT_RELOADS);
    assert_eq!(events[0].generation, RECENT_RELOADS as u64 + 5);
    assert_eq!(events[RECENT_RELOADS - 1].generation, 6);
}

#[test]
fn only_a_changed_plugins_config_is_listed_in_the_recent_reloads() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = PluginsConfig {
        dir: Some(dir.path().to_owned()),
        ..PluginsConfig::default()
    };
    let builtin = || Arc::new(BuiltinPolicy::new(BuiltinSettings::default()));
    let sink: Arc<dyn PolicySink> = Arc::new(|_chain: PolicyChain| {});
    let metrics = Arc::new(PluginMetrics::register(&mcp_bridge_metrics::Registry::new()));
    let host = PluginHost::start(
        config.clone(),
        dir.path().to_owned(),
        builtin(),
        sink,
        metrics,
    )
    .expect("the host starts on an empty directory");
    let reconfigured = |host: &PluginHost| {
        host.state
            .lock()
            .recent_reloads
            .newest_first()
            .iter()
            .filter(|event| event.outcome == "reconfigured")
            .count()
    };

    // A reload that leaves [plugins] as it was (a TTL row edited, say) still rebuilds
    // the chain, but lists nothing.
    let before = host.generation();
    let generation = host
        .reconfigure(config.clone(), builtin())
        .expect("the same config applies");
    assert!(generation > before, "the chain is rebuilt");
    assert_eq!(reconfigured(&host), 0);

    let changed = PluginsConfig {
        max_idle_instances: config.max_idle_instances + 1,
        ..config
    };
    host.reconfigure(changed, builtin())
        .expect("the changed config applies");
    assert_eq!(reconfigured(&host), 1);
}
