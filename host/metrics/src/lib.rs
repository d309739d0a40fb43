//! The bridge's one Prometheus registry.
//!
//! Each layer owns its metrics (linkerd's pattern): it defines a struct of collectors and a
//! `register(&Registry)` constructor, and the application wiring registers every layer into
//! one [`Registry`] whose [`Registry::render`] serves `/metrics`. This crate only knows how to
//! build and register collectors; it names no layer's metric.
//!
//! Every name gets the `mcp_bridge_` prefix here, so a layer writes `calls_total` and the
//! exposition says `mcp_bridge_calls_total`.

mod percentile;

pub use percentile::percentile;

use prometheus::core::Collector;
use prometheus::{
    Counter, CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, TextEncoder,
};

/// The prefix of every metric the bridge exports.
pub const NAMESPACE: &str = "mcp_bridge";

/// One registry per bridge. Cloning shares it: collectors registered through any clone
/// appear in every clone's [`render`](Registry::render).
#[derive(Clone, Default)]
pub struct Registry {
    inner: prometheus::Registry,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A counter with labels.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(opts(name, help), labels))
    }

    /// A gauge with labels.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(opts(name, help), labels))
    }

    /// A histogram with labels and explicit buckets (in the metric's base unit).
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help)
            .namespace(NAMESPACE)
            .buckets(buckets.to_vec());
        self.register(HistogramVec::new(opts, labels))
    }

    /// An integer counter without labels.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::with_opts(opts(name, help)))
    }

    /// A floating-point counter without labels (for sums of seconds).
    pub fn float_counter(&self, name: &str, help: &str) -> Counter {
        self.register(Counter::with_opts(opts(name, help)))
    }

    /// A floating-point counter with labels (for sums of seconds).
    pub fn float_counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> CounterVec {
        self.register(CounterVec::new(opts(name, help), labels))
    }

    /// An integer gauge without labels.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::with_opts(opts(name, help)))
    }

    /// The bridge's own process: resident and virtual memory, CPU seconds, open and
    /// maximum file descriptors, threads and start time, under the standard `process_*`
    /// names (no `mcp_bridge_` prefix: dashboards and alerts expect these). Linux only;
    /// elsewhere it registers nothing.
    pub fn register_process_metrics(&self) {
        #[cfg(target_os = "linux")]
        {
            let collector = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(error) = self.inner.register(Box::new(collector)) {
                tracing::warn!(%error, "the bridge's process metrics are not available");
            }
        }
    }

    /// Renders every registered metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families, and the
        // families all come from this registry's own collectors.
        if let Err(error) = TextEncoder::new().encode(&self.inner.gather(), &mut buffer) {
            tracing::error!(%error, "failed to encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// Registers a collector built from a static description. Both steps fail only on a
    /// programming error (a malformed name, a label list that does not fit, or one layer
    /// registering a name twice), which every layer's unit tests would hit at once; a panic
    /// at startup is the honest answer to that.
    fn register<C>(&self, collector: prometheus::Result<C>) -> C
    where
        C: Collector + Clone + 'static,
    {
        #[allow(clippy::expect_used)]
        let collector = collector.expect("static metric description is valid");
        #[allow(clippy::expect_used)]
        self.inner
            .register(Box::new(collector.clone()))
            .expect("metric names are unique");
        collector
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics_from_every_clone() {
        let registry = Registry::new();
        let calls = registry.counter_vec("calls_total", "Calls.", &["server"]);
        let clone = registry.clone();
        let open = clone.gauge("connections_open", "Open connections.");
        calls.with_label_values(&["demo"]).inc();
        open.set(3);
        let text = registry.render();
        assert!(
            text.contains("mcp_bridge_calls_total{server=\"demo\"} 1"),
            "{text}"
        );
        assert!(text.contains("mcp_bridge_connections_open 3"), "{text}");
    }

    #[test]
    #[should_panic(expected = "metric names are unique")]
    fn a_name_registered_twice_is_a_programming_error() {
        let registry = Registry::new();
        registry.counter("twice_total", "Once.");
        registry.counter("twice_total", "Twice.");
    }
}
