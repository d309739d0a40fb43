//! Attacks on the identity layer, each answered 401/403 with its reason and never reaching a
//! backend (the demo server's `--calls-log` and `mcp_bridge_calls_total` do not move): no
//! token, expired, not yet valid, wrong issuer, wrong audience, `alg: none`, HS256 keyed with
//! the RSA public key, a tampered payload, the attacker's own key offered in the header
//! (`jwk`, `jku`), a key of the wrong type, a missing scope, an unknown `kid` (a burst costs at
//! most one JWKS fetch), a revoked API key after a config reload, a session id replayed under
//! another principal; no credential ever reaches a backend. And what a client needs to get
//! in: the protected-resource metadata, a rotated key fetched once, fetched keys serving
//! while the JWKS URL is down, the admin routes open to the admin role only.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::{
    ALICE_KEY, AUDIENCE, AUTH_REQUESTS, BOB_KEY, Guarded, Issuer, METADATA_URL, Reply, Session,
    api_key_toml, initialize, send, tool_call, two_keys,
};
use crate::support::{Bridge, SETTLE, http, metric, poll_until, test_deps, toml_string};

/// The refusals counted with `result` in `mcp_bridge_auth_requests_total`.
async fn refusals(bridge: &Bridge, result: &str) -> Result<f64> {
    metric(bridge, AUTH_REQUESTS, &[&format!("result=\"{result}\"")]).await
}

/// The quoted value of `name` in a `WWW-Authenticate` challenge.
fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &challenge[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Asserts that `reply` is a 401 challenge pointing at the metadata, with `error` (none for a
/// request that sent no credential).
fn assert_challenge(context: &str, reply: &Reply, error: Option<&str>) {
    assert_refused(context, reply, Some(METADATA_URL), error);
}

/// Asserts that `reply` is a 401 Bearer challenge with `metadata` as its `resource_metadata`
/// (a bridge without `[auth.jwt]` has no resource URI to point at) and `error`.
fn assert_refused(context: &str, reply: &Reply, metadata: Option<&str>, error: Option<&str>) {
    assert_eq!(reply.status, 401, "{context}: {}", reply.explanation());
    assert!(
        reply.challenge.starts_with("Bearer "),
        "{context}: not a Bearer challenge: {}",
        reply.explanation()
    );
    assert_eq!(
        challenge_param(&reply.challenge, "resource_metadata").as_deref(),
        metadata,
        "{context}: {}",
        reply.explanation()
    );
    assert_eq!(
        challenge_param(&reply.challenge, "error").as_deref(),
        error,
        "{context}: {}",
        reply.explanation()
    );
}

/// A bridge trusting `issuer`, with `extra` lines in `[auth.jwt]`.
async fn jwt_bridge(issuer: &Issuer, extra: &str) -> Result<Guarded> {
    Guarded::start(&issuer.jwt_toml(AUDIENCE, extra), "max_connections = 1").await
}

/// Every forged or misused token is refused with 401 (403 for a missing scope), a challenge
/// that names the metadata and the RFC 6750 error, a reason a person can act on, and the
/// refusal's label in `mcp_bridge_auth_requests_total`; none reaches the demo server, even
/// on a session a valid token opened.
#[tokio::test]
async fn forged_and_misused_tokens_are_refused_before_any_backend() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = jwt_bridge(&issuer, "").await?;
    let url = demo.url("/mcp/demo");
    // Both key types sign tokens the bridge accepts.
    let alice = Session::open(&url, &issuer.token("alice", &[]).await?).await?;
    alice.structured("get_clients", json!({})).await?;
    let es256 = issuer.mint(json!({"sub": "alice", "alg": "ES256"})).await?;
    let with_ec = Session::open(&url, &es256).await?;
    with_ec.structured("get_clients", json!({})).await?;
    let (calls_before, forwarded_before) =
        (demo.calls_of("get_clients"), demo.backend_calls().await?);
    assert_eq!(calls_before, 2, "the two valid calls reached the server");

    let bare = alice
        .send_as(None, &tool_call(90, "get_clients", json!({})))
        .await?;
    assert_challenge("no token", &bare, None);

    let kids = issuer.stats().await?["kids"].clone();
    let (rsa_kid, ec_kid) = (kids["rsa"][0].clone(), kids["ec"].clone());
    let attacks = [
        ("expired", json!({"exp_in": -600}), "expired", "expired"),
        (
            "not yet valid",
            json!({"nbf_in": 600}),
            "not_yet_valid",
            "not valid yet",
        ),
        (
            "wrong issuer",
            json!({"iss": "http://127.0.0.1:9"}),
            "wrong_issuer",
            "issued by",
        ),
        (
            "wrong audience",
            json!({"aud": "https://other.test/mcp"}),
            "wrong_audience",
            "another resource",
        ),
        (
            "alg none",
            json!({"alg": "none"}),
            "algorithm_not_allowed",
            "'none'",
        ),
        (
            "HS256 keyed with the RSA public key",
            json!({"alg": "HS256-with-public-key", "kid": rsa_kid}),
            "algorithm_not_allowed",
            "'HS256'",
        ),
        (
            "tampered payload",
            json!({"tamper": true}),
            "bad_signature",
            "signature",
        ),
        (
            "the attacker's own key, offered as an embedded jwk and a jku",
            json!({"attacker_key": true}),
            "bad_signature",
            "signature",
        ),
        (
            "RS256 naming the EC key",
            json!({"kid": ec_kid}),
            "key_mismatch",
            "does not fit",
        ),
    ];
    for (attack, spec, reason, explained) in attacks {
        let token = issuer.mint(spec.clone()).await?;
        let before = refusals(&demo.bridge, reason).await?;
        let reply = alice
            .send_as(Some(&token), &tool_call(91, "get_clients", json!({})))
            .await?;
        assert_challenge(attack, &reply, Some("invalid_token"));
        assert!(
            challenge_param(&reply.challenge, "error_description").is_some_and(|d| !d.is_empty()),
            "{attack}: no error_description: {}",
            reply.explanation()
        );
        assert!(
            reply.explanation().contains(explained),
            "{attack}: the answer does not say '{explained}': {}",
            reply.explanation()
        );
        let counted = refusals(&demo.bridge, reason).await? - before;
        assert_eq!(counted, 1.0, "{attack}: not counted as result=\"{reason}\"");
    }
    let junk = alice
        .send_as(
            Some("not-a-jwt-nor-a-key"),
            &tool_call(92, "get_clients", json!({})),
        )
        .await?;
    assert_challenge("an unknown credential", &junk, Some("invalid_token"));

    // A valid token without the required scope: 403, naming the scope to ask for.
    let unscoped = issuer
        .mint(json!({"sub": "alice", "scope": "profile"}))
        .await?;
    let reply = alice
        .send_as(Some(&unscoped), &tool_call(93, "get_clients", json!({})))
        .await?;
    assert_eq!(reply.status, 403, "{}", reply.explanation());
    assert_eq!(
        challenge_param(&reply.challenge, "error").as_deref(),
        Some("insufficient_scope"),
        "{}",
        reply.explanation()
    );
    assert_eq!(
        challenge_param(&reply.challenge, "scope").as_deref(),
        Some("mcp"),
        "{}",
        reply.explanation()
    );

    let attacker_fetches = issuer.stats().await?["attacker_jwks_fetches"].clone();
    assert_eq!(
        attacker_fetches, 0,
        "the bridge fetched keys from a token's jku"
    );
    assert_eq!(
        demo.calls_of("get_clients"),
        calls_before,
        "a refused call reached the server"
    );
    assert_eq!(
        demo.backend_calls().await?,
        forwarded_before,
        "a refused call was forwarded"
    );
    Ok(())
}

/// The metadata a client finds from the 401 names the resource, the issuer, the scope and
/// the header as the way to send a token, at both well-known paths.
#[tokio::test]
async fn protected_resource_metadata_is_served_at_both_well_known_paths() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = jwt_bridge(&issuer, "scopes_supported = [\"mcp\"]").await?;
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let response = http().get(demo.url(path)).send().await?;
        assert_eq!(response.status(), 200, "{path}");
        let metadata: Value = response.json().await?;
        assert_eq!(metadata["resource"], AUDIENCE, "{path}: {metadata}");
        assert_eq!(
            metadata["authorization_servers"],
            json!([issuer.url]),
            "{path}: {metadata}"
        );
        assert_eq!(
            metadata["scopes_supported"],
            json!(["mcp"]),
            "{path}: {metadata}"
        );
        let methods = metadata["bearer_methods_supported"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(methods.contains(&json!("header")), "{path}: {metadata}");
    }
    Ok(())
}

/// A verified token is remembered only until it expires: the same token, accepted a moment
/// ago, is refused as expired once its `exp` has passed (no leeway configured).
#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = jwt_bridge(&issuer, "leeway = \"0s\"").await?;
    let url = demo.url("/mcp/demo");
    let token = issuer.mint(json!({"sub": "alice", "exp_in": 2})).await?;
    let session = Session::open(&url, &token).await?;
    session.structured("get_clients", json!({})).await?;
    let refused = poll_until(
        SETTLE,
        async || session.call_reply("get_clients", json!({})).await.ok(),
        |reply| reply.as_ref().is_some_and(|reply| reply.status != 200),
    )
    .await
    .context("no answer")?;
    assert_challenge(
        "an expired remembered token",
        &refused,
        Some("invalid_token"),
    );
    assert!(
        refused.explanation().contains("expired"),
        "{}",
        refused.explanation()
    );
    Ok(())
}

/// Twenty requests at once, each naming a key id the JWKS does not have, are all refused and
/// cost the issuer at most one JWKS fetch.
#[tokio::test]
async fn a_burst_of_unknown_key_ids_costs_at_most_one_jwks_fetch() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = jwt_bridge(&issuer, "").await?;
    let url = demo.url("/mcp/demo");
    let alice = Session::open(&url, &issuer.token("alice", &[]).await?).await?;
    let forwarded_before = demo.backend_calls().await?;
    let fetches_before = issuer.jwks_fetches().await?;
    let mut tokens = Vec::new();
    for n in 0..20 {
        tokens.push(issuer.mint(json!({"kid": format!("made-up-{n}")})).await?);
    }
    let message = tool_call(7, "get_clients", json!({}));
    let replies = futures_util::future::join_all(
        tokens
            .iter()
            .map(|token| alice.send_as(Some(token), &message)),
    )
    .await;
    for (n, reply) in replies.into_iter().enumerate() {
        let reply = reply?;
        assert_challenge(&format!("unknown kid {n}"), &reply, Some("invalid_token"));
        assert!(
            reply.explanation().contains(&format!("made-up-{n}")),
            "{}",
            reply.explanation()
        );
    }
    let fetched = issuer.jwks_fetches().await? - fetches_before;
    assert!(
        fetched <= 1,
        "20 unknown key ids caused {fetched} JWKS fetches"
    );
    let counted = metric(
        &demo.bridge,
        "mcp_bridge_auth_jwks_fetches_total",
        &["trigger=\"unknown_kid\""],
    )
    .await?;
    assert!(counted <= 1.0, "{counted} unknown-kid fetches counted");
    assert_eq!(refusals(&demo.bridge, "unknown_key").await?, 20.0);
    assert_eq!(demo.calls_of("get_clients"), 0);
    assert_eq!(demo.backend_calls().await?, forwarded_before);
    Ok(())
}

/// After the issuer rotates to a new key, a token signed with it is accepted once the bridge
/// has fetched the JWKS again (one fetch), and tokens of the old key keep working.
#[tokio::test]
async fn a_rotated_signing_key_is_fetched_once_and_accepted() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let demo = jwt_bridge(&issuer, "jwks_refresh_interval = \"1s\"").await?;
    let url = demo.url("/mcp/demo");
    let old = issuer.token("alice", &[]).await?;
    Session::open(&url, &old)
        .await?
        .structured("get_clients", json!({}))
        .await?;
    let fetches_before = issuer.jwks_fetches().await?;

    let kid = issuer.rotate().await?;
    let rotated = issuer.token("alice", &[]).await?;
    let accepted = poll_until(
        SETTLE,
        async || {
            send(
                Method::POST,
                &url,
                Some(&rotated),
                None,
                Some(&initialize()),
            )
            .await
            .map(|r| r.status)
            .ok()
        },
        |status| *status == Some(200),
    )
    .await;
    assert_eq!(
        accepted,
        Some(200),
        "a token signed with the new key {kid} was never accepted"
    );
    let fetched = issuer.jwks_fetches().await? - fetches_before;
    assert_eq!(fetched, 1, "the rotation cost {fetched} JWKS fetches");
    Session::open(&url, &rotated)
        .await?
        .structured("get_clients", json!({}))
        .await?;
    Session::open(&url, &old)
        .await?
        .structured("get_clients", json!({}))
        .await?;
    Ok(())
}

/// A `jwks_url` over https is fetched with the system's roots plus `jwks_ca_file`: an
/// issuer whose certificate comes from a private CA is trusted only with that CA configured,
/// and without it the bridge has no keys (503, `keys_unavailable`) and never accepts a token.
#[tokio::test]
async fn a_jwks_url_over_https_is_trusted_through_jwks_ca_file() -> Result<()> {
    let tls = tempfile::tempdir()?;
    let issuer = Issuer::start_https(tls.path()).await?;
    let ca = tls.path().join("ca.pem");
    let extra = format!("jwks_ca_file = {}", toml_string(&ca.display().to_string()));
    let trusted = jwt_bridge(&issuer, &extra).await?;
    let token = issuer.token("alice", &[]).await?;
    let alice = Session::open(&trusted.url("/mcp/demo"), &token).await?;
    alice.structured("get_clients", json!({})).await?;
    ensure!(
        issuer.jwks_fetches().await? >= 1,
        "the bridge never fetched the JWKS over https"
    );

    // Without the CA the issuer's certificate does not verify: no keys, no token accepted.
    let untrusted = jwt_bridge(&issuer, "").await?;
    let url = untrusted.url("/mcp/demo");
    let reply = send(Method::POST, &url, Some(&token), None, Some(&initialize())).await?;
    ensure!(
        reply.status == 503 && reply.body.contains("keys_unavailable"),
        "a bridge that does not trust the issuer's CA answered {}",
        reply.explanation()
    );
    // Counted by the fetch task, which may finish its bookkeeping after the 503 went out.
    let failed = poll_until(
        SETTLE,
        async || {
            metric(
                &untrusted.bridge,
                "mcp_bridge_auth_jwks_fetches_total",
                &["result=\"error\""],
            )
            .await
            .unwrap_or(0.0)
        },
        |failed| *failed >= 1.0,
    )
    .await;
    ensure!(failed >= 1.0, "the failed https fetch was not counted");
    Ok(())
}

/// Once the keys are older than `jwks_max_age` the bridge fetches them again; while the
/// issuer is down that fails (and is counted), and tokens it has never seen keep being checked
/// against the keys it fetched before.
#[tokio::test]
async fn fetched_keys_keep_serving_while_the_jwks_url_is_down() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let extra = "jwks_max_age = \"1s\"\njwks_refresh_interval = \"1s\"";
    let demo = jwt_bridge(&issuer, extra).await?;
    let url = demo.url("/mcp/demo");
    Session::open(&url, &issuer.token("alice", &[]).await?).await?;
    let (later, last) = (
        issuer.token("alice", &[]).await?,
        issuer.token("bob", &[]).await?,
    );
    issuer.stop().await?;
    // The keys must grow older than jwks_max_age before the bridge fetches them again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    Session::open(&url, &later).await?;
    let failed_fetches = "mcp_bridge_auth_jwks_fetches_total";
    let failed = poll_until(
        SETTLE,
        async || {
            metric(&demo.bridge, failed_fetches, &["result=\"error\""])
                .await
                .unwrap_or(0.0)
        },
        |failed| *failed >= 1.0,
    )
    .await;
    assert!(failed >= 1.0, "no failed refresh while the issuer was down");
    let bob = Session::open(&url, &last).await?;
    bob.structured("get_clients", json!({})).await?;
    Ok(())
}

/// What a backend receives never holds the caller's credential: neither a JWT (nor its
/// signature) nor an API key appears in any byte the bridge wrote to the server.
#[tokio::test]
async fn credentials_never_reach_a_backend() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let dir = tempfile::tempdir()?;
    let received = dir.path().join("received.jsonl");
    let script = test_deps().clients_dir.join("auth_echo_server.py");
    let args = [
        script.display().to_string(),
        "--log".to_owned(),
        received.display().to_string(),
    ];
    let echo = format!(
        "[servers.echo]\ncommand = \"python3\"\nargs = {}\n",
        serde_json::to_string(&args)?
    );
    let config = format!(
        "{echo}\n{}\n{}",
        issuer.jwt_toml(AUDIENCE, ""),
        api_key_toml("bob", &[], BOB_KEY)
    );
    let demo = Guarded::start(&config, "").await?;
    let token = issuer.token("alice", &[]).await?;
    for (path, credential, tool) in [
        ("/mcp/echo", token.as_str(), "echo"),
        ("/mcp", token.as_str(), "echo__echo"),
        ("/mcp/echo", BOB_KEY, "echo"),
    ] {
        let session = Session::open(&demo.url(path), credential).await?;
        let echoed = session.structured(tool, json!({"note": "hello"})).await?;
        assert_eq!(echoed["arguments"], json!({"note": "hello"}), "{echoed}");
    }
    let text = std::fs::read_to_string(&received)?;
    assert_eq!(text.matches("hello").count(), 3, "the three calls: {text}");
    let signature = token.rsplit('.').next().unwrap_or_default();
    for secret in [token.as_str(), signature, BOB_KEY] {
        assert!(
            !text.contains(secret),
            "a credential ({} chars) reached the backend: {text}",
            secret.len()
        );
    }
    Ok(())
}

/// Keys from a `jwks_file` are read at start and again on a config reload: a token of a key
/// added to the file is refused until the bridge reloads, then accepted.
#[tokio::test]
async fn a_jwks_file_is_read_again_when_the_config_reloads() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let dir = tempfile::tempdir()?;
    let jwks_path = dir.path().join("jwks.json");
    let write_jwks = async || -> Result<()> {
        let jwks = http()
            .get(format!("{}/jwks.json", issuer.url))
            .send()
            .await?;
        std::fs::write(&jwks_path, jwks.bytes().await?)?;
        Ok(())
    };
    write_jwks().await?;
    let jwt = issuer.jwt_toml(AUDIENCE, "").replace(
        &format!("jwks_url = \"{}/jwks.json\"", issuer.url),
        &format!(
            "jwks_file = {}",
            crate::support::toml_string(&jwks_path.display().to_string())
        ),
    );
    assert!(jwt.contains("jwks_file"), "{jwt}");
    let demo = Guarded::start(&jwt, "").await?;
    let url = demo.url("/mcp/demo");
    Session::open(&url, &issuer.token("alice", &[]).await?).await?;

    issuer.rotate().await?;
    write_jwks().await?;
    let rotated = issuer.token("alice", &[]).await?;
    let before_reload = send(
        Method::POST,
        &url,
        Some(&rotated),
        None,
        Some(&initialize()),
    )
    .await?;
    assert_eq!(
        before_reload.status, 401,
        "the file was read again without a reload"
    );
    demo.edit_config(|text| format!("{text}\n# reload\n"))?;
    let accepted = poll_until(
        SETTLE,
        async || {
            let reply = send(
                Method::POST,
                &url,
                Some(&rotated),
                None,
                Some(&initialize()),
            )
            .await;
            reply.map(|reply| reply.status).ok()
        },
        |status| *status == Some(200),
    )
    .await;
    assert_eq!(
        accepted,
        Some(200),
        "the new key in the file was never used:\n{}",
        demo.bridge.log_tail(20)
    );
    Ok(())
}

/// An API key removed from the config stops working once the bridge reloads the file: a new
/// session and the key's open session are refused (and never reach the server), while the
/// other key keeps working.
#[tokio::test]
async fn a_revoked_api_key_is_refused_after_a_config_reload() -> Result<()> {
    let ci_key = "ci-bot-key-8c5e0f3d2a71";
    let ops_key = "ops-key-41b7d9e6b2c8";
    let revoked = api_key_toml("ci-bot", &["ci"], ci_key);
    let config = format!("{revoked}\n{}", api_key_toml("ops", &[], ops_key));
    let demo = Guarded::start(&config, "max_connections = 1").await?;
    let url = demo.url("/mcp/demo");
    let ci = Session::open(&url, ci_key).await?;
    ci.structured("get_clients", json!({})).await?;
    let ops = Session::open(&url, ops_key).await?;

    demo.edit_config(|text| text.replace(&revoked, ""))?;
    let refused = poll_until(
        SETTLE,
        async || {
            send(Method::POST, &url, Some(ci_key), None, Some(&initialize()))
                .await
                .map(|r| r.status)
                .ok()
        },
        |status| *status == Some(401),
    )
    .await;
    assert_eq!(
        refused,
        Some(401),
        "the revoked key still opens sessions:\n{}",
        demo.bridge.log_tail(30)
    );
    let forwarded_before = demo.backend_calls().await?;
    let reply = ci.call_reply("get_clients", json!({})).await?;
    assert_refused(
        "the revoked key's open session",
        &reply,
        None,
        Some("invalid_token"),
    );
    assert_eq!(
        demo.calls_of("get_clients"),
        1,
        "the revoked key's call reached the server"
    );
    assert_eq!(demo.backend_calls().await?, forwarded_before);
    ops.structured("get_clients", json!({})).await?;
    Ok(())
}

/// A session id presented with another principal's valid credential is refused with 403 and
/// counted, for a call, a DELETE and a GET stream; the session's owner keeps using it.
#[tokio::test]
async fn a_session_replayed_under_another_principal_is_refused_and_counted() -> Result<()> {
    let demo = Guarded::start(&two_keys(&[]), "max_connections = 1").await?;
    let url = demo.url("/mcp/demo");
    let alice = Session::open(&url, ALICE_KEY).await?;
    let forwarded_before = demo.backend_calls().await?;
    let mismatches = "mcp_bridge_auth_session_principal_mismatch_total";

    let replayed = alice
        .send_as(Some(BOB_KEY), &tool_call(5, "get_clients", json!({})))
        .await?;
    assert_eq!(replayed.status, 403, "{}", replayed.explanation());
    assert_eq!(metric(&demo.bridge, mismatches, &[]).await?, 1.0);
    let deleted = send(Method::DELETE, &url, Some(BOB_KEY), Some(&alice.id), None).await?;
    assert_eq!(
        deleted.status,
        403,
        "bob closed alice's session: {}",
        deleted.explanation()
    );
    assert_eq!(metric(&demo.bridge, mismatches, &[]).await?, 2.0);
    // Bob may not listen on alice's stream either. A bridge that let him would hold the
    // stream open, so the answer is awaited with a bound.
    let listen = send(Method::GET, &url, Some(BOB_KEY), Some(&alice.id), None);
    let listened = tokio::time::timeout(Duration::from_secs(10), listen).await;
    let listened =
        listened.map_err(|_| anyhow::anyhow!("bob's GET on alice's session was held open"))??;
    assert_eq!(listened.status, 403, "{}", listened.explanation());
    assert_eq!(metric(&demo.bridge, mismatches, &[]).await?, 3.0);
    assert_eq!(
        demo.calls_of("get_clients"),
        0,
        "the replayed call reached the server"
    );
    assert_eq!(demo.backend_calls().await?, forwarded_before);

    alice.structured("get_clients", json!({})).await?;
    Ok(())
}

/// The admin routes need a credential whose principal holds an admin role: none is 401, a
/// principal without the role 403, one with it 200 (and the stats name who is connected).
#[tokio::test]
async fn admin_routes_need_an_admin_role() -> Result<()> {
    let config = format!(
        "[auth]\nadmin_roles = [\"admin\"]\n{}\n{}",
        api_key_toml("alice", &["analyst"], ALICE_KEY),
        api_key_toml("root", &["admin"], "root-key-0c1d5e6f7a8b"),
    );
    let demo = Guarded::start(&config, "").await?;
    let _alice = Session::open(&demo.url("/mcp/demo"), ALICE_KEY).await?;
    let stats = demo.url("/admin/stats");
    let get = async |token: Option<&str>| send(Method::GET, &stats, token, None, None).await;
    let anonymous = get(None).await?;
    assert_eq!(anonymous.status, 401, "{}", anonymous.explanation());
    let analyst = get(Some(ALICE_KEY)).await?;
    assert_eq!(analyst.status, 403, "{}", analyst.explanation());
    let admin = get(Some("root-key-0c1d5e6f7a8b")).await?;
    assert_eq!(admin.status, 200, "{}", admin.explanation());
    assert!(
        admin.body.contains("\"alice\""),
        "/admin/stats does not show alice's session: {}",
        admin.body
    );
    Ok(())
}
