//! Helpers for plugin configs: durations written the way the bridge config writes them
//! (one grammar for the whole bridge, [`mcp_bridge_policy::units`]), the
//! `{ server: { tool: ttl } }` table with `*` wildcards that the bridge's `[cache.ttl]`
//! uses (one precedence, [`TtlMap::lookup`]), and [`parse`], which reads a plugin's
//! config as `lifecycle.init` does.

pub use mcp_bridge_policy::units::{ConfigDuration, parse_duration};
pub use mcp_bridge_policy::{ANY, TtlMap};

/// Parses a plugin's config the way `lifecycle.init` does: empty text, `null` and `{}`
/// give `C::default()`; anything else must deserialize into `C`, and an error names the
/// field (`invalid config at `ttl.demo.get_tasks`: ...`).
pub fn parse<C>(text: &str) -> Result<C, String>
where
    C: serde::de::DeserializeOwned + Default,
{
    let text = text.trim();
    if text.is_empty() {
        return Ok(C::default());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the config is not valid JSON: {e}"))?;
    if value.is_null() || value.as_object().is_some_and(serde_json::Map::is_empty) {
        return Ok(C::default());
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let error = error.into_inner();
        if path == "." {
            format!("invalid config: {error}")
        } else {
            format!("invalid config at `{path}`: {error}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        name: String,
        ttl: TtlMap,
        every: Option<ConfigDuration>,
    }

    #[test]
    fn no_config_is_the_default() {
        for text in ["", "  ", "null", "{}", " { } "] {
            assert_eq!(parse::<Config>(text), Ok(Config::default()), "{text:?}");
        }
        // Even for configs `{}` would not deserialize into.
        assert_eq!(parse::<()>("{}"), Ok(()));
        assert_eq!(parse::<Vec<u8>>("{}"), Ok(Vec::new()));
    }

    #[test]
    fn errors_name_the_field() {
        let error = parse::<Config>(r#"{"name": 3}"#).unwrap_err();
        assert!(
            error.starts_with("invalid config at `name`: invalid type"),
            "{error}"
        );
        let error = parse::<Config>(r#"{"ttl": {"demo": {"get": "soonish"}}}"#).unwrap_err();
        assert!(
            error.contains("`ttl.demo.get`") && error.contains("soonish"),
            "{error}"
        );
        let error = parse::<Config>(r#"{"nmae": "x"}"#).unwrap_err();
        assert!(error.contains("unknown field `nmae`"), "{error}");
        let error = parse::<Config>("{not json").unwrap_err();
        assert!(error.starts_with("the config is not valid JSON"), "{error}");
    }

    #[test]
    fn durations_in_a_config() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        let every = |json: &str| parse::<Config>(&format!(r#"{{"every": {json}}}"#));
        assert_eq!(every("2").unwrap().every, Some(ConfigDuration(ms(2000))));
        assert_eq!(every("1.5").unwrap().every, Some(ConfigDuration(ms(1500))));
        assert_eq!(
            every(r#""1m""#).unwrap().every,
            Some(ConfigDuration(ms(60_000)))
        );
        assert!(every("-2").unwrap_err().contains("negative"));
        assert!(every("true").is_err());
    }

    #[test]
    fn ttl_tables_in_a_config() {
        use std::time::Duration;
        let config = parse::<Config>(r#"{"ttl": {"*": {"*": 1}, "demo": {"get": "4s"}}}"#)
            .unwrap_or_default();
        assert_eq!(
            config.ttl.lookup("demo", "get"),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            config.ttl.lookup("other", "get"),
            Some(Duration::from_secs(1))
        );
    }
}
