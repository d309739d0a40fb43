//! The TOML file's shape as serde reads it: every field optional, nothing checked beyond its type.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use super::secret::RawSecret;
use mcp_bridge_policy::units::{ConfigDuration, ConfigSize, ConfigTtl};

/// The whole TOML configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub include: Option<Vec<String>>,
    pub http: Option<RawHttp>,
    pub logging: Option<RawLogging>,
    pub defaults: Option<RawPool>,
    pub health: Option<RawHealth>,
    pub servers: Option<OrderedMap<RawServer>>,
    pub cache: Option<RawCache>,
    pub plugins: Option<RawPlugins>,
    pub auth: Option<RawAuth>,
    pub access: Option<RawAccess>,
    pub limits: Option<RawLimits>,
    pub audit: Option<RawAudit>,
    pub sessions: Option<super::sessions::RawSessions>,
    pub processes: Option<super::isolation::RawProcesses>,
    pub principal_secrets: Option<OrderedMap<OrderedMap<super::isolation::RawPrincipalSecret>>>,
    pub lab: Option<super::lab::RawLab>,
    pub telemetry: Option<super::telemetry::RawTelemetry>,
}

/// The top-level keys of the TOML file, used to explain a key that was written below a table
/// header by mistake (TOML puts every key after `[health]` inside `health`).
pub(crate) const TOP_LEVEL_KEYS: &[&str] = &[
    "include",
    "http",
    "logging",
    "defaults",
    "health",
    "servers",
    "cache",
    "plugins",
    "auth",
    "access",
    "limits",
    "audit",
    "sessions",
    "processes",
    "principal_secrets",
    "lab",
    "telemetry",
];

/// The `[auth]` table: who may call.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub token_principal: Option<String>,
    pub admin_roles: Option<Vec<String>>,
    pub metrics_principals: Option<Vec<String>>,
    pub jwt: Option<RawJwt>,
    pub api_keys: Option<Vec<RawApiKey>>,
}

/// The `[auth.jwt]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway: Option<ConfigDuration>,
    pub principal_claim: Option<String>,
    pub roles_claim: Option<String>,
    pub scopes_claim: Option<String>,
    pub required_scopes: Option<Vec<String>>,
    pub scopes_supported: Option<Vec<String>>,
    pub authorization_servers: Option<Vec<String>>,
    pub jwks_refresh_interval: Option<ConfigDuration>,
    pub jwks_max_age: Option<ConfigDuration>,
    pub jwks_fetch_timeout: Option<ConfigDuration>,
    pub jwks_ca_file: Option<String>,
    pub token_cache_entries: Option<usize>,
}

/// One `[[auth.api_keys]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKey {
    pub principal: Option<String>,
    pub roles: Option<Vec<String>>,
    pub key_sha256: Option<String>,
    pub key: Option<RawSecret>,
}

/// The `[access]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccess {
    pub rules: Option<Vec<RawAccessRule>>,
}

/// One `[[access.rules]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessRule {
    pub name: Option<String>,
    pub effect: Option<String>,
    pub principals: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub servers: Option<Vec<String>>,
    pub tools: Option<Vec<String>>,
    pub prompts: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
}

/// The `[limits]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub calls_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub max_in_flight: Option<usize>,
    pub count_cache_hits: Option<bool>,
    pub rules: Option<Vec<RawLimitRule>>,
}

/// One `[[limits.rules]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimitRule {
    pub name: Option<String>,
    pub principals: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub servers: Option<Vec<String>>,
    pub tools: Option<Vec<String>>,
    pub calls_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub max_in_flight: Option<usize>,
}

/// The `[audit]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub enabled: Option<bool>,
    pub file: Option<String>,
}

/// The `[plugins]` table: where policy plugins live and how they are sandboxed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlugins {
    pub dir: Option<String>,
    pub compiled_cache: Option<bool>,
    pub compiled_cache_dir: Option<String>,
    pub decision_timeout: Option<ConfigDuration>,
    pub max_memory: Option<ConfigSize>,
    pub max_idle_instances: Option<usize>,
    pub quarantine_after: Option<u32>,
    pub quarantine_window: Option<ConfigDuration>,
    pub auto_bind: Option<bool>,
    pub watch_debounce: Option<ConfigDuration>,
    pub policy: Option<Vec<RawPluginBinding>>,
}

/// One `[[plugins.policy]]` entry: a plugin file applied to some servers with its config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPluginBinding {
    pub name: Option<String>,
    pub file: Option<String>,
    pub servers: Option<Vec<String>>,
    pub config: Option<toml::Table>,
}

/// The `[http]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub listen: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
    pub auth_token: Option<RawSecret>,
    pub admin_token: Option<RawSecret>,
    pub max_body_bytes: Option<ConfigSize>,
    pub namespace_separator: Option<String>,
    pub shutdown_grace: Option<ConfigDuration>,
    pub session_idle_timeout: Option<ConfigDuration>,
    pub max_batch_messages: Option<usize>,
    pub batch_concurrency: Option<usize>,
    pub max_sessions: Option<usize>,
    pub max_sessions_per_principal: Option<usize>,
    pub max_inflight_per_session: Option<usize>,
    pub version_mismatch: Option<String>,
    pub header_read_timeout: Option<ConfigDuration>,
    pub keep_alive_timeout: Option<ConfigDuration>,
    pub body_read_timeout: Option<ConfigDuration>,
    pub body_min_rate: Option<ConfigSize>,
    pub max_client_connections: Option<usize>,
}

/// The `[logging]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogging {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// The `[health]` table, and a server's `[servers.NAME.health]` override of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub check_interval: Option<ConfigDuration>,
    pub check_timeout: Option<ConfigDuration>,
    pub unhealthy_threshold: Option<u32>,
    pub timeout_threshold: Option<u32>,
    pub stall_timeout: Option<ConfigDuration>,
    pub degraded_latency_ms: Option<u64>,
    pub degraded_success_rate: Option<f64>,
}

impl RawHealth {
    /// Takes each field from `self` when set there, else from `fallback`.
    pub(crate) fn or(self, fallback: Self) -> Self {
        Self {
            check_interval: self.check_interval.or(fallback.check_interval),
            check_timeout: self.check_timeout.or(fallback.check_timeout),
            unhealthy_threshold: self.unhealthy_threshold.or(fallback.unhealthy_threshold),
            timeout_threshold: self.timeout_threshold.or(fallback.timeout_threshold),
            stall_timeout: self.stall_timeout.or(fallback.stall_timeout),
            degraded_latency_ms: self.degraded_latency_ms.or(fallback.degraded_latency_ms),
            degraded_success_rate: self
                .degraded_success_rate
                .or(fallback.degraded_success_rate),
        }
    }
}

/// The `[cache]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub enabled: Option<bool>,
    pub backend: Option<String>,
    /// The disk backend's file (`backend = "disk"`).
    pub path: Option<String>,
    /// The seed's spelling of `eviction` and `default_ttl`: `LRU`, `LFU`, `TTL` or `MANUAL`.
    pub strategy: Option<String>,
    pub max_entries: Option<u64>,
    pub max_bytes: Option<ConfigSize>,
    pub default_ttl: Option<ConfigTtl>,
    pub eviction: Option<String>,
    pub list_ttl: Option<ConfigDuration>,
    pub max_coalesced_waiters: Option<usize>,
    pub hit_for_miss_ttl: Option<ConfigDuration>,
    pub stale_while_revalidate: Option<ConfigDuration>,
    pub stale_if_error: Option<ConfigDuration>,
    /// `[cache.ttl.SERVER]` tables (or `[cache.ttl."*"]`) of `TOOL = duration`.
    pub ttl: Option<OrderedMap<OrderedMap<ConfigDuration>>>,
    /// `[[cache.invalidate]]` rules.
    pub invalidate: Option<Vec<RawInvalidation>>,
    /// `[cache.shared]`: the Redis tier several replicas share.
    pub shared: Option<RawSharedCache>,
}

/// The `[cache.shared]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSharedCache {
    pub url: Option<RawSecret>,
    pub password: Option<RawSecret>,
    pub ca_file: Option<String>,
    pub consistency: Option<String>,
    pub key_prefix: Option<String>,
    pub connect_timeout: Option<ConfigDuration>,
    pub command_timeout: Option<ConfigDuration>,
    pub health_check_interval: Option<ConfigDuration>,
    pub max_value_bytes: Option<ConfigSize>,
    pub max_pending_invalidations: Option<usize>,
    pub max_pending_writes: Option<usize>,
    pub generation_retention: Option<ConfigDuration>,
    pub required_for_readiness: Option<bool>,
}

/// One `[[cache.invalidate]]` rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInvalidation {
    pub server: Option<String>,
    pub on: Option<String>,
    pub tools: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// Declares a struct that carries every pool setting besides its own fields.
///
/// Pool settings may be written both in `[defaults]` and directly in a server's table, and
/// `deny_unknown_fields` rules out `#[serde(flatten)]`, so both structs must list the same
/// seventeen fields. Generating them from one list keeps the two from drifting apart.
macro_rules! with_pool_fields {
    (
        $(#[$attr:meta])*
        pub(crate) struct $name:ident { $($(#[$field_attr:meta])* pub $field:ident: $ty:ty,)* }
    ) => {
        $(#[$attr])*
        pub(crate) struct $name {
            $($(#[$field_attr])* pub $field: $ty,)*
            pub min_connections: Option<usize>,
            pub max_connections: Option<usize>,
            pub max_inflight: Option<usize>,
            pub max_queue: Option<usize>,
            pub connection_timeout: Option<ConfigDuration>,
            pub request_timeout: Option<ConfigDuration>,
            pub acquire_timeout: Option<ConfigDuration>,
            pub idle_timeout: Option<ConfigDuration>,
            pub max_lifetime: Option<ConfigDuration>,
            pub health_check_interval: Option<ConfigDuration>,
            pub enable_health_checks: Option<bool>,
            pub enable_auto_reconnect: Option<bool>,
            pub max_reconnect_attempts: Option<u32>,
            pub reconnect_backoff_initial: Option<ConfigDuration>,
            pub reconnect_backoff_max: Option<ConfigDuration>,
            pub unhealthy_retry_interval: Option<ConfigDuration>,
            pub max_process_memory: Option<ConfigSize>,
        }

        /// The pool settings written in a table, without the table's other fields. It is a trait
        /// impl rather than a method so that the copy generated for `RawPool` itself is not
        /// reported as unused.
        impl From<&$name> for RawPool {
            fn from(table: &$name) -> RawPool {
                RawPool {
                    min_connections: table.min_connections,
                    max_connections: table.max_connections,
                    max_inflight: table.max_inflight,
                    max_queue: table.max_queue,
                    connection_timeout: table.connection_timeout,
                    request_timeout: table.request_timeout,
                    acquire_timeout: table.acquire_timeout,
                    idle_timeout: table.idle_timeout,
                    max_lifetime: table.max_lifetime,
                    health_check_interval: table.health_check_interval,
                    enable_health_checks: table.enable_health_checks,
                    enable_auto_reconnect: table.enable_auto_reconnect,
                    max_reconnect_attempts: table.max_reconnect_attempts,
                    reconnect_backoff_initial: table.reconnect_backoff_initial,
                    reconnect_backoff_max: table.reconnect_backoff_max,
                    unhealthy_retry_interval: table.unhealthy_retry_interval,
                    max_process_memory: table.max_process_memory,
                }
            }
        }
    };
}

with_pool_fields! {
    /// The `[defaults]` table: pool settings applied to every server unless it overrides them.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawPool {}
}

with_pool_fields! {
    /// One `[servers.NAME]` table. JSON `mcpServers` entries are converted to this shape too,
    /// with only the process fields set.
    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawServer {
        pub command: Option<String>,
        pub args: Option<Vec<String>>,
        pub env: Option<OrderedMap<RawSecret>>,
        pub cwd: Option<String>,
        pub required: Option<bool>,
        pub exclusive: Option<bool>,
        pub max_line_bytes: Option<ConfigSize>,
        /// `cache = false` keeps this server's results out of the cache.
        pub cache: Option<bool>,
        pub health: Option<RawHealth>,
        pub isolation: Option<String>,
        pub max_total_processes: Option<usize>,
        pub identity_meta: Option<bool>,
    }
}

/// A table whose entries keep the order the deserializer hands them over in, and whose
/// duplicate keys are an error rather than a silent overwrite (JSON allows duplicates).
///
/// serde_json hands keys over in file order; the TOML parser hands them over sorted, so TOML
/// servers are put back in file order by their positions (see `load`), while TOML `env` tables
/// stay sorted, which no process can tell apart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedMapVisitor(PhantomData))
    }
}

struct OrderedMapVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedMapVisitor<V> {
    type Value = OrderedMap<V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(String, V)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(OrderedMap(entries))
    }
}

/// Advice for a value of the wrong type or form, chosen by the field's name.
pub(crate) fn field_help(field: &str) -> Option<&'static str> {
    const DURATION: &str =
        "write a duration such as \"30s\", \"5m\", \"250ms\" or \"1h 30m\", or a number of seconds";
    const SIZE: &str =
        "write a number of bytes, or a string such as \"512KiB\", \"4MiB\" or \"1MB\"";
    const COUNT: &str = "write a whole number that is zero or more, such as 4";
    const FLAG: &str = "write true or false, without quotes";
    const TEXT: &str = "write the value as a string in double quotes";
    Some(match field {
        "shutdown_grace"
        | "session_idle_timeout"
        | "header_read_timeout"
        | "keep_alive_timeout"
        | "body_read_timeout"
        | "connection_timeout"
        | "request_timeout"
        | "acquire_timeout"
        | "idle_timeout"
        | "max_lifetime"
        | "health_check_interval"
        | "reconnect_backoff_initial"
        | "reconnect_backoff_max"
        | "unhealthy_retry_interval"
        | "check_interval"
        | "check_timeout"
        | "stall_timeout"
        | "list_ttl"
        | "hit_for_miss_ttl"
        | "stale_while_revalidate"
        | "stale_if_error"
        | "max_age" => DURATION,
        "default_ttl" => {
            "write a duration such as \"60s\" or \"5m\", a number of seconds, or \"none\" for entries that live until they are evicted or invalidated"
        }
        "max_body_bytes" | "max_line_bytes" | "max_bytes" => SIZE,
        "max_process_memory" => {
            "write a size such as \"512MiB\" (the resident memory past which a process is replaced), or 0 for no limit"
        }
        "body_min_rate" => {
            "write a number of bytes per second, or a string such as \"1KiB\"; 0 turns the minimum rate off"
        }
        "min_connections"
        | "max_connections"
        | "max_client_connections"
        | "max_inflight"
        | "max_queue"
        | "max_reconnect_attempts"
        | "unhealthy_threshold"
        | "timeout_threshold"
        | "degraded_latency_ms"
        | "max_entries"
        | "max_coalesced_waiters"
        | "max_batch_messages"
        | "batch_concurrency"
        | "max_sessions"
        | "max_sessions_per_principal"
        | "max_total_processes"
        | "max_total"
        | "max_inflight_per_session" => COUNT,
        "required"
        | "exclusive"
        | "identity_meta"
        | "enable_health_checks"
        | "enable_auto_reconnect"
        | "enabled"
        | "disabled" => FLAG,
        "degraded_success_rate" => "write a fraction between 0 and 1, such as 0.95",
        "listen" => "write an address and port in quotes, such as \"127.0.0.1:8080\"",
        "allowed_origins" => {
            "write a list of origins, such as [\"http://localhost:*\", \"https://app.example.com\"]"
        }
        "servers" => "declare each server as its own [servers.NAME] table",
        "include" => "write a list of file paths, such as [\"./claude_desktop_config.json\"]",
        "args" => {
            "write a list of strings, such as [\"-y\", \"@modelcontextprotocol/server-memory\"]"
        }
        "env" => "write a table of strings, such as { API_KEY = \"${API_KEY}\" }",
        "command"
        | "cwd"
        | "auth_token"
        | "admin_token"
        | "namespace_separator"
        | "version_mismatch"
        | "format"
        | "level"
        | "type"
        | "on"
        | "server" => TEXT,
        "backend" => "write \"memory\" or \"disk\"",
        "eviction" => "write \"tinylfu\" or \"lru\"",
        "strategy" => "write \"LRU\", \"LFU\", \"TTL\" or \"MANUAL\"",
        "tools" => "write a list of tool names, such as [\"get_tasks\", \"get_today_metrics\"]",
        "tags" => "write a list of tag names, such as [\"tasks\"]",
        "cache" => {
            "write `cache = false` in a [servers.NAME] table to keep that server out of the cache; the cache's own settings go in a [cache] table"
        }
        "ttl" => {
            "write a [cache.ttl.SERVER] table (or [cache.ttl.\"*\"] for any server) of TOOL = duration"
        }
        "invalidate" => {
            "write each rule as its own [[cache.invalidate]] table with `on` and `tools` or `tags`"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_keep_every_pool_field() {
        let server: RawServer =
            toml::from_str("command = \"x\"\nmax_queue = 7\nmax_lifetime = 0").unwrap_or_default();
        let pool = RawPool::from(&server);
        assert_eq!(pool.max_queue, Some(7));
        assert!(pool.max_lifetime.is_some());
    }

    #[test]
    fn ordered_map_keeps_order_and_rejects_duplicates() {
        let map: Result<OrderedMap<u32>, _> = serde_json::from_str(r#"{"b": 1, "a": 2}"#);
        let keys: Vec<String> = map
            .map(|m| m.0.into_iter().map(|(k, _)| k).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["b", "a"]);
        let map: Result<OrderedMap<u32>, _> = serde_json::from_str(r#"{"a": 1, "a": 2}"#);
        assert!(
            map.err()
                .is_some_and(|e| e.to_string().contains("duplicate key `a`"))
        );
    }
}
