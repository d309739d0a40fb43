//! Which servers, tools, prompts and resources a principal may see and call.
//!
//! The `[[access.rules]]` are compiled once per config ([`AccessPolicy::new`]): every name
//! pattern becomes a [`Glob`], every "empty means all" list a [`NameFilter`], so a check is
//! a walk over the rules with no parsing and no allocation. With no rules the policy is
//! open and every check returns at once.
//!
//! The semantics (fixed by the docs of [`mcp_bridge_config::AccessConfig`]):
//! - A rule *applies* to a principal when its `who` is empty (everyone), the principal's
//!   name matches one of its principal globs, or the principal holds one of its roles.
//! - A rule *covers* an item on a server when one of its server globs matches the server
//!   (none listed: every server) and either it lists none of tools, prompts and resources
//!   (it covers everything on its servers) or it lists the item's kind and one of those
//!   globs matches the item's name (a resource's URI).
//! - An item is allowed when some applicable `allow` rule covers it and no applicable
//!   `deny` rule does: a deny always wins, whatever the order of the rules.
//!
//! A refusal ([`Denial`]) names the principal, the item and the rule, and says what to
//! change, because the message goes back to the caller and into the audit log, and whoever
//! reads it is usually not the one who wrote the rules.

use mcp_bridge_config::{AccessConfig, AccessEffect, AccessRule, Audience};
use serde_json::Value;

use crate::Principal;
use crate::glob::{GlobList, NameFilter};

/// The longest name or URI repeated in a message. Names come from requests; a message that
/// echoes one must not grow with whatever a client chose to send.
const MAX_NAME_IN_MESSAGE: usize = 200;
/// The most roles a message lists; a token may carry many.
const MAX_ROLES_IN_MESSAGE: usize = 10;

/// What a request asks to use on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Tool(&'a str),
    Prompt(&'a str),
    /// A resource, by its URI.
    Resource(&'a str),
}

impl Item<'_> {
    /// `tool`, `prompt` or `resource`: the metric label and the word in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Tool(_) => "tool",
            Item::Prompt(_) => "prompt",
            Item::Resource(_) => "resource",
        }
    }

    /// The tool's or prompt's name, or the resource's URI.
    pub fn name(&self) -> &str {
        match self {
            Item::Tool(name) | Item::Prompt(name) | Item::Resource(name) => name,
        }
    }
}

/// Which list a `*/list` answer holds, and so which field names each of its entries:
/// `tools/list` and `prompts/list` entries by `name`, `resources/list` entries by `uri`,
/// `resources/templates/list` entries by `uriTemplate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    /// Resource templates are matched as resources, by their `uriTemplate` text: a rule
    /// with `resources = ["demo://tasks/*"]` shows the template `demo://tasks/{id}`.
    ResourceTemplates,
}

impl ListKind {
    /// The field of a list entry that holds the name the rules match.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }

    fn item(self, name: &str) -> Item<'_> {
        match self {
            ListKind::Tools => Item::Tool(name),
            ListKind::Prompts => Item::Prompt(name),
            ListKind::Resources | ListKind::ResourceTemplates => Item::Resource(name),
        }
    }
}

/// Why a principal may not use something: the rule that denied it, or that none allowed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denial {
    /// The `deny` rule that matched, or `None` when no `allow` rule covers the item.
    pub rule: Option<String>,
    /// The whole explanation: who, what, which rule, and how to change it.
    pub message: String,
}

/// Which callers a rule (an access rule or a limit rule) applies to, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    /// Nothing listed: the rule applies to every caller.
    everyone: bool,
    principals: GlobList,
    roles: Box<[String]>,
}

impl Who {
    pub(crate) fn new(audience: &Audience) -> Who {
        Who {
            everyone: audience.principals.is_empty() && audience.roles.is_empty(),
            principals: GlobList::new(&audience.principals),
            roles: audience.roles.clone().into_boxed_slice(),
        }
    }

    pub(crate) fn includes(&self, principal: &Principal) -> bool {
        self.everyone
            || self.principals.matches_any(&principal.name)
            || self.roles.iter().any(|role| principal.has_role(role))
    }
}

/// What kinds of item a rule covers on its servers.
#[derive(Debug, Clone)]
enum Coverage {
    /// The rule lists none of tools, prompts and resources: everything on its servers.
    Everything,
    /// The rule lists some kinds; a kind it does not list (`None`) is not covered at all.
    Kinds {
        tools: Option<GlobList>,
        prompts: Option<GlobList>,
        resources: Option<GlobList>,
    },
}

impl Coverage {
    fn new(rule: &AccessRule) -> Coverage {
        if rule.tools.is_none() && rule.prompts.is_none() && rule.resources.is_none() {
            return Coverage::Everything;
        }
        let compile = |patterns: &Option<Vec<String>>| patterns.as_deref().map(GlobList::new);
        Coverage::Kinds {
            tools: compile(&rule.tools),
            prompts: compile(&rule.prompts),
            resources: compile(&rule.resources),
        }
    }

    fn covers(&self, item: Item<'_>) -> bool {
        let Coverage::Kinds {
            tools,
            prompts,
            resources,
        } = self
        else {
            return true;
        };
        let (globs, name) = match item {
            Item::Tool(name) => (tools, name),
            Item::Prompt(name) => (prompts, name),
            Item::Resource(uri) => (resources, uri),
        };
        globs.as_ref().is_some_and(|globs| globs.matches_any(name))
    }

    /// Whether the rule could cover anything at all: one that lists only empty lists
    /// (`tools = []`) covers nothing, so as an allow rule it shows no server.
    fn covers_something(&self) -> bool {
        match self {
            Coverage::Everything => true,
            Coverage::Kinds {
                tools,
                prompts,
                resources,
            } => [tools, prompts, resources]
                .into_iter()
                .any(|globs| globs.as_ref().is_some_and(|globs| !globs.is_empty())),
        }
    }
}

/// One `[[access.rules]]` entry, compiled.
#[derive(Debug, Clone)]
struct CompiledRule {
    name: String,
    effect: AccessEffect,
    who: Who,
    servers: NameFilter,
    coverage: Coverage,
}

impl CompiledRule {
    fn new(rule: &AccessRule) -> CompiledRule {
        CompiledRule {
            name: rule.name.clone(),
            effect: rule.effect,
            who: Who::new(&rule.who),
            servers: NameFilter::new(&rule.servers),
            coverage: Coverage::new(rule),
        }
    }

    /// Whether the rule applies to `principal` and reaches `server`: the part of a check
    /// that does not depend on the item, so a list filter can do it once per list.
    fn reaches(&self, principal: &Principal, server: &str) -> bool {
        self.servers.matches(server) && self.who.includes(principal)
    }
}

/// The access rules, compiled once per config.
pub struct AccessPolicy {
    rules: Box<[CompiledRule]>,
}

impl AccessPolicy {
    pub fn new(config: &AccessConfig) -> AccessPolicy {
        AccessPolicy {
            rules: config.rules.iter().map(CompiledRule::new).collect(),
        }
    }

    /// Whether there are no rules: every caller may use everything.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `principal` may see `server` at all: the policy is open, or some `allow`
    /// rule that applies to the principal covers something on the server, and no `deny`
    /// rule that applies covers everything on it. A visible server may still refuse some
    /// of its items; [`AccessPolicy::check`] decides those.
    pub fn server_visible(&self, principal: &Principal, server: &str) -> bool {
        if self.is_open() {
            return true;
        }
        let mut allowed = false;
        for rule in self
            .rules
            .iter()
            .filter(|rule| rule.reaches(principal, server))
        {
            match rule.effect {
                AccessEffect::Deny if matches!(rule.coverage, Coverage::Everything) => {
                    return false;
                }
                AccessEffect::Deny => {}
                AccessEffect::Allow => allowed |= rule.coverage.covers_something(),
            }
        }
        allowed
    }

    /// Whether `principal` may use `item` on `server`, with the reason when not.
    pub fn check(&self, principal: &Principal, server: &str, item: Item<'_>) -> Result<(), Denial> {
        if self.is_open() {
            return Ok(());
        }
        match self.decide(principal, server, item) {
            Decision::Allowed => Ok(()),
            Decision::DeniedBy(rule) => Err(Denial {
                rule: Some(rule.name.clone()),
                message: format!(
                    "{} is denied to principal '{}' by access rule '{}'",
                    describe_item(server, item),
                    Shortened(&principal.name),
                    rule.name,
                ),
            }),
            Decision::NotAllowed => Err(Denial {
                rule: None,
                message: format!(
                    "no access rule allows principal '{}' ({}) to use {}; add an [[access.rules]] entry with effect = \"allow\" that covers it",
                    Shortened(&principal.name),
                    describe_roles(principal),
                    describe_item(server, item),
                ),
            }),
        }
    }

    /// Whether `principal` may use `item` on `server`: [`AccessPolicy::check`] without
    /// building the explanation, for filtering lists.
    pub fn visible(&self, principal: &Principal, server: &str, item: Item<'_>) -> bool {
        self.is_open() || matches!(self.decide(principal, server, item), Decision::Allowed)
    }

    /// Keeps only the entries of a `tools/list`, `prompts/list`, `resources/list` or
    /// `resources/templates/list` answer from `server` that `principal` may use. An entry
    /// without the name field ([`ListKind::key`]) as a string cannot be checked and is
    /// dropped (when any rule exists): what the rules cannot see, they cannot allow.
    pub fn retain_visible(
        &self,
        principal: &Principal,
        server: &str,
        kind: ListKind,
        entries: &mut Vec<Value>,
    ) {
        if self.is_open() {
            return;
        }
        // Which rules apply to this principal on this server does not depend on the entry,
        // so it is worked out once for the whole list.
        let reaching: Vec<&CompiledRule> = self
            .rules
            .iter()
            .filter(|rule| rule.reaches(principal, server))
            .collect();
        entries.retain(|entry| {
            let Some(name) = entry.get(kind.key()).and_then(Value::as_str) else {
                return false;
            };
            matches!(
                decide_among(reaching.iter().copied(), kind.item(name)),
                Decision::Allowed
            )
        });
    }

    fn decide(&self, principal: &Principal, server: &str, item: Item<'_>) -> Decision<'_> {
        decide_among(
            self.rules
                .iter()
                .filter(|rule| rule.reaches(principal, server)),
            item,
        )
    }
}

/// The outcome of a check, borrowing the deciding rule so that the message is only built
/// when a refusal is reported.
enum Decision<'a> {
    Allowed,
    DeniedBy(&'a CompiledRule),
    NotAllowed,
}

/// Decides `item` among rules already known to apply to the principal and server. The first
/// deny rule (in config order) that covers the item decides; otherwise any allow rule that
/// covers it allows it.
fn decide_among<'a>(rules: impl Iterator<Item = &'a CompiledRule>, item: Item<'_>) -> Decision<'a> {
    let mut allowed = false;
    for rule in rules.filter(|rule| rule.coverage.covers(item)) {
        match rule.effect {
            AccessEffect::Deny => return Decision::DeniedBy(rule),
            AccessEffect::Allow => allowed = true,
        }
    }
    if allowed {
        Decision::Allowed
    } else {
        Decision::NotAllowed
    }
}

/// `tool 'demo/delete_task'`, `prompt 'demo/summary'`, or for a resource, whose URI has a
/// `/` of its own, `resource 'demo://tasks/1' on server 'demo'`.
fn describe_item(server: &str, item: Item<'_>) -> String {
    let (server, name) = (Shortened(server), Shortened(item.name()));
    match item {
        Item::Tool(_) | Item::Prompt(_) => format!("{} '{server}/{name}'", item.kind()),
        Item::Resource(_) => format!("resource '{name}' on server '{server}'"),
    }
}

/// `roles: viewer, ci` or `no roles`.
fn describe_roles(principal: &Principal) -> String {
    if principal.roles.is_empty() {
        return "no roles".to_string();
    }
    let roles: Vec<String> = principal
        .roles
        .iter()
        .take(MAX_ROLES_IN_MESSAGE)
        .map(|role| Shortened(role).to_string())
        .collect();
    let more = principal.roles.len().saturating_sub(MAX_ROLES_IN_MESSAGE);
    if more > 0 {
        return format!("roles: {} and {more} more", roles.join(", "));
    }
    format!("roles: {}", roles.join(", "))
}

/// A name shown in a message: cut to [`MAX_NAME_IN_MESSAGE`] bytes (on a character
/// boundary, marked with `…`) so that a message echoing a client-chosen name stays small.
pub(crate) struct Shortened<'a>(pub(crate) &'a str);

impl std::fmt::Display for Shortened<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0;
        if text.len() <= MAX_NAME_IN_MESSAGE {
            return f.write_str(text);
        }
        let mut end = MAX_NAME_IN_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}…", &text[..end])
    }
}

#[cfg(test)]
#[path = "access/tests.rs"]
mod tests;
