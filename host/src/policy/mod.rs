//! The policy seam: which calls are cached, for how long, under what key and tags, and
//! what a completed call invalidates. Pure decisions over plain data, no I/O.
//!
//! The three parts mirror the three plugin interfaces (`cache-policy`, `ttl-table`,
//! `invalidation-rules`): a policy may answer any of them and abstain on the rest, and a
//! [`PolicyChain`] asks its policies in order (first answer wins for decisions and TTLs;
//! invalidations are the union). The built-in policy ends every chain.

mod builtin;

use std::sync::Arc;
use std::time::Duration;

pub use builtin::BuiltinPolicy;

/// What kind of request a call is, as far as caching goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `tools/call`: `name` is the tool.
    Tool,
    /// `resources/read`: `name` is the URI.
    Resource,
    /// `tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`.
    List,
}

/// The tool annotations that matter to caching, as the server declared them. They are
/// hints, never trusted blindly: the policy decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Annotations {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

/// The caching hints a server put on a result (2026-07-28 `ttlMs` / `cacheScope`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerHints {
    pub ttl: Option<Duration>,
    pub private: Option<bool>,
}

/// Everything a policy may look at to decide a call.
#[derive(Debug, Clone)]
pub struct CallInfo<'a> {
    pub server: &'a str,
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

/// A decision about one call. `Abstain` lets the next policy in a chain decide.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Abstain,
    /// Do not serve from cache and do not store the result.
    Bypass,
    Cache(CacheDirective),
}

/// How to cache a call's result.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheDirective {
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

impl CacheDirective {
    /// A shared entry with a TTL and nothing else.
    pub fn with_ttl(ttl: Option<Duration>) -> CacheDirective {
        CacheDirective {
            ttl,
            ignore_arguments: Vec::new(),
            tags: Vec::new(),
            shared: true,
            stale_while_revalidate: None,
            stale_if_error: None,
            negative_ttl: None,
        }
    }
}

/// A TTL table's answer for one server and tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlAnswer {
    Abstain,
    /// Cache for this long (`Duration::ZERO` means never cache).
    Ttl(Duration),
}

/// How a completed call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    /// A JSON-RPC error or `isError: true`: the server says nothing changed.
    Error,
    /// No answer (timeout, crash): the call may or may not have taken effect.
    Unknown,
}

/// What the bridge saw of a completed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// What a policy says after a call. `Abstain` lets the others speak; an empty `Rules`
/// says "nothing to invalidate" and so overrides the whole-server default.
#[derive(Debug, Clone, PartialEq)]
pub enum InvalidationAnswer {
    Abstain,
    Rules(Vec<Invalidation>),
}

/// One cache policy: any of its three parts may abstain.
pub trait Policy: Send + Sync {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// `cache-policy`: decide one call.
    fn decide(&self, call: &CallInfo<'_>) -> Decision;

    /// `ttl-table`: the TTL for a server's tool, when the policy has a table.
    fn ttl(&self, _server: &str, _tool: &str) -> TtlAnswer {
        TtlAnswer::Abstain
    }

    /// `invalidation-rules`: what a completed call makes stale.
    fn invalidations(&self, _call: &CallInfo<'_>, _outcome: &Outcome) -> InvalidationAnswer {
        InvalidationAnswer::Abstain
    }
}

/// Policies asked in order; the built-in policy is always last, so every question gets
/// an answer.
#[derive(Clone)]
pub struct PolicyChain {
    policies: Vec<Arc<dyn Policy>>,
    generation: u64,
}

impl PolicyChain {
    pub fn new(mut policies: Vec<Arc<dyn Policy>>, builtin: Arc<BuiltinPolicy>) -> PolicyChain {
        policies.push(builtin);
        PolicyChain {
            policies,
            generation: 0,
        }
    }

    /// Labels the chain with the policy generation it was swapped in at.
    pub fn with_generation(mut self, generation: u64) -> PolicyChain {
        self.generation = generation;
        self
    }

    /// The policy generation this chain belongs to (0 before any plugin swap).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The first non-abstaining decision; a TTL-table answer then overrides the TTL of a
    /// `Cache` decision (a zero TTL turns it into `Bypass`).
    pub fn decide(&self, call: &CallInfo<'_>) -> Decision {
        let decision = self
            .policies
            .iter()
            .map(|policy| policy.decide(call))
            .find(|decision| *decision != Decision::Abstain)
            .unwrap_or(Decision::Bypass);
        let Decision::Cache(mut directive) = decision else {
            return decision;
        };
        if call.kind == CallKind::Tool
            && let Some(ttl) = self.ttl(call.server, call.name)
        {
            if ttl.is_zero() {
                return Decision::Bypass;
            }
            directive.ttl = Some(ttl);
        }
        Decision::Cache(directive)
    }

    /// The first TTL any policy's table gives for the tool.
    pub fn ttl(&self, server: &str, tool: &str) -> Option<Duration> {
        self.policies
            .iter()
            .find_map(|policy| match policy.ttl(server, tool) {
                TtlAnswer::Ttl(ttl) => Some(ttl),
                TtlAnswer::Abstain => None,
            })
    }

    /// The union of every policy's rules. When none speaks, a call that is not read-only
    /// and may have changed something (it succeeded, or its outcome is unknown)
    /// invalidates its whole server: the safe default.
    pub fn invalidations(&self, call: &CallInfo<'_>, outcome: &Outcome) -> Vec<Invalidation> {
        let mut union: Vec<Invalidation> = Vec::new();
        let mut spoke = false;
        for policy in &self.policies {
            if let InvalidationAnswer::Rules(rules) = policy.invalidations(call, outcome) {
                spoke = true;
                for rule in rules {
                    if !union.contains(&rule) {
                        union.push(rule);
                    }
                }
            }
        }
        let may_have_changed = outcome.status != Status::Error;
        if !spoke && may_have_changed && call.annotations.read_only != Some(true) {
            union.push(Invalidation::Server(call.server.to_owned()));
        }
        union
    }
}

/// Where a new policy chain goes to serve calls. Whoever assembles chains (the plugin
/// host after a reload, the config watcher) publishes through one and never learns what
/// serves the calls: the application's wiring hands it the router's cache layer.
pub trait PolicySink: Send + Sync {
    /// Makes `chain` the one calls decide with from now on; calls already deciding keep
    /// the chain they took.
    fn install(&self, chain: PolicyChain);
}

/// A closure is a sink, so the wiring adapts whatever holds the chain in one line.
impl<F: Fn(PolicyChain) + Send + Sync> PolicySink for F {
    fn install(&self, chain: PolicyChain) {
        self(chain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const CONFIG: &str = r#"
[servers.demo]
command = "demo"

[cache]
default_ttl = "60s"

[cache.ttl."*"]
get_tool_schema = "1h"

[cache.ttl.demo]
get_clients = "5m"
create_task = 0

[[cache.invalidate]]
on = "create_task"
tools = ["get_tasks", "get_today_metrics"]
"#;

    fn chain() -> PolicyChain {
        let config = load_str(CONFIG, "test.toml").unwrap_or_else(|error| panic!("{error}"));
        PolicyChain::new(Vec::new(), Arc::new(BuiltinPolicy::from_config(&config)))
    }

    fn tool_call<'a>(name: &'a str, read_only: Option<bool>) -> CallInfo<'a> {
        CallInfo {
            server: "demo",
            method: "tools/call",
            kind: CallKind::Tool,
            name,
            canonical_arguments: "{}",
            annotations: Annotations {
                read_only,
                ..Annotations::default()
            },
            hints: ServerHints::default(),
            principal: None,
        }
    }

    fn ttl_of(decision: Decision) -> Option<Option<Duration>> {
        match decision {
            Decision::Cache(directive) => Some(directive.ttl),
            _ => None,
        }
    }

    #[test]
    fn annotations_decide_and_the_ttl_table_overrides() {
        let chain = chain();
        assert_eq!(
            ttl_of(chain.decide(&tool_call("get_tasks", Some(true)))),
            Some(Some(Duration::from_secs(60)))
        );
        assert_eq!(
            ttl_of(chain.decide(&tool_call("get_clients", Some(true)))),
            Some(Some(Duration::from_secs(300)))
        );
        assert_eq!(
            ttl_of(chain.decide(&tool_call("get_tool_schema", Some(true)))),
            Some(Some(Duration::from_secs(3600)))
        );
        assert_eq!(
            chain.decide(&tool_call("get_tasks", None)),
            Decision::Bypass
        );
        assert_eq!(
            chain.decide(&tool_call("create_task", Some(true))),
            Decision::Bypass,
            "a zero TTL never caches"
        );
    }

    #[test]
    fn rules_replace_the_whole_server_default() {
        let chain = chain();
        let create = chain.invalidations(
            &tool_call("create_task", Some(false)),
            &Outcome::of(Status::Success),
        );
        assert_eq!(
            create,
            vec![
                Invalidation::Tool {
                    server: "demo".into(),
                    tool: "get_tasks".into()
                },
                Invalidation::Tool {
                    server: "demo".into(),
                    tool: "get_today_metrics".into()
                },
            ]
        );
        let other_write = chain.invalidations(
            &tool_call("update_task", Some(false)),
            &Outcome::of(Status::Success),
        );
        assert_eq!(other_write, vec![Invalidation::Server("demo".into())]);
        let unknown = chain.invalidations(
            &tool_call("update_task", None),
            &Outcome::of(Status::Unknown),
        );
        assert_eq!(
            unknown,
            vec![Invalidation::Server("demo".into())],
            "an unknown outcome may have changed state"
        );
        assert!(
            chain
                .invalidations(&tool_call("update_task", None), &Outcome::of(Status::Error))
                .is_empty()
        );
        assert!(
            chain
                .invalidations(
                    &tool_call("get_tasks", Some(true)),
                    &Outcome::of(Status::Success)
                )
                .is_empty()
        );
    }
}
