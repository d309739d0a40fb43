//! `bench explain`: the explanation of `POST /admin/explain`, offline. The chain is
//! loaded as `serve` loads it: the config's plugin directory through the plugin host
//! itself (bindings in config order, then auto-bound files, each `init`ed and
//! smoke-called), or, with `--policy`, the given plugins (loaded as `bench policies`
//! loads them) before the config's built-in policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::{ExplainRequest, ServerFacts, explain, human};
use crate::LabError;
use crate::policies::{PluginLoad, load_config, load_plugin, parse_policy_spec, policy_config};
use mcp_bridge_config::BridgeConfig;
use mcp_bridge_plugin_host::{Limits, PluginEngine, PluginHost, PluginMetrics};
use mcp_bridge_policy::{Policy, PolicyChain, PolicySink};

/// A `--call` or `--catalog` file larger than this is refused: a call is small, and a
/// catalogue of a few hundred tools fits many times over.
const MAX_INPUT_BYTES: usize = 4 << 20;

/// `bench explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The call: `{"server", "method"?, "tool" | "uri", "arguments"?, "principal"?}` as
    /// JSON, or `@FILE`. The same body `POST /admin/explain` takes.
    #[arg(long)]
    pub call: String,
    /// The bridge config: its server, `[cache]` (the built-in policy and its TTL rows)
    /// and `[plugins]`; the embedded default without it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A plugin to put in the chain, in order, before the built-in policy: `FILE.wasm`
    /// or `NAME=FILE.wasm` (bound to every server). With any, the config's `[plugins]`
    /// directory is not loaded; without, it is, as `serve` loads it.
    #[arg(long = "policy", short = 'p')]
    pub policies: Vec<String>,
    /// A `--policy` plugin's config: `NAME=JSON` or `NAME=@FILE`.
    #[arg(long = "policy-config")]
    pub policy_configs: Vec<String>,
    /// The server's catalogue, for the tool's annotations (`readOnlyHint`, …): a file
    /// holding a `tools/list` result (`{"tools": [...]}`), a whole JSON-RPC response to
    /// one, or the array of tools. Without it the tool's annotations are unknown.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Print a few lines for a person instead of the JSON.
    #[arg(long)]
    pub human: bool,
}

/// Runs `bench explain`: prints the explanation (pretty JSON, or `--human` lines).
pub fn run(args: ExplainArgs) -> Result<(), LabError> {
    let config = load_config(args.config.as_deref())?;
    let call_text = match args.call.strip_prefix('@') {
        Some(path) => read_bounded(Path::new(path))?,
        None => args.call.clone(),
    };
    let body: Value = serde_json::from_str(&call_text)
        .map_err(|error| LabError::Usage(format!("--call is not JSON: {error}")))?;
    let request = ExplainRequest::from_json(&body)
        .map_err(|error| LabError::Usage(format!("--call: {error}")))?;
    let Some(server) = config
        .servers
        .iter()
        .find(|server| server.name == request.server)
    else {
        let known: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
        return Err(LabError::Usage(format!(
            "--call: server: no server `{}` in the config (it has: {})",
            request.server,
            known.join(", ")
        )));
    };
    let mut facts = ServerFacts::of_config(server);
    if let Some(path) = &args.catalog {
        facts.catalogue = Some(listed_tool(path, &request)?);
    }
    let loaded = load_chain(&args, &config)?;
    let document = explain(&loaded.chain, &request, &facts);
    if args.human {
        print!("{}", human(&document));
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        );
    }
    Ok(())
}

/// A file read whole, refusing one past [`MAX_INPUT_BYTES`].
fn read_bounded(path: &Path) -> Result<String, LabError> {
    let read = |source| LabError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_INPUT_BYTES as u64 {
        return Err(LabError::Usage(format!(
            "{}: {size} bytes, more than the {MAX_INPUT_BYTES} read",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(read)
}

/// The catalogue entry of the request's tool, from a `--catalog` file.
fn listed_tool(path: &Path, request: &ExplainRequest) -> Result<Option<Value>, LabError> {
    let text = read_bounded(path)?;
    let catalogue: Value = serde_json::from_str(&text)
        .map_err(|error| LabError::Usage(format!("--catalog {}: {error}", path.display())))?;
    let tools = catalogue
        .pointer("/result/tools")
        .or_else(|| catalogue.get("tools"))
        .unwrap_or(&catalogue);
    let Some(tools) = tools.as_array() else {
        return Err(LabError::Usage(format!(
            "--catalog {}: no list of tools (give a tools/list result, a response to one, or an array of tools)",
            path.display()
        )));
    };
    let name = request.tool();
    Ok(tools
        .iter()
        .find(|tool| name.is_some() && tool.get("name").and_then(Value::as_str) == name)
        .cloned())
}

/// A chain and what must outlive its use: the engine whose epoch ticker enforces the
/// plugins' deadlines (owned by the host when the directory was loaded).
struct Loaded {
    chain: PolicyChain,
    _engine: Option<PluginEngine>,
    _host: Option<Arc<PluginHost>>,
}

fn load_chain(args: &ExplainArgs, config: &BridgeConfig) -> Result<Loaded, LabError> {
    let builtin = Arc::new(config.builtin_policy());
    let plugin_error = |name: &str, error: &dyn std::fmt::Display| LabError::Policy {
        name: name.to_owned(),
        message: error.to_string(),
    };
    if !args.policies.is_empty() {
        let engine = PluginEngine::new(config.plugins.compiled_cache_dir.clone())
            .map_err(|error| plugin_error("wasm", &error))?;
        let metrics = Arc::new(PluginMetrics::register(&mcp_bridge_metrics::Registry::new()));
        let mut policies: Vec<Arc<dyn Policy>> = Vec::new();
        for spec in &args.policies {
            let (name, file) = parse_policy_spec(spec);
            let Some(file) = file else {
                // `builtin` ends every chain anyway.
                continue;
            };
            let load = PluginLoad {
                name: &name,
                file: &file,
                config_json: policy_config(&args.policy_configs, &name)?,
                servers: Vec::new(),
                instances: 1,
                // The config's limits, so a plugin that would run past `serve`'s
                // deadline faults here too.
                limits: Some(Limits::from_config(&config.plugins)),
            };
            policies.push(Arc::new(load_plugin(&engine, load, &metrics)?));
        }
        return Ok(Loaded {
            chain: PolicyChain::new(policies, builtin),
            _engine: Some(engine),
            _host: None,
        });
    }
    let Some(dir) = config.plugins.dir.clone() else {
        return Ok(Loaded {
            chain: PolicyChain::new(Vec::new(), builtin),
            _engine: None,
            _host: None,
        });
    };
    if !dir.is_dir() {
        return Err(LabError::Usage(format!(
            "the config's [plugins] dir {} is not a directory",
            dir.display()
        )));
    }
    // The plugin host publishes each chain it assembles; without a plugin that loads
    // it publishes none, and the built-in policy alone is the chain.
    let published: Arc<Mutex<Option<PolicyChain>>> = Arc::new(Mutex::new(None));
    let sink: Arc<dyn PolicySink> = {
        let published = published.clone();
        Arc::new(move |chain: PolicyChain| *published.lock() = Some(chain))
    };
    let metrics = Arc::new(PluginMetrics::register(&mcp_bridge_metrics::Registry::new()));
    let host = PluginHost::start(config.plugins.clone(), dir, builtin.clone(), sink, metrics)
        .map_err(|error| plugin_error("plugins", &error))?;
    report_rejections(&host.snapshot());
    let chain = published
        .lock()
        .take()
        .unwrap_or_else(|| PolicyChain::new(Vec::new(), builtin));
    Ok(Loaded {
        chain,
        _engine: None,
        _host: Some(host),
    })
}

/// Says on stderr which plugin files the host refused, as `/admin/plugins` would show.
fn report_rejections(snapshot: &Value) {
    for plugin in snapshot["plugins"].as_array().into_iter().flatten() {
        if let Some(message) = plugin["last_rejection"]["message"].as_str() {
            eprintln!(
                "warning: plugin {} was not loaded: {message}",
                plugin["file"].as_str().unwrap_or("?")
            );
        }
    }
}
