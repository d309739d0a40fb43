//! The project's one HTTP/MCP client: a lean HTTP/1.1 client over one keep-alive TCP
//! connection, and an MCP Streamable HTTP session (protocol 2025-11-25) on it. `bench load`
//! drives bridges with it, and the benches and tests use the same client (through
//! `mcp-bridge-test-support`), so every measurement pays the same client-side cost.
//!
//! Requests are written by hand in one `write` and responses parsed by hand, so the client
//! costs a few microseconds per call and does not hide the bridge's own cost. It reads what
//! the bridge sends: `Content-Length` bodies, chunked bodies (SSE streams) and bodies that end
//! when the connection closes. The message helpers ([`initialize_request`],
//! [`INITIALIZED_NOTIFICATION`], [`write_call`], [`check_call_result`]) are public so that a
//! client speaking MCP over another transport (the benches' stdio baseline) sends the same
//! bytes and judges answers the same way.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::stats::ErrorKind;
use super::target::Target;

/// The protocol version every session asks for.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// The largest response head (and chunk header) the client accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The largest response body the client accepts, so a runaway answer cannot eat memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The least a connection is retired before the idle timeout the server advertises: a
/// request sent at the last moment would race the server's close, and a write lost to that
/// race leaves the client unable to tell whether it ran.
const MIN_RETIRE_MARGIN: Duration = Duration::from_millis(500);

/// When a connection idle since its last response is retired, for a server that advertises
/// `Keep-Alive: timeout=N`: a quarter of N early, and at least [`MIN_RETIRE_MARGIN`].
pub fn retire_after(advertised: Duration) -> Duration {
    advertised.saturating_sub((advertised / 4).max(MIN_RETIRE_MARGIN))
}

/// Why a call did not succeed: its kind (for the counters) and a message (for the report).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    fn connection(message: impl Into<String>) -> Failure {
        Failure::new(ErrorKind::Connection, message)
    }
}

/// One HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    content_type: String,
    session_id: Option<String>,
    body: Bytes,
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    stream: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
    closed: bool,
    /// When the last response was read completely: the start of the idle time the server
    /// counts against its keep-alive timeout.
    idle_since: Instant,
    /// The idle timeout the server advertised (`Keep-Alive: timeout=N`), when it did.
    keep_alive: Option<Duration>,
}

impl Connection {
    async fn connect(target: &Target) -> Result<Connection, Failure> {
        let stream = TcpStream::connect(target.address).await.map_err(|error| {
            Failure::connection(format!("connect to {}: {error}", target.address))
        })?;
        // The bridge sets TCP_NODELAY on its side; the client must too, or small requests
        // wait for delayed ACKs.
        stream
            .set_nodelay(true)
            .map_err(|error| Failure::connection(format!("set TCP_NODELAY: {error}")))?;
        Ok(Connection {
            stream,
            read: BytesMut::with_capacity(16 * 1024),
            write: Vec::with_capacity(1024),
            closed: false,
            idle_since: Instant::now(),
            keep_alive: None,
        })
    }

    /// Whether the connection should be retired rather than carry another request: it has
    /// been idle too close to the server's advertised timeout, or the server has already
    /// closed it (a read now would see end of file, or stray bytes).
    fn should_retire(&self, now: Instant) -> bool {
        if self.closed {
            return true;
        }
        let idle = now.saturating_duration_since(self.idle_since);
        if self
            .keep_alive
            .is_some_and(|advertised| idle >= retire_after(advertised))
        {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Sends one request and reads its whole response.
    async fn request(
        &mut self,
        method: &str,
        target: &Target,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, Failure> {
        if self.closed {
            return Err(Failure::connection("the server closed the connection"));
        }
        self.write.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            self.write,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            target.host_header
        );
        for (name, value) in headers {
            let _ = write!(self.write, "{name}: {value}\r\n");
        }
        if !body.is_empty() || method == "POST" {
            let _ = write!(self.write, "Content-Length: {}\r\n", body.len());
        }
        self.write.extend_from_slice(b"\r\n");
        self.write.extend_from_slice(body);
        if let Err(error) = self.stream.write_all(&self.write).await {
            self.closed = true;
            return Err(Failure::connection(format!("send the request: {error}")));
        }
        let response = self.read_response().await;
        if response.is_err() {
            // A half-read response leaves the stream out of step: never reuse it.
            self.closed = true;
        }
        self.idle_since = Instant::now();
        response
    }

    async fn fill(&mut self) -> Result<(), Failure> {
        let read = self
            .stream
            .read_buf(&mut self.read)
            .await
            .map_err(|error| Failure::connection(format!("read the response: {error}")))?;
        if read == 0 {
            self.closed = true;
            return Err(Failure::connection(
                "the server closed the connection mid-response",
            ));
        }
        Ok(())
    }

    async fn read_response(&mut self) -> Result<Response, Failure> {
        let head_end = loop {
            if let Some(position) = find(&self.read, b"\r\n\r\n") {
                break position;
            }
            if self.read.len() > MAX_HEAD_BYTES {
                return Err(Failure::connection(format!(
                    "response head larger than {MAX_HEAD_BYTES} bytes"
                )));
            }
            self.fill().await?;
        };
        let head = self.read.split_to(head_end + 4);
        let head = std::str::from_utf8(&head)
            .map_err(|_| Failure::connection("the response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| Failure::connection(format!("bad status line {status_line:?}")))?;
        let mut content_length = None;
        let mut chunked = false;
        let mut content_type = String::new();
        let mut session_id = None;
        for line in lines.filter(|line| !line.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                return Err(Failure::connection(format!("bad header line {line:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let length = value
                    .parse::<usize>()
                    .map_err(|_| Failure::connection(format!("bad Content-Length {value:?}")))?;
                content_length = Some(length);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("content-type") {
                value.clone_into(&mut content_type);
            } else if name.eq_ignore_ascii_case("mcp-session-id") {
                session_id = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                self.closed = true;
            } else if name.eq_ignore_ascii_case("keep-alive") {
                self.keep_alive = keep_alive_timeout(value).or(self.keep_alive);
            }
        }
        let body = if status < 200 || status == 204 || status == 304 {
            Bytes::new()
        } else if chunked {
            self.read_chunked().await?
        } else if let Some(length) = content_length {
            if length > MAX_BODY_BYTES {
                return Err(Failure::connection(format!(
                    "response body of {length} bytes"
                )));
            }
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
    async fn read_line(&mut self) -> Result<BytesMut, Failure> {
        loop {
            if let Some(position) = find(&self.read, b"\r\n") {
                let line = self.read.split_to(position);
                self.read.advance(2);
                return Ok(line);
            }
            if self.read.len() > MAX_HEAD_BYTES {
                return Err(Failure::connection("chunk header too long"));
            }
            self.fill().await?;
        }
    }

    async fn read_chunked(&mut self) -> Result<Bytes, Failure> {
        let mut body = BytesMut::new();
        loop {
            let line = self.read_line().await?;
            let text = std::str::from_utf8(&line).unwrap_or_default();
            let size_text = text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| Failure::connection(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body.freeze());
            }
            if body.len() + size > MAX_BODY_BYTES {
                return Err(Failure::connection("chunked response body too large"));
            }
            while self.read.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.read[..size]);
            self.read.advance(size + 2);
        }
    }

    async fn read_to_end(&mut self) -> Result<Bytes, Failure> {
        loop {
            if self.read.len() > MAX_BODY_BYTES {
                return Err(Failure::connection("response body too large"));
            }
            let read = self
                .stream
                .read_buf(&mut self.read)
                .await
                .map_err(|error| Failure::connection(format!("read the response: {error}")))?;
            if read == 0 {
                self.closed = true;
                return Ok(self.read.split().freeze());
            }
        }
    }
}

/// The `timeout=N` parameter of a `Keep-Alive` header, in seconds.
fn keep_alive_timeout(value: &str) -> Option<Duration> {
    value.split(',').find_map(|parameter| {
        let (name, seconds) = parameter.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("timeout") {
            return None;
        }
        seconds.trim().parse().ok().map(Duration::from_secs)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Whether a call's answer must carry the call's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerIds {
    /// The answer's id must be the request's: any real MCP server.
    Matched,
    /// Any id is accepted: for a canned server that answers every request with the same bytes
    /// (the benches' bare-HTTP baseline), which still has its answers parsed and judged.
    Ignored,
}

/// A successful call's answer as it arrived, for callers that keep it (the benches replay a
/// bridge's answer from a bare HTTP server).
#[derive(Debug, Clone)]
pub struct Answer {
    pub content_type: String,
    pub body: Bytes,
}

/// An MCP session on a keep-alive connection: `initialize` gave it an `Mcp-Session-Id`, which
/// every later request repeats. The session outlives its connections: one retired before the
/// server's idle timeout is replaced by a new one on the next call.
pub struct Session {
    /// `None` after the connection was retired.
    connection: Option<Connection>,
    /// Set when a call failed on the connection: the session is not used again.
    broken: bool,
    target: Arc<Target>,
    /// `None` for a [`Session::stateless`] client, which sends no `Mcp-Session-Id`.
    session_id: Option<String>,
    authorization: Option<String>,
    ids: AnswerIds,
    next_id: u64,
    body: Vec<u8>,
}

impl Session {
    /// Connects and runs the handshake: `initialize`, then `notifications/initialized`.
    pub async fn open(target: Arc<Target>) -> Result<Session, Failure> {
        let mut connection = Connection::connect(&target).await?;
        let authorization = target.token.as_ref().map(|token| format!("Bearer {token}"));
        let initialize = initialize_request(0);
        let mut headers = vec![BASE_HEADERS[0], BASE_HEADERS[1]];
        if let Some(authorization) = &authorization {
            headers.push(("Authorization", authorization));
        }
        let response = connection
            .request(
                "POST",
                &target,
                &target.path,
                &headers,
                initialize.as_bytes(),
            )
            .await?;
        if response.status != 200 {
            return Err(Failure::new(
                ErrorKind::HttpStatus,
                format!(
                    "initialize answered HTTP {}: {}",
                    response.status,
                    snippet(&response.body)
                ),
            ));
        }
        let answer = parse_answer(&response)?;
        if answer.get("result").is_none() {
            return Err(Failure::new(
                ErrorKind::JsonRpc,
                format!("initialize failed: {answer}"),
            ));
        }
        let Some(session_id) = response.session_id else {
            return Err(Failure::new(
                ErrorKind::Protocol,
                "initialize answered without an Mcp-Session-Id header",
            ));
        };
        let mut session = Session {
            connection: Some(connection),
            broken: false,
            target,
            session_id: Some(session_id),
            authorization,
            ids: AnswerIds::Matched,
            next_id: 1,
            body: Vec::with_capacity(512),
        };
        let response = session.post(INITIALIZED_NOTIFICATION).await?;
        if response.status != 202 && response.status != 200 {
            return Err(Failure::new(
                ErrorKind::HttpStatus,
                format!(
                    "notifications/initialized answered HTTP {}",
                    response.status
                ),
            ));
        }
        Ok(session)
    }

    /// Connects without a handshake: calls go out with no `Mcp-Session-Id`, as to a server
    /// that keeps no sessions.
    pub async fn stateless(target: Arc<Target>, ids: AnswerIds) -> Result<Session, Failure> {
        let connection = Connection::connect(&target).await?;
        let authorization = target.token.as_ref().map(|token| format!("Bearer {token}"));
        Ok(Session {
            connection: Some(connection),
            broken: false,
            target,
            session_id: None,
            authorization,
            ids,
            next_id: 1,
            body: Vec::with_capacity(512),
        })
    }

    /// Whether the session can carry another call.
    pub fn usable(&self) -> bool {
        !self.broken
    }

    /// How many `tools/call` requests the session has sent, answered or not.
    pub fn calls_sent(&self) -> u64 {
        self.next_id - 1
    }

    /// Closes the connection when it has been idle too close to the server's advertised
    /// keep-alive timeout (or the server closed it); the next call opens a new one. Called on
    /// idle sessions, so a connection is retired before the server would close it.
    pub fn retire_idle_connection(&mut self, now: Instant) {
        if self
            .connection
            .as_ref()
            .is_some_and(|connection| connection.should_retire(now))
        {
            self.connection = None;
        }
    }

    async fn post(&mut self, body: &[u8]) -> Result<Response, Failure> {
        let mut headers = vec![BASE_HEADERS[0], BASE_HEADERS[1]];
        if let Some(session_id) = &self.session_id {
            headers.push(("Mcp-Session-Id", session_id));
            headers.push(("MCP-Protocol-Version", PROTOCOL_VERSION));
        }
        if let Some(authorization) = &self.authorization {
            headers.push(("Authorization", authorization));
        }
        let response = match current_connection(&mut self.connection, &self.target).await {
            Ok(connection) => {
                connection
                    .request("POST", &self.target, &self.target.path, &headers, body)
                    .await
            }
            Err(failure) => Err(failure),
        };
        // A failure leaves the connection out of step (or there is none): the session ends.
        self.broken = response.is_err();
        response
    }

    /// Sends one `tools/call` whose `params` are given as JSON text, and judges the answer: it
    /// succeeds with HTTP 200 and a JSON-RPC result with the request's id (unless the session
    /// ignores ids), no `error` and no `isError: true`.
    pub async fn call(&mut self, params_json: &str) -> Result<Answer, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        write_call(&mut body, id, params_json);
        let response = self.post(&body).await;
        self.body = body;
        let response = response?;
        if response.status != 200 {
            return Err(Failure::new(
                ErrorKind::HttpStatus,
                format!("HTTP {}: {}", response.status, snippet(&response.body)),
            ));
        }
        let answer = parse_answer(&response)?;
        let expected_id = (self.ids == AnswerIds::Matched).then_some(id);
        check_call_result(&answer, expected_id)?;
        Ok(Answer {
            content_type: response.content_type,
            body: response.body,
        })
    }

    /// Ends the session with `DELETE`, so the bridge frees it now instead of at its idle
    /// timeout. Best effort: the run is over either way.
    pub async fn close(mut self) {
        if self.broken {
            return;
        }
        let Some(session_id) = self.session_id.take() else {
            return;
        };
        let mut headers = vec![
            ("Mcp-Session-Id", session_id.as_str()),
            ("MCP-Protocol-Version", PROTOCOL_VERSION),
        ];
        if let Some(authorization) = &self.authorization {
            headers.push(("Authorization", authorization));
        }
        let Ok(connection) = current_connection(&mut self.connection, &self.target).await else {
            return;
        };
        let _ = connection
            .request("DELETE", &self.target, &self.target.path, &headers, &[])
            .await;
    }
}

/// The connection to send on: the current one unless it should be retired, else a new one.
async fn current_connection<'a>(
    slot: &'a mut Option<Connection>,
    target: &Target,
) -> Result<&'a mut Connection, Failure> {
    if slot
        .as_ref()
        .is_some_and(|connection| connection.should_retire(Instant::now()))
    {
        *slot = None;
    }
    match slot {
        Some(connection) => Ok(connection),
        None => Ok(slot.insert(Connection::connect(target).await?)),
    }
}

/// Headers every MCP POST carries.
const BASE_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];

/// The JSON-RPC answer in a response: the body itself, or the last `data:` event of an SSE
/// stream (notifications come first, the answer last).
fn parse_answer(response: &Response) -> Result<Value, Failure> {
    let protocol = |message: String| Failure::new(ErrorKind::Protocol, message);
    if response.content_type.starts_with("text/event-stream") {
        let text = std::str::from_utf8(&response.body)
            .map_err(|_| protocol("the SSE body is not UTF-8".to_owned()))?;
        let data = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .next_back()
            .ok_or_else(|| protocol("an SSE stream without a data event".to_owned()))?;
        return serde_json::from_str(data.trim())
            .map_err(|error| protocol(format!("SSE data is not JSON: {error}")));
    }
    serde_json::from_slice(&response.body).map_err(|error| {
        protocol(format!(
            "the answer is not JSON ({error}): {}",
            snippet(&response.body)
        ))
    })
}

/// The `initialize` request this client sends (protocol [`PROTOCOL_VERSION`], no
/// capabilities), as JSON text.
pub fn initialize_request(id: u64) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "mcp-bridge-bench-load", "version": env!("CARGO_PKG_VERSION") },
        },
    })
    .to_string()
}

/// The `notifications/initialized` notification that ends the handshake.
pub const INITIALIZED_NOTIFICATION: &[u8] =
    br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// Appends a `tools/call` request with this id and `params` (JSON text) to `out`, without
/// parsing or re-serializing the parameters.
pub fn write_call(out: &mut Vec<u8>, id: u64, params_json: &str) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{id}");
    out.extend_from_slice(br#","method":"tools/call","params":"#);
    out.extend_from_slice(params_json.as_bytes());
    out.push(b'}');
}

/// Judges a `tools/call` answer: a JSON-RPC result (with `expected_id`, when given) that is
/// not a tool error.
pub fn check_call_result(answer: &Value, expected_id: Option<u64>) -> Result<(), Failure> {
    if let Some(error) = answer.get("error") {
        return Err(Failure::new(
            ErrorKind::JsonRpc,
            format!("JSON-RPC error: {error}"),
        ));
    }
    if let Some(expected_id) = expected_id
        && answer.get("id").and_then(Value::as_u64) != Some(expected_id)
    {
        return Err(Failure::new(
            ErrorKind::Protocol,
            format!(
                "answer has id {:?}, expected {expected_id}",
                answer.get("id")
            ),
        ));
    }
    let Some(result) = answer.get("result") else {
        return Err(Failure::new(
            ErrorKind::Protocol,
            format!("answer has neither result nor error: {answer}"),
        ));
    };
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let text = result
            .pointer("/content/0/text")
            .and_then(Value::as_str)
            .map_or_else(|| result.to_string(), str::to_owned);
        return Err(Failure::new(ErrorKind::Tool, format!("tool error: {text}")));
    }
    Ok(())
}

/// The start of a body, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.trim().to_owned()
}

/// `GET path` with the admin token on a fresh connection: the status and body.
pub async fn admin_get(target: &Target, path: &str) -> Result<(u16, Bytes), Failure> {
    let mut connection = Connection::connect(target).await?;
    let authorization = target
        .admin_token
        .as_ref()
        .map(|token| format!("Bearer {token}"));
    let mut headers = Vec::new();
    if let Some(authorization) = &authorization {
        headers.push(("Authorization", authorization.as_str()));
    }
    let response = connection
        .request("GET", target, path, &headers, &[])
        .await?;
    Ok((response.status, response.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_keep_alive_timeout_is_read() {
        assert_eq!(
            keep_alive_timeout("timeout=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            keep_alive_timeout("max=100, Timeout = 5"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(keep_alive_timeout("max=100"), None);
        assert_eq!(keep_alive_timeout("timeout=soon"), None);
    }

    #[test]
    fn connections_retire_well_before_the_advertised_timeout() {
        assert_eq!(
            retire_after(Duration::from_secs(300)),
            Duration::from_secs(225)
        );
        assert_eq!(
            retire_after(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(retire_after(Duration::from_millis(300)), Duration::ZERO);
    }
}
