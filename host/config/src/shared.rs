//! The checked `[cache.shared]` settings: the Redis (or Valkey) tier that several replicas
//! share, holding the second cache level, the invalidation generations, session revocations
//! and the broadcast that keeps every replica's first level current.

use std::path::PathBuf;
use std::time::Duration;

use super::secret::Secret;

/// The prefix of every key the bridge writes, so several deployments can share one Redis.
pub const DEFAULT_SHARED_KEY_PREFIX: &str = "mcp-bridge:";
/// How long connecting to Redis may take.
pub const DEFAULT_SHARED_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may take before the call goes on without the tier. Calls on the
/// request path wait at most this long for Redis.
pub const DEFAULT_SHARED_COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// How often an unreachable tier is tried again, and a reachable one checked.
pub const DEFAULT_SHARED_HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// The largest result stored in Redis (1 MiB); a larger one stays in the replica's own level.
pub const DEFAULT_SHARED_MAX_VALUE_BYTES: u64 = 1 << 20;
/// The upper bound of `max_value_bytes` (64 MiB): Redis values up to 512 MiB are possible,
/// but moving them on the request path is not caching any more.
pub const MAX_SHARED_VALUE_BYTES: u64 = 64 << 20;
/// Invalidations a replica keeps while Redis cannot be reached, replayed when it can; past
/// this many, the replica records one invalidation of everything instead.
pub const DEFAULT_SHARED_MAX_PENDING_INVALIDATIONS: usize = 10_000;
/// How long an invalidation's generation counter is kept in Redis. Entries live at most
/// half of it in either level, so a counter never expires while an entry it judges exists.
pub const DEFAULT_SHARED_GENERATION_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest `generation_retention` accepted (2 minutes).
pub const MIN_SHARED_GENERATION_RETENTION: Duration = Duration::from_secs(120);
/// Fills written to Redis at once (in the background); the ones past it skip the second level.
pub const DEFAULT_SHARED_MAX_PENDING_WRITES: usize = 256;

/// How replicas trust their own first level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// No replica serves an entry whose generations are older than Redis's: every hit is
    /// checked with one round trip, and nothing is served from the first level while Redis
    /// cannot be reached. A read that starts after a write's response is never stale.
    #[default]
    Strict,
    /// Replicas trust their first level until the broadcast evicts an entry: staleness is
    /// bounded by the propagation delay, which the bridge measures. A replica that lost the
    /// broadcast flushes its first level when it is back.
    Bounded,
}

impl Consistency {
    /// Every mode, in the order help texts list them.
    pub const ALL: [Consistency; 2] = [Consistency::Strict, Consistency::Bounded];

    /// The name used in the configuration file and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Bounded => "bounded",
        }
    }
}

/// `[cache.shared]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCacheConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). A secret: it may
    /// carry a password.
    pub url: Secret,
    /// The password, when it is not in the URL (usually `${REDIS_PASSWORD}`).
    pub password: Option<Secret>,
    /// Extra trusted roots (PEM) for `rediss://`, for a Redis behind a private CA.
    pub ca_file: Option<PathBuf>,
    pub consistency: Consistency,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub health_check_interval: Duration,
    pub max_value_bytes: u64,
    pub max_pending_invalidations: usize,
    pub max_pending_writes: usize,
    pub generation_retention: Duration,
    /// Whether `/readyz` answers 503 while Redis cannot be reached. Off by default: calls
    /// still work without the tier (they go to the backends).
    pub required_for_readiness: bool,
}

/// A Redis URL's scheme and where it points (`host:port`), without credentials, path or
/// query; `None` when it has no `scheme://`.
pub(crate) fn redis_endpoint(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    Some((scheme, authority.rsplit('@').next().unwrap_or_default()))
}

impl SharedCacheConfig {
    /// The longest an entry may live in either level: half the generation retention.
    pub fn max_entry_lifetime(&self) -> Duration {
        self.generation_retention / 2
    }
}
