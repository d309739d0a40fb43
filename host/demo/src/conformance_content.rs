//! The conformance fixtures' resources, prompts, subscriptions and completions (offered with
//! `--conformance-fixtures`), added beside the demo's own so both surfaces stay usable at once.
//!
//! Resources live under `test://`: two static ones (text and a PNG blob), one the suite
//! subscribes to, and the template `test://template/{id}/data`. Subscriptions are real: a
//! subscribed demo resource gets `notifications/resources/updated` when a write tool changes the
//! store (see `conformance::after_store_call`). Completions draw on what the server
//! actually holds (client ids, task ids, resource URIs) wherever an argument has such a domain.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::conformance_media::{PNG_MIME, png_base64};
use super::extras;
use super::protocol::RpcError;
use super::server::Server;
use super::store::StatusFilter;

const STATIC_TEXT: &str = "test://static-text";
const STATIC_BINARY: &str = "test://static-binary";
const WATCHED: &str = "test://watched-resource";
const TEMPLATE: &str = "test://template/{id}/data";
const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";
const DEMO_TASK_TEMPLATE: &str = "demo://tasks/{id}";

/// The most values one `completion/complete` answer carries (the spec's limit).
const MAX_COMPLETIONS: usize = 100;

/// Sample values suggested for the free-text arguments of `test_prompt_with_arguments`.
const SAMPLE_ARGUMENTS: [&str; 6] = [
    "hello",
    "world",
    "testValue1",
    "testValue2",
    "paris",
    "party",
];

/// The fixture resources, in `resources/list` order.
pub(crate) fn resources() -> Vec<Value> {
    vec![
        json!({
            "uri": STATIC_TEXT,
            "name": "static-text",
            "title": "Static text resource",
            "description": "A fixed text resource.",
            "mimeType": "text/plain",
        }),
        json!({
            "uri": STATIC_BINARY,
            "name": "static-binary",
            "title": "Static binary resource",
            "description": "A 1x1 red PNG, served as a base64 blob.",
            "mimeType": PNG_MIME,
        }),
        json!({
            "uri": WATCHED,
            "name": "watched-resource",
            "title": "Watched resource",
            "description": "A text resource clients may subscribe to.",
            "mimeType": "text/plain",
        }),
    ]
}

/// The fixture resource templates.
pub(crate) fn resource_templates() -> Vec<Value> {
    vec![json!({
        "uriTemplate": TEMPLATE,
        "name": "template",
        "title": "Resource template",
        "description": "A JSON document for any id, with the id substituted into it.",
        "mimeType": "application/json",
    })]
}

/// Reads a fixture resource: `None` when `uri` is not a `test://` URI, so the demo's own
/// resources get their turn.
pub(crate) fn read(uri: &str) -> Option<Result<Value, RpcError>> {
    if !uri.starts_with("test://") {
        return None;
    }
    let content = match uri {
        STATIC_TEXT => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource.",
        }),
        STATIC_BINARY => json!({ "uri": uri, "mimeType": PNG_MIME, "blob": png_base64() }),
        WATCHED => {
            json!({ "uri": uri, "mimeType": "text/plain", "text": "Watched resource content" })
        }
        _ => match template_id(uri) {
            Some(id) => {
                let document =
                    json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
                json!({ "uri": uri, "mimeType": "application/json", "text": document.to_string() })
            }
            None => return Some(Err(RpcError::ResourceNotFound(uri.to_owned()))),
        },
    };
    Some(Ok(json!({ "contents": [content] })))
}

/// The `{id}` of a URI matching `test://template/{id}/data`: one non-empty path segment.
fn template_id(uri: &str) -> Option<&str> {
    uri.strip_prefix(TEMPLATE_PREFIX)?
        .strip_suffix(TEMPLATE_SUFFIX)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Reads any resource the server serves, fixture or demo, as a `resources/read` result.
pub(crate) fn read_any(server: &Server, uri: &str) -> Result<Value, RpcError> {
    if let Some(fixture) = read(uri) {
        return fixture;
    }
    let text = extras::read_resource(server, uri)?;
    serde_json::from_str(&text).map_err(|error| RpcError::InvalidParams(error.to_string()))
}

/// The fixture prompts, in `prompts/list` order.
pub(crate) fn prompts() -> Vec<Value> {
    let argument = |name: &str, description: &str| json!({ "name": name, "description": description, "required": true });
    vec![
        json!({
            "name": "test_simple_prompt",
            "title": "Simple prompt",
            "description": "A prompt without arguments.",
            "arguments": [],
        }),
        json!({
            "name": "test_prompt_with_arguments",
            "title": "Prompt with arguments",
            "description": "A prompt that quotes its two arguments.",
            "arguments": [
                argument("arg1", "First test argument"),
                argument("arg2", "Second test argument"),
            ],
        }),
        json!({
            "name": "test_prompt_with_embedded_resource",
            "title": "Prompt with an embedded resource",
            "description": "A prompt that embeds a resource: its contents when the server serves it.",
            "arguments": [argument("resourceUri", "URI of the resource to embed")],
        }),
        json!({
            "name": "test_prompt_with_image",
            "title": "Prompt with an image",
            "description": "A prompt that includes a PNG image.",
            "arguments": [],
        }),
    ]
}

/// Builds a fixture prompt: `None` when `name` is not one, so the demo's prompts get their turn.
pub(crate) fn get_prompt(
    server: &Server,
    name: &str,
    arguments: &Map<String, Value>,
) -> Option<Result<Value, RpcError>> {
    let text = |text: &str| json!({ "role": "user", "content": { "type": "text", "text": text } });
    let messages = match name {
        "test_simple_prompt" => Ok(vec![text("This is a simple prompt for testing.")]),
        "test_prompt_with_arguments" => required(arguments, name, "arg1").and_then(|arg1| {
            let arg2 = required(arguments, name, "arg2")?;
            Ok(vec![text(&format!(
                "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
            ))])
        }),
        "test_prompt_with_embedded_resource" => {
            required(arguments, name, "resourceUri").map(|uri| {
                let resource = embedded_resource(server, uri);
                vec![
                    json!({ "role": "user", "content": { "type": "resource", "resource": resource } }),
                    text("Please process the embedded resource above."),
                ]
            })
        }
        "test_prompt_with_image" => Ok(vec![
            json!({
                "role": "user",
                "content": { "type": "image", "data": png_base64(), "mimeType": PNG_MIME },
            }),
            text("Please analyze the image above."),
        ]),
        _ => return None,
    };
    Some(messages.map(|messages| json!({ "messages": messages })))
}

fn required<'a>(
    arguments: &'a Map<String, Value>,
    prompt: &str,
    name: &str,
) -> Result<&'a str, RpcError> {
    match arguments.get(name) {
        Some(Value::String(value)) => Ok(value),
        None | Some(Value::Null) => Err(RpcError::InvalidParams(format!(
            "prompt {prompt} needs the argument {name}"
        ))),
        Some(_) => Err(RpcError::InvalidParams(format!(
            "prompt argument {name} must be a string"
        ))),
    }
}

/// The contents of `uri` when the server serves it; otherwise a text stand-in that names the
/// URI, since a prompt may legitimately refer to a resource held elsewhere.
fn embedded_resource(server: &Server, uri: &str) -> Value {
    let served = read_any(server, uri)
        .ok()
        .and_then(|result| result["contents"].get(0).cloned());
    served.unwrap_or_else(|| {
        json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "Embedded resource content for testing.",
        })
    })
}

#[derive(Deserialize)]
struct CompleteParams {
    #[serde(rename = "ref")]
    reference: Reference,
    argument: CompleteArgument,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Reference {
    #[serde(rename = "ref/prompt")]
    Prompt { name: String },
    #[serde(rename = "ref/resource")]
    Resource { uri: String },
}

#[derive(Deserialize)]
struct CompleteArgument {
    name: String,
    #[serde(default)]
    value: String,
}

/// Answers `completion/complete` for the fixture and demo prompts and templates: the candidates
/// of the argument's domain that start with the typed value (ignoring case), at most 100.
pub(crate) fn complete(server: &Server, params: &Value) -> Result<Value, RpcError> {
    let params = CompleteParams::deserialize(params)
        .map_err(|error| RpcError::InvalidParams(error.to_string()))?;
    let argument = params.argument.name.as_str();
    let unknown_argument = |owner: &str| {
        RpcError::InvalidParams(format!("{owner} has no completable argument {argument}"))
    };
    let candidates: Vec<String> = match &params.reference {
        Reference::Prompt { name } => match (name.as_str(), argument) {
            ("test_prompt_with_arguments", "arg1" | "arg2") => SAMPLE_ARGUMENTS
                .iter()
                .map(|&word| word.to_owned())
                .collect(),
            ("test_prompt_with_embedded_resource", "resourceUri") => static_uris(),
            ("plan_day", "client_id") => server.read_store(|store| {
                store
                    .clients()
                    .iter()
                    .map(|client| client.id.to_owned())
                    .collect()
            })?,
            (other, _) if is_prompt(other) => return Err(unknown_argument(other)),
            (other, _) => return Err(RpcError::UnknownPrompt(other.to_owned())),
        },
        Reference::Resource { uri } => match (uri.as_str(), argument) {
            // Any id is valid for the fixture template, so there is nothing to suggest.
            (TEMPLATE, "id") => Vec::new(),
            (DEMO_TASK_TEMPLATE, "id") => server.read_store(|store| {
                let tasks = store
                    .tasks(StatusFilter::All, None, None)
                    .unwrap_or_default();
                tasks.iter().map(|task| task.id.to_string()).collect()
            })?,
            (TEMPLATE | DEMO_TASK_TEMPLATE, _) => return Err(unknown_argument(uri)),
            (other, _) => {
                return Err(RpcError::InvalidParams(format!(
                    "no resource template {other}"
                )));
            }
        },
    };
    let typed = params.argument.value.to_lowercase();
    let matches: Vec<String> = candidates
        .into_iter()
        .filter(|candidate| candidate.to_lowercase().starts_with(&typed))
        .collect();
    let total = matches.len();
    let values: Vec<String> = matches.into_iter().take(MAX_COMPLETIONS).collect();
    Ok(json!({
        "completion": { "values": values, "total": total, "hasMore": total > MAX_COMPLETIONS }
    }))
}

fn is_prompt(name: &str) -> bool {
    let listed = |list: &[Value]| list.iter().any(|prompt| prompt["name"] == name);
    listed(&prompts())
        || extras::prompts_list()["prompts"]
            .as_array()
            .is_some_and(|list| listed(list))
}

/// The URIs of every listed (non-template) resource, fixture and demo.
fn static_uris() -> Vec<String> {
    let demo = extras::resources_list();
    let demo = demo["resources"].as_array().cloned().unwrap_or_default();
    resources()
        .iter()
        .chain(&demo)
        .filter_map(|resource| resource["uri"].as_str().map(str::to_owned))
        .collect()
}

/// The demo resources a store write may have changed: the task list, the metrics, and the one
/// task (when its id is known).
pub(crate) fn changed_by_write(task_id: Option<u64>) -> Vec<String> {
    let mut uris = vec!["demo://tasks".to_owned(), "demo://metrics/today".to_owned()];
    uris.extend(task_id.map(|id| format!("demo://tasks/{id}")));
    uris
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;
    use crate::DemoOptions;

    fn server() -> Arc<Server> {
        let (queue, _outgoing) = mpsc::unbounded_channel();
        let options = DemoOptions {
            conformance_fixtures: true,
            ..DemoOptions::default()
        };
        match Server::new(options, queue) {
            Ok(server) => Arc::new(server),
            Err(error) => panic!("server setup failed: {error}"),
        }
    }

    fn values(result: &Result<Value, RpcError>) -> Vec<String> {
        let list = result
            .as_ref()
            .map(|value| value["completion"]["values"].clone());
        serde_json::from_value(list.unwrap_or_default()).unwrap_or_default()
    }

    #[test]
    fn reads_fixture_resources_and_leaves_others_alone() {
        let text = read(STATIC_TEXT).and_then(Result::ok).unwrap_or_default();
        assert_eq!(text["contents"][0]["mimeType"], "text/plain");
        let blob = read(STATIC_BINARY).and_then(Result::ok).unwrap_or_default();
        assert_eq!(blob["contents"][0]["blob"], png_base64());
        let templated = read("test://template/123/data").and_then(Result::ok);
        let text = templated.unwrap_or_default()["contents"][0]["text"].clone();
        let document: Value =
            serde_json::from_str(text.as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            document,
            json!({ "id": "123", "templateTest": true, "data": "Data for ID: 123" })
        );
        for bad in [
            "test://template//data",
            "test://template/1/2/data",
            "test://nope",
        ] {
            assert!(
                matches!(read(bad), Some(Err(RpcError::ResourceNotFound(_)))),
                "{bad}"
            );
        }
        assert!(read("demo://tasks").is_none());
        assert!(read_any(&server(), "demo://tasks/1").is_ok());
    }

    #[test]
    fn prompts_substitute_arguments_and_embed_served_resources() {
        let server = server();
        let mut arguments = Map::new();
        arguments.insert("arg1".into(), "one".into());
        let missing = get_prompt(&server, "test_prompt_with_arguments", &arguments);
        assert!(matches!(missing, Some(Err(RpcError::InvalidParams(_)))));
        arguments.insert("arg2".into(), "two".into());
        let prompt = get_prompt(&server, "test_prompt_with_arguments", &arguments);
        let prompt = prompt.and_then(Result::ok).unwrap_or_default();
        assert_eq!(
            prompt["messages"][0]["content"]["text"],
            "Prompt with arguments: arg1='one', arg2='two'"
        );

        let mut embed = Map::new();
        embed.insert("resourceUri".into(), STATIC_TEXT.into());
        let served = get_prompt(&server, "test_prompt_with_embedded_resource", &embed);
        let served = served.and_then(Result::ok).unwrap_or_default();
        assert_eq!(
            served["messages"][0]["content"]["resource"]["text"],
            "This is the content of the static text resource."
        );
        embed.insert("resourceUri".into(), "test://example-resource".into());
        let elsewhere = get_prompt(&server, "test_prompt_with_embedded_resource", &embed);
        let elsewhere = elsewhere.and_then(Result::ok).unwrap_or_default();
        assert_eq!(
            elsewhere["messages"][0]["content"]["resource"]["uri"],
            "test://example-resource"
        );

        let image = get_prompt(&server, "test_prompt_with_image", &Map::new());
        let image = image.and_then(Result::ok).unwrap_or_default();
        assert_eq!(image["messages"][0]["content"]["mimeType"], PNG_MIME);
        assert!(get_prompt(&server, "plan_day", &Map::new()).is_none());
    }

    #[test]
    fn completes_from_what_the_server_holds() {
        let server = server();
        let complete = |params: Value| complete(&server, &params);
        let clients = complete(json!({
            "ref": { "type": "ref/prompt", "name": "plan_day" },
            "argument": { "name": "client_id", "value": "G" }
        }));
        assert_eq!(values(&clients), ["globex"]);
        let tasks = complete(json!({
            "ref": { "type": "ref/resource", "uri": DEMO_TASK_TEMPLATE },
            "argument": { "name": "id", "value": "" }
        }));
        assert_eq!(values(&tasks), ["1", "2", "3", "4", "5"]);
        let words = complete(json!({
            "ref": { "type": "ref/prompt", "name": "test_prompt_with_arguments" },
            "argument": { "name": "arg1", "value": "test" }
        }));
        assert_eq!(values(&words), ["testValue1", "testValue2"]);
        assert_eq!(
            words
                .as_ref()
                .map(|w| w["completion"]["total"].clone())
                .ok(),
            Some(json!(2))
        );
        let uris = complete(json!({
            "ref": { "type": "ref/prompt", "name": "test_prompt_with_embedded_resource" },
            "argument": { "name": "resourceUri", "value": "demo://" }
        }));
        assert_eq!(values(&uris).len(), 4);

        let unknown = complete(json!({
            "ref": { "type": "ref/prompt", "name": "nope" },
            "argument": { "name": "x", "value": "" }
        }));
        assert!(matches!(unknown, Err(RpcError::UnknownPrompt(_))));
        let no_argument = complete(json!({
            "ref": { "type": "ref/prompt", "name": "plan_day" },
            "argument": { "name": "x", "value": "" }
        }));
        assert!(matches!(no_argument, Err(RpcError::InvalidParams(_))));
        let malformed = complete(json!({ "ref": { "type": "ref/other" } }));
        assert!(matches!(malformed, Err(RpcError::InvalidParams(_))));
    }
}
