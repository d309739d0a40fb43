//! A lean HTTP/1.1 client over one keep-alive TCP connection, and an MCP Streamable HTTP client
//! built on it.
//!
//! Requests are written by hand in one `write` and responses parsed by hand, so the client costs
//! a few microseconds per call and does not hide the bridge's own cost. It understands what the
//! bridge and the baseline server send: `Content-Length` bodies, chunked bodies (SSE streams)
//! and bodies that end when the connection closes.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::{Context as _, Result, bail};
use bytes::{Buf as _, Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::rpc::{self, CallEncoder};

/// The largest response head the client accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// One HTTP response.
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub session_id: Option<String>,
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    stream: TcpStream,
    host: String,
    read: BytesMut,
    write: Vec<u8>,
    closed: bool,
}

impl Connection {
    pub async fn connect(address: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connect to {address}"))?;
        // The bridge sets TCP_NODELAY on its side; the client must too, or small requests wait
        // for delayed ACKs.
        stream.set_nodelay(true).context("set TCP_NODELAY")?;
        Ok(Self {
            stream,
            host: address.to_string(),
            read: BytesMut::with_capacity(16 * 1024),
            write: Vec::with_capacity(1024),
            closed: false,
        })
    }

    /// Sends one request and reads its whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        if self.closed {
            bail!("the server closed the connection");
        }
        self.write.clear();
        write!(
            self.write,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            self.host
        )?;
        for (name, value) in headers {
            write!(self.write, "{name}: {value}\r\n")?;
        }
        if !body.is_empty() || method == "POST" {
            write!(self.write, "Content-Length: {}\r\n", body.len())?;
        }
        self.write.extend_from_slice(b"\r\n");
        self.write.extend_from_slice(body);
        self.stream
            .write_all(&self.write)
            .await
            .context("send the request")?;
        self.read_response().await
    }

    async fn fill(&mut self) -> Result<()> {
        let read = self
            .stream
            .read_buf(&mut self.read)
            .await
            .context("read the response")?;
        if read == 0 {
            self.closed = true;
            bail!("the server closed the connection mid-response");
        }
        Ok(())
    }

    async fn read_response(&mut self) -> Result<Response> {
        let head_end = loop {
            if let Some(position) = find(&self.read, b"\r\n\r\n") {
                break position;
            }
            if self.read.len() > MAX_HEAD_BYTES {
                bail!("response head larger than {MAX_HEAD_BYTES} bytes");
            }
            self.fill().await?;
        };
        let head = self.read.split_to(head_end + 4);
        let head = std::str::from_utf8(&head).context("response head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut content_length = None;
        let mut chunked = false;
        let mut content_type = String::new();
        let mut session_id = None;
        for line in lines.filter(|line| !line.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                bail!("bad header line {line:?}");
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(
                    value
                        .parse::<usize>()
                        .with_context(|| format!("bad Content-Length {value:?}"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("content-type") {
                value.clone_into(&mut content_type);
            } else if name.eq_ignore_ascii_case("mcp-session-id") {
                session_id = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                self.closed = true;
            }
        }
        let body = if status < 200 || status == 204 || status == 304 {
            Bytes::new()
        } else if chunked {
            self.read_chunked().await?
        } else if let Some(length) = content_length {
            while self.read.len() < length {
                self.fill().await?;
            }
            self.read.split_to(length).freeze()
        } else {
            self.read_to_end().await?
        };
        Ok(Response {
            status,
            content_type,
            session_id,
            body,
        })
    }

    /// Reads until the next CRLF and returns the line without it.
    async fn read_line(&mut self) -> Result<BytesMut> {
        loop {
            if let Some(position) = find(&self.read, b"\r\n") {
                let line = self.read.split_to(position);
                self.read.advance(2);
                return Ok(line);
            }
            if self.read.len() > MAX_HEAD_BYTES {
                bail!("chunk header longer than {MAX_HEAD_BYTES} bytes");
            }
            self.fill().await?;
        }
    }

    async fn read_chunked(&mut self) -> Result<Bytes> {
        let mut body = BytesMut::new();
        loop {
            let line = self.read_line().await?;
            let text = std::str::from_utf8(&line).context("chunk header is not UTF-8")?;
            let size_text = text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body.freeze());
            }
            while self.read.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.read[..size]);
            self.read.advance(size + 2);
        }
    }

    async fn read_to_end(&mut self) -> Result<Bytes> {
        loop {
            let read = self
                .stream
                .read_buf(&mut self.read)
                .await
                .context("read the response")?;
            if read == 0 {
                self.closed = true;
                return Ok(self.read.split().freeze());
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// An MCP Streamable HTTP client on one connection: session-based (2025-11-25) after
/// [`McpClient::initialize`], or without a session for the bare baseline server.
pub struct McpClient {
    connection: Connection,
    path: String,
    session_id: Option<String>,
    encoder: CallEncoder,
    body: Vec<u8>,
    next_id: u64,
    /// How many `tools/call` requests this client has sent, so the bench can hold the cache's
    /// hit counter against them.
    calls: u64,
}

/// What one measured call produced: `Ok(Ok(()))` is a successful result, `Ok(Err(text))` an
/// error answer (the connection is still usable), `Err` a broken connection.
pub type CallOutcome = Result<Result<(), String>>;

impl McpClient {
    pub async fn connect(address: SocketAddr, path: &str) -> Result<Self> {
        Ok(Self {
            connection: Connection::connect(address).await?,
            path: path.to_owned(),
            session_id: None,
            encoder: CallEncoder::new(rpc::TOOL)?,
            body: Vec::with_capacity(256),
            next_id: 1,
            calls: 0,
        })
    }

    /// How many `tools/call` requests this client has sent, answered or not.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Runs the session-based handshake: `initialize` (which returns the session id), then
    /// `notifications/initialized`.
    pub async fn initialize(&mut self) -> Result<()> {
        let request = rpc::initialize(0)?;
        let response = self
            .connection
            .request("POST", &self.path, &BASE_HEADERS, &request)
            .await?;
        if response.status != 200 {
            bail!(
                "initialize answered HTTP {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        let answer = parse_answer(&response)?;
        if answer.get("result").is_none() {
            bail!("initialize failed: {answer}");
        }
        self.session_id = Some(
            response
                .session_id
                .context("initialize answered without an Mcp-Session-Id header")?,
        );
        let response = self.post(rpc::INITIALIZED).await?;
        if response.status != 202 {
            bail!(
                "notifications/initialized answered HTTP {}",
                response.status
            );
        }
        Ok(())
    }

    async fn post(&mut self, body: &[u8]) -> Result<Response> {
        match self.session_id.as_deref() {
            Some(session) => {
                let headers = [
                    BASE_HEADERS[0],
                    BASE_HEADERS[1],
                    ("Mcp-Session-Id", session),
                    ("MCP-Protocol-Version", rpc::PROTOCOL_VERSION),
                ];
                self.connection
                    .request("POST", &self.path, &headers, body)
                    .await
            }
            None => {
                self.connection
                    .request("POST", &self.path, &BASE_HEADERS, body)
                    .await
            }
        }
    }

    /// Calls the bench's tool once. `check_id` is off for the baseline server, whose canned
    /// answer carries a fixed id.
    pub async fn call_tool(&mut self, check_id: bool) -> CallOutcome {
        let id = self.next_id;
        self.next_id += 1;
        self.calls += 1;
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        self.encoder.encode(id, &mut body);
        let response = self.post(&body).await;
        self.body = body;
        let response = response?;
        if response.status != 200 {
            return Ok(Err(format!(
                "HTTP {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            )));
        }
        match parse_answer(&response) {
            Ok(answer) => Ok(rpc::check_call_result(&answer, check_id.then_some(id))),
            Err(error) => Ok(Err(format!("{error:#}"))),
        }
    }

    /// Calls the tool once and returns the raw answer body (used to give the baseline server
    /// an answer of exactly the bridge's size).
    pub async fn call_tool_raw(&mut self) -> Result<Bytes> {
        let mut body = Vec::new();
        self.encoder.encode(self.next_id, &mut body);
        self.next_id += 1;
        self.calls += 1;
        let response = self.post(&body).await?;
        if response.status != 200 || !response.content_type.starts_with("application/json") {
            bail!(
                "tools/call answered HTTP {} ({})",
                response.status,
                response.content_type
            );
        }
        let answer = parse_answer(&response)?;
        rpc::check_call_result(&answer, None).map_err(anyhow::Error::msg)?;
        Ok(response.body)
    }
}

/// Headers every MCP POST carries.
const BASE_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];

/// The JSON-RPC answer in a response: the body itself, or the last `data:` event of an SSE
/// stream (notifications come first, the answer last).
fn parse_answer(response: &Response) -> Result<Value> {
    if response.content_type.starts_with("text/event-stream") {
        let text = std::str::from_utf8(&response.body).context("SSE body is not UTF-8")?;
        let data = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .next_back()
            .context("SSE stream without a data event")?;
        return serde_json::from_str(data.trim()).context("SSE data is not JSON");
    }
    serde_json::from_slice(&response.body).context("answer body is not JSON")
}

/// Sends `GET path` on a fresh connection and returns the status and body.
pub async fn get(address: SocketAddr, path: &str) -> Result<(u16, Bytes)> {
    let mut connection = Connection::connect(address).await?;
    let response = connection.request("GET", path, &[], &[]).await?;
    Ok((response.status, response.body))
}
