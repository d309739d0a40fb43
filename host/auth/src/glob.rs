//! Name patterns for access rules and limits: `*` matches any run of characters, `?` one.
//!
//! OWNED BY THE ACCESS/LIMITS HELPER.

/// Whether `text` matches `pattern`.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    pattern == "*" || pattern == text
}
