//! `[cache.shared]`: defaults, every setting read, and errors at the right place.

use std::time::Duration;

use super::*;
use crate::{Consistency, DEFAULT_SHARED_COMMAND_TIMEOUT, DEFAULT_SHARED_KEY_PREFIX};

fn with_server(shared: &str) -> String {
    format!("[servers.demo]\ncommand = \"d\"\n\n{shared}")
}

#[test]
fn the_shared_tier_has_named_defaults_and_reads_every_setting() {
    let config = ok(&with_server(
        "[cache.shared]\nurl = \"redis://127.0.0.1:6379\"\n",
    ));
    let shared = config
        .cache
        .shared
        .unwrap_or_else(|| panic!("a shared tier"));
    assert_eq!(shared.consistency, Consistency::Strict);
    assert_eq!(shared.key_prefix, DEFAULT_SHARED_KEY_PREFIX);
    assert_eq!(shared.command_timeout, DEFAULT_SHARED_COMMAND_TIMEOUT);
    assert!(!shared.required_for_readiness);
    assert_eq!(shared.max_entry_lifetime(), shared.generation_retention / 2);

    let config = ok(&with_server(
        "[cache.shared]\nurl = \"rediss://cache.internal:6380/2\"\npassword = \"pw\"\nca_file = \"ca.pem\"\nconsistency = \"bounded\"\nkey_prefix = \"team-a:\"\nconnect_timeout = \"2s\"\ncommand_timeout = \"100ms\"\nhealth_check_interval = \"1s\"\nmax_value_bytes = \"64KiB\"\nmax_pending_invalidations = 5\nmax_pending_writes = 7\ngeneration_retention = \"1d\"\nrequired_for_readiness = true\n",
    ));
    let shared = config
        .cache
        .shared
        .unwrap_or_else(|| panic!("a shared tier"));
    assert_eq!(shared.consistency, Consistency::Bounded);
    assert_eq!(shared.key_prefix, "team-a:");
    assert_eq!(shared.password.as_ref().map(|p| p.expose()), Some("pw"));
    assert!(shared.ca_file.is_some_and(|path| path.ends_with("ca.pem")));
    assert_eq!(shared.command_timeout, Duration::from_millis(100));
    assert_eq!(shared.max_value_bytes, 64 << 10);
    assert_eq!(
        (shared.max_pending_invalidations, shared.max_pending_writes),
        (5, 7)
    );
    assert!(shared.required_for_readiness);
}

#[test]
fn shared_tier_errors_name_file_line_and_field() {
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "[cache.shared]\nconsistency = \"strict\"\n",
            4,
            "cache.shared",
            "has no `url`",
        ),
        (
            "[cache.shared]\nurl = \"http://x:6379\"\n",
            5,
            "cache.shared.url",
            "neither redis nor rediss",
        ),
        (
            "[cache.shared]\nurl = \"redis://\"\n",
            5,
            "cache.shared.url",
            "no host",
        ),
        (
            "[cache.shared]\nurl = \"redis://h\"\nconsistency = \"eventual\"\n",
            6,
            "cache.shared.consistency",
            "unknown consistency mode",
        ),
        (
            "[cache.shared]\nurl = \"redis://h\"\nca_file = \"ca.pem\"\n",
            6,
            "cache.shared.ca_file",
            "not rediss",
        ),
        (
            "[cache.shared]\nurl = \"redis://h\"\ncommand_timeout = \"0s\"\n",
            6,
            "cache.shared.command_timeout",
            "longer than zero",
        ),
        (
            "[cache.shared]\nurl = \"redis://h\"\ngeneration_retention = \"1m\"\n",
            6,
            "cache.shared.generation_retention",
            "at least two minutes",
        ),
        (
            "[cache.shared]\nurl = \"redis://h\"\nkey_prefix = \"has space\"\n",
            6,
            "cache.shared.key_prefix",
            "spaces",
        ),
        (
            "[cache.shared]\nurl = \"redis://h\"\nmax_pending_writes = 0\n",
            6,
            "cache.shared.max_pending_writes",
            "at least 1",
        ),
    ];
    for (shared, line, field, words) in cases {
        let error = fail(&with_server(shared));
        assert_at(&error, "test.toml", *line, field);
        assert!(
            error.message.contains(words),
            "expected {words:?} in: {error}"
        );
    }
}

#[test]
fn a_disk_cache_and_a_shared_tier_refuse_each_other() {
    let error = fail(&with_server(
        "[cache]\nbackend = \"disk\"\npath = \"cache.redb\"\n[cache.shared]\nurl = \"redis://h\"\n",
    ));
    assert!(
        error
            .message
            .contains("cannot be combined with [cache.shared]"),
        "{error}"
    );
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|help| help.contains("backend = \"memory\"")),
        "{error}"
    );
}

#[test]
fn the_url_is_a_secret() {
    let config = ok(&with_server(
        "[cache.shared]\nurl = \"redis://user:hunter2@h:6379\"\n",
    ));
    let printed = format!("{:?}", config.cache.shared);
    assert!(!printed.contains("hunter2"), "{printed}");
    let described = config.describe();
    assert!(
        described.contains("shared tier: strict on redis://h:6379"),
        "{described}"
    );
    assert!(!described.contains("hunter2"), "{described}");
}
