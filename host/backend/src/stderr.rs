//! Forwards a backend's stderr to the host log, one event per line, tagged with the server.

use std::sync::Arc;

use tokio::io::BufReader;
use tokio::process::ChildStderr;

use super::framing::{Frame, LineReader};
use super::process::Process;

/// Logs every stderr line until the pipe closes. Servers use stderr for their own
/// logs, so lines go out at info level under the `backend` target.
pub(crate) async fn log_lines(stderr: ChildStderr, process: Arc<Process>, max_line_bytes: usize) {
    let mut reader = LineReader::new(BufReader::new(stderr), max_line_bytes);
    let server = process.server().clone();
    loop {
        let frame = reader.next_frame().await;
        // Read per line: the server's own pid is learnt after the handshake.
        let pid = process.pid();
        match frame {
            Ok(Frame::Line(line)) => {
                let line = String::from_utf8_lossy(&line);
                tracing::info!(target: "backend", server = %server, pid, "{}", line.trim_end());
            }
            Ok(Frame::TooLong { length, .. }) => {
                tracing::info!(target: "backend", server = %server, pid, length, "(stderr line too long, dropped)");
            }
            Ok(Frame::Eof) | Err(_) => return,
        }
    }
}
