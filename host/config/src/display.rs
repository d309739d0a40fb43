//! A human summary of a loaded configuration for `check-config`, with every secret left out.

use std::fmt::Write as _;

use super::checked::{
    BridgeConfig, CacheConfig, HealthConfig, InvalidationRule, PluginsConfig, PoolConfig,
    ServerConfig, TtlRule,
};
use super::secret::{REDACTED, Secret};
use super::sessions::SessionsConfig;
use mcp_bridge_policy::units::{format_duration, format_size};

impl BridgeConfig {
    /// `[auth]`, `[access]`, `[limits]` and `[audit]`: principals and rule names, never a
    /// key or its digest.
    fn write_identity(&self, out: &mut String) -> std::fmt::Result {
        let auth = &self.auth;
        writeln!(out, "auth:")?;
        match &auth.jwt {
            Some(jwt) => {
                let keys = match &jwt.jwks {
                    super::auth::JwksSource::File(path) => path.display().to_string(),
                    super::auth::JwksSource::Url(url) => url.clone(),
                };
                let algorithms: Vec<&str> = jwt.algorithms.iter().map(|a| a.as_str()).collect();
                writeln!(
                    out,
                    "  jwt: issuer {}, audience {}, keys {keys}, algorithms {}, principal claim {:?}, required scopes {}",
                    jwt.issuer,
                    jwt.audience,
                    algorithms.join(","),
                    jwt.principal_claim,
                    list(&jwt.required_scopes)
                )?;
            }
            None => writeln!(out, "  jwt: off")?,
        }
        let keys: Vec<String> = auth
            .api_keys
            .iter()
            .map(|key| format!("{} [{}]", key.principal, key.roles.join(",")))
            .collect();
        writeln!(out, "  api_keys: {}", list(&keys))?;
        writeln!(out, "  admin_roles: {}", list(&auth.admin_roles))?;
        let rules: Vec<String> = self
            .access
            .rules
            .iter()
            .map(|rule| format!("{} ({})", rule.name, rule.effect.as_str()))
            .collect();
        writeln!(out, "access rules: {}", list(&rules))?;
        let limits: Vec<String> = self
            .limits
            .rules
            .iter()
            .map(|rule| rule.name.clone())
            .collect();
        writeln!(
            out,
            "limits: per principal {:?}, rules {}, count_cache_hits {}",
            self.limits.per_principal,
            list(&limits),
            self.limits.count_cache_hits
        )?;
        let audit = match (&self.audit.enabled, &self.audit.file) {
            (false, _) => "off".to_owned(),
            (true, Some(file)) => file.display().to_string(),
            (true, None) => "the log (target audit)".to_owned(),
        };
        writeln!(out, "audit: {audit}")
    }

    /// Describes the configuration in a few lines per server.
    ///
    /// Tokens print as `<redacted>` and environment variables by name only, and arguments are
    /// shown as written (with `${VAR}` references unexpanded), so the summary is safe to paste
    /// into a bug report.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, so the fmt::Result values below carry no information.
        let _ = self.write_description(&mut out);
        out
    }

    fn write_description(&self, out: &mut String) -> std::fmt::Result {
        let http = &self.http;
        writeln!(out, "configuration: {}", self.source)?;
        writeln!(out, "http:")?;
        writeln!(out, "  listen: {}", http.listen)?;
        writeln!(out, "  allowed_origins: {}", list(&http.allowed_origins))?;
        writeln!(out, "  auth_token: {}", token(http.auth_token.as_ref()))?;
        writeln!(out, "  admin_token: {}", token(http.admin_token.as_ref()))?;
        writeln!(
            out,
            "  max_body_bytes: {}",
            format_size(http.max_body_bytes)
        )?;
        writeln!(out, "  namespace_separator: {:?}", http.namespace_separator)?;
        writeln!(
            out,
            "  shutdown_grace: {}",
            format_duration(http.shutdown_grace)
        )?;
        writeln!(
            out,
            "  session_idle_timeout: {}",
            format_duration(http.session_idle_timeout)
        )?;
        writeln!(out, "  max_batch_messages: {}", http.max_batch_messages)?;
        writeln!(out, "  batch_concurrency: {}", http.batch_concurrency)?;
        writeln!(out, "  max_sessions: {}", http.max_sessions)?;
        writeln!(
            out,
            "  max_sessions_per_principal: {}",
            http.max_sessions_per_principal
        )?;
        writeln!(
            out,
            "  max_inflight_per_session: {}",
            http.max_inflight_per_session
        )?;
        writeln!(
            out,
            "  version_mismatch: {}",
            http.version_mismatch.as_str()
        )?;
        writeln!(
            out,
            "  connections: max_client_connections: {}, header_read_timeout: {}, keep_alive_timeout: {}",
            http.max_client_connections,
            format_duration(http.header_read_timeout),
            format_duration(http.keep_alive_timeout)
        )?;
        let min_rate = if http.body_min_rate == 0 {
            "off".to_owned()
        } else {
            format!("{}/s", format_size(http.body_min_rate))
        };
        writeln!(
            out,
            "  bodies: body_read_timeout: {}, body_min_rate: {min_rate}",
            format_duration(http.body_read_timeout)
        )?;
        self.write_identity(out)?;
        write_sessions(out, &self.sessions)?;
        write_telemetry(out, &self.telemetry)?;
        writeln!(out, "processes: max_total {}", self.processes.max_total)?;
        if self.principal_secrets.names().next().is_some() {
            // Which principals have a value, never the value.
            writeln!(out, "principal_secrets: {:?}", self.principal_secrets)?;
        }
        writeln!(out, "logging:")?;
        writeln!(out, "  format: {}", self.logging.format.as_str())?;
        writeln!(out, "  level: {}", self.logging.level)?;
        writeln!(out, "servers ({}):", self.servers.len())?;
        for server in &self.servers {
            write_server(out, server)?;
        }
        write_cache(out, &self.cache)?;
        write_plugins(out, &self.plugins)?;
        write_shadow(out, &self.shadow)
    }
}

/// Writes the shadow's candidates (never a plugin's config) and its bounds.
fn write_shadow(out: &mut String, shadow: &super::ShadowConfig) -> std::fmt::Result {
    if !shadow.is_enabled() {
        return writeln!(out, "shadow: off (no [[lab.shadow.candidate]])");
    }
    let truth = if shadow.samples_truth() {
        format!(
            "{}/s, at most {} at once, timeout {}",
            shadow.truth_samples_per_second,
            shadow.truth_max_in_flight,
            format_duration(shadow.truth_timeout)
        )
    } else {
        "off".to_owned()
    };
    writeln!(
        out,
        "shadow: {} candidates, queue {}, max_keys {}, truth sampling {truth}",
        shadow.candidates.len(),
        shadow.queue,
        shadow.max_keys
    )?;
    for candidate in &shadow.candidates {
        let what = match &candidate.policy {
            super::CandidatePolicy::Plugin { file, .. } => format!("plugin {file}"),
            super::CandidatePolicy::Builtin { .. } => "the built-in policy".to_owned(),
        };
        let rules = if candidate.config_rules {
            "with"
        } else {
            "without"
        };
        writeln!(
            out,
            "  candidate {}: {what}, {rules} the config's TTL rows and invalidation rules",
            candidate.name
        )?;
    }
    Ok(())
}

/// Writes how many session keys there are (never a key) and how long a token lasts.
fn write_sessions(out: &mut String, sessions: &SessionsConfig) -> std::fmt::Result {
    let keys = match sessions.keys.len() {
        0 => "none (a random key made at start: sessions end with a restart and stay on this replica)".to_owned(),
        1 => "1 (signs and verifies)".to_owned(),
        n => format!("{n} (the first signs, all verify)"),
    };
    writeln!(
        out,
        "sessions: keys {keys}, max_age {}",
        format_duration(sessions.max_age)
    )
}

/// Writes where spans go and how they are batched; header names only, never a value.
fn write_telemetry(
    out: &mut String,
    telemetry: &super::telemetry::TelemetryConfig,
) -> std::fmt::Result {
    let Some(url) = &telemetry.traces_url else {
        return writeln!(out, "telemetry: off (no otlp_endpoint)");
    };
    let headers: Vec<String> = telemetry
        .headers
        .iter()
        .map(|(name, _)| format!("{name}: {REDACTED}"))
        .collect();
    writeln!(
        out,
        "telemetry: OTLP/HTTP protobuf to {url}, service_name {:?}, sample_ratio {}, max_queue {}, export_timeout {}, export_interval {}, headers {} (restart-only)",
        telemetry.service_name,
        telemetry.sample_ratio,
        telemetry.max_queue,
        format_duration(telemetry.export_timeout),
        format_duration(telemetry.export_interval),
        list(&headers)
    )
}

/// Writes where plugins come from, their limits, and one line per binding. Plugin
/// configs are not printed: they may hold anything.
fn write_plugins(out: &mut String, plugins: &PluginsConfig) -> std::fmt::Result {
    let Some(dir) = &plugins.dir else {
        return writeln!(out, "plugins: off (no [plugins] dir)");
    };
    writeln!(out, "plugins: {}", dir.display())?;
    writeln!(
        out,
        "  decision_timeout: {}, max_memory: {}, quarantine: {} faults in {}, auto_bind: {}",
        format_duration(plugins.decision_timeout),
        format_size(plugins.max_memory),
        plugins.quarantine_after,
        format_duration(plugins.quarantine_window),
        plugins.auto_bind
    )?;
    let cache_dir = plugins
        .compiled_cache_dir
        .as_ref()
        .map_or_else(|| "off".to_owned(), |dir| dir.display().to_string());
    writeln!(out, "  compiled_cache: {cache_dir}")?;
    for binding in &plugins.bindings {
        let servers = if binding.servers.is_empty() {
            "*".to_owned()
        } else {
            binding.servers.join(", ")
        };
        writeln!(
            out,
            "  policy {}: {} on {servers}",
            binding.name, binding.file
        )?;
    }
    Ok(())
}

fn write_server(out: &mut String, server: &ServerConfig) -> std::fmt::Result {
    writeln!(out, "  {}:", server.name)?;
    writeln!(out, "    command: {}", server.command)?;
    if !server.args_display.is_empty() {
        writeln!(out, "    args: {}", shell_words(&server.args_display))?;
    }
    if !server.env.is_empty() {
        let keys: Vec<&str> = server.env.iter().map(|(key, _)| key.as_str()).collect();
        writeln!(out, "    env: {} (values hidden)", keys.join(", "))?;
    }
    if !server.env_templates.is_empty() {
        let keys: Vec<&str> = server
            .env_templates
            .iter()
            .map(|(key, _)| key.as_str())
            .collect();
        writeln!(
            out,
            "    env per principal: {} (values hidden)",
            keys.join(", ")
        )?;
    }
    if let Some(cwd) = &server.cwd {
        writeln!(out, "    cwd: {}", cwd.display())?;
    }
    writeln!(
        out,
        "    isolation: {}, max_total_processes: {}, identity_meta: {}",
        server.isolation, server.max_total_processes, server.identity_meta
    )?;
    writeln!(
        out,
        "    required: {}, exclusive: {}, cache: {}, max_line_bytes: {}",
        server.required,
        server.exclusive,
        server.cache_enabled,
        format_size(server.max_line_bytes)
    )?;
    write_pool(out, &server.pool)?;
    write_health(out, &server.health)
}

fn write_pool(out: &mut String, pool: &PoolConfig) -> std::fmt::Result {
    let d = format_duration;
    writeln!(
        out,
        "    pool: {}..{} processes, {} in flight each, queue {} (acquire timeout {})",
        pool.min_connections,
        pool.max_connections,
        pool.max_inflight,
        pool.max_queue,
        d(pool.acquire_timeout)
    )?;
    let lifetime = pool.max_lifetime.map_or_else(
        || "never for age".to_owned(),
        |age| format!("after {}", d(age)),
    );
    let memory = pool.max_process_memory.map_or_else(
        || "never for memory".to_owned(),
        |bytes| {
            let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
            format!("past {} resident", format_size(bytes))
        },
    );
    writeln!(
        out,
        "    timeouts: connection {}, request {}, idle {}",
        d(pool.connection_timeout),
        d(pool.request_timeout),
        d(pool.idle_timeout),
    )?;
    writeln!(out, "    recycle: {lifetime}, {memory}")?;
    let checks = if pool.enable_health_checks {
        format!("every {}", d(pool.health_check_interval))
    } else {
        "off".to_owned()
    };
    let reconnect = if pool.enable_auto_reconnect {
        format!(
            "{} attempts, backoff {}..{}, then every {}",
            pool.max_reconnect_attempts,
            d(pool.reconnect_backoff_initial),
            d(pool.reconnect_backoff_max),
            d(pool.unhealthy_retry_interval)
        )
    } else {
        "off".to_owned()
    };
    writeln!(out, "    health checks: {checks}; reconnect: {reconnect}")
}

fn write_health(out: &mut String, health: &HealthConfig) -> std::fmt::Result {
    writeln!(
        out,
        "    health: check every {} (timeout {}), unhealthy after {} failures, probed after {} timeouts in a row or {} silent with calls pending, degraded above {} ms or below {}% success",
        format_duration(health.check_interval),
        format_duration(health.check_timeout),
        health.unhealthy_threshold,
        health.timeout_threshold,
        health
            .stall_timeout
            .map_or_else(|| "request_timeout".to_owned(), format_duration),
        health.degraded_latency_ms,
        // Rounding to a tenth of a percent keeps 0.29 from printing as 28.999999999999996.
        (health.degraded_success_rate * 1000.0).round() / 10.0
    )
}

/// Writes the cache settings in a few lines, then one line per TTL-table row (in the order they
/// are tried) and per invalidation rule.
fn write_cache(out: &mut String, cache: &CacheConfig) -> std::fmt::Result {
    let d = format_duration;
    let state = if cache.enabled { "on" } else { "off" };
    // The bytes limit was read as a usize, so it converts back; the fallback is never used.
    let max_bytes = usize::try_from(cache.max_bytes)
        .map_or_else(|_| format!("{} B", cache.max_bytes), format_size);
    let backend = match cache.backend.disk_path() {
        Some(path) => format!("disk backend ({})", path.display()),
        None => format!("{} backend", cache.backend.as_str()),
    };
    writeln!(
        out,
        "cache: {state}, {backend}, {} eviction, at most {} entries and {max_bytes}",
        cache.eviction.as_str(),
        cache.max_entries,
    )?;
    writeln!(
        out,
        "  ttl: default {}, lists {}; coalescing: {} waiters per fill; hit-for-miss: {}",
        ttl(cache.default_ttl),
        ttl(Some(cache.list_ttl)),
        cache.max_coalesced_waiters,
        d(cache.hit_for_miss_ttl)
    )?;
    writeln!(
        out,
        "  stale: while revalidating {}, on backend errors {}",
        d(cache.stale_while_revalidate),
        d(cache.stale_if_error)
    )?;
    if !cache.ttl_table.is_empty() {
        let rows: Vec<String> = cache.ttl_table.rules().iter().map(ttl_row).collect();
        writeln!(out, "  ttl table: {}", rows.join(", "))?;
    }
    for rule in &cache.invalidation_rules {
        writeln!(out, "  invalidate: {}", invalidation(rule))?;
    }
    if let Some(shared) = &cache.shared {
        writeln!(
            out,
            "  shared tier: {} on {} (prefix {:?}), command timeout {}, values up to {}{}",
            shared.consistency.as_str(),
            redis_endpoint(shared.url.expose()),
            shared.key_prefix,
            d(shared.command_timeout),
            usize::try_from(shared.max_value_bytes).map_or_else(|_| "?".to_owned(), format_size),
            if shared.required_for_readiness {
                ", required for readiness"
            } else {
                ""
            },
        )?;
    }
    Ok(())
}

/// A Redis URL without its credentials: the scheme and where it points.
fn redis_endpoint(url: &str) -> String {
    match super::shared::redis_endpoint(url) {
        Some((scheme, host)) => format!("{scheme}://{host}"),
        None => "<not a URL>".to_owned(),
    }
}

/// A TTL as the summary shows it, saying what `none` and zero mean.
fn ttl(ttl: Option<std::time::Duration>) -> String {
    match ttl {
        None => "none (until evicted or invalidated)".to_owned(),
        Some(ttl) if ttl.is_zero() => "0 (not cached)".to_owned(),
        Some(ttl) => format_duration(ttl),
    }
}

/// One TTL-table row as `server.tool TTL`, with `*` for any server or tool.
fn ttl_row(rule: &TtlRule) -> String {
    let ttl = if rule.ttl.is_zero() {
        "never".to_owned()
    } else {
        format_duration(rule.ttl)
    };
    format!(
        "{}.{} {ttl}",
        rule.server.as_deref().unwrap_or("*"),
        rule.tool
    )
}

/// One invalidation rule as `server.on -> tools ...; tags ...`.
fn invalidation(rule: &InvalidationRule) -> String {
    let mut dropped = Vec::new();
    if !rule.tools.is_empty() {
        dropped.push(format!("tools {}", rule.tools.join(", ")));
    }
    if !rule.tags.is_empty() {
        dropped.push(format!("tags {}", rule.tags.join(", ")));
    }
    let dropped = if dropped.is_empty() {
        "nothing".to_owned()
    } else {
        dropped.join("; ")
    };
    format!(
        "{}.{} -> {dropped}",
        rule.server.as_deref().unwrap_or("*"),
        rule.on
    )
}

fn token(secret: Option<&Secret>) -> &'static str {
    match secret {
        Some(_) => REDACTED,
        None => "none",
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

/// Joins arguments with spaces, quoting the ones a shell would split or misread, so the line
/// can be read (and mostly pasted) as a command line.
fn shell_words(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%{}$".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect();
    quoted.join(" ")
}
