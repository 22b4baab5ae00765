//! HTTP/1.1 on the client side: prebuilt request bytes and a response reader that consumes
//! exactly one response (Content-Length, chunked or until close) without keeping the body.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Builds the complete bytes of one request (head and body), once, to be reused for every send.
pub fn build_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(String, String)],
    body: Option<(&[u8], &str)>,
    close: bool,
) -> Vec<u8> {
    let body_len = body.map_or(0, |(b, _)| b.len());
    let mut out = Vec::with_capacity(256 + body_len);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("user-agent") {
        out.extend_from_slice(b"User-Agent: certgate-loadgen\r\n");
    }
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some((b, content_type)) = body {
        if !has("content-type") {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(content_type.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
    }
    if close && !has("connection") {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if let Some((b, _)) = body {
        out.extend_from_slice(b);
    }
    out
}

/// Why a response could not be read.
#[derive(Debug)]
pub enum ResponseError {
    /// The transport failed (including TLS errors surfaced as I/O errors).
    Io(io::Error),
    /// The peer closed the connection before a complete response.
    Closed {
        /// Whether any byte of the response had been received.
        partial: bool,
    },
    /// The response is not valid HTTP/1.1 (the message says why).
    Protocol(&'static str),
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseError::Io(e) => write!(f, "{e}"),
            ResponseError::Closed { partial: false } => {
                f.write_str("connection closed before a response")
            }
            ResponseError::Closed { partial: true } => {
                f.write_str("connection closed in the middle of a response")
            }
            ResponseError::Protocol(m) => write!(f, "invalid response: {m}"),
        }
    }
}

/// What one response was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Status code of the final (non-1xx) response.
    pub status: u16,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
    /// Bytes of the response consumed from the stream (heads, body, framing).
    pub bytes: u64,
}

/// How a response body is delimited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many more bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
    /// Everything until the peer closes.
    UntilClose,
}

impl Framing {
    /// Consumes body bytes from `data`: returns how many were used and whether the body is done.
    /// `UntilClose` is never done here; the caller ends it at EOF.
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), &'static str> {
        match self {
            Framing::Empty => Ok((0, true)),
            Framing::Length(rem) => {
                let n = (*rem).min(data.len() as u64);
                *rem -= n;
                Ok((n as usize, *rem == 0))
            }
            Framing::Chunked(d) => d.feed(data),
            Framing::UntilClose => Ok((data.len(), false)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading hex digits of a chunk size.
    Size,
    /// After the size: optional whitespace / extensions until CR LF.
    SizeExt,
    /// Expecting LF after CR of the size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    TrailerLine,
    /// Expecting LF of a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// Incremental decoder of the chunked transfer coding that only tracks framing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    digits: u32,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            size: 0,
            digits: 0,
        }
    }

    /// Consumes bytes: returns how many were used and whether the body (with trailers) is done.
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), &'static str> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.state {
                ChunkState::Size => {
                    if let Some(v) = (b as char).to_digit(16) {
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err("chunk size too large");
                        }
                        self.size = self.size * 16 + u64::from(v);
                    } else if self.digits == 0 {
                        return Err("missing chunk size");
                    } else if b == b'\r' {
                        self.state = ChunkState::SizeLf;
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        self.state = ChunkState::SizeExt;
                    } else {
                        return Err("invalid chunk size");
                    }
                    i += 1;
                }
                ChunkState::SizeExt => {
                    if b == b'\r' {
                        self.state = ChunkState::SizeLf;
                    } else if b == b'\n' {
                        return Err("bare LF in chunk size line");
                    }
                    i += 1;
                }
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Err("expected LF after chunk size");
                    }
                    i += 1;
                    self.digits = 0;
                    if self.size == 0 {
                        self.state = ChunkState::TrailerStart;
                    } else {
                        self.state = ChunkState::Data;
                    }
                }
                ChunkState::Data => {
                    let n = self.size.min((data.len() - i) as u64);
                    self.size -= n;
                    i += n as usize;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err("expected CRLF after chunk data");
                    }
                    self.state = ChunkState::DataLf;
                    i += 1;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err("expected CRLF after chunk data");
                    }
                    self.state = ChunkState::Size;
                    i += 1;
                }
                ChunkState::TrailerStart => {
                    self.state = if b == b'\r' {
                        ChunkState::EndLf
                    } else {
                        ChunkState::TrailerLine
                    };
                    i += 1;
                }
                ChunkState::TrailerLine => {
                    if b == b'\r' {
                        self.state = ChunkState::TrailerLf;
                    }
                    i += 1;
                }
                ChunkState::TrailerLf => {
                    if b != b'\n' {
                        return Err("expected LF in trailer");
                    }
                    self.state = ChunkState::TrailerStart;
                    i += 1;
                }
                ChunkState::EndLf => {
                    if b != b'\n' {
                        return Err("expected LF at the end of a chunked body");
                    }
                    self.state = ChunkState::Done;
                    return Ok((i + 1, true));
                }
                ChunkState::Done => return Ok((i, true)),
            }
        }
        Ok((i, self.state == ChunkState::Done))
    }
}

/// The head of a response as far as framing is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Length of the head in bytes.
    pub len: usize,
    /// Body framing.
    pub framing: Framing,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
}

const MAX_HEADERS: usize = 64;

/// Parses a response head at the start of `buf`; `Ok(None)` means more bytes are needed.
/// `head_request` is true when the request was HEAD (no body whatever the headers say).
pub fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("too many headers"),
        Err(_) => return Err("malformed response head"),
    };
    let status = resp.code.ok_or("missing status")?;
    let http10 = resp.version == Some(0);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut close = http10;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or("invalid Content-Length")?;
            if content_length.is_some_and(|c| c != v) {
                return Err("conflicting Content-Length headers");
            }
            content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = std::str::from_utf8(h.value).map_err(|_| "invalid Transfer-Encoding")?;
            let last = v.rsplit(',').next().unwrap_or("").trim();
            if last.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else {
                // Not chunked-terminated: the body runs until close (RFC 9112 6.3).
                chunked = false;
                close = true;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else if chunked {
        Framing::Chunked(ChunkedDecoder::new())
    } else if let Some(n) = content_length {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    } else {
        // No length and not chunked: the body is delimited by the connection close.
        close = true;
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        len,
        framing,
        keep_alive: !close,
    }))
}

/// A reusable receive buffer for one connection.
pub struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    initial: usize,
}

/// Largest response head accepted.
const MAX_HEAD: usize = 1 << 20;

impl Default for RecvBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBuf {
    /// An empty buffer (16 KiB, allocated on first use).
    pub fn new() -> Self {
        Self::with_capacity(16 * 1024)
    }

    /// An empty buffer of `initial` bytes (allocated on first use; grows for large heads).
    pub fn with_capacity(initial: usize) -> Self {
        RecvBuf {
            buf: Vec::new(),
            start: 0,
            end: 0,
            initial: initial.max(64),
        }
    }

    /// Bytes received but not consumed yet.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Forgets any pending bytes (before reuse on a new connection), keeping the memory.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Frees the memory when nothing is pending (for connections that will sit idle).
    pub fn release(&mut self) {
        if self.pending() == 0 {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes from `stream` into free space; returns 0 at EOF.
    async fn fill<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.buf = vec![0; self.initial];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            } else {
                return Err(io::Error::other("response head too large"));
            }
        }
        let n = stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Reads exactly one response from `stream` (skipping 1xx interim responses).
    pub async fn read_response<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        head_request: bool,
    ) -> Result<ResponseInfo, ResponseError> {
        let mut bytes: u64 = 0;
        let head = loop {
            match parse_head(&self.buf[self.start..self.end], head_request) {
                Ok(Some(h)) => {
                    self.start += h.len;
                    bytes += h.len as u64;
                    if (100..200).contains(&h.status) {
                        if h.status == 101 {
                            return Err(ResponseError::Protocol("unexpected 101 upgrade"));
                        }
                        continue;
                    }
                    break h;
                }
                Ok(None) => {}
                Err(m) => return Err(ResponseError::Protocol(m)),
            }
            let partial = bytes > 0 || self.pending() > 0;
            match self.fill(stream).await {
                Ok(0) => return Err(ResponseError::Closed { partial }),
                Ok(_) => {}
                Err(e) => return Err(ResponseError::Io(e)),
            }
        };
        let mut framing = head.framing;
        loop {
            let (used, done) = framing
                .feed(&self.buf[self.start..self.end])
                .map_err(ResponseError::Protocol)?;
            self.start += used;
            bytes += used as u64;
            if done {
                break;
            }
            match self.fill(stream).await {
                Ok(0) if framing == Framing::UntilClose => {
                    return Ok(ResponseInfo {
                        status: head.status,
                        keep_alive: false,
                        bytes,
                    })
                }
                Ok(0) => return Err(ResponseError::Closed { partial: true }),
                Ok(_) => {}
                Err(e) => return Err(ResponseError::Io(e)),
            }
        }
        Ok(ResponseInfo {
            status: head.status,
            keep_alive: head.keep_alive,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::ReadBuf;

    /// A stream that hands out its data in fixed-size pieces.
    struct Pieces {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self
                .step
                .min(self.data.len() - self.pos)
                .min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Reads responses from `data` with every piece size, returning the infos of each pass.
    fn read_all(data: &[u8], head_request: bool) -> Vec<Result<ResponseInfo, String>> {
        let mut results: Option<Vec<Result<ResponseInfo, String>>> = None;
        let cases = [1, 2, 3, 7, 64, 100_000]
            .into_iter()
            .flat_map(|step| [(step, 64), (step, 16 * 1024)]);
        for (step, cap) in cases {
            let mut s = Pieces {
                data: data.to_vec(),
                pos: 0,
                step,
            };
            let mut rb = RecvBuf::with_capacity(cap);
            let mut out = Vec::new();
            block_on(async {
                loop {
                    match rb.read_response(&mut s, head_request).await {
                        Ok(info) => {
                            let ka = info.keep_alive;
                            out.push(Ok(info));
                            if !ka {
                                break;
                            }
                        }
                        Err(ResponseError::Closed { partial: false }) => break,
                        Err(e) => {
                            out.push(Err(e.to_string()));
                            break;
                        }
                    }
                }
            });
            if let Some(prev) = &results {
                assert_eq!(
                    prev, &out,
                    "piece size {step}, buffer {cap} changed the result"
                );
            }
            results = Some(out);
        }
        results.unwrap()
    }

    #[test]
    fn request_bytes() {
        let r = build_request("GET", "/p", "h:1", &[], None, false);
        assert_eq!(
            r,
            b"GET /p HTTP/1.1\r\nHost: h:1\r\nUser-Agent: certgate-loadgen\r\n\r\n"
        );
        let r = build_request(
            "POST",
            "/",
            "h",
            &[("X-A".into(), "1".into())],
            Some((b"abc", "text/plain")),
            true,
        );
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("POST / HTTP/1.1\r\nHost: h\r\n"));
        assert!(s.contains("X-A: 1\r\n"));
        assert!(s.contains("Content-Type: text/plain\r\nContent-Length: 3\r\n"));
        assert!(s.ends_with("Connection: close\r\n\r\nabc"));
    }

    #[test]
    fn content_length_keepalive_sequence() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        let r = read_all(data, false);
        assert_eq!(
            r,
            vec![
                Ok(ResponseInfo {
                    status: 200,
                    keep_alive: true,
                    bytes: 40
                }),
                Ok(ResponseInfo {
                    status: 404,
                    keep_alive: true,
                    bytes: 45
                }),
                Ok(ResponseInfo {
                    status: 200,
                    keep_alive: false,
                    bytes: 62
                }),
            ]
        );
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n";
        let r = read_all(data, false);
        assert_eq!(r.len(), 2);
        let first = r[0].as_ref().unwrap();
        assert_eq!(first.status, 200);
        assert!(first.keep_alive);
        assert_eq!(first.bytes as usize, data.len() - 27);
        assert_eq!(r[1].as_ref().unwrap().status, 204);
    }

    #[test]
    fn interim_and_head_and_until_close() {
        let data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        let r = read_all(data, false);
        assert_eq!(r[0].as_ref().unwrap().status, 200);
        assert_eq!(r[0].as_ref().unwrap().bytes as usize, data.len());
        // HEAD: Content-Length describes the GET body, none follows.
        let data = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let r = read_all(data, true);
        assert_eq!(r.len(), 2);
        // No length: read until close.
        let data = b"HTTP/1.1 200 OK\r\n\r\nsome body that ends at EOF";
        let r = read_all(data, false);
        assert_eq!(
            r,
            vec![Ok(ResponseInfo {
                status: 200,
                keep_alive: false,
                bytes: data.len() as u64
            })]
        );
        // HTTP/1.0 defaults to close.
        let r = read_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!r[0].as_ref().unwrap().keep_alive);
    }

    #[test]
    fn truncated_and_malformed() {
        let r = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", false);
        assert_eq!(
            r,
            vec![Err("connection closed in the middle of a response".into())]
        );
        let r = read_all(b"HTTP/1.1 200 OK\r\nContent-Le", false);
        assert_eq!(
            r,
            vec![Err("connection closed in the middle of a response".into())]
        );
        let r = read_all(b"garbage\r\n\r\n", false);
        assert!(r[0].as_ref().unwrap_err().starts_with("invalid response"));
        let r = read_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            false,
        );
        assert!(r[0].as_ref().unwrap_err().contains("chunk"));
        let r = read_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            false,
        );
        assert!(r[0].as_ref().unwrap_err().contains("Content-Length"));
    }

    #[test]
    fn chunked_decoder_byte_by_byte() {
        let body = b"3\r\nabc\r\n0\r\n\r\nTAIL";
        let mut d = ChunkedDecoder::new();
        let mut used = 0;
        let mut done = false;
        for i in 0..body.len() {
            let (n, fin) = d.feed(&body[i..=i]).unwrap();
            used += n;
            if fin {
                done = true;
                break;
            }
        }
        assert!(done);
        assert_eq!(used, body.len() - 4);
        // Feeding everything at once stops at the same place.
        let (n, fin) = ChunkedDecoder::new().feed(body).unwrap();
        assert!(fin);
        assert_eq!(n, body.len() - 4);
    }

    #[test]
    fn large_head_grows_buffer() {
        let mut data = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..40 {
            data.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(1000)).as_bytes());
        }
        data.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        let r = read_all(&data, false);
        assert_eq!(r[0].as_ref().unwrap().bytes as usize, data.len());
    }
}
