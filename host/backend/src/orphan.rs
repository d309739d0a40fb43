//! Keeps backend processes, and everything they start, from outliving their use.
//!
//! Two lines of defence. The first, on Linux when the binary registered itself with
//! [`supervise_with`] (the `mcp-bridge` binary does), is a supervisor per backend (the
//! bridge's own binary in its `__supervise` mode, see `subreaper.rs`): a child
//! subreaper that ends the server's whole tree, `setsid` and double-forked descendants
//! included, when the server exits, when the bridge stops it, or when the bridge dies.
//! The second, always, puts the spawned process (the supervisor, or the server itself
//! without one) in its own process group with a parent-death signal, and kills that
//! group when the process ends. The death signal follows the spawning thread; children
//! are spawned from tokio worker threads, which live as long as the runtime, so in
//! practice that is when the host process exits.

// libc calls (getpid, prctl for the parent-death signal, setpgid, killpg) have no safe
// wrapper in std; each block below is one such call with arguments it documents.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::process::Command;

/// The program that runs the supervisor mode, once registered.
static SUPERVISOR_PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Makes every backend spawned from now on start through `program __supervise`, which
/// must be the `mcp-bridge` binary. Only Linux has the subreaper; elsewhere this does
/// nothing. Library users that never call it (benches, embedders) keep direct spawning.
pub fn supervise_with(program: PathBuf) {
    if cfg!(target_os = "linux") {
        let _ = SUPERVISOR_PROGRAM.set(program);
    }
}

/// The registered supervisor program, if backends are to be supervised.
pub(super) fn supervisor_program() -> Option<&'static Path> {
    SUPERVISOR_PROGRAM.get().map(PathBuf::as_path)
}

/// Arranges for the child to receive `death_signal` when the host dies, and to lead
/// its own group. A supervisor gets SIGTERM (it catches it and ends the tree); a
/// server spawned directly gets SIGKILL.
pub(crate) fn die_with_parent(command: &mut Command, death_signal: i32) {
    #[cfg(unix)]
    {
        // SAFETY: getpid is async-signal-safe; it runs in the parent before the fork.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure only calls async-signal-safe functions (setpgid, prctl,
        // getppid, _exit) and touches no memory shared with the parent.
        unsafe {
            command.pre_exec(move || {
                libc::setpgid(0, 0);
                #[cfg(target_os = "linux")]
                {
                    libc::prctl(libc::PR_SET_PDEATHSIG, death_signal);
                    // The parent may have died between fork and prctl; then nobody
                    // will send the signal, so leave now.
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                }
                #[cfg(not(target_os = "linux"))]
                let _ = (parent, death_signal);
                Ok(())
            });
        }
    }
}

/// SIGKILLs the process group a child leads. Harmless when the group is already gone.
pub(crate) fn kill_group(pid: u32) {
    #[cfg(unix)]
    if let Some(pid) = child_pid(pid) {
        // SAFETY: kill has no memory-safety preconditions; a negative pid names the
        // group this host created for the child, never the host's own group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// Sends `signal` to one process this host spawned. Harmless when it is gone.
pub(crate) fn signal(pid: u32, signal: i32) {
    #[cfg(unix)]
    if let Some(pid) = child_pid(pid) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child,
        // not yet reaped, so it cannot name another process.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// A child's pid as the kernel takes it; `None` for values that would name init, every
/// process (0, -1) or a group by accident.
#[cfg(unix)]
fn child_pid(pid: u32) -> Option<libc::pid_t> {
    libc::pid_t::try_from(pid).ok().filter(|pid| *pid > 1)
}

/// Fails the way spawning would when `command` names no program, so that a missing
/// server is still reported at once as a spawn error when it is started through the
/// supervisor (which could only report it as an early exit). Only names without a
/// `/` are looked up on PATH (the server's own, when its env sets one); a path is
/// left to exec, which resolves a relative one against the server's `cwd`.
pub(super) fn check_program(command: &str, path_var: Option<&str>) -> std::io::Result<()> {
    if command.contains('/') {
        if Path::new(command).is_absolute() && !Path::new(command).exists() {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        }
        return Ok(());
    }
    let path_var = match path_var {
        Some(path) => path.to_owned(),
        None => std::env::var("PATH").unwrap_or_default(),
    };
    let found = std::env::split_paths(&path_var).any(|dir| is_executable(&dir.join(command)));
    if found {
        Ok(())
    } else {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    }
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// The first live child `parent` started: for a supervisor, the server command itself
/// (orphans re-parented to it later started later). Ties within one clock tick go to the
/// lower pid.
pub(super) fn first_child(parent: u32) -> Option<u32> {
    super::procfs::process_table()
        .into_iter()
        .filter(|entry| entry.parent == parent && !entry.zombie)
        .min_by_key(|entry| (entry.started, entry.pid))
        .map(|entry| entry.pid)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::procfs::descendants;

    #[test]
    fn a_missing_program_is_reported_as_not_found_before_spawning() {
        let missing = check_program("no-such-program-mcp-bridge-test", None)
            .expect_err("a name on no PATH directory");
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        let absolute = check_program("/nonexistent/mcp-bridge-test/server", None)
            .expect_err("an absolute path that does not exist");
        assert_eq!(absolute.kind(), std::io::ErrorKind::NotFound);
        assert!(check_program("sh", None).is_ok());
        assert!(
            check_program("sh", Some("/nonexistent")).is_err(),
            "the server's own PATH is the one searched"
        );
        assert!(check_program("./relative/left/to/exec", None).is_ok());
    }

    #[test]
    fn the_walk_finds_grandchildren_and_the_first_child() {
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .expect("sh runs");
        let me = std::process::id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut found = Vec::new();
        while Instant::now() < deadline {
            found = descendants(me)
                .into_iter()
                .filter(|entry| entry.parent == shell.id())
                .collect();
            if found.len() == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = first_child(shell.id());
        for entry in &found {
            signal(entry.pid, libc::SIGKILL);
        }
        let _ = shell.kill();
        let _ = shell.wait();
        assert_eq!(found.len(), 2, "both sleeps are the shell's children");
        assert!(
            descendants(me).iter().all(|entry| entry.pid != me),
            "the root is not its own descendant"
        );
        assert!(
            first.is_some_and(|pid| found.iter().any(|entry| entry.pid == pid)),
            "the first child is one of the shell's: {first:?} in {found:?}"
        );
    }
}
