//! The TLS client side: connector configuration, the counted TCP stream under TLS, connecting
//! with or without a session to resume, and classifying failures into report keys.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use boring::error::ErrorStack;
use boring::pkcs12::Pkcs12;
use boring::ssl::{
    Ssl, SslConnector, SslFiletype, SslMethod, SslSession, SslSessionCacheMode, SslVerifyMode,
    SslVersion,
};
use boring::x509::X509VerifyError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// TLS protocol version pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum TlsVersion {
    /// TLS 1.2 only.
    #[value(name = "1.2")]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[value(name = "1.3")]
    #[serde(rename = "1.3")]
    Tls13,
}

/// Everything needed to build the client TLS context.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Client certificate: a PEM chain, or a PKCS#12 (PFX) file (detected by content).
    pub cert: Option<PathBuf>,
    /// PEM private key (default: the certificate file).
    pub key: Option<PathBuf>,
    /// Password of a PKCS#12 file.
    pub cert_password: String,
    /// CA bundle to verify the server (default: the system trust store).
    pub ca: Option<PathBuf>,
    /// Skip server certificate verification.
    pub insecure: bool,
    /// TLS version pin.
    pub version: Option<TlsVersion>,
    /// OpenSSL-style cipher list (TLS 1.2 suites; BoringSSL's TLS 1.3 suites are fixed).
    pub ciphers: Option<String>,
    /// Key-exchange groups, e.g. `X25519:P-256`.
    pub curves: Option<String>,
    /// Whether sessions (tickets) are kept for resumption.
    pub sessions: bool,
}

/// The ex-data slot where the new-session callback leaves the latest session of a connection.
fn session_slot() -> boring::ex_data::Index<Ssl, Option<SslSession>> {
    static SLOT: OnceLock<boring::ex_data::Index<Ssl, Option<SslSession>>> = OnceLock::new();
    *SLOT.get_or_init(|| Ssl::new_ex_index().expect("allocate an SSL ex-data index"))
}

fn stack_msg(what: &str, path: &Path, e: &ErrorStack) -> String {
    format!("{what} {}: {e}", path.display())
}

/// A configured client: the TLS context plus the name to send and verify.
pub struct TlsClient {
    connector: SslConnector,
    domain: String,
    sni: bool,
    verify_hostname: bool,
    sessions: bool,
}

impl TlsClient {
    /// Builds the context. `sni` is the name sent in SNI and verified (empty: no SNI, verify
    /// against `host`).
    pub fn new(opts: &TlsOptions, host: &str, sni: Option<&str>) -> Result<TlsClient, String> {
        let mut b = SslConnector::builder(SslMethod::tls())
            .map_err(|e| format!("cannot create the TLS context: {e}"))?;
        if opts.insecure {
            b.set_verify(SslVerifyMode::NONE);
        } else if let Some(ca) = &opts.ca {
            b.set_ca_file(ca)
                .map_err(|e| stack_msg("cannot load the CA bundle", ca, &e))?;
        }
        if let Some(cert) = &opts.cert {
            let bytes = std::fs::read(cert).map_err(|e| {
                format!("cannot read the client certificate {}: {e}", cert.display())
            })?;
            let is_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
            if is_pem {
                b.set_certificate_chain_file(cert)
                    .map_err(|e| stack_msg("cannot load the client certificate", cert, &e))?;
                let key = opts.key.as_ref().unwrap_or(cert);
                b.set_private_key_file(key, SslFiletype::PEM)
                    .map_err(|e| stack_msg("cannot load the client key", key, &e))?;
            } else {
                let p12 = Pkcs12::from_der(&bytes).map_err(|e| {
                    format!("{} is neither PEM nor PKCS#12 (PFX): {e}", cert.display())
                })?;
                let parsed = p12.parse(&opts.cert_password).map_err(|_| {
                    format!(
                        "cannot open the PKCS#12 file {}: wrong password (--cert-password) or a file without a certificate and key",
                        cert.display()
                    )
                })?;
                b.set_certificate(&parsed.cert)
                    .map_err(|e| stack_msg("cannot use the certificate of", cert, &e))?;
                b.set_private_key(&parsed.pkey)
                    .map_err(|e| stack_msg("cannot use the key of", cert, &e))?;
                if let Some(chain) = parsed.chain {
                    for c in chain {
                        b.add_extra_chain_cert(c)
                            .map_err(|e| stack_msg("cannot use the chain of", cert, &e))?;
                    }
                }
            }
            b.check_private_key()
                .map_err(|e| format!("the client key does not match the certificate: {e}"))?;
        } else if opts.key.is_some() {
            return Err("--key given without --cert".into());
        }
        if let Some(v) = opts.version {
            let v = match v {
                TlsVersion::Tls12 => SslVersion::TLS1_2,
                TlsVersion::Tls13 => SslVersion::TLS1_3,
            };
            b.set_min_proto_version(Some(v))
                .and_then(|()| b.set_max_proto_version(Some(v)))
                .map_err(|e| format!("cannot pin the TLS version: {e}"))?;
        }
        if let Some(c) = &opts.ciphers {
            b.set_cipher_list(c)
                .map_err(|e| format!("invalid cipher list {c:?}: {e}"))?;
        }
        if let Some(c) = &opts.curves {
            b.set_curves_list(c)
                .map_err(|e| format!("invalid curve list {c:?}: {e}"))?;
        }
        if opts.sessions {
            let slot = session_slot();
            b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
            b.set_new_session_callback(move |ssl, session| {
                ssl.set_ex_data(slot, Some(session));
            });
        } else {
            b.set_session_cache_mode(SslSessionCacheMode::OFF);
        }
        let (domain, use_sni) = match sni {
            Some("") => (host.to_owned(), false),
            Some(name) => (name.to_owned(), true),
            None => (host.to_owned(), true),
        };
        Ok(TlsClient {
            connector: b.build(),
            domain,
            sni: use_sni,
            verify_hostname: !opts.insecure,
            sessions: opts.sessions,
        })
    }

    /// Connects to `addr` and performs the handshake, offering `session` if given.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        session: Option<&SslSession>,
    ) -> Result<TlsStream, Failure> {
        let tcp = TcpStream::connect(addr).await.map_err(Failure::Connect)?;
        let _ = tcp.set_nodelay(true);
        let mut cfg = self
            .connector
            .configure()
            .map_err(|e| Failure::Setup(e.to_string()))?;
        cfg.set_use_server_name_indication(self.sni);
        cfg.set_verify_hostname(self.verify_hostname);
        if let Some(s) = session {
            // SAFETY: every session handed back comes from a connection of this same context.
            unsafe { cfg.set_session(s) }.map_err(|e| Failure::Setup(e.to_string()))?;
        }
        tokio_boring::connect(cfg, &self.domain, Wire::new(tcp))
            .await
            .map_err(|e| Failure::from_handshake(&e))
    }

    /// Takes the newest session the server issued on `stream` (None if sessions are off or
    /// none arrived yet).
    pub fn take_session(&self, stream: &mut TlsStream) -> Option<SslSession> {
        if !self.sessions {
            return None;
        }
        stream
            .ssl_mut()
            .ex_data_mut(session_slot())
            .and_then(Option::take)
    }
}

/// A TLS stream over a counted TCP stream.
pub type TlsStream = tokio_boring::SslStream<Wire>;

/// A TCP stream with a small read-ahead buffer (so BoringSSL's header-then-record reads cost
/// one system call) and byte counters.
#[derive(Debug)]
pub struct Wire {
    tcp: TcpStream,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Bytes written to the socket.
    pub sent: u64,
    /// Bytes read from the socket.
    pub received: u64,
}

const WIRE_BUF: usize = 8 * 1024;

impl Wire {
    /// Wraps a connected socket.
    pub fn new(tcp: TcpStream) -> Wire {
        Wire {
            tcp,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            sent: 0,
            received: 0,
        }
    }

    /// Frees the read-ahead buffer if it holds nothing (for connections that sit idle).
    pub fn release(&mut self) {
        if self.rpos == self.rend {
            self.rbuf = Vec::new();
            self.rpos = 0;
            self.rend = 0;
        }
    }

    /// Waits until the socket has something to read (or an error), without reading.
    pub async fn readable(&self) -> io::Result<()> {
        self.tcp.readable().await
    }

    /// Takes the byte counters (sent, received), resetting them.
    pub fn take_counts(&mut self) -> (u64, u64) {
        let c = (self.sent, self.received);
        self.sent = 0;
        self.received = 0;
        c
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.rpos == this.rend {
            if out.remaining() >= WIRE_BUF {
                let before = out.filled().len();
                std::task::ready!(Pin::new(&mut this.tcp).poll_read(cx, out))?;
                this.received += (out.filled().len() - before) as u64;
                return Poll::Ready(Ok(()));
            }
            if this.rbuf.is_empty() {
                this.rbuf = vec![0; WIRE_BUF];
            }
            let mut rb = ReadBuf::new(&mut this.rbuf);
            std::task::ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            this.rpos = 0;
            this.rend = n;
            this.received += n as u64;
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.rend - this.rpos);
        out.put_slice(&this.rbuf[this.rpos..this.rpos + n]);
        this.rpos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(Pin::new(&mut this.tcp).poll_write(cx, buf))?;
        this.sent += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The report key of a failed request: `connect`, `tls[:detail]`, `timeout`,
/// `http_status:<code>`, `io`, `protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrKey {
    /// TCP connect failed.
    Connect,
    /// TLS failed (handshake or a later alert).
    Tls(TlsDetail),
    /// The request did not finish within the timeout.
    Timeout,
    /// A status other than `--expect-status`.
    HttpStatus(u16),
    /// Transport error or premature close after the handshake.
    Io,
    /// The response was not valid HTTP/1.1.
    Protocol,
}

/// What is known about a TLS failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsDetail {
    /// Nothing more specific.
    Plain,
    /// An alert received from the peer (alert number).
    Alert(u8),
    /// A local BoringSSL failure (packed library and reason code).
    Reason(i32, i32),
}

/// The name of a TLS alert (RFC 8446 section 6 spelling).
pub fn alert_name(n: u8) -> Option<&'static str> {
    Some(match n {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => return None,
    })
}

impl ErrKey {
    /// The report name; `stack` is consulted for local TLS reasons.
    pub fn name(&self, stack: Option<&ErrorStack>) -> String {
        match self {
            ErrKey::Connect => "connect".into(),
            ErrKey::Timeout => "timeout".into(),
            ErrKey::Io => "io".into(),
            ErrKey::Protocol => "protocol".into(),
            ErrKey::HttpStatus(c) => format!("http_status:{c}"),
            ErrKey::Tls(TlsDetail::Plain) => "tls".into(),
            ErrKey::Tls(TlsDetail::Alert(n)) => match alert_name(*n) {
                Some(a) => format!("tls:{a}"),
                None => format!("tls:alert_{n}"),
            },
            ErrKey::Tls(TlsDetail::Reason(lib, reason)) => stack
                .and_then(|s| {
                    s.errors()
                        .iter()
                        .find(|e| e.library_code() == *lib && e.reason_code() == *reason)
                })
                .and_then(|e| {
                    e.reason()
                        .map(|r| format!("tls:{}", r.to_ascii_lowercase()))
                })
                .unwrap_or_else(|| "tls".into()),
        }
    }
}

/// Classifies a BoringSSL error stack: a received alert wins, then the first reason.
pub fn tls_detail(stack: &ErrorStack) -> TlsDetail {
    for e in stack.errors() {
        if let Some(r) = e.reason() {
            if r.starts_with("SSLV3_ALERT_") || r.starts_with("TLSV1_ALERT_") {
                let n = e.reason_code() - 1000;
                if let Ok(n) = u8::try_from(n) {
                    return TlsDetail::Alert(n);
                }
            }
        }
    }
    match stack.errors().first() {
        Some(e) if e.reason().is_some() => TlsDetail::Reason(e.library_code(), e.reason_code()),
        _ => TlsDetail::Plain,
    }
}

/// Why one request failed, with enough detail to name and describe it.
#[derive(Debug)]
pub enum Failure {
    /// TCP connect failed.
    Connect(io::Error),
    /// The TLS context could not set up a connection.
    Setup(String),
    /// The handshake failed.
    Handshake {
        /// BoringSSL's errors, if any.
        stack: Option<ErrorStack>,
        /// The transport error, if that was the cause.
        io: Option<io::Error>,
        /// The certificate verification result, when it failed.
        verify: Option<X509VerifyError>,
    },
    /// Reading or writing after the handshake failed.
    Io(io::Error),
    /// The server closed the connection before the response was complete.
    Closed {
        /// Whether part of a response had arrived.
        partial: bool,
    },
    /// The response was not valid HTTP/1.1.
    Protocol(&'static str),
    /// The request did not complete in time.
    Timeout,
    /// Unexpected status (with `--expect-status`).
    Status(u16),
}

/// The BoringSSL error stack inside an I/O error from a TLS stream, if any.
fn io_stack(e: &io::Error) -> Option<&ErrorStack> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<boring::ssl::Error>())
        .and_then(|se| se.ssl_error())
}

impl Failure {
    fn from_handshake(e: &tokio_boring::HandshakeError<Wire>) -> Failure {
        use std::error::Error as _;
        let verify = e.ssl().and_then(|s| s.verify_result().err());
        let mut stack = None;
        let mut io_err = None;
        if let Some(src) = e.source() {
            if let Some(se) = src.downcast_ref::<boring::ssl::Error>() {
                stack = se.ssl_error().cloned();
                io_err = se
                    .io_error()
                    .map(|i| io::Error::new(i.kind(), i.to_string()));
            } else if let Some(st) = src.downcast_ref::<ErrorStack>() {
                stack = Some(st.clone());
            }
        }
        if stack.is_none() && io_err.is_none() {
            if let Some(i) = e.as_io_error() {
                io_err = Some(io::Error::new(i.kind(), i.to_string()));
            }
        }
        Failure::Handshake {
            stack,
            io: io_err,
            verify,
        }
    }

    /// The report key.
    pub fn key(&self) -> ErrKey {
        match self {
            Failure::Connect(_) => ErrKey::Connect,
            Failure::Setup(_) => ErrKey::Tls(TlsDetail::Plain),
            Failure::Handshake { stack, .. } => {
                ErrKey::Tls(stack.as_ref().map_or(TlsDetail::Plain, tls_detail))
            }
            Failure::Io(e) => match io_stack(e) {
                Some(st) => ErrKey::Tls(tls_detail(st)),
                None if e.kind() == io::ErrorKind::TimedOut => ErrKey::Timeout,
                None => ErrKey::Io,
            },
            Failure::Closed { .. } => ErrKey::Io,
            Failure::Protocol(_) => ErrKey::Protocol,
            Failure::Timeout => ErrKey::Timeout,
            Failure::Status(c) => ErrKey::HttpStatus(*c),
        }
    }

    /// The report name of the key (e.g. `tls:certificate_required`).
    pub fn name(&self) -> String {
        let stack = match self {
            Failure::Handshake { stack, .. } => stack.as_ref(),
            Failure::Io(e) => io_stack(e),
            _ => None,
        };
        self.key().name(stack)
    }

    /// A one-line human description, for the first occurrence of each kind.
    pub fn message(&self) -> String {
        match self {
            Failure::Connect(e) => format!("connect: {e}"),
            Failure::Setup(m) => format!("TLS setup: {m}"),
            Failure::Handshake { stack, io, verify } => {
                let mut m = String::from("TLS handshake failed");
                if let Some(v) = verify {
                    m.push_str(&format!(": certificate verification: {}", v.error_string()));
                }
                if let Some(s) = stack {
                    if !s.errors().is_empty() {
                        m.push_str(&format!(": {s}"));
                    }
                }
                if let Some(i) = io {
                    m.push_str(&format!(": {i}"));
                }
                if stack.is_none() && io.is_none() && verify.is_none() {
                    m.push_str(": connection closed by the server during the handshake");
                }
                m
            }
            Failure::Io(e) => format!("{e}"),
            Failure::Closed { partial: false } => {
                "connection closed by the server before a response".into()
            }
            Failure::Closed { partial: true } => {
                "connection closed by the server in the middle of a response".into()
            }
            Failure::Protocol(m) => format!("invalid response: {m}"),
            Failure::Timeout => "no complete response within the timeout".into(),
            Failure::Status(c) => format!("unexpected status {c}"),
        }
    }
}

impl From<crate::http::ResponseError> for Failure {
    fn from(e: crate::http::ResponseError) -> Failure {
        match e {
            crate::http::ResponseError::Io(e) => Failure::Io(e),
            crate::http::ResponseError::Closed { partial } => Failure::Closed { partial },
            crate::http::ResponseError::Protocol(m) => Failure::Protocol(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(ErrKey::Connect.name(None), "connect");
        assert_eq!(ErrKey::HttpStatus(503).name(None), "http_status:503");
        assert_eq!(
            ErrKey::Tls(TlsDetail::Alert(116)).name(None),
            "tls:certificate_required"
        );
        assert_eq!(
            ErrKey::Tls(TlsDetail::Alert(48)).name(None),
            "tls:unknown_ca"
        );
        assert_eq!(
            ErrKey::Tls(TlsDetail::Alert(250)).name(None),
            "tls:alert_250"
        );
        assert_eq!(ErrKey::Tls(TlsDetail::Plain).name(None), "tls");
        assert_eq!(Failure::Timeout.name(), "timeout");
        assert_eq!(Failure::Closed { partial: true }.name(), "io");
        assert_eq!(
            Failure::Io(io::Error::from(io::ErrorKind::ConnectionReset)).name(),
            "io"
        );
    }
}
