//! The HTTP/1.1 exchange loop: read a request, enforce the verdict, forward it, stream both bodies.
//!
//! Bodies are streamed with backpressure: at most one buffer of each
//! direction is in memory per connection, whatever the body size. Chunked
//! bodies are forwarded unchanged; the framing is tracked only to find the end.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tracing::debug;

use crate::admin::metrics::{BackendError, SpliceDirection};
use crate::config::ClientCertMode;
use crate::http::{
    error_response, parse_request, parse_response, write_downstream_head_with, write_upstream_head,
    BodyKind, ChunkedTracker, ClientIp, DownstreamConnection, ForwardContext, HttpError, Parsed,
    Request, CONTINUE_100,
};
use crate::proxy::splice::{forward_body, BodyError, Deadlines, PlainSource};
use crate::runtime::io::Io;
use crate::runtime::worker::Worker;
use crate::tls::context::Snapshot;
use crate::tls::stream::{TlsConn, RECORD, SMALL, STREAM};
use crate::tls::verify::{evaluate, now_unix, Presented, Verdict};
use crate::trust::policy::CompiledPolicy;

/// The body of the 403 answer to a request without a valid client certificate.
pub const INVALID_CERT_MESSAGE: &str = "Invalid client certificate";

/// How long an error answer waits for the client to stop sending before closing.
const LINGER: Duration = Duration::from_millis(1000);

/// How an exchange ended badly.
enum Failure {
    /// The client went away or stalled: close without a word.
    Client,
    /// Nothing was sent to the client yet: answer with this status and close.
    Answer(u16, &'static str),
    /// The response had started: all that is left is to close.
    Abort,
    /// A pooled backend connection failed before a single response byte: the
    /// backend had closed it. Safe to retry for an idempotent request; else 502.
    Stale,
}

/// How long an idle pooled backend connection is trusted: shorter than the
/// common backend keep-alive timeouts (5 s and up), so a connection the
/// backend is about to close is not picked.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// Methods that may be sent again when a pooled connection turns out stale (RFC 9110 §9.2.2).
fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Failure {
        Failure::Answer(e.status(), status_message(e.status()))
    }
}

fn status_message(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => INVALID_CERT_MESSAGE,
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// Where the body of a message ends.
enum Framing {
    Length(u64),
    Chunked(ChunkedTracker),
    UntilClose,
    Done,
}

impl Framing {
    fn new(kind: BodyKind, request: bool) -> Framing {
        match kind {
            BodyKind::None | BodyKind::ContentLength(0) => Framing::Done,
            BodyKind::ContentLength(n) => Framing::Length(n),
            BodyKind::Chunked if request => Framing::Chunked(ChunkedTracker::for_request()),
            BodyKind::Chunked => Framing::Chunked(ChunkedTracker::new()),
            BodyKind::CloseDelimited => Framing::UntilClose,
        }
    }

    /// How many of the bytes at the front of `avail` belong to the body.
    fn take(&mut self, avail: &[u8]) -> Result<usize, HttpError> {
        let n = match self {
            Framing::Done => 0,
            Framing::UntilClose => avail.len(),
            Framing::Length(rest) => {
                let n = (*rest).min(avail.len() as u64);
                *rest -= n;
                if *rest == 0 {
                    *self = Framing::Done;
                }
                n as usize
            }
            Framing::Chunked(t) => {
                let p = t.advance(avail)?;
                if p.done {
                    *self = Framing::Done;
                }
                p.consumed
            }
        };
        Ok(n)
    }

    fn done(&self) -> bool {
        matches!(self, Framing::Done)
    }
}

/// How the rest of a body travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyPath {
    /// Through user-space buffers (TLS in user space, or a framing that must be read).
    Copy,
    /// Socket to socket by splice: this many bytes are left.
    Splice(u64),
}

/// Splice only what is certainly correct: the switch is on, the client's
/// records are in the kernel with nothing buffered in user space
/// ([`TlsConn::kernel_fd_for_splice`]), and the body's remaining length is
/// known. Chunked and close-delimited bodies are copied: their end is found
/// by reading them.
fn body_path(splice_on: bool, client_in_kernel: bool, framing: &Framing) -> BodyPath {
    match framing {
        Framing::Length(rest) if splice_on && client_in_kernel => BodyPath::Splice(*rest),
        _ => BodyPath::Copy,
    }
}

/// What the connection's verdict allows under one route's policy, rendered for forwarding.
struct Admission {
    /// Snapshot generation the verdict was reached under.
    generation: u64,
    /// The route (within the host) whose policy decided.
    route: usize,
    /// When to look at the verdict again even without a reload (TTL, not-after, not-before).
    recheck_at: Instant,
    /// Whether requests may reach the backend.
    allowed: bool,
    /// The forwarded certificate header lines (empty without a verified certificate).
    cert_headers: bytes::Bytes,
    /// `X-Client-Cert-Verify` (optional mode, or a policy with `ignore-error`).
    verify_header: Option<String>,
}

impl Admission {
    fn new(
        presented: &Presented,
        policy: &CompiledPolicy,
        host: &ConnHost,
        route: usize,
        ttl: Duration,
    ) -> Admission {
        let now = Instant::now();
        let mode = host.mode;
        let verdict = match mode {
            ClientCertMode::Off => Verdict::NoCertificate,
            _ => presented.decide(policy, now_unix()),
        };
        // A time check can change its answer at the validity window's edges.
        let mut recheck_at = now + ttl;
        if let Presented::Cert(eval) = presented {
            for edge in [eval.facts.not_before, eval.facts.not_after + 1] {
                let left = edge - now_unix();
                if left > 0 {
                    recheck_at = recheck_at.min(now + Duration::from_secs(left as u64));
                }
            }
        }
        let (allowed, cert_headers) = match &verdict {
            Verdict::Verified(info) => (true, info.header_block.clone()),
            Verdict::FailedIgnored(_) => (true, bytes::Bytes::new()),
            Verdict::NoCertificate if policy.ignores_errors() => (true, bytes::Bytes::new()),
            _ => (
                matches!(mode, ClientCertMode::Off | ClientCertMode::Optional),
                bytes::Bytes::new(),
            ),
        };
        let shows_verify = mode == ClientCertMode::Optional
            || (mode != ClientCertMode::Off && policy.ignores_errors());
        Admission {
            generation: host.generation,
            route,
            recheck_at,
            allowed,
            cert_headers,
            verify_header: shows_verify.then(|| verdict.verify_header()),
        }
    }
}

/// The host a connection belongs to, as an index into one snapshot's hosts.
#[derive(Clone, Copy, Debug)]
pub struct ConnHost {
    /// The snapshot generation `index` refers to.
    pub generation: u64,
    /// The host's index in that snapshot.
    pub index: usize,
    /// The host's client-certificate mode in that snapshot.
    pub mode: ClientCertMode,
}

impl ConnHost {
    /// Host `index` of `snapshot`.
    pub fn new(snapshot: &Snapshot, index: usize) -> ConnHost {
        ConnHost {
            generation: snapshot.generation,
            index,
            mode: snapshot.hosts[index].mode,
        }
    }

    /// The connection's host in `snapshot`: the same index while the snapshot
    /// is the same, else found again by the connection's SNI name (a reload
    /// may have renumbered the hosts). True when it changed generation.
    pub fn refresh(&mut self, snapshot: &Snapshot, ssl: &boring::ssl::SslRef) -> bool {
        if self.generation == snapshot.generation {
            return false;
        }
        let index = snapshot
            .names
            .select(ssl.servername(boring::ssl::NameType::HOST_NAME));
        *self = ConnHost::new(snapshot, index);
        true
    }
}

/// True when every name the request addresses selects the connection's host.
///
/// A connection whose SNI selected host A cannot reach host B by naming B in
/// `Host` or in an absolute-form target (RFC 9110 §15.5.20: 421). Connections
/// without SNI, or with an unknown name, belong to the default host and can
/// only reach it.
fn addressed_to(req: &Request, snapshot: &Snapshot, host: usize) -> bool {
    if snapshot.hosts.len() == 1 {
        return true;
    }
    let target = crate::config_file::authority_of_target(&req.target);
    [req.host.as_deref(), target]
        .into_iter()
        .flatten()
        .all(|authority| snapshot.names.authority_allowed(host, authority))
}

/// Serve HTTP requests on an established TLS connection.
///
/// `presented` is what the client presented, evaluated under the snapshot of
/// `host.generation`. Before each request the policy of the request's route
/// decides; the decision is kept while the route, the snapshot and the time
/// window stay the same, so a certificate removed from the trust
/// configuration loses access on connections already open too.
pub async fn serve_http<S: Io>(
    conn: &mut TlsConn<S>,
    peer: SocketAddr,
    mut presented: Presented,
    mut host: ConnHost,
    w: &Rc<Worker<S>>,
) {
    let config = &w.shared.config;
    let ttl = config.verify_cache_ttl;
    let mut admission: Option<Admission> = None;
    let client_ip = ClientIp::from(peer.ip());

    // Room is reserved once bytes arrive (see TlsConn::read), and given back
    // whenever the connection waits idle between requests.
    let mut buf = BytesMut::new();
    let mut first = true;
    loop {
        let req = match read_request(conn, &mut buf, first, w).await {
            Ok(Some(req)) => req,
            Ok(None) => break,
            Err(failure) => return fail(conn, failure, w).await,
        };
        first = false;
        let snapshot = w.shared.snapshot.load();
        if host.refresh(&snapshot, conn.ssl()) && host.mode != ClientCertMode::Off {
            presented = evaluate(&snapshot.trust, conn.ssl());
        }
        if !addressed_to(&req, &snapshot, host.index) {
            return fail(conn, Failure::Answer(421, "Misdirected Request"), w).await;
        }
        let h = &snapshot.hosts[host.index];
        let (route, policy) = h.policy_for(&req.target);
        let fresh = |a: &Admission| {
            a.generation == host.generation && a.route == route && Instant::now() < a.recheck_at
        };
        let admission = match admission.take().filter(fresh) {
            Some(a) => admission.insert(a),
            None => admission.insert(Admission::new(&presented, policy, &host, route, ttl)),
        };
        let backend = h.backend;
        drop(snapshot);
        if !admission.allowed {
            // Never forwarded: the backend does not see requests without the policy's yes.
            return fail(conn, Failure::Answer(403, INVALID_CERT_MESSAGE), w).await;
        }
        let ctx = ForwardContext {
            client_ip,
            cert_headers: &admission.cert_headers,
            verify: admission.verify_header.as_deref(),
        };
        let result = exchange(conn, &mut buf, &req, &ctx, backend, w).await;
        w.stats
            .bytes_received
            .add(std::mem::take(&mut conn.traffic.received));
        w.stats
            .bytes_sent
            .add(std::mem::take(&mut conn.traffic.sent));
        match result {
            Ok(true) => {}
            Ok(false) => break,
            Err(failure) => return fail(conn, failure, w).await,
        }
    }
    close(conn, w).await;
}

/// Write to the client within one idle timeout: a client that stops reading
/// cannot hold its connection (and a backend connection) forever.
async fn to_client<S: Io>(conn: &mut TlsConn<S>, data: &[u8], w: &Worker<S>) -> Result<(), ()> {
    match tokio::time::timeout(w.shared.config.idle_timeout, conn.write_all(data)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Close the TLS session within one idle timeout.
async fn close<S: Io>(conn: &mut TlsConn<S>, w: &Worker<S>) {
    let _ = tokio::time::timeout(w.shared.config.idle_timeout, conn.close_notify()).await;
}

async fn fail<S: Io>(conn: &mut TlsConn<S>, failure: Failure, w: &Worker<S>) {
    let failure = match failure {
        Failure::Stale => Failure::Answer(502, "Bad Gateway"),
        f => f,
    };
    if let Failure::Answer(status, message) = failure {
        w.stats.response(status);
        if to_client(conn, &error_response(status, message, true), w)
            .await
            .is_ok()
        {
            // Bounded as a whole: the close_notify write included.
            let _ = tokio::time::timeout(2 * LINGER, conn.linger(LINGER)).await;
        }
    }
}

/// Read the next request head. `Ok(None)`: the client closed, idled out, or we are draining.
///
/// While draining, a connection's first request is still read and served (its
/// client has just completed a handshake); later ones are not waited for.
async fn read_request<S: Io>(
    conn: &mut TlsConn<S>,
    buf: &mut BytesMut,
    first: bool,
    w: &Worker<S>,
) -> Result<Option<Request>, Failure> {
    let config = &w.shared.config;
    let mut stop = w.shutdown.clone();
    // Once a request has begun, its whole head must arrive within one idle
    // timeout (a slowloris sending a byte at a time gains nothing).
    let mut head_deadline = None;
    loop {
        if !buf.is_empty() {
            if let Parsed::Complete { head, len } = parse_request(buf, config.max_header_bytes)? {
                buf.advance(len);
                return Ok(Some(head));
            }
        }
        if buf.is_empty() && !first && w.shutting_down() {
            return Ok(None);
        }
        let idle = buf.is_empty();
        if idle {
            if buf.capacity() > SMALL {
                *buf = BytesMut::new();
            }
        } else if buf.capacity() - buf.len() < RECORD / 2 {
            buf.reserve(RECORD);
        }
        let interruptible = idle && !first;
        let now = tokio::time::Instant::now();
        let deadline = match head_deadline {
            Some(d) => d,
            None if idle => now + config.idle_timeout,
            None => *head_deadline.insert(now + config.idle_timeout),
        };
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, conn.read(buf)) => r,
            _ = stop.changed(), if interruptible => return Ok(None),
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) if idle => return Ok(None),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(Failure::Client),
            Ok(Ok(_)) => {}
            Err(_elapsed) if idle => return Ok(None),
            Err(_elapsed) => return Err(Failure::Answer(408, "Request Timeout")),
        }
    }
}

/// A backend connection and whether it came from the pool.
async fn checkout<S: Io>(w: &Worker<S>, backend: SocketAddr) -> Result<(S, bool), Failure> {
    {
        let mut pools = w.pool.borrow_mut();
        let pool = pools.of(backend);
        if let Some((up, since)) = pool.pop() {
            if since.elapsed() < POOL_IDLE {
                return Ok((up, true));
            }
            // The newest is too old, so are all below it.
            pool.clear();
        }
    }
    let config = &w.shared.config;
    match tokio::time::timeout(config.backend_timeout, S::connect(backend)).await {
        Ok(Ok(up)) => Ok((up, false)),
        Ok(Err(e)) => {
            debug!("backend connect failed: {e}");
            w.stats.backend_error(BackendError::Connect);
            Err(Failure::Answer(502, "Bad Gateway"))
        }
        Err(_) => {
            w.stats.backend_error(BackendError::Timeout);
            Err(Failure::Answer(504, "Gateway Timeout"))
        }
    }
}

/// Write to the backend within the backend timeout. `reused`: a failed write
/// means a stale pooled connection.
///
/// The buffer comes back with its bytes unchanged when the write finished,
/// failed or was refused (a write does not consume it); it is lost only on a
/// timeout, which cancels the operation.
async fn send<S: Io>(
    up: &S,
    data: BytesMut,
    reused: bool,
    w: &Worker<S>,
) -> (Result<(), Failure>, Option<BytesMut>) {
    match tokio::time::timeout(w.shared.config.backend_timeout, up.write_all(data)).await {
        Ok((Ok(()), data)) => (Ok(()), Some(data)),
        Ok((Err(_), data)) if reused => (Err(Failure::Stale), Some(data)),
        Ok((Err(e), data)) => {
            debug!("backend write failed: {e}");
            w.stats.backend_error(BackendError::Io);
            (Err(Failure::Answer(502, "Bad Gateway")), Some(data))
        }
        Err(_) => {
            w.stats.backend_error(BackendError::Timeout);
            (Err(Failure::Answer(504, "Gateway Timeout")), None)
        }
    }
}

/// Forward one request and its response. `Ok(true)`: the client connection stays open.
async fn exchange<S: Io>(
    conn: &mut TlsConn<S>,
    buf: &mut BytesMut,
    req: &Request,
    ctx: &ForwardContext<'_>,
    backend: SocketAddr,
    w: &Worker<S>,
) -> Result<bool, Failure> {
    let config = &w.shared.config;
    // The head goes out in one write with the body bytes already read
    // (`send_request`): room for them too, so they are not copied twice
    // (once into the head, again when the head's buffer grows).
    let body_start = if req.body == BodyKind::None {
        0
    } else {
        buf.len()
    };
    let mut head = BytesMut::with_capacity(1024 + ctx.cert_headers.len() + body_start);
    write_upstream_head(req, ctx, &mut head);

    if req.expect_continue && req.body != BodyKind::None {
        to_client(conn, CONTINUE_100, w)
            .await
            .map_err(|_| Failure::Client)?;
    }

    // An idempotent body-less request is sent again, once, on a fresh
    // connection when a pooled one turns out to have been closed by the backend
    // (it failed before a single response byte arrived).
    let mut retry = req.body == BodyKind::None && idempotent(&req.method);
    let (up, mut rbuf, resp) = loop {
        let (up, reused) = checkout(w, backend).await?;
        let sent = send_request(conn, buf, &up, &mut head, reused, req, w).await;
        let outcome = match sent {
            Ok(()) => read_response_head(&up, reused, req, w).await,
            Err(f) => Err(f),
        };
        match outcome {
            Ok((rbuf, resp)) => break (up, rbuf, resp),
            Err(Failure::Stale) if retry => retry = false,
            Err(Failure::Stale) => {
                w.stats.backend_error(BackendError::Io);
                return Err(Failure::Stale);
            }
            Err(f) => return Err(f),
        }
    };

    let keep_client = req.keep_alive && resp.body != BodyKind::CloseDelimited && !w.shutting_down();
    let connection = if !keep_client {
        DownstreamConnection::Close
    } else if req.minor_version == 0 {
        DownstreamConnection::KeepAlive
    } else {
        DownstreamConnection::Persistent
    };
    w.stats.response(resp.status);

    // Response head plus the first body bytes in one TLS write.
    let mut framing = Framing::new(resp.body, false);
    let mut out = BytesMut::with_capacity(1024 + rbuf.len());
    write_downstream_head_with(&resp, connection, &mut out);
    let n = framing.take(&rbuf).map_err(|_| Failure::Abort)?;
    out.extend_from_slice(&rbuf[..n]);
    rbuf.advance(n);
    to_client(conn, &out, w).await.map_err(|_| Failure::Abort)?;
    drop(out);

    let client_in_kernel = conn.kernel_fd_for_splice().is_some();
    if let BodyPath::Splice(rest) = body_path(config.ktls_splice, client_in_kernel, &framing) {
        let limits = Deadlines {
            read: config.backend_timeout,
            write: config.idle_timeout,
        };
        let mut src = PlainSource(&up);
        match forward_body(&mut src, conn.sock(), &w.pipes, &mut rbuf, rest, limits).await {
            Ok(moved) => {
                w.stats.spliced(SpliceDirection::Response, moved.spliced);
                conn.traffic.sent += moved.spliced + moved.copied;
                framing = Framing::Done;
            }
            // No pipe: nothing moved, the copy loop below carries the body.
            Err(BodyError::Pipe(e)) => debug!("response body copied: {e}"),
            Err(e) => {
                debug!("response body: {e}");
                match e {
                    BodyError::SourceTimeout(_) => w.stats.backend_error(BackendError::Timeout),
                    BodyError::Source(_) | BodyError::Truncated { .. } => {
                        w.stats.backend_error(BackendError::Io)
                    }
                    _ => {}
                }
                return Err(Failure::Abort);
            }
        }
    }

    // A read that fills its buffer means more is waiting: read bigger, so the
    // body goes out in writes of several records.
    let mut chunk = RECORD;
    while !framing.done() {
        rbuf.clear();
        if rbuf.capacity() < chunk {
            // A new buffer: growing this one would copy the bytes already
            // sent (its allocation still holds them).
            rbuf = BytesMut::with_capacity(chunk);
        }
        let room = rbuf.capacity();
        let read = tokio::time::timeout(config.backend_timeout, up.read(rbuf)).await;
        let (res, b) = match read {
            Ok(r) => r,
            Err(_) => {
                w.stats.backend_error(BackendError::Timeout);
                return Err(Failure::Abort);
            }
        };
        rbuf = b;
        match res {
            Ok(0) if matches!(framing, Framing::UntilClose) => break,
            Ok(0) | Err(_) => {
                w.stats.backend_error(BackendError::Io);
                return Err(Failure::Abort);
            }
            Ok(n) => chunk = if n == room { STREAM } else { RECORD },
        }
        let n = framing.take(&rbuf).map_err(|_| Failure::Abort)?;
        to_client(conn, &rbuf[..n], w)
            .await
            .map_err(|_| Failure::Abort)?;
        rbuf.advance(n);
    }

    if resp.keep_alive && rbuf.is_empty() && resp.body != BodyKind::CloseDelimited {
        let mut pools = w.pool.borrow_mut();
        let pool = pools.of(backend);
        if pool.len() < config.backend_pool {
            pool.push((up, Instant::now()));
        }
    }
    Ok(keep_client)
}

/// Send the request head and stream the request body from the client to the backend.
///
/// The head goes out in the first write, with the body bytes already read.
/// For a request without a body that write is the head alone, and its buffer
/// (unchanged) is put back into `head`, so that a retry on a fresh connection
/// sends it again without the head having been copied for each attempt.
async fn send_request<S: Io>(
    conn: &mut TlsConn<S>,
    buf: &mut BytesMut,
    up: &S,
    head: &mut BytesMut,
    reused: bool,
    req: &Request,
    w: &Worker<S>,
) -> Result<(), Failure> {
    let mut framing = Framing::new(req.body, true);
    let bodiless = framing.done();
    let mut pending = std::mem::take(head);
    // Only the first write can reveal a stale pooled connection; once part of
    // the request has gone out, a failure is the backend's.
    let mut reused = reused;
    loop {
        let n = framing.take(buf)?;
        if pending.is_empty() {
            pending = buf.split_to(n);
        } else {
            pending.extend_from_slice(&buf[..n]);
            buf.advance(n);
        }
        if !pending.is_empty() {
            let (sent, data) = send(up, std::mem::take(&mut pending), reused, w).await;
            if reused && bodiless {
                if let Some(data) = data {
                    *head = data;
                }
            }
            sent?;
            reused = false;
        }
        if framing.done() {
            return Ok(());
        }
        let client_in_kernel = conn.kernel_fd_for_splice().is_some();
        let splice_on = w.shared.config.ktls_splice;
        if let BodyPath::Splice(rest) = body_path(splice_on, client_in_kernel, &framing) {
            let limits = Deadlines {
                read: w.shared.config.idle_timeout,
                write: w.shared.config.backend_timeout,
            };
            match forward_body(conn, up, &w.pipes, buf, rest, limits).await {
                Ok(moved) => {
                    w.stats.spliced(SpliceDirection::Request, moved.spliced);
                    conn.traffic.received += moved.spliced;
                    return Ok(());
                }
                // No pipe: nothing moved, the copy loop carries the body.
                Err(BodyError::Pipe(e)) => debug!("request body copied: {e}"),
                Err(e) => {
                    debug!("request body: {e}");
                    return Err(match e {
                        BodyError::SinkTimeout(_) => {
                            w.stats.backend_error(BackendError::Timeout);
                            Failure::Answer(504, "Gateway Timeout")
                        }
                        BodyError::Sink(_) => {
                            w.stats.backend_error(BackendError::Io);
                            Failure::Answer(502, "Bad Gateway")
                        }
                        _ => Failure::Client,
                    });
                }
            }
        }
        // Room for several records: what has arrived goes on in one write.
        if buf.capacity() - buf.len() < RECORD {
            buf.reserve(STREAM);
        }
        match tokio::time::timeout(w.shared.config.idle_timeout, conn.read(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Err(Failure::Client),
        }
    }
}

/// Read the backend's response head (skipping 100-continue style interim answers).
async fn read_response_head<S: Io>(
    up: &S,
    reused: bool,
    req: &Request,
    w: &Worker<S>,
) -> Result<(BytesMut, crate::http::Response), Failure> {
    let config = &w.shared.config;
    let is_head = req.method.eq_ignore_ascii_case("HEAD");
    let deadline = tokio::time::Instant::now() + config.backend_timeout;
    let mut rbuf = BytesMut::with_capacity(RECORD);
    let mut seen_any = false;
    loop {
        if !rbuf.is_empty() {
            match parse_response(&rbuf, config.max_header_bytes, is_head) {
                Ok(Parsed::Complete { head, len }) => {
                    rbuf.advance(len);
                    if head.is_informational() {
                        if head.status == 101 {
                            w.stats.backend_error(BackendError::Protocol);
                            return Err(Failure::Answer(502, "Bad Gateway"));
                        }
                        continue;
                    }
                    return Ok((rbuf, head));
                }
                Ok(Parsed::Partial) => {}
                Err(e) => {
                    debug!("backend sent an invalid response: {e}");
                    w.stats.backend_error(BackendError::Protocol);
                    return Err(Failure::Answer(502, "Bad Gateway"));
                }
            }
        }
        if rbuf.capacity() - rbuf.len() < RECORD / 2 {
            rbuf.reserve(RECORD);
        }
        let (res, b) = match tokio::time::timeout_at(deadline, up.read(rbuf)).await {
            Ok(r) => r,
            Err(_) => {
                w.stats.backend_error(BackendError::Timeout);
                return Err(Failure::Answer(504, "Gateway Timeout"));
            }
        };
        rbuf = b;
        match res {
            Ok(n) if n > 0 => {}
            _ if reused && rbuf.is_empty() && !seen_any => return Err(Failure::Stale),
            _ => {
                w.stats.backend_error(BackendError::Io);
                return Err(Failure::Answer(502, "Bad Gateway"));
            }
        }
        seen_any = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_offloaded_length_framed_bodies_are_spliced() {
        let length = || Framing::new(BodyKind::ContentLength(1 << 20), true);
        assert_eq!(body_path(true, true, &length()), BodyPath::Splice(1 << 20));
        // The switch off, or the client's records in user space: copied.
        assert_eq!(body_path(false, true, &length()), BodyPath::Copy);
        assert_eq!(body_path(true, false, &length()), BodyPath::Copy);
        // After some bytes were taken, the rest is what is spliced.
        let mut f = length();
        assert_eq!(f.take(&[0u8; 100]).unwrap(), 100);
        assert_eq!(body_path(true, true, &f), BodyPath::Splice((1 << 20) - 100));
        // Framings whose end must be read are copied, offloaded or not.
        for kind in [BodyKind::Chunked, BodyKind::CloseDelimited, BodyKind::None] {
            for request in [true, false] {
                let f = Framing::new(kind, request);
                assert_eq!(body_path(true, true, &f), BodyPath::Copy, "{kind:?}");
            }
        }
        assert_eq!(
            body_path(true, true, &Framing::new(BodyKind::ContentLength(0), false)),
            BodyPath::Copy
        );
    }
}
