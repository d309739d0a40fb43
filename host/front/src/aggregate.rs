//! The aggregated endpoint (`/mcp`): every server as one MCP server, with tool and
//! prompt names namespaced `{server}{separator}{name}` and resource URIs prefixed
//! `mcp-bridge://{server}/` so that every name routes back to its server.

use serde_json::{Map, Value, json};

use mcp_bridge_auth::access::Item;
use mcp_bridge_upstream::{Caller as RouterCaller, ServerHandle, Step, Upstream};

use super::identity::Caller;

/// The scheme of namespaced resource URIs on `/mcp`: `mcp-bridge://{server}/{original}`.
pub(crate) const RESOURCE_PREFIX: &str = "mcp-bridge://";

/// A server paginating further than this while the bridge collects a list is looping.
const MAX_LIST_PAGES: usize = 100;

/// `{server}{separator}{name}`.
pub(crate) fn namespaced(server: &str, separator: &str, name: &str) -> String {
    let mut out = String::with_capacity(server.len() + separator.len() + name.len());
    out.push_str(server);
    out.push_str(separator);
    out.push_str(name);
    out
}

/// Splits a namespaced name into its server and the server's own name. Server
/// names cannot contain the separator (config validation ensures it), so the first
/// separator is the split point.
pub(crate) fn split_name<'a>(
    upstream: &'a dyn Upstream,
    separator: &str,
    name: &str,
) -> Option<(&'a ServerHandle, String)> {
    let (server, rest) = name.split_once(separator)?;
    Some((upstream.server(server)?, rest.to_owned()))
}

/// `mcp-bridge://{server}/{uri}`.
pub(crate) fn prefixed_uri(server: &str, uri: &str) -> String {
    format!("{RESOURCE_PREFIX}{server}/{uri}")
}

/// Splits a prefixed URI into its server and the server's own URI.
pub(crate) fn split_uri<'a>(
    upstream: &'a dyn Upstream,
    uri: &str,
) -> Option<(&'a ServerHandle, String)> {
    let (server, rest) = uri.strip_prefix(RESOURCE_PREFIX)?.split_once('/')?;
    Some((upstream.server(server)?, rest.to_owned()))
}

/// Prefixes the `uri` of every item of `items` (resources, resource contents).
pub(crate) fn prefix_uris(items: Option<&mut Value>, field: &str, server: &str) {
    let Some(items) = items.and_then(Value::as_array_mut) else {
        return;
    };
    for item in items {
        if let Some(slot) = item.get_mut(field)
            && let Some(uri) = slot.as_str()
        {
            *slot = Value::String(prefixed_uri(server, uri));
        }
    }
}

/// Prefixes every resource URI a result carries, so a client of `/mcp` can read each
/// one back: `contents[].uri` (resources/read), resource links and embedded resources in
/// `content[]` (tools/call) and in `messages[].content` (prompts/get).
pub(crate) fn prefix_result_uris(result: Option<&mut Value>, server: &str) {
    let Some(result) = result else { return };
    prefix_uris(result.get_mut("contents"), "uri", server);
    if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
        content
            .iter_mut()
            .for_each(|item| prefix_content_item(item, server));
    }
    if let Some(messages) = result.get_mut("messages").and_then(Value::as_array_mut) {
        for message in messages {
            if let Some(content) = message.get_mut("content") {
                prefix_content_item(content, server);
            }
        }
    }
}

fn prefix_content_item(item: &mut Value, server: &str) {
    let slot = match item.get("type").and_then(Value::as_str) {
        Some("resource_link") => item.get_mut("uri"),
        Some("resource") => item
            .get_mut("resource")
            .and_then(|resource| resource.get_mut("uri")),
        _ => None,
    };
    if let Some(slot) = slot
        && let Some(uri) = slot.as_str()
    {
        *slot = Value::String(prefixed_uri(server, uri));
    }
}

/// The capabilities of the aggregate: a feature is offered when any server offers it.
pub(crate) fn union_capabilities(upstream: &dyn Upstream) -> Value {
    let mut capabilities = Map::new();
    capabilities.insert("tools".into(), json!({ "listChanged": true }));
    for server in upstream.servers() {
        let description = server.description();
        let server_capabilities = description.capabilities();
        for feature in ["prompts", "resources", "completions", "logging"] {
            if server_capabilities.get(feature).is_some() && !capabilities.contains_key(feature) {
                let value = match feature {
                    "prompts" => json!({ "listChanged": true }),
                    "resources" => json!({ "listChanged": true }),
                    _ => json!({}),
                };
                capabilities.insert(feature.into(), value);
            }
        }
    }
    Value::Object(capabilities)
}

/// `tools/list` on the aggregate, from each server's description (no backend round trip).
/// Only the tools `caller` may call are listed.
pub(crate) fn tools_list(upstream: &dyn Upstream, separator: &str, caller: &Caller) -> Value {
    let mut tools = Vec::new();
    for server in upstream.servers() {
        if !caller.sees_server(server.name()) {
            continue;
        }
        for tool in server.description().tools() {
            let visible = tool
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| caller.sees(server.name(), Item::Tool(name)));
            if !visible {
                continue;
            }
            let mut tool = tool.clone();
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                let renamed = namespaced(server.name(), separator, name);
                tool["name"] = Value::String(renamed);
            }
            tools.push(tool);
        }
    }
    json!({ "tools": tools })
}

/// What a collected list is, and how its entries are renamed.
#[derive(Clone, Copy)]
pub(crate) enum ListKind {
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub(crate) fn from_method(method: &str) -> Option<ListKind> {
        match method {
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            _ => None,
        }
    }

    fn method(self) -> &'static str {
        match self {
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    fn field(self) -> &'static str {
        match self {
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    fn capability(self) -> &'static str {
        match self {
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::ResourceTemplates => "resources",
        }
    }
}

/// Collects a list from every server offering the feature, all pages, filtered to what
/// `caller` may use, renamed. A server that fails is left out and logged rather than
/// failing the whole list.
pub(crate) async fn collect_list(
    upstream: &dyn Upstream,
    separator: &str,
    kind: ListKind,
    caller: &Caller,
) -> Value {
    let servers = upstream.servers().iter().filter(|server| {
        caller.sees_server(server.name())
            && server
                .description()
                .capabilities()
                .get(kind.capability())
                .is_some()
    });
    let lists = futures_util::future::join_all(
        servers.map(|server| collect_one(upstream, server, separator, kind, caller)),
    )
    .await;
    let items: Vec<Value> = lists.into_iter().flatten().collect();
    let mut result = Map::new();
    result.insert(kind.field().into(), Value::Array(items));
    Value::Object(result)
}

async fn collect_one(
    upstream: &dyn Upstream,
    server: &ServerHandle,
    separator: &str,
    kind: ListKind,
    caller: &Caller,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_LIST_PAGES {
        let mut request = json!({ "jsonrpc": "2.0", "id": 0, "method": kind.method() });
        if let Some(cursor) = cursor.take() {
            request["params"] = json!({ "cursor": cursor });
        }
        // The collection has no cache partition (only shared results are reused), but an
        // isolated server lists what the caller's own processes offer.
        let collector = RouterCaller {
            identity: Some(caller.identity_for_backends(None, None)),
            ..RouterCaller::default()
        };
        let mut call = upstream.forward(server, request, false, &collector).await;
        let response = loop {
            match call.next().await {
                Step::Event(_) => continue,
                Step::Done(response) => break response,
            }
        };
        let result = match response {
            Ok(response) => match response.get("result") {
                Some(result) => result.clone(),
                None => {
                    tracing::warn!(server = %server.name(), method = kind.method(), error = %response, "left out of the aggregated list");
                    break;
                }
            },
            Err(error) => {
                tracing::warn!(server = %server.name(), method = kind.method(), %error, "left out of the aggregated list");
                break;
            }
        };
        let mut result = result;
        caller.filter_list(server.name(), kind.method(), Some(&mut result));
        let mut page = result
            .get(kind.field())
            .cloned()
            .unwrap_or_else(|| json!([]));
        match kind {
            ListKind::Prompts => rename_all(&mut page, "name", server.name(), separator),
            ListKind::Resources => prefix_uris(Some(&mut page), "uri", server.name()),
            ListKind::ResourceTemplates => {
                prefix_uris(Some(&mut page), "uriTemplate", server.name())
            }
        }
        if let Value::Array(page) = page {
            items.extend(page);
        }
        match result.get("nextCursor") {
            Some(next) if !next.is_null() => cursor = Some(next.clone()),
            _ => break,
        }
    }
    items
}

fn rename_all(items: &mut Value, field: &str, server: &str, separator: &str) {
    let Some(items) = items.as_array_mut() else {
        return;
    };
    for item in items {
        if let Some(slot) = item.get_mut(field)
            && let Some(name) = slot.as_str()
        {
            *slot = Value::String(namespaced(server, separator, name));
        }
    }
}

/// Where an aggregated request goes, and the request as that server must see it.
pub(crate) struct Routed<'a> {
    pub server: &'a ServerHandle,
    pub message: Value,
}

/// Routes a request that names a tool, prompt or resource, stripping the namespace.
/// `Err` carries a message for an invalid-params error.
pub(crate) fn route<'a>(
    upstream: &'a dyn Upstream,
    separator: &str,
    mut message: Value,
) -> Result<Routed<'a>, String> {
    let method = mcp_bridge_jsonrpc::method(&message)
        .unwrap_or_default()
        .to_owned();
    let params = message
        .get_mut("params")
        .ok_or_else(|| format!("{method} needs params"))?;
    let server = match method.as_str() {
        "tools/call" | "prompts/get" => strip_name(upstream, separator, params, "name")?,
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            strip_uri(upstream, params.get_mut("uri"))?
        }
        "completion/complete" => {
            let reference = params
                .get_mut("ref")
                .ok_or("completion/complete needs params.ref")?;
            if reference.get("uri").is_some() {
                strip_uri(upstream, reference.get_mut("uri"))?
            } else {
                strip_name(upstream, separator, reference, "name")?
            }
        }
        _ => {
            return Err(format!(
                "method '{method}' is not available on the aggregated endpoint /mcp; use /mcp/{{server}}"
            ));
        }
    };
    Ok(Routed { server, message })
}

fn strip_name<'a>(
    upstream: &'a dyn Upstream,
    separator: &str,
    params: &mut Value,
    field: &str,
) -> Result<&'a ServerHandle, String> {
    let slot = params
        .get_mut(field)
        .ok_or_else(|| format!("missing params.{field}"))?;
    let name = slot
        .as_str()
        .ok_or_else(|| format!("params.{field} must be a string"))?;
    let (server, original) = split_name(upstream, separator, name).ok_or_else(|| {
        let servers: Vec<&str> = upstream
            .servers()
            .iter()
            .map(|server| &**server.name())
            .collect();
        format!(
            "unknown name '{name}': names on /mcp are '{{server}}{separator}{{name}}' with server one of: {}",
            servers.join(", ")
        )
    })?;
    *slot = Value::String(original);
    Ok(server)
}

fn strip_uri<'a>(
    upstream: &'a dyn Upstream,
    slot: Option<&mut Value>,
) -> Result<&'a ServerHandle, String> {
    let slot = slot.ok_or("missing uri")?;
    let uri = slot.as_str().ok_or("uri must be a string")?;
    let (server, original) = split_uri(upstream, uri).ok_or_else(|| {
        format!("unknown resource URI '{uri}': URIs on /mcp look like '{RESOURCE_PREFIX}{{server}}/{{original uri}}'")
    })?;
    *slot = Value::String(original);
    Ok(server)
}

/// Rewrites a server's notification for aggregated clients (resource URIs prefixed).
pub(crate) fn rewrite_notification(server: &str, mut message: Value) -> Value {
    if mcp_bridge_jsonrpc::method(&message) == Some("notifications/resources/updated")
        && let Some(slot) = message
            .get_mut("params")
            .and_then(|params| params.get_mut("uri"))
        && let Some(uri) = slot.as_str()
    {
        *slot = Value::String(prefixed_uri(server, uri));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_uris_round_trip() {
        assert_eq!(namespaced("demo", "__", "get_tasks"), "demo__get_tasks");
        assert_eq!(
            prefixed_uri("mem", "file:///a/b.txt"),
            "mcp-bridge://mem/file:///a/b.txt"
        );
        let mut contents = json!([{ "uri": "demo://x", "text": "t" }]);
        prefix_uris(Some(&mut contents), "uri", "s");
        assert_eq!(contents[0]["uri"], "mcp-bridge://s/demo://x");
        let mut call = json!({"content":[
            {"type":"resource_link","uri":"test://a","name":"a"},
            {"type":"resource","resource":{"uri":"test://b","text":"b"}},
            {"type":"text","text":"test://c"}]});
        prefix_result_uris(Some(&mut call), "s");
        assert_eq!(call["content"][0]["uri"], "mcp-bridge://s/test://a");
        assert_eq!(
            call["content"][1]["resource"]["uri"],
            "mcp-bridge://s/test://b"
        );
        assert_eq!(call["content"][2]["text"], "test://c");
        let note = json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"a://b"}});
        assert_eq!(
            rewrite_notification("s", note)["params"]["uri"],
            "mcp-bridge://s/a://b"
        );
    }
}
