//! What the harness does the same way for every third-party service it runs for real
//! (redis-server, nginx, prometheus) or tool it calls (systemd-analyze): install the Debian
//! package when its binary is missing, pick a free loopback port, signal by pid, and wait for
//! an exit with a bound.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};

use crate::repo::repo_root;

/// How long `scripts/install-services.sh` may take (an `apt-get update` and install).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// How often a wait for a process reads its state again.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(10);

/// Installs the Debian `package` with `scripts/install-services.sh` when `binary` is missing
/// (the script is idempotent and serialises concurrent callers with a lock), so a test never
/// skips for want of a service or tool (`systemd` for `systemd-analyze`, say).
pub async fn ensure_installed(package: &str, binary: &Path) -> Result<()> {
    if binary.is_file() {
        return Ok(());
    }
    let mut command = tokio::process::Command::new("bash");
    command
        .arg(repo_root().join("scripts/install-services.sh"))
        .arg(package)
        .kill_on_drop(true);
    let output = tokio::time::timeout(INSTALL_TIMEOUT, command.output())
        .await
        .with_context(|| {
            format!("scripts/install-services.sh {package} ran past {INSTALL_TIMEOUT:?}")
        })?
        .context("run scripts/install-services.sh")?;
    ensure!(
        output.status.success(),
        "scripts/install-services.sh {package} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        binary.is_file(),
        "scripts/install-services.sh {package} succeeded but {} is missing",
        binary.display()
    );
    Ok(())
}

/// How many free ports a service is tried on before its start fails.
const START_ATTEMPTS: usize = 3;

/// A service the harness runs on a free loopback port.
pub(crate) trait LoopbackService {
    /// Its name, for the error when it never starts.
    const NAME: &'static str;
    /// Sets the port the next launch binds.
    fn set_port(&mut self, port: u16);
    /// Starts the process on the port set and waits until it serves.
    async fn launch_on_port(&mut self) -> Result<()>;
    /// Whether the last launch failed because another process had taken the port.
    fn port_was_taken(&self) -> bool;
}

/// Starts `service` on a free loopback port: another process may take the port between the
/// check and the bind, so a launch that failed for that is tried again on another port, up
/// to [`START_ATTEMPTS`] times.
pub(crate) async fn start_on_a_free_port<S: LoopbackService>(service: &mut S) -> Result<()> {
    let mut last_error = None;
    for _ in 0..START_ATTEMPTS {
        service.set_port(free_port()?);
        match service.launch_on_port().await {
            Ok(()) => return Ok(()),
            Err(error) if service.port_was_taken() => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("{} never started", S::NAME)))
}

/// A loopback port nothing listens on right now. The port is released before the caller's
/// service binds it, so another process may take it in between: callers that start a
/// service on it retry with a new port when the bind fails.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a free port")?;
    Ok(listener.local_addr().context("read the bound port")?.port())
}

/// Sends `signal` to `pid`.
pub(crate) fn signal(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; callers only signal a child they
    // have not reaped yet, so the pid cannot have been reused.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits without blocking the runtime for `child` to exit, at most `timeout`; `None` if it
/// is still running then.
pub(crate) async fn wait_exit(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("wait for the process")? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Stops `child` with SIGTERM and waits for it at most `timeout`; past that it is killed
/// (SIGKILL) and reaped, and the stop fails naming `what`.
pub(crate) async fn terminate(child: &mut Child, what: &str, timeout: Duration) -> Result<()> {
    signal(child.id(), libc::SIGTERM);
    if wait_exit(child, timeout).await?.is_some() {
        return Ok(());
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("{what} did not stop within {timeout:?} of SIGTERM and was killed")
}

/// The last `lines` lines of a log file, for error messages (empty if it cannot be read).
pub(crate) fn file_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
