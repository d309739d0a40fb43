//! Who shares a server's processes (`isolation`), the caps that keep every process model
//! bounded (`max_total_processes`, `[processes] max_total`), and what of the caller reaches a
//! backend: per-principal environment templates, the operator's per-principal secrets
//! (`[principal_secrets]`) and the opt-in identity in `_meta`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::secret::Secret;

/// Every server's processes serve every caller unless its table says otherwise.
pub const DEFAULT_ISOLATION: Isolation = Isolation::Shared;
/// A principal- or session-isolated server runs at most this many processes in all.
pub const DEFAULT_ISOLATED_MAX_TOTAL_PROCESSES: usize = 16;
/// Processes one principal or session gets on an isolated server, unless the server's own
/// table sets `max_connections`.
pub const DEFAULT_ISOLATED_MAX_CONNECTIONS: usize = 1;
/// Backend processes of all servers together (`[processes] max_total`).
pub const DEFAULT_MAX_BACKEND_PROCESSES: usize = 256;
/// Whether a server's requests carry the caller's name and roles in `_meta`.
pub const DEFAULT_IDENTITY_META: bool = false;
/// The `params._meta` key under which `identity_meta = true` names the caller to a backend:
/// `{"principal": "alice", "roles": ["dev"]}`. Never a credential.
pub const CALLER_META_KEY: &str = "dev.mcp-bridge/caller";
/// The reference prefixes an `env` value may use to name the caller; they are filled in when
/// a principal's or session's process is spawned, not when the file is loaded.
const PRINCIPAL_NAME_REFERENCE: &str = "principal.name";
const SECRET_REFERENCE_PREFIX: &str = "secret.";

/// Which callers share a server's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// One pool multiplexed across every caller (stateless servers).
    #[default]
    Shared,
    /// Each principal gets processes of its own, started on first use and stopped when idle,
    /// so a stateful server's state belongs to one principal.
    Principal,
    /// Each MCP session (or, for 2026-07-28 clients, each affinity key of one principal) gets
    /// one pinned process, stopped when the session ends or idles.
    Session,
}

impl Isolation {
    pub const ALL: [Isolation; 3] = [Isolation::Shared, Isolation::Principal, Isolation::Session];

    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Shared => "shared",
            Isolation::Principal => "principal",
            Isolation::Session => "session",
        }
    }

    pub fn parse(text: &str) -> Option<Isolation> {
        Isolation::ALL
            .into_iter()
            .find(|isolation| isolation.as_str() == text)
    }

    /// Whether processes belong to one principal or session rather than to everyone.
    pub fn is_isolated(self) -> bool {
        self != Isolation::Shared
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[processes]`: what bounds every backend process of the bridge together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessesConfig {
    /// Backend processes of all servers at once (starting, serving and stopping ones).
    pub max_total: usize,
}

impl Default for ProcessesConfig {
    fn default() -> Self {
        ProcessesConfig {
            max_total: DEFAULT_MAX_BACKEND_PROCESSES,
        }
    }
}

/// One piece of an `env` value that names the caller.
#[derive(Clone, PartialEq, Eq)]
pub enum EnvPiece {
    /// Text as written, with `${VAR}` references already expanded at load.
    Text(String),
    /// `${principal.name}`.
    PrincipalName,
    /// `${secret.NAME}`: the caller's value of a `[principal_secrets.NAME]` entry.
    Secret(String),
}

/// An `env` value rendered per principal when its process is spawned. It may hold secret
/// text, so it prints redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvTemplate(pub Vec<EnvPiece>);

impl fmt::Debug for EnvTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(super::secret::REDACTED)
    }
}

/// A template names a secret the caller has no value for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "principal `{principal}` has no value of `{secret}` (add `{principal} = {{ env = \"VAR\" }}` or \
     `{{ file = \"PATH\" }}` under [principal_secrets.{secret}])"
)]
pub struct MissingSecret {
    pub secret: String,
    pub principal: String,
}

impl EnvTemplate {
    /// The value for `principal`'s process.
    pub fn render(
        &self,
        principal: &str,
        secrets: &PrincipalSecrets,
    ) -> Result<Secret, MissingSecret> {
        let mut value = String::new();
        for piece in &self.0 {
            match piece {
                EnvPiece::Text(text) => value.push_str(text),
                EnvPiece::PrincipalName => value.push_str(principal),
                EnvPiece::Secret(name) => match secrets.get(name, principal) {
                    Some(secret) => value.push_str(secret.expose()),
                    None => {
                        return Err(MissingSecret {
                            secret: name.clone(),
                            principal: principal.to_owned(),
                        });
                    }
                },
            }
        }
        Ok(Secret::new(value))
    }

    /// The secrets the template names.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|piece| match piece {
            EnvPiece::Secret(name) => Some(name.as_str()),
            _ => None,
        })
    }
}

/// `[principal_secrets]`: for each secret name, each principal's value, read at load from
/// the environment or a file. Only `${secret.NAME}` in an isolated server's `env` uses them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PrincipalSecrets(pub BTreeMap<String, BTreeMap<String, Secret>>);

/// The bridge's environment variables `[principal_secrets]` read values from; no backend
/// inherits them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SecretSources(pub Vec<String>);

impl fmt::Debug for PrincipalSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: which principals have which secrets is configuration, the values are not.
        let names: BTreeMap<&str, Vec<&str>> = self
            .0
            .iter()
            .map(|(name, values)| (name.as_str(), values.keys().map(String::as_str).collect()))
            .collect();
        names.fmt(f)
    }
}

impl PrincipalSecrets {
    pub fn get(&self, secret: &str, principal: &str) -> Option<&Secret> {
        self.0.get(secret)?.get(principal)
    }

    pub fn is_declared(&self, secret: &str) -> bool {
        self.0.contains_key(secret)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// `[processes]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProcesses {
    pub max_total: Option<usize>,
}

/// One principal's value of a `[principal_secrets.NAME]` entry: from an environment
/// variable or a file, never written in the configuration itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrincipalSecret {
    pub env: Option<String>,
    pub file: Option<String>,
}

/// A piece of an `env` value as written: text still to expand, or a caller reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WrittenPiece<'a> {
    Text(&'a str),
    PrincipalName,
    Secret(&'a str),
}

/// Why a caller reference is malformed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadCallerReference(pub String);

/// Splits an `env` value at its caller references (`${principal.name}`, `${secret.NAME}`);
/// `None` when it has none. `$$` stays an escape inside the text pieces.
pub(crate) fn split_caller_references(
    text: &str,
) -> Result<Option<Vec<WrittenPiece<'_>>>, BadCallerReference> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let inner_start = i + 2;
                let rest = &text[inner_start..];
                let is_caller = rest.starts_with("principal.") || rest.starts_with("secret.");
                if !is_caller {
                    i += 2;
                    continue;
                }
                let Some(close) = rest.find('}') else {
                    return Err(BadCallerReference(rest.to_owned()));
                };
                let reference = &rest[..close];
                let piece = if reference == PRINCIPAL_NAME_REFERENCE {
                    WrittenPiece::PrincipalName
                } else if let Some(name) = reference.strip_prefix(SECRET_REFERENCE_PREFIX)
                    && !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    WrittenPiece::Secret(name)
                } else {
                    return Err(BadCallerReference(reference.to_owned()));
                };
                if text_start < i {
                    pieces.push(WrittenPiece::Text(&text[text_start..i]));
                }
                pieces.push(piece);
                i = inner_start + close + 1;
                text_start = i;
            }
            _ => i += 1,
        }
    }
    if pieces.is_empty() {
        return Ok(None);
    }
    if text_start < text.len() {
        pieces.push(WrittenPiece::Text(&text[text_start..]));
    }
    Ok(Some(pieces))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_caller_references_and_keeps_other_text() {
        assert_eq!(split_caller_references("plain ${HOME} $$x"), Ok(None));
        assert_eq!(
            split_caller_references("token-${secret.GITHUB_TOKEN}/${principal.name}!"),
            Ok(Some(vec![
                WrittenPiece::Text("token-"),
                WrittenPiece::Secret("GITHUB_TOKEN"),
                WrittenPiece::Text("/"),
                WrittenPiece::PrincipalName,
                WrittenPiece::Text("!"),
            ]))
        );
        // An escaped `$` is never the start of a reference.
        assert_eq!(split_caller_references("$${principal.name}"), Ok(None));
        assert!(split_caller_references("${principal.email}").is_err());
        assert!(split_caller_references("${secret.}").is_err());
        assert!(split_caller_references("${principal.name").is_err());
    }

    #[test]
    fn renders_per_principal_and_names_a_missing_secret() {
        let mut values = BTreeMap::new();
        values.insert("alice".to_owned(), Secret::new("a-token"));
        let mut secrets = PrincipalSecrets::default();
        secrets.0.insert("GH".to_owned(), values);
        let template = EnvTemplate(vec![
            EnvPiece::PrincipalName,
            EnvPiece::Text(":".to_owned()),
            EnvPiece::Secret("GH".to_owned()),
        ]);
        assert_eq!(
            template
                .render("alice", &secrets)
                .map(|s| s.expose().to_owned()),
            Ok("alice:a-token".to_owned())
        );
        let missing = template.render("bob", &secrets).unwrap_err();
        assert_eq!(missing.principal, "bob");
        assert!(missing.to_string().contains("[principal_secrets.GH]"));
        assert_eq!(format!("{template:?}"), "<redacted>");
    }
}
