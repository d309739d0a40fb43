//! The log half of the binary's `tracing` subscriber, shared with the spans bench so that
//! the bench measures the setup the binary really runs with `[telemetry]` off.
//!
//! The log layer's filter is an `EnvFilter` (the `[logging]` level, or `RUST_LOG`) with
//! one more static directive: the span target [`TARGET`] is `off`. A static directive
//! gives the span callsites `Interest::never` when no other layer wants them, and keeps
//! the filter's maximum level hint what the log level says. So with tracing off the
//! subscriber is exactly this layer over the registry (no optional layer on top: an
//! absent `Option` layer answers `Interest::always` and has no level hint, which would
//! turn every filtered callsite into a per-hit check and lift the global maximum level to
//! TRACE), every span callsite is disabled once, and `LevelFilter::current()` stays the
//! log level, so disabled `debug!`/`trace!` calls anywhere in the process remain a
//! static comparison.

use tracing_subscriber::filter::{Directive, EnvFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
use tracing_subscriber::registry::Registry;

use crate::config::LogFormat;
use crate::telemetry::TARGET;

/// The log layer over the registry: the whole subscriber when tracing is off, the base
/// the OpenTelemetry layer goes on when it is on.
pub type Logs = Layered<Box<dyn Layer<Registry> + Send + Sync>, Registry>;

/// The log filter's directives: `RUST_LOG` when it is set and parses, else `level`.
pub fn log_directives(level: &str) -> String {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| EnvFilter::try_new(directives).is_ok())
        .unwrap_or_else(|| level.to_owned())
}

/// The subscriber that logs to `writer` in `format` after `directives` (an `EnvFilter`
/// text; `info` when it does not parse) and never logs the span target.
pub fn logs<W>(format: LogFormat, directives: &str, writer: W) -> Logs
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let filter = log_filter(directives);
    let layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    tracing_subscriber::registry().with(layer)
}

/// `directives` with the span target switched off (added last, so it replaces a
/// directive for that target that `RUST_LOG` may carry: a span per call is not a log line).
fn log_filter(directives: &str) -> EnvFilter {
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    match format!("{TARGET}=off").parse::<Directive>() {
        Ok(spans_off) => filter.add_directive(spans_off),
        // The target is a constant identifier: this does not happen.
        Err(_) => filter,
    }
}

#[cfg(test)]
mod tests {
    use tracing::level_filters::LevelFilter;

    use super::*;
    use crate::telemetry::{self, RequestFacts};

    /// The only test in this binary: `LevelFilter::current()` is the maximum over every
    /// live dispatcher of the process, so no other subscriber may exist meanwhile.
    #[test]
    fn with_telemetry_off_spans_are_disabled_and_the_level_is_the_log_level() {
        for (directives, level) in [("info", LevelFilter::INFO), ("warn", LevelFilter::WARN)] {
            let subscriber = logs(LogFormat::Human, directives, std::io::sink);
            let _default = tracing::subscriber::set_default(subscriber);
            let facts = RequestFacts {
                method: "tools/call",
                tool: Some("get_tasks"),
                ..RequestFacts::default()
            };
            assert!(!telemetry::is_on(), "{directives}");
            // Made directly (not through the crate's `is_on` short cut) so the callsite's
            // own interest is what is tested.
            let span = tracing::info_span!(target: TARGET, "probe");
            assert!(span.is_disabled(), "{directives}");
            assert!(telemetry::server_span(&facts).is_disabled());
            assert!(telemetry::policy_span(1).is_disabled());
            assert_eq!(LevelFilter::current(), level, "{directives}");
            // The log layer still logs at its level.
            assert!(tracing::enabled!(tracing::Level::INFO) == (level >= LevelFilter::INFO));
        }
    }
}
