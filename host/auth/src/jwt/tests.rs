//! The verifier's checks, with keys from a JWKS file: what a good token yields and how
//! each bad one is refused, and the token cache.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::JwtVerifier;
use super::test_support::{
    AUDIENCE, TestKey, cache_count, file_config, good_claims, hand_built_token, metrics,
    now_seconds,
};
use crate::{AuthError, CredentialKind};

struct Fixture {
    es256: TestKey,
    ed25519: TestKey,
    rsa: TestKey,
    verifier: JwtVerifier,
    metrics: std::sync::Arc<crate::AuthMetrics>,
    _dir: tempfile::TempDir,
}

fn fixture_with(adjust: impl FnOnce(&mut mcp_bridge_config::JwtConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let es256 = TestKey::es256("ec-1");
    let ed25519 = TestKey::ed25519("ed-1");
    let rsa = TestKey::rsa("rsa-1", Algorithm::RS256);
    let mut config = file_config(dir.path(), &[&es256, &ed25519, &rsa]);
    adjust(&mut config);
    let metrics = metrics();
    let verifier = JwtVerifier::new(&config, None, &metrics).unwrap();
    Fixture {
        es256,
        ed25519,
        rsa,
        verifier,
        metrics,
        _dir: dir,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

#[tokio::test]
async fn a_good_token_yields_its_principal_roles_scopes_and_expiry() {
    let fixture = fixture();
    for key in [&fixture.es256, &fixture.ed25519, &fixture.rsa] {
        let claims = good_claims();
        let principal = fixture.verifier.verify(&key.sign(&claims)).await.unwrap();
        assert_eq!(&*principal.name, "alice", "{:?}", key.alg);
        assert_eq!(&*principal.roles, ["analyst", "admin"]);
        assert_eq!(&*principal.scopes, ["mcp", "tools:read"]);
        assert_eq!(principal.credential, CredentialKind::Jwt);
        let exp = claims["exp"].as_i64().unwrap() as u64;
        assert_eq!(
            principal.expires_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
        );
    }
}

#[tokio::test]
async fn an_rsa_key_serves_pss_unless_its_jwk_names_another_alg() {
    let dir = tempfile::tempdir().unwrap();
    let stated = TestKey::rsa("stated", Algorithm::RS256);
    let mut unstated = TestKey::rsa("unstated", Algorithm::PS256);
    unstated.jwk.as_object_mut().unwrap().remove("alg");
    let config = file_config(dir.path(), &[&stated, &unstated]);
    let verifier = JwtVerifier::new(&config, None, &metrics()).unwrap();
    assert!(
        verifier
            .verify(&unstated.sign(&good_claims()))
            .await
            .is_ok()
    );

    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some("stated".to_owned());
    let refused = verifier
        .verify(&stated.sign_with_header(&header, &good_claims()))
        .await;
    assert!(
        matches!(refused, Err(AuthError::KeyMismatch { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn roles_may_be_one_string_and_scopes_an_array() {
    let fixture = fixture();
    let mut claims = good_claims();
    claims["roles"] = json!("analyst");
    claims["scope"] = json!(["mcp", "extra"]);
    let principal = fixture
        .verifier
        .verify(&fixture.es256.sign(&claims))
        .await
        .unwrap();
    assert_eq!(&*principal.roles, ["analyst"]);
    assert_eq!(&*principal.scopes, ["mcp", "extra"]);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let fixture = fixture();
    let mut claims = good_claims();
    claims["exp"] = json!(now_seconds() - 60);
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    assert_eq!(refused, Err(AuthError::Expired));
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let fixture = fixture();
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("exp");
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    assert!(
        matches!(refused, Err(AuthError::InvalidToken(ref why)) if why.contains("exp")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let fixture = fixture();
    let mut claims = good_claims();
    claims["nbf"] = json!(now_seconds() + 120);
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    assert_eq!(refused, Err(AuthError::NotYetValid));
}

#[tokio::test]
async fn the_leeway_covers_clock_skew_on_exp_and_nbf() {
    let fixture = fixture();
    let mut claims = good_claims();
    claims["exp"] = json!(now_seconds() - 10);
    claims["nbf"] = json!(now_seconds() + 10);
    assert!(
        fixture
            .verifier
            .verify(&fixture.es256.sign(&claims))
            .await
            .is_ok()
    );

    let strict = fixture_with(|config| config.leeway = Duration::ZERO);
    let refused = strict.verifier.verify(&strict.es256.sign(&claims)).await;
    assert_eq!(refused, Err(AuthError::Expired));
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let fixture = fixture();
    let mut claims = good_claims();
    claims["iss"] = json!("https://evil.test");
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    assert!(
        matches!(refused, Err(AuthError::WrongIssuer { ref got, .. }) if got == "https://evil.test"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_token_for_another_resource_is_refused() {
    let fixture = fixture();
    let mut claims = good_claims();
    claims["aud"] = json!("https://other.test/mcp");
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    assert_eq!(
        refused,
        Err(AuthError::WrongAudience {
            expected: AUDIENCE.to_owned()
        })
    );
    claims.as_object_mut().unwrap().remove("aud");
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    assert!(
        matches!(refused, Err(AuthError::WrongAudience { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_audience_array_naming_the_bridge_is_accepted() {
    let fixture = fixture();
    let mut claims = good_claims();
    claims["aud"] = json!(["https://other.test", AUDIENCE]);
    assert!(
        fixture
            .verifier
            .verify(&fixture.es256.sign(&claims))
            .await
            .is_ok()
    );
    claims["aud"] = json!(["https://other.test", "https://third.test"]);
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    assert!(
        matches!(refused, Err(AuthError::WrongAudience { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn alg_none_is_refused_before_any_key_is_looked_up() {
    let fixture = fixture();
    for alg in ["none", "None", "NONE"] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": "ec-1" });
        let token = hand_built_token(&header, &good_claims(), "");
        let refused = fixture.verifier.verify(&token).await;
        assert_eq!(refused, Err(AuthError::AlgorithmNotAllowed(alg.to_owned())));
    }
    assert_eq!(fixture.verifier.signature_checks(), 0);
}

#[tokio::test]
async fn an_hmac_token_keyed_with_the_public_key_is_refused() {
    let fixture = fixture();
    // The classic confusion: the attacker signs with HS256 using the server's public key
    // (here the RSA modulus and the whole JWK) as the HMAC secret.
    let modulus = fixture.rsa.jwk["n"].as_str().unwrap().as_bytes().to_vec();
    let whole_jwk = fixture.rsa.jwk.to_string().into_bytes();
    for secret in [modulus, whole_jwk] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some("rsa-1".to_owned());
            let token = jsonwebtoken::encode(
                &header,
                &good_claims(),
                &EncodingKey::from_secret(&secret).unwrap(),
            )
            .unwrap();
            let refused = fixture.verifier.verify(&token).await;
            assert!(
                matches!(refused, Err(AuthError::AlgorithmNotAllowed(_))),
                "{refused:?}"
            );
        }
    }
    assert_eq!(fixture.verifier.signature_checks(), 0);
}

#[tokio::test]
async fn an_algorithm_outside_the_allow_list_is_refused() {
    let fixture = fixture_with(|config| {
        config.algorithms = vec![mcp_bridge_config::JwtAlgorithm::EdDsa];
    });
    let refused = fixture
        .verifier
        .verify(&fixture.es256.sign(&good_claims()))
        .await;
    assert_eq!(
        refused,
        Err(AuthError::AlgorithmNotAllowed("ES256".to_owned()))
    );
}

#[tokio::test]
async fn a_token_whose_kid_names_a_key_of_another_type_is_refused() {
    let fixture = fixture();
    // Signed with the EC key but claiming the Ed25519 key, and the other way round.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ed-1".to_owned());
    let refused = fixture
        .verifier
        .verify(&fixture.es256.sign_with_header(&header, &good_claims()))
        .await;
    assert!(
        matches!(refused, Err(AuthError::KeyMismatch { ref kty, .. }) if kty == "OKP"),
        "{refused:?}"
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ec-1".to_owned());
    let refused = fixture
        .verifier
        .verify(&fixture.rsa.sign_with_header(&header, &good_claims()))
        .await;
    assert!(
        matches!(refused, Err(AuthError::KeyMismatch { .. })),
        "{refused:?}"
    );
    assert_eq!(fixture.verifier.signature_checks(), 0);
}

#[tokio::test]
async fn a_tampered_payload_fails_the_signature() {
    let fixture = fixture();
    let token = fixture.es256.sign(&good_claims());
    let (header, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut claims = good_claims();
    claims["sub"] = json!("mallory");
    claims["roles"] = json!(["admin"]);
    let forged_payload = hand_built_token(&json!({}), &claims, "");
    let forged_payload = forged_payload.split('.').nth(1).unwrap();
    let tampered = format!("{header}.{forged_payload}.{signature}");
    assert_eq!(
        fixture.verifier.verify(&tampered).await,
        Err(AuthError::BadSignature)
    );
    // A signature from another key of the same type is as bad.
    let stranger = TestKey::es256("ec-1");
    assert_eq!(
        fixture
            .verifier
            .verify(&stranger.sign(&good_claims()))
            .await,
        Err(AuthError::BadSignature)
    );
}

#[tokio::test]
async fn a_token_naming_an_unknown_key_is_refused() {
    let fixture = fixture();
    let unknown = TestKey::es256("not-in-the-set");
    let refused = fixture.verifier.verify(&unknown.sign(&good_claims())).await;
    assert_eq!(
        refused,
        Err(AuthError::UnknownKey("not-in-the-set".to_owned()))
    );
}

#[tokio::test]
async fn a_token_without_kid_uses_the_one_key_that_fits_its_algorithm() {
    let fixture = fixture();
    let header = Header::new(Algorithm::EdDSA);
    let token = fixture.ed25519.sign_with_header(&header, &good_claims());
    assert!(fixture.verifier.verify(&token).await.is_ok());

    // With two EC keys, a token without kid cannot say which one signed it.
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (TestKey::es256("a"), TestKey::es256("b"));
    let config = file_config(dir.path(), &[&first, &second]);
    let verifier = JwtVerifier::new(&config, None, &metrics()).unwrap();
    let token = first.sign_with_header(&Header::new(Algorithm::ES256), &good_claims());
    let refused = verifier.verify(&token).await;
    assert!(
        matches!(refused, Err(AuthError::NoKeyId { candidates: 2, .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_principal_claim_must_be_a_short_non_empty_string() {
    let fixture = fixture();
    let mut claims = good_claims();
    for bad in [json!(null), json!(""), json!(42), json!("x".repeat(257))] {
        claims["sub"] = bad;
        let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
        assert_eq!(refused, Err(AuthError::MissingPrincipal("sub".to_owned())));
    }
    claims.as_object_mut().unwrap().remove("sub");
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    assert_eq!(refused, Err(AuthError::MissingPrincipal("sub".to_owned())));
}

#[tokio::test]
async fn the_principal_comes_from_the_configured_claim() {
    let fixture = fixture_with(|config| config.principal_claim = "email".to_owned());
    let mut claims = good_claims();
    claims["email"] = json!("alice@example.test");
    let principal = fixture
        .verifier
        .verify(&fixture.es256.sign(&claims))
        .await
        .unwrap();
    assert_eq!(&*principal.name, "alice@example.test");
}

#[tokio::test]
async fn roles_and_scopes_over_their_bounds_are_refused() {
    let fixture = fixture();
    let too_many: Vec<String> = (0..65).map(|index| format!("role-{index}")).collect();
    let too_long = "r".repeat(129);
    for roles in [
        json!(too_many),
        json!([too_long]),
        json!([1, 2]),
        json!({"a": 1}),
    ] {
        let mut claims = good_claims();
        claims["roles"] = roles;
        let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
        assert!(
            matches!(refused, Err(AuthError::InvalidToken(ref why)) if why.contains("roles")),
            "{refused:?}"
        );
    }
    let mut claims = good_claims();
    claims["scope"] = json!(format!("mcp {}", too_many.join(" ")));
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    assert!(
        matches!(refused, Err(AuthError::InvalidToken(ref why)) if why.contains("scope")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_missing_required_scope_is_named_only_once_the_token_is_otherwise_valid() {
    let fixture = fixture_with(|config| {
        config.required_scopes = vec!["mcp".to_owned(), "tools:call".to_owned()];
    });
    let claims = good_claims();
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    assert_eq!(
        refused,
        Err(AuthError::InsufficientScope("tools:call".to_owned()))
    );
    assert_eq!(refused.unwrap_err().status(), 403);

    // An expired token lacking the scope is refused as expired, not as under-scoped.
    let mut expired = claims.clone();
    expired["exp"] = json!(now_seconds() - 120);
    let refused = fixture.verifier.verify(&fixture.es256.sign(&expired)).await;
    assert_eq!(refused, Err(AuthError::Expired));
}

#[tokio::test]
async fn malformed_and_oversized_tokens_are_refused() {
    let fixture = fixture();
    for token in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.sig"] {
        let refused = fixture.verifier.verify(token).await;
        assert!(
            matches!(
                refused,
                Err(AuthError::InvalidToken(_) | AuthError::AlgorithmNotAllowed(_))
            ),
            "{token}: {refused:?}"
        );
    }
    let huge = "a".repeat(mcp_bridge_config::MAX_BEARER_TOKEN_BYTES + 1);
    assert!(matches!(
        fixture.verifier.verify(&huge).await,
        Err(AuthError::InvalidToken(_))
    ));
    // A critical header extension the bridge does not understand.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".to_owned());
    let mut header = serde_json::to_value(&header).unwrap();
    header["crit"] = json!(["exp"]);
    let token = hand_built_token(&header, &good_claims(), "c2ln");
    assert!(matches!(
        fixture.verifier.verify(&token).await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn a_verified_token_is_remembered_and_not_verified_again() {
    let fixture = fixture();
    let token = fixture.es256.sign(&good_claims());
    let first = fixture.verifier.verify(&token).await.unwrap();
    for _ in 0..5 {
        assert_eq!(fixture.verifier.verify(&token).await.unwrap(), first);
    }
    assert_eq!(fixture.verifier.signature_checks(), 1);
    assert_eq!(cache_count(&fixture.metrics, "miss"), 1);
    assert_eq!(cache_count(&fixture.metrics, "hit"), 5);
}

#[tokio::test]
async fn refused_tokens_are_not_remembered() {
    let fixture = fixture_with(|config| config.required_scopes = vec!["admin".to_owned()]);
    let token = fixture.es256.sign(&good_claims());
    for _ in 0..3 {
        assert!(fixture.verifier.verify(&token).await.is_err());
    }
    assert_eq!(fixture.verifier.signature_checks(), 3);
    assert_eq!(cache_count(&fixture.metrics, "hit"), 0);
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let fixture = fixture_with(|config| config.leeway = Duration::ZERO);
    let mut claims = good_claims();
    claims["exp"] = json!(now_seconds() + 2);
    let token = fixture.es256.sign(&claims);
    assert!(fixture.verifier.verify(&token).await.is_ok());
    assert!(fixture.verifier.verify(&token).await.is_ok());
    assert_eq!(cache_count(&fixture.metrics, "hit"), 1);
    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(claims["exp"].as_u64().unwrap());
    while SystemTime::now() < exp + Duration::from_millis(50) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fixture.verifier.verify(&token).await,
        Err(AuthError::Expired)
    );
    assert_eq!(cache_count(&fixture.metrics, "hit"), 1);
}

#[tokio::test]
async fn the_token_cache_is_bounded() {
    let fixture = fixture_with(|config| config.token_cache_entries = 10);
    for index in 0..50 {
        let mut claims = good_claims();
        claims["jti"] = json!(index);
        fixture
            .verifier
            .verify(&fixture.es256.sign(&claims))
            .await
            .unwrap();
    }
    assert!(fixture.verifier.cache.len() <= 10);
}

#[tokio::test]
async fn a_reload_rereads_the_jwks_file() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (TestKey::es256("old"), TestKey::es256("new"));
    let config = file_config(dir.path(), &[&old]);
    let metrics = metrics();
    let first = JwtVerifier::new(&config, None, &metrics).unwrap();
    assert!(first.verify(&old.sign(&good_claims())).await.is_ok());

    let config = file_config(dir.path(), &[&new]);
    let second = JwtVerifier::new(&config, Some(&first), &metrics).unwrap();
    assert!(second.verify(&new.sign(&good_claims())).await.is_ok());
    // The old key is gone from the file, so its tokens no longer verify (not even from
    // the cache of the verifier before).
    assert_eq!(
        second.verify(&old.sign(&good_claims())).await,
        Err(AuthError::UnknownKey("old".to_owned()))
    );

    std::fs::write(dir.path().join("jwks.json"), "not json").unwrap();
    let error = JwtVerifier::new(&config, Some(&second), &metrics)
        .err()
        .unwrap();
    assert!(error.to_string().contains("jwks_file"), "{error}");
    assert_eq!(
        super::test_support::fetch_count(&metrics, "reload", "error"),
        1
    );
}

#[tokio::test]
async fn an_unreadable_or_keyless_jwks_file_is_a_setup_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = file_config(dir.path(), &[]);
    let error = JwtVerifier::new(&config, None, &metrics()).err().unwrap();
    assert!(error.to_string().contains("none of its 0 keys"), "{error}");
    config.jwks = mcp_bridge_config::JwksSource::File(dir.path().join("missing.json"));
    assert!(JwtVerifier::new(&config, None, &metrics()).is_err());
}

#[tokio::test]
async fn unusable_keys_are_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let good = TestKey::es256("good");
    let document = json!({ "keys": [
        { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
        { "kty": "EC", "kid": "secp256k1", "crv": "secp256k1", "x": "AA", "y": "AA" },
        { "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" },
        { "kty": "RSA", "kid": "tiny", "n": "AQAB", "e": "AQAB" },
        { "kty": "EC", "kid": "wrong-alg", "alg": "RS256", "crv": "P-256", "x": good.jwk["x"], "y": good.jwk["y"] },
        { "kid": 5 },
        good.jwk,
    ]});
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, document.to_string()).unwrap();
    let config = super::test_support::config(mcp_bridge_config::JwksSource::File(path));
    let verifier = JwtVerifier::new(&config, None, &metrics()).unwrap();
    assert!(verifier.verify(&good.sign(&good_claims())).await.is_ok());
    let hmac = TestKey::es256("hmac");
    assert!(matches!(
        verifier.verify(&hmac.sign(&good_claims())).await,
        Err(AuthError::UnknownKey(_))
    ));
}

#[tokio::test]
async fn a_jwks_contributes_at_most_a_hundred_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<TestKey> = (0..101)
        .map(|index| TestKey::es256(&format!("k{index}")))
        .collect();
    let config = file_config(dir.path(), &keys.iter().collect::<Vec<_>>());
    let verifier = JwtVerifier::new(&config, None, &metrics()).unwrap();
    assert!(
        verifier
            .verify(&keys[99].sign(&good_claims()))
            .await
            .is_ok()
    );
    let refused = verifier.verify(&keys[100].sign(&good_claims())).await;
    assert_eq!(refused, Err(AuthError::UnknownKey("k100".to_owned())));
}

#[tokio::test]
async fn values_echoed_from_a_token_cannot_break_a_header() {
    let fixture = fixture();
    let header = json!({ "alg": "HS256\r\nSet-Cookie: x=\"1\"", "kid": "ec-1" });
    let refused = fixture
        .verifier
        .verify(&hand_built_token(&header, &good_claims(), ""))
        .await;
    assert_eq!(
        refused,
        Err(AuthError::AlgorithmNotAllowed(
            "HS256??Set-Cookie: x=?1?".to_owned()
        ))
    );
    let mut claims = good_claims();
    claims["iss"] = json!(format!("é{}", "i".repeat(100)));
    let refused = fixture.verifier.verify(&fixture.es256.sign(&claims)).await;
    let Err(AuthError::WrongIssuer { got, .. }) = refused else {
        panic!("{refused:?}");
    };
    assert!(
        got.starts_with("?iii") && got.ends_with("...") && got.len() == 67,
        "{got}"
    );
}
