//! Server-Sent Events bodies: a call's notifications then its response, or a session's
//! standalone stream of server notifications.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::StreamBody;
use http_body_util::combinators::BoxBody;
use hyper::body::Frame;
use serde_json::Value;
use tokio::sync::mpsc;

/// How many encoded events may wait for a slow client before the producer waits.
pub(crate) const SSE_BUFFER: usize = 64;

/// How long a producer waits for a client that reads nothing while its buffer is full. A
/// client that stalls this long loses the stream: its calls are cancelled and their slots
/// (in the session and in the pool) are freed, so not reading cannot hold them forever.
pub(crate) const SEND_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends `bytes` into a channel body, waiting at most [`SEND_STALL_TIMEOUT`] for room.
/// False when the client is gone or stalled: the producer should stop.
pub(crate) async fn send(sender: &mpsc::Sender<Bytes>, bytes: Bytes) -> bool {
    matches!(
        tokio::time::timeout(SEND_STALL_TIMEOUT, sender.send(bytes)).await,
        Ok(Ok(()))
    )
}

/// Encodes one JSON-RPC message as an SSE `message` event.
pub(crate) fn event(message: &Value) -> Bytes {
    let json = serde_json::to_string(message).unwrap_or_default();
    Bytes::from(format!("event: message\ndata: {json}\n\n"))
}

/// An SSE comment, which keeps idle connections (and proxies) from timing out.
pub(crate) fn keep_alive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}

/// A body that streams whatever the producer sends until it drops its sender. The
/// producer learns that the client went away when `sender.closed()` resolves.
pub(crate) fn channel_body() -> (mpsc::Sender<Bytes>, BoxBody<Bytes, Infallible>) {
    let (sender, receiver) = mpsc::channel::<Bytes>(SSE_BUFFER);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let bytes = receiver.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(bytes)), receiver))
    });
    (sender, BoxBody::new(StreamBody::new(stream)))
}
