//! Who is calling, and what they may do.
//!
//! - [`Authenticator`] turns the credential of a request (a bearer JWT, an API key or the
//!   shared `http.auth_token`) into a [`Principal`], or says why it cannot ([`AuthError`]).
//! - [`access::AccessPolicy`] decides which servers, tools, prompts and resources a
//!   principal may see and call.
//! - [`limits::Limiter`] keeps each principal's token buckets and in-flight caps.
//!
//! Everything here is rebuilt from the config on a reload and swapped in whole by the
//! front; the metrics outlive the rebuilds ([`AuthMetrics`]).
#![forbid(unsafe_code)]

pub mod access;
mod api_keys;
mod authenticator;
mod error;
mod glob;
mod identity;
mod jwks;
mod jwt;
pub mod limits;
mod metrics;
mod principal;

pub use api_keys::bearer_token;
pub use authenticator::{AdminRefusal, Authenticator};
pub use error::{AuthError, SetupError};
pub use identity::{Identity, IdentityHandle};
pub use jwks::install_tls_crypto_provider;
pub use metrics::AuthMetrics;
pub use principal::{CredentialKind, Principal};
