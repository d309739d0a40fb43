//! Tests of mcpServers JSON files, format detection and `include`d files.

use std::path::Path;

use super::super::load::{self, load_text};
use super::super::*;
use super::{MINIMAL, assert_at, fail_in, temp_dir, vars, write};

#[test]
fn json_mcp_servers_file() {
    let text = r#"{
  "mcpServers": {
    "fs": {"command": "npx", "args": ["-y", "fs", "${HOME}"], "env": {"K": "${TOKEN}"},
           "autoApprove": ["read"], "alwaysAllow": [], "timeout": 60, "description": "files", "disabled": false},
    "off": {"command": "nope", "disabled": true},
    "demo": {"command": "${MCP_BRIDGE_EXE}", "args": ["demo-server"], "cwd": "/tmp"}
  }
}"#;
    let config = match load_text(text, "claude.json", None, &vars) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["fs", "demo"]);
    assert_eq!(config.servers[0].args, ["-y", "fs", "/home/u"]);
    assert_eq!(config.servers[0].env[0].1.expose(), "s3cr3t-value");
    assert_eq!(config.servers[1].command, "/opt/mcp-bridge");
    assert_eq!(config.servers[1].pool, PoolConfig::default());
    assert_eq!(config.http, HttpConfig::default());
}

#[test]
fn json_vs_code_servers_key() {
    let text = r#"{"inputs": [], "servers": {"demo": {"type": "stdio", "command": "x", "dev": {"watch": "*.ts"}}}}"#;
    let config = load_text(text, "mcp.json", None, &vars);
    assert_eq!(
        config.map(|c| c.servers[0].command.clone()),
        Ok("x".to_owned())
    );
}

#[test]
fn json_http_servers_are_rejected() {
    let text = "{\n  \"servers\": {\n    \"demo\": {\"command\": \"x\"},\n    \"web\": {\n      \"type\": \"http\",\n      \"url\": \"https://example.com/mcp\"\n    }\n  }\n}";
    let error = load_text(text, "mcp.json", None, &vars).err();
    let error = error.unwrap_or_else(|| ConfigError::new("", ""));
    assert_at(&error, "mcp.json", 5, "servers.web.type");
    assert!(error.message.contains("server `web`"), "{error}");
    assert!(
        error.message.contains("only stdio servers can be pooled"),
        "{error}"
    );

    let text = "{\"mcpServers\": {\n\"remote\": {\"url\": \"https://example.com/sse\"}}}";
    let error = load_text(text, "c.json", None, &vars).err();
    let error = error.unwrap_or_else(|| ConfigError::new("", ""));
    assert_at(&error, "c.json", 2, "mcpServers.remote.url");
    assert!(
        error.message.contains("only stdio servers can be pooled"),
        "{error}"
    );
}

#[test]
fn json_errors_have_positions() {
    let text = "{\"mcpServers\": {\n  \"a\": {\"command\": \"x\",\n        \"autoAprove\": []}}}";
    let error = load_text(text, "c.json", None, &vars).err();
    let error = error.unwrap_or_else(|| ConfigError::new("", ""));
    assert_at(&error, "c.json", 3, "mcpServers.a.autoAprove");
    assert_eq!(error.help.as_deref(), Some("did you mean `autoApprove`?"));

    let text = "{\"mcpServers\": {\n  \"a\": {\"command\": \"x\",}\n}}";
    let error = load_text(text, "c.json", None, &vars).err();
    let error = error.unwrap_or_else(|| ConfigError::new("", ""));
    assert_eq!(
        (error.line, error.field.as_deref()),
        (Some(2), None),
        "{error}"
    );
    assert!(error.message.starts_with("invalid JSON"), "{error}");

    let text = "{\"mcpServers\": {\"a\": {\"command\": \"x\", \"env\": {\"K\": 123456789}}}}";
    let error = load_text(text, "c.json", None, &vars).err();
    let error = error.unwrap_or_else(|| ConfigError::new("", ""));
    assert_eq!(error.field.as_deref(), Some("mcpServers.a.env.K"));
    assert!(!error.to_string().contains("123456789"), "{error}");

    let error = load_text("{\"mcpServer\": {}}", "c.json", None, &vars).err();
    assert!(error.is_some_and(|e| e.help == Some("did you mean `mcpServers`?".to_owned())));
    let error = load_text("{}", "c.json", None, &vars).err();
    assert!(error.is_some_and(|e| e.message.contains("no `mcpServers`")));
}

#[test]
fn format_is_detected_from_content() {
    let dir = temp_dir();
    write(
        dir.path(),
        "servers.toml",
        "  \n{\"mcpServers\": {\"a\": {\"command\": \"x\"}}}",
    );
    let config = load::load_path(&dir.path().join("servers.toml"), &vars);
    assert_eq!(config.map(|c| c.servers.len()), Ok(1));
    write(dir.path(), "bridge.json", MINIMAL);
    let config = load::load_path(&dir.path().join("bridge.json"), &vars);
    assert_eq!(config.map(|c| c.servers.len()), Ok(1));
}

#[test]
fn includes_resolve_against_the_including_file() {
    let dir = temp_dir();
    let sub = dir.path().join("conf");
    if let Err(e) = std::fs::create_dir(&sub) {
        panic!("{e}");
    }
    write(
        &sub,
        "claude.json",
        r#"{"mcpServers": {"inc": {"command": "i", "cwd": "data"}}}"#,
    );
    write(
        &sub,
        "bridge.toml",
        "include = [\"./claude.json\"]\n[defaults]\nmax_connections = 7\n[servers.own]\ncommand = \"o\"\ncwd = \"rel\"\n",
    );
    let config = match load_file(&sub.join("bridge.toml")) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["own", "inc"]);
    assert_eq!(
        config.servers[1].pool.max_connections, 7,
        "includes get [defaults]"
    );
    assert_eq!(config.servers[0].cwd, Some(sub.join("rel")));
    assert_eq!(
        config.servers[1].cwd,
        Some(sub.join("./claude.json").with_file_name("data"))
    );
}

#[test]
fn include_errors_name_the_right_file() {
    let dir = temp_dir();
    let path = dir.path();
    let included = write(
        path,
        "c.json",
        "{\"mcpServers\": {\n\"x\": {\"command\": \"\"}}}",
    );
    write(
        path,
        "a.toml",
        "include = [\"c.json\"]\n[servers.a]\ncommand = \"x\"\n",
    );
    let error = fail_in(path, "a.toml");
    assert_at(
        &error,
        &included.display().to_string(),
        2,
        "mcpServers.x.command",
    );

    write(
        path,
        "dup.json",
        "{\"mcpServers\": {\n\"a\": {\"command\": \"y\"}}}",
    );
    write(
        path,
        "b.toml",
        "include = [\"dup.json\"]\n\n[servers.a]\ncommand = \"x\"\n",
    );
    let error = fail_in(path, "b.toml");
    assert_at(
        &error,
        &path.join("dup.json").display().to_string(),
        2,
        "mcpServers.a",
    );
    assert!(error.message.contains("used twice"), "{error}");
    let toml_path = path.join("b.toml").display().to_string();
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.contains(&format!("{toml_path}:3"))),
        "{error}"
    );

    write(
        path,
        "missing.toml",
        "\ninclude = [\"nope.json\"]\n[servers.a]\ncommand = \"x\"\n",
    );
    let error = fail_in(path, "missing.toml");
    assert_at(
        &error,
        &path.join("missing.toml").display().to_string(),
        2,
        "include[0]",
    );
    assert!(
        error.message.contains("cannot read included file"),
        "{error}"
    );

    write(path, "inner.toml", MINIMAL);
    write(
        path,
        "outer.toml",
        "include = [\"inner.toml\"]\n[servers.b]\ncommand = \"x\"\n",
    );
    let error = fail_in(path, "outer.toml");
    assert!(
        error.message.contains("not an mcpServers JSON file"),
        "{error}"
    );
}

#[test]
fn missing_file_is_an_error() {
    let error = load_file(Path::new("/nonexistent/mcp-bridge.toml")).err();
    let error = error.unwrap_or_else(|| ConfigError::new("", ""));
    assert_eq!(error.file, "/nonexistent/mcp-bridge.toml");
    assert!(error.message.contains("cannot read"), "{error}");
}
