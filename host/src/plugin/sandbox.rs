//! What a plugin instance may touch: its store state, memory limits, the `log` import,
//! and a deliberately empty WASI (no files, sockets, environment or clock).
//!
//! Components built with Rust's `wasm32-wasip2` target import a few WASI interfaces
//! even when the plugin never uses them. The host answers the harmless ones with fixed
//! values (an empty environment, a clock stuck at zero, seeded random bytes so hash
//! maps work) and turns every other import into a function that traps when called, so
//! a plugin links but cannot reach outside its sandbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, ComponentType, Lift, Linker, Lower, types::ComponentItem};
use wasmtime::{Engine, StoreLimits, StoreLimitsBuilder};

use super::bindings::mcp_bridge::policy::log;

/// Log lines one instance may write per second; the rest are counted and reported.
const LOG_LINES_PER_SECOND: u32 = 20;
/// Longer log lines are cut here.
const MAX_LOG_LINE: usize = 2048;

/// The state every plugin store carries.
pub struct PluginState {
    limits: StoreLimits,
    /// The binding the instance serves, for log attribution.
    plugin: Arc<str>,
    random: u64,
    log_window: Instant,
    log_lines: u32,
    suppressed: u32,
    /// The last error-level line the plugin wrote: the SDK logs panic messages there, so
    /// a trap can be reported with its cause.
    pub last_error: Option<String>,
}

impl PluginState {
    pub fn new(plugin: Arc<str>, max_memory: usize) -> PluginState {
        PluginState {
            limits: StoreLimitsBuilder::new()
                .memory_size(max_memory)
                .instances(16)
                .memories(4)
                .tables(16)
                .table_elements(1 << 20)
                .trap_on_grow_failure(true)
                .build(),
            plugin,
            random: 0x9e37_79b9_7f4a_7c15,
            log_window: Instant::now(),
            log_lines: 0,
            suppressed: 0,
            last_error: None,
        }
    }

    pub fn limits(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }

    /// A deterministic xorshift stream: plugins need random bytes only to seed hash
    /// maps, and determinism keeps replays reproducible.
    fn next_random(&mut self) -> u64 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        x
    }

    fn random_bytes(&mut self, len: u64) -> Vec<u8> {
        let len = usize::try_from(len.min(1 << 20)).unwrap_or(0);
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < len {
            let word = self.next_random().to_le_bytes();
            let take = (len - bytes.len()).min(word.len());
            bytes.extend_from_slice(&word[..take]);
        }
        bytes
    }

    /// Whether another log line fits this second's budget.
    fn admit_log_line(&mut self) -> bool {
        if self.log_window.elapsed() >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                tracing::warn!(plugin = %self.plugin, suppressed = self.suppressed, "plugin log lines suppressed (over {LOG_LINES_PER_SECOND} per second)");
            }
            self.log_window = Instant::now();
            self.log_lines = 0;
            self.suppressed = 0;
        }
        self.log_lines += 1;
        if self.log_lines > LOG_LINES_PER_SECOND {
            self.suppressed += 1;
            return false;
        }
        true
    }
}

impl log::Host for PluginState {
    fn write(&mut self, level: log::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        if matches!(level, log::Level::Error) {
            self.last_error = Some(message.clone());
        }
        if !self.admit_log_line() {
            return;
        }
        let plugin = &self.plugin;
        match level {
            log::Level::Debug => tracing::debug!(%plugin, "{message}"),
            log::Level::Info => tracing::info!(%plugin, "{message}"),
            log::Level::Warn => tracing::warn!(%plugin, "{message}"),
            log::Level::Error => tracing::error!(%plugin, "{message}"),
        }
    }
}

/// `wasi:clocks/wall-clock.datetime`.
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

/// The linker every component starts from: the `log` import and nothing else.
pub fn base_linker(engine: &Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    log::add_to_linker::<PluginState, wasmtime::component::HasSelf<PluginState>>(
        &mut linker,
        |state| state,
    )?;
    Ok(linker)
}

/// A linker for one component: the base linker, the harmless WASI answers under the
/// exact interface versions the component imports, and traps for everything else.
pub fn linker_for(
    base: &Linker<PluginState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = base.clone();
    let imports: Vec<String> = component
        .component_type()
        .imports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_owned())
        .collect();
    for name in &imports {
        let unversioned = name.split('@').next().unwrap_or(name);
        match unversioned {
            "wasi:cli/environment" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("get-environment", |_, (): ()| {
                    Ok((Vec::<(String, String)>::new(),))
                })?;
                instance.func_wrap("get-arguments", |_, (): ()| Ok((Vec::<String>::new(),)))?;
                instance.func_wrap("initial-cwd", |_, (): ()| Ok((None::<String>,)))?;
            }
            "wasi:random/random" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("get-random-bytes", |mut store, (len,): (u64,)| {
                    Ok((store.data_mut().random_bytes(len),))
                })?;
                instance.func_wrap("get-random-u64", |mut store, (): ()| {
                    Ok((store.data_mut().next_random(),))
                })?;
            }
            "wasi:random/insecure" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("get-insecure-random-bytes", |mut store, (len,): (u64,)| {
                    Ok((store.data_mut().random_bytes(len),))
                })?;
                instance.func_wrap("get-insecure-random-u64", |mut store, (): ()| {
                    Ok((store.data_mut().next_random(),))
                })?;
            }
            "wasi:random/insecure-seed" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("insecure-seed", |mut store, (): ()| {
                    let state = store.data_mut();
                    Ok(((state.next_random(), state.next_random()),))
                })?;
            }
            "wasi:clocks/wall-clock" => {
                let mut instance = linker.instance(name)?;
                let epoch = Datetime {
                    seconds: 0,
                    nanoseconds: 0,
                };
                instance.func_wrap("now", move |_, (): ()| Ok((epoch,)))?;
                instance.func_wrap("resolution", move |_, (): ()| {
                    Ok((Datetime {
                        seconds: 1,
                        nanoseconds: 0,
                    },))
                })?;
            }
            "wasi:clocks/monotonic-clock" => {
                let mut instance = linker.instance(name)?;
                instance.func_wrap("now", |_, (): ()| Ok((0u64,)))?;
                instance.func_wrap("resolution", |_, (): ()| Ok((1_000_000_000u64,)))?;
            }
            _ => {}
        }
    }
    linker.define_unknown_imports_as_traps(component)?;
    Ok(linker)
}
