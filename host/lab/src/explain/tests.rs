use std::sync::Arc;
use std::time::Duration;

use super::*;
use mcp_bridge_policy::{BuiltinPolicy, BuiltinSettings, Directive, Policy, TtlMap};

/// The built-in policy with `default_ttl = "60s"` and the row `demo.get_clients = "7m"`.
fn builtin() -> Arc<BuiltinPolicy> {
    Arc::new(BuiltinPolicy::new(BuiltinSettings {
        default_ttl: Some(Duration::from_secs(60)),
        ttl_table: TtlMap::new().with("demo", "get_clients", Duration::from_secs(420)),
        ..BuiltinSettings::default()
    }))
}

/// A plugin that caches every tool call privately, leaving `request_id` out of the key.
struct PrivateIgnoringRequestId;

impl Policy for PrivateIgnoringRequestId {
    fn name(&self) -> &str {
        "private"
    }
    fn decide(&self, call: &Call<'_>) -> Decision {
        if call.is_tool() {
            Directive::ttl(Duration::from_secs(5))
                .private()
                .ignore_argument("request_id")
                .into()
        } else {
            Decision::Abstain
        }
    }
}

fn request(body: Value) -> ExplainRequest {
    match ExplainRequest::from_json(&body) {
        Ok(request) => request,
        Err(error) => panic!("{body}: {error}"),
    }
}

fn read_only_catalogue() -> ServerFacts {
    ServerFacts {
        catalogue: Some(Some(json!({
            "name": "get_clients",
            "annotations": { "readOnlyHint": true }
        }))),
        ..ServerFacts::default()
    }
}

#[test]
fn every_bad_field_is_named() {
    for (body, field) in [
        (json!([1]), "body:"),
        (json!({}), "server:"),
        (json!({"server": 3, "tool": "t"}), "server:"),
        (json!({"server": "demo"}), "tool:"),
        (json!({"server": "demo", "tool": "t", "extra": 1}), "extra:"),
        (
            json!({"server": "demo", "method": "prompts/get"}),
            "method:",
        ),
        (
            json!({"server": "demo", "tool": "t", "arguments": [1]}),
            "arguments:",
        ),
        (json!({"server": "demo", "tool": "t", "uri": "u"}), "uri:"),
        (
            json!({"server": "demo", "method": "resources/read"}),
            "uri:",
        ),
        (
            json!({"server": "demo", "method": "tools/list", "tool": "t"}),
            "tool:",
        ),
        (
            json!({"server": "demo", "tool": "t", "principal": "p".repeat(300)}),
            "principal:",
        ),
    ] {
        let error = ExplainRequest::from_json(&body)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(field), "{body}: {error}");
    }
}

#[test]
fn a_shared_read_is_keyed_as_the_router_keys_it() {
    let chain = PolicyChain::new(Vec::new(), builtin());
    let call = request(json!({
        "server": "demo", "tool": "get_clients", "arguments": {"b": 1.0, "a": "x"}
    }));
    let document = explain(&chain, &call, &read_only_catalogue());
    assert_eq!(document["decided_by"], "builtin");
    assert_eq!(document["ttl_source"], "config:demo/get_clients");
    assert_eq!(document["ttl_ms"], 420_000);
    assert_eq!(document["tool"]["known"], true);
    assert_eq!(document["tool"]["annotations"]["readOnlyHint"], true);
    assert_eq!(document["call"]["arguments"], r#"{"a":"x","b":1}"#);
    assert_eq!(document["cache"]["partition"], "shared");
    assert_eq!(
        document["cache"]["key"],
        cache_key(
            "demo",
            "tools/call",
            "get_clients",
            "",
            r#"{"a":"x","b":1}"#
        )
    );
}

#[test]
fn a_private_directive_files_under_the_principal_without_ignored_arguments() {
    let chain = PolicyChain::new(vec![Arc::new(PrivateIgnoringRequestId)], builtin());
    let body = json!({
        "server": "demo", "tool": "get_clients",
        "arguments": {"request_id": "r-1", "q": 2}, "principal": "alice"
    });
    let document = explain(&chain, &request(body), &read_only_catalogue());
    assert_eq!(document["decided_by"], "private");
    assert_eq!(document["cache"]["partition"], "principal");
    assert_eq!(
        document["cache"]["key"],
        cache_key(
            "demo",
            "tools/call",
            "get_clients",
            "principal:alice",
            r#"{"q":2}"#
        )
    );
    // Without a principal a private result is not stored.
    let body = json!({"server": "demo", "tool": "get_clients"});
    let document = explain(&chain, &request(body), &read_only_catalogue());
    assert_eq!(document["cache"]["key"], Value::Null);
    // An isolated server files every result under the caller's group.
    let isolated = ServerFacts {
        isolated: true,
        ..read_only_catalogue()
    };
    let body = json!({"server": "demo", "tool": "get_clients", "principal": "alice"});
    let document = explain(&chain, &request(body), &isolated);
    assert_eq!(document["cache"]["partition"], "group");
}

#[test]
fn an_unknown_tool_is_said_to_be_unknown_and_treated_as_a_write() {
    let chain = PolicyChain::new(Vec::new(), builtin());
    let call = request(json!({"server": "demo", "tool": "launch"}));
    let unlisted = ServerFacts {
        catalogue: Some(None),
        ..ServerFacts::default()
    };
    let document = explain(&chain, &call, &unlisted);
    assert_eq!(document["tool"]["known"], false);
    assert!(
        document["tool"]["note"]
            .as_str()
            .is_some_and(|note| note.contains("`launch`"))
    );
    assert_eq!(document["decision"]["decision"], "bypass");
    assert_eq!(document["writes"], true);
    assert_eq!(
        document["invalidations"]["applied"],
        json!([{ "server": "demo" }])
    );
    assert_eq!(document["cache"], Value::Null);
    let document = explain(&chain, &call, &ServerFacts::default());
    assert_eq!(document["tool"]["known"], Value::Null);
    let text = human(&document);
    assert!(text.contains("decided by builtin: bypass"), "{text}");
    assert!(
        text.contains("a success invalidates (default): all of demo"),
        "{text}"
    );
}

#[test]
fn a_list_is_keyed_by_its_params_and_read_only() {
    let chain = PolicyChain::new(
        Vec::new(),
        Arc::new(BuiltinPolicy::new(BuiltinSettings {
            list_ttl: Duration::from_secs(300),
            ..BuiltinSettings::default()
        })),
    );
    let call =
        request(json!({"server": "demo", "method": "tools/list", "arguments": {"cursor": "c"}}));
    let document = explain(&chain, &call, &ServerFacts::default());
    assert_eq!(document["ttl_ms"], 300_000);
    assert_eq!(
        document["cache"]["key"],
        cache_key("demo", "tools/list", "tools/list", "", r#"{"cursor":"c"}"#)
    );
    assert_eq!(document["tool"]["annotations"]["readOnlyHint"], true);
}
