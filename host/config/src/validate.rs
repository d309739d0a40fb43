//! Turns raw settings into checked ones: applies defaults, expands `${VAR}`, and rejects out-of-range values at the place they were written.

use std::net::SocketAddr;
use std::time::Duration;

use super::checked::*;
use super::error::{ConfigError, suggest};
use super::expand::{Lookup, expand};
use super::load::ServerEntry;
use super::raw::{
    OrderedMap, RawCache, RawConfig, RawHealth, RawHttp, RawInvalidation, RawLogging, RawPool,
};
use super::secret::{RawSecret, Secret};
use super::source::{FieldPath, Format, SourceText};
use super::validate_isolation::CheckedEnvValue;
use mcp_bridge_policy::units::{ConfigDuration, ConfigSize, format_duration};

/// Validates a parsed file and the servers gathered from it and its includes.
pub(crate) fn build(
    main: &SourceText,
    base_dir: &std::path::Path,
    raw: RawConfig,
    entries: Vec<ServerEntry>,
    lookup: Lookup<'_>,
) -> Result<BridgeConfig, ConfigError> {
    let http = http(main, raw.http.unwrap_or_default(), lookup)?;
    let logging = logging(main, raw.logging.unwrap_or_default())?;
    if entries.is_empty() {
        let key = match main.format {
            Format::Toml => "servers",
            Format::Json => "mcpServers",
        };
        return Err(main
            .error(&FieldPath::root().key(key), "no servers are configured")
            .with_help("add a [servers.NAME] table with a `command`, or include = [\"FILE\"] an mcpServers JSON file; a server with \"disabled\": true does not count"));
    }
    let (principal_secrets, secret_sources) = super::validate_isolation::principal_secrets(
        main,
        base_dir,
        raw.principal_secrets.unwrap_or_default(),
        lookup,
    )?;
    let processes = super::validate_isolation::processes(main, raw.processes.unwrap_or_default())?;
    let globals = Globals {
        main,
        principal_secrets: &principal_secrets,
        secret_sources: &secret_sources,
        defaults: raw.defaults.unwrap_or_default(),
        health: raw.health.unwrap_or_default(),
        separator: &http.namespace_separator,
        lookup,
    };
    let mut servers = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if let Some(first) = entries[..i].iter().find(|e| e.name == entry.name) {
            let place = match first.source.locate(&first.path) {
                Some(p) => format!("{}:{}", first.source.name, p.line),
                None => first.source.name.clone(),
            };
            return Err(entry
                .source
                .error(
                    &entry.path,
                    format!("server name `{}` is used twice", entry.name),
                )
                .with_help(format!(
                    "the first `{}` is declared at {place}; rename one of them",
                    entry.name
                )));
        }
        servers.push(globals.server(entry)?);
    }
    // The cache is checked last because its TTL table and rules name servers, which may come
    // from included files.
    let mut raw_cache = raw.cache.unwrap_or_default();
    let shared = raw_cache.shared.take();
    let mut cache = cache(main, base_dir, raw_cache, &servers, lookup)?;
    cache.shared = match shared {
        Some(shared) => Some(super::validate_shared::shared(
            main, base_dir, shared, lookup,
        )?),
        None => None,
    };
    if cache.shared.is_some() && cache.backend.disk_path().is_some() {
        return Err(main
            .error(
                &FieldPath::root().key("cache").key("backend"),
                "backend = \"disk\" cannot be combined with [cache.shared]",
            )
            .with_help("with a shared tier, Redis keeps what outlives a restart: write backend = \"memory\"; or remove [cache.shared] to run one node with a disk cache"));
    }
    let plugins = super::plugins::plugins(
        main,
        base_dir,
        raw.plugins.unwrap_or_default(),
        &servers,
        lookup,
    )?;
    let auth = super::validate_auth::auth(main, base_dir, raw.auth.unwrap_or_default(), lookup)?;
    let access = super::validate_auth::access(main, raw.access.unwrap_or_default(), &servers)?;
    let limits = super::validate_auth::limits(main, raw.limits.unwrap_or_default(), &servers)?;
    let audit = super::validate_auth::audit(main, base_dir, raw.audit.unwrap_or_default(), lookup)?;
    let sessions = super::sessions::sessions(main, raw.sessions.unwrap_or_default(), lookup)?;
    let telemetry = super::telemetry::telemetry(main, raw.telemetry.unwrap_or_default(), lookup)?;
    let shadow = super::lab::lab(
        main,
        base_dir,
        raw.lab.unwrap_or_default(),
        &cache,
        &servers,
        lookup,
    )?;
    if shadow.dir.is_some() && shadow.dir == plugins.dir {
        return Err(main
            .error(
                &FieldPath::root().key("lab").key("shadow").key("dir"),
                "[lab.shadow] dir is [plugins] dir",
            )
            .with_help("give the candidates a directory of their own: production's plugin watcher loads every file in [plugins] dir, and would bind a candidate"));
    }
    Ok(BridgeConfig {
        source: main.name.clone(),
        http,
        logging,
        servers,
        cache,
        plugins,
        auth,
        access,
        limits,
        audit,
        sessions,
        telemetry,
        processes,
        principal_secrets: std::sync::Arc::new(principal_secrets),
        shadow,
    })
}

/// Expands `${VAR}` references in a value, reporting a failure at the value's field.
pub(super) fn expand_at(
    source: &SourceText,
    path: &FieldPath,
    text: &str,
    lookup: Lookup<'_>,
) -> Result<String, ConfigError> {
    expand(text, lookup).map_err(|e| source.error(path, e.to_string()).with_help(e.help()))
}

/// Rejects NUL characters, which no process argument, environment value or path can carry.
fn no_nul(source: &SourceText, path: &FieldPath, value: &str) -> Result<(), ConfigError> {
    if value.contains('\0') {
        return Err(source
            .error(
                path,
                "the value contains a NUL character, which cannot be passed to a process",
            )
            .with_help("remove the NUL character (written \\u0000) from the value"));
    }
    Ok(())
}

/// The error for a duration that must not be zero, suggesting the default as a sensible value.
fn zero_duration(source: &SourceText, path: &FieldPath, default: Duration) -> ConfigError {
    source
        .error(path, "must be longer than zero")
        .with_help(format!(
            "write a positive duration such as \"{}\"",
            format_duration(default)
        ))
}

fn http(main: &SourceText, raw: RawHttp, lookup: Lookup<'_>) -> Result<HttpConfig, ConfigError> {
    let at = |field: &str| FieldPath::root().key("http").key(field);
    let defaults = HttpConfig::default();
    let raw_connections = RawConnections {
        header_read_timeout: raw.header_read_timeout,
        keep_alive_timeout: raw.keep_alive_timeout,
        body_read_timeout: raw.body_read_timeout,
        body_min_rate: raw.body_min_rate,
        max_client_connections: raw.max_client_connections,
    };
    let connections = http_connections(main, &raw_connections, &defaults)?;

    let listen = match raw.listen {
        None => defaults.listen,
        Some(text) => text.trim().parse::<SocketAddr>().map_err(|_| {
            main.error(&at("listen"), format!("`{text}` is not an IP address and port"))
                .with_help("write an IP address and a port, such as \"127.0.0.1:8080\" or \"[::1]:8080\"; host names such as localhost are not resolved")
        })?,
    };

    let allowed_origins = match raw.allowed_origins {
        None => defaults.allowed_origins,
        Some(origins) => {
            for (i, origin) in origins.iter().enumerate() {
                check_origin(origin).map_err(|message| {
                    main.error(&at("allowed_origins").index(i), message)
                        .with_help("write `*`, an origin such as \"https://app.example.com\" (scheme, host and optional port, no path), or \"http://localhost:*\" for any port")
                })?;
            }
            origins
        }
    };

    let token = |field: &str, raw: Option<RawSecret>| {
        raw.map(|secret| check_token(main, &at(field), &secret.0, lookup))
            .transpose()
    };
    let auth_token = token("auth_token", raw.auth_token)?;
    let admin_token = token("admin_token", raw.admin_token)?;

    let max_body_bytes = raw.max_body_bytes.map_or(defaults.max_body_bytes, |s| s.0);
    if max_body_bytes == 0 {
        return Err(main
            .error(&at("max_body_bytes"), "must be at least one byte")
            .with_help("write a size such as \"4MiB\""));
    }

    let namespace_separator = raw
        .namespace_separator
        .unwrap_or(defaults.namespace_separator);
    let separator_ok = !namespace_separator.is_empty()
        && namespace_separator
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !separator_ok {
        return Err(main
            .error(&at("namespace_separator"), format!("`{namespace_separator}` cannot separate server and tool names"))
            .with_help("use one or more of letters, digits, `_`, `.` and `-`, which every MCP client accepts in tool names, such as \"__\""));
    }

    let shutdown_grace = raw.shutdown_grace.map_or(defaults.shutdown_grace, |d| d.0);
    let session_idle_timeout = raw
        .session_idle_timeout
        .map_or(defaults.session_idle_timeout, |d| d.0);
    if session_idle_timeout.is_zero() {
        return Err(zero_duration(
            main,
            &at("session_idle_timeout"),
            DEFAULT_SESSION_IDLE_TIMEOUT,
        ));
    }

    // Each of these bounds what one client can make the bridge hold or start; zero would
    // refuse every request, which is never what someone writing it meant.
    let positive = |field: &str, value: Option<usize>, default: usize| {
        let value = value.unwrap_or(default);
        if value == 0 {
            return Err(main
                .error(&at(field), "must be at least 1")
                .with_help(format!(
                    "write a whole number of 1 or more; the default is {default}"
                )));
        }
        Ok(value)
    };
    let max_batch_messages = positive(
        "max_batch_messages",
        raw.max_batch_messages,
        DEFAULT_MAX_BATCH_MESSAGES,
    )?;
    let batch_concurrency = positive(
        "batch_concurrency",
        raw.batch_concurrency,
        DEFAULT_BATCH_CONCURRENCY,
    )?;
    let max_sessions = positive("max_sessions", raw.max_sessions, DEFAULT_MAX_SESSIONS)?;
    let max_sessions_per_principal = positive(
        "max_sessions_per_principal",
        raw.max_sessions_per_principal,
        DEFAULT_MAX_SESSIONS_PER_PRINCIPAL,
    )?;
    let max_inflight_per_session = positive(
        "max_inflight_per_session",
        raw.max_inflight_per_session,
        DEFAULT_MAX_INFLIGHT_PER_SESSION,
    )?;
    let version_mismatch = match raw.version_mismatch.as_deref() {
        None => defaults.version_mismatch,
        Some(text) => {
            let found = VersionMismatch::ALL
                .into_iter()
                .find(|mode| text.trim().eq_ignore_ascii_case(mode.as_str()));
            let Some(mode) = found else {
                let close = suggest(text, VersionMismatch::ALL.iter().map(|mode| mode.as_str()))
                    .map_or_else(String::new, |name| format!("did you mean \"{name}\"? "));
                return Err(main
                    .error(&at("version_mismatch"), format!("unknown version_mismatch mode `{text}`"))
                    .with_help(format!("{close}write \"strict\" (refuse requests whose protocol-version signals disagree, saying what to send) or \"lenient\" (serve the mixes real clients send, and count them)")));
            };
            mode
        }
    };

    Ok(HttpConfig {
        listen,
        allowed_origins,
        auth_token,
        admin_token,
        max_body_bytes,
        namespace_separator,
        shutdown_grace,
        session_idle_timeout,
        max_batch_messages,
        batch_concurrency,
        max_sessions,
        max_sessions_per_principal,
        max_inflight_per_session,
        version_mismatch,
        header_read_timeout: connections.header_read_timeout,
        keep_alive_timeout: connections.keep_alive_timeout,
        body_read_timeout: connections.body_read_timeout,
        body_min_rate: connections.body_min_rate,
        max_client_connections: connections.max_client_connections,
    })
}

/// The `[http]` settings that bound client connections, as written.
struct RawConnections {
    header_read_timeout: Option<ConfigDuration>,
    keep_alive_timeout: Option<ConfigDuration>,
    body_read_timeout: Option<ConfigDuration>,
    body_min_rate: Option<ConfigSize>,
    max_client_connections: Option<usize>,
}

/// The connection bounds, checked.
struct Connections {
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
    body_read_timeout: Duration,
    body_min_rate: usize,
    max_client_connections: usize,
}

fn http_connections(
    main: &SourceText,
    raw: &RawConnections,
    defaults: &HttpConfig,
) -> Result<Connections, ConfigError> {
    let at = |field: &str| FieldPath::root().key("http").key(field);
    let duration = |field: &str, value: Option<ConfigDuration>, default: Duration| {
        let value = value.map_or(default, |d| d.0);
        if value.is_zero() {
            return Err(zero_duration(main, &at(field), default));
        }
        Ok(value)
    };
    let header_read_timeout = duration(
        "header_read_timeout",
        raw.header_read_timeout,
        defaults.header_read_timeout,
    )?;
    let body_read_timeout = duration(
        "body_read_timeout",
        raw.body_read_timeout,
        defaults.body_read_timeout,
    )?;
    let keep_alive_timeout = duration(
        "keep_alive_timeout",
        raw.keep_alive_timeout,
        defaults.keep_alive_timeout,
    )?;
    // `Keep-Alive: timeout=N` counts whole seconds: a fraction could not be advertised truly.
    if keep_alive_timeout.subsec_nanos() != 0 {
        return Err(main
            .error(
                &at("keep_alive_timeout"),
                format!(
                    "`{}` is not a whole number of seconds",
                    format_duration(keep_alive_timeout)
                ),
            )
            .with_help("write whole seconds such as \"5m\" or \"90s\": clients are told the timeout in seconds (Keep-Alive: timeout=N)"));
    }
    let max_client_connections = raw
        .max_client_connections
        .unwrap_or(defaults.max_client_connections);
    if !(1..=MAX_CLIENT_CONNECTIONS_LIMIT).contains(&max_client_connections) {
        return Err(main
            .error(
                &at("max_client_connections"),
                format!("must be at least 1 (with 0 no client could connect) and at most {MAX_CLIENT_CONNECTIONS_LIMIT}"),
            )
            .with_help(format!(
                "write a count such as {DEFAULT_MAX_CLIENT_CONNECTIONS}"
            )));
    }
    Ok(Connections {
        header_read_timeout,
        keep_alive_timeout,
        body_read_timeout,
        body_min_rate: raw.body_min_rate.map_or(defaults.body_min_rate, |s| s.0),
        max_client_connections,
    })
}

/// Checks one `Origin` allow-list entry; the message quotes the entry, which is not secret.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    if origin.is_empty() || origin.contains(char::is_whitespace) {
        return Err(format!(
            "`{origin}` is not an origin: it is empty or contains spaces"
        ));
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!(
            "`{origin}` is not an origin: it has no scheme such as `http://`"
        ));
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(format!(
            "`{origin}` is not an origin: its scheme is not valid"
        ));
    }
    if rest.is_empty() || rest.starts_with(':') {
        return Err(format!("`{origin}` is not an origin: it has no host"));
    }
    if rest.contains('/') {
        return Err(format!(
            "`{origin}` is not an origin: browsers send no path or trailing `/` in the Origin header"
        ));
    }
    Ok(())
}

/// Expands and checks a bearer token. Its messages never include the value.
fn check_token(
    main: &SourceText,
    path: &FieldPath,
    written: &str,
    lookup: Lookup<'_>,
) -> Result<Secret, ConfigError> {
    let token = expand_at(main, path, written, lookup)?;
    if token.is_empty() {
        return Err(main
            .error(path, "the token is empty")
            .with_help("set a token, or remove the key to turn this check off"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(main
            .error(path, "the token contains spaces or control characters, which cannot be sent in an Authorization header")
            .with_help("use a token made of printable characters without spaces, such as the output of `openssl rand -hex 32`"));
    }
    Ok(Secret::new(token))
}

fn logging(main: &SourceText, raw: RawLogging) -> Result<LoggingConfig, ConfigError> {
    let at = |field: &str| FieldPath::root().key("logging").key(field);
    let format = match raw
        .format
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("human") => LogFormat::Human,
        Some("json") => LogFormat::Json,
        Some(_) => {
            let written = raw.format.unwrap_or_default();
            return Err(main
                .error(&at("format"), format!("unknown log format `{written}`"))
                .with_help(
                    "write \"human\" for readable lines or \"json\" for one JSON object per line",
                ));
        }
    };
    let level = raw.level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    let filter_help =
        "write a tracing filter such as \"info\", \"debug\" or \"mcp_bridge=debug,info\"";
    if level.trim().is_empty() {
        return Err(main
            .error(&at("level"), "the log level is empty")
            .with_help(filter_help));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
        return Err(main
            .error(&at("level"), format!("invalid log filter `{level}`: {e}"))
            .with_help(filter_help));
    }
    Ok(LoggingConfig { format, level })
}

/// Settings shared by every server, and what is needed to report errors against them.
struct Globals<'a> {
    main: &'a SourceText,
    principal_secrets: &'a super::isolation::PrincipalSecrets,
    secret_sources: &'a super::isolation::SecretSources,
    defaults: RawPool,
    health: RawHealth,
    separator: &'a str,
    lookup: Lookup<'a>,
}

/// The place a merged setting was written, so an error can point there.
struct Site<'a> {
    source: &'a SourceText,
    path: FieldPath,
}

impl Site<'_> {
    fn error(&self, message: impl Into<String>) -> ConfigError {
        self.source.error(&self.path, message)
    }
}

impl<'a> Globals<'a> {
    /// A setting comes from the server's own table when set there, else from the global table
    /// when set there; a built-in default is reported at the server's table, where an override
    /// would go.
    fn site(
        &self,
        entry: &'a ServerEntry,
        own: (bool, FieldPath),
        global: (bool, FieldPath),
    ) -> Site<'a> {
        if !own.0 && global.0 {
            Site {
                source: self.main,
                path: global.1,
            }
        } else {
            Site {
                source: &entry.source,
                path: own.1,
            }
        }
    }

    fn server(&self, entry: &'a ServerEntry) -> Result<ServerConfig, ConfigError> {
        let source: &SourceText = &entry.source;
        let raw = &entry.raw;
        let name = entry.name.as_str();
        let at = |field: &str| entry.path.key(field);
        let lookup = self.lookup;
        self.check_name(entry)?;

        let written = raw.command.as_deref().ok_or_else(|| {
            source
                .error(&at("command"), format!("server `{name}` has no `command`"))
                .with_help("add a `command`: the program that starts the server, such as \"npx\" or \"uvx\"")
        })?;
        let command = expand_at(source, &at("command"), written, lookup)?;
        if command.trim().is_empty() {
            return Err(source
                .error(&at("command"), "the command is empty")
                .with_help("write the program that starts the server, such as \"npx\"; put its arguments in `args`"));
        }
        no_nul(source, &at("command"), &command)?;

        let args_display = raw.args.clone().unwrap_or_default();
        let mut args = Vec::with_capacity(args_display.len());
        for (i, arg) in args_display.iter().enumerate() {
            let path = at("args").index(i);
            let value = expand_at(source, &path, arg, lookup)?;
            no_nul(source, &path, &value)?;
            args.push(value);
        }

        let mut env = Vec::new();
        let mut env_templates = Vec::new();
        for (key, value) in raw.env.iter().flat_map(|map| &map.0) {
            let path = at("env").key(key);
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(source
                    .error(
                        &path,
                        format!("`{key}` is not a valid environment variable name"),
                    )
                    .with_help("a variable name cannot be empty or contain `=`"));
            }
            match super::validate_isolation::env_value(
                source,
                &path,
                &value.0,
                lookup,
                self.principal_secrets,
            )? {
                CheckedEnvValue::Plain(value) => {
                    no_nul(source, &path, &value)?;
                    env.push((key.clone(), Secret::new(value)));
                }
                CheckedEnvValue::Template(template) => env_templates.push((key.clone(), template)),
            }
        }

        let cwd = match raw.cwd.as_deref() {
            None => None,
            Some(written) => {
                let value = expand_at(source, &at("cwd"), written, lookup)?;
                if value.trim().is_empty() {
                    return Err(source
                        .error(&at("cwd"), "the working directory is empty")
                        .with_help("write a directory path, or remove `cwd` to start the server in the bridge's own directory"));
                }
                no_nul(source, &at("cwd"), &value)?;
                Some(entry.base_dir.join(value))
            }
        };

        let exclusive = raw.exclusive.unwrap_or(DEFAULT_EXCLUSIVE);
        let max_line_bytes = raw.max_line_bytes.map_or(DEFAULT_MAX_LINE_BYTES, |s| s.0);
        if max_line_bytes == 0 {
            return Err(source
                .error(&at("max_line_bytes"), "must be at least one byte")
                .with_help("write a size such as \"16MiB\""));
        }
        let health = self.health(entry)?;
        let mut pool = self.pool(entry, exclusive, &health)?;
        let isolation = super::validate_isolation::server_isolation(
            entry,
            &mut pool,
            !env_templates.is_empty(),
        )?;
        Ok(ServerConfig {
            name: entry.name.clone(),
            command,
            args,
            args_display,
            env,
            cwd,
            required: raw.required.unwrap_or(DEFAULT_REQUIRED),
            exclusive,
            max_line_bytes,
            cache_enabled: raw.cache.unwrap_or(DEFAULT_SERVER_CACHE),
            pool,
            health,
            env_templates,
            env_removed: self.secret_sources.0.clone(),
            isolation: isolation.isolation,
            max_total_processes: isolation.max_total_processes,
            identity_meta: isolation.identity_meta,
        })
    }

    fn check_name(&self, entry: &ServerEntry) -> Result<(), ConfigError> {
        let name = &entry.name;
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(entry
                .source
                .error(&entry.path, format!("server name `{name}` may only contain letters, digits, `_` and `-`"))
                .with_help("rename the server: its name prefixes its tools on the aggregated endpoint and appears in the URL /mcp/NAME"));
        }
        if name.contains(self.separator) {
            return Err(entry
                .source
                .error(&entry.path, format!("server name `{name}` contains the namespace separator `{}`", self.separator))
                .with_help("rename the server, or change http.namespace_separator, so that namespaced tool names can be split back into server and tool"));
        }
        Ok(())
    }

    fn health(&self, entry: &'a ServerEntry) -> Result<HealthConfig, ConfigError> {
        let own = entry.raw.health.unwrap_or_default();
        let global = self.health;
        let merged = own.or(global);
        macro_rules! site {
            ($field:ident) => {
                self.site(
                    entry,
                    (
                        own.$field.is_some(),
                        entry.path.key("health").key(stringify!($field)),
                    ),
                    (
                        global.$field.is_some(),
                        FieldPath::root().key("health").key(stringify!($field)),
                    ),
                )
            };
        }
        let defaults = HealthConfig::default();
        let check_interval = merged
            .check_interval
            .map_or(defaults.check_interval, |d| d.0);
        let check_timeout = merged.check_timeout.map_or(defaults.check_timeout, |d| d.0);
        let unhealthy_threshold = merged
            .unhealthy_threshold
            .unwrap_or(defaults.unhealthy_threshold);
        let degraded_success_rate = merged
            .degraded_success_rate
            .unwrap_or(defaults.degraded_success_rate);
        let timeout_threshold = merged
            .timeout_threshold
            .unwrap_or(defaults.timeout_threshold);
        let stall_timeout = merged.stall_timeout.map(|d| d.0);
        if stall_timeout.is_some_and(|d| d.is_zero()) {
            return Err(site!(stall_timeout)
                .error("must be longer than zero")
                .with_help(
                    "write how long a process may stay silent while calls wait, such as \"30s\"; \
                     leave it out to use the server's request_timeout",
                ));
        }
        if timeout_threshold == 0 {
            return Err(site!(timeout_threshold)
                .error("must be at least 1")
                .with_help(
                    "write after how many consecutive request timeouts a process is probed and replaced, such as 3",
                ));
        }
        for (zero, site, default) in [
            (
                check_interval.is_zero(),
                site!(check_interval),
                DEFAULT_CHECK_INTERVAL,
            ),
            (
                check_timeout.is_zero(),
                site!(check_timeout),
                DEFAULT_CHECK_TIMEOUT,
            ),
        ] {
            if zero {
                return Err(zero_duration(site.source, &site.path, default));
            }
        }
        if unhealthy_threshold == 0 {
            return Err(site!(unhealthy_threshold)
                .error("must be at least 1")
                .with_help(
                    "write how many consecutive failed checks mark a process unhealthy, such as 3",
                ));
        }
        if !(0.0..=1.0).contains(&degraded_success_rate) {
            return Err(site!(degraded_success_rate)
                .error(format!("{degraded_success_rate} is not between 0 and 1"))
                .with_help("write a fraction of successful calls, such as 0.95 for 95%"));
        }
        Ok(HealthConfig {
            check_interval,
            check_timeout,
            unhealthy_threshold,
            timeout_threshold,
            stall_timeout,
            degraded_latency_ms: merged
                .degraded_latency_ms
                .unwrap_or(defaults.degraded_latency_ms),
            degraded_success_rate,
        })
    }

    fn pool(
        &self,
        entry: &'a ServerEntry,
        exclusive: bool,
        health: &HealthConfig,
    ) -> Result<PoolConfig, ConfigError> {
        let own = RawPool::from(&entry.raw);
        let global = self.defaults;
        macro_rules! site {
            ($field:ident) => {
                self.site(
                    entry,
                    (own.$field.is_some(), entry.path.key(stringify!($field))),
                    (
                        global.$field.is_some(),
                        FieldPath::root().key("defaults").key(stringify!($field)),
                    ),
                )
            };
        }
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                own.$field.or(global.$field).map_or($default, |v| v.into())
            };
        }
        let min_connections: usize = pick!(min_connections, DEFAULT_MIN_CONNECTIONS);
        let max_connections: usize = pick!(max_connections, DEFAULT_MAX_CONNECTIONS);
        let max_inflight: usize = pick!(max_inflight, DEFAULT_MAX_INFLIGHT);
        let pool = PoolConfig {
            min_connections,
            max_connections,
            // An exclusive server handles one client call at a time per process, which is what
            // lets sampling and elicitation requests reach the client that caused them.
            max_inflight: if exclusive { 1 } else { max_inflight },
            max_queue: pick!(max_queue, DEFAULT_MAX_QUEUE),
            connection_timeout: pick!(connection_timeout, DEFAULT_CONNECTION_TIMEOUT),
            request_timeout: pick!(request_timeout, DEFAULT_REQUEST_TIMEOUT),
            acquire_timeout: pick!(acquire_timeout, DEFAULT_ACQUIRE_TIMEOUT),
            idle_timeout: pick!(idle_timeout, DEFAULT_IDLE_TIMEOUT),
            // Zero means "no limit", as it did in the seed's settings.
            max_lifetime: Some(pick!(max_lifetime, DEFAULT_MAX_LIFETIME)).filter(|d| !d.is_zero()),
            health_check_interval: pick!(health_check_interval, health.check_interval),
            enable_health_checks: pick!(enable_health_checks, DEFAULT_ENABLE_HEALTH_CHECKS),
            enable_auto_reconnect: pick!(enable_auto_reconnect, DEFAULT_ENABLE_AUTO_RECONNECT),
            max_reconnect_attempts: pick!(max_reconnect_attempts, DEFAULT_MAX_RECONNECT_ATTEMPTS),
            reconnect_backoff_initial: pick!(
                reconnect_backoff_initial,
                DEFAULT_RECONNECT_BACKOFF_INITIAL
            ),
            reconnect_backoff_max: pick!(reconnect_backoff_max, DEFAULT_RECONNECT_BACKOFF_MAX),
            unhealthy_retry_interval: pick!(
                unhealthy_retry_interval,
                DEFAULT_UNHEALTHY_RETRY_INTERVAL
            ),
            // Zero means "no limit", as for max_lifetime.
            max_process_memory: own
                .max_process_memory
                .or(global.max_process_memory)
                .map(|size| size.0 as u64)
                .filter(|bytes| *bytes != 0),
        };
        if pool
            .max_process_memory
            .is_some_and(|bytes| bytes < MIN_MAX_PROCESS_MEMORY)
        {
            return Err(site!(max_process_memory)
                .error("is less than the 1 MiB a process needs to start")
                .with_help("write the resident memory past which a process is replaced, such as \"512MiB\", or 0 for no limit"));
        }

        if max_connections == 0 {
            return Err(site!(max_connections)
                .error("must be at least 1")
                .with_help(
                    "a server needs at least one process; write max_connections = 1 or more",
                ));
        }
        if min_connections > max_connections {
            let site = if own.min_connections.is_some() || global.min_connections.is_some() {
                site!(min_connections)
            } else {
                site!(max_connections)
            };
            return Err(site
                .error(format!("min_connections ({min_connections}) is greater than max_connections ({max_connections})"))
                .with_help("lower min_connections or raise max_connections"));
        }
        if max_inflight == 0 {
            return Err(site!(max_inflight)
                .error("must be at least 1")
                .with_help("write how many requests one process may handle at once, such as 32; set `exclusive = true` for one at a time"));
        }
        let must_be_positive = [
            (
                pool.connection_timeout,
                site!(connection_timeout),
                DEFAULT_CONNECTION_TIMEOUT,
            ),
            (
                pool.request_timeout,
                site!(request_timeout),
                DEFAULT_REQUEST_TIMEOUT,
            ),
            (
                pool.health_check_interval,
                site!(health_check_interval),
                DEFAULT_CHECK_INTERVAL,
            ),
            (
                pool.reconnect_backoff_max,
                site!(reconnect_backoff_max),
                DEFAULT_RECONNECT_BACKOFF_MAX,
            ),
            (
                pool.unhealthy_retry_interval,
                site!(unhealthy_retry_interval),
                DEFAULT_UNHEALTHY_RETRY_INTERVAL,
            ),
        ];
        for (value, site, default) in must_be_positive {
            if value.is_zero() {
                return Err(zero_duration(site.source, &site.path, default));
            }
        }
        if pool.reconnect_backoff_initial > pool.reconnect_backoff_max {
            return Err(site!(reconnect_backoff_initial)
                .error(format!(
                    "reconnect_backoff_initial ({}) is longer than reconnect_backoff_max ({})",
                    format_duration(pool.reconnect_backoff_initial),
                    format_duration(pool.reconnect_backoff_max)
                ))
                .with_help("the backoff starts at reconnect_backoff_initial and doubles up to reconnect_backoff_max; lower the first or raise the second"));
        }
        Ok(pool)
    }
}

/// The seed's names for cache behaviours, accepted as `strategy` and mapped onto `eviction` and
/// `default_ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// Least recently used eviction.
    Lru,
    /// Least frequently used eviction, which TinyLFU provides.
    Lfu,
    /// Entries expire after `default_ttl`, with the default eviction.
    Ttl,
    /// Entries never expire; only eviction and invalidation remove them.
    Manual,
}

/// The strategy names as the seed wrote them; they are matched without regard to case.
const STRATEGIES: [(&str, Strategy); 4] = [
    ("LRU", Strategy::Lru),
    ("LFU", Strategy::Lfu),
    ("TTL", Strategy::Ttl),
    ("MANUAL", Strategy::Manual),
];

/// The eviction policies by their configuration names.
const EVICTIONS: [Eviction; 2] = [Eviction::TinyLfu, Eviction::Lru];

/// Checks the `[cache]` table against the servers that were configured.
fn cache(
    main: &SourceText,
    base_dir: &std::path::Path,
    raw: RawCache,
    servers: &[ServerConfig],
    lookup: Lookup<'_>,
) -> Result<CacheConfig, ConfigError> {
    let at = |field: &str| FieldPath::root().key("cache").key(field);
    let defaults = CacheConfig::default();

    let backend = super::cache_backend::cache_backend(
        main,
        base_dir,
        raw.backend.as_deref(),
        raw.path.as_deref(),
        lookup,
    )?;

    let strategy = match raw.strategy.as_deref() {
        None => None,
        Some(text) => {
            let found = STRATEGIES
                .iter()
                .find(|(name, _)| text.trim().eq_ignore_ascii_case(name));
            match found {
                Some((_, strategy)) => Some(*strategy),
                None => {
                    let close = suggest(text, STRATEGIES.iter().map(|(name, _)| *name))
                        .map_or_else(String::new, |name| format!("did you mean \"{name}\"? "));
                    return Err(main
                        .error(&at("strategy"), format!("unknown cache strategy `{text}`"))
                        .with_help(format!("{close}write \"LRU\", \"LFU\", \"TTL\" or \"MANUAL\", or set `eviction` and `default_ttl` instead")));
                }
            }
        }
    };

    let eviction = match (strategy, raw.eviction.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(both_set(
                main,
                "eviction",
                "both choose how entries are evicted",
            ));
        }
        (Some(Strategy::Lru), None) => Eviction::Lru,
        (Some(Strategy::Lfu | Strategy::Ttl), None) => Eviction::TinyLfu,
        (Some(Strategy::Manual), None) | (None, None) => defaults.eviction,
        (None, Some(text)) => {
            let found = EVICTIONS
                .into_iter()
                .find(|eviction| text.trim().eq_ignore_ascii_case(eviction.as_str()));
            match found {
                Some(eviction) => eviction,
                None => {
                    let close = suggest(text, EVICTIONS.iter().map(|e| e.as_str()))
                        .map_or_else(String::new, |name| format!("did you mean \"{name}\"? "));
                    return Err(main
                        .error(&at("eviction"), format!("unknown eviction policy `{text}`"))
                        .with_help(format!("{close}write \"tinylfu\" (keeps often used entries when one-off keys pass through) or \"lru\" (drops the least recently used)")));
                }
            }
        }
    };

    let default_ttl = match (strategy, raw.default_ttl) {
        (Some(Strategy::Manual), Some(_)) => {
            return Err(both_set(
                main,
                "default_ttl",
                "but strategy \"MANUAL\" means entries never expire",
            ));
        }
        (Some(Strategy::Ttl), Some(ttl)) if ttl.0.is_none() => {
            return Err(both_set(
                main,
                "default_ttl",
                "but strategy \"TTL\" means entries expire, which `default_ttl = \"none\"` turns off",
            ));
        }
        (Some(Strategy::Manual), None) => None,
        (_, Some(ttl)) => ttl.0,
        (_, None) => defaults.default_ttl,
    };

    let max_entries = raw.max_entries.unwrap_or(defaults.max_entries);
    if max_entries == 0 {
        return Err(main
            .error(&at("max_entries"), "must be at least 1")
            .with_help("write how many results the cache may hold, such as 10000; write enabled = false to turn the cache off"));
    }
    let max_bytes = raw.max_bytes.map_or(defaults.max_bytes, |s| {
        u64::try_from(s.0).unwrap_or(u64::MAX)
    });
    if max_bytes < MIN_CACHE_MAX_BYTES {
        return Err(main
            .error(
                &at("max_bytes"),
                format!("must be at least {} KiB", MIN_CACHE_MAX_BYTES >> 10),
            )
            .with_help(
                "write a size such as \"64MiB\"; write enabled = false to turn the cache off",
            ));
    }

    let names: Vec<&str> = servers.iter().map(|server| server.name.as_str()).collect();
    let ttl_table = ttl_table(
        main,
        &FieldPath::root().key("cache").key("ttl"),
        raw.ttl.unwrap_or_default(),
        &names,
    )?;
    let mut invalidation_rules = Vec::new();
    for (i, rule) in raw.invalidate.unwrap_or_default().into_iter().enumerate() {
        invalidation_rules.push(invalidation_rule(main, i, rule, &names)?);
    }

    Ok(CacheConfig {
        enabled: raw.enabled.unwrap_or(defaults.enabled),
        backend,
        max_entries,
        max_bytes,
        default_ttl,
        eviction,
        list_ttl: raw.list_ttl.map_or(defaults.list_ttl, |d| d.0),
        max_coalesced_waiters: raw
            .max_coalesced_waiters
            .unwrap_or(defaults.max_coalesced_waiters),
        hit_for_miss_ttl: raw
            .hit_for_miss_ttl
            .map_or(defaults.hit_for_miss_ttl, |d| d.0),
        stale_while_revalidate: raw
            .stale_while_revalidate
            .map_or(defaults.stale_while_revalidate, |d| d.0),
        stale_if_error: raw.stale_if_error.map_or(defaults.stale_if_error, |d| d.0),
        ttl_table,
        invalidation_rules,
        shared: None,
    })
}

/// The error for `strategy` written together with a field it also sets. It points at `strategy`
/// and names the other field and its line, so both are found.
fn both_set(main: &SourceText, other: &str, why: &str) -> ConfigError {
    let cache = FieldPath::root().key("cache");
    let place = main
        .locate(&cache.key(other))
        .map_or_else(String::new, |p| format!(" (line {})", p.line));
    main.error(
        &cache.key("strategy"),
        format!("`cache.strategy` and `cache.{other}` are both set, {why}"),
    )
    .with_help(format!(
        "remove `strategy`, the seed's spelling, and keep `cache.{other}`{place}, or remove `cache.{other}`"
    ))
}

/// Checks that a name in the cache settings is a configured server.
fn known_server(
    main: &SourceText,
    path: &FieldPath,
    name: &str,
    names: &[&str],
) -> Result<(), ConfigError> {
    if names.contains(&name) {
        return Ok(());
    }
    let close = suggest(name, names.iter().copied())
        .map_or_else(String::new, |close| format!("did you mean `{close}`? "));
    let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    Err(main
        .error(path, format!("no server is named `{name}`"))
        .with_help(format!(
            "{close}the configured servers are {}; write \"*\" for every server",
            list.join(", ")
        )))
}

/// Checks the `[cache.ttl.SERVER]` tables and orders their rows by precedence, the order
/// `check-config` lists them in: a named server before `"*"`, then a named tool before `"*"`,
/// then file order. The lookup ([`TtlMap::lookup`]) picks the most specific row itself.
pub(super) fn ttl_table(
    main: &SourceText,
    table: &FieldPath,
    raw: OrderedMap<OrderedMap<ConfigDuration>>,
    names: &[&str],
) -> Result<TtlMap, ConfigError> {
    let mut rows = Vec::new();
    for (server, tools) in raw.0 {
        let server_path = table.key(&server);
        let server = if server == "*" {
            None
        } else {
            known_server(main, &server_path, &server, names)?;
            Some(server)
        };
        for (tool, ttl) in tools.0 {
            let path = server_path.key(&tool);
            if tool.trim().is_empty() {
                return Err(main
                    .error(&path, "the tool name is empty")
                    .with_help("write the tool's name as the server lists it, such as get_tasks, or \"*\" for every tool of the server"));
            }
            let offset = main.locate(&path).map_or(usize::MAX, |p| p.offset);
            rows.push((
                offset,
                TtlRule {
                    server: server.clone(),
                    tool,
                    ttl: ttl.0,
                },
            ));
        }
    }
    rows.sort_by_key(|(offset, rule)| (rule.server.is_none(), rule.tool == "*", *offset));
    Ok(rows.into_iter().map(|(_, rule)| rule).collect())
}

/// Checks one `[[cache.invalidate]]` rule, the `index`th.
fn invalidation_rule(
    main: &SourceText,
    index: usize,
    raw: RawInvalidation,
    names: &[&str],
) -> Result<InvalidationRule, ConfigError> {
    let at = |field: &str| {
        FieldPath::root()
            .key("cache")
            .key("invalidate")
            .index(index)
            .key(field)
    };
    let server = match raw.server {
        None => None,
        Some(server) if server == "*" => None,
        Some(server) => {
            known_server(main, &at("server"), &server, names)?;
            Some(server)
        }
    };
    let Some(on) = raw.on else {
        return Err(main
            .error(&at("on"), "the rule has no `on`")
            .with_help("add on = \"TOOL\": the write tool whose success triggers the rule, such as \"create_task\""));
    };
    if on.trim().is_empty() || on == "*" {
        return Err(main
            .error(&at("on"), format!("`{on}` does not name a tool"))
            .with_help("write the name of one write tool, such as \"create_task\"; write one rule per write tool (writes without a rule drop every entry of their server)"));
    }
    if raw.tools.is_none() && raw.tags.is_none() {
        return Err(main
            .error(&at("on"), format!("the rule for `{on}` names nothing to drop"))
            .with_help("add tools = [\"TOOL\", ...] or tags = [\"TAG\", ...]; write tools = [] to say that this write invalidates nothing"));
    }
    let tools = raw.tools.unwrap_or_default();
    let tags = raw.tags.unwrap_or_default();
    for (field, list) in [("tools", &tools), ("tags", &tags)] {
        if let Some(i) = list.iter().position(|name| name.trim().is_empty()) {
            return Err(main
                .error(&at(field).index(i), "the name is empty")
                .with_help(format!(
                    "write a name in `{field}`, or remove the empty entry"
                )));
        }
    }
    Ok(InvalidationRule {
        server,
        on,
        tools,
        tags,
    })
}
