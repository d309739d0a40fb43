//! An OTLP/HTTP trace receiver on a free loopback port: it accepts `POST /v1/traces`
//! (protobuf), decodes each export with the official OpenTelemetry protobuf definitions
//! (`opentelemetry-proto`) and keeps the spans for a test to look at. In discarding mode
//! (the benches) it reads each export and throws it away, counting requests only.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use parking_lot::Mutex;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::wait::poll_until;

/// The largest export accepted (the bridge batches at most 512 spans).
const MAX_EXPORT_BYTES: usize = 16 * 1024 * 1024;

/// One exported span, decoded.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// Lowercase hex, as in a `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub kind: SpanKind,
    /// Attribute values as text (strings as they are, numbers and booleans formatted).
    pub attributes: BTreeMap<String, String>,
    /// The resource's `service.name`.
    pub service_name: String,
    /// The status code (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// Start and end, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// The spans it links to, as (trace id, span id).
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// An attribute's value as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// How long the span lasted.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nano.saturating_sub(self.start_unix_nano))
    }

    /// Whether this span started no earlier and ended no later than `outer`.
    pub fn lies_within(&self, outer: &ReceivedSpan) -> bool {
        outer.start_unix_nano <= self.start_unix_nano && self.end_unix_nano <= outer.end_unix_nano
    }
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    requests: AtomicUsize,
    refused: AtomicUsize,
    /// The headers of the last export request.
    headers: Mutex<hyper::HeaderMap>,
}

/// The receiver; it stops when dropped.
pub struct OtlpReceiver {
    address: SocketAddr,
    received: Arc<Received>,
    task: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts a receiver that keeps every span it decodes.
    pub async fn start() -> Result<OtlpReceiver> {
        OtlpReceiver::start_with(true).await
    }

    /// Starts a receiver that reads and discards every export (for benches).
    pub async fn discarding() -> Result<OtlpReceiver> {
        OtlpReceiver::start_with(false).await
    }

    async fn start_with(keep: bool) -> Result<OtlpReceiver> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind the OTLP receiver")?;
        let address = listener.local_addr()?;
        let received = Arc::new(Received::default());
        let serving = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let received = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let received = received.clone();
                        async move { Ok::<_, hyper::Error>(answer(request, &received, keep).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(OtlpReceiver {
            address,
            received,
            task,
        })
    }

    /// The endpoint to write as `[telemetry] otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().clone()
    }

    /// Export requests received so far.
    pub fn requests(&self) -> usize {
        self.received.requests.load(Ordering::Relaxed)
    }

    /// The values of header `name` on the last export request (each as raw bytes, as
    /// text where it is UTF-8).
    pub fn last_header(&self, name: &str) -> Vec<String> {
        self.received
            .headers
            .lock()
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect()
    }

    /// Requests refused: a wrong path or method, or a body that did not decode.
    pub fn refused(&self) -> usize {
        self.received.refused.load(Ordering::Relaxed)
    }

    /// Waits (bounded by `within`) until `done` holds for the spans received, and returns
    /// them; fails naming what was received when it never does.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Result<Vec<ReceivedSpan>> {
        let spans = poll_until(within, async || self.spans(), |spans| done(spans)).await;
        if done(&spans) {
            return Ok(spans);
        }
        Err(anyhow::anyhow!("not yet")).with_context(|| {
            let names: Vec<String> = self
                .spans()
                .iter()
                .map(|span| format!("{} ({})", span.name, span.trace_id))
                .collect();
            format!(
                "the receiver never got {what} within {within:?}; it has {} request(s), {} refused, spans: {names:?}",
                self.requests(),
                self.refused()
            )
        })
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    request: Request<Incoming>,
    received: &Received,
    keep: bool,
) -> Response<Full<Bytes>> {
    *received.headers.lock() = request.headers().clone();
    received.requests.fetch_add(1, Ordering::Relaxed);
    let refuse = |status: StatusCode| {
        received.refused.fetch_add(1, Ordering::Relaxed);
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        response
    };
    if request.method() != hyper::Method::POST || request.uri().path() != "/v1/traces" {
        return refuse(StatusCode::NOT_FOUND);
    }
    let protobuf = request
        .headers()
        .get("content-type")
        .is_some_and(|value| value.as_bytes() == b"application/x-protobuf");
    if !protobuf {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let body = match http_body_util::Limited::new(request.into_body(), MAX_EXPORT_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE),
    };
    if keep {
        match ExportTraceServiceRequest::decode(body) {
            Ok(export) => received.spans.lock().extend(spans_of(export)),
            Err(_) => return refuse(StatusCode::BAD_REQUEST),
        }
    }
    // An empty ExportTraceServiceResponse is zero bytes of protobuf.
    let mut response = Response::new(Full::new(Bytes::new()));
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    response
}

fn spans_of(export: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in export.resource_spans {
        let service_name = resource_spans
            .resource
            .as_ref()
            .and_then(|resource| {
                resource
                    .attributes
                    .iter()
                    .find(|attribute| attribute.key == "service.name")
            })
            .and_then(|attribute| attribute.value.as_ref())
            .and_then(|value| value.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .filter_map(|attribute| {
                        let value = attribute.value.as_ref()?.value.as_ref()?;
                        Some((attribute.key.clone(), text(value)))
                    })
                    .collect();
                out.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                    attributes,
                    service_name: service_name.clone(),
                    status_code: span.status.as_ref().map_or(0, |status| status.code),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                    links: span
                        .links
                        .iter()
                        .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                        .collect(),
                });
            }
        }
    }
    out
}

fn text(value: &AnyValue) -> String {
    match value {
        AnyValue::StringValue(text) => text.clone(),
        AnyValue::IntValue(number) => number.to_string(),
        AnyValue::DoubleValue(number) => number.to_string(),
        AnyValue::BoolValue(flag) => flag.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
