//! TLS over owned-buffer I/O: BoringSSL works on in-memory ciphertext buffers, the loop moves them.
//!
//! BoringSSL reads ciphertext from [`Ciphertext`] (and reports `WANT_READ`
//! when it holds nothing) and appends what it writes to
//! [`Ciphertext::outgoing`]. Received ciphertext sits either in a buffer of
//! the worker's pool (io_uring's provided-buffer ring: the kernel filled it,
//! and it goes back to the pool the moment BoringSSL has taken the bytes) or,
//! without a pool, in the connection's own `incoming` buffer, read into
//! directly. Either way it is not copied before BoringSSL reads it, and
//! `outgoing` is written as one owned buffer; plaintext exists once, in the
//! caller's buffer.

use std::io::{self, Read, Write};

use boring::ssl::{ErrorCode, ShutdownResult, Ssl, SslStream};
use bytes::{Buf, BytesMut};

use crate::runtime::io::{Io, Pooled};
use crate::runtime::uring::bufring::Lease;
use crate::runtime::uring::fixedbuf::FixedBuf;
use crate::tls::ktls::{self, Kernel};

/// One TLS record plus header room: the natural unit of a socket read.
pub const RECORD: usize = 17 * 1024;

/// A body that streams moves in chunks of this size: one socket read or
/// write for four records, instead of one per record.
pub const STREAM: usize = 4 * RECORD;

/// The buffer an idle connection waits with: enough for a request or a
/// handshake flight. A read that fills it is followed by record-sized ones.
pub const SMALL: usize = 4 * 1024;

/// In-memory ciphertext, both directions.
#[derive(Default)]
pub struct Ciphertext {
    /// Received from the peer into the connection's own buffer, not yet
    /// consumed by BoringSSL.
    pub incoming: BytesMut,
    /// Received into a pool buffer, not yet consumed by BoringSSL (read
    /// after `incoming`; dropped, so returned to the pool, once consumed).
    pub pooled: Option<Lease>,
    /// Produced by BoringSSL into a registered buffer (io_uring), not yet
    /// written; it comes before `outgoing`, which takes what does not fit.
    pub fixed: Option<FixedBuf>,
    /// Produced by BoringSSL, not yet written to the socket.
    pub outgoing: BytesMut,
}

impl Ciphertext {
    /// Bytes produced by BoringSSL and not yet written to the socket.
    pub fn unsent(&self) -> usize {
        self.fixed.as_ref().map_or(0, |f| f.len()) + self.outgoing.len()
    }

    /// No received byte is waiting for BoringSSL.
    pub fn drained(&self) -> bool {
        self.incoming.is_empty() && self.pooled.is_none()
    }
}

impl Read for Ciphertext {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.incoming.is_empty() {
            let n = buf.len().min(self.incoming.len());
            buf[..n].copy_from_slice(&self.incoming[..n]);
            self.incoming.advance(n);
            return Ok(n);
        }
        let Some(lease) = self.pooled.as_mut() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = buf.len().min(lease.len());
        buf[..n].copy_from_slice(&lease[..n]);
        lease.advance(n);
        if lease.is_empty() {
            self.pooled = None;
        }
        Ok(n)
    }
}

impl Write for Ciphertext {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        if let Some(fixed) = self.fixed.as_mut() {
            if self.outgoing.is_empty() {
                rest = &rest[fixed.append(rest)..];
            }
        }
        self.outgoing.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Byte counts of the ciphertext moved, for metrics.
#[derive(Default, Clone, Copy, Debug)]
pub struct Traffic {
    /// Read from the socket.
    pub received: u64,
    /// Written to the socket.
    pub sent: u64,
}

/// A TLS connection over an owned-buffer stream.
pub struct TlsConn<S> {
    tls: SslStream<Ciphertext>,
    sock: S,
    eof: bool,
    /// The last socket read filled its buffer: more is likely coming, read big.
    streaming: bool,
    /// Ciphertext moved so far (plaintext once the kernel holds the records).
    pub traffic: Traffic,
    /// Whether the record layer is (or is about to be) in the kernel (kTLS).
    kernel: Kernel,
}

fn ssl_err(e: boring::ssl::Error) -> io::Error {
    match e.into_io_error() {
        Ok(io) => io,
        Err(e) => io::Error::other(e.to_string()),
    }
}

impl<S: Io> TlsConn<S> {
    /// Start a server-side connection.
    pub fn new(ssl: Ssl, sock: S) -> io::Result<Self> {
        // SAFETY: `ssl` is a valid, exclusively owned SSL that has not started a
        // handshake; marking it as the server side is what SSL_accept would do.
        unsafe { boring_sys::SSL_set_accept_state(foreign_types::ForeignType::as_ptr(&ssl)) };
        let tls = SslStream::new(ssl, Ciphertext::default()).map_err(io::Error::other)?;
        Ok(TlsConn {
            tls,
            sock,
            eof: false,
            streaming: false,
            traffic: Traffic::default(),
            kernel: Kernel::UserSpace,
        })
    }

    /// The BoringSSL connection (peer certificate, version, resumption).
    pub fn ssl(&self) -> &boring::ssl::SslRef {
        self.tls.ssl()
    }

    /// The underlying stream.
    pub fn sock(&self) -> &S {
        &self.sock
    }

    /// Whether BoringSSL holds received bytes not yet returned (decrypted
    /// plaintext, or buffered records not yet processed).
    fn has_pending(&self) -> bool {
        // SAFETY: the SSL pointer is valid for the lifetime of `self.tls`;
        // SSL_has_pending only reads its buffers' state.
        unsafe {
            boring_sys::SSL_has_pending(foreign_types::ForeignTypeRef::as_ptr(self.tls.ssl())) == 1
        }
    }

    /// The socket's descriptor when bodies may be spliced to and from it: the
    /// kernel holds the record layer (kTLS) and nothing received or to be
    /// sent is buffered in user space. `None` otherwise (copy the bytes).
    pub fn kernel_fd_for_splice(&self) -> Option<std::os::fd::RawFd> {
        // The common case (records in user space) answers without asking BoringSSL.
        if !matches!(self.kernel, Kernel::Offloaded(_)) {
            return None;
        }
        let ct = self.tls.get_ref();
        let quiet = ct.drained() && ct.unsent() == 0 && !self.has_pending();
        quiet.then(|| self.sock.raw_fd())
    }

    /// Hand the record layer to the kernel at the next record boundary (kTLS).
    pub fn offload_when_idle(&mut self, pending: ktls::Pending) {
        self.kernel = Kernel::Pending(pending);
    }

    /// At a record boundary (called with `outgoing` flushed): offload if armed.
    fn offload_at_boundary(&mut self) -> io::Result<bool> {
        let idle =
            self.tls.get_ref().drained() && self.tls.get_ref().unsent() == 0 && !self.has_pending();
        if !self.kernel.pending() || !idle {
            return Ok(false);
        }
        self.kernel
            .offload_at_boundary(self.tls.ssl(), self.sock.raw_fd())
    }

    /// Write out everything BoringSSL has produced.
    pub async fn flush(&mut self) -> io::Result<()> {
        // The registered buffer first (its bytes come first), then back to the pool.
        if let Some(fixed) = self.tls.get_mut().fixed.take() {
            if !fixed.is_empty() {
                let len = fixed.len() as u64;
                let (res, _) = self.sock.write_fixed(fixed).await;
                res?;
                self.traffic.sent += len;
            }
        }
        let out = std::mem::take(&mut self.tls.get_mut().outgoing);
        if out.is_empty() {
            self.tls.get_mut().outgoing = out;
            return Ok(());
        }
        let len = out.len() as u64;
        let (res, mut out) = self.sock.write_all(out).await;
        out.clear();
        // Do not keep a large buffer on a connection that may now sit idle.
        if out.capacity() > 2 * SMALL {
            out = BytesMut::new();
        }
        self.tls.get_mut().outgoing = out;
        res?;
        self.traffic.sent += len;
        Ok(())
    }

    /// Read more ciphertext from the socket: into a pool buffer when the
    /// backend has one, else into `incoming`. `Ok(false)` at end of stream.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        debug_assert!(self.tls.get_ref().drained());
        // While a body streams in, read several records at once into the
        // connection's own buffer rather than one pool buffer at a time
        // (`Io::read` keeps the stream's order if a pooled receive is armed).
        let pooled = if self.streaming {
            Pooled::Unavailable
        } else {
            self.sock.read_pooled().await?
        };
        match pooled {
            Pooled::Data(lease) => {
                self.streaming = lease.filled();
                self.traffic.received += lease.len() as u64;
                let ct = self.tls.get_mut();
                // Waiting went through the pool: hold no buffer of our own.
                if ct.incoming.capacity() > 0 {
                    ct.incoming = BytesMut::new();
                }
                ct.pooled = Some(lease);
                return Ok(true);
            }
            Pooled::Eof => {
                self.eof = true;
                return Ok(false);
            }
            Pooled::Unavailable => {}
        }
        let mut inc = std::mem::take(&mut self.tls.get_mut().incoming);
        if self.streaming {
            if inc.capacity() - inc.len() < STREAM / 2 {
                inc.reserve(STREAM);
            }
        } else if inc.is_empty() && inc.capacity() > SMALL {
            // Waiting for a connection that went quiet: hold a small buffer only.
            inc = BytesMut::with_capacity(SMALL);
        } else if inc.capacity() - inc.len() < SMALL / 2 {
            inc.reserve(SMALL);
        }
        let room = inc.capacity() - inc.len();
        let (res, inc) = self.sock.read(inc).await;
        self.tls.get_mut().incoming = inc;
        match res? {
            0 => {
                self.eof = true;
                Ok(false)
            }
            n => {
                self.streaming = n == room;
                self.traffic.received += n as u64;
                Ok(true)
            }
        }
    }

    /// Run the handshake to completion.
    pub async fn handshake(&mut self) -> io::Result<()> {
        loop {
            match self.tls.do_handshake() {
                Ok(()) => return self.flush().await,
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    self.flush().await?;
                    if !self.fill().await? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => {
                    // Send the alert BoringSSL queued, if any, before giving up.
                    let _ = self.flush().await;
                    return Err(ssl_err(e));
                }
            }
        }
    }

    /// Decrypt into the spare capacity of `dst` (reserve first). `Ok(0)` at close_notify or end of stream.
    ///
    /// No room is reserved in `dst` until ciphertext has arrived, so a
    /// connection waiting for its next request holds no plaintext buffer.
    pub async fn read(&mut self, dst: &mut BytesMut) -> io::Result<usize> {
        let mut need_input = self.tls.get_ref().drained() && !self.has_pending();
        loop {
            if let Kernel::Offloaded(k) = &mut self.kernel {
                return k.read(&self.sock, dst, &mut self.traffic).await;
            }
            if need_input {
                if self.kernel.pending() {
                    // BoringSSL defers the TLS 1.3 tickets to the server's next write.
                    ktls::flush_deferred(self.tls.ssl_mut());
                }
                // Post-handshake messages (tickets, alerts) may be waiting to go out.
                self.flush().await?;
                if self.offload_at_boundary()? {
                    continue;
                }
                if !self.fill().await? {
                    return Ok(0);
                }
            }
            if dst.capacity() == dst.len() {
                dst.reserve(RECORD);
            }
            let spare = dst.spare_capacity_mut();
            match self.tls.ssl_read_uninit(spare) {
                Ok(n) => {
                    // SAFETY: ssl_read_uninit initialised the first `n` bytes of the spare capacity.
                    unsafe { dst.set_len(dst.len() + n) };
                    return Ok(n + self.read_buffered(dst));
                }
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Ok(0),
                // BoringSSL drained `incoming` without a whole record: the
                // top of the loop reads more.
                Err(e) if e.code() == ErrorCode::WANT_READ => need_input = true,
                Err(e) => {
                    let _ = self.flush().await;
                    return Err(ssl_err(e));
                }
            }
        }
    }

    /// Decrypt, without waiting, whatever whole records already arrived, into
    /// the room left in `dst`; so a body read in large socket reads also
    /// leaves in large writes. An error (or close_notify) is left for the
    /// next [`read`](Self::read), which meets it again: BoringSSL keeps it.
    fn read_buffered(&mut self, dst: &mut BytesMut) -> usize {
        let mut total = 0;
        while dst.capacity() > dst.len() && (!self.tls.get_ref().drained() || self.has_pending()) {
            match self.tls.ssl_read_uninit(dst.spare_capacity_mut()) {
                Ok(n) if n > 0 => {
                    // SAFETY: ssl_read_uninit initialised the first `n` bytes of the spare capacity.
                    unsafe { dst.set_len(dst.len() + n) };
                    total += n;
                }
                _ => break,
            }
        }
        total
    }

    /// Encrypt all of `data` and write it out.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if let Kernel::Offloaded(k) = &mut self.kernel {
            return k.write_all(&self.sock, data, &mut self.traffic).await;
        }
        let mut rest = data;
        while !rest.is_empty() {
            // Encrypt into a registered buffer when the backend lends one.
            if self.tls.get_ref().unsent() == 0 && self.tls.get_ref().fixed.is_none() {
                self.tls.get_mut().fixed = self.sock.fixed_buffer();
            }
            match self.tls.ssl_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) => return Err(ssl_err(e)),
            }
            if self.tls.get_ref().unsent() >= 4 * RECORD {
                self.flush().await?;
            }
        }
        self.flush().await
    }

    /// Send close_notify, for a connection that is closed next (closing the
    /// socket sends the FIN: no `shutdown` system call is needed).
    pub async fn close_notify(&mut self) {
        if let Kernel::Offloaded(k) = &mut self.kernel {
            return k.close_notify(&self.sock).await;
        }
        if let Ok(ShutdownResult::Sent | ShutdownResult::Received) = self.tls.shutdown() {
            let _ = self.flush().await;
        }
    }

    /// Send close_notify and shut the write side of the socket, for a
    /// connection that goes on reading.
    pub async fn shutdown(&mut self) {
        self.close_notify().await;
        let _ = self.sock.shutdown_write();
    }

    /// After an error answer: stop writing, then read and discard what the client
    /// still sends for a short while, so it reads our answer instead of a reset.
    pub async fn linger(&mut self, limit: std::time::Duration) {
        self.shutdown().await;
        let deadline = tokio::time::Instant::now() + limit;
        let mut discarded = 0usize;
        while discarded < 4 << 20 {
            let inc = std::mem::take(&mut self.tls.get_mut().incoming);
            let mut inc = {
                let mut b = inc;
                b.clear();
                if b.capacity() < RECORD {
                    b.reserve(RECORD);
                }
                b
            };
            let read = tokio::time::timeout_at(deadline, self.sock.read(inc)).await;
            match read {
                Ok((Ok(n), b)) if n > 0 => {
                    discarded += n;
                    inc = b;
                    self.tls.get_mut().incoming = inc;
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use boring::ssl::{Ssl, SslConnector, SslContextBuilder, SslMethod, SslVerifyMode};

    use super::*;
    use crate::runtime::test_support::{epoll_stream, on_epoll, on_uring, socket_pair};
    use crate::tls::pki::{self_signed, CertSpec, Usage};

    const BURST: usize = 3 * 16 * 1024;

    /// A body that arrives as several records at once is decrypted by one
    /// `read`, so the proxy passes it on in one write instead of one per record.
    async fn burst_is_read_at_once<S: Io>(sock: S, peer: std::net::TcpStream) {
        let issued = self_signed(&CertSpec::new("stream.test", Usage::Server)).unwrap();
        let mut sb = SslContextBuilder::new(SslMethod::tls()).unwrap();
        sb.set_certificate(&issued.cert).unwrap();
        sb.set_private_key(&issued.key).unwrap();
        let sctx = sb.build();
        let body: Vec<u8> = (0..BURST).map(|i| (i % 251) as u8).collect();
        let sent = body.clone();
        let (written_tx, written_rx) = tokio::sync::oneshot::channel();
        let client = std::thread::spawn(move || {
            let mut cb = SslConnector::builder(SslMethod::tls()).unwrap();
            cb.set_verify(SslVerifyMode::NONE);
            let mut tls = cb
                .build()
                .configure()
                .unwrap()
                .verify_hostname(false)
                .connect("stream.test", peer)
                .unwrap();
            tls.write_all(&sent).unwrap();
            tls.flush().unwrap();
            let _ = written_tx.send(());
            // Hold the connection until the server has read.
            let mut done = [0u8; 1];
            let _ = tls.read(&mut done);
        });

        let mut conn = TlsConn::new(Ssl::new(&sctx).unwrap(), sock).unwrap();
        conn.handshake().await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), written_rx)
            .await
            .expect("the client did not finish writing")
            .unwrap();
        let mut dst = BytesMut::with_capacity(STREAM);
        let n = conn.read(&mut dst).await.unwrap();
        assert_eq!(
            n, BURST,
            "three records that had all arrived came back {n} bytes at a time"
        );
        assert_eq!(&dst[..], &body[..]);
        conn.write_all(b"k").await.unwrap();
        conn.shutdown().await;
        client.join().unwrap();
    }

    #[test]
    fn burst_is_read_at_once_on_epoll() {
        let (ours, peer) = socket_pair();
        on_epoll(async { burst_is_read_at_once(epoll_stream(ours), peer).await });
    }

    /// With the provided-buffer ring: the first receive takes a pool buffer,
    /// the rest of the burst comes in one read of the connection's own.
    #[test]
    fn burst_is_read_at_once_on_io_uring() {
        let (ours, peer) = socket_pair();
        let settings = crate::runtime::uring::UringSettings::default();
        let detected = crate::runtime::uring::detect(&settings, 64).unwrap();
        assert!(
            detected.features.buf_ring,
            "this test wants the buffer ring (kernel 5.19+)"
        );
        on_uring(&settings, async {
            ours.set_nonblocking(true).unwrap();
            let sock = crate::runtime::uring::net::UringStream::from_std(ours);
            burst_is_read_at_once(sock, peer).await;
        });
    }
}
