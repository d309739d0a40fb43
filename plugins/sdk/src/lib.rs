//! Write mcp-bridge cache-policy plugins in plain Rust.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2`. It implements
//! [`Plugin`] (its config and constructor) plus any of [`CachePolicy`], [`TtlTable`] and
//! [`InvalidationRules`], and ends with [`export!`]. That is the whole choice: `export!`
//! finds which of the three traits the type implements, and the plugin's `init` reports
//! them to the bridge, which calls nothing else. A plugin whose answers depend on the
//! call and its config alone says so with `const PURE: bool = true;` in its [`Plugin`]
//! impl, so the bridge may reuse its answers.
//!
//! ```
//! use std::time::Duration;
//! use mcp_bridge_plugin_sdk::{Plugin, TtlTable};
//!
//! #[derive(Default, serde::Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config {
//!     seconds: u64,
//! }
//!
//! struct Flat(Duration);
//!
//! impl Plugin for Flat {
//!     type Config = Config;
//!     const PURE: bool = true;
//!     fn new(config: Config) -> Result<Self, String> {
//!         Ok(Flat(Duration::from_secs(config.seconds)))
//!     }
//! }
//!
//! impl TtlTable for Flat {
//!     fn ttl(&self, _server: &str, _tool: &str) -> Option<Duration> {
//!         Some(self.0)
//!     }
//! }
//!
//! mcp_bridge_plugin_sdk::export!(Flat);
//! # let flat = Flat::from_config_json(r#"{"seconds": 30}"#).unwrap();
//! # assert_eq!(flat.ttl("demo", "get_tasks"), Some(Duration::from_secs(30)));
//! ```
//!
//! Every answer may abstain (`Decision::Abstain`, `None`): the host asks the policies
//! bound to a server in order, takes the first decision and TTL that is not an
//! abstention, and unions the invalidations; its built-in policy ends every chain.
//!
//! Every plugin is built against the one WIT world `plugin` of
//! `mcp-bridge:policy@0.3.0`, so any number of plugin crates build together in one
//! `cargo build`. The tutorial in `README.md` is compiled as a test of this crate.

// The generated export macro names this crate by its external name; this makes that
// name resolve inside the crate too.
extern crate self as mcp_bridge_plugin_sdk;

/// The guest bindings, generated from the repo's `wit/` for its one world, `plugin`.
/// The export macro is public and names this module by its full path, so
/// `mcp_bridge_plugin_sdk::export!` works from an author's crate, which depends on
/// neither `wit-bindgen` nor this module's layout.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "mcp_bridge_plugin_sdk::bindings",
        runtime_path: "mcp_bridge_plugin_sdk::__private::rt",
    });
}

pub mod config;
mod glue;
pub mod log;
mod types;

use std::time::Duration;

/// The policy vocabulary the host speaks too; the types below are re-exported from it.
pub use mcp_bridge_policy as policy;
pub use serde_json;
pub use types::{
    Annotations, Call, CallKind, Decision, Directive, Invalidation, Outcome, ServerHints, Status,
};

/// The names most plugins need: `use mcp_bridge_plugin_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::config::{ConfigDuration, TtlMap};
    pub use crate::log;
    pub use crate::{
        Annotations, CachePolicy, Call, CallKind, Decision, Directive, Invalidation,
        InvalidationRules, Outcome, Plugin, ServerHints, Status, TtlTable,
    };
}

/// A plugin: its config and how to build it from that config.
///
/// The host passes the plugin's `config` table from the bridge config as JSON to
/// `lifecycle.init`; the SDK deserializes it into [`Plugin::Config`] (no config, `null`
/// or `{}` give `Config::default()`) and calls [`Plugin::new`]. An error from either
/// rejects the plugin with that message. The plugin then answers every later call of
/// the instance through `&self`; another `init` replaces it.
pub trait Plugin: Sized + 'static {
    /// The plugin's config. `#[serde(default, deny_unknown_fields)]` on a struct makes
    /// every field optional and turns a misspelt key into an error naming it.
    type Config: serde::de::DeserializeOwned + Default;

    /// Whether the plugin is pure: every answer of every trait it implements depends on
    /// that call's arguments and the plugin's config alone, never on earlier calls (no
    /// counters, caches or anything else kept in `Cell`, `RefCell` or statics between
    /// calls). `init` reports it to the bridge, which may then answer an identical call
    /// with the plugin's earlier answer instead of calling it: the policy lab does, which
    /// makes its replays faster. The bridge cannot check the promise. The
    /// default, `false`, has every question asked.
    const PURE: bool = false;

    /// Builds the plugin, or says why its config is unusable.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// Parses `config` as `lifecycle.init` does (see [`config::parse`]) and calls
    /// [`Plugin::new`]; handy in unit tests.
    fn from_config_json(config: &str) -> Result<Self, String> {
        Self::new(config::parse(config)?)
    }
}

/// Decides whether and how one call is cached (the `cache-policy` interface).
pub trait CachePolicy: Plugin {
    /// [`Decision::Abstain`] lets the next policy in the chain decide.
    fn decide(&self, call: &Call) -> Decision;
}

/// A table of TTLs by server and tool (the `ttl-table` interface).
pub trait TtlTable: Plugin {
    /// `None` abstains (no row for this tool); `Some(Duration::ZERO)` means never cache.
    fn ttl(&self, server: &str, tool: &str) -> Option<Duration>;
}

/// What a completed call invalidates (the `invalidation-rules` interface).
pub trait InvalidationRules: Plugin {
    /// `None` abstains; `Some(vec![])` says nothing changed. When no policy speaks, a
    /// call that may have changed something invalidates its whole server.
    fn invalidations(&self, call: &Call, outcome: &Outcome) -> Option<Vec<Invalidation>>;
}

/// Exports a [`Plugin`] type as the plugin component. Write it once, at the top level
/// of the plugin crate:
///
/// ```text
/// mcp_bridge_plugin_sdk::export!(MyPlugin);
/// ```
///
/// The component exports every interface of the WIT world; the ones whose trait
/// ([`CachePolicy`], [`TtlTable`], [`InvalidationRules`]) the type does not implement
/// abstain, and `init` leaves them out of the capabilities it reports, so the bridge
/// never calls them. A type that implements none of the three is rejected when it loads.
/// `init` reports [`Plugin::PURE`] with them.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            struct McpBridgePlugin;

            impl $crate::__private::Export for McpBridgePlugin {
                type Plugin = $plugin;

                fn dispatch() -> $crate::__private::Dispatch<$plugin> {
                    $crate::__dispatch!($plugin)
                }
            }

            type McpBridgePluginExports = $crate::__private::Exports<McpBridgePlugin>;
            $crate::bindings::export_world!(
                McpBridgePluginExports with_types_in $crate::bindings
            );
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::glue::{
        Detect, Dispatch, Export, Exports, ImplementsCachePolicy, ImplementsInvalidationRules,
        ImplementsTtlTable, LacksCachePolicy, LacksInvalidationRules, LacksTtlTable,
    };
    pub use wit_bindgen::rt;
}

/// The tutorial in `README.md`, compiled and run as a doctest so it cannot drift from
/// the SDK.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeTutorial;
