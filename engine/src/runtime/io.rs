//! The narrow I/O trait the engine is written against, and its epoll backend
//! (the io_uring one is [`crate::runtime::uring::net::UringStream`]).
//!
//! Both speak owned buffers: a read takes a `BytesMut`, fills its spare
//! capacity and gives it back; a write takes the buffer and gives it back
//! emptied of nothing (the caller clears it). That is the shape io_uring
//! needs (the kernel owns the buffer while the operation is in flight); the
//! epoll backend simply follows it.
#![allow(async_fn_in_trait)] // single-threaded runtimes: no Send bound wanted

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use bytes::BytesMut;

use crate::runtime::pipe::{self, Pipe};
use crate::runtime::uring::fixedbuf::FixedBuf;

/// A connected TCP stream.
pub trait Io: Sized + 'static {
    /// Connect to `addr`.
    async fn connect(addr: SocketAddr) -> io::Result<Self>;
    /// Read into the spare capacity of `buf` (after its current length); `Ok(0)` is end of stream.
    async fn read(&self, buf: BytesMut) -> (io::Result<usize>, BytesMut);
    /// Write all of `buf`.
    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut);
    /// Shut down the write side (FIN), leaving reads open.
    fn shutdown_write(&self) -> io::Result<()>;
    /// Receive into a buffer of the worker's shared pool (io_uring's
    /// provided-buffer ring), so that a connection waiting for data holds
    /// none. [`Pooled::Unavailable`] when the backend has no pool or it ran
    /// dry: the caller then reads into a buffer of its own with [`Io::read`].
    async fn read_pooled(&self) -> io::Result<Pooled> {
        Ok(Pooled::Unavailable)
    }
    /// A registered write buffer of the worker's pool, when the backend has
    /// one free (io_uring registered buffers); write it with [`Io::write_fixed`].
    fn fixed_buffer(&self) -> Option<FixedBuf> {
        None
    }
    /// Write all of a registered buffer.
    async fn write_fixed(&self, buf: FixedBuf) -> (io::Result<()>, FixedBuf) {
        (
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this io backend has no registered buffers",
            )),
            buf,
        )
    }
    /// The socket's descriptor (socket options, kernel TLS).
    fn raw_fd(&self) -> RawFd;
    /// Wait until a read would not block (data, end of stream or an error is
    /// there). A caller that then reads the descriptor itself and gets
    /// `WouldBlock` simply waits again.
    async fn readable(&self) -> io::Result<()>;

    /// Splice up to `len` bytes (at most the pipe's room) from this socket
    /// into `pipe`, without copying them through user space; waits until
    /// some are there. `Ok(0)` at end of stream (or for `len` 0). On an error
    /// nothing was added to the pipe. [`io::ErrorKind::Unsupported`] when the
    /// backend cannot splice this socket now (nothing was read).
    async fn splice_in(&self, pipe: Pipe, len: usize) -> (io::Result<usize>, Pipe) {
        let _ = len;
        (Err(no_splice()), pipe)
    }

    /// Splice everything `pipe` holds into this socket; waits for room. On an
    /// error the pipe still holds what was not written (see
    /// [`Pipe::held`]): such a pipe is discarded, not reused.
    async fn splice_out(&self, pipe: Pipe) -> (io::Result<()>, Pipe) {
        (Err(no_splice()), pipe)
    }

    /// Move up to `len` bytes from this socket to `to` through `pipe`
    /// (which must be empty) without user-space copies: one
    /// [`Io::splice_in`], then [`Io::splice_out`] until the pipe is empty.
    /// `Ok(0)` at end of stream. After an error, the pipe tells how far it
    /// got: empty means nothing was taken from this socket that did not
    /// reach `to`.
    async fn splice_to(&self, to: &Self, pipe: Pipe, len: usize) -> (io::Result<usize>, Pipe) {
        let (moved, pipe) = self.splice_in(pipe, len).await;
        let n = match moved {
            Ok(0) => return (Ok(0), pipe),
            Ok(n) => n,
            Err(e) => return (Err(e), pipe),
        };
        let (res, pipe) = to.splice_out(pipe).await;
        (res.map(|()| n), pipe)
    }
}

fn no_splice() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this io backend cannot splice between sockets",
    )
}

/// A nonblocking call that found nothing to do (or was interrupted): wait
/// for readiness again and retry.
pub(crate) fn retry_later(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// What a pooled receive produced.
pub enum Pooled {
    /// Received bytes, in a pool buffer that returns to the pool on drop.
    Data(crate::runtime::uring::bufring::Lease),
    /// End of stream.
    Eof,
    /// No pool buffer: read with [`Io::read`] instead.
    Unavailable,
}

// === epoll ===

/// A stream on tokio's epoll reactor.
pub struct EpollStream(tokio::net::TcpStream);

impl EpollStream {
    /// Wrap an accepted or connected socket.
    pub fn new(s: tokio::net::TcpStream) -> Self {
        let _ = s.set_nodelay(true);
        EpollStream(s)
    }
}

impl Io for EpollStream {
    async fn connect(addr: SocketAddr) -> io::Result<Self> {
        tokio::net::TcpStream::connect(addr)
            .await
            .map(EpollStream::new)
    }

    async fn read(&self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        loop {
            if let Err(e) = self.0.readable().await {
                return (Err(e), buf);
            }
            match self.0.try_read_buf(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                res => return (res, buf),
            }
        }
    }

    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let mut written = 0;
        while written < buf.len() {
            if let Err(e) = self.0.writable().await {
                return (Err(e), buf);
            }
            match self.0.try_write(&buf[written..]) {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Write)
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    async fn readable(&self) -> io::Result<()> {
        loop {
            self.0.readable().await?;
            // The caller reads the descriptor behind tokio's back, so tokio
            // never sees its WouldBlock: confirm readiness with a one-byte
            // peek through try_io, which clears a stale readiness.
            let peek = self.0.try_io(tokio::io::Interest::READABLE, || {
                let mut byte = 0u8;
                // SAFETY: one valid byte of buffer; MSG_PEEK leaves the data queued.
                let n = unsafe {
                    libc::recv(
                        self.raw_fd(),
                        (&mut byte as *mut u8).cast(),
                        1,
                        libc::MSG_PEEK | libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match peek {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // Data, end of stream, or an error (kTLS: EIO for a control
                // record peeked without a cmsg buffer): a read will not block.
                _ => return Ok(()),
            }
        }
    }

    async fn splice_in(&self, mut pipe: Pipe, len: usize) -> (io::Result<usize>, Pipe) {
        let len = len.min(pipe.room());
        if len == 0 {
            return (Ok(0), pipe);
        }
        let (from, to) = (self.raw_fd(), pipe.write_fd());
        loop {
            if let Err(e) = self.0.readable().await {
                return (Err(e), pipe);
            }
            // The pipe has room for `len`, so a WouldBlock is the socket's
            // (no data): try_io clears the readiness and the loop waits again.
            match self.0.try_io(tokio::io::Interest::READABLE, || {
                pipe::splice_nonblocking(from, to, len)
            }) {
                Ok(n) => {
                    pipe.filled(n);
                    return (Ok(n), pipe);
                }
                Err(e) if retry_later(&e) => {}
                Err(e) => return (Err(e), pipe),
            }
        }
    }

    async fn splice_out(&self, mut pipe: Pipe) -> (io::Result<()>, Pipe) {
        let (from, to) = (pipe.read_fd(), self.raw_fd());
        while !pipe.is_empty() {
            if let Err(e) = self.0.writable().await {
                return (Err(e), pipe);
            }
            // The pipe holds bytes, so a WouldBlock is the socket's (full).
            match self.0.try_io(tokio::io::Interest::WRITABLE, || {
                pipe::splice_nonblocking(from, to, pipe.held())
            }) {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), pipe),
                Ok(n) => pipe.drained(n),
                Err(e) if retry_later(&e) => {}
                Err(e) => return (Err(e), pipe),
            }
        }
        (Ok(()), pipe)
    }
}
