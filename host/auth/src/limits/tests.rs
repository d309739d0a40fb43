//! Token buckets, in-flight caps and the bounded state, on a clock the tests step by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mcp_bridge_config::{Audience, LimitRule, LimitSettings, LimitsConfig};

use super::*;
use crate::{CredentialKind, Principal};

fn principal(name: &str, roles: &[&str]) -> Principal {
    Principal {
        name: Arc::from(name),
        roles: roles.iter().map(|role| role.to_string()).collect(),
        scopes: Arc::from(Vec::new()),
        credential: CredentialKind::Jwt,
        expires_at: None,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

fn rate(calls_per_second: f64, burst: Option<u32>) -> LimitSettings {
    LimitSettings {
        calls_per_second: Some(calls_per_second),
        burst,
        max_in_flight: None,
    }
}

fn in_flight_cap(max_in_flight: usize) -> LimitSettings {
    LimitSettings {
        calls_per_second: None,
        burst: None,
        max_in_flight: Some(max_in_flight),
    }
}

/// A rule for everyone, every server and every call; tests narrow it.
fn limit_rule(name: &str, limits: LimitSettings) -> LimitRule {
    LimitRule {
        name: name.to_string(),
        who: Audience::default(),
        servers: Vec::new(),
        tools: Vec::new(),
        limits,
    }
}

fn limiter(per_principal: LimitSettings, rules: Vec<LimitRule>) -> Limiter {
    Limiter::new(&LimitsConfig {
        per_principal,
        count_cache_hits: false,
        rules,
    })
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Takes tokens at `now` until refused; returns how many were granted (at most `bound`).
fn drain(limiter: &Limiter, who: &Principal, tool: &str, now: Instant, bound: usize) -> usize {
    (0..bound)
        .take_while(|_| limiter.take_token_at(who, "demo", tool, now).is_ok())
        .count()
}

#[test]
fn no_limits_admit_everything_and_still_count_in_flight() {
    let limiter = limiter(LimitSettings::default(), Vec::new());
    let alice = principal("alice", &[]);
    let now = Instant::now();
    assert_eq!(drain(&limiter, &alice, "t", now, 1000), 1000);
    assert!(!limiter.counts_cache_hits());
    let permits: Vec<InFlightPermit> = (0..3)
        .map(|_| limiter.enter_at(&alice, "demo", "t", now).unwrap())
        .collect();
    assert_eq!(limiter.in_flight(), vec![(Arc::from("alice"), 3)]);
    drop(permits);
    assert!(limiter.in_flight().is_empty());
}

#[test]
fn the_burst_is_available_at_once_then_the_rate_refills() {
    let limiter = limiter(rate(2.0, Some(3)), Vec::new());
    let bob = principal("bob", &[]);
    let start = Instant::now();
    assert_eq!(drain(&limiter, &bob, "t", start, 100), 3);

    let refused = limiter.take_token_at(&bob, "demo", "t", start).unwrap_err();
    assert_eq!(refused.reason, LimitReason::Rate);
    assert_eq!(refused.rule, None);
    assert_eq!(refused.retry_after, ms(500));

    // Half a token after a quarter second: still refused, and told the rest of the wait.
    let refused = limiter
        .take_token_at(&bob, "demo", "t", start + ms(250))
        .unwrap_err();
    assert_eq!(refused.retry_after, ms(250));
    assert_eq!(drain(&limiter, &bob, "t", start + ms(500), 100), 1);
    assert_eq!(drain(&limiter, &bob, "t", start + ms(1500), 100), 2);
    // A long pause refills only up to the burst.
    assert_eq!(
        drain(&limiter, &bob, "t", start + Duration::from_secs(3600), 100),
        3
    );
}

#[test]
fn the_burst_defaults_to_one_seconds_worth_and_at_least_one() {
    let now = Instant::now();
    let bob = principal("bob", &[]);
    for (calls_per_second, expected_burst) in [(20.0, 20), (2.5, 3), (0.5, 1), (0.01, 1)] {
        let limiter = limiter(rate(calls_per_second, None), Vec::new());
        assert_eq!(
            drain(&limiter, &bob, "t", now, 1000),
            expected_burst,
            "calls_per_second = {calls_per_second}"
        );
    }
    // A burst of zero would refuse everything forever; it is read as one.
    let limiter = limiter(rate(1.0, Some(0)), Vec::new());
    assert_eq!(drain(&limiter, &bob, "t", now, 1000), 1);
}

#[test]
fn a_slow_rate_gives_a_long_accurate_retry_hint() {
    let limiter = limiter(rate(0.1, Some(1)), Vec::new());
    let bob = principal("bob", &[]);
    let start = Instant::now();
    limiter.take_token_at(&bob, "demo", "t", start).unwrap();
    let refused = limiter
        .take_token_at(&bob, "demo", "t", start + ms(2500))
        .unwrap_err();
    assert_eq!(refused.retry_after, ms(7500));
    assert!(
        limiter
            .take_token_at(&bob, "demo", "t", start + ms(9990))
            .is_err()
    );
    assert!(
        limiter
            .take_token_at(&bob, "demo", "t", start + ms(10_000))
            .is_ok()
    );
}

#[test]
fn a_zero_rate_is_bounded_not_infinite() {
    let limiter = limiter(rate(0.0, Some(1)), Vec::new());
    let bob = principal("bob", &[]);
    let now = Instant::now();
    limiter.take_token_at(&bob, "demo", "t", now).unwrap();
    let refused = limiter
        .take_token_at(&bob, "demo", "t", now + ms(10_000))
        .unwrap_err();
    assert_eq!(refused.retry_after, MAX_RETRY_AFTER);
}

#[test]
fn every_applicable_bucket_must_admit_and_a_refusal_takes_nothing() {
    // Five calls a burst for the principal, but one for the slow tool.
    let slow = LimitRule {
        tools: strings(&["get_clients"]),
        ..limit_rule("slow-tool", rate(1.0, Some(1)))
    };
    let limiter = limiter(rate(1.0, Some(5)), vec![slow]);
    let bob = principal("bob", &[]);
    let now = Instant::now();

    limiter
        .take_token_at(&bob, "demo", "get_clients", now)
        .unwrap();
    for _ in 0..3 {
        let refused = limiter
            .take_token_at(&bob, "demo", "get_clients", now)
            .unwrap_err();
        assert_eq!(refused.rule.as_deref(), Some("slow-tool"));
    }
    // The refused calls took nothing from the principal's own bucket: 4 of 5 are left.
    assert_eq!(drain(&limiter, &bob, "other_tool", now, 100), 4);
    // Now the principal's bucket is the empty one, and it takes nothing from the rule's.
    let later = now + ms(1000);
    let refused = limiter
        .take_token_at(&bob, "demo", "other_tool", now)
        .unwrap_err();
    assert_eq!(refused.rule, None);
    assert_eq!(drain(&limiter, &bob, "get_clients", later, 100), 1);
}

#[test]
fn the_longest_wait_decides_the_hint_and_the_rule_named() {
    let slow = limit_rule("slow", rate(0.25, Some(1)));
    let limiter = limiter(rate(1.0, Some(1)), vec![slow]);
    let bob = principal("bob", &[]);
    let now = Instant::now();
    limiter.take_token_at(&bob, "demo", "t", now).unwrap();
    let refused = limiter.take_token_at(&bob, "demo", "t", now).unwrap_err();
    assert_eq!(refused.rule.as_deref(), Some("slow"));
    assert_eq!(refused.retry_after, Duration::from_secs(4));
    // After a second the per-principal bucket has its token, the rule's does not yet.
    let refused = limiter
        .take_token_at(&bob, "demo", "t", now + ms(1000))
        .unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_secs(3));
    assert!(
        limiter
            .take_token_at(&bob, "demo", "t", now + ms(4000))
            .is_ok()
    );
}

#[test]
fn rules_apply_by_who_server_and_tool() {
    let by_name = LimitRule {
        who: Audience {
            principals: strings(&["ci-*"]),
            roles: Vec::new(),
        },
        ..limit_rule("bots", rate(1.0, Some(1)))
    };
    let by_role = LimitRule {
        who: Audience {
            principals: Vec::new(),
            roles: strings(&["intern"]),
        },
        servers: strings(&["prod-*"]),
        ..limit_rule("interns-on-prod", rate(1.0, Some(1)))
    };
    let by_tool = LimitRule {
        servers: strings(&["demo"]),
        tools: strings(&["get_*"]),
        ..limit_rule("getters", rate(1.0, Some(2)))
    };
    let limiter = limiter(LimitSettings::default(), vec![by_name, by_role, by_tool]);
    let now = Instant::now();
    let bot = principal("ci-bot", &[]);
    let intern = principal("ivy", &["intern"]);
    let human = principal("hal", &["staff"]);

    let granted = |who: &Principal, server: &str, tool: &str| {
        (0..100)
            .take_while(|_| limiter.take_token_at(who, server, tool, now).is_ok())
            .count()
    };
    assert_eq!(granted(&bot, "anywhere", "x"), 1);
    assert_eq!(granted(&human, "anywhere", "x"), 100);
    assert_eq!(granted(&intern, "prod-eu", "x"), 1);
    assert_eq!(granted(&intern, "staging", "x"), 100);
    assert_eq!(granted(&human, "demo", "get_clients"), 2);
    assert_eq!(granted(&human, "demo", "set_clients"), 100);
    assert_eq!(granted(&human, "other", "get_clients"), 100);
    // A request that calls no tool is not covered by a rule that lists tools.
    let star_tools = LimitRule {
        tools: strings(&["*"]),
        ..limit_rule("tools", rate(1.0, Some(1)))
    };
    let limiter = limiter_with(vec![star_tools]);
    assert!(limiter.take_token_at(&human, "demo", "", now).is_ok());
    assert!(limiter.take_token_at(&human, "demo", "", now).is_ok());
    assert!(limiter.take_token_at(&human, "demo", "x", now).is_ok());
    assert!(limiter.take_token_at(&human, "demo", "x", now).is_err());
}

fn limiter_with(rules: Vec<LimitRule>) -> Limiter {
    limiter(LimitSettings::default(), rules)
}

#[test]
fn a_rules_bucket_is_per_principal() {
    let shared_rule = limit_rule("everyone", rate(1.0, Some(2)));
    let limiter = limiter_with(vec![shared_rule]);
    let now = Instant::now();
    let alice = principal("alice", &[]);
    let bob = principal("bob", &[]);
    assert_eq!(drain(&limiter, &alice, "t", now, 100), 2);
    assert_eq!(drain(&limiter, &bob, "t", now, 100), 2);
}

#[test]
fn one_exhausted_principal_does_not_slow_another() {
    let limiter = limiter(
        LimitSettings {
            calls_per_second: Some(10.0),
            burst: Some(10),
            max_in_flight: Some(2),
        },
        Vec::new(),
    );
    let now = Instant::now();
    let greedy = principal("greedy", &[]);
    let polite = principal("polite", &[]);
    assert_eq!(drain(&limiter, &greedy, "t", now, 1000), 10);
    let _held: Vec<InFlightPermit> = (0..2)
        .map(|_| limiter.enter_at(&greedy, "demo", "t", now).unwrap())
        .collect();
    assert!(limiter.enter_at(&greedy, "demo", "t", now).is_err());

    assert_eq!(drain(&limiter, &polite, "t", now, 1000), 10);
    let _polite_permits: Vec<InFlightPermit> = (0..2)
        .map(|_| limiter.enter_at(&polite, "demo", "t", now).unwrap())
        .collect();
}

#[test]
fn in_flight_caps_are_all_or_nothing_and_released_on_drop() {
    let one_slow = LimitRule {
        tools: strings(&["slow"]),
        ..limit_rule("one-slow", in_flight_cap(1))
    };
    let limiter = limiter(in_flight_cap(3), vec![one_slow]);
    let bob = principal("bob", &[]);
    let now = Instant::now();

    let slow = limiter.enter_at(&bob, "demo", "slow", now).unwrap();
    let refused = limiter.enter_at(&bob, "demo", "slow", now).err().unwrap();
    assert_eq!(refused.reason, LimitReason::InFlight);
    assert_eq!(refused.rule.as_deref(), Some("one-slow"));
    assert_eq!(refused.retry_after, IN_FLIGHT_RETRY_AFTER);
    // The refused call took none of the principal's three slots: two are left.
    let fast: Vec<InFlightPermit> = (0..2)
        .map(|_| limiter.enter_at(&bob, "demo", "fast", now).unwrap())
        .collect();
    let refused = limiter.enter_at(&bob, "demo", "fast", now).err().unwrap();
    assert_eq!(refused.rule, None);
    assert_eq!(
        refused.message,
        "principal 'bob' already has 3 calls in flight under [limits] (max_in_flight = 3); retry when one of them finishes"
    );
    assert_eq!(limiter.in_flight(), vec![(Arc::from("bob"), 3)]);

    drop(slow);
    assert_eq!(limiter.in_flight(), vec![(Arc::from("bob"), 2)]);
    let slow_again = limiter.enter_at(&bob, "demo", "slow", now).unwrap();
    drop(fast);
    drop(slow_again);
    assert!(limiter.in_flight().is_empty());
    let all: Vec<InFlightPermit> = (0..3)
        .map(|_| limiter.enter_at(&bob, "demo", "fast", now).unwrap())
        .collect();
    assert_eq!(all.len(), 3);
}

#[test]
fn rate_messages_name_the_principal_the_setting_and_the_wait() {
    let slow = LimitRule {
        servers: strings(&["demo"]),
        tools: strings(&["get_clients"]),
        ..limit_rule("slow-tool", rate(2.0, Some(2)))
    };
    let limiter = limiter(rate(20.0, Some(40)), vec![slow]);
    let bob = principal("bob", &[]);
    let now = Instant::now();
    assert_eq!(drain(&limiter, &bob, "get_clients", now, 100), 2);
    let refused = limiter
        .take_token_at(&bob, "demo", "get_clients", now)
        .unwrap_err();
    assert_eq!(
        refused.message,
        "principal 'bob' is over the rate limit [[limits.rules]] 'slow-tool' (calls_per_second = 2, burst = 2) for tool 'demo/get_clients'; retry in 0.500s"
    );
    assert_eq!(refused.to_string(), refused.message);
    assert_eq!(drain(&limiter, &bob, "other", now, 100), 38);
    let refused = limiter
        .take_token_at(&bob, "demo", "other", now)
        .unwrap_err();
    assert_eq!(
        refused.message,
        "principal 'bob' is over the rate limit [limits] (calls_per_second = 20, burst = 40); retry in 0.050s"
    );

    let capped = limit_rule("one-at-a-time", in_flight_cap(1));
    let limiter = limiter_with(vec![capped]);
    let _held = limiter.enter_at(&bob, "demo", "", now).unwrap();
    let refused = limiter.enter_at(&bob, "demo", "", now).err().unwrap();
    assert_eq!(
        refused.message,
        "principal 'bob' already has 1 call in flight under [[limits.rules]] 'one-at-a-time' (max_in_flight = 1) for server 'demo'; retry when one of them finishes"
    );
}

#[test]
fn idle_principals_are_forgotten_when_the_cap_is_reached() {
    let config = LimitsConfig {
        per_principal: rate(1.0, Some(2)),
        count_cache_hits: true,
        rules: Vec::new(),
    };
    let limiter = Limiter::with_bounds(&config, 10, 1);
    assert!(limiter.counts_cache_hits());
    let start = Instant::now();
    for n in 0..1000 {
        let caller = principal(&format!("p{n}"), &[]);
        limiter
            .take_token_at(&caller, "demo", "t", start + ms(n * 10))
            .unwrap();
        assert!(limiter.tracked_principals() <= 10, "after {n}");
    }
}

#[test]
fn a_drained_principal_is_kept_while_idle_ones_are_forgotten() {
    let only_drained = LimitRule {
        who: Audience {
            principals: strings(&["drained"]),
            roles: Vec::new(),
        },
        ..limit_rule("drained", rate(0.001, Some(1)))
    };
    let config = LimitsConfig {
        per_principal: LimitSettings::default(),
        count_cache_hits: false,
        rules: vec![only_drained],
    };
    let limiter = Limiter::with_bounds(&config, 10, 1);
    let start = Instant::now();
    let drained = principal("drained", &[]);
    limiter.take_token_at(&drained, "demo", "t", start).unwrap();
    // Others come and go: each leaves a state with nothing in flight and no bucket.
    for n in 0..100 {
        let caller = principal(&format!("p{n}"), &[]);
        drop(
            limiter
                .enter_at(&caller, "demo", "t", start + ms(n))
                .unwrap(),
        );
        assert!(limiter.tracked_principals() <= 10, "after {n}");
    }
    // The drained principal's empty bucket was never forgotten.
    assert!(
        limiter
            .take_token_at(&drained, "demo", "t", start + ms(200))
            .is_err()
    );
}

#[test]
fn busy_principals_are_evicted_least_recently_used_first_but_never_with_calls_in_flight() {
    let config = LimitsConfig {
        per_principal: LimitSettings {
            calls_per_second: Some(0.001),
            burst: Some(1),
            max_in_flight: Some(1),
        },
        count_cache_hits: false,
        rules: Vec::new(),
    };
    let limiter = Limiter::with_bounds(&config, 10, 1);
    let start = Instant::now();
    let holder = principal("holder", &[]);
    let permit = limiter.enter_at(&holder, "demo", "t", start).unwrap();
    // Every caller drains its bucket, which then takes far longer than the test to refill.
    for n in 0..100 {
        let caller = principal(&format!("p{n}"), &[]);
        limiter
            .take_token_at(&caller, "demo", "t", start + ms(n))
            .unwrap();
        assert!(limiter.tracked_principals() <= 10, "after {n}");
    }
    // The holder's state survived every sweep: its cap still counts the call in flight.
    assert!(
        limiter
            .enter_at(&holder, "demo", "t", start + ms(200))
            .is_err()
    );
    assert_eq!(limiter.in_flight(), vec![(Arc::from("holder"), 1)]);
    // The most recent callers are still remembered and still drained.
    let recent = principal("p99", &[]);
    assert!(
        limiter
            .take_token_at(&recent, "demo", "t", start + ms(200))
            .is_err()
    );
    drop(permit);
    assert!(
        limiter
            .enter_at(&holder, "demo", "t", start + ms(200))
            .is_ok()
    );
}

#[test]
fn the_cap_holds_exactly_even_when_tiny() {
    let config = LimitsConfig {
        per_principal: rate(0.001, Some(1)),
        count_cache_hits: false,
        rules: Vec::new(),
    };
    for cap in [1, 2, 3] {
        let limiter = Limiter::with_bounds(&config, cap, 1);
        let start = Instant::now();
        for n in 0..20 {
            let caller = principal(&format!("p{n}"), &[]);
            limiter
                .take_token_at(&caller, "demo", "t", start + ms(n))
                .unwrap();
            assert!(limiter.tracked_principals() <= cap, "cap {cap}, after {n}");
        }
    }
}

#[test]
fn many_rules_spill_past_the_bitmask() {
    let rules: Vec<LimitRule> = (0..100)
        .map(|n| {
            limit_rule(
                &format!("rule-{n}"),
                in_flight_cap(if n == 99 { 1 } else { 5 }),
            )
        })
        .collect();
    let limiter = limiter_with(rules);
    let bob = principal("bob", &[]);
    let now = Instant::now();
    let first = limiter.enter_at(&bob, "demo", "t", now).unwrap();
    let refused = limiter.enter_at(&bob, "demo", "t", now).err().unwrap();
    assert_eq!(refused.rule.as_deref(), Some("rule-99"));
    drop(first);
    assert!(limiter.enter_at(&bob, "demo", "t", now).is_ok());
}

#[test]
fn concurrent_callers_never_exceed_the_in_flight_cap() {
    let limiter = Arc::new(limiter(in_flight_cap(3), Vec::new()));
    let now_in_flight = Arc::new(AtomicUsize::new(0));
    let most_seen = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (limiter, now_in_flight, most_seen) =
                (limiter.clone(), now_in_flight.clone(), most_seen.clone());
            std::thread::spawn(move || {
                let bob = principal("bob", &[]);
                for _ in 0..2000 {
                    let Ok(permit) = limiter.enter(&bob, "demo", "t") else {
                        continue;
                    };
                    let current = now_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most_seen.fetch_max(current, Ordering::SeqCst);
                    now_in_flight.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(most_seen.load(Ordering::SeqCst) <= 3);
    assert!(limiter.in_flight().is_empty());
}
