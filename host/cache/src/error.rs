//! Why the cache could not start.

use std::path::PathBuf;

/// A cache that cannot start: only the disk backend can fail, and only at startup (a file
/// it cannot read is set aside instead, and disk errors while serving are logged and
/// counted, never returned).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "the disk cache's directory {} cannot be created or written to ({source}); give the bridge's user write access to it, or set [cache] path elsewhere",
        dir.display()
    )]
    Directory {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the disk cache's path {} is a directory; set [cache] path to a file in it, such as \"cache.redb\"",
        path.display()
    )]
    NotAFile { path: PathBuf },
    #[error(
        "the disk cache file {} is open in another process (one bridge at a time may use a file); stop it, or give this bridge its own [cache] path",
        path.display()
    )]
    InUse { path: PathBuf },
    #[error(
        "cannot open the disk cache file {} ({source}); give the bridge's user read and write access to it",
        path.display()
    )]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the disk cache file {}: {why}", path.display())]
    Create { path: PathBuf, why: String },
    #[error(
        "cannot move the unusable disk cache file {} aside to {} ({source}); delete it by hand",
        path.display(),
        to.display()
    )]
    SetAside {
        path: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot discard the disk cache file {}, which the last run marked as missing an invalidation ({source}); delete it and its .discard marker by hand",
        path.display()
    )]
    Discard {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the disk cache's writer thread: {0}")]
    Writer(#[source] std::io::Error),
}
