//! Process stdin/stdout as async streams: non-blocking pipes driven by the reactor when they are
//! pipes (the usual case under the bridge), tokio's thread-backed stdio otherwise.
//!
//! tokio's `stdin()`/`stdout()` hand every read and write to a blocking thread, which costs a
//! thread hop per operation; registering the pipe with the reactor avoids that on the hot path.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;
use tracing::debug;

/// An async reader over the process's stdin.
pub(crate) type Input = Pin<Box<dyn AsyncRead + Send>>;

/// An async writer over the process's stdout.
pub(crate) type Output = Pin<Box<dyn AsyncWrite + Send>>;

/// Opens stdin; must be called inside a tokio runtime with I/O enabled.
pub(crate) fn stdin() -> Input {
    match stdin_pipe() {
        Ok(Some(receiver)) => Box::pin(receiver),
        Ok(None) => Box::pin(tokio::io::stdin()),
        Err(error) => {
            debug!(%error, "stdin cannot be used as a non-blocking pipe; using blocking reads");
            Box::pin(tokio::io::stdin())
        }
    }
}

/// Opens stdout; must be called inside a tokio runtime with I/O enabled.
pub(crate) fn stdout() -> Output {
    match stdout_pipe() {
        Ok(Some(sender)) => Box::pin(sender),
        Ok(None) => Box::pin(tokio::io::stdout()),
        Err(error) => {
            debug!(%error, "stdout cannot be used as a non-blocking pipe; using blocking writes");
            Box::pin(tokio::io::stdout())
        }
    }
}

fn stdin_pipe() -> io::Result<Option<pipe::Receiver>> {
    // A duplicate descriptor shares the open file description with fd 0, which is what the
    // reactor needs, while leaving fd 0 itself open after the receiver is dropped.
    let file = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    if !file.metadata()?.file_type().is_fifo() {
        return Ok(None);
    }
    pipe::Receiver::from_file(file).map(Some)
}

fn stdout_pipe() -> io::Result<Option<pipe::Sender>> {
    let file = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let metadata = file.metadata()?;
    if !metadata.file_type().is_fifo() {
        return Ok(None);
    }
    // Non-blocking mode belongs to the open file description. When stderr is the same pipe
    // (`2>&1`), switching it would make log writes fail with EAGAIN, so keep blocking writes.
    let stderr_same_pipe = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .and_then(|stderr| stderr.metadata())
        .is_ok_and(|stderr| stderr.dev() == metadata.dev() && stderr.ino() == metadata.ino());
    if stderr_same_pipe {
        return Ok(None);
    }
    pipe::Sender::from_file(file).map(Some)
}
