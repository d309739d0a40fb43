//! "Explain any call": what a policy chain decides for one call, as `POST /admin/explain`
//! (over the serving chain) and `bench explain` (over a chain loaded from a config and
//! plugin files) both show it. This module is the one implementation they share: the
//! request's fields and their checks, the call as the router would see it (the cache's
//! own request reading and key functions, the policy crate's reading of a tool's
//! annotations), the chain's explanation ([`PolicyChain::explain`]), and the key and
//! partition the entry would be filed under. Nothing here reaches a backend.

mod command;

use serde_json::{Map, Value, json};

use crate::LabError;
use mcp_bridge_cache::{cache_key, key_arguments, keyed_call};
use mcp_bridge_config::{Isolation, ServerConfig};
use mcp_bridge_policy::{Annotations, Call, CallKind, Decision, PolicyChain, ServerHints};

pub use command::{ExplainArgs, run};

/// The methods an explanation covers: those the cache has a part in.
const METHODS: &[&str] = &[
    "tools/call",
    "resources/read",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

/// The longest principal name an explanation accepts (a JWT subject or an API key's name
/// is far shorter).
const MAX_PRINCIPAL_BYTES: usize = 256;

/// The call to explain: `{"server", "method"?, "tool" | "uri", "arguments"?, "principal"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainRequest {
    pub server: String,
    /// `tools/call` unless given.
    pub method: String,
    /// The JSON-RPC params the router would read the call from.
    params: Value,
    /// The principal's name (an API key's name, a JWT subject), as the front names it.
    pub principal: Option<String>,
}

/// A request field that is wrong, named.
fn field_error(field: &str, message: impl std::fmt::Display) -> LabError {
    LabError::Usage(format!("{field}: {message}"))
}

impl ExplainRequest {
    /// Reads and checks a request. Every error names its field. The size and nesting of
    /// the JSON are the transport's to bound (the admin body limit and the JSON parser's
    /// nesting limit, as for MCP bodies).
    pub fn from_json(body: &Value) -> Result<ExplainRequest, LabError> {
        let Some(fields) = body.as_object() else {
            return Err(field_error(
                "body",
                "send a JSON object: {\"server\", \"method\"?, \"tool\" | \"uri\", \"arguments\"?, \"principal\"?}",
            ));
        };
        const KNOWN: &[&str] = &["server", "method", "tool", "uri", "arguments", "principal"];
        if let Some(unknown) = fields.keys().find(|key| !KNOWN.contains(&key.as_str())) {
            return Err(field_error(
                unknown,
                format!("unknown field; the fields are {}", KNOWN.join(", ")),
            ));
        }
        let text = |field: &str| -> Result<Option<String>, LabError> {
            match fields.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) if !text.is_empty() => Ok(Some(text.clone())),
                Some(_) => Err(field_error(field, "must be a non-empty string")),
            }
        };
        let server = text("server")?.ok_or_else(|| field_error("server", "is required"))?;
        let method = text("method")?.unwrap_or_else(|| "tools/call".to_owned());
        if !METHODS.contains(&method.as_str()) {
            return Err(field_error(
                "method",
                format!(
                    "the cache has no part in `{method}` (every such call reaches the server); explain one of {}",
                    METHODS.join(", ")
                ),
            ));
        }
        let (tool, uri) = (text("tool")?, text("uri")?);
        let arguments = fields.get("arguments").filter(|value| !value.is_null());
        if arguments.is_some_and(|arguments| !arguments.is_object()) {
            return Err(field_error("arguments", "must be a JSON object"));
        }
        let params = match method.as_str() {
            "tools/call" => {
                if uri.is_some() {
                    return Err(field_error("uri", "a tools/call names a `tool`, not a uri"));
                }
                let tool = tool.ok_or_else(|| field_error("tool", "is required for tools/call"))?;
                let mut params = json!({ "name": tool });
                if let Some(arguments) = arguments {
                    params["arguments"] = arguments.clone();
                }
                params
            }
            "resources/read" => {
                if tool.is_some() {
                    return Err(field_error(
                        "tool",
                        "a resources/read names a `uri`, not a tool",
                    ));
                }
                if arguments.is_some() {
                    return Err(field_error("arguments", "a resources/read takes none"));
                }
                json!({ "uri": uri.ok_or_else(|| field_error("uri", "is required for resources/read"))? })
            }
            _ => {
                if let Some(field) = tool
                    .as_ref()
                    .map(|_| "tool")
                    .or(uri.as_ref().map(|_| "uri"))
                {
                    return Err(field_error(
                        field,
                        format!("a {method} names neither a tool nor a uri"),
                    ));
                }
                // A list's params (a cursor) are its arguments.
                arguments.cloned().unwrap_or_else(|| json!({}))
            }
        };
        let principal = text("principal")?;
        if principal
            .as_ref()
            .is_some_and(|principal| principal.len() > MAX_PRINCIPAL_BYTES)
        {
            return Err(field_error(
                "principal",
                format!("longer than {MAX_PRINCIPAL_BYTES} bytes"),
            ));
        }
        Ok(ExplainRequest {
            server,
            method,
            params,
            principal,
        })
    }
}

impl ExplainRequest {
    /// The tool a `tools/call` names, to look up in the server's catalogue.
    pub fn tool(&self) -> Option<&str> {
        if self.method != "tools/call" {
            return None;
        }
        self.params.get("name").and_then(Value::as_str)
    }
}

/// What the bridge knows about the call's server, besides its name.
#[derive(Debug, Clone, Default)]
pub struct ServerFacts {
    /// The server's catalogue: `None` when it is not known (no handshake yet, or offline
    /// without `--catalog`); else the tool's entry, `None` when the catalogue does not
    /// list it.
    pub catalogue: Option<Option<Value>>,
    /// Whether each caller gets processes of its own (`isolation` other than `shared`):
    /// every result is then filed under the caller's process group.
    pub isolated: bool,
    /// Whether the server is told who calls (`identity_meta`): every result is private.
    pub identity_meta: bool,
}

impl ServerFacts {
    /// The facts a server's config gives, with the catalogue still to be added.
    pub fn of_config(server: &ServerConfig) -> ServerFacts {
        ServerFacts {
            catalogue: None,
            isolated: server.isolation != Isolation::Shared,
            identity_meta: server.identity_meta,
        }
    }
}

/// Explains `request` against `chain`: the document `POST /admin/explain` answers and
/// `bench explain` prints (the README's "Explain a call" lists its fields). The call is
/// built as the router builds it; nothing reaches a backend.
pub fn explain(chain: &PolicyChain, request: &ExplainRequest, facts: &ServerFacts) -> Value {
    let params = Some(&request.params);
    // `from_json` only accepts methods the cache keys, with their name or uri.
    let Some((kind, name)) = keyed_call(&request.method, params) else {
        return json!({ "error": format!("the cache has no part in {}", request.method) });
    };
    let arguments = key_arguments(kind, params, &[]);
    let listed = facts.catalogue.as_ref().and_then(Option::as_ref);
    let annotations = match kind {
        CallKind::Tool => listed.map_or_else(Annotations::default, Annotations::of_tool),
        // Reads and lists change nothing: the router treats them as read-only.
        _ => Annotations {
            read_only: Some(true),
            ..Annotations::default()
        },
    };
    // The front's partition of an individual principal's private results
    // (`front::identity::partition`); an isolated or identity-told server files every
    // result privately, as the router's `private_to` does.
    let principal = request
        .principal
        .as_ref()
        .map(|name| format!("principal:{name}"));
    let forced_private = facts.isolated || facts.identity_meta;
    let call_principal = match (&principal, facts.identity_meta) {
        (None, true) => Some("bridge".to_owned()),
        (principal, _) => principal.clone(),
    };
    let call = Call {
        server: &request.server,
        method: &request.method,
        kind,
        name,
        canonical_arguments: &arguments,
        annotations,
        hints: ServerHints::default(),
        principal: call_principal.as_deref(),
    };
    let explained = chain.explain(&call);
    let mut document = Map::new();
    document.insert("generation".to_owned(), json!(explained.generation));
    document.insert(
        "call".to_owned(),
        json!({
            "server": request.server,
            "method": request.method,
            "name": name,
            "arguments": arguments,
            "principal": call.principal,
        }),
    );
    document.insert("tool".to_owned(), tool_json(kind, name, facts, annotations));
    if let Value::Object(fields) = explained.to_json() {
        document.extend(fields.into_iter().filter(|(key, _)| key != "generation"));
    }
    let cache = match &explained.sourced.decision {
        Decision::Cache(directive) => {
            let arguments = if kind == CallKind::Tool && !directive.ignore_arguments.is_empty() {
                key_arguments(kind, params, &directive.ignore_arguments)
            } else {
                arguments.clone()
            };
            let key = |partition: &str| {
                cache_key(
                    &request.server,
                    &request.method,
                    name,
                    partition,
                    &arguments,
                )
            };
            if facts.isolated {
                json!({
                    "partition": "group",
                    "key": Value::Null,
                    "note": "an isolated server's results are filed under the caller's process group, never shared",
                })
            } else if directive.shared && !forced_private {
                json!({
                    "partition": "shared",
                    "key": key(""),
                    "note": "a result the server marks cacheScope: private is filed under the caller's principal instead",
                })
            } else {
                match &call.principal {
                    Some(partition) => json!({
                        "partition": "principal",
                        "principal": partition,
                        "key": key(partition),
                    }),
                    None => json!({
                        "partition": "principal",
                        "key": Value::Null,
                        "note": "a private result without a principal is not stored: give `principal`",
                    }),
                }
            }
        }
        _ => Value::Null,
    };
    document.insert("cache".to_owned(), cache);
    Value::Object(document)
}

/// What the server's catalogue says about the call's tool.
fn tool_json(kind: CallKind, name: &str, facts: &ServerFacts, annotations: Annotations) -> Value {
    let hints = json!({
        "readOnlyHint": annotations.read_only,
        "destructiveHint": annotations.destructive,
        "idempotentHint": annotations.idempotent,
        "openWorldHint": annotations.open_world,
    });
    if kind != CallKind::Tool {
        return json!({
            "known": Value::Null,
            "annotations": hints,
            "note": "not a tool call: read-only, as the router treats it",
        });
    }
    match &facts.catalogue {
        None => json!({
            "known": Value::Null,
            "annotations": hints,
            "note": "the server's catalogue is not known (no handshake yet, or offline without --catalog): annotations unknown, so the built-in policy does not cache the tool and a completed call invalidates",
        }),
        Some(None) => json!({
            "known": false,
            "annotations": hints,
            "note": format!("the server does not list a tool `{name}`: annotations unknown"),
        }),
        Some(Some(_)) => json!({ "known": true, "annotations": hints }),
    }
}

/// A few lines a person reads: the call, each binding's answers, the decision with its
/// TTL and source, the key, and a write's invalidations.
pub fn human(document: &Value) -> String {
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let call = &document["call"];
    let mut out = format!(
        "{} {} {} (generation {})\n",
        text(&call["server"]),
        text(&call["method"]),
        text(&call["name"]),
        text(&document["generation"])
    );
    if let Some(note) = document["tool"]["note"].as_str() {
        out.push_str(&format!("  note: {note}\n"));
    }
    for (place, binding) in document["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut line = format!(
            "  {}. {} ({}): {}",
            place + 1,
            text(&binding["name"]),
            text(&binding["kind"]),
            answer_text(&binding["answer"])
        );
        if binding["applies"] == false {
            line.push_str(" [does not apply to this server]");
        }
        if binding["quarantined"] == true {
            line.push_str(" [quarantined]");
        }
        if !binding["ttl"].is_null() {
            line.push_str(&format!(
                "; ttl table: {}",
                answer_text(&binding["ttl"]["answer"])
            ));
        }
        if !binding["invalidations"].is_null() {
            line.push_str(&format!(
                "; invalidates: {}",
                answer_text(&binding["invalidations"]["answer"])
            ));
        }
        for question in ["", "ttl", "invalidations"] {
            let fault = if question.is_empty() {
                &binding["fault"]
            } else {
                &binding[question]["fault"]
            };
            if let Some(fault) = fault.as_str() {
                line.push_str(&format!("\n     fault: {fault}"));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!(
        "decided by {}: {}",
        text(&document["decided_by"]),
        answer_text(&document["decision"])
    ));
    if !document["ttl_source"].is_null() {
        out.push_str(&format!(", ttl from {}", text(&document["ttl_source"])));
    }
    out.push('\n');
    if let Some(cache) = document["cache"].as_object() {
        out.push_str(&format!(
            "key ({}): {}\n",
            text(&cache["partition"]),
            text(&cache["key"]).replace('\u{1f}', " \u{241f} ")
        ));
    }
    if let Some(invalidations) = document["invalidations"].as_object() {
        out.push_str(&format!(
            "a success invalidates ({}): {}\n",
            text(&invalidations["shaped_by"]),
            answer_text(&invalidations["applied"])
        ));
    }
    out
}

/// One answer in words: a decision, a TTL table's answer or invalidations.
fn answer_text(answer: &Value) -> String {
    match answer {
        Value::String(word) => word.clone(),
        Value::Array(rules) if rules.is_empty() => "nothing".to_owned(),
        Value::Array(rules) => rules
            .iter()
            .map(
                |rule| match (rule["server"].as_str(), rule["tool"].as_str()) {
                    (Some(server), Some(tool)) => format!("{server}/{tool}"),
                    (Some(server), None) => format!("all of {server}"),
                    _ => rule["tag"]
                        .as_str()
                        .map(|tag| format!("tag {tag}"))
                        .or_else(|| rule["key"].as_str().map(|_| "one key".to_owned()))
                        .unwrap_or_default(),
                },
            )
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(fields) => match fields.get("decision").and_then(Value::as_str) {
            Some("cache") => match fields.get("ttl_ms").and_then(Value::as_u64) {
                Some(ms) => format!(
                    "cache for {}",
                    humantime::format_duration(std::time::Duration::from_millis(ms))
                ),
                None => "cache, no expiry".to_owned(),
            },
            Some(other) => other.to_owned(),
            None => match fields.get("ttl_ms").and_then(Value::as_u64) {
                Some(0) => "0 (never cache)".to_owned(),
                Some(ms) => {
                    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
                }
                None => answer.to_string(),
            },
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
