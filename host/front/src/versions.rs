//! Which protocol a request speaks, decided from its four version signals: the session
//! it names (`Mcp-Session-Id`, whose version `initialize` fixed), the
//! `MCP-Protocol-Version` header, the body's `params._meta` protocol version, and
//! whether it is `initialize`.
//!
//! Real clients mix these signals (a transport that stamps its newest version on every
//! request, a 2026-07-28 body sent through a 2025 transport). Each known mix has a
//! [`MismatchKind`]. In strict mode (the default) a mix is refused with a message that
//! says what disagreed and what to send; in lenient mode it is served under one fixed
//! precedence, **session, then body, then header**:
//!
//! - the session wins because the client obtained it through `initialize`, an explicit
//!   handshake, while the header is stamped by a transport layer;
//! - the body wins over the header because it is what the request is written in and it
//!   carries the client's capabilities; the header is a copy for intermediaries.
//!
//! Either way each mix is counted in `mcp_bridge_version_mismatch_total{kind,action}`.

use super::error::FrontError;
use super::mcp::{SESSION_PROTOCOL_VERSIONS, STATELESS_PROTOCOL_VERSION};
use mcp_bridge_config::VersionMismatch;

/// The version signals of one request (a batch has no body version and is never
/// `initialize`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Signals<'a> {
    /// The protocol version of the session `Mcp-Session-Id` names, when it names a live one.
    pub session_version: Option<&'a str>,
    /// The `MCP-Protocol-Version` header.
    pub header: Option<&'a str>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub body: Option<&'a str>,
    pub initialize: bool,
}

/// The protocol a request is served under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// A request of an open session (2025-11-25 or older), at the session's version.
    Session,
    /// `initialize`, which opens a session.
    Handshake,
    /// 2026-07-28: no session, `_meta` on every request.
    Sessionless,
    /// No session, not `initialize`, no 2026-07-28 signal: it needs a session (a
    /// client's answer to a server request too).
    Unidentified,
}

/// A known mix of version signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    /// A session's request with `MCP-Protocol-Version: 2026-07-28`.
    SessionModernHeader,
    /// `initialize` with `MCP-Protocol-Version: 2026-07-28`.
    InitializeModernHeader,
    /// A sessionless 2026-07-28 body with an older, unknown or missing header.
    ModernBodyLegacyHeader,
    /// A session's request whose `_meta` names 2026-07-28. Served by the session in
    /// both modes: a session-based server ignores `_meta` keys it does not use, so the
    /// request is valid in the session's protocol. Counted so operators see such clients.
    SessionModernMeta,
}

impl MismatchKind {
    /// The `kind` label of the metric and the `data.kind` of a refusal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionModernHeader => "session_modern_header",
            Self::InitializeModernHeader => "initialize_modern_header",
            Self::ModernBodyLegacyHeader => "modern_body_legacy_header",
            Self::SessionModernMeta => "session_modern_meta",
        }
    }
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolution {
    pub protocol: Protocol,
    /// The mix that was accepted to reach this decision, if any.
    pub mismatch: Option<MismatchKind>,
}

impl Resolution {
    fn plain(protocol: Protocol) -> Resolution {
        Resolution {
            protocol,
            mismatch: None,
        }
    }
}

/// A refused mix: the message says what disagreed and what to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VersionConflict {
    pub kind: MismatchKind,
    pub message: String,
}

/// Decides the protocol of a request, or refuses it.
pub(crate) fn resolve(
    signals: &Signals<'_>,
    mode: VersionMismatch,
) -> Result<Resolution, FrontError> {
    if let Some(session_version) = signals.session_version {
        return in_session(session_version, signals, mode);
    }
    if signals.initialize {
        return handshake(signals.header, mode);
    }
    if let Some(body) = signals.body {
        return modern_body(body, signals.header, mode);
    }
    if signals.header == Some(STATELESS_PROTOCOL_VERSION) {
        // A 2026-07-28 request without its `_meta`: `stateless::validate` says so.
        return Ok(Resolution::plain(Protocol::Sessionless));
    }
    Ok(Resolution::plain(Protocol::Unidentified))
}

/// A request naming a live session.
fn in_session(
    session_version: &str,
    signals: &Signals<'_>,
    mode: VersionMismatch,
) -> Result<Resolution, FrontError> {
    match signals.header {
        Some(STATELESS_PROTOCOL_VERSION) => {
            let conflict = VersionConflict {
                kind: MismatchKind::SessionModernHeader,
                message: format!(
                    "this request carries Mcp-Session-Id of a {session_version} session but \
                     MCP-Protocol-Version: {STATELESS_PROTOCOL_VERSION}; send MCP-Protocol-Version: \
                     {session_version} with this session, or drop the session header to speak \
                     {STATELESS_PROTOCOL_VERSION} (with its params._meta)"
                ),
            };
            return tolerate(mode, Protocol::Session, conflict);
        }
        Some(header) if !SESSION_PROTOCOL_VERSIONS.contains(&header) => {
            return Err(unsupported(
                "MCP-Protocol-Version",
                header,
                format!("send MCP-Protocol-Version: {session_version} with this session"),
            ));
        }
        // Another session-based version than the session's: the 2025 transports say a
        // client SHOULD send the negotiated one, not MUST, so it is served as before.
        _ => {}
    }
    let mismatch = (signals.body == Some(STATELESS_PROTOCOL_VERSION))
        .then_some(MismatchKind::SessionModernMeta);
    Ok(Resolution {
        protocol: Protocol::Session,
        mismatch,
    })
}

/// `initialize` without a session.
fn handshake(header: Option<&str>, mode: VersionMismatch) -> Result<Resolution, FrontError> {
    if header != Some(STATELESS_PROTOCOL_VERSION) {
        return Ok(Resolution::plain(Protocol::Handshake));
    }
    let newest = SESSION_PROTOCOL_VERSIONS[0];
    let conflict = VersionConflict {
        kind: MismatchKind::InitializeModernHeader,
        message: format!(
            "this initialize carries MCP-Protocol-Version: {STATELESS_PROTOCOL_VERSION}, but \
             {STATELESS_PROTOCOL_VERSION} has no initialize (initialize opens a session of \
             {newest} or older); send initialize without MCP-Protocol-Version to open a \
             session, or skip initialize and send {STATELESS_PROTOCOL_VERSION} requests with \
             params._meta"
        ),
    };
    tolerate(mode, Protocol::Handshake, conflict)
}

/// A request without a session whose body names a version in `_meta`.
fn modern_body(
    body: &str,
    header: Option<&str>,
    mode: VersionMismatch,
) -> Result<Resolution, FrontError> {
    if body != STATELESS_PROTOCOL_VERSION {
        let advice = if SESSION_PROTOCOL_VERSIONS.contains(&body) {
            format!(
                "{body} is session-based: send initialize to open a session, or name \
                 {STATELESS_PROTOCOL_VERSION} in params._meta and in MCP-Protocol-Version"
            )
        } else {
            format!(
                "name {STATELESS_PROTOCOL_VERSION} in params._meta and in MCP-Protocol-Version, \
                 or initialize a session for an older version"
            )
        };
        return Err(unsupported(
            "the params._meta protocol version",
            body,
            advice,
        ));
    }
    if header == Some(STATELESS_PROTOCOL_VERSION) {
        return Ok(Resolution::plain(Protocol::Sessionless));
    }
    let carried = header.map_or_else(
        || "no MCP-Protocol-Version header".to_owned(),
        |header| format!("MCP-Protocol-Version: {header}"),
    );
    let conflict = VersionConflict {
        kind: MismatchKind::ModernBodyLegacyHeader,
        message: format!(
            "params._meta names protocol version {STATELESS_PROTOCOL_VERSION} but the request \
             carries {carried}; send MCP-Protocol-Version: {STATELESS_PROTOCOL_VERSION} with \
             this body, or drop the params._meta version and initialize a session to speak \
             an older version"
        ),
    };
    tolerate(mode, Protocol::Sessionless, conflict)
}

fn tolerate(
    mode: VersionMismatch,
    protocol: Protocol,
    conflict: VersionConflict,
) -> Result<Resolution, FrontError> {
    match mode {
        VersionMismatch::Strict => Err(FrontError::VersionConflict(conflict)),
        VersionMismatch::Lenient => Ok(Resolution {
            protocol,
            mismatch: Some(conflict.kind),
        }),
    }
}

fn unsupported(what: &'static str, got: &str, advice: String) -> FrontError {
    FrontError::UnsupportedProtocolVersion {
        what,
        got: got.to_owned(),
        supported: super::stateless::supported_versions().join(", "),
        advice,
    }
}

/// Counts the mix a resolution accepted or refused, if any.
pub(crate) fn count(metrics: &super::HttpMetrics, outcome: &Result<Resolution, FrontError>) {
    let (kind, action) = match outcome {
        Ok(Resolution {
            mismatch: Some(kind),
            ..
        }) => (*kind, "accepted"),
        Err(FrontError::VersionConflict(conflict)) => (conflict.kind, "refused"),
        _ => return,
    };
    tracing::debug!(
        kind = kind.as_str(),
        action,
        "request with mixed protocol-version signals"
    );
    metrics
        .version_mismatch_total
        .with_label_values(&[kind.as_str(), action])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: VersionMismatch = VersionMismatch::Strict;
    const LENIENT: VersionMismatch = VersionMismatch::Lenient;

    fn signals<'a>(
        session_version: Option<&'a str>,
        header: Option<&'a str>,
        body: Option<&'a str>,
        initialize: bool,
    ) -> Signals<'a> {
        Signals {
            session_version,
            header,
            body,
            initialize,
        }
    }

    fn protocol(signals: &Signals<'_>, mode: VersionMismatch) -> Option<Protocol> {
        resolve(signals, mode)
            .ok()
            .map(|resolution| resolution.protocol)
    }

    fn refused_kind(signals: &Signals<'_>, mode: VersionMismatch) -> Option<MismatchKind> {
        match resolve(signals, mode) {
            Err(FrontError::VersionConflict(conflict)) => Some(conflict.kind),
            _ => None,
        }
    }

    #[test]
    fn consistent_signals_pick_their_protocol_in_both_modes() {
        for mode in [STRICT, LENIENT] {
            let session = signals(Some("2025-11-25"), Some("2025-11-25"), None, false);
            assert_eq!(protocol(&session, mode), Some(Protocol::Session));
            // Pre-2025-06-18 clients send no header at all.
            let old = signals(Some("2025-03-26"), None, None, false);
            assert_eq!(protocol(&old, mode), Some(Protocol::Session));
            let init = signals(None, None, None, true);
            assert_eq!(protocol(&init, mode), Some(Protocol::Handshake));
            let modern = signals(None, Some("2026-07-28"), Some("2026-07-28"), false);
            assert_eq!(protocol(&modern, mode), Some(Protocol::Sessionless));
            let nothing = signals(None, Some("2025-11-25"), None, false);
            assert_eq!(protocol(&nothing, mode), Some(Protocol::Unidentified));
            let resolution = resolve(&modern, mode).ok();
            assert_eq!(resolution.and_then(|r| r.mismatch), None);
        }
    }

    #[test]
    fn strict_refuses_each_known_mix_and_lenient_applies_the_precedence() {
        let cases = [
            (
                signals(Some("2025-11-25"), Some("2026-07-28"), None, false),
                MismatchKind::SessionModernHeader,
                Protocol::Session,
            ),
            (
                signals(None, Some("2026-07-28"), None, true),
                MismatchKind::InitializeModernHeader,
                Protocol::Handshake,
            ),
            (
                signals(None, Some("2025-11-25"), Some("2026-07-28"), false),
                MismatchKind::ModernBodyLegacyHeader,
                Protocol::Sessionless,
            ),
            (
                signals(None, None, Some("2026-07-28"), false),
                MismatchKind::ModernBodyLegacyHeader,
                Protocol::Sessionless,
            ),
        ];
        for (case, kind, served) in cases {
            assert_eq!(refused_kind(&case, STRICT), Some(kind), "{case:?}");
            let lenient = resolve(&case, LENIENT).ok();
            assert_eq!(
                lenient,
                Some(Resolution {
                    protocol: served,
                    mismatch: Some(kind)
                }),
                "{case:?}"
            );
        }
    }

    #[test]
    fn a_2026_meta_in_a_session_is_served_by_the_session_in_both_modes() {
        for mode in [STRICT, LENIENT] {
            let case = signals(
                Some("2025-11-25"),
                Some("2025-11-25"),
                Some("2026-07-28"),
                false,
            );
            assert_eq!(
                resolve(&case, mode).ok(),
                Some(Resolution {
                    protocol: Protocol::Session,
                    mismatch: Some(MismatchKind::SessionModernMeta)
                })
            );
        }
    }

    #[test]
    fn refusals_say_what_disagreed_and_what_to_send() {
        let message = |case: Signals<'_>| match resolve(&case, STRICT) {
            Err(error) => error.to_string(),
            Ok(resolution) => panic!("{case:?} was served: {resolution:?}"),
        };
        let text = message(signals(Some("2025-06-18"), Some("2026-07-28"), None, false));
        assert!(
            text.contains("Mcp-Session-Id of a 2025-06-18 session")
                && text.contains("send MCP-Protocol-Version: 2025-06-18 with this session"),
            "{text}"
        );
        let text = message(signals(None, None, Some("2026-07-28"), false));
        assert!(
            text.contains("no MCP-Protocol-Version header")
                && text.contains("send MCP-Protocol-Version: 2026-07-28 with this body"),
            "{text}"
        );
        // Unknown versions are refused in both modes, listing every version spoken.
        for mode in [STRICT, LENIENT] {
            let unknown = signals(Some("2025-11-25"), Some("1900-01-01"), None, false);
            let Err(error) = resolve(&unknown, mode) else {
                panic!("an unknown version was served");
            };
            let text = error.to_string();
            assert!(
                text.contains("2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26")
                    && text.contains("send MCP-Protocol-Version: 2025-11-25 with this session"),
                "{text}"
            );
            let legacy_meta = signals(None, Some("2025-11-25"), Some("2025-11-25"), false);
            let Err(error) = resolve(&legacy_meta, mode) else {
                panic!("a session-based version without a session was served");
            };
            assert!(error.to_string().contains("send initialize"), "{error}");
        }
    }
}
