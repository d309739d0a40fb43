//! A token issuer for the benches: an Ed25519 signing key made for the run, its JWKS, and
//! tokens for any principal.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub(crate) const ISSUER: &str = "https://issuer.bench.invalid";
pub(crate) const AUDIENCE: &str = "https://bridge.bench.invalid/mcp";
/// The PKCS#8 DER prefix of an Ed25519 private key given as its 32-byte seed (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An Ed25519 signing key made for this run, its JWKS, and a token for `principal`.
pub(crate) struct Issuer {
    key: EncodingKey,
    pub(crate) jwks: Value,
}

impl Issuer {
    pub(crate) fn new() -> Result<Issuer> {
        let seed: [u8; 32] = rand::random();
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let key = EncodingKey::from_ed_der(&der);
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::EdDSA)?)?;
        jwk["kid"] = json!("bench");
        Ok(Issuer {
            key,
            jwks: json!({ "keys": [jwk] }),
        })
    }

    pub(crate) fn token(&self, principal: &str) -> Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": principal,
            "iat": now, "exp": now + 3600, "scope": "mcp",
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("bench".to_owned());
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}
