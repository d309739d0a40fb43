//! The parts of a JWT the verifier reads: the header (before any key is chosen) and the
//! claims (after the signature verified), with every check that turns them into a
//! principal.
//!
//! Every value a token carries is bounded before it is kept or echoed: the principal's
//! name, each role and scope, and how many roles and scopes there are. A token over a
//! bound is refused rather than trimmed, because dropping a role could let a caller slip
//! past an access rule that denies that role.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_bridge_config::{JwtAlgorithm, JwtConfig};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::jwks::{MAX_KEY_ID_BYTES, truncate};
use crate::{AuthError, CredentialKind, Principal};

/// The longest principal name accepted.
pub(crate) const MAX_PRINCIPAL_BYTES: usize = 256;
/// The most roles, and separately the most scopes, one token may carry.
pub(crate) const MAX_CLAIM_ENTRIES: usize = 64;
/// The longest single role or scope.
pub(crate) const MAX_CLAIM_ENTRY_BYTES: usize = 128;

/// The three parts of a compact JWS.
pub(crate) struct TokenParts<'a> {
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
    /// `header.payload`: what the signature covers.
    pub(crate) signed: &'a str,
}

impl<'a> TokenParts<'a> {
    pub(crate) fn split(token: &'a str) -> Result<TokenParts<'a>, AuthError> {
        let malformed = || {
            AuthError::InvalidToken(
                "a JWT is three base64url parts separated by dots (header.payload.signature)"
                    .to_owned(),
            )
        };
        let (signed, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
        let (header, payload) = signed.split_once('.').ok_or_else(malformed)?;
        if payload.contains('.') {
            return Err(malformed());
        }
        Ok(TokenParts {
            header,
            payload,
            signature,
            signed,
        })
    }
}

/// The JOSE header members the verifier reads.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    /// Critical extensions must be understood or the token refused (RFC 7515 §4.1.11);
    /// the bridge understands none.
    crit: Option<Value>,
}

/// The header of a token whose algorithm is allowed.
pub(crate) struct Header {
    pub(crate) alg: JwtAlgorithm,
    pub(crate) kid: Option<String>,
}

/// Reads the header and checks its algorithm against the allow-list, before anything
/// else about the token is looked at: `none` and HMAC algorithms stop here.
pub(crate) fn parse_header(encoded: &str, allowed: &[JwtAlgorithm]) -> Result<Header, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| AuthError::InvalidToken("the header is not base64url".to_owned()))?;
    let raw: RawHeader = serde_json::from_slice(&bytes).map_err(|_| {
        AuthError::InvalidToken("the header is not a JSON object with an 'alg' string".to_owned())
    })?;
    let alg = JwtAlgorithm::from_name(&raw.alg)
        .filter(|alg| allowed.contains(alg))
        .ok_or_else(|| AuthError::AlgorithmNotAllowed(truncate(&raw.alg)))?;
    if raw.crit.is_some() {
        return Err(AuthError::InvalidToken(
            "the header lists critical extensions (crit), which the bridge does not support"
                .to_owned(),
        ));
    }
    if raw
        .kid
        .as_ref()
        .is_some_and(|kid| kid.len() > MAX_KEY_ID_BYTES)
    {
        return Err(AuthError::InvalidToken(format!(
            "the kid is longer than {MAX_KEY_ID_BYTES} bytes"
        )));
    }
    Ok(Header { alg, kid: raw.kid })
}

/// The payload as a JSON object (only after its signature verified).
pub(crate) fn parse_claims(encoded: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| AuthError::InvalidToken("the payload is not base64url".to_owned()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::InvalidToken("the payload is not a JSON object".to_owned()))
}

/// Checks the verified claims against `config` at `now` and builds the principal. The
/// required scopes are not checked here: the caller checks them last, once the token is
/// otherwise valid.
pub(crate) fn principal_from_claims(
    claims: &Map<String, Value>,
    config: &JwtConfig,
    now: SystemTime,
) -> Result<Principal, AuthError> {
    let now_seconds = seconds_since_epoch(now);
    let leeway = config.leeway.as_secs_f64();
    let expires = numeric_date(claims, "exp")?.ok_or_else(|| {
        AuthError::InvalidToken(
            "the token has no 'exp' claim; access tokens must expire".to_owned(),
        )
    })?;
    if now_seconds >= expires + leeway {
        return Err(AuthError::Expired);
    }
    if let Some(not_before) = numeric_date(claims, "nbf")?
        && now_seconds + leeway < not_before
    {
        return Err(AuthError::NotYetValid);
    }
    check_issuer(claims, &config.issuer)?;
    check_audience(claims, &config.audience)?;
    let name = principal_name(claims, &config.principal_claim)?;
    let roles = string_list(claims, &config.roles_claim, ListSyntax::OneOrArray)?;
    let scopes = string_list(
        claims,
        &config.scopes_claim,
        ListSyntax::SpaceSeparatedOrArray,
    )?;
    let expires_at =
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::try_from_secs_f64(expires.max(0.0)).map_err(|_| {
                AuthError::InvalidToken("the 'exp' claim is out of range".to_owned())
            })?)
            .ok_or_else(|| AuthError::InvalidToken("the 'exp' claim is out of range".to_owned()))?;
    Ok(Principal {
        name: Arc::from(name),
        roles: Arc::from(roles),
        scopes: Arc::from(scopes),
        credential: CredentialKind::Jwt,
        expires_at: Some(expires_at),
    })
}

/// The first of `required` that `principal` lacks.
pub(crate) fn first_missing_scope<'a>(
    principal: &Principal,
    required: &'a [String],
) -> Option<&'a String> {
    required
        .iter()
        .find(|scope| !principal.scopes.iter().any(|held| held == *scope))
}

fn seconds_since_epoch(time: SystemTime) -> f64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// A NumericDate claim (seconds since the epoch), if present.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, AuthError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    value
        .as_f64()
        .filter(|seconds| seconds.is_finite())
        .map(Some)
        .ok_or_else(|| {
            AuthError::InvalidToken(format!("the '{name}' claim is not a number of seconds"))
        })
}

fn check_issuer(claims: &Map<String, Value>, expected: &str) -> Result<(), AuthError> {
    match claims.get("iss") {
        Some(Value::String(issuer)) if issuer == expected => Ok(()),
        other => Err(AuthError::WrongIssuer {
            got: match other {
                Some(Value::String(issuer)) => truncate(issuer),
                Some(_) => "(not a string)".to_owned(),
                None => "(none)".to_owned(),
            },
            expected: expected.to_owned(),
        }),
    }
}

/// `aud` is one string or an array of strings; one of them must be the bridge's resource
/// URI (RFC 8707), so a token minted for another resource is refused.
fn check_audience(claims: &Map<String, Value>, expected: &str) -> Result<(), AuthError> {
    let names_bridge = match claims.get("aud") {
        Some(Value::String(audience)) => audience == expected,
        Some(Value::Array(audiences)) => audiences
            .iter()
            .any(|audience| audience.as_str() == Some(expected)),
        _ => false,
    };
    if names_bridge {
        return Ok(());
    }
    Err(AuthError::WrongAudience {
        expected: expected.to_owned(),
    })
}

fn principal_name(claims: &Map<String, Value>, claim: &str) -> Result<String, AuthError> {
    match claims.get(claim) {
        Some(Value::String(name)) if !name.is_empty() && name.len() <= MAX_PRINCIPAL_BYTES => {
            Ok(name.clone())
        }
        _ => Err(AuthError::MissingPrincipal(claim.to_owned())),
    }
}

/// How a list claim may be written besides as an array of strings.
#[derive(Clone, Copy)]
enum ListSyntax {
    /// One string is a list of one (roles).
    OneOrArray,
    /// One string holds space-separated entries (OAuth's `scope`).
    SpaceSeparatedOrArray,
}

/// A list claim (absent means empty), refused when it is of another type or over the
/// bounds.
fn string_list(
    claims: &Map<String, Value>,
    claim: &str,
    syntax: ListSyntax,
) -> Result<Vec<String>, AuthError> {
    let wrong_type = || {
        AuthError::InvalidToken(format!(
            "the '{claim}' claim must be a string or an array of strings"
        ))
    };
    let entries: Vec<&str> = match (claims.get(claim), syntax) {
        (None | Some(Value::Null), _) => Vec::new(),
        (Some(Value::String(one)), ListSyntax::OneOrArray) => vec![one.as_str()],
        (Some(Value::String(spaced)), ListSyntax::SpaceSeparatedOrArray) => spaced
            .split(' ')
            .filter(|entry| !entry.is_empty())
            .collect(),
        (Some(Value::Array(items)), _) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(wrong_type))
            .collect::<Result<_, _>>()?,
        (Some(_), _) => return Err(wrong_type()),
    };
    if entries.len() > MAX_CLAIM_ENTRIES {
        return Err(AuthError::InvalidToken(format!(
            "the '{claim}' claim has {} entries; at most {MAX_CLAIM_ENTRIES} are accepted",
            entries.len()
        )));
    }
    if entries
        .iter()
        .any(|entry| entry.len() > MAX_CLAIM_ENTRY_BYTES)
    {
        return Err(AuthError::InvalidToken(format!(
            "an entry of the '{claim}' claim is longer than {MAX_CLAIM_ENTRY_BYTES} bytes"
        )));
    }
    Ok(entries.into_iter().map(str::to_owned).collect())
}
