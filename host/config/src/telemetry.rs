//! The `[telemetry]` table: OpenTelemetry traces of every call, exported over OTLP/HTTP
//! (protobuf) to a collector. Off unless `otlp_endpoint` is set. Restart-only: the
//! exporter and the tracing layers are installed once at start.

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::expand::Lookup;
use super::raw::OrderedMap;
use super::secret::{RawSecret, Secret};
use super::source::{FieldPath, SourceText};
use super::validate::expand_at;
use mcp_bridge_policy::units::{ConfigDuration, format_duration};

/// The `service.name` resource attribute spans carry unless `service_name` says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "mcp-bridge";
/// The fraction of traces the bridge starts that it samples (a client's sampled or unsampled
/// parent decides for its own trace).
pub const DEFAULT_SAMPLE_RATIO: f64 = 1.0;
/// Finished spans waiting for export; past it a span is dropped and counted, never waited for.
pub const DEFAULT_TELEMETRY_MAX_QUEUE: usize = 2048;
pub const MAX_TELEMETRY_MAX_QUEUE: usize = 1_000_000;
/// How long one export request to the collector may take.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_EXPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a finished span may wait before its batch is sent.
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(5);
/// Ten minutes at most: a batch that waits longer helps nobody.
pub const MAX_EXPORT_INTERVAL: Duration = Duration::from_secs(600);
/// The OTLP/HTTP path of traces, added to an endpoint that does not end with it.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";
/// The longest endpoint URL and service name accepted.
const MAX_ENDPOINT_CHARS: usize = 2048;
const MAX_SERVICE_NAME_CHARS: usize = 256;
/// The most extra headers sent with each export (collector credentials, tenant ids).
const MAX_EXPORT_HEADERS: usize = 16;

/// The `[telemetry]` table as serde reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
    pub max_queue: Option<usize>,
    pub export_timeout: Option<ConfigDuration>,
    pub export_interval: Option<ConfigDuration>,
    pub headers: Option<OrderedMap<RawSecret>>,
}

/// The checked `[telemetry]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans go: the full OTLP/HTTP traces URL (`…/v1/traces`). `None`: tracing off.
    pub traces_url: Option<String>,
    pub service_name: String,
    /// 0.0 to 1.0, for the traces the bridge starts (parent-based otherwise).
    pub sample_ratio: f64,
    pub max_queue: usize,
    pub export_timeout: Duration,
    pub export_interval: Duration,
    /// Extra HTTP headers of each export, values secret (never logged or shown).
    pub headers: Vec<(String, Secret)>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            traces_url: None,
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            sample_ratio: DEFAULT_SAMPLE_RATIO,
            max_queue: DEFAULT_TELEMETRY_MAX_QUEUE,
            export_timeout: DEFAULT_EXPORT_TIMEOUT,
            export_interval: DEFAULT_EXPORT_INTERVAL,
            headers: Vec::new(),
        }
    }
}

impl TelemetryConfig {
    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        self.traces_url.is_some()
    }
}

/// Checks `[telemetry]`.
pub(super) fn telemetry(
    main: &SourceText,
    raw: RawTelemetry,
    lookup: Lookup<'_>,
) -> Result<TelemetryConfig, ConfigError> {
    let at = |field: &str| FieldPath::root().key("telemetry").key(field);
    let traces_url = match raw.otlp_endpoint {
        None => None,
        Some(written) => {
            let endpoint = expand_at(main, &at("otlp_endpoint"), &written, lookup)?;
            Some(traces_url(&endpoint).map_err(|problem| {
                main.error(&at("otlp_endpoint"), problem).with_help(
                    "write the collector's OTLP/HTTP address, such as \"http://127.0.0.1:4318\" (the bridge posts protobuf to /v1/traces under it)",
                )
            })?)
        }
    };
    let service_name = raw
        .service_name
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    if service_name.is_empty()
        || service_name.len() > MAX_SERVICE_NAME_CHARS
        || service_name.chars().any(char::is_control)
    {
        return Err(main
            .error(
                &at("service_name"),
                format!(
                    "must be 1 to {MAX_SERVICE_NAME_CHARS} characters without control characters"
                ),
            )
            .with_help(format!("the default is \"{DEFAULT_SERVICE_NAME}\"")));
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(DEFAULT_SAMPLE_RATIO);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(main
            .error(&at("sample_ratio"), "must be between 0.0 and 1.0")
            .with_help("1.0 samples every trace the bridge starts, 0.0 none (a client's sampled parent is followed either way)"));
    }
    let max_queue = raw.max_queue.unwrap_or(DEFAULT_TELEMETRY_MAX_QUEUE);
    if max_queue == 0 || max_queue > MAX_TELEMETRY_MAX_QUEUE {
        return Err(main
            .error(
                &at("max_queue"),
                format!("must be 1 to {MAX_TELEMETRY_MAX_QUEUE} spans"),
            )
            .with_help(format!(
                "the default is {DEFAULT_TELEMETRY_MAX_QUEUE}; a full queue drops spans, never a call"
            )));
    }
    let bounded = |field: &str, value: Option<ConfigDuration>, default, max| {
        let value = value.map_or(default, Duration::from);
        if value.is_zero() || value > max {
            Err(main
                .error(
                    &at(field),
                    format!(
                        "must be more than zero and at most {}",
                        format_duration(max)
                    ),
                )
                .with_help(format!("the default is {}", format_duration(default))))
        } else {
            Ok(value)
        }
    };
    let export_timeout = bounded(
        "export_timeout",
        raw.export_timeout,
        DEFAULT_EXPORT_TIMEOUT,
        MAX_EXPORT_TIMEOUT,
    )?;
    let export_interval = bounded(
        "export_interval",
        raw.export_interval,
        DEFAULT_EXPORT_INTERVAL,
        MAX_EXPORT_INTERVAL,
    )?;
    let mut headers = Vec::new();
    let written = raw.headers.unwrap_or_default().0;
    if written.len() > MAX_EXPORT_HEADERS {
        return Err(main
            .error(
                &at("headers"),
                format!("at most {MAX_EXPORT_HEADERS} headers are sent with an export"),
            )
            .with_help("keep the headers the collector needs (credentials, a tenant)"));
    }
    for (name, value) in written {
        let path = at("headers").key(&name);
        let token = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(main.error(&path, "not an HTTP header name").with_help(
                "use letters, digits and - (such as \"authorization\" or \"x-tenant\")",
            ));
        }
        let value = expand_at(main, &path, &value.0, lookup)?;
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(main
                .error(&path, "the header value holds a control character")
                .with_help("write the value on one line"));
        }
        headers.push((name.to_ascii_lowercase(), Secret::new(value)));
    }
    Ok(TelemetryConfig {
        traces_url,
        service_name,
        sample_ratio,
        max_queue,
        export_timeout,
        export_interval,
        headers,
    })
}

/// The traces URL of an OTLP/HTTP endpoint: `http://` or `https://` with a host, and
/// `/v1/traces` added unless it is there.
fn traces_url(endpoint: &str) -> Result<String, String> {
    if endpoint.len() > MAX_ENDPOINT_CHARS {
        return Err(format!("longer than {MAX_ENDPOINT_CHARS} characters"));
    }
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| "not an http:// or https:// URL".to_owned())?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("the URL names no host (or carries credentials: use headers)".to_owned());
    }
    if endpoint.contains(['?', '#'])
        || endpoint
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("the URL holds a query, a fragment or spaces".to_owned());
    }
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with(OTLP_TRACES_PATH) {
        Ok(trimmed.to_owned())
    } else {
        Ok(format!("{trimmed}{OTLP_TRACES_PATH}"))
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://collector/v1/traces/").unwrap(),
            "https://collector/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/otlp").unwrap(),
            "http://c:4318/otlp/v1/traces"
        );
        for bad in [
            "grpc://c:4317",
            "http://",
            "http://u:p@c",
            "http://c/?a=b",
            "c:4318",
        ] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }
}
