//! The binary's tracing setup: the log layer (filtered by `[logging]` or `RUST_LOG`) and,
//! with `[telemetry] otlp_endpoint`, the OpenTelemetry layer that turns the telemetry
//! crate's spans into OTLP exports.
//!
//! The two layers filter on their own: the log layer never enables the telemetry target
//! (a span per call is not a log line), and the OpenTelemetry layer enables that target
//! only. With tracing off no layer wants the target, so its callsites are disabled once
//! and making a span costs a cached check.
//!
//! Spans leave through the SDK's batch processor: a bounded queue (`max_queue`; a full
//! queue drops the span, counted by the SDK and logged at shutdown, never waited for) that
//! a thread of its own sends every `export_interval` as OTLP/HTTP protobuf, each request
//! bounded by `export_timeout`. The HTTP request itself runs on the bridge's tokio runtime
//! through the workspace's reqwest client (no second HTTP or TLS stack).

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
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

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
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directive| EnvFilter::try_new(directive).ok())
        .unwrap_or_else(|| EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")));
    let not_spans = filter_fn(|metadata| metadata.target() != TARGET);
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter.and(not_spans))
            .boxed(),
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter.and(not_spans))
            .boxed(),
    };
    let (exporting, telemetry) = match start_exporter(telemetry) {
        Ok(Some(provider)) => {
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(SCOPE))
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_context_activation(false)
                .with_filter(Targets::new().with_target(TARGET, Level::TRACE));
            (Some(layer), Some(Telemetry { provider }))
        }
        Ok(None) => (None, None),
        Err(error) => {
            // The config was checked; this is the SDK refusing it. Logs still work.
            eprintln!("warning: traces are off: {error}");
            (None, None)
        }
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(exporting)
        .init();
    telemetry
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
    let headers = telemetry
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.expose().to_owned()))
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime { client, runtime })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(telemetry.export_timeout)
        .with_headers(headers)
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

/// The exporter's HTTP client: the batch processor's thread hands each request to the
/// bridge's runtime (where reqwest runs) and waits for its answer there.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
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
        let sending = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
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
