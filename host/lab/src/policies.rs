//! `bench policies`: loads a trace (or generates a workload), loads every policy, replays
//! the trace against each at the base setting and across the sweeps on all cores, adds
//! the bounds, and reports.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::LabError;
use super::loaded::Trace;
use super::replay::sim::SimLimits;
use super::replay::{self, Prepared, Setting, bounds};
use super::report;
use super::results::{
    LabReport, PolicyRun, REPORT_VERSION, ReplayMetrics, ReplaySettings, RunKind, SweepPoint,
    TraceSummary,
};
use super::workload::Workload;
use mcp_bridge_config::{BridgeConfig, PluginsConfig};
use mcp_bridge_plugin_host::PluginMetrics;
use mcp_bridge_plugin_host::{Limits, PluginEngine, PluginVersion, WasmPolicy};
use mcp_bridge_policy::{BuiltinPolicy, BuiltinSettings, PolicyChain};

/// The size sweep's default byte budgets, as fractions of the working set's bytes.
pub const DEFAULT_SIZES: &str = "0.01,0.02,0.05,0.1,0.2,0.5,1";
/// The TTL sweep's default factors.
pub const DEFAULT_TTL_SCALES: &str = "0.25,0.5,1,2,4";
/// What a hit costs by default: the brief's p50 target for a cached call end to end.
pub const DEFAULT_HIT_LATENCY: &str = "100us";
/// A plugin's decision deadline in the lab. Far above `serve`'s: the deadline is wall
/// time, and a replay shares the machine with its other replay threads, so only a
/// plugin that really loops should trip it.
const LAB_DECISION_TIMEOUT: Duration = Duration::from_secs(1);

/// `bench policies`.
#[derive(Debug, clap::Args)]
pub struct PoliciesArgs {
    /// A trace file (JSON Lines, as `serve --record` or `bench workload` write it).
    #[arg(
        long,
        conflicts_with = "workload",
        required_unless_present = "workload"
    )]
    pub trace: Option<PathBuf>,
    /// Generate the calls from a workload preset (seed-tasks, read-heavy, write-storm)
    /// or a preset file instead of reading a trace.
    #[arg(long, short)]
    pub workload: Option<String>,
    /// How many calls to generate, overriding the preset's `calls`.
    #[arg(long, requires = "workload")]
    pub calls: Option<u64>,
    /// The generator's seed, overriding the preset's.
    #[arg(long, requires = "workload")]
    pub seed: Option<u64>,
    /// A policy to replay: `builtin`, `FILE.wasm`, or `NAME=FILE.wasm`. Repeat it to
    /// compare several; without any, the built-in policy alone. A plugin is chained
    /// before the built-in policy, as `serve` runs it.
    #[arg(long = "policy", short = 'p')]
    pub policies: Vec<String>,
    /// A plugin's config: `NAME=JSON` or `NAME=@FILE` (what `[[plugins.policy]].config`
    /// would give it). Plugins get `{}` otherwise.
    #[arg(long = "policy-config")]
    pub policy_configs: Vec<String>,
    /// The bridge config whose TTL table and invalidation rules the built-in policy
    /// uses; the embedded default without it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The cache's byte budget at the base setting, as `[cache] max_bytes` sets it in
    /// `serve`: a size (`64MiB`, `500KB`, `4096B`) or a share of the working set's bytes
    /// (`25%`). Without it, the config's `max_bytes`. The config's `max_entries` and
    /// `eviction` apply either way.
    #[arg(long)]
    pub cache_size: Option<String>,
    /// The size sweep's byte budgets as fractions of the working set's bytes (empty: no
    /// sweep).
    #[arg(long, default_value = DEFAULT_SIZES)]
    pub sizes: String,
    /// The TTL sweep's factors (empty: no sweep).
    #[arg(long, default_value = DEFAULT_TTL_SCALES)]
    pub ttl_scales: String,
    /// What a hit costs, added to each hit's latency.
    #[arg(long, default_value = DEFAULT_HIT_LATENCY, value_parser = mcp_bridge_policy::parse_duration)]
    pub hit_latency: Duration,
    /// Write report.json, report.csv and report.html into this directory.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// A report.json of an earlier run to compare with.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Exit with an error when a policy is worse than the baseline's policy of the same
    /// name (hit ratio, stale-hit ratio or decision cost past the thresholds below), or
    /// missing: a gate for a plugin's CI.
    #[arg(long, requires = "baseline")]
    pub fail_if_worse: bool,
    /// With --fail-if-worse: the hit ratio a policy may lose, in percentage points.
    #[arg(long, default_value_t = report::gate::DEFAULT_MAX_HIT_RATIO_DROP_PP, value_parser = non_negative)]
    pub max_hit_ratio_drop: f64,
    /// With --fail-if-worse: the stale-hit ratio a policy may gain, in percentage points.
    #[arg(long, default_value_t = report::gate::DEFAULT_MAX_STALE_RISE_PP, value_parser = non_negative)]
    pub max_stale_rise: f64,
    /// With --fail-if-worse: the factor a policy's mean decision cost may grow by.
    #[arg(long, default_value_t = report::gate::DEFAULT_MAX_DECISION_SLOWDOWN, value_parser = non_negative)]
    pub max_decision_slowdown: f64,
    /// Replay threads (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A policy under test.
struct Contender {
    name: String,
    kind: RunKind,
    source: String,
    chain: PolicyChain,
    /// The same policy before the built-in defaults alone (no configured rules).
    alone: PolicyChain,
    /// The plugin's own fault counter, when it is one.
    metrics: Option<Arc<PluginMetrics>>,
}

/// One replay to run.
#[derive(Clone, Copy)]
enum Job {
    Policy {
        contender: usize,
        setting: Setting,
        section: Section,
    },
    /// A policy alone (before the built-in defaults only), at the base setting.
    Alone {
        contender: usize,
        setting: Setting,
    },
    NoCache,
    Perfect,
    Belady {
        limits: SimLimits,
        section: Section,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    Base,
    Size(f64),
    Ttl(f64),
}

/// Runs `bench policies`.
pub fn run(args: PoliciesArgs) -> Result<(), LabError> {
    let hit_latency = args.hit_latency;
    let sizes = parse_list("--sizes", &args.sizes)?;
    let ttl_scales = parse_list("--ttl-scales", &args.ttl_scales)?;
    let baseline = args
        .baseline
        .as_deref()
        .map(report::read_baseline)
        .transpose()?;
    let trace = load_trace(&args)?;
    let prepared = Prepared::new(&trace, hit_latency);
    let summary = summarize(&trace);
    let config = load_config(args.config.as_deref())?;
    let limits = SimLimits::of(&config.cache);
    let (capacity, size_fraction) = base_capacity(
        args.cache_size.as_deref(),
        summary.working_set_bytes,
        limits.max_bytes,
    )?;
    let base_limits = limits.with_max_bytes(capacity);
    let sized =
        |fraction: f64| limits.with_max_bytes(capacity_of(fraction, summary.working_set_bytes));
    let builtin = Arc::new(config.builtin_policy());
    // The engine's epoch ticker must outlive every replay that calls a plugin.
    let engine = PluginEngine::new(None).map_err(|error| LabError::Policy {
        name: "wasm".to_owned(),
        message: error.to_string(),
    })?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // The built-in policy with none of the config's rules (its TTLs and uncached servers
    // stay): what "alone" puts after a plugin.
    let defaults = Arc::new(BuiltinPolicy::new(BuiltinSettings {
        ttl_table: mcp_bridge_policy::TtlMap::new(),
        invalidation_rules: Vec::new(),
        ..config.builtin_settings()
    }));
    let contenders = load_contenders(&args, &builtin, &defaults, &engine, jobs)?;
    let mut plan = Vec::new();
    for contender in 0..contenders.len() {
        let base = Setting {
            limits: base_limits,
            ttl_scale: 1.0,
        };
        plan.push(Job::Policy {
            contender,
            setting: base,
            section: Section::Base,
        });
        plan.push(Job::Alone {
            contender,
            setting: base,
        });
        for fraction in &sizes {
            plan.push(Job::Policy {
                contender,
                setting: Setting {
                    limits: sized(*fraction),
                    ttl_scale: 1.0,
                },
                section: Section::Size(*fraction),
            });
        }
        for scale in &ttl_scales {
            plan.push(Job::Policy {
                contender,
                setting: Setting {
                    limits: base_limits,
                    ttl_scale: *scale,
                },
                section: Section::Ttl(*scale),
            });
        }
    }
    plan.push(Job::NoCache);
    plan.push(Job::Perfect);
    plan.push(Job::Belady {
        limits: base_limits,
        section: Section::Base,
    });
    for fraction in &sizes {
        plan.push(Job::Belady {
            limits: sized(*fraction),
            section: Section::Size(*fraction),
        });
    }
    let next_uses = bounds::next_uses(&prepared);
    let results = run_plan(&plan, &prepared, &contenders, &next_uses, jobs, args.quiet);
    for contender in &contenders {
        warn_about_faults(contender);
    }
    let mut report = LabReport {
        version: REPORT_VERSION,
        created_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
        trace: summary,
        settings: ReplaySettings {
            cache_bytes: capacity,
            max_entries: limits.max_entries,
            size_fraction,
            hit_latency_us: hit_latency.as_secs_f64() * 1e6,
            size_fractions: sizes,
            ttl_scales,
            eviction: eviction_text(limits),
        },
        policies: Vec::new(),
        alone: Vec::new(),
        bounds: Vec::new(),
        size_sweep: Vec::new(),
        ttl_sweep: Vec::new(),
        baseline: None,
        shadow: None,
    };
    let events = trace.events.len() as f64;
    for (job, (metrics, elapsed)) in plan.iter().zip(results) {
        file_result(&mut report, &contenders, *job, metrics, events, elapsed);
    }
    if let Some(baseline) = &baseline {
        report.baseline = Some(report::diff(baseline, args.baseline.as_deref(), &report));
    }
    println!("{}", report::table::render(&report));
    if let Some(dir) = &args.out {
        for path in report::write_all(&report, dir)? {
            eprintln!("wrote {}", path.display());
        }
    }
    // Judged last, so the report of a failing run is still written for the reader.
    if args.fail_if_worse
        && let Some(baseline) = &baseline
    {
        let thresholds = report::gate::Thresholds {
            max_hit_ratio_drop_pp: args.max_hit_ratio_drop,
            max_stale_rise_pp: args.max_stale_rise,
            max_decision_slowdown: args.max_decision_slowdown,
        };
        let worse = report::gate::regressions(baseline, &report, &thresholds);
        if !worse.is_empty() {
            let lines: Vec<String> = worse
                .iter()
                .map(|regression| format!("  {regression}"))
                .collect();
            return Err(LabError::Worse(lines.join("\n")));
        }
        eprintln!("no policy is worse than the baseline");
    }
    Ok(())
}

/// A threshold: a finite number of zero or more.
fn non_negative(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!("{text:?} is not a number of zero or more")),
    }
}

fn parse_list(flag: &str, text: &str) -> Result<Vec<f64>, LabError> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.parse::<f64>() {
            Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
            _ => Err(LabError::Usage(format!(
                "{flag}: {item:?} is not a positive number; give a comma-separated list such as 0.1,0.5,1"
            ))),
        })
        .collect()
}

fn load_trace(args: &PoliciesArgs) -> Result<Trace, LabError> {
    if let Some(path) = &args.trace {
        return Trace::load(path);
    }
    let Some(name) = &args.workload else {
        return Err(LabError::Usage(
            "give --trace FILE or --workload NAME".to_owned(),
        ));
    };
    let mut workload = Workload::resolve(name)?;
    if let Some(calls) = args.calls {
        workload.calls = calls;
    }
    if let Some(seed) = args.seed {
        workload.seed = seed;
    }
    let records = workload
        .calls()
        .enumerate()
        .map(|(line, call)| (line + 1, call.to_record()))
        .collect();
    let source = format!("workload:{} (seed {})", workload.name, workload.seed);
    Trace::from_records(&source, records, |line, message| LabError::Workload {
        path: PathBuf::from(&workload.origin),
        message: format!("generated call {line}: {message}"),
    })
}

pub(crate) fn load_config(path: Option<&Path>) -> Result<BridgeConfig, LabError> {
    let loaded = match path {
        Some(path) => mcp_bridge_config::load_file(path),
        None => mcp_bridge_config::embedded_default(),
    };
    loaded.map_err(|error| LabError::Usage(format!("--config: {error}")))
}

/// What the trace holds, and its working set.
fn summarize(trace: &Trace) -> TraceSummary {
    let mut largest: Vec<u64> = vec![0; trace.keys as usize];
    let mut seen = vec![false; trace.keys as usize];
    let mut servers = std::collections::HashSet::new();
    let (mut reads, mut writes, mut unverifiable, mut working_set) = (0, 0, 0, 0);
    for event in &trace.events {
        servers.insert(event.server);
        if event.write {
            writes += 1;
            continue;
        }
        reads += 1;
        if event.truth.is_none() && event.status == mcp_bridge_trace::RecordedStatus::Ok {
            unverifiable += 1;
        }
        let key = event.shared_key as usize;
        if !seen[key] {
            seen[key] = true;
            working_set += 1;
        }
        largest[key] = largest[key].max(event.bytes);
    }
    TraceSummary {
        source: trace.source.clone(),
        events: trace.events.len() as u64,
        reads,
        writes,
        servers: servers.len() as u64,
        working_set_entries: working_set,
        working_set_bytes: largest.iter().sum(),
        duration_ms: trace
            .events
            .last()
            .map_or(0.0, |event| event.t_us as f64 / 1e3),
        unverifiable_reads: unverifiable,
    }
}

/// A share of the working set's bytes, as a byte budget.
fn capacity_of(fraction: f64, working_set_bytes: u64) -> u64 {
    ((fraction * working_set_bytes as f64).ceil() as u64).max(1)
}

/// The base byte budget from `--cache-size` (the config's `max_bytes` without it), and
/// its share of the working set's bytes.
fn base_capacity(
    text: Option<&str>,
    working_set_bytes: u64,
    config_max_bytes: u64,
) -> Result<(u64, f64), LabError> {
    let capacity = match text.map(str::trim) {
        None => config_max_bytes,
        Some(text) => parse_cache_size(text, working_set_bytes)?,
    };
    Ok((capacity, capacity as f64 / working_set_bytes.max(1) as f64))
}

/// `--cache-size`: a size in the config's grammar or a share of the working set's bytes.
/// A bare number is refused: it used to count entries, and read as bytes now it would
/// silently mean a cache a thousand times too small.
fn parse_cache_size(text: &str, working_set_bytes: u64) -> Result<u64, LabError> {
    let usage = |why: &str| {
        LabError::Usage(format!(
            "--cache-size: {text:?} {why}; give the cache's byte budget as `[cache] max_bytes` takes it (64MiB, 500KB, 4096B) or a share of the working set's bytes (25%)"
        ))
    };
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.trim().parse::<f64>() {
            Ok(percent) if percent.is_finite() && percent > 0.0 => {
                Ok(capacity_of(percent / 100.0, working_set_bytes))
            }
            _ => Err(usage("is not a positive share")),
        };
    }
    if text.parse::<u64>().is_ok() {
        return Err(usage(
            "has no unit: the lab's cache is weighed in bytes as `serve`'s is, no longer counted in entries",
        ));
    }
    match mcp_bridge_policy::parse_size(text) {
        Ok(0) => Err(usage("is no room at all")),
        Ok(bytes) => Ok(u64::try_from(bytes).unwrap_or(u64::MAX)),
        Err(error) => Err(usage(&error)),
    }
}

/// The report's words for how the cache admits and evicts.
/// How the simulated cache admits and evicts, for the report.
pub(crate) fn eviction_text(limits: SimLimits) -> String {
    let how = match limits.eviction {
        mcp_bridge_config::Eviction::TinyLfu => "moka's TinyLFU admission over LRU",
        mcp_bridge_config::Eviction::Lru => "moka's LRU",
    };
    format!(
        "{}: {how}, weighed in bytes, at most {} entries",
        limits.eviction.as_str(),
        limits.max_entries
    )
}

/// A `--policy` argument: its name and what it is.
pub(crate) fn parse_policy_spec(spec: &str) -> (String, Option<PathBuf>) {
    if spec == "builtin" {
        return ("builtin".to_owned(), None);
    }
    let (name, file) = match spec.split_once('=') {
        Some((name, file)) if !name.is_empty() && !name.contains('/') => {
            (name.to_owned(), PathBuf::from(file))
        }
        _ => {
            let file = PathBuf::from(spec);
            let stem = file.file_stem().map_or_else(
                || spec.to_owned(),
                |stem| stem.to_string_lossy().into_owned(),
            );
            (stem, file)
        }
    };
    (name, Some(file))
}

fn load_contenders(
    args: &PoliciesArgs,
    builtin: &Arc<BuiltinPolicy>,
    defaults: &Arc<BuiltinPolicy>,
    engine: &PluginEngine,
    jobs: usize,
) -> Result<Vec<Contender>, LabError> {
    let specs: Vec<&str> = if args.policies.is_empty() {
        vec!["builtin"]
    } else {
        args.policies.iter().map(String::as_str).collect()
    };
    let mut contenders: Vec<Contender> = Vec::new();
    for spec in specs {
        let (name, file) = parse_policy_spec(spec);
        if contenders.iter().any(|known| known.name == name) {
            return Err(LabError::Usage(format!(
                "two policies are named {name:?}; name one of them with --policy OTHER={}",
                file.as_deref()
                    .map_or("FILE.wasm".into(), |file| file.display().to_string())
            )));
        }
        let Some(file) = file else {
            contenders.push(Contender {
                name,
                kind: RunKind::Builtin,
                source: "builtin".to_owned(),
                chain: PolicyChain::new(Vec::new(), builtin.clone()),
                alone: PolicyChain::new(Vec::new(), defaults.clone()),
                metrics: None,
            });
            continue;
        };
        let config_json = policy_config(&args.policy_configs, &name)?;
        let metrics = Arc::new(PluginMetrics::register(&mcp_bridge_metrics::Registry::new()));
        let policy: Arc<dyn mcp_bridge_policy::Policy> = Arc::new(load_plugin(
            engine,
            PluginLoad {
                name: &name,
                file: &file,
                config_json,
                servers: Vec::new(),
                instances: jobs,
                limits: None,
            },
            &metrics,
        )?);
        contenders.push(Contender {
            name,
            kind: RunKind::Wasm,
            source: file.display().to_string(),
            chain: PolicyChain::new(vec![policy.clone()], builtin.clone()),
            alone: PolicyChain::new(vec![policy], defaults.clone()),
            metrics: Some(metrics),
        });
    }
    let unknown: Vec<&str> = args
        .policy_configs
        .iter()
        .filter_map(|item| item.split_once('=').map(|(name, _)| name))
        .filter(|name| !contenders.iter().any(|contender| contender.name == *name))
        .collect();
    if !unknown.is_empty() {
        return Err(LabError::Usage(format!(
            "--policy-config names no --policy: {}",
            unknown.join(", ")
        )));
    }
    Ok(contenders)
}

pub(crate) fn policy_config(configs: &[String], name: &str) -> Result<String, LabError> {
    let Some(value) = configs
        .iter()
        .filter_map(|item| item.split_once('='))
        .find(|(config_name, _)| *config_name == name)
        .map(|(_, value)| value)
    else {
        return Ok("{}".to_owned());
    };
    let text = match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|source| LabError::Read {
            path: PathBuf::from(path),
            source,
        })?,
        None => value.to_owned(),
    };
    serde_json::from_str::<serde_json::Value>(&text).map_err(|error| LabError::Policy {
        name: name.to_owned(),
        message: format!("--policy-config is not JSON: {error}"),
    })?;
    Ok(text)
}

/// A plugin file to load as a policy.
pub(crate) struct PluginLoad<'a> {
    pub name: &'a str,
    pub file: &'a Path,
    pub config_json: String,
    /// The servers it applies to; empty means every server.
    pub servers: Vec<String>,
    /// Warm instances kept (one per thread that calls it).
    pub instances: usize,
    /// The sandbox limits; the lab's own (a generous deadline) when not given.
    pub limits: Option<Limits>,
}

/// Loads a plugin file as a policy, its faults counted in `metrics`.
pub(crate) fn load_plugin(
    engine: &PluginEngine,
    load: PluginLoad<'_>,
    metrics: &Arc<PluginMetrics>,
) -> Result<WasmPolicy, LabError> {
    let PluginLoad {
        name,
        file,
        config_json,
        servers,
        instances,
        limits,
    } = load;
    let bytes = std::fs::read(file).map_err(|source| LabError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let policy_error = |message: String| LabError::Policy {
        name: name.to_owned(),
        message,
    };
    let file_name = file.file_name().map_or_else(
        || file.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let limits = limits.unwrap_or_else(|| {
        Limits::from_config(&PluginsConfig {
            decision_timeout: LAB_DECISION_TIMEOUT,
            ..PluginsConfig::default()
        })
    });
    let version = PluginVersion::load(engine, &file_name, &bytes, limits)
        .map_err(|error| policy_error(error.to_string()))?;
    WasmPolicy::start(
        name,
        servers,
        config_json,
        Arc::new(version),
        instances,
        metrics,
    )
    .map_err(|error| policy_error(error.to_string()))
}

/// Runs every job on `jobs` threads, with a progress bar on a terminal.
fn run_plan(
    plan: &[Job],
    prepared: &Prepared<'_>,
    contenders: &[Contender],
    next_uses: &[u32],
    jobs: usize,
    quiet: bool,
) -> Vec<(ReplayMetrics, Duration)> {
    let results: Mutex<Vec<Option<(ReplayMetrics, Duration)>>> = Mutex::new(vec![None; plan.len()]);
    let next_job = AtomicUsize::new(0);
    let progress = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let total = plan.len() as u64 * prepared.trace.events.len() as u64;
    let show = !quiet && std::io::stderr().is_terminal();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.min(plan.len()))
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let index = next_job.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = plan.get(index) else { break };
                        let result = run_job(*job, prepared, contenders, next_uses, &progress);
                        results.lock()[index] = Some(result);
                    }
                })
            })
            .collect();
        if show {
            scope.spawn(|| draw_progress(&progress, total, &finished));
        }
        for worker in workers {
            let _ = worker.join();
        }
        finished.store(true, Ordering::Relaxed);
    });
    results
        .into_inner()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

fn run_job(
    job: Job,
    prepared: &Prepared<'_>,
    contenders: &[Contender],
    next_uses: &[u32],
    progress: &AtomicU64,
) -> (ReplayMetrics, Duration) {
    let events = prepared.trace.events.len() as u64;
    let result = match job {
        Job::Policy {
            contender, setting, ..
        } => return replay::replay(prepared, &contenders[contender].chain, setting, progress),
        Job::Alone { contender, setting } => {
            return replay::replay(prepared, &contenders[contender].alone, setting, progress);
        }
        Job::NoCache => bounds::no_cache(prepared),
        Job::Perfect => bounds::perfect(prepared),
        Job::Belady { limits, .. } => bounds::belady(prepared, next_uses, limits),
    };
    progress.fetch_add(events, Ordering::Relaxed);
    result
}

/// Redraws one progress line on stderr until the replays finish.
fn draw_progress(progress: &AtomicU64, total: u64, finished: &AtomicBool) {
    const WIDTH: usize = 30;
    let started = Instant::now();
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(150));
        let done = progress.load(Ordering::Relaxed).min(total);
        let share = done as f64 / total.max(1) as f64;
        let filled = (share * WIDTH as f64) as usize;
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r  replaying [{}{}] {:>3.0}%  {:.2} M events/s ",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            share * 100.0,
            rate / 1e6
        );
    }
    eprint!("\r{}\r", " ".repeat(WIDTH + 40));
}

/// How many times the plugin named `name` faulted, of every kind.
pub(crate) fn faults_of(metrics: &PluginMetrics, name: &str) -> u64 {
    ["trap", "deadline", "out_of_memory", "instantiate"]
        .iter()
        .map(|kind| {
            metrics
                .plugin_faults_total
                .with_label_values(&[name, kind])
                .get()
        })
        .sum()
}

fn warn_about_faults(contender: &Contender) {
    let Some(metrics) = &contender.metrics else {
        return;
    };
    let faults = faults_of(metrics, &contender.name);
    if faults > 0 {
        eprintln!(
            "warning: policy {} faulted {faults} times during the replay; those decisions fell back to the safe default (no caching), so its numbers understate it",
            contender.name
        );
    }
}

fn file_result(
    report: &mut LabReport,
    contenders: &[Contender],
    job: Job,
    metrics: ReplayMetrics,
    events: f64,
    elapsed: Duration,
) {
    let events_per_second = events / elapsed.as_secs_f64().max(1e-9);
    let bound = |name: &str, source: &str, metrics: ReplayMetrics| PolicyRun {
        name: name.to_owned(),
        kind: RunKind::Bound,
        source: source.to_owned(),
        metrics,
        events_per_second,
    };
    match job {
        Job::Policy {
            contender,
            setting,
            section,
        } => {
            let contender = &contenders[contender];
            let point = |size_fraction: f64, metrics: ReplayMetrics| SweepPoint {
                policy: contender.name.clone(),
                kind: contender.kind,
                size_fraction,
                cache_bytes: setting.limits.max_bytes,
                ttl_scale: setting.ttl_scale,
                metrics,
            };
            match section {
                Section::Base => report.policies.push(PolicyRun {
                    name: contender.name.clone(),
                    kind: contender.kind,
                    source: contender.source.clone(),
                    metrics,
                    events_per_second,
                }),
                Section::Size(fraction) => report.size_sweep.push(point(fraction, metrics)),
                Section::Ttl(_) => {
                    let fraction = report.settings.size_fraction;
                    report.ttl_sweep.push(point(fraction, metrics));
                }
            }
        }
        Job::Alone { contender, .. } => {
            let contender = &contenders[contender];
            report.alone.push(PolicyRun {
                name: contender.name.clone(),
                kind: contender.kind,
                source: format!(
                    "{} (alone: before the built-in defaults only)",
                    contender.source
                ),
                metrics,
                events_per_second,
            });
        }
        Job::NoCache => {
            report
                .bounds
                .push(bound("no-cache", "every call reaches the backend", metrics))
        }
        Job::Perfect => report.bounds.push(bound(
            "perfect",
            "unbounded, invalidated exactly when a result changes",
            metrics,
        )),
        Job::Belady { limits, section } => match section {
            Section::Size(fraction) => report.size_sweep.push(SweepPoint {
                policy: "belady".to_owned(),
                kind: RunKind::Bound,
                size_fraction: fraction,
                cache_bytes: limits.max_bytes,
                ttl_scale: 1.0,
                metrics,
            }),
            _ => report.bounds.push(bound(
                "belady",
                "furthest next use first, by bytes, at the base size, perfect invalidation",
                metrics,
            )),
        },
    }
}
