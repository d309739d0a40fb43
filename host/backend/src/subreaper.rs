//! The supervisor mode of the bridge's own binary: one small process per backend that
//! owns the backend's whole process tree, so that no descendant outlives it.
//!
//! `mcp-bridge __supervise COMMAND [ARGS...]` is dispatched in `main()` before any
//! runtime or thread starts. It marks itself a child subreaper, so every descendant
//! that loses its parent (a wrapper such as `sh -c` or `npx` exiting, a double fork, a
//! `setsid` daemon) is re-parented to it instead of to init. It starts COMMAND with
//! the inherited stdin, stdout and stderr and drops its own copies of stdin and stdout,
//! so the bridge still sees EOF exactly when the server closes its stdout. It ends the
//! whole tree when any of these happens:
//!
//! - the direct child exits (the server, or a wrapper that crashed leaving children);
//! - the bridge asks it to stop (SIGTERM; also SIGINT, SIGHUP, SIGQUIT);
//! - the bridge dies: the kernel sends SIGTERM (`PR_SET_PDEATHSIG`, set by the bridge
//!   before exec), and as a second line the supervisor notices its parent changed.
//!
//! Ending the tree means SIGTERM to every descendant, SIGKILL after a short grace,
//! repeated until none is left (bounded), reaping each. The supervisor then exits
//! with the direct child's status (re-raising its signal), so the bridge reports the
//! server's own exit.
//!
//! Limits: a process that leaves the subtree (re-parented by a tracer, or started by
//! another daemon such as a D-Bus or systemd activation on the server's request) is out
//! of reach, and a supervisor that is itself SIGKILLed by someone else leaves what it
//! had not ended yet to the bridge's process-group kill (which misses `setsid`
//! descendants). No cgroup or PID namespace is needed or used.

// The subreaper needs prctl, sigprocmask, sigwait and waitpid, which std does not wrap;
// each unsafe block is one such libc call.
#![allow(unsafe_code)]

/// The hidden subcommand that runs the supervisor mode.
pub(crate) const SUBCOMMAND: &str = "__supervise";

/// Runs the supervisor mode when the process was started as `mcp-bridge __supervise
/// ...`, and returns its exit code; `None` for any other command line. Call it first
/// thing in `main()`, before any thread exists: it blocks signals and forks.
pub fn run_if_requested() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != SUBCOMMAND {
        return None;
    }
    Some(run(args.collect()))
}

#[cfg(not(target_os = "linux"))]
fn run(_args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    // The bridge only spawns through the supervisor on Linux.
    eprintln!("mcp-bridge supervisor: only supported on Linux");
    std::process::ExitCode::from(2)
}

#[cfg(target_os = "linux")]
fn run(args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    linux::run(args)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::OsString;
    use std::os::unix::process::CommandExt;
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use libc::c_int;

    use crate::procfs::descendants;

    /// How long one wait for a signal lasts; the parent check runs this often.
    const POLL: Duration = Duration::from_millis(200);

    /// How long descendants get to exit after SIGTERM before they are SIGKILLed.
    const TERM_GRACE: Duration = Duration::from_millis(500);

    /// The longest the supervisor spends ending the tree before it gives up and exits.
    const TEARDOWN_BOUND: Duration = Duration::from_secs(5);

    /// The pause between two rounds of ending the tree.
    const ROUND_PAUSE: Duration = Duration::from_millis(10);

    /// Exit code when the command cannot be started, as a shell uses.
    const CANNOT_START: u8 = 127;

    /// Signals that ask the supervisor to end the tree. SIGTERM is also the
    /// parent-death signal the bridge sets.
    const STOP_SIGNALS: [c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

    pub(super) fn run(args: Vec<OsString>) -> ExitCode {
        let Some((program, args)) = args.split_first() else {
            eprintln!("mcp-bridge supervisor: no command given");
            return ExitCode::from(2);
        };
        // SAFETY: getppid has no preconditions.
        let bridge = unsafe { libc::getppid() };
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            eprintln!(
                "mcp-bridge supervisor: cannot become a subreaper: {}",
                std::io::Error::last_os_error()
            );
        }
        let mut waited_for = signal_set(&STOP_SIGNALS);
        // SAFETY: waited_for is an initialised set.
        unsafe { libc::sigaddset(&mut waited_for, libc::SIGCHLD) };
        // Blocked signals stay pending until sigtimedwait takes them, so none is lost
        // between two waits and no handler runs at an awkward moment.
        // SAFETY: the set is initialised; this process is single-threaded.
        unsafe { libc::sigprocmask(libc::SIG_BLOCK, &waited_for, std::ptr::null_mut()) };

        let child = match start(program, args) {
            Ok(child) => child,
            Err(error) => {
                eprintln!(
                    "mcp-bridge supervisor: cannot start `{}`: {error}",
                    program.to_string_lossy()
                );
                return ExitCode::from(CANNOT_START);
            }
        };
        release_stdio();

        let mut status = None;
        let mut reason = "the server exited";
        loop {
            reap(child, &mut status);
            if status.is_some() {
                break;
            }
            // SAFETY: getppid has no preconditions.
            if unsafe { libc::getppid() } != bridge {
                reason = "the bridge is gone";
                break;
            }
            if let Some(signal) = wait_signal(&waited_for, POLL)
                && STOP_SIGNALS.contains(&signal)
            {
                reason = "the bridge asked it to stop";
                break;
            }
        }
        end_tree(child, &mut status, reason);
        exit_like(status)
    }

    /// Starts the command with this process's stdio, unblocked signals, and a death
    /// signal tied to this supervisor.
    fn start(program: &OsString, args: &[OsString]) -> std::io::Result<c_int> {
        let supervisor = std::process::id() as libc::pid_t;
        let empty = signal_set(&[]);
        let mut command = std::process::Command::new(program);
        command.args(args);
        // SAFETY: the closure calls only async-signal-safe functions (sigprocmask,
        // prctl, getppid, _exit) on memory copied into it before the fork.
        unsafe {
            command.pre_exec(move || {
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != supervisor {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        // The child is reaped with waitpid below, never through `Child`.
        Ok(child.id() as c_int)
    }

    /// Points this process's stdin and stdout at /dev/null, so the server (and what it
    /// starts) holds the only copies of the bridge's pipes. Stderr stays: the
    /// supervisor's own messages go to the bridge's backend log.
    fn release_stdio() {
        let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        else {
            return;
        };
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto the standard descriptors; `null` stays open meanwhile.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }

    fn signal_set(signals: &[c_int]) -> libc::sigset_t {
        // SAFETY: a zeroed sigset_t is valid storage; sigemptyset initialises it and
        // sigaddset only sets bits in it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in signals {
                libc::sigaddset(&mut set, *signal);
            }
            set
        }
    }

    /// Waits up to `timeout` for one of the blocked signals in `set`.
    fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<c_int> {
        let timeout = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: every pointer is to a live, initialised value; info may be null.
        let signal = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
        (signal > 0).then_some(signal)
    }

    /// Reaps every child that has exited (the server and re-parented orphans),
    /// keeping the server's status. Returns whether any child is left.
    fn reap(server: c_int, status: &mut Option<c_int>) -> bool {
        loop {
            let mut raw = 0;
            // SAFETY: raw is a live c_int; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid == server {
                *status = Some(raw);
            }
            match pid {
                0 => return true,
                pid if pid < 0 => return false,
                _ => {}
            }
        }
    }

    /// Ends every descendant: SIGTERM, then SIGKILL after `TERM_GRACE`, repeated until
    /// no descendant is left or `TEARDOWN_BOUND` passes.
    fn end_tree(server: c_int, status: &mut Option<c_int>, reason: &str) {
        let me = std::process::id();
        let started = Instant::now();
        let mut termed = false;
        loop {
            let children_left = reap(server, status);
            let live: Vec<u32> = descendants(me)
                .into_iter()
                .filter(|entry| !entry.zombie)
                .map(|entry| entry.pid)
                .collect();
            if live.is_empty() && !children_left {
                return;
            }
            if started.elapsed() >= TEARDOWN_BOUND {
                eprintln!(
                    "mcp-bridge supervisor: {} process(es) still running after {TEARDOWN_BOUND:?} ({reason}): {live:?}",
                    live.len()
                );
                return;
            }
            let signal = if !termed {
                libc::SIGTERM
            } else if started.elapsed() >= TERM_GRACE {
                libc::SIGKILL
            } else {
                0
            };
            if signal != 0 {
                for pid in &live {
                    // SAFETY: kill has no memory-safety preconditions. Each pid is a
                    // descendant just read from /proc. One that exits meanwhile stays a
                    // zombie (its pid unused) until its parent reaps it; only a parent
                    // inside the tree reaping it in this very instant, and the pid being
                    // reused at once, could misdirect the signal.
                    unsafe { libc::kill(*pid as libc::pid_t, signal) };
                }
                termed = true;
            }
            std::thread::sleep(ROUND_PAUSE);
        }
    }

    /// Exits with the server's status: its exit code, or the signal that ended it.
    fn exit_like(status: Option<c_int>) -> ExitCode {
        let Some(status) = status else {
            return ExitCode::FAILURE;
        };
        if libc::WIFEXITED(status) {
            return ExitCode::from(libc::WEXITSTATUS(status) as u8);
        }
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            let set = signal_set(&[signal]);
            // SAFETY: resetting a disposition, unblocking and raising a signal in a
            // single-threaded process that is about to exit.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::raise(signal);
            }
            return ExitCode::from(128u8.saturating_add(signal as u8));
        }
        ExitCode::FAILURE
    }
}
