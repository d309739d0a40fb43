//! The validated configuration the rest of the host runs on, and the named defaults it falls back to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use mcp_bridge_policy::{BuiltinPolicy, BuiltinSettings};
pub use mcp_bridge_policy::{InvalidationRule, TtlMap, TtlRule};

use super::auth::{AccessConfig, AuditConfig, AuthConfig, LimitsConfig};
use super::isolation::{EnvTemplate, Isolation, PrincipalSecrets, ProcessesConfig};
use super::lab::ShadowConfig;
use super::secret::Secret;
use super::sessions::SessionsConfig;
use super::shared::SharedCacheConfig;

/// The HTTP listen address: loopback only, because the bridge starts local processes on behalf
/// of its callers and must not be reachable from the network unless someone decides so.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// The `Origin` values accepted by default: pages served from this machine, on any port (an
/// entry without a port matches every port of its host).
pub const DEFAULT_ALLOWED_ORIGINS: &[&str] = &["http://localhost", "http://127.0.0.1"];
/// The largest request body the front reads, in bytes (4 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;
/// What joins a server's name and a tool's name on the aggregated endpoint (`memory__read_graph`).
pub const DEFAULT_NAMESPACE_SEPARATOR: &str = "__";
/// How long in-flight requests may take to finish after SIGTERM before the bridge exits anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long an HTTP MCP session may go unused before it is dropped.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The most JSON-RPC messages one batch may hold; a longer batch is refused before any runs.
pub const DEFAULT_MAX_BATCH_MESSAGES: usize = 100;
/// How many messages of one batch run at once; the rest wait their turn, in order.
pub const DEFAULT_BATCH_CONCURRENCY: usize = 8;
/// The most MCP sessions open at once; at the cap the least recently used idle session is
/// closed to make room, and without an idle one `initialize` is refused.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// The most sessions one principal (one person or machine) may hold open at once; at the cap
/// its least recently used idle session is closed first. Callers sharing a credential are a
/// crowd, bounded by `max_sessions` only.
pub const DEFAULT_MAX_SESSIONS_PER_PRINCIPAL: usize = 1_000;
/// The most calls one session may have in flight at once; its further calls wait behind its
/// own cap (for the server's `acquire_timeout`), never in front of other sessions.
pub const DEFAULT_MAX_INFLIGHT_PER_SESSION: usize = 16;
/// Requests whose protocol-version signals disagree are refused unless configured otherwise.
pub const DEFAULT_VERSION_MISMATCH: VersionMismatch = VersionMismatch::Strict;
/// How long a client may take to send a request's headers, from its connection (or the
/// request's first byte on a kept-alive connection) to the end of the head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a kept-alive connection may sit idle between requests before the bridge closes it;
/// advertised on every response as `Keep-Alive: timeout=N`.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The longest a request body may take to arrive, from the end of its headers.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The slowest a request body may arrive, in bytes per second over each window of
/// [`BODY_RATE_WINDOW`] (1 KiB/s); 0 turns the check off.
pub const DEFAULT_BODY_MIN_RATE: usize = 1024;
/// The window the minimum body rate is judged over.
pub const BODY_RATE_WINDOW: Duration = Duration::from_secs(5);
/// Client connections served at once; the bridge answers more with 503 and closes them.
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 1024;
/// The most `max_client_connections` may be: far above what one process serves, and small
/// enough to count in a semaphore.
pub const MAX_CLIENT_CONNECTIONS_LIMIT: usize = 1_000_000;
/// The tracing `EnvFilter` directive used when none is configured.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Processes kept warm per server, even when idle.
pub const DEFAULT_MIN_CONNECTIONS: usize = 1;
/// The most processes started for one server.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;
/// Requests multiplexed at once on one process (by JSON-RPC id).
pub const DEFAULT_MAX_INFLIGHT: usize = 32;
/// Requests allowed to wait when every process is at `max_inflight`.
pub const DEFAULT_MAX_QUEUE: usize = 256;
/// The deadline for spawning a process and completing its `initialize` handshake.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The deadline for one request to a server.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a request waits in the queue for a process.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a process above `min_connections` may stay idle before it is stopped.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a process may live before it is replaced, which bounds slow leaks in servers.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// The smallest `max_process_memory`: below it a process could not even start.
pub const MIN_MAX_PROCESS_MEMORY: u64 = 1 << 20;
/// Whether the pool pings idle processes and replaces the ones that fail.
pub const DEFAULT_ENABLE_HEALTH_CHECKS: bool = true;
/// Whether a crashed process is respawned automatically.
pub const DEFAULT_ENABLE_AUTO_RECONNECT: bool = true;
/// Respawn attempts with exponential backoff before falling back to the slow retry interval.
pub const DEFAULT_MAX_RECONNECT_ATTEMPTS: u32 = 5;
/// The first respawn delay; it doubles after each failure.
pub const DEFAULT_RECONNECT_BACKOFF_INITIAL: Duration = Duration::from_millis(200);
/// The longest respawn delay.
pub const DEFAULT_RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The respawn rate once `max_reconnect_attempts` is used up, so a server that comes back
/// (a fixed dependency, a network that returns) is picked up without a restart.
pub const DEFAULT_UNHEALTHY_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// The largest line a server may write on stdout (16 MiB); longer lines fail that one message.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;
/// Whether `/readyz` waits for a server.
pub const DEFAULT_REQUIRED: bool = true;
/// Whether a server's processes take one client call at a time.
pub const DEFAULT_EXCLUSIVE: bool = false;

/// How often each process is health-checked.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// The deadline for one health check.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive failed checks after which a process counts as unhealthy.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Consecutive request timeouts after which a process takes no new calls and is probed.
pub const DEFAULT_TIMEOUT_THRESHOLD: u32 = 3;
/// Average latency above which a server is reported degraded, in milliseconds.
pub const DEFAULT_DEGRADED_LATENCY_MS: u64 = 500;
/// Success rate below which a server is reported degraded.
pub const DEFAULT_DEGRADED_SUCCESS_RATE: f64 = 0.95;

/// Whether the read-through cache is on.
pub const DEFAULT_CACHE_ENABLED: bool = true;
/// Where cached results are kept.
pub const DEFAULT_CACHE_BACKEND: CacheBackend = CacheBackend::Memory;
/// The most results the cache holds at once.
pub const DEFAULT_CACHE_MAX_ENTRIES: u64 = 10_000;
/// The most bytes of results the cache holds at once (64 MiB).
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 << 20;
/// The smallest `max_bytes` accepted (1 KiB): less could not hold even one typical result.
pub const MIN_CACHE_MAX_BYTES: u64 = 1 << 10;
/// How long a cacheable result is kept when neither the TTL table nor the server says otherwise.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Which entry the cache drops first when it is full.
pub const DEFAULT_CACHE_EVICTION: Eviction = Eviction::TinyLfu;
/// How long list results (`tools/list` and the like) are kept when no `list_changed` arrives.
pub const DEFAULT_CACHE_LIST_TTL: Duration = Duration::from_secs(5 * 60);
/// How many callers may wait on one in-flight fill of a key before more go to the backend.
pub const DEFAULT_CACHE_MAX_COALESCED_WAITERS: usize = 64;
/// How long a key found uncacheable bypasses the single-flight queue.
pub const DEFAULT_CACHE_HIT_FOR_MISS_TTL: Duration = Duration::from_secs(5);
/// Off: an expired entry is not served while it is refreshed.
pub const DEFAULT_CACHE_STALE_WHILE_REVALIDATE: Duration = Duration::ZERO;
/// Off: an expired entry is not served when the backend fails.
pub const DEFAULT_CACHE_STALE_IF_ERROR: Duration = Duration::ZERO;
/// Whether a server's results may be cached, when its table does not say.
pub const DEFAULT_SERVER_CACHE: bool = true;

/// A loaded and validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    /// Where it came from: the file path as given, or `<embedded default>`.
    pub source: String,
    pub http: HttpConfig,
    pub logging: LoggingConfig,
    /// The servers in file order (the TOML file's own, then each included file's); names are
    /// unique.
    pub servers: Vec<ServerConfig>,
    pub cache: CacheConfig,
    pub plugins: PluginsConfig,
    pub auth: AuthConfig,
    pub access: AccessConfig,
    pub limits: LimitsConfig,
    pub audit: AuditConfig,
    /// `[sessions]`: the keys that sign session tokens, and their lifetime.
    pub sessions: SessionsConfig,
    /// `[telemetry]`: OpenTelemetry traces over OTLP (off without an endpoint; restart-only).
    pub telemetry: super::telemetry::TelemetryConfig,
    /// `[processes]`: the cap on every backend process together.
    pub processes: ProcessesConfig,
    /// `[principal_secrets]`: per-principal values for isolated servers' `env` templates.
    pub principal_secrets: std::sync::Arc<PrincipalSecrets>,
    /// `[lab.shadow]`: candidate policies evaluated on live traffic.
    pub shadow: ShadowConfig,
}

/// How long one plugin call may run before it is interrupted and counted as a fault. It is
/// wall time: generous enough that a busy machine preempting a warm decision (about a
/// microsecond of work) does not look like a runaway plugin.
pub const DEFAULT_PLUGIN_DECISION_TIMEOUT: Duration = Duration::from_millis(50);
/// The linear memory one plugin instance may grow to (32 MiB).
pub const DEFAULT_PLUGIN_MAX_MEMORY: usize = 32 << 20;
/// Warm instances kept per plugin binding between calls.
pub const DEFAULT_PLUGIN_MAX_IDLE_INSTANCES: usize = 4;
/// Faults within [`DEFAULT_PLUGIN_QUARANTINE_WINDOW`] that quarantine a plugin version.
pub const DEFAULT_PLUGIN_QUARANTINE_AFTER: u32 = 5;
pub const DEFAULT_PLUGIN_QUARANTINE_WINDOW: Duration = Duration::from_secs(60);
/// Whether a plugin file no `[[plugins.policy]]` names applies to every server.
pub const DEFAULT_PLUGIN_AUTO_BIND: bool = true;
/// How long the plugin directory must be quiet after a change before it is rescanned.
pub const DEFAULT_PLUGIN_WATCH_DEBOUNCE: Duration = Duration::from_millis(50);
/// Whether compiled plugins are kept on disk so a restart does not recompile them.
pub const DEFAULT_PLUGIN_COMPILED_CACHE: bool = true;
/// The shortest decision timeout: the epoch ticker's resolution is one millisecond.
pub const MIN_PLUGIN_DECISION_TIMEOUT: Duration = Duration::from_millis(1);
/// The smallest memory limit a Rust plugin can start in (1 MiB stack plus a heap).
pub const MIN_PLUGIN_MAX_MEMORY: usize = 2 << 20;

/// The `[plugins]` settings: policy plugins, their sandbox and where they apply.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginsConfig {
    /// The watched directory of `.wasm` files, resolved against the config file's
    /// directory; `None` loads no plugins.
    pub dir: Option<PathBuf>,
    /// Where compiled plugins are kept; `None` compiles every load.
    pub compiled_cache_dir: Option<PathBuf>,
    pub decision_timeout: Duration,
    pub max_memory: usize,
    pub max_idle_instances: usize,
    pub quarantine_after: u32,
    pub quarantine_window: Duration,
    pub auto_bind: bool,
    pub watch_debounce: Duration,
    /// In chain order: the first non-abstaining decision wins.
    pub bindings: Vec<PluginBinding>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            compiled_cache_dir: None,
            decision_timeout: DEFAULT_PLUGIN_DECISION_TIMEOUT,
            max_memory: DEFAULT_PLUGIN_MAX_MEMORY,
            max_idle_instances: DEFAULT_PLUGIN_MAX_IDLE_INSTANCES,
            quarantine_after: DEFAULT_PLUGIN_QUARANTINE_AFTER,
            quarantine_window: DEFAULT_PLUGIN_QUARANTINE_WINDOW,
            auto_bind: DEFAULT_PLUGIN_AUTO_BIND,
            watch_debounce: DEFAULT_PLUGIN_WATCH_DEBOUNCE,
            bindings: Vec::new(),
        }
    }
}

/// One plugin file applied to some servers, with the config its `init` receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginBinding {
    /// Unique; names the binding in logs, metrics and the admin API.
    pub name: String,
    /// A file name inside [`PluginsConfig::dir`].
    pub file: String,
    /// The servers it applies to; empty means every server.
    pub servers: Vec<String>,
    /// The binding's `config` table as JSON text (`{}` when there is none).
    pub config_json: String,
}

impl PluginBinding {
    /// Whether the binding applies to calls on `server`.
    pub fn applies_to(&self, server: &str) -> bool {
        self.servers.is_empty() || self.servers.iter().any(|name| name == server)
    }
}

/// The `[http]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The `Origin` header allow-list, stored exactly as written; the front does the matching.
    /// Each entry is `*` (any origin), an origin with a port (`http://localhost:3000`, that port
    /// only), an origin without a port (`http://localhost`, any port on that host), or an origin
    /// with `:*` as its port (`http://localhost:*`, the explicit spelling of any port).
    pub allowed_origins: Vec<String>,
    /// The bearer token required on `/mcp` endpoints, when set.
    pub auth_token: Option<Secret>,
    /// The bearer token required on `/admin/*` endpoints, when set.
    pub admin_token: Option<Secret>,
    pub max_body_bytes: usize,
    pub namespace_separator: String,
    pub shutdown_grace: Duration,
    pub session_idle_timeout: Duration,
    pub max_batch_messages: usize,
    pub batch_concurrency: usize,
    pub max_sessions: usize,
    /// Sessions one principal may hold at once (`max_sessions_per_principal`).
    pub max_sessions_per_principal: usize,
    pub max_inflight_per_session: usize,
    /// What the front does with a request whose version signals (session, header, body
    /// `_meta`) disagree in one of the ways real clients are known to.
    pub version_mismatch: VersionMismatch,
    /// The deadline for a request's headers; it does not apply to a connection idle between
    /// requests, which `keep_alive_timeout` governs.
    pub header_read_timeout: Duration,
    /// How long a connection may be idle after a response before it is closed; whole seconds.
    pub keep_alive_timeout: Duration,
    pub body_read_timeout: Duration,
    /// Bytes per second a body must keep up over each [`BODY_RATE_WINDOW`]; 0 means no minimum.
    pub body_min_rate: usize,
    pub max_client_connections: usize,
}

/// How the front treats known mixes of protocol-version signals from real clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VersionMismatch {
    /// Refuse them, saying what disagreed and what to send.
    #[default]
    Strict,
    /// Serve them under a fixed precedence (session, then body, then header) and count
    /// each in `mcp_bridge_version_mismatch_total`.
    Lenient,
}

impl VersionMismatch {
    /// Every mode, in the order the help text lists them.
    pub const ALL: [VersionMismatch; 2] = [VersionMismatch::Strict, VersionMismatch::Lenient];

    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Lenient => "lenient",
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            allowed_origins: DEFAULT_ALLOWED_ORIGINS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            auth_token: None,
            admin_token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            namespace_separator: DEFAULT_NAMESPACE_SEPARATOR.to_owned(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
            max_batch_messages: DEFAULT_MAX_BATCH_MESSAGES,
            batch_concurrency: DEFAULT_BATCH_CONCURRENCY,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_principal: DEFAULT_MAX_SESSIONS_PER_PRINCIPAL,
            max_inflight_per_session: DEFAULT_MAX_INFLIGHT_PER_SESSION,
            version_mismatch: DEFAULT_VERSION_MISMATCH,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            body_min_rate: DEFAULT_BODY_MIN_RATE,
            max_client_connections: DEFAULT_MAX_CLIENT_CONNECTIONS,
        }
    }
}

/// The log output's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Json => "json",
        }
    }
}

/// The `[logging]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive such as `info` or `mcp_bridge=debug,info`; it has been
    /// checked to parse.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: DEFAULT_LOG_LEVEL.to_owned(),
        }
    }
}

/// One pooled stdio server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Letters, digits, `_` and `-`; never contains the namespace separator.
    pub name: String,
    /// The program to run, with `${VAR}` references expanded.
    pub command: String,
    /// The arguments, with `${VAR}` references expanded.
    pub args: Vec<String>,
    /// The arguments as written, with `${VAR}` references kept, for display.
    pub args_display: Vec<String>,
    /// Extra environment variables for the process, values expanded; only keys may be shown.
    pub env: Vec<(String, Secret)>,
    /// Variables whose values name the caller (`${principal.name}`, `${secret.NAME}`),
    /// rendered when a principal's or session's process is spawned (isolated servers only).
    pub env_templates: Vec<(String, EnvTemplate)>,
    /// Variables of the bridge's environment the process never inherits: the sources of
    /// `[principal_secrets]` values, which belong to one principal each.
    pub env_removed: Vec<String>,
    /// Who shares this server's processes.
    pub isolation: Isolation,
    /// This server's processes across all principals and sessions.
    pub max_total_processes: usize,
    /// Whether requests name the caller to the backend in `_meta` (`dev.mcp-bridge/caller`).
    pub identity_meta: bool,
    /// The working directory, expanded; a relative path was resolved against the directory of
    /// the file that declared the server.
    pub cwd: Option<PathBuf>,
    pub required: bool,
    pub exclusive: bool,
    pub max_line_bytes: usize,
    /// Whether this server's results may be cached (`cache = false` in its table turns that
    /// off); the `[cache]` section's `enabled` still applies on top of it.
    pub cache_enabled: bool,
    pub pool: PoolConfig,
    pub health: HealthConfig,
}

/// How a server's processes are pooled.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub min_connections: usize,
    pub max_connections: usize,
    /// Always 1 when the server is `exclusive`.
    pub max_inflight: usize,
    pub max_queue: usize,
    pub connection_timeout: Duration,
    pub request_timeout: Duration,
    pub acquire_timeout: Duration,
    pub idle_timeout: Duration,
    /// `None` means processes are never replaced for age (written as `0`).
    pub max_lifetime: Option<Duration>,
    /// Defaults to the server's `health.check_interval`.
    pub health_check_interval: Duration,
    pub enable_health_checks: bool,
    pub enable_auto_reconnect: bool,
    pub max_reconnect_attempts: u32,
    pub reconnect_backoff_initial: Duration,
    pub reconnect_backoff_max: Duration,
    pub unhealthy_retry_interval: Duration,
    /// A process whose resident memory passes this many bytes is drained and replaced, as
    /// after `max_lifetime`; `None` (written as `0`, the default) never recycles for memory.
    pub max_process_memory: Option<u64>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            min_connections: DEFAULT_MIN_CONNECTIONS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            max_queue: DEFAULT_MAX_QUEUE,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            health_check_interval: DEFAULT_CHECK_INTERVAL,
            enable_health_checks: DEFAULT_ENABLE_HEALTH_CHECKS,
            enable_auto_reconnect: DEFAULT_ENABLE_AUTO_RECONNECT,
            max_reconnect_attempts: DEFAULT_MAX_RECONNECT_ATTEMPTS,
            reconnect_backoff_initial: DEFAULT_RECONNECT_BACKOFF_INITIAL,
            reconnect_backoff_max: DEFAULT_RECONNECT_BACKOFF_MAX,
            unhealthy_retry_interval: DEFAULT_UNHEALTHY_RETRY_INTERVAL,
            max_process_memory: None,
        }
    }
}

/// When a server counts as healthy, degraded or unhealthy.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub check_interval: Duration,
    pub check_timeout: Duration,
    pub unhealthy_threshold: u32,
    /// Consecutive request timeouts on one process after which it takes no new calls and
    /// is probed with a ping (replaced if the ping is not answered). At least 1.
    pub timeout_threshold: u32,
    /// How long a process may write nothing on stdout while calls are pending before it
    /// takes no new calls and is probed. `None` means the server's `request_timeout`.
    pub stall_timeout: Option<Duration>,
    pub degraded_latency_ms: u64,
    /// In `[0, 1]`.
    pub degraded_success_rate: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval: DEFAULT_CHECK_INTERVAL,
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            timeout_threshold: DEFAULT_TIMEOUT_THRESHOLD,
            stall_timeout: None,
            degraded_latency_ms: DEFAULT_DEGRADED_LATENCY_MS,
            degraded_success_rate: DEFAULT_DEGRADED_SUCCESS_RATE,
        }
    }
}

/// The `[cache]` settings: the read-through cache between the router and the pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub enabled: bool,
    pub backend: CacheBackend,
    /// At least 1.
    pub max_entries: u64,
    /// At least [`MIN_CACHE_MAX_BYTES`].
    pub max_bytes: u64,
    /// The TTL of a cacheable result that the TTL table does not cover. `None` (written
    /// `"none"`, or implied by the seed's `strategy = "MANUAL"`) means entries live until they
    /// are evicted or invalidated; `Some(Duration::ZERO)` means such results are not cached, so
    /// only tools the TTL table names are.
    pub default_ttl: Option<Duration>,
    pub eviction: Eviction,
    /// How long `tools/list`, `prompts/list`, `resources/list` and `resources/templates/list`
    /// results are kept; the matching `list_changed` notification drops them earlier. Zero means
    /// list results are not cached.
    pub list_ttl: Duration,
    /// How many callers may wait on one in-flight fill of a key; the ones past it call the
    /// backend themselves. Zero turns coalescing off.
    pub max_coalesced_waiters: usize,
    /// How long a key found uncacheable skips the single-flight queue. Zero turns that memory
    /// off.
    pub hit_for_miss_ttl: Duration,
    /// How long past its TTL an entry may still be served while one background refresh
    /// runs (the answer says it is stale in `_meta`). Zero turns it off.
    pub stale_while_revalidate: Duration,
    /// How long past its TTL an entry may stand in for a call whose backend fails or times
    /// out (marked stale in `_meta`). Zero turns it off.
    pub stale_if_error: Duration,
    /// The TTL table. Its rows are ordered by precedence (rules for a named server before
    /// rules for any server, `"*"`, and within each, rules for a named tool before the `"*"`
    /// rule) so `check-config` lists them that way; [`TtlMap::lookup`], which the built-in
    /// policy asks, picks the most specific row whatever the order.
    pub ttl_table: TtlMap,
    /// The invalidation rules in file order. Every rule that matches a successful write applies;
    /// when at least one matches, they replace the default of dropping all of that server's
    /// entries.
    pub invalidation_rules: Vec<InvalidationRule>,
    /// `[cache.shared]`: the Redis tier shared by replicas, when configured.
    pub shared: Option<SharedCacheConfig>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_CACHE_ENABLED,
            backend: DEFAULT_CACHE_BACKEND,
            max_entries: DEFAULT_CACHE_MAX_ENTRIES,
            max_bytes: DEFAULT_CACHE_MAX_BYTES,
            default_ttl: Some(DEFAULT_CACHE_TTL),
            eviction: DEFAULT_CACHE_EVICTION,
            list_ttl: DEFAULT_CACHE_LIST_TTL,
            max_coalesced_waiters: DEFAULT_CACHE_MAX_COALESCED_WAITERS,
            hit_for_miss_ttl: DEFAULT_CACHE_HIT_FOR_MISS_TTL,
            stale_while_revalidate: DEFAULT_CACHE_STALE_WHILE_REVALIDATE,
            stale_if_error: DEFAULT_CACHE_STALE_IF_ERROR,
            ttl_table: TtlMap::new(),
            invalidation_rules: Vec::new(),
            shared: None,
        }
    }
}

/// Where cached results are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CacheBackend {
    /// In the bridge's own memory (moka): a restart starts empty.
    #[default]
    Memory,
    /// In memory as above, and in one file (an embedded redb database) that a restart
    /// loads again: `backend = "disk"` with `path`.
    Disk {
        /// The database file, resolved against the config file's directory.
        path: PathBuf,
    },
}

/// The name of the memory backend in the configuration file.
pub const CACHE_BACKEND_MEMORY: &str = "memory";
/// The name of the disk backend in the configuration file.
pub const CACHE_BACKEND_DISK: &str = "disk";

impl CacheBackend {
    /// The name used in the configuration file.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Memory => CACHE_BACKEND_MEMORY,
            Self::Disk { .. } => CACHE_BACKEND_DISK,
        }
    }

    /// The disk backend's file, if this is the disk backend.
    pub fn disk_path(&self) -> Option<&std::path::Path> {
        match self {
            Self::Memory => None,
            Self::Disk { path } => Some(path),
        }
    }
}

/// Which entry the cache drops first when it is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Eviction {
    /// TinyLFU admission with LRU eviction (moka's default): keeps frequently used entries even
    /// when a scan of one-off keys passes through.
    #[default]
    TinyLfu,
    /// Least recently used.
    Lru,
}

impl Eviction {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TinyLfu => "tinylfu",
            Self::Lru => "lru",
        }
    }
}

impl BridgeConfig {
    /// Looks a server up by name.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|server| server.name == name)
    }

    /// The built-in policy this configuration describes: the `[cache]` TTLs, stale windows,
    /// TTL table and invalidation rules, and the servers with `cache = false`.
    pub fn builtin_policy(&self) -> BuiltinPolicy {
        BuiltinPolicy::new(self.builtin_settings())
    }

    /// The settings [`BridgeConfig::builtin_policy`] is built from.
    pub fn builtin_settings(&self) -> BuiltinSettings {
        let cache = &self.cache;
        BuiltinSettings {
            default_ttl: cache.default_ttl,
            list_ttl: cache.list_ttl,
            stale_while_revalidate: cache.stale_while_revalidate,
            stale_if_error: cache.stale_if_error,
            ttl_table: cache.ttl_table.clone(),
            invalidation_rules: cache.invalidation_rules.clone(),
            uncached_servers: self
                .servers
                .iter()
                .filter(|server| !server.cache_enabled)
                .map(|server| server.name.clone())
                .collect(),
        }
    }
}
