//! Invalidation by naming convention, for servers whose tools are called
//! `<verb>_<entity>`: a successful `create_task` makes `get_task`, `get_tasks`,
//! `list_task`, `list_tasks`, `search_task`, `search_tasks` and every entry tagged
//! `entity:task` stale, and nothing else. Read tools the server marks read-only are
//! cached with that tag.
//!
//! ```json
//! {
//!   "write_verbs": ["create", "update", "delete", "complete"],
//!   "read_verbs": ["get", "list", "search"],
//!   "ttl": "60s"
//! }
//! ```
//!
//! (The values shown are the defaults.) Plurals follow two rules: `y` after a consonant
//! becomes `ies`, anything else gains an `s`. Entities are named in the singular, so
//! `delete_tasks` and `delete_task` both invalidate `entity:task`.

use std::time::Duration;

use mcp_bridge_plugin_sdk::config::ConfigDuration;
use mcp_bridge_plugin_sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub write_verbs: Vec<String>,
    pub read_verbs: Vec<String>,
    /// How long cached reads stay fresh.
    pub ttl: ConfigDuration,
}

impl Default for Config {
    fn default() -> Config {
        let words = |words: &[&str]| words.iter().map(|w| w.to_string()).collect();
        Config {
            write_verbs: words(&["create", "update", "delete", "complete"]),
            read_verbs: words(&["get", "list", "search"]),
            ttl: ConfigDuration(Duration::from_secs(60)),
        }
    }
}

pub struct CrudInvalidation {
    config: Config,
}

impl CrudInvalidation {
    /// Splits `get_tasks` into `("get", "tasks")` when the verb is one of `verbs`.
    fn split<'a>(name: &'a str, verbs: &[String]) -> Option<(&'a str, &'a str)> {
        let (verb, rest) = name.split_once('_')?;
        (!rest.is_empty() && verbs.iter().any(|v| v == verb)).then_some((verb, rest))
    }
}

/// `tasks` → `task`, `categories` → `category`; `address` stays.
pub fn singular(word: &str) -> String {
    if let Some(stem) = word.strip_suffix("ies").filter(|stem| !stem.is_empty()) {
        format!("{stem}y")
    } else if word.ends_with('s') && !word.ends_with("ss") {
        word[..word.len() - 1].to_owned()
    } else {
        word.to_owned()
    }
}

/// `task` → `tasks`, `category` → `categories`, `day` → `days`.
pub fn plural(word: &str) -> String {
    let mut chars = word.chars().rev();
    match (chars.next(), chars.next()) {
        (Some('y'), Some(before)) if !"aeiou".contains(before) => {
            format!("{}ies", &word[..word.len() - 1])
        }
        _ => format!("{word}s"),
    }
}

impl Plugin for CrudInvalidation {
    type Config = Config;
    /// Pure: its answers come from the call's tool name and the config alone.
    const PURE: bool = true;

    fn new(config: Config) -> Result<Self, String> {
        if let Some(verb) = config
            .read_verbs
            .iter()
            .find(|v| config.write_verbs.contains(v))
        {
            return Err(format!("`{verb}` is both a read verb and a write verb"));
        }
        Ok(CrudInvalidation { config })
    }
}

impl CachePolicy for CrudInvalidation {
    fn decide(&self, call: &Call) -> Decision {
        if !call.is_tool() || !call.is_read_only() {
            return Decision::Abstain;
        }
        match Self::split(call.name, &self.config.read_verbs) {
            Some((_, entity)) => Directive::ttl(self.config.ttl.into())
                .tag(format!("entity:{}", singular(entity)))
                .into(),
            None => Decision::Abstain,
        }
    }
}

impl InvalidationRules for CrudInvalidation {
    fn invalidations(&self, call: &Call, outcome: &Outcome) -> Option<Vec<Invalidation>> {
        if !call.is_tool() {
            return None;
        }
        let (_, entity) = Self::split(call.name, &self.config.write_verbs)?;
        if outcome.status == Status::Error {
            // The server says the write failed: nothing changed.
            return Some(Vec::new());
        }
        let entity = singular(entity);
        let mut stale = Vec::new();
        for verb in &self.config.read_verbs {
            for noun in [entity.clone(), plural(&entity)] {
                stale.push(Invalidation::tool(call.server, format!("{verb}_{noun}")));
            }
        }
        stale.push(Invalidation::tag(format!("entity:{entity}")));
        Some(stale)
    }
}

mcp_bridge_plugin_sdk::export!(CrudInvalidation);

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, read_only: Option<bool>) -> Call<'_> {
        Call {
            server: "demo",
            method: "tools/call",
            kind: CallKind::Tool,
            name,
            canonical_arguments: "{}",
            annotations: Annotations {
                read_only,
                ..Annotations::default()
            },
            hints: ServerHints::default(),
            principal: None,
        }
    }

    fn outcome(status: Status) -> Outcome {
        Outcome {
            status,
            latency: Duration::from_millis(3),
            result_bytes: 10,
        }
    }

    #[test]
    fn words() {
        assert_eq!(singular("tasks"), "task");
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("address"), "address");
        assert_eq!(singular("task"), "task");
        assert_eq!(plural("task"), "tasks");
        assert_eq!(plural("category"), "categories");
        assert_eq!(plural("day"), "days");
    }

    #[test]
    fn caches_read_only_reads_with_the_entity_tag() {
        let plugin = CrudInvalidation::from_config_json("{}").unwrap();
        assert_eq!(
            plugin.decide(&tool("get_tasks", Some(true))),
            Decision::Cache(Directive::ttl(Duration::from_secs(60)).tag("entity:task"))
        );
        assert_eq!(plugin.decide(&tool("get_tasks", None)), Decision::Abstain);
        assert_eq!(
            plugin.decide(&tool("create_task", Some(true))),
            Decision::Abstain
        );
        assert_eq!(plugin.decide(&tool("ping", Some(true))), Decision::Abstain);
    }

    #[test]
    fn a_write_invalidates_the_entity_reads() {
        let plugin = CrudInvalidation::from_config_json("").unwrap();
        let expected: Vec<Invalidation> = [
            "get_category",
            "get_categories",
            "list_category",
            "list_categories",
            "search_category",
            "search_categories",
        ]
        .into_iter()
        .map(|name| Invalidation::tool("demo", name))
        .chain([Invalidation::tag("entity:category")])
        .collect();
        for name in ["create_category", "delete_categories"] {
            for status in [Status::Success, Status::Unknown] {
                let rules = plugin.invalidations(&tool(name, None), &outcome(status));
                assert_eq!(rules.as_ref(), Some(&expected), "{name} {status:?}");
            }
            let failed = plugin.invalidations(&tool(name, None), &outcome(Status::Error));
            assert_eq!(failed, Some(Vec::new()));
        }
        let read = plugin.invalidations(&tool("get_tasks", None), &outcome(Status::Success));
        assert_eq!(read, None);
    }

    #[test]
    fn verbs_and_ttl_come_from_config() {
        let plugin = CrudInvalidation::from_config_json(
            r#"{"write_verbs": ["add"], "read_verbs": ["fetch"], "ttl": "5s"}"#,
        )
        .unwrap();
        assert_eq!(
            plugin.decide(&tool("fetch_notes", Some(true))),
            Decision::Cache(Directive::ttl(Duration::from_secs(5)).tag("entity:note"))
        );
        let rules = plugin.invalidations(&tool("add_note", None), &outcome(Status::Success));
        assert_eq!(
            rules,
            Some(vec![
                Invalidation::tool("demo", "fetch_note"),
                Invalidation::tool("demo", "fetch_notes"),
                Invalidation::tag("entity:note"),
            ])
        );
        assert_eq!(
            plugin.invalidations(&tool("create_note", None), &outcome(Status::Success)),
            None
        );
        let error = CrudInvalidation::from_config_json(r#"{"read_verbs": ["get", "create"]}"#);
        assert!(error.is_err());
    }
}
