//! Telling systemd the bridge is ready (`Type=notify` units): when `NOTIFY_SOCKET` is set,
//! `READY=1` is sent as one datagram to that socket once the listener is bound and every
//! part has started, and `STOPPING=1` when shutdown begins. Without the variable (not run
//! by systemd) nothing is sent. The protocol is one datagram of `KEY=VALUE` lines; a path
//! starting with `@` names a socket in the abstract namespace.

use std::os::unix::net::UnixDatagram;

/// Sends `state` to systemd if the bridge runs under it; a failure is logged, never fatal:
/// the unit's timeout says what went wrong more clearly than refusing to serve would.
pub(crate) fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = send(&socket.to_string_lossy(), state) {
        tracing::warn!(%error, state, "cannot notify systemd");
    }
}

fn send(socket: &str, state: &str) -> std::io::Result<()> {
    let datagram = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            datagram.send_to_addr(state.as_bytes(), &address)?;
        }
        None => {
            datagram.send_to(state.as_bytes(), socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reaches_a_path_socket() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("mcp-bridge-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path)?;
        send(&path.display().to_string(), "READY=1")?;
        let mut buffer = [0u8; 64];
        let length = listener.recv(&mut buffer)?;
        assert_eq!(&buffer[..length], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
