//! Source texts and dotted field paths: finds the line and column of a field so errors can point at it.

use std::fmt;

use toml::de::{DeTable, DeValue};

use super::error::ConfigError;

/// One step of a field path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// A dotted path to a field, such as `servers.demo.args[1]`, used both to name the field in an
/// error and to find its position in the source text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The path of the document itself.
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// The path of `key` inside this table.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// The path of element `index` inside this array.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// Converts the path serde_path_to_error recorded, dropping the segments it could not name.
    pub(crate) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        let segments = path
            .iter()
            .filter_map(|segment| match segment {
                S::Seq { index } => Some(Segment::Index(*index)),
                S::Map { key } | S::Enum { variant: key } => Some(Segment::Key(key.clone())),
                S::Unknown => None,
            })
            .collect();
        Self(segments)
    }

    /// The last table key on the path, which names the kind of value (`args` for `args[1]`).
    pub(crate) fn last_key(&self) -> Option<&str> {
        self.0.iter().rev().find_map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
    }

    /// How many table keys deep the path is, which tells a top-level key from a nested one.
    pub(crate) fn depth(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The path as it should appear in an error, or `None` for the document itself.
    pub(crate) fn display(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.to_string())
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    // Keys that are not bare TOML keys are quoted, so that a server called
                    // `a.b` cannot be mistaken for a nested table `a` holding `b`.
                    if !key.is_empty() && key.chars().all(is_bare_key_char) {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

fn is_bare_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The two file formats the loader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The bridge's own TOML configuration.
    Toml,
    /// An `mcpServers` JSON file as written by Claude Desktop, `.mcp.json` or VS Code.
    Json,
}

/// A 1-based line and column, plus the byte offset they were computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub offset: usize,
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// Computes line and column for a byte offset, clamping offsets past the end or inside a
    /// multi-byte character rather than failing, because a position is only a hint.
    pub(crate) fn from_offset(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            offset,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// The text of one configuration file, kept so errors found after parsing can still be located.
#[derive(Debug)]
pub(crate) struct SourceText {
    /// The name errors show: the path as given, or `<embedded default>`.
    pub name: String,
    pub text: String,
    pub format: Format,
}

impl SourceText {
    /// Wraps a file's text, dropping a UTF-8 byte order mark (which Windows editors add and which
    /// neither parser accepts) and detecting the format from the content, never the file name:
    /// a JSON document starts with `{`, anything else is read as TOML.
    pub(crate) fn new(name: impl Into<String>, text: &str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let format = if text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Toml
        };
        Self {
            name: name.into(),
            text: text.to_owned(),
            format,
        }
    }

    /// Finds the field, or the deepest of its parents that exists, so that an error about a
    /// missing key points at the table that should hold it.
    pub(crate) fn locate(&self, path: &FieldPath) -> Option<Position> {
        let offset = match self.format {
            Format::Toml => locate_toml(&self.text, path),
            Format::Json => locate_json(&self.text, path),
        }?;
        Some(Position::from_offset(&self.text, offset))
    }

    /// An error about `path` in this file, with its position filled in when it can be found.
    pub(crate) fn error(&self, path: &FieldPath, message: impl Into<String>) -> ConfigError {
        let position = self.locate(path);
        ConfigError {
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            field: path.display(),
            ..ConfigError::new(self.name.clone(), message)
        }
    }

    /// An error at a byte offset reported by a parser, with no field path.
    pub(crate) fn error_at_offset(
        &self,
        offset: Option<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        let position = offset.map(|o| Position::from_offset(&self.text, o));
        ConfigError {
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            ..ConfigError::new(self.name.clone(), message)
        }
    }
}

/// Walks a spanned TOML document along `path` and returns the start of the deepest key found.
fn locate_toml(text: &str, path: &FieldPath) -> Option<usize> {
    let document = DeTable::parse(text).ok()?;
    let mut found = None;
    let mut table: Option<&DeTable<'_>> = Some(document.get_ref());
    let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
    for segment in path.segments() {
        let value = match segment {
            Segment::Key(key) => {
                let Some((key_span, value)) = table.and_then(|t| t.get_key_value(key.as_str()))
                else {
                    break;
                };
                found = Some(key_span.span().start);
                value
            }
            Segment::Index(index) => {
                let Some(value) = array.and_then(|a| a.get(*index)) else {
                    break;
                };
                found = Some(value.span().start);
                value
            }
        };
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    found
}

/// Walks a JSON document along `path` and returns the start of the deepest key found.
///
/// The document has already been parsed successfully by serde_json when this runs, so a small
/// scanner that understands strings, objects and arrays is enough; it gives up (returning what it
/// found so far) rather than failing on anything unexpected.
fn locate_json(text: &str, path: &FieldPath) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut found = None;
    let mut at = skip_whitespace(bytes, 0);
    for segment in path.segments() {
        let next = match segment {
            Segment::Key(key) => json_member(text, at, key),
            Segment::Index(index) => json_element(bytes, at, *index).map(|v| (v, v)),
        };
        let Some((key_start, value_start)) = next else {
            break;
        };
        found = Some(key_start);
        at = value_start;
    }
    found
}

/// Finds `key` in the object starting at `at`; returns where its key and its value start.
fn json_member(text: &str, at: usize, key: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    let mut i = skip_whitespace(bytes, at + 1);
    while bytes.get(i) == Some(&b'"') {
        let key_start = i;
        let key_end = skip_string(bytes, i)?;
        let colon = skip_whitespace(bytes, key_end);
        if bytes.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_whitespace(bytes, colon + 1);
        let raw_key = text.get(key_start..key_end)?;
        // Keys with escapes are rare, so only they pay for a real decode.
        let matches = if raw_key.contains('\\') {
            serde_json::from_str::<String>(raw_key).is_ok_and(|k| k == key)
        } else {
            raw_key.get(1..raw_key.len() - 1) == Some(key)
        };
        if matches {
            return Some((key_start, value_start));
        }
        let value_end = skip_value(bytes, value_start)?;
        i = skip_whitespace(bytes, value_end);
        if bytes.get(i) == Some(&b',') {
            i = skip_whitespace(bytes, i + 1);
        }
    }
    None
}

/// Finds element `index` of the array starting at `at`.
fn json_element(bytes: &[u8], at: usize, index: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'[') {
        return None;
    }
    let mut i = skip_whitespace(bytes, at + 1);
    for _ in 0..index {
        i = skip_whitespace(bytes, skip_value(bytes, i)?);
        if bytes.get(i) != Some(&b',') {
            return None;
        }
        i = skip_whitespace(bytes, i + 1);
    }
    (i < bytes.len() && bytes[i] != b']').then_some(i)
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Returns the offset just past the string starting at `i`.
fn skip_string(bytes: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Returns the offset just past the value starting at `i`, counting brackets outside strings.
fn skip_value(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'"' => skip_string(bytes, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match bytes.get(j)? {
                    b'"' => {
                        j = skip_string(bytes, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while bytes
                .get(j)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                j += 1;
            }
            Some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(keys: &[&str]) -> FieldPath {
        keys.iter().fold(FieldPath::root(), |p, k| p.key(k))
    }

    #[test]
    fn display_quotes_odd_keys() {
        let p = path(&["servers", "a.b", "args"]).index(2);
        assert_eq!(p.to_string(), "servers.\"a.b\".args[2]");
        assert_eq!(FieldPath::root().display(), None);
    }

    #[test]
    fn toml_lookup_finds_keys_and_parents() {
        let source = SourceText::new(
            "t",
            "[http]\nlisten = 1\n\n[servers.demo]\nargs = [\"a\", \"b\"]\n",
        );
        let at = |p: &FieldPath| source.locate(p).map(|p| (p.line, p.column));
        assert_eq!(at(&path(&["http", "listen"])), Some((2, 1)));
        assert_eq!(at(&path(&["servers", "demo"])), Some((4, 10)));
        assert_eq!(
            at(&path(&["servers", "demo", "args"]).index(1)),
            Some((5, 14))
        );
        assert_eq!(at(&path(&["servers", "demo", "command"])), Some((4, 10)));
        assert_eq!(at(&path(&["nothing"])), None);
    }

    #[test]
    fn json_lookup_finds_keys_and_parents() {
        let text = "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"x\", \"args\": [\"[\", \"}\"]},\n    \"b\": {\n      \"args\": [1, 2]\n    }\n  }\n}";
        let source = SourceText::new("j", text);
        assert_eq!(source.format, Format::Json);
        let at = |p: &FieldPath| source.locate(p).map(|p| (p.line, p.column));
        assert_eq!(at(&path(&["mcpServers", "b"])), Some((4, 5)));
        assert_eq!(
            at(&path(&["mcpServers", "b", "args"]).index(1)),
            Some((5, 19))
        );
        assert_eq!(at(&path(&["mcpServers", "b", "command"])), Some((4, 5)));
        assert_eq!(at(&path(&["mcpServers", "a", "args"])), Some((3, 27)));
    }

    #[test]
    fn position_handles_unicode_and_overflow() {
        let text = "é=1\nab";
        assert_eq!(Position::from_offset(text, 2).column, 2);
        assert_eq!(Position::from_offset(text, 1).column, 1);
        assert_eq!(Position::from_offset(text, 6).line, 2);
        assert_eq!(Position::from_offset(text, 6).column, 2);
        assert_eq!(Position::from_offset(text, 99).line, 2);
    }
}
