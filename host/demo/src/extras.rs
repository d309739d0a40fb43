//! The demo server's small prompts and resources surfaces, so the bridge's prompt and resource
//! paths (aggregation, reads, caching) have a real server to work against.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::protocol::{RpcError, parse_params};
use super::server::Server;
use super::store::{StatusFilter, Store};

/// Answers the prompt and resource methods; `None` when `method` is not one of them.
pub(crate) fn handle(
    server: &Server,
    method: &str,
    params: Option<&RawValue>,
) -> Option<Result<String, RpcError>> {
    Some(match method {
        "resources/list" => Ok(resources_list().to_string()),
        "resources/templates/list" => Ok(resource_templates_list().to_string()),
        "resources/read" => {
            parse_params::<ReadParams>(params).and_then(|read| read_resource(server, &read.uri))
        }
        "prompts/list" => Ok(prompts_list().to_string()),
        "prompts/get" => parse_params::<GetPromptParams>(params).and_then(|get| {
            server.read_store(|store| get_prompt(store, &get.name, &get.arguments))?
        }),
        _ => return None,
    })
}

const MIME_JSON: &str = "application/json";

/// The `resources/list` result (one page holds every resource).
pub(super) fn resources_list() -> Value {
    let resource = |uri: &str, name: &str, title: &str, description: &str| {
        json!({
            "uri": uri,
            "name": name,
            "title": title,
            "description": description,
            "mimeType": MIME_JSON,
        })
    };
    json!({
        "resources": [
            resource("demo://tasks", "tasks", "All tasks", "Every task, sorted by id."),
            resource("demo://clients", "clients", "Clients", "The clients tasks can belong to."),
            resource("demo://habits", "habits", "Habits", "Tracked habits and their streaks."),
            resource("demo://metrics/today", "metrics", "Today's metrics", "Task counts and points."),
        ]
    })
}

/// The `resources/templates/list` result.
pub(super) fn resource_templates_list() -> Value {
    json!({
        "resourceTemplates": [{
            "uriTemplate": "demo://tasks/{id}",
            "name": "task",
            "title": "One task",
            "description": "A single task by its numeric id.",
            "mimeType": MIME_JSON,
        }]
    })
}

#[derive(Deserialize)]
struct ReadParams {
    uri: String,
}

/// The serialized `resources/read` result for one of the demo's own URIs.
pub(super) fn read_resource(server: &Server, uri: &str) -> Result<String, RpcError> {
    let not_found = || RpcError::ResourceNotFound(uri.to_owned());
    let text = server.read_store(|store| {
        let body = match uri {
            "demo://tasks" => {
                let tasks = store
                    .tasks(StatusFilter::All, None, None)
                    .map_err(|_| not_found())?;
                json!({ "tasks": tasks })
            }
            "demo://clients" => json!({ "clients": store.clients() }),
            "demo://habits" => json!({ "habits": store.habits() }),
            "demo://metrics/today" => json!(store.metrics()),
            _ => {
                let id = uri
                    .strip_prefix("demo://tasks/")
                    .and_then(|id| id.parse::<u64>().ok())
                    .ok_or_else(not_found)?;
                json!({ "task": store.task(id).map_err(|_| not_found())? })
            }
        };
        Ok::<_, RpcError>(body.to_string())
    })??;
    Ok(json!({
        "contents": [{ "uri": uri, "mimeType": MIME_JSON, "text": text }]
    })
    .to_string())
}

/// The `prompts/list` result.
pub(super) fn prompts_list() -> Value {
    json!({
        "prompts": [
            {
                "name": "plan_day",
                "title": "Plan the day",
                "description": "Asks for a plan covering the open tasks, optionally for one client.",
                "arguments": [{
                    "name": "client_id",
                    "description": "Only plan this client's tasks.",
                    "required": false,
                }],
            },
            {
                "name": "habit_checkin",
                "title": "Habit check-in",
                "description": "Asks for a short check-in on the tracked habits.",
                "arguments": [],
            },
        ]
    })
}

#[derive(Deserialize)]
struct GetPromptParams {
    name: String,
    #[serde(default)]
    arguments: Map<String, Value>,
}

fn get_prompt(
    store: &Store,
    name: &str,
    arguments: &Map<String, Value>,
) -> Result<String, RpcError> {
    let (description, text) = match name {
        "plan_day" => {
            let client_id = match arguments.get("client_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(id)) => Some(id.as_str()),
                Some(_) => {
                    return Err(RpcError::InvalidParams(
                        "prompt argument client_id must be a string".into(),
                    ));
                }
            };
            let tasks = store
                .tasks(StatusFilter::Active, client_id, None)
                .map_err(|error| RpcError::InvalidParams(error.to_string()))?;
            let mut text = String::from("Plan my day around these open tasks:\n");
            for task in tasks {
                // Writing to a String cannot fail.
                let _ = write!(
                    text,
                    "- #{} {} ({} points",
                    task.id, task.title, task.points
                );
                match &task.client_id {
                    Some(client) => {
                        let _ = writeln!(text, ", client {client})");
                    }
                    None => text.push_str(")\n"),
                }
            }
            ("A day plan for the open tasks", text)
        }
        "habit_checkin" => {
            let mut text = String::from("Give me a short check-in on my habits:\n");
            for habit in store.habits() {
                let _ = writeln!(
                    text,
                    "- {} ({}, streak {})",
                    habit.name, habit.frequency, habit.streak
                );
            }
            ("A check-in on the tracked habits", text)
        }
        _ => return Err(RpcError::UnknownPrompt(name.to_owned())),
    };
    Ok(json!({
        "description": description,
        "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_reflect_the_store_and_reject_bad_input() {
        let store = Store::seeded();
        let no_args = Map::new();
        let plan = get_prompt(&store, "plan_day", &no_args).unwrap_or_default();
        assert!(plan.contains("#1 Draft Q3 proposal"));
        assert!(!plan.contains("Fix invoice export"));

        let mut bad = Map::new();
        bad.insert("client_id".into(), "umbrella".into());
        assert!(matches!(
            get_prompt(&store, "plan_day", &bad),
            Err(RpcError::InvalidParams(_))
        ));
        assert!(matches!(
            get_prompt(&store, "nope", &no_args),
            Err(RpcError::UnknownPrompt(_))
        ));
    }
}
