//! Turns a request's `Authorization` header into a [`Principal`].

use std::collections::HashSet;
use std::sync::Arc;

use mcp_bridge_config::{AuthConfig, HttpConfig, MAX_BEARER_TOKEN_BYTES};
use prometheus::IntCounter;

use crate::api_keys::{self, CredentialDigest, KeyRing, bearer_token};
use crate::jwt::JwtVerifier;
use crate::{AuthError, AuthMetrics, CredentialKind, Principal, SetupError};

/// What an admin route's caller is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRefusal {
    /// No credential, or a wrong one: 401.
    Unauthorized(AuthError),
    /// Only the shared client token is configured, and it does not grant admin: 403.
    Disabled,
    /// An authenticated principal without an admin role: 403.
    NotAdmin { principal: String, roles: String },
}

/// Checks credentials for one config: the shared token, the API keys, and bearer JWTs.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    keys: KeyRing,
    admin_token: Option<CredentialDigest>,
    admin_roles: Vec<String>,
    metrics_principals: HashSet<String>,
    /// Whether JWTs or API keys are configured: then principals are individuals and the
    /// admin routes also accept an admin role.
    identities: bool,
    metrics: Arc<AuthMetrics>,
    /// `authentications_total{result="ok"}` per credential kind, resolved once: every
    /// authenticated request counts one, so the label lookup stays off the hot path.
    accepted: [IntCounter; 4],
}

/// The slot of `kind` in [`Authenticator::accepted`].
fn accepted_index(kind: CredentialKind) -> usize {
    match kind {
        CredentialKind::Jwt => 0,
        CredentialKind::ApiKey => 1,
        CredentialKind::SharedToken => 2,
        CredentialKind::Anonymous => 3,
    }
}

impl Authenticator {
    pub fn new(
        auth: &AuthConfig,
        http: &HttpConfig,
        previous: Option<&Authenticator>,
        metrics: &Arc<AuthMetrics>,
    ) -> Result<Authenticator, SetupError> {
        let jwt = auth
            .jwt
            .as_ref()
            .map(|config| JwtVerifier::new(config, previous.and_then(|p| p.jwt.as_ref()), metrics))
            .transpose()?;
        let mut keys = KeyRing::default();
        for key in &auth.api_keys {
            keys.add(
                key.sha256,
                &key.principal,
                &key.roles,
                CredentialKind::ApiKey,
            );
        }
        if let Some(token) = &http.auth_token {
            keys.add(
                api_keys::digest(token.expose()),
                &auth.token_principal,
                &[],
                CredentialKind::SharedToken,
            );
        }
        Ok(Authenticator {
            jwt,
            keys,
            admin_token: http
                .admin_token
                .as_ref()
                .map(|t| api_keys::digest(t.expose())),
            admin_roles: auth.admin_roles.clone(),
            metrics_principals: auth.metrics_principals.iter().cloned().collect(),
            identities: auth.has_identities(),
            accepted: [
                CredentialKind::Jwt,
                CredentialKind::ApiKey,
                CredentialKind::SharedToken,
                CredentialKind::Anonymous,
            ]
            .map(|kind| {
                metrics
                    .authentications_total
                    .with_label_values(&["ok", kind.as_str()])
            }),
            metrics: metrics.clone(),
        })
    }

    /// Whether any client credential is configured; without one every caller is anonymous.
    pub fn enabled(&self) -> bool {
        self.jwt.is_some() || !self.keys.is_empty()
    }

    /// The JWT settings, when bearer JWTs are accepted (for the protected-resource
    /// metadata and the `WWW-Authenticate` challenge).
    pub fn jwt(&self) -> Option<&mcp_bridge_config::JwtConfig> {
        self.jwt.as_ref().map(JwtVerifier::config)
    }

    /// The principal the `Authorization` header's credential names.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal::anonymous());
        }
        let result = self.check(authorization).await;
        match &result {
            Ok(principal) => self.accepted[accepted_index(principal.credential)].inc(),
            Err(error) => self
                .metrics
                .authentications_total
                .with_label_values(&[error.reason(), self.credential_kind(authorization)])
                .inc(),
        }
        result
    }

    async fn check(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = presented_token(authorization)?;
        let digest = api_keys::digest(token);
        if let Some(principal) = self.keys.find(&digest) {
            return Ok(principal.clone());
        }
        match &self.jwt {
            Some(jwt) if looks_like_jwt(token) => jwt.verify_digested(token, digest).await,
            _ => Err(AuthError::UnknownCredential),
        }
    }

    /// What kind of credential a refused request presented, for the metric label.
    fn credential_kind(&self, authorization: Option<&str>) -> &'static str {
        match authorization.and_then(bearer_token) {
            None => "none",
            Some(token) if self.jwt.is_some() && looks_like_jwt(token) => "jwt",
            Some(_) => "key",
        }
    }

    /// Whether the admin routes are open to anyone who reaches them: no `http.admin_token`,
    /// no client token or API keys, no JWTs. `authorize_admin` then admits every caller.
    pub fn admin_is_open(&self) -> bool {
        self.admin_token.is_none() && !self.identities && self.keys.is_empty()
    }

    /// Whether the caller may use the admin routes: with `http.admin_token`, or as a
    /// principal holding one of `auth.admin_roles` when JWTs or API keys are configured.
    /// With no credential configured at all, the routes are open (the front allows that
    /// only on a loopback address, or with `--insecure-listen`).
    pub async fn authorize_admin(&self, authorization: Option<&str>) -> Result<(), AdminRefusal> {
        let presented = authorization.and_then(bearer_token);
        if let (Some(expected), Some(token)) = (&self.admin_token, presented)
            && api_keys::digests_equal(expected, &api_keys::digest(token))
        {
            return Ok(());
        }
        if self.identities {
            let principal = self
                .authenticate(authorization)
                .await
                .map_err(AdminRefusal::Unauthorized)?;
            if self.admin_roles.iter().any(|role| principal.has_role(role)) {
                return Ok(());
            }
            return Err(AdminRefusal::NotAdmin {
                principal: principal.name.to_string(),
                roles: self.admin_roles.join(", "),
            });
        }
        match (&self.admin_token, self.keys.is_empty()) {
            (Some(_), _) => Err(AdminRefusal::Unauthorized(match presented {
                None => AuthError::Missing,
                Some(_) => AuthError::UnknownCredential,
            })),
            (None, false) => Err(AdminRefusal::Disabled),
            (None, true) => Ok(()),
        }
    }

    /// The value of the `principal` metric label for `name`: the name itself when
    /// `auth.metrics_principals` lists it, `other` otherwise.
    pub fn metric_label<'a>(&self, name: &'a str) -> &'a str {
        if self.metrics_principals.contains(name) {
            name
        } else {
            "other"
        }
    }
}

/// The bearer token of the header, bounded in size.
fn presented_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let Some(value) = authorization else {
        return Err(AuthError::Missing);
    };
    let token = bearer_token(value).ok_or_else(|| {
        AuthError::Malformed("expected 'Authorization: Bearer <token>'".to_owned())
    })?;
    if token.len() > MAX_BEARER_TOKEN_BYTES {
        return Err(AuthError::Malformed(format!(
            "the token is longer than {} KiB",
            MAX_BEARER_TOKEN_BYTES >> 10
        )));
    }
    Ok(token)
}

/// Whether a credential has a JWT's shape (three dot-separated parts); anything else is
/// only ever an API key.
fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}
