//! Client connections: the accept loop with its connection cap and error back-off, and the
//! deadlines of one connection.
//!
//! hyper's own header timer starts whenever a connection waits for a request head, so it also
//! closes a kept-alive connection that is merely idle between requests, and without notice.
//! The bridge therefore turns that timer off and keeps its own watch on each connection: a
//! connection waiting for the first byte of its first request, or for the rest of a request
//! head, is held to `http.header_read_timeout`; a connection idle after a response is held to
//! `http.keep_alive_timeout`, which every HTTP/1 response advertises as `Keep-Alive: timeout=N`
//! so that clients retire the connection first. Request bodies have their own deadline in
//! `mcp::read_body`.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::HttpMetrics;
use super::{AppState, Body, routes};

/// The hyper builder every connection is served with.
type Builder = hyper_util::server::conn::auto::Builder<TokioExecutor>;

/// Connections answered with 503 at once, at most; beyond that an over-cap connection is
/// closed without an answer, so a flood cannot turn refusals into a second way to run out of
/// file descriptors.
const MAX_REFUSALS_AT_ONCE: usize = 64;

/// How long a refusal may take: writing the 503 and waiting for the client to close.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// What a refusal reads (and discards) from the client at most before closing, so that closing
/// does not reset the connection before the client has read the 503.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;

/// The first and the longest pause after a failed `accept`.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(250);

/// At most one log line per this interval for a repeated condition (accept errors, refusals).
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Requests one HTTP/2 connection may have open at once.
const MAX_HTTP2_STREAMS_PER_CONNECTION: u32 = 16;

/// The open connections and what bounds them.
pub(super) struct Connections {
    /// One permit per connection being served; all of them back means every connection ended.
    slots: Arc<Semaphore>,
    max: usize,
    refusals: Arc<Semaphore>,
    builder: Builder,
}

impl Connections {
    pub(super) fn new(state: &AppState) -> Connections {
        let mut builder = Builder::new(TokioExecutor::new());
        // hyper's header timer would also close idle kept-alive connections: the watch in
        // `serve_connection` keeps both deadlines instead.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        // Each HTTP/2 stream is a request the bridge reads, parses and runs: without this,
        // hyper's default of 200 would let one connection start 200 requests at once.
        builder
            .http2()
            .max_concurrent_streams(MAX_HTTP2_STREAMS_PER_CONNECTION);
        let max = state.http.max_client_connections;
        Connections {
            slots: Arc::new(Semaphore::new(max)),
            max,
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS_AT_ONCE)),
            builder,
        }
    }

    /// Accepts connections until `shutdown` resolves.
    pub(super) async fn accept_until(
        &self,
        listener: &TcpListener,
        state: &Arc<AppState>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut accept_errors = AcceptErrors::new(state.metrics.clone());
        let mut refusal_log = RateLimitedLog::default();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => return,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => {
                    accept_errors.succeeded();
                    stream
                }
                Err(error) => {
                    let pause = accept_errors.failed(&error);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = &mut shutdown => return,
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let connection = self.builder.clone();
                    tokio::spawn(serve_connection(connection, stream, state.clone(), slot));
                }
                Err(_) => {
                    if let Some(suppressed) = refusal_log.due() {
                        tracing::warn!(
                            max_client_connections = self.max,
                            refused_since_last_line = suppressed,
                            "refusing connections: http.max_client_connections are open"
                        );
                    }
                    self.refuse(stream, &state.metrics);
                }
            }
        }
    }

    /// Answers a connection over the cap with 503 and closes it, or just closes it when
    /// [`MAX_REFUSALS_AT_ONCE`] refusals are already under way.
    fn refuse(&self, stream: TcpStream, metrics: &HttpMetrics) {
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            metrics
                .http_connections_refused_total
                .with_label_values(&["dropped"])
                .inc();
            return;
        };
        metrics
            .http_connections_refused_total
            .with_label_values(&["answered"])
            .inc();
        let max = self.max;
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REFUSAL_TIME, answer_busy(stream, max)).await;
        });
    }

    /// Waits until every connection has ended.
    pub(super) async fn drained(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
    }
}

/// Writes a short 503 on a connection the bridge will not serve, then reads what the client
/// sends until it closes (bounded), so the answer is not lost to a reset.
async fn answer_busy(mut stream: TcpStream, max: usize) -> io::Result<()> {
    let body = format!(
        "mcp-bridge is serving its maximum of {max} connections (http.max_client_connections); retry in a moment\n"
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSAL_DRAIN_BYTES {
        let read = stream.read(&mut sink).await?;
        if read == 0 {
            break;
        }
        drained += read;
    }
    Ok(())
}

/// Serves one connection under its deadlines and the shutdown signal; the slot is given back
/// when it ends.
async fn serve_connection(
    builder: Builder,
    stream: TcpStream,
    state: Arc<AppState>,
    slot: OwnedSemaphorePermit,
) {
    let _slot = slot;
    let metrics = state.metrics.clone();
    metrics.http_connections_open.inc();
    let activity = Arc::new(Activity::new());
    let deadlines = Deadlines {
        header_read: state.http.header_read_timeout,
        keep_alive: state.http.keep_alive_timeout,
    };
    let keep_alive = keep_alive_header(state.http.keep_alive_timeout);
    let mut shutting_down = state.shutting_down.subscribe();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        service_fn(move |request: Request<Incoming>| {
            let state = state.clone();
            let guard = activity.request_started();
            let keep_alive = keep_alive.clone();
            async move {
                let version = request.version();
                let response = routes::handle(state, request).await;
                Ok::<_, Infallible>(finish_response(response, version, keep_alive, guard))
            }
        })
    };
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = *shutting_down.borrow_and_update();
    if closing {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        let wake = activity.next_check(deadlines);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                break;
            }
            changed = shutting_down.changed(), if !closing => {
                // A closed channel means the front is gone: close as on shutdown.
                if changed.is_err() || *shutting_down.borrow() {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = activity.changed.notified(), if !closing => {}
            () = tokio::time::sleep_until(wake.into()), if !closing => {
                match activity.verdict(Instant::now(), deadlines) {
                    Verdict::Keep => {}
                    Verdict::HeaderTimeout => {
                        // A partial or missing request head: nothing to answer, close now.
                        metrics
                            .http_connections_closed_total
                            .with_label_values(&["header_timeout"])
                            .inc();
                        break;
                    }
                    Verdict::IdleTimeout => {
                        // Idle between requests: hyper closes an idle connection at once on a
                        // graceful shutdown, and lets a request that just began finish.
                        metrics
                            .http_connections_closed_total
                            .with_label_values(&["keep_alive_timeout"])
                            .inc();
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
    metrics.http_connections_open.dec();
}

/// `Keep-Alive: timeout=N` for the configured idle timeout (whole seconds, checked by the
/// config).
fn keep_alive_header(timeout: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("timeout={}", timeout.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("timeout=0"))
}

/// Adds the connection headers to a response and ties the end of its body to the connection's
/// activity.
fn finish_response(
    response: Response<Body>,
    version: Version,
    keep_alive: HeaderValue,
    guard: RequestGuard,
) -> Response<Tracked> {
    let (mut parts, body) = response.into_parts();
    // HTTP/2 forbids connection-specific headers; its idle close is a GOAWAY instead.
    if matches!(version, Version::HTTP_10 | Version::HTTP_11) {
        // After a refused or timed-out body the rest of the body is unread: the connection
        // cannot carry another request, so it is closed after the answer.
        let unread_body = matches!(
            parts.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        );
        if unread_body {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        } else {
            parts
                .headers
                .insert(header::HeaderName::from_static("keep-alive"), keep_alive);
        }
    }
    Response::from_parts(
        parts,
        Tracked {
            body,
            _guard: guard,
        },
    )
}

/// A response body that tells the connection's activity when it is done (sent or dropped).
pub(super) struct Tracked {
    body: Body,
    _guard: RequestGuard,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The two connection deadlines.
#[derive(Clone, Copy)]
struct Deadlines {
    header_read: Duration,
    keep_alive: Duration,
}

/// Where a connection is between requests, as its deadlines see it.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a request head (a new connection, or bytes arrived on an idle one).
    AwaitingHead { since: Instant },
    /// Requests are being answered (their response bodies are not finished).
    Busy { open: usize },
    /// Kept alive after its last response.
    Idle { since: Instant },
}

enum Verdict {
    Keep,
    HeaderTimeout,
    IdleTimeout,
}

/// A connection's phase, shared by its socket wrapper, its service and its watch.
struct Activity {
    phase: Mutex<Phase>,
    /// Woken when a phase change may bring a deadline closer.
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase::AwaitingHead {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    /// Bytes arrived: on an idle connection they begin a request head.
    fn bytes_read(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::AwaitingHead {
                since: Instant::now(),
            };
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        let mut phase = self.phase.lock();
        *phase = match *phase {
            Phase::Busy { open } => Phase::Busy { open: open + 1 },
            Phase::AwaitingHead { .. } | Phase::Idle { .. } => Phase::Busy { open: 1 },
        };
        RequestGuard {
            activity: self.clone(),
        }
    }

    fn request_finished(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Busy { open } = *phase {
            *phase = if open > 1 {
                Phase::Busy { open: open - 1 }
            } else {
                Phase::Idle {
                    since: Instant::now(),
                }
            };
        }
        drop(phase);
        self.changed.notify_one();
    }

    /// When the watch should look again. A busy connection has no deadline here (its body has
    /// one in `read_body`); it is looked at again when its last response finishes.
    fn next_check(&self, deadlines: Deadlines) -> Instant {
        match *self.phase.lock() {
            Phase::AwaitingHead { since } => since + deadlines.header_read,
            Phase::Idle { since } => since + deadlines.keep_alive,
            Phase::Busy { .. } => Instant::now() + deadlines.keep_alive,
        }
    }

    fn verdict(&self, now: Instant, deadlines: Deadlines) -> Verdict {
        match *self.phase.lock() {
            Phase::AwaitingHead { since } if now >= since + deadlines.header_read => {
                Verdict::HeaderTimeout
            }
            Phase::Idle { since } if now >= since + deadlines.keep_alive => Verdict::IdleTimeout,
            _ => Verdict::Keep,
        }
    }
}

/// Held by a request from its head until its response body is finished.
struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.activity.request_finished();
    }
}

/// The client socket, reporting reads to the connection's activity.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Failed `accept` calls: a growing pause, a counter, and a log of at most one line a second.
struct AcceptErrors {
    metrics: Arc<HttpMetrics>,
    pause: Duration,
    log: RateLimitedLog,
}

impl AcceptErrors {
    fn new(metrics: Arc<HttpMetrics>) -> AcceptErrors {
        AcceptErrors {
            metrics,
            pause: Duration::ZERO,
            log: RateLimitedLog::default(),
        }
    }

    fn succeeded(&mut self) {
        self.pause = Duration::ZERO;
    }

    /// Counts and (rate-limited) logs a failure; returns how long to pause before the next
    /// `accept`. The pending connection stays in the listen backlog, so without a pause an
    /// fd shortage (EMFILE) would spin the loop.
    fn failed(&mut self, error: &io::Error) -> Duration {
        self.metrics.http_accept_errors_total.inc();
        if let Some(suppressed) = self.log.due() {
            tracing::warn!(
                %error,
                failed_since_last_line = suppressed,
                "accept failed; retrying with back-off (at most one such line a second; see mcp_bridge_http_accept_errors_total). Raise the file descriptor limit or lower http.max_client_connections"
            );
        }
        self.pause = (self.pause * 2).clamp(ACCEPT_BACKOFF_FIRST, ACCEPT_BACKOFF_MAX);
        self.pause
    }
}

/// One line per [`LOG_INTERVAL`] for a repeated event, counting the ones in between.
#[derive(Default)]
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Whether to log this occurrence; if so, how many were not logged since the last line.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_log_line_is_kept_to_one_per_interval() {
        let mut log = RateLimitedLog::default();
        assert_eq!(log.due(), Some(0));
        assert_eq!(log.due(), None);
        assert_eq!(log.due(), None);
        log.last = log.last.map(|last| last - LOG_INTERVAL);
        assert_eq!(log.due(), Some(2));
    }

    #[test]
    fn idle_and_head_deadlines_are_told_apart() {
        let deadlines = Deadlines {
            header_read: Duration::from_secs(1),
            keep_alive: Duration::from_secs(10),
        };
        let activity = Arc::new(Activity::new());
        let later = |seconds| Instant::now() + Duration::from_secs(seconds);
        assert!(matches!(
            activity.verdict(later(2), deadlines),
            Verdict::HeaderTimeout
        ));
        drop(activity.request_started());
        // Idle after a response: the header deadline no longer applies.
        assert!(matches!(
            activity.verdict(later(2), deadlines),
            Verdict::Keep
        ));
        assert!(matches!(
            activity.verdict(later(11), deadlines),
            Verdict::IdleTimeout
        ));
        // Bytes on an idle connection start a head, under the header deadline again.
        activity.bytes_read();
        assert!(matches!(
            activity.verdict(later(2), deadlines),
            Verdict::HeaderTimeout
        ));
    }
}
