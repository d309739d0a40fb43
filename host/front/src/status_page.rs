//! The status page at `/` and `/ui`: one self-contained HTML file (inline style and
//! script, nothing else loaded) that shows the bridge live by polling the admin API's
//! `GET /admin/status` with the admin token the person enters. The page carries no data,
//! so it is served without a credential; the data stays behind the admin guard.
//!
//! Its content security policy allows exactly the page's own inline style and script,
//! by SHA-256 hash computed once from the embedded file, so nothing injected into the
//! page could run, and lets it connect only to its own origin.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// The page, as built into the binary.
const PAGE: &str = include_str!("status_page.html");

/// The paths that serve the page (GET only; other methods keep their old answers).
pub(crate) const STATUS_PAGE_PATHS: [&str; 2] = ["/", "/ui"];

/// The page's body and its content security policy.
pub(crate) struct StatusPage {
    pub(crate) body: Bytes,
    pub(crate) content_security_policy: String,
}

/// The page, with its policy computed on first use.
pub(crate) fn status_page() -> &'static StatusPage {
    static PAGE_AND_POLICY: OnceLock<StatusPage> = OnceLock::new();
    PAGE_AND_POLICY.get_or_init(|| StatusPage {
        body: Bytes::from_static(PAGE.as_bytes()),
        content_security_policy: content_security_policy(PAGE),
    })
}

/// Nothing by default; the page's own `<style>` and `<script>` blocks by hash; `data:`
/// images (the empty favicon, so the browser fetches none); fetches to its own origin;
/// no framing, no `<base>`, no form submission.
fn content_security_policy(page: &str) -> String {
    let scripts = inline_hashes(page, "script");
    let styles = inline_hashes(page, "style");
    format!(
        "default-src 'none'; script-src {scripts}; style-src {styles}; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// The CSP hash source (`'sha256-…'`) of each inline `<tag>…</tag>` block's exact text,
/// space-separated.
fn inline_hashes(page: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut hashes = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        let digest = Sha256::digest(&after.as_bytes()[..end]);
        hashes.push(format!("'sha256-{}'", STANDARD.encode(digest)));
        rest = &after[end + close.len()..];
    }
    hashes.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_the_pages_own_blocks_by_hash_and_nothing_else() {
        let page = status_page();
        let policy = &page.content_security_policy;
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains("connect-src 'self'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        let script = inline_hashes(PAGE, "script");
        let style = inline_hashes(PAGE, "style");
        assert_eq!(script.matches("'sha256-").count(), 1, "one script block");
        assert_eq!(style.matches("'sha256-").count(), 1, "one style block");
        assert!(
            policy.contains(&format!("script-src {script};")),
            "{policy}"
        );
        assert!(policy.contains(&format!("style-src {style};")), "{policy}");
    }

    #[test]
    fn the_page_is_self_contained() {
        // No external references, no inline event handlers or style attributes (the
        // policy would block them), and no way to pass a token in the URL.
        for forbidden in [
            "http://",
            "https://",
            "src=",
            "style=",
            " onclick=",
            " onload=",
            "location.search",
            "URLSearchParams",
        ] {
            assert!(!PAGE.contains(forbidden), "the page contains {forbidden:?}");
        }
        assert!(PAGE.contains("\"/admin/status\""));
        assert!(PAGE.contains("sessionStorage"));
        assert!(!PAGE.contains("localStorage"));
        assert!(!PAGE.contains("innerHTML"));
    }

    #[test]
    fn the_message_shows_outside_the_token_form() {
        // #auth is hidden while no token is stored (a bridge with no admin credential), and
        // an error status or an unreachable bridge must still show its reason.
        let auth = PAGE.find("<div id=\"auth\"").expect("the page has #auth");
        let auth_end = auth + PAGE[auth..].find("</div>").expect("#auth is closed");
        let message = PAGE
            .find("<p id=\"message\">")
            .expect("the page has #message");
        assert!(
            message > auth_end,
            "#message sits inside #auth, which is hidden without a token"
        );
        assert!(
            !PAGE[auth + 1..auth_end].contains("<div"),
            "#auth holds a nested div, so its end was not found"
        );
    }

    #[test]
    fn a_hash_covers_the_exact_block_text() {
        let hashes = inline_hashes("<p><script>a()</script><script>b()</script>", "script");
        let expected_a = STANDARD.encode(Sha256::digest(b"a()"));
        assert!(hashes.starts_with(&format!("'sha256-{expected_a}' 'sha256-")));
        assert_eq!(hashes.matches("'sha256-").count(), 2);
    }
}
