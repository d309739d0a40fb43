//! The checked `[auth]`, `[access]`, `[limits]` and `[audit]` settings: who may call, what
//! each caller may see and call, how fast, and what is written down about it.
//!
//! All four reload with the config file: a new key, a revoked key, a changed rule or limit
//! applies to the next request, and an invalid file leaves the running ones serving.

use std::path::PathBuf;
use std::time::Duration;

/// The name of the principal `http.auth_token` authenticates: everyone who holds the one
/// shared token is this one caller.
pub const DEFAULT_TOKEN_PRINCIPAL: &str = "token";
/// Roles that may use the admin routes (besides the `http.admin_token`).
pub const DEFAULT_ADMIN_ROLES: &[&str] = &["admin"];
/// The JWT signature algorithms accepted when `algorithms` is not set.
pub const DEFAULT_JWT_ALGORITHMS: &[JwtAlgorithm] = &[
    JwtAlgorithm::Rs256,
    JwtAlgorithm::Es256,
    JwtAlgorithm::EdDsa,
];
/// How far `exp` and `nbf` may be off from the bridge's clock.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
/// The claim that names the principal.
pub const DEFAULT_PRINCIPAL_CLAIM: &str = "sub";
/// The claim that lists the caller's roles (an array of strings, or one string).
pub const DEFAULT_ROLES_CLAIM: &str = "roles";
/// The claim that lists the token's scopes (a space-separated string, or an array).
pub const DEFAULT_SCOPES_CLAIM: &str = "scope";
/// The least time between two JWKS fetches caused by a token whose `kid` is unknown, so a
/// stream of made-up key ids costs one fetch per interval, not one per request.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// How old a fetched JWKS may grow before it is fetched again (in the background; the old
/// keys keep serving while the URL is down).
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// How long one JWKS fetch may take.
pub const DEFAULT_JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document the bridge reads (256 KiB).
pub const MAX_JWKS_BYTES: usize = 256 << 10;
/// Verified tokens remembered (by their SHA-256 digest) until they expire, so the signature
/// is checked once per token rather than once per request.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 10_000;
/// The longest bearer token the bridge looks at (16 KiB); longer ones are refused unread.
pub const MAX_BEARER_TOKEN_BYTES: usize = 16 << 10;
/// Whether a call answered from the cache takes a token from its caller's rate limit.
pub const DEFAULT_COUNT_CACHE_HITS: bool = false;

/// The `[auth]` settings. Authentication is on when any credential is configured: a JWT
/// issuer, an API key or `http.auth_token`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthConfig {
    /// OAuth 2.1 bearer tokens (JWTs) from an authorization server.
    pub jwt: Option<JwtConfig>,
    /// Keys for machine clients, each naming its principal and roles.
    pub api_keys: Vec<ApiKeyConfig>,
    /// The principal `http.auth_token` authenticates.
    pub token_principal: String,
    /// Roles that may use the admin routes.
    pub admin_roles: Vec<String>,
    /// Principals that get their own value of the `principal` metric label; every other
    /// principal is counted as `other`, so the label's cardinality stays bounded.
    pub metrics_principals: Vec<String>,
}

impl AuthConfig {
    /// Whether any credential besides `http.auth_token` is configured.
    pub fn has_identities(&self) -> bool {
        self.jwt.is_some() || !self.api_keys.is_empty()
    }
}

/// The `[auth.jwt]` settings: how the bridge checks a bearer JWT, as an OAuth 2.1 resource
/// server (RFC 9068 access tokens, RFC 8707 audience, RFC 9728 metadata).
#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The bridge's own resource URI: the `aud` every token must name, and the `resource`
    /// of the protected-resource metadata.
    pub audience: String,
    pub jwks: JwksSource,
    /// The signature algorithms accepted; never `none` and never an HMAC.
    pub algorithms: Vec<JwtAlgorithm>,
    pub leeway: Duration,
    pub principal_claim: String,
    pub roles_claim: String,
    pub scopes_claim: String,
    /// Scopes every token must carry; one missing is a 403 `insufficient_scope`.
    pub required_scopes: Vec<String>,
    /// Scopes advertised in the metadata (defaults to `required_scopes`).
    pub scopes_supported: Vec<String>,
    /// Authorization servers advertised in the metadata (defaults to `[issuer]`).
    pub authorization_servers: Vec<String>,
    pub jwks_refresh_interval: Duration,
    pub jwks_max_age: Duration,
    pub jwks_fetch_timeout: Duration,
    /// Extra trusted roots (PEM) for an https `jwks_url`, besides the system's: for an
    /// authorization server behind a private CA.
    pub jwks_ca_file: Option<PathBuf>,
    pub token_cache_entries: usize,
}

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file, read at start and on every config reload.
    File(PathBuf),
    /// An `https` URL (plain `http` only on a loopback host), fetched and cached.
    Url(String),
}

/// A JWT signature algorithm the bridge can accept: asymmetric ones only, so a public key
/// can never be used as an HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl JwtAlgorithm {
    /// Every algorithm, in the order the help text lists them.
    pub const ALL: [JwtAlgorithm; 9] = [
        JwtAlgorithm::Rs256,
        JwtAlgorithm::Rs384,
        JwtAlgorithm::Rs512,
        JwtAlgorithm::Ps256,
        JwtAlgorithm::Ps384,
        JwtAlgorithm::Ps512,
        JwtAlgorithm::Es256,
        JwtAlgorithm::Es384,
        JwtAlgorithm::EdDsa,
    ];

    /// The JOSE name (`alg` header value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with this JOSE name, if the bridge accepts it at all.
    pub fn from_name(name: &str) -> Option<JwtAlgorithm> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    /// The JWK key type (`kty`) a key for this algorithm has.
    pub fn key_type(self) -> &'static str {
        match self {
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512 => {
                "RSA"
            }
            Self::Es256 | Self::Es384 => "EC",
            Self::EdDsa => "OKP",
        }
    }
}

/// One `[[auth.api_keys]]` entry. Only the key's SHA-256 digest is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyConfig {
    pub principal: String,
    pub roles: Vec<String>,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("principal", &self.principal)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// The `[access]` settings: what each caller may see and call. With no rules, every caller
/// may use everything; with any rule, a caller may use only what an `allow` rule that
/// applies to it covers and no `deny` rule that applies to it covers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessConfig {
    pub rules: Vec<AccessRule>,
}

/// Whether a rule grants or takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessEffect {
    Allow,
    Deny,
}

impl AccessEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// One `[[access.rules]]` entry. Names and patterns are globs (`*` any run, `?` one
/// character).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRule {
    /// Unique; errors and the audit log name the rule.
    pub name: String,
    pub effect: AccessEffect,
    /// Who the rule applies to: a caller whose principal matches one of `principals` or who
    /// holds one of `roles`. Both empty means every caller.
    pub who: Audience,
    /// Server name globs; defaults to every server.
    pub servers: Vec<String>,
    /// Tool, prompt and resource-URI globs. A rule that lists none of the three covers
    /// everything on its servers; one that lists some covers only those kinds.
    pub tools: Option<Vec<String>>,
    pub prompts: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
}

/// Which callers a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience {
    /// Principal name globs.
    pub principals: Vec<String>,
    /// Role names (exact).
    pub roles: Vec<String>,
}

/// The `[limits]` settings: per-principal token buckets and in-flight caps.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LimitsConfig {
    /// What every principal gets, over all its calls.
    pub per_principal: LimitSettings,
    pub count_cache_hits: bool,
    /// Extra limits for some principals, servers or tools; each rule that applies to a call
    /// keeps its own bucket per principal, and every bucket must admit the call.
    pub rules: Vec<LimitRule>,
}

impl LimitsConfig {
    /// Whether any limit is set at all.
    pub fn is_empty(&self) -> bool {
        self.per_principal.is_empty() && self.rules.is_empty()
    }
}

/// One set of limits. Each is off when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LimitSettings {
    /// Calls per second, sustained.
    pub calls_per_second: Option<f64>,
    /// Calls allowed at once above the sustained rate (defaults to one second's worth, at
    /// least 1).
    pub burst: Option<u32>,
    /// Calls one principal may have in flight at a backend at once.
    pub max_in_flight: Option<usize>,
}

impl LimitSettings {
    pub fn is_empty(&self) -> bool {
        self.calls_per_second.is_none() && self.max_in_flight.is_none()
    }
}

/// One `[[limits.rules]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitRule {
    pub name: String,
    pub who: Audience,
    /// Server name globs; defaults to every server.
    pub servers: Vec<String>,
    /// Tool name globs; defaults to every tool (and every other forwarded request).
    pub tools: Vec<String>,
    pub limits: LimitSettings,
}

/// The `[audit]` settings: one JSON line per call, never with a token, key or argument.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditConfig {
    pub enabled: bool,
    /// Appended to; without it the lines go to the log under the `audit` target.
    pub file: Option<PathBuf>,
}
