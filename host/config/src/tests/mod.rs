//! Tests of loading whole configurations: defaults, value forms, expansion, error positions and secrets.

mod auth;
mod cache;
mod files;
mod lab;
mod plugins;
mod sessions;
mod shared;
mod telemetry;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::load::load_text;
use super::*;

/// The variables the tests expand against, so no test touches the process environment.
fn vars(name: &str) -> Option<String> {
    let value = match name {
        "MCP_BRIDGE_EXE" => "/opt/mcp-bridge",
        "HOME" => "/home/u",
        "TOKEN" => "s3cr3t-value",
        "EMPTY" => "",
        _ => return None,
    };
    Some(value.to_owned())
}

fn load(text: &str) -> Result<BridgeConfig, ConfigError> {
    load_text(text, "test.toml", None, &vars)
}

fn ok(text: &str) -> BridgeConfig {
    match load(text) {
        Ok(config) => config,
        Err(e) => panic!("expected the configuration to load, got:\n{e}"),
    }
}

fn fail(text: &str) -> ConfigError {
    match load(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e,
    }
}

fn fail_in(dir: &Path, file: &str) -> ConfigError {
    match load::load_path(&dir.join(file), &vars) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e,
    }
}

/// Asserts the file, line and field an error points at.
#[track_caller]
fn assert_at(error: &ConfigError, file: &str, line: usize, field: &str) {
    assert_eq!(
        (error.file.as_str(), error.line, error.field.as_deref()),
        (file, Some(line), Some(field)),
        "{error}"
    );
    assert!(error.column.is_some(), "{error}");
    assert!(
        error.help.is_some(),
        "every error should say how to fix it: {error}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, text) {
        panic!("cannot write {}: {e}", path.display());
    }
    path
}

fn temp_dir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    }
}

const MINIMAL: &str = "[servers.a]\ncommand = \"x\"\n";

#[test]
fn minimal_file_gets_every_default() {
    let config = ok(MINIMAL);
    assert_eq!(config.source, "test.toml");
    assert_eq!(config.http, HttpConfig::default());
    assert_eq!(config.http.listen, DEFAULT_LISTEN);
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        config.http.allowed_origins,
        ["http://localhost", "http://127.0.0.1"]
    );
    assert_eq!(config.http.max_body_bytes, 4 << 20);
    assert_eq!(config.logging, LoggingConfig::default());
    assert_eq!(config.logging.format, LogFormat::Human);
    let server = &config.servers[0];
    assert_eq!(server.name, "a");
    assert_eq!(server.command, "x");
    assert!(server.args.is_empty() && server.env.is_empty() && server.cwd.is_none());
    assert!(server.required && !server.exclusive);
    assert_eq!(server.max_line_bytes, 16 << 20);
    assert_eq!(server.pool, PoolConfig::default());
    assert_eq!(server.pool.max_lifetime, Some(Duration::from_secs(3600)));
    assert_eq!(server.health, HealthConfig::default());
}

#[test]
fn every_field_is_read() {
    let config = ok(r#"
[http]
listen = "0.0.0.0:9000"
allowed_origins = ["http://localhost:*", "*"]
auth_token = "${TOKEN}"
admin_token = "admin-$$-token"
max_body_bytes = "512KiB"
namespace_separator = "."
shutdown_grace = 3
session_idle_timeout = "1h"
max_batch_messages = 10
batch_concurrency = 2
max_sessions = 50
max_inflight_per_session = 3
version_mismatch = "Lenient"
header_read_timeout = "5s"
keep_alive_timeout = "90s"
body_read_timeout = "12s"
body_min_rate = "2KiB"
max_client_connections = 64

[logging]
format = "JSON"
level = "mcp_bridge=debug,info"

[defaults]
max_connections = 8
request_timeout = 90.0
max_lifetime = 0

[health]
check_interval = "10s"
degraded_success_rate = 0.5
timeout_threshold = 5

[servers.a]
command = "x"
max_inflight = 4
max_lifetime = "2h"
max_line_bytes = 1024
[servers.a.health]
check_timeout = "1s"
stall_timeout = "20s"

[servers.b]
command = "y"
exclusive = true
required = false
health_check_interval = "1m"
"#);
    let http = &config.http;
    assert_eq!(http.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(http.allowed_origins, ["http://localhost:*", "*"]);
    assert_eq!(
        http.auth_token.as_ref().map(Secret::expose),
        Some("s3cr3t-value")
    );
    assert_eq!(
        http.admin_token.as_ref().map(Secret::expose),
        Some("admin-$-token")
    );
    assert_eq!(http.max_body_bytes, 512 * 1024);
    assert_eq!(http.namespace_separator, ".");
    assert_eq!(http.shutdown_grace, Duration::from_secs(3));
    assert_eq!(http.session_idle_timeout, Duration::from_secs(3600));
    assert_eq!(http.max_batch_messages, 10);
    assert_eq!(http.batch_concurrency, 2);
    assert_eq!(http.max_sessions, 50);
    assert_eq!(http.max_inflight_per_session, 3);
    assert_eq!(http.version_mismatch, VersionMismatch::Lenient);
    assert_eq!(http.header_read_timeout, Duration::from_secs(5));
    assert_eq!(http.keep_alive_timeout, Duration::from_secs(90));
    assert_eq!(http.body_read_timeout, Duration::from_secs(12));
    assert_eq!(http.body_min_rate, 2048);
    assert_eq!(http.max_client_connections, 64);
    assert_eq!(config.logging.format, LogFormat::Json);
    assert_eq!(config.logging.level, "mcp_bridge=debug,info");

    let a = &config.servers[0];
    assert_eq!(a.pool.max_connections, 8);
    assert_eq!(a.pool.max_inflight, 4);
    assert_eq!(a.pool.request_timeout, Duration::from_secs(90));
    assert_eq!(a.pool.max_lifetime, Some(Duration::from_secs(7200)));
    assert_eq!(a.max_line_bytes, 1024);
    assert_eq!(a.health.check_interval, Duration::from_secs(10));
    assert_eq!(a.health.check_timeout, Duration::from_secs(1));
    assert_eq!(a.health.degraded_success_rate, 0.5);
    assert_eq!(a.health.timeout_threshold, 5);
    assert_eq!(a.health.stall_timeout, Some(Duration::from_secs(20)));
    // The pool's check interval follows the server's health interval unless set.
    assert_eq!(a.pool.health_check_interval, Duration::from_secs(10));

    let b = &config.servers[1];
    assert_eq!(b.pool.max_lifetime, None);
    assert_eq!(
        b.pool.max_inflight, 1,
        "exclusive servers take one call at a time"
    );
    assert!(!b.required && b.exclusive);
    assert_eq!(b.pool.health_check_interval, Duration::from_secs(60));
    assert_eq!(b.health.check_timeout, DEFAULT_CHECK_TIMEOUT);
    assert_eq!(b.health.timeout_threshold, 5);
    assert_eq!(
        b.health.stall_timeout, None,
        "unset means the server's request_timeout"
    );
}

#[test]
fn version_mismatch_mode_is_checked_and_shown() {
    assert_eq!(
        ok(MINIMAL).http.version_mismatch,
        VersionMismatch::Strict,
        "strict by default"
    );
    let config = ok(&format!(
        "[http]\nversion_mismatch = \"lenient\"\n{MINIMAL}"
    ));
    assert!(
        config.describe().contains("version_mismatch: lenient"),
        "{}",
        config.describe()
    );
    let error = fail(&format!("[http]\nversion_mismatch = \"lenint\"\n{MINIMAL}"));
    assert_at(&error, "test.toml", 2, "http.version_mismatch");
    assert!(
        error
            .message
            .contains("unknown version_mismatch mode `lenint`"),
        "{error}"
    );
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|help| help.contains("did you mean \"lenient\"")),
        "{error}"
    );
    let error = fail(&format!("[http]\nversion_mismatch = true\n{MINIMAL}"));
    assert_at(&error, "test.toml", 2, "http.version_mismatch");
}

#[test]
fn duration_and_size_forms() {
    for (written, expected) in [
        ("30", Duration::from_secs(30)),
        ("30.0", Duration::from_secs(30)),
        ("0.25", Duration::from_millis(250)),
        ("\"30s\"", Duration::from_secs(30)),
        ("\"5m\"", Duration::from_secs(300)),
        ("\"250ms\"", Duration::from_millis(250)),
        ("\"1h 30m\"", Duration::from_secs(5400)),
        ("\"45\"", Duration::from_secs(45)),
    ] {
        let config = ok(&format!("{MINIMAL}request_timeout = {written}\n"));
        assert_eq!(
            config.servers[0].pool.request_timeout, expected,
            "{written}"
        );
    }
    for written in ["0", "0.0", "\"0\"", "\"0s\""] {
        let config = ok(&format!("{MINIMAL}max_lifetime = {written}\n"));
        assert_eq!(config.servers[0].pool.max_lifetime, None, "{written}");
    }
    for (written, expected) in [
        ("1000", 1000),
        ("\"1000\"", 1000),
        ("\"100B\"", 100),
        ("\"512KiB\"", 512 << 10),
        ("\"4MiB\"", 4 << 20),
        ("\"1GiB\"", 1 << 30),
        ("\"2KB\"", 2000),
        ("\"1MB\"", 1_000_000),
        ("\"1GB\"", 1_000_000_000),
    ] {
        let config = ok(&format!("{MINIMAL}max_line_bytes = {written}\n"));
        assert_eq!(config.servers[0].max_line_bytes, expected, "{written}");
    }
}

#[test]
fn bad_duration_and_size_point_at_the_value() {
    let error = fail(&format!("{MINIMAL}request_timeout = \"soon\"\n"));
    assert_at(&error, "test.toml", 3, "servers.a.request_timeout");
    assert!(error.message.contains("invalid duration `soon`"), "{error}");
    let error = fail(&format!("{MINIMAL}request_timeout = -5\n"));
    assert_at(&error, "test.toml", 3, "servers.a.request_timeout");
    assert_eq!(error.column, Some(19));
    let error = fail(&format!("{MINIMAL}max_line_bytes = \"4 megs\"\n"));
    assert_at(&error, "test.toml", 3, "servers.a.max_line_bytes");
    assert!(error.message.contains("unknown unit"), "{error}");
    let error = fail(&format!("{MINIMAL}max_connections = \"four\"\n"));
    assert_at(&error, "test.toml", 3, "servers.a.max_connections");
}

#[test]
fn expansion_in_command_args_env_and_cwd() {
    let config = ok(r#"
[servers.a]
command = "${MCP_BRIDGE_EXE}"
args = ["demo-server", "--home=${HOME}", "$${HOME}", "${UNSET:-fallback}", "${EMPTY:-used}"]
env = { KEY = "${TOKEN}", PLAIN = "p", DEFAULTED = "${UNSET:-d}" }
cwd = "${HOME}/work"
"#);
    let server = &config.servers[0];
    assert_eq!(server.command, "/opt/mcp-bridge");
    assert_eq!(
        server.args,
        [
            "demo-server",
            "--home=/home/u",
            "${HOME}",
            "fallback",
            "used"
        ]
    );
    assert_eq!(
        server.args_display,
        [
            "demo-server",
            "--home=${HOME}",
            "$${HOME}",
            "${UNSET:-fallback}",
            "${EMPTY:-used}"
        ]
    );
    let env: Vec<(&str, &str)> = server
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(
        env,
        // The TOML parser hands a table's keys over sorted; their order makes no difference.
        [("DEFAULTED", "d"), ("KEY", "s3cr3t-value"), ("PLAIN", "p")]
    );
    assert_eq!(server.cwd.as_deref(), Some(Path::new("/home/u/work")));
}

#[test]
fn missing_variable_names_field_and_variable() {
    let error = fail("[servers.a]\ncommand = \"x\"\nargs = [\"ok\", \"${NOPE}\"]\n");
    assert_at(&error, "test.toml", 3, "servers.a.args[1]");
    assert_eq!(error.column, Some(15));
    assert!(error.message.contains("`NOPE`"), "{error}");
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.contains("${NOPE:-")),
        "{error}"
    );

    let error = fail("[servers.a]\ncommand = \"x\"\nenv = { SECRET = \"${TOKEN}${NOPE}\" }\n");
    assert_at(&error, "test.toml", 3, "servers.a.env.SECRET");
    assert!(!error.to_string().contains("s3cr3t"), "{error}");

    let error = fail("[http]\nauth_token = \"${NOPE}\"\n[servers.a]\ncommand = \"x\"\n");
    assert_at(&error, "test.toml", 2, "http.auth_token");

    let error = fail("[servers.a]\ncommand = \"${MCP_BRIDGE_EXE\"\n");
    assert_at(&error, "test.toml", 2, "servers.a.command");
    assert!(error.message.contains("not closed"), "{error}");
}

/// Each semantic check: (file text, line, field, a word the message must contain).
const SEMANTIC_ERRORS: &[(&str, usize, &str, &str)] = &[
    (
        "[servers.a]\ncommand = \"x\"\nmin_connections = 5\nmax_connections = 2\n",
        3,
        "servers.a.min_connections",
        "greater than",
    ),
    (
        "[defaults]\nmin_connections = 9\n\n[servers.a]\ncommand = \"x\"\n",
        2,
        "defaults.min_connections",
        "greater than",
    ),
    (
        "[servers.a]\ncommand = \"x\"\nmax_connections = 0\n",
        3,
        "servers.a.max_connections",
        "at least 1",
    ),
    (
        "[servers.a]\ncommand = \"x\"\n\nmax_inflight = 0\n",
        4,
        "servers.a.max_inflight",
        "at least 1",
    ),
    (
        "[http]\nlisten = \"localhost:80\"\n[servers.a]\ncommand = \"x\"\n",
        2,
        "http.listen",
        "not an IP address",
    ),
    (
        "[http]\nallowed_origins = [\"http://ok\", \"http://x/\"]\n[servers.a]\ncommand = \"x\"\n",
        2,
        "http.allowed_origins[1]",
        "not an origin",
    ),
    (
        "[http]\nnamespace_separator = \"/\"\n[servers.a]\ncommand = \"x\"\n",
        2,
        "http.namespace_separator",
        "cannot separate",
    ),
    (
        "[servers.a]\ncommand = \"  \"\n",
        2,
        "servers.a.command",
        "empty",
    ),
    (
        "[servers.a]\nargs = []\n",
        1,
        "servers.a.command",
        "has no `command`",
    ),
    (
        "[servers.\"bad name\"]\ncommand = \"x\"\n",
        1,
        "servers.\"bad name\"",
        "may only contain",
    ),
    (
        "[servers.my__server]\ncommand = \"x\"\n",
        1,
        "servers.my__server",
        "namespace separator",
    ),
    (
        "[health]\ndegraded_success_rate = 1.5\n[servers.a]\ncommand = \"x\"\n",
        2,
        "health.degraded_success_rate",
        "between 0 and 1",
    ),
    (
        "[servers.a]\ncommand = \"x\"\n[servers.a.health]\ndegraded_success_rate = -0.1\n",
        4,
        "servers.a.health.degraded_success_rate",
        "between 0 and 1",
    ),
    (
        "[servers.a]\ncommand = \"x\"\n[servers.a.health]\nunhealthy_threshold = 0\n",
        4,
        "servers.a.health.unhealthy_threshold",
        "at least 1",
    ),
    (
        "[servers.a]\ncommand = \"x\"\n[servers.a.health]\ntimeout_threshold = 0\n",
        4,
        "servers.a.health.timeout_threshold",
        "at least 1",
    ),
    (
        "[health]\nstall_timeout = \"0s\"\n[servers.a]\ncommand = \"x\"\n",
        2,
        "health.stall_timeout",
        "longer than zero",
    ),
    (
        "[logging]\nformat = \"xml\"\n[servers.a]\ncommand = \"x\"\n",
        2,
        "logging.format",
        "unknown log format",
    ),
    (
        "[logging]\nlevel = \"info,=\"\n[servers.a]\ncommand = \"x\"\n",
        2,
        "logging.level",
        "invalid log filter",
    ),
    (
        "[servers.a]\ncommand = \"x\"\nrequest_timeout = \"0s\"\n",
        3,
        "servers.a.request_timeout",
        "longer than zero",
    ),
    (
        "[servers.a]\ncommand = \"x\"\nreconnect_backoff_initial = \"1m\"\nreconnect_backoff_max = \"1s\"\n",
        3,
        "servers.a.reconnect_backoff_initial",
        "longer than",
    ),
    (
        "[http]\nauth_token = \"${EMPTY}\"\n[servers.a]\ncommand = \"x\"\n",
        2,
        "http.auth_token",
        "empty",
    ),
    (
        "[http]\nmax_batch_messages = 0\n[servers.a]\ncommand = \"x\"\n",
        2,
        "http.max_batch_messages",
        "at least 1",
    ),
    (
        "[http]\nmax_inflight_per_session = 0\n[servers.a]\ncommand = \"x\"\n",
        2,
        "http.max_inflight_per_session",
        "at least 1",
    ),
    (
        "[http]\nmax_body_bytes = 0\n[servers.a]\ncommand = \"x\"\n",
        2,
        "http.max_body_bytes",
        "at least one byte",
    ),
    (
        "[http]\nkeep_alive_timeout = \"2500ms\"\n[servers.a]\ncommand = \"x\"\n",
        2,
        "http.keep_alive_timeout",
        "whole number of seconds",
    ),
    (
        "[http]\nmax_client_connections = 0\n[servers.a]\ncommand = \"x\"\n",
        2,
        "http.max_client_connections",
        "at least 1",
    ),
    (
        "[http]\nbody_read_timeout = 0\n[servers.a]\ncommand = \"x\"\n",
        2,
        "http.body_read_timeout",
        "longer than zero",
    ),
    (
        "[servers.a]\ncommand = \"x\"\nenv = { \"A=B\" = \"v\" }\n",
        3,
        "servers.a.env.\"A=B\"",
        "not a valid environment variable name",
    ),
    (
        "[servers.a]\ncommand = \"x\"\ncwd = \"\"\n",
        3,
        "servers.a.cwd",
        "empty",
    ),
];

#[test]
fn semantic_errors_name_file_line_and_field() {
    for (text, line, field, words) in SEMANTIC_ERRORS {
        let error = fail(text);
        assert_at(&error, "test.toml", *line, field);
        assert!(
            error.message.contains(words),
            "expected {words:?} in: {error}"
        );
    }
}

#[test]
fn no_servers_is_an_error() {
    let error = fail("[http]\nlisten = \"127.0.0.1:1\"\n");
    assert_eq!(error.file, "test.toml");
    assert_eq!(error.field.as_deref(), Some("servers"));
    assert!(error.message.contains("no servers"), "{error}");
    let error = fail("");
    assert!(error.message.contains("no servers"), "{error}");
}

#[test]
fn unknown_keys_suggest_the_closest() {
    let error = fail("[servers.demo]\ncommand = \"x\"\nmax_conections = 3\n");
    assert_at(&error, "test.toml", 3, "servers.demo.max_conections");
    assert_eq!(error.column, Some(1));
    assert_eq!(error.message, "unknown key `max_conections`");
    assert_eq!(
        error.help.as_deref(),
        Some("did you mean `max_connections`?")
    );
    assert_eq!(
        error.to_string(),
        "test.toml:3:1: `servers.demo.max_conections`: unknown key `max_conections`\n  help: did you mean `max_connections`?"
    );

    let error = fail("[htp]\nlisten = \"x\"\n");
    assert_at(&error, "test.toml", 1, "htp");
    assert_eq!(error.help.as_deref(), Some("did you mean `http`?"));

    let error = fail("[servers.a]\ncommand = \"x\"\n[servers.a.health]\ncheck_intervall = 3\n");
    assert_eq!(
        error.help.as_deref(),
        Some("did you mean `check_interval`?")
    );

    // Nothing close: the allowed keys are listed instead.
    let error = fail("[logging]\nverbosity = 3\n");
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.contains("`format`, `level`")),
        "{error}"
    );

    // A top-level key written after a table header lands in that table.
    let error = fail("[servers.a]\ncommand = \"x\"\ninclude = [\"x.json\"]\n");
    assert_at(&error, "test.toml", 3, "servers.a.include");
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.contains("top-level key")),
        "{error}"
    );
}

#[test]
fn syntax_errors_have_positions() {
    let error = fail("[http]\nlisten = \"127.0.0.1:80\n");
    assert_eq!(
        (error.line, error.field.as_deref()),
        (Some(2), None),
        "{error}"
    );
    assert!(error.message.starts_with("invalid TOML"), "{error}");
    assert!(error.help.is_some());

    let error = fail("[servers.a]\ncommand = \"x\"\ncommand = \"y\"\n");
    assert_eq!(error.line, Some(3), "{error}");
}

#[test]
fn servers_keep_file_order() {
    let config = ok(
        "[servers.zeta]\ncommand = \"z\"\n[servers.alpha]\ncommand = \"a\"\n[servers.mid]\ncommand = \"m\"\n",
    );
    let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
}

#[test]
fn secrets_never_show() {
    let config = ok(r#"
[http]
auth_token = "${TOKEN}"
admin_token = "${TOKEN}"
[servers.a]
command = "x"
args = ["--token-from-env"]
env = { API_KEY = "${TOKEN}", LITERAL = "s3cr3t-value" }
"#);
    let description = config.describe();
    assert!(!description.contains("s3cr3t"), "{description}");
    assert!(description.contains("API_KEY, LITERAL"), "{description}");
    assert!(
        description.contains("auth_token: <redacted>"),
        "{description}"
    );
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert_eq!(format!("{:?}", Secret::new("s3cr3t-value")), "<redacted>");
    assert_eq!(Secret::new("s3cr3t-value").to_string(), "<redacted>");
}

#[test]
fn describe_shows_args_as_written() {
    let config =
        ok("[servers.a]\ncommand = \"x\"\nargs = [\"--home\", \"${HOME}\", \"two words\"]\n");
    let description = config.describe();
    assert!(
        description.contains("args: --home ${HOME} 'two words'"),
        "{description}"
    );
    assert!(
        description.contains("configuration: test.toml"),
        "{description}"
    );
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name)
}

#[test]
fn embedded_default_loads() {
    let config = match embedded_default() {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(config.source, "<embedded default>");
    assert_eq!(config.http.listen, DEFAULT_LISTEN);
    let demo = &config.servers[0];
    assert_eq!(
        (demo.name.as_str(), demo.args.as_slice()),
        ("demo", ["demo-server".to_owned()].as_slice())
    );
    assert_eq!(
        (demo.pool.min_connections, demo.pool.max_connections),
        (1, 4)
    );
    assert!(!demo.command.is_empty() && !demo.command.contains('$'));
    let on_disk = std::fs::read_to_string(repo_file("default.toml")).unwrap_or_default();
    assert_eq!(on_disk, DEFAULT_CONFIG_TOML);
}

#[test]
fn example_files_load() {
    let example = match load::load_path(&repo_file("mcp-bridge.example.toml"), &vars) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    let names: Vec<&str> = example.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["demo", "memory"]);
    // The example documents the defaults, so apart from what it overrides it equals them.
    assert_eq!(example.http, HttpConfig::default());
    assert_eq!(example.logging, LoggingConfig::default());
    assert_eq!(example.servers[0].pool, PoolConfig::default());
    assert_eq!(example.servers[0].health.degraded_latency_ms, 200);
    assert_eq!(
        example.servers[1].env[0].1.expose(),
        "/tmp/mcp-bridge-memory.jsonl"
    );

    let json = match load_file(&repo_file("mcp-servers.example.json")) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(json.servers[0].name, "demo");
    assert_eq!(json.servers[0].args, ["demo-server"]);
}

#[test]
fn max_process_memory_is_off_by_default_and_a_server_may_turn_it_off() {
    let config = ok(MINIMAL);
    assert_eq!(config.servers[0].pool.max_process_memory, None);
    let config = ok(&format!(
        "[defaults]\nmax_process_memory = \"512MiB\"\n\n{MINIMAL}\n[servers.b]\ncommand = \"y\"\nmax_process_memory = 0\n"
    ));
    let by_name = |name: &str| {
        config
            .servers
            .iter()
            .find(|server| server.name == name)
            .map(|server| server.pool.max_process_memory)
    };
    assert_eq!(by_name("a"), Some(Some(512 << 20)));
    assert_eq!(
        by_name("b"),
        Some(None),
        "a server's 0 overrides [defaults]"
    );
}

#[test]
fn max_process_memory_below_one_mib_or_not_a_size_points_at_the_value() {
    let error = fail(&format!("{MINIMAL}max_process_memory = \"64KiB\"\n"));
    assert_at(&error, "test.toml", 3, "servers.a.max_process_memory");
    assert!(error.message.contains("1 MiB"), "{error}");
    let error = fail(&format!("{MINIMAL}max_process_memory = \"lots\"\n"));
    assert_at(&error, "test.toml", 3, "servers.a.max_process_memory");
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|help| help.contains("MiB")),
        "{error}"
    );
}
