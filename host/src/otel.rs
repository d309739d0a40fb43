//! The binary's tracing setup: the log layer (filtered by `[logging]` or `RUST_LOG`,
//! `mcp_bridge::subscriber`) and, with `[telemetry] otlp_endpoint`, the OpenTelemetry
//! layer that turns the telemetry crate's spans into OTLP exports.
//!
//! The two layers filter on their own: the log layer never enables the span target (a
//! span per call is not a log line), and the OpenTelemetry layer enables that target only,
//! at INFO (every span is an info span), so the process's maximum level stays the log
//! level. With tracing off the subscriber is the log layer alone (two branches, no
//! optional layer), so the span callsites are disabled once and for all and making a span
//! costs a cached interest check.
//!
//! Spans leave through the SDK's batch processor: a bounded queue (`max_queue`; a full
//! queue drops the span, counted by the SDK and logged at shutdown, never waited for) that
//! a thread of its own sends every `export_interval` as OTLP/HTTP protobuf, each request
//! bounded by `export_timeout`. The HTTP request itself runs on the bridge's tokio runtime
//! through the workspace's reqwest client (no second HTTP or TLS stack).
//!
//! The configured endpoint and timeout win over the SDK's `OTEL_EXPORTER_OTLP_*`
//! environment variables (the SDK gives programmatic values precedence). The configured
//! `headers` are set on each request by [`OnRuntime`] itself, as written (the SDK's own
//! header option percent-decodes values), over any header of the same name that
//! `OTEL_EXPORTER_OTLP_HEADERS`/`OTEL_EXPORTER_OTLP_TRACES_HEADERS` add.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use mcp_bridge::config::{LogFormat, TelemetryConfig};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use mcp_bridge::subscriber;
use mcp_bridge::telemetry::TARGET;

/// The instrumentation scope name of the bridge's spans.
const SCOPE: &str = "mcp-bridge";
/// Spans sent in one export request at most.
const MAX_EXPORT_BATCH: usize = 512;

/// The running exporter; [`Telemetry::shutdown`] sends what is queued.
pub(crate) struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Flushes the queue and stops the exporter. Blocks: call it outside the runtime's
    /// tasks, while the runtime still runs (the export requests run on it).
    pub(crate) fn shutdown(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(SHUTDOWN_FLUSH) {
            tracing::warn!(%error, "the trace exporter did not shut down cleanly");
        }
    }
}

/// Installs the global subscriber: logs to stderr in `format` at `level` (unless
/// `RUST_LOG` says otherwise) and, when `telemetry` has an endpoint, spans to it. Must run
/// inside the tokio runtime (`Runtime::enter`) when telemetry is on.
pub(crate) fn init_tracing(
    format: LogFormat,
    level: &str,
    telemetry: &TelemetryConfig,
) -> Option<Telemetry> {
    let logs = subscriber::logs(format, &subscriber::log_directives(level), std::io::stderr);
    match start_exporter(telemetry) {
        Ok(Some(provider)) => {
            let spans = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(SCOPE))
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_context_activation(false)
                .with_filter(Targets::new().with_target(TARGET, Level::INFO));
            logs.with(spans).init();
            Some(Telemetry { provider })
        }
        Ok(None) => {
            logs.init();
            None
        }
        Err(error) => {
            logs.init();
            // The config was checked; this is the SDK (or its environment) refusing it.
            tracing::warn!(%error, "traces are off");
            None
        }
    }
}

/// The tracer provider exporting to `[telemetry]`'s endpoint, or `None` when it has none.
fn start_exporter(telemetry: &TelemetryConfig) -> Result<Option<SdkTracerProvider>, String> {
    let Some(url) = &telemetry.traces_url else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "no async runtime to export on".to_owned())?;
    // The one TLS stack of the process (rustls on ring), for an https:// collector.
    mcp_bridge::auth::install_tls_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(telemetry.export_timeout)
        .build()
        .map_err(|error| format!("cannot build the export client: {error}"))?;
    let headers = export_headers(telemetry)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime {
            client,
            runtime,
            headers,
        })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(telemetry.export_timeout)
        .build()
        .map_err(|error| format!("cannot build the OTLP exporter: {error}"))?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(telemetry.max_queue)
        .with_max_export_batch_size(MAX_EXPORT_BATCH.min(telemetry.max_queue))
        .with_scheduled_delay(telemetry.export_interval)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            telemetry.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(telemetry.service_name.clone())
                .build(),
        )
        .build();
    Ok(Some(provider))
}

/// `[telemetry] headers` as sent: each value exactly as configured, marked sensitive.
fn export_headers(telemetry: &TelemetryConfig) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &telemetry.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("[telemetry] headers: {name:?} is not a header name"))?;
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
            format!("[telemetry] headers: the value of {name} is not a header value")
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// The exporter's HTTP client: the batch processor's thread hands each request to the
/// bridge's runtime (where reqwest runs) and waits for its answer there. It sets the
/// configured headers itself, over any the SDK took from the environment.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    headers: HeaderMap,
}

impl HttpClient for OnRuntime {
    fn send_bytes<'client, 'call>(
        &'client self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'call>>
    where
        'client: 'call,
        Self: 'call,
    {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let mut headers = parts.headers;
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
        let sending = self.runtime.spawn(async move {
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut answer = Response::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok::<_, reqwest::Error>(answer)
        });
        Box::pin(async move {
            match sending.await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(error)) => Err(Box::new(error) as HttpError),
                Err(joined) => Err(Box::new(joined) as HttpError),
            }
        })
    }
}

/// How long `serve` waits at exit for the last spans to leave.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);
