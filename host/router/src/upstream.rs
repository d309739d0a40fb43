//! The router as the front's [`Upstream`]: the seam's traits implemented over the
//! router's own types, with backend errors turned into the [`CallError`] a client is told.

use std::sync::Arc;
use std::time::Duration;

use mcp_bridge_upstream::{
    AnswerSink, BoxFuture, CacheHint, CallError, Caller, HealthSummary, Introduction,
    ServerDescription, ServerHandle, Upstream, UpstreamServer,
};
use serde_json::Value;
use tokio::sync::broadcast;

use super::{AnswerHandle, CallEvent, ForwardedCall, Router, Server, Step};
use mcp_bridge_backend::BackendError;

/// What a client is told about a backend failure.
pub(super) fn call_error(error: BackendError) -> CallError {
    CallError::new(error.to_string(), error.jsonrpc_code(), error.retryable())
}

impl Upstream for Router {
    fn servers(&self) -> &[ServerHandle] {
        &self.handles
    }

    fn server(&self, name: &str) -> Option<&ServerHandle> {
        self.by_name
            .get(name)
            .and_then(|&index| self.handles.get(index))
    }

    fn forward<'a>(
        &'a self,
        server: &'a ServerHandle,
        message: Value,
        want_events: bool,
        caller: &'a Caller,
    ) -> BoxFuture<'a, Box<dyn mcp_bridge_upstream::ForwardedCall>> {
        Box::pin(async move {
            // Handles come from `servers()` and `server()`, so the name is always known;
            // a handle from elsewhere is refused rather than trusted.
            let Some(own) = Router::server(self, server.name()) else {
                return Box::new(Refused(Some(CallError::new(
                    format!("no server named '{}'", server.name()),
                    mcp_bridge_jsonrpc::code::SERVER_UNAVAILABLE,
                    false,
                )))) as Box<dyn mcp_bridge_upstream::ForwardedCall>;
            };
            let call = Router::forward(self, own, message, want_events, caller).await;
            Box::new(call) as Box<dyn mcp_bridge_upstream::ForwardedCall>
        })
    }

    fn wait_all_ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(Router::wait_all_ready(self))
    }

    fn end_session(&self, session: &str) {
        Router::end_session(self, session);
    }

    fn health(&self) -> HealthSummary {
        Router::health(self)
    }

    fn servers_not_ready(&self) -> Vec<Arc<str>> {
        Router::servers_not_ready(self)
    }

    fn sample_gauges(&self) {
        // The cache's entry and byte gauges are sampled when its stats are read.
        if let Some(cache) = self.cache() {
            cache.stats();
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(Router::shutdown(self))
    }
}

impl UpstreamServer for Server {
    fn name(&self) -> &Arc<str> {
        Server::name(self)
    }

    fn acquire_timeout(&self) -> Duration {
        Server::acquire_timeout(self)
    }

    fn wait_ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(Server::wait_ready(self))
    }

    fn description(&self) -> ServerDescription {
        Server::description(self)
    }

    fn introduce(&self) -> BoxFuture<'_, Result<Introduction, CallError>> {
        Box::pin(async move { Server::introduce(self).await.map_err(call_error) })
    }

    fn introduce_to<'a>(
        &'a self,
        caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Introduction, CallError>> {
        Box::pin(async move { Server::introduce_to(self, caller).await.map_err(call_error) })
    }

    fn notifications(&self) -> broadcast::Receiver<Value> {
        Server::notifications(self)
    }
}

impl mcp_bridge_upstream::ForwardedCall for ForwardedCall {
    fn next(&mut self) -> BoxFuture<'_, mcp_bridge_upstream::Step> {
        Box::pin(async move {
            // A call its caller's limits refused never started: the refusal is its answer.
            if let Some(refusal) = self.refusal.take() {
                return mcp_bridge_upstream::Step::Done(Err(refusal));
            }
            match ForwardedCall::next(self).await {
                Step::Event(event) => mcp_bridge_upstream::Step::Event(for_the_front(event)),
                Step::Done(outcome) => mcp_bridge_upstream::Step::Done(outcome.map_err(call_error)),
            }
        })
    }

    fn cache_hint(&self) -> Option<CacheHint> {
        ForwardedCall::cache_hint(self)
    }

    fn policy_generation(&self) -> Option<u64> {
        ForwardedCall::policy_generation(self)
    }

    fn cache_outcome(&self) -> &'static str {
        self.cache_outcome
    }

    fn cache_provenance(&self) -> mcp_bridge_upstream::CacheProvenance {
        ForwardedCall::cache_provenance(self)
    }

    fn listed_tool(&self) -> Option<&str> {
        ForwardedCall::listed_tool(self)
    }

    fn deadline(&self) -> Option<std::time::Instant> {
        Some(self.deadline.into_std())
    }
}

/// A call's event in the seam's terms: a server request's way back becomes an
/// [`AnswerSink`] the front holds without knowing what is behind it.
fn for_the_front(event: CallEvent) -> mcp_bridge_upstream::CallEvent {
    match event {
        CallEvent::Notification(notification) => {
            mcp_bridge_upstream::CallEvent::Notification(notification)
        }
        CallEvent::ServerRequest { request, answer } => {
            mcp_bridge_upstream::CallEvent::ServerRequest {
                request,
                answer: Arc::new(answer),
            }
        }
    }
}

impl AnswerSink for AnswerHandle {
    fn send<'a>(&'a self, answer: &'a Value) -> BoxFuture<'a, Result<(), CallError>> {
        Box::pin(async move { AnswerHandle::send(self, answer).await.map_err(call_error) })
    }
}

/// A call refused before it started: its one step is the error.
struct Refused(Option<CallError>);

impl mcp_bridge_upstream::ForwardedCall for Refused {
    fn next(&mut self) -> BoxFuture<'_, mcp_bridge_upstream::Step> {
        let error = self.0.take().unwrap_or_else(|| {
            CallError::new(
                "the call has already ended",
                mcp_bridge_jsonrpc::code::INTERNAL_ERROR,
                false,
            )
        });
        Box::pin(async move { mcp_bridge_upstream::Step::Done(Err(error)) })
    }

    fn cache_hint(&self) -> Option<CacheHint> {
        None
    }

    fn policy_generation(&self) -> Option<u64> {
        None
    }

    fn cache_outcome(&self) -> &'static str {
        "none"
    }
}
