//! The access rules' semantics, rule by rule: who a rule applies to, what it covers, deny
//! over allow, visibility of servers, list filtering, and the messages.

use std::sync::Arc;

use mcp_bridge_config::{AccessConfig, AccessEffect, AccessRule, Audience};
use serde_json::{Value, json};

use super::*;
use crate::{CredentialKind, Principal};

fn principal(name: &str, roles: &[&str]) -> Principal {
    Principal {
        name: Arc::from(name),
        roles: roles.iter().map(|role| role.to_string()).collect(),
        scopes: Arc::from(Vec::new()),
        credential: CredentialKind::ApiKey,
        expires_at: None,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

/// A rule for everyone on every server covering everything; tests narrow it.
fn rule(name: &str, effect: AccessEffect) -> AccessRule {
    AccessRule {
        name: name.to_string(),
        effect,
        who: Audience::default(),
        servers: Vec::new(),
        tools: None,
        prompts: None,
        resources: None,
    }
}

fn policy(rules: Vec<AccessRule>) -> AccessPolicy {
    AccessPolicy::new(&AccessConfig { rules })
}

#[test]
fn no_rules_allow_everything() {
    let policy = policy(Vec::new());
    let bob = principal("bob", &[]);
    assert!(policy.is_open());
    assert!(policy.server_visible(&bob, "demo"));
    assert_eq!(
        policy.check(&bob, "demo", Item::Tool("delete_task")),
        Ok(())
    );
    assert!(policy.visible(&bob, "demo", Item::Resource("demo://x")));
    let mut tools = vec![json!({"name": "a"}), json!({"no_name": true})];
    policy.retain_visible(&bob, "demo", ListKind::Tools, &mut tools);
    assert_eq!(tools.len(), 2, "an open policy leaves lists alone");
}

#[test]
fn any_rule_closes_the_policy_to_what_it_does_not_allow() {
    let mut only_alice = rule("alice-only", AccessEffect::Allow);
    only_alice.who.principals = strings(&["alice"]);
    let policy = policy(vec![only_alice]);
    assert!(!policy.is_open());
    let alice = principal("alice", &[]);
    let bob = principal("bob", &["viewer"]);
    assert_eq!(policy.check(&alice, "demo", Item::Tool("x")), Ok(()));
    let denial = policy
        .check(&bob, "demo", Item::Tool("delete_task"))
        .unwrap_err();
    assert_eq!(denial.rule, None);
    assert_eq!(
        denial.message,
        "no access rule allows principal 'bob' (roles: viewer) to use tool 'demo/delete_task'; add an [[access.rules]] entry with effect = \"allow\" that covers it"
    );
    assert_eq!(denial.to_string(), denial.message);
}

#[test]
fn who_matches_principal_globs_or_roles_and_empty_means_everyone() {
    let mut by_name = rule("by-name", AccessEffect::Allow);
    by_name.who.principals = strings(&["ci-*"]);
    by_name.servers = strings(&["a"]);
    let mut by_role = rule("by-role", AccessEffect::Allow);
    by_role.who.roles = strings(&["analyst"]);
    by_role.servers = strings(&["b"]);
    let mut everyone = rule("everyone", AccessEffect::Allow);
    everyone.servers = strings(&["c"]);
    let policy = policy(vec![by_name, by_role, everyone]);

    let bot = principal("ci-bot", &[]);
    let analyst = principal("carol", &["staff", "analyst"]);
    let nobody = principal("dave", &["staff"]);
    let tool = Item::Tool("t");
    assert!(policy.visible(&bot, "a", tool));
    assert!(!policy.visible(&bot, "b", tool));
    assert!(policy.visible(&analyst, "b", tool));
    assert!(!policy.visible(&analyst, "a", tool));
    assert!(!policy.visible(&nobody, "a", tool));
    assert!(!policy.visible(&nobody, "b", tool));
    for caller in [&bot, &analyst, &nobody] {
        assert!(policy.visible(caller, "c", tool), "{}", caller.name);
    }
    // Roles are exact names, not globs.
    let glob_role = principal("erin", &["analyst*"]);
    assert!(!policy.visible(&glob_role, "b", tool));
}

#[test]
fn a_rule_with_both_principals_and_roles_applies_to_either() {
    let mut both = rule("both", AccessEffect::Allow);
    both.who.principals = strings(&["alice"]);
    both.who.roles = strings(&["analyst"]);
    let policy = policy(vec![both]);
    assert!(policy.visible(&principal("alice", &[]), "s", Item::Tool("t")));
    assert!(policy.visible(&principal("zed", &["analyst"]), "s", Item::Tool("t")));
    assert!(!policy.visible(&principal("zed", &[]), "s", Item::Tool("t")));
}

#[test]
fn listing_some_kinds_covers_only_those_kinds() {
    let mut tools_only = rule("tools", AccessEffect::Allow);
    tools_only.servers = strings(&["demo"]);
    tools_only.tools = Some(strings(&["get_*"]));
    let mut resources_only = rule("resources", AccessEffect::Allow);
    resources_only.resources = Some(strings(&["demo://public/*"]));
    let policy = policy(vec![tools_only, resources_only]);
    let bob = principal("bob", &[]);

    assert!(policy.visible(&bob, "demo", Item::Tool("get_clients")));
    assert!(!policy.visible(&bob, "demo", Item::Tool("delete_task")));
    assert!(!policy.visible(&bob, "other", Item::Tool("get_clients")));
    assert!(!policy.visible(&bob, "demo", Item::Prompt("get_summary")));
    assert!(policy.visible(&bob, "demo", Item::Resource("demo://public/readme")));
    assert!(policy.visible(&bob, "other", Item::Resource("demo://public/readme")));
    assert!(!policy.visible(&bob, "demo", Item::Resource("demo://private/x")));
}

#[test]
fn a_rule_listing_no_kind_covers_everything_on_its_servers() {
    let mut everything = rule("demo-all", AccessEffect::Allow);
    everything.servers = strings(&["demo", "lab-?"]);
    let policy = policy(vec![everything]);
    let bob = principal("bob", &[]);
    for item in [
        Item::Tool("anything"),
        Item::Prompt("anything"),
        Item::Resource("file:///x"),
    ] {
        assert!(policy.visible(&bob, "demo", item));
        assert!(policy.visible(&bob, "lab-1", item));
        assert!(!policy.visible(&bob, "lab-10", item));
        assert!(!policy.visible(&bob, "other", item));
    }
}

#[test]
fn deny_wins_over_allow_in_any_order() {
    let mut allow_all = rule("all", AccessEffect::Allow);
    allow_all.servers = strings(&["demo"]);
    let mut no_deletes = rule("no-deletes", AccessEffect::Deny);
    no_deletes.who.roles = strings(&["viewer"]);
    no_deletes.tools = Some(strings(&["delete_*"]));
    let bob = principal("bob", &["viewer"]);
    let admin = principal("root", &["admin"]);

    for rules in [
        vec![allow_all.clone(), no_deletes.clone()],
        vec![no_deletes.clone(), allow_all.clone()],
    ] {
        let policy = policy(rules);
        let denial = policy
            .check(&bob, "demo", Item::Tool("delete_task"))
            .unwrap_err();
        assert_eq!(denial.rule.as_deref(), Some("no-deletes"));
        assert_eq!(
            denial.message,
            "tool 'demo/delete_task' is denied to principal 'bob' by access rule 'no-deletes'"
        );
        assert_eq!(policy.check(&bob, "demo", Item::Tool("get_task")), Ok(()));
        // The deny rule lists only tools: prompts stay allowed.
        assert_eq!(policy.check(&bob, "demo", Item::Prompt("delete_x")), Ok(()));
        // It does not apply to a principal without the role.
        assert_eq!(
            policy.check(&admin, "demo", Item::Tool("delete_task")),
            Ok(())
        );
    }
}

#[test]
fn the_first_matching_deny_rule_is_named() {
    let mut first = rule("first", AccessEffect::Deny);
    first.tools = Some(strings(&["x*"]));
    let mut second = rule("second", AccessEffect::Deny);
    second.tools = Some(strings(&["*"]));
    let policy = policy(vec![rule("all", AccessEffect::Allow), first, second]);
    let bob = principal("bob", &[]);
    let rule_for = |tool| policy.check(&bob, "s", Item::Tool(tool)).unwrap_err().rule;
    assert_eq!(rule_for("xy").as_deref(), Some("first"));
    assert_eq!(rule_for("yy").as_deref(), Some("second"));
}

#[test]
fn messages_describe_each_kind_and_a_principal_without_roles() {
    let mut tools = rule("tools", AccessEffect::Allow);
    tools.tools = Some(strings(&["*"]));
    let policy = policy(vec![tools]);
    let bob = principal("bob", &[]);
    let message = |item| policy.check(&bob, "demo", item).unwrap_err().message;
    assert_eq!(
        message(Item::Prompt("summary")),
        "no access rule allows principal 'bob' (no roles) to use prompt 'demo/summary'; add an [[access.rules]] entry with effect = \"allow\" that covers it"
    );
    assert!(
        message(Item::Resource("demo://tasks/1"))
            .contains("to use resource 'demo://tasks/1' on server 'demo';"),
        "{}",
        message(Item::Resource("demo://tasks/1"))
    );
}

#[test]
fn messages_do_not_grow_with_client_chosen_names() {
    let policy = policy(vec![rule("nothing", AccessEffect::Deny)]);
    let many_roles: Vec<String> = (0..1000).map(|n| format!("role{n}")).collect();
    let caller = Principal {
        roles: many_roles.into(),
        ..principal(&"p".repeat(10_000), &[])
    };
    let long_tool = "é".repeat(10_000);
    let denial = policy
        .check(&caller, "demo", Item::Tool(&long_tool))
        .unwrap_err();
    assert!(
        denial.message.len() < 1_000,
        "{} bytes",
        denial.message.len()
    );
    assert!(denial.message.contains("…"));

    let open_to_none = AccessPolicy::new(&AccessConfig {
        rules: vec![{
            let mut only = rule("only", AccessEffect::Allow);
            only.servers = strings(&["elsewhere"]);
            only
        }],
    });
    let denial = open_to_none
        .check(&caller, "demo", Item::Tool(&long_tool))
        .unwrap_err();
    assert!(
        denial.message.len() < 1_500,
        "{} bytes",
        denial.message.len()
    );
    assert!(
        denial.message.contains("and 990 more"),
        "{}",
        denial.message
    );
}

#[test]
fn server_visibility() {
    let mut demo_tools = rule("demo-tools", AccessEffect::Allow);
    demo_tools.servers = strings(&["demo", "secret"]);
    demo_tools.tools = Some(strings(&["get_*"]));
    let mut hide_secret = rule("hide-secret", AccessEffect::Deny);
    hide_secret.servers = strings(&["secret"]);
    let mut deny_some = rule("deny-some", AccessEffect::Deny);
    deny_some.servers = strings(&["demo"]);
    deny_some.tools = Some(strings(&["get_x"]));
    let mut grants_nothing = rule("grants-nothing", AccessEffect::Allow);
    grants_nothing.servers = strings(&["empty"]);
    grants_nothing.tools = Some(Vec::new());
    let policy = policy(vec![demo_tools, hide_secret, deny_some, grants_nothing]);
    let bob = principal("bob", &[]);

    assert!(
        policy.server_visible(&bob, "demo"),
        "a deny of some tools keeps it visible"
    );
    assert!(
        !policy.server_visible(&bob, "secret"),
        "a whole-server deny hides it"
    );
    assert!(
        !policy.server_visible(&bob, "other"),
        "no allow rule covers it"
    );
    assert!(
        !policy.server_visible(&bob, "empty"),
        "an allow rule that lists only empty lists grants nothing"
    );
}

#[test]
fn a_whole_server_deny_hides_it_only_from_whom_it_applies_to() {
    let mut hide = rule("hide", AccessEffect::Deny);
    hide.who.principals = strings(&["bob"]);
    hide.servers = strings(&["demo"]);
    let policy = policy(vec![rule("all", AccessEffect::Allow), hide]);
    assert!(!policy.server_visible(&principal("bob", &[]), "demo"));
    assert!(policy.server_visible(&principal("bob", &[]), "other"));
    assert!(policy.server_visible(&principal("alice", &[]), "demo"));
}

#[test]
fn retain_visible_filters_each_list_kind_by_its_field() {
    let mut allow = rule("allow", AccessEffect::Allow);
    allow.servers = strings(&["demo"]);
    allow.tools = Some(strings(&["get_*", "list_*"]));
    allow.prompts = Some(strings(&["summary"]));
    allow.resources = Some(strings(&["demo://tasks/*"]));
    let mut deny = rule("deny", AccessEffect::Deny);
    deny.who.roles = strings(&["viewer"]);
    deny.tools = Some(strings(&["list_*"]));
    let policy = policy(vec![allow, deny]);
    let bob = principal("bob", &["viewer"]);
    let alice = principal("alice", &[]);

    let names = |entries: &[Value], key: &str| -> Vec<String> {
        entries
            .iter()
            .map(|entry| entry[key].as_str().unwrap().to_string())
            .collect()
    };
    let tools = vec![
        json!({"name": "get_clients", "inputSchema": {}}),
        json!({"name": "list_tasks"}),
        json!({"name": "delete_task"}),
        json!({"title": "no name"}),
        json!({"name": 7}),
        json!("not an object"),
    ];
    let mut for_bob = tools.clone();
    policy.retain_visible(&bob, "demo", ListKind::Tools, &mut for_bob);
    assert_eq!(names(&for_bob, "name"), ["get_clients"]);
    let mut for_alice = tools.clone();
    policy.retain_visible(&alice, "demo", ListKind::Tools, &mut for_alice);
    assert_eq!(names(&for_alice, "name"), ["get_clients", "list_tasks"]);
    let mut elsewhere = tools;
    policy.retain_visible(&alice, "other", ListKind::Tools, &mut elsewhere);
    assert!(elsewhere.is_empty());

    let mut prompts = vec![json!({"name": "summary"}), json!({"name": "other"})];
    policy.retain_visible(&bob, "demo", ListKind::Prompts, &mut prompts);
    assert_eq!(names(&prompts, "name"), ["summary"]);

    let mut resources = vec![
        json!({"uri": "demo://tasks/1", "name": "get_clients"}),
        json!({"uri": "demo://clients/1", "name": "summary"}),
    ];
    policy.retain_visible(&bob, "demo", ListKind::Resources, &mut resources);
    assert_eq!(names(&resources, "uri"), ["demo://tasks/1"]);

    let mut templates = vec![
        json!({"uriTemplate": "demo://tasks/{id}", "name": "task"}),
        json!({"uriTemplate": "demo://clients/{id}", "name": "client"}),
    ];
    policy.retain_visible(&bob, "demo", ListKind::ResourceTemplates, &mut templates);
    assert_eq!(names(&templates, "uriTemplate"), ["demo://tasks/{id}"]);
}

#[test]
fn retain_visible_agrees_with_check() {
    let mut allow = rule("allow", AccessEffect::Allow);
    allow.tools = Some(strings(&["a*", "?b"]));
    let mut deny = rule("deny", AccessEffect::Deny);
    deny.who.principals = strings(&["b*"]);
    deny.tools = Some(strings(&["*z"]));
    let policy = policy(vec![allow, deny]);
    let names = ["a", "az", "ab", "xb", "xbz", "bz", "", "abz"];
    for caller in [principal("bob", &[]), principal("alice", &[])] {
        let mut entries: Vec<Value> = names.iter().map(|name| json!({"name": name})).collect();
        policy.retain_visible(&caller, "s", ListKind::Tools, &mut entries);
        let kept: Vec<&str> = entries
            .iter()
            .map(|entry| entry["name"].as_str().unwrap())
            .collect();
        let checked: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| policy.check(&caller, "s", Item::Tool(name)).is_ok())
            .collect();
        assert_eq!(kept, checked, "{}", caller.name);
    }
}
