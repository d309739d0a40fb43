//! The values a policy reads and returns, as plain Rust types: `Duration` where the WIT
//! has milliseconds or microseconds, `Option` where it abstains.

use std::time::Duration;

use crate::bindings::mcp_bridge::policy::types as wit;

/// What kind of request a call is, as far as caching goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `tools/call`: [`Call::name`] is the tool.
    Tool,
    /// `resources/read`: [`Call::name`] is the resource URI.
    ReadResource,
    /// `tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`.
    ListRequest,
}

/// The tool annotations a server declared. Hints, not guarantees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Annotations {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

/// Caching hints a server put on a result (MCP `ttlMs` / `cacheScope`). Known only once
/// the backend answered: empty in [`CachePolicy::decide`](crate::CachePolicy::decide),
/// filled in [`InvalidationRules::invalidations`](crate::InvalidationRules::invalidations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ServerHints {
    pub ttl: Option<Duration>,
    pub private_scope: Option<bool>,
}

/// One call as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The backend server's name from the bridge config.
    pub server: String,
    /// The JSON-RPC method, for example `tools/call`.
    pub method: String,
    pub kind: CallKind,
    /// The tool name, the resource URI, or empty for lists.
    pub name: String,
    /// The call's arguments as canonical JSON: keys sorted, no whitespace.
    pub canonical_arguments: String,
    pub annotations: Annotations,
    pub hints: ServerHints,
    /// An opaque id of the principal making the call, when there is one.
    pub principal: Option<String>,
}

impl Call {
    /// The arguments parsed as JSON (`Null` if they somehow are not JSON).
    pub fn arguments(&self) -> serde_json::Value {
        serde_json::from_str(&self.canonical_arguments).unwrap_or_default()
    }

    /// Whether this is a `tools/call`.
    pub fn is_tool(&self) -> bool {
        self.kind == CallKind::Tool
    }

    /// Whether the server declared the tool read-only (`readOnlyHint: true`).
    pub fn is_read_only(&self) -> bool {
        self.annotations.read_only == Some(true)
    }
}

/// A decision about one call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Decision {
    /// No opinion: the next policy in the chain decides.
    #[default]
    Abstain,
    /// Neither serve this call from the cache nor store its result.
    Bypass,
    /// Serve from and fill the cache.
    Cache(Directive),
}

impl From<Directive> for Decision {
    fn from(directive: Directive) -> Decision {
        Decision::Cache(directive)
    }
}

/// How to cache a call's result. Start from [`Directive::ttl`] (or
/// [`Directive::no_expiry`]) and chain the builder methods:
///
/// ```
/// # use std::time::Duration;
/// # use mcp_bridge_plugin_sdk::Directive;
/// let directive = Directive::ttl(Duration::from_secs(30))
///     .tag("entity:task")
///     .ignore_argument("request_id")
///     .stale_while_revalidate(Duration::from_secs(5));
/// assert!(directive.shared);
/// ```
///
/// Durations travel to the host as whole milliseconds; a non-zero duration under one
/// millisecond is rounded up to one, so it never turns into "never cache".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// How long the result stays fresh; `None` keeps it until evicted or invalidated.
    pub ttl: Option<Duration>,
    /// Argument names left out of the cache key (volatile ones such as a request id).
    pub ignore_arguments: Vec<String>,
    /// Tags an invalidation may name later.
    pub tags: Vec<String>,
    /// Whether one cached result may serve every principal (default `true`). When false,
    /// or when the server marks the result private, results are cached per principal.
    pub shared: bool,
    /// Serve an expired entry this long while one refresh runs.
    pub stale_while_revalidate: Option<Duration>,
    /// Serve an expired entry this long when the backend fails.
    pub stale_if_error: Option<Duration>,
    /// Cache `isError: true` results this long; `None` never caches them.
    pub negative_ttl: Option<Duration>,
}

impl Default for Directive {
    /// A shared entry with no expiry and nothing else.
    fn default() -> Directive {
        Directive {
            ttl: None,
            ignore_arguments: Vec::new(),
            tags: Vec::new(),
            shared: true,
            stale_while_revalidate: None,
            stale_if_error: None,
            negative_ttl: None,
        }
    }
}

impl Directive {
    /// A shared entry fresh for `ttl`.
    pub fn ttl(ttl: Duration) -> Directive {
        Directive {
            ttl: Some(ttl),
            ..Directive::default()
        }
    }

    /// A shared entry kept until it is evicted or invalidated.
    pub fn no_expiry() -> Directive {
        Directive::default()
    }

    /// Adds a tag an invalidation may name later.
    pub fn tag(mut self, tag: impl Into<String>) -> Directive {
        self.tags.push(tag.into());
        self
    }

    /// Adds several tags.
    pub fn tags<I>(mut self, tags: I) -> Directive
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Leaves an argument out of the cache key.
    pub fn ignore_argument(mut self, name: impl Into<String>) -> Directive {
        self.ignore_arguments.push(name.into());
        self
    }

    /// Caches per principal instead of sharing one result.
    pub fn private(mut self) -> Directive {
        self.shared = false;
        self
    }

    /// Serves an expired entry for up to `window` while one refresh runs.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Directive {
        self.stale_while_revalidate = Some(window);
        self
    }

    /// Serves an expired entry for up to `window` when the backend fails.
    pub fn stale_if_error(mut self, window: Duration) -> Directive {
        self.stale_if_error = Some(window);
        self
    }

    /// Caches `isError: true` results for `ttl`.
    pub fn negative_ttl(mut self, ttl: Duration) -> Directive {
        self.negative_ttl = Some(ttl);
        self
    }
}

/// How a completed call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The call succeeded.
    Success,
    /// A JSON-RPC error or an `isError: true` result: the server says nothing changed.
    Error,
    /// No answer (timeout, crash): the call may or may not have taken effect.
    Unknown,
}

/// What the host saw of a completed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outcome {
    pub status: Status,
    /// The backend's latency.
    pub latency: Duration,
    /// The size of the result in bytes (zero when there is none).
    pub result_bytes: u64,
}

/// Something a completed call makes stale.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// Every entry of a server.
    Server(String),
    /// Every entry of one tool (or resource URI) of a server.
    Tool { server: String, tool: String },
    /// Every entry carrying a tag.
    Tag(String),
    /// One exact cache key.
    Key(String),
}

impl Invalidation {
    /// Every entry of `server`.
    pub fn server(server: impl Into<String>) -> Invalidation {
        Invalidation::Server(server.into())
    }

    /// Every entry of `tool` on `server`.
    pub fn tool(server: impl Into<String>, tool: impl Into<String>) -> Invalidation {
        Invalidation::Tool {
            server: server.into(),
            tool: tool.into(),
        }
    }

    /// Every entry tagged `tag`.
    pub fn tag(tag: impl Into<String>) -> Invalidation {
        Invalidation::Tag(tag.into())
    }

    /// One exact cache key.
    pub fn key(key: impl Into<String>) -> Invalidation {
        Invalidation::Key(key.into())
    }
}

// Conversions from and to the generated WIT types. Only the SDK's glue uses them.

/// Whole milliseconds, saturating; a non-zero duration never rounds down to zero.
pub(crate) fn millis(duration: Duration) -> u64 {
    match u64::try_from(duration.as_millis()) {
        Ok(0) if !duration.is_zero() => 1,
        Ok(ms) => ms,
        Err(_) => u64::MAX,
    }
}

impl From<wit::CallKind> for CallKind {
    fn from(kind: wit::CallKind) -> CallKind {
        match kind {
            wit::CallKind::Tool => CallKind::Tool,
            wit::CallKind::ReadResource => CallKind::ReadResource,
            wit::CallKind::ListRequest => CallKind::ListRequest,
        }
    }
}

impl From<wit::Call> for Call {
    fn from(call: wit::Call) -> Call {
        Call {
            server: call.server,
            method: call.method,
            kind: call.kind.into(),
            name: call.name,
            canonical_arguments: call.canonical_arguments,
            annotations: Annotations {
                read_only: call.annotations.read_only,
                destructive: call.annotations.destructive,
                idempotent: call.annotations.idempotent,
                open_world: call.annotations.open_world,
            },
            hints: ServerHints {
                ttl: call.hints.ttl_ms.map(Duration::from_millis),
                private_scope: call.hints.private_scope,
            },
            principal: call.principal,
        }
    }
}

impl From<Directive> for wit::CacheDirective {
    fn from(directive: Directive) -> wit::CacheDirective {
        wit::CacheDirective {
            ttl_ms: directive.ttl.map(millis),
            ignore_arguments: directive.ignore_arguments,
            tags: directive.tags,
            shared: directive.shared,
            stale_while_revalidate_ms: directive.stale_while_revalidate.map(millis),
            stale_if_error_ms: directive.stale_if_error.map(millis),
            negative_ttl_ms: directive.negative_ttl.map(millis),
        }
    }
}

impl From<Decision> for wit::Decision {
    fn from(decision: Decision) -> wit::Decision {
        match decision {
            Decision::Abstain => wit::Decision::Abstain,
            Decision::Bypass => wit::Decision::Bypass,
            Decision::Cache(directive) => wit::Decision::Cache(directive.into()),
        }
    }
}

impl From<wit::Outcome> for Outcome {
    fn from(outcome: wit::Outcome) -> Outcome {
        Outcome {
            status: match outcome.status {
                wit::Status::Success => Status::Success,
                wit::Status::Error => Status::Error,
                wit::Status::Unknown => Status::Unknown,
            },
            latency: Duration::from_micros(outcome.latency_us),
            result_bytes: outcome.result_bytes,
        }
    }
}

impl From<Invalidation> for wit::Invalidation {
    fn from(invalidation: Invalidation) -> wit::Invalidation {
        match invalidation {
            Invalidation::Server(server) => wit::Invalidation::Server(server),
            Invalidation::Tool { server, tool } => {
                wit::Invalidation::Tool(wit::ToolRef { server, tool })
            }
            Invalidation::Tag(tag) => wit::Invalidation::Tag(tag),
            Invalidation::Key(key) => wit::Invalidation::Key(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_up_and_saturate() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(30)), 30_000);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn directive_builder_and_conversion() {
        let directive = Directive::ttl(Duration::from_secs(30))
            .tag("a")
            .tags(["b", "c"])
            .ignore_argument("request_id")
            .private()
            .stale_while_revalidate(Duration::from_secs(5))
            .stale_if_error(Duration::from_secs(60))
            .negative_ttl(Duration::from_millis(250));
        let wit::Decision::Cache(wit) = Decision::from(directive).into() else {
            panic!("not a cache decision");
        };
        assert_eq!(wit.ttl_ms, Some(30_000));
        assert_eq!(wit.tags, ["a", "b", "c"]);
        assert_eq!(wit.ignore_arguments, ["request_id"]);
        assert!(!wit.shared);
        assert_eq!(wit.stale_while_revalidate_ms, Some(5_000));
        assert_eq!(wit.stale_if_error_ms, Some(60_000));
        assert_eq!(wit.negative_ttl_ms, Some(250));
        let wit::Decision::Cache(wit) = Decision::from(Directive::no_expiry()).into() else {
            panic!("not a cache decision");
        };
        assert_eq!(wit.ttl_ms, None);
        assert!(wit.shared);
    }

    #[test]
    fn call_helpers() {
        let call = Call {
            server: "demo".to_owned(),
            method: "tools/call".to_owned(),
            kind: CallKind::Tool,
            name: "get_tasks".to_owned(),
            canonical_arguments: r#"{"limit":5}"#.to_owned(),
            annotations: Annotations {
                read_only: Some(true),
                ..Annotations::default()
            },
            hints: ServerHints::default(),
            principal: None,
        };
        assert_eq!(call.arguments()["limit"], 5);
        assert!(call.is_tool() && call.is_read_only());
    }
}
