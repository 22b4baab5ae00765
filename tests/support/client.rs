//! A synchronous TLS client on `boring` and a minimal HTTP/1.1 client.

use boring::pkey::{PKey, Private};
use boring::ssl::{
    Ssl, SslConnector, SslMethod, SslSession, SslSessionCacheMode, SslStream, SslVersion,
};
use boring::x509::X509;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A client certificate, its key and the chain certificates to send after it.
#[derive(Clone)]
pub struct Identity {
    pub cert: X509,
    pub key: PKey<Private>,
    pub chain: Vec<X509>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn ssl(self) -> SslVersion {
        match self {
            TlsVersion::Tls12 => SslVersion::TLS1_2,
            TlsVersion::Tls13 => SslVersion::TLS1_3,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }
}

type SessionSlot = Arc<Mutex<Option<SslSession>>>;

fn session_index() -> boring::ex_data::Index<Ssl, SessionSlot> {
    static IDX: OnceLock<boring::ex_data::Index<Ssl, SessionSlot>> = OnceLock::new();
    *IDX.get_or_init(|| Ssl::new_ex_index().expect("ssl ex index"))
}

/// A reusable client configuration (one `SslContext`, so sessions from one
/// connection can be resumed by the next).
pub struct TlsClient {
    connector: SslConnector,
    timeout: Duration,
}

impl TlsClient {
    /// `root`: the CA that signed the server's certificate; `identity`: the
    /// client certificate to present (None: present none); `version`: pin.
    pub fn new(root: &X509, identity: Option<&Identity>, version: Option<TlsVersion>) -> TlsClient {
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.cert_store_mut().add_cert(root.clone()).unwrap();
        if let Some(id) = identity {
            b.set_certificate(&id.cert).unwrap();
            b.set_private_key(&id.key).unwrap();
            for c in &id.chain {
                b.add_extra_chain_cert(c.clone()).unwrap();
            }
        }
        if let Some(v) = version {
            b.set_min_proto_version(Some(v.ssl())).unwrap();
            b.set_max_proto_version(Some(v.ssl())).unwrap();
        }
        b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
        b.set_new_session_callback(|ssl, session| {
            if let Some(slot) = ssl.ex_data(session_index()) {
                *slot.lock().unwrap() = Some(session);
            }
        });
        TlsClient {
            connector: b.build(),
            timeout: IO_TIMEOUT,
        }
    }

    /// Read/write timeout of the connections made from now on.
    pub fn with_timeout(mut self, t: Duration) -> TlsClient {
        self.timeout = t;
        self
    }

    /// Connects to `addr` (SNI and hostname `localhost`), optionally resuming
    /// `session`. Err carries a description of the failure.
    pub fn connect(
        &self,
        addr: SocketAddr,
        session: Option<&SslSession>,
    ) -> Result<TlsConn, String> {
        self.connect_sni(addr, Some("localhost"), session)
    }

    /// Connects with SNI `sni`, or without SNI when `None`. The server's chain
    /// is verified but not its name: callers check `peer_cn` themselves.
    pub fn connect_sni(
        &self,
        addr: SocketAddr,
        sni: Option<&str>,
        session: Option<&SslSession>,
    ) -> Result<TlsConn, String> {
        let tcp = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| format!("tcp connect to {addr}: {e}"))?;
        tcp.set_read_timeout(Some(self.timeout)).unwrap();
        tcp.set_write_timeout(Some(self.timeout)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut config = self.connector.configure().unwrap();
        if sni != Some("localhost") {
            config.set_verify_hostname(false);
        }
        if sni.is_none() {
            config.set_use_server_name_indication(false);
        }
        let mut ssl = config.into_ssl(sni.unwrap_or("localhost")).unwrap();
        let slot: SessionSlot = Arc::new(Mutex::new(None));
        ssl.set_ex_data(session_index(), slot.clone());
        if let Some(s) = session {
            // SAFETY: the session comes from a connection made with this same
            // SslContext.
            unsafe { ssl.set_session(s) }.map_err(|e| format!("set_session: {e}"))?;
        }
        let stream = ssl.connect(tcp).map_err(|e| match e {
            boring::ssl::HandshakeError::WouldBlock(_) => {
                format!("TLS handshake timed out (no answer from the server): {e}")
            }
            e => format!("TLS handshake failed: {e}"),
        })?;
        Ok(HttpConn {
            inner: stream,
            buf: Vec::new(),
            session_slot: Some(slot),
        })
    }
}

/// One-shot connect with a fresh context.
pub fn tls_connect(
    addr: SocketAddr,
    root: &X509,
    identity: Option<&Identity>,
) -> Result<TlsConn, String> {
    TlsClient::new(root, identity, None).connect(addr, None)
}

/// An HTTP/1.1 connection over any byte stream.
pub struct HttpConn<S> {
    pub inner: S,
    buf: Vec<u8>,
    session_slot: Option<SessionSlot>,
}

pub type TlsConn = HttpConn<SslStream<TcpStream>>;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// True if the server said it will close the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .map(|v| v.to_ascii_lowercase().contains("close"))
            .unwrap_or(false)
    }
}

impl<S: Read + Write> HttpConn<S> {
    pub fn new(inner: S) -> HttpConn<S> {
        HttpConn {
            inner,
            buf: Vec::new(),
            session_slot: None,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.inner.flush()
    }

    /// Sends a `GET path` with Host: localhost (keep-alive) and reads the response.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.get_host(path, "localhost")
    }

    /// `GET path` with the given `Host`.
    pub fn get_host(&mut self, path: &str, host: &str) -> io::Result<Response> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())?;
        self.read_response()
    }

    /// Sends a request with extra header lines (each "Name: value") and a body
    /// with Content-Length, then reads the response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        self.send(&msg)?;
        self.read_response()
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 65536];
        let n = self.inner.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn eof_err(what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection closed {what}"),
        )
    }

    /// Reads one response (skipping 1xx interim responses).
    pub fn read_response(&mut self) -> io::Result<Response> {
        loop {
            let r = self.read_one_response()?;
            if (100..200).contains(&r.status) && r.status != 101 {
                continue;
            }
            return Ok(r);
        }
    }

    fn read_one_response(&mut self) -> io::Result<Response> {
        let (status, reason, headers, head_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut hs);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect::<Vec<_>>();
                    break (
                        resp.code.unwrap(),
                        resp.reason.unwrap_or("").to_string(),
                        headers,
                        n,
                    );
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > 1 << 20 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "response head too large",
                        ));
                    }
                    if self.fill()? == 0 {
                        return Err(Self::eof_err(if self.buf.is_empty() {
                            "before any response byte"
                        } else {
                            "inside the response head"
                        }));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "bad response head ({e}): {:?}",
                            String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                        ),
                    ))
                }
            }
        };
        self.buf.drain(..head_len);
        let mut r = Response {
            status,
            reason,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(r);
        }
        let chunked = r
            .header("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        if chunked {
            r.body = self.read_chunked()?;
        } else if let Some(cl) = r.header("content-length") {
            let cl: usize = cl
                .trim()
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
            while self.buf.len() < cl {
                if self.fill()? == 0 {
                    return Err(Self::eof_err("inside the response body"));
                }
            }
            r.body = self.buf.drain(..cl).collect();
        } else {
            // read until close
            loop {
                match self.fill() {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            r.body = std::mem::take(&mut self.buf);
        }
        Ok(r)
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..p].to_vec();
                self.buf.drain(..p + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(Self::eof_err("inside a chunked body"));
            }
        }
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let line = String::from_utf8_lossy(&line);
            let size_str = line.split(';').next().unwrap().trim();
            let size = usize::from_str_radix(size_str, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if size == 0 {
                // trailers
                loop {
                    if self.read_line()?.is_empty() {
                        return Ok(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(Self::eof_err("inside a chunk"));
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk not followed by CRLF",
                ));
            }
            self.buf.drain(..size + 2);
        }
    }

    /// Waits for the peer to close: Ok(()) if the read returns EOF or a
    /// connection error; Err if data arrives or the read times out.
    pub fn expect_closed(&mut self) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!(
                "unexpected data buffered: {:?}",
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            ));
        }
        let mut tmp = [0u8; 4096];
        match self.inner.read(&mut tmp) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!(
                "expected close, got {n} bytes: {:?}",
                String::from_utf8_lossy(&tmp[..n.min(200)])
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(format!("expected close, read timed out: {e}"))
            }
            Err(_) => Ok(()),
        }
    }
}

impl HttpConn<SslStream<TcpStream>> {
    /// The latest resumable session the server gave this connection (TLS 1.3:
    /// read a response first, the ticket arrives after the handshake).
    pub fn session(&self) -> Option<SslSession> {
        let from_cb = self
            .session_slot
            .as_ref()
            .and_then(|s| s.lock().unwrap().clone());
        from_cb.or_else(|| {
            if self.version() == "TLSv1.2" {
                self.inner.ssl().session().map(|s| s.to_owned())
            } else {
                None
            }
        })
    }
    /// The server certificate's subject CN.
    pub fn peer_cn(&self) -> String {
        let cert = self
            .inner
            .ssl()
            .peer_certificate()
            .expect("a server certificate");
        let cn = cert
            .subject_name()
            .entries_by_nid(boring::nid::Nid::COMMONNAME)
            .next()
            .map(|e| e.data().as_utf8().unwrap().to_string());
        cn.unwrap_or_default()
    }

    pub fn session_reused(&self) -> bool {
        self.inner.ssl().session_reused()
    }
    pub fn version(&self) -> &'static str {
        self.inner.ssl().version_str()
    }
    pub fn tcp(&self) -> &TcpStream {
        self.inner.get_ref()
    }
    pub fn set_read_timeout(&self, t: Duration) {
        self.inner.get_ref().set_read_timeout(Some(t)).unwrap();
    }
    /// Sends close_notify (best effort).
    pub fn close(mut self) {
        let _ = self.inner.shutdown();
    }
}

impl HttpConn<TcpStream> {
    pub fn set_read_timeout(&self, t: Duration) {
        self.inner.set_read_timeout(Some(t)).unwrap();
    }
}

/// A plain TCP connection to `addr` with 10 s timeouts.
pub fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("tcp connect to {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Outcome of trying to get a response from an endpoint that may reject us.
#[derive(Debug)]
pub enum Attempt {
    /// The TCP connection or the TLS handshake failed.
    ConnectFailed(String),
    /// Connected, but no HTTP response came (error, EOF or timeout).
    NoResponse(String),
    /// An HTTP response arrived.
    Response(Response),
}

/// Connects with `client`, sends `GET path` and reports what happened.
pub fn attempt_get(client: &TlsClient, addr: SocketAddr, path: &str) -> Attempt {
    let mut conn = match client.connect(addr, None) {
        Ok(c) => c,
        Err(e) => return Attempt::ConnectFailed(e),
    };
    if let Err(e) = conn.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
    {
        // the write may fail because the alert already closed the connection;
        // still try to read (a response would be a failure).
        let _ = e;
    }
    match conn.read_response() {
        Ok(r) => Attempt::Response(r),
        Err(e) => Attempt::NoResponse(e.to_string()),
    }
}
