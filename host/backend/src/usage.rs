//! What a backend uses: the resident memory and CPU time of its whole process tree, read
//! from one `/proc` table (`procfs.rs`). A server started as `npx pkg`, `uvx pkg`,
//! `sh -c …` or `docker run …` is a wrapper whose real server is a descendant, so the
//! tree, not the command's own process, is what leaks and what is measured.
//!
//! Under a supervisor (`subreaper.rs`) the tree is everything below it: the server command,
//! its descendants, and orphans re-parented to the supervisor. The supervisor's own memory
//! and CPU are the bridge's overhead and are left out, but the CPU time of the server
//! processes it has reaped is counted, so a tree's CPU time does not fall when one of its
//! processes exits.

use super::procfs::{self, ProcTable};

/// One sample of what a backend's process tree uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub resident_bytes: u64,
    pub cpu_seconds: f64,
}

/// Where a backend's tree starts, as [`of_tree`] measures it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeRoot {
    pub pid: u32,
    /// The supervisor, whose own memory and CPU are not the server's.
    pub is_supervisor: bool,
    /// The root's start time when it was first measured: a root with another start time
    /// is another process that reuses the pid, and is not measured.
    pub started: Option<u64>,
}

/// What the tree under `root` uses in `table`, with the root's start time; `None` when the
/// root is gone (or its pid now names another process).
pub(crate) fn of_tree(table: &ProcTable, root: TreeRoot) -> Option<(Usage, u64)> {
    let entry = table.get(root.pid)?;
    if root.started.is_some_and(|started| started != entry.started) {
        return None;
    }
    let members = table.descendants(root.pid);
    let mut pages: u64 = members.iter().map(|member| member.resident_pages).sum();
    let mut ticks: u64 = members
        .iter()
        .map(|member| {
            member
                .own_ticks
                .saturating_add(member.reaped_children_ticks)
        })
        .sum();
    ticks = ticks.saturating_add(entry.reaped_children_ticks);
    if !root.is_supervisor {
        pages = pages.saturating_add(entry.resident_pages);
        ticks = ticks.saturating_add(entry.own_ticks);
    }
    let (ticks_per_second, page_size) = procfs::units();
    let usage = Usage {
        resident_bytes: pages.saturating_mul(page_size),
        cpu_seconds: ticks as f64 / ticks_per_second,
    };
    Some((usage, entry.started))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::ProcEntry;

    fn entry(pid: u32, parent: u32, pages: u64, own: u64, reaped: u64) -> ProcEntry {
        ProcEntry {
            pid,
            parent,
            zombie: false,
            started: u64::from(pid) * 10,
            own_ticks: own,
            reaped_children_ticks: reaped,
            resident_pages: pages,
        }
    }

    /// A supervisor (10) running `npx` (11), whose shell (12) runs the real server (13),
    /// beside an unrelated process (20) and the bridge (1).
    fn table() -> ProcTable {
        ProcTable::new(vec![
            entry(1, 0, 1000, 500, 0),
            entry(10, 1, 50, 7, 40),
            entry(11, 10, 100, 20, 0),
            entry(12, 11, 10, 1, 0),
            entry(13, 12, 5000, 300, 0),
            entry(20, 1, 9999, 999, 0),
        ])
    }

    #[test]
    fn a_supervised_tree_counts_every_descendant_but_not_the_supervisor() {
        let (ticks_per_second, page) = procfs::units();
        let root = TreeRoot {
            pid: 10,
            is_supervisor: true,
            started: None,
        };
        let (usage, started) = of_tree(&table(), root).expect("the root is listed");
        assert_eq!(started, 100);
        assert_eq!(usage.resident_bytes, (100 + 10 + 5000) * page);
        // The processes' own time, and the time of those the supervisor reaped (40).
        let ticks = 20 + 1 + 300 + 40;
        assert!((usage.cpu_seconds - ticks as f64 / ticks_per_second).abs() < 1e-9);
    }

    #[test]
    fn an_unsupervised_root_counts_itself() {
        let (_, page) = procfs::units();
        let root = TreeRoot {
            pid: 11,
            is_supervisor: false,
            started: Some(110),
        };
        let (usage, _) = of_tree(&table(), root).expect("the root is listed");
        assert_eq!(usage.resident_bytes, (100 + 10 + 5000) * page);
    }

    #[test]
    fn a_reused_pid_or_a_missing_root_is_not_measured() {
        let reused = TreeRoot {
            pid: 10,
            is_supervisor: true,
            started: Some(99),
        };
        assert_eq!(of_tree(&table(), reused), None);
        let gone = TreeRoot {
            pid: 77,
            is_supervisor: true,
            started: None,
        };
        assert_eq!(of_tree(&table(), gone), None);
    }
}
