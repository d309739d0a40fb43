//! What the JWT and JWKS tests share: keys made per run, tokens minted with jsonwebtoken,
//! a config, and a real local HTTP server that serves a JWKS and counts its requests.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_bridge_config::{JwksSource, JwtAlgorithm, JwtConfig};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::AuthMetrics;

pub(crate) const ISSUER: &str = "https://issuer.test";
pub(crate) const AUDIENCE: &str = "http://127.0.0.1:8080/mcp";

/// The PKCS#8 DER prefix of a P-256 private key given as its bare 32-byte scalar
/// (ECPrivateKey without the optional parameters and public key).
const P256_PKCS8_PREFIX: [u8; 35] = [
    0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25, 0x02, 0x01,
    0x01, 0x04, 0x20,
];
/// The PKCS#8 DER prefix of an Ed25519 private key given as its 32-byte seed (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// A 2048-bit RSA key made once for these tests (RSA key generation is slow in a debug
/// build); EC and Ed25519 keys are made per run.
const RSA_TEST_KEY_PEM: &str = include_str!("../../tests/keys/rsa-2048.pem");

/// 32 bytes no earlier run or other key of this run shares: a digest of the time, the
/// process and a counter. Test keys need to differ, not to resist an attacker.
fn fresh_secret() -> [u8; 32] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.finalize().into()
}

/// A signing key of the authorization server, with its public JWK.
pub(crate) struct TestKey {
    pub(crate) alg: Algorithm,
    pub(crate) kid: String,
    encoding: EncodingKey,
    pub(crate) jwk: Value,
}

impl TestKey {
    pub(crate) fn es256(kid: &str) -> TestKey {
        let mut der = P256_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&fresh_secret());
        TestKey::new(kid, Algorithm::ES256, EncodingKey::from_ec_der(&der))
    }

    pub(crate) fn ed25519(kid: &str) -> TestKey {
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&fresh_secret());
        TestKey::new(kid, Algorithm::EdDSA, EncodingKey::from_ed_der(&der))
    }

    pub(crate) fn rsa(kid: &str, alg: Algorithm) -> TestKey {
        let base64_body: String = RSA_TEST_KEY_PEM
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = STANDARD
            .decode(base64_body)
            .expect("the test RSA key is PEM");
        TestKey::new(kid, alg, EncodingKey::from_rsa_der(&der))
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey) -> TestKey {
        let jwk = Jwk::from_encoding_key(&encoding, alg).expect("a JWK from the key");
        let mut jwk = serde_json::to_value(jwk).expect("a JWK serializes");
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey {
            alg,
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }

    /// A token with these claims, naming this key by `kid`.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        self.sign_with_header(&header, claims)
    }

    pub(crate) fn sign_with_header(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("the token is signed")
    }
}

/// A JWKS document holding these keys.
pub(crate) fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

pub(crate) fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs() as i64)
        .unwrap_or_default()
}

/// Claims that pass every check of [`config`], valid for five minutes.
pub(crate) fn good_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "exp": now_seconds() + 300,
        "iat": now_seconds(),
        "roles": ["analyst", "admin"],
        "scope": "mcp tools:read",
    })
}

/// A token put together by hand: header and claims as given, and `signature` as is.
pub(crate) fn hand_built_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

pub(crate) fn config(jwks: JwksSource) -> JwtConfig {
    JwtConfig {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        jwks,
        algorithms: vec![
            JwtAlgorithm::Rs256,
            JwtAlgorithm::Ps256,
            JwtAlgorithm::Es256,
            JwtAlgorithm::EdDsa,
        ],
        leeway: Duration::from_secs(30),
        principal_claim: "sub".to_owned(),
        roles_claim: "roles".to_owned(),
        scopes_claim: "scope".to_owned(),
        required_scopes: vec!["mcp".to_owned()],
        scopes_supported: vec!["mcp".to_owned()],
        authorization_servers: vec![ISSUER.to_owned()],
        jwks_refresh_interval: Duration::from_secs(30),
        jwks_max_age: Duration::from_secs(600),
        jwks_fetch_timeout: Duration::from_secs(5),
        jwks_ca_file: None,
        token_cache_entries: 1000,
    }
}

/// A JWKS file holding `keys`, and the config that reads it.
pub(crate) fn file_config(dir: &Path, keys: &[&TestKey]) -> JwtConfig {
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks(keys)).expect("the JWKS file is written");
    config(JwksSource::File(path))
}

pub(crate) fn metrics() -> Arc<AuthMetrics> {
    Arc::new(AuthMetrics::register(&mcp_bridge_metrics::Registry::new()))
}

pub(crate) fn cache_count(metrics: &AuthMetrics, result: &str) -> u64 {
    metrics.token_cache_total.with_label_values(&[result]).get()
}

pub(crate) fn fetch_count(metrics: &AuthMetrics, trigger: &str, result: &str) -> u64 {
    metrics
        .jwks_fetches_total
        .with_label_values(&[trigger, result])
        .get()
}

/// A real HTTP server on 127.0.0.1 that answers every request with the JWKS it currently
/// holds (or 503 while it holds none) and counts the requests.
pub(crate) struct JwksServer {
    pub(crate) url: String,
    requests: Arc<AtomicUsize>,
    document: Arc<Mutex<Option<String>>>,
    /// How long each answer is held back, so concurrent callers overlap one fetch.
    delay: Arc<Mutex<Duration>>,
    /// When set, every answer is a redirect there instead.
    redirect: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub(crate) async fn start(document: Option<String>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let address = listener.local_addr().expect("the local address");
        let requests = Arc::new(AtomicUsize::new(0));
        let document = Arc::new(Mutex::new(document));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let redirect = Arc::new(Mutex::new(None));
        let task = tokio::spawn(serve(
            listener,
            requests.clone(),
            document.clone(),
            delay.clone(),
            redirect.clone(),
        ));
        JwksServer {
            url: format!("http://{address}/jwks.json"),
            requests,
            document,
            delay,
            redirect,
            task,
        }
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub(crate) fn serve_document(&self, document: Option<String>) {
        *self.document.lock() = document;
    }

    pub(crate) fn delay_answers(&self, delay: Duration) {
        *self.delay.lock() = delay;
    }

    pub(crate) fn redirect_to(&self, location: &str) {
        *self.redirect.lock() = Some(location.to_owned());
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    requests: Arc<AtomicUsize>,
    document: Arc<Mutex<Option<String>>>,
    delay: Arc<Mutex<Duration>>,
    redirect: Arc<Mutex<Option<String>>>,
) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let requests = requests.clone();
        let document = document.clone();
        let delay = delay.clone();
        let redirect = redirect.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") && request.len() < 16384 {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => request.extend_from_slice(&buffer[..read]),
                }
            }
            requests.fetch_add(1, Ordering::SeqCst);
            let pause = *delay.lock();
            tokio::time::sleep(pause).await;
            let redirect = redirect.lock().clone();
            let answer = match document.lock().clone() {
                _ if redirect.is_some() => format!(
                    "HTTP/1.1 302 Found\r\nlocation: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    redirect.unwrap_or_default()
                ),
                Some(body) => format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
            };
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Polls `condition` every 10 ms for at most five seconds.
pub(crate) async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}
