//! The values a policy reads and returns are the policy crate's ([`mcp_bridge_policy`]),
//! named after the WIT; this module re-exports them and converts the types the WIT
//! bindings generate to them and back. Only the SDK's glue uses the conversions.

use std::time::Duration;

pub use mcp_bridge_policy::{
    Annotations, Call, CallKind, Decision, Directive, Invalidation, Outcome, ServerHints, Status,
};

use crate::bindings::mcp_bridge::policy::types as wit;

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

/// A call borrows its strings from the WIT value the host handed the plugin.
impl<'a> From<&'a wit::Call> for Call<'a> {
    fn from(call: &'a wit::Call) -> Call<'a> {
        Call {
            server: &call.server,
            method: &call.method,
            kind: call.kind.into(),
            name: &call.name,
            canonical_arguments: &call.canonical_arguments,
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
            principal: call.principal.as_deref(),
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
    fn a_call_borrows_from_its_wit_value() {
        let wit_call = wit::Call {
            server: "demo".to_owned(),
            method: "tools/call".to_owned(),
            kind: wit::CallKind::ReadResource,
            name: "file:///a".to_owned(),
            canonical_arguments: "{}".to_owned(),
            annotations: wit::Annotations {
                read_only: Some(true),
                destructive: None,
                idempotent: Some(false),
                open_world: None,
            },
            hints: wit::ServerHints {
                ttl_ms: Some(1500),
                private_scope: Some(true),
            },
            principal: Some("alice".to_owned()),
        };
        let call = Call::from(&wit_call);
        assert_eq!(
            (call.server, call.name, call.kind),
            ("demo", "file:///a", CallKind::ReadResource)
        );
        assert_eq!(call.annotations.idempotent, Some(false));
        assert_eq!(call.hints.ttl, Some(Duration::from_millis(1500)));
        assert_eq!(call.hints.private_scope, Some(true));
        assert_eq!(call.principal, Some("alice"));
    }
}
