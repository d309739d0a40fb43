//! Helpers for plugin configs: durations written the way the bridge config writes them,
//! and the `{ server: { tool: ttl } }` table with `*` wildcards that the bridge's
//! `[cache.ttl]` uses.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The wildcard in a [`TtlMap`]: any server, or any tool.
pub const ANY: &str = "*";

/// Parses a duration: humantime form (`"30s"`, `"5m"`, `"1h 30m"`, `"250ms"`) or a bare
/// number of seconds (`"30"`, `"0.5"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("a duration cannot be empty".to_owned());
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let seconds: f64 = trimmed
            .parse()
            .map_err(|_| format!("invalid duration `{trimmed}`"))?;
        return seconds_to_duration(seconds);
    }
    humantime::parse_duration(trimmed).map_err(|e| format!("invalid duration `{trimmed}`: {e}"))
}

fn seconds_to_duration(seconds: f64) -> Result<Duration, String> {
    if seconds < 0.0 {
        return Err(format!("a duration cannot be negative (got {seconds})"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{seconds} is not a usable duration"))
}

/// A duration in a config: a string [`parse_duration`] reads, or a number of seconds.
///
/// ```
/// # use mcp_bridge_plugin_sdk::config::ConfigDuration;
/// # use std::time::Duration;
/// let ttl: ConfigDuration = serde_json::from_str(r#""5m""#).unwrap();
/// assert_eq!(ttl.0, Duration::from_secs(300));
/// let ttl: ConfigDuration = serde_json::from_str("30").unwrap();
/// assert_eq!(Duration::from(ttl), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(pub Duration);

impl From<ConfigDuration> for Duration {
    fn from(duration: ConfigDuration) -> Duration {
        duration.0
    }
}

impl From<Duration> for ConfigDuration {
    fn from(duration: Duration) -> ConfigDuration {
        ConfigDuration(duration)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(DurationVisitor)
            .map(ConfigDuration)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30s\", \"5m\", \"250ms\" or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("a duration cannot be negative (got {v})")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        seconds_to_duration(v).map_err(E::custom)
    }
}

/// TTLs by server and tool, either of which may be the wildcard `*`. In a config it is
/// written `{ "<server or *>": { "<tool or *>": <duration> } }`.
///
/// [`TtlMap::lookup`] returns the most specific row: exact server and tool, then exact
/// server with `*`, then `*` with the exact tool, then `*` with `*`.
///
/// ```
/// # use mcp_bridge_plugin_sdk::config::TtlMap;
/// # use std::time::Duration;
/// let table: TtlMap = serde_json::from_str(
///     r#"{ "*": { "*": "1m" }, "demo": { "get_tasks": "30s", "create_task": 0 } }"#,
/// ).unwrap();
/// assert_eq!(table.lookup("demo", "get_tasks"), Some(Duration::from_secs(30)));
/// assert_eq!(table.lookup("demo", "create_task"), Some(Duration::ZERO));
/// assert_eq!(table.lookup("other", "anything"), Some(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TtlMap {
    servers: BTreeMap<String, BTreeMap<String, Duration>>,
}

impl TtlMap {
    /// An empty table: every lookup abstains.
    pub fn new() -> TtlMap {
        TtlMap::default()
    }

    /// Adds (or replaces) the row for `server` and `tool`, either of which may be `*`.
    pub fn insert(&mut self, server: impl Into<String>, tool: impl Into<String>, ttl: Duration) {
        self.servers
            .entry(server.into())
            .or_default()
            .insert(tool.into(), ttl);
    }

    /// [`TtlMap::insert`] as a builder.
    pub fn with(mut self, server: &str, tool: &str, ttl: Duration) -> TtlMap {
        self.insert(server, tool, ttl);
        self
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.servers.values().all(BTreeMap::is_empty)
    }

    /// The most specific row for `server` and `tool`, or `None` when no row applies.
    pub fn lookup(&self, server: &str, tool: &str) -> Option<Duration> {
        [(server, tool), (server, ANY), (ANY, tool), (ANY, ANY)]
            .into_iter()
            .find_map(|(server, tool)| self.servers.get(server)?.get(tool).copied())
    }
}

impl<'de> Deserialize<'de> for TtlMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rows = BTreeMap::<String, BTreeMap<String, ConfigDuration>>::deserialize(deserializer)?;
        let servers = rows
            .into_iter()
            .map(|(server, tools)| {
                let tools = tools.into_iter().map(|(tool, ttl)| (tool, ttl.0)).collect();
                (server, tools)
            })
            .collect();
        Ok(TtlMap { servers })
    }
}

/// Parses a plugin's config the way `lifecycle.init` does: empty text, `null` and `{}`
/// give `C::default()`; anything else must deserialize into `C`, and an error names the
/// field (`invalid config at `ttl.demo.get_tasks`: ...`).
pub fn parse<C>(text: &str) -> Result<C, String>
where
    C: serde::de::DeserializeOwned + Default,
{
    let text = text.trim();
    if text.is_empty() {
        return Ok(C::default());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the config is not valid JSON: {e}"))?;
    if value.is_null() || value.as_object().is_some_and(serde_json::Map::is_empty) {
        return Ok(C::default());
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let error = error.into_inner();
        if path == "." {
            format!("invalid config: {error}")
        } else {
            format!("invalid config at `{path}`: {error}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        name: String,
        ttl: TtlMap,
        every: Option<ConfigDuration>,
    }

    #[test]
    fn no_config_is_the_default() {
        for text in ["", "  ", "null", "{}", " { } "] {
            assert_eq!(parse::<Config>(text), Ok(Config::default()), "{text:?}");
        }
        // Even for configs `{}` would not deserialize into.
        assert_eq!(parse::<()>("{}"), Ok(()));
        assert_eq!(parse::<Vec<u8>>("{}"), Ok(Vec::new()));
    }

    #[test]
    fn errors_name_the_field() {
        let error = parse::<Config>(r#"{"name": 3}"#).unwrap_err();
        assert!(
            error.starts_with("invalid config at `name`: invalid type"),
            "{error}"
        );
        let error = parse::<Config>(r#"{"ttl": {"demo": {"get": "soonish"}}}"#).unwrap_err();
        assert!(
            error.contains("`ttl.demo.get`") && error.contains("soonish"),
            "{error}"
        );
        let error = parse::<Config>(r#"{"nmae": "x"}"#).unwrap_err();
        assert!(error.contains("unknown field `nmae`"), "{error}");
        let error = parse::<Config>("{not json").unwrap_err();
        assert!(error.starts_with("the config is not valid JSON"), "{error}");
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("30"), Ok(ms(30_000)));
        assert_eq!(parse_duration("0.5"), Ok(ms(500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        let every = |json: &str| parse::<Config>(&format!(r#"{{"every": {json}}}"#));
        assert_eq!(every("2").unwrap().every, Some(ConfigDuration(ms(2000))));
        assert_eq!(every("1.5").unwrap().every, Some(ConfigDuration(ms(1500))));
        assert_eq!(
            every(r#""1m""#).unwrap().every,
            Some(ConfigDuration(ms(60_000)))
        );
        assert!(every("-2").unwrap_err().contains("negative"));
        assert!(every("true").is_err());
    }

    #[test]
    fn ttl_map_precedence() {
        let s = Duration::from_secs;
        let table = TtlMap::new()
            .with("*", "*", s(1))
            .with("*", "get", s(2))
            .with("demo", "*", s(3))
            .with("demo", "get", s(4));
        assert_eq!(table.lookup("demo", "get"), Some(s(4)));
        assert_eq!(table.lookup("demo", "put"), Some(s(3)));
        assert_eq!(table.lookup("other", "get"), Some(s(2)));
        assert_eq!(table.lookup("other", "put"), Some(s(1)));
        let table = TtlMap::new().with("demo", "get", s(4));
        assert_eq!(table.lookup("other", "get"), None);
        assert!(!table.is_empty());
        assert!(TtlMap::new().is_empty());
        let empty_rows: TtlMap = serde_json::from_str(r#"{"demo": {}}"#).unwrap();
        assert!(empty_rows.is_empty());
    }
}
