//! Checks the `[auth]`, `[access]`, `[limits]` and `[audit]` tables: each value at the place
//! it was written, secrets never quoted.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::auth::*;
use super::checked::ServerConfig;
use super::error::{ConfigError, suggest};
use super::expand::Lookup;
use super::raw::{
    RawAccess, RawAccessRule, RawApiKey, RawAudit, RawAuth, RawJwt, RawLimitRule, RawLimits,
};
use super::source::{FieldPath, SourceText};
use super::validate::expand_at;

/// The longest leeway the bridge accepts for `exp`/`nbf`: more would keep expired tokens
/// working for longer than any clock is plausibly off.
const MAX_JWT_LEEWAY: Duration = Duration::from_secs(5 * 60);
/// The shortest interval between JWKS fetches for unknown key ids.
const MIN_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Checks `[auth]`. `base_dir` resolves a relative `jwks_file`.
pub(super) fn auth(
    main: &SourceText,
    base_dir: &Path,
    raw: RawAuth,
    lookup: Lookup<'_>,
) -> Result<AuthConfig, ConfigError> {
    let at = |field: &str| FieldPath::root().key("auth").key(field);
    let token_principal = match raw.token_principal {
        Some(name) => {
            non_empty(main, &at("token_principal"), &name, "the principal's name")?;
            name
        }
        None => DEFAULT_TOKEN_PRINCIPAL.to_owned(),
    };
    let admin_roles = match raw.admin_roles {
        Some(roles) => names(main, &at("admin_roles"), roles, "a role")?,
        None => DEFAULT_ADMIN_ROLES
            .iter()
            .map(|r| (*r).to_owned())
            .collect(),
    };
    let metrics_principals = names(
        main,
        &at("metrics_principals"),
        raw.metrics_principals.unwrap_or_default(),
        "a principal",
    )?;
    let jwt = raw
        .jwt
        .map(|jwt| self::jwt(main, base_dir, jwt, lookup))
        .transpose()?;
    let mut api_keys: Vec<ApiKeyConfig> = Vec::new();
    for (i, key) in raw.api_keys.unwrap_or_default().into_iter().enumerate() {
        let path = at("api_keys").index(i);
        let key = api_key(main, &path, key, lookup)?;
        if let Some(first) = api_keys.iter().find(|k| k.sha256 == key.sha256) {
            return Err(main
                .error(
                    &path,
                    format!(
                        "this key is already the key of principal `{}`",
                        first.principal
                    ),
                )
                .with_help(
                    "give every principal its own key: one key must identify one principal",
                ));
        }
        api_keys.push(key);
    }
    Ok(AuthConfig {
        jwt,
        api_keys,
        token_principal,
        admin_roles,
        metrics_principals,
    })
}

fn jwt(
    main: &SourceText,
    base_dir: &Path,
    raw: RawJwt,
    lookup: Lookup<'_>,
) -> Result<JwtConfig, ConfigError> {
    let jwt_path = FieldPath::root().key("auth").key("jwt");
    let at = |field: &str| jwt_path.key(field);
    let issuer = required_text(
        main,
        &jwt_path,
        "issuer",
        raw.issuer,
        lookup,
        "write the authorization server's issuer identifier, exactly as its tokens' `iss` claim says, such as \"https://auth.example.com\"",
    )?;
    let audience = required_text(
        main,
        &jwt_path,
        "audience",
        raw.audience,
        lookup,
        "write the bridge's own resource URI, the one clients request tokens for (RFC 8707), such as \"https://bridge.example.com/mcp\"",
    )?;
    if let Err(why) = check_url(&audience) {
        return Err(main
            .error(&at("audience"), format!("`{audience}` is not a resource URI: {why}"))
            .with_help("write an absolute https URI (http only on a loopback host), such as \"https://bridge.example.com/mcp\""));
    }
    let jwks = match (raw.jwks_file, raw.jwks_url) {
        (Some(_), Some(_)) => {
            return Err(main
                .error(&at("jwks_url"), "`jwks_file` and `jwks_url` are both set")
                .with_help("keep one: a file the bridge reads on start and reload, or the authorization server's JWKS URL"));
        }
        (None, None) => {
            return Err(main
                .error(&jwt_path, "[auth.jwt] names no signing keys")
                .with_help("set `jwks_url` to the authorization server's JWKS URL (its metadata's `jwks_uri`), or `jwks_file` to a JWKS file"));
        }
        (Some(file), None) => {
            let file = expand_at(main, &at("jwks_file"), &file, lookup)?;
            non_empty(main, &at("jwks_file"), &file, "the JWKS file's path")?;
            JwksSource::File(base_dir.join(file))
        }
        (None, Some(url)) => {
            let url = expand_at(main, &at("jwks_url"), &url, lookup)?;
            if let Err(why) = check_url(&url) {
                return Err(main
                    .error(&at("jwks_url"), format!("`{url}` cannot be fetched: {why}"))
                    .with_help("write an https URL (plain http only on a loopback host such as 127.0.0.1), such as \"https://auth.example.com/.well-known/jwks.json\""));
            }
            JwksSource::Url(url)
        }
    };
    let algorithms = match raw.algorithms {
        None => DEFAULT_JWT_ALGORITHMS.to_vec(),
        Some(names) => algorithms(main, &at("algorithms"), &names)?,
    };
    let leeway = raw.leeway.map_or(DEFAULT_JWT_LEEWAY, Duration::from);
    if leeway > MAX_JWT_LEEWAY {
        return Err(main
            .error(&at("leeway"), "the leeway is longer than 5 minutes")
            .with_help("a leeway covers clock skew, which is seconds; write \"30s\""));
    }
    let claim = |field: &str, written: Option<String>, default: &str| match written {
        Some(name) => non_empty(main, &at(field), &name, "the claim's name").map(|()| name),
        None => Ok(default.to_owned()),
    };
    let principal_claim = claim(
        "principal_claim",
        raw.principal_claim,
        DEFAULT_PRINCIPAL_CLAIM,
    )?;
    let roles_claim = claim("roles_claim", raw.roles_claim, DEFAULT_ROLES_CLAIM)?;
    let scopes_claim = claim("scopes_claim", raw.scopes_claim, DEFAULT_SCOPES_CLAIM)?;
    let required_scopes = scopes(main, &at("required_scopes"), raw.required_scopes)?;
    let scopes_supported = match raw.scopes_supported {
        Some(list) => scopes(main, &at("scopes_supported"), Some(list))?,
        None => required_scopes.clone(),
    };
    let authorization_servers = match raw.authorization_servers {
        None => vec![issuer.clone()],
        Some(list) => {
            for (i, server) in list.iter().enumerate() {
                if let Err(why) = check_url(server) {
                    return Err(main
                        .error(&at("authorization_servers").index(i), format!("`{server}` is not an issuer URL: {why}"))
                        .with_help("write each authorization server's issuer identifier, such as \"https://auth.example.com\""));
                }
            }
            list
        }
    };
    let jwks_refresh_interval = raw
        .jwks_refresh_interval
        .map_or(DEFAULT_JWKS_REFRESH_INTERVAL, Duration::from);
    if jwks_refresh_interval < MIN_JWKS_REFRESH_INTERVAL {
        return Err(main
            .error(&at("jwks_refresh_interval"), "must be at least one second")
            .with_help("it bounds how often tokens with unknown key ids make the bridge fetch the JWKS; write \"30s\""));
    }
    let jwks_max_age = raw
        .jwks_max_age
        .map_or(DEFAULT_JWKS_MAX_AGE, Duration::from);
    let jwks_fetch_timeout = raw
        .jwks_fetch_timeout
        .map_or(DEFAULT_JWKS_FETCH_TIMEOUT, Duration::from);
    for (field, value) in [
        ("jwks_max_age", jwks_max_age),
        ("jwks_fetch_timeout", jwks_fetch_timeout),
    ] {
        if value.is_zero() {
            return Err(main
                .error(&at(field), "must be longer than zero")
                .with_help(
                    "write a duration such as \"10m\" (max age) or \"5s\" (fetch timeout)",
                ));
        }
    }
    let jwks_ca_file = match raw.jwks_ca_file {
        None => None,
        Some(_) if !matches!(jwks, JwksSource::Url(_)) => {
            return Err(main
                .error(&at("jwks_ca_file"), "`jwks_ca_file` is set without `jwks_url`")
                .with_help("it adds trusted roots for fetching the JWKS over https; remove it, or use jwks_url"));
        }
        Some(file) => {
            let file = expand_at(main, &at("jwks_ca_file"), &file, lookup)?;
            non_empty(main, &at("jwks_ca_file"), &file, "the CA file's path")?;
            Some(base_dir.join(file))
        }
    };
    let token_cache_entries = raw
        .token_cache_entries
        .unwrap_or(DEFAULT_TOKEN_CACHE_ENTRIES);
    if token_cache_entries == 0 {
        return Err(main
            .error(&at("token_cache_entries"), "must be at least 1")
            .with_help(
                "verified tokens are remembered so their signature is checked once; write 10000",
            ));
    }
    Ok(JwtConfig {
        issuer,
        audience,
        jwks,
        algorithms,
        leeway,
        principal_claim,
        roles_claim,
        scopes_claim,
        required_scopes,
        scopes_supported,
        authorization_servers,
        jwks_refresh_interval,
        jwks_max_age,
        jwks_fetch_timeout,
        jwks_ca_file,
        token_cache_entries,
    })
}

fn algorithms(
    main: &SourceText,
    path: &FieldPath,
    names: &[String],
) -> Result<Vec<JwtAlgorithm>, ConfigError> {
    if names.is_empty() {
        return Err(main
            .error(path, "the list of algorithms is empty")
            .with_help("write the algorithms the authorization server signs with, such as [\"RS256\", \"ES256\"]"));
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let Some(algorithm) = JwtAlgorithm::from_name(name) else {
            let why = if name.eq_ignore_ascii_case("none") {
                "`none` means an unsigned token, which anyone can forge".to_owned()
            } else if name.to_ascii_uppercase().starts_with("HS") {
                format!(
                    "`{name}` is an HMAC: it needs a shared secret, and with a public key as the secret anyone could forge tokens"
                )
            } else {
                format!("`{name}` is not a JWT signature algorithm the bridge supports")
            };
            let known: Vec<&str> = JwtAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
            return Err(main.error(&path.index(i), why).with_help(format!(
                "use asymmetric algorithms only: {}",
                known.join(", ")
            )));
        };
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    Ok(algorithms)
}

fn api_key(
    main: &SourceText,
    path: &FieldPath,
    raw: RawApiKey,
    lookup: Lookup<'_>,
) -> Result<ApiKeyConfig, ConfigError> {
    let Some(principal) = raw.principal else {
        return Err(main
            .error(path, "the API key names no `principal`")
            .with_help("write principal = \"NAME\": who the key's holder is, as access rules, limits and the audit log name them"));
    };
    non_empty(
        main,
        &path.key("principal"),
        &principal,
        "the principal's name",
    )?;
    let roles = names(
        main,
        &path.key("roles"),
        raw.roles.unwrap_or_default(),
        "a role",
    )?;
    let sha256 = match (raw.key_sha256, raw.key) {
        (Some(_), Some(_)) => {
            return Err(main
                .error(&path.key("key"), "`key` and `key_sha256` are both set")
                .with_help("keep `key_sha256` (the hex SHA-256 of the key, so the config holds no secret) or `key` (usually \"${ENV_VAR}\")"));
        }
        (None, None) => {
            return Err(main
                .error(path, "the API key has neither `key_sha256` nor `key`")
                .with_help("write key_sha256 = \"<hex>\" (from `printf %s \"$KEY\" | sha256sum`) or key = \"${ENV_VAR}\""));
        }
        (Some(hex), None) => parse_digest(&hex).ok_or_else(|| {
            main.error(
                &path.key("key_sha256"),
                "not a SHA-256 digest: it must be 64 hexadecimal characters",
            )
            .with_help("compute it with `printf %s \"$KEY\" | sha256sum` and paste the hex")
        })?,
        (None, Some(secret)) => {
            let key = expand_at(main, &path.key("key"), &secret.0, lookup)?;
            if key.len() < 16 || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(main
                    .error(&path.key("key"), "the key is shorter than 16 characters or contains spaces or control characters")
                    .with_help("use a long random key of printable characters, such as the output of `openssl rand -hex 32`"));
            }
            Sha256::digest(key.as_bytes()).into()
        }
    };
    Ok(ApiKeyConfig {
        principal,
        roles,
        sha256,
    })
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(digest)
}

/// Checks `[access]`: rule names are unique, effects known, patterns non-empty, and a server
/// named without a wildcard is configured (a typo would otherwise grant nothing).
pub(super) fn access(
    main: &SourceText,
    raw: RawAccess,
    servers: &[ServerConfig],
) -> Result<AccessConfig, ConfigError> {
    let mut rules: Vec<AccessRule> = Vec::new();
    for (i, raw) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        let path = FieldPath::root().key("access").key("rules").index(i);
        let rule = access_rule(main, &path, raw, servers)?;
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(main
                .error(
                    &path.key("name"),
                    format!("two access rules are named `{}`", rule.name),
                )
                .with_help(
                    "give every rule its own name: denials and the audit log name the rule",
                ));
        }
        rules.push(rule);
    }
    Ok(AccessConfig { rules })
}

fn access_rule(
    main: &SourceText,
    path: &FieldPath,
    raw: RawAccessRule,
    servers: &[ServerConfig],
) -> Result<AccessRule, ConfigError> {
    let name = rule_name(main, path, raw.name)?;
    let effect = match raw.effect.as_deref() {
        None | Some("allow") => AccessEffect::Allow,
        Some("deny") => AccessEffect::Deny,
        Some(other) => {
            return Err(main
                .error(&path.key("effect"), format!("unknown effect `{other}`"))
                .with_help("write \"allow\" or \"deny\""));
        }
    };
    let who = audience(main, path, raw.principals, raw.roles)?;
    let server_globs = server_globs(main, &path.key("servers"), raw.servers, servers)?;
    let globs = |field: &str, list: Option<Vec<String>>| {
        list.map(|list| names(main, &path.key(field), list, "a pattern"))
            .transpose()
    };
    Ok(AccessRule {
        name,
        effect,
        who,
        servers: server_globs,
        tools: globs("tools", raw.tools)?,
        prompts: globs("prompts", raw.prompts)?,
        resources: globs("resources", raw.resources)?,
    })
}

/// Checks `[limits]`.
pub(super) fn limits(
    main: &SourceText,
    raw: RawLimits,
    servers: &[ServerConfig],
) -> Result<LimitsConfig, ConfigError> {
    let at = FieldPath::root().key("limits");
    let per_principal = limit_settings(
        main,
        &at,
        raw.calls_per_second,
        raw.burst,
        raw.max_in_flight,
    )?;
    let mut rules: Vec<LimitRule> = Vec::new();
    for (i, rule) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        let path = at.key("rules").index(i);
        let rule = limit_rule(main, &path, rule, servers)?;
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(main
                .error(
                    &path.key("name"),
                    format!("two limit rules are named `{}`", rule.name),
                )
                .with_help("give every rule its own name: refusals name the rule"));
        }
        rules.push(rule);
    }
    Ok(LimitsConfig {
        per_principal,
        count_cache_hits: raw.count_cache_hits.unwrap_or(DEFAULT_COUNT_CACHE_HITS),
        rules,
    })
}

fn limit_rule(
    main: &SourceText,
    path: &FieldPath,
    raw: RawLimitRule,
    servers: &[ServerConfig],
) -> Result<LimitRule, ConfigError> {
    let name = rule_name(main, path, raw.name)?;
    let who = audience(main, path, raw.principals, raw.roles)?;
    let server_globs = server_globs(main, &path.key("servers"), raw.servers, servers)?;
    let tools = names(
        main,
        &path.key("tools"),
        raw.tools.unwrap_or_default(),
        "a pattern",
    )?;
    let limits = limit_settings(
        main,
        path,
        raw.calls_per_second,
        raw.burst,
        raw.max_in_flight,
    )?;
    if limits.is_empty() {
        return Err(main
            .error(path, format!("limit rule `{name}` sets no limit"))
            .with_help("set calls_per_second (and optionally burst) or max_in_flight"));
    }
    Ok(LimitRule {
        name,
        who,
        servers: server_globs,
        tools,
        limits,
    })
}

fn limit_settings(
    main: &SourceText,
    path: &FieldPath,
    calls_per_second: Option<f64>,
    burst: Option<u32>,
    max_in_flight: Option<usize>,
) -> Result<LimitSettings, ConfigError> {
    if let Some(rate) = calls_per_second
        && !(rate.is_finite() && rate > 0.0 && rate <= 1e9)
    {
        return Err(main
            .error(&path.key("calls_per_second"), "must be a positive number of calls per second")
            .with_help("write a rate such as 20 or 0.5 (one call every two seconds); remove the key for no rate limit"));
    }
    if burst == Some(0) {
        return Err(main
            .error(&path.key("burst"), "must be at least 1")
            .with_help(
                "the burst is how many calls may come at once above the rate; write 1 or more",
            ));
    }
    if burst.is_some() && calls_per_second.is_none() {
        return Err(main
            .error(
                &path.key("burst"),
                "`burst` is set without `calls_per_second`",
            )
            .with_help("set calls_per_second too: the burst is the bucket that rate refills"));
    }
    if max_in_flight == Some(0) {
        return Err(main
            .error(&path.key("max_in_flight"), "must be at least 1")
            .with_help("write how many calls one principal may have at the backends at once, or remove the key"));
    }
    Ok(LimitSettings {
        calls_per_second,
        burst,
        max_in_flight,
    })
}

/// Checks `[audit]`; a relative `file` is resolved against `base_dir`.
pub(super) fn audit(
    main: &SourceText,
    base_dir: &Path,
    raw: RawAudit,
    lookup: Lookup<'_>,
) -> Result<AuditConfig, ConfigError> {
    let at = FieldPath::root().key("audit").key("file");
    let file = match raw.file {
        Some(file) => {
            let file = expand_at(main, &at, &file, lookup)?;
            non_empty(main, &at, &file, "the audit file's path")?;
            Some(base_dir.join(file))
        }
        None => None,
    };
    Ok(AuditConfig {
        enabled: raw.enabled.unwrap_or(file.is_some()),
        file,
    })
}

fn rule_name(
    main: &SourceText,
    path: &FieldPath,
    name: Option<String>,
) -> Result<String, ConfigError> {
    let Some(name) = name else {
        return Err(main
            .error(path, "the rule has no `name`")
            .with_help("write name = \"...\": refusals and the audit log name the rule"));
    };
    non_empty(main, &path.key("name"), &name, "the rule's name")?;
    Ok(name)
}

fn audience(
    main: &SourceText,
    path: &FieldPath,
    principals: Option<Vec<String>>,
    roles: Option<Vec<String>>,
) -> Result<Audience, ConfigError> {
    Ok(Audience {
        principals: names(
            main,
            &path.key("principals"),
            principals.unwrap_or_default(),
            "a principal",
        )?,
        roles: names(
            main,
            &path.key("roles"),
            roles.unwrap_or_default(),
            "a role",
        )?,
    })
}

/// Server globs; an entry without a wildcard must name a configured server.
fn server_globs(
    main: &SourceText,
    path: &FieldPath,
    written: Option<Vec<String>>,
    servers: &[ServerConfig],
) -> Result<Vec<String>, ConfigError> {
    let globs = names(main, path, written.unwrap_or_default(), "a server")?;
    let known: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    for (i, glob) in globs.iter().enumerate() {
        if glob.contains(['*', '?']) || known.contains(&glob.as_str()) {
            continue;
        }
        let close = suggest(glob, known.iter().copied())
            .map_or_else(String::new, |close| format!("did you mean `{close}`? "));
        return Err(main
            .error(&path.index(i), format!("no server is named `{glob}`"))
            .with_help(format!(
                "{close}the configured servers are {}; a pattern may use * and ?",
                known.join(", ")
            )));
    }
    Ok(globs)
}

/// A list of names or patterns, none empty.
fn names(
    main: &SourceText,
    path: &FieldPath,
    list: Vec<String>,
    what: &str,
) -> Result<Vec<String>, ConfigError> {
    for (i, name) in list.iter().enumerate() {
        non_empty(main, &path.index(i), name, what)?;
    }
    Ok(list)
}

fn non_empty(
    main: &SourceText,
    path: &FieldPath,
    value: &str,
    what: &str,
) -> Result<(), ConfigError> {
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(main
            .error(
                path,
                format!("{what} is empty or contains control characters"),
            )
            .with_help("write a non-empty value of printable characters"));
    }
    Ok(())
}

fn scopes(
    main: &SourceText,
    path: &FieldPath,
    list: Option<Vec<String>>,
) -> Result<Vec<String>, ConfigError> {
    let list = names(main, path, list.unwrap_or_default(), "a scope")?;
    for (i, scope) in list.iter().enumerate() {
        if scope.contains([' ', '"', '\\']) {
            return Err(main
                .error(
                    &path.index(i),
                    format!("the scope `{scope}` contains a space, quote or backslash"),
                )
                .with_help(
                    "OAuth scopes are single tokens (RFC 6749 section 3.3), such as \"mcp:tools\"",
                ));
        }
    }
    Ok(list)
}

fn required_text(
    main: &SourceText,
    table: &FieldPath,
    field: &str,
    written: Option<String>,
    lookup: Lookup<'_>,
    help: &str,
) -> Result<String, ConfigError> {
    let Some(written) = written else {
        return Err(main
            .error(table, format!("[auth.jwt] has no `{field}`"))
            .with_help(help.to_owned()));
    };
    let value = expand_at(main, &table.key(field), &written, lookup)?;
    non_empty(main, &table.key(field), &value, &format!("`{field}`"))?;
    Ok(value)
}

/// Checks that `url` is absolute https, or http on a loopback host: keys and tokens never
/// travel unauthenticated over a network.
fn check_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "it has no scheme (https://...)".to_owned())?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("it has no host (or carries credentials)".to_owned());
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback_authority(authority) => Ok(()),
        "http" => Err(
            "plain http is allowed only on a loopback host (127.0.0.1, ::1, localhost)".to_owned(),
        ),
        other => Err(format!("the scheme `{other}` is not https")),
    }
}

/// Whether a URL authority (`host[:port]`, `[v6]:port`, or a bare host) names this machine.
pub fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    // A domain may end with the root's dot.
    if host
        .strip_suffix('.')
        .unwrap_or(host)
        .eq_ignore_ascii_case("localhost")
    {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}
