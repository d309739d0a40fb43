//! The standalone GET stream of a session: server notifications that belong to no call
//! (`list_changed`, `resources/updated`), relayed as SSE until the client leaves.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;
use tokio::sync::broadcast;

use super::aggregate;
use super::error::FrontError;
use super::mcp::{Endpoint, SESSION_HEADER, accepts_sse, header_str, sse_response};
use super::session::Session;
use super::sse;
use super::{AppState, Body};

/// An idle stream sends an SSE comment this often so proxies keep it open.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Opens the stream for a session, or 405 when the client did not ask for SSE or has
/// no session (sessionless 2026-07-28 clients have no standalone stream).
pub(crate) async fn open(
    state: Arc<AppState>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    owner: &mcp_bridge_auth::Principal,
) -> Result<http::Response<Body>, FrontError> {
    let accepts_sse = accepts_sse(headers);
    let Some(session_id) = header_str(headers, SESSION_HEADER) else {
        return Err(FrontError::MethodNotAllowed(http::Method::GET));
    };
    if !accepts_sse {
        return Err(FrontError::MethodNotAllowed(http::Method::GET));
    }
    let endpoint_key = match &endpoint {
        Endpoint::Aggregate => String::new(),
        Endpoint::Server(server) => server.name().to_string(),
    };
    let session = state
        .sessions
        .get_for(
            session_id,
            &endpoint_key,
            &owner.name,
            owner.is_individual(),
        )
        .await?;
    let stream_slot = match session.open_stream() {
        Ok(slot) => slot,
        Err(error) => {
            state
                .metrics
                .limit_refusals_total
                .with_label_values(&["max_streams_per_session"])
                .inc();
            return Err(error);
        }
    };
    let servers: Vec<_> = match &endpoint {
        Endpoint::Aggregate => state.upstream.servers().to_vec(),
        Endpoint::Server(server) => vec![server.clone()],
    };
    let aggregated = matches!(endpoint, Endpoint::Aggregate);
    let (sender, body) = sse::channel_body();
    let (merged_tx, mut merged_rx) = tokio::sync::mpsc::channel::<Value>(sse::SSE_BUFFER);
    for server in servers {
        let mut notifications = server.notifications();
        let merged_tx = merged_tx.clone();
        let server = server.name().clone();
        tokio::spawn(async move {
            loop {
                let message = match notifications.recv().await {
                    Ok(message) => message,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(server = %server, missed, "a slow GET stream missed notifications");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let message = if aggregated {
                    aggregate::rewrite_notification(&server, message)
                } else {
                    message
                };
                if merged_tx.send(message).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(merged_tx);
    let mut shutting_down = state.shutting_down.subscribe();
    tokio::spawn(async move {
        // Held while the stream is open.
        let _stream_slot = stream_slot;
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE_INTERVAL);
        loop {
            let bytes = tokio::select! {
                () = sender.closed() => return,
                () = session.wait_closed() => return,
                _ = shutting_down.wait_for(|down| *down) => return,
                _ = keep_alive.tick() => sse::keep_alive(),
                message = merged_rx.recv() => match message {
                    Some(message) if wanted_by(&session, &message) => sse::event(&message),
                    Some(_) => continue,
                    None => return,
                },
            };
            if !sse::send(&sender, bytes).await {
                return;
            }
        }
    });
    Ok(sse_response(body))
}

/// A resource update goes only to sessions subscribed to that resource; every other
/// notification (list changes) goes to every session of the endpoint.
fn wanted_by(session: &Session, message: &Value) -> bool {
    if mcp_bridge_jsonrpc::method(message) != Some("notifications/resources/updated") {
        return true;
    }
    message
        .pointer("/params/uri")
        .and_then(Value::as_str)
        .is_some_and(|uri| session.is_subscribed(uri))
}
