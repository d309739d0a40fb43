//! A caller the bridge knows by name.

use std::sync::Arc;
use std::time::SystemTime;

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A bearer JWT from the configured authorization server.
    Jwt,
    /// One of the `[[auth.api_keys]]`.
    ApiKey,
    /// The shared `http.auth_token`: everyone holding it is one principal.
    SharedToken,
    /// No credential is configured at all: every caller is anonymous.
    Anonymous,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::SharedToken => "token",
            Self::Anonymous => "anonymous",
        }
    }
}

/// An authenticated caller. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The principal's name: the JWT's principal claim, the API key's `principal`, or the
    /// shared token's configured name.
    pub name: Arc<str>,
    pub roles: Arc<[String]>,
    /// The token's scopes (JWTs only).
    pub scopes: Arc<[String]>,
    pub credential: CredentialKind,
    /// When the credential stops being valid (JWTs only).
    pub expires_at: Option<SystemTime>,
}

impl Principal {
    /// The caller of a bridge with no credential configured.
    pub fn anonymous() -> Principal {
        Principal {
            name: Arc::from("anonymous"),
            roles: Arc::from(Vec::new()),
            scopes: Arc::from(Vec::new()),
            credential: CredentialKind::Anonymous,
            expires_at: None,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }

    /// Whether this principal names one person or machine, so that results private to it
    /// may be shared between its sessions. The shared token and anonymous callers do not:
    /// their private results stay with the session that fetched them.
    pub fn is_individual(&self) -> bool {
        matches!(
            self.credential,
            CredentialKind::Jwt | CredentialKind::ApiKey
        )
    }
}
