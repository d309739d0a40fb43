//! The values a policy reads and returns, named after the WIT contract (`wit/policy.wit`):
//! plain Rust types, `Duration` where the WIT has milliseconds or microseconds.

use std::time::Duration;

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

/// The tool annotations a server declared. Hints, never trusted blindly: the policy
/// decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Annotations {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

impl Annotations {
    /// The annotations of a tool as a server lists it (`tools/list`'s entry: its
    /// `annotations` object's `readOnlyHint`, `destructiveHint`, `idempotentHint` and
    /// `openWorldHint`); a hint that is missing or not a boolean is unknown.
    pub fn of_tool(tool: &serde_json::Value) -> Annotations {
        let hints = tool.get("annotations");
        let hint = |field: &str| {
            hints
                .and_then(|hints| hints.get(field))
                .and_then(serde_json::Value::as_bool)
        };
        Annotations {
            read_only: hint("readOnlyHint"),
            destructive: hint("destructiveHint"),
            idempotent: hint("idempotentHint"),
            open_world: hint("openWorldHint"),
        }
    }
}

/// The caching hints a server put on a result (MCP `ttlMs` / `cacheScope`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ServerHints {
    pub ttl: Option<Duration>,
    /// Whether the server marked the result `cacheScope: private`.
    pub private_scope: Option<bool>,
}

impl ServerHints {
    /// The hints on a JSON-RPC `result`: `ttlMs` (whole milliseconds) and `cacheScope`
    /// (`private` or anything else). A field of the wrong type is no hint.
    pub fn of_result(result: &serde_json::Value) -> ServerHints {
        ServerHints {
            ttl: result
                .get("ttlMs")
                .and_then(serde_json::Value::as_u64)
                .map(Duration::from_millis),
            private_scope: result
                .get("cacheScope")
                .and_then(serde_json::Value::as_str)
                .map(|scope| scope == "private"),
        }
    }

    /// Whether the server asked that the result be kept for its principal alone.
    pub fn is_private(&self) -> bool {
        self.private_scope == Some(true)
    }

    /// The TTL a cached result gets from the policy's `ttl`: a server's `ttlMs` can shorten
    /// it, never lengthen it, and stands alone when the policy set none (no expiry).
    pub fn cap_ttl(&self, ttl: Option<Duration>) -> Option<Duration> {
        match (ttl, self.ttl) {
            (Some(ttl), Some(server)) => Some(ttl.min(server)),
            (None, server) => server,
            (ttl, None) => ttl,
        }
    }
}

/// One call as a policy sees it. It borrows its strings, so the host decides a call
/// without copying it; a plugin borrows them from the values the WIT handed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'a> {
    /// The backend server's name from the bridge config.
    pub server: &'a str,
    /// The JSON-RPC method, for example `tools/call`.
    pub method: &'a str,
    pub kind: CallKind,
    /// The tool name, the resource URI, or empty for lists.
    pub name: &'a str,
    /// The call's arguments as canonical JSON (keys sorted, no whitespace).
    pub canonical_arguments: &'a str,
    pub annotations: Annotations,
    /// The server's caching hints on the result: known only once the backend has
    /// answered, so empty when a call is decided and filled when its outcome is judged.
    pub hints: ServerHints,
    /// An opaque id of the authenticated principal (or the session) making the call.
    pub principal: Option<&'a str>,
}

impl Call<'_> {
    /// The arguments parsed as JSON (`Null` if they somehow are not JSON).
    pub fn arguments(&self) -> serde_json::Value {
        serde_json::from_str(self.canonical_arguments).unwrap_or_default()
    }

    /// Whether this is a `tools/call`.
    pub fn is_tool(&self) -> bool {
        self.kind == CallKind::Tool
    }

    /// Whether the server declared the tool read-only (`readOnlyHint: true`).
    pub fn is_read_only(&self) -> bool {
        self.annotations.read_only == Some(true)
    }

    /// Whether the call may change what the server holds: a tool call its server did
    /// not declare read-only. When such a call is not cached, its invalidations apply
    /// once it completes.
    pub fn may_write(&self) -> bool {
        self.kind == CallKind::Tool && !self.is_read_only()
    }
}

/// A decision about one call. `Abstain` lets the next policy in a chain decide.
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

impl Decision {
    /// The decision's kind in one word (`abstain`, `bypass`, `cache`), for traces.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Abstain => "abstain",
            Decision::Bypass => "bypass",
            Decision::Cache(_) => "cache",
        }
    }
}

impl From<Directive> for Decision {
    fn from(directive: Directive) -> Decision {
        Decision::Cache(directive)
    }
}

/// How to cache a call's result (the WIT's `cache-directive`). Start from
/// [`Directive::ttl`] (or [`Directive::no_expiry`]) and chain the builder methods:
///
/// ```
/// # use std::time::Duration;
/// # use mcp_bridge_policy::Directive;
/// let directive = Directive::ttl(Duration::from_secs(30))
///     .tag("entity:task")
///     .ignore_argument("request_id")
///     .stale_while_revalidate(Duration::from_secs(5));
/// assert!(directive.shared);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// How long the result is fresh; `None` keeps it until evicted or invalidated.
    pub ttl: Option<Duration>,
    /// Argument names left out of the key (volatile ones such as a request id).
    pub ignore_arguments: Vec<String>,
    /// Tags an invalidation may name later (server and tool tags are added by the cache).
    pub tags: Vec<String>,
    /// Whether the result may be shared across principals. When false, or when the
    /// server marked the result private, it is cached per principal.
    pub shared: bool,
    /// Serve an expired entry for up to this long while one refresh runs.
    pub stale_while_revalidate: Option<Duration>,
    /// Serve an expired entry for up to this long when the backend fails.
    pub stale_if_error: Option<Duration>,
    /// Cache `isError: true` results for this long (off unless asked for).
    pub negative_ttl: Option<Duration>,
}

impl Default for Directive {
    /// A shared entry with no expiry and nothing else.
    fn default() -> Directive {
        Directive::with_ttl(None)
    }
}

impl Directive {
    /// A shared entry with a TTL (`None`: no expiry) and nothing else.
    pub fn with_ttl(ttl: Option<Duration>) -> Directive {
        Directive {
            ttl,
            ignore_arguments: Vec::new(),
            tags: Vec::new(),
            shared: true,
            stale_while_revalidate: None,
            stale_if_error: None,
            negative_ttl: None,
        }
    }

    /// A shared entry fresh for `ttl`.
    pub fn ttl(ttl: Duration) -> Directive {
        Directive::with_ttl(Some(ttl))
    }

    /// A shared entry kept until it is evicted or invalidated.
    pub fn no_expiry() -> Directive {
        Directive::with_ttl(None)
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

/// A TTL table's answer for one server and tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlAnswer {
    /// No row for this tool: the next policy in the chain answers.
    Abstain,
    /// Cache for this long (`Duration::ZERO` means never cache).
    Ttl(Duration),
}

/// How a completed call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The call succeeded.
    Success,
    /// A JSON-RPC error or `isError: true`: the server says nothing changed.
    Error,
    /// No answer (timeout, crash): the call may or may not have taken effect.
    Unknown,
}

/// What the bridge saw of a completed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outcome {
    pub status: Status,
    /// How long the backend took.
    pub latency: Duration,
    /// The size of the result as JSON, zero when there is none.
    pub result_bytes: u64,
}

impl Outcome {
    /// An outcome with only a status, for callers that measured nothing else.
    pub fn of(status: Status) -> Outcome {
        Outcome {
            status,
            latency: Duration::ZERO,
            result_bytes: 0,
        }
    }
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

/// What a policy says after a call. `Abstain` lets the others speak; an empty `Rules`
/// says "nothing to invalidate" and so overrides the whole-server default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidationAnswer {
    Abstain,
    Rules(Vec<Invalidation>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_builder_sets_one_field() {
        let base = Directive::ttl(Duration::from_secs(30));
        assert_eq!(base.ttl, Some(Duration::from_secs(30)));
        assert_eq!(base.clone().tag("a").tags(["b", "c"]).tags, ["a", "b", "c"]);
        assert_eq!(base.clone().ignore_argument("id").ignore_arguments, ["id"]);
        assert!(base.shared && !base.clone().private().shared);
        let window = Duration::from_millis(250);
        assert_eq!(
            base.clone()
                .stale_while_revalidate(window)
                .stale_while_revalidate,
            Some(window)
        );
        assert_eq!(
            base.clone().stale_if_error(window).stale_if_error,
            Some(window)
        );
        assert_eq!(base.negative_ttl(window).negative_ttl, Some(window));
        assert_eq!(Directive::no_expiry(), Directive::with_ttl(None));
        assert_eq!(Directive::default(), Directive::no_expiry());
    }

    #[test]
    fn server_hints_read_from_a_result_and_only_shorten_the_ttl() {
        let hints = ServerHints::of_result(&serde_json::json!({
            "content": [], "ttlMs": 2000, "cacheScope": "private"
        }));
        assert_eq!(hints.ttl, Some(Duration::from_secs(2)));
        assert!(hints.is_private());
        assert_eq!(
            hints.cap_ttl(Some(Duration::from_secs(60))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            hints.cap_ttl(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(hints.cap_ttl(None), Some(Duration::from_secs(2)));
        let public =
            ServerHints::of_result(&serde_json::json!({"cacheScope": "public", "ttlMs": "5"}));
        assert_eq!(
            public,
            ServerHints {
                ttl: None,
                private_scope: Some(false)
            }
        );
        assert!(!public.is_private());
        assert_eq!(public.cap_ttl(None), None);
        assert_eq!(
            ServerHints::of_result(&serde_json::json!({})),
            ServerHints::default()
        );
    }

    #[test]
    fn call_helpers() {
        let call = Call {
            server: "demo",
            method: "tools/call",
            kind: CallKind::Tool,
            name: "get_tasks",
            canonical_arguments: r#"{"limit":5}"#,
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
