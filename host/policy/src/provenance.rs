//! Where a chain's answer came from: which policy decided a call, which source set the TTL
//! its entry gets, and a policy's answer to one question asked on its own ([`Probed`]),
//! so that a header, a log line or an explanation can say why a call was cached as it was.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::vocabulary::{Call, Decision, InvalidationAnswer, Outcome, TtlAnswer};

/// The source of the TTL a cached entry gets, in the order of the precedence the SDK
/// README's "Where a TTL comes from" writes down. Its [`fmt::Display`] is the token the
/// cache header and explanations show (`plugin:flat`, `config:demo/get_clients`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtlSource {
    /// The TTL in the deciding plugin's `Cache` directive.
    Directive { policy: Arc<str> },
    /// A row of a plugin's TTL table (`ttl-table`), which overrides any directive.
    Table { policy: Arc<str> },
    /// A `[cache.ttl]` row of the bridge config: the built-in policy's table. `server` is
    /// `*` for a row of `[cache.ttl."*"]`, `tool` is `*` for a row for every tool.
    ConfigRow { server: String, tool: String },
    /// The built-in policy decided, with its `[cache] default_ttl` (or `list_ttl`).
    Default,
    /// The server's `ttlMs` shortened the TTL (or set it, when no policy gave one).
    ServerHint,
    /// The shared tier's cap on an entry's lifetime shortened it.
    SharedCap,
    /// The built-in policy decided and its default keeps entries until they are evicted.
    NoExpiry,
}

impl fmt::Display for TtlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TtlSource::Directive { policy } => write!(f, "plugin:{policy}"),
            TtlSource::Table { policy } => write!(f, "table:{policy}"),
            TtlSource::ConfigRow { server, tool } => write!(f, "config:{server}/{tool}"),
            TtlSource::Default => f.write_str("default"),
            TtlSource::ServerHint => f.write_str("server"),
            TtlSource::SharedCap => f.write_str("shared-cap"),
            TtlSource::NoExpiry => f.write_str("none"),
        }
    }
}

/// A source is written as its token, the one spelling headers, logs and JSON share.
impl serde::Serialize for TtlSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A chain's decision and where it came from. It holds indices into the chain and one
/// shared name, so producing it for every call allocates nothing; the [`TtlSource`] is
/// built from it only when something shows it ([`crate::PolicyChain::ttl_source`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced {
    /// What the chain decided: the same as [`crate::PolicyChain::decide`].
    pub decision: Decision,
    /// The name of the policy whose answer was the first that did not abstain.
    pub decided_by: Arc<str>,
    /// Its place in the chain (the built-in policy is the last).
    pub decider_index: usize,
    /// The place of the policy whose TTL table set the TTL (or, with a zero row, turned
    /// the decision into `Bypass`), when one did.
    pub ttl_from: Option<usize>,
    /// The TTL the decider's `Cache` directive carried before any table replaced it
    /// (`Some(None)`: no expiry); `None` when the decider did not answer `Cache`.
    pub decider_ttl: Option<Option<Duration>>,
}

/// One question a chain asks its policies, asked of one policy on its own.
#[derive(Debug, Clone, Copy)]
pub enum Question<'q> {
    /// `cache-policy`.
    Decide(&'q Call<'q>),
    /// `ttl-table`, for a server's tool.
    Ttl { server: &'q str, tool: &'q str },
    /// `invalidation-rules`, for a completed call.
    Invalidations(&'q Call<'q>, &'q Outcome),
}

/// A policy's answer to a [`Question`], of the interface the question asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Decision(Decision),
    Ttl(TtlAnswer),
    Invalidations(InvalidationAnswer),
}

/// What [`crate::Policy::probe`] found: the answer, and what an explanation should say
/// about it besides.
#[derive(Debug, Clone, PartialEq)]
pub struct Probed {
    /// The answer the policy gives; for a fault or a quarantine, the safe default it
    /// falls back to.
    pub answer: Answer,
    /// Why the policy could not answer for itself (a plugin's fault), when it could not.
    pub fault: Option<String>,
    /// Whether the policy is quarantined for this question, so it was not asked.
    pub quarantined: bool,
    /// Whether the policy applies to the question's server at all (a plugin binding may
    /// be bound to some servers only); one that does not abstains.
    pub applies: bool,
}

impl Probed {
    /// An answer the policy gave for itself.
    pub fn answered(answer: Answer) -> Probed {
        Probed {
            answer,
            fault: None,
            quarantined: false,
            applies: true,
        }
    }
}
