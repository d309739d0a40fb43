//! Client connections against the real bridge over raw TCP: slow bodies meet the body
//! deadline and the minimum rate (408), an oversized `Content-Length` is refused before the
//! body is sent (413), a flood over the connection cap is refused with 503 without starving a
//! normal client, accept errors under an fd shortage are logged at most once a second,
//! kept-alive connections are governed by the advertised keep-alive timeout rather than the
//! header deadline, and `bench load` retires idle connections before that timeout.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{
    Bridge, bridge_exe, demo_server_toml, eventually, install_tls_provider, metric,
    read_lines_until, start_bridge,
};

/// A bridge running the demo server with these `[http]` settings.
async fn bridge_with(http_toml: &str) -> Result<Bridge> {
    let demo = demo_server_toml("demo", &[], "");
    let bridge = start_bridge(&format!("[http]\n{http_toml}\n\n{demo}"))?;
    bridge.wait_ready().await?;
    Ok(bridge)
}

/// One HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Reads one response (head and `Content-Length` body) within `bound`.
async fn read_response(stream: &mut TcpStream, bound: Duration) -> Result<RawResponse> {
    tokio::time::timeout(bound, read_response_unbounded(stream))
        .await
        .with_context(|| format!("no complete response within {bound:?}"))?
}

async fn read_response_unbounded(stream: &mut TcpStream) -> Result<RawResponse> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            bail!(
                "connection closed before a response head: {:?}",
                String::from_utf8_lossy(&buffer)
            );
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await?;
        ensure!(read > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..read]);
    }
    Ok(RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Waits (within `bound`) until the server closes the connection; true when it did.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// The head of a POST to the demo server's endpoint with this `Content-Length`.
fn post_head(content_length: usize) -> String {
    format!(
        "POST /mcp/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

/// The bytes a slow client trickles; the declared length is longer, so the body never completes.
const TRICKLED_BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

/// Sends a POST head and then its body one byte every `gap`, until the server answers;
/// returns the answer (within `bound`) and how many bytes were sent.
async fn trickle_body(bridge: &Bridge, gap: Duration, bound: Duration) -> Result<RawResponse> {
    let mut stream = TcpStream::connect(&bridge.address).await?;
    // Longer than what is sent, so the body is never complete.
    stream
        .write_all(post_head(TRICKLED_BODY.len() + 100).as_bytes())
        .await?;
    let (mut reader, mut writer) = stream.into_split();
    let writer_task = tokio::spawn(async move {
        for byte in TRICKLED_BODY {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        // Hold the connection open without sending more.
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
    let answer = tokio::time::timeout(bound, async {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let read = reader.read(&mut chunk).await?;
            if read == 0 {
                break;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        anyhow::Ok(buffer)
    })
    .await;
    writer_task.abort();
    let bytes =
        answer.with_context(|| format!("the trickled body was not cut off within {bound:?}"))??;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no response before the close: {text:?}"))?;
    Ok(RawResponse {
        status,
        headers: head
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect(),
        body: body.to_owned(),
    })
}

/// Lines of the bridge's log containing `needle`.
fn log_lines(bridge: &Bridge, needle: &str) -> usize {
    bridge
        .log_text()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

/// A normal client: `initialize` on the demo endpoint with a fresh HTTP client (no pooled
/// connection), answered with a result.
async fn normal_call(bridge: &Bridge) -> bool {
    install_tls_provider();
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return false;
    };
    let initialize = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"normal","version":"1"}}});
    let Ok(response) = client
        .post(bridge.url("/mcp/demo"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize.to_string())
        .send()
        .await
    else {
        return false;
    };
    if response.status() != 200 {
        return false;
    }
    response
        .json::<Value>()
        .await
        .is_ok_and(|answer| answer.get("result").is_some())
}

#[tokio::test]
async fn a_slow_body_is_cut_off_by_the_body_deadline() -> Result<()> {
    // The minimum rate is off, so only the deadline can end the trickle.
    let bridge = bridge_with("body_read_timeout = \"2s\"\nbody_min_rate = 0").await?;
    let answer = trickle_body(&bridge, Duration::from_millis(300), Duration::from_secs(20)).await?;
    ensure!(answer.status == 408, "{answer:?}");
    ensure!(answer.body.contains("http.body_read_timeout"), "{answer:?}");
    ensure!(answer.header("connection") == Some("close"), "{answer:?}");
    Ok(())
}

#[tokio::test]
async fn a_body_below_the_minimum_rate_is_cut_off() -> Result<()> {
    // The defaults: a 30 s deadline and 1 KiB/s judged over 5 s windows. One byte a second
    // is far below the rate, so the first window ends it, long before the deadline.
    let bridge = bridge_with("").await?;
    let answer = trickle_body(&bridge, Duration::from_secs(1), Duration::from_secs(20)).await?;
    ensure!(answer.status == 408, "{answer:?}");
    ensure!(answer.body.contains("http.body_min_rate"), "{answer:?}");
    Ok(())
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_before_the_body_is_sent() -> Result<()> {
    let bridge = bridge_with("max_body_bytes = \"64KiB\"").await?;
    let mut stream = TcpStream::connect(&bridge.address).await?;
    // Only the head: the client waits for the answer before sending 100 MiB.
    stream.write_all(post_head(100 << 20).as_bytes()).await?;
    let answer = read_response(&mut stream, Duration::from_secs(10)).await?;
    ensure!(answer.status == 413, "{answer:?}");
    ensure!(answer.body.contains("max_body_bytes"), "{answer:?}");
    ensure!(answer.header("connection") == Some("close"), "{answer:?}");
    ensure!(
        closed_within(&mut stream, Duration::from_secs(10)).await,
        "the connection stayed open after the 413"
    );
    Ok(())
}

/// Lowers a process's open-file limit (soft and hard), as an operator's `ulimit -n` would.
fn limit_open_files(pid: u32, limit: u64) -> Result<()> {
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit reads `new` and writes nothing (old is null); the pid is our child.
    let result =
        unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    ensure!(result == 0, "prlimit: {}", std::io::Error::last_os_error());
    Ok(())
}

/// Opens `count` connections; every other one trickles a request head a byte at a time.
async fn flood(bridge: &Bridge, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for n in 0..count {
        let Ok(mut stream) = TcpStream::connect(&bridge.address).await else {
            continue;
        };
        if n % 2 == 1 {
            let _ = stream.write_all(b"POST /mcp/demo HTTP/1.1\r\nHo").await;
        }
        streams.push(stream);
    }
    streams
}

#[tokio::test]
async fn a_flood_over_the_connection_cap_is_refused_and_normal_clients_are_served_again()
-> Result<()> {
    let bridge = bridge_with("max_client_connections = 20\nheader_read_timeout = \"3s\"").await?;
    // 20 served (idle or trickling a head), 40 over the cap.
    let mut streams = flood(&bridge, 60).await;
    // Connections over the cap hear 503 at once.
    let mut refused = 0;
    for stream in streams.iter_mut().rev().take(10) {
        if let Ok(answer) = read_response(stream, Duration::from_secs(5)).await {
            ensure!(answer.status == 503, "{answer:?}");
            ensure!(
                answer.body.contains("http.max_client_connections"),
                "{answer:?}"
            );
            refused += 1;
        }
    }
    ensure!(
        refused == 10,
        "only {refused} of 10 over-cap connections heard 503"
    );
    // The flood's own connections meet the header deadline; then a normal client is served,
    // although the flood's sockets stay open on the client side.
    ensure!(
        eventually(Duration::from_secs(30), async || normal_call(&bridge).await).await,
        "a normal client was never served after the flood; log:\n{}",
        bridge.log_text()
    );
    ensure!(
        metric(
            &bridge,
            "mcp_bridge_http_connections_refused_total",
            &["how=\"answered\""]
        )
        .await?
            >= 10.0
    );
    ensure!(
        metric(
            &bridge,
            "mcp_bridge_http_connections_closed_total",
            &["reason=\"header_timeout\""]
        )
        .await?
            >= 10.0
    );
    ensure!(
        log_lines(&bridge, "refusing connections") <= 3,
        "refusals flood the log:\n{}",
        bridge.log_text()
    );
    drop(streams);
    Ok(())
}

#[tokio::test]
async fn accept_errors_back_off_and_are_logged_at_most_once_a_second() -> Result<()> {
    // The default cap (1024) is far above this fd limit: accepts fail with EMFILE.
    let bridge = bridge_with("").await?;
    limit_open_files(bridge.pid(), 48)?;
    let started = Instant::now();
    let streams = flood(&bridge, 80).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let seconds = started.elapsed().as_secs_f64();
    let lines = log_lines(&bridge, "accept failed");
    ensure!(
        lines >= 1,
        "no accept error was logged:\n{}",
        bridge.log_text()
    );
    // One line a second, plus one for the interval the first line opens.
    ensure!(
        (lines as f64) <= seconds + 2.0,
        "{lines} accept-error lines in {seconds:.1} s:\n{}",
        bridge.log_text()
    );
    drop(streams);
    // With the flood gone (its accepted connections end at the header deadline), a normal
    // client is served and the errors are counted.
    ensure!(
        eventually(Duration::from_secs(60), async || normal_call(&bridge).await).await,
        "no normal client was served after the fd shortage; log:\n{}",
        bridge.log_text()
    );
    ensure!(metric(&bridge, "mcp_bridge_http_accept_errors_total", &[]).await? >= 1.0);
    Ok(())
}

#[tokio::test]
async fn responses_advertise_the_keep_alive_timeout() -> Result<()> {
    let bridge = bridge_with("keep_alive_timeout = \"7s\"").await?;
    let mut stream = TcpStream::connect(&bridge.address).await?;
    stream.write_all(get("/healthz").as_bytes()).await?;
    let answer = read_response(&mut stream, Duration::from_secs(10)).await?;
    ensure!(answer.status == 200, "{answer:?}");
    ensure!(
        answer.header("keep-alive") == Some("timeout=7"),
        "{answer:?}"
    );
    // MCP answers too.
    let initialize = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"ka","version":"1"}}})
    .to_string();
    stream
        .write_all(format!("{}{initialize}", post_head(initialize.len())).as_bytes())
        .await?;
    let answer = read_response(&mut stream, Duration::from_secs(10)).await?;
    ensure!(answer.status == 200, "{answer:?}");
    ensure!(
        answer.header("keep-alive") == Some("timeout=7"),
        "{answer:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_idle_connection_lives_past_the_header_deadline_until_the_keep_alive_timeout()
-> Result<()> {
    let bridge = bridge_with("header_read_timeout = \"1s\"\nkeep_alive_timeout = \"4s\"").await?;
    let mut stream = TcpStream::connect(&bridge.address).await?;
    stream.write_all(get("/healthz").as_bytes()).await?;
    ensure!(
        read_response(&mut stream, Duration::from_secs(10))
            .await?
            .status
            == 200
    );
    // Idle for twice the header deadline: still usable.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stream.write_all(get("/healthz").as_bytes()).await?;
    let answer = read_response(&mut stream, Duration::from_secs(10)).await?;
    ensure!(answer.status == 200, "{answer:?}");
    // Then idle past the keep-alive timeout: closed by the bridge, not before it is due.
    let idle_from = Instant::now();
    ensure!(
        closed_within(&mut stream, Duration::from_secs(20)).await,
        "an idle connection was never closed"
    );
    let idle = idle_from.elapsed();
    ensure!(
        idle >= Duration::from_secs(3),
        "closed after {idle:?} idle, before the 4 s keep-alive timeout"
    );
    ensure!(
        metric(
            &bridge,
            "mcp_bridge_http_connections_closed_total",
            &["reason=\"keep_alive_timeout\""]
        )
        .await?
            >= 1.0
    );
    // A connection that never sends a request is held to the header deadline.
    let mut silent = TcpStream::connect(&bridge.address).await?;
    ensure!(
        closed_within(&mut silent, Duration::from_secs(10)).await,
        "a silent connection was not closed at the header deadline"
    );
    Ok(())
}

#[tokio::test]
async fn bench_load_retires_idle_connections_before_the_advertised_timeout() -> Result<()> {
    let bridge = bridge_with("keep_alive_timeout = \"2s\"").await?;
    let idle_closes = async || {
        metric(
            &bridge,
            "mcp_bridge_http_connections_closed_total",
            &["reason=\"keep_alive_timeout\""],
        )
        .await
        .unwrap_or(-1.0)
    };
    // The harness's own pooled connection (from waiting for readiness) is left idle: let the
    // bridge close it first, so the count below is the load client's alone.
    let _ = eventually(Duration::from_secs(10), async || idle_closes().await >= 1.0).await;
    let closes_before = idle_closes().await;
    let out = bridge.dir.path().join("load.json");
    // One call every 2.2 s: every call follows an idle gap longer than the keep-alive
    // timeout, so a client that reused its connection would lose each call to the close.
    let url = bridge.url("/mcp/demo");
    let out_arg = out.display().to_string();
    let args = [
        "bench",
        "load",
        "--url",
        url.as_str(),
        "--workload",
        "seed-tasks",
        "--rate",
        "0.45",
        "--duration",
        "11s",
        "--out",
        out_arg.as_str(),
    ];
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(bridge_exe())
            .args(args)
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("bench load did not finish within 60 s")??;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(output.status.success(), "bench load failed:\n{printed}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let calls = report["calls"].as_u64().unwrap_or(0);
    ensure!(calls >= 4, "{calls} calls: {report}");
    ensure!(report["failed"] == 0, "{printed}\n{report}");
    // The client closed each idle connection first: the bridge never had to.
    let closed_by_bridge = idle_closes().await - closes_before;
    ensure!(
        closed_by_bridge == 0.0,
        "the bridge closed {closed_by_bridge} idle connections before the client retired them"
    );
    Ok(())
}

/// The soft and hard "Max open files" of a process, from `/proc/PID/limits`.
fn open_file_limits(pid: u32) -> Result<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .context("no open-files line")?;
    let mut values = line["Max open files".len()..].split_whitespace();
    let soft = values.next().context("soft")?.to_owned();
    let hard = values.next().context("hard")?.to_owned();
    Ok((soft, hard))
}

#[tokio::test]
async fn the_soft_open_file_limit_is_raised_to_the_hard_limit_and_logged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("mcp-bridge.toml");
    std::fs::write(&config, demo_server_toml("demo", &[], ""))?;
    // Started with a low soft limit, as a shell with `ulimit -Sn 256` would.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 256 && exec \"$0\" serve --config \"$1\" --listen 127.0.0.1:0 --log-format json --log-level info")
        .arg(bridge_exe())
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stderr = child.stderr.take().context("stderr")?;
    let lines = read_lines_until(stderr, Duration::from_secs(30), |line| {
        line.contains("listening on")
    });
    let limit_line = lines
        .iter()
        .find(|line| line.contains("file descriptor limit"))
        .cloned();
    let log = lines.join("\n");
    let limits = open_file_limits(pid);
    let _ = child.kill();
    let _ = child.wait();
    let line = limit_line.with_context(|| format!("no fd-limit line in the log:\n{log}"))?;
    let logged: Value = serde_json::from_str(&line)?;
    ensure!(logged["fields"]["soft_before"] == 256, "{line}");
    let (soft, hard) = limits?;
    ensure!(soft == hard, "soft {soft} was not raised to hard {hard}");
    ensure!(
        soft.parse::<u64>().ok() == logged["fields"]["soft"].as_u64(),
        "{line} vs {soft}"
    );
    Ok(())
}
