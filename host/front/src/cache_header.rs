//! The `mcp-bridge-cache` response header: what the cache did with a forwarded call and
//! why, in one line of `key=value` fields separated by `; `:
//!
//! ```text
//! generation=8; result=hit; decided-by=flat; ttl-source=config:demo/get_clients; filled=7; ttl-ms=412000; scope=public
//! ```
//!
//! README's "The cache header" documents each field; this module is the one place that
//! writes them. Names come from the config (binding names, `[cache.ttl]` rows), so each is
//! escaped to header-safe characters and capped in length.

use std::fmt::Write as _;

use bytes::Bytes;
use http::HeaderValue;
use mcp_bridge_upstream::{CacheHint, CacheProvenance};

/// The response header that says what the cache did with a call and why. Like a CDN's
/// `X-Cache`, it is for operators, plugin authors and tests; clients need not read it.
pub(crate) const CACHE_HEADER: &str = "mcp-bridge-cache";

/// The longest a name field (`decided-by`, `ttl-source`) may be once escaped; a longer
/// one is cut and ends in `%E2%80%A6` (an escaped `…`).
const MAX_NAME_BYTES: usize = 96;

/// The escaped ellipsis that ends a cut name.
const CUT: &str = "%E2%80%A6";

/// What the cache did with one forwarded call.
#[derive(Debug, Clone)]
pub(crate) struct CacheReport {
    /// The generation of the policy chain that decided the call; `None` when the cache
    /// had no part in it (then no header is sent).
    pub generation: Option<u64>,
    /// `hit`, `stale`, `coalesced`, `miss`, `bypass` or `none` (the router's words).
    pub result: &'static str,
    pub hint: Option<CacheHint>,
    pub provenance: CacheProvenance,
}

impl CacheReport {
    /// The header's value, or `None` when the cache had no part in the call.
    pub(crate) fn header_value(&self) -> Option<HeaderValue> {
        let generation = self.generation?;
        let mut text = String::with_capacity(160);
        // Writing to a String cannot fail.
        let _ = write!(text, "generation={generation}; result={}", self.result);
        let provenance = &self.provenance;
        if let Some(name) = &provenance.decided_by {
            text.push_str("; decided-by=");
            push_name(&mut text, name);
        }
        if let Some(source) = &provenance.ttl_source {
            text.push_str("; ttl-source=");
            push_name(&mut text, source);
        }
        if let Some(filled) = provenance.filled {
            let _ = write!(text, "; filled={filled}");
        }
        if let Some(hint) = self.hint {
            let scope = if hint.shared { "public" } else { "private" };
            let _ = write!(text, "; ttl-ms={}; scope={scope}", hint.ttl.as_millis());
        }
        // Every byte written is visible ASCII, so this never fails; the text becomes the
        // header's bytes without a copy.
        HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
    }
}

/// Whether a byte of a name is written as itself: letters, digits and `-._~:/*+@`, none
/// of which is a field separator (`;`, `=`, space) or the escape (`%`).
fn plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~:/*+@".contains(&byte)
}

/// Appends `name` percent-escaped (each other byte as `%XX`), cut at a character
/// boundary so the escaped form is at most [`MAX_NAME_BYTES`].
fn push_name(out: &mut String, name: &str) {
    let escaped_len = |c: char| {
        if c.is_ascii() && plain(c as u8) {
            1
        } else {
            3 * c.len_utf8()
        }
    };
    let total: usize = name.chars().map(escaped_len).sum();
    let budget = if total <= MAX_NAME_BYTES {
        MAX_NAME_BYTES
    } else {
        MAX_NAME_BYTES - CUT.len()
    };
    let mut used = 0;
    for c in name.chars() {
        let width = escaped_len(c);
        if used + width > budget {
            out.push_str(CUT);
            return;
        }
        used += width;
        if width == 1 {
            out.push(c);
        } else {
            let mut buffer = [0; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn report(result: &'static str, provenance: CacheProvenance) -> CacheReport {
        CacheReport {
            generation: Some(8),
            result,
            hint: Some(CacheHint {
                ttl: Duration::from_millis(412_000),
                shared: true,
            }),
            provenance,
        }
    }

    fn text(report: &CacheReport) -> String {
        let value = report
            .header_value()
            .unwrap_or_else(|| panic!("a header for {report:?}"));
        value.to_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_hit_names_the_decider_the_ttl_source_and_the_filling_generation() {
        let hit = report(
            "hit",
            CacheProvenance {
                decided_by: Some(Arc::from("flat")),
                ttl_source: Some(Arc::from("config:demo/get_clients")),
                filled: Some(7),
            },
        );
        assert_eq!(
            text(&hit),
            "generation=8; result=hit; decided-by=flat; ttl-source=config:demo/get_clients; filled=7; ttl-ms=412000; scope=public"
        );
    }

    #[test]
    fn unknown_fields_are_left_out_and_no_cache_means_no_header() {
        let bypass = CacheReport {
            hint: None,
            ..report(
                "bypass",
                CacheProvenance {
                    decided_by: Some(Arc::from("builtin")),
                    ..CacheProvenance::default()
                },
            )
        };
        assert_eq!(
            text(&bypass),
            "generation=8; result=bypass; decided-by=builtin"
        );
        let none = CacheReport {
            generation: None,
            ..bypass
        };
        assert!(none.header_value().is_none());
    }

    #[test]
    fn names_are_escaped_and_capped() {
        let odd = report(
            "miss",
            CacheProvenance {
                decided_by: Some(Arc::from("my plugin; x=1%\r\nné")),
                ttl_source: Some(Arc::from("config:*/get_tool_schema")),
                filled: None,
            },
        );
        assert_eq!(
            text(&odd),
            "generation=8; result=miss; decided-by=my%20plugin%3B%20x%3D1%25%0D%0An%C3%A9; ttl-source=config:*/get_tool_schema; ttl-ms=412000; scope=public"
        );
        for long in [
            "a".repeat(500),
            "é".repeat(200),
            format!("{}é", "a".repeat(95)),
        ] {
            let capped = report(
                "hit",
                CacheProvenance {
                    decided_by: Some(Arc::from(long.as_str())),
                    ..CacheProvenance::default()
                },
            );
            let header = text(&capped);
            let name = header
                .split("; ")
                .find_map(|field| field.strip_prefix("decided-by="))
                .unwrap_or_default();
            assert!(name.len() <= MAX_NAME_BYTES, "{} bytes: {name}", name.len());
            assert!(name.ends_with(CUT), "a cut name says so: {name}");
            assert!(
                !name.contains("%C3%E2"),
                "cut at a character boundary: {name}"
            );
        }
        // A name exactly at the cap is written whole.
        let exact = "a".repeat(MAX_NAME_BYTES);
        let mut out = String::new();
        push_name(&mut out, &exact);
        assert_eq!(out, exact);
    }
}
