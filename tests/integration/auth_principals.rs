//! What depends on who is calling, with two principals (alice and bob) through one shared
//! bridge: private cached results partitioned by principal rather than by session, access
//! rules that filter `tools/list` and refuse calls before any backend (and reload with the
//! config), rate limits and in-flight caps that stop one principal without slowing the other
//! (cache hits counted only when configured, the `principal` label bounded), and the audit
//! log.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::auth::{
    ALICE_KEY, BOB_KEY, Guarded, Issuer, Reply, Session, api_key_toml, tool_call, two_keys,
};
use crate::support::{SETTLE, metric, poll_until, repo_root, run_python_client};

/// The JSON-RPC code of a call the access rules refuse.
const ACCESS_DENIED: i64 = -32040;
/// The JSON-RPC code of a call a limit refuses.
const RATE_LIMITED: i64 = -32041;

/// The JSON-RPC error of a response (`Value::Null` when it succeeded).
fn error_of(response: &Value) -> &Value {
    &response["error"]
}

/// `whoami`'s per-call counter from the private-result server.
async fn whoami(session: &Session) -> Result<Option<u64>> {
    Ok(session.structured("whoami", json!({})).await?["call"].as_u64())
}

/// A private result (`cacheScope: private`) is cached for its principal: a second session of
/// alice gets alice's entry, bob never does, whichever session either uses (or none, on
/// 2026-07-28). The holders of `http.auth_token` are not one person: theirs stay per session.
#[tokio::test]
async fn private_results_are_shared_by_a_principal_and_never_cross_principals() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let script = repo_root().join("tests/clients/cache_private_server.py");
    let dir = tempfile::tempdir()?;
    let calls = dir.path().join("private-calls.log");
    let args = [
        script.display().to_string(),
        "--calls-log".to_owned(),
        calls.display().to_string(),
    ];
    let private = format!(
        "[servers.private]\ncommand = \"python3\"\nargs = {}\nmax_connections = 1\n",
        serde_json::to_string(&args)?
    );
    let shared_token = "shared-token-6a0f2c9e7d41";
    let config = format!(
        "{private}\n[http]\nauth_token = \"{shared_token}\"\n[cache]\nenabled = true\n{}",
        issuer.jwt_toml(crate::auth::AUDIENCE, "")
    );
    let demo = Guarded::start(&config, "").await?;
    let url = demo.url("/mcp/private");
    let (alice_token, bob_token) = (
        issuer.token("alice", &[]).await?,
        issuer.token("bob", &[]).await?,
    );
    let alice_first = Session::open(&url, &alice_token).await?;
    let alice_second = Session::open(&url, &alice_token).await?;
    let bob = Session::open(&url, &bob_token).await?;

    assert_eq!(whoami(&alice_first).await?, Some(1), "alice's first call");
    assert_eq!(
        whoami(&alice_second).await?,
        Some(1),
        "alice's second session shares her entry"
    );
    assert_eq!(
        whoami(&bob).await?,
        Some(2),
        "bob got alice's private result"
    );
    assert_eq!(
        whoami(&bob).await?,
        Some(2),
        "bob's repeat is his own entry"
    );
    assert_eq!(
        whoami(&alice_first).await?,
        Some(1),
        "alice got bob's private result"
    );
    // A fresh token of alice's (another credential, same principal) finds her entry too.
    let alice_again = Session::open(&url, &issuer.token("alice", &[]).await?).await?;
    assert_eq!(whoami(&alice_again).await?, Some(1));
    // Everyone holding http.auth_token is one principal, but not one person: a private result
    // stays with the session that fetched it (`Principal::is_individual`), as without auth.
    let (holder, other_holder) = (
        Session::open(&url, shared_token).await?,
        Session::open(&url, shared_token).await?,
    );
    assert_eq!(whoami(&holder).await?, Some(3), "the first holder's call");
    assert_eq!(
        whoami(&other_holder).await?,
        Some(4),
        "another holder got the first's result"
    );
    assert_eq!(whoami(&holder).await?, Some(3), "the first holder's repeat");
    let served = crate::support::count_calls(&calls, "whoami");
    assert_eq!(
        served, 4,
        "one call per principal (per session for the shared token)"
    );

    // Clients of 2026-07-28 have no session at all: the principal alone is the partition.
    let sessionless = |token: &str| {
        let steps = json!([{"op": "call", "tool": "whoami"}]);
        let spec = json!({"url": url, "mode": "2026-07-28", "bearer": token, "steps": steps});
        let arg = spec.to_string();
        async move {
            let report = run_python_client("auth_oauth_client.py", &[arg.as_str()]).await?;
            Ok::<_, anyhow::Error>(report["results"][0]["structured"]["call"].as_u64())
        }
    };
    let (for_alice, for_bob) = tokio::join!(sessionless(&alice_token), sessionless(&bob_token));
    assert_eq!(
        (for_alice?, for_bob?),
        (Some(1), Some(2)),
        "sessionless principals"
    );
    assert_eq!(crate::support::count_calls(&calls, "whoami"), 4);
    Ok(())
}

/// The tool names of a `tools/list` on `path` for `key`.
async fn listed(demo: &Guarded, path: &str, key: &str) -> Result<Vec<String>> {
    Session::open(&demo.url(path), key)
        .await?
        .tool_names()
        .await
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    names.sort();
    names
}

/// Access rules decide what each principal sees and may call: `tools/list` per server and
/// aggregated shows only what the caller may call, and a call outside the rules gets -32040
/// naming the rule, counted, and never reaches the server.
#[tokio::test]
async fn access_rules_filter_lists_and_refuse_calls_before_any_backend() -> Result<()> {
    let other = crate::support::demo_server_toml("other", &[], "max_connections = 1");
    let rules = r#"
[[access.rules]]
name = "analysts-read"
effect = "allow"
roles = ["analyst"]
servers = ["demo"]
tools = ["get_*"]

[[access.rules]]
name = "bob-everything"
effect = "allow"
principals = ["bob"]

[[access.rules]]
name = "no-debug-tools"
effect = "deny"
principals = ["*"]
tools = ["debug_*"]
"#;
    let config = format!("{other}\n{}\n{rules}", two_keys(&["analyst"]));
    let demo = Guarded::start(&config, "max_connections = 1").await?;
    let reads = [
        "get_tasks",
        "get_clients",
        "get_habits",
        "get_today_metrics",
    ];
    let seed = [&reads[..], &["create_task", "update_task", "complete_task"]].concat();

    assert_eq!(listed(&demo, "/mcp/demo", ALICE_KEY).await?, sorted(&reads));
    let alice_aggregated: Vec<String> = reads.iter().map(|tool| format!("demo__{tool}")).collect();
    let alice_aggregated: Vec<&str> = alice_aggregated.iter().map(String::as_str).collect();
    assert_eq!(
        listed(&demo, "/mcp", ALICE_KEY).await?,
        sorted(&alice_aggregated)
    );
    assert_eq!(listed(&demo, "/mcp/demo", BOB_KEY).await?, sorted(&seed));
    let bob_aggregated: Vec<String> = ["demo", "other"]
        .iter()
        .flat_map(|server| seed.iter().map(move |tool| format!("{server}__{tool}")))
        .collect();
    let bob_aggregated: Vec<&str> = bob_aggregated.iter().map(String::as_str).collect();
    assert_eq!(
        listed(&demo, "/mcp", BOB_KEY).await?,
        sorted(&bob_aggregated)
    );

    let denied_before = metric(&demo.bridge, "mcp_bridge_access_denied_total", &[]).await?;
    let forwarded_before = demo.backend_calls().await?;
    let alice = Session::open(&demo.url("/mcp/demo"), ALICE_KEY).await?;
    let alice_everywhere = Session::open(&demo.url("/mcp"), ALICE_KEY).await?;
    let bob = Session::open(&demo.url("/mcp/demo"), BOB_KEY).await?;
    let refused = [
        (
            "alice create_task",
            alice.call("create_task", json!({"title": "no"})).await?,
        ),
        (
            "alice demo__create_task",
            alice_everywhere
                .call("demo__create_task", json!({"title": "no"}))
                .await?,
        ),
        (
            "bob debug_sleep",
            bob.call("debug_sleep", json!({"ms": 1})).await?,
        ),
    ];
    // A call no allow rule covers has no rule to name: its message says so, naming who and
    // what; a deny rule's refusal names that rule.
    for ((what, response), (who, tool)) in refused.iter().zip([
        ("alice", "create_task"),
        ("alice", "create_task"),
        ("bob", "debug_sleep"),
    ]) {
        let error = error_of(response);
        assert_eq!(error["code"], ACCESS_DENIED, "{what}: {response}");
        let message = error["message"].as_str().unwrap_or_default();
        let named = error["data"]["rule"]
            .as_str()
            .is_some_and(|rule| !rule.is_empty());
        let explained = message.contains("no access rule") && message.contains(who);
        assert!(
            message.contains(tool) && (named || explained),
            "{what}: the refusal names neither the rule nor the missing allowance: {response}"
        );
    }
    assert_eq!(
        error_of(&refused[2].1)["data"]["rule"],
        "no-debug-tools",
        "bob's refusal names the deny rule: {}",
        refused[2].1
    );
    assert_eq!(
        demo.calls_of("create_task") + demo.calls_of("debug_sleep"),
        0,
        "a refused call reached the server"
    );
    assert_eq!(
        demo.backend_calls().await?,
        forwarded_before,
        "a refused call was forwarded"
    );
    let denied = metric(&demo.bridge, "mcp_bridge_access_denied_total", &[]).await? - denied_before;
    assert_eq!(denied, 3.0, "refusals counted");

    alice.structured("get_clients", json!({})).await?;
    bob.structured("create_task", json!({"title": "bob may"}))
        .await?;
    assert_eq!(
        (demo.calls_of("get_clients"), demo.calls_of("create_task")),
        (1, 1)
    );
    Ok(())
}

/// Prompts and resources follow the rules too: the lists show only what a rule covers, and
/// reading or getting anything else is refused with -32040 before the server sees it.
#[tokio::test]
async fn access_rules_cover_prompts_and_resources() -> Result<()> {
    let rules = r#"
[[access.rules]]
name = "alice-planning"
effect = "allow"
principals = ["alice"]
servers = ["demo"]
prompts = ["plan_*"]
resources = ["demo://tasks*"]
"#;
    let demo = Guarded::start(&format!("{}\n{rules}", two_keys(&[])), "").await?;
    let alice = Session::open(&demo.url("/mcp/demo"), ALICE_KEY).await?;
    let prompts = alice.listed("prompts/list", "prompts", "name").await?;
    assert_eq!(prompts, ["plan_day"]);
    let resources = alice.listed("resources/list", "resources", "uri").await?;
    assert_eq!(resources, ["demo://tasks"]);
    assert_eq!(
        alice.tool_names().await?,
        Vec::<String>::new(),
        "no rule covers tools"
    );

    let read = alice
        .request("resources/read", json!({"uri": "demo://tasks"}))
        .await?;
    assert!(read["result"]["contents"].is_array(), "{read}");
    let planned = alice
        .request("prompts/get", json!({"name": "plan_day"}))
        .await?;
    assert!(planned["result"]["messages"].is_array(), "{planned}");

    let forwarded_before = demo.backend_calls().await?;
    let refused = [
        alice
            .request("resources/read", json!({"uri": "demo://clients"}))
            .await?,
        alice
            .request("prompts/get", json!({"name": "habit_checkin"}))
            .await?,
        alice.call("get_clients", json!({})).await?,
    ];
    for response in &refused {
        assert_eq!(error_of(response)["code"], ACCESS_DENIED, "{response}");
    }
    assert_eq!(
        demo.backend_calls().await?,
        forwarded_before,
        "a refusal was forwarded"
    );
    assert_eq!(demo.calls_of("get_clients"), 0);
    Ok(())
}

/// Roles from a JWT's `roles` claim (an array, or one string) grant what a role rule allows,
/// and the scopes claim may be an array; a token without the role is refused.
#[tokio::test]
async fn roles_from_a_jwt_grant_access_by_role() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let rules = r#"
[[access.rules]]
name = "analysts"
effect = "allow"
roles = ["analyst"]
tools = ["get_*"]
"#;
    let config = format!("{}\n{rules}", issuer.jwt_toml(crate::auth::AUDIENCE, ""));
    let demo = Guarded::start(&config, "").await?;
    let url = demo.url("/mcp/demo");
    for (what, spec) in [
        (
            "roles as an array",
            json!({"sub": "ann", "roles": ["analyst", "x"]}),
        ),
        (
            "roles as one string",
            json!({"sub": "ann", "roles": "analyst"}),
        ),
        (
            "scopes as an array",
            json!({"sub": "ann", "roles": ["analyst"], "scope": ["mcp", "x"]}),
        ),
    ] {
        let session = Session::open(&url, &issuer.mint(spec).await?).await?;
        let names = session.tool_names().await?;
        assert_eq!(names.len(), 4, "{what}: {names:?}");
        session
            .structured("get_clients", json!({}))
            .await
            .context(what)?;
    }
    let outsider = Session::open(&url, &issuer.token("olaf", &["viewer"]).await?).await?;
    // A server the caller may use nothing of may list as empty or refuse the list outright.
    let list = outsider.request("tools/list", json!({})).await?;
    let hidden = list["result"]["tools"] == json!([]) || error_of(&list)["code"] == ACCESS_DENIED;
    assert!(hidden, "the outsider sees tools: {list}");
    let refused = outsider.call("get_clients", json!({})).await?;
    assert_eq!(error_of(&refused)["code"], ACCESS_DENIED, "{refused}");
    assert_eq!(demo.calls_of("get_clients"), 3);
    Ok(())
}

/// Access rules reload with the config file: a new deny rule applies to an open session, and
/// a bad rule is reported with file, line and field while the rules before it keep serving.
#[tokio::test]
async fn access_rules_reload_and_a_bad_rule_keeps_the_old_ones() -> Result<()> {
    let everyone = "[[access.rules]]\nname = \"everyone\"\neffect = \"allow\"\n";
    let demo = Guarded::start(&format!("{}\n{everyone}", two_keys(&[])), "").await?;
    let url = demo.url("/mcp/demo");
    let (alice, bob) = (
        Session::open(&url, ALICE_KEY).await?,
        Session::open(&url, BOB_KEY).await?,
    );
    alice.structured("get_clients", json!({})).await?;

    let blocked = "[[access.rules]]\nname = \"alice-blocked\"\neffect = \"deny\"\n\
                   principals = [\"alice\"]\ntools = [\"get_clients\"]\n";
    demo.edit_config(|text| format!("{text}\n{blocked}"))?;
    let alice_denied = async || {
        let response = alice.call("get_clients", json!({})).await.ok()?;
        Some(error_of(&response)["data"]["rule"].clone())
    };
    let rule = poll_until(SETTLE, alice_denied, |rule| {
        rule.as_ref().is_some_and(|rule| rule == "alice-blocked")
    })
    .await;
    assert_eq!(
        rule,
        Some(json!("alice-blocked")),
        "the new rule never applied"
    );

    let bad = "[[access.rules]]\nname = \"half-open\"\neffect = \"maybe\"\n";
    demo.edit_config(|text| format!("{text}\n{bad}"))?;
    let reported = demo.bridge.logged("access.rules[2].effect").await;
    assert!(
        reported,
        "the bad rule was not reported by field:\n{}",
        demo.bridge.log_tail(20)
    );
    assert!(
        demo.bridge.log_text().contains("mcp-bridge.toml:"),
        "no file and line"
    );
    let still = alice.call("get_clients", json!({})).await?;
    assert_eq!(error_of(&still)["data"]["rule"], "alice-blocked", "{still}");
    bob.structured("get_clients", json!({})).await?;
    Ok(())
}

/// Asserts that `reply` is a single request refused by a limit: HTTP 429 with `Retry-After`
/// and JSON-RPC -32041 carrying `retryAfterSeconds` and a reason.
fn assert_limited(what: &str, reply: &Reply) -> Result<()> {
    assert_eq!(reply.status, 429, "{what}: {}", reply.explanation());
    let retry_after: u64 = reply
        .retry_after
        .as_deref()
        .context("no Retry-After")?
        .trim()
        .parse()
        .context("Retry-After is not a number of seconds")?;
    assert!(retry_after >= 1, "{what}: Retry-After {retry_after}");
    let response = reply.message()?;
    let error = error_of(&response);
    assert_eq!(error["code"], RATE_LIMITED, "{what}: {response}");
    let hint = error["data"]["retryAfterSeconds"].as_f64().unwrap_or(-1.0);
    assert!(hint > 0.0, "{what}: no retryAfterSeconds: {response}");
    let reason = error["data"]["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "{what}: no reason: {response}");
    Ok(())
}

/// Alice's token bucket runs dry after its burst: her next calls get 429 / -32041 with a
/// retry hint (counted under her name) and reach no backend, while bob's calls all succeed.
/// Carol, limited by the same rule but not named in `auth.metrics_principals`, is counted as
/// `other`, so the label's values stay bounded.
#[tokio::test]
async fn a_rate_limited_principal_is_refused_while_the_other_keeps_calling() -> Result<()> {
    let limits = r#"
[[limits.rules]]
name = "alice-trickle"
principals = ["alice", "carol"]
calls_per_second = 0.05
burst = 2
"#;
    let carol_key = "carol-key-5d2e81f09c3a";
    let config = format!(
        "[auth]\nmetrics_principals = [\"alice\"]\n{}\n{}\n{limits}",
        two_keys(&[]),
        api_key_toml("carol", &[], carol_key)
    );
    let demo = Guarded::start(&config, "max_connections = 1").await?;
    let url = demo.url("/mcp/demo");
    let (alice, bob) = (
        Session::open(&url, ALICE_KEY).await?,
        Session::open(&url, BOB_KEY).await?,
    );
    for _ in 0..2 {
        alice.structured("get_clients", json!({})).await?;
    }
    assert_limited(
        "alice's third call",
        &alice.call_reply("get_clients", json!({})).await?,
    )?;
    for n in 0..10 {
        bob.structured("get_clients", json!({}))
            .await
            .with_context(|| format!("bob's call {n}"))?;
    }
    assert_limited(
        "alice after bob's calls",
        &alice.call_reply("get_clients", json!({})).await?,
    )?;
    assert_eq!(
        demo.calls_of("get_clients"),
        12,
        "alice's refused calls reached the server"
    );
    let limited = "mcp_bridge_rate_limited_total";
    let labels = ["principal=\"alice\"", "reason=\"rate\""];
    let counted = metric(&demo.bridge, limited, &labels).await?;
    assert_eq!(counted, 2.0, "alice's refusals counted under her name");

    // Carol has a bucket of her own under the same rule.
    let carol = Session::open(&url, carol_key).await?;
    for _ in 0..2 {
        carol.structured("get_clients", json!({})).await?;
    }
    assert_limited(
        "carol's third call",
        &carol.call_reply("get_clients", json!({})).await?,
    )?;
    let labels = ["principal=\"other\"", "reason=\"rate\""];
    assert_eq!(metric(&demo.bridge, limited, &labels).await?, 1.0);
    let (_, exposition) = demo.bridge.get("/metrics").await?;
    let exposition = String::from_utf8_lossy(&exposition);
    assert!(
        !exposition.contains("principal=\"carol\""),
        "a principal outside auth.metrics_principals got a label value of its own"
    );
    Ok(())
}

/// Alice's bucket of one call, with the cache serving `get_clients`: whether her cache
/// hits were refused once the bucket was empty, and the calls the server received.
async fn limited_hits(count_cache_hits: bool) -> Result<(bool, usize)> {
    let config = format!(
        "{}\n[limits]\ncount_cache_hits = {count_cache_hits}\n\
         [[limits.rules]]\nname = \"alice-one\"\nprincipals = [\"alice\"]\n\
         calls_per_second = 0.05\nburst = 1\n\
         [cache]\nenabled = true\n[cache.ttl.demo]\nget_clients = \"5m\"\nget_tasks = 0\n",
        two_keys(&[])
    );
    let demo = Guarded::start(&config, "max_connections = 1").await?;
    let url = demo.url("/mcp/demo");
    // Bob fills the cache, so each of alice's calls below is a hit.
    Session::open(&url, BOB_KEY)
        .await?
        .structured("get_clients", json!({}))
        .await?;
    let alice = Session::open(&url, ALICE_KEY).await?;
    alice.structured("get_clients", json!({})).await?;
    let repeat = alice.call_reply("get_clients", json!({})).await?;
    let hit_limited = repeat.status == 429;
    if !hit_limited {
        ensure!(repeat.status == 200, "{}", repeat.explanation());
        // The hits left her token: the next call the cache cannot answer takes it.
        let miss = alice.call_reply("get_tasks", json!({})).await?;
        ensure!(
            miss.status == 200,
            "alice's first real call: {}",
            miss.explanation()
        );
        assert_limited(
            "alice's second real call",
            &alice.call_reply("get_tasks", json!({})).await?,
        )?;
    } else {
        assert_limited("alice's repeated hit", &repeat)?;
    }
    Ok((hit_limited, demo.calls_of("get_clients")))
}

/// Cache hits take from a principal's rate limit only when `limits.count_cache_hits` says so.
#[tokio::test]
async fn cache_hits_count_toward_rate_limits_only_when_configured() -> Result<()> {
    let (limited, served) = limited_hits(false).await?;
    assert!(
        !limited,
        "a cache hit was refused with count_cache_hits = false"
    );
    assert_eq!(served, 1, "only bob's fill reached the server");
    let (limited, served) = limited_hits(true).await?;
    assert!(limited, "cache hits were free with count_cache_hits = true");
    assert_eq!(served, 1, "only bob's fill reached the server");
    Ok(())
}

/// With one call in flight alice is at her cap: her next call is refused at once rather than
/// queued, and bob's calls go through meanwhile without waiting for hers.
#[tokio::test]
async fn an_in_flight_cap_stops_one_principal_without_slowing_the_other() -> Result<()> {
    let limits = r#"
[[limits.rules]]
name = "alice-one-at-a-time"
principals = ["alice"]
max_in_flight = 1
"#;
    let config = format!(
        "[auth]\nmetrics_principals = [\"alice\"]\n{}\n{limits}",
        two_keys(&[])
    );
    let demo = Guarded::start(&config, "min_connections = 2\nmax_connections = 2").await?;
    let url = demo.url("/mcp/demo");
    let (alice, bob) = (
        Session::open(&url, ALICE_KEY).await?,
        Session::open(&url, BOB_KEY).await?,
    );
    let sleep_ms = 3000;
    let slow = tokio::spawn(async move {
        alice
            .call_reply("debug_sleep", json!({"ms": sleep_ms}))
            .await
            .map(|r| (r, alice))
    });
    let started = poll_until(SETTLE, async || demo.calls_of("debug_sleep"), |n| *n == 1).await;
    assert_eq!(started, 1, "alice's slow call never reached the server");

    let second_alice = Session::open(&url, ALICE_KEY).await?;
    let refused = second_alice.call_reply("get_clients", json!({})).await?;
    assert_limited("alice's second call in flight", &refused)?;
    for _ in 0..5 {
        bob.structured("get_clients", json!({})).await?;
    }
    // Bob was served while alice's call still held her only slot: her cap did not queue him.
    assert!(
        !slow.is_finished(),
        "bob's five calls were answered only after alice's {sleep_ms} ms call ended"
    );
    let (reply, _alice) = tokio::time::timeout(SETTLE, slow).await???;
    assert_eq!(
        reply.status,
        200,
        "alice's slow call: {}",
        reply.explanation()
    );
    assert_eq!(
        demo.calls_of("get_clients"),
        5,
        "alice's refused call reached the server"
    );
    let labels = ["principal=\"alice\"", "reason=\"in_flight\""];
    let counted = metric(&demo.bridge, "mcp_bridge_rate_limited_total", &labels).await?;
    assert_eq!(counted, 1.0);
    // Her call done, alice may call again.
    second_alice.structured("get_clients", json!({})).await?;
    Ok(())
}

/// The audit lines of a file, parsed (a line that is not a JSON object fails the test).
fn audit_lines(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
            ensure!(value.is_object(), "not a JSON object: {line}");
            Ok(value)
        })
        .collect()
}

/// The tool an audit line names: the issue calls the field `tool`; the bridge may call it
/// `target`, as it names a prompt there too.
fn tool_of(line: &Value) -> &Value {
    line.get("tool").unwrap_or(&line["target"])
}

/// Whether an audit line has a field whose name contains `part`.
fn has_field(line: &Value, part: &str) -> bool {
    line.as_object()
        .is_some_and(|fields| fields.keys().any(|key| key.contains(part)))
}

/// Every call is one JSON line naming the principal, server, method, tool, outcome, cache
/// result, latency and (for a refusal) the reason; no token, key or argument value appears.
#[tokio::test]
async fn the_audit_log_records_who_did_what_and_no_secret() -> Result<()> {
    let issuer = Issuer::start(&[]).await?;
    let rules = r#"
[[access.rules]]
name = "everyone"
effect = "allow"

[[access.rules]]
name = "bob-reads-only"
effect = "deny"
principals = ["bob"]
tools = ["create_task"]

[cache]
enabled = true
[cache.ttl.demo]
get_clients = "5m"
create_task = 0

[audit]
enabled = true
file = "audit.jsonl"
"#;
    let config = format!(
        "{}\n{}\n{rules}",
        issuer.jwt_toml(crate::auth::AUDIENCE, ""),
        api_key_toml("bob", &[], BOB_KEY)
    );
    let demo = Guarded::start(&config, "max_connections = 1").await?;
    let url = demo.url("/mcp/demo");
    let secret_argument = "SECRET-ARGUMENT-7d1c";
    let alice_token = issuer.token("alice", &[]).await?;
    let alice = Session::open(&url, &alice_token).await?;
    let bob = Session::open(&url, BOB_KEY).await?;
    alice.structured("get_clients", json!({})).await?;
    alice.structured("get_clients", json!({})).await?;
    alice
        .structured("create_task", json!({"title": secret_argument}))
        .await?;
    let denied = bob
        .call("create_task", json!({"title": secret_argument}))
        .await?;
    assert_eq!(error_of(&denied)["code"], ACCESS_DENIED, "{denied}");
    assert_eq!(
        demo.calls_of("get_clients"),
        1,
        "the repeat was not a cache hit"
    );
    // A mistyped credential may be someone's real one with a typo: it must not be written.
    let mistyped = format!("{BOB_KEY}x");
    let refused = alice
        .send_as(Some(&mistyped), &tool_call(99, "get_clients", json!({})))
        .await?;
    assert_eq!(refused.status, 401, "{}", refused.explanation());

    let file = demo.bridge.dir.path().join("audit.jsonl");
    let is_bobs = |line: &Value| line["principal"] == "bob" && tool_of(line) == "create_task";
    let lines = poll_until(
        SETTLE,
        async || {
            audit_lines(&std::fs::read_to_string(&file).unwrap_or_default()).unwrap_or_default()
        },
        |lines| {
            lines
                .iter()
                .filter(|line| tool_of(line) == "get_clients")
                .count()
                >= 2
                && lines.iter().any(is_bobs)
        },
    )
    .await;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("no audit file at {}", file.display()))?;
    audit_lines(&text)?;

    let reads: Vec<&Value> = lines
        .iter()
        .filter(|line| tool_of(line) == "get_clients")
        .collect();
    assert_eq!(reads.len(), 2, "alice's two reads: {text}");
    for line in &reads {
        assert_eq!(line["principal"], "alice", "{line}");
        assert_eq!(line["server"], "demo", "{line}");
        assert_eq!(line["method"], "tools/call", "{line}");
        assert!(
            line.get("outcome").is_some_and(|o| !o.is_null()),
            "no outcome: {line}"
        );
        assert!(has_field(line, "time"), "no time: {line}");
        assert!(has_field(line, "latency"), "no latency: {line}");
    }
    let caches: Vec<String> = reads.iter().map(|line| line["cache"].to_string()).collect();
    assert!(
        caches[0].contains("miss") && caches[1].contains("hit"),
        "cache results {caches:?}: {text}"
    );
    let bobs = lines
        .iter()
        .find(|line| is_bobs(line))
        .context("no line for bob's refused call")?;
    assert_eq!(bobs["server"], "demo", "{bobs}");
    let reason_fields: Vec<String> = bobs
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter(|(key, _)| {
                    key.contains("reason") || key.contains("denial") || key.contains("rule")
                })
                .map(|(_, value)| value.to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        reason_fields
            .iter()
            .any(|value| value.contains("bob-reads-only")),
        "bob's line does not give the denial reason: {bobs}"
    );
    assert_ne!(
        bobs["outcome"], reads[0]["outcome"],
        "a refusal and a success share an outcome: {text}"
    );

    let signature = alice_token.rsplit('.').next().unwrap_or_default();
    for secret in [
        alice_token.as_str(),
        signature,
        BOB_KEY,
        mistyped.as_str(),
        secret_argument,
    ] {
        assert!(
            !text.contains(secret),
            "the audit log contains a secret ({} chars): {text}",
            secret.len()
        );
    }
    Ok(())
}
