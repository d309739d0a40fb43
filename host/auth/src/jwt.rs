//! Bearer JWTs, checked as an OAuth 2.1 resource server checks access tokens.
//!
//! A token is checked in this order, each step refusing it with its own [`AuthError`]:
//! its size; the header's `alg` against the allow-list (so `none` and HMAC never reach a
//! key); the key named by `kid` (fetching the key set again, within its rate limit, when
//! the `kid` is unknown), whose type, curve and stated `alg` must fit the token's `alg`
//! (so a public key can never serve as an HMAC secret); the signature; then `exp`, `nbf`
//! (with `leeway`), `iss`, `aud`, the principal, roles and scopes claims; and last the
//! required scopes.
//!
//! A token that passes is remembered by its SHA-256 digest until its `exp` (never longer),
//! so each token's signature is checked once, not once per request. Refused tokens are not
//! remembered.

mod claims;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_jwks;
mod token_cache;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use mcp_bridge_config::{JwksSource, JwtAlgorithm, JwtConfig, MAX_BEARER_TOKEN_BYTES};
use prometheus::IntCounter;

use crate::error::SetupError;
use crate::jwks::{FetchSettings, FetchTrigger, KeyChoiceError, KeySet, Keys, VerificationKey};
use crate::{AuthError, AuthMetrics, Principal};
use token_cache::{CachedToken, TokenCache};

/// Checks JWTs against the configured issuer, audience, algorithms and key set, and
/// remembers verified tokens by digest until they expire.
pub(crate) struct JwtVerifier {
    config: JwtConfig,
    key_set: Arc<KeySet>,
    cache: TokenCache,
    settings: FetchSettings,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    /// Signatures checked by this verifier: what the token cache saves (read by tests).
    signature_checks: AtomicU64,
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
    ) -> Result<JwtVerifier, SetupError> {
        let settings = FetchSettings {
            refresh_interval: config.jwks_refresh_interval,
            max_age: config.jwks_max_age,
            timeout: config.jwks_fetch_timeout,
        };
        let trigger = match previous {
            Some(_) => FetchTrigger::Reload,
            None => FetchTrigger::Startup,
        };
        let shared = previous.filter(|previous| match &config.jwks {
            // A file is read again on every reload, so an edited file applies.
            JwksSource::File(_) => false,
            JwksSource::Url(_) => {
                previous.key_set.source() == &config.jwks
                    && previous.config.jwks_ca_file == config.jwks_ca_file
            }
        });
        let key_set = match (&config.jwks, shared) {
            (_, Some(previous)) => previous.key_set.clone(),
            (JwksSource::File(path), None) => KeySet::from_file(path, trigger, metrics)?,
            (JwksSource::Url(url), None) => {
                let roots = config.jwks_ca_file.as_deref();
                KeySet::from_url(url, roots, trigger, settings, metrics)?
            }
        };
        // The verified tokens stay valid across a reload only if nothing that checked them
        // changed: the same settings and the very same key set.
        let cache = match shared {
            Some(previous) if previous.config == *config => previous.cache.clone(),
            _ => TokenCache::new(config.token_cache_entries),
        };
        Ok(JwtVerifier {
            config: config.clone(),
            key_set,
            cache,
            settings,
            cache_hits: metrics.token_cache_total.with_label_values(&["hit"]),
            cache_misses: metrics.token_cache_total.with_label_values(&["miss"]),
            signature_checks: AtomicU64::new(0),
        })
    }

    pub(crate) fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// The principal `token` (the bearer credential, without the scheme) authenticates.
    #[cfg(test)]
    pub(crate) async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_digested(token, crate::api_keys::digest(token))
            .await
    }

    /// As [`JwtVerifier::verify`], with the token's SHA-256 digest computed by the caller
    /// (the authenticator hashes every credential once, for the API keys, and the token
    /// cache is keyed by the same digest).
    pub(crate) async fn verify_digested(
        &self,
        token: &str,
        digest: [u8; 32],
    ) -> Result<Principal, AuthError> {
        if token.len() > MAX_BEARER_TOKEN_BYTES {
            return Err(AuthError::InvalidToken(format!(
                "the token is longer than {MAX_BEARER_TOKEN_BYTES} bytes"
            )));
        }
        if let Some(principal) = self.cache.get(&digest, SystemTime::now()) {
            self.cache_hits.inc();
            return Ok(principal);
        }
        self.cache_misses.inc();
        let principal = self.verify_uncached(token).await?;
        self.remember(digest, &principal);
        Ok(principal)
    }

    /// How many signatures this verifier has checked (the token cache's misses that got
    /// as far as a key).
    #[cfg(test)]
    pub(crate) fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    fn remember(&self, digest: [u8; 32], principal: &Principal) {
        let Some(expires_at) = principal.expires_at else {
            return;
        };
        // A token inside its leeway past `exp` is accepted but not remembered.
        let Ok(lifetime) = expires_at.duration_since(SystemTime::now()) else {
            return;
        };
        if lifetime.is_zero() {
            return;
        }
        let entry = CachedToken {
            principal: principal.clone(),
            expires_at,
        };
        self.cache.insert(digest, entry, SystemTime::now());
    }

    async fn verify_uncached(&self, token: &str) -> Result<Principal, AuthError> {
        let parts = claims::TokenParts::split(token)?;
        let header = claims::parse_header(parts.header, &self.config.algorithms)?;
        let keys = self
            .key_set
            .current(self.settings)
            .await
            .map_err(AuthError::KeysUnavailable)?;
        let keys = self.keys_with_token_key(keys, &header).await;
        let key = choose_key(&keys, &header)?;
        self.check_signature(&parts, key, header.alg)?;
        let claims = claims::parse_claims(parts.payload)?;
        let principal = claims::principal_from_claims(&claims, &self.config, SystemTime::now())?;
        if let Some(missing) = claims::first_missing_scope(&principal, &self.config.required_scopes)
        {
            return Err(AuthError::InsufficientScope(missing.clone()));
        }
        Ok(principal)
    }

    /// `keys`, or the key set fetched again when no key in `keys` is the token's (within
    /// the refresh rate limit; otherwise `keys` as they are, and the token is refused).
    async fn keys_with_token_key(&self, keys: Arc<Keys>, header: &claims::Header) -> Arc<Keys> {
        let missing = matches!(
            keys.choose(header.kid.as_deref(), header.alg),
            Err(KeyChoiceError::Unknown)
        );
        if !missing {
            return keys;
        }
        match self.key_set.refresh_for_unknown_key(self.settings).await {
            Some(refreshed) => refreshed,
            None => keys,
        }
    }

    fn check_signature(
        &self,
        parts: &claims::TokenParts<'_>,
        key: &VerificationKey,
        alg: JwtAlgorithm,
    ) -> Result<(), AuthError> {
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        let verified = jsonwebtoken::crypto::verify(
            parts.signature,
            parts.signed.as_bytes(),
            &key.decoding,
            jose_algorithm(alg),
        );
        match verified {
            Ok(true) => Ok(()),
            // A signature that is not base64url, or of the wrong length for the key, is as
            // bad as one that does not match.
            Ok(false) | Err(_) => Err(AuthError::BadSignature),
        }
    }
}

fn choose_key<'k>(
    keys: &'k Keys,
    header: &claims::Header,
) -> Result<&'k VerificationKey, AuthError> {
    keys.choose(header.kid.as_deref(), header.alg)
        .map_err(|error| match error {
            KeyChoiceError::Unknown => match &header.kid {
                Some(kid) => AuthError::UnknownKey(crate::jwks::truncate(kid)),
                None => AuthError::NoKeyId {
                    alg: header.alg.as_str().to_owned(),
                    candidates: 0,
                },
            },
            KeyChoiceError::Mismatch { kty } => AuthError::KeyMismatch {
                alg: header.alg.as_str().to_owned(),
                kid: header
                    .kid
                    .as_deref()
                    .map(crate::jwks::truncate)
                    .unwrap_or_default(),
                kty: kty.to_owned(),
            },
            KeyChoiceError::Ambiguous { candidates } => AuthError::NoKeyId {
                alg: header.alg.as_str().to_owned(),
                candidates,
            },
        })
}

fn jose_algorithm(alg: JwtAlgorithm) -> jsonwebtoken::Algorithm {
    match alg {
        JwtAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
        JwtAlgorithm::Rs384 => jsonwebtoken::Algorithm::RS384,
        JwtAlgorithm::Rs512 => jsonwebtoken::Algorithm::RS512,
        JwtAlgorithm::Ps256 => jsonwebtoken::Algorithm::PS256,
        JwtAlgorithm::Ps384 => jsonwebtoken::Algorithm::PS384,
        JwtAlgorithm::Ps512 => jsonwebtoken::Algorithm::PS512,
        JwtAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        JwtAlgorithm::Es384 => jsonwebtoken::Algorithm::ES384,
        JwtAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
    }
}
