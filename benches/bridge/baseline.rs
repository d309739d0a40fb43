//! The HTTP baseline: a bare hyper server, configured as the bridge configures its own, that
//! reads each request body and answers with a canned JSON body of the bridge's answer size. It
//! does no JSON work and has no backend, so it shows what HTTP over loopback and the bench's
//! client cost by themselves.
//!
//! It runs on its own thread with its own multi-thread runtime (as many workers as the bridge,
//! one per core), so the bench's load generator does not share a scheduler with it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::oneshot;

/// The bridge's header read timeout, mirrored so both servers run the same hyper setup.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A running baseline server; [`BaselineServer::stop`] ends it.
pub(crate) struct BaselineServer {
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BaselineServer {
    /// Starts the server on a free loopback port, answering every request with `body`.
    pub(crate) fn start(body: Bytes) -> Result<Self> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("bind the baseline server")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("baseline-hyper")
            .build()
            .context("build the baseline server's runtime")?;
        let (shutdown, shutdown_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("baseline-hyper-main".into())
            .spawn(move || {
                runtime.block_on(serve(listener, body, shutdown_rx));
            })?;
        Ok(Self {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub(crate) fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BaselineServer {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

async fn serve(listener: std::net::TcpListener, body: Bytes, mut shutdown: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("bench: the baseline server cannot listen: {error}");
            return;
        }
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(_) => continue,
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let body = body.clone();
            async move {
                // Read the whole request body, as the bridge does, before answering.
                let _ = request.into_body().collect().await;
                let mut response = Response::new(Full::new(body));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
