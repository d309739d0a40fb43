//! The router's side of trace recording (`serve --record`) and of the shadow evaluator
//! (a [`CallTap`]): what a call looked like when it arrived, completed with how it ended
//! and handed to the recorder and the tap. Nothing here runs unless one of them is on.
//! A fresh hit on a read-only call may be truth-sampled: sent to the backend again, off
//! the response path, so the tap learns whether the cached answer was still true.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use mcp_bridge_upstream::Caller;

use super::caching::{CallCache, annotations_of};
use mcp_bridge_backend::{BackendError, Catalog};
use mcp_bridge_cache::canonical_arguments;
use mcp_bridge_policy::{Annotations, CallKind};
use mcp_bridge_trace::{
    CallTap, Fnv64, RecordedCall, RecordedResult, RecordedStatus, Recorder, TruthPermit,
};

/// Where answered calls go: the trace recorder, a tap (the shadow evaluator), or both.
#[derive(Clone, Default)]
pub(super) struct Sinks {
    pub(super) recorder: Option<Arc<Recorder>>,
    pub(super) tap: Option<Arc<dyn CallTap>>,
}

/// A call being recorded: everything known when it arrived.
pub(super) struct Draft {
    recorder: Option<Arc<Recorder>>,
    tap: Option<Arc<dyn CallTap>>,
    started: Instant,
    call: RecordedCall,
}

/// Starts a record of a call, or `None` when neither recording nor a tap is on.
pub(super) fn draft(
    sinks: &Sinks,
    server: &Arc<str>,
    message: &Value,
    catalog: &Catalog,
    caching: Option<&CallCache>,
    caller: &Caller,
    read_only: bool,
) -> Option<Draft> {
    let recorder = sinks
        .recorder
        .as_ref()
        .filter(|recorder| recorder.is_active());
    let tap = sinks.tap.as_ref();
    if recorder.is_none() && tap.is_none() {
        return None;
    }
    let method = mcp_bridge_jsonrpc::method(message).unwrap_or_default();
    let params = message.get("params");
    let name = match method {
        "tools/call" => params.and_then(|params| params.get("name")),
        "resources/read" => params.and_then(|params| params.get("uri")),
        _ => None,
    }
    .and_then(Value::as_str)
    .unwrap_or_default();
    // Without a cache plan the text is built here; with one it is borrowed, not copied.
    let built;
    let arguments_text: &str = match caching {
        Some(caching) => caching.canonical_arguments(),
        None if method == "tools/call" => {
            built = canonical_arguments(params.and_then(|params| params.get("arguments")), &[]);
            &built
        }
        None => "",
    };
    let annotations = match caching {
        Some(caching) => caching.annotations(),
        None => {
            let kind = if method == "tools/call" {
                CallKind::Tool
            } else {
                CallKind::ListRequest
            };
            Annotations {
                read_only: Some(read_only),
                ..annotations_of(catalog, kind, name)
            }
        }
    };
    let arguments = recorder
        .filter(|recorder| recorder.records_arguments())
        .and_then(|_| serde_json::from_str(arguments_text).ok());
    let t_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
        });
    Some(Draft {
        recorder: recorder.cloned(),
        tap: tap.cloned(),
        started: Instant::now(),
        call: RecordedCall {
            t_us,
            server: server.clone(),
            method: method.into(),
            name: name.into(),
            args_hash: Fnv64::of(arguments_text.as_bytes()),
            arguments,
            read_only,
            annotations,
            latency_us: 0,
            result: RecordedResult::None,
            status: RecordedStatus::Ok,
            partition: caller
                .principal
                .as_deref()
                .map_or(0, |principal| Fnv64::of(principal.as_bytes())),
            hit: false,
            arguments_text: tap
                .filter(|_| arguments_text.len() <= mcp_bridge_trace::TAP_MAX_ARGUMENTS_BYTES)
                .map(|_| arguments_text.into()),
            truth: None,
        },
    })
}

impl Draft {
    /// The call was answered from the cache (or another caller's fill).
    pub(super) fn answered_from_cache(mut self, served: Option<Arc<Value>>, response: &Value) {
        self.call.hit = true;
        self.call.result = match served {
            Some(result) => RecordedResult::Shared(result),
            None => RecordedResult::measure(response.get("result")),
        };
        self.submit();
    }

    /// A permit to truth-sample this call, when the tap wants one now.
    pub(super) fn truth_permit(&self) -> Option<(TruthPermit, std::time::Duration)> {
        let sampler = self.tap.as_ref()?.truth_sampler()?;
        Some((sampler.try_start()?, sampler.timeout()))
    }

    /// A truth-sampled hit: `fetch` asks the backend again; its answer's digest is the
    /// hit's truth. The record is handed over once the sample ends (or fails).
    pub(super) async fn answered_from_cache_sampled(
        mut self,
        served: Arc<Value>,
        permit: TruthPermit,
        timeout: std::time::Duration,
        fetch: impl std::future::Future<Output = Result<Value, BackendError>>,
    ) {
        self.call.hit = true;
        let fetched = tokio::time::timeout(timeout, fetch).await;
        // Only a successful answer is the truth: an error or an `isError` result says
        // the backend failed this time, not what the result is.
        let truth = match &fetched {
            Ok(Ok(response)) if response.get("error").is_none() => response
                .get("result")
                .filter(|result| result.get("isError").and_then(Value::as_bool) != Some(true))
                .map(|result| mcp_bridge_trace::size_and_digest(result).1),
            _ => None,
        };
        let (_, served_digest) = mcp_bridge_trace::size_and_digest(&served);
        permit.finish(truth.map(|truth| truth == served_digest));
        self.call.truth = truth;
        self.call.result = RecordedResult::Shared(served);
        self.submit();
    }

    fn submit(self) {
        match (self.recorder, self.tap) {
            (Some(recorder), Some(tap)) => {
                let (recorded, tapped) = self.call.split_for_tap();
                recorder.submit(recorded);
                tap.submit(tapped);
            }
            (Some(recorder), None) => recorder.submit(self.call),
            (None, Some(tap)) => tap.submit(self.call),
            (None, None) => {}
        }
    }

    /// The backend answered (or did not).
    pub(super) fn answered_by_backend(mut self, outcome: &Result<Value, BackendError>) {
        self.call.latency_us =
            u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let (status, result) = match outcome {
            Ok(response) if response.get("error").is_some() => (RecordedStatus::Error, None),
            Ok(response) => {
                let result = response.get("result");
                let is_error = result
                    .and_then(|result| result.get("isError"))
                    .and_then(Value::as_bool)
                    == Some(true);
                let status = if is_error {
                    RecordedStatus::Error
                } else {
                    RecordedStatus::Ok
                };
                (status, result)
            }
            Err(_) => (RecordedStatus::Unknown, None),
        };
        self.call.status = status;
        self.call.result = RecordedResult::measure(result);
        self.submit();
    }
}
