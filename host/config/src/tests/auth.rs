//! `[auth]`, `[access]`, `[limits]` and `[audit]`: what loads, and where bad values are reported.

use super::*;

const SERVER: &str = "[servers.demo]\ncommand = \"x\"\n";

fn with_server(text: &str) -> String {
    format!("{SERVER}{text}")
}

#[test]
fn a_full_identity_section_loads_with_its_defaults() {
    let digest = "a".repeat(64);
    let config = ok(&with_server(&format!(
        r#"[auth]
metrics_principals = ["alice"]
[auth.jwt]
issuer = "https://auth.example.com"
audience = "https://bridge.example.com/mcp"
jwks_url = "https://auth.example.com/jwks.json"
required_scopes = ["mcp"]
[[auth.api_keys]]
principal = "ci"
roles = ["ci"]
key_sha256 = "{digest}"
[[auth.api_keys]]
principal = "ops"
key = "${{TOKEN}}-long-enough"
[[access.rules]]
name = "read"
roles = ["ci"]
servers = ["demo"]
tools = ["get_*"]
[limits]
calls_per_second = 5
max_in_flight = 4
[[limits.rules]]
name = "slow"
tools = ["get_clients"]
calls_per_second = 0.5
[audit]
file = "audit.jsonl"
"#
    )));
    let jwt = config.auth.jwt.as_ref().expect("jwt");
    assert_eq!(jwt.algorithms, DEFAULT_JWT_ALGORITHMS);
    assert_eq!(jwt.leeway, DEFAULT_JWT_LEEWAY);
    assert_eq!(jwt.principal_claim, "sub");
    assert_eq!(jwt.scopes_supported, ["mcp"]);
    assert_eq!(jwt.authorization_servers, ["https://auth.example.com"]);
    assert_eq!(config.auth.api_keys.len(), 2);
    assert_eq!(config.auth.api_keys[0].sha256, [0xaa; 32]);
    assert_eq!(config.auth.token_principal, DEFAULT_TOKEN_PRINCIPAL);
    assert_eq!(config.auth.admin_roles, ["admin"]);
    assert_eq!(config.access.rules[0].effect, AccessEffect::Allow);
    assert_eq!(
        config.access.rules[0].tools.as_deref(),
        Some(&["get_*".to_owned()][..])
    );
    assert_eq!(config.limits.per_principal.calls_per_second, Some(5.0));
    assert_eq!(config.limits.rules[0].limits.calls_per_second, Some(0.5));
    assert!(config.audit.enabled);
    // No secret reaches the summary.
    let described = config.describe();
    assert!(
        !described.contains("s3cr3t") && !described.contains(&digest),
        "{described}"
    );
    assert!(described.contains("ci [ci]"), "{described}");
}

#[test]
fn an_hmac_or_none_algorithm_is_refused_where_written() {
    let text = with_server(
        "[auth.jwt]\nissuer = \"https://a\"\naudience = \"https://b/mcp\"\njwks_file = \"k.json\"\nalgorithms = [\"RS256\", \"HS256\"]\n",
    );
    let error = fail(&text);
    assert_at(&error, "test.toml", 7, "auth.jwt.algorithms[1]");
    assert!(error.message.contains("HMAC"), "{error}");
    let text = text.replace("HS256", "none");
    assert!(fail(&text).message.contains("unsigned"));
}

#[test]
fn a_jwks_url_over_plain_http_is_refused_off_loopback() {
    let jwt = |url: &str| {
        with_server(&format!(
            "[auth.jwt]\nissuer = \"https://a\"\naudience = \"https://b/mcp\"\njwks_url = \"{url}\"\n"
        ))
    };
    let error = fail(&jwt("http://auth.example.com/jwks.json"));
    assert_at(&error, "test.toml", 6, "auth.jwt.jwks_url");
    ok(&jwt("http://127.0.0.1:9000/jwks.json"));
    ok(&jwt("http://[::1]:9000/jwks.json"));
    ok(&jwt("https://auth.example.com/jwks.json"));
    let error = fail(&jwt("ftp://auth.example.com/jwks.json"));
    assert!(error.message.contains("ftp"), "{error}");
}

#[test]
fn a_jwks_ca_file_goes_with_a_jwks_url_only() {
    let base = "[auth.jwt]\nissuer = \"https://a\"\naudience = \"https://b/mcp\"\n";
    let config = ok(&with_server(&format!(
        "{base}jwks_url = \"https://a/jwks.json\"\njwks_ca_file = \"/etc/ca.pem\"\n"
    )));
    let jwt = config.auth.jwt.expect("jwt");
    assert_eq!(jwt.jwks_ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    let error = fail(&with_server(&format!(
        "{base}jwks_file = \"k.json\"\njwks_ca_file = \"/etc/ca.pem\"\n"
    )));
    assert_at(&error, "test.toml", 7, "auth.jwt.jwks_ca_file");
}

#[test]
fn an_api_key_needs_exactly_one_well_formed_secret() {
    let key = |body: &str| with_server(&format!("[[auth.api_keys]]\nprincipal = \"ci\"\n{body}"));
    let error = fail(&key("key_sha256 = \"abc\"\n"));
    assert_at(&error, "test.toml", 5, "auth.api_keys[0].key_sha256");
    let error = fail(&key(&format!(
        "key_sha256 = \"{}\"\nkey = \"${{TOKEN}}\"\n",
        "a".repeat(64)
    )));
    assert!(error.message.contains("both"), "{error}");
    let error = fail(&key("key = \"tiny1\"\n"));
    assert!(error.message.contains("16"), "{error}");
    assert!(
        !error.to_string().contains("tiny1"),
        "the key must not be quoted: {error}"
    );
    let error = fail(&with_server(&format!(
        "[[auth.api_keys]]\nprincipal = \"a\"\nkey_sha256 = \"{0}\"\n[[auth.api_keys]]\nprincipal = \"b\"\nkey_sha256 = \"{0}\"\n",
        "b".repeat(64)
    )));
    assert!(error.message.contains("principal `a`"), "{error}");
}

#[test]
fn access_rules_name_known_servers_and_are_named_once() {
    let error = fail(&with_server(
        "[[access.rules]]\nname = \"r\"\nservers = [\"dmeo\"]\n",
    ));
    assert_at(&error, "test.toml", 5, "access.rules[0].servers[0]");
    assert!(
        error
            .help
            .as_deref()
            .is_some_and(|help| help.contains("demo"))
    );
    ok(&with_server(
        "[[access.rules]]\nname = \"r\"\nservers = [\"de*\"]\n",
    ));
    let error = fail(&with_server(
        "[[access.rules]]\nname = \"r\"\n[[access.rules]]\nname = \"r\"\neffect = \"deny\"\n",
    ));
    assert!(error.message.contains("two access rules"), "{error}");
    let error = fail(&with_server(
        "[[access.rules]]\nname = \"r\"\neffect = \"maybe\"\n",
    ));
    assert_at(&error, "test.toml", 5, "access.rules[0].effect");
}

#[test]
fn limits_are_positive_and_a_rule_sets_one() {
    let error = fail(&with_server("[limits]\ncalls_per_second = 0\n"));
    assert_at(&error, "test.toml", 4, "limits.calls_per_second");
    let error = fail(&with_server("[limits]\nburst = 3\n"));
    assert!(
        error.message.contains("without `calls_per_second`"),
        "{error}"
    );
    let error = fail(&with_server("[[limits.rules]]\nname = \"r\"\n"));
    assert!(error.message.contains("sets no limit"), "{error}");
    let error = fail(&with_server("[limits]\nmax_in_flight = 0\n"));
    assert_at(&error, "test.toml", 4, "limits.max_in_flight");
}
