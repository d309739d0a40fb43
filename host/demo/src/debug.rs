//! Handlers of the test-only tools (offered with `--test-tools`): sleeping, progress, crashing,
//! counters, changing the tool list and sampling through the client.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tracing::warn;

use super::catalog::Tool;
use super::protocol;
use super::server::{LogLevel, Server};
use super::tools::{Args, ToolError, ToolReply, invalid, payload};

/// The most steps `debug_progress` accepts, so one call cannot flood the client.
pub(crate) const MAX_PROGRESS_STEPS: u64 = 10_000;

/// Runs a test-only tool.
pub(crate) async fn call(
    server: &Arc<Server>,
    tool: Tool,
    args: Args<'_>,
    progress_token: Option<&Value>,
) -> ToolReply {
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
