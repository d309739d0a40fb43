//! `${VAR}` expansion in configuration values, against any variable lookup so tests need not touch the process environment.
//!
//! The syntax, checked left to right:
//!
//! - `${NAME}` is replaced by the variable's value; an unset variable is an error.
//! - `${NAME:-fallback}` uses `fallback` when the variable is unset or empty, as a POSIX shell
//!   does; the fallback may itself contain `${...}` references, which are only looked up when
//!   the fallback is used.
//! - `${env:NAME}` is accepted as a synonym of `${NAME}`, because VS Code's `mcp.json` files
//!   spell environment references that way.
//! - `$$` is a literal `$`.
//! - Any other `$` (as in `$HOME` or a regular expression's `^a$`) is kept as written, because
//!   Claude Desktop files never expanded such text and must keep their meaning here.

use std::fmt;

/// The name of the variable that is predefined as the running bridge executable, so that a
/// configuration can start the bridge's own demo server without knowing where it is installed.
pub const EXE_VARIABLE: &str = "MCP_BRIDGE_EXE";

/// Looks a variable up by name; `None` means it is not set.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads a variable from the process environment, falling back to the running executable's path
/// for [`EXE_VARIABLE`]. A variable whose value is not valid UTF-8 counts as unset, because the
/// configuration's values are strings.
pub(crate) fn process_environment(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) => Some(value),
        Err(_) if name == EXE_VARIABLE => std::env::current_exe()
            .ok()
            .and_then(|path| path.into_os_string().into_string().ok()),
        Err(_) => None,
    }
}

/// Why a value could not be expanded. None of the variants carries the value being expanded,
/// because that value may be a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${NAME}` names a variable that is not set and has no fallback.
    Missing { variable: String },
    /// A `${` has no closing `}`.
    Unterminated,
    /// What follows `${` is not a variable name, optionally followed by `:-fallback`.
    BadReference,
    /// A VS Code `${input:...}` prompt, which a headless service cannot answer.
    Input,
}

impl ExpandError {
    /// Advice on how to fix the reference.
    pub(crate) fn help(&self) -> String {
        match self {
            Self::Missing { variable } => format!(
                "set {variable} in the bridge's environment, or write `${{{variable}:-fallback}}` to use a fallback value"
            ),
            Self::Unterminated => "close the reference with `}`, or write `$$` for a literal `$`".to_owned(),
            Self::BadReference => "write `${NAME}` or `${NAME:-fallback}`, where NAME holds letters, digits and `_`; write `$$` for a literal `$`".to_owned(),
            Self::Input => "VS Code `${input:...}` prompts are not supported; put the value in an environment variable and write `${NAME}`".to_owned(),
        }
    }
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { variable } => write!(f, "environment variable `{variable}` is not set"),
            Self::Unterminated => f.write_str("a `${` reference is not closed"),
            Self::BadReference => f.write_str("a `${...}` reference is malformed"),
            Self::Input => f.write_str("a `${input:...}` reference cannot be answered"),
        }
    }
}

/// Expands every `${...}` reference in `input`.
pub(crate) fn expand(input: &str, lookup: Lookup<'_>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    expand_until(input, 0, lookup, false, &mut out)?;
    Ok(out)
}

/// Expands from byte `i` to the end of `input`, or, when `nested`, to the `}` that closes a
/// fallback, returning that brace's offset. Only ASCII bytes are ever matched, so every slice
/// boundary falls on a character boundary.
fn expand_until(
    input: &str,
    mut i: usize,
    lookup: Lookup<'_>,
    nested: bool,
    out: &mut String,
) -> Result<usize, ExpandError> {
    let bytes = input.as_bytes();
    let mut literal_start = i;
    while let Some(&byte) = bytes.get(i) {
        match (byte, bytes.get(i + 1)) {
            (b'}', _) if nested => {
                out.push_str(&input[literal_start..i]);
                return Ok(i);
            }
            (b'$', Some(b'$')) => {
                out.push_str(&input[literal_start..i]);
                out.push('$');
                i += 2;
                literal_start = i;
            }
            (b'$', Some(b'{')) => {
                out.push_str(&input[literal_start..i]);
                i = expand_reference(input, i + 2, lookup, out)?;
                literal_start = i;
            }
            _ => i += 1,
        }
    }
    if nested {
        return Err(ExpandError::Unterminated);
    }
    out.push_str(&input[literal_start..]);
    Ok(i)
}

/// Expands the reference whose name starts at byte `start` (just after `${`) and returns the
/// offset just past its closing `}`.
fn expand_reference(
    input: &str,
    start: usize,
    lookup: Lookup<'_>,
    out: &mut String,
) -> Result<usize, ExpandError> {
    let rest = &input[start..];
    let malformed = || {
        if rest.contains('}') {
            ExpandError::BadReference
        } else {
            ExpandError::Unterminated
        }
    };
    if rest.starts_with("input:") {
        return Err(ExpandError::Input);
    }
    let prefix = if rest.starts_with("env:") { 4 } else { 0 };
    let name_start = start + prefix;
    let name_len = input[name_start..]
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    let name = &input[name_start..name_start + name_len];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(malformed());
    }
    let after = name_start + name_len;
    if input[after..].starts_with('}') {
        let value = lookup(name).ok_or_else(|| ExpandError::Missing {
            variable: name.to_owned(),
        })?;
        out.push_str(&value);
        return Ok(after + 1);
    }
    if !input[after..].starts_with(":-") {
        return Err(malformed());
    }
    match lookup(name).filter(|value| !value.is_empty()) {
        Some(value) => {
            // The fallback is not used, but it must still be scanned to find the closing brace;
            // scanning it with a lookup that always succeeds keeps an unset variable inside an
            // unused fallback from being reported.
            let mut ignored = String::new();
            let close = expand_until(
                input,
                after + 2,
                &|_| Some(String::new()),
                true,
                &mut ignored,
            )?;
            out.push_str(&value);
            Ok(close + 1)
        }
        None => {
            let close = expand_until(input, after + 2, lookup, true, out)?;
            Ok(close + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".to_owned()),
            "EMPTY" => Some(String::new()),
            "TOKEN" => Some("s3cr3t-value".to_owned()),
            _ => None,
        }
    }

    fn run(input: &str) -> Result<String, ExpandError> {
        expand(input, &vars)
    }

    #[test]
    fn plain_text_and_references() {
        assert_eq!(run("no references"), Ok("no references".into()));
        assert_eq!(run("${HOME}/x"), Ok("/home/u/x".into()));
        assert_eq!(run("a${HOME}b${HOME}c"), Ok("a/home/ub/home/uc".into()));
        assert_eq!(run("${env:HOME}"), Ok("/home/u".into()));
        assert_eq!(run("é${HOME}ü"), Ok("é/home/uü".into()));
    }

    #[test]
    fn escapes_and_lone_dollars() {
        assert_eq!(run("$${HOME}"), Ok("${HOME}".into()));
        assert_eq!(run("a$$b"), Ok("a$b".into()));
        assert_eq!(run("$HOME and ^a$"), Ok("$HOME and ^a$".into()));
        assert_eq!(run("$$$${HOME}"), Ok("$${HOME}".into()));
        assert_eq!(run("}{"), Ok("}{".into()));
    }

    #[test]
    fn fallbacks() {
        assert_eq!(run("${UNSET:-fallback}"), Ok("fallback".into()));
        assert_eq!(run("${EMPTY:-fallback}"), Ok("fallback".into()));
        assert_eq!(run("${HOME:-fallback}"), Ok("/home/u".into()));
        assert_eq!(run("${UNSET:-}"), Ok(String::new()));
        assert_eq!(run("${UNSET:-${HOME}/d}"), Ok("/home/u/d".into()));
        assert_eq!(run("${HOME:-${NOPE}}"), Ok("/home/u".into()));
        assert_eq!(run("${UNSET:-a $$ b}"), Ok("a $ b".into()));
        assert_eq!(run("${EMPTY}"), Ok(String::new()));
    }

    #[test]
    fn errors() {
        let missing = |v: &str| {
            Err(ExpandError::Missing {
                variable: v.to_owned(),
            })
        };
        assert_eq!(run("${NOPE}"), missing("NOPE"));
        assert_eq!(run("${UNSET:-${NOPE}}"), missing("NOPE"));
        assert_eq!(run("${HOME"), Err(ExpandError::Unterminated));
        assert_eq!(run("${UNSET:-abc"), Err(ExpandError::Unterminated));
        assert_eq!(run("${}"), Err(ExpandError::BadReference));
        assert_eq!(run("${1A}"), Err(ExpandError::BadReference));
        assert_eq!(run("${A B}"), Err(ExpandError::BadReference));
        assert_eq!(run("${A-b}"), Err(ExpandError::BadReference));
        assert_eq!(run("${input:token}"), Err(ExpandError::Input));
    }

    #[test]
    fn errors_never_carry_the_value() {
        let error = run("${TOKEN:-x")
            .err()
            .map(|e| format!("{e} {e:?} {}", e.help()));
        assert!(!error.unwrap_or_default().contains("s3cr3t"));
    }

    #[test]
    fn executable_is_predefined() {
        // The test binary never has MCP_BRIDGE_EXE set, so this exercises the fallback.
        if std::env::var_os(EXE_VARIABLE).is_none() {
            let exe = process_environment(EXE_VARIABLE);
            let current = std::env::current_exe()
                .ok()
                .and_then(|p| p.into_os_string().into_string().ok());
            assert_eq!(exe, current);
            assert!(exe.is_some());
        }
    }
}
