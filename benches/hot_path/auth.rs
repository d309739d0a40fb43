//! `authenticate`: what identifying the caller adds to every request. A bearer JWT found in
//! the token cache and an API key, against the same call with no credential configured (the
//! anonymous caller, which returns at once).

use std::hint::black_box;
use std::sync::Arc;

use criterion::Criterion;

use mcp_bridge::auth::{AuthMetrics, Authenticator};
use mcp_bridge::config::load_str;
use mcp_bridge::metrics::Registry;

use super::issuer::{AUDIENCE, ISSUER, Issuer};

const API_KEY: &str = "bench-api-key-0123456789abcdef";

pub(crate) fn bench(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("a runtime for the auth benchmark: {error}"),
    };
    let issuer = match Issuer::new() {
        Ok(issuer) => issuer,
        Err(error) => panic!("a bench issuer: {error}"),
    };
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("a temp dir: {error}"));
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks.to_string()).unwrap_or_else(|error| panic!("{error}"));
    let configured = format!(
        "[servers.demo]\ncommand = \"x\"\n[auth.jwt]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = {:?}\n[[auth.api_keys]]\nprincipal = \"ci\"\nkey = \"{API_KEY}\"\n",
        jwks.display().to_string()
    );
    let authenticator = |text: &str| {
        let config = load_str(text, "bench.toml").unwrap_or_else(|error| panic!("{error}"));
        let metrics = Arc::new(AuthMetrics::register(&Registry::new()));
        Authenticator::new(&config.auth, &config.http, None, &metrics)
            .unwrap_or_else(|error| panic!("{error}"))
    };
    let open = authenticator("[servers.demo]\ncommand = \"x\"\n");
    let guarded = authenticator(&configured);
    let token = issuer
        .token("alice")
        .unwrap_or_else(|error| panic!("{error}"));
    let bearer = format!("Bearer {token}");
    let key = format!("Bearer {API_KEY}");
    // The first check verifies the signature and fills the token cache.
    let first = runtime.block_on(guarded.authenticate(Some(&bearer)));
    assert!(first.is_ok(), "the bench token is refused: {first:?}");

    let mut group = c.benchmark_group("authenticate");
    group.bench_function("baseline: no credential configured", |b| {
        b.iter(|| runtime.block_on(open.authenticate(black_box(None))))
    });
    group.bench_function("JWT from the token cache", |b| {
        b.iter(|| runtime.block_on(guarded.authenticate(black_box(Some(&bearer)))))
    });
    group.bench_function("API key", |b| {
        b.iter(|| runtime.block_on(guarded.authenticate(black_box(Some(&key)))))
    });
    group.finish();
}
