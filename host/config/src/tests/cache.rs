//! Tests of the `[cache]` section: defaults, value forms, the seed's strategies, the TTL table's precedence, invalidation rules and their errors.

use std::time::Duration;

use mcp_bridge_policy::{
    Annotations, Call, CallKind, Decision, Invalidation, InvalidationAnswer, Outcome, Policy,
    ServerHints, Status, TtlAnswer,
};

use super::super::*;
use super::{MINIMAL, assert_at, fail, fail_in, ok, repo_file, temp_dir, vars, write};

/// A file with two servers, `demo` and `memory`, on lines 1 to 5, followed by `cache`.
fn with_servers(cache: &str) -> String {
    format!("[servers.demo]\ncommand = \"d\"\n\n[servers.memory]\ncommand = \"m\"\n{cache}")
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// A tool call on `server`, as the router hands it to the policy.
fn tool_call<'a>(server: &'a str, tool: &'a str, read_only: Option<bool>) -> Call<'a> {
    Call {
        server,
        method: "tools/call",
        kind: CallKind::Tool,
        name: tool,
        canonical_arguments: "{}",
        annotations: Annotations {
            read_only,
            ..Annotations::default()
        },
        hints: ServerHints::default(),
        principal: None,
    }
}

/// The TTL the built-in policy built from `config` takes from its table for `tool`.
fn table_ttl(config: &BridgeConfig, server: &str, tool: &str) -> Option<Duration> {
    match config.builtin_policy().ttl(server, tool) {
        TtlAnswer::Ttl(ttl) => Some(ttl),
        TtlAnswer::Abstain => None,
    }
}

/// What the built-in policy built from `config` invalidates after `tool` succeeds.
fn write_invalidations(config: &BridgeConfig, server: &str, tool: &str) -> InvalidationAnswer {
    config.builtin_policy().invalidations(
        &tool_call(server, tool, Some(false)),
        &Outcome::of(Status::Success),
    )
}

fn rule(server: Option<&str>, tool: &str, ttl: Duration) -> TtlRule {
    TtlRule {
        server: server.map(str::to_owned),
        tool: tool.to_owned(),
        ttl,
    }
}

#[test]
fn defaults_without_a_cache_table() {
    let config = ok(MINIMAL);
    let cache = &config.cache;
    assert_eq!(*cache, CacheConfig::default());
    assert!(cache.enabled);
    assert_eq!(cache.backend, CacheBackend::Memory);
    assert_eq!(cache.max_entries, 10_000);
    assert_eq!(cache.max_bytes, 64 << 20);
    assert_eq!(cache.default_ttl, Some(secs(60)));
    assert_eq!(cache.eviction, Eviction::TinyLfu);
    assert_eq!(cache.list_ttl, secs(300));
    assert_eq!(cache.max_coalesced_waiters, 64);
    assert_eq!(cache.hit_for_miss_ttl, secs(5));
    assert!(cache.ttl_table.is_empty() && cache.invalidation_rules.is_empty());
    assert!(config.servers[0].cache_enabled);

    // An mcpServers JSON file gets the same defaults.
    let json = super::load::load_text(
        r#"{"mcpServers": {"a": {"command": "x"}}}"#,
        "c.json",
        None,
        &vars,
    );
    assert_eq!(json.map(|c| c.cache), Ok(CacheConfig::default()));
}

#[test]
fn every_cache_field_is_read() {
    let config = ok(&format!(
        r#"{MINIMAL}cache = false

[cache]
enabled = false
backend = "Memory"
max_entries = 5
max_bytes = "1MiB"
default_ttl = "90s"
eviction = "LRU"
list_ttl = 0
max_coalesced_waiters = 0
hit_for_miss_ttl = 1.5
"#
    ));
    let cache = &config.cache;
    assert!(!cache.enabled);
    assert_eq!(cache.backend, CacheBackend::Memory);
    assert_eq!(cache.max_entries, 5);
    assert_eq!(cache.max_bytes, 1 << 20);
    assert_eq!(cache.default_ttl, Some(secs(90)));
    assert_eq!(cache.eviction, Eviction::Lru);
    assert_eq!(cache.list_ttl, Duration::ZERO);
    assert_eq!(cache.max_coalesced_waiters, 0);
    assert_eq!(cache.hit_for_miss_ttl, Duration::from_millis(1500));
    assert!(!config.servers[0].cache_enabled);
}

#[test]
fn cache_value_forms() {
    let cache = |body: &str| ok(&format!("{MINIMAL}[cache]\n{body}\n")).cache;
    for (written, expected) in [
        ("\"none\"", None),
        ("\"NONE\"", None),
        ("0", Some(Duration::ZERO)),
        ("30", Some(secs(30))),
        ("\"2m\"", Some(secs(120))),
        ("\"1h 30m\"", Some(secs(5400))),
        ("0.5", Some(Duration::from_millis(500))),
    ] {
        assert_eq!(
            cache(&format!("default_ttl = {written}")).default_ttl,
            expected,
            "{written}"
        );
    }
    for (written, expected) in [
        ("1024", 1024),
        ("\"1KiB\"", 1024),
        ("\"2KB\"", 2000),
        ("\"64MiB\"", 64 << 20),
        ("\"1GiB\"", 1 << 30),
    ] {
        assert_eq!(
            cache(&format!("max_bytes = {written}")).max_bytes,
            expected,
            "{written}"
        );
    }
    for (written, expected) in [
        ("\"tinylfu\"", Eviction::TinyLfu),
        ("\"TinyLFU\"", Eviction::TinyLfu),
        ("\"lru\"", Eviction::Lru),
    ] {
        assert_eq!(
            cache(&format!("eviction = {written}")).eviction,
            expected,
            "{written}"
        );
    }
    assert_eq!(cache("list_ttl = \"10m\"").list_ttl, secs(600));
    assert_eq!(cache("max_entries = 1").max_entries, 1);
}

#[test]
fn seed_strategies_map_onto_eviction_and_ttl() {
    let cache = |body: &str| ok(&format!("{MINIMAL}[cache]\n{body}\n")).cache;
    for (strategy, eviction, default_ttl) in [
        ("LRU", Eviction::Lru, Some(secs(60))),
        ("lfu", Eviction::TinyLfu, Some(secs(60))),
        ("TTL", Eviction::TinyLfu, Some(secs(60))),
        ("Manual", Eviction::TinyLfu, None),
    ] {
        let config = cache(&format!("strategy = \"{strategy}\""));
        assert_eq!(
            (config.eviction, config.default_ttl),
            (eviction, default_ttl),
            "{strategy}"
        );
    }
    // TTL and LRU keep the configured default TTL.
    let config = cache("strategy = \"TTL\"\ndefault_ttl = \"10s\"");
    assert_eq!(config.default_ttl, Some(secs(10)));
    let config = cache("strategy = \"LRU\"\ndefault_ttl = \"none\"");
    assert_eq!((config.eviction, config.default_ttl), (Eviction::Lru, None));
}

#[test]
fn strategy_conflicts_name_both_fields() {
    for (body, other) in [
        ("strategy = \"LRU\"\neviction = \"lru\"", "eviction"),
        (
            "strategy = \"MANUAL\"\ndefault_ttl = \"60s\"",
            "default_ttl",
        ),
        ("strategy = \"TTL\"\ndefault_ttl = \"none\"", "default_ttl"),
    ] {
        let error = fail(&format!("{MINIMAL}[cache]\n{body}\n"));
        assert_at(&error, "test.toml", 4, "cache.strategy");
        assert!(
            error.message.contains("`cache.strategy`")
                && error.message.contains(&format!("`cache.{other}`")),
            "{error}"
        );
        assert!(
            error
                .help
                .as_deref()
                .is_some_and(|h| h.contains("(line 5)")),
            "the help should point at the other field: {error}"
        );
    }
}

#[test]
fn an_unknown_backend_is_rejected_with_the_ones_there_are() {
    let error = fail(&format!(
        "{MINIMAL}\n[cache]\nmax_entries = 10\nbackend = \"redis\"\n"
    ));
    assert_at(&error, "test.toml", 6, "cache.backend");
    assert_eq!(error.column, Some(1));
    assert!(error.message.contains("`redis`"), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("test.toml:6:1: `cache.backend`: unknown cache backend `redis`"),
        "{error}"
    );
    let help = error.help.unwrap_or_default();
    assert!(
        help.contains("\"memory\"") && help.contains("\"disk\""),
        "{help}"
    );
    // A near miss is named.
    let error = fail(&format!("{MINIMAL}\n[cache]\nbackend = \"dsk\"\n"));
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|help| help.starts_with("did you mean \"disk\"?")),
        "{error}"
    );
}

#[test]
fn the_disk_backend_reads_its_path_relative_to_the_config_file() {
    let dir = temp_dir();
    let text = format!(
        "{MINIMAL}\n[cache]\nbackend = \"Disk\"\npath = \"state/cache.redb\"\nmax_entries = 7\n"
    );
    let file = write(dir.path(), "bridge.toml", &text);
    let config = match super::load::load_path(&file, &vars) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    let expected = dir.path().join("state/cache.redb");
    assert_eq!(
        config.cache.backend,
        CacheBackend::Disk {
            path: expected.clone()
        }
    );
    assert_eq!(config.cache.backend.as_str(), "disk");
    assert_eq!(config.cache.backend.disk_path(), Some(expected.as_path()));
    assert_eq!(config.cache.max_entries, 7);
    // check-config shows the backend with its file.
    let described = config.describe();
    assert!(
        described.contains(&format!("disk backend ({})", expected.display())),
        "{described}"
    );

    // An absolute path stays as written, and `${VAR}` expands in it.
    let config = ok(&format!(
        "{MINIMAL}\n[cache]\nbackend = \"disk\"\npath = \"${{HOME}}/bridge/cache.redb\"\n"
    ));
    assert_eq!(
        config.cache.backend.disk_path(),
        Some(std::path::Path::new("/home/u/bridge/cache.redb"))
    );
    // The memory backend has no file.
    assert_eq!(ok(MINIMAL).cache.backend.disk_path(), None);
    assert!(ok(MINIMAL).describe().contains("memory backend"));
}

/// The disk backend's semantic checks: (the `[cache]` table's body, line, field, words in
/// the message). `[cache]` is on line 3, so its first key is on line 4.
const DISK_BACKEND_ERRORS: &[(&str, usize, &str, &str)] = &[
    ("backend = \"disk\"\n", 4, "cache.backend", "needs a `path`"),
    (
        "backend = \"disk\"\npath = \"  \"\n",
        5,
        "cache.path",
        "empty",
    ),
    (
        "backend = \"disk\"\npath = \"${EMPTY}\"\n",
        5,
        "cache.path",
        "empty",
    ),
    (
        "backend = \"disk\"\npath = \"cache/\"\n",
        5,
        "cache.path",
        "names a directory",
    ),
    (
        "backend = \"disk\"\npath = \"${NOT_SET}/c.redb\"\n",
        5,
        "cache.path",
        "NOT_SET",
    ),
    (
        "path = \"cache.redb\"\n",
        4,
        "cache.path",
        "backend is \"memory\"",
    ),
    (
        "backend = \"memory\"\npath = \"cache.redb\"\n",
        5,
        "cache.path",
        "keeps no file",
    ),
];

#[test]
fn disk_backend_errors_name_file_line_and_field() {
    for (body, line, field, words) in DISK_BACKEND_ERRORS {
        let error = fail(&format!("{MINIMAL}[cache]\n{body}"));
        assert_at(&error, "test.toml", *line, field);
        assert!(error.message.contains(words), "{body}: {error}");
    }
}

/// Each semantic check of `[cache]`: (the cache part of the file, line, field, words in the
/// message). The two servers take lines 1 to 5.
const CACHE_ERRORS: &[(&str, usize, &str, &str)] = &[
    (
        "[cache]\nmax_entries = 0\n",
        7,
        "cache.max_entries",
        "at least 1",
    ),
    (
        "[cache]\nmax_bytes = \"1023B\"\n",
        7,
        "cache.max_bytes",
        "at least 1 KiB",
    ),
    (
        "[cache]\neviction = \"lfu\"\n",
        7,
        "cache.eviction",
        "unknown eviction policy `lfu`",
    ),
    (
        "[cache]\nstrategy = \"FIFO\"\n",
        7,
        "cache.strategy",
        "unknown cache strategy `FIFO`",
    ),
    (
        "[cache.ttl.dmo]\nget_tasks = 5\n",
        6,
        "cache.ttl.dmo",
        "no server is named `dmo`",
    ),
    (
        "[cache.ttl.demo]\n\"\" = 5\n",
        7,
        "cache.ttl.demo.\"\"",
        "tool name is empty",
    ),
    (
        "[[cache.invalidate]]\nserver = \"nope\"\non = \"create_task\"\ntools = []\n",
        7,
        "cache.invalidate[0].server",
        "no server is named `nope`",
    ),
    (
        "[[cache.invalidate]]\non = \"a\"\ntools = []\n\n[[cache.invalidate]]\ntools = [\"x\"]\n",
        10,
        "cache.invalidate[1].on",
        "has no `on`",
    ),
    (
        "[[cache.invalidate]]\non = \"*\"\ntools = [\"x\"]\n",
        7,
        "cache.invalidate[0].on",
        "does not name a tool",
    ),
    (
        "[[cache.invalidate]]\non = \"create_task\"\n",
        7,
        "cache.invalidate[0].on",
        "names nothing to drop",
    ),
    (
        "[[cache.invalidate]]\non = \"create_task\"\ntags = [\"a\", \" \"]\n",
        8,
        "cache.invalidate[0].tags[1]",
        "empty",
    ),
];

#[test]
fn cache_errors_name_file_line_and_field() {
    for (cache, line, field, words) in CACHE_ERRORS {
        let error = fail(&with_servers(cache));
        assert_at(&error, "test.toml", *line, field);
        assert!(
            error.message.contains(words),
            "expected {words:?} in: {error}"
        );
    }
}

#[test]
fn unknown_server_lists_the_configured_ones() {
    let error = fail(&with_servers("[cache.ttl.dmo]\nget_tasks = 5\n"));
    assert_eq!(
        error.help.as_deref(),
        Some(
            "did you mean `demo`? the configured servers are `demo`, `memory`; write \"*\" for every server"
        )
    );
    let error = fail(&with_servers(
        "[[cache.invalidate]]\nserver = \"other\"\non = \"x\"\ntools = []\n",
    ));
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.starts_with("the configured servers are `demo`, `memory`")),
        "{error}"
    );
}

#[test]
fn servers_from_included_files_count() {
    let dir = temp_dir();
    write(
        dir.path(),
        "claude.json",
        r#"{"mcpServers": {"inc": {"command": "i"}}}"#,
    );
    let path = write(
        dir.path(),
        "bridge.toml",
        "include = [\"claude.json\"]\n[servers.own]\ncommand = \"o\"\n[cache.ttl.inc]\nread = 5\n[[cache.invalidate]]\nserver = \"inc\"\non = \"write\"\ntools = [\"read\"]\n",
    );
    let config = match super::load::load_path(&path, &vars) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        config.cache.ttl_table.rules(),
        [rule(Some("inc"), "read", secs(5))]
    );
    assert_eq!(
        config.cache.invalidation_rules[0].server.as_deref(),
        Some("inc")
    );

    write(
        dir.path(),
        "typo.toml",
        "include = [\"claude.json\"]\n[servers.own]\ncommand = \"o\"\n[cache.ttl.ink]\nread = 5\n",
    );
    let error = fail_in(dir.path(), "typo.toml");
    assert_at(
        &error,
        &dir.path().join("typo.toml").display().to_string(),
        4,
        "cache.ttl.ink",
    );
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.contains("did you mean `inc`?") && h.contains("`own`, `inc`")),
        "{error}"
    );
}

#[test]
fn ttl_table_is_ordered_by_precedence() {
    // Written least specific first, so that file order alone would pick the wrong rows.
    let config = ok(&with_servers(
        r#"[cache.ttl."*"]
"*" = "1s"
get_tasks = "2s"
list_tools = "1h"

[cache.ttl.demo]
get_tasks = "60s"
create_task = 0
"*" = "3s"
"#,
    ));
    let cache = &config.cache;
    assert_eq!(
        cache.ttl_table.rules(),
        [
            rule(Some("demo"), "get_tasks", secs(60)),
            rule(Some("demo"), "create_task", Duration::ZERO),
            rule(Some("demo"), "*", secs(3)),
            rule(None, "get_tasks", secs(2)),
            rule(None, "list_tools", secs(3600)),
            rule(None, "*", secs(1)),
        ]
    );
    let ttl = |server: &str, tool: &str| table_ttl(&config, server, tool);
    // An exact server beats "*", and then an exact tool beats "*".
    assert_eq!(ttl("demo", "get_tasks"), Some(secs(60)));
    assert_eq!(ttl("demo", "create_task"), Some(Duration::ZERO));
    assert_eq!(ttl("demo", "list_tools"), Some(secs(3)));
    assert_eq!(ttl("memory", "get_tasks"), Some(secs(2)));
    assert_eq!(ttl("memory", "list_tools"), Some(secs(3600)));
    assert_eq!(ttl("memory", "read_graph"), Some(secs(1)));

    let config = ok(&with_servers("[cache.ttl.demo]\nget_tasks = 5\n"));
    assert_eq!(table_ttl(&config, "memory", "get_tasks"), None);
    assert_eq!(table_ttl(&config, "demo", "get_task"), None);
}

#[test]
fn bad_ttl_values_point_at_the_row() {
    let error = fail(&with_servers("[cache.ttl.demo]\nget_tasks = \"soon\"\n"));
    assert_at(&error, "test.toml", 7, "cache.ttl.demo.get_tasks");
    assert!(
        error.help.as_deref().is_some_and(|h| h.contains("0 means")),
        "{error}"
    );
    // A row under "*" whose tool is named like a field still gets duration advice.
    let error = fail(&with_servers("[cache.ttl.\"*\"]\nenabled = true\n"));
    assert_at(&error, "test.toml", 7, "cache.ttl.\"*\".enabled");
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.contains("duration")),
        "{error}"
    );
    let error = fail(&with_servers("[cache.ttl]\ndemo = \"5m\"\n"));
    assert_at(&error, "test.toml", 7, "cache.ttl.demo");
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.contains("[cache.ttl.SERVER]")),
        "{error}"
    );
    let error = fail(&with_servers("[cache]\ndefault_ttl = \"never\"\n"));
    assert_at(&error, "test.toml", 7, "cache.default_ttl");
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.contains("\"none\"")),
        "{error}"
    );
    let error = fail(&with_servers("[cache]\nmax_entries = -1\n"));
    assert_at(&error, "test.toml", 7, "cache.max_entries");
    let error = fail(&with_servers("[servers.demo.cache]\nenabled = false\n"));
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|h| h.contains("cache = false")),
        "{error}"
    );
}

#[test]
fn unknown_cache_keys_suggest_the_closest() {
    let error = fail(&with_servers("[cache]\nmax_entires = 3\n"));
    assert_at(&error, "test.toml", 7, "cache.max_entires");
    assert_eq!(error.help.as_deref(), Some("did you mean `max_entries`?"));
    let error = fail(&with_servers(
        "[[cache.invalidate]]\non = \"a\"\ntool = []\n",
    ));
    assert_at(&error, "test.toml", 8, "cache.invalidate[0].tool");
    assert_eq!(error.help.as_deref(), Some("did you mean `tools`?"));
}

#[test]
fn invalidation_rules_keep_file_order() {
    let config = ok(&with_servers(
        r#"[[cache.invalidate]]
server = "demo"
on = "create_task"
tools = ["get_tasks", "get_today_metrics"]
tags = []

[[cache.invalidate]]
on = "create_task"
tags = ["tasks"]

[[cache.invalidate]]
server = "*"
on = "send_mail"
tools = []
"#,
    ));
    let rules = &config.cache.invalidation_rules;
    assert_eq!(
        rules[0],
        InvalidationRule {
            server: Some("demo".to_owned()),
            on: "create_task".to_owned(),
            tools: vec!["get_tasks".to_owned(), "get_today_metrics".to_owned()],
            tags: Vec::new(),
        }
    );
    assert_eq!(
        (rules[1].server.as_deref(), rules[1].tags.as_slice()),
        (None, ["tasks".to_owned()].as_slice())
    );
    assert_eq!(
        (rules[2].server.as_deref(), rules[2].on.as_str()),
        (None, "send_mail")
    );
    // Every matching rule applies, in file order; a rule naming nothing to drop still
    // speaks (and so replaces the whole-server default); no matching rule abstains.
    let after = |server: &str, tool: &str| write_invalidations(&config, server, tool);
    assert_eq!(
        after("demo", "create_task"),
        InvalidationAnswer::Rules(vec![
            Invalidation::tool("demo", "get_tasks"),
            Invalidation::tool("demo", "get_today_metrics"),
            Invalidation::tag("tasks"),
        ])
    );
    assert_eq!(
        after("memory", "create_task"),
        InvalidationAnswer::Rules(vec![Invalidation::tag("tasks")])
    );
    assert_eq!(
        after("memory", "send_mail"),
        InvalidationAnswer::Rules(Vec::new())
    );
    assert_eq!(after("demo", "update_task"), InvalidationAnswer::Abstain);
}

#[test]
fn describe_shows_the_cache() {
    let config = ok(&with_servers(
        r#"[cache]
default_ttl = "none"
eviction = "lru"
[cache.ttl."*"]
list_tools = "1h"
[cache.ttl.demo]
get_tasks = "60s"
create_task = 0
[[cache.invalidate]]
server = "demo"
on = "create_task"
tools = ["get_tasks", "get_today_metrics"]
[[cache.invalidate]]
on = "wipe"
tags = ["all"]
"#,
    ));
    let description = config.describe();
    for line in [
        "cache: on, memory backend, lru eviction, at most 10000 entries and 64 MiB",
        "  ttl: default none (until evicted or invalidated), lists 5m; coalescing: 64 waiters per fill; hit-for-miss: 5s",
        "  ttl table: demo.get_tasks 1m, demo.create_task never, *.list_tools 1h",
        "  invalidate: demo.create_task -> tools get_tasks, get_today_metrics",
        "  invalidate: *.wipe -> tags all",
        "    required: true, exclusive: false, cache: true, max_line_bytes: 16 MiB",
    ] {
        assert!(
            description.lines().any(|l| l == line),
            "missing {line:?} in:\n{description}"
        );
    }
    let off = ok(&format!(
        "{MINIMAL}cache = false\n[cache]\nenabled = false\ndefault_ttl = 0\n"
    ));
    let description = off.describe();
    assert!(description.contains("cache: off,"), "{description}");
    assert!(
        description.contains("default 0 (not cached)"),
        "{description}"
    );
    assert!(description.contains("cache: false,"), "{description}");
    assert!(!description.contains("ttl table"), "{description}");
}

/// The seed's TTL table, as both shipped files carry it for the demo server.
fn assert_seed_table(config: &BridgeConfig) {
    let ttl = |server: &str, tool: &str| table_ttl(config, server, tool);
    for (tool, seconds) in [
        ("list_tools", 3600),
        ("get_tool_schema", 3600),
        ("get_clients", 300),
        ("get_habits", 300),
        ("get_tasks", 60),
        ("get_today_metrics", 60),
        ("create_task", 0),
        ("update_task", 0),
        ("complete_task", 0),
    ] {
        assert_eq!(ttl("demo", tool), Some(secs(seconds)), "{tool}");
    }
    for write_tool in ["create_task", "update_task", "complete_task"] {
        assert_eq!(
            write_invalidations(config, "demo", write_tool),
            InvalidationAnswer::Rules(vec![
                Invalidation::tool("demo", "get_tasks"),
                Invalidation::tool("demo", "get_today_metrics"),
            ]),
            "{write_tool}"
        );
    }
}

#[test]
fn shipped_files_carry_the_seed_table() {
    let example = match super::load::load_path(&repo_file("mcp-bridge.example.toml"), &vars) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    assert_seed_table(&example);
    // The example documents the defaults, so apart from its table and rules it equals them.
    assert_eq!(
        CacheConfig {
            ttl_table: TtlMap::new(),
            invalidation_rules: Vec::new(),
            ..example.cache.clone()
        },
        CacheConfig::default()
    );
    assert!(example.servers.iter().all(|s| s.cache_enabled));

    let default = match embedded_default() {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    };
    assert_seed_table(&default);
    assert!(default.cache.enabled);
}

/// The built-in policy a config builds answers with its `[cache]` section: the default TTL
/// for read-only tools, the TTL table over it (a zero row bypasses), the rules for writes,
/// the stale windows, and no caching for a server with `cache = false`.
#[test]
fn the_builtin_policy_follows_the_cache_section() {
    let config = ok(&format!(
        "{}{}",
        "[servers.demo]\ncommand = \"d\"\n[servers.off]\ncommand = \"o\"\ncache = false\n",
        r#"[cache]
default_ttl = "60s"
stale_while_revalidate = "10s"

[cache.ttl."*"]
get_tool_schema = "1h"

[cache.ttl.demo]
get_clients = "5m"
create_task = 0

[[cache.invalidate]]
on = "create_task"
tools = ["get_tasks", "get_today_metrics"]
"#
    ));
    let policy = config.builtin_policy();
    let chain = mcp_bridge_policy::PolicyChain::new(Vec::new(), std::sync::Arc::new(policy));
    let cached = |ttl: u64| {
        let mut directive = mcp_bridge_policy::Directive::ttl(secs(ttl));
        directive.stale_while_revalidate = Some(secs(10));
        Decision::Cache(directive)
    };
    let decide = |server: &str, tool: &str| chain.decide(&tool_call(server, tool, Some(true)));
    assert_eq!(decide("demo", "get_tasks"), cached(60));
    assert_eq!(decide("demo", "get_clients"), cached(300));
    assert_eq!(decide("demo", "get_tool_schema"), cached(3600));
    assert_eq!(decide("demo", "create_task"), Decision::Bypass);
    assert_eq!(decide("off", "get_tasks"), Decision::Bypass);
    assert_eq!(
        chain.invalidations(
            &tool_call("demo", "create_task", Some(false)),
            &Outcome::of(Status::Success)
        ),
        vec![
            Invalidation::tool("demo", "get_tasks"),
            Invalidation::tool("demo", "get_today_metrics"),
        ]
    );
}
