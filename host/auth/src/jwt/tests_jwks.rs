//! The key set fetched from a URL, against a real local HTTP server that counts requests:
//! the startup fetch, rotation, the rate limit on unknown `kid`s, serving through an
//! outage, the answer before any key arrived, reloads, and the URL rule.

use std::sync::Arc;
use std::time::Duration;

use mcp_bridge_config::{JwksSource, JwtConfig};

use super::JwtVerifier;
use super::test_support::{
    JwksServer, TestKey, config, eventually, fetch_count, good_claims, jwks, metrics,
};
use crate::{AuthError, AuthMetrics, SetupError};

fn url_config(server: &JwksServer, adjust: impl FnOnce(&mut JwtConfig)) -> JwtConfig {
    let mut config = config(JwksSource::Url(server.url.clone()));
    adjust(&mut config);
    config
}

/// A verifier whose startup fetch has finished.
async fn started(config: &JwtConfig, metrics: &Arc<AuthMetrics>) -> JwtVerifier {
    let verifier = JwtVerifier::new(config, None, metrics).unwrap();
    assert!(
        eventually(|| fetch_count(metrics, "startup", "ok")
            + fetch_count(metrics, "startup", "error")
            == 1)
        .await
    );
    verifier
}

#[tokio::test]
async fn the_key_set_is_fetched_once_at_startup_without_blocking_new() {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(Some(jwks(&[&key]))).await;
    server.delay_answers(Duration::from_millis(300));
    let metrics = metrics();
    let config = url_config(&server, |_| {});
    let begun = std::time::Instant::now();
    let verifier = JwtVerifier::new(&config, None, &metrics).unwrap();
    assert!(
        begun.elapsed() < Duration::from_millis(250),
        "new waited for the fetch"
    );
    assert!(eventually(|| server.requests() == 1).await);
    // A token arriving during the startup fetch waits for it instead of being refused.
    assert!(verifier.verify(&key.sign(&good_claims())).await.is_ok());
    for index in 0..3 {
        let mut claims = good_claims();
        claims["jti"] = serde_json::json!(index);
        assert!(verifier.verify(&key.sign(&claims)).await.is_ok());
    }
    assert_eq!(server.requests(), 1);
    assert_eq!(fetch_count(&metrics, "startup", "ok"), 1);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_when_its_first_token_arrives() {
    let (old, new) = (TestKey::es256("old"), TestKey::ed25519("new"));
    let server = JwksServer::start(Some(jwks(&[&old]))).await;
    let metrics = metrics();
    let verifier = started(&url_config(&server, |_| {}), &metrics).await;
    assert!(verifier.verify(&old.sign(&good_claims())).await.is_ok());

    server.serve_document(Some(jwks(&[&old, &new])));
    assert!(verifier.verify(&new.sign(&good_claims())).await.is_ok());
    assert_eq!(server.requests(), 2);
    assert_eq!(fetch_count(&metrics, "unknown_kid", "ok"), 1);
    // Both keys serve now, with no further fetch.
    let mut claims = good_claims();
    claims["jti"] = serde_json::json!("second");
    assert!(verifier.verify(&old.sign(&claims)).await.is_ok());
    assert!(verifier.verify(&new.sign(&claims)).await.is_ok());
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_burst_of_unknown_kids_costs_one_fetch_per_interval() {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(Some(jwks(&[&key]))).await;
    let metrics = metrics();
    let interval = Duration::from_millis(800);
    let config = url_config(&server, |config| config.jwks_refresh_interval = interval);
    let verifier = Arc::new(started(&config, &metrics).await);
    assert_eq!(server.requests(), 1);

    // Concurrent tokens with made-up kids all wait for the one fetch they caused.
    server.delay_answers(Duration::from_millis(200));
    let mut burst = Vec::new();
    for index in 0..20 {
        let verifier = verifier.clone();
        let token = TestKey::es256(&format!("made-up-{index}")).sign(&good_claims());
        burst.push(tokio::spawn(async move { verifier.verify(&token).await }));
    }
    for refused in burst {
        let refused = refused.await.unwrap();
        assert!(
            matches!(refused, Err(AuthError::UnknownKey(_))),
            "{refused:?}"
        );
    }
    assert_eq!(server.requests(), 2);

    // Within the interval, more made-up kids are refused at once, with no fetch.
    for index in 0..20 {
        let token = TestKey::es256(&format!("later-{index}")).sign(&good_claims());
        let begun = std::time::Instant::now();
        assert!(matches!(
            verifier.verify(&token).await,
            Err(AuthError::UnknownKey(_))
        ));
        assert!(begun.elapsed() < Duration::from_millis(150));
    }
    assert_eq!(server.requests(), 2);

    // Once the interval has passed, one more fetch is allowed.
    tokio::time::sleep(interval).await;
    for index in 0..5 {
        let token = TestKey::es256(&format!("next-{index}")).sign(&good_claims());
        assert!(matches!(
            verifier.verify(&token).await,
            Err(AuthError::UnknownKey(_))
        ));
    }
    assert_eq!(server.requests(), 3);
    assert_eq!(fetch_count(&metrics, "unknown_kid", "ok"), 2);
    // Known keys kept working throughout.
    assert!(verifier.verify(&key.sign(&good_claims())).await.is_ok());
}

#[tokio::test]
async fn while_the_url_is_down_the_cached_keys_keep_serving() {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(Some(jwks(&[&key]))).await;
    let metrics = metrics();
    let config = url_config(&server, |config| {
        config.jwks_max_age = Duration::from_millis(100);
        config.jwks_refresh_interval = Duration::from_millis(100);
    });
    let verifier = started(&config, &metrics).await;
    server.serve_document(None);
    tokio::time::sleep(Duration::from_millis(150)).await;

    // Each new token (not in the token cache) finds the keys stale and starts a refresh in
    // the background; the refresh fails and the old keys keep serving.
    for index in 0..3 {
        let mut claims = good_claims();
        claims["jti"] = serde_json::json!(index);
        assert!(verifier.verify(&key.sign(&claims)).await.is_ok());
        assert!(eventually(|| fetch_count(&metrics, "max_age", "error") > index).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // An unknown kid during the outage is refused as unknown, not as unavailable.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stranger = TestKey::es256("stranger");
    let before = server.requests();
    let refused = verifier.verify(&stranger.sign(&good_claims())).await;
    assert_eq!(refused, Err(AuthError::UnknownKey("stranger".to_owned())));
    // The stale keys' refresh and the unknown kid's share one fetch.
    assert_eq!(server.requests(), before + 1);
    assert!(verifier.verify(&key.sign(&good_claims())).await.is_ok());
}

#[tokio::test]
async fn the_keys_are_fetched_again_in_the_background_when_too_old() {
    let (old, new) = (TestKey::es256("old"), TestKey::es256("new"));
    let server = JwksServer::start(Some(jwks(&[&old]))).await;
    let metrics = metrics();
    let config = url_config(&server, |config| {
        config.jwks_max_age = Duration::from_millis(200)
    });
    let verifier = started(&config, &metrics).await;
    server.serve_document(Some(jwks(&[&new])));
    tokio::time::sleep(Duration::from_millis(250)).await;

    // The stale keys answer this token; the refresh runs behind it.
    assert!(verifier.verify(&old.sign(&good_claims())).await.is_ok());
    assert!(eventually(|| fetch_count(&metrics, "max_age", "ok") == 1).await);
    let mut claims = good_claims();
    claims["jti"] = serde_json::json!("after");
    assert!(verifier.verify(&new.sign(&claims)).await.is_ok());
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn before_the_first_good_fetch_tokens_get_keys_unavailable() {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(None).await;
    let metrics = metrics();
    let config = url_config(&server, |config| {
        config.jwks_refresh_interval = Duration::from_millis(200);
    });
    let verifier = started(&config, &metrics).await;
    let refused = verifier
        .verify(&key.sign(&good_claims()))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, AuthError::KeysUnavailable(ref why) if why.contains("503")),
        "{refused:?}"
    );
    assert_eq!(refused.status(), 503);
    assert!(refused.retryable());

    server.serve_document(Some(jwks(&[&key])));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(verifier.verify(&key.sign(&good_claims())).await.is_ok());
}

#[tokio::test]
async fn refused_tokens_without_keys_do_not_hammer_the_url() {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(None).await;
    let metrics = metrics();
    let config = url_config(&server, |_| {});
    let verifier = started(&config, &metrics).await;
    for _ in 0..20 {
        assert!(matches!(
            verifier.verify(&key.sign(&good_claims())).await,
            Err(AuthError::KeysUnavailable(_))
        ));
    }
    // The startup fetch, and at most one retry in the second the loop took.
    assert!(server.requests() <= 2, "{} fetches", server.requests());
}

#[tokio::test]
async fn an_oversized_jwks_is_refused() {
    let key = TestKey::es256("k1");
    let padding = "x".repeat(mcp_bridge_config::MAX_JWKS_BYTES);
    let document = format!(r#"{{"padding":"{padding}","keys":[{}]}}"#, key.jwk);
    let server = JwksServer::start(Some(document)).await;
    let metrics = metrics();
    let verifier = started(&url_config(&server, |_| {}), &metrics).await;
    let refused = verifier.verify(&key.sign(&good_claims())).await;
    assert!(
        matches!(refused, Err(AuthError::KeysUnavailable(ref why)) if why.contains("larger")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_reload_with_the_same_url_shares_the_keys_and_another_url_fetches() {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(Some(jwks(&[&key]))).await;
    let metrics = metrics();
    let config = url_config(&server, |_| {});
    let first = started(&config, &metrics).await;
    let token = key.sign(&good_claims());
    assert!(first.verify(&token).await.is_ok());

    let mut changed = config.clone();
    changed.leeway = Duration::from_secs(5);
    let second = JwtVerifier::new(&changed, Some(&first), &metrics).unwrap();
    assert!(second.verify(&token).await.is_ok());
    assert_eq!(server.requests(), 1);
    assert_eq!(
        second.signature_checks(),
        1,
        "a changed config re-verifies its tokens"
    );
    let third = JwtVerifier::new(&changed, Some(&second), &metrics).unwrap();
    assert!(third.verify(&token).await.is_ok());
    assert_eq!(
        third.signature_checks(),
        0,
        "an unchanged config keeps the token cache"
    );

    let other = JwksServer::start(Some(jwks(&[&key]))).await;
    let moved = url_config(&other, |_| {});
    let fourth = JwtVerifier::new(&moved, Some(&third), &metrics).unwrap();
    assert!(fourth.verify(&token).await.is_ok());
    assert_eq!(other.requests(), 1);
    assert_eq!(fetch_count(&metrics, "reload", "ok"), 1);
}

#[tokio::test]
async fn redirects_are_followed_only_to_the_same_host() {
    let key = TestKey::es256("k1");
    let target = JwksServer::start(Some(jwks(&[&key]))).await;
    let same_host = JwksServer::start(None).await;
    same_host.redirect_to("/moved.json");
    let other_host = JwksServer::start(None).await;
    // Another port is another origin, as another host would be.
    other_host.redirect_to(&target.url);

    let metrics = metrics();
    let verifier = started(&url_config(&other_host, |_| {}), &metrics).await;
    let refused = verifier.verify(&key.sign(&good_claims())).await;
    assert!(
        matches!(refused, Err(AuthError::KeysUnavailable(_))),
        "{refused:?}"
    );
    assert_eq!(target.requests(), 0);

    // A redirect on the same server is followed (here into a loop, which is cut short).
    let metrics = super::test_support::metrics();
    let _verifier = started(&url_config(&same_host, |_| {}), &metrics).await;
    assert!(
        same_host.requests() > 1 && same_host.requests() <= 7,
        "{}",
        same_host.requests()
    );
}

#[test]
fn plain_http_is_refused_unless_the_host_is_loopback() {
    let metrics = metrics();
    for url in [
        "http://example.com/jwks.json",
        "http://10.0.0.1/jwks.json",
        "http://localhost.example.com/jwks.json",
        "http://[2001:db8::1]/jwks.json",
        "ftp://127.0.0.1/jwks.json",
        "file:///etc/jwks.json",
        "not a url",
    ] {
        let config = config(JwksSource::Url(url.to_owned()));
        let refused = JwtVerifier::new(&config, None, &metrics).err();
        assert!(
            matches!(refused, Some(SetupError::JwksUrl { .. })),
            "{url}: {refused:?}"
        );
    }
    // No runtime runs here, so building these starts no fetch.
    for url in [
        "https://issuer.example.com/jwks.json",
        "http://127.0.0.1:9/jwks.json",
        "http://127.8.9.10:9/jwks.json",
        "http://[::1]:9/jwks.json",
        "http://localhost:9/jwks.json",
        "http://LOCALHOST.:9/jwks.json",
    ] {
        let config = config(JwksSource::Url(url.to_owned()));
        assert!(JwtVerifier::new(&config, None, &metrics).is_ok(), "{url}");
    }
}
