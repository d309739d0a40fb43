//! The plugin host: which plugin versions are loaded, which bindings serve, and the
//! atomic swap of the cache's policy chain when either changes (Varnish VCL's model).
//!
//! A rescan compiles and validates every new or changed `.wasm` off the request path;
//! only a version whose every binding passes `init` and a smoke call is swapped in, as
//! one new policy chain. Calls already running keep the chain they started with, so
//! an old generation is freed when its last call finishes.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

use super::engine::{PluginEngine, hex_sha256};
use super::error::PluginError;
use super::health::{Quarantine, SMOKE_QUARANTINE};
use super::overrides;
use super::smoke::{self, CatalogueTool, Catalogues, KnownTools, LateSmoke, SMOKE_TIME_BUDGET};
use super::version::{Limits, PluginVersion};
use super::wasm_policy::WasmPolicy;
use crate::PluginMetrics;
use mcp_bridge_config::PluginsConfig;
use mcp_bridge_policy::{BuiltinPolicy, Policy, PolicyChain, PolicySink};

mod admin_view;

/// The file name plugins must end with.
const PLUGIN_EXTENSION: &str = "wasm";

/// How many reload events the admin view keeps (the newest; older ones are dropped), so
/// a directory that changes all day holds the host's memory flat.
pub const RECENT_RELOADS: usize = 16;

/// Why a file's latest content is not serving.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub hash: String,
    pub at: String,
    pub kind: &'static str,
    pub message: String,
}

/// What one rescan changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RescanReport {
    /// The policy generation after the rescan.
    pub generation: u64,
    pub loaded: Vec<String>,
    pub unloaded: Vec<String>,
    pub rejected: Vec<RejectedFile>,
    pub unchanged: usize,
}

/// One entry of the admin view's recent reloads: a file loaded, unloaded or rejected by
/// a rescan, or the plugin config applied (or refused) by a config reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadEvent {
    pub at: String,
    /// The plugin file, or empty for a config reload.
    pub file: String,
    /// `loaded`, `unloaded`, `rejected`, `reconfigured` or `reconfigure_failed`.
    pub outcome: &'static str,
    /// The policy generation after the event (unchanged by a rejection).
    pub generation: u64,
    pub message: String,
}

/// The last config reload whose `[plugins]` did not apply: a file that did not parse or
/// validate, or a binding that would not start. Kept (and shown in `/admin/plugins`) until
/// a later reload applies, so an edit that was refused is visible where the bindings are,
/// not only in the log.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigRejection {
    pub at: String,
    /// The binding that would not start, when one did not.
    pub binding: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectedFile {
    pub file: String,
    pub error: String,
}

/// A binding as resolved against the files present: from `[[plugins.policy]]`, or a
/// file nobody names, bound to every server with an empty config.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    name: String,
    file: String,
    servers: Vec<String>,
    config_json: String,
}

struct HostState {
    config: PluginsConfig,
    builtin: Arc<BuiltinPolicy>,
    versions: BTreeMap<String, Arc<PluginVersion>>,
    rejected: BTreeMap<String, Rejection>,
    active: Vec<Arc<WasmPolicy>>,
    /// The servers' tool catalogues as the wiring reported them: what a starting binding
    /// is smoke-called about.
    catalogues: Catalogues,
    /// What the last reloads did, for the admin view.
    recent_reloads: ReloadLog,
    /// The refused config reload, until one applies.
    config_rejection: Option<ConfigRejection>,
}

/// The last [`RECENT_RELOADS`] reload events, oldest first: a ring, so it never grows.
#[derive(Debug, Default)]
struct ReloadLog(VecDeque<ReloadEvent>);

impl ReloadLog {
    fn record(&mut self, file: &str, outcome: &'static str, generation: u64, message: String) {
        if self.0.len() >= RECENT_RELOADS {
            self.0.pop_front();
        }
        self.0.push_back(ReloadEvent {
            at: now_rfc3339(),
            file: file.to_owned(),
            outcome,
            generation,
            message,
        });
    }

    fn newest_first(&self) -> Vec<&ReloadEvent> {
        self.0.iter().rev().collect()
    }
}

/// The current wall-clock time as the admin view shows times.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Loads, validates and swaps policy plugins; owns the one engine.
pub struct PluginHost {
    engine: PluginEngine,
    metrics: Arc<PluginMetrics>,
    /// Where each new chain is published.
    sink: Arc<dyn PolicySink>,
    dir: PathBuf,
    state: Mutex<HostState>,
    generation: AtomicU64,
}

impl PluginHost {
    /// Starts the engine and loads what the plugin directory holds now (creating the
    /// directory when it does not exist). Bad files are rejected and logged; they do
    /// not stop the bridge.
    pub fn start(
        config: PluginsConfig,
        dir: PathBuf,
        builtin: Arc<BuiltinPolicy>,
        sink: Arc<dyn PolicySink>,
        metrics: Arc<PluginMetrics>,
    ) -> Result<Arc<PluginHost>, PluginError> {
        std::fs::create_dir_all(&dir).map_err(|source| PluginError::Read {
            path: dir.clone(),
            source,
        })?;
        let engine = PluginEngine::new(config.compiled_cache_dir.clone())?;
        let host = Arc::new(PluginHost {
            engine,
            metrics,
            sink,
            dir,
            state: Mutex::new(HostState {
                config,
                builtin,
                versions: BTreeMap::new(),
                rejected: BTreeMap::new(),
                active: Vec::new(),
                catalogues: Catalogues::default(),
                recent_reloads: ReloadLog::default(),
                config_rejection: None,
            }),
            generation: AtomicU64::new(0),
        });
        host.rescan(true);
        Ok(host)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Brings the loaded versions in line with the directory. `retry_rejected` also
    /// retries files whose exact content was rejected before (a forced reload does;
    /// a file-change event does not, so a bad file is reported once).
    pub fn rescan(&self, retry_rejected: bool) -> RescanReport {
        let files = match read_plugin_files(&self.dir) {
            Ok(files) => files,
            Err(error) => {
                tracing::error!(dir = %self.dir.display(), %error, "cannot list the plugin directory; the loaded plugins keep serving");
                return RescanReport {
                    generation: self.generation(),
                    ..RescanReport::default()
                };
            }
        };
        let mut state = self.state.lock();
        let mut report = RescanReport::default();
        let mut next = state.versions.clone();
        let mut started: BTreeMap<String, Arc<WasmPolicy>> = BTreeMap::new();

        for file in state.versions.keys() {
            if !files.contains_key(file) {
                next.remove(file);
                report.unloaded.push(file.clone());
            }
        }
        for (file, bytes) in &files {
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(error) => {
                    self.reject(&mut state, &mut report, file, String::new(), error);
                    continue;
                }
            };
            let hash = hex_sha256(bytes);
            if state.versions.get(file).is_some_and(|v| v.hash == hash) {
                report.unchanged += 1;
                continue;
            }
            if !retry_rejected && state.rejected.get(file).is_some_and(|r| r.hash == hash) {
                continue;
            }
            let limits = Limits::from_config(&state.config);
            let version = match PluginVersion::load(&self.engine, file, bytes, limits) {
                Ok(version) => Arc::new(version),
                Err(error) => {
                    self.reject(&mut state, &mut report, file, hash, &error);
                    continue;
                }
            };
            let mut candidate = next.clone();
            candidate.insert(file.clone(), version.clone());
            let specs: Vec<Spec> = specs(&state.config, &candidate)
                .into_iter()
                .filter(|spec| spec.file == *file)
                .collect();
            match self.start_all(&specs, &candidate, &state) {
                Ok(policies) => {
                    tracing::info!(file = %file, hash = %&version.hash[..12], contract = version.contract.package(), exports = %version.exports.names().join(","), compile = version.compile_source.as_str(), took_ms = version.compile_time.as_secs_f64() * 1e3, "plugin version validated");
                    next = candidate;
                    started.extend(policies);
                    state.rejected.remove(file);
                    report.loaded.push(file.clone());
                }
                Err(error) => self.reject(&mut state, &mut report, file, hash, &error),
            }
        }

        if report.loaded.is_empty() && report.unloaded.is_empty() {
            report.generation = self.generation();
            return report;
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        for file in &report.loaded {
            if let Some(version) = next.get(file) {
                state.recent_reloads.record(
                    file,
                    "loaded",
                    generation,
                    format!("hash {}", version.hash.get(..12).unwrap_or(&version.hash)),
                );
                version.generation.store(generation, Ordering::Relaxed);
                self.metrics
                    .plugin_reloads_total
                    .with_label_values(&[stem(file), "loaded"])
                    .inc();
                self.metrics
                    .plugin_generation
                    .with_label_values(&[stem(file)])
                    .set(generation as i64);
            }
        }
        for file in &report.unloaded {
            state
                .recent_reloads
                .record(file, "unloaded", generation, "file deleted".to_owned());
            self.metrics
                .plugin_reloads_total
                .with_label_values(&[stem(file), "unloaded"])
                .inc();
            tracing::info!(file = %file, generation, "plugin file deleted; unloaded");
        }
        let active = self.assemble(&state, &next, started);
        state.versions = next;
        state.active = active;
        self.install(&state, generation);
        tracing::info!(generation, loaded = ?report.loaded, unloaded = ?report.unloaded, "policy generation swapped in");
        report.generation = generation;
        report
    }

    /// Applies a new `[plugins]` config and built-in policy (a config reload). Every
    /// binding that changed must start, or nothing changes. Every reload rebuilds the chain
    /// (a new generation, for the built-in policy's TTL rows), but only one that changed
    /// `[plugins]` is listed in the recent reloads: the ring keeps few events, and edits to
    /// the TTL table must not push the plugin loads and rejections out of it.
    pub fn reconfigure(
        &self,
        config: PluginsConfig,
        builtin: Arc<BuiltinPolicy>,
    ) -> Result<u64, PluginError> {
        let mut state = self.state.lock();
        if config.dir.as_deref() != Some(self.dir.as_path()) {
            tracing::warn!(
                "plugins.dir changed in the config file; the new directory is used after a restart"
            );
        }
        let previous = std::mem::replace(&mut state.config, config);
        let plugins_changed = previous != state.config;
        // New limits make new versions of the loaded files (nothing is compiled again), so
        // every binding restarts under them; the old versions serve until the swap.
        let limits = Limits::from_config(&state.config);
        let versions: BTreeMap<String, Arc<PluginVersion>> = state
            .versions
            .iter()
            .map(|(file, version)| {
                let version = if *version.limits() == limits {
                    version.clone()
                } else {
                    Arc::new(version.with_limits(limits))
                };
                (file.clone(), version)
            })
            .collect();
        let specs = specs(&state.config, &versions);
        let mut started = BTreeMap::new();
        for spec in &specs {
            if reusable(&state.active, &versions, spec).is_some() {
                continue;
            }
            match self.start_one(spec, &versions, &state) {
                Ok(policy) => {
                    started.insert(spec.name.clone(), policy);
                }
                Err(error) => {
                    state.config = previous;
                    let generation = self.generation();
                    state.recent_reloads.record(
                        "",
                        "reconfigure_failed",
                        generation,
                        error.to_string(),
                    );
                    state.config_rejection = Some(ConfigRejection {
                        at: now_rfc3339(),
                        binding: error.binding().map(str::to_owned),
                        message: error.to_string(),
                    });
                    return Err(error);
                }
            }
        }
        state.builtin = builtin;
        state.config_rejection = None;
        state.versions = versions;
        let active = self.assemble(&state, &state.versions, started);
        state.active = active;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        for (file, version) in &state.versions {
            // A version made for new limits is swapped in now.
            if version.generation.load(Ordering::Relaxed) == 0 {
                version.generation.store(generation, Ordering::Relaxed);
                self.metrics
                    .plugin_generation
                    .with_label_values(&[stem(file)])
                    .set(generation as i64);
            }
        }
        self.install(&state, generation);
        if plugins_changed {
            state.recent_reloads.record(
                "",
                "reconfigured",
                generation,
                "[plugins] config applied".to_owned(),
            );
        }
        Ok(generation)
    }

    /// Records a config reload that was refused before it reached the plugin host (the file
    /// did not parse or validate): the running bindings stay, and `/admin/plugins` says why
    /// until a later reload applies.
    pub fn config_rejected(&self, message: String) {
        self.state.lock().config_rejection = Some(ConfigRejection {
            at: now_rfc3339(),
            binding: None,
            message,
        });
    }

    /// Learns `server`'s tool catalogue (from a backend's handshake or `list_changed`):
    /// bindings started from now on are smoke-called about its tools, and the serving
    /// bindings that cover the server are smoke-called now about the tools new to them,
    /// each fault quarantining its (binding, server, tool) at once. Blocking (WASM calls,
    /// at most [`SMOKE_TIME_BUDGET`] of them): run it off the request path.
    pub fn learn_catalogue(
        &self,
        server: &str,
        tools: Vec<CatalogueTool>,
    ) -> Vec<(String, LateSmoke)> {
        // Under the lock that a reload holds while it starts bindings: a binding started
        // before this was serving (and is smoked below), one started after sees the list.
        let (fresh, serving) = {
            let mut state = self.state.lock();
            let fresh = state.catalogues.learn(server, tools);
            (fresh, state.active.clone())
        };
        // What the server lists now is what its faults are kept under, by name.
        let listed: Vec<String> = self
            .state
            .lock()
            .catalogues
            .listed()
            .filter(|(name, _)| *name == server)
            .flat_map(|(_, tools)| tools.map(str::to_owned))
            .collect();
        for policy in serving.iter().filter(|policy| policy.applies_to(server)) {
            policy.learn_listed(server, listed.iter().map(String::as_str));
        }
        if fresh.is_empty() {
            return Vec::new();
        }
        let deadline = std::time::Instant::now() + SMOKE_TIME_BUDGET;
        serving
            .iter()
            .filter(|policy| policy.applies_to(server))
            .map(|policy| {
                let report = smoke::late(policy, server, &fresh, deadline);
                tracing::info!(target: super::wasm_policy::FAULT_LOG_TARGET, binding = policy.name(), server, passed = report.passed, quarantined = ?report.quarantined, skipped = report.skipped, "serving plugin binding smoke-called about the server's new tools");
                (policy.name().to_owned(), report)
            })
            .collect()
    }

    /// Lifts quarantines of the serving binding `binding`: all of them, one server's
    /// tools, or one tool (see [`crate::BindingHealth::lift`]). `None` when no serving
    /// binding has that name.
    pub fn lift_quarantine(
        &self,
        binding: &str,
        server: Option<&str>,
        tool: Option<&str>,
    ) -> Option<Vec<String>> {
        let state = self.state.lock();
        let policy = state
            .active
            .iter()
            .find(|policy| policy.name() == binding)?;
        Some(policy.lift_quarantine(server, tool))
    }

    fn reject(
        &self,
        state: &mut HostState,
        report: &mut RescanReport,
        file: &str,
        hash: String,
        error: &PluginError,
    ) {
        tracing::error!(file = %file, kind = error.kind(), %error, "plugin version rejected; the previous version (if any) keeps serving");
        self.metrics
            .plugin_reloads_total
            .with_label_values(&[stem(file), "rejected"])
            .inc();
        let generation = self.generation();
        state
            .recent_reloads
            .record(file, "rejected", generation, error.to_string());
        state.rejected.insert(
            file.to_owned(),
            Rejection {
                hash,
                at: now_rfc3339(),
                kind: error.kind(),
                message: error.to_string(),
            },
        );
        report.rejected.push(RejectedFile {
            file: file.to_owned(),
            error: error.to_string(),
        });
    }

    fn start_all(
        &self,
        specs: &[Spec],
        versions: &BTreeMap<String, Arc<PluginVersion>>,
        state: &HostState,
    ) -> Result<BTreeMap<String, Arc<WasmPolicy>>, PluginError> {
        specs
            .iter()
            .map(|spec| Ok((spec.name.clone(), self.start_one(spec, versions, state)?)))
            .collect()
    }

    /// Starts one binding, smoke-called about every known tool of the servers it covers.
    fn start_one(
        &self,
        spec: &Spec,
        versions: &BTreeMap<String, Arc<PluginVersion>>,
        state: &HostState,
    ) -> Result<Arc<WasmPolicy>, PluginError> {
        let Some(version) = versions.get(&spec.file) else {
            return Err(PluginError::Read {
                path: self.dir.join(&spec.file),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        };
        // The late smoke's quarantines of the binding this one replaces, when it runs the
        // same content (a config edit or new limits): its tools are known to fault, and
        // asking again would refuse the whole reload.
        let carried: Vec<Quarantine> = state
            .active
            .iter()
            .filter(|policy| policy.name() == spec.name && policy.version().hash == version.hash)
            .flat_map(|policy| policy.health().quarantined_tools())
            .filter(|quarantine| quarantine.reason.starts_with(SMOKE_QUARANTINE))
            .collect();
        let policy = WasmPolicy::start_with(
            &spec.name,
            spec.servers.clone(),
            spec.config_json.clone(),
            version.clone(),
            state.config.max_idle_instances,
            &self.metrics,
            KnownTools {
                catalogues: &state.catalogues,
                carried: &carried,
            },
        )?;
        // The gauges say what the new binding carries (nothing, or the carried tools).
        policy.publish_quarantine();
        Ok(Arc::new(policy))
    }

    /// The bindings in chain order: freshly started ones, else the serving ones that
    /// still match their spec.
    fn assemble(
        &self,
        state: &HostState,
        versions: &BTreeMap<String, Arc<PluginVersion>>,
        mut started: BTreeMap<String, Arc<WasmPolicy>>,
    ) -> Vec<Arc<WasmPolicy>> {
        let mut active = Vec::new();
        for spec in specs(&state.config, versions) {
            if let Some(policy) = started.remove(&spec.name) {
                active.push(policy);
                continue;
            }
            if let Some(policy) = reusable(&state.active, versions, &spec) {
                active.push(policy);
            }
        }
        active
    }

    fn install(&self, state: &HostState, generation: u64) {
        let policies: Vec<Arc<dyn Policy>> = state
            .active
            .iter()
            .map(|policy| policy.clone() as Arc<dyn Policy>)
            .collect();
        let chain = PolicyChain::new(policies, state.builtin.clone()).with_generation(generation);
        // Say once per generation which TTLs a table sets over a plugin's own directive.
        // The servers bindings name and the servers whose tool lists are known, so that a
        // `[cache.ttl."*"]` row is checked on real servers even when every binding applies
        // to all of them.
        let mut servers: Vec<&str> = state
            .active
            .iter()
            .flat_map(|policy| policy.servers().iter().map(String::as_str))
            .chain(state.catalogues.listed().map(|(server, _)| server))
            .collect();
        servers.sort_unstable();
        servers.dedup();
        overrides::log_ttl_overrides(&chain, &servers, generation);
        self.sink.install(chain);
        self.metrics.policy_generation.set(generation as i64);
    }
}

/// A serving binding that already matches `spec` with the version in `versions`.
fn reusable(
    active: &[Arc<WasmPolicy>],
    versions: &BTreeMap<String, Arc<PluginVersion>>,
    spec: &Spec,
) -> Option<Arc<WasmPolicy>> {
    let version = versions.get(&spec.file)?;
    active
        .iter()
        .find(|policy| {
            policy.name() == spec.name
                && Arc::ptr_eq(policy.version(), version)
                && policy.servers() == spec.servers.as_slice()
                && policy.config_json() == spec.config_json
        })
        .cloned()
}

/// The bindings that apply, in chain order: the config's, then (with `auto_bind`) each
/// loaded file no binding names, by file name, for every server with an empty config.
fn specs(config: &PluginsConfig, versions: &BTreeMap<String, Arc<PluginVersion>>) -> Vec<Spec> {
    let mut specs: Vec<Spec> = config
        .bindings
        .iter()
        .filter(|binding| versions.contains_key(&binding.file))
        .map(|binding| Spec {
            name: binding.name.clone(),
            file: binding.file.clone(),
            servers: binding.servers.clone(),
            config_json: binding.config_json.clone(),
        })
        .collect();
    if config.auto_bind {
        for file in versions.keys() {
            let named = config.bindings.iter().any(|binding| binding.file == *file);
            let name = stem(file);
            if named || specs.iter().any(|spec| spec.name == name) {
                continue;
            }
            specs.push(Spec {
                name: name.to_owned(),
                file: file.clone(),
                servers: Vec::new(),
                config_json: "{}".to_owned(),
            });
        }
    }
    specs
}

/// A file's name without `.wasm`: the plugin's name in metrics and the admin API.
fn stem(file: &str) -> &str {
    file.strip_suffix(".wasm").unwrap_or(file)
}

type FileContents = BTreeMap<String, Result<Vec<u8>, PluginError>>;

/// Every `*.wasm` file directly in `dir`, skipping hidden files (a publisher's temp
/// file before its atomic rename).
fn read_plugin_files(dir: &Path) -> std::io::Result<FileContents> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if !is_plugin_file_name(name) || !path.is_file() {
            continue;
        }
        let contents = std::fs::read(&path).map_err(|source| PluginError::Read {
            path: path.clone(),
            source,
        });
        files.insert(name.to_owned(), contents);
    }
    Ok(files)
}

/// Whether a directory entry is a plugin: a visible `*.wasm` file.
pub fn is_plugin_file_name(name: &str) -> bool {
    !name.starts_with('.')
        && Path::new(name)
            .extension()
            .is_some_and(|extension| extension == PLUGIN_EXTENSION)
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
