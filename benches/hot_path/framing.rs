//! The `framing` group: the newline-delimited JSON-RPC the bridge speaks to a stdio child.
//!
//! Writing: `backend::encode_line` turns a `tools/call` request into compact JSON and a newline,
//! which the process's writer task then copies into the child's stdin (the I/O is not
//! measured). Reading: `backend::LineReader::next_frame` cuts one line out of the child's
//! buffered stdout, with its size cap, and the reader parses it with `serde_json::from_slice`
//! before routing it by id. The baselines are `serde_json::to_vec` of the same request and
//! `serde_json::from_slice` of the same response bytes, so the differences are the framing.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::{Value, json};

use mcp_bridge::backend::{Frame, LineReader, encode_line};

/// The cap on one line from a server; the bench's lines are far below it, as real ones are.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// A `tools/call` request as the bridge writes it to a child: its own id and progress token.
fn request() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 48_213,
        "method": "tools/call",
        "params": {
            "name": "get_tasks",
            "arguments": { "status": "all", "client_id": "c-0042", "limit": 25 },
            "_meta": { "progressToken": 48_213 },
        },
    })
}

/// A `tools/call` response shaped like the demo server's `get_tasks` answer (the payload as
/// text content and as `structuredContent`), about 1.5 KB on the wire.
fn response() -> Value {
    let tasks: Vec<Value> = (1..=6)
        .map(|id| {
            json!({
                "id": id,
                "title": format!("Follow up on invoice #{} with the client", 1000 + id),
                "status": if id % 3 == 0 { "done" } else { "active" },
                "client_id": format!("c-{:04}", 40 + id),
                "points": id % 5 + 1,
            })
        })
        .collect();
    let payload = json!({ "tasks": tasks });
    json!({
        "jsonrpc": "2.0",
        "id": 48_213,
        "result": {
            "content": [{ "type": "text", "text": payload.to_string() }],
            "structuredContent": payload,
        },
    })
}

/// Runs a future that never waits, as a `LineReader` over bytes in memory never does.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a read from memory waited"),
    }
}

/// Reads one line from `bytes` as the backend's reader does, and parses it.
fn read_message(bytes: &[u8]) -> Value {
    match ready(LineReader::new(bytes, MAX_LINE_BYTES).next_frame()) {
        Ok(Frame::Line(line)) => serde_json::from_slice(&line)
            .unwrap_or_else(|error| panic!("the bench's response is not JSON: {error}")),
        other => panic!("the bench's response did not read as one line: {other:?}"),
    }
}

pub(crate) fn bench(c: &mut Criterion) {
    let request = request();
    let response = response();
    let response_line = encode_line(&response);
    let response_json = &response_line[..response_line.len() - 1];
    assert!(
        (1_000..=2_048).contains(&response_line.len()),
        "the bench's response should be a typical 1-2 KB, not {} bytes",
        response_line.len()
    );
    // Both sides must agree with what the bridge really writes and reads.
    let request_line = encode_line(&request);
    assert_eq!(request_line.last(), Some(&b'\n'));
    assert_eq!(
        serde_json::from_slice::<Value>(&request_line).ok(),
        Some(request.clone())
    );
    assert_eq!(read_message(&response_line), response);

    let mut group = c.benchmark_group("framing");
    // The sizes are in the throughput criterion prints, not in the names, so the names stay
    // stable across changes to the messages.
    let request_name = "tools_call request";
    group.throughput(Throughput::Bytes(request_line.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("write: encode_line", request_name),
        &request,
        |b, request| b.iter(|| encode_line(black_box(request))),
    );
    group.bench_with_input(
        BenchmarkId::new("baseline: serde_json::to_vec", request_name),
        &request,
        |b, request| b.iter(|| serde_json::to_vec(black_box(request))),
    );
    let response_name = "tools_call response";
    group.throughput(Throughput::Bytes(response_line.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("read: LineReader::next_frame + from_slice", response_name),
        &response_line[..],
        |b, line| b.iter(|| read_message(black_box(line))),
    );
    group.bench_with_input(
        BenchmarkId::new("baseline: serde_json::from_slice", response_name),
        response_json,
        |b, json| b.iter(|| serde_json::from_slice::<Value>(black_box(json))),
    );
    group.finish();
}
