//! Several replicas behind a real nginx (round-robin, no affinity) sharing a real
//! `redis-server`, their demo backends sharing one state file: sessions work on every
//! replica, a write through one is never read stale through another in strict mode,
//! bounded mode's staleness is measured, and Redis or a replica going away fails no call.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use mcp_bridge_test_support::{Nginx, RedisOptions, RedisServer};
use serde_json::{Value, json};

use crate::support::{
    Bridge, RawSession, SETTLE, demo_server_toml, eventually, http, metric, poll_until, post_json,
    start_bridge,
};

/// The session key every replica shares (at least 32 bytes).
const SESSION_KEY: &str = "replica-tests-session-key-0123456789-abcdefgh";

/// The task every round renames: rounds update it in place so the shared state file
/// stays small however many rounds run.
const TASK_ID: u64 = 1;

/// One deployment: Redis, replicas, nginx in front, and the backends' shared state.
struct Cluster {
    redis: RedisServer,
    replicas: Vec<Option<Bridge>>,
    nginx: Nginx,
    _state: tempfile::TempDir,
}

impl Cluster {
    /// Starts Redis, `count` replicas in `consistency` mode and nginx, and waits until every
    /// replica's shared tier answers.
    async fn start(consistency: &str, count: usize) -> Result<Cluster> {
        let redis = RedisServer::start(RedisOptions::default()).await?;
        let state = tempfile::tempdir()?;
        let state_file = state.path().join("demo-state.json");
        let toml = replica_toml(
            &redis.url(),
            consistency,
            &state_file.display().to_string(),
            "",
        );
        let mut replicas = Vec::with_capacity(count);
        for _ in 0..count {
            let bridge = start_bridge(&toml)?;
            bridge.wait_ready().await?;
            replicas.push(Some(bridge));
        }
        for bridge in replicas.iter().flatten() {
            wait_for_tier(bridge, "up").await?;
        }
        let addresses: Vec<_> = replicas
            .iter()
            .flatten()
            .map(|bridge| bridge.address)
            .collect();
        let nginx = Nginx::start(&addresses).await?;
        Ok(Cluster {
            redis,
            replicas,
            nginx,
            _state: state,
        })
    }

    fn endpoint(&self) -> String {
        format!("{}/mcp/demo", self.nginx.url())
    }

    fn live(&self) -> impl Iterator<Item = &Bridge> {
        self.replicas.iter().flatten()
    }

    /// The sum of a metric over the live replicas.
    async fn metric(&self, name: &str, labels: &[&str]) -> Result<f64> {
        let mut total = 0.0;
        for bridge in self.live() {
            total += metric(bridge, name, labels).await?;
        }
        Ok(total)
    }
}

/// One replica's config: the demo server on the shared state file, the cache with a long
/// TTL for the read and tool-level invalidation for the write, the shared tier, the key.
fn replica_toml(redis_url: &str, consistency: &str, state_file: &str, extra: &str) -> String {
    format!(
        "{demo}
[cache]
enabled = true
[cache.ttl.demo]
get_tasks = \"5m\"
[[cache.invalidate]]
server = \"demo\"
on = \"update_task\"
tools = [\"get_tasks\"]
[cache.shared]
url = \"{redis_url}\"
consistency = \"{consistency}\"
health_check_interval = \"100ms\"
{extra}
[sessions]
keys = [\"{SESSION_KEY}\"]
",
        demo = demo_server_toml("demo", &["--state-file", state_file], "min_connections = 1"),
    )
}

/// One strict replica on its own demo state (with `extra` in `[cache.shared]`), ready and
/// trusting its tier; the state's directory lives as long as the returned guard.
async fn lone_replica(redis_url: &str, extra: &str) -> Result<(Bridge, tempfile::TempDir)> {
    let state = tempfile::tempdir()?;
    let state_file = state.path().join("demo-state.json");
    let toml = replica_toml(
        redis_url,
        "strict",
        &state_file.display().to_string(),
        extra,
    );
    let bridge = start_bridge(&toml)?;
    bridge.wait_ready().await?;
    wait_for_tier(&bridge, "up").await?;
    Ok((bridge, state))
}

/// Polls `/health` until the replica's shared tier is in `state` (up and trusted, or down).
async fn wait_for_tier(bridge: &Bridge, state: &str) -> Result<()> {
    let seen = poll_until(
        SETTLE,
        async || tier_state(bridge).await.unwrap_or_default(),
        |seen| seen == state,
    )
    .await;
    ensure!(
        seen == state,
        "the shared tier is {seen:?}, not {state}; log:\n{}",
        bridge.log_tail(40)
    );
    Ok(())
}

/// The tier as `/health` shows it: "up" once the replica trusts it (after the grace that
/// follows coming back), "down", or "coming_up" in between.
async fn tier_state(bridge: &Bridge) -> Result<String> {
    let (_, body) = bridge.get("/health").await?;
    let health: Value = serde_json::from_slice(&body)?;
    let tier = &health["shared_tier"];
    let state = match (
        tier["state"].as_str(),
        tier["first_level_trusted"].as_bool(),
    ) {
        (Some("up"), Some(true)) => "up",
        (Some("up"), _) => "coming_up",
        (Some(other), _) => other,
        (None, _) => "",
    };
    Ok(state.to_owned())
}

/// Renames the round's task through the session (one request, so one replica).
async fn write(session: &RawSession, round: usize) -> Result<()> {
    let answer = session
        .call_tool(
            json!(round),
            "update_task",
            json!({"id": TASK_ID, "title": title(round)}),
        )
        .await?;
    ensure!(
        answer["result"]["structuredContent"]["task"]["title"] == title(round),
        "the write failed: {answer}"
    );
    Ok(())
}

fn title(round: usize) -> String {
    format!("round {round}")
}

/// Reads the task list through the session and returns the title of the round's task.
async fn read_title(session: &RawSession, id: usize) -> Result<String> {
    let answer = session
        .call_tool(json!(id), "get_tasks", json!({"status": "all"}))
        .await?;
    let tasks = answer["result"]["structuredContent"]["tasks"]
        .as_array()
        .with_context(|| format!("no task list: {answer}"))?;
    let task = tasks
        .iter()
        .find(|task| task["id"] == TASK_ID)
        .with_context(|| format!("no task {TASK_ID}: {answer}"))?;
    Ok(task["title"].as_str().unwrap_or_default().to_owned())
}

/// What interleaved write-then-read rounds saw.
#[derive(Debug, Default)]
struct Rounds {
    reads: usize,
    stale: usize,
    failed: usize,
    /// For each stale read, how long until a read saw the write.
    staleness: Vec<Duration>,
}

/// Runs `rounds` rounds through nginx: one write, then `reads` reads (each request goes to
/// the next replica, so every replica serves reads after every other's writes). A read
/// that starts after the write's response and does not see it is stale; in `settle` mode
/// each stale read is repeated until it sees the write, to measure for how long.
async fn run_rounds(
    endpoint: &str,
    first: usize,
    rounds: usize,
    reads: usize,
    settle: bool,
) -> Result<Rounds> {
    let session = RawSession::open(endpoint).await?;
    let mut seen = Rounds::default();
    for round in first..first + rounds {
        if write(&session, round).await.is_err() {
            seen.failed += 1;
            continue;
        }
        let written = Instant::now();
        for read in 0..reads {
            match read_title(&session, round * 100 + read).await {
                Ok(found) if found == title(round) => seen.reads += 1,
                Ok(_) => {
                    seen.reads += 1;
                    seen.stale += 1;
                    if settle {
                        let caught_up = eventually(SETTLE, async || {
                            read_title(&session, 0)
                                .await
                                .is_ok_and(|found| found == title(round))
                        })
                        .await;
                        ensure!(caught_up, "round {round}: a replica never saw the write");
                        seen.staleness.push(written.elapsed());
                    }
                }
                Err(_) => seen.failed += 1,
            }
        }
    }
    Ok(seen)
}

/// Strict mode: a thousand rounds, each a write through one replica and reads through all
/// three, while two other clients keep every replica's cache warm: not one stale read,
/// and the reads were answered by the cache (not only by the backends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_never_reads_stale_across_replicas() -> Result<()> {
    let cluster = Cluster::start("strict", 3).await?;
    let endpoint = cluster.endpoint();
    let warmers: Vec<_> = (0..2)
        .map(|warmer| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let session = RawSession::open(&endpoint).await?;
                for id in 0..600 {
                    read_title(&session, warmer * 10_000 + id).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let seen = run_rounds(&endpoint, 1, 1000, 3, false).await?;
    for warmer in warmers {
        warmer.await??;
    }
    assert_eq!((seen.stale, seen.failed), (0, 0), "{seen:?}");
    assert_eq!(seen.reads, 3000);
    let hits = cluster
        .metric("mcp_bridge_cache_requests_total", &["result=\"hit\""])
        .await?;
    let validated = cluster
        .metric("mcp_bridge_shared_validations_total", &["result=\"valid\""])
        .await?;
    let second_level = cluster
        .metric("mcp_bridge_shared_l2_lookups_total", &["result=\"hit\""])
        .await?;
    assert!(hits > 100.0, "the cache served {hits} hits");
    assert!(
        validated > 0.0 && second_level > 0.0,
        "validated {validated}, second level {second_level}"
    );
    println!(
        "strict: {} reads after writes, 0 stale; {hits} hits ({validated} validated first-level hits, {second_level} second-level hits)",
        seen.reads
    );
    Ok(())
}

/// Bounded mode: replicas trust their first level until the broadcast arrives, so a read
/// right after a write may be stale; every stale read catches up, the lag is exported,
/// and the counts are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_mode_staleness_is_bounded_and_measured() -> Result<()> {
    let cluster = Cluster::start("bounded", 3).await?;
    let seen = run_rounds(&cluster.endpoint(), 1, 300, 3, true).await?;
    assert_eq!(seen.failed, 0, "{seen:?}");
    let lags = cluster
        .metric("mcp_bridge_shared_invalidation_lag_seconds_count", &[])
        .await?;
    assert!(
        lags >= 300.0,
        "every replica measured the writes of the others: {lags}"
    );
    let worst = seen.staleness.iter().max().copied().unwrap_or_default();
    assert!(worst < SETTLE, "{seen:?}");
    let (_, body) = cluster
        .live()
        .next()
        .context("a replica")?
        .get("/admin/cache/stats")
        .await?;
    let stats: Value = serde_json::from_slice(&body)?;
    println!(
        "bounded: {} reads after writes, {} stale (each caught up within {worst:?}); propagation lag {}",
        seen.reads, seen.stale, stats["shared"]["invalidation_lag_us"]
    );
    Ok(())
}

/// Redis stops mid-run and comes back while a client keeps writing and reading: no call
/// fails, no read is stale (strict mode stops trusting the first level while Redis is
/// away), and the invalidations made meanwhile are replayed when it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_fails_no_call_and_serves_nothing_stale() -> Result<()> {
    let Cluster {
        mut redis,
        replicas,
        nginx,
        _state,
    } = Cluster::start("strict", 3).await?;
    let endpoint = format!("{}/mcp/demo", nginx.url());
    let bridges: Vec<&Bridge> = replicas.iter().flatten().collect();
    let calls = async || {
        let mut total = 0.0;
        for bridge in &bridges {
            total += metric(bridge, "mcp_bridge_calls_total", &[])
                .await
                .unwrap_or_default();
        }
        total
    };
    // While the client runs: let it warm the caches, stop Redis until every replica has
    // noticed and the client has gone on without it, then start Redis again.
    let outage = async {
        let warm = calls().await + 300.0;
        ensure!(
            eventually(SETTLE, async || calls().await >= warm).await,
            "no calls before the outage"
        );
        redis.stop().await?;
        for bridge in &bridges {
            wait_for_tier(bridge, "down").await?;
        }
        let during = calls().await + 300.0;
        ensure!(
            eventually(SETTLE, async || calls().await >= during).await,
            "no calls during the outage"
        );
        redis.restart().await?;
        for bridge in &bridges {
            wait_for_tier(bridge, "up").await?;
        }
        anyhow::Ok(())
    };
    let (seen, outage) = tokio::join!(run_rounds(&endpoint, 1, 400, 3, false), outage);
    outage?;
    let seen = seen?;
    assert_eq!(
        (seen.stale, seen.failed, seen.reads),
        (0, 0, 1200),
        "{seen:?}"
    );
    let mut replayed = 0.0;
    for bridge in &bridges {
        replayed += metric(
            bridge,
            "mcp_bridge_shared_invalidations_total",
            &["result=\"replayed\""],
        )
        .await?;
    }
    assert!(
        replayed > 0.0,
        "the writes made while Redis was away were replayed"
    );
    Ok(())
}

/// Bounded mode drops a replica's first level when it subscribes again after losing
/// Redis: a broadcast it missed must not turn into silent staleness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_mode_flushes_the_first_level_after_redis_comes_back() -> Result<()> {
    let mut cluster = Cluster::start("bounded", 2).await?;
    let endpoint = cluster.endpoint();
    let seen = run_rounds(&endpoint, 1, 20, 2, true).await?;
    assert_eq!(seen.failed, 0);
    let flushes = async |cluster: &Cluster| {
        cluster
            .metric(
                "mcp_bridge_shared_l1_flushes_total",
                &["reason=\"resubscribed\""],
            )
            .await
            .unwrap_or_default()
    };
    let before = flushes(&cluster).await;
    cluster.redis.stop().await?;
    cluster.redis.restart().await?;
    let after = poll_until(
        SETTLE,
        async || flushes(&cluster).await,
        |after| *after >= before + 2.0,
    )
    .await;
    assert!(
        after >= before + 2.0,
        "each replica flushed on resubscribing: {before} -> {after}"
    );
    let seen = run_rounds(&endpoint, 100, 20, 2, true).await?;
    assert_eq!(seen.failed, 0, "{seen:?}");
    Ok(())
}

/// A replica killed mid-run: the client's session continues on the others (its token is
/// valid everywhere), and only a request in flight to the dying replica may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_leaves_the_session_working_on_the_others() -> Result<()> {
    let mut cluster = Cluster::start("strict", 3).await?;
    let endpoint = cluster.endpoint();
    // Kill replica 0 once the client is well into its rounds.
    let replicas = &mut cluster.replicas;
    let kill = async move {
        let started = match replicas[0].as_ref() {
            Some(victim) => {
                eventually(SETTLE, async || {
                    metric(victim, "mcp_bridge_calls_total", &[])
                        .await
                        .unwrap_or_default()
                        >= 60.0
                })
                .await
            }
            None => false,
        };
        drop(replicas[0].take());
        started
    };
    let (seen, started) = tokio::join!(run_rounds(&endpoint, 1, 200, 3, false), kill);
    ensure!(started, "the client made no calls through replica 0");
    let seen = seen?;
    assert_eq!(seen.stale, 0, "{seen:?}");
    assert!(
        seen.failed <= 1,
        "only a call in flight to the killed replica may fail: {seen:?}"
    );
    assert!(seen.reads >= 590, "{seen:?}");
    Ok(())
}

/// A session opened through one replica and ended (DELETE) through another is unknown on
/// every replica: the one that never held it finds the revocation in Redis, the one that
/// held it heard the broadcast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_a_session_on_every_replica() -> Result<()> {
    let cluster = Cluster::start("strict", 3).await?;
    let urls: Vec<String> = cluster
        .live()
        .map(|bridge| bridge.url("/mcp/demo"))
        .collect();
    let session = RawSession::open(&urls[0]).await?;
    read_title(&session, 1).await?;
    let on = |url: &str| RawSession {
        url: url.to_owned(),
        session_id: session.session_id.clone(),
    };
    read_title(&on(&urls[1]), 2).await?;
    let deleted = http()
        .delete(&urls[1])
        .header("mcp-session-id", &session.session_id)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await?;
    assert!(
        deleted.status().is_success(),
        "DELETE answered {}",
        deleted.status()
    );
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
    for url in &urls {
        let status = poll_until(
            SETTLE,
            async || {
                post_json(url, Some(&session.session_id), &ping)
                    .await
                    .map_or(0, |response| response.status().as_u16())
            },
            |status| *status == 404,
        )
        .await;
        assert_eq!(status, 404, "{url} still serves the deleted session");
    }
    Ok(())
}

/// `rediss://` with a password and the run's CA: the tier comes up and fills reach Redis.
#[tokio::test]
async fn the_tier_speaks_tls_with_a_password() -> Result<()> {
    let redis = RedisServer::start(RedisOptions {
        password: Some("tier-password-1".to_owned()),
        tls: true,
        ..RedisOptions::default()
    })
    .await?;
    let ca = redis.ca_file().context("a TLS redis has a CA")?;
    let plain_url = format!("rediss://127.0.0.1:{}", redis.port());
    let extra = format!(
        "password = \"tier-password-1\"\nca_file = \"{}\"",
        ca.display()
    );
    let (bridge, _state) = lone_replica(&plain_url, &extra).await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    read_title(&session, 1).await?;
    let keys = poll_until(
        SETTLE,
        async || {
            redis
                .command(&["KEYS", "mcp-bridge:e:*"])
                .await
                .unwrap_or_default()
        },
        |keys| !keys.is_empty(),
    )
    .await;
    assert!(!keys.is_empty(), "the fill reached Redis over TLS");
    Ok(())
}

/// The official Python SDK in both eras (a session, and 2026-07-28's per-request
/// protocol) and the official TypeScript SDK, through the balancer: every request goes to
/// the next replica, and each read after a write sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_work_through_the_balancer_and_read_their_writes() -> Result<()> {
    let cluster = Cluster::start("strict", 3).await?;
    let endpoint = cluster.endpoint();
    for mode in ["legacy", "2026-07-28"] {
        let mut steps = Vec::new();
        for round in 0..5 {
            let title = format!("python {mode} {round}");
            steps.push(json!({"op": "call", "tool": "update_task", "args": {"id": TASK_ID, "title": title}}));
            for _ in 0..3 {
                steps.push(json!({"op": "call", "tool": "get_tasks", "args": {"status": "all"}}));
            }
        }
        let report =
            crate::clients::python(json!({"url": endpoint, "mode": mode, "steps": steps})).await?;
        let results = report["results"].as_array().context("results")?;
        assert_eq!(results.len(), 20, "{report}");
        for (index, result) in results.iter().enumerate() {
            let expected = format!("python {mode} {}", index / 4);
            let tasks = &result["structured"]["tasks"];
            let task = tasks
                .as_array()
                .and_then(|tasks| tasks.iter().find(|task| task["id"] == TASK_ID));
            match (index % 4, task) {
                (0, _) => assert_eq!(result["structured"]["task"]["title"], expected, "{result}"),
                (_, Some(task)) => assert_eq!(task["title"], expected, "step {index}: {result}"),
                (_, None) => panic!("step {index} has no task {TASK_ID}: {result}"),
            }
        }
    }
    let node = crate::support::repo_root().join("build/test-deps/node_modules/node/bin/node");
    let script = crate::support::repo_root().join("tests/clients/replica_ts_client.mjs");
    let spec =
        json!({"url": endpoint, "rounds": 10, "reads": 3, "task": TASK_ID, "prefix": "typescript"});
    let run = tokio::process::Command::new(node)
        .arg(script)
        .arg(spec.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .context("the TypeScript client did not finish in time")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "the TypeScript client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).context("its report")?;
    assert_eq!(report["server"], "mcp-bridge-demo", "{report}");
    assert_eq!(
        (report["reads"].as_u64(), report["stale"].as_u64()),
        (Some(30), Some(0)),
        "{report}"
    );
    let served = cluster.nginx.served_by()?;
    assert!(
        served.len() >= 3 && served.values().all(|count| *count > 5),
        "every replica served: {served:?}"
    );
    Ok(())
}

/// A server's change notification reaches a GET stream held by another replica: replica
/// B's process says its tools changed, and the client whose stream is open on replica A
/// hears it (and A's cached tool list is dropped, through the shared tier).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_notifications_reach_streams_on_other_replicas() -> Result<()> {
    let cluster = Cluster::start("strict", 2).await?;
    let replicas: Vec<&Bridge> = cluster.live().collect();
    let (stream_replica, call_replica) = (replicas[0], replicas[1]);
    let session = RawSession::open(&stream_replica.url("/mcp/demo")).await?;
    let listed = session.request(json!(1), "tools/list", json!({})).await?;
    ensure!(listed.get("result").is_some(), "{listed}");
    let mut stream = http()
        .get(stream_replica.url("/mcp/demo"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session.session_id)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await?;
    assert_eq!(stream.status(), 200, "GET stream refused");
    let elsewhere = RawSession {
        url: call_replica.url("/mcp/demo"),
        session_id: session.session_id.clone(),
    };
    let toggled = elsewhere
        .call_tool(json!(2), "debug_toggle_tool", json!({}))
        .await?;
    ensure!(toggled.get("result").is_some(), "{toggled}");
    let mut seen = String::new();
    let found = tokio::time::timeout(SETTLE, async {
        while let Some(chunk) = stream.chunk().await? {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if crate::support::sse_messages(&seen)
                .iter()
                .any(|message| message["method"] == "notifications/tools/list_changed")
            {
                return Ok::<_, anyhow::Error>(true);
            }
        }
        Ok(false)
    });
    let found = matches!(found.await, Ok(Ok(true)));
    assert!(
        found,
        "no list_changed on the other replica's GET stream: {seen:?}"
    );
    let remote = metric(
        stream_replica,
        "mcp_bridge_cache_invalidations_total",
        &["reason=\"remote\""],
    )
    .await?;
    assert!(
        remote >= 1.0,
        "the stream's replica dropped what the notification invalidated"
    );
    Ok(())
}

/// With `required_for_readiness`, `/readyz` waits for Redis (naming it) while calls still
/// work; `/health` says what the tier is doing either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_can_wait_for_the_shared_tier() -> Result<()> {
    let mut redis = RedisServer::start(RedisOptions::default()).await?;
    let (bridge, _state) = lone_replica(&redis.url(), "required_for_readiness = true").await?;
    redis.stop().await?;
    wait_for_tier(&bridge, "down").await?;
    let (status, body) = bridge.get("/readyz").await?;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let waiting: Value = serde_json::from_slice(&body)?;
    assert_eq!(waiting["waiting_for"], json!(["cache.shared"]), "{waiting}");
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    read_title(&session, 1).await?;
    redis.restart().await?;
    let status = poll_until(
        SETTLE,
        async || bridge.get("/readyz").await.map_or(0, |(status, _)| status),
        |status| *status == 200,
    )
    .await;
    assert_eq!(status, 200);
    Ok(())
}

/// Generation counters that vanish (evicted, or expired) never make an old entry look
/// current: a fill's stamp gives every counter a value from one sequence, so a counter
/// that comes back has a value no stamp holds. The second level and the first then both
/// treat the old entry as stale after a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_generations_never_revive_a_stale_entry() -> Result<()> {
    let cluster = Cluster::start("strict", 3).await?;
    let urls: Vec<String> = cluster
        .live()
        .map(|bridge| bridge.url("/mcp/demo"))
        .collect();
    let session = RawSession::open(&urls[0]).await?;
    let on = |url: &str| RawSession {
        url: url.to_owned(),
        session_id: session.session_id.clone(),
    };
    // Replica 0 fills (first level and Redis) before anything was ever invalidated: with
    // generations counted from zero, its stamp would say zero for the tool.
    let original = read_title(&session, 1).await?;
    assert_ne!(original, title(2));
    write(&on(&urls[1]), 2).await?;
    // Every generation counter disappears, as under eviction or expiry.
    let counters = cluster.redis.command(&["KEYS", "mcp-bridge:g:*"]).await?;
    for counter in counters.lines().filter(|line| !line.is_empty()) {
        cluster.redis.command(&["DEL", counter]).await?;
    }
    // Replica 2 has nothing of its own: the second level's old entry must not count.
    assert_eq!(read_title(&on(&urls[2]), 2).await?, title(2));
    // Replica 0 holds the old entry in its first level: the check must refuse it.
    assert_eq!(read_title(&session, 3).await?, title(2));
    Ok(())
}

/// A Redis that restarts, even one that keeps its data, gets a new epoch from the first
/// replica to notice (it may have come back from an older snapshot, with generations gone
/// back): every replica drops its first level and nothing stored before is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_gets_a_new_epoch() -> Result<()> {
    let mut redis = RedisServer::start(RedisOptions {
        persistence: true,
        ..RedisOptions::default()
    })
    .await?;
    let (bridge, _state) = lone_replica(&redis.url(), "").await?;
    let session = RawSession::open(&bridge.url("/mcp/demo")).await?;
    read_title(&session, 1).await?;
    let before = redis.command(&["GET", "mcp-bridge:epoch"]).await?;
    redis.restart().await?;
    let after = poll_until(
        SETTLE,
        async || {
            redis
                .command(&["GET", "mcp-bridge:epoch"])
                .await
                .unwrap_or_default()
        },
        |after| !after.is_empty() && *after != before,
    )
    .await;
    assert!(
        !after.is_empty() && after != before,
        "the epoch was replaced: {before} -> {after}"
    );
    let flushed = poll_until(
        SETTLE,
        async || {
            metric(
                &bridge,
                "mcp_bridge_shared_l1_flushes_total",
                &["reason=\"epoch_changed\""],
            )
            .await
            .unwrap_or_default()
        },
        |flushed| *flushed >= 1.0,
    )
    .await;
    assert!(flushed >= 1.0, "the replica dropped its first level");
    Ok(())
}
