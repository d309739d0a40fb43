//! The catalog of tools: which tools exist, their titles, input schemas and annotations (the
//! bridge reads the annotations to decide caching and retries), and the `tools/list` result.

use serde_json::{Map, Value, json};

use super::debug;

/// Every tool the demo server knows, whether or not it is currently offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    GetTasks,
    GetClients,
    GetHabits,
    GetTodayMetrics,
    CreateTask,
    UpdateTask,
    CompleteTask,
    DebugSleep,
    DebugProgress,
    DebugCrash,
    DebugStats,
    DebugToggle,
    DebugSample,
    DebugEnv,
    DebugMeta,
    Extra,
}

impl Tool {
    /// The seed's tools, always offered, in `tools/list` order.
    pub(crate) const SEED: [Tool; 7] = [
        Tool::GetTasks,
        Tool::GetClients,
        Tool::GetHabits,
        Tool::GetTodayMetrics,
        Tool::CreateTask,
        Tool::UpdateTask,
        Tool::CompleteTask,
    ];

    /// The test-only tools offered with `--test-tools`, in `tools/list` order.
    pub(crate) const TEST: [Tool; 8] = [
        Tool::DebugSleep,
        Tool::DebugProgress,
        Tool::DebugCrash,
        Tool::DebugStats,
        Tool::DebugToggle,
        Tool::DebugSample,
        Tool::DebugEnv,
        Tool::DebugMeta,
    ];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tool::GetTasks => "get_tasks",
            Tool::GetClients => "get_clients",
            Tool::GetHabits => "get_habits",
            Tool::GetTodayMetrics => "get_today_metrics",
            Tool::CreateTask => "create_task",
            Tool::UpdateTask => "update_task",
            Tool::CompleteTask => "complete_task",
            Tool::DebugSleep => "debug_sleep",
            Tool::DebugProgress => "debug_progress",
            Tool::DebugCrash => "debug_crash",
            Tool::DebugStats => "debug_stats",
            Tool::DebugToggle => "debug_toggle_tool",
            Tool::DebugSample => "debug_sample",
            Tool::DebugEnv => "debug_env",
            Tool::DebugMeta => "debug_meta",
            Tool::Extra => "extra_tool",
        }
    }

    /// Looks a tool up by wire name, regardless of whether it is offered.
    pub(crate) fn from_name(name: &str) -> Option<Tool> {
        Self::SEED
            .into_iter()
            .chain(Self::TEST)
            .chain([Tool::Extra])
            .find(|tool| tool.name() == name)
    }

    /// Whether the tool only reads (its `readOnlyHint`): with `--state-file` its call takes
    /// the file's shared lock and never writes the file.
    pub(crate) fn is_read_only(self) -> bool {
        self.describe().3.read_only
    }

    /// Whether the tool is only offered with `--test-tools` (`extra_tool` also needs a toggle).
    pub(crate) fn is_test_only(self) -> bool {
        !Self::SEED.contains(&self)
    }

    /// The tool's entry in `tools/list`.
    pub(crate) fn definition(self) -> Value {
        let (title, description, input_schema, hints) = self.describe();
        let mut annotations = Map::new();
        annotations.insert("title".into(), title.into());
        annotations.insert("readOnlyHint".into(), hints.read_only.into());
        if !hints.read_only {
            // The spec only gives destructiveHint a meaning for tools that write.
            annotations.insert("destructiveHint".into(), hints.destructive.into());
        }
        annotations.insert("idempotentHint".into(), hints.idempotent.into());
        annotations.insert("openWorldHint".into(), hints.open_world.into());
        json!({
            "name": self.name(),
            "title": title,
            "description": description,
            "inputSchema": input_schema,
            "annotations": annotations,
        })
    }

    fn describe(self) -> (&'static str, &'static str, Value, Hints) {
        let no_args = json!({ "type": "object", "properties": {} });
        let task_id = json!({ "type": "integer", "minimum": 1, "description": "The task's id." });
        match self {
            Tool::GetTasks => (
                "List tasks",
                "Lists tasks sorted by id, filtered by status (default: active) and optionally by client.",
                json!({
                    "type": "object",
                    "properties": {
                        "status": {
                            "type": "string",
                            "enum": ["active", "done", "all"],
                            "default": "active",
                            "description": "Which tasks to list."
                        },
                        "client_id": { "type": "string", "description": "Only tasks for this client." },
                        "limit": { "type": "integer", "minimum": 0, "description": "Return at most this many tasks." }
                    }
                }),
                Hints::READ,
            ),
            Tool::GetClients => (
                "List clients",
                "Lists the clients tasks can belong to.",
                no_args,
                Hints::READ,
            ),
            Tool::GetHabits => (
                "List habits",
                "Lists the tracked habits and their streaks.",
                no_args,
                Hints::READ,
            ),
            Tool::GetTodayMetrics => (
                "Today's metrics",
                "Counts active, completed and total tasks and sums the points of completed tasks.",
                no_args,
                Hints::READ,
            ),
            Tool::CreateTask => (
                "Create a task",
                "Creates an active task and returns it with its new id.",
                json!({
                    "type": "object",
                    "properties": {
                        "title": { "type": "string", "minLength": 1, "description": "What needs doing." },
                        "client_id": { "type": "string", "description": "The client the task is for (must exist)." },
                        "points": { "type": "integer", "minimum": 0, "default": 1, "description": "Effort points." }
                    },
                    "required": ["title"]
                }),
                Hints::write(false),
            ),
            Tool::UpdateTask => (
                "Update a task",
                "Changes a task's title, status, points or client; fields left out stay as they are.",
                json!({
                    "type": "object",
                    "properties": {
                        "id": task_id,
                        "title": { "type": "string", "minLength": 1 },
                        "status": { "type": "string", "enum": ["active", "done"] },
                        "points": { "type": "integer", "minimum": 0 },
                        "client_id": {
                            "type": ["string", "null"],
                            "description": "A known client id, or null to detach the task from its client."
                        }
                    },
                    "required": ["id"]
                }),
                Hints::write(true),
            ),
            Tool::CompleteTask => (
                "Complete a task",
                "Marks a task done; completing a finished task changes nothing.",
                json!({ "type": "object", "properties": { "id": task_id }, "required": ["id"] }),
                Hints::write(true),
            ),
            Tool::DebugSleep => (
                "Sleep (test)",
                "Sleeps for `ms` milliseconds, then answers; for timeout and hung-backend tests.",
                json!({
                    "type": "object",
                    "properties": { "ms": { "type": "integer", "minimum": 0 } },
                    "required": ["ms"]
                }),
                Hints::READ,
            ),
            Tool::DebugProgress => (
                "Progress (test)",
                "Runs `steps` steps `delay_ms` apart, sending a progress notification per step when \
                 the request carries a progressToken and a log message per step.",
                json!({
                    "type": "object",
                    "properties": {
                        "steps": { "type": "integer", "minimum": 0, "maximum": debug::MAX_PROGRESS_STEPS },
                        "delay_ms": { "type": "integer", "minimum": 0, "default": 0 }
                    },
                    "required": ["steps"]
                }),
                Hints::READ,
            ),
            Tool::DebugCrash => (
                "Crash (test)",
                "Makes the server process exit with status 3 without answering.",
                no_args,
                Hints {
                    read_only: false,
                    destructive: true,
                    idempotent: false,
                    open_world: false,
                },
            ),
            Tool::DebugStats => (
                "Server stats (test)",
                "Reports the process id, calls received per tool, cancellations and calls in flight.",
                no_args,
                // The counters change on every call, so the result is not idempotent.
                Hints {
                    idempotent: false,
                    ..Hints::READ
                },
            ),
            Tool::DebugToggle => (
                "Toggle extra_tool (test)",
                "Adds or removes the tool `extra_tool` and sends notifications/tools/list_changed.",
                no_args,
                Hints::write(false),
            ),
            Tool::DebugSample => (
                "Sample via the client (test)",
                "Sends sampling/createMessage to the client with the prompt and returns its reply.",
                json!({
                    "type": "object",
                    "properties": { "prompt": { "type": "string" } },
                    "required": ["prompt"]
                }),
                Hints {
                    open_world: true,
                    ..Hints::write(false)
                },
            ),
            Tool::DebugEnv => (
                "Environment (test)",
                "Reports the process id and the value of each named environment variable (null \
                 when unset), to show which secrets reached which backend process.",
                json!({
                    "type": "object",
                    "properties": {
                        "names": {
                            "type": "array",
                            "items": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": debug::MAX_ENV_NAME_CHARS
                            },
                            "maxItems": debug::MAX_ENV_NAMES,
                            "description": "The environment variables to report."
                        }
                    },
                    "required": ["names"]
                }),
                Hints::READ,
            ),
            Tool::DebugMeta => (
                "Request metadata (test)",
                "Reports the process id and the call's `params._meta` object as received (null \
                 when absent), to show what the client or a bridge passed to the server.",
                no_args,
                // The result echoes each request's own metadata, so it is not idempotent.
                Hints {
                    idempotent: false,
                    ..Hints::READ
                },
            ),
            Tool::Extra => (
                "Extra tool (test)",
                "A tool that comes and goes with debug_toggle_tool.",
                no_args,
                Hints::READ,
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Hints {
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    open_world: bool,
}

impl Hints {
    const READ: Hints = Hints {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    };

    const fn write(idempotent: bool) -> Hints {
        Hints {
            read_only: false,
            destructive: false,
            idempotent,
            open_world: false,
        }
    }
}

/// The serialized `tools/list` result for a tool set.
pub(crate) fn tools_list_json(test_tools: bool, extra_tool: bool) -> String {
    let mut tools: Vec<Value> = Tool::SEED.iter().map(|tool| tool.definition()).collect();
    if test_tools {
        tools.extend(Tool::TEST.iter().map(|tool| tool.definition()));
    }
    if extra_tool {
        tools.push(Tool::Extra.definition());
    }
    json!({ "tools": tools }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definitions(test_tools: bool) -> Vec<Value> {
        let list: Value =
            serde_json::from_str(&tools_list_json(test_tools, false)).unwrap_or_default();
        list["tools"].as_array().cloned().unwrap_or_default()
    }

    #[test]
    fn reads_and_writes_are_annotated_for_the_cache() {
        let tools = definitions(false);
        assert_eq!(tools.len(), 7);
        let by_name = |name: &str| {
            tools
                .iter()
                .find(|tool| tool["name"] == name)
                .map(|tool| tool["annotations"].clone())
                .unwrap_or_default()
        };
        for read in [
            "get_tasks",
            "get_clients",
            "get_habits",
            "get_today_metrics",
        ] {
            let hints = by_name(read);
            assert_eq!(hints["readOnlyHint"], true, "{read}");
            assert_eq!(hints["idempotentHint"], true, "{read}");
            assert_eq!(hints["openWorldHint"], false, "{read}");
            assert!(hints["title"].is_string(), "{read}");
        }
        for (write, idempotent) in [
            ("create_task", false),
            ("update_task", true),
            ("complete_task", true),
        ] {
            let hints = by_name(write);
            assert_eq!(hints["readOnlyHint"], false, "{write}");
            assert_eq!(hints["destructiveHint"], false, "{write}");
            assert_eq!(hints["idempotentHint"], idempotent, "{write}");
            assert_eq!(hints["openWorldHint"], false, "{write}");
        }
        assert_eq!(definitions(true).len(), 15);
    }

    #[test]
    fn env_and_meta_tools_are_read_only_and_closed_world() {
        let tools = definitions(true);
        for (name, idempotent) in [("debug_env", true), ("debug_meta", false)] {
            let Some(tool) = tools.iter().find(|tool| tool["name"] == name) else {
                panic!("{name} missing from the test tools");
            };
            let hints = &tool["annotations"];
            assert_eq!(hints["readOnlyHint"], true, "{name}");
            assert_eq!(hints["openWorldHint"], false, "{name}");
            assert_eq!(hints["idempotentHint"], idempotent, "{name}");
            assert!(hints.get("destructiveHint").is_none(), "{name}");
        }
        let env = tools
            .iter()
            .find(|tool| tool["name"] == "debug_env")
            .map(|tool| tool["inputSchema"].clone())
            .unwrap_or_default();
        assert_eq!(env["required"], json!(["names"]));
        assert_eq!(env["properties"]["names"]["maxItems"], 32);
        assert_eq!(env["properties"]["names"]["items"]["maxLength"], 128);
        assert!(
            definitions(false)
                .iter()
                .all(|tool| tool["name"] != "debug_env" && tool["name"] != "debug_meta")
        );
    }
}
