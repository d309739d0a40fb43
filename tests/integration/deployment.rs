//! Deployment under systemd: `serve` tells a `Type=notify` unit when it is ready and when it
//! stops, over the datagram socket systemd names in `NOTIFY_SOCKET`, and the shipped unit
//! file passes `systemd-analyze verify` without a warning.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::net::UnixDatagram;

use anyhow::{Context, Result, bail, ensure};

use mcp_bridge_test_support::ensure_installed;

use crate::support::{Bridge, demo_server_toml, repo_root, start_bridge_with_env};

/// How long the bridge may take to start (a debug build on a busy machine) or to stop.
const NOTIFY_WAIT: Duration = Duration::from_secs(60);

/// Receives one datagram from `socket`, waiting at most [`NOTIFY_WAIT`]; a bridge that
/// says nothing in time fails the test with its log, which says why.
async fn receive(socket: &UnixDatagram, bridge: &Bridge, waiting_for: &str) -> Result<String> {
    let mut buffer = [0u8; 512];
    match tokio::time::timeout(NOTIFY_WAIT, socket.recv(&mut buffer)).await {
        Ok(received) => {
            let length = received.context("read the notify socket")?;
            Ok(String::from_utf8_lossy(&buffer[..length]).into_owned())
        }
        Err(_) => bail!(
            "systemd heard nothing within {NOTIFY_WAIT:?} while waiting for {waiting_for}; the bridge's log:\n{}",
            bridge.log_tail(60)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_once_the_bridge_serves_and_stopping_on_sigterm() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path)?;
    let notify_socket = path.display().to_string();
    let bridge = start_bridge_with_env(
        &demo_server_toml("demo", &[], "min_connections = 1"),
        &[("NOTIFY_SOCKET", &notify_socket)],
    )?;
    let ready = receive(&socket, &bridge, "READY=1").await?;
    ensure!(ready == "READY=1", "first notification was {ready:?}");
    // READY=1 is sent only once the listener is bound and every part has started, so the
    // bridge answers at once, without a retry.
    let (status, _) = bridge.get("/healthz").await?;
    ensure!(status == 200, "/healthz answered {status} after READY=1");
    bridge.signal(libc::SIGTERM);
    let stopping = receive(&socket, &bridge, "STOPPING=1").await?;
    ensure!(
        stopping == "STOPPING=1",
        "after SIGTERM systemd heard {stopping:?}"
    );
    let status = bridge.stop(NOTIFY_WAIT).await?;
    ensure!(status.success(), "the bridge exited with {status}");
    Ok(())
}

/// Where Debian's `systemd` package puts `systemd-analyze`.
const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

#[tokio::test]
async fn the_shipped_unit_passes_systemd_analyze_verify() -> Result<()> {
    let analyze = Path::new(SYSTEMD_ANALYZE);
    ensure_installed("systemd", analyze).await?;
    let unit = std::fs::read_to_string(repo_root().join("config/mcp-bridge.service"))?;
    // The settings the bridge's behaviour under systemd rests on: readiness, the memory cap,
    // SIGTERM to the bridge alone so that it can drain (the default control-group mode would
    // end every backend at once), and surviving a backend the kernel kills at MemoryMax.
    for setting in [
        "Type=notify",
        "MemoryMax=",
        "KillMode=mixed",
        "OOMPolicy=continue",
    ] {
        ensure!(
            unit.lines().any(|line| line.starts_with(setting)),
            "the unit lost {setting}"
        );
    }
    // verify checks that ExecStart's binary exists; point it at the one cargo built.
    let dir = tempfile::tempdir()?;
    let checked = dir.path().join("mcp-bridge.service");
    let exe = env!("CARGO_BIN_EXE_mcp-bridge");
    std::fs::write(&checked, unit.replace("/usr/local/bin/mcp-bridge", exe))?;
    let warnings = verify(analyze, &checked)?;
    ensure!(
        warnings.is_empty(),
        "systemd-analyze verify warns about the shipped unit:\n{warnings}"
    );
    // The check can fail, for parse errors (a misspelt key, a bad limit) and for the semantic
    // errors systemd reports naming only the unit, not its file: a restarting oneshot service
    // and an ExecStart that is not executable.
    let broken_units = [
        (
            "parse.service",
            format!(
                "[Service]\nType=notify\nExecStart={exe} serve\nMemoryMaks=2G\nMemoryMax=lots\n"
            ),
            &["MemoryMaks", "lots"][..],
        ),
        (
            "oneshot.service",
            format!("[Service]\nType=oneshot\nRestart=always\nExecStart={exe} serve\n"),
            &["Restart="][..],
        ),
        (
            "missing.service",
            "[Service]\nType=notify\nExecStart=/nonexistent/mcp-bridge serve\n".to_owned(),
            &["/nonexistent/mcp-bridge", "not executable"][..],
        ),
    ];
    for (name, text, expected) in broken_units {
        let broken = dir.path().join(name);
        std::fs::write(&broken, text)?;
        let warnings = verify(analyze, &broken)?;
        if !expected.iter().all(|needle| warnings.contains(needle)) {
            bail!("systemd-analyze verify missed {name}'s errors ({expected:?}):\n{warnings}");
        }
    }
    Ok(())
}

/// What `systemd-analyze verify` says about `unit` itself. Parse errors name the unit's file
/// by its path, semantic ones ("Service has Restart= set to ...", "Command ... is not
/// executable") only by the unit's name, so a line counts when it names the file's name;
/// lines about other units (the host's own) are left out.
fn verify(analyze: &Path, unit: &Path) -> Result<String> {
    let output = Command::new(analyze)
        .arg("verify")
        .arg(unit)
        .output()
        .context("run systemd-analyze verify")?;
    let name = unit
        .file_name()
        .context("the unit's path has a file name")?
        .to_string_lossy()
        .into_owned();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(text
        .lines()
        .filter(|line| line.contains(&name))
        .collect::<Vec<_>>()
        .join("\n"))
}
