//! W3C trace context (<https://www.w3.org/TR/trace-context/>): reading a client's
//! `traceparent`/`tracestate`, continuing it in a span, and writing a span's context into
//! the `params._meta` of the request a backend receives (the MCP proposal SEP-414 uses the
//! same two keys there).
//!
//! Everything a client sends is bounded and checked strictly; a value that fails is
//! ignored (the call goes on in a trace of its own), never an error: it only helps tracing.

use std::str::FromStr;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use serde_json::{Map, Value};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header and `_meta` key of the trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// The header and `_meta` key of the vendors' trace state.
pub const TRACESTATE: &str = "tracestate";
/// A version-00 `traceparent` is exactly this long (`00-<32 hex>-<16 hex>-<2 hex>`).
pub const MAX_TRACEPARENT_CHARS: usize = 55;
/// The longest `tracestate` accepted: the W3C limit that a vendor must propagate
/// (32 list members; 512 characters is the size every implementation must keep).
pub const MAX_TRACESTATE_CHARS: usize = 512;

/// A parsed W3C trace context: the parent's ids and flags, and the trace state as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
    /// The `tracestate` value, when one came with the parent and passed the checks.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Parses a `traceparent` (and the `tracestate` sent with it). `None` for anything
    /// that is not a version-00 traceparent of lowercase hex with non-zero ids; a bad
    /// `tracestate` is dropped and the parent kept, as the W3C text asks.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        if traceparent.len() != MAX_TRACEPARENT_CHARS {
            return None;
        }
        let bytes = traceparent.as_bytes();
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        // Version 00 only: a later version may add fields this code cannot judge, and
        // version ff is forbidden.
        if &traceparent[..2] != "00" {
            return None;
        }
        let trace_id = hex_bytes::<16>(&traceparent[3..35])?;
        let parent_id = hex_bytes::<8>(&traceparent[36..52])?;
        let [flags] = hex_bytes::<1>(&traceparent[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        let tracestate = tracestate
            .filter(|state| is_tracestate(state))
            .map(str::to_owned);
        Some(TraceContext {
            trace_id,
            parent_id,
            flags,
            tracestate,
        })
    }

    /// The context in `params._meta` of a JSON-RPC request, if it has a valid one.
    pub fn from_meta(message: &Value) -> Option<TraceContext> {
        let meta = message.get("params")?.get("_meta")?;
        let traceparent = meta.get(TRACEPARENT)?.as_str()?;
        let tracestate = meta.get(TRACESTATE).and_then(Value::as_str);
        TraceContext::parse(traceparent, tracestate)
    }

    /// The `traceparent` text (version 00).
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(MAX_TRACEPARENT_CHARS);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.parent_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        out
    }

    fn span_context(&self) -> SpanContext {
        let state = self
            .tracestate
            .as_deref()
            .and_then(|state| TraceState::from_str(state).ok())
            .unwrap_or_default();
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.parent_id),
            TraceFlags::new(self.flags),
            true,
            state,
        )
    }
}

/// Whether `value` is a `tracestate` the bridge passes on: bounded, printable ASCII (the
/// list syntax itself is the receiver's to judge; OpenTelemetry drops what it cannot read).
fn is_tracestate(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_TRACESTATE_CHARS
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Lowercase hex of exactly `N` bytes (the W3C text forbids uppercase).
fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (index, pair) in digits.chunks_exact(2).enumerate() {
        out[index] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// Makes `span` a child of the client's span `parent` (a remote parent). Does nothing when
/// the span is disabled or already started.
pub fn set_remote_parent(span: &Span, parent: &TraceContext) {
    if span.is_disabled() {
        return;
    }
    let context = opentelemetry::Context::new().with_remote_span_context(parent.span_context());
    // An error means tracing is not exporting (no OpenTelemetry layer) or the span has
    // started: either way there is nothing to continue.
    let _ = span.set_parent(context);
}

/// The trace context that names `span` as the parent (for the request it makes), or
/// `None` when tracing is off. The trace state is the client's, passed along.
pub fn trace_context_of(span: &Span, tracestate: Option<&str>) -> Option<TraceContext> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
    }
    Some(TraceContext {
        trace_id: span_context.trace_id().to_bytes(),
        parent_id: span_context.span_id().to_bytes(),
        flags: span_context.trace_flags().to_u8(),
        tracestate: tracestate
            .filter(|state| is_tracestate(state))
            .map(str::to_owned),
    })
}

/// Writes `span`'s context into `params._meta` of `message` (a JSON-RPC request), replacing
/// a `traceparent` the client put there and keeping every other `_meta` key. The client's
/// `tracestate` is kept only when it came with a valid `_meta` `traceparent` (the front
/// has put the HTTP header's pair there when `_meta` had none): vendor state is passed on
/// only in the trace it belongs to. Does nothing when tracing is off, so the request then
/// reaches the backend as the client sent it.
pub fn inject_trace_context(message: &mut Value, span: &Span) {
    if span.is_disabled() {
        return;
    }
    let client_state = TraceContext::from_meta(message).and_then(|parent| parent.tracestate);
    let Some(context) = trace_context_of(span, client_state.as_deref()) else {
        return;
    };
    let Some(request) = message.as_object_mut() else {
        return;
    };
    let params = request
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(params) = params.as_object_mut() else {
        return;
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    meta.insert(TRACEPARENT.to_owned(), Value::String(context.traceparent()));
    match context.tracestate {
        Some(state) => {
            meta.insert(TRACESTATE.to_owned(), Value::String(state));
        }
        None => {
            meta.remove(TRACESTATE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let context = TraceContext::parse(VALID, Some("vendor=abc")).unwrap();
        assert_eq!(context.traceparent(), VALID);
        assert_eq!(context.flags, 1);
        assert_eq!(context.tracestate.as_deref(), Some("vendor=abc"));
    }

    #[test]
    fn anything_else_is_ignored() {
        let bad = [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            // Uppercase hex, version ff, another version, zero ids, wrong separators.
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333é-01",
        ];
        for value in bad {
            assert!(TraceContext::parse(value, None).is_none(), "{value}");
        }
    }

    #[test]
    fn a_bad_tracestate_is_dropped_and_the_parent_kept() {
        let long = "a=".to_owned() + &"b".repeat(MAX_TRACESTATE_CHARS);
        for state in [long.as_str(), "", "a=\u{7f}", "vendor=é"] {
            let context = TraceContext::parse(VALID, Some(state)).unwrap();
            assert_eq!(context.tracestate, None, "{state:?}");
        }
    }

    #[test]
    fn meta_is_read_from_params() {
        let message = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "_meta": {"traceparent": VALID, "tracestate": "k=v"}}
        });
        let context = TraceContext::from_meta(&message).unwrap();
        assert_eq!(context.traceparent(), VALID);
        assert_eq!(context.tracestate.as_deref(), Some("k=v"));
        let bad = serde_json::json!({"params": {"_meta": {"traceparent": 7}}});
        assert!(TraceContext::from_meta(&bad).is_none());
    }

    #[test]
    fn nothing_is_injected_when_tracing_is_off() {
        let mut message = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "_meta": {"traceparent": VALID, "other": 1}}
        });
        let before = message.clone();
        inject_trace_context(&mut message, &Span::none());
        assert_eq!(message, before);
    }
}
