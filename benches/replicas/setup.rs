//! The processes the replica bench measures: one `redis-server`, bridges configured as a
//! single node (no shared tier) or as replicas of one deployment (a `[cache.shared]` table and
//! a shared `[sessions]` key), their demo backends sharing one state file, and nginx in front.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use mcp_bridge_test_support::repo::{toml_command, toml_string};
use mcp_bridge_test_support::{Bridge, RedisServer, poll_until};

use super::BRIDGE_EXE;

/// The session key every replica shares (at least 32 bytes), so a session opened on one
/// replica continues on any other behind the balancer.
const SESSION_KEY: &str = "replica-bench-session-key-0123456789-abcdefgh";

/// The Redis user of the second-level-only replica: every command but the subscribe ones.
const NO_SUBSCRIBE_USER: &str = "bench-no-subscribe";
const NO_SUBSCRIBE_PASSWORD: &str = "bench-no-subscribe-password";

/// How long a replica may take to find its shared tier up (or to give up subscribing).
const TIER_TIMEOUT: Duration = Duration::from_secs(15);

/// What a bridge of the bench is.
pub(crate) enum Role<'a> {
    /// Today's single node: its own cache, no shared tier, a session key of its own.
    SingleNode,
    /// A replica of a deployment on this Redis URL, in `strict` or `bounded` mode, its keys
    /// and broadcast channel under `key_prefix`.
    Replica {
        redis_url: &'a str,
        consistency: &'a str,
        key_prefix: &'a str,
    },
}

/// One bridge's config: the demo server on the shared state file (two pooled processes), the
/// cache on with a TTL longer than any run, `get_tasks` cached and invalidated by
/// `update_task` (the lag rounds' write and read), and the role's shared tier.
pub(crate) fn bridge_toml(state_file: &Path, role: &Role<'_>) -> String {
    let args = serde_json::to_string(&[
        "demo-server",
        "--state-file",
        &state_file.display().to_string(),
    ])
    .unwrap_or_default();
    let mut toml = format!(
        "[servers.demo]
command = {command}
args = {args}
min_connections = 2
max_connections = 2

[cache]
enabled = true
default_ttl = \"10m\"
[cache.ttl.demo]
get_tasks = \"10m\"
[[cache.invalidate]]
server = \"demo\"
on = \"update_task\"
tools = [\"get_tasks\"]
",
        command = toml_command(BRIDGE_EXE),
    );
    if let Role::Replica {
        redis_url,
        consistency,
        key_prefix,
    } = role
    {
        toml.push_str(&format!(
            "[cache.shared]
url = {url}
consistency = \"{consistency}\"
key_prefix = \"{key_prefix}\"

[sessions]
keys = [\"{SESSION_KEY}\"]
",
            url = toml_string(redis_url),
        ));
    }
    toml
}

/// Starts a bridge in `role` and waits until it is ready and, for a replica, until its
/// shared tier is up.
pub(crate) async fn start(state_file: &Path, role: &Role<'_>) -> Result<Bridge> {
    let bridge = Bridge::start(Path::new(BRIDGE_EXE), &bridge_toml(state_file, role), &[])?;
    bridge.wait_ready().await?;
    if matches!(role, Role::Replica { .. }) {
        let state = poll_until(
            TIER_TIMEOUT,
            async || tier_status(&bridge).await.unwrap_or_default(),
            |status| status["state"] == "up",
        )
        .await;
        ensure!(
            state["state"] == "up",
            "the shared tier is not up: {state}; log:\n{}",
            bridge.log_tail(40)
        );
    }
    Ok(bridge)
}

/// Waits until every replica's tier has been up for two whole seconds: for a grace after
/// it comes up (two health checks and a command timeout, 1.25 s by default) a replica trusts
/// neither level, since other replicas may still be replaying invalidations they queued, and
/// its calls go to the backend. Measuring inside it would measure that start-up state.
pub(crate) async fn wait_past_grace(replicas: &[&Bridge]) -> Result<()> {
    for bridge in replicas {
        let status = poll_until(
            TIER_TIMEOUT,
            async || tier_status(bridge).await.unwrap_or_default(),
            |status| status["state"] == "up" && status["for_seconds"].as_u64() >= Some(2),
        )
        .await;
        ensure!(
            status["state"] == "up" && status["for_seconds"].as_u64() >= Some(2),
            "the shared tier did not stay up: {status}; log:\n{}",
            bridge.log_tail(40)
        );
    }
    Ok(())
}

/// The shared tier's status from `/admin/cache/stats` (`shared`): state, whether the
/// broadcast is subscribed, the propagation lag's percentiles.
pub(crate) async fn tier_status(bridge: &Bridge) -> Result<Value> {
    let stats = bridge
        .cache_stats()
        .await?
        .context("the bridge's cache is off")?;
    Ok(stats["shared"].clone())
}

/// A Redis URL for a user that may run every command except `SUBSCRIBE`, `PSUBSCRIBE` and
/// `SSUBSCRIBE` (a Redis ACL made here). A bounded-mode replica connected with it never
/// hears the broadcast, so by bounded mode's own rule it never trusts its first level: each
/// lookup is read from the second level, which is how the bench measures a second-level hit
/// on the one key the load client calls (a first level too small for that key cannot be
/// configured: it holds at least one entry, and moka evicts lazily).
pub(crate) async fn no_subscribe_url(redis: &RedisServer) -> Result<String> {
    redis
        .command(&[
            "ACL",
            "SETUSER",
            NO_SUBSCRIBE_USER,
            "on",
            &format!(">{NO_SUBSCRIBE_PASSWORD}"),
            "~*",
            "&*",
            "+@all",
            "-subscribe",
            "-psubscribe",
            "-ssubscribe",
        ])
        .await?;
    Ok(format!(
        "redis://{NO_SUBSCRIBE_USER}:{NO_SUBSCRIBE_PASSWORD}@127.0.0.1:{}",
        redis.port()
    ))
}

/// The addresses of bridges, for nginx's upstream list.
pub(crate) fn addresses<'a>(bridges: impl IntoIterator<Item = &'a Bridge>) -> Vec<SocketAddr> {
    bridges.into_iter().map(|bridge| bridge.address).collect()
}

/// A process and its children (nginx's master and its worker), by pid, for a CPU probe.
pub(crate) fn with_children(parent: u32) -> Vec<u32> {
    let mut pids = vec![parent];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if parent_of(pid) == Some(parent) {
            pids.push(pid);
        }
    }
    pids
}

/// A process's parent from `/proc/PID/stat` (the field after the state, which follows the
/// last `)`: the command name may hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}
