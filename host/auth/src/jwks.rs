//! The authorization server's signing keys (a JWKS), from a file or a URL.
//!
//! - A file is read once, when the verifier is built (at start and on every config reload);
//!   a file that cannot be read or holds no usable key is a setup error.
//! - A URL (`https`, or `http` on a loopback host) is fetched in the background: once when
//!   the key set is created, again when the keys are older than `jwks_max_age` (while the
//!   old keys keep serving), and when a token names an unknown `kid`, at most once per
//!   `jwks_refresh_interval` however many such tokens arrive. Concurrent callers that need
//!   a fetch wait for the one in progress instead of starting their own. A failed fetch
//!   keeps the keys of the last good one.
//!
//! Keys are parsed leniently: a key this bridge cannot use (an encryption key, a symmetric
//! key, an unknown algorithm or curve, an RSA modulus outside 2048..=8192 bits) is skipped
//! and logged once, so one odd key does not take down the whole set.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use mcp_bridge_config::{JwksSource, JwtAlgorithm, MAX_JWKS_BYTES};
use parking_lot::{Mutex, RwLock};
use reqwest::Url;
use serde::Deserialize;
use tokio::sync::watch;

use crate::AuthMetrics;
use crate::error::SetupError;

/// The most keys one JWKS may contribute; the rest of a longer set is ignored.
pub(crate) const MAX_JWKS_KEYS: usize = 100;
/// The longest `kid` kept; a key with a longer one is skipped (and a token with a longer
/// one refused), since the `kid` is echoed in errors and logs.
pub(crate) const MAX_KEY_ID_BYTES: usize = 256;
/// Before the first good fetch every token waits on (or is refused for) the key set, so
/// retries come sooner than `jwks_refresh_interval`, but never more than one per second.
const UNAVAILABLE_RETRY_GAP: Duration = Duration::from_secs(1);
/// The most redirects a JWKS fetch follows (all to the same host).
const MAX_REDIRECTS: usize = 5;
/// The most distinct skipped keys remembered so each is logged once.
const MAX_SKIP_LOG_ENTRIES: usize = 256;
/// RSA modulus sizes accepted, in bytes (2048 to 8192 bits, the RSA backend's ceiling).
const RSA_MODULUS_BYTES: std::ops::RangeInclusive<usize> = 256..=1024;

/// The curve of an EC or OKP key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// The JWK `kty`.
    pub(crate) fn kty(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::EcP256 | Self::EcP384 => "EC",
            Self::Ed25519 => "OKP",
        }
    }

    /// Whether a key of this kind can check a signature made with `alg`: the key type must
    /// match, and an EC key's curve must be the one the algorithm names.
    fn fits(self, alg: JwtAlgorithm) -> bool {
        match self {
            Self::Rsa => alg.key_type() == "RSA",
            Self::EcP256 => alg == JwtAlgorithm::Es256,
            Self::EcP384 => alg == JwtAlgorithm::Es384,
            Self::Ed25519 => alg == JwtAlgorithm::EdDsa,
        }
    }
}

/// One public key the bridge can check signatures with.
pub(crate) struct VerificationKey {
    pub(crate) kid: Option<String>,
    pub(crate) kind: KeyKind,
    /// The one algorithm the JWK allows, when it states one.
    pub(crate) alg: Option<JwtAlgorithm>,
    pub(crate) decoding: DecodingKey,
}

impl VerificationKey {
    /// Whether this key may check a signature made with `alg`.
    pub(crate) fn fits(&self, alg: JwtAlgorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|stated| stated == alg)
    }
}

/// Why no key was chosen for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyChoiceError {
    /// No key has the token's `kid` (or, without a `kid`, none fits the algorithm).
    Unknown,
    /// The key named by `kid` is of another type, curve or algorithm.
    Mismatch { kty: &'static str },
    /// The token names no `kid` and several keys fit its algorithm.
    Ambiguous { candidates: usize },
}

/// One parsed JWKS.
#[derive(Default)]
pub(crate) struct Keys {
    keys: Vec<VerificationKey>,
}

impl Keys {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key a token signed with `alg` names by `kid`; without a `kid`, the one key that
    /// fits `alg`, if there is exactly one.
    pub(crate) fn choose(
        &self,
        kid: Option<&str>,
        alg: JwtAlgorithm,
    ) -> Result<&VerificationKey, KeyChoiceError> {
        if let Some(kid) = kid {
            let key = self
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))
                .ok_or(KeyChoiceError::Unknown)?;
            if !key.fits(alg) {
                return Err(KeyChoiceError::Mismatch {
                    kty: key.kind.kty(),
                });
            }
            return Ok(key);
        }
        let mut fitting = self.keys.iter().filter(|key| key.fits(alg));
        let Some(first) = fitting.next() else {
            return Err(KeyChoiceError::Unknown);
        };
        let others = fitting.count();
        if others > 0 {
            return Err(KeyChoiceError::Ambiguous {
                candidates: others + 1,
            });
        }
        Ok(first)
    }
}

/// What caused a fetch: the `trigger` label of `jwks_fetches_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchTrigger {
    Startup,
    Reload,
    UnknownKid,
    MaxAge,
}

impl FetchTrigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Reload => "reload",
            Self::UnknownKid => "unknown_kid",
            Self::MaxAge => "max_age",
        }
    }
}

/// The timing settings of `[auth.jwt]` a key set follows. They are passed on every call
/// rather than kept, because a key set outlives reloads that may change them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchSettings {
    pub(crate) refresh_interval: Duration,
    pub(crate) max_age: Duration,
    pub(crate) timeout: Duration,
}

/// Where the fetches of a URL key set stand.
#[derive(Default)]
struct FetchState {
    in_flight: bool,
    /// When the last fetch of any trigger started.
    last_attempt: Option<Instant>,
    /// When the last fetch caused by an unknown `kid` started: those are rate-limited on
    /// their own, so a rotation right after a scheduled fetch is still picked up at once.
    last_unknown_kid_attempt: Option<Instant>,
    /// When the keys now served were fetched.
    fetched_at: Option<Instant>,
    last_error: Option<String>,
}

/// The URL and client of a fetched key set.
struct Fetcher {
    url: Url,
    client: reqwest::Client,
}

/// The keys of one JWKS source, shared by the verifiers of successive configs that name
/// the same source.
pub(crate) struct KeySet {
    source: JwksSource,
    fetcher: Option<Fetcher>,
    keys: RwLock<Option<Arc<Keys>>>,
    state: Mutex<FetchState>,
    /// Bumped when a fetch ends, so callers waiting for it wake.
    fetches_done: watch::Sender<u64>,
    skipped_logged: Mutex<HashSet<String>>,
    metrics: Arc<AuthMetrics>,
}

impl KeySet {
    /// A key set read from `path` now.
    pub(crate) fn from_file(
        path: &Path,
        trigger: FetchTrigger,
        metrics: &Arc<AuthMetrics>,
    ) -> Result<Arc<KeySet>, SetupError> {
        let key_set = KeySet::empty(JwksSource::File(path.to_path_buf()), None, metrics);
        let parsed = read_jwks_file(path).and_then(|document| key_set.parse(&document));
        key_set.count_fetch(trigger, parsed.is_ok());
        let keys = parsed.map_err(|reason| SetupError::JwksFile {
            path: path.display().to_string(),
            reason,
        })?;
        *key_set.keys.write() = Some(Arc::new(keys));
        Ok(Arc::new(key_set))
    }

    /// A key set fetched from `url`, with its first fetch started in the background when a
    /// tokio runtime is running (otherwise the first token starts it).
    pub(crate) fn from_url(
        url: &str,
        extra_roots: Option<&Path>,
        trigger: FetchTrigger,
        settings: FetchSettings,
        metrics: &Arc<AuthMetrics>,
    ) -> Result<Arc<KeySet>, SetupError> {
        let setup_error = |reason: String| SetupError::JwksUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = check_jwks_url(url).map_err(setup_error)?;
        let client = build_client(&parsed, extra_roots).map_err(setup_error)?;
        let fetcher = Fetcher {
            url: parsed,
            client,
        };
        let key_set = Arc::new(KeySet::empty(
            JwksSource::Url(url.to_owned()),
            Some(fetcher),
            metrics,
        ));
        key_set.start_fetch(trigger, settings, Duration::ZERO);
        Ok(key_set)
    }

    fn empty(source: JwksSource, fetcher: Option<Fetcher>, metrics: &Arc<AuthMetrics>) -> KeySet {
        KeySet {
            source,
            fetcher,
            keys: RwLock::new(None),
            state: Mutex::new(FetchState::default()),
            fetches_done: watch::Sender::new(0),
            skipped_logged: Mutex::new(HashSet::new()),
            metrics: metrics.clone(),
        }
    }

    pub(crate) fn source(&self) -> &JwksSource {
        &self.source
    }

    /// The keys to check a token with. Stale keys are returned at once (with a refresh
    /// started behind them); before the first good fetch the caller waits for one, bounded
    /// by the fetch timeout, and gets `Err(why)` if there are still no keys.
    pub(crate) async fn current(
        self: &Arc<Self>,
        settings: FetchSettings,
    ) -> Result<Arc<Keys>, String> {
        if let Some(keys) = self.snapshot() {
            if self.is_stale(settings.max_age) {
                // While the URL is down, stale keys are retried every refresh interval (or
                // max age, if shorter), not on every token.
                let retry_gap = settings.refresh_interval.min(settings.max_age);
                self.start_fetch(FetchTrigger::MaxAge, settings, retry_gap);
            }
            return Ok(keys);
        }
        let retry_gap = settings.refresh_interval.min(UNAVAILABLE_RETRY_GAP);
        if let Some(done) = self.start_fetch(FetchTrigger::Startup, settings, retry_gap) {
            wait_for_fetch(done, settings.timeout).await;
        }
        self.snapshot().ok_or_else(|| {
            self.state
                .lock()
                .last_error
                .clone()
                .unwrap_or_else(|| "the first fetch has not finished".to_owned())
        })
    }

    /// Fetches again because a token named a key this set lacks: joins a fetch in progress,
    /// or starts one if the last one an unknown key caused is at least `refresh_interval`
    /// old. Returns the keys after that fetch, or `None` when no fetch was allowed (the
    /// caller refuses the token as naming an unknown key).
    pub(crate) async fn refresh_for_unknown_key(
        self: &Arc<Self>,
        settings: FetchSettings,
    ) -> Option<Arc<Keys>> {
        let done = self.start_fetch(
            FetchTrigger::UnknownKid,
            settings,
            settings.refresh_interval,
        )?;
        wait_for_fetch(done, settings.timeout).await;
        self.snapshot()
    }

    fn snapshot(&self) -> Option<Arc<Keys>> {
        self.keys.read().clone()
    }

    fn is_stale(&self, max_age: Duration) -> bool {
        let state = self.state.lock();
        self.fetcher.is_some()
            && !state.in_flight
            && state.fetched_at.is_some_and(|at| at.elapsed() >= max_age)
    }

    /// Starts a fetch unless one is running (then joins it) or the last one of its kind
    /// started less than `min_gap` ago. Returns a receiver that changes when the fetch
    /// joined or started ends, or `None` if no fetch runs (a file source, no runtime, or
    /// too soon).
    fn start_fetch(
        self: &Arc<Self>,
        trigger: FetchTrigger,
        settings: FetchSettings,
        min_gap: Duration,
    ) -> Option<watch::Receiver<u64>> {
        self.fetcher.as_ref()?;
        let mut state = self.state.lock();
        // Subscribing under the lock, before the fetch can end, guarantees the receiver
        // sees that fetch's completion.
        let done = self.fetches_done.subscribe();
        if state.in_flight {
            return Some(done);
        }
        let last = match trigger {
            FetchTrigger::UnknownKid => state.last_unknown_kid_attempt,
            _ => state.last_attempt,
        };
        if last.is_some_and(|at| at.elapsed() < min_gap) {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let now = Instant::now();
        state.in_flight = true;
        state.last_attempt = Some(now);
        if trigger == FetchTrigger::UnknownKid {
            state.last_unknown_kid_attempt = Some(now);
        }
        drop(state);
        let key_set = self.clone();
        // The fetch runs on its own task, so a caller that gives up waiting (or whose
        // request is dropped) does not cancel it for the others.
        runtime.spawn(async move {
            let _ends = FetchEnds(&key_set);
            key_set.fetch(trigger, settings.timeout).await;
        });
        Some(done)
    }

    async fn fetch(&self, trigger: FetchTrigger, timeout: Duration) {
        let Some(fetcher) = &self.fetcher else {
            return;
        };
        let outcome = match tokio::time::timeout(timeout, fetcher.get(timeout)).await {
            Ok(Ok(document)) => self.parse(&document),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!(
                "no answer within {timeout:?} (auth.jwt.jwks_fetch_timeout)"
            )),
        };
        self.count_fetch(trigger, outcome.is_ok());
        let mut state = self.state.lock();
        match outcome {
            Ok(keys) => {
                tracing::debug!(url = %fetcher.url, keys = keys.len(), trigger = trigger.as_str(), "fetched the JWKS");
                *self.keys.write() = Some(Arc::new(keys));
                state.fetched_at = Some(Instant::now());
                state.last_error = None;
            }
            Err(reason) => {
                tracing::warn!(url = %fetcher.url, trigger = trigger.as_str(), "JWKS fetch failed (the keys fetched before keep serving): {reason}");
                state.last_error = Some(format!("fetching {}: {reason}", fetcher.url));
            }
        }
    }

    fn count_fetch(&self, trigger: FetchTrigger, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.metrics
            .jwks_fetches_total
            .with_label_values(&[trigger.as_str(), result])
            .inc();
    }

    /// The usable keys of a JWKS document; an error if it is not a JWKS or has none.
    fn parse(&self, document: &[u8]) -> Result<Keys, String> {
        let set: JwkSetDocument = serde_json::from_slice(document)
            .map_err(|error| format!("not a JWKS (a JSON object with a 'keys' array): {error}"))?;
        let total = set.keys.len();
        let mut keys = Vec::new();
        for (index, raw) in set.keys.into_iter().enumerate() {
            if keys.len() == MAX_JWKS_KEYS {
                self.log_skipped_once(&format!(
                    "the JWKS has more than {MAX_JWKS_KEYS} usable keys; the {} after key #{index} are ignored",
                    total - index
                ));
                break;
            }
            match parse_key(raw) {
                Ok(key) => keys.push(key),
                Err(skip) => self.log_skipped_once(&format!("JWKS key #{index}: {skip}")),
            }
        }
        if keys.is_empty() {
            return Err(format!(
                "none of its {total} keys is a signing key the bridge can use (RSA of 2048 bits or more, EC P-256 or P-384, or Ed25519)"
            ));
        }
        Ok(Keys { keys })
    }

    fn log_skipped_once(&self, message: &str) {
        let mut logged = self.skipped_logged.lock();
        if logged.contains(message) || logged.len() >= MAX_SKIP_LOG_ENTRIES {
            return;
        }
        tracing::warn!(source = ?self.source, "{message}");
        logged.insert(message.to_owned());
    }
}

/// Marks the fetch over and wakes its waiters when the fetch task ends, however it ends
/// (a panic, or the runtime shutting down, included), so no caller waits for a fetch that
/// will never finish and later fetches are not blocked forever.
struct FetchEnds<'a>(&'a KeySet);

impl Drop for FetchEnds<'_> {
    fn drop(&mut self) {
        self.0.state.lock().in_flight = false;
        self.0.fetches_done.send_modify(|count| *count += 1);
    }
}

async fn wait_for_fetch(mut done: watch::Receiver<u64>, timeout: Duration) {
    // The fetch is itself bounded by `timeout`; the margin covers scheduling.
    let bound = timeout.saturating_add(Duration::from_secs(1));
    let _ = tokio::time::timeout(bound, done.changed()).await;
}

impl Fetcher {
    /// The JWKS document, at most `MAX_JWKS_BYTES` long.
    async fn get(&self, timeout: Duration) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| describe_request_error(&error))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered HTTP {status}"));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
        {
            return Err(format!(
                "the document is larger than {MAX_JWKS_BYTES} bytes"
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| describe_request_error(&error))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!(
                    "the document is larger than {MAX_JWKS_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A reqwest error with its causes, which say what actually failed (refused, TLS, DNS).
fn describe_request_error(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Checks a JWKS URL: `https`, or `http` only on a loopback host, where no one on the
/// network can swap the keys in transit.
pub(crate) fn check_jwks_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|error| format!("not a URL: {error}"))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        "http" => Err(
            "plain http is allowed only on a loopback host (127.0.0.0/8, ::1, localhost); use https"
                .to_owned(),
        ),
        other => Err(format!("the scheme must be https, not '{other}'")),
    }
}

fn is_loopback(url: &Url) -> bool {
    // The config applies the same rule to the URL as written; this checks it again on
    // every URL the bridge fetches, redirects included.
    url.host_str()
        .is_some_and(mcp_bridge_config::is_loopback_authority)
}

/// The client of one JWKS URL: redirects only to the same host and port, over a scheme the
/// URL rule allows, at most `MAX_REDIRECTS` of them.
fn build_client(url: &Url, extra_roots: Option<&Path>) -> Result<reqwest::Client, String> {
    install_tls_crypto_provider();
    let host = url.host_str().map(str::to_owned);
    let port = url.port_or_known_default();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        let target = attempt.url();
        let same_origin_host =
            target.host_str().map(str::to_owned) == host && target.port_or_known_default() == port;
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        if !same_origin_host || check_jwks_url(target.as_str()).is_err() {
            return attempt.error("the JWKS URL redirects to another host or to plain http");
        }
        attempt.follow()
    });
    let mut builder = reqwest::Client::builder().redirect(policy);
    if let Some(path) = extra_roots {
        let pem = std::fs::read(path)
            .map_err(|error| format!("cannot read jwks_ca_file {}: {error}", path.display()))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
            format!(
                "jwks_ca_file {} holds no PEM certificates: {error}",
                path.display()
            )
        })?;
        builder = builder.tls_certs_merge(roots);
    }
    builder.build().map_err(|error| {
        format!(
            "cannot build an HTTP client: {}",
            describe_request_error(&error)
        )
    })
}

/// Installs rustls' `ring` crypto provider as the process default, once. reqwest is built
/// with `rustls-no-provider` (no aws-lc), so every reqwest client in the process needs a
/// provider installed before it is built; another one installed first is kept.
pub fn install_tls_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // rustls deprecates the ring provider because it lacks post-quantum key exchange;
        // the only other built-in provider is aws-lc, which the bridge does not build (a C
        // library). Fetching a public key set does not need forward secrecy against a
        // future quantum adversary.
        #[allow(deprecated)]
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

fn read_jwks_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    let mut document = Vec::new();
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut document)
        .map_err(|error| error.to_string())?;
    if document.len() > MAX_JWKS_BYTES {
        return Err(format!("the file is larger than {MAX_JWKS_BYTES} bytes"));
    }
    Ok(document)
}

#[derive(Deserialize)]
struct JwkSetDocument {
    keys: Vec<serde_json::Value>,
}

/// The JWK members the bridge reads; the others are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    public_key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// One JWK as a key the bridge can verify with, or why it is skipped.
fn parse_key(raw: serde_json::Value) -> Result<VerificationKey, String> {
    let jwk: RawJwk = serde_json::from_value(raw).map_err(|error| format!("malformed: {error}"))?;
    let kid = jwk.kid.clone();
    let named = |reason: String| match &kid {
        Some(kid) => format!("kid '{}': {reason}", truncate(kid)),
        None => reason,
    };
    if kid.as_ref().is_some_and(|kid| kid.len() > MAX_KEY_ID_BYTES) {
        return Err(named(format!(
            "the kid is longer than {MAX_KEY_ID_BYTES} bytes"
        )));
    }
    if let Some(public_key_use) = &jwk.public_key_use
        && public_key_use != "sig"
    {
        return Err(named(format!(
            "skipped: its use is '{}', not 'sig'",
            truncate(public_key_use)
        )));
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Err(named(
            "skipped: its key_ops do not include 'verify'".to_owned(),
        ));
    }
    let (kind, decoding) = decode_public_key(&jwk).map_err(named)?;
    let alg = match &jwk.alg {
        None => None,
        Some(name) => {
            let alg = JwtAlgorithm::from_name(name).ok_or_else(|| {
                named(format!(
                    "skipped: its alg '{}' is not a signature algorithm the bridge supports",
                    truncate(name)
                ))
            })?;
            if !kind.fits(alg) {
                return Err(named(format!(
                    "skipped: its alg {name} does not fit a {} key",
                    kind.kty()
                )));
            }
            Some(alg)
        }
    };
    Ok(VerificationKey {
        kid,
        kind,
        alg,
        decoding,
    })
}

fn decode_public_key(jwk: &RawJwk) -> Result<(KeyKind, DecodingKey), String> {
    match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let modulus = decode_member(&jwk.n, "n", None)?;
            let exponent = decode_member(&jwk.e, "e", None)?;
            let significant = modulus.iter().skip_while(|byte| **byte == 0).count();
            if !RSA_MODULUS_BYTES.contains(&significant) {
                return Err(format!(
                    "skipped: an RSA modulus of {} bits (2048 to 8192 are accepted)",
                    significant * 8
                ));
            }
            if exponent.is_empty() || exponent.len() > 8 {
                return Err("skipped: an RSA exponent longer than 8 bytes".to_owned());
            }
            Ok((
                KeyKind::Rsa,
                DecodingKey::from_rsa_raw_components(&modulus, &exponent),
            ))
        }
        ("EC", Some("P-256")) => Ok((KeyKind::EcP256, ec_key(jwk, 32)?)),
        ("EC", Some("P-384")) => Ok((KeyKind::EcP384, ec_key(jwk, 48)?)),
        ("OKP", Some("Ed25519")) => {
            let x = decode_member(&jwk.x, "x", Some(32))?;
            Ok((KeyKind::Ed25519, DecodingKey::from_ed_der(&x)))
        }
        ("EC" | "OKP", curve) => Err(format!(
            "skipped: the curve '{}' is not supported (P-256, P-384 and Ed25519 are)",
            truncate(curve.unwrap_or("(none)"))
        )),
        ("oct", _) => Err("skipped: a symmetric key; HMAC tokens are never accepted".to_owned()),
        (kty, _) => Err(format!(
            "skipped: the key type '{}' is not supported",
            truncate(kty)
        )),
    }
}

/// An EC public key from its coordinates, as the uncompressed SEC1 point.
fn ec_key(jwk: &RawJwk, coordinate_bytes: usize) -> Result<DecodingKey, String> {
    let x = decode_member(&jwk.x, "x", Some(coordinate_bytes))?;
    let y = decode_member(&jwk.y, "y", Some(coordinate_bytes))?;
    let mut point = Vec::with_capacity(1 + 2 * coordinate_bytes);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(DecodingKey::from_ec_der(&point))
}

/// A base64url member of a JWK, decoded, optionally of an exact length.
fn decode_member(
    value: &Option<String>,
    name: &str,
    length: Option<usize>,
) -> Result<Vec<u8>, String> {
    let value = value
        .as_deref()
        .ok_or_else(|| format!("malformed: no '{name}'"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|error| format!("malformed: '{name}' is not base64url: {error}"))?;
    if let Some(length) = length
        && bytes.len() != length
    {
        return Err(format!(
            "malformed: '{name}' has {} bytes, not {length}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// A value that came from outside (a token's `alg`, `kid` or `iss`, a JWK member), fit to
/// be echoed in a log line, an error and so a `WWW-Authenticate` header: at most 64
/// characters, and every character that is not printable ASCII, or is a quote or a
/// backslash, replaced by `?`, so no client can break a header or forge a log line.
pub(crate) fn truncate(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut shown: String = value
        .chars()
        .take(MAX_CHARS)
        .map(|character| match character {
            '"' | '\\' => '?',
            ' '..='~' => character,
            _ => '?',
        })
        .collect();
    if value.chars().nth(MAX_CHARS).is_some() {
        shown.push_str("...");
    }
    shown
}
