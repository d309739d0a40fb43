//! One loaded version of a plugin file: its compiled component, the policy interfaces it
//! exports, its fault record, and how to make warm instances of it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

use super::bindings::{
    CACHE_POLICY, CachePolicyGuest, CachePolicyIndices, INVALIDATION_RULES, InvalidationRulesGuest,
    InvalidationRulesIndices, LIFECYCLE, LifecycleIndices, TTL_TABLE, TtlTableGuest,
    TtlTableIndices,
};
use super::engine::{CompileSource, Compiled, PluginEngine};
use super::error::{Fault, FaultKind, PluginError};
use super::sandbox::{self, PluginState};
use crate::config::PluginsConfig;

/// How long creating an instance and running its `init` may take, at least.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Which of the contract's interfaces a component exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exports {
    pub lifecycle: bool,
    pub cache_policy: bool,
    pub ttl_table: bool,
    pub invalidation_rules: bool,
}

impl Exports {
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

/// The sandbox limits every instance of a version gets.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_memory: usize,
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
            deadline_ticks: PluginEngine::deadline_ticks(config.decision_timeout),
            quarantine_after: config.quarantine_after,
            quarantine_window: config.quarantine_window,
        }
    }
}

struct Indices {
    lifecycle: Option<LifecycleIndices>,
    cache_policy: Option<CachePolicyIndices>,
    ttl_table: Option<TtlTableIndices>,
    invalidation_rules: Option<InvalidationRulesIndices>,
}

/// A plugin file's content, compiled and probed.
pub struct PluginVersion {
    /// The file name in the plugin directory.
    pub file: String,
    pub hash: String,
    pub size: u64,
    pub exports: Exports,
    pub compile_source: CompileSource,
    pub compile_time: Duration,
    pub loaded_at: SystemTime,
    /// The policy generation this version was swapped in at (0 until it is).
    pub generation: AtomicU64,
    pub health: Health,
    limits: Limits,
    pre: InstancePre<PluginState>,
    indices: Indices,
}

/// A live instance with its exports looked up, kept warm between calls.
pub struct WarmInstance {
    pub store: Store<PluginState>,
    pub cache_policy: Option<CachePolicyGuest>,
    pub ttl_table: Option<TtlTableGuest>,
    pub invalidation_rules: Option<InvalidationRulesGuest>,
}

impl PluginVersion {
    /// Compiles `bytes` and checks that the component links against the host and
    /// exports at least one policy interface with the contract's function names.
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
        let link_error = |error: wasmtime::Error| PluginError::Link {
            file: file.to_owned(),
            message: format!("{error:#}"),
        };
        let linker = sandbox::linker_for(engine.base_linker(), engine.engine(), &component)
            .map_err(link_error)?;
        let pre = linker.instantiate_pre(&component).map_err(link_error)?;
        let indices = probe(file, &component, &pre)?;
        let exports = Exports {
            lifecycle: indices.lifecycle.is_some(),
            cache_policy: indices.cache_policy.is_some(),
            ttl_table: indices.ttl_table.is_some(),
            invalidation_rules: indices.invalidation_rules.is_some(),
        };
        if !(exports.cache_policy || exports.ttl_table || exports.invalidation_rules) {
            let names: Vec<String> = component
                .component_type()
                .exports(engine.engine())
                .map(|(name, _)| name.to_owned())
                .collect();
            return Err(PluginError::NoPolicyExports {
                file: file.to_owned(),
                exports: if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                },
            });
        }
        Ok(PluginVersion {
            file: file.to_owned(),
            hash,
            size: bytes.len() as u64,
            exports,
            compile_source: source,
            compile_time: took,
            loaded_at: SystemTime::now(),
            generation: AtomicU64::new(0),
            health: Health::new(limits.quarantine_after, limits.quarantine_window),
            limits,
            pre,
            indices,
        })
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
            PluginState::new(binding.clone(), self.limits.max_memory),
        );
        store.limiter(|state| state.limits());
        // Instantiation and `init` (parsing the plugin's config) may take far longer
        // than a decision; they run off the hot path except after a fault.
        let init_ticks = PluginEngine::deadline_ticks(INIT_TIMEOUT).max(self.limits.deadline_ticks);
        store.set_epoch_deadline(init_ticks);
        let fault = |store: &mut Store<PluginState>, error: wasmtime::Error| {
            let said = store.data_mut().last_error.take();
            let mut fault = Fault::from_call(&error, said);
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
        if let Some(indices) = &self.indices.lifecycle {
            let lifecycle = indices
                .load(&mut store, &instance)
                .map_err(|error| contract(LIFECYCLE, error))?;
            match lifecycle.call_init(&mut store, config_json) {
                Ok(Ok(())) => {}
                Ok(Err(message)) => return Err(InstantiateError::InitRejected(message)),
                Err(error) => return Err(fault(&mut store, error)),
            }
        }
        let cache_policy = match &self.indices.cache_policy {
            Some(indices) => Some(
                indices
                    .load(&mut store, &instance)
                    .map_err(|error| contract(CACHE_POLICY, error))?,
            ),
            None => None,
        };
        let ttl_table = match &self.indices.ttl_table {
            Some(indices) => Some(
                indices
                    .load(&mut store, &instance)
                    .map_err(|error| contract(TTL_TABLE, error))?,
            ),
            None => None,
        };
        let invalidation_rules = match &self.indices.invalidation_rules {
            Some(indices) => Some(
                indices
                    .load(&mut store, &instance)
                    .map_err(|error| contract(INVALIDATION_RULES, error))?,
            ),
            None => None,
        };
        Ok(WarmInstance {
            store,
            cache_policy,
            ttl_table,
            invalidation_rules,
        })
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
    /// An export's functions do not have the contract's types.
    Contract(PluginError),
}

/// Looks up each interface the contract defines. An interface the component does not
/// export is simply absent; one it exports with missing functions breaks the contract.
fn probe(
    file: &str,
    component: &Component,
    pre: &InstancePre<PluginState>,
) -> Result<Indices, PluginError> {
    let exported = |name: &str| component.get_export_index(None, name).is_some();
    let contract = |interface: &'static str, error: wasmtime::Error| PluginError::Contract {
        file: file.to_owned(),
        interface,
        message: format!("{error:#}"),
    };
    Ok(Indices {
        lifecycle: match exported(LIFECYCLE) {
            true => Some(LifecycleIndices::new(pre).map_err(|e| contract(LIFECYCLE, e))?),
            false => None,
        },
        cache_policy: match exported(CACHE_POLICY) {
            true => Some(CachePolicyIndices::new(pre).map_err(|e| contract(CACHE_POLICY, e))?),
            false => None,
        },
        ttl_table: match exported(TTL_TABLE) {
            true => Some(TtlTableIndices::new(pre).map_err(|e| contract(TTL_TABLE, e))?),
            false => None,
        },
        invalidation_rules: match exported(INVALIDATION_RULES) {
            true => Some(
                InvalidationRulesIndices::new(pre).map_err(|e| contract(INVALIDATION_RULES, e))?,
            ),
            false => None,
        },
    })
}

/// A version's fault record: faults in a sliding window, and whether it is quarantined.
pub struct Health {
    after: u32,
    window: Duration,
    recent: Mutex<VecDeque<Instant>>,
    quarantined: AtomicBool,
    reason: Mutex<Option<String>>,
    counts: [AtomicU64; 4],
}

impl Health {
    fn new(after: u32, window: Duration) -> Health {
        Health {
            after,
            window,
            recent: Mutex::new(VecDeque::new()),
            quarantined: AtomicBool::new(false),
            reason: Mutex::new(None),
            counts: Default::default(),
        }
    }

    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
    }

    pub fn quarantine_reason(&self) -> Option<String> {
        self.reason.lock().clone()
    }

    pub fn count(&self, kind: FaultKind) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// Records a fault; returns true when it tips the version into quarantine.
    pub fn record(&self, fault: &Fault) -> bool {
        self.counts[fault.kind as usize].fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut recent = self.recent.lock();
        recent.push_back(now);
        while recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > self.window)
        {
            recent.pop_front();
        }
        if recent.len() < self.after as usize || self.is_quarantined() {
            return false;
        }
        *self.reason.lock() = Some(format!(
            "{} faults within {:?}; the last: {fault}",
            recent.len(),
            self.window
        ));
        self.quarantined.store(true, Ordering::Relaxed);
        true
    }
}
