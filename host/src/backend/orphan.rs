//! Keeps backend processes from outliving the host, even when the host is SIGKILLed.
//!
//! Each child is put in its own process group (so a wrapper such as `npx` and what it
//! starts can be ended together) and, on Linux, asks the kernel to SIGKILL it when the
//! thread that spawned it exits. Children are spawned from tokio worker threads, which
//! live as long as the runtime, so in practice that is when the host process exits.

use tokio::process::Command;

/// Arranges for the child to be killed when the host dies, and to lead its own group.
pub fn die_with_parent(command: &mut Command) {
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
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    // The parent may have died between fork and prctl; then nobody
                    // will send the signal, so leave now.
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                }
                #[cfg(not(target_os = "linux"))]
                let _ = parent;
                Ok(())
            });
        }
    }
}

/// SIGKILLs the process group a child leads. Harmless when the group is already gone.
pub fn kill_group(pid: u32) {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return;
        };
        if pid <= 1 {
            return;
        }
        // SAFETY: kill has no memory-safety preconditions; a negative pid names the
        // group this host created for the child, never the host's own group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}
