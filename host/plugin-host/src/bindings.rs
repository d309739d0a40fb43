//! Host bindings generated from `wit/` (the single source of truth) for every contract
//! version the host serves, and conversions between the generated types and the policy
//! seam's own types.

use std::time::Duration;

use mcp_bridge_policy::{
    Annotations, Call, CallKind, Decision, Directive, Invalidation, InvalidationAnswer, Outcome,
    Status, TtlAnswer,
};

/// The current contract, `mcp-bridge:policy@0.3.0` (`wit/policy.wit`): one world, and
/// `lifecycle.init` reports which policy interfaces the plugin implements and whether it
/// is pure.
pub mod current {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plugin",
    });
}

/// The second contract, `mcp-bridge:policy@0.2.0` (the frozen copy in `wit/v0.2.0/`):
/// the current world without the `pure` capability. Its types are the current ones, as
/// for [`legacy`].
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.2.0",
        world: "plugin",
        with: {
            "mcp-bridge:policy/types@0.2.0": super::current::mcp_bridge::policy::types,
        },
    });
}

/// The first contract, `mcp-bridge:policy@0.1.0` (the frozen copy in `wit/v0.1.0/`):
/// a plugin exports the subset of policy interfaces it implements. Its types are the
/// current ones (the component model compares types by structure, and every version's
/// are the same), so one set of conversions serves both.
pub mod legacy {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1.0",
        world: "policy-plugin",
        with: {
            "mcp-bridge:policy/types@0.1.0": super::current::mcp_bridge::policy::types,
        },
    });
}

use self::current::mcp_bridge::policy::types as wit;
pub use current::exports::mcp_bridge::policy::lifecycle::Capabilities;
pub use v0_2::exports::mcp_bridge::policy::lifecycle::Capabilities as CapabilitiesV0_2;

/// A version of the WIT package a plugin is built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `mcp-bridge:policy@0.1.0`: exports probed, no capabilities.
    V0_1,
    /// `mcp-bridge:policy@0.2.0`: one world, capabilities reported by `init`.
    V0_2,
    /// `mcp-bridge:policy@0.3.0`: 0.2.0 with the `pure` capability.
    V0_3,
}

impl Contract {
    /// Every version the host serves, newest first.
    pub const ALL: [Contract; 3] = [Contract::V0_3, Contract::V0_2, Contract::V0_1];

    /// The package with its version, as plugins and the admin API name it.
    pub fn package(self) -> &'static str {
        match self {
            Contract::V0_1 => "mcp-bridge:policy@0.1.0",
            Contract::V0_2 => "mcp-bridge:policy@0.2.0",
            Contract::V0_3 => "mcp-bridge:policy@0.3.0",
        }
    }

    /// The fully qualified export names of this version's interfaces.
    pub fn names(self) -> InterfaceNames {
        match self {
            Contract::V0_1 => InterfaceNames {
                lifecycle: "mcp-bridge:policy/lifecycle@0.1.0",
                cache_policy: "mcp-bridge:policy/cache-policy@0.1.0",
                ttl_table: "mcp-bridge:policy/ttl-table@0.1.0",
                invalidation_rules: "mcp-bridge:policy/invalidation-rules@0.1.0",
            },
            Contract::V0_2 => InterfaceNames {
                lifecycle: "mcp-bridge:policy/lifecycle@0.2.0",
                cache_policy: "mcp-bridge:policy/cache-policy@0.2.0",
                ttl_table: "mcp-bridge:policy/ttl-table@0.2.0",
                invalidation_rules: "mcp-bridge:policy/invalidation-rules@0.2.0",
            },
            Contract::V0_3 => InterfaceNames {
                lifecycle: "mcp-bridge:policy/lifecycle@0.3.0",
                cache_policy: "mcp-bridge:policy/cache-policy@0.3.0",
                ttl_table: "mcp-bridge:policy/ttl-table@0.3.0",
                invalidation_rules: "mcp-bridge:policy/invalidation-rules@0.3.0",
            },
        }
    }
}

/// The export names of one contract version's interfaces, which the host looks up.
#[derive(Debug, Clone, Copy)]
pub struct InterfaceNames {
    pub lifecycle: &'static str,
    pub cache_policy: &'static str,
    pub ttl_table: &'static str,
    pub invalidation_rules: &'static str,
}

/// Defines a policy interface's guest over every contract version: the generated
/// function wrappers differ by version, their Rust types do not.
macro_rules! guest {
    ($(#[$doc:meta])* $name:ident, $module:ident, $call:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub enum $name {
            Current(current::exports::mcp_bridge::policy::$module::Guest),
            V0_2(v0_2::exports::mcp_bridge::policy::$module::Guest),
            Legacy(legacy::exports::mcp_bridge::policy::$module::Guest),
        }

        impl $name {
            pub fn $call(
                &self,
                store: &mut wasmtime::Store<super::sandbox::PluginState>,
                $($arg: $ty),*
            ) -> wasmtime::Result<$ret> {
                match self {
                    $name::Current(guest) => guest.$call(store, $($arg),*),
                    $name::V0_2(guest) => guest.$call(store, $($arg),*),
                    $name::Legacy(guest) => guest.$call(store, $($arg),*),
                }
            }
        }
    };
}

guest!(
    /// `cache-policy` of a live instance.
    CachePolicyGuest, cache_policy, call_decide(call: &wit::Call) -> wit::Decision
);
guest!(
    /// `ttl-table` of a live instance.
    TtlTableGuest, ttl_table, call_ttl(server: &str, tool: &str) -> wit::TtlAnswer
);
guest!(
    /// `invalidation-rules` of a live instance.
    InvalidationRulesGuest,
    invalidation_rules,
    call_invalidations(call: &wit::Call, outcome: wit::Outcome) -> wit::InvalidationAnswer
);

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
