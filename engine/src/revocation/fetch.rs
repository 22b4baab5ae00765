//! Fetching a CRL over plain `http://` (blocking, on the CRL updater's thread): bounded in
//! time and size, a few redirects, `Content-Length`, chunked or read-to-close bodies.
//!
//! `https://` is refused: CRLs are signed, so TLS adds nothing, and RFC 5280 distribution
//! points are `http://` by convention (a TLS CRL fetch would itself need revocation data).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bounds of one fetch.
#[derive(Clone, Debug)]
pub struct FetchLimits {
    /// Connect timeout, and the longest time without receiving a byte.
    pub timeout: Duration,
    /// Time allowed for the whole fetch, redirects included.
    pub total: Duration,
    /// Largest body accepted.
    pub max_bytes: u64,
    /// Redirects followed (to `http://` only).
    pub max_redirects: u8,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            timeout: Duration::from_secs(10),
            total: Duration::from_secs(300),
            max_bytes: 256 << 20,
            max_redirects: 3,
        }
    }
}

/// Why a fetch failed; every message names the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an `http://` URL (`https://` is refused on purpose).
    #[error("{url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Name resolution or connection failed.
    #[error("{url}: cannot connect: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No byte within the timeout, or the whole fetch took too long.
    #[error("{url}: timed out after {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The limit that was hit.
        after: Duration,
    },
    /// The server answered something other than 200.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than the limit.
    #[error("{url}: response larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The response is not valid HTTP/1.x.
    #[error("{url}: malformed HTTP response: {reason}")]
    Malformed {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// More redirects than allowed.
    #[error("{url}: more than {limit} redirects")]
    TooManyRedirects {
        /// The first URL.
        url: String,
        /// The limit.
        limit: u8,
    },
    /// The updater is stopping.
    #[error("{url}: fetch abandoned: shutting down")]
    Stopped {
        /// The URL.
        url: String,
    },
}

/// An `http://` URL taken apart.
#[derive(Debug, PartialEq, Eq)]
struct HttpUrl {
    /// `host` or `host:port` as written, for the Host header.
    authority: String,
    /// `host:port` for connecting (brackets kept around IPv6 literals).
    connect: String,
    /// Path and query, at least "/".
    path: String,
}

fn parse_url(url: &str) -> Result<HttpUrl, FetchError> {
    let err = |reason| FetchError::Url {
        url: url.to_owned(),
        reason,
    };
    let scheme_end = url.find("://").ok_or_else(|| err("not a URL"))?;
    let scheme = &url[..scheme_end];
    if scheme.eq_ignore_ascii_case("https") {
        return Err(err(
            "https is not supported for CRLs (they are signed; use the http:// distribution point)",
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(err("only http:// URLs are supported"));
    }
    let rest = &url[scheme_end + 3..];
    let rest = rest.split('#').next().unwrap_or(rest);
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(err("missing host, or credentials in the URL"));
    }
    if authority.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(err("invalid character in host"));
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let connect = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(err("invalid character in path"));
    }
    Ok(HttpUrl {
        authority: authority.to_owned(),
        connect,
        path,
    })
}

/// GETs `url` and returns the body of a 200 answer. Blocking; gives up when `stop` is set.
pub fn fetch(url: &str, limits: &FetchLimits, stop: &AtomicBool) -> Result<Vec<u8>, FetchError> {
    let deadline = Instant::now() + limits.total;
    let mut current = url.to_owned();
    for _ in 0..=limits.max_redirects {
        match fetch_once(&current, limits, deadline, stop)? {
            Answer::Body(body) => return Ok(body),
            Answer::Redirect(location) => {
                current = if location.starts_with('/') {
                    let base = parse_url(&current)?;
                    format!("http://{}{location}", base.authority)
                } else {
                    location
                };
            }
        }
    }
    Err(FetchError::TooManyRedirects {
        url: url.to_owned(),
        limit: limits.max_redirects,
    })
}

enum Answer {
    Body(Vec<u8>),
    Redirect(String),
}

/// A connection with a read buffer, every read bounded by the limits and the stop flag.
struct Conn<'a> {
    url: &'a str,
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    limits: &'a FetchLimits,
    deadline: Instant,
    stop: &'a AtomicBool,
}

/// How often a blocked read looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);

impl Conn<'_> {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes into the buffer; Ok(0) at end of stream.
    fn fill(&mut self) -> Result<usize, FetchError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let idle_since = Instant::now();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(FetchError::Stopped {
                    url: self.url.to_owned(),
                });
            }
            let now = Instant::now();
            if now >= self.deadline {
                return Err(FetchError::Timeout {
                    url: self.url.to_owned(),
                    after: self.limits.total,
                });
            }
            if now.duration_since(idle_since) >= self.limits.timeout {
                return Err(FetchError::Timeout {
                    url: self.url.to_owned(),
                    after: self.limits.timeout,
                });
            }
            let wait = POLL
                .min(self.deadline - now)
                .min(self.limits.timeout - now.duration_since(idle_since))
                .max(Duration::from_millis(1));
            self.stream
                .set_read_timeout(Some(wait))
                .map_err(|source| self.io(source))?;
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(source) => return Err(self.io(source)),
            }
        }
    }

    fn io(&self, source: std::io::Error) -> FetchError {
        FetchError::Io {
            url: self.url.to_owned(),
            source,
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> FetchError {
        FetchError::Malformed {
            url: self.url.to_owned(),
            reason: reason.into(),
        }
    }

    fn too_large(&self) -> FetchError {
        FetchError::TooLarge {
            url: self.url.to_owned(),
            limit: self.limits.max_bytes,
        }
    }

    /// One line without its CRLF (chunk sizes and trailers).
    fn line(&mut self) -> Result<String, FetchError> {
        loop {
            if let Some(i) = self.buffered().iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.buffered()[..i])
                    .trim_end_matches('\r')
                    .to_owned();
                self.pos += i + 1;
                return Ok(line);
            }
            if self.buffered().len() > 4096 {
                return Err(self.malformed("line too long in chunked body"));
            }
            if self.fill()? == 0 {
                return Err(self.malformed("connection closed inside a chunked body"));
            }
        }
    }

    /// Moves `n` bytes to `out`.
    fn take(&mut self, out: &mut Vec<u8>, mut n: u64) -> Result<(), FetchError> {
        while n > 0 {
            if self.buffered().is_empty() && self.fill()? == 0 {
                return Err(self.malformed("connection closed before the end of the body"));
            }
            let avail = self
                .buffered()
                .len()
                .min(usize::try_from(n).unwrap_or(usize::MAX));
            out.extend_from_slice(&self.buf[self.pos..self.pos + avail]);
            self.pos += avail;
            n -= avail as u64;
        }
        Ok(())
    }

    fn read_to_close(&mut self, out: &mut Vec<u8>) -> Result<(), FetchError> {
        loop {
            out.extend_from_slice(self.buffered());
            self.pos = self.buf.len();
            if out.len() as u64 > self.limits.max_bytes {
                return Err(self.too_large());
            }
            if self.fill()? == 0 {
                return Ok(());
            }
        }
    }

    fn chunked(&mut self, out: &mut Vec<u8>) -> Result<(), FetchError> {
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| self.malformed(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                // Trailers up to the empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            if out.len() as u64 + size > self.limits.max_bytes {
                return Err(self.too_large());
            }
            self.take(out, size)?;
            if !self.line()?.is_empty() {
                return Err(self.malformed("chunk not followed by CRLF"));
            }
        }
    }
}

fn fetch_once(
    url: &str,
    limits: &FetchLimits,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Answer, FetchError> {
    let parsed = parse_url(url)?;
    let connect_err = |source| FetchError::Connect {
        url: url.to_owned(),
        source,
    };
    let addrs: Vec<_> = parsed
        .connect
        .to_socket_addrs()
        .map_err(connect_err)?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, limits.timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or_else(|| connect_err(last))?;
    let io = |source| FetchError::Io {
        url: url.to_owned(),
        source,
    };
    stream.set_write_timeout(Some(limits.timeout)).map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: certgate/{}\r\n\
         Accept: application/pkix-crl, application/x-pkcs7-crl, */*\r\nConnection: close\r\n\r\n",
        parsed.path,
        parsed.authority,
        env!("CARGO_PKG_VERSION")
    );
    (&stream).write_all(request.as_bytes()).map_err(io)?;

    let mut conn = Conn {
        url,
        stream,
        buf: Vec::with_capacity(64 * 1024),
        pos: 0,
        limits,
        deadline,
        stop,
    };
    // Response head (skipping 1xx interim answers).
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let status = response.parse(conn.buffered());
        match status {
            Ok(httparse::Status::Complete(head_len)) => {
                let code = response.code.unwrap_or(0);
                let header = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
                };
                let location = header("location");
                let length = header("content-length");
                let chunked = header("transfer-encoding")
                    .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
                conn.pos += head_len;
                if (100..200).contains(&code) {
                    continue;
                }
                if matches!(code, 301 | 302 | 303 | 307 | 308) {
                    let location =
                        location.ok_or_else(|| conn.malformed("redirect without Location"))?;
                    return Ok(Answer::Redirect(location));
                }
                if code != 200 {
                    return Err(FetchError::Status {
                        url: url.to_owned(),
                        status: code,
                    });
                }
                let mut body = Vec::new();
                if chunked {
                    conn.chunked(&mut body)?;
                } else if let Some(length) = length {
                    let length: u64 = length
                        .parse()
                        .map_err(|_| conn.malformed(format!("bad Content-Length {length:?}")))?;
                    if length > limits.max_bytes {
                        return Err(conn.too_large());
                    }
                    body.reserve(usize::try_from(length).unwrap_or(0));
                    conn.take(&mut body, length)?;
                } else {
                    conn.read_to_close(&mut body)?;
                }
                return Ok(Answer::Body(body));
            }
            Ok(httparse::Status::Partial) => {
                if conn.buffered().len() > 64 * 1024 {
                    return Err(conn.malformed("response head larger than 64 KiB"));
                }
                if conn.fill()? == 0 {
                    return Err(conn.malformed("connection closed before the response head"));
                }
            }
            Err(e) => return Err(conn.malformed(e.to_string())),
        }
    }
}

/// A tiny HTTP server on 127.0.0.1 for tests: serves canned responses by path.
#[cfg(test)]
pub(crate) mod test_server {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    /// What the server answers for one path.
    #[derive(Clone)]
    pub enum Reply {
        /// Status and body, with Content-Length.
        Body(u16, Vec<u8>),
        /// 200 with a chunked body in chunks of this size.
        Chunked(Vec<u8>, usize),
        /// 200 without length: `n` zero bytes, then close.
        Stream(usize),
        /// 302 to this location.
        Redirect(String),
        /// Never answers (until the server stops).
        Silent,
    }

    /// The server; stops on drop.
    pub struct TestServer {
        pub addr: SocketAddr,
        pub replies: Arc<Mutex<HashMap<String, Reply>>>,
        pub hits: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl TestServer {
        pub fn start() -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let replies: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
            let hits = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let (r, h, s) = (Arc::clone(&replies), Arc::clone(&hits), Arc::clone(&stop));
            let thread = std::thread::spawn(move || {
                let mut handlers = Vec::new();
                for conn in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (r, h, s) = (Arc::clone(&r), Arc::clone(&h), Arc::clone(&s));
                    handlers.push(std::thread::spawn(move || serve(conn, &r, &h, &s)));
                }
                for t in handlers {
                    let _ = t.join();
                }
            });
            TestServer {
                addr,
                replies,
                hits,
                stop,
                thread: Some(thread),
            }
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        pub fn set(&self, path: &str, reply: Reply) {
            self.replies.lock().unwrap().insert(path.to_owned(), reply);
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn serve(
        mut conn: TcpStream,
        replies: &Mutex<HashMap<String, Reply>>,
        hits: &AtomicUsize,
        stop: &AtomicBool,
    ) {
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let head = String::from_utf8_lossy(&head);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let reply = replies.lock().unwrap().get(&path).cloned();
        let _ = match reply {
            None => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            Some(Reply::Body(status, body)) => conn
                .write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )
                .and_then(|()| conn.write_all(&body)),
            Some(Reply::Chunked(body, size)) => {
                let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for chunk in body.chunks(size) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                conn.write_all(&out)
            }
            Some(Reply::Stream(n)) => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
                let zeros = vec![0u8; 64 * 1024];
                let mut left = n;
                while left > 0 {
                    let k = left.min(zeros.len());
                    if conn.write_all(&zeros[..k]).is_err() {
                        break;
                    }
                    left -= k;
                }
                Ok(())
            }
            Some(Reply::Redirect(to)) => conn.write_all(
                format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            ),
            Some(Reply::Silent) => {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::{Reply, TestServer};
    use super::*;

    fn quick() -> FetchLimits {
        FetchLimits {
            timeout: Duration::from_millis(400),
            total: Duration::from_secs(5),
            max_bytes: 1 << 20,
            max_redirects: 2,
        }
    }

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:8080/a/b.crl?x=1#frag").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.connect, "127.0.0.1:8080");
        assert_eq!(u.path, "/a/b.crl?x=1");
        let u = parse_url("HTTP://crl.example").unwrap();
        assert_eq!(
            (u.connect.as_str(), u.path.as_str()),
            ("crl.example:80", "/")
        );
        let u = parse_url("http://[::1]/x").unwrap();
        assert_eq!(u.connect, "[::1]:80");
        let e = parse_url("https://crl.example/a.crl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("https") && e.contains("crl.example"), "{e}");
        assert!(parse_url("ldap://x/").is_err());
        assert!(parse_url("http://user@x/").is_err());
        assert!(parse_url("/etc/crl.pem").is_err());
    }

    #[test]
    fn ok_chunked_and_redirect() {
        let server = TestServer::start();
        let body: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        server.set("/a.crl", Reply::Body(200, body.clone()));
        server.set("/c.crl", Reply::Chunked(body.clone(), 7_000));
        server.set("/r", Reply::Redirect("/a.crl".into()));
        server.set("/loop", Reply::Redirect(server.url("/loop")));
        let stop = AtomicBool::new(false);
        assert_eq!(fetch(&server.url("/a.crl"), &quick(), &stop).unwrap(), body);
        assert_eq!(fetch(&server.url("/c.crl"), &quick(), &stop).unwrap(), body);
        assert_eq!(fetch(&server.url("/r"), &quick(), &stop).unwrap(), body);
        let e = fetch(&server.url("/loop"), &quick(), &stop).unwrap_err();
        assert!(matches!(e, FetchError::TooManyRedirects { .. }), "{e}");
    }

    #[test]
    fn status_size_and_time_limits() {
        let server = TestServer::start();
        server.set("/big", Reply::Body(200, vec![0; (1 << 20) + 1]));
        server.set("/stream", Reply::Stream(3 << 20));
        server.set("/slow", Reply::Silent);
        server.set("/gone", Reply::Body(410, b"gone".to_vec()));
        let stop = AtomicBool::new(false);
        let url = server.url("/missing");
        let e = fetch(&url, &quick(), &stop).unwrap_err();
        assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");
        assert!(e.to_string().contains(&url), "{e}");
        let e = fetch(&server.url("/gone"), &quick(), &stop).unwrap_err();
        assert!(matches!(e, FetchError::Status { status: 410, .. }), "{e}");
        for path in ["/big", "/stream"] {
            let e = fetch(&server.url(path), &quick(), &stop).unwrap_err();
            assert!(matches!(e, FetchError::TooLarge { .. }), "{path}: {e}");
        }
        let start = Instant::now();
        let e = fetch(&server.url("/slow"), &quick(), &stop).unwrap_err();
        assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn stop_flag_abandons_a_fetch() {
        let server = TestServer::start();
        server.set("/slow", Reply::Silent);
        let stop = AtomicBool::new(true);
        let limits = FetchLimits {
            timeout: Duration::from_secs(30),
            ..quick()
        };
        let e = fetch(&server.url("/slow"), &limits, &stop).unwrap_err();
        assert!(matches!(e, FetchError::Stopped { .. }), "{e}");
    }

    #[test]
    fn connection_refused_is_a_connect_error() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = fetch(
            &format!("http://127.0.0.1:{port}/x.crl"),
            &quick(),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(matches!(e, FetchError::Connect { .. }), "{e}");
    }
}
