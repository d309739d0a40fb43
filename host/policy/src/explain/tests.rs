use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::Policy;
use crate::builtin::{BuiltinPolicy, BuiltinSettings};
use crate::rules::{InvalidationRule, TtlMap};
use crate::vocabulary::{Annotations, ServerHints};

fn call(name: &str, read_only: Option<bool>) -> Call<'_> {
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

/// The built-in policy with `default_ttl = "60s"`, the row `demo.get_clients = "7m"`,
/// and the rule: `create_task` invalidates `get_tasks`.
fn builtin() -> Arc<BuiltinPolicy> {
    Arc::new(BuiltinPolicy::new(BuiltinSettings {
        default_ttl: Some(Duration::from_secs(60)),
        ttl_table: TtlMap::new().with("demo", "get_clients", Duration::from_secs(420)),
        invalidation_rules: vec![InvalidationRule {
            server: None,
            on: "create_task".into(),
            tools: vec!["get_tasks".into()],
            tags: Vec::new(),
        }],
        ..BuiltinSettings::default()
    }))
}

/// A plugin that caches read-only calls for 30 s, tags writes' entity, and counts the
/// calls that reach it through the live path (`decide`, `ttl`, `invalidations`) apart
/// from those asked through `probe`.
#[derive(Default)]
struct Counting {
    live: AtomicUsize,
    probed: AtomicUsize,
}

impl Counting {
    fn answer(&self, question: Question<'_>) -> Answer {
        match question {
            Question::Decide(call) if call.is_read_only() => {
                Answer::Decision(Decision::Cache(Directive::ttl(Duration::from_secs(30))))
            }
            Question::Decide(_) => Answer::Decision(Decision::Abstain),
            Question::Ttl { .. } => Answer::Ttl(TtlAnswer::Abstain),
            Question::Invalidations(call, _) => Answer::Invalidations(InvalidationAnswer::Rules(
                vec![Invalidation::tag(format!("entity:{}", call.name))],
            )),
        }
    }
}

impl Policy for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn decide(&self, call: &Call<'_>) -> Decision {
        self.live.fetch_add(1, Ordering::Relaxed);
        match self.answer(Question::Decide(call)) {
            Answer::Decision(decision) => decision,
            _ => Decision::Abstain,
        }
    }
    fn invalidations(&self, call: &Call<'_>, outcome: &Outcome) -> InvalidationAnswer {
        self.live.fetch_add(1, Ordering::Relaxed);
        match self.answer(Question::Invalidations(call, outcome)) {
            Answer::Invalidations(answer) => answer,
            _ => InvalidationAnswer::Abstain,
        }
    }
    fn probe(&self, question: Question<'_>) -> Probed {
        self.probed.fetch_add(1, Ordering::Relaxed);
        Probed::answered(self.answer(question))
    }
}

/// A plugin as a probe reports it: its decision faults for `get_tasks` (answering the
/// safe default), it is quarantined for `get_habits`, and for every other tool it says
/// it does not apply (as a binding bound to other servers does).
struct Troubled;

impl Policy for Troubled {
    fn name(&self) -> &str {
        "troubled"
    }
    /// Live, a fault or a quarantine answers the safe default too.
    fn decide(&self, call: &Call<'_>) -> Decision {
        decision_of(&self.probe(Question::Decide(call)))
    }
    fn probe(&self, question: Question<'_>) -> Probed {
        let Question::Decide(call) = question else {
            return Probed::answered(match question {
                Question::Ttl { .. } => Answer::Ttl(TtlAnswer::Abstain),
                _ => Answer::Invalidations(InvalidationAnswer::Abstain),
            });
        };
        match call.name {
            "get_tasks" => Probed {
                answer: Answer::Decision(Decision::Bypass),
                fault: Some("panicked at src/lib.rs:9:5: no tasks today (trap)".into()),
                quarantined: false,
                applies: true,
            },
            "get_habits" => Probed {
                answer: Answer::Decision(Decision::Bypass),
                fault: None,
                quarantined: true,
                applies: true,
            },
            _ => Probed {
                answer: Answer::Decision(Decision::Abstain),
                fault: None,
                quarantined: false,
                applies: false,
            },
        }
    }
}

#[test]
fn each_policy_answers_in_order_and_the_config_row_sets_the_ttl() {
    let counting = Arc::new(Counting::default());
    let chain = PolicyChain::new(vec![counting.clone()], builtin()).with_generation(4);
    let explained = chain.explain(&call("get_clients", Some(true)));
    assert_eq!(explained.generation, 4);
    let names: Vec<&str> = explained.policies.iter().map(|p| &*p.name).collect();
    assert_eq!(names, ["counting", "builtin"]);
    assert!(!explained.policies[0].builtin && explained.policies[1].builtin);
    // The plugin decided with 30 s; the config's row replaced it with 7 minutes.
    assert_eq!(&*explained.sourced.decided_by, "counting");
    assert_eq!(
        explained.ttl_source,
        Some(TtlSource::ConfigRow {
            server: "demo".into(),
            tool: "get_clients".into()
        })
    );
    let json = explained.to_json();
    assert_eq!(json["decided_by"], "counting");
    assert_eq!(json["ttl_ms"], 420_000);
    assert_eq!(json["ttl_source"], "config:demo/get_clients");
    assert_eq!(json["bindings"][0]["answer"]["ttl_ms"], 30_000);
    assert_eq!(json["bindings"][0]["kind"], "plugin");
    assert_eq!(json["bindings"][1]["kind"], "builtin");
    assert_eq!(json["bindings"][1]["ttl"]["answer"]["ttl_ms"], 420_000);
    assert_eq!(json["bindings"][0]["ttl"]["answer"], "abstain");
    assert_eq!(json["writes"], false);
    assert_eq!(json["invalidations"], Value::Null);
    // Every answer came through `probe`: nothing went through the live path.
    assert_eq!(counting.live.load(Ordering::Relaxed), 0);
    assert!(counting.probed.load(Ordering::Relaxed) >= 2);
}

#[test]
fn the_explanation_agrees_with_the_live_chain() {
    let chain = PolicyChain::new(
        vec![Arc::new(Counting::default()), Arc::new(Troubled)],
        builtin(),
    );
    for name in [
        "get_clients",
        "get_tasks",
        "get_habits",
        "create_task",
        "delete_task",
    ] {
        for read_only in [Some(true), None] {
            let call = call(name, read_only);
            let explained = chain.explain(&call);
            assert_eq!(
                explained.sourced,
                chain.decide_sourced(&call),
                "{name} {read_only:?}"
            );
            if let Some(invalidations) = &explained.invalidations {
                assert_eq!(
                    (invalidations.applied.clone(), invalidations.shaper),
                    chain.invalidations_shaped(&call, &Outcome::of(Status::Success))
                );
            }
        }
    }
}

#[test]
fn a_write_lists_each_policys_invalidations_and_the_union() {
    let chain = PolicyChain::new(vec![Arc::new(Counting::default())], builtin());
    let explained = chain.explain(&call("create_task", None));
    let json = explained.to_json();
    assert_eq!(json["writes"], true);
    assert_eq!(json["decision"]["decision"], "bypass");
    assert_eq!(json["ttl_source"], Value::Null);
    assert_eq!(
        json["bindings"][0]["invalidations"]["answer"],
        json!([{ "tag": "entity:create_task" }])
    );
    assert_eq!(
        json["bindings"][1]["invalidations"]["answer"],
        json!([{ "server": "demo", "tool": "get_tasks" }])
    );
    assert_eq!(
        json["invalidations"]["applied"],
        json!([{ "tag": "entity:create_task" }, { "server": "demo", "tool": "get_tasks" }])
    );
    assert_eq!(json["invalidations"]["shaped_by"], "config");
    // With nobody speaking, the whole server goes.
    let alone = PolicyChain::new(Vec::new(), builtin());
    let json = alone.explain(&call("delete_task", None)).to_json();
    assert_eq!(
        json["invalidations"]["applied"],
        json!([{ "server": "demo" }])
    );
    assert_eq!(json["invalidations"]["shaped_by"], "default");
    // A read-only call writes nothing, and is not asked for invalidations.
    let json = alone.explain(&call("get_tasks", Some(true))).to_json();
    assert_eq!(json["writes"], false);
    assert_eq!(json["bindings"][0]["invalidations"], Value::Null);
}

#[test]
fn faults_quarantines_and_bindings_that_do_not_apply_are_shown() {
    let chain = PolicyChain::new(vec![Arc::new(Troubled)], builtin());
    let json = chain.explain(&call("get_tasks", Some(true))).to_json();
    let troubled = &json["bindings"][0];
    assert_eq!(
        troubled["fault"],
        "panicked at src/lib.rs:9:5: no tasks today (trap)"
    );
    assert_eq!(troubled["answer"]["decision"], "bypass");
    assert_eq!(json["decided_by"], "troubled");
    assert_eq!(json["decision"]["decision"], "bypass");
    let json = chain.explain(&call("get_habits", Some(true))).to_json();
    assert_eq!(json["bindings"][0]["quarantined"], true);
    assert_eq!(json["bindings"][0]["fault"], Value::Null);
    let json = chain.explain(&call("get_clients", Some(true))).to_json();
    assert_eq!(json["bindings"][0]["applies"], false);
    assert_eq!(json["decided_by"], "builtin");
    assert_eq!(json["ttl_source"], "config:demo/get_clients");
}

#[test]
fn lists_and_reads_consult_no_table() {
    let chain = PolicyChain::new(Vec::new(), builtin());
    let list = Call {
        kind: CallKind::ListRequest,
        method: "tools/list",
        name: "tools/list",
        annotations: Annotations::default(),
        ..call("", None)
    };
    let json = chain.explain(&list).to_json();
    assert_eq!(json["bindings"][0]["ttl"], Value::Null);
    assert_eq!(json["decision"]["decision"], "bypass", "list_ttl is zero");
    assert_eq!(json["writes"], false);
}
