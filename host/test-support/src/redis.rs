//! A real `redis-server` (Debian's package, installed by `scripts/install-services.sh` when
//! missing) on a free loopback port, with a directory and a config of its own, for the
//! shared cache tier's tests and benches.
//!
//! By default it keeps nothing on disk (`save ""`, `appendonly no`); [`RedisOptions`] turns
//! on the append-only file (so [`RedisServer::restart`] and even [`RedisServer::kill`] keep
//! the data), a password, and TLS with certificates made for the run. The harness talks to
//! it in raw RESP over a fresh connection per command (TLS through rustls when it serves
//! TLS), which is all [`RedisServer::command`] and the readiness check need.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::certs::{self, ServerCertificate};
use crate::process::process_alive;
use crate::service::{self, POLL_EVERY};

/// Where Debian's package puts the server.
const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// How long the server may take to answer PING after it was started (loading an
/// append-only file included).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the server may take to exit after SIGTERM (it fsyncs the append-only file).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one [`RedisServer::command`] may take, connection and TLS handshake included.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest bulk string and the longest array a reply may hold; a larger one is refused
/// rather than buffered.
const MAX_BULK_BYTES: usize = 64 * 1024 * 1024;
const MAX_ARRAY_LENGTH: usize = 1 << 20;

/// How a [`RedisServer`] is started. The default keeps nothing on disk and has neither a
/// password nor TLS.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Keep the data in an append-only file in the server's directory, fsynced on every
    /// write (`appendonly yes`, `appendfsync always`), so a restart, even after SIGKILL,
    /// finds every acknowledged write.
    pub persistence: bool,
    /// Require this password (`requirepass`, the `default` user's); [`RedisServer::url`]
    /// then carries it.
    pub password: Option<String>,
    /// Serve TLS only (`port 0`, `tls-port`), with a CA and a server certificate for
    /// `127.0.0.1`/`localhost` made for the run; clients trust [`RedisServer::ca_file`].
    /// Clients need no certificate of their own (`tls-auth-clients no`).
    pub tls: bool,
}

/// A running `redis-server`. Dropping it kills the server (SIGKILL by pid) and removes its
/// directory.
pub struct RedisServer {
    child: Option<Child>,
    /// The pid of the latest start; it stays that process's number after it exits.
    pid: u32,
    port: u16,
    options: RedisOptions,
    /// The server's config, data, log and certificates.
    dir: tempfile::TempDir,
    tls: Option<Tls>,
}

/// What a TLS server has: its certificate files and a client config that trusts its CA.
struct Tls {
    certificate: ServerCertificate,
    client: Arc<rustls::ClientConfig>,
}

impl RedisServer {
    /// Starts a server as `options` say on a free loopback port and waits until it answers
    /// PING. Installs Debian's `redis-server` first if it is missing.
    pub async fn start(options: RedisOptions) -> Result<RedisServer> {
        service::ensure_installed("redis-server", Path::new(REDIS_SERVER)).await?;
        let dir = tempfile::Builder::new()
            .prefix("mcp-bridge-redis-")
            .tempdir()
            .context("create the redis server's directory")?;
        let tls = if options.tls {
            let certificate = certs::generate(dir.path()).await?;
            let client = client_config(&certificate.ca_file)?;
            Some(Tls {
                certificate,
                client,
            })
        } else {
            None
        };
        let mut server = RedisServer {
            child: None,
            pid: 0,
            port: 0,
            options,
            dir,
            tls,
        };
        service::start_on_a_free_port(&mut server).await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` with TLS), with `default:PASSWORD@` before the
    /// host when a password is set (percent-encoded). The `default` user is the one
    /// `requirepass` protects; naming it makes the URL mean the same to every client (the
    /// `redis` crate, redis-cli), where an empty user name does not.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let credentials = match &self.options.password {
            Some(password) => format!("default:{}@", percent_encode(password)),
            None => String::new(),
        };
        format!("{scheme}://{credentials}127.0.0.1:{}", self.port)
    }

    /// The loopback port the server listens on (its TLS port with TLS).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid of the latest start (it stays that number after the process exits).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The CA certificate (PEM) a client must trust to reach a TLS server; `None` without
    /// TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls
            .as_ref()
            .map(|tls| tls.certificate.ca_file.as_path())
    }

    /// The server's directory: its `redis.conf`, `redis.log`, data and certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The options the server was started with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// Whether the server process is running (started, not stopped, not dead).
    pub fn is_running(&self) -> bool {
        self.child.is_some() && process_alive(self.pid)
    }

    /// The last `lines` lines of the server's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = service::file_tail(&self.log_path(), lines);
        let stdio = service::file_tail(&self.stdio_path(), lines);
        if stdio.is_empty() {
            log
        } else {
            format!("{log}\n{stdio}")
        }
    }

    /// Stops the server with SIGTERM (it fsyncs its append-only file first) and waits for
    /// it; past a bound it is killed and the stop fails. Stopping a stopped server does
    /// nothing.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        service::terminate(&mut child, "redis-server", STOP_TIMEOUT).await
    }

    /// Kills the server with SIGKILL (no shutdown work at all) and reaps it. Killing a
    /// stopped server does nothing.
    pub async fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        service::signal(child.id(), libc::SIGKILL);
        match service::wait_exit(&mut child, STOP_TIMEOUT).await? {
            Some(_) => Ok(()),
            None => bail!("redis-server (pid {}) outlived SIGKILL", self.pid),
        }
    }

    /// Stops the server if it runs, then starts it again on the same port with the same
    /// directory (so with [`RedisOptions::persistence`] it loads the data it had), and waits
    /// until it answers PING.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.launch().await
    }

    /// Runs one command on a fresh connection (authenticated when a password is set) and
    /// returns its reply as text: a simple or bulk string as is, an integer in decimal, an
    /// array's elements one per line, a nil as the empty string. An error reply is an
    /// error. For tests: `DBSIZE`, `KEYS prefix*`, `FLUSHALL`, `GET key`.
    pub async fn command(&self, args: &[&str]) -> Result<String> {
        let what = args.first().copied().unwrap_or("(empty command)");
        tokio::time::timeout(COMMAND_TIMEOUT, self.command_unbounded(args))
            .await
            .with_context(|| format!("redis {what} did not answer within {COMMAND_TIMEOUT:?}"))?
            .with_context(|| format!("redis {what} on port {}", self.port))
    }

    async fn command_unbounded(&self, args: &[&str]) -> Result<String> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .context("connect")?;
        tcp.set_nodelay(true).context("set TCP_NODELAY")?;
        match &self.tls {
            None => run_command(BufReader::new(tcp), self.options.password.as_deref(), args).await,
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
                let name =
                    rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake")?;
                run_command(
                    BufReader::new(stream),
                    self.options.password.as_deref(),
                    args,
                )
                .await
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn stdio_path(&self) -> PathBuf {
        self.dir.path().join("redis.stdio.log")
    }

    /// Writes the config for the current port, starts the server and waits until it answers
    /// PING.
    async fn launch(&mut self) -> Result<()> {
        let config_path = self.dir.path().join("redis.conf");
        std::fs::write(&config_path, self.config()).context("write redis.conf")?;
        let stdio = File::create(self.stdio_path()).context("create redis.stdio.log")?;
        let child = Command::new(REDIS_SERVER)
            .arg(&config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdio.try_clone().context("share redis.stdio.log")?)
            .stderr(stdio)
            .spawn()
            .context("spawn redis-server")?;
        self.pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(reply) = self.command(&["PING"]).await
                && reply == "PONG"
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("wait for redis-server")?
            {
                self.child = None;
                bail!(
                    "redis-server exited at start ({status}); log:\n{}",
                    self.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                bail!(
                    "redis-server did not answer PING within {START_TIMEOUT:?}; log:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(POLL_EVERY * 2).await;
        }
    }

    /// The server's `redis.conf`.
    fn config(&self) -> String {
        let dir = self.dir.path().display().to_string();
        let mut lines = vec![
            "bind 127.0.0.1".to_owned(),
            "daemonize no".to_owned(),
            format!("dir {}", conf_string(&dir)),
            format!(
                "logfile {}",
                conf_string(&self.log_path().display().to_string())
            ),
            // No RDB snapshots ever: with persistence on, the append-only file is the one
            // record, and without it nothing is written at all.
            "save \"\"".to_owned(),
        ];
        if self.options.persistence {
            lines.push("appendonly yes".to_owned());
            lines.push("appendfsync always".to_owned());
        } else {
            lines.push("appendonly no".to_owned());
        }
        if let Some(password) = &self.options.password {
            lines.push(format!("requirepass {}", conf_string(password)));
        }
        match &self.tls {
            None => lines.push(format!("port {}", self.port)),
            Some(tls) => {
                let path = |path: &Path| conf_string(&path.display().to_string());
                lines.push("port 0".to_owned());
                lines.push(format!("tls-port {}", self.port));
                lines.push(format!(
                    "tls-cert-file {}",
                    path(&tls.certificate.cert_file)
                ));
                lines.push(format!("tls-key-file {}", path(&tls.certificate.key_file)));
                lines.push(format!(
                    "tls-ca-cert-file {}",
                    path(&tls.certificate.ca_file)
                ));
                lines.push("tls-auth-clients no".to_owned());
            }
        }
        let mut config = lines.join("\n");
        config.push('\n');
        config
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A rustls client config that trusts only the CA in `ca_file`.
fn client_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).context("read the CA")? {
        roots
            .add(certificate.context("parse the CA")?)
            .context("trust the CA")?;
    }
    // The ring provider, as everywhere in the project (no aws-lc); rustls deprecates it
    // for lacking post-quantum key exchange, which a loopback test does not need.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Authenticates when `password` is set, then sends `args` and reads the reply.
async fn run_command<S>(
    mut stream: BufReader<S>,
    password: Option<&str>,
    args: &[&str],
) -> Result<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(password) = password {
        send(&mut stream, &["AUTH", password]).await?;
        let reply = read_reply(&mut stream, 0).await.context("AUTH")?;
        ensure!(reply == "OK", "AUTH answered {reply}");
    }
    send(&mut stream, args).await?;
    read_reply(&mut stream, 0).await
}

/// Writes one command as a RESP array of bulk strings.
async fn send<S>(stream: &mut BufReader<S>, args: &[&str]) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    let stream = stream.get_mut();
    stream.write_all(&request).await.context("send")?;
    stream.flush().await.context("send")?;
    Ok(())
}

/// Reads one RESP2 reply as text (see [`RedisServer::command`]); `depth` bounds nesting.
async fn read_reply<R>(reader: &mut R, depth: usize) -> Result<String>
where
    R: AsyncBufRead + Unpin,
{
    ensure!(depth < 8, "reply nested too deeply");
    let mut line = String::new();
    let read = (&mut *reader)
        .take(MAX_BULK_BYTES as u64)
        .read_line(&mut line)
        .await
        .context("read the reply")?;
    ensure!(read > 0, "the server closed the connection");
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).context("empty reply line")?;
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => bail!("error reply: {rest}"),
        "$" => {
            let length: i64 = rest.parse().context("bulk length")?;
            let Ok(length) = usize::try_from(length) else {
                return Ok(String::new());
            };
            ensure!(length <= MAX_BULK_BYTES, "a {length}-byte bulk reply");
            let mut body = vec![0; length + 2];
            reader
                .read_exact(&mut body)
                .await
                .context("read a bulk reply")?;
            body.truncate(length);
            String::from_utf8(body).context("a bulk reply that is not UTF-8")
        }
        "*" => {
            let count: i64 = rest.parse().context("array length")?;
            let Ok(count) = usize::try_from(count) else {
                return Ok(String::new());
            };
            ensure!(count <= MAX_ARRAY_LENGTH, "a {count}-element array reply");
            let mut items = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                items.push(Box::pin(read_reply(reader, depth + 1)).await?);
            }
            Ok(items.join("\n"))
        }
        other => bail!("unknown reply type {other:?}"),
    }
}

/// A value for `redis.conf`: double-quoted, with backslashes and quotes escaped.
fn conf_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Percent-encodes what a URL's userinfo cannot hold as is.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

impl service::LoopbackService for RedisServer {
    const NAME: &'static str = "redis-server";

    fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    async fn launch_on_port(&mut self) -> Result<()> {
        self.launch().await
    }

    fn port_was_taken(&self) -> bool {
        self.log_tail(20).contains("Address already in use")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<String> {
        read_reply(&mut BufReader::new(bytes), 0).await
    }

    #[tokio::test]
    async fn replies_read_as_text() {
        assert_eq!(parse(b"+PONG\r\n").await.ok(), Some("PONG".into()));
        assert_eq!(parse(b":42\r\n").await.ok(), Some("42".into()));
        assert_eq!(
            parse(b"$5\r\nhe\r\no\r\n").await.ok(),
            Some("he\r\no".into())
        );
        assert_eq!(parse(b"$-1\r\n").await.ok(), Some(String::new()));
        assert_eq!(
            parse(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n").await.ok(),
            Some("a\nb".into())
        );
        let error = parse(b"-ERR wrong\r\n").await.err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("error reply: ERR wrong"));
        assert!(parse(b"").await.is_err());
    }

    #[test]
    fn a_password_is_percent_encoded_in_the_url() {
        assert_eq!(percent_encode("a b@c"), "a%20b%40c");
        assert_eq!(conf_string("x\"y\\"), "\"x\\\"y\\\\\"");
    }
}
