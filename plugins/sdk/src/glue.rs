//! The generated `Guest` traits, implemented once for every plugin: [`Exports<P>`] parses
//! the config, keeps the plugin in a per-instance slot, converts between the WIT types
//! and the SDK's, and calls the author's trait methods.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Once;

use crate::Plugin;
use crate::bindings::exports::mcp_bridge::policy as exports;
#[allow(unused_imports)]
use crate::bindings::mcp_bridge::policy::types as wit;
#[allow(unused_imports)] // Which ones are used depends on the features.
use crate::{CachePolicy, InvalidationRules, TtlTable};

/// The type `export!` hands to the generated export macro: it implements every
/// interface the features select, each one only for plugins that implement its trait.
pub struct Exports<P>(PhantomData<P>);

thread_local! {
    /// The plugin `init` built. A component instance is single-threaded, so this is one
    /// slot per instance.
    static PLUGIN: RefCell<Option<Rc<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs `body` with the plugin `init` built. The host calls `init` before anything else,
/// so a missing plugin is a host bug and traps.
#[allow(dead_code)] // Unused only in a build with no feature, which does not compile.
fn with_plugin<P: Plugin, R>(body: impl FnOnce(&P) -> R) -> R {
    let plugin = PLUGIN
        .with_borrow(Clone::clone)
        .expect("mcp-bridge-plugin-sdk: a policy function was called before `init` succeeded");
    let plugin = plugin
        .downcast_ref::<P>()
        .expect("mcp-bridge-plugin-sdk: the plugin slot holds another type");
    body(plugin)
}

/// Routes panic messages to the host's log at error level. The sandbox gives plugins no
/// stderr, and the host reports the last error line with the trap a panic ends in.
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

impl<P: Plugin> exports::lifecycle::Guest for Exports<P> {
    fn init(config: String) -> Result<(), String> {
        install_panic_hook();
        // A failed (re-)init leaves no plugin behind rather than an outdated one.
        PLUGIN.with_borrow_mut(|slot| *slot = None);
        let plugin = P::from_config_json(&config)?;
        PLUGIN.with_borrow_mut(|slot| *slot = Some(Rc::new(plugin)));
        Ok(())
    }
}

#[cfg(feature = "cache-policy")]
impl<P: CachePolicy> exports::cache_policy::Guest for Exports<P> {
    fn decide(call: wit::Call) -> wit::Decision {
        let call = (&call).into();
        with_plugin(|plugin: &P| plugin.decide(&call)).into()
    }
}

#[cfg(feature = "ttl-table")]
impl<P: TtlTable> exports::ttl_table::Guest for Exports<P> {
    fn ttl(server: String, tool: String) -> wit::TtlAnswer {
        match with_plugin(|plugin: &P| plugin.ttl(&server, &tool)) {
            Some(ttl) => wit::TtlAnswer::TtlMs(crate::types::millis(ttl)),
            None => wit::TtlAnswer::Abstain,
        }
    }
}

#[cfg(feature = "invalidation-rules")]
impl<P: InvalidationRules> exports::invalidation_rules::Guest for Exports<P> {
    fn invalidations(call: wit::Call, outcome: wit::Outcome) -> wit::InvalidationAnswer {
        let call = (&call).into();
        let outcome = outcome.into();
        match with_plugin(|plugin: &P| plugin.invalidations(&call, &outcome)) {
            Some(rules) => {
                wit::InvalidationAnswer::Rules(rules.into_iter().map(Into::into).collect())
            }
            None => wit::InvalidationAnswer::Abstain,
        }
    }
}

#[cfg(all(
    test,
    feature = "cache-policy",
    feature = "ttl-table",
    feature = "invalidation-rules"
))]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;

    use super::exports::{cache_policy, invalidation_rules, lifecycle, ttl_table};
    use super::*;
    use crate::{Call, Decision, Directive, Invalidation, Outcome, Status};

    #[derive(Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        seconds: u64,
        refuse: bool,
    }

    struct Probe {
        ttl: Duration,
    }

    impl Plugin for Probe {
        type Config = Config;

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

    type P = Exports<Probe>;

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

    #[test]
    fn init_then_calls_through_the_generated_traits() {
        <P as lifecycle::Guest>::init(r#"{"seconds": 30}"#.to_owned()).unwrap();
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
        let outcome = |status| wit::Outcome {
            status,
            latency_us: 1500,
            result_bytes: 3,
        };
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
}
