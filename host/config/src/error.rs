//! The configuration layer's single error type, and helpers that phrase "did you mean" suggestions.

use std::fmt;

/// Everything that can go wrong while loading a configuration, pointing at the place to fix.
///
/// An error names the file, the line and column when they are known, and the dotted path of the
/// field (`servers.demo.max_connections`), says what is wrong in `message`, and says how to fix
/// it in `help`. No field of this type ever holds a secret value: errors about secrets name the
/// key or the environment variable, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file the error is in, or `<embedded default>` for the built-in configuration.
    pub file: String,
    /// The 1-based line of the offending key or value, when it could be found.
    pub line: Option<usize>,
    /// The 1-based column (in characters) of the offending key or value, when it could be found.
    pub column: Option<usize>,
    /// The dotted field path, such as `servers.demo.max_connections` or `servers.demo.args[1]`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

/// Renders `file:line:column: `field`: message` and a help line, leaving out the parts that are
/// unknown so that the text never shows placeholders. It is written by hand because thiserror
/// cannot format optional parts.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = self;
        f.write_str(&error.file)?;
        if let Some(line) = error.line {
            write!(f, ":{line}")?;
            if let Some(column) = error.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &error.field {
            write!(f, "`{field}`: ")?;
        }
        f.write_str(&error.message)?;
        if let Some(help) = &error.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// Builds an error about a whole file, with no position or field yet.
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
            field: None,
            message: message.into(),
            help: None,
        }
    }

    /// Adds the advice on how to fix the problem.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds advice only when there is some, which keeps call sites free of `if let` ladders.
    pub(crate) fn with_optional_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }
}

/// Returns the candidate closest to `unknown`, when one is close enough to be a likely typo.
///
/// Names are compared after lower-casing and dropping `_` and `-`, so `maxConnections` and
/// `max-connections` both suggest `max_connections`; beyond that, up to a third of the characters
/// (at least one, at most three) may differ.
pub(crate) fn suggest<'a>(
    unknown: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let wanted = normalise(unknown);
    let limit = (wanted.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(&wanted, &normalise(candidate)), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Lower-cases a name and removes word separators, so that spelling styles do not count as typos.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The Levenshtein distance between two strings, counted in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Pulls the field names out of serde's "unknown field" message.
///
/// Serde phrases the error as "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or
/// `b`", or "there are no fields"); this returns the unknown name and the expected ones, so the
/// loader can suggest the closest and list the rest.
pub(crate) fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let unknown = rest[..end].to_owned();
    let expected = rest[end + 1..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((unknown, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_every_part() {
        let error = ConfigError {
            file: "a.toml".into(),
            line: Some(3),
            column: Some(5),
            field: Some("http.listen".into()),
            message: "bad".into(),
            help: Some("fix it".into()),
        };
        assert_eq!(
            error.to_string(),
            "a.toml:3:5: `http.listen`: bad\n  help: fix it"
        );
    }

    #[test]
    fn display_omits_missing_parts() {
        let error = ConfigError::new("a.toml", "bad");
        assert_eq!(error.to_string(), "a.toml: bad");
        let error = ConfigError {
            line: Some(2),
            ..ConfigError::new("a.toml", "bad")
        };
        assert_eq!(error.to_string(), "a.toml:2: bad");
    }

    #[test]
    fn suggestions() {
        let known = ["min_connections", "max_connections", "max_inflight", "args"];
        assert_eq!(suggest("max_conections", known), Some("max_connections"));
        assert_eq!(suggest("maxConnections", known), Some("max_connections"));
        assert_eq!(suggest("arg", known), Some("args"));
        assert_eq!(suggest("completely_else", known), None);
    }

    #[test]
    fn unknown_field_message() {
        let parsed = parse_unknown_field("unknown field `x`, expected one of `a`, `b`");
        assert_eq!(parsed, Some(("x".into(), vec!["a".into(), "b".into()])));
        let parsed = parse_unknown_field("unknown field `x`, expected `a` or `b`");
        assert_eq!(parsed, Some(("x".into(), vec!["a".into(), "b".into()])));
        let parsed = parse_unknown_field("unknown field `x`, there are no fields");
        assert_eq!(parsed, Some(("x".into(), vec![])));
        assert_eq!(parse_unknown_field("invalid type"), None);
    }
}
