//! The router's side of trace recording (`serve --record`): what a call looked like
//! when it arrived, completed with how it ended and handed to the recorder. Nothing here
//! runs unless recording is active.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use mcp_bridge_upstream::Caller;

use super::caching::{CallCache, annotations_of};
use mcp_bridge_backend::{BackendError, Catalog};
use mcp_bridge_cache::canonical_arguments;
use mcp_bridge_policy::{Annotations, CallKind};
use mcp_bridge_trace::{Fnv64, RecordedCall, RecordedResult, RecordedStatus, Recorder};

/// A call being recorded: everything known when it arrived.
pub(super) struct Draft {
    recorder: Arc<Recorder>,
    started: Instant,
    call: RecordedCall,
}

/// Starts a record of a call, or `None` when recording is off.
pub(super) fn draft(
    recorder: Option<&Arc<Recorder>>,
    server: &Arc<str>,
    message: &Value,
    catalog: &Catalog,
    caching: Option<&CallCache>,
    caller: &Caller,
    read_only: bool,
) -> Option<Draft> {
    let recorder = recorder.filter(|recorder| recorder.is_active())?;
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
        .records_arguments()
        .then(|| serde_json::from_str(arguments_text).ok())
        .flatten();
    let t_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
        });
    Some(Draft {
        recorder: recorder.clone(),
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
        self.recorder.submit(self.call);
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
        self.recorder.submit(self.call);
    }
}
