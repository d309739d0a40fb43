//! Synthetic workloads: a named preset (TOML) describes a mix of read and write tools,
//! and a seeded generator turns it into calls with arrival times, arguments and the
//! result each read would get at that moment. The same preset and seed always give the
//! same calls, on every machine.
//!
//! The truth model: every tool reads or writes named tables. A read's result is a
//! function of its tool, its key and the versions of the tables it reads; each write
//! bumps the versions of the tables it writes, so it changes what those reads return.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::LabError;
use mcp_bridge_policy::units::ConfigDuration;
use mcp_bridge_trace::{
    Access, Fnv64, RecordedAnnotations, RecordedHints, RecordedStatus, TraceRecord, hex64,
};

/// The presets shipped in `config/workloads/`, embedded so `--workload NAME` works
/// from any directory.
pub const PRESETS: [(&str, &str); 3] = [
    (
        "seed-tasks",
        include_str!("../../../../config/workloads/seed-tasks.toml"),
    ),
    (
        "read-heavy",
        include_str!("../../../../config/workloads/read-heavy.toml"),
    ),
    (
        "write-storm",
        include_str!("../../../../config/workloads/write-storm.toml"),
    ),
];

/// A preset file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    name: String,
    #[serde(default)]
    description: String,
    server: String,
    calls: u64,
    rate: f64,
    #[serde(default)]
    seed: u64,
    #[serde(default = "one")]
    principals: u32,
    #[serde(default)]
    bursts: Option<RawBursts>,
    #[serde(default)]
    read: Vec<RawTool>,
    #[serde(default)]
    write: Vec<RawTool>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBursts {
    every: ConfigDuration,
    length: ConfigDuration,
    factor: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    tool: String,
    weight: f64,
    #[serde(default = "one")]
    keys: u32,
    #[serde(default)]
    key_offset: u64,
    #[serde(default = "default_zipf")]
    zipf: f64,
    #[serde(default)]
    arguments: Map<String, Value>,
    #[serde(default)]
    tables: Vec<String>,
    latency: ConfigDuration,
    #[serde(default = "default_jitter")]
    jitter: f64,
    #[serde(default = "default_bytes")]
    bytes: u64,
    #[serde(default)]
    annotations: Option<RecordedAnnotations>,
}

fn default_zipf() -> f64 {
    1.0
}

fn default_jitter() -> f64 {
    0.3
}

fn default_bytes() -> u64 {
    512
}

/// A checked workload preset.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    pub description: String,
    pub server: Arc<str>,
    /// How many calls a run generates.
    pub calls: u64,
    /// The mean arrival rate outside bursts, calls per second.
    pub rate: f64,
    pub seed: u64,
    /// Callers the reads are spread over; 1 means no principal.
    pub principals: u32,
    pub bursts: Option<Bursts>,
    tools: Vec<ToolSpec>,
    tables: usize,
    /// Where the preset came from, for messages.
    pub origin: String,
}

/// Periods when calls arrive `factor` times faster.
#[derive(Debug, Clone, Copy)]
pub struct Bursts {
    pub every: Duration,
    pub length: Duration,
    pub factor: f64,
}

#[derive(Debug, Clone)]
struct ToolSpec {
    tool: Arc<str>,
    write: bool,
    weight: f64,
    key_offset: u64,
    /// The cumulative Zipf distribution over the tool's keys.
    key_cdf: Vec<f64>,
    arguments: Map<String, Value>,
    tables: Vec<usize>,
    latency: Duration,
    jitter: f64,
    bytes: u64,
    annotations: RecordedAnnotations,
}

/// One generated call.
#[derive(Debug, Clone)]
pub struct PlannedCall {
    /// The call's sequence number, from 0.
    pub n: u64,
    /// When it arrives, from the start of the run.
    pub at: Duration,
    pub server: Arc<str>,
    pub tool: Arc<str>,
    pub arguments: Value,
    pub write: bool,
    /// The caller, 0 when the workload has a single one.
    pub principal: u32,
    /// What the result would be at that moment (a read's digest; 0 for a write).
    pub truth: u64,
    /// The backend latency and result size the model gives the call.
    pub latency: Duration,
    pub bytes: u64,
    pub annotations: RecordedAnnotations,
}

impl PlannedCall {
    /// The call as a trace line.
    pub fn to_record(&self) -> TraceRecord {
        let mut canonical = String::new();
        mcp_bridge_cache::canonical_json(&self.arguments, &mut canonical);
        TraceRecord {
            t_us: u64::try_from(self.at.as_micros()).unwrap_or(u64::MAX),
            server: self.server.to_string(),
            method: "tools/call".to_owned(),
            name: self.tool.to_string(),
            args: hex64(Fnv64::of(canonical.as_bytes())),
            arguments: Some(self.arguments.clone()),
            access: if self.write {
                Access::Write
            } else {
                Access::Read
            },
            annotations: self.annotations,
            latency_us: u64::try_from(self.latency.as_micros()).unwrap_or(u64::MAX),
            bytes: self.bytes,
            digest: hex64(self.truth),
            status: RecordedStatus::Ok,
            partition: if self.principal == 0 {
                String::new()
            } else {
                hex64(Fnv64::of(
                    format!("principal-{}", self.principal).as_bytes(),
                ))
            },
            hit: false,
            hints: RecordedHints::default(),
        }
    }
}

impl Workload {
    /// A shipped preset by name, or a preset file by path.
    pub fn resolve(name_or_path: &str) -> Result<Workload, LabError> {
        if let Some((name, text)) = PRESETS.iter().find(|(name, _)| *name == name_or_path) {
            return Workload::parse(
                text,
                &PathBuf::from(format!("config/workloads/{name}.toml")),
            );
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = PRESETS.iter().map(|(name, _)| *name).collect();
            return Err(LabError::Usage(format!(
                "no workload preset or file named {name_or_path:?}; the presets are {}, or give the path of a preset TOML file",
                names.join(", ")
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|source| LabError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Workload::parse(&text, path)
    }

    /// Parses and checks a preset. Errors name the file, line and field.
    pub fn parse(text: &str, path: &Path) -> Result<Workload, LabError> {
        let error = |message: String| LabError::Workload {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawWorkload = {
            let deserializer = toml::Deserializer::parse(text).map_err(|e| error(e.to_string()))?;
            serde_path_to_error::deserialize(deserializer).map_err(|e| {
                let field = e.path().to_string();
                let inner = e.into_inner();
                let line = inner
                    .span()
                    .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
                match line {
                    Some(line) => {
                        error(format!("line {line}, field `{field}`: {}", inner.message()))
                    }
                    None => error(format!("field `{field}`: {}", inner.message())),
                }
            })?
        };
        Workload::check(raw, path).map_err(error)
    }

    fn check(raw: RawWorkload, path: &Path) -> Result<Workload, String> {
        if !(raw.rate.is_finite() && raw.rate > 0.0) {
            return Err(format!(
                "`rate` must be a positive number of calls per second, found {}",
                raw.rate
            ));
        }
        if raw.calls == 0 {
            return Err("`calls` must be at least 1".to_owned());
        }
        if raw.principals == 0 {
            return Err("`principals` must be at least 1 (1 means no principal)".to_owned());
        }
        if raw.read.is_empty() && raw.write.is_empty() {
            return Err("a workload needs at least one [[read]] or [[write]] tool".to_owned());
        }
        let bursts = match raw.bursts {
            None => None,
            Some(bursts) => {
                if bursts.every.0.is_zero() || bursts.length.0 >= bursts.every.0 {
                    return Err("`bursts.length` must be shorter than `bursts.every`, and `every` above zero".to_owned());
                }
                if !(bursts.factor.is_finite() && bursts.factor >= 1.0) {
                    return Err(format!(
                        "`bursts.factor` must be 1 or more, found {}",
                        bursts.factor
                    ));
                }
                Some(Bursts {
                    every: bursts.every.0,
                    length: bursts.length.0,
                    factor: bursts.factor,
                })
            }
        };
        let mut table_names: Vec<String> = Vec::new();
        let mut tools = Vec::new();
        let sections = raw.read.into_iter().map(|tool| (false, tool));
        let sections = sections.chain(raw.write.into_iter().map(|tool| (true, tool)));
        for (index, (write, tool)) in sections.enumerate() {
            let section = if write { "write" } else { "read" };
            let field =
                |name: &str| format!("`{section}` tool {} ({}): `{name}`", index, tool.tool);
            if !(tool.weight.is_finite() && tool.weight > 0.0) {
                return Err(format!("{} must be a positive number", field("weight")));
            }
            if tool.keys == 0 {
                return Err(format!("{} must be at least 1", field("keys")));
            }
            if !(tool.zipf.is_finite() && tool.zipf >= 0.0) {
                return Err(format!("{} must be 0 (uniform) or more", field("zipf")));
            }
            if !(tool.jitter.is_finite() && tool.jitter >= 0.0) {
                return Err(format!("{} must be 0 or more", field("jitter")));
            }
            let tables = tool
                .tables
                .iter()
                .map(
                    |name| match table_names.iter().position(|known| known == name) {
                        Some(position) => position,
                        None => {
                            table_names.push(name.clone());
                            table_names.len() - 1
                        }
                    },
                )
                .collect();
            let annotations = tool.annotations.unwrap_or(RecordedAnnotations {
                read_only: Some(!write),
                ..RecordedAnnotations::default()
            });
            tools.push(ToolSpec {
                tool: Arc::from(tool.tool.as_str()),
                write,
                weight: tool.weight,
                key_offset: tool.key_offset,
                key_cdf: zipf_cdf(tool.keys, tool.zipf),
                arguments: tool.arguments,
                tables,
                latency: tool.latency.0,
                jitter: tool.jitter,
                bytes: tool.bytes,
                annotations,
            });
        }
        Ok(Workload {
            name: raw.name,
            description: raw.description,
            server: Arc::from(raw.server.as_str()),
            calls: raw.calls,
            rate: raw.rate,
            seed: raw.seed,
            principals: raw.principals,
            bursts,
            tools,
            tables: table_names.len(),
            origin: path.display().to_string(),
        })
    }

    /// The share of calls that write, from the weights.
    pub fn write_ratio(&self) -> f64 {
        let total: f64 = self.tools.iter().map(|tool| tool.weight).sum();
        let writes: f64 = self
            .tools
            .iter()
            .filter(|tool| tool.write)
            .map(|tool| tool.weight)
            .sum();
        writes / total
    }

    /// The calls of one run, generated lazily.
    pub fn calls(&self) -> Generator<'_> {
        let total: f64 = self.tools.iter().map(|tool| tool.weight).sum();
        let mut running = 0.0;
        let tool_cdf = self
            .tools
            .iter()
            .map(|tool| {
                running += tool.weight / total;
                running
            })
            .collect();
        Generator {
            workload: self,
            rng: SplitMix64::new(self.seed),
            clock: 0.0,
            n: 0,
            versions: vec![0; self.tables],
            tool_cdf,
            principal_cdf: zipf_cdf(self.principals, 1.0),
        }
    }
}

/// The cumulative distribution of a Zipf law with exponent `exponent` over `n` ranks
/// (0 gives the uniform distribution).
fn zipf_cdf(n: u32, exponent: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n)
        .map(|rank| 1.0 / f64::from(rank).powf(exponent))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut running = 0.0;
    weights
        .iter()
        .map(|weight| {
            running += weight / total;
            running
        })
        .collect()
}

/// The index a uniform draw `u` in [0, 1) falls on in a cumulative distribution.
fn pick(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|bound| *bound <= u)
        .min(cdf.len().saturating_sub(1))
}

/// SplitMix64: a small, fast generator whose sequence for a seed is fixed forever,
/// unlike a library's default generator, so a preset and seed reproduce exactly.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed ^ 0x6a09_e667_f3bc_c909)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform draw in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Generates a workload's calls in arrival order.
pub struct Generator<'a> {
    workload: &'a Workload,
    rng: SplitMix64,
    /// Virtual time in seconds.
    clock: f64,
    n: u64,
    versions: Vec<u64>,
    tool_cdf: Vec<f64>,
    principal_cdf: Vec<f64>,
}

impl Generator<'_> {
    fn in_burst(&self) -> bool {
        let Some(bursts) = self.workload.bursts else {
            return false;
        };
        self.clock % bursts.every.as_secs_f64() < bursts.length.as_secs_f64()
    }

    /// Poisson arrivals: exponential gaps at the current rate.
    fn advance_clock(&mut self) {
        let factor = match self.workload.bursts {
            Some(bursts) if self.in_burst() => bursts.factor,
            _ => 1.0,
        };
        let rate = self.workload.rate * factor;
        let u = self.rng.unit();
        self.clock += -(1.0 - u).ln() / rate;
    }

    fn arguments(&self, spec: &ToolSpec, key: u64) -> Value {
        let mut out = Map::new();
        for (name, value) in &spec.arguments {
            out.insert(name.clone(), substitute(value, key, self.n));
        }
        Value::Object(out)
    }

    fn read_digest(&self, spec: &ToolSpec, key: u64) -> u64 {
        let mut hasher = Fnv64::default();
        hasher.update(spec.tool.as_bytes());
        hasher.update(&key.to_le_bytes());
        for table in &spec.tables {
            hasher.update(&self.versions[*table].to_le_bytes());
        }
        hasher.finish()
    }
}

/// Fills a template value: the string `$key` becomes the key (a number), `$n` the call's
/// sequence number; `{key}` and `{n}` inside a longer string are replaced by them.
fn substitute(value: &Value, key: u64, n: u64) -> Value {
    match value {
        Value::String(text) if text == "$key" => Value::from(key),
        Value::String(text) if text == "$n" => Value::from(n),
        Value::String(text) if text.contains('{') => Value::String(
            text.replace("{key}", &key.to_string())
                .replace("{n}", &n.to_string()),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, value)| (name.clone(), substitute(value, key, n)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| substitute(item, key, n)).collect())
        }
        other => other.clone(),
    }
}

impl Iterator for Generator<'_> {
    type Item = PlannedCall;

    fn next(&mut self) -> Option<PlannedCall> {
        if self.n >= self.workload.calls {
            return None;
        }
        self.advance_clock();
        let spec = &self.workload.tools[pick(&self.tool_cdf, self.rng.unit())];
        let key = pick(&spec.key_cdf, self.rng.unit()) as u64 + spec.key_offset;
        let principal = if self.workload.principals > 1 {
            pick(&self.principal_cdf, self.rng.unit()) as u32 + 1
        } else {
            0
        };
        let jitter = (spec.jitter * self.rng.normal() - spec.jitter * spec.jitter / 2.0).exp();
        let latency = spec.latency.mul_f64(jitter);
        let arguments = self.arguments(spec, key);
        let truth = if spec.write {
            for table in &spec.tables {
                self.versions[*table] += 1;
            }
            0
        } else {
            self.read_digest(spec, key)
        };
        // Results vary a little in size from key to key, as real ones do.
        let bytes = spec.bytes + (Fnv64::of(&key.to_le_bytes()) % (spec.bytes / 4 + 1));
        let call = PlannedCall {
            n: self.n,
            at: Duration::from_secs_f64(self.clock),
            server: self.workload.server.clone(),
            tool: spec.tool.clone(),
            arguments,
            write: spec.write,
            principal,
            truth,
            latency,
            bytes,
            annotations: spec.annotations,
        };
        self.n += 1;
        Some(call)
    }
}

#[cfg(test)]
mod tests;
