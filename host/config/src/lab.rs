//! `[lab.shadow]`: candidate cache policies evaluated on live traffic. Each candidate
//! decides every real call in a simulated cache of its own, off the request path, so an
//! operator sees what it would have achieved here before deploying it. Optionally, a
//! bounded rate of cache hits on read-only tools is re-fetched to learn the truth.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::checked::{CacheConfig, ServerConfig};
use super::error::ConfigError;
use super::expand::Lookup;
use super::raw::OrderedMap;
use super::source::{FieldPath, SourceText};
use super::validate::expand_at;
use mcp_bridge_policy::TtlMap;
use mcp_bridge_policy::units::{ConfigDuration, ConfigTtl};

/// Calls waiting for the shadow evaluator; past this, new ones are dropped and counted.
pub const DEFAULT_SHADOW_QUEUE: usize = 16_384;
/// The most calls the queue may be told to hold.
pub const MAX_SHADOW_QUEUE: usize = 1 << 20;
/// Distinct cache keys the evaluator remembers; when more arrive it starts a new window
/// (every candidate's simulated cache empties; the counts go on). Each key costs every row
/// about a hundred bytes, and a row whose policy shapes keys (`ignore_arguments`) up to
/// twice that.
pub const DEFAULT_SHADOW_MAX_KEYS: u32 = 100_000;
pub const MAX_SHADOW_MAX_KEYS: u32 = 250_000;
/// Row names the shadow gives its own rows.
pub const RESERVED_SHADOW_ROW_NAMES: [&str; 2] = ["production", "production-simulated"];
/// The most candidates one bridge evaluates: each one costs a decision per call.
pub const MAX_SHADOW_CANDIDATES: usize = 8;
/// Truth samples per second; zero (the default) never sends a hit to the backend.
pub const DEFAULT_TRUTH_SAMPLES_PER_SECOND: f64 = 0.0;
pub const MAX_TRUTH_SAMPLES_PER_SECOND: f64 = 1000.0;
/// Truth samples running at once.
pub const DEFAULT_TRUTH_MAX_IN_FLIGHT: usize = 2;
pub const MAX_TRUTH_MAX_IN_FLIGHT: usize = 64;
/// How long a truth sample may take before it is given up (and counted as failed).
pub const DEFAULT_TRUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Whether a candidate's chain includes the config's `[cache.ttl]` rows and
/// `[[cache.invalidate]]` rules, as it would if deployed with this config.
pub const DEFAULT_CANDIDATE_CONFIG_RULES: bool = true;

/// The `[lab]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLab {
    pub shadow: Option<RawShadow>,
}

/// `[lab.shadow]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShadow {
    pub dir: Option<String>,
    pub queue: Option<usize>,
    pub max_keys: Option<u32>,
    pub truth_samples_per_second: Option<f64>,
    pub truth_max_in_flight: Option<usize>,
    pub truth_timeout: Option<ConfigDuration>,
    pub candidate: Option<Vec<RawCandidate>>,
}

/// One `[[lab.shadow.candidate]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCandidate {
    pub name: Option<String>,
    /// A plugin file in `[lab.shadow] dir`; without it, the built-in policy.
    pub file: Option<String>,
    pub config: Option<toml::Table>,
    pub config_rules: Option<bool>,
    /// The built-in policy's settings for this candidate (only without `file`): each one
    /// replaces the `[cache]` value.
    pub default_ttl: Option<ConfigTtl>,
    pub list_ttl: Option<ConfigDuration>,
    pub ttl: Option<OrderedMap<OrderedMap<ConfigDuration>>>,
}

/// `[lab.shadow]`, checked. No candidates means no shadow evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowConfig {
    /// Where plugin candidates' files are, resolved against the config file's directory:
    /// a directory of its own, so production's plugin watcher never binds a candidate.
    pub dir: Option<PathBuf>,
    pub queue: usize,
    pub max_keys: u32,
    pub truth_samples_per_second: f64,
    pub truth_max_in_flight: usize,
    pub truth_timeout: Duration,
    pub candidates: Vec<ShadowCandidate>,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            dir: None,
            queue: DEFAULT_SHADOW_QUEUE,
            max_keys: DEFAULT_SHADOW_MAX_KEYS,
            truth_samples_per_second: DEFAULT_TRUTH_SAMPLES_PER_SECOND,
            truth_max_in_flight: DEFAULT_TRUTH_MAX_IN_FLIGHT,
            truth_timeout: DEFAULT_TRUTH_TIMEOUT,
            candidates: Vec::new(),
        }
    }
}

impl ShadowConfig {
    pub fn is_enabled(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// Whether hits are re-fetched to learn their truth.
    pub fn samples_truth(&self) -> bool {
        self.is_enabled() && self.truth_samples_per_second > 0.0
    }
}

/// What a candidate is.
#[derive(Debug, Clone, PartialEq)]
pub enum CandidatePolicy {
    /// A plugin file in `[lab.shadow] dir` with its config as JSON text.
    Plugin { file: String, config_json: String },
    /// The built-in policy with these settings in place of `[cache]`'s.
    Builtin {
        default_ttl: Option<Option<Duration>>,
        list_ttl: Option<Duration>,
        /// A TTL table in place of `[cache.ttl]`'s.
        ttl: Option<TtlMap>,
    },
}

/// One candidate policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowCandidate {
    /// Unique among candidates; names it in `/admin/lab`, metrics and the report.
    pub name: String,
    pub policy: CandidatePolicy,
    pub config_rules: bool,
}

pub(super) fn lab(
    main: &SourceText,
    base_dir: &Path,
    raw: RawLab,
    cache: &CacheConfig,
    servers: &[ServerConfig],
    lookup: Lookup<'_>,
) -> Result<ShadowConfig, ConfigError> {
    let Some(raw) = raw.shadow else {
        return Ok(ShadowConfig::default());
    };
    let at = |field: &str| FieldPath::root().key("lab").key("shadow").key(field);
    let defaults = ShadowConfig::default();
    let dir = match raw.dir.as_deref() {
        None => None,
        Some(written) => {
            let value = expand_at(main, &at("dir"), written, lookup)?;
            if value.trim().is_empty() {
                return Err(main
                    .error(&at("dir"), "the candidates' directory is empty")
                    .with_help(
                        "write the directory that holds the candidate .wasm files, or remove `dir`",
                    ));
            }
            Some(base_dir.join(value))
        }
    };
    let queue = raw.queue.unwrap_or(defaults.queue);
    if !(1..=MAX_SHADOW_QUEUE).contains(&queue) {
        return Err(main
            .error(
                &at("queue"),
                format!("a queue of {queue} calls is out of range"),
            )
            .with_help(format!(
                "write between 1 and {MAX_SHADOW_QUEUE}; the default is {DEFAULT_SHADOW_QUEUE}"
            )));
    }
    let max_keys = raw.max_keys.unwrap_or(defaults.max_keys);
    if !(1..=MAX_SHADOW_MAX_KEYS).contains(&max_keys) {
        return Err(main
            .error(&at("max_keys"), format!("{max_keys} keys is out of range"))
            .with_help(format!(
                "write between 1 and {MAX_SHADOW_MAX_KEYS}; the default is {DEFAULT_SHADOW_MAX_KEYS}"
            )));
    }
    let rate = raw
        .truth_samples_per_second
        .unwrap_or(defaults.truth_samples_per_second);
    if !(rate.is_finite() && (0.0..=MAX_TRUTH_SAMPLES_PER_SECOND).contains(&rate)) {
        return Err(main
            .error(
                &at("truth_samples_per_second"),
                format!("{rate} truth samples per second is out of range"),
            )
            .with_help(format!(
                "write 0 (off, the default) up to {MAX_TRUTH_SAMPLES_PER_SECOND}; each sample is one extra backend call"
            )));
    }
    let in_flight = raw
        .truth_max_in_flight
        .unwrap_or(defaults.truth_max_in_flight);
    if !(1..=MAX_TRUTH_MAX_IN_FLIGHT).contains(&in_flight) {
        return Err(main
            .error(
                &at("truth_max_in_flight"),
                format!("{in_flight} samples at once is out of range"),
            )
            .with_help(format!(
                "write between 1 and {MAX_TRUTH_MAX_IN_FLIGHT}; the default is {DEFAULT_TRUTH_MAX_IN_FLIGHT}"
            )));
    }
    let truth_timeout = raw
        .truth_timeout
        .map_or(defaults.truth_timeout, Duration::from);
    if truth_timeout.is_zero() {
        return Err(main
            .error(&at("truth_timeout"), "truth_timeout must not be zero")
            .with_help("write how long a sample may take, such as \"10s\""));
    }
    let raw_candidates = raw.candidate.unwrap_or_default();
    if raw_candidates.len() > MAX_SHADOW_CANDIDATES {
        return Err(main
            .error(
                &at("candidate"),
                format!("{} candidates are more than the {MAX_SHADOW_CANDIDATES} a bridge evaluates", raw_candidates.len()),
            )
            .with_help("each candidate decides every call; compare the rest offline with `mcp-bridge bench policies`"));
    }
    if !raw_candidates.is_empty() && !cache.enabled {
        return Err(main
            .error(&at("candidate"), "[lab.shadow] candidates need the cache on")
            .with_help("set [cache] enabled = true: the shadow compares candidates with the production cache"));
    }
    let mut candidates: Vec<ShadowCandidate> = Vec::with_capacity(raw_candidates.len());
    for (index, raw) in raw_candidates.into_iter().enumerate() {
        let path = at("candidate").index(index);
        let candidate = candidate(main, &path, raw, dir.is_some(), servers)?;
        if candidates.iter().any(|other| other.name == candidate.name) {
            return Err(main
                .error(
                    &path.key("name"),
                    format!("candidate name `{}` is used twice", candidate.name),
                )
                .with_help("give each [[lab.shadow.candidate]] its own `name`"));
        }
        candidates.push(candidate);
    }
    Ok(ShadowConfig {
        dir,
        queue,
        max_keys,
        truth_samples_per_second: rate,
        truth_max_in_flight: in_flight,
        truth_timeout,
        candidates,
    })
}

fn candidate(
    main: &SourceText,
    path: &FieldPath,
    raw: RawCandidate,
    has_dir: bool,
    servers: &[ServerConfig],
) -> Result<ShadowCandidate, ConfigError> {
    let config_rules = raw.config_rules.unwrap_or(DEFAULT_CANDIDATE_CONFIG_RULES);
    let builtin_fields = raw.default_ttl.is_some() || raw.list_ttl.is_some() || raw.ttl.is_some();
    let (default_name, policy) = match raw.file {
        Some(file) => {
            if builtin_fields {
                return Err(main
                    .error(path, "a plugin candidate cannot set default_ttl, list_ttl or ttl")
                    .with_help("those set the built-in policy's candidate: remove `file`, or move the settings into the plugin's `config`"));
            }
            if !has_dir {
                return Err(main
                    .error(&path.key("file"), "a plugin candidate needs [lab.shadow] dir")
                    .with_help("add dir = \"candidates.d\" under [lab.shadow] and put the .wasm file there: a directory of its own, not [plugins] dir, so production never binds a candidate"));
            }
            super::plugins::check_file_name(main, &path.key("file"), &file)?;
            let config_json = super::plugins::config_json(main, &path.key("config"), raw.config)?;
            let name = file.trim_end_matches(".wasm").to_owned();
            (name, CandidatePolicy::Plugin { file, config_json })
        }
        None => {
            if raw.config.is_some() {
                return Err(main
                    .error(
                        &path.key("config"),
                        "`config` is a plugin's; this candidate has no `file`",
                    )
                    .with_help("add file = \"NAME.wasm\", or remove `config`"));
            }
            let names: Vec<&str> = servers.iter().map(|server| server.name.as_str()).collect();
            let ttl = raw
                .ttl
                .map(|table| super::validate::ttl_table(main, &path.key("ttl"), table, &names))
                .transpose()?;
            let policy = CandidatePolicy::Builtin {
                default_ttl: raw.default_ttl.map(|value| value.0),
                list_ttl: raw.list_ttl.map(Duration::from),
                ttl,
            };
            ("builtin".to_owned(), policy)
        }
    };
    let name = raw.name.unwrap_or(default_name);
    if RESERVED_SHADOW_ROW_NAMES.contains(&name.as_str()) {
        return Err(main
            .error(&path.key("name"), format!("`{name}` names one of the shadow's own rows"))
            .with_help("name the candidate something else: `production` is the live cache and `production-simulated` the production chain"));
    }
    if name.trim().is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(main
            .error(
                &path.key("name"),
                format!("`{name}` is not a candidate name"),
            )
            .with_help("write up to 64 letters, digits, `-`, `_` or `.`; it labels metrics"));
    }
    Ok(ShadowCandidate {
        name,
        policy,
        config_rules,
    })
}
