//! One loaded version of a plugin file: its compiled component, the contract version it
//! is built against, the policy interfaces it implements, its fault record, and how to
//! make warm instances of it.
//!
//! A `mcp-bridge:policy@0.3.0` or `@0.2.0` plugin exports every interface of the one
//! world and says which it implements when `init` returns (its capabilities; a 0.3.0
//! plugin also says whether it is pure); a 0.1.0 plugin exports only the interfaces it
//! implements, which the host probes at load. Either way the result is one [`Exports`],
//! and the host calls nothing outside it.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

use super::bindings::{
    CachePolicyGuest, Capabilities, CapabilitiesV0_2, Contract, InvalidationRulesGuest,
    TtlTableGuest, current, legacy, v0_2,
};
use super::engine::{CompileSource, Compiled, PluginEngine};
use super::error::{Fault, FaultKind, PluginError};
use super::sandbox::{self, PluginState};
use mcp_bridge_config::PluginsConfig;

/// How long creating an instance and running its `init` may take, at least.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Which of the contract's interfaces the host calls on a plugin: the policy interfaces
/// it implements, and `lifecycle`; and whether the plugin declared itself pure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exports {
    pub lifecycle: bool,
    pub cache_policy: bool,
    pub ttl_table: bool,
    pub invalidation_rules: bool,
    /// The plugin promised (0.3.0 `init`) that its answers depend on the call and its
    /// config alone, so an answer may be remembered for an identical call. Plugins of
    /// older contracts could not say so and are never pure.
    pub pure: bool,
}

impl Exports {
    /// A 0.3.0 plugin's: `lifecycle` and the capabilities its `init` reported.
    fn reported(capabilities: Capabilities) -> Exports {
        Exports {
            lifecycle: true,
            cache_policy: capabilities.contains(Capabilities::CACHE_POLICY),
            ttl_table: capabilities.contains(Capabilities::TTL_TABLE),
            invalidation_rules: capabilities.contains(Capabilities::INVALIDATION_RULES),
            pure: capabilities.contains(Capabilities::PURE),
        }
    }

    /// A 0.2.0 plugin's: `lifecycle` and the capabilities its `init` reported.
    fn reported_v0_2(capabilities: CapabilitiesV0_2) -> Exports {
        Exports {
            lifecycle: true,
            cache_policy: capabilities.contains(CapabilitiesV0_2::CACHE_POLICY),
            ttl_table: capabilities.contains(CapabilitiesV0_2::TTL_TABLE),
            invalidation_rules: capabilities.contains(CapabilitiesV0_2::INVALIDATION_RULES),
            pure: false,
        }
    }

    /// [`Exports::names`], and `pure` when the plugin declared it.
    fn capability_names(&self) -> Vec<&'static str> {
        let mut names = self.names();
        if self.pure {
            names.push("pure");
        }
        names
    }

    fn any_policy(&self) -> bool {
        self.cache_policy || self.ttl_table || self.invalidation_rules
    }

    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.cache_policy, "cache-policy"),
            (self.ttl_table, "ttl-table"),
            (self.invalidation_rules, "invalidation-rules"),
            (self.lifecycle, "lifecycle"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }
}

/// A version's [`Exports`]: probed at load for a 0.1.0 plugin; for a 0.2.0 or 0.3.0
/// plugin, reported by the first `init` of any of its instances (every later one must
/// agree).
#[derive(Debug, Default)]
pub struct VersionExports(OnceLock<Exports>);

impl VersionExports {
    pub fn get(&self) -> Option<Exports> {
        self.0.get().copied()
    }

    /// The interface names for logs and the admin API; before any `init` of a 0.2.0 or
    /// 0.3.0 plugin only `lifecycle` is known.
    pub fn names(&self) -> Vec<&'static str> {
        self.get()
            .unwrap_or(Exports {
                lifecycle: true,
                ..Exports::default()
            })
            .names()
    }

    /// Whether the plugin declared itself pure; `None` before its first `init`.
    pub fn pure(&self) -> Option<bool> {
        self.get().map(|exports| exports.pure)
    }
}

/// The sandbox limits every instance of a version gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_memory: usize,
    /// `decision_timeout` as configured, for the admin view.
    pub decision_timeout: Duration,
    /// The deadline of one policy call, in epoch ticks.
    pub deadline_ticks: u64,
    pub quarantine_after: u32,
    pub quarantine_window: Duration,
}

impl Limits {
    /// The limits `[plugins]` sets.
    pub fn from_config(config: &PluginsConfig) -> Limits {
        Limits {
            max_memory: config.max_memory,
            decision_timeout: config.decision_timeout,
            deadline_ticks: PluginEngine::deadline_ticks(config.decision_timeout),
            quarantine_after: config.quarantine_after,
            quarantine_window: config.quarantine_window,
        }
    }

    /// The limits as `/admin/plugins` shows them.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "decision_timeout_ms": self.decision_timeout.as_secs_f64() * 1e3,
            "max_memory": self.max_memory,
            "quarantine_after": self.quarantine_after,
            "quarantine_window_ms": self.quarantine_window.as_secs_f64() * 1e3,
        })
    }
}

/// Where each interface's functions are in the component, checked against the contract.
#[derive(Clone)]
enum Indices {
    /// 0.3.0: the world exports all four.
    Current {
        lifecycle: current::exports::mcp_bridge::policy::lifecycle::GuestIndices,
        cache_policy: current::exports::mcp_bridge::policy::cache_policy::GuestIndices,
        ttl_table: current::exports::mcp_bridge::policy::ttl_table::GuestIndices,
        invalidation_rules: current::exports::mcp_bridge::policy::invalidation_rules::GuestIndices,
    },
    /// 0.2.0: the world exports all four too.
    V0_2 {
        lifecycle: v0_2::exports::mcp_bridge::policy::lifecycle::GuestIndices,
        cache_policy: v0_2::exports::mcp_bridge::policy::cache_policy::GuestIndices,
        ttl_table: v0_2::exports::mcp_bridge::policy::ttl_table::GuestIndices,
        invalidation_rules: v0_2::exports::mcp_bridge::policy::invalidation_rules::GuestIndices,
    },
    /// 0.1.0: each one is there or not.
    Legacy {
        lifecycle: Option<legacy::exports::mcp_bridge::policy::lifecycle::GuestIndices>,
        cache_policy: Option<legacy::exports::mcp_bridge::policy::cache_policy::GuestIndices>,
        ttl_table: Option<legacy::exports::mcp_bridge::policy::ttl_table::GuestIndices>,
        invalidation_rules:
            Option<legacy::exports::mcp_bridge::policy::invalidation_rules::GuestIndices>,
    },
}

/// A plugin file's content, compiled and checked against its contract.
pub struct PluginVersion {
    /// The file name in the plugin directory.
    pub file: String,
    pub hash: String,
    pub size: u64,
    /// The version of the WIT package the plugin is built against.
    pub contract: Contract,
    pub exports: VersionExports,
    pub compile_source: CompileSource,
    pub compile_time: Duration,
    pub loaded_at: SystemTime,
    /// The policy generation this version was swapped in at (0 until it is).
    pub generation: AtomicU64,
    /// The log lines every instance of this version may write, shared.
    log_budget: Arc<sandbox::LogBudget>,
    limits: Limits,
    pre: InstancePre<PluginState>,
    indices: Indices,
}

/// A live instance with the exports the host calls looked up, kept warm between calls.
pub struct WarmInstance {
    pub store: Store<PluginState>,
    /// What the host calls on this instance.
    pub exports: Exports,
    pub cache_policy: Option<CachePolicyGuest>,
    pub ttl_table: Option<TtlTableGuest>,
    pub invalidation_rules: Option<InvalidationRulesGuest>,
}

impl PluginVersion {
    /// Compiles `bytes`, finds the contract version it is built against, and checks
    /// that the component links against the host and exports that contract's
    /// interfaces with its types (a 0.1.0 plugin: at least one policy interface).
    pub fn load(
        engine: &PluginEngine,
        file: &str,
        bytes: &[u8],
        limits: Limits,
    ) -> Result<PluginVersion, PluginError> {
        let Compiled {
            component,
            hash,
            source,
            took,
        } = engine.compile(file, bytes)?;
        let export_names: Vec<String> = component
            .component_type()
            .exports(engine.engine())
            .map(|(name, _)| name.to_owned())
            .collect();
        let contract = contract_of(file, &export_names)?;
        let link_error = |error: wasmtime::Error| PluginError::Link {
            file: file.to_owned(),
            message: match super::error::outside_the_sandbox(&error.to_string()) {
                Some(hint) => format!("{hint} ({error:#})"),
                None => format!("{error:#}"),
            },
        };
        let linker = sandbox::linker_for(engine.base_linker(), engine.engine(), &component)
            .map_err(link_error)?;
        let pre = linker.instantiate_pre(&component).map_err(link_error)?;
        let exports = VersionExports::default();
        let indices = match contract {
            Contract::V0_3 => current_indices(file, &pre)?,
            Contract::V0_2 => v0_2_indices(file, &pre)?,
            Contract::V0_1 => {
                let (indices, probed) = probe_legacy(file, &component, &pre)?;
                if !probed.any_policy() {
                    return Err(PluginError::NoPolicyExports {
                        file: file.to_owned(),
                        exports: export_names.join(", "),
                    });
                }
                let _ = exports.0.set(probed);
                indices
            }
        };
        Ok(PluginVersion {
            file: file.to_owned(),
            hash,
            size: bytes.len() as u64,
            contract,
            exports,
            compile_source: source,
            compile_time: took,
            loaded_at: SystemTime::now(),
            generation: AtomicU64::new(0),
            log_budget: Arc::new(sandbox::LogBudget::new(file)),
            limits,
            pre,
            indices,
        })
    }

    /// The limits this version's instances run under (its bindings' quarantine settings).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The same compiled and checked component under other limits: what a config reload
    /// that changes `[plugins]` limits swaps in, so every binding restarts with fresh
    /// instances under the new limits, without compiling anything again. A version of its
    /// own (it is swapped in at a new generation), sharing the log budget.
    pub fn with_limits(&self, limits: Limits) -> PluginVersion {
        PluginVersion {
            file: self.file.clone(),
            hash: self.hash.clone(),
            size: self.size,
            contract: self.contract,
            exports: VersionExports(self.exports.0.clone()),
            compile_source: self.compile_source,
            compile_time: self.compile_time,
            loaded_at: SystemTime::now(),
            generation: AtomicU64::new(0),
            log_budget: self.log_budget.clone(),
            limits,
            pre: self.pre.clone(),
            indices: self.indices.clone(),
        }
    }

    /// A fresh instance, initialised with `config_json`. A trap or deadline here is a
    /// fault; an `Err` from `init` is the plugin refusing its config.
    pub fn instantiate(
        &self,
        binding: &Arc<str>,
        config_json: &str,
    ) -> Result<WarmInstance, InstantiateError> {
        let engine = self.pre.component().engine();
        let mut store = Store::new(
            engine,
            PluginState::new(
                binding.clone(),
                self.limits.max_memory,
                self.log_budget.clone(),
            ),
        );
        store.limiter(|state| state.limits());
        // Instantiation and `init` (parsing the plugin's config) may take far longer
        // than a decision; they run off the hot path except after a fault.
        let init_ticks = PluginEngine::deadline_ticks(INIT_TIMEOUT).max(self.limits.deadline_ticks);
        store.set_epoch_deadline(init_ticks);
        let fault = |store: &mut Store<PluginState>, error: wasmtime::Error| {
            let panic = store.data_mut().take_panic();
            let mut fault = Fault::from_call(&error, panic);
            if fault.kind == FaultKind::Trap && error.downcast_ref::<wasmtime::Trap>().is_none() {
                fault.kind = FaultKind::Instantiate;
            }
            InstantiateError::Fault(fault)
        };
        let instance = match self.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(error) => return Err(fault(&mut store, error)),
        };
        let contract = |interface: &'static str, error: wasmtime::Error| {
            InstantiateError::Contract(PluginError::Contract {
                file: self.file.clone(),
                interface,
                message: format!("{error:#}"),
            })
        };
        let names = self.contract.names();
        // The 0.3.0 and 0.2.0 worlds are instantiated alike; only their generated types
        // (and how their capabilities read) differ.
        macro_rules! one_world {
            ($indices:expr, $variant:ident, $reported:path) => {{
                let (lifecycle, cache_policy, ttl_table, invalidation_rules) = $indices;
                let lifecycle = lifecycle
                    .load(&mut store, &instance)
                    .map_err(|error| contract(names.lifecycle, error))?;
                let capabilities = match lifecycle.call_init(&mut store, config_json) {
                    Ok(Ok(capabilities)) => capabilities,
                    Ok(Err(message)) => return Err(InstantiateError::InitRejected(message)),
                    Err(error) => return Err(fault(&mut store, error)),
                };
                // A panic `init` survived is logged now, not blamed on a later call.
                store.data_mut().release_panic();
                let exports = self
                    .record_capabilities($reported(capabilities))
                    .map_err(InstantiateError::Contract)?;
                let cache_policy = match exports.cache_policy {
                    true => Some(CachePolicyGuest::$variant(
                        cache_policy
                            .load(&mut store, &instance)
                            .map_err(|error| contract(names.cache_policy, error))?,
                    )),
                    false => None,
                };
                let ttl_table = match exports.ttl_table {
                    true => Some(TtlTableGuest::$variant(
                        ttl_table
                            .load(&mut store, &instance)
                            .map_err(|error| contract(names.ttl_table, error))?,
                    )),
                    false => None,
                };
                let invalidation_rules = match exports.invalidation_rules {
                    true => Some(InvalidationRulesGuest::$variant(
                        invalidation_rules
                            .load(&mut store, &instance)
                            .map_err(|error| contract(names.invalidation_rules, error))?,
                    )),
                    false => None,
                };
                Ok(WarmInstance {
                    store,
                    exports,
                    cache_policy,
                    ttl_table,
                    invalidation_rules,
                })
            }};
        }
        match &self.indices {
            Indices::Current {
                lifecycle,
                cache_policy,
                ttl_table,
                invalidation_rules,
            } => one_world!(
                (lifecycle, cache_policy, ttl_table, invalidation_rules),
                Current,
                Exports::reported
            ),
            Indices::V0_2 {
                lifecycle,
                cache_policy,
                ttl_table,
                invalidation_rules,
            } => one_world!(
                (lifecycle, cache_policy, ttl_table, invalidation_rules),
                V0_2,
                Exports::reported_v0_2
            ),
            Indices::Legacy {
                lifecycle,
                cache_policy,
                ttl_table,
                invalidation_rules,
            } => {
                if let Some(indices) = lifecycle {
                    let lifecycle = indices
                        .load(&mut store, &instance)
                        .map_err(|error| contract(names.lifecycle, error))?;
                    match lifecycle.call_init(&mut store, config_json) {
                        Ok(Ok(())) => {}
                        Ok(Err(message)) => return Err(InstantiateError::InitRejected(message)),
                        Err(error) => return Err(fault(&mut store, error)),
                    }
                    store.data_mut().release_panic();
                }
                let cache_policy = match cache_policy {
                    Some(indices) => Some(CachePolicyGuest::Legacy(
                        indices
                            .load(&mut store, &instance)
                            .map_err(|error| contract(names.cache_policy, error))?,
                    )),
                    None => None,
                };
                let ttl_table = match ttl_table {
                    Some(indices) => Some(TtlTableGuest::Legacy(
                        indices
                            .load(&mut store, &instance)
                            .map_err(|error| contract(names.ttl_table, error))?,
                    )),
                    None => None,
                };
                let invalidation_rules = match invalidation_rules {
                    Some(indices) => Some(InvalidationRulesGuest::Legacy(
                        indices
                            .load(&mut store, &instance)
                            .map_err(|error| contract(names.invalidation_rules, error))?,
                    )),
                    None => None,
                };
                Ok(WarmInstance {
                    store,
                    exports: self.exports.get().unwrap_or_default(),
                    cache_policy,
                    ttl_table,
                    invalidation_rules,
                })
            }
        }
    }

    /// Checks the capabilities one `init` reported: at least one policy interface, and
    /// the same (purity included) as every earlier instance of this version reported.
    fn record_capabilities(&self, reported: Exports) -> Result<Exports, PluginError> {
        if !reported.any_policy() {
            return Err(PluginError::NoCapabilities {
                file: self.file.clone(),
            });
        }
        let first = *self.exports.0.get_or_init(|| reported);
        if first != reported {
            return Err(PluginError::CapabilitiesChanged {
                file: self.file.clone(),
                first: first.capability_names().join(", "),
                now: reported.capability_names().join(", "),
            });
        }
        Ok(reported)
    }

    pub fn deadline_ticks(&self) -> u64 {
        self.limits.deadline_ticks
    }
}

/// Why an instance could not be made.
#[derive(Debug)]
pub enum InstantiateError {
    /// Instantiation or `init` trapped, ran out of time or memory.
    Fault(Fault),
    /// `init` returned an error: the config is wrong for this plugin.
    InitRejected(String),
    /// An export's functions do not have the contract's types, or `init` reported
    /// capabilities the host cannot serve.
    Contract(PluginError),
}

/// The contract version a component's export names belong to: the newest version any of
/// its exports names. A component naming only versions of the package this host does
/// not serve is refused with the version it asks for.
fn contract_of(file: &str, export_names: &[String]) -> Result<Contract, PluginError> {
    let exports = |contract: Contract| {
        let names = contract.names();
        [
            names.lifecycle,
            names.cache_policy,
            names.ttl_table,
            names.invalidation_rules,
        ]
        .into_iter()
        .any(|name| export_names.iter().any(|export| export == name))
    };
    if let Some(contract) = Contract::ALL.into_iter().find(|c| exports(*c)) {
        return Ok(contract);
    }
    let unserved = export_names.iter().find_map(|name| {
        let (interface, version) = name.strip_prefix("mcp-bridge:policy/")?.split_once('@')?;
        (!interface.is_empty()).then(|| format!("mcp-bridge:policy@{version}"))
    });
    if let Some(found) = unserved {
        return Err(PluginError::UnsupportedContract {
            file: file.to_owned(),
            found,
        });
    }
    Err(PluginError::NoPolicyExports {
        file: file.to_owned(),
        exports: match export_names.is_empty() {
            true => "nothing".to_owned(),
            false => export_names.join(", "),
        },
    })
}

/// A 0.3.0 or 0.2.0 component's four interfaces, each checked against the contract's
/// types: `$module` is the version's generated bindings.
macro_rules! one_world_indices {
    ($file:expr, $pre:expr, $contract:expr, $variant:ident, $module:ident) => {{
        use $module::exports::mcp_bridge::policy::{
            cache_policy, invalidation_rules, lifecycle, ttl_table,
        };
        let names = $contract.names();
        let contract = |interface: &'static str, error: wasmtime::Error| PluginError::Contract {
            file: $file.to_owned(),
            interface,
            message: format!("{error:#}"),
        };
        Ok(Indices::$variant {
            lifecycle: lifecycle::GuestIndices::new($pre)
                .map_err(|e| contract(names.lifecycle, e))?,
            cache_policy: cache_policy::GuestIndices::new($pre)
                .map_err(|e| contract(names.cache_policy, e))?,
            ttl_table: ttl_table::GuestIndices::new($pre)
                .map_err(|e| contract(names.ttl_table, e))?,
            invalidation_rules: invalidation_rules::GuestIndices::new($pre)
                .map_err(|e| contract(names.invalidation_rules, e))?,
        })
    }};
}

fn current_indices(file: &str, pre: &InstancePre<PluginState>) -> Result<Indices, PluginError> {
    one_world_indices!(file, pre, Contract::V0_3, Current, current)
}

fn v0_2_indices(file: &str, pre: &InstancePre<PluginState>) -> Result<Indices, PluginError> {
    one_world_indices!(file, pre, Contract::V0_2, V0_2, v0_2)
}

/// Looks up each interface of a 0.1.0 component. An interface it does not export is
/// simply absent; one it exports with missing functions breaks the contract.
fn probe_legacy(
    file: &str,
    component: &Component,
    pre: &InstancePre<PluginState>,
) -> Result<(Indices, Exports), PluginError> {
    use legacy::exports::mcp_bridge::policy::{
        cache_policy, invalidation_rules, lifecycle, ttl_table,
    };
    let names = Contract::V0_1.names();
    let exported = |name: &str| component.get_export_index(None, name).is_some();
    let contract = |interface: &'static str, error: wasmtime::Error| PluginError::Contract {
        file: file.to_owned(),
        interface,
        message: format!("{error:#}"),
    };
    let lifecycle = match exported(names.lifecycle) {
        true => Some(lifecycle::GuestIndices::new(pre).map_err(|e| contract(names.lifecycle, e))?),
        false => None,
    };
    let cache_policy = match exported(names.cache_policy) {
        true => Some(
            cache_policy::GuestIndices::new(pre).map_err(|e| contract(names.cache_policy, e))?,
        ),
        false => None,
    };
    let ttl_table = match exported(names.ttl_table) {
        true => Some(ttl_table::GuestIndices::new(pre).map_err(|e| contract(names.ttl_table, e))?),
        false => None,
    };
    let invalidation_rules = match exported(names.invalidation_rules) {
        true => Some(
            invalidation_rules::GuestIndices::new(pre)
                .map_err(|e| contract(names.invalidation_rules, e))?,
        ),
        false => None,
    };
    let exports = Exports {
        lifecycle: lifecycle.is_some(),
        cache_policy: cache_policy.is_some(),
        ttl_table: ttl_table.is_some(),
        invalidation_rules: invalidation_rules.is_some(),
        // 0.1.0 has no way to declare purity.
        pure: false,
    };
    let indices = Indices::Legacy {
        lifecycle,
        cache_policy,
        ttl_table,
        invalidation_rules,
    };
    Ok((indices, exports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(contract: Contract) -> Vec<String> {
        let names = contract.names();
        [names.lifecycle, names.ttl_table]
            .map(str::to_owned)
            .to_vec()
    }

    #[test]
    fn the_contract_is_read_from_the_export_names() {
        for contract in Contract::ALL {
            assert_eq!(contract_of("a.wasm", &names(contract)).ok(), Some(contract));
        }

        let future = vec!["mcp-bridge:policy/lifecycle@0.4.0".to_owned()];
        let error = contract_of("new.wasm", &future)
            .err()
            .map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains("mcp-bridge:policy@0.4.0"), "{error}");
        assert!(error.contains("mcp-bridge:policy@0.3.0"), "{error}");

        let other = vec!["wasi:cli/run@0.2.0".to_owned()];
        let error = contract_of("run.wasm", &other).err().map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains("exports none of cache-policy"), "{error}");
        assert!(error.contains("wasi:cli/run@0.2.0"), "{error}");
    }
}
