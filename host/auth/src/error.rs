//! Why a request's credential was not accepted: what the client sent wrong (or what failed
//! on the bridge's side), with the HTTP status and RFC 6750 error code to answer with.

/// Why a credential was refused. Every message says what was wrong and how to fix it, and
/// none repeats the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credential: send 'Authorization: Bearer <token>' (an access token from the authorization server, or an API key)"
    )]
    Missing,
    #[error("the Authorization header is malformed: {0}")]
    Malformed(String),
    #[error(
        "the credential is not one the bridge accepts (neither a configured API key or token, nor a JWT it can verify); send 'Authorization: Bearer <token>' with a valid credential"
    )]
    UnknownCredential,
    #[error("the token is not a well-formed JWT: {0}")]
    InvalidToken(String),
    #[error(
        "the token is signed with '{0}', which the bridge does not accept (auth.jwt.algorithms); `none` and HMAC algorithms are never accepted"
    )]
    AlgorithmNotAllowed(String),
    #[error(
        "the token names signing key '{0}', which is not in the authorization server's key set (fetched again at most every auth.jwt.jwks_refresh_interval)"
    )]
    UnknownKey(String),
    #[error("the token's '{alg}' does not fit the key '{kid}' (a {kty} key)")]
    KeyMismatch {
        alg: String,
        kid: String,
        kty: String,
    },
    #[error(
        "the token names no signing key (kid) and {candidates} keys of the authorization server's key set fit its '{alg}'; exactly one must, or the token must carry a kid"
    )]
    NoKeyId { alg: String, candidates: usize },
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token expired; get a new one from the authorization server")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the token was issued by '{got}', not by '{expected}' (auth.jwt.issuer)")]
    WrongIssuer { got: String, expected: String },
    #[error(
        "the token is for another resource: its audience does not include '{expected}' (the bridge's resource URI); request a token with resource={expected}"
    )]
    WrongAudience { expected: String },
    #[error("the token has no '{0}' claim, which names the principal (auth.jwt.principal_claim)")]
    MissingPrincipal(String),
    #[error(
        "the token lacks the scope '{0}', which the bridge requires (auth.jwt.required_scopes)"
    )]
    InsufficientScope(String),
    #[error("the authorization server's key set is not available yet ({0}); retry shortly")]
    KeysUnavailable(String),
}

impl AuthError {
    /// The HTTP status to answer with: 403 for a valid token without the scope, 503 while
    /// the bridge has no keys to check a token with, 401 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::InsufficientScope(_) => 403,
            Self::KeysUnavailable(_) => 503,
            _ => 401,
        }
    }

    /// The RFC 6750 `error` of the `WWW-Authenticate` challenge (none for a missing
    /// credential, as the RFC asks).
    pub fn bearer_error(&self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::Malformed(_) => Some("invalid_request"),
            Self::InsufficientScope(_) => Some("insufficient_scope"),
            Self::KeysUnavailable(_) => None,
            _ => Some("invalid_token"),
        }
    }

    /// A short, stable label for metrics and the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed(_) => "malformed",
            Self::UnknownCredential => "unknown_credential",
            Self::InvalidToken(_) => "invalid_token",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::UnknownKey(_) => "unknown_key",
            Self::KeyMismatch { .. } => "key_mismatch",
            Self::NoKeyId { .. } => "no_key_id",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer { .. } => "wrong_issuer",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::MissingPrincipal(_) => "missing_principal",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::KeysUnavailable(_) => "keys_unavailable",
        }
    }

    /// Whether the same credential may succeed later without the client changing it.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::KeysUnavailable(_))
    }
}

/// Why the identity layer could not be built from a config (at start, or on a reload, when
/// the running one stays).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("auth.jwt.jwks_file {path}: {reason}")]
    JwksFile { path: String, reason: String },
    #[error("auth.jwt.jwks_url {url}: {reason}")]
    JwksUrl { url: String, reason: String },
}
