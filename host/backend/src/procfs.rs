//! The one reader of `/proc/PID/stat`: every process's parent, state, start time, CPU
//! times and resident pages, for the no-orphan walk (`orphan.rs`, `subreaper.rs`) and for
//! what a backend's process tree uses (`usage.rs`). Without `/proc` (not Linux) the table
//! is empty: no walk finds anything and nothing is measured.

// sysconf has no safe wrapper in std; the one block below asks for two constants.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcEntry {
    pub pid: u32,
    pub parent: u32,
    pub zombie: bool,
    /// When it started, in clock ticks since boot: with the pid, it names one process
    /// (a pid alone may be reused once its process is reaped).
    pub started: u64,
    /// CPU time it has had itself (`utime + stime`), in clock ticks.
    pub own_ticks: u64,
    /// CPU time of its children that it has reaped (`cutime + cstime`), in clock ticks.
    pub reaped_children_ticks: u64,
    /// Resident pages (`rss`).
    pub resident_pages: u64,
}

/// Parses one `/proc/PID/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from its last `)`: state is the 1st after it,
/// the parent the 2nd, utime/stime/cutime/cstime the 12th to 15th, starttime the 20th
/// and rss the 22nd.
pub(crate) fn parse_stat(pid: u32, stat: &str) -> Option<ProcEntry> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().take(22).collect();
    let number = |index: usize| -> Option<u64> { fields.get(index)?.parse().ok() };
    let state = *fields.first()?;
    Some(ProcEntry {
        pid,
        parent: u32::try_from(number(1)?).ok()?,
        zombie: state == "Z" || state == "X",
        own_ticks: number(11)?.saturating_add(number(12)?),
        reaped_children_ticks: number(13)?.saturating_add(number(14)?),
        started: number(19)?,
        resident_pages: number(21)?,
    })
}

/// Every process in /proc (empty where there is no /proc).
pub(crate) fn process_table() -> Vec<ProcEntry> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_stat(pid, &stat)
        })
        .collect()
}

/// A snapshot of the process table with each process's children indexed, so walking a
/// tree costs its size, not the table's.
pub(crate) struct ProcTable {
    entries: Vec<ProcEntry>,
    children: HashMap<u32, Vec<usize>>,
}

impl ProcTable {
    pub(crate) fn new(entries: Vec<ProcEntry>) -> ProcTable {
        let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            children.entry(entry.parent).or_default().push(index);
        }
        ProcTable { entries, children }
    }

    /// The table now, read at most once per [`SHARED_TABLE_MAX_AGE`] for the whole bridge:
    /// every pool's sampler (one per server and per isolated group) shares it, so a bridge
    /// with many pools still reads `/proc` about once a second.
    pub(crate) fn shared() -> Arc<ProcTable> {
        static SHARED: Mutex<Option<(Instant, Arc<ProcTable>)>> = Mutex::new(None);
        let mut shared = SHARED.lock();
        if let Some((read_at, table)) = shared.as_ref()
            && read_at.elapsed() < SHARED_TABLE_MAX_AGE
        {
            return table.clone();
        }
        let table = Arc::new(ProcTable::new(process_table()));
        *shared = Some((Instant::now(), table.clone()));
        table
    }

    pub(crate) fn get(&self, pid: u32) -> Option<&ProcEntry> {
        self.entries.iter().find(|entry| entry.pid == pid)
    }

    /// Every process whose chain of parents leads to `root` (not `root` itself).
    pub(crate) fn descendants(&self, root: u32) -> Vec<ProcEntry> {
        let mut found: Vec<ProcEntry> = Vec::new();
        let mut frontier = vec![root];
        while let Some(parent) = frontier.pop() {
            for &index in self.children.get(&parent).into_iter().flatten() {
                let entry = self.entries[index];
                // A pid appears once in the table, so the walk ends even if the table was
                // read while processes changed parents.
                if entry.pid != root && !found.iter().any(|seen| seen.pid == entry.pid) {
                    found.push(entry);
                    frontier.push(entry.pid);
                }
            }
        }
        found
    }
}

/// How old the shared table may be; just under the samplers' one-second period, so each
/// sample sees a table read for it.
const SHARED_TABLE_MAX_AGE: Duration = Duration::from_millis(900);

/// Every process whose chain of parents leads to `root` now (not `root` itself).
pub(crate) fn descendants(root: u32) -> Vec<ProcEntry> {
    ProcTable::new(process_table()).descendants(root)
}

/// Clock ticks per second of the CPU times in `stat` (`USER_HZ`), and the page size.
pub(crate) fn units() -> (f64, u64) {
    static UNITS: OnceLock<(f64, u64)> = OnceLock::new();
    *UNITS.get_or_init(|| {
        // SAFETY: sysconf reads two constants of the running system and has no
        // preconditions; a failure (-1) falls back to Linux's usual values.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
        let page = u64::try_from(page).ok().filter(|page| *page > 0);
        (ticks, page.unwrap_or(4096))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis must not shift the fields.
        let stat = "42 (my (odd) srv) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 1 0 5555 1000 321 18446744073709551615";
        let entry = parse_stat(42, stat).expect("a whole line parses");
        assert_eq!(entry.parent, 7);
        assert!(!entry.zombie);
        assert_eq!(entry.own_ticks, 300);
        assert_eq!(entry.reaped_children_ticks, 50);
        assert_eq!(entry.started, 5555);
        assert_eq!(entry.resident_pages, 321);
        assert_eq!(parse_stat(42, "42 (short"), None);
        assert_eq!(parse_stat(42, "42 (cut) S 1 42 42"), None);
    }

    #[test]
    fn this_process_is_in_the_table_with_its_memory() {
        let me = std::process::id();
        let table = process_table();
        let entry = table.iter().find(|entry| entry.pid == me);
        assert!(
            entry.is_some_and(|entry| entry.resident_pages > 0 && entry.started > 0),
            "{entry:?}"
        );
        let (ticks, page) = units();
        assert!(ticks >= 100.0 && page >= 4096, "{ticks} {page}");
    }
}
