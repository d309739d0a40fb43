//! The sessionless protocol version (2026-07-28): detection, envelope and header
//! validation, `server/discover`, and the result fields that version requires.
//!
//! In 2026-07-28 there is no `initialize` and no session: every request names its
//! version and the client's capabilities in `params._meta`, repeats the version, the
//! method and the target name in headers, and gets `resultType` (and, for lists and
//! reads, `ttlMs`/`cacheScope`) on its result.

use base64::Engine as _;
use http::HeaderMap;
use serde_json::{Value, json};

use super::AppState;
use super::error::FrontError;
use super::mcp::{Endpoint, SESSION_PROTOCOL_VERSIONS, STATELESS_PROTOCOL_VERSION, header_str};
use mcp_bridge_jsonrpc as jsonrpc;
use mcp_bridge_upstream::CacheHint;

pub(crate) const METHOD_HEADER: &str = "mcp-method";
pub(crate) const NAME_HEADER: &str = "mcp-name";

pub(crate) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub(crate) const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub(crate) const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub(crate) const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// Methods whose results carry `ttlMs` and `cacheScope` in 2026-07-28.
const CACHEABLE_RESULT_METHODS: [&str; 6] = [
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Until the cache decides per result, lists and reads are declared uncacheable for
/// clients: `ttlMs: 0` is always correct, and `private` never lets a shared cache
/// carry one principal's result to another.
const DEFAULT_TTL_MS: u64 = 0;
const DEFAULT_CACHE_SCOPE: &str = "private";

/// The protocol version a request names in `params._meta` (`None` for a batch).
pub(crate) fn meta_version(message: &Value) -> Option<&str> {
    meta(message, META_PROTOCOL_VERSION).and_then(Value::as_str)
}

fn meta<'a>(message: &'a Value, key: &str) -> Option<&'a Value> {
    message.get("params")?.get("_meta")?.get(key)
}

/// What a request's client declared it can answer (`_meta` clientCapabilities).
pub(crate) fn client_capabilities(message: &Value) -> Option<&Value> {
    meta(message, META_CLIENT_CAPABILITIES)
}

/// Which routing headers a sessionless request must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoutingHeaders {
    /// `Mcp-Method` (and `Mcp-Name` where the method has a name) must be present and
    /// repeat the body.
    Required,
    /// They may be missing, but one that is present must still repeat the body. Used
    /// when lenient mode accepted a 2026-07-28 body sent with an older (or no)
    /// `MCP-Protocol-Version`: such a transport does not know the 2026-07-28 headers.
    IfPresent,
}

/// Validates a sessionless request whose version `versions::resolve` settled: its
/// `_meta` envelope, and that the `Mcp-Method` and `Mcp-Name` headers agree with the
/// body (intermediaries route on the headers, so a contradiction is always refused).
pub(crate) fn validate(
    headers: &HeaderMap,
    message: &Value,
    routing: RoutingHeaders,
) -> Result<(), FrontError> {
    let method = jsonrpc::method(message).unwrap_or_default();
    let is_request = message.get("id").is_some();
    if is_request {
        if meta_version(message).is_none() {
            return Err(FrontError::MissingMeta(META_PROTOCOL_VERSION));
        }
        if meta(message, META_CLIENT_CAPABILITIES).is_none() {
            return Err(FrontError::MissingMeta(META_CLIENT_CAPABILITIES));
        }
    }
    let header_method = header_str(headers, METHOD_HEADER);
    let method_excused = header_method.is_none() && routing == RoutingHeaders::IfPresent;
    if header_method != Some(method) && !method_excused {
        return Err(FrontError::HeaderMismatch {
            header: "Mcp-Method",
            header_value: header_method.unwrap_or("(missing)").to_owned(),
            body_value: method.to_owned(),
        });
    }
    let name_field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return Ok(()),
    };
    let body_name = message
        .get("params")
        .and_then(|params| params.get(name_field))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let header_name = header_str(headers, NAME_HEADER).map(decode_header_value);
    let name_excused = header_name.is_none() && routing == RoutingHeaders::IfPresent;
    if header_name.as_deref() != Some(body_name) && !name_excused {
        return Err(FrontError::HeaderMismatch {
            header: "Mcp-Name",
            header_value: header_name.unwrap_or_else(|| "(missing)".to_owned()),
            body_value: body_name.to_owned(),
        });
    }
    Ok(())
}

/// Decodes the spec's `=?base64?...?=` form, used for values that are not plain ASCII.
fn decode_header_value(raw: &str) -> String {
    let Some(encoded) = raw
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    else {
        return raw.to_owned();
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| raw.to_owned())
}

/// Every version the front speaks, newest first.
pub(crate) fn supported_versions() -> Vec<&'static str> {
    let mut versions = vec![STATELESS_PROTOCOL_VERSION];
    versions.extend(SESSION_PROTOCOL_VERSIONS);
    versions
}

/// The log level a request asks for (2026-07-28 servers must send no log lines for a
/// request that names none).
pub(crate) fn log_level(message: &Value) -> Option<&str> {
    meta(message, META_LOG_LEVEL).and_then(Value::as_str)
}

/// Adds what a 2026-07-28 result must carry and a legacy backend does not send:
/// `resultType`, and `ttlMs`/`cacheScope` on lists and reads. When the bridge cached
/// the result, the client learns how long the bridge considers it fresh, and whether
/// it is shared.
pub(crate) fn complete_result(method: &str, response: &mut Value, hint: Option<CacheHint>) {
    let Some(result) = response.get_mut("result").and_then(Value::as_object_mut) else {
        return;
    };
    result
        .entry("resultType")
        .or_insert_with(|| json!("complete"));
    if let Some(hint) = hint
        && CACHEABLE_RESULT_METHODS.contains(&method)
    {
        result.insert("ttlMs".into(), json!(hint.ttl.as_millis() as u64));
        let scope = if hint.shared { "public" } else { "private" };
        result.insert("cacheScope".into(), json!(scope));
    }
    if CACHEABLE_RESULT_METHODS.contains(&method) {
        result
            .entry("ttlMs")
            .or_insert_with(|| json!(DEFAULT_TTL_MS));
        result
            .entry("cacheScope")
            .or_insert_with(|| json!(DEFAULT_CACHE_SCOPE));
    }
}

/// The bridge's own answer to a legacy server's request made during a 2026-07-28 call
/// that no input round carries (sampling and elicitation do: `input_rounds.rs`): roots
/// are reported empty and anything else is refused.
pub(crate) fn answer_server_request(request: &Value) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    match jsonrpc::method(request) {
        Some("roots/list") => jsonrpc::result_response(id, json!({ "roots": [] })),
        method => jsonrpc::error_response(
            id,
            jsonrpc::code::METHOD_NOT_FOUND,
            format!(
                "the client speaks MCP 2026-07-28, which has no server-to-client requests; '{}' needs a \
                 session-based client (protocol 2025-11-25 or older)",
                method.unwrap_or_default()
            ),
            None,
        ),
    }
}

/// Answers `server/discover`: the versions the front speaks and what the endpoint offers.
pub(crate) async fn discover(
    state: &AppState,
    endpoint: &Endpoint,
    caller: &mcp_bridge_upstream::Caller,
    id: Value,
) -> Value {
    let introduction = match super::mcp::describe(state, endpoint, caller).await {
        Ok(introduction) => introduction,
        Err(error) => return FrontError::from(error).to_jsonrpc(id),
    };
    let mut result = json!({
        "supportedVersions": supported_versions(),
        "capabilities": introduction.capabilities,
        "_meta": { META_SERVER_INFO: introduction.server_info },
    });
    if let Some(instructions) = introduction.instructions {
        result["instructions"] = instructions;
    }
    let mut response = jsonrpc::result_response(id, result);
    complete_result("server/discover", &mut response, None);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = value.parse() {
                map.insert(*name, value);
            }
        }
        map
    }

    fn call(name: &str) -> Value {
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"_meta":{
            META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: {}}}})
    }

    #[test]
    fn validates_headers_against_the_body() {
        let good = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "get_tasks"),
        ]);
        assert!(validate(&good, &call("get_tasks"), RoutingHeaders::Required).is_ok());
        assert!(matches!(
            validate(&good, &call("create_task"), RoutingHeaders::Required),
            Err(FrontError::HeaderMismatch {
                header: "Mcp-Name",
                ..
            })
        ));
        let encoded = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?Z2V0X3Rhc2tz?="),
        ]);
        assert!(validate(&encoded, &call("get_tasks"), RoutingHeaders::Required).is_ok());
        let no_method = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-name", "get_tasks"),
        ]);
        assert!(matches!(
            validate(&no_method, &call("get_tasks"), RoutingHeaders::Required),
            Err(FrontError::HeaderMismatch {
                header: "Mcp-Method",
                ..
            })
        ));
        let mut no_caps = call("get_tasks");
        no_caps["params"]["_meta"]
            .as_object_mut()
            .map(|m| m.remove(META_CLIENT_CAPABILITIES));
        assert!(matches!(
            validate(&good, &no_caps, RoutingHeaders::Required),
            Err(FrontError::MissingMeta(_))
        ));
    }

    #[test]
    fn lenient_routing_excuses_missing_headers_never_contradicting_ones() {
        let none = headers(&[]);
        assert!(validate(&none, &call("get_tasks"), RoutingHeaders::IfPresent).is_ok());
        assert!(matches!(
            validate(&none, &call("get_tasks"), RoutingHeaders::Required),
            Err(FrontError::HeaderMismatch {
                header: "Mcp-Method",
                ..
            })
        ));
        let contradicting = headers(&[("mcp-name", "create_task")]);
        assert!(matches!(
            validate(
                &contradicting,
                &call("get_tasks"),
                RoutingHeaders::IfPresent
            ),
            Err(FrontError::HeaderMismatch {
                header: "Mcp-Name",
                ..
            })
        ));
        let wrong_method = headers(&[("mcp-method", "tools/list")]);
        assert!(matches!(
            validate(&wrong_method, &call("get_tasks"), RoutingHeaders::IfPresent),
            Err(FrontError::HeaderMismatch {
                header: "Mcp-Method",
                ..
            })
        ));
    }

    #[test]
    fn completes_legacy_results() {
        let mut response = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[]}});
        complete_result("tools/list", &mut response, None);
        assert_eq!(response["result"]["resultType"], "complete");
        assert_eq!(response["result"]["ttlMs"], 0);
        let mut call = json!({"jsonrpc":"2.0","id":1,"result":{"content":[]}});
        complete_result("tools/call", &mut call, None);
        assert!(call["result"].get("ttlMs").is_none());
    }
}
