//! The shared tier's errors: setup errors stop the bridge at startup; a [`TierError`] on a
//! call only means "go on without the tier" and is never shown to a client.

/// Why the shared tier could not be set up (a bad URL, an unreadable CA file).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("[cache.shared] url: {0}")]
    Url(#[source] redis::RedisError),
    #[error("[cache.shared] ca_file `{path}` cannot be read: {source}")]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why one operation on the tier failed. Every one is retryable: the tier comes back, and
/// the call that met the error went on without it.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("the shared tier is unreachable")]
    Unreachable,
    #[error("Redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("Redis answered with an error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis sent a reply the bridge cannot read: {0}")]
    Malformed(String),
    #[error("the shared tier's epoch is missing: Redis lost its data (restart or flush)")]
    EpochLost,
}

impl TierError {
    /// Whether trying again later can succeed: always, for the tier.
    pub fn retryable(&self) -> bool {
        true
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::Redis(_) => "redis",
            Self::Malformed(_) => "malformed",
            Self::EpochLost => "epoch_lost",
        }
    }
}
