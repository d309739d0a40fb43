//! The task state kept in a file that several demo processes share (`--state-file`), such
//! as the backends of several bridge replicas: a write through one process is seen by the
//! next read through any other, as if they were one server with one database.
//!
//! Every access locks the file (shared to read, exclusive to write), loads the state from it
//! (an empty file is the seed state), applies the call, and, for a write that changed
//! something, writes the state back before unlocking. The file locks (`flock`) exclude
//! other processes; threads of one process share one open file and so one lock, so an
//! in-process read-write lock orders them first. The state is small and the critical
//! sections short, so the blocking I/O is done in place on the caller's thread.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use parking_lot::RwLock;

use super::store::{SavedStateError, Store};

/// The largest state file loaded; a larger one is refused rather than read. The state
/// grows by about a hundred bytes per task created, so this is millions of writes.
const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// Why the shared state could not be used; the call that needed it fails with this.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateFileError {
    /// The file could not be opened or created.
    #[error("cannot open the state file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    /// Locking, reading or writing failed.
    #[error("cannot {action} the state file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file is larger than [`MAX_STATE_BYTES`].
    #[error("the state file {path} holds {bytes} bytes, more than the {MAX_STATE_BYTES} allowed")]
    TooLarge { path: PathBuf, bytes: u64 },
    /// The file holds something other than a saved state.
    #[error("the state file {path} is unusable: {source}")]
    Corrupt {
        path: PathBuf,
        source: SavedStateError,
    },
    /// The state could not be encoded (not expected with the store's own types).
    #[error("cannot encode the state for {path}: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Whether an access only reads the state or may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// A shared lock; the state is never written back.
    Read,
    /// An exclusive lock; the state is written back if the call changed it.
    Write,
}

/// The shared state file, open for the life of the process.
#[derive(Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
    file: File,
    /// Orders this process's threads, which all share `file`'s one lock.
    threads: RwLock<()>,
}

impl StateFile {
    /// Opens `path`, creating it empty (the seed state) if it does not exist. It is never
    /// truncated here: another process may be using it.
    pub(crate) fn open(path: &Path) -> Result<Self, StateFileError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| StateFileError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            file,
            threads: RwLock::new(()),
        })
    }

    /// Loads the state under the lock `access` asks for, applies `call` to it, and for a
    /// write that changed the state saves it, all before the lock is released.
    pub(crate) fn with_store<R>(
        &self,
        access: Access,
        call: impl FnOnce(&mut Store) -> R,
    ) -> Result<R, StateFileError> {
        match access {
            Access::Read => {
                let _threads = self.threads.read();
                let _lock = self.lock(Access::Read)?;
                let mut store = self.load()?;
                Ok(call(&mut store))
            }
            Access::Write => {
                let _threads = self.threads.write();
                let _lock = self.lock(Access::Write)?;
                let before = self.load()?;
                let mut store = before.clone();
                let result = call(&mut store);
                if !store.same_state(&before) {
                    self.save(&store)?;
                }
                Ok(result)
            }
        }
    }

    fn lock(&self, access: Access) -> Result<FileLock<'_>, StateFileError> {
        let locked = match access {
            Access::Read => self.file.lock_shared(),
            Access::Write => self.file.lock(),
        };
        locked.map_err(|source| self.io_error("lock", source))?;
        Ok(FileLock { file: &self.file })
    }

    /// The state in the file; the seed state while the file is empty.
    fn load(&self) -> Result<Store, StateFileError> {
        let bytes = self
            .file
            .metadata()
            .map_err(|source| self.io_error("read", source))?
            .len();
        if bytes == 0 {
            return Ok(Store::seeded());
        }
        if bytes > MAX_STATE_BYTES {
            return Err(StateFileError::TooLarge {
                path: self.path.clone(),
                bytes,
            });
        }
        let length = usize::try_from(bytes).map_err(|_| StateFileError::TooLarge {
            path: self.path.clone(),
            bytes,
        })?;
        let mut contents = vec![0; length];
        // Positioned reads and writes: threads holding the shared lock together read
        // through one file handle, whose cursor they would otherwise move under each other.
        self.file
            .read_exact_at(&mut contents, 0)
            .map_err(|source| self.io_error("read", source))?;
        Store::from_saved(&contents).map_err(|source| StateFileError::Corrupt {
            path: self.path.clone(),
            source,
        })
    }

    /// Replaces the file's contents with `store`'s state. In place rather than through a
    /// renamed temporary file: the lock belongs to the open file, and a rename would give
    /// the path a new file that other processes lock separately.
    fn save(&self, store: &Store) -> Result<(), StateFileError> {
        let contents = store.to_saved().map_err(|source| StateFileError::Encode {
            path: self.path.clone(),
            source,
        })?;
        self.file
            .write_all_at(&contents, 0)
            .map_err(|source| self.io_error("write", source))?;
        let length = u64::try_from(contents.len()).unwrap_or(u64::MAX);
        self.file
            .set_len(length)
            .map_err(|source| self.io_error("write", source))
    }

    fn io_error(&self, action: &'static str, source: io::Error) -> StateFileError {
        StateFileError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}

/// Releases the file lock when the access ends, however it ends.
struct FileLock<'a> {
    file: &'a File,
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; an unlock that fails leaves nothing to do.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StatusFilter;

    fn titles(store: &Store) -> Vec<String> {
        store
            .tasks(StatusFilter::All, None, None)
            .unwrap_or_default()
            .iter()
            .map(|task| task.title.clone())
            .collect()
    }

    fn open(path: &Path) -> StateFile {
        match StateFile::open(path) {
            Ok(file) => file,
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn an_empty_file_is_the_seed_state_and_reads_never_write() {
        let dir = tempfile::tempdir().ok();
        let path = dir.as_ref().map(|d| d.path().join("state.json"));
        let path = path.unwrap_or_default();
        let file = open(&path);
        let seen = file.with_store(Access::Read, |store| titles(store));
        assert_eq!(seen.ok(), Some(titles(&Store::seeded())));
        // A read that changes its copy of the state changes nothing on disk.
        let created = file.with_store(Access::Read, |store| {
            store.create_task("lost", None, 1).map(|task| task.id).ok()
        });
        assert_eq!(created.ok().flatten(), Some(6));
        assert_eq!(std::fs::metadata(&path).map(|m| m.len()).ok(), Some(0));
    }

    #[test]
    fn two_handles_on_one_file_see_each_others_writes() {
        let dir = tempfile::tempdir().ok();
        let path = dir.as_ref().map(|d| d.path().join("state.json"));
        let path = path.unwrap_or_default();
        let (first, second) = (open(&path), open(&path));
        let created = first.with_store(Access::Write, |store| {
            store
                .create_task("Shared", Some("acme"), 2)
                .map(|task| task.id)
                .ok()
        });
        assert_eq!(created.ok().flatten(), Some(6));
        let seen = second.with_store(Access::Read, |store| titles(store));
        assert!(
            seen.ok()
                .is_some_and(|titles| titles.last().map(String::as_str) == Some("Shared"))
        );
        // The next id comes from the file, so the second handle's create takes 7.
        let created = second.with_store(Access::Write, |store| {
            store.create_task("Next", None, 1).map(|task| task.id).ok()
        });
        assert_eq!(created.ok().flatten(), Some(7));
        let count = first.with_store(Access::Read, |store| store.metrics().total_tasks);
        assert_eq!(count.ok(), Some(7));
    }

    #[test]
    fn a_refused_write_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().ok();
        let path = dir.as_ref().map(|d| d.path().join("state.json"));
        let path = path.unwrap_or_default();
        let file = open(&path);
        let refused = file.with_store(Access::Write, |store| store.complete_task(99).is_err());
        assert_eq!(refused.ok(), Some(true));
        assert_eq!(std::fs::metadata(&path).map(|m| m.len()).ok(), Some(0));
    }

    #[test]
    fn a_corrupt_file_fails_the_call_with_its_path() {
        let dir = tempfile::tempdir().ok();
        let path = dir.as_ref().map(|d| d.path().join("state.json"));
        let path = path.unwrap_or_default();
        assert!(std::fs::write(&path, "not json").is_ok());
        let file = open(&path);
        let error = file
            .with_store(Access::Read, |_| ())
            .err()
            .map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("state.json") && e.contains("unusable")),
            "{error:?}"
        );
    }
}
