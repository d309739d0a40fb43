//! The harness's real services work as the replica tests need them: a `redis-server` that
//! answers, keeps data across a restart (and a SIGKILL) only when persistent, demands its
//! password, and serves TLS to a client that trusts the run's CA; an nginx that spreads
//! requests round-robin over two bridges and keeps serving when one of them dies; and the
//! demo server's `--state-file`, through which two bridges' backends share one state.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use mcp_bridge_test_support::{Nginx, RedisOptions, RedisServer};
use serde_json::json;

use crate::support::{
    Bridge, RawSession, SETTLE, demo_server_toml, http, poll_until, post_json, start_bridge,
};

/// How long one `redis-cli` run may take.
const REDIS_CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs Debian's `redis-cli` (a client that is not the harness's own) with `args`, and
/// returns its stdout, trimmed.
async fn redis_cli(args: &[&str]) -> Result<String> {
    let mut command = tokio::process::Command::new("redis-cli");
    command.args(args).kill_on_drop(true);
    let output = tokio::time::timeout(REDIS_CLI_TIMEOUT, command.output())
        .await
        .context("redis-cli did not finish in time")?
        .context("run redis-cli")?;
    ensure!(
        output.status.success(),
        "redis-cli {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A plain server answers; restarted on its port it comes back empty. A persistent one
/// keeps its keys across a restart and across a SIGKILL.
#[tokio::test]
async fn redis_restarts_on_its_port_and_keeps_data_only_when_persistent() -> Result<()> {
    let mut plain = RedisServer::start(RedisOptions::default()).await?;
    assert_eq!(plain.url(), format!("redis://127.0.0.1:{}", plain.port()));
    assert_eq!(plain.command(&["PING"]).await?, "PONG");
    assert_eq!(plain.command(&["SET", "mcp:key", "kept?"]).await?, "OK");
    assert_eq!(plain.command(&["KEYS", "mcp:*"]).await?, "mcp:key");
    let (port, pid) = (plain.port(), plain.pid());
    plain.restart().await?;
    assert_eq!((plain.port(), plain.is_running()), (port, true));
    assert_ne!(plain.pid(), pid);
    assert_eq!(plain.command(&["DBSIZE"]).await?, "0");
    plain.stop().await?;
    assert!(!plain.is_running());
    assert!(plain.command(&["PING"]).await.is_err());

    let mut persistent = RedisServer::start(RedisOptions {
        persistence: true,
        ..RedisOptions::default()
    })
    .await?;
    assert_eq!(persistent.command(&["SET", "mcp:key", "kept"]).await?, "OK");
    persistent.restart().await?;
    assert_eq!(persistent.command(&["GET", "mcp:key"]).await?, "kept");
    assert_eq!(persistent.command(&["INCR", "mcp:count"]).await?, "1");
    persistent.kill().await?;
    assert!(!persistent.is_running());
    persistent.restart().await?;
    assert_eq!(persistent.command(&["GET", "mcp:count"]).await?, "1");
    assert_eq!(persistent.command(&["FLUSHALL"]).await?, "OK");
    assert_eq!(persistent.command(&["DBSIZE"]).await?, "0");
    Ok(())
}

/// With a password, a client without it is refused and the URL carries it.
#[tokio::test]
async fn redis_with_a_password_refuses_clients_without_it() -> Result<()> {
    let redis = RedisServer::start(RedisOptions {
        password: Some("s3cret pass".into()),
        ..RedisOptions::default()
    })
    .await?;
    assert_eq!(
        redis.url(),
        format!("redis://default:s3cret%20pass@127.0.0.1:{}", redis.port())
    );
    assert_eq!(redis.command(&["PING"]).await?, "PONG");
    let port = redis.port().to_string();
    let anonymous = redis_cli(&["-p", &port, "PING"]).await?;
    assert!(anonymous.starts_with("NOAUTH"), "{anonymous}");
    assert_eq!(redis_cli(&["-u", &redis.url(), "PING"]).await?, "PONG");
    Ok(())
}

/// A TLS server answers over `rediss://` to clients that trust the run's CA (the harness's
/// rustls client and redis-cli's OpenSSL one) and to nothing in plain text.
#[tokio::test]
async fn redis_with_tls_answers_over_rediss_to_clients_trusting_the_ca() -> Result<()> {
    let redis = RedisServer::start(RedisOptions {
        tls: true,
        password: Some("tls-pass".into()),
        ..RedisOptions::default()
    })
    .await?;
    assert_eq!(
        redis.url(),
        format!("rediss://default:tls-pass@127.0.0.1:{}", redis.port())
    );
    assert_eq!(redis.command(&["SET", "over", "tls"]).await?, "OK");
    let ca = redis.ca_file().context("a TLS server has a CA")?;
    let ca = ca.display().to_string();
    let url = redis.url();
    let through_openssl = redis_cli(&["--tls", "--cacert", &ca, "-u", &url, "GET", "over"]).await?;
    assert_eq!(through_openssl, "tls");
    // Without the CA the certificate is not trusted, and plain text gets no answer.
    let untrusted = redis_cli(&["--tls", "-u", &url, "PING"]).await;
    assert!(
        untrusted.as_ref().is_err() || untrusted.as_ref().is_ok_and(|out| out != "PONG"),
        "{untrusted:?}"
    );
    let port = redis.port().to_string();
    let plain = redis_cli(&["-p", &port, "-a", "tls-pass", "--no-auth-warning", "PING"]).await;
    assert!(
        plain.as_ref().is_err() || plain.as_ref().is_ok_and(|out| out != "PONG"),
        "{plain:?}"
    );
    Ok(())
}

/// Starts a bridge whose demo backend keeps its state in `state_file`.
async fn replica(state_file: &str) -> Result<Bridge> {
    let bridge = start_bridge(&demo_server_toml("demo", &["--state-file", state_file], ""))?;
    bridge.wait_ready().await?;
    Ok(bridge)
}

/// GETs `url` `times` times and returns the statuses.
async fn get_statuses(url: &str, times: usize) -> Result<Vec<u16>> {
    let mut statuses = Vec::with_capacity(times);
    for _ in 0..times {
        statuses.push(http().get(url).send().await?.status().as_u16());
    }
    Ok(statuses)
}

/// Two bridges whose demo backends share one `--state-file`: a write through one is read
/// through the other. nginx in front alternates between them, and when one is killed it
/// sends every request, GET or POST, to the other without failing any.
#[tokio::test]
async fn nginx_round_robins_over_replicas_sharing_state_and_survives_one_dying() -> Result<()> {
    let state_dir = tempfile::tempdir()?;
    let state_file = state_dir.path().join("demo-state.json");
    let state_file = state_file.display().to_string();
    let first = replica(&state_file).await?;
    let second = replica(&state_file).await?;

    // One backend state behind both replicas.
    let through_first = RawSession::open(&first.url("/mcp/demo")).await?;
    let through_second = RawSession::open(&second.url("/mcp/demo")).await?;
    let created = through_first
        .call_tool(json!(1), "create_task", json!({ "title": "Replicated" }))
        .await?;
    assert_eq!(
        created["result"]["structuredContent"]["task"]["id"], 6,
        "{created}"
    );
    let read = through_second
        .call_tool(json!(2), "get_tasks", json!({ "status": "all" }))
        .await?;
    let tasks = &read["result"]["structuredContent"]["tasks"];
    assert_eq!(tasks[5]["title"], "Replicated", "{read}");

    let nginx = Nginx::start(&[first.address, second.address]).await?;
    let readyz = format!("{}/readyz", nginx.url());
    assert_eq!(get_statuses(&readyz, 10).await?, vec![200; 10]);
    let (first_address, second_address) = (first.address.to_string(), second.address.to_string());
    let served = served_once_logged(&nginx, 10).await?;
    assert_eq!(
        (
            by_address(&served, &first_address),
            by_address(&served, &second_address)
        ),
        (5, 5),
        "{served:?}"
    );

    // A killed replica refuses connections; nginx sends each request on to the survivor,
    // POSTs included (nothing was sent to the dead one, so a retry cannot repeat a call).
    drop(first);
    assert_eq!(get_statuses(&readyz, 10).await?, vec![200; 10]);
    let mcp = format!("{}/mcp/demo", nginx.url());
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "infra-test", "version": "1"}}});
    for _ in 0..4 {
        let response = post_json(&mcp, None, &initialize).await?;
        assert_eq!(response.status().as_u16(), 200);
    }
    let served = served_once_logged(&nginx, 24).await?;
    assert_eq!(by_address(&served, &second_address), 19, "{served:?}");
    assert_eq!(by_address(&served, &first_address), 5, "{served:?}");
    Ok(())
}

fn by_address(served: &HashMap<String, usize>, address: &str) -> usize {
    served.get(address).copied().unwrap_or(0)
}

/// nginx's counts once its access log holds `requests` lines. nginx logs a request just
/// after its response's last byte is sent, so the client may read the response first.
async fn served_once_logged(nginx: &Nginx, requests: usize) -> Result<HashMap<String, usize>> {
    let served = poll_until(
        SETTLE,
        async || nginx.served_by().unwrap_or_default(),
        |served| served.values().sum::<usize>() >= requests,
    )
    .await;
    ensure!(
        served.values().sum::<usize>() == requests,
        "nginx logged {served:?}, expected {requests} requests"
    );
    Ok(served)
}
