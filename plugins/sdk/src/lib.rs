//! Write mcp-bridge cache-policy plugins in plain Rust.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2`. It implements
//! [`Plugin`] (its config and constructor) plus any of [`CachePolicy`], [`TtlTable`] and
//! [`InvalidationRules`], enables the matching cargo features of this crate
//! (`cache-policy`, `ttl-table`, `invalidation-rules`), and ends with [`export!`]:
//!
//! ```text
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
//! ```
//!
//! Every answer may abstain (`Decision::Abstain`, `None`): the host asks the policies
//! bound to a server in order, takes the first decision and TTL that is not an
//! abstention, and unions the invalidations; its built-in policy ends every chain.
//!
//! The features choose the WIT world the component is built against, so it exports
//! exactly the interfaces it implements (see `README.md` for the table). Build each
//! plugin crate with its own `cargo build -p`: cargo unifies this crate's features across
//! the packages of one invocation.

#[cfg(not(any(
    feature = "cache-policy",
    feature = "ttl-table",
    feature = "invalidation-rules"
)))]
compile_error!(
    "mcp-bridge-plugin-sdk: enable at least one of the features `cache-policy`, `ttl-table` \
     or `invalidation-rules` (one per policy interface your plugin exports), for example \
     `mcp-bridge-plugin-sdk = { path = \"...\", features = [\"ttl-table\"] }`"
);

// The generated export macro names this crate by its external name; this makes that
// name resolve inside the crate too.
extern crate self as mcp_bridge_plugin_sdk;

/// The guest bindings, generated from the repo's `wit/` for the one world the enabled
/// features select. Every world lands in this module, so the rest of the SDK names one
/// set of generated types whatever the features are.
///
/// | features                                          | world                                    |
/// |---------------------------------------------------|------------------------------------------|
/// | `cache-policy`                                    | `cache-policy-plugin`                    |
/// | `ttl-table`                                       | `ttl-table-plugin`                       |
/// | `invalidation-rules`                              | `invalidation-rules-plugin`              |
/// | `cache-policy`, `ttl-table`                       | `cache-policy-ttl-table-plugin`          |
/// | `cache-policy`, `invalidation-rules`              | `cache-policy-invalidation-rules-plugin` |
/// | `ttl-table`, `invalidation-rules`                 | `ttl-table-invalidation-rules-plugin`    |
/// | `cache-policy`, `ttl-table`, `invalidation-rules` | `policy-plugin`                          |
#[doc(hidden)]
pub mod bindings {
    /// One `generate!` with the options every world shares. The export macro is public and
    /// names this module by its full path, so `mcp_bridge_plugin_sdk::export!` works from an
    /// author's crate, which depends on neither `wit-bindgen` nor this module's layout.
    macro_rules! generate_world {
        ($world:tt) => {
            wit_bindgen::generate!({
                path: "../../wit",
                world: $world,
                pub_export_macro: true,
                export_macro_name: "export_world",
                default_bindings_module: "mcp_bridge_plugin_sdk::bindings",
                runtime_path: "mcp_bridge_plugin_sdk::__private::rt",
            });
        };
    }

    #[cfg(all(
        feature = "cache-policy",
        not(feature = "ttl-table"),
        not(feature = "invalidation-rules")
    ))]
    generate_world!("cache-policy-plugin");

    #[cfg(all(
        not(feature = "cache-policy"),
        feature = "ttl-table",
        not(feature = "invalidation-rules")
    ))]
    generate_world!("ttl-table-plugin");

    #[cfg(all(
        not(feature = "cache-policy"),
        not(feature = "ttl-table"),
        feature = "invalidation-rules"
    ))]
    generate_world!("invalidation-rules-plugin");

    #[cfg(all(
        feature = "cache-policy",
        feature = "ttl-table",
        not(feature = "invalidation-rules")
    ))]
    generate_world!("cache-policy-ttl-table-plugin");

    #[cfg(all(
        feature = "cache-policy",
        not(feature = "ttl-table"),
        feature = "invalidation-rules"
    ))]
    generate_world!("cache-policy-invalidation-rules-plugin");

    #[cfg(all(
        not(feature = "cache-policy"),
        feature = "ttl-table",
        feature = "invalidation-rules"
    ))]
    generate_world!("ttl-table-invalidation-rules-plugin");

    // Also the world of a build with no feature, which fails on the `compile_error!`
    // above; generating something keeps that the only error reported.
    #[cfg(any(
        all(
            feature = "cache-policy",
            feature = "ttl-table",
            feature = "invalidation-rules"
        ),
        not(any(
            feature = "cache-policy",
            feature = "ttl-table",
            feature = "invalidation-rules"
        ))
    ))]
    generate_world!("policy-plugin");
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

    /// Builds the plugin, or says why its config is unusable.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// Parses `config` as `lifecycle.init` does (see [`config::parse`]) and calls
    /// [`Plugin::new`]; handy in unit tests.
    fn from_config_json(config: &str) -> Result<Self, String> {
        Self::new(config::parse(config)?)
    }
}

/// Decides whether and how one call is cached (the `cache-policy` interface; needs the
/// `cache-policy` feature).
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `CachePolicy`",
    note = "the `cache-policy` feature of mcp-bridge-plugin-sdk exports this interface: implement `mcp_bridge_plugin_sdk::CachePolicy` for `{Self}`, or drop the feature"
)]
pub trait CachePolicy: Plugin {
    /// [`Decision::Abstain`] lets the next policy in the chain decide.
    fn decide(&self, call: &Call) -> Decision;
}

/// A table of TTLs by server and tool (the `ttl-table` interface; needs the `ttl-table`
/// feature).
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `TtlTable`",
    note = "the `ttl-table` feature of mcp-bridge-plugin-sdk exports this interface: implement `mcp_bridge_plugin_sdk::TtlTable` for `{Self}`, or drop the feature"
)]
pub trait TtlTable: Plugin {
    /// `None` abstains (no row for this tool); `Some(Duration::ZERO)` means never cache.
    fn ttl(&self, server: &str, tool: &str) -> Option<Duration>;
}

/// What a completed call invalidates (the `invalidation-rules` interface; needs the
/// `invalidation-rules` feature).
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `InvalidationRules`",
    note = "the `invalidation-rules` feature of mcp-bridge-plugin-sdk exports this interface: implement `mcp_bridge_plugin_sdk::InvalidationRules` for `{Self}`, or drop the feature"
)]
pub trait InvalidationRules: Plugin {
    /// `None` abstains; `Some(vec![])` says nothing changed. When no policy speaks, a
    /// call that may have changed something invalidates its whole server.
    fn invalidations(&self, call: &Call, outcome: &Outcome) -> Option<Vec<Invalidation>>;
}

/// Exports a [`Plugin`] type as the component's `lifecycle` plus every policy interface
/// the SDK's features select. Write it once, at the top level of the plugin crate:
///
/// ```text
/// mcp_bridge_plugin_sdk::export!(MyPlugin);
/// ```
///
/// A feature whose trait the type does not implement is a compile error naming the
/// trait.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            type McpBridgePluginExports = $crate::__private::Exports<$plugin>;
            $crate::bindings::export_world!(
                McpBridgePluginExports with_types_in $crate::bindings
            );
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::glue::Exports;
    pub use wit_bindgen::rt;
}
