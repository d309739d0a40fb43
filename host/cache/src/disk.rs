//! The disk backend (`[cache] backend = "disk"`): the moka store stays the cache that
//! answers, and one redb file (pure Rust, crash-safe: copy-on-write B-trees with
//! checksummed commits) keeps a copy of its entries so a restart starts warm.
//!
//! # What is in the file
//!
//! Three tables (`record.rs`): `meta` holds the format version; `entries` maps each cache key
//! to its record (the result, its TTL and stale windows, tags, private flag, size, backend
//! time, the fill that wrote it, and the wall-clock time it was stored, since an `Instant`
//! means nothing after a restart); `tags` is the file's own tag index, tag to keys. At start
//! every record is read: one that outlived its TTL and stale windows (by the wall clock) is
//! deleted, the others go into moka with what is left of their lifetime, and into the tag
//! index. moka then applies `max_entries` and `max_bytes` again, and the removals it reports
//! delete those records too, so the bounds of the memory are the bounds of the file.
//!
//! # Ordering: a restart never serves an invalidated entry
//!
//! Every change to the file goes through one queue, applied in order by one writer thread,
//! one transaction per batch, each committed with immediate durability (synced).
//!
//! - A fill is queued (never written on the request path) under the store's index lock, the
//!   lock every invalidation takes. So the queue's order is the order in which memory saw the
//!   fill and the invalidations: a fill that memory took before an invalidation is queued
//!   before it (the invalidation then deletes it on disk too), and a fill that started
//!   before an invalidation but finished after it is refused by memory's sequence check and
//!   never queued at all.
//! - An invalidation (`invalidate_tag`, `invalidate_key`, `clear`) is queued under the same
//!   lock, then waits, outside the lock, until the writer has committed the batch holding it;
//!   only then does `ResponseCache::invalidate` return. The router applies a write's
//!   invalidations before the write's response goes back, so once a client has seen a
//!   write's answer, its invalidations are on the disk: `kill -9` and a restart cannot bring
//!   the dropped entry back.
//! - An invalidation deletes by the file's own tag index, not by the keys memory still
//!   holds: a record that memory evicted but whose deletion was dropped or is still queued
//!   is deleted all the same.
//! - Invalidations are never dropped. Fills and the removals moka reports (evictions,
//!   expiries) are dropped, and counted, when the queue holds [`DISK_QUEUE_CAPACITY`] of
//!   them: a lost fill costs a miss after a restart, a lost removal a larger file until the
//!   next start applies the bounds again. A removal carries the fill it removes, so a late
//!   one never deletes a newer fill of the same key.
//!
//! When the disk fails: a batch that cannot be committed is retried with its removals alone
//! (fills dropped). If an invalidation still cannot be committed, or is not committed within
//! [`DISK_INVALIDATION_TIMEOUT`], the writer creates `PATH.discard` (synced) and stops
//! writing the file; the next start sees the marker and discards the whole file, so a
//! possibly invalidated entry is never served after a restart. The call itself never fails
//! because of the disk: memory was invalidated already. Only when even the marker cannot be
//! written does the log say to delete the file by hand.
//!
//! The cost: every write waits for one synced commit (concurrent writes share one), on the
//! thread that answers it. Hits never touch the file.
//!
//! # A file that cannot be used
//!
//! A file redb cannot open (corrupt, truncated, not a redb file), or one whose format version
//! is not [`record::FORMAT_VERSION`], is renamed to `PATH.corrupt-SECONDS` with one log line
//! saying what, where and what the bridge did, and the bridge starts with an empty cache. A
//! directory the bridge cannot write to, a file it may not open, or a file another process
//! holds open stops the start with a [`CacheError`].
//!
//! Generations (the store's sequence numbers against stale fills) are not persisted: they
//! protect fills in flight, and none survives a restart.

pub(crate) mod record;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError, TableHandle};
use serde_json::{Value, json};

use crate::error::CacheError;
use crate::metrics::CacheMetrics;
use crate::store::Entry;
use record::{ENTRIES, FORMAT_VERSION, FORMAT_VERSION_KEY, META, TAGS};
pub(crate) use writer::Pending;
pub(crate) use writer::Removal;
use writer::{Durable, Op, Shared};

/// Fills and reported removals the writer's queue holds at most; more are dropped.
pub const DISK_QUEUE_CAPACITY: usize = 10_000;

/// How long an invalidation waits for its commit before the file is marked for discarding.
pub const DISK_INVALIDATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long closing waits for the writer to apply what is queued.
pub const DISK_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Appended to the cache file's path: the marker that makes the next start discard it.
pub const DISK_DISCARD_SUFFIX: &str = ".discard";

/// Appended to the cache file's path, with the Unix time, when an unusable file is set aside.
pub const DISK_CORRUPT_SUFFIX: &str = ".corrupt-";

/// The persistent copy of the store: the file and its writer.
pub(crate) struct Disk {
    path: PathBuf,
    database: Arc<Database>,
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    next_fill: AtomicU64,
    /// Where an unusable file was moved at this start, if one was.
    set_aside: Option<PathBuf>,
    loaded: AtomicU64,
}

/// What starting with a file found out.
enum Opened {
    Usable(Database),
    /// Not usable, and why (for the log line).
    Unusable(String),
}

impl Disk {
    /// Opens (or creates) the file at `path` and starts its writer. Entries are not loaded
    /// yet: see [`Disk::load`].
    pub(crate) fn open(path: &Path, metrics: Arc<CacheMetrics>) -> Result<Disk, CacheError> {
        Disk::open_with(path, metrics, DISK_QUEUE_CAPACITY)
    }

    pub(crate) fn open_with(
        path: &Path,
        metrics: Arc<CacheMetrics>,
        capacity: usize,
    ) -> Result<Disk, CacheError> {
        prepare_directory(path)?;
        let marker = with_suffix(path, DISK_DISCARD_SUFFIX);
        if marker.exists() {
            discard(path, &marker)?;
        }
        let mut set_aside = None;
        let database = match open_file(path)? {
            Opened::Usable(database) => database,
            Opened::Unusable(why) => {
                let to = set_aside_file(path)?;
                tracing::warn!(
                    file = %path.display(),
                    moved_to = %to.display(),
                    "disk cache: {why}; the file was renamed to {} and the bridge starts with an empty cache",
                    to.display()
                );
                set_aside = Some(to);
                match open_file(path)? {
                    Opened::Usable(database) => database,
                    Opened::Unusable(why) => {
                        return Err(CacheError::Create {
                            path: path.to_owned(),
                            why,
                        });
                    }
                }
            }
        };
        keep_private(path);
        let database = Arc::new(database);
        let shared = Arc::new(Shared::new(capacity, marker, metrics));
        let writer = {
            let (database, shared) = (database.clone(), shared.clone());
            std::thread::Builder::new()
                .name("cache-disk-writer".into())
                .spawn(move || writer::run(database, shared))
                .map_err(CacheError::Writer)?
        };
        Ok(Disk {
            path: path.to_owned(),
            database,
            shared,
            writer: Mutex::new(Some(writer)),
            next_fill: AtomicU64::new(1),
            set_aside,
            loaded: AtomicU64::new(0),
        })
    }

    /// Reads every record: hands each live one to `restore` (key, entry, fill), and queues
    /// the deletion of expired and unreadable ones. Returns how many were restored.
    pub(crate) fn load(&self, mut restore: impl FnMut(Arc<str>, Entry, u64)) -> u64 {
        let now = record::unix_now_us();
        let mut restored = 0;
        let mut dead = Vec::new();
        let mut max_fill = 0;
        let outcome = (|| -> Result<(), redb::Error> {
            let transaction = self.database.begin_read()?;
            let table = transaction.open_table(ENTRIES)?;
            for row in table.iter()? {
                let (key, bytes) = row?;
                let key = key.value();
                let Some(decoded) = record::decode(bytes.value()) else {
                    dead.push(key.to_owned());
                    continue;
                };
                let fill = decoded.meta.fill;
                let age = decoded.age(now);
                if decoded.expired(age) {
                    dead.push(key.to_owned());
                    continue;
                }
                let Some(entry) = decoded.into_entry(age) else {
                    dead.push(key.to_owned());
                    continue;
                };
                max_fill = max_fill.max(fill);
                restore(Arc::from(key), entry, fill);
                restored += 1;
            }
            Ok(())
        })();
        if let Err(error) = outcome {
            tracing::warn!(file = %self.path.display(), %error, restored, "disk cache: reading the file stopped early; the entries read so far are cached");
        }
        self.next_fill.store(max_fill + 1, Ordering::SeqCst);
        let dropped = dead.len();
        for key in dead {
            self.shared.offer(Op::Drop { key });
        }
        self.loaded.store(restored, Ordering::Relaxed);
        self.shared
            .metrics
            .cache_disk_loaded_entries
            .set(i64::try_from(restored).unwrap_or(i64::MAX));
        tracing::info!(file = %self.path.display(), restored, expired_or_unreadable = dropped, "disk cache: loaded");
        restored
    }

    /// A new fill's id.
    pub(crate) fn next_fill(&self) -> u64 {
        self.next_fill.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a fill's record; never blocks.
    pub(crate) fn put(&self, key: Arc<str>, entry: Arc<Entry>, fill: u64) {
        let stored_unix_us = record::unix_now_us()
            .saturating_sub(u64::try_from(entry.age().as_micros()).unwrap_or(u64::MAX));
        self.shared.offer(Op::Put {
            key,
            entry,
            fill,
            stored_unix_us,
        });
    }

    /// Queues the deletion of a record moka evicted or expired; never blocks.
    pub(crate) fn evicted(&self, key: Arc<str>, fill: u64) {
        self.shared.offer(Op::Evicted { key, fill });
    }

    /// Queues an invalidation; call under the store's index lock, then [`Disk::wait`]
    /// outside it.
    pub(crate) fn invalidate(&self, removal: Removal) -> Pending {
        self.shared.invalidate(removal)
    }

    /// Waits for an invalidation queued by [`Disk::invalidate`] to be committed (bounded),
    /// or writes it itself when the queue had closed.
    pub(crate) fn wait(&self, pending: Pending) {
        match pending {
            Pending::Nothing => {}
            Pending::Commit(sequence) => {
                if self.shared.wait(sequence, DISK_INVALIDATION_TIMEOUT) == Durable::TimedOut {
                    tracing::warn!(file = %self.path.display(), "disk cache: an invalidation was not committed in time; the answer was sent, and the file will be discarded at the next start");
                }
            }
            Pending::Inline(removal) => {
                self.shared
                    .write_inline(&self.database, removal, DISK_INVALIDATION_TIMEOUT);
            }
        }
    }

    /// Applies what is queued and stops the writer (bounded); later fills are dropped and
    /// later invalidations mark the file for discarding. Idempotent.
    pub(crate) fn close(&self) {
        if !self.shared.close(DISK_CLOSE_TIMEOUT) {
            tracing::warn!(file = %self.path.display(), queued = self.shared.queued_ops(), "disk cache: the writer did not finish within {DISK_CLOSE_TIMEOUT:?}; fills still queued are lost");
            return;
        }
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }

    /// The disk part of `/admin/cache/stats`.
    pub(crate) fn stats(&self) -> Value {
        let metrics = &self.shared.metrics;
        let writes = |op: &str| {
            metrics
                .cache_disk_writes_total
                .with_label_values(&[op])
                .get()
        };
        let dropped = |op: &str| {
            metrics
                .cache_disk_dropped_writes_total
                .with_label_values(&[op])
                .get()
        };
        let errors = |kind: &str| {
            metrics
                .cache_disk_write_errors_total
                .with_label_values(&[kind])
                .get()
        };
        json!({
            "path": self.path.display().to_string(),
            "loaded_entries": self.loaded.load(Ordering::Relaxed),
            "set_aside": self.set_aside.as_ref().map(|path| path.display().to_string()),
            "queued": self.shared.queued_ops(),
            "writes": { "put": writes("put"), "evict": writes("evict"), "invalidate": writes("invalidate"), "clear": writes("clear") },
            "dropped_writes": { "put": dropped("put"), "evict": dropped("evict") },
            "write_errors": { "commit": errors("commit"), "timeout": errors("timeout") },
            "discard_at_next_start": self.shared.is_untrusted(),
        })
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.close();
    }
}

/// Makes the file readable by the bridge's user alone: it holds results cached for one
/// principal too. Best effort: a file system without modes keeps what it has.
fn keep_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(file = %path.display(), %error, "disk cache: cannot make the file private to the bridge's user");
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the file's directory if needed and checks that the bridge may write there
/// (the file, its set-aside copies and the discard marker all live there).
fn prepare_directory(path: &Path) -> Result<(), CacheError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let unwritable = |source| CacheError::Directory {
        dir: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(unwritable)?;
    if path.is_dir() {
        return Err(CacheError::NotAFile {
            path: path.to_owned(),
        });
    }
    let probe = with_suffix(path, &format!(".probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(unwritable)?;
    std::fs::remove_file(&probe).map_err(unwritable)?;
    Ok(())
}

/// Deletes the file because the last run could not write an invalidation to it, then the
/// marker that said so.
fn discard(path: &Path, marker: &Path) -> Result<(), CacheError> {
    let failed = |source| CacheError::Discard {
        path: path.to_owned(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(failed(error)),
    }
    std::fs::remove_file(marker).map_err(failed)?;
    tracing::warn!(
        file = %path.display(),
        marker = %marker.display(),
        "disk cache: the last run could not write an invalidation to the file, so it was deleted (the bridge starts with an empty cache)"
    );
    Ok(())
}

/// Opens or creates the file and checks its format. An error that says the file cannot be
/// used at all (permissions, another process holding it) is returned; anything that says
/// the file's contents are bad is [`Opened::Unusable`].
fn open_file(path: &Path) -> Result<Opened, CacheError> {
    let opened = std::panic::catch_unwind(|| {
        redb::Builder::new()
            // A plain open trusts a file redb closed cleanly and may panic on one changed
            // behind its back; the check reports that as corruption instead.
            .set_check_integrity_on_open(true)
            .create(path)
    });
    let database = match opened {
        Err(_) => return Ok(Opened::Unusable("redb panicked reading the file".into())),
        Ok(Ok(database)) => database,
        Ok(Err(DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch)) => {
            return Err(CacheError::InUse {
                path: path.to_owned(),
            });
        }
        Ok(Err(DatabaseError::Storage(StorageError::Io(error))))
            if matches!(
                error.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            return Err(CacheError::Open {
                path: path.to_owned(),
                source: error,
            });
        }
        Ok(Err(error)) => {
            return Ok(Opened::Unusable(format!(
                "the file cannot be read as a cache file ({error})"
            )));
        }
    };
    match check_format(&database) {
        Ok(None) => Ok(Opened::Usable(database)),
        Ok(Some(why)) => Ok(Opened::Unusable(why)),
        Err(error) => Ok(Opened::Unusable(format!(
            "the file's tables cannot be read ({error})"
        ))),
    }
}

/// Writes the format version into a new file; for an existing one, returns why it is not
/// this version's (`None` when it is).
fn check_format(database: &Database) -> Result<Option<String>, redb::Error> {
    let transaction = database.begin_write()?;
    let tables: Vec<String> = transaction
        .list_tables()?
        .map(|table| table.name().to_owned())
        .collect();
    let multimaps = transaction.list_multimap_tables()?.count();
    let version = if tables.iter().any(|name| name == META.name()) {
        let meta = transaction.open_table(META)?;
        meta.get(FORMAT_VERSION_KEY)?.map(|version| version.value())
    } else if tables.is_empty() && multimaps == 0 {
        {
            let mut meta = transaction.open_table(META)?;
            meta.insert(FORMAT_VERSION_KEY, FORMAT_VERSION)?;
            transaction.open_table(ENTRIES)?;
            transaction.open_multimap_table(TAGS)?;
        }
        transaction.commit()?;
        return Ok(None);
    } else {
        None
    };
    match version {
        Some(FORMAT_VERSION) => {
            // Opening both tables checks their types.
            transaction.open_table(ENTRIES)?;
            transaction.open_multimap_table(TAGS)?;
            transaction.abort()?;
            Ok(None)
        }
        Some(other) => Ok(Some(format!(
            "the file is in cache format version {other}, and this bridge reads version {FORMAT_VERSION}"
        ))),
        None => Ok(Some(
            "the file is a redb database but not an mcp-bridge cache (it has no format version)"
                .into(),
        )),
    }
}

/// Renames an unusable file to `PATH.corrupt-SECONDS` (with a counter if that exists).
fn set_aside_file(path: &Path) -> Result<PathBuf, CacheError> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let base = format!("{DISK_CORRUPT_SUFFIX}{seconds}");
    let mut to = with_suffix(path, &base);
    let mut attempt = 1;
    while to.exists() {
        attempt += 1;
        to = with_suffix(path, &format!("{base}-{attempt}"));
    }
    std::fs::rename(path, &to).map_err(|source| CacheError::SetAside {
        path: path.to_owned(),
        to: to.clone(),
        source,
    })?;
    Ok(to)
}

#[cfg(test)]
mod tests;
