//! Credentials the bridge knows by digest: the `[[auth.api_keys]]` and the shared
//! `http.auth_token`. A presented credential is hashed once and compared against every
//! known digest in constant time, so neither which key matched, nor where a wrong one
//! differs, nor how many keys exist shows in the timing of one comparison.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::principal::{CredentialKind, Principal};

/// A SHA-256 digest of a credential.
pub(crate) type CredentialDigest = [u8; 32];

pub(crate) fn digest(credential: &str) -> CredentialDigest {
    Sha256::digest(credential.as_bytes()).into()
}

/// Whether two digests are equal, looking at every byte whatever the first difference.
pub(crate) fn digests_equal(a: &CredentialDigest, b: &CredentialDigest) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The principals of the credentials known by digest.
#[derive(Default)]
pub(crate) struct KeyRing {
    keys: Vec<(CredentialDigest, Principal)>,
}

impl KeyRing {
    pub(crate) fn add(
        &mut self,
        digest: CredentialDigest,
        name: &str,
        roles: &[String],
        credential: CredentialKind,
    ) {
        self.keys.push((
            digest,
            Principal {
                name: Arc::from(name),
                roles: Arc::from(roles.to_vec()),
                scopes: Arc::from(Vec::new()),
                credential,
                expires_at: None,
            },
        ));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The principal whose credential has `presented` as its digest. Every entry is
    /// compared, even after a match.
    pub(crate) fn find(&self, presented: &CredentialDigest) -> Option<&Principal> {
        let mut found = None;
        for (known, principal) in &self.keys {
            if digests_equal(known, presented) && found.is_none() {
                found = Some(principal);
            }
        }
        found
    }
}

/// The credential of an `Authorization: Bearer <token>` header. The scheme is matched without
/// regard to case (RFC 9110 section 11.1), and any run of spaces may follow it.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        for value in [
            "Bearer t0k",
            "bearer t0k",
            "BEARER t0k",
            "bEaReR   t0k",
            " Bearer t0k ",
        ] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value:?}");
        }
        for value in ["Basic t0k", "Bearert0k", "t0k", "Bearer", "Bearer ", ""] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn digests_are_equal_only_for_equal_credentials() {
        let secret = digest("secret");
        assert!(digests_equal(&secret, &digest("secret")));
        assert!(!digests_equal(&secret, &digest("secreT")));
        assert!(!digests_equal(&secret, &digest("secret-longer")));
        assert!(!digests_equal(&secret, &digest("")));
    }

    #[test]
    fn key_ring_finds_the_principal_of_a_digest_only() {
        let mut ring = KeyRing::default();
        ring.add(
            digest("alpha-key"),
            "alpha",
            &["ci".to_owned()],
            CredentialKind::ApiKey,
        );
        ring.add(digest("beta-key"), "beta", &[], CredentialKind::ApiKey);
        let found = ring.find(&digest("beta-key")).map(|p| p.name.to_string());
        assert_eq!(found.as_deref(), Some("beta"));
        assert!(ring.find(&digest("beta-key ")).is_none());
        assert!(ring.find(&digest("gamma")).is_none());
        assert!(
            ring.find(&digest("alpha-key"))
                .is_some_and(|p| p.has_role("ci"))
        );
    }
}
