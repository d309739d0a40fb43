//! Server notifications outside any call (`list_changed`, `resources/updated`): the cache
//! applies what they invalidate first, then the front's GET streams get them, and with a
//! shared tier the other replicas' subscribers get them too.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast::{self, error::RecvError};

use mcp_bridge_cache::InvalidationReason;
use mcp_bridge_policy::Invalidation;
use mcp_bridge_shared::{Event, TierListener};

use super::caching::{self, CacheLayer};
use super::server::Server;

/// Carries one server's notifications from its pool to the front, invalidating on the way
/// (before a client that hears "the list changed" can ask again and get the old list).
pub(crate) async fn relay(
    server: Server,
    mut notifications: broadcast::Receiver<Value>,
    layer: Option<Arc<CacheLayer>>,
    audience: Audience,
) {
    let name = server.name().clone();
    loop {
        let message = match notifications.recv().await {
            Ok(message) => message,
            Err(RecvError::Lagged(missed)) => {
                // Some change notifications were missed: only dropping the server's
                // entries is safe.
                tracing::warn!(server = %name, missed, "missed server notifications; dropping the server's cache entries");
                if let Some(layer) = &layer {
                    let everything = Invalidation::Server(name.to_string());
                    layer
                        .invalidate(&[everything], InvalidationReason::ListChanged)
                        .await;
                }
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let invalidations = caching::invalidations_for_notification(&name, &message);
        if let Some(layer) = &layer {
            for invalidation in invalidations.iter() {
                let reason = match invalidation {
                    Invalidation::Tool { tool, .. } if tool.ends_with("/list") => {
                        InvalidationReason::ListChanged
                    }
                    _ => InvalidationReason::ResourceUpdated,
                };
                layer
                    .invalidate(std::slice::from_ref(invalidation), reason)
                    .await;
            }
        }
        if audience == Audience::ListChangesOnly && !is_list_change(&message) {
            // One group's resource updates and log lines are its own; the front's GET
            // streams are per server, so they stay here.
            continue;
        }
        // No GET stream open is not an error.
        let _ = server.relay().send(message.clone());
        // Changes are what other replicas' subscribers need; log lines stay here.
        if let Some(tier) = layer.as_ref().and_then(|layer| layer.shared_tier())
            && !invalidations.is_empty()
        {
            tier.publish_notification(&name, &message).await;
        }
    }
}

/// Which of a pool's notifications every client of the server may hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// A shared pool's: all of them.
    Everyone,
    /// An isolated group's: only that the server's lists changed.
    ListChangesOnly,
}

fn is_list_change(message: &Value) -> bool {
    mcp_bridge_jsonrpc::method(message).is_some_and(|method| method.ends_with("/list_changed"))
}

/// Delivers other replicas' notifications to this replica's GET streams (their cache
/// effects arrived as invalidations already).
pub(crate) struct FromOtherReplicas {
    relays: HashMap<String, broadcast::Sender<Value>>,
}

impl FromOtherReplicas {
    pub(crate) fn new(servers: &[Server]) -> FromOtherReplicas {
        FromOtherReplicas {
            relays: servers
                .iter()
                .map(|server| (server.name().to_string(), server.relay().clone()))
                .collect(),
        }
    }
}

impl TierListener for FromOtherReplicas {
    fn event(&self, event: &Event) {
        let Event::Notification { server, message } = event else {
            return;
        };
        if let Some(relay) = self.relays.get(server) {
            let _ = relay.send(message.clone());
        }
    }
}
