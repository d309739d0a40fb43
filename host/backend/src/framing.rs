//! Newline-delimited framing for a child's stdout and stderr, with a hard cap on line length.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One read from a line-framed stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line without its terminator (a trailing `\r` is stripped too).
    Line(Vec<u8>),
    /// A line longer than the cap; its bytes were discarded except a short head and
    /// tail, enough to find the JSON-RPC id of a response and fail just that call.
    TooLong {
        length: usize,
        head: Vec<u8>,
        tail: Vec<u8>,
    },
    /// The stream ended.
    Eof,
}

/// Reads newline-delimited frames, never buffering more than `max_line_bytes` of one
/// line: a child that writes a gigabyte without a newline costs the host nothing.
pub struct LineReader<R> {
    inner: R,
    max_line_bytes: usize,
    line: Vec<u8>,
    head: Vec<u8>,
    tail: Vec<u8>,
}

/// How many bytes of each end of an oversized line are kept.
const KEPT_EDGE_BYTES: usize = 256;

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max_line_bytes: usize) -> Self {
        LineReader {
            inner,
            max_line_bytes,
            line: Vec::new(),
            head: Vec::new(),
            tail: Vec::new(),
        }
    }

    /// Returns the next frame. Blank lines are skipped, since some servers pad output.
    pub async fn next_frame(&mut self) -> std::io::Result<Frame> {
        loop {
            let frame = self.read_one().await?;
            match &frame {
                Frame::Line(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
                _ => return Ok(frame),
            }
        }
    }

    async fn read_one(&mut self) -> std::io::Result<Frame> {
        self.line.clear();
        self.head.clear();
        self.tail.clear();
        let mut overflow: usize = 0;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                // A final line without a newline still counts as a line.
                if overflow > 0 {
                    return Ok(self.too_long(overflow));
                }
                if self.line.is_empty() {
                    return Ok(Frame::Eof);
                }
                return Ok(Frame::Line(std::mem::take(&mut self.line)));
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk_len = newline.unwrap_or(available.len());
            if overflow > 0 || self.line.len() + chunk_len > self.max_line_bytes {
                if overflow == 0 {
                    let kept = self.line.len().min(KEPT_EDGE_BYTES);
                    self.head.extend_from_slice(&self.line[..kept]);
                    self.tail
                        .extend_from_slice(&self.line[self.line.len() - kept..]);
                }
                overflow += self.line.len() + chunk_len;
                self.line.clear();
                let chunk = &available[..chunk_len];
                self.tail
                    .extend_from_slice(&chunk[chunk.len().saturating_sub(KEPT_EDGE_BYTES)..]);
                let excess = self.tail.len().saturating_sub(KEPT_EDGE_BYTES);
                self.tail.drain(..excess);
            } else {
                self.line.extend_from_slice(&available[..chunk_len]);
            }
            let consumed = newline.map_or(chunk_len, |at| at + 1);
            self.inner.consume(consumed);
            if newline.is_some() {
                if overflow > 0 {
                    return Ok(self.too_long(overflow));
                }
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                return Ok(Frame::Line(std::mem::take(&mut self.line)));
            }
        }
    }
}

impl<R> LineReader<R> {
    fn too_long(&mut self, length: usize) -> Frame {
        Frame::TooLong {
            length,
            head: std::mem::take(&mut self.head),
            tail: std::mem::take(&mut self.tail),
        }
    }
}

/// Finds a numeric `"id":N` in the kept edges of an oversized line. Servers put `id`
/// first or last, so one of the edges has it when the line is a response.
pub(crate) fn find_numeric_id(head: &[u8], tail: &[u8]) -> Option<u64> {
    [head, tail].into_iter().find_map(|edge| {
        let text = String::from_utf8_lossy(edge);
        let start = text.rfind("\"id\":")? + 5;
        let digits: String = text[start..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn frames(input: &[u8], cap: usize) -> Vec<Frame> {
        // A tiny buffer makes lines straddle many reads, which is the interesting case.
        let mut reader = LineReader::new(BufReader::with_capacity(3, input), cap);
        let mut out = Vec::new();
        loop {
            let frame = reader.next_frame().await.unwrap_or(Frame::Eof);
            let done = frame == Frame::Eof;
            out.push(frame);
            if done {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn splits_lines_and_caps_long_ones() {
        let got = frames(b"abc\r\n\n0123456789\nxy\nlast", 5).await;
        assert_eq!(
            got,
            vec![
                Frame::Line(b"abc".to_vec()),
                Frame::TooLong {
                    length: 10,
                    head: b"012".to_vec(),
                    tail: b"0123456789".to_vec()
                },
                Frame::Line(b"xy".to_vec()),
                Frame::Line(b"last".to_vec()),
                Frame::Eof,
            ]
        );
    }

    #[test]
    fn finds_the_id_of_an_oversized_response() {
        assert_eq!(
            find_numeric_id(br#"{"jsonrpc":"2.0","id":42,"result":{"#, b"..."),
            Some(42)
        );
        assert_eq!(
            find_numeric_id(
                b"{\"result\":{\"x\":\"",
                br#"...."},"jsonrpc":"2.0","id": 7}"#
            ),
            Some(7)
        );
        assert_eq!(find_numeric_id(b"garbage", b"garbage"), None);
    }
}
