//! The generated `Guest` traits, implemented once for every plugin: [`Exports<E>`] parses
//! the config, keeps the plugin in a per-instance slot, converts between the WIT types
//! and the SDK's, and calls the author's trait methods.
//!
//! The component always exports all three policy interfaces (the WIT has one world).
//! Which of them the plugin implements is found where `export!` names the plugin type:
//! [`dispatch!`](crate::__dispatch) looks each trait up for that concrete type and
//! records its method, or nothing, in a [`Dispatch`]. `init` reports the implemented
//! ones as the plugin's capabilities, so the host never calls the others; if it does
//! anyway, they abstain.
//!
//! The lookup is autoref specialization: for a concrete type, method resolution tries
//! the receiver `&Detect<P>` before `&&Detect<P>`, so the trait implemented for
//! `Detect<P>` where `P` implements the policy trait wins over the fallback implemented
//! for `&Detect<P>`. It needs no feature flag and no list of traits from the author.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Once;
use std::time::Duration;

use crate::bindings::exports::mcp_bridge::policy as exports;
use crate::bindings::mcp_bridge::policy::types as wit;
use crate::{
    CachePolicy, Call, Decision, Invalidation, InvalidationRules, Outcome, Plugin, TtlTable,
};

use exports::lifecycle::Capabilities;

/// [`CachePolicy::decide`] of a plugin type.
pub type DecideFn<P> = fn(&P, &Call) -> Decision;
/// [`TtlTable::ttl`] of a plugin type.
pub type TtlFn<P> = fn(&P, &str, &str) -> Option<Duration>;
/// [`InvalidationRules::invalidations`] of a plugin type.
pub type InvalidationsFn<P> = fn(&P, &Call, &Outcome) -> Option<Vec<Invalidation>>;

/// The author's implementation of each policy interface, or `None` where the plugin
/// type does not implement the trait.
pub struct Dispatch<P> {
    pub decide: Option<DecideFn<P>>,
    pub ttl: Option<TtlFn<P>>,
    pub invalidations: Option<InvalidationsFn<P>>,
}

impl<P: Plugin> Dispatch<P> {
    /// What `init` reports to the host: the policy traits found, and [`Plugin::PURE`].
    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::empty();
        capabilities.set(Capabilities::CACHE_POLICY, self.decide.is_some());
        capabilities.set(Capabilities::TTL_TABLE, self.ttl.is_some());
        capabilities.set(
            Capabilities::INVALIDATION_RULES,
            self.invalidations.is_some(),
        );
        capabilities.set(Capabilities::PURE, P::PURE);
        capabilities
    }
}

/// What `export!` implements for the plugin type it names: the type and its dispatch.
pub trait Export: 'static {
    type Plugin: Plugin;

    fn dispatch() -> Dispatch<Self::Plugin>;
}

/// The receiver of the trait lookups in [`dispatch!`](crate::__dispatch).
pub struct Detect<P>(PhantomData<P>);

impl<P> Detect<P> {
    #[allow(clippy::new_without_default)] // Only the macro makes one.
    pub const fn new() -> Detect<P> {
        Detect(PhantomData)
    }
}

/// Defines the pair of lookup traits for one policy trait: the one implemented for
/// `Detect<P>` when `P` implements it (found first), and the fallback for `&Detect<P>`.
macro_rules! detect {
    ($policy:ident, $found:ident, $missing:ident, $method:ident, $fn:ty, $path:path) => {
        pub trait $found<P> {
            fn $method(&self) -> Option<$fn>;
        }

        impl<P: $policy> $found<P> for Detect<P> {
            fn $method(&self) -> Option<$fn> {
                Some($path)
            }
        }

        pub trait $missing<P> {
            fn $method(&self) -> Option<$fn>;
        }

        impl<P> $missing<P> for &Detect<P> {
            fn $method(&self) -> Option<$fn> {
                None
            }
        }
    };
}

detect!(
    CachePolicy,
    ImplementsCachePolicy,
    LacksCachePolicy,
    cache_policy,
    DecideFn<P>,
    P::decide
);
detect!(
    TtlTable,
    ImplementsTtlTable,
    LacksTtlTable,
    ttl_table,
    TtlFn<P>,
    P::ttl
);
detect!(
    InvalidationRules,
    ImplementsInvalidationRules,
    LacksInvalidationRules,
    invalidation_rules,
    InvalidationsFn<P>,
    P::invalidations
);

/// The [`Dispatch`] of a concrete plugin type: which policy traits it implements.
#[doc(hidden)]
#[macro_export]
macro_rules! __dispatch {
    ($plugin:ty) => {{
        #[allow(unused_imports)]
        use $crate::__private::{
            ImplementsCachePolicy as _, ImplementsInvalidationRules as _, ImplementsTtlTable as _,
            LacksCachePolicy as _, LacksInvalidationRules as _, LacksTtlTable as _,
        };
        let detect = &$crate::__private::Detect::<$plugin>::new();
        $crate::__private::Dispatch::<$plugin> {
            decide: detect.cache_policy(),
            ttl: detect.ttl_table(),
            invalidations: detect.invalidation_rules(),
        }
    }};
}

/// The type `export!` hands to the generated export macro: it implements every
/// interface of the world, each calling the plugin's trait method or abstaining.
pub struct Exports<E>(PhantomData<E>);

thread_local! {
    /// The plugin `init` built. A component instance is single-threaded, so this is one
    /// slot per instance.
    static PLUGIN: RefCell<Option<Rc<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs `body` with the plugin `init` built. The host calls `init` before anything else,
/// so a missing plugin is a host bug and traps.
fn with_plugin<P: Plugin, R>(body: impl FnOnce(&P) -> R) -> R {
    let plugin = PLUGIN
        .with_borrow(Clone::clone)
        .expect("mcp-bridge-plugin-sdk: a policy function was called before `init` succeeded");
    let plugin = plugin
        .downcast_ref::<P>()
        .expect("mcp-bridge-plugin-sdk: the plugin slot holds another type");
    body(plugin)
}

/// Routes panic messages to the host's log at error level. The host reports the last
/// error line with the trap a panic ends in.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload_as_str().unwrap_or("Box<dyn Any>");
            let line = match info.location() {
                Some(location) => format!("panicked at {location}: {message}"),
                None => format!("panicked: {message}"),
            };
            crate::log::error(&line);
            // Outside WebAssembly (unit tests) keep Rust's usual report as well.
            if !cfg!(target_family = "wasm") {
                default_hook(info);
            }
        }));
    });
}

impl<E: Export> exports::lifecycle::Guest for Exports<E> {
    fn init(config: String) -> Result<Capabilities, String> {
        install_panic_hook();
        // A failed (re-)init leaves no plugin behind rather than an outdated one.
        PLUGIN.with_borrow_mut(|slot| *slot = None);
        let plugin = E::Plugin::from_config_json(&config)?;
        PLUGIN.with_borrow_mut(|slot| *slot = Some(Rc::new(plugin)));
        Ok(E::dispatch().capabilities())
    }
}

impl<E: Export> exports::cache_policy::Guest for Exports<E> {
    fn decide(call: wit::Call) -> wit::Decision {
        let Some(decide) = E::dispatch().decide else {
            return wit::Decision::Abstain;
        };
        let call = (&call).into();
        with_plugin(|plugin: &E::Plugin| decide(plugin, &call)).into()
    }
}

impl<E: Export> exports::ttl_table::Guest for Exports<E> {
    fn ttl(server: String, tool: String) -> wit::TtlAnswer {
        let Some(ttl) = E::dispatch().ttl else {
            return wit::TtlAnswer::Abstain;
        };
        match with_plugin(|plugin: &E::Plugin| ttl(plugin, &server, &tool)) {
            Some(ttl) => wit::TtlAnswer::TtlMs(crate::types::millis(ttl)),
            None => wit::TtlAnswer::Abstain,
        }
    }
}

impl<E: Export> exports::invalidation_rules::Guest for Exports<E> {
    fn invalidations(call: wit::Call, outcome: wit::Outcome) -> wit::InvalidationAnswer {
        let Some(invalidations) = E::dispatch().invalidations else {
            return wit::InvalidationAnswer::Abstain;
        };
        let call = (&call).into();
        let outcome = outcome.into();
        match with_plugin(|plugin: &E::Plugin| invalidations(plugin, &call, &outcome)) {
            Some(rules) => {
                wit::InvalidationAnswer::Rules(rules.into_iter().map(Into::into).collect())
            }
            None => wit::InvalidationAnswer::Abstain,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;

    use super::exports::{cache_policy, invalidation_rules, lifecycle, ttl_table};
    use super::*;
    use crate::{Directive, Status};

    #[derive(Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        seconds: u64,
        refuse: bool,
    }

    /// Implements all three policy traits, and is pure.
    struct Probe {
        ttl: Duration,
    }

    impl Plugin for Probe {
        type Config = Config;
        const PURE: bool = true;

        fn new(config: Config) -> Result<Self, String> {
            if config.refuse {
                return Err("refused".to_owned());
            }
            Ok(Probe {
                ttl: Duration::from_secs(config.seconds),
            })
        }
    }

    impl CachePolicy for Probe {
        fn decide(&self, call: &Call) -> Decision {
            match call.is_read_only() {
                true => Directive::ttl(self.ttl).tag(call.name).into(),
                false => Decision::Bypass,
            }
        }
    }

    impl TtlTable for Probe {
        fn ttl(&self, _server: &str, tool: &str) -> Option<Duration> {
            (tool != "abstain").then_some(self.ttl)
        }
    }

    impl InvalidationRules for Probe {
        fn invalidations(&self, call: &Call, outcome: &Outcome) -> Option<Vec<Invalidation>> {
            match outcome.status {
                Status::Error => None,
                _ => Some(vec![Invalidation::tool(call.server, "get_tasks")]),
            }
        }
    }

    /// What `export!` writes for a plugin type.
    macro_rules! exported {
        ($name:ident, $plugin:ty) => {
            struct $name;

            impl Export for $name {
                type Plugin = $plugin;

                fn dispatch() -> Dispatch<$plugin> {
                    crate::__dispatch!($plugin)
                }
            }
        };
    }

    exported!(ProbeExport, Probe);
    type P = Exports<ProbeExport>;

    /// Implements only `TtlTable`, and does not say it is pure.
    struct TableOnly;

    impl Plugin for TableOnly {
        type Config = ();

        fn new((): ()) -> Result<Self, String> {
            Ok(TableOnly)
        }
    }

    impl TtlTable for TableOnly {
        fn ttl(&self, _server: &str, _tool: &str) -> Option<Duration> {
            Some(Duration::from_secs(7))
        }
    }

    exported!(TableOnlyExport, TableOnly);
    type T = Exports<TableOnlyExport>;

    /// Implements none of the policy traits.
    struct Nothing;

    impl Plugin for Nothing {
        type Config = ();

        fn new((): ()) -> Result<Self, String> {
            Ok(Nothing)
        }
    }

    exported!(NothingExport, Nothing);

    fn call(read_only: Option<bool>) -> wit::Call {
        wit::Call {
            server: "demo".to_owned(),
            method: "tools/call".to_owned(),
            kind: wit::CallKind::Tool,
            name: "get_tasks".to_owned(),
            canonical_arguments: r#"{"a":1}"#.to_owned(),
            annotations: wit::Annotations {
                read_only,
                destructive: None,
                idempotent: None,
                open_world: None,
            },
            hints: wit::ServerHints {
                ttl_ms: None,
                private_scope: None,
            },
            principal: None,
        }
    }

    fn outcome(status: wit::Status) -> wit::Outcome {
        wit::Outcome {
            status,
            latency_us: 1500,
            result_bytes: 3,
        }
    }

    #[test]
    fn init_then_calls_through_the_generated_traits() {
        let capabilities = <P as lifecycle::Guest>::init(r#"{"seconds": 30}"#.to_owned()).unwrap();
        assert_eq!(capabilities, Capabilities::all());
        let wit::Decision::Cache(directive) = <P as cache_policy::Guest>::decide(call(Some(true)))
        else {
            panic!("not cached");
        };
        assert_eq!(directive.ttl_ms, Some(30_000));
        assert_eq!(directive.tags, ["get_tasks"]);
        assert!(directive.shared);
        assert!(matches!(
            <P as cache_policy::Guest>::decide(call(None)),
            wit::Decision::Bypass
        ));
        assert!(matches!(
            <P as ttl_table::Guest>::ttl("demo".to_owned(), "x".to_owned()),
            wit::TtlAnswer::TtlMs(30_000)
        ));
        assert!(matches!(
            <P as ttl_table::Guest>::ttl("demo".to_owned(), "abstain".to_owned()),
            wit::TtlAnswer::Abstain
        ));
        let answer = <P as invalidation_rules::Guest>::invalidations(
            call(None),
            outcome(wit::Status::Success),
        );
        let wit::InvalidationAnswer::Rules(rules) = answer else {
            panic!("abstained");
        };
        assert!(matches!(
            rules.as_slice(),
            [wit::Invalidation::Tool(wit::ToolRef { server, tool })]
                if server == "demo" && tool == "get_tasks"
        ));
        assert!(matches!(
            <P as invalidation_rules::Guest>::invalidations(
                call(None),
                outcome(wit::Status::Error)
            ),
            wit::InvalidationAnswer::Abstain
        ));

        // A second init replaces the plugin; a failed one leaves none behind.
        <P as lifecycle::Guest>::init("{}".to_owned()).unwrap();
        assert!(matches!(
            <P as ttl_table::Guest>::ttl("demo".to_owned(), "x".to_owned()),
            wit::TtlAnswer::TtlMs(0)
        ));
        let error = <P as lifecycle::Guest>::init(r#"{"refuse": true}"#.to_owned()).unwrap_err();
        assert_eq!(error, "refused");
        assert!(PLUGIN.with_borrow(Option::is_none));
        let error = <P as lifecycle::Guest>::init(r#"{"secs": 1}"#.to_owned()).unwrap_err();
        assert!(error.contains("unknown field `secs`"), "{error}");
    }

    #[test]
    fn what_a_plugin_does_not_implement_or_declare_is_not_a_capability_and_abstains() {
        let capabilities = <T as lifecycle::Guest>::init("{}".to_owned()).unwrap();
        assert_eq!(capabilities, Capabilities::TTL_TABLE);
        assert!(matches!(
            <T as ttl_table::Guest>::ttl("demo".to_owned(), "x".to_owned()),
            wit::TtlAnswer::TtlMs(7_000)
        ));
        assert!(matches!(
            <T as cache_policy::Guest>::decide(call(Some(true))),
            wit::Decision::Abstain
        ));
        assert!(matches!(
            <T as invalidation_rules::Guest>::invalidations(
                call(None),
                outcome(wit::Status::Success)
            ),
            wit::InvalidationAnswer::Abstain
        ));
        assert!(NothingExport::dispatch().capabilities().is_empty());
    }
}
