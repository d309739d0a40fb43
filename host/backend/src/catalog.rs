//! What a server offers: its identity, capabilities and tool list (with annotations).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::error::BackendError;
use super::process::{Process, ServerIdentity};

/// A server that paginates more than this is assumed to be looping on its cursor.
const MAX_TOOL_PAGES: usize = 100;

/// A snapshot of one server's surface, replaced whole on `notifications/tools/list_changed`.
#[derive(Debug, Default)]
pub struct Catalog {
    pub identity: Option<ServerIdentity>,
    /// Tool definitions exactly as the server sent them.
    pub tools: Vec<Value>,
    by_name: HashMap<String, usize>,
}

impl Catalog {
    /// Reads the identity a process negotiated and every page of its tool list.
    pub async fn fetch(process: &Arc<Process>) -> Result<Catalog, BackendError> {
        let identity = process.identity();
        let offers_tools = identity
            .as_ref()
            .is_some_and(|identity| identity.capabilities.get("tools").is_some());
        let mut tools = Vec::new();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_TOOL_PAGES {
            if !offers_tools {
                break;
            }
            let params = cursor
                .take()
                .map(|cursor| serde_json::json!({ "cursor": cursor }));
            let response = process.request("tools/list", params).await?;
            let Some(result) = response.get("result") else {
                tracing::warn!(server = %process.server(), error = %response, "tools/list failed");
                break;
            };
            if let Some(page) = result.get("tools").and_then(Value::as_array) {
                tools.extend(page.iter().cloned());
            }
            match result.get("nextCursor") {
                Some(next) if !next.is_null() => cursor = Some(next.clone()),
                _ => break,
            }
        }
        let by_name = tools
            .iter()
            .enumerate()
            .filter_map(|(index, tool)| Some((tool.get("name")?.as_str()?.to_owned(), index)))
            .collect();
        Ok(Catalog {
            identity,
            tools,
            by_name,
        })
    }

    /// Whether a handshake has filled this catalog yet.
    pub fn is_loaded(&self) -> bool {
        self.identity.is_some()
    }

    pub fn tool(&self, name: &str) -> Option<&Value> {
        self.by_name
            .get(name)
            .and_then(|&index| self.tools.get(index))
    }

    /// Whether the server marks the tool `readOnlyHint: true`. Unknown tools and
    /// missing annotations count as not read-only, the safe side for retries.
    pub fn is_read_only(&self, tool: &str) -> bool {
        self.tool(tool)
            .and_then(|tool| tool.get("annotations"))
            .and_then(|annotations| annotations.get("readOnlyHint"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The server's declared capabilities (`{}` before the first handshake).
    pub fn capabilities(&self) -> Value {
        self.identity
            .as_ref()
            .map(|identity| identity.capabilities.clone())
            .unwrap_or_else(|| serde_json::json!({}))
    }
}
