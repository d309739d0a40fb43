//! Session tokens: the `Mcp-Session-Id` as a self-contained, signed record of the session,
//! so any replica holding the key can continue a session another replica opened.
//!
//! A token reads `v1.<payload>.<mac>`: the payload is compact JSON ([`SessionClaims`]) in
//! unpadded base64url, and the MAC is HMAC-SHA256 over `v1.<payload>` (the ASCII text,
//! version included), also base64url. Only visible ASCII appears, as MCP requires of session
//! ids. The payload is signed, not encrypted: it holds nothing a client did not send or may
//! not see (its own client info and capabilities, the session's version and endpoint), and
//! the owner only as a digest.
//!
//! A presented token is checked in this order, each step bounded, before anything trusts
//! it: its length ([`MAX_TOKEN_BYTES`]), the version prefix, the MAC (against every key, in
//! constant time, over the text as received), and only then is the payload decoded and parsed,
//! and its age checked.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use mcp_bridge_config::SessionsConfig;

/// What every token of this format starts with.
pub(crate) const TOKEN_PREFIX: &str = "v1.";
/// The longest `Mcp-Session-Id` the bridge reads (8 KiB); a longer one is refused unread.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 << 10;
/// The largest client capabilities object a token carries as sent (2 KiB of JSON); a larger
/// one keeps only its top-level keys, each with an empty object.
pub(crate) const MAX_CAPABILITIES_BYTES: usize = 2 << 10;
/// How many bytes a random key made at start has (when `[sessions] keys` is not set).
const RANDOM_KEY_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// What a token says about its session. Field names are short: the token travels on every
/// request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SessionClaims {
    /// The session's identity: 128 random bits in hex, used for revocation and in logs.
    #[serde(rename = "sid")]
    pub session: String,
    /// The endpoint the session belongs to: a server name, or empty for `/mcp`.
    #[serde(rename = "end")]
    pub endpoint: String,
    #[serde(rename = "ver")]
    pub protocol_version: String,
    /// `clientInfo.name`, cut to `MAX_CLIENT_INFO_CHARS`.
    #[serde(rename = "cn")]
    pub client_name: String,
    /// `clientInfo.version`, cut likewise.
    #[serde(rename = "cv")]
    pub client_version: String,
    /// The client's capabilities, bounded by [`bound_capabilities`].
    #[serde(rename = "cap")]
    pub capabilities: Value,
    /// The owner principal, as [`owner_digest`] of its name: the binding without the name.
    #[serde(rename = "own")]
    pub owner: String,
    /// Issued at, in unix seconds.
    pub iat: u64,
    /// Expires at, in unix seconds.
    pub exp: u64,
}

/// Why a presented token was refused. Every refusal is an unknown session (404) to the
/// client; the reason labels `session_tokens_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRefusal {
    /// Not a token of this format: too long, another version, not base64url, no JSON.
    Malformed,
    /// The MAC matches none of the keys: forged, tampered with, or signed by a key that is
    /// no longer listed.
    Mac,
    /// Past its `exp`, or older than `max_age`.
    Expired,
    /// Ended by a DELETE (here, or on another replica).
    Revoked,
    /// Valid, but for another endpoint: as unknown there as a missing session.
    Endpoint,
}

impl TokenRefusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            TokenRefusal::Malformed => "malformed",
            TokenRefusal::Mac => "mac",
            TokenRefusal::Expired => "expired",
            TokenRefusal::Revoked => "revoked",
            TokenRefusal::Endpoint => "endpoint",
        }
    }
}

/// A key's name: the first 8 bytes of its SHA-256. A session remembers which key signed its
/// token, so a reload that drops the key ends the session here too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KeyId(u64);

struct SessionKey {
    secret: Vec<u8>,
    id: KeyId,
}

impl SessionKey {
    fn new(secret: Vec<u8>) -> SessionKey {
        let digest = Sha256::digest(&secret);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        SessionKey {
            secret,
            id: KeyId(u64::from_be_bytes(first)),
        }
    }

    /// A MAC keyed with this key. HMAC takes keys of every length, so this is always
    /// `Some`; the `Option` only spares the code a panic path.
    fn mac(&self) -> Option<HmacSha256> {
        HmacSha256::new_from_slice(&self.secret).ok()
    }
}

/// The keys a replica signs and verifies with, and how long a token lasts.
pub(crate) struct TokenKeys {
    /// The first signs; every one verifies. Never empty.
    keys: Vec<SessionKey>,
    pub max_age: Duration,
    /// Whether the key was made at start because none was configured.
    pub random: bool,
}

impl TokenKeys {
    /// The keys of `config`, or one random key when it lists none.
    pub(crate) fn from_config(config: &SessionsConfig) -> TokenKeys {
        let keys: Vec<SessionKey> = config
            .keys
            .iter()
            .map(|key| SessionKey::new(key.expose().as_bytes().to_vec()))
            .collect();
        if keys.is_empty() {
            return TokenKeys::random(config.max_age);
        }
        TokenKeys {
            keys,
            max_age: config.max_age,
            random: false,
        }
    }

    /// One key made from random bytes: tokens verify only on this replica, until it stops.
    pub(crate) fn random(max_age: Duration) -> TokenKeys {
        let secret: [u8; RANDOM_KEY_BYTES] = rand::random();
        TokenKeys {
            keys: vec![SessionKey::new(secret.to_vec())],
            max_age,
            random: true,
        }
    }

    /// The keys a reload installs: `config`'s, or, when it still lists none, the random key
    /// already in use (a new random key would end every session).
    pub(crate) fn reloaded(&self, config: &SessionsConfig) -> TokenKeys {
        if config.keys.is_empty() && self.random {
            return TokenKeys {
                keys: self
                    .keys
                    .iter()
                    .map(|key| SessionKey::new(key.secret.clone()))
                    .collect(),
                max_age: config.max_age,
                random: true,
            };
        }
        TokenKeys::from_config(config)
    }

    /// Whether a token signed by `key` still verifies.
    pub(crate) fn knows(&self, key: KeyId) -> bool {
        self.keys.iter().any(|known| known.id == key)
    }

    /// The key new tokens are signed with.
    fn signing(&self) -> &SessionKey {
        // `keys` is never empty: `from_config` falls back to a random key.
        &self.keys[0]
    }

    /// Signs `claims` with the first key; `None` when the token would be longer than
    /// [`MAX_TOKEN_BYTES`] (it could not be presented back).
    pub(crate) fn sign(&self, claims: &SessionClaims) -> Option<(String, KeyId)> {
        let payload = serde_json::to_vec(claims).ok()?;
        let mut token = String::with_capacity(TOKEN_PREFIX.len() + payload.len() * 4 / 3 + 48);
        token.push_str(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let key = self.signing();
        let mut mac = key.mac()?;
        mac.update(token.as_bytes());
        let tag = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut token);
        (token.len() <= MAX_TOKEN_BYTES).then_some((token, key.id))
    }

    /// Checks a presented token and returns what it says and which key signed it. `now` is
    /// in unix seconds.
    pub(crate) fn verify(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(SessionClaims, KeyId), TokenRefusal> {
        if token.len() > MAX_TOKEN_BYTES || !token.starts_with(TOKEN_PREFIX) {
            return Err(TokenRefusal::Malformed);
        }
        let Some((signed, tag_text)) = token.rsplit_once('.') else {
            return Err(TokenRefusal::Malformed);
        };
        let Some(payload_text) = signed.strip_prefix(TOKEN_PREFIX) else {
            return Err(TokenRefusal::Malformed);
        };
        // A SHA-256 tag is 32 bytes: 43 base64url characters.
        let mut tag = [0u8; 32];
        if tag_text.len() != 43 || URL_SAFE_NO_PAD.decode_slice(tag_text, &mut tag) != Ok(tag.len())
        {
            return Err(TokenRefusal::Malformed);
        }
        let key = self
            .keys
            .iter()
            .find(|key| {
                key.mac().is_some_and(|mut mac| {
                    mac.update(signed.as_bytes());
                    // `verify_slice` compares in constant time.
                    mac.verify_slice(&tag).is_ok()
                })
            })
            .ok_or(TokenRefusal::Mac)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_text)
            .map_err(|_| TokenRefusal::Malformed)?;
        let claims: SessionClaims =
            serde_json::from_slice(&payload).map_err(|_| TokenRefusal::Malformed)?;
        if self.expired(&claims, now) {
            return Err(TokenRefusal::Expired);
        }
        Ok((claims, key.id))
    }

    /// Whether a token issued at `iat` and expiring at `exp` is too old now: past its own
    /// expiry, or older than this replica's `max_age` (which a reload may have shortened).
    pub(crate) fn expired_at(&self, iat: u64, exp: u64, now: u64) -> bool {
        now >= exp || now.saturating_sub(iat) >= self.max_age.as_secs()
    }

    fn expired(&self, claims: &SessionClaims, now: u64) -> bool {
        self.expired_at(claims.iat, claims.exp, now)
    }
}

/// The digest a token binds its owner with: base64url SHA-256 of the principal's name.
/// Fixed-size whatever the name, and it does not show the name to whoever sees the token.
pub(crate) fn owner_digest(principal: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(principal.as_bytes()))
}

/// The client's capabilities as a token carries them: an object of at most
/// [`MAX_CAPABILITIES_BYTES`] of JSON. A larger one keeps its top-level keys, each with
/// `{}`, as many as fit; anything that is not an object is `{}`.
pub(crate) fn bound_capabilities(capabilities: Option<&Value>) -> Value {
    let Some(Value::Object(object)) = capabilities else {
        return Value::Object(Map::new());
    };
    let fits = serde_json::to_vec(object)
        .map(|json| json.len() <= MAX_CAPABILITIES_BYTES)
        .unwrap_or(false);
    if fits {
        return Value::Object(object.clone());
    }
    let mut kept = Map::new();
    // `{}` and the braces of the whole object.
    let mut size = 2usize;
    for key in object.keys() {
        // `"key":{}` plus a comma, with the key as JSON escapes it.
        let entry = serde_json::to_string(key).map_or(usize::MAX, |quoted| quoted.len() + 4);
        if size.saturating_add(entry) > MAX_CAPABILITIES_BYTES {
            break;
        }
        size += entry;
        kept.insert(key.clone(), Value::Object(Map::new()));
    }
    Value::Object(kept)
}

/// Unix seconds now (0 if the clock is before 1970, which no token then verifies against).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_bridge_config::Secret;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const KEY: &str = "0123456789abcdef0123456789abcdef-key-one";
    const OLD_KEY: &str = "fedcba9876543210fedcba9876543210-key-old";

    fn keys(list: &[&str]) -> TokenKeys {
        TokenKeys::from_config(&SessionsConfig {
            keys: list.iter().map(|key| Secret::new(*key)).collect(),
            max_age: Duration::from_secs(3600),
        })
    }

    fn claims() -> SessionClaims {
        SessionClaims {
            session: format!("{:032x}", 0x1234_u128),
            endpoint: "demo".into(),
            protocol_version: "2025-11-25".into(),
            client_name: "client".into(),
            client_version: "1.0".into(),
            capabilities: json!({"sampling": {}, "roots": {"listChanged": true}}),
            owner: owner_digest("alice"),
            iat: NOW,
            exp: NOW + 3600,
        }
    }

    fn signed(keys: &TokenKeys) -> String {
        keys.sign(&claims())
            .map(|(token, _)| token)
            .unwrap_or_default()
    }

    #[test]
    fn a_token_round_trips_in_visible_ascii() {
        let keys = keys(&[KEY]);
        let token = signed(&keys);
        assert!(token.starts_with("v1."), "{token}");
        assert!(token.bytes().all(|byte| (0x21..=0x7e).contains(&byte)));
        assert!(!token.contains("alice"), "the owner's name is readable");
        let (verified, key) = keys.verify(&token, NOW + 10).expect("verifies");
        assert_eq!(verified, claims());
        assert!(keys.knows(key));
    }

    #[test]
    fn every_key_verifies_and_only_the_first_signs() {
        let old = keys(&[OLD_KEY]);
        let rotated = keys(&[KEY, OLD_KEY]);
        let new_only = keys(&[KEY]);
        let by_old = signed(&old);
        assert!(rotated.verify(&by_old, NOW).is_ok());
        assert_eq!(new_only.verify(&by_old, NOW), Err(TokenRefusal::Mac));
        let by_rotated = signed(&rotated);
        assert!(new_only.verify(&by_rotated, NOW).is_ok());
        assert_eq!(old.verify(&by_rotated, NOW), Err(TokenRefusal::Mac));
    }

    #[test]
    fn a_tampered_token_fails_its_mac() {
        let keys = keys(&[KEY]);
        let token = signed(&keys);
        let (_, payload_and_tag) = token.split_at(3);
        let (payload, tag) = payload_and_tag.split_once('.').expect("two parts");
        // Another payload under the original tag: a different owner.
        let mut forged_claims = claims();
        forged_claims.owner = owner_digest("mallory");
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
        let forged = format!("v1.{forged_payload}.{tag}");
        assert_eq!(keys.verify(&forged, NOW), Err(TokenRefusal::Mac));
        // One character of the payload changed.
        let mut bytes = payload.as_bytes().to_vec();
        bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
        let flipped = format!("v1.{}.{tag}", String::from_utf8(bytes).unwrap());
        assert_eq!(keys.verify(&flipped, NOW), Err(TokenRefusal::Mac));
        // One character of the tag changed.
        let mut tag_bytes = tag.as_bytes().to_vec();
        tag_bytes[0] = if tag_bytes[0] == b'A' { b'B' } else { b'A' };
        let bad_tag = format!("v1.{payload}.{}", String::from_utf8(tag_bytes).unwrap());
        assert_eq!(keys.verify(&bad_tag, NOW), Err(TokenRefusal::Mac));
    }

    #[test]
    fn truncated_wrong_version_oversized_and_garbage_tokens_are_malformed() {
        let keys = keys(&[KEY]);
        let token = signed(&keys);
        for cut in [
            0,
            1,
            3,
            4,
            token.len() / 2,
            token.len() - 44,
            token.len() - 1,
        ] {
            let refusal = keys.verify(&token[..cut], NOW);
            assert!(
                matches!(refusal, Err(TokenRefusal::Malformed | TokenRefusal::Mac)),
                "cut at {cut}: {refusal:?}"
            );
        }
        assert_eq!(
            keys.verify(&token.replacen("v1.", "v2.", 1), NOW),
            Err(TokenRefusal::Malformed)
        );
        let oversized = format!("{token}{}", "A".repeat(MAX_TOKEN_BYTES));
        assert_eq!(keys.verify(&oversized, NOW), Err(TokenRefusal::Malformed));
        for garbage in [
            "",
            ".",
            "v1.",
            "v1..",
            "v1...",
            "v1.!!!.###",
            "0123456789abcdef0123456789abcdef",
            "v1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "v1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "v1.\u{1F600}.\u{1F600}",
        ] {
            let refusal = keys.verify(garbage, NOW);
            assert!(
                matches!(refusal, Err(TokenRefusal::Malformed | TokenRefusal::Mac)),
                "{garbage:?}: {refusal:?}"
            );
        }
    }

    #[test]
    fn a_signed_payload_that_is_not_the_claims_is_malformed() {
        let keys = keys(&[KEY]);
        // Sign arbitrary payloads with the real key: the MAC passes, the parse must not panic.
        for payload in [&b"{}"[..], b"[1,2]", b"not json", &[0xff, 0xfe, 0x00]] {
            let mut token = format!("v1.{}", URL_SAFE_NO_PAD.encode(payload));
            let mut mac = keys.signing().mac().expect("a key");
            mac.update(token.as_bytes());
            let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            token = format!("{token}.{tag}");
            assert_eq!(keys.verify(&token, NOW), Err(TokenRefusal::Malformed));
        }
    }

    #[test]
    fn an_expired_or_too_old_token_is_refused() {
        let keys = keys(&[KEY]);
        let token = signed(&keys);
        assert_eq!(keys.verify(&token, NOW + 3600), Err(TokenRefusal::Expired));
        // Another replica's longer expiry does not outlive this replica's max_age.
        let mut long = claims();
        long.exp = NOW + 100 * 3600;
        let (long_token, _) = keys.sign(&long).expect("signs");
        assert!(keys.verify(&long_token, NOW + 3599).is_ok());
        assert_eq!(
            keys.verify(&long_token, NOW + 3600),
            Err(TokenRefusal::Expired)
        );
    }

    #[test]
    fn a_random_key_survives_a_reload_without_keys_and_not_one_with_keys() {
        let random = TokenKeys::random(Duration::from_secs(60));
        let token = signed(&random);
        let none = SessionsConfig::default();
        assert!(random.reloaded(&none).verify(&token, NOW).is_ok());
        let configured = SessionsConfig {
            keys: vec![Secret::new(KEY)],
            ..SessionsConfig::default()
        };
        assert_eq!(
            random.reloaded(&configured).verify(&token, NOW),
            Err(TokenRefusal::Mac)
        );
        assert_ne!(
            signed(&TokenKeys::random(Duration::from_secs(60))),
            token,
            "two random keys agreed"
        );
    }

    #[test]
    fn large_capabilities_keep_only_their_top_level_keys() {
        let small = json!({"sampling": {}, "elicitation": {"form": {}}});
        assert_eq!(bound_capabilities(Some(&small)), small);
        let big = json!({"sampling": {}, "experimental": {"blob": "x".repeat(4096)}});
        assert_eq!(
            bound_capabilities(Some(&big)),
            json!({"sampling": {}, "experimental": {}})
        );
        let many: Map<String, Value> = (0..2000)
            .map(|i| (format!("capability-{i}"), json!({})))
            .collect();
        let bounded = bound_capabilities(Some(&Value::Object(many)));
        let size = serde_json::to_vec(&bounded).unwrap().len();
        assert!(size <= MAX_CAPABILITIES_BYTES, "{size}");
        assert!(bounded.as_object().is_some_and(|kept| kept.len() > 10));
        assert_eq!(bound_capabilities(Some(&json!("text"))), json!({}));
        assert_eq!(bound_capabilities(None), json!({}));
    }

    #[test]
    fn a_token_stays_under_the_bound_with_the_largest_client_info() {
        let keys = keys(&[KEY]);
        let mut claims = claims();
        claims.client_name = "\u{10FFFF}".repeat(128);
        claims.client_version = "\u{10FFFF}".repeat(128);
        claims.capabilities = bound_capabilities(Some(&json!({"x": "y".repeat(1 << 20), "z": {}})));
        let (token, _) = keys.sign(&claims).expect("fits");
        assert!(token.len() <= MAX_TOKEN_BYTES);
        assert!(keys.verify(&token, NOW).is_ok());
    }
}
