//! Bearer JWTs, checked as an OAuth 2.1 resource server checks access tokens.
//!
//! OWNED BY THE JWT HELPER: this file is a stub with the API the rest of the crate codes
//! against; the implementation replaces it.

use std::sync::Arc;

use mcp_bridge_config::JwtConfig;

use crate::{AuthError, AuthMetrics, Principal};

/// Checks JWTs against the configured issuer, audience, algorithms and key set, and
/// remembers verified tokens by digest until they expire.
pub(crate) struct JwtVerifier {
    config: JwtConfig,
    #[allow(dead_code)]
    metrics: Arc<AuthMetrics>,
}

impl JwtVerifier {
    /// A verifier for `config`. When `previous` reads its keys from the same source, its
    /// key set (and fetch state) carries over, so a reload does not refetch or forget keys.
    /// A JWKS file that cannot be read or parsed is an error; a URL that cannot be fetched
    /// is not (tokens are answered 503 until it can, with fetches bounded by
    /// `jwks_refresh_interval`).
    pub(crate) fn new(
        config: &JwtConfig,
        previous: Option<&JwtVerifier>,
        metrics: &Arc<AuthMetrics>,
    ) -> Result<JwtVerifier, crate::error::SetupError> {
        let _ = previous;
        Ok(JwtVerifier {
            config: config.clone(),
            metrics: metrics.clone(),
        })
    }

    pub(crate) fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// The principal `token` (the bearer credential, without the scheme) authenticates.
    pub(crate) async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let _ = token;
        Err(AuthError::UnknownCredential)
    }
}
