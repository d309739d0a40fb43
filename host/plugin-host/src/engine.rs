//! The one wasmtime engine: epoch ticks for CPU deadlines, and compilation with an
//! on-disk cache of compiled components keyed by content hash and engine compatibility.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel};

use super::error::PluginError;
use super::sandbox::{self, PluginState};

/// How often the epoch advances; decision timeouts are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How a component came to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileSource {
    /// Compiled from the `.wasm` now.
    Compiled,
    /// Loaded from the compiled-component cache.
    Cached,
}

impl CompileSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CompileSource::Compiled => "compiled",
            CompileSource::Cached => "cached",
        }
    }
}

/// A compiled component and how it was obtained.
pub struct Compiled {
    pub component: Component,
    /// Hex SHA-256 of the `.wasm` bytes.
    pub hash: String,
    pub source: CompileSource,
    pub took: Duration,
}

/// The engine every plugin runs on, with the ticker that drives epoch deadlines.
pub struct PluginEngine {
    engine: Engine,
    base_linker: Linker<PluginState>,
    cache_dir: Option<PathBuf>,
    ticker: Option<Ticker>,
}

struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl PluginEngine {
    /// Starts the engine. `cache_dir` keeps compiled components between runs; it must
    /// be writable only by the bridge's user, because loading a compiled component
    /// trusts its contents.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<PluginEngine, PluginError> {
        let engine_error = |error: wasmtime::Error| PluginError::Engine {
            message: format!("{error:#}"),
        };
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&config).map_err(engine_error)?;
        let base_linker = sandbox::base_linker(&engine).map_err(engine_error)?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticking = engine.clone();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|error| PluginError::Engine {
                message: format!("cannot start the epoch ticker thread: {error}"),
            })?;
        Ok(PluginEngine {
            engine,
            base_linker,
            cache_dir,
            ticker: Some(Ticker {
                stop,
                thread: Some(thread),
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn base_linker(&self) -> &Linker<PluginState> {
        &self.base_linker
    }

    /// Epoch ticks that cover `timeout`, plus one for the tick already under way.
    pub fn deadline_ticks(timeout: Duration) -> u64 {
        let tick = EPOCH_TICK.as_nanos().max(1);
        u64::try_from(timeout.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX / 2) + 1
    }

    /// Compiles `bytes`, or loads the compiled form from the cache when this engine
    /// compiled the same bytes before.
    pub fn compile(&self, file: &str, bytes: &[u8]) -> Result<Compiled, PluginError> {
        let started = Instant::now();
        if is_core_module(bytes) {
            return Err(PluginError::CoreModule {
                file: file.to_owned(),
            });
        }
        let hash = hex_sha256(bytes);
        let cached_path = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{hash}-{:016x}.cwasm", self.compatibility())));
        if let Some(path) = cached_path.as_deref()
            && path.is_file()
        {
            // SAFETY: the file was written by `Component::serialize` of this engine
            // configuration (its name carries the compatibility hash) into a directory
            // only the bridge writes; wasmtime still checks its header and version.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(&self.engine, path) };
            match loaded {
                Ok(component) => {
                    return Ok(Compiled {
                        component,
                        hash,
                        source: CompileSource::Cached,
                        took: started.elapsed(),
                    });
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "ignoring an unusable compiled plugin; compiling again");
                }
            }
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|error| PluginError::Compile {
                file: file.to_owned(),
                message: format!("{error:#}"),
            })?;
        if let Some(path) = cached_path.as_deref() {
            store_compiled(path, &component);
        }
        Ok(Compiled {
            component,
            hash,
            source: CompileSource::Compiled,
            took: started.elapsed(),
        })
    }

    /// A stable number for "this engine can load what that engine compiled": the
    /// engine's own compatibility hash and the bridge's version.
    fn compatibility(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        hasher.finish()
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker.take();
    }
}

/// Writes a compiled component to the cache through a temporary file and a rename,
/// so a crash never leaves a half-written entry. Failures only cost a recompile.
fn store_compiled(path: &Path, component: &Component) {
    let write = || -> Result<(), String> {
        let bytes = component
            .serialize()
            .map_err(|error| format!("{error:#}"))?;
        let dir = path.parent().ok_or("no parent directory")?;
        std::fs::create_dir_all(dir).map_err(|error| error.to_string())?;
        let temporary = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id()
        ));
        std::fs::write(&temporary, bytes).map_err(|error| error.to_string())?;
        std::fs::rename(&temporary, path).map_err(|error| error.to_string())
    };
    if let Err(error) = write() {
        tracing::warn!(path = %path.display(), %error, "cannot store a compiled plugin; it will be compiled again next time");
    }
}

/// A core module's preamble is `\0asm` then version 1; a component's layer field is 1.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}
