//! The session store with tokens: two stores sharing keys stand for two replicas.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::IntCounter;
use serde_json::json;

use super::*;
use crate::session_directory::{NoDirectory, SessionDirectory, SharedSession};
use mcp_bridge_config::Secret;
use mcp_bridge_metrics::Registry;
use mcp_bridge_upstream::BoxFuture;

const KEY: &str = "0123456789abcdef0123456789abcdef-key-new";
const OLD_KEY: &str = "fedcba9876543210fedcba9876543210-key-old";

/// What a directory was told, and what it answers.
#[derive(Default)]
struct Recording {
    revoked: Mutex<Vec<(String, u64)>>,
    levels: Mutex<Vec<(String, u8)>>,
    answer: Mutex<SharedSession>,
}

struct RecordingDirectory(Arc<Recording>);

impl SessionDirectory for RecordingDirectory {
    fn revoke(&self, session: &str, expires_at: u64) -> BoxFuture<'static, ()> {
        self.0.revoked.lock().push((session.to_owned(), expires_at));
        Box::pin(std::future::ready(()))
    }

    fn lookup(&self, _session: &str) -> BoxFuture<'static, SharedSession> {
        Box::pin(std::future::ready(*self.0.answer.lock()))
    }

    fn set_log_level(&self, session: &str, rank: u8, _expires_at: u64) -> BoxFuture<'static, ()> {
        self.0.levels.lock().push((session.to_owned(), rank));
        Box::pin(std::future::ready(()))
    }
}

/// One replica's store, with its metrics.
struct Replica {
    store: SessionStore,
    metrics: HttpMetrics,
    mismatches: IntCounter,
}

impl Replica {
    fn with(keys: &[&str], max_sessions: usize, directory: Arc<dyn SessionDirectory>) -> Self {
        let http = HttpConfig {
            max_sessions,
            ..HttpConfig::default()
        };
        let sessions = SessionsConfig {
            keys: keys.iter().map(|key| Secret::new(*key)).collect(),
            ..SessionsConfig::default()
        };
        let metrics = HttpMetrics::register(&Registry::new());
        let mismatches = IntCounter::new("mismatches", "test").expect("a counter");
        Replica {
            store: SessionStore::new(&http, &sessions, directory, &metrics, mismatches.clone()),
            metrics,
            mismatches,
        }
    }

    fn new(keys: &[&str]) -> Self {
        Replica::with(keys, 100, Arc::new(NoDirectory))
    }

    fn open(&self, owner: &str) -> Arc<Session> {
        let info = ClientInfo::from_initialize(Some(&json!({"name": "probe", "version": "2.1"})));
        let capabilities = json!({"sampling": {}});
        self.store
            .create(
                "demo",
                "2025-06-18",
                info,
                Some(&capabilities),
                &Arc::from(owner),
                true,
            )
            .expect("a session")
    }

    fn refused(&self, reason: &str) -> u64 {
        self.metrics
            .session_tokens_refused_total
            .with_label_values(&[reason])
            .get()
    }

    fn resumed(&self) -> u64 {
        self.metrics.sessions_resumed_total.get()
    }
}

fn is_unknown(result: Result<Arc<Session>, FrontError>) -> bool {
    matches!(result, Err(FrontError::UnknownSession(_)))
}

#[tokio::test]
async fn another_replica_with_the_key_continues_the_session() {
    let (a, b) = (Replica::new(&[KEY]), Replica::new(&[KEY]));
    let opened = a.open("alice");
    let token = opened.token.clone();
    let resumed = b.store.get(&token, "demo", "alice").await.expect("resumed");
    assert_eq!(
        resumed.id, opened.id,
        "the session's identity moved with it"
    );
    assert_eq!(resumed.protocol_version, "2025-06-18");
    assert_eq!(
        (
            resumed.client_info.name.as_str(),
            resumed.client_info.version.as_str()
        ),
        ("probe", "2.1")
    );
    assert_eq!(b.resumed(), 1);
    // The second request finds it held.
    let again = b.store.get(&token, "demo", "alice").await.expect("held");
    assert!(Arc::ptr_eq(&again, &resumed));
    assert_eq!(b.resumed(), 1);
    assert_eq!(b.store.summary()["open"], 1);
}

#[tokio::test]
async fn another_principal_is_refused_on_both_replicas_and_nothing_is_held() {
    let (a, b) = (Replica::new(&[KEY]), Replica::new(&[KEY]));
    let token = a.open("alice").token.clone();
    for replica in [&a, &b] {
        let refused = replica.store.get(&token, "demo", "bob").await;
        assert!(
            matches!(refused, Err(FrontError::SessionOfAnotherPrincipal(_))),
            "{refused:?}"
        );
        assert_eq!(replica.mismatches.get(), 1);
    }
    assert_eq!(b.store.summary()["open"], 0, "bob's attempt made a session");
    assert_eq!(b.resumed(), 0);
}

#[tokio::test]
async fn forged_garbage_and_foreign_tokens_are_unknown_sessions_counted_by_reason() {
    let (a, b) = (Replica::new(&[KEY]), Replica::new(&[KEY]));
    let token = a.open("alice").token.clone();
    // The MAC's first character carries six bits of it (the last one's low bits are
    // padding a decoder may ignore), so changing it always changes the MAC.
    let mac_start = token.rfind('.').expect("a MAC segment") + 1;
    let replacement = if token[mac_start..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let tampered = format!(
        "{}{replacement}{}",
        &token[..mac_start],
        &token[mac_start + 1..]
    );
    assert!(is_unknown(b.store.get(&tampered, "demo", "alice").await));
    assert_eq!(b.refused("mac"), 1);
    for garbage in [
        "",
        "0123456789abcdef0123456789abcdef",
        "v1.x.y",
        &"v1.".repeat(5000),
    ] {
        assert!(is_unknown(b.store.get(garbage, "demo", "alice").await));
    }
    assert_eq!(b.refused("malformed"), 4);
    let stranger = Replica::new(&["another-key-that-is-32-bytes-long!!"]);
    assert!(is_unknown(
        stranger.store.get(&token, "demo", "alice").await
    ));
    assert_eq!(stranger.refused("mac"), 1);
    // A session of another endpoint, held or not.
    assert!(is_unknown(a.store.get(&token, "other", "alice").await));
    assert!(is_unknown(b.store.get(&token, "", "alice").await));
    assert_eq!(a.refused("endpoint") + b.refused("endpoint"), 2);
    // The error repeats only the start of what is longer than any token.
    let long = "v1.".repeat(5000);
    let Err(error) = b.store.get(&long, "demo", "alice").await else {
        panic!("a garbage token was accepted");
    };
    assert!(error.to_string().len() < 400, "{error}");
}

#[tokio::test]
async fn a_deleted_session_is_refused_here_and_revoked_in_the_directory() {
    let recording = Arc::new(Recording::default());
    let a = Replica::with(&[KEY], 100, Arc::new(RecordingDirectory(recording.clone())));
    let session = a.open("alice");
    let token = session.token.clone();
    let refused = a.store.remove(&token, "demo", "bob").await;
    assert!(matches!(
        refused,
        Err(FrontError::SessionOfAnotherPrincipal(_))
    ));
    a.store
        .remove(&token, "demo", "alice")
        .await
        .expect("ended");
    tokio::time::timeout(Duration::from_secs(1), session.wait_closed())
        .await
        .expect("the session's streams end with it");
    assert_eq!(
        recording.revoked.lock().as_slice(),
        &[(session.id.clone(), session.expires_at)]
    );
    assert!(is_unknown(a.store.get(&token, "demo", "alice").await));
    assert_eq!(a.refused("revoked"), 1);
    // A DELETE on a replica that does not hold the session ends it from the token.
    let b = Replica::with(&[KEY], 100, Arc::new(RecordingDirectory(recording.clone())));
    let other = a.open("alice").token.clone();
    b.store
        .remove(&other, "demo", "alice")
        .await
        .expect("ended");
    assert_eq!(recording.revoked.lock().len(), 2);
    assert!(is_unknown(b.store.get(&other, "demo", "alice").await));
}

#[tokio::test]
async fn the_shared_tier_s_revocation_and_log_level_apply_when_resuming() {
    let recording = Arc::new(Recording::default());
    let a = Replica::new(&[KEY]);
    let b = Replica::with(&[KEY], 100, Arc::new(RecordingDirectory(recording.clone())));
    let token = a.open("alice").token.clone();
    *recording.answer.lock() = SharedSession {
        revoked: false,
        log_level: Some(4),
    };
    let resumed = b.store.get(&token, "demo", "alice").await.expect("resumed");
    assert_eq!(resumed.log_level(), 4);
    b.store.share_log_level(&resumed, 6).await;
    assert_eq!(
        recording.levels.lock().as_slice(),
        &[(resumed.id.clone(), 6)]
    );

    let revoked = a.open("alice").token.clone();
    *recording.answer.lock() = SharedSession {
        revoked: true,
        log_level: None,
    };
    assert!(is_unknown(b.store.get(&revoked, "demo", "alice").await));
    assert_eq!(b.refused("revoked"), 1);
    assert_eq!(b.store.summary()["revoked_remembered"], 1);
}

#[tokio::test]
async fn broadcast_events_close_sessions_and_set_levels() {
    let (a, b) = (Replica::new(&[KEY]), Replica::new(&[KEY]));
    let token = a.open("alice").token.clone();
    let held = b.store.get(&token, "demo", "alice").await.expect("resumed");
    b.store.apply(SessionEvent::LogLevel {
        session: held.id.clone(),
        rank: 3,
    });
    assert_eq!(held.log_level(), 3);
    b.store.apply(SessionEvent::Revoked {
        session: held.id.clone(),
    });
    tokio::time::timeout(Duration::from_secs(1), held.wait_closed())
        .await
        .expect("the revoked session's streams end");
    assert!(is_unknown(b.store.get(&token, "demo", "alice").await));
    assert_eq!(b.refused("revoked"), 1);
    assert_eq!(
        b.metrics
            .sessions_closed_total
            .with_label_values(&["revoked"])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_reload_keeps_sessions_of_listed_keys_and_ends_the_others() {
    let old = Replica::new(&[OLD_KEY]);
    let b = Replica::new(&[OLD_KEY]);
    let token = old.open("alice").token.clone();
    let held = b.store.get(&token, "demo", "alice").await.expect("resumed");
    let rotated = SessionsConfig {
        keys: vec![Secret::new(KEY), Secret::new(OLD_KEY)],
        ..SessionsConfig::default()
    };
    b.store.reload(&rotated);
    assert!(b.store.get(&token, "demo", "alice").await.is_ok());
    // New sessions are signed with the new key: a replica with only the new key takes them.
    let fresh = b.open("alice").token.clone();
    assert!(
        Replica::new(&[KEY])
            .store
            .get(&fresh, "demo", "alice")
            .await
            .is_ok()
    );
    let new_only = SessionsConfig {
        keys: vec![Secret::new(KEY)],
        ..SessionsConfig::default()
    };
    b.store.reload(&new_only);
    tokio::time::timeout(Duration::from_secs(1), held.wait_closed())
        .await
        .expect("a session of a dropped key ends");
    assert!(is_unknown(b.store.get(&token, "demo", "alice").await));
    assert_eq!(b.refused("mac"), 1);
    assert!(b.store.get(&fresh, "demo", "alice").await.is_ok());
}

#[tokio::test]
async fn an_expired_session_is_closed_and_refused() {
    let http = HttpConfig::default();
    let sessions = SessionsConfig {
        keys: vec![Secret::new(KEY)],
        max_age: Duration::ZERO,
    };
    let metrics = HttpMetrics::register(&Registry::new());
    let mismatches = IntCounter::new("mismatches", "test").expect("a counter");
    let store = SessionStore::new(
        &http,
        &sessions,
        Arc::new(NoDirectory),
        &metrics,
        mismatches,
    );
    let session = store
        .create(
            "demo",
            "2025-11-25",
            ClientInfo::default(),
            None,
            &Arc::from("alice"),
            true,
        )
        .expect("a session");
    assert!(is_unknown(store.get(&session.token, "demo", "alice").await));
    assert_eq!(
        metrics
            .session_tokens_refused_total
            .with_label_values(&["expired"])
            .get(),
        1
    );
    assert_eq!(store.summary()["open"], 0);
}

#[tokio::test]
async fn a_resumed_session_counts_against_max_sessions() {
    let a = Replica::new(&[KEY]);
    let b = Replica::with(&[KEY], 1, Arc::new(NoDirectory));
    let (first, second) = (a.open("alice").token.clone(), a.open("alice").token.clone());
    b.store.get(&first, "demo", "alice").await.expect("resumed");
    // The first is in use (seen just now), so the second finds no room.
    let refused = b.store.get(&second, "demo", "alice").await;
    assert!(
        matches!(refused, Err(FrontError::TooManySessions { max: 1 })),
        "{refused:?}"
    );
}
