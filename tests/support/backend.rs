//! A recording plain-HTTP/1.1 backend on 127.0.0.1:0 (thread per connection).
//!
//! Every request is answered `200` with body `ok`, a `Content-Length` and an
//! `X-Backend-Path` header echoing the request target, except for these paths:
//! - `/slow/<ms>[...]`: sleeps `<ms>` before answering;
//! - `/big/<n>[...]`: answers `n` pseudo-random bytes (seed 7) with Content-Length;
//! - `/bigchunked/<n>[...]`: the same bytes, chunked in varying chunk sizes;
//! - `/discard[...]`: reads the body without hashing it.
//!
//! `big_body(n)` gives the bytes `/big/<n>` sends.

use super::{random_bytes, Sha256};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// SHA-256 of the body, lower-case hex (empty for `/discard`).
    pub body_sha256: String,
}

impl Recorded {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// All values of a header (case-insensitive name).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn dump(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.path);
        for (n, v) in &self.headers {
            s.push_str(&format!("  {n}: {v}\n"));
        }
        s
    }
}

struct Shared {
    recorded: Mutex<Vec<Recorded>>,
    heads: AtomicUsize,
    connections: AtomicUsize,
    stop: AtomicBool,
}

pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Backend {
    pub fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            recorded: Mutex::new(Vec::new()),
            heads: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                sh.connections.fetch_add(1, Ordering::SeqCst);
                let sh2 = sh.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &sh2);
                });
            }
        });
        Backend { addr, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `CERTGATE_BACKEND`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Number of requests whose head reached the backend.
    pub fn count(&self) -> usize {
        self.shared.heads.load(Ordering::SeqCst)
    }

    /// Number of TCP connections the backend accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Completed requests, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests()
            .last()
            .cloned()
            .expect("the backend has recorded no request")
    }

    /// Waits (up to `timeout`) until `n` requests are fully recorded.
    pub fn wait_recorded(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.shared.recorded.lock().unwrap().len() >= n)
    }

    pub fn dump(&self) -> String {
        self.requests().iter().map(|r| r.dump()).collect()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // wake the accept loop
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// A TCP port on 127.0.0.1 nothing listens on (bound, then released).
pub fn unused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    drop(l);
    p
}

/// The body `/big/<n>` and `/bigchunked/<n>` answer.
pub fn big_body(n: usize) -> Vec<u8> {
    random_bytes(n, 7)
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn serve(conn: TcpStream, sh: &Shared) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    conn.set_nodelay(true)?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::with_capacity(256 * 1024, conn);
    loop {
        // read the head
        let mut head = Vec::new();
        loop {
            let n = r.read_until(b'\n', &mut head)?;
            if n == 0 {
                return Ok(()); // closed between requests
            }
            if head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
                if head == b"\r\n" {
                    head.clear();
                    continue;
                }
                break;
            }
            if head.len() > 1 << 20 {
                return Err(bad("head too large"));
            }
        }
        let mut hs = [httparse::EMPTY_HEADER; 256];
        let mut req = httparse::Request::new(&mut hs);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => {
                let _ = w.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return Err(bad("backend could not parse request head"));
            }
        }
        sh.heads.fetch_add(1, Ordering::SeqCst);
        let method = req.method.unwrap_or("").to_string();
        let path = req.path.unwrap_or("").to_string();
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let chunked = get("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        let close = get("connection")
            .map(|v| v.to_ascii_lowercase().contains("close"))
            .unwrap_or(false)
            || req.version == Some(0);
        let discard = path.starts_with("/discard");
        let mut hasher = if discard { None } else { Some(Sha256::new()) };
        let mut body_len: u64 = 0;
        {
            let mut sink = |data: &[u8]| {
                body_len += data.len() as u64;
                if let Some(h) = hasher.as_mut() {
                    h.update(data);
                }
            };
            read_body(&mut r, chunked, get("content-length"), &mut sink)?;
        }
        sh.recorded.lock().unwrap().push(Recorded {
            method,
            path: path.clone(),
            headers,
            body_len,
            body_sha256: hasher.map(|h| h.finish_hex()).unwrap_or_default(),
        });

        // answer
        let conn_hdr = if close { "Connection: close\r\n" } else { "" };
        let path_hdr = path.replace(['\r', '\n'], "");
        if let Some(ms) = num_after(&path, "/slow/") {
            std::thread::sleep(Duration::from_millis(ms as u64));
        }
        if let Some(n) = num_after(&path, "/big/") {
            let body = big_body(n);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nContent-Type: application/octet-stream\r\nX-Backend-Path: {path_hdr}\r\n{conn_hdr}\r\n"
            );
            w.write_all(head.as_bytes())?;
            w.write_all(&body)?;
        } else if let Some(n) = num_after(&path, "/bigchunked/") {
            let body = big_body(n);
            let head = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\nX-Backend-Path: {path_hdr}\r\n{conn_hdr}\r\n"
            );
            w.write_all(head.as_bytes())?;
            let sizes = [
                1usize,
                10,
                1000,
                4096,
                16_384,
                65_535,
                65_536,
                100_003,
                1 << 20,
            ];
            let mut off = 0;
            let mut i = 0;
            while off < body.len() {
                let sz = sizes[i % sizes.len()].min(body.len() - off);
                i += 1;
                w.write_all(format!("{sz:x}\r\n").as_bytes())?;
                w.write_all(&body[off..off + sz])?;
                w.write_all(b"\r\n")?;
                off += sz;
            }
            w.write_all(b"0\r\n\r\n")?;
        } else {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nX-Backend-Path: {path_hdr}\r\n{conn_hdr}\r\nok"
            );
            w.write_all(head.as_bytes())?;
        }
        w.flush()?;
        // `/silent-close...`: answer as keep-alive, then close anyway (a
        // backend whose keep-alive timeout expired between requests).
        if close || path.starts_with("/silent-close") {
            return Ok(());
        }
    }
}

fn read_body(
    r: &mut BufReader<TcpStream>,
    chunked: bool,
    content_length: Option<String>,
    sink: &mut impl FnMut(&[u8]),
) -> io::Result<()> {
    if chunked {
        return read_chunked(r, sink);
    }
    let Some(cl) = content_length else {
        return Ok(());
    };
    let mut left: u64 = cl.trim().parse().map_err(|_| bad("bad content-length"))?;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = (buf.len() as u64).min(left) as usize;
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(bad("eof in body"));
        }
        sink(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

fn num_after(path: &str, prefix: &str) -> Option<usize> {
    let rest = path.strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn read_chunked(r: &mut BufReader<TcpStream>, sink: &mut impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\r\n") {
            return Err(bad("bad chunk line"));
        }
        let s = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
        let size = usize::from_str_radix(s.split(';').next().unwrap().trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            loop {
                let mut t = Vec::new();
                r.read_until(b'\n', &mut t)?;
                if t == b"\r\n" || t.is_empty() {
                    return Ok(());
                }
            }
        }
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(left);
            let n = r.read(&mut buf[..want])?;
            if n == 0 {
                return Err(bad("eof in chunk"));
            }
            sink(&buf[..n]);
            left -= n;
        }
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk without CRLF"));
        }
    }
}
