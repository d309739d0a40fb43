//! The validated configuration the rest of the host runs on, and the named defaults it falls back to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::secret::Secret;

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
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
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
/// Average latency above which a server is reported degraded, in milliseconds.
pub const DEFAULT_DEGRADED_LATENCY_MS: u64 = 500;
/// Success rate below which a server is reported degraded.
pub const DEFAULT_DEGRADED_SUCCESS_RATE: f64 = 0.95;

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
    /// The working directory, expanded; a relative path was resolved against the directory of
    /// the file that declared the server.
    pub cwd: Option<PathBuf>,
    pub required: bool,
    pub exclusive: bool,
    pub max_line_bytes: usize,
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
        }
    }
}

/// When a server counts as healthy, degraded or unhealthy.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub check_interval: Duration,
    pub check_timeout: Duration,
    pub unhealthy_threshold: u32,
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
            degraded_latency_ms: DEFAULT_DEGRADED_LATENCY_MS,
            degraded_success_rate: DEFAULT_DEGRADED_SUCCESS_RATE,
        }
    }
}

impl BridgeConfig {
    /// Looks a server up by name.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|server| server.name == name)
    }
}
