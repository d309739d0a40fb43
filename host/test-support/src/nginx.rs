//! A real nginx (Debian's package, installed by `scripts/install-services.sh` when missing)
//! as a round-robin load balancer with no affinity in front of several bridges, on a free
//! loopback port, with its config, logs and temporary files in a directory of its own.
//!
//! Each request goes to the next upstream in turn, whatever its `Mcp-Session-Id`, which is
//! what the replica tests need: any replica must serve any request. The access log records
//! `$upstream_addr` per request, so [`Nginx::served_by`] tells which replica served what.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::process::process_alive;
use crate::service::{self, POLL_EVERY};

/// Where Debian's package puts nginx.
const NGINX: &str = "/usr/sbin/nginx";

/// How long nginx may take to accept connections after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long nginx may take to exit after SIGTERM (its fast shutdown).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a proxied request may go without a byte either way: long enough for a
/// Server-Sent Events stream that idles between events and a slow tool call.
const PROXY_IDLE_TIMEOUT: &str = "3600s";

/// How long nginx waits to connect to an upstream before it tries the next one.
const PROXY_CONNECT_TIMEOUT: &str = "2s";

/// The access log's format: the upstream(s) that handled the request first, then the
/// status, method and URI.
const LOG_FORMAT: &str = "'$upstream_addr\\t$status\\t$request_method\\t$request_uri'";

/// A running nginx. Dropping it stops nginx (SIGTERM, then SIGKILL past a bound) and removes
/// its directory.
pub struct Nginx {
    child: Option<Child>,
    /// The master process's pid (it stays that number after the process exits).
    pid: u32,
    port: u16,
    upstreams: Vec<SocketAddr>,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx balancing round-robin over `upstreams` (plain HTTP) on a free loopback
    /// port and waits until it accepts connections. Installs Debian's nginx first if it is
    /// missing.
    pub async fn start(upstreams: &[SocketAddr]) -> Result<Nginx> {
        ensure!(!upstreams.is_empty(), "nginx needs at least one upstream");
        service::ensure_installed("nginx", Path::new(NGINX)).await?;
        let dir = tempfile::Builder::new()
            .prefix("mcp-bridge-nginx-")
            .tempdir()
            .context("create nginx's directory")?;
        let mut nginx = Nginx {
            child: None,
            pid: 0,
            port: 0,
            upstreams: upstreams.to_vec(),
            dir,
        };
        service::start_on_a_free_port(&mut nginx).await?;
        Ok(nginx)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The address nginx listens on.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The loopback port nginx listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The master process's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The upstreams nginx balances over, in config order.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// nginx's directory: `nginx.conf`, `access.log`, `error.log`, temporary files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The access log: one line per finished request, `UPSTREAMS\tSTATUS\tMETHOD\tURI`.
    pub fn access_log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// Whether the nginx master process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some() && process_alive(self.pid)
    }

    /// The last `lines` lines of nginx's error log, for error messages.
    pub fn error_log_tail(&self, lines: usize) -> String {
        service::file_tail(&self.dir.path().join("error.log"), lines)
    }

    /// How many finished requests each upstream served, by `IP:PORT`, from the access log.
    /// A request retried on another upstream (its first one refused the connection) counts
    /// for the one that answered, the last in `$upstream_addr`. nginx writes the line just
    /// after the response's last byte, so a stream still open is not counted yet and a
    /// client may read a response a moment before its line lands: poll for the count
    /// expected (`poll_until`) rather than reading once.
    pub fn served_by(&self) -> Result<HashMap<String, usize>> {
        let log =
            std::fs::read_to_string(self.access_log_path()).context("read nginx's access log")?;
        Ok(count_upstreams(&log))
    }

    /// Stops nginx with SIGTERM (its fast shutdown: open connections are closed) and waits
    /// for the master; past a bound it is killed and the stop fails. Stopping a stopped
    /// nginx does nothing.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        service::terminate(&mut child, "nginx", STOP_TIMEOUT).await
    }

    /// Writes the config for the current port, starts nginx and waits until its port
    /// accepts connections.
    async fn launch(&mut self) -> Result<()> {
        for temporary in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(self.dir.path().join(temporary))
                .context("create nginx's temporary directories")?;
        }
        let config_path = self.dir.path().join("nginx.conf");
        std::fs::write(&config_path, self.config()).context("write nginx.conf")?;
        let stdio = std::fs::File::create(self.dir.path().join("nginx.stdio.log"))
            .context("create nginx.stdio.log")?;
        // `-e` sends the messages nginx logs before it has read the config to our error log
        // rather than to /var/log/nginx/error.log.
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(self.dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(stdio.try_clone().context("share nginx.stdio.log")?)
            .stderr(stdio)
            .spawn()
            .context("spawn nginx")?;
        self.pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(self.address()).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("wait for nginx")?
            {
                self.child = None;
                bail!(
                    "nginx exited at start ({status}); error log:\n{}\n{}",
                    self.error_log_tail(30),
                    service::file_tail(&self.dir.path().join("nginx.stdio.log"), 30)
                );
            }
            if Instant::now() > deadline {
                if let Some(mut child) = self.child.take() {
                    service::signal(child.id(), libc::SIGKILL);
                    let _ = child.wait();
                }
                bail!(
                    "nginx did not accept connections within {START_TIMEOUT:?}; error log:\n{}",
                    self.error_log_tail(30)
                );
            }
            tokio::time::sleep(POLL_EVERY * 2).await;
        }
    }

    /// nginx's config: one worker, everything in the directory, round-robin over the
    /// upstreams with keep-alive connections to them, nothing buffered.
    fn config(&self) -> String {
        let dir = self.dir.path().display();
        let mut servers = String::new();
        for upstream in &self.upstreams {
            // One failed connection takes a replica out of the rotation for a second, so a
            // killed replica costs each later request nothing until it may be back.
            let _ = writeln!(
                servers,
                "        server {upstream} max_fails=1 fail_timeout=1s;"
            );
        }
        // nginx run as root switches its workers to an unprivileged user by default, which
        // could not use the temporary directories made here (mode 0700, owned by root);
        // as root it keeps root, otherwise it runs as whoever started it anyway.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;\n"
        } else {
            ""
        };
        format!(
            r#"{user}daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    log_format upstream_log {LOG_FORMAT};
    access_log {dir}/access.log upstream_log;

    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    # The bridge bounds request bodies itself and answers 413 with its own message.
    client_max_body_size 0;

    # Round-robin (nginx's default) with no affinity: no ip_hash, no hash on a header.
    upstream bridges {{
{servers}        keepalive 64;
    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
            proxy_pass http://bridges;
            # Keep-alive connections to the upstreams need HTTP/1.1 and no
            # `Connection: close` passed on.
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            # Server-Sent Events and streamed answers pass through as they are written.
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_cache off;
            proxy_connect_timeout {PROXY_CONNECT_TIMEOUT};
            proxy_read_timeout {PROXY_IDLE_TIMEOUT};
            proxy_send_timeout {PROXY_IDLE_TIMEOUT};
            # A dead replica (connection refused, or no answer to the connect) is skipped
            # and the request goes to the next one. nginx never retries a non-idempotent
            # request (POST, PATCH, LOCK) once it has been sent to an upstream, unless
            # `non_idempotent` is listed here: a refused connect means nothing was sent,
            # so an MCP POST is retried then, but a POST whose replica died mid-answer
            # fails to the client (502) rather than being sent twice.
            proxy_next_upstream error timeout;
        }}
    }}
}}
"#,
            port = self.port,
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM rather than SIGKILL: a killed master leaves its worker running (and
        // holding the port); on SIGTERM the master ends the worker first.
        service::signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(POLL_EVERY);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Counts the access log's lines by the upstream that answered (the last address of
/// `$upstream_addr`, which lists every upstream tried, `, `-separated, and `-` when none
/// was).
fn count_upstreams(log: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in log.lines() {
        let Some(upstreams) = line.split('\t').next() else {
            continue;
        };
        let last = upstreams.rsplit(", ").next().unwrap_or(upstreams).trim();
        if last.is_empty() || last == "-" {
            continue;
        }
        *counts.entry(last.to_owned()).or_insert(0) += 1;
    }
    counts
}

impl service::LoopbackService for Nginx {
    const NAME: &'static str = "nginx";

    fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    async fn launch_on_port(&mut self) -> Result<()> {
        self.launch().await
    }

    fn port_was_taken(&self) -> bool {
        self.error_log_tail(20).contains("Address already in use")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_for_the_upstream_that_answered() {
        let log = "127.0.0.1:1001\t200\tPOST\t/mcp\n\
                   127.0.0.1:1001, 127.0.0.1:1002\t200\tPOST\t/mcp\n\
                   127.0.0.1:1002\t202\tPOST\t/mcp\n\
                   -\t404\tGET\t/nothing\n";
        let counts = count_upstreams(log);
        assert_eq!(counts.get("127.0.0.1:1001"), Some(&1));
        assert_eq!(counts.get("127.0.0.1:1002"), Some(&2));
        assert_eq!(counts.len(), 2);
    }
}
