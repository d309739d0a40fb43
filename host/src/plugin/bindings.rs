//! Host bindings generated from `wit/` (the single source of truth), and conversions
//! between the generated types and the policy seam's own types.

use std::time::Duration;

use crate::policy::{
    Annotations, Call, CallKind, Decision, Directive, Invalidation, InvalidationAnswer, Outcome,
    Status, TtlAnswer,
};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy-plugin",
});

pub use exports::mcp_bridge::policy::cache_policy::GuestIndices as CachePolicyIndices;
pub use exports::mcp_bridge::policy::invalidation_rules::GuestIndices as InvalidationRulesIndices;
pub use exports::mcp_bridge::policy::lifecycle::GuestIndices as LifecycleIndices;
pub use exports::mcp_bridge::policy::ttl_table::GuestIndices as TtlTableIndices;

pub use exports::mcp_bridge::policy::cache_policy::Guest as CachePolicyGuest;
pub use exports::mcp_bridge::policy::invalidation_rules::Guest as InvalidationRulesGuest;
pub use exports::mcp_bridge::policy::lifecycle::Guest as LifecycleGuest;
pub use exports::mcp_bridge::policy::ttl_table::Guest as TtlTableGuest;

use self::mcp_bridge::policy::types as wit;

/// The fully qualified export names the host probes for, in WIT order.
pub const CACHE_POLICY: &str = "mcp-bridge:policy/cache-policy@0.1.0";
pub const TTL_TABLE: &str = "mcp-bridge:policy/ttl-table@0.1.0";
pub const INVALIDATION_RULES: &str = "mcp-bridge:policy/invalidation-rules@0.1.0";
pub const LIFECYCLE: &str = "mcp-bridge:policy/lifecycle@0.1.0";

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub fn call(info: &Call<'_>) -> wit::Call {
    wit::Call {
        server: info.server.to_owned(),
        method: info.method.to_owned(),
        kind: match info.kind {
            CallKind::Tool => wit::CallKind::Tool,
            CallKind::ReadResource => wit::CallKind::ReadResource,
            CallKind::ListRequest => wit::CallKind::ListRequest,
        },
        name: info.name.to_owned(),
        canonical_arguments: info.canonical_arguments.to_owned(),
        annotations: annotations(info.annotations),
        hints: wit::ServerHints {
            ttl_ms: info.hints.ttl.map(millis),
            private_scope: info.hints.private_scope,
        },
        principal: info.principal.map(str::to_owned),
    }
}

fn annotations(annotations: Annotations) -> wit::Annotations {
    wit::Annotations {
        read_only: annotations.read_only,
        destructive: annotations.destructive,
        idempotent: annotations.idempotent,
        open_world: annotations.open_world,
    }
}

pub fn outcome(outcome: &Outcome) -> wit::Outcome {
    wit::Outcome {
        status: match outcome.status {
            Status::Success => wit::Status::Success,
            Status::Error => wit::Status::Error,
            Status::Unknown => wit::Status::Unknown,
        },
        latency_us: u64::try_from(outcome.latency.as_micros()).unwrap_or(u64::MAX),
        result_bytes: outcome.result_bytes,
    }
}

pub fn decision(decision: wit::Decision) -> Decision {
    match decision {
        wit::Decision::Abstain => Decision::Abstain,
        wit::Decision::Bypass => Decision::Bypass,
        wit::Decision::Cache(directive) => Decision::Cache(Directive {
            ttl: directive.ttl_ms.map(Duration::from_millis),
            ignore_arguments: directive.ignore_arguments,
            tags: directive.tags,
            shared: directive.shared,
            stale_while_revalidate: directive
                .stale_while_revalidate_ms
                .map(Duration::from_millis),
            stale_if_error: directive.stale_if_error_ms.map(Duration::from_millis),
            negative_ttl: directive.negative_ttl_ms.map(Duration::from_millis),
        }),
    }
}

pub fn ttl_answer(answer: wit::TtlAnswer) -> TtlAnswer {
    match answer {
        wit::TtlAnswer::Abstain => TtlAnswer::Abstain,
        wit::TtlAnswer::TtlMs(ms) => TtlAnswer::Ttl(Duration::from_millis(ms)),
    }
}

pub fn invalidation_answer(answer: wit::InvalidationAnswer) -> InvalidationAnswer {
    let wit::InvalidationAnswer::Rules(rules) = answer else {
        return InvalidationAnswer::Abstain;
    };
    InvalidationAnswer::Rules(
        rules
            .into_iter()
            .map(|rule| match rule {
                wit::Invalidation::Server(server) => Invalidation::Server(server),
                wit::Invalidation::Tool(wit::ToolRef { server, tool }) => {
                    Invalidation::Tool { server, tool }
                }
                wit::Invalidation::Tag(tag) => Invalidation::Tag(tag),
                wit::Invalidation::Key(key) => Invalidation::Key(key),
            })
            .collect(),
    )
}
