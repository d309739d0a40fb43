//! Handlers of the test-only tools (offered with `--test-tools`): sleeping, progress, crashing,
//! counters, changing the tool list, sampling through the client, and reporting the process's
//! environment and a request's `_meta`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tracing::warn;

use super::catalog::Tool;
use super::protocol;
use super::server::{LogLevel, Server};
use super::tools::{Args, CallParams, ToolError, ToolReply, invalid, payload};

/// The most steps `debug_progress` accepts, so one call cannot flood the client.
pub(crate) const MAX_PROGRESS_STEPS: u64 = 10_000;

/// The most variables one `debug_env` call may name.
pub(crate) const MAX_ENV_NAMES: usize = 32;

/// The longest variable name `debug_env` accepts, in characters.
pub(crate) const MAX_ENV_NAME_CHARS: usize = 128;

/// Runs a test-only tool.
pub(crate) async fn call(server: &Arc<Server>, tool: Tool, params: &CallParams) -> ToolReply {
    let args = Args::new(params.arguments.as_ref());
    let progress_token = params.progress_token();
    match tool {
        Tool::DebugSleep => {
            let ms = args.required_u64("ms")?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            payload(&json!({ "slept_ms": ms }))
        }
        Tool::DebugProgress => progress(server, args, progress_token).await,
        Tool::DebugCrash => {
            server.crash("debug_crash was called");
            // The writer ends the process; this call must never be answered.
            std::future::pending().await
        }
        Tool::DebugStats => payload(&server.stats()),
        Tool::DebugToggle => {
            let offered = server.toggle_extra_tool();
            server.notify("notifications/tools/list_changed", &json!({}));
            payload(&json!({ "extra_tool": offered }))
        }
        Tool::DebugSample => sample(server, args).await,
        Tool::DebugEnv => env(args),
        Tool::DebugMeta => payload(&json!({
            "pid": std::process::id(),
            "meta": params.meta,
        })),
        Tool::Extra => payload(&json!({ "extra": true })),
        Tool::GetTasks
        | Tool::GetClients
        | Tool::GetHabits
        | Tool::GetTodayMetrics
        | Tool::CreateTask
        | Tool::UpdateTask
        | Tool::CompleteTask => Err(ToolError::Misrouted(tool.name())),
    }
}

/// `debug_env`: the process id and each named variable's value, null when unset (a value
/// that is not UTF-8 is reported lossily).
fn env(args: Args<'_>) -> ToolReply {
    let names = env_names(args)?;
    let mut env = Map::with_capacity(names.len());
    for name in names {
        let value = std::env::var_os(name).map_or(Value::Null, |value| {
            value.to_string_lossy().into_owned().into()
        });
        env.insert(name.to_owned(), value);
    }
    payload(&json!({ "pid": std::process::id(), "env": env }))
}

/// The `names` argument of `debug_env`: an array of at most [`MAX_ENV_NAMES`] non-empty
/// strings of at most [`MAX_ENV_NAME_CHARS`] characters, none holding `=` or NUL.
fn env_names(args: Args<'_>) -> Result<Vec<&str>, ToolError> {
    const EXPECTED: &str = "an array of at most 32 variable names";
    const EXPECTED_NAME: &str =
        "variable names of 1 to 128 characters without '=' or NUL (in an array of at most 32)";
    let names = match args.get("names") {
        None => return Err(ToolError::Missing("names")),
        Some(Value::Array(names)) => names,
        Some(other) => return Err(invalid("names", EXPECTED, other)),
    };
    if names.len() > MAX_ENV_NAMES {
        return Err(ToolError::Invalid {
            name: "names",
            expected: EXPECTED,
            got: format!("{} names", names.len()),
        });
    }
    names
        .iter()
        .map(|name| match name {
            Value::String(text)
                if !text.is_empty()
                    && text.chars().count() <= MAX_ENV_NAME_CHARS
                    && !text.contains(['=', '\0']) =>
            {
                Ok(text.as_str())
            }
            other => Err(invalid("names", EXPECTED_NAME, other)),
        })
        .collect()
}

async fn progress(server: &Server, args: Args<'_>, token: Option<&Value>) -> ToolReply {
    let steps = args.required_u64("steps")?;
    if steps > MAX_PROGRESS_STEPS {
        return Err(invalid("steps", "at most 10000", &steps.into()));
    }
    let delay = Duration::from_millis(args.u64("delay_ms")?.unwrap_or(0));
    for step in 1..=steps {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(token) = token {
            let params = json!({
                "progressToken": token,
                "progress": step,
                "total": steps,
                "message": format!("step {step} of {steps}"),
            });
            server.notify("notifications/progress", &params);
        }
        server.log_to_client(LogLevel::Info, &json!(format!("step {step}")));
    }
    payload(&json!({ "steps": steps }))
}

async fn sample(server: &Server, args: Args<'_>) -> ToolReply {
    let prompt = args.required_str("prompt")?;
    if !server.client_can_sample() {
        // Sent anyway: a bridge may forward it to a client that can sample even when it did not
        // declare the capability itself.
        warn!("debug_sample: the client did not declare sampling; sending the request anyway");
    }
    let (pending, reply) = server.start_client_request();
    let params = json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
        "maxTokens": 100,
    });
    server.send(protocol::request_line(
        pending.id(),
        "sampling/createMessage",
        &params,
    ));
    let text = match reply.await {
        Ok(Ok(result)) => reply_text(&result),
        Ok(Err(error)) => error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_owned),
        Err(_) => String::from("the request to the client was dropped before it was answered"),
    };
    drop(pending);
    payload(&json!({ "reply": text }))
}

/// The text of a `sampling/createMessage` result, whose `content` is one block or (since
/// 2025-11-25) an array of blocks.
pub(super) fn reply_text(result: &Value) -> String {
    let content = &result["content"];
    let block = if content.is_array() {
        &content[0]
    } else {
        content
    };
    block
        .get("text")
        .and_then(Value::as_str)
        .map_or_else(|| format!("(no text content in {result})"), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_single_and_array_sampling_content() {
        let single = json!({ "role": "assistant", "content": { "type": "text", "text": "hi" } });
        assert_eq!(reply_text(&single), "hi");
        let many = json!({ "content": [{ "type": "text", "text": "first" }, { "type": "text", "text": "x" }] });
        assert_eq!(reply_text(&many), "first");
        assert!(reply_text(&json!({})).starts_with("(no text content"));
    }
}
