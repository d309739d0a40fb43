//! `[sessions]`: the keys that sign session tokens, and their lifetime.

use super::*;

const KEY: &str = "0123456789abcdef0123456789abcdef-first";
const OLD_KEY: &str = "fedcba9876543210fedcba9876543210-older";

#[test]
fn without_the_table_no_key_is_configured_and_tokens_last_a_day() {
    let config = ok(MINIMAL);
    assert_eq!(config.sessions, SessionsConfig::default());
    assert!(config.sessions.keys.is_empty());
    assert_eq!(config.sessions.max_age, DEFAULT_SESSION_MAX_AGE);
    assert!(
        config
            .describe()
            .contains("sessions: keys none (a random key made at start")
    );
}

#[test]
fn keys_keep_their_order_and_expand_from_the_environment() {
    let config = ok(&format!(
        "{MINIMAL}[sessions]\nkeys = [\"{KEY}\", \"${{TOKEN}}-and-thirty-two-bytes-long!\", \"{OLD_KEY}\"]\nmax_age = \"2h\"\n"
    ));
    let keys: Vec<&str> = config.sessions.keys.iter().map(Secret::expose).collect();
    assert_eq!(
        keys,
        [KEY, "s3cr3t-value-and-thirty-two-bytes-long!", OLD_KEY]
    );
    assert_eq!(config.sessions.max_age, Duration::from_secs(2 * 60 * 60));
    let described = config.describe();
    assert!(
        described.contains("sessions: keys 3 (the first signs, all verify), max_age 2h"),
        "{described}"
    );
    for key in keys {
        assert!(!described.contains(key), "check-config printed a key");
    }
}

#[test]
fn a_short_key_is_refused_where_it_is_written_without_quoting_it() {
    let error = fail(&format!(
        "{MINIMAL}[sessions]\nkeys = [\n  \"{KEY}\",\n  \"too-short-key\",\n]\n"
    ));
    assert_at(&error, "test.toml", 6, "sessions.keys[1]");
    let text = error.to_string();
    assert!(
        text.contains("13 bytes long; it must be at least 32"),
        "{text}"
    );
    assert!(text.contains("openssl rand -base64 48"), "{text}");
    assert!(
        !text.contains("too-short-key"),
        "the error quoted the key: {text}"
    );
}

#[test]
fn an_empty_list_a_repeated_key_and_a_zero_max_age_are_refused() {
    let empty = fail(&format!("{MINIMAL}[sessions]\nkeys = []\n"));
    assert_at(&empty, "test.toml", 4, "sessions.keys");
    let twice = fail(&format!(
        "{MINIMAL}[sessions]\nkeys = [\"{KEY}\", \"{KEY}\"]\n"
    ));
    assert_eq!(twice.field.as_deref(), Some("sessions.keys[1]"));
    assert!(!twice.to_string().contains(KEY));
    let zero = fail(&format!("{MINIMAL}[sessions]\nmax_age = \"0s\"\n"));
    assert_at(&zero, "test.toml", 4, "sessions.max_age");
    let too_many: Vec<String> = (0..=MAX_SESSION_KEYS)
        .map(|i| format!("\"{KEY}-{i}\""))
        .collect();
    let many = fail(&format!(
        "{MINIMAL}[sessions]\nkeys = [{}]\n",
        too_many.join(", ")
    ));
    assert_eq!(many.field.as_deref(), Some("sessions.keys"));
}

#[test]
fn an_unknown_key_in_the_table_and_a_key_that_is_not_a_string_are_refused() {
    let unknown = fail(&format!("{MINIMAL}[sessions]\nkey = \"{KEY}\"\n"));
    assert!(unknown.to_string().contains("key"), "{unknown}");
    let number = fail(&format!(
        "{MINIMAL}[sessions]\nkeys = [12345678901234567890]\n"
    ));
    assert!(!number.to_string().contains("1234567890"), "{number}");
}
