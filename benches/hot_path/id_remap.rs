//! The `id_remap` group: what the bridge does to the JSON-RPC ids of every forwarded call.
//!
//! On the way in, `Process::start_call` gives the client's request an id unique to the process
//! (and the same id as its progress token, when the client asked for progress) with
//! `backend::assign_call_id`. On the way back, the reader finds the call by the response's id
//! (`backend::answered_call_id`) and the front puts the client's id back on the response
//! (`response["id"] = client_id` in `front::mcp::forward`). The baselines are a bare
//! `Value` id replace and the insert and remove of a pending id in a `HashMap`, which is the
//! least a multiplexing client must do per call.
//!
//! Each measured iteration gets a fresh copy of the messages (cloned outside the timing), so
//! every iteration replaces the client's id, not the id the previous iteration left.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion};
use serde_json::{Value, json};

use mcp_bridge::backend::{answered_call_id, assign_call_id};

/// The id the bridge gives the call: a process's counter after a while in service.
const BRIDGE_ID: u64 = 48_213;

/// A `tools/call` as a client sends it, with its own string id and a progress token.
fn request_with_progress() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": "req-7f3a-0042",
        "method": "tools/call",
        "params": {
            "name": "get_tasks",
            "arguments": { "status": "all", "client_id": "c-0042", "limit": 25 },
            "_meta": { "progressToken": "progress-7f3a-0042" },
        },
    })
}

/// The same call without a progress token, which is the common case.
fn request() -> Value {
    let mut request = request_with_progress();
    if let Some(params) = request.get_mut("params").and_then(Value::as_object_mut) {
        params.remove("_meta");
    }
    request
}

/// The server's answer, carrying the bridge's id.
fn response() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": BRIDGE_ID,
        "result": {
            "content": [{ "type": "text", "text": "{\"tasks\":[]}" }],
            "structuredContent": { "tasks": [] },
        },
    })
}

pub(crate) fn bench(c: &mut Criterion) {
    let client_id = request()["id"].clone();
    // The benchmarks below must do what the bridge does: check it once.
    let mut check = request_with_progress();
    assert_eq!(
        assign_call_id(&mut check, BRIDGE_ID),
        Some(json!("progress-7f3a-0042"))
    );
    assert_eq!(check["id"], json!(BRIDGE_ID));
    assert_eq!(check["params"]["_meta"]["progressToken"], json!(BRIDGE_ID));
    assert_eq!(answered_call_id(&response()), Some(BRIDGE_ID));

    let mut group = c.benchmark_group("id_remap");
    group.bench_function("request: assign_call_id", |b| {
        b.iter_batched_ref(
            request,
            |request| assign_call_id(black_box(request), BRIDGE_ID),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("request: assign_call_id (with progressToken)", |b| {
        b.iter_batched_ref(
            request_with_progress,
            |request| assign_call_id(black_box(request), BRIDGE_ID),
            BatchSize::SmallInput,
        );
    });
    group.bench_function(
        "response: answered_call_id + restore the client's id",
        |b| {
            b.iter_batched_ref(
                || (response(), client_id.clone()),
                |(response, client_id)| {
                    let id = answered_call_id(black_box(response));
                    // What `front::mcp::forward` does once the call is done.
                    response["id"] = std::mem::take(client_id);
                    id
                },
                BatchSize::SmallInput,
            );
        },
    );
    // The whole swap for one call: the front keeps the client's id, the process assigns its
    // own, the reader reads it back from the response, and the front restores the client's.
    group.bench_function("round trip: request + response", |b| {
        b.iter_batched_ref(
            || (request(), response()),
            |(request, response)| {
                let client_id = black_box(&*request)
                    .get("id")
                    .cloned()
                    .unwrap_or(Value::Null);
                let token = assign_call_id(request, BRIDGE_ID);
                let id = answered_call_id(black_box(&*response));
                response["id"] = client_id;
                (token, id)
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("baseline: message[\"id\"] = json!(n)", |b| {
        b.iter_batched_ref(
            request,
            |request| black_box(request)["id"] = json!(BRIDGE_ID),
            BatchSize::SmallInput,
        );
    });
    // The pending-call table the bridge keeps per process, reduced to ids: one insert when the
    // call starts and one remove when its response arrives.
    let mut pending: HashMap<u64, u64> = (0..64).map(|id| (id, id)).collect();
    group.bench_function("baseline: HashMap insert + remove of a pending id", |b| {
        b.iter(|| {
            pending.insert(black_box(BRIDGE_ID), BRIDGE_ID);
            pending.remove(black_box(&BRIDGE_ID))
        });
    });
    group.finish();
}
