//! A plugin binding as a [`Policy`]: warm instances of one plugin version, called with a
//! CPU deadline; a fault falls back to the safe default and never fails the request.

use mcp_bridge_telemetry::{self as telemetry, attribute};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};

use parking_lot::{Mutex, RwLock};
use prometheus::{Histogram, IntCounter};

use super::bindings;
use super::error::{Fault, FaultKind, PluginError};
use super::health::{BindingHealth, FaultSite, Tipped, capped_name};
use super::smoke::{self, Catalogues, KnownTools};
use super::version::{Exports, InstantiateError, PluginVersion, WarmInstance};
use crate::PluginMetrics;
use mcp_bridge_policy::{
    Call, Decision, Invalidation, InvalidationAnswer, Outcome, Policy, Probed, Question, TtlAnswer,
};

mod probe;

/// The server name of the smoke call every binding must answer before it serves.
pub const SMOKE_SERVER: &str = "mcp-bridge-smoke";

/// The log target of the host's lines about a plugin's faults: one warning per fault,
/// its wasm backtrace at debug level, and the error when a version is quarantined. A
/// child of the plugins' own target (`mcp_bridge::plugin`), so one directive
/// (`RUST_LOG=info,mcp_bridge::plugin=debug`) shows a plugin's lines and its backtraces.
pub const FAULT_LOG_TARGET: &str = "mcp_bridge::plugin::fault";

/// The three policy interfaces, for metrics and fault logs.
#[derive(Debug, Clone, Copy)]
enum Interface {
    CachePolicy,
    TtlTable,
    InvalidationRules,
}

impl Interface {
    /// The question the interface answers, as the fault log names it.
    fn question(self) -> &'static str {
        match self {
            Interface::CachePolicy => "decide",
            Interface::TtlTable => "ttl",
            Interface::InvalidationRules => "invalidations",
        }
    }

    /// What the call answers instead when the plugin faults.
    fn safe_default(self) -> &'static str {
        match self {
            Interface::CachePolicy => "bypass",
            Interface::TtlTable => "ttl 0 (do not cache)",
            Interface::InvalidationRules => "invalidate the server",
        }
    }
}

/// Metric handles resolved once per binding, so a call touches no label maps.
struct Probes {
    decisions: [IntCounter; 3],
    faults: [IntCounter; 4],
    latency: Histogram,
    metrics: Arc<PluginMetrics>,
}

impl Probes {
    fn new(metrics: &Arc<PluginMetrics>, name: &str) -> Probes {
        let decisions = |interface: &str| {
            metrics
                .plugin_decisions_total
                .with_label_values(&[name, interface])
        };
        let faults = |kind: FaultKind| {
            metrics
                .plugin_faults_total
                .with_label_values(&[name, kind.as_str()])
        };
        Probes {
            decisions: [
                decisions("cache-policy"),
                decisions("ttl-table"),
                decisions("invalidation-rules"),
            ],
            faults: FaultKind::ALL.map(faults),
            latency: metrics.plugin_decision_seconds.with_label_values(&[name]),
            metrics: metrics.clone(),
        }
    }
}

/// One `[[plugins.policy]]` binding (or an auto-bound file) serving calls.
pub struct WasmPolicy {
    name: Arc<str>,
    /// Empty means every server.
    servers: Vec<String>,
    config_json: String,
    version: Arc<PluginVersion>,
    /// The interfaces the plugin implements (0.2.0 and later: what its `init` reported),
    /// and whether it declared itself pure. Read on every call, so an interface the
    /// plugin does not implement costs no WASM call.
    exports: Exports,
    idle: Mutex<Vec<WarmInstance>>,
    max_idle: usize,
    probes: Probes,
    /// This binding's faults and quarantines, per (server, tool). A new version or a
    /// changed binding starts a fresh `WasmPolicy`, so either starts healthy.
    health: BindingHealth,
    /// The tools each server's catalogue lists, by server: a fault is kept under its
    /// tool's name only for these. A tool name comes from the client, so faults about
    /// names a server does not list share one key ([`UNLISTED_TOOL`]): made-up names can
    /// neither spread faults thin to dodge a quarantine nor add up to quarantining the
    /// binding for everyone.
    listed: RwLock<HashMap<String, HashSet<String>>>,
}

/// The fault key of every tool its server's catalogue does not list (or of every tool of
/// a server whose catalogue is not known yet).
pub const UNLISTED_TOOL: &str = "<unlisted>";

impl WasmPolicy {
    /// Starts a binding: one instance is created and initialised with the binding's
    /// config, then every interface the plugin implements must answer a smoke call
    /// within its limits. The instance stays warm for the first real call. No tool
    /// catalogue is known here: see [`WasmPolicy::start_with`].
    pub fn start(
        name: &str,
        servers: Vec<String>,
        config_json: String,
        version: Arc<PluginVersion>,
        max_idle: usize,
        metrics: &Arc<PluginMetrics>,
    ) -> Result<WasmPolicy, PluginError> {
        let none = Catalogues::default();
        WasmPolicy::start_with(
            name,
            servers,
            config_json,
            version,
            max_idle,
            metrics,
            KnownTools {
                catalogues: &none,
                carried: &[],
            },
        )
    }

    /// [`WasmPolicy::start`], with the smoke call also asking about every tool of the
    /// `known` catalogues of the servers the binding covers (within the bounds of
    /// [`crate::smoke`]): a plugin that faults for one real tool is rejected here. The
    /// tools of `known.carried` (quarantines the late smoke gave the binding this one
    /// replaces, same content) are not asked; they stay quarantined.
    pub fn start_with(
        name: &str,
        servers: Vec<String>,
        config_json: String,
        version: Arc<PluginVersion>,
        max_idle: usize,
        metrics: &Arc<PluginMetrics>,
        known: KnownTools<'_>,
    ) -> Result<WasmPolicy, PluginError> {
        let binding: Arc<str> = Arc::from(name);
        let file = version.file.clone();
        let mut instance = match version.instantiate(&binding, &config_json) {
            Ok(instance) => instance,
            Err(InstantiateError::Fault(fault)) => {
                return Err(PluginError::Smoke {
                    binding: name.to_owned(),
                    file: file.clone(),
                    stage: "init".to_owned(),
                    fault: Box::new(fault),
                });
            }
            Err(InstantiateError::Contract(error)) => return Err(error),
            Err(InstantiateError::InitRejected(message)) => {
                return Err(PluginError::InitRejected {
                    binding: name.to_owned(),
                    file: file.clone(),
                    message,
                });
            }
        };
        let health = BindingHealth::new(
            version.limits().quarantine_after,
            version.limits().quarantine_window,
        );
        let policy = WasmPolicy {
            name: binding,
            servers,
            config_json,
            exports: instance.exports,
            version,
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
            probes: Probes::new(metrics, name),
            health,
            listed: RwLock::new(HashMap::new()),
        };
        for (server, tools) in known.catalogues.listed() {
            if policy.applies_to(server) {
                policy.learn_listed(server, tools);
            }
        }
        smoke::at_start(&mut instance, &policy, &known)?;
        for quarantine in known.carried {
            policy.health.carry(quarantine.clone());
        }
        policy.idle.lock().push(instance);
        Ok(policy)
    }

    /// The binding's name as instances are made with it.
    pub(crate) fn binding_name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn version(&self) -> &Arc<PluginVersion> {
        &self.version
    }

    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    /// The binding's fault records and quarantines.
    pub fn health(&self) -> &BindingHealth {
        &self.health
    }

    /// Lifts quarantines of this binding (see [`BindingHealth::lift`]) and sets its
    /// gauges to match.
    pub fn lift_quarantine(&self, server: Option<&str>, tool: Option<&str>) -> Vec<String> {
        let lifted = self.health.lift(server, tool);
        if !lifted.is_empty() {
            tracing::info!(target: FAULT_LOG_TARGET, binding = %self.name, lifted = ?lifted, "plugin quarantine lifted by an operator");
        }
        self.publish_quarantine();
        lifted
    }

    /// Sets the binding's quarantine gauges from its health.
    pub(crate) fn publish_quarantine(&self) {
        let metrics = &self.probes.metrics;
        metrics
            .plugin_quarantined
            .with_label_values(&[&*self.name])
            .set(i64::from(self.health.binding_quarantined()));
        metrics
            .plugin_quarantined_tools
            .with_label_values(&[&*self.name])
            .set(i64::from(self.health.quarantined_tool_count()));
    }

    /// Takes `tools` as what `server` lists now (its catalogue as the host keeps it).
    pub(crate) fn learn_listed<'t>(&self, server: &str, tools: impl Iterator<Item = &'t str>) {
        let tools: HashSet<String> = tools.map(str::to_owned).collect();
        self.listed.write().insert(server.to_owned(), tools);
    }

    /// The key a fault about `tool` on `server` is kept under: the tool's name when the
    /// server lists it, else [`UNLISTED_TOOL`].
    pub(crate) fn fault_key<'t>(&self, server: &str, tool: &'t str) -> &'t str {
        let listed = self.listed.read();
        match listed.get(server) {
            Some(tools) if tools.contains(tool) => tool,
            _ => UNLISTED_TOOL,
        }
    }

    /// Whether a question about `tool` on `server` gets the safe default unasked; the
    /// catalogue is looked at only once something is quarantined.
    pub(crate) fn is_quarantined(&self, server: &str, tool: &str) -> bool {
        self.health.quarantine_possible()
            && self
                .health
                .is_quarantined(server, self.fault_key(server, tool))
    }

    pub(crate) fn applies_to(&self, server: &str) -> bool {
        self.servers.is_empty() || self.servers.iter().any(|name| name == server)
    }

    /// Runs `body` on a warm instance under a fresh deadline, for a question about
    /// `tool` on `server` (named in the fault log; `arguments` go into the fault record
    /// only). An instance that faults is dropped (its state may be corrupt); a healthy
    /// one goes back to the pool. A quarantined tool, or binding, is not asked.
    fn with_instance<R>(
        &self,
        interface: Interface,
        (server, tool, arguments): (&str, &str, Option<&str>),
        body: impl FnOnce(&mut WarmInstance) -> wasmtime::Result<R>,
    ) -> Option<R> {
        if self.is_quarantined(server, tool) {
            return None;
        }
        let started = Instant::now();
        self.probes.decisions[interface as usize].inc();
        let pooled = self.idle.lock().pop();
        let asked = Asked {
            interface,
            server,
            tool,
            arguments,
            tied: true,
        };
        // An instance that cannot be made is not the asked tool's fault.
        let untied = Asked {
            tied: false,
            ..asked
        };
        let mut instance = match pooled {
            Some(instance) => instance,
            None => match self.version.instantiate(&self.name, &self.config_json) {
                Ok(instance) => instance,
                Err(InstantiateError::Fault(fault)) => return self.fault(fault, untied),
                Err(InstantiateError::InitRejected(message)) => {
                    let summary = format!("init rejected its config: {message}");
                    return self.fault(Fault::new(FaultKind::Instantiate, summary), untied);
                }
                Err(InstantiateError::Contract(error)) => {
                    let fault = Fault::new(FaultKind::Instantiate, error.to_string());
                    return self.fault(fault, untied);
                }
            },
        };
        instance
            .store
            .set_epoch_deadline(self.version.deadline_ticks());
        let result = body(&mut instance);
        self.probes.latency.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(answer) => {
                // A panic the call survived (its line held in case of a trap) is logged.
                instance.store.data_mut().release_panic();
                let mut idle = self.idle.lock();
                if idle.len() < self.max_idle {
                    idle.push(instance);
                }
                Some(answer)
            }
            Err(error) => {
                let fault = fault_of(&mut instance, &error);
                self.fault(fault, asked)
            }
        }
    }

    /// Counts, records and logs one fault: one warning, with the guest's panic message
    /// and everything needed to find the call (binding, file, server, tool, question;
    /// never the arguments); the backtrace at debug level; and one error when the fault
    /// quarantines its tool or the binding.
    fn fault<R>(&self, fault: Fault, asked: Asked<'_>) -> Option<R> {
        let Asked {
            interface,
            server,
            tool,
            arguments,
            tied,
        } = asked;
        // A tool name comes from the client: the log and the record get at most
        // `MAX_RECORDED_NAME` bytes of it.
        let tool = capped_name(tool);
        let tool = tool.as_ref();
        self.probes.faults[fault.kind as usize].inc();
        let generation = self.version.generation.load(Ordering::Relaxed);
        // The arguments may hold a client's data: the log gets their digest only, which
        // matches the fault record's in the admin view.
        let args_sha256 = arguments.map(arguments_digest);
        tracing::warn!(
            target: FAULT_LOG_TARGET,
            binding = %self.name,
            file = %self.version.file,
            generation,
            interface = interface.question(),
            server,
            tool,
            kind = fault.kind.as_str(),
            default = interface.safe_default(),
            args_sha256 = args_sha256.as_deref(),
            "plugin fault, safe default used: {}",
            fault.headline()
        );
        log_backtrace(&self.name, &self.version.file, server, tool, &fault);
        let key = self.fault_key(server, tool);
        let site = FaultSite {
            interface: if tied { interface.question() } else { "init" },
            server,
            tool: key,
            tied,
            arguments,
        };
        let tipped = self.health.record(&site, &fault);
        self.report_tipped(tipped, server, key);
        None
    }

    /// Counts, logs and records a fault the smoke call over a server's catalogue found
    /// while the binding serves: one warning naming the tool and the guest's panic, and
    /// the (binding, server, tool) quarantined at once (see
    /// [`BindingHealth::record_smoke_fault`]).
    pub(crate) fn smoke_fault(
        &self,
        question: &'static str,
        server: &str,
        tool: &str,
        fault: Fault,
    ) {
        self.probes.faults[fault.kind as usize].inc();
        tracing::warn!(
            target: FAULT_LOG_TARGET,
            binding = %self.name,
            file = %self.version.file,
            generation = self.version.generation.load(Ordering::Relaxed),
            interface = question,
            server,
            tool,
            kind = fault.kind.as_str(),
            "plugin failed the smoke call on the server's tool catalogue (arguments {{}}): {}",
            fault.headline()
        );
        log_backtrace(&self.name, &self.version.file, server, tool, &fault);
        let site = FaultSite {
            interface: question,
            server,
            tool,
            tied: true,
            arguments: Some("{}"),
        };
        let tipped = self.health.record_smoke_fault(&site, &fault);
        self.report_tipped(tipped, server, tool);
    }

    /// Logs a quarantine a fault caused (one error line) and sets the gauges.
    fn report_tipped(&self, tipped: Tipped, server: &str, tool: &str) {
        match tipped {
            Tipped::Nothing => {}
            Tipped::Tool(quarantine) => {
                tracing::error!(
                    target: FAULT_LOG_TARGET,
                    binding = %self.name,
                    file = %self.version.file,
                    server,
                    tool,
                    "plugin quarantined for {server}/{tool} (its other tools keep being asked): {}; lift with POST /admin/plugins/quarantine/lift or a new version",
                    quarantine.reason
                );
                self.publish_quarantine();
            }
            Tipped::Binding(quarantine) => {
                tracing::error!(
                    target: FAULT_LOG_TARGET,
                    binding = %self.name,
                    file = %self.version.file,
                    server,
                    tool,
                    "plugin quarantined for every tool: {}; lift with POST /admin/plugins/quarantine/lift or a new version",
                    quarantine.reason
                );
                self.publish_quarantine();
            }
        }
    }
}

/// The question a plugin call answers, for the fault log and record.
#[derive(Clone, Copy)]
struct Asked<'a> {
    interface: Interface,
    server: &'a str,
    tool: &'a str,
    arguments: Option<&'a str>,
    /// Whether a fault counts against the tool (else against the binding: an instance
    /// that cannot be made faults whatever it is asked).
    tied: bool,
}

/// The digest of a call's canonical arguments that a fault's log line and record carry:
/// the first 16 hex digits of their SHA-256, enough to match the two.
pub fn arguments_digest(arguments: &str) -> String {
    let mut digest = super::engine::hex_sha256(arguments.as_bytes());
    digest.truncate(16);
    digest
}

/// The fault of a call that failed, with the panic line the plugin wrote during it.
pub(crate) fn fault_of(instance: &mut WarmInstance, error: &wasmtime::Error) -> Fault {
    let panic = instance.store.data_mut().take_panic();
    Fault::from_call(error, panic)
}

/// A fault's wasm backtrace, at debug level: many lines, for whoever debugs the plugin.
pub(crate) fn log_backtrace(binding: &str, file: &str, server: &str, tool: &str, fault: &Fault) {
    if let Some(backtrace) = &fault.backtrace {
        tracing::debug!(target: FAULT_LOG_TARGET, binding, file, server, tool, "plugin fault backtrace: {backtrace}");
    }
}

impl Policy for WasmPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    /// A fault or quarantine answers `Bypass`: do not cache what the plugin could not
    /// judge.
    fn decide(&self, call: &Call<'_>) -> Decision {
        if !self.exports.cache_policy || !self.applies_to(call.server) {
            return Decision::Abstain;
        }
        // A child of the router's policy span; disabled (a cached check) with tracing off.
        let span = telemetry::plugin_span(&self.name);
        let _entered = span.enter();
        let wit_call = bindings::call(call);
        let decision = self
            .with_instance(
                Interface::CachePolicy,
                (call.server, call.name, Some(call.canonical_arguments)),
                |instance| {
                    let Some(guest) = instance.cache_policy.clone() else {
                        return Ok(Decision::Abstain);
                    };
                    guest
                        .call_decide(&mut instance.store, &wit_call)
                        .map(bindings::decision)
                },
            )
            .unwrap_or_else(|| {
                telemetry::record_error(&span, "plugin_fault");
                Decision::Bypass
            });
        telemetry::record_str(&span, attribute::PLUGIN_DECISION, decision.label());
        decision
    }

    /// A fault or quarantine answers a zero TTL: never cache.
    fn ttl(&self, server: &str, tool: &str) -> TtlAnswer {
        if !self.exports.ttl_table || !self.applies_to(server) {
            return TtlAnswer::Abstain;
        }
        self.with_instance(Interface::TtlTable, (server, tool, None), |instance| {
            let Some(guest) = instance.ttl_table.clone() else {
                return Ok(TtlAnswer::Abstain);
            };
            guest
                .call_ttl(&mut instance.store, server, tool)
                .map(bindings::ttl_answer)
        })
        .unwrap_or(TtlAnswer::Ttl(Duration::ZERO))
    }

    /// A fault or quarantine invalidates the call's whole server.
    fn invalidations(&self, call: &Call<'_>, outcome: &Outcome) -> InvalidationAnswer {
        if !self.exports.invalidation_rules || !self.applies_to(call.server) {
            return InvalidationAnswer::Abstain;
        }
        let wit_call = bindings::call(call);
        let wit_outcome = bindings::outcome(outcome);
        self.with_instance(
            Interface::InvalidationRules,
            (call.server, call.name, Some(call.canonical_arguments)),
            |instance| {
                let Some(guest) = instance.invalidation_rules.clone() else {
                    return Ok(InvalidationAnswer::Abstain);
                };
                guest
                    .call_invalidations(&mut instance.store, &wit_call, wit_outcome)
                    .map(bindings::invalidation_answer)
            },
        )
        .unwrap_or_else(|| {
            InvalidationAnswer::Rules(vec![Invalidation::Server(call.server.to_owned())])
        })
    }

    /// Asks the plugin on its own, for an explanation; a fault is reported, never
    /// counted against the binding (`wasm_policy/probe.rs`).
    fn probe(&self, question: Question<'_>) -> Probed {
        self.probe_question(question)
    }

    /// What the plugin's `init` declared (only a 0.3.0 plugin can). A remembered answer
    /// may be a fault's safe default: for a pure plugin a trap repeats on the same call,
    /// so that is its answer to the call too.
    fn is_pure(&self) -> bool {
        self.exports.pure
    }
}
