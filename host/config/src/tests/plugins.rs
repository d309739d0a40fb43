//! Tests of the `[plugins]` section: defaults, bindings and their errors.

use std::path::PathBuf;
use std::time::Duration;

use super::super::*;
use super::{MINIMAL, assert_at, fail, ok};

/// Two servers on lines 1 to 5, then `plugins`.
fn with_servers(plugins: &str) -> String {
    format!("[servers.demo]\ncommand = \"d\"\n\n[servers.memory]\ncommand = \"m\"\n{plugins}")
}

#[test]
fn no_plugins_table_runs_no_plugins() {
    let config = ok(MINIMAL);
    assert_eq!(config.plugins.dir, None);
    assert!(config.plugins.bindings.is_empty());
    assert_eq!(
        config.plugins.decision_timeout,
        DEFAULT_PLUGIN_DECISION_TIMEOUT
    );
}

#[test]
fn bindings_keep_order_config_and_server_scope() {
    let config = ok(&with_servers(
        r#"
[plugins]
dir = "plugins.d"
compiled_cache_dir = "${HOME}/compiled"
decision_timeout = "5ms"
max_memory = "8MiB"

[[plugins.policy]]
name = "tasks-ttl"
file = "seed-ttl-table.wasm"
servers = ["demo"]
config = { ttl = { demo = { get_tasks = "30s" } }, note = 3 }

[[plugins.policy]]
file = "crud-invalidation.wasm"
servers = ["*"]
"#,
    ));
    let plugins = &config.plugins;
    assert_eq!(plugins.dir, Some(PathBuf::from("plugins.d")));
    assert_eq!(
        plugins.compiled_cache_dir,
        Some(PathBuf::from("/home/u/compiled"))
    );
    assert_eq!(plugins.decision_timeout, Duration::from_millis(5));
    assert_eq!(plugins.max_memory, 8 << 20);
    let names: Vec<&str> = plugins.bindings.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["tasks-ttl", "crud-invalidation"]);
    assert_eq!(plugins.bindings[0].servers, ["demo"]);
    assert!(
        plugins.bindings[1].servers.is_empty(),
        "\"*\" means every server"
    );
    assert!(plugins.bindings[1].applies_to("memory"));
    let config_json: serde_json::Value =
        serde_json::from_str(&plugins.bindings[0].config_json).unwrap_or_default();
    assert_eq!(config_json["ttl"]["demo"]["get_tasks"], "30s");
    assert_eq!(config_json["note"], 3);
    assert_eq!(plugins.bindings[1].config_json, "{}");
}

#[test]
fn binding_errors_name_the_field() {
    let unknown_server = fail(&with_servers(
        "[plugins]\ndir = \"p\"\n[[plugins.policy]]\nfile = \"a.wasm\"\nservers = [\"demoo\"]\n",
    ));
    assert_at(
        &unknown_server,
        "test.toml",
        10,
        "plugins.policy[0].servers[0]",
    );
    assert!(
        unknown_server.to_string().contains("demoo"),
        "{unknown_server}"
    );
    assert!(
        unknown_server
            .help
            .as_deref()
            .unwrap_or_default()
            .contains("did you mean \"demo\""),
        "{unknown_server:?}"
    );

    let path = fail(&with_servers(
        "[plugins]\ndir = \"p\"\n[[plugins.policy]]\nfile = \"../a.wasm\"\n",
    ));
    assert_at(&path, "test.toml", 9, "plugins.policy[0].file");

    let twice = fail(&with_servers(
        "[plugins]\ndir = \"p\"\n[[plugins.policy]]\nfile = \"a.wasm\"\n[[plugins.policy]]\nfile = \"a.wasm\"\n",
    ));
    assert!(twice.to_string().contains("used twice"), "{twice}");

    let no_dir = fail(&with_servers("[[plugins.policy]]\nfile = \"a.wasm\"\n"));
    assert!(no_dir.to_string().contains("no `dir`"), "{no_dir}");

    let timeout = fail(&with_servers(
        "[plugins]\ndir = \"p\"\ndecision_timeout = \"100us\"\n",
    ));
    assert_at(&timeout, "test.toml", 8, "plugins.decision_timeout");

    let unknown_key = fail(&with_servers(
        "[plugins]\ndir = \"p\"\nmax_memroy = \"8MiB\"\n",
    ));
    assert!(
        unknown_key.to_string().contains("max_memroy"),
        "{unknown_key}"
    );
}

/// One `[plugins]` default as the code has it, and how to read a documented value of it.
struct DocumentedDefault {
    setting: &'static str,
    /// Whether `documented` (the text between the quotes or backticks) means the constant.
    matches: fn(&str) -> bool,
}

/// The `[plugins]` defaults the docs state, each compared with its constant by value, so a
/// doc that says "10 ms" where the code says 50 fails here rather than misleading an author.
const DOCUMENTED_DEFAULTS: [DocumentedDefault; 5] = [
    DocumentedDefault {
        setting: "decision_timeout",
        matches: |text| {
            mcp_bridge_policy::parse_duration(text) == Ok(DEFAULT_PLUGIN_DECISION_TIMEOUT)
        },
    },
    DocumentedDefault {
        setting: "max_memory",
        matches: |text| mcp_bridge_policy::parse_size(text) == Ok(DEFAULT_PLUGIN_MAX_MEMORY),
    },
    DocumentedDefault {
        setting: "max_idle_instances",
        matches: |text| text.parse::<usize>() == Ok(DEFAULT_PLUGIN_MAX_IDLE_INSTANCES),
    },
    DocumentedDefault {
        setting: "quarantine_after",
        matches: |text| text.parse::<u32>() == Ok(DEFAULT_PLUGIN_QUARANTINE_AFTER),
    },
    DocumentedDefault {
        setting: "quarantine_window",
        matches: |text| {
            mcp_bridge_policy::parse_duration(text) == Ok(DEFAULT_PLUGIN_QUARANTINE_WINDOW)
        },
    },
];

/// The value of `Default: VALUE.` in the comment block right above `setting = …` in the
/// example config, without its quotes.
fn example_default(example: &str, setting: &str) -> Option<String> {
    let lines: Vec<&str> = example.lines().collect();
    let at = lines.iter().position(|line| {
        line.trim_start_matches("# ")
            .strip_prefix(setting)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })?;
    lines[..at]
        .iter()
        .rev()
        .take_while(|line| line.starts_with('#'))
        .find_map(|line| {
            let value = line.split_once("Default: ")?.1;
            let value = value.split(". ").next()?.trim_end_matches('.');
            Some(value.trim_matches('"').to_owned())
        })
}

/// The default column of the SDK README's `[plugins]` table row for `setting`, without
/// its backticks and quotes.
fn sdk_readme_default(readme: &str, setting: &str) -> Option<String> {
    let row_start = format!("| `{setting}` |");
    readme.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(&row_start)?;
        let cell = rest.split('|').next()?.trim();
        Some(cell.trim_matches('`').trim_matches('"').to_owned())
    })
}

#[test]
fn plugin_defaults_match_the_docs() {
    let read = |path: PathBuf| std::fs::read_to_string(&path).unwrap_or_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = read(root.join("config/mcp-bridge.example.toml"));
    let sdk_readme = read(root.join("plugins/sdk/README.md"));
    assert!(!example.is_empty() && !sdk_readme.is_empty());
    for default in &DOCUMENTED_DEFAULTS {
        let setting = default.setting;
        let in_example = example_default(&example, setting);
        assert!(
            in_example.as_deref().is_some_and(default.matches),
            "config/mcp-bridge.example.toml documents {setting} as {in_example:?}, which is not the code's default"
        );
        let in_readme = sdk_readme_default(&sdk_readme, setting);
        assert!(
            in_readme.as_deref().is_some_and(default.matches),
            "plugins/sdk/README.md documents {setting} as {in_readme:?}, which is not the code's default"
        );
    }
    // The reader checks what it was meant to: a wrong value is caught.
    assert!(!(DOCUMENTED_DEFAULTS[0].matches)("10ms"));
}
