//! The one writer thread and its ordered queue: every change to the file goes through
//! here, in the order it was queued, so a fill queued before an invalidation is on disk
//! before that invalidation deletes it (see the module doc of `disk`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redb::{Database, ReadableMultimapTable, ReadableTable};

use super::record::{self, ENTRIES, TAGS};
use crate::metrics::CacheMetrics;
use crate::store::Entry;

/// The most operations one transaction applies; more wait for the next one.
const MAX_BATCH: usize = 1024;

/// How often, at most, a failing disk is logged while fills keep failing.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// What an invalidation removes from the file.
#[derive(Debug, Clone)]
pub(crate) enum Removal {
    /// Every record indexed under this tag.
    Tag(String),
    /// The record of one key.
    Key(String),
    /// Every record.
    Clear,
}

/// One change to the file.
pub(crate) enum Op {
    /// A fill: write the record (replacing the key's older one).
    Put {
        key: Arc<str>,
        entry: Arc<Entry>,
        fill: u64,
        stored_unix_us: u64,
    },
    /// moka evicted or expired `key`'s entry from `fill`: delete the record if it is still
    /// that fill's (a newer fill of the key may have been written since).
    Evicted { key: Arc<str>, fill: u64 },
    /// A record found dead at startup (expired, or unreadable): delete it.
    Drop { key: String },
    /// An invalidation: never dropped, and its caller waits for its commit.
    Remove(Removal),
}

impl Op {
    /// The metric label of what the op writes.
    fn label(&self) -> &'static str {
        match self {
            Op::Put { .. } => "put",
            Op::Evicted { .. } | Op::Drop { .. } => "evict",
            Op::Remove(Removal::Clear) => "clear",
            Op::Remove(_) => "invalidate",
        }
    }

    /// Invalidations must reach the file; the rest may be lost to a full queue or a failed
    /// commit at the price of a miss (a lost fill) or a larger file until the next start (a
    /// lost removal, which the next start's bounds apply again).
    fn is_invalidation(&self) -> bool {
        matches!(self, Op::Remove(_))
    }
}

struct Queue {
    ops: VecDeque<(u64, Op)>,
    /// The sequence number the next op gets.
    next: u64,
    /// Ops queued that are not invalidations: what the capacity bounds.
    background: usize,
    /// Set by `close`: no op is accepted any more; the writer drains what is queued and ends.
    closing: bool,
}

struct Progress {
    /// Every op up to this sequence number has been applied (committed, or given up on).
    through: u64,
    /// The writer thread has ended.
    finished: bool,
}

/// What the writer and the store share.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer when an op is queued or the queue closes.
    queued: Condvar,
    progress: Mutex<Progress>,
    /// Wakes invalidations waiting for their commit, and `close`.
    applied: Condvar,
    /// Background ops the queue holds at most.
    capacity: usize,
    /// The file can no longer be trusted (an invalidation could not be written) and will be
    /// discarded at the next start: nothing is written to it any more.
    untrusted: AtomicBool,
    /// The file that makes the next start discard the cache file.
    discard_marker: PathBuf,
    pub(crate) metrics: Arc<CacheMetrics>,
}

/// What an invalidation waits for once the index lock is released.
#[derive(Debug)]
pub(crate) enum Pending {
    /// The commit of the op with this sequence number.
    Commit(u64),
    /// Nothing: the file is marked for discarding already.
    Nothing,
    /// The queue is closed (the bridge is stopping): the invalidation is written by its
    /// caller, once the writer has applied what was queued before it.
    Inline(Removal),
}

/// How an invalidation's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durable {
    /// Committed, or the file is already marked for discarding: either way no restart
    /// serves what it removed.
    Yes,
    /// The commit did not happen in time; the file was marked for discarding instead.
    TimedOut,
}

impl Shared {
    pub(crate) fn new(
        capacity: usize,
        discard_marker: PathBuf,
        metrics: Arc<CacheMetrics>,
    ) -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                ops: VecDeque::new(),
                next: 1,
                background: 0,
                closing: false,
            }),
            queued: Condvar::new(),
            progress: Mutex::new(Progress {
                through: 0,
                finished: false,
            }),
            applied: Condvar::new(),
            capacity,
            untrusted: AtomicBool::new(false),
            discard_marker,
            metrics,
        }
    }

    /// Queues a fill or a removal moka reported; drops it (and counts it) when the queue is
    /// full or closed, or the file is no longer written. Never blocks.
    pub(crate) fn offer(&self, op: Op) {
        debug_assert!(!op.is_invalidation());
        let label = op.label();
        if self.untrusted.load(Ordering::Relaxed) {
            self.dropped(label);
            return;
        }
        let mut queue = self.queue.lock();
        if queue.closing || queue.background >= self.capacity {
            drop(queue);
            self.dropped(label);
            return;
        }
        queue.background += 1;
        let sequence = queue.next;
        queue.next += 1;
        queue.ops.push_back((sequence, op));
        drop(queue);
        self.queued.notify_one();
    }

    /// Queues an invalidation, never dropping it, and says what to wait for.
    pub(crate) fn invalidate(&self, removal: Removal) -> Pending {
        if self.untrusted.load(Ordering::Relaxed) {
            return Pending::Nothing;
        }
        let mut queue = self.queue.lock();
        if queue.closing {
            return Pending::Inline(removal);
        }
        let sequence = queue.next;
        queue.next += 1;
        queue.ops.push_back((sequence, Op::Remove(removal)));
        drop(queue);
        self.queued.notify_one();
        Pending::Commit(sequence)
    }

    /// Writes an invalidation that arrived after the queue closed, in the caller's thread,
    /// once the writer has finished what was queued before (so no earlier fill lands after
    /// it); marks the file for discarding when that cannot be done in `timeout`.
    pub(crate) fn write_inline(&self, database: &Database, removal: Removal, timeout: Duration) {
        if !self.close(timeout) {
            self.distrust("an invalidation arrived while the writer was still finishing");
            return;
        }
        let ops = [Op::Remove(removal)];
        match write(database, &ops) {
            Ok(()) => count_writes(self, &ops),
            Err(error) => {
                self.metrics
                    .cache_disk_write_errors_total
                    .with_label_values(&["commit"])
                    .inc();
                self.distrust(&format!("an invalidation could not be written ({error})"));
            }
        }
    }

    /// Waits until the op `sequence` is applied, at most `timeout`. On a timeout the file is
    /// marked for discarding, so a restart before the commit cannot serve what the
    /// invalidation dropped.
    pub(crate) fn wait(&self, sequence: u64, timeout: Duration) -> Durable {
        let deadline = Instant::now() + timeout;
        let mut progress = self.progress.lock();
        while progress.through < sequence && !progress.finished {
            if self.applied.wait_until(&mut progress, deadline).timed_out() {
                break;
            }
        }
        let done = progress.through >= sequence;
        drop(progress);
        if done {
            return Durable::Yes;
        }
        self.metrics
            .cache_disk_write_errors_total
            .with_label_values(&["timeout"])
            .inc();
        self.distrust(&format!(
            "an invalidation was not committed within {timeout:?}"
        ));
        Durable::TimedOut
    }

    /// Ops queued and not yet applied.
    pub(crate) fn queued_ops(&self) -> usize {
        self.queue.lock().ops.len()
    }

    /// Whether the file is marked for discarding at the next start.
    pub(crate) fn is_untrusted(&self) -> bool {
        self.untrusted.load(Ordering::Relaxed)
    }

    /// Stops accepting ops and waits, at most `timeout`, for the writer to apply what is
    /// queued and end.
    pub(crate) fn close(&self, timeout: Duration) -> bool {
        self.queue.lock().closing = true;
        self.queued.notify_all();
        let deadline = Instant::now() + timeout;
        let mut progress = self.progress.lock();
        while !progress.finished {
            if self.applied.wait_until(&mut progress, deadline).timed_out() {
                return false;
            }
        }
        true
    }

    fn dropped(&self, label: &str) {
        self.metrics
            .cache_disk_dropped_writes_total
            .with_label_values(&[label])
            .inc();
    }

    /// Marks the file for discarding at the next start (once), and stops writing to it.
    fn distrust(&self, why: &str) {
        if self.untrusted.swap(true, Ordering::SeqCst) {
            return;
        }
        match write_marker(&self.discard_marker) {
            Ok(()) => tracing::error!(
                marker = %self.discard_marker.display(),
                "disk cache: {why}; the file is no longer written and the next start discards it (starting with an empty cache) so that no invalidated entry can come back"
            ),
            Err(error) => tracing::error!(
                marker = %self.discard_marker.display(),
                %error,
                "disk cache: {why}, and the marker that makes the next start discard the file cannot be written either: delete the cache file before restarting, or an invalidated entry may be served"
            ),
        }
    }
}

/// Creates the discard marker durably: the file, its contents and its directory entry.
fn write_marker(marker: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(marker)?;
    file.write_all(
        b"mcp-bridge: an invalidation could not be written to the disk cache; the next start discards the cache file\n",
    )?;
    file.sync_all()?;
    if let Some(dir) = marker.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        // Best effort: a directory that cannot be synced still holds the file after a crash
        // of the process, which is what matters most here.
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// The writer thread: applies the queue in batches, one transaction each, until closed.
pub(crate) fn run(database: Arc<Database>, shared: Arc<Shared>) {
    let mut errors = ErrorLog::default();
    loop {
        let batch: Vec<(u64, Op)> = {
            let mut queue = shared.queue.lock();
            while queue.ops.is_empty() && !queue.closing {
                shared.queued.wait(&mut queue);
            }
            if queue.ops.is_empty() {
                break;
            }
            let count = queue.ops.len().min(MAX_BATCH);
            let batch: Vec<(u64, Op)> = queue.ops.drain(..count).collect();
            let background = batch.iter().filter(|(_, op)| !op.is_invalidation()).count();
            queue.background -= background;
            batch
        };
        let through = batch.last().map_or(0, |(sequence, _)| *sequence);
        apply(&database, &shared, batch, &mut errors);
        shared.progress.lock().through = through;
        shared.applied.notify_all();
    }
    shared.progress.lock().finished = true;
    shared.applied.notify_all();
}

/// Applies one batch; on a failed commit retries its removals alone, and marks the file for
/// discarding when an invalidation cannot be written.
fn apply(database: &Database, shared: &Shared, batch: Vec<(u64, Op)>, errors: &mut ErrorLog) {
    let ops: Vec<Op> = batch.into_iter().map(|(_, op)| op).collect();
    if shared.is_untrusted() {
        for op in ops.iter().filter(|op| !op.is_invalidation()) {
            shared.dropped(op.label());
        }
        return;
    }
    let error = match write(database, &ops) {
        Ok(()) => {
            count_writes(shared, &ops);
            return;
        }
        Err(error) => error,
    };
    shared
        .metrics
        .cache_disk_write_errors_total
        .with_label_values(&["commit"])
        .inc();
    if !ops.iter().any(Op::is_invalidation) {
        errors.log(&error, ops.len());
        for op in &ops {
            shared.dropped(op.label());
        }
        return;
    }
    // The fills may be what failed (too large, a full disk): the removals alone are
    // smaller, and they are what must reach the file.
    let removals: Vec<Op> = ops
        .into_iter()
        .filter(|op| !matches!(op, Op::Put { .. }))
        .collect();
    match write(database, &removals) {
        Ok(()) => {
            tracing::warn!(%error, "disk cache: a batch of writes failed; its invalidations were written on their own, its fills were dropped");
            count_writes(shared, &removals);
        }
        Err(retry) => {
            shared
                .metrics
                .cache_disk_write_errors_total
                .with_label_values(&["commit"])
                .inc();
            shared.distrust(&format!(
                "an invalidation could not be written ({error}; again: {retry})"
            ));
        }
    }
}

fn count_writes(shared: &Shared, ops: &[Op]) {
    for op in ops {
        shared
            .metrics
            .cache_disk_writes_total
            .with_label_values(&[op.label()])
            .inc();
    }
}

/// One transaction for `ops`, committed with immediate durability (synced to the disk).
fn write(database: &Database, ops: &[Op]) -> Result<(), redb::Error> {
    let transaction = database.begin_write()?;
    // Everything before the last clear is cleared by it.
    let start = match ops
        .iter()
        .rposition(|op| matches!(op, Op::Remove(Removal::Clear)))
    {
        Some(last_clear) => {
            transaction.delete_table(ENTRIES)?;
            transaction.delete_multimap_table(TAGS)?;
            last_clear + 1
        }
        None => 0,
    };
    {
        let mut entries = transaction.open_table(ENTRIES)?;
        let mut tags = transaction.open_multimap_table(TAGS)?;
        for op in &ops[start..] {
            match op {
                Op::Put {
                    key,
                    entry,
                    fill,
                    stored_unix_us,
                } => {
                    let bytes = match record::encode(entry, *fill, *stored_unix_us) {
                        Ok(bytes) => bytes,
                        // A result that cannot be written again is simply not kept.
                        Err(_) => continue,
                    };
                    remove_record(&mut entries, &mut tags, key)?;
                    entries.insert(&**key, bytes.as_slice())?;
                    for tag in &entry.tags {
                        tags.insert(tag.as_str(), &**key)?;
                    }
                }
                Op::Evicted { key, fill } => {
                    let same_fill = entries
                        .get(&**key)?
                        .and_then(|bytes| record::decode_meta(bytes.value()))
                        .is_some_and(|meta| meta.fill == *fill);
                    if same_fill {
                        remove_record(&mut entries, &mut tags, key)?;
                    }
                }
                Op::Drop { key } | Op::Remove(Removal::Key(key)) => {
                    remove_record(&mut entries, &mut tags, key)?;
                }
                Op::Remove(Removal::Tag(tag)) => {
                    let keys = tags
                        .get(tag.as_str())?
                        .map(|key| key.map(|key| key.value().to_owned()))
                        .collect::<Result<Vec<String>, _>>()?;
                    for key in &keys {
                        remove_record(&mut entries, &mut tags, key)?;
                    }
                    tags.remove_all(tag.as_str())?;
                }
                Op::Remove(Removal::Clear) => {}
            }
        }
    }
    transaction.commit()?;
    Ok(())
}

/// Deletes `key`'s record and its rows in the tag index.
fn remove_record(
    entries: &mut redb::Table<&str, &[u8]>,
    tags: &mut redb::MultimapTable<&str, &str>,
    key: &str,
) -> Result<(), redb::Error> {
    let old_tags = match entries.remove(key)? {
        Some(bytes) => record::decode_meta(bytes.value()).map(|meta| meta.tags),
        None => None,
    };
    for tag in old_tags.unwrap_or_default() {
        tags.remove(tag.as_str(), key)?;
    }
    Ok(())
}

/// Logs failed fill batches at most once per [`ERROR_LOG_EVERY`], with how many failed.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl ErrorLog {
    fn log(&mut self, error: &redb::Error, ops: usize) {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|last| last.elapsed() < ERROR_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(%error, ops, failed_batches = self.unlogged, "disk cache: writing fills failed; they were dropped (the entries stay cached in memory)");
        self.last = Some(Instant::now());
        self.unlogged = 0;
    }
}
