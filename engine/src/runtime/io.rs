//! The narrow I/O trait the engine is written against, and its two backends (io_uring, epoll).
//!
//! Both speak owned buffers: a read takes a `BytesMut`, fills its spare
//! capacity and gives it back; a write takes the buffer and gives it back
//! emptied of nothing (the caller clears it). That is the shape io_uring
//! needs (the kernel owns the buffer while the operation is in flight); the
//! epoll backend simply follows it.
#![allow(async_fn_in_trait)] // single-threaded runtimes: no Send bound wanted

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;

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
    /// The socket's descriptor, for socket options and `recvmsg`/`sendmsg`
    /// that the trait does not carry (kTLS); it stays owned by the stream.
    fn raw_fd(&self) -> std::os::fd::RawFd;
    /// Wait until a read would not block (data, end of stream or an error is
    /// there). A caller that then reads the descriptor itself and gets
    /// `WouldBlock` simply waits again.
    async fn readable(&self) -> io::Result<()>;
}

/// A borrowed descriptor for a short-lived `AsyncFd` registration.
struct BorrowedRawFd(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for BorrowedRawFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

// === io_uring ===

/// A stream on the worker's io_uring.
pub struct UringStream(tokio_uring::net::TcpStream);

impl UringStream {
    /// Wrap an accepted or connected socket.
    pub fn new(s: tokio_uring::net::TcpStream) -> Self {
        let _ = s.set_nodelay(true);
        UringStream(s)
    }
}

/// A cancelled io_uring read keeps its operation (and with it the socket) alive
/// until the kernel completes it; with a silent peer that is never. Shutting
/// the socket down on drop completes every pending operation at once, so a
/// connection dropped on a timeout really closes.
impl Drop for UringStream {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

impl Io for UringStream {
    async fn connect(addr: SocketAddr) -> io::Result<Self> {
        tokio_uring::net::TcpStream::connect(addr)
            .await
            .map(UringStream::new)
    }

    async fn read(&self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        use tokio_uring::buf::BoundedBuf;
        let start = buf.len();
        let end = buf.capacity();
        let (res, slice) = self.0.read(buf.slice(start..end)).await;
        (res, slice.into_inner())
    }

    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        self.0.write_all(buf).await
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.0.shutdown(std::net::Shutdown::Write)
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    async fn readable(&self) -> io::Result<()> {
        // tokio-uring has no readiness API: register the descriptor with the
        // runtime's reactor for this one wait (registration reports the
        // current state, so data already there wakes at once).
        // SAFETY: the descriptor belongs to `self.0`, which outlives this
        // call and so the AsyncFd dropped at its end; it is not closed or
        // replaced meanwhile (`&self` is borrowed throughout).
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                BorrowedRawFd(self.raw_fd()),
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(io::Error::from)?;
        let _ready = fd.readable().await?;
        Ok(())
    }
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
}
