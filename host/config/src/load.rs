//! Reading configuration files: format detection, TOML parsing, `include`d mcpServers files, and parse errors with their positions.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::checked::BridgeConfig;
use super::error::{ConfigError, parse_unknown_field, suggest};
use super::expand::Lookup;
use super::mcp_servers;
use super::raw::{RawConfig, RawServer, TOP_LEVEL_KEYS, field_help};
use super::source::{FieldPath, Format, Position, Segment, SourceText};
use super::validate;

/// One server as declared in some file, before validation.
#[derive(Debug)]
pub(crate) struct ServerEntry {
    pub name: String,
    /// The server's table in its file: `servers.NAME` in TOML, `mcpServers.NAME` in JSON.
    pub path: FieldPath,
    /// The file that declared it, for error positions.
    pub source: Rc<SourceText>,
    /// That file's directory, against which a relative `cwd` is resolved.
    pub base_dir: PathBuf,
    pub raw: RawServer,
}

/// Reads and loads the file at `path`.
pub(crate) fn load_path(path: &Path, lookup: Lookup<'_>) -> Result<BridgeConfig, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(&name, format!("cannot read the configuration file: {e}"))
            .with_help("check that the path is right and that the file is readable UTF-8 text")
    })?;
    load_text(&text, &name, path.parent(), lookup)
}

/// Loads configuration text. `origin` names the text in errors; `base_dir` is where relative
/// `include` and `cwd` paths are resolved, the current directory when `None`.
pub(crate) fn load_text(
    text: &str,
    origin: &str,
    base_dir: Option<&Path>,
    lookup: Lookup<'_>,
) -> Result<BridgeConfig, ConfigError> {
    let source = Rc::new(SourceText::new(origin, text));
    let base_dir = base_dir.unwrap_or(Path::new("")).to_path_buf();
    match source.format {
        Format::Json => {
            let entries = mcp_servers::parse(&source, &base_dir)?;
            validate::build(&source, &base_dir, RawConfig::default(), entries, lookup)
        }
        Format::Toml => {
            let mut raw = parse_toml(&source)?;
            let mut entries = toml_servers(&source, &base_dir, raw.servers.take());
            entries.extend(included_servers(
                &source,
                &base_dir,
                raw.include.as_deref(),
            )?);
            validate::build(&source, &base_dir, raw, entries, lookup)
        }
    }
}

const TOML_SYNTAX_HELP: &str = "fix the TOML syntax here: strings need double quotes, and tables are written like [http] or [servers.NAME]";

/// Parses the TOML file into its raw shape.
fn parse_toml(source: &SourceText) -> Result<RawConfig, ConfigError> {
    let deserializer = toml::Deserializer::parse(&source.text).map_err(|e| {
        source
            .error_at_offset(
                e.span().map(|s| s.start),
                format!("invalid TOML: {}", e.message()),
            )
            .with_help(TOML_SYNTAX_HELP)
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = FieldPath::from_serde(error.path());
        let inner = error.into_inner();
        let position = inner
            .span()
            .map(|span| Position::from_offset(&source.text, span.start))
            .map(|p| (p.line, p.column));
        serde_error(source, &path, inner.message(), position)
    })
}

/// Turns the `[servers.*]` tables into entries in file order. The TOML parser hands tables over
/// sorted by name, so the entries are put back in the order their keys appear in the text.
fn toml_servers(
    source: &Rc<SourceText>,
    base_dir: &Path,
    servers: Option<super::raw::OrderedMap<RawServer>>,
) -> Vec<ServerEntry> {
    let mut entries: Vec<ServerEntry> = servers
        .unwrap_or_default()
        .0
        .into_iter()
        .map(|(name, raw)| ServerEntry {
            path: FieldPath::root().key("servers").key(&name),
            name,
            source: Rc::clone(source),
            base_dir: base_dir.to_path_buf(),
            raw,
        })
        .collect();
    entries.sort_by_cached_key(|entry| source.locate(&entry.path).map_or(usize::MAX, |p| p.offset));
    entries
}

/// Loads every `include`d mcpServers file, resolving relative paths against `base_dir`.
fn included_servers(
    source: &SourceText,
    base_dir: &Path,
    includes: Option<&[String]>,
) -> Result<Vec<ServerEntry>, ConfigError> {
    let mut entries = Vec::new();
    for (i, include) in includes.unwrap_or_default().iter().enumerate() {
        let field = FieldPath::root().key("include").index(i);
        if include.trim().is_empty() {
            return Err(source
                .error(&field, "an included path is empty")
                .with_help("write the path of an mcpServers JSON file, or remove the entry"));
        }
        let path = base_dir.join(include);
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            source
                .error(&field, format!("cannot read included file `{name}`: {e}"))
                .with_help("relative paths are resolved against the directory of the file that includes them")
        })?;
        let included = Rc::new(SourceText::new(name.clone(), &text));
        if included.format != Format::Json {
            return Err(source
                .error(&field, format!("included file `{name}` is not an mcpServers JSON file"))
                .with_help("include only Claude Desktop, .mcp.json or VS Code mcp.json files (JSON objects); declare TOML servers as [servers.NAME] tables in this file"));
        }
        let dir = path.parent().unwrap_or(Path::new(""));
        entries.extend(mcp_servers::parse(&included, dir)?);
    }
    Ok(entries)
}

/// Builds the error for a value serde rejected: an unknown key gets a "did you mean" suggestion,
/// a value of the wrong type or form gets advice chosen by the field's name.
///
/// `position` is the parser's (line, column) when it reported one; otherwise the field is
/// looked up in the text.
pub(crate) fn serde_error(
    source: &SourceText,
    path: &FieldPath,
    message: &str,
    position: Option<(usize, usize)>,
) -> ConfigError {
    let position = position.or_else(|| source.locate(path).map(|p| (p.line, p.column)));
    let (message, help) = match parse_unknown_field(message) {
        Some((unknown, expected)) => (
            format!("unknown key `{unknown}`"),
            Some(unknown_key_help(source, path, &unknown, &expected)),
        ),
        None => (message.to_owned(), value_help(path).map(str::to_owned)),
    };
    ConfigError {
        line: position.map(|p| p.0),
        column: position.map(|p| p.1),
        field: path.display(),
        ..ConfigError::new(source.name.clone(), message)
    }
    .with_optional_help(help)
}

/// Advice for a value of the wrong type or form. In the cache's TTL table the keys are server
/// and tool names, so the advice depends on the depth there; elsewhere on the field's name.
fn value_help(path: &FieldPath) -> Option<&'static str> {
    if let [Segment::Key(cache), Segment::Key(ttl), rest @ ..] = path.segments()
        && cache == "cache"
        && ttl == "ttl"
    {
        return match rest {
            [] => field_help("ttl"),
            [_] => Some(
                "write this server's TTLs as a [cache.ttl.SERVER] table of TOOL = duration, such as get_tasks = \"60s\"",
            ),
            _ => Some(
                "write a duration such as \"60s\", \"5m\" or \"1h\", or a number of seconds; 0 means the tool's results are never cached",
            ),
        };
    }
    path.last_key().and_then(field_help)
}

fn unknown_key_help(
    source: &SourceText,
    path: &FieldPath,
    unknown: &str,
    expected: &[String],
) -> String {
    // TOML puts every key written after a `[table]` header into that table, so a top-level key
    // written at the end of the file turns up as an unknown key of the last table.
    if source.format == Format::Toml && path.depth() > 1 && TOP_LEVEL_KEYS.contains(&unknown) {
        return format!(
            "`{unknown}` is a top-level key: move it above the first [table] header, because TOML puts every key after a header into that table"
        );
    }
    if let Some(close) = suggest(unknown, expected.iter().map(String::as_str)) {
        return format!("did you mean `{close}`?");
    }
    if expected.is_empty() {
        return "remove it: this table takes no keys".to_owned();
    }
    let list: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
    format!(
        "remove it, or use one of the keys allowed here: {}",
        list.join(", ")
    )
}
