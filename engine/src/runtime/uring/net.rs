//! Sockets on the worker's ring: the listener's accept loop and connected streams.

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use bytes::BytesMut;
use io_uring::{opcode, squeue, types};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::bufring::{Lease, GROUP};
use super::driver::{self, Cqe, IGNORED};
use super::fixedbuf::FixedBuf;
use super::op::{Multi, Op};
use super::{files, Features};
use crate::runtime::io::{Io, Pooled};
use crate::runtime::pipe::Pipe;

/// A socket as operations name it: a plain descriptor or a registered slot.
#[derive(Clone, Copy, Debug)]
enum Target {
    Fd(RawFd),
    Fixed(u32),
}

/// Build an SQE for `target` with either fd type.
macro_rules! on {
    ($target:expr, |$t:ident| $build:expr) => {
        match $target {
            Target::Fd(fd) => {
                let $t = types::Fd(fd);
                $build
            }
            Target::Fixed(slot) => {
                let $t = types::Fixed(slot);
                $build
            }
        }
    };
}

fn features() -> Features {
    driver::with(|d| d.features)
}

// === listener ===

/// A listening socket whose connections arrive through the ring.
pub struct UringListener {
    socket: std::net::TcpListener,
    multishot: bool,
    armed: Option<Multi>,
}

impl UringListener {
    /// Accept on `socket` (multishot when the worker's features say so).
    pub fn new(socket: std::net::TcpListener) -> UringListener {
        UringListener {
            socket,
            multishot: features().accept_multishot,
            armed: None,
        }
    }

    /// The next connection.
    pub async fn accept(&mut self) -> io::Result<(UringStream, SocketAddr)> {
        let fd = self.socket.as_raw_fd();
        if !self.multishot {
            let addr: Box<(MaybeUninit<libc::sockaddr_storage>, libc::socklen_t)> = Box::new((
                MaybeUninit::zeroed(),
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
            ));
            let sqe = opcode::Accept::new(
                types::Fd(fd),
                addr.0.as_ptr() as *mut libc::sockaddr,
                &addr.1 as *const libc::socklen_t as *mut libc::socklen_t,
            )
            .flags(libc::SOCK_CLOEXEC)
            .build();
            // SAFETY: the address and its length live in `addr`'s heap box,
            // owned by the operation until it completes.
            let (cqe, addr) = unsafe { Op::new(sqe, addr) }.await;
            let conn = cqe.result()? as RawFd;
            // SAFETY: the kernel filled `addr.1` bytes of a sockaddr_storage.
            let peer = unsafe { SockAddr::new(addr.0.assume_init(), addr.1) };
            let stream = UringStream::adopt(conn);
            let peer = peer.as_socket().map_or_else(|| stream.peer_addr(), Ok)?;
            return Ok((stream, peer));
        }
        loop {
            let multi = self.armed.get_or_insert_with(|| {
                Multi::new(
                    opcode::AcceptMulti::new(types::Fd(fd))
                        .flags(libc::SOCK_CLOEXEC)
                        .build(),
                )
            });
            let Some(cqe) = multi.next().await else {
                // Ended (an error was delivered before, or the kernel stopped
                // it): arm again.
                self.armed = None;
                continue;
            };
            if !cqe.more() {
                self.armed = None;
            }
            let conn = cqe.result()? as RawFd;
            let stream = UringStream::adopt(conn);
            let peer = stream.peer_addr()?;
            return Ok((stream, peer));
        }
    }
}

impl AsRawFd for UringListener {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

// === streams ===

/// A connected TCP stream on the worker's ring.
pub struct UringStream {
    fd: RawFd,
    target: Target,
    /// The armed multishot receive, when receives use one.
    recv: RefCell<Option<Multi>>,
    /// Bytes of a pooled receive not yet handed out (after a plain `read`
    /// took part of one).
    stash: RefCell<Option<Lease>>,
    /// Operations whose futures are alive; a drop with any in flight shuts the
    /// socket down so they complete.
    in_flight: Cell<u32>,
}

/// Counts an operation from submission to completion. If its future is
/// dropped first, the count stays up: the kernel still holds the operation,
/// and the stream's drop must shut the socket down to end it.
struct Flight<'a>(&'a Cell<u32>);

impl<'a> Flight<'a> {
    fn new(c: &'a Cell<u32>) -> Self {
        c.set(c.get() + 1);
        Flight(c)
    }

    /// The operation completed.
    fn done(self) {
        self.0.set(self.0.get() - 1);
    }
}

impl UringStream {
    /// Take ownership of a connected socket descriptor.
    fn adopt(fd: RawFd) -> UringStream {
        let target = match driver::with(|d| files::install(d, fd)) {
            Some(slot) => Target::Fixed(slot),
            None => Target::Fd(fd),
        };
        UringStream {
            fd,
            target,
            recv: RefCell::new(None),
            stash: RefCell::new(None),
            in_flight: Cell::new(0),
        }
    }

    /// Take over a connected socket (it must be used on a uring worker's thread).
    pub fn from_std(s: std::net::TcpStream) -> UringStream {
        UringStream::adopt(s.into_raw_fd())
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket2::SockRef::from(self)
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("peer address is not an IP address"))
    }

    /// Submit `sqe` on this socket and wait for it, counted in flight.
    ///
    /// # Safety
    /// As [`Op::new`].
    async unsafe fn op<T: Unpin + 'static>(&self, sqe: squeue::Entry, data: T) -> (Cqe, T) {
        let flight = Flight::new(&self.in_flight);
        // SAFETY: the caller's promise.
        let out = unsafe { Op::new(sqe, data) }.await;
        flight.done();
        out
    }

    /// Wait for `events` (`POLLIN`, `POLLOUT`) on the socket.
    async fn poll(&self, events: libc::c_short) -> io::Result<()> {
        let sqe = on!(self.target, |t| opcode::PollAdd::new(t, events as u32)
            .build());
        // SAFETY: the operation lends no memory.
        let (cqe, ()) = unsafe { self.op(sqe, ()) }.await;
        cqe.result().map(drop)
    }

    /// What a write's completion means: bytes written, 0 to try again
    /// (interrupted, or a socket someone set non-blocking that now takes
    /// more), or the error.
    async fn written(&self, cqe: Cqe) -> io::Result<usize> {
        match cqe.result() {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.poll(libc::POLLOUT).await.map(|()| 0)
            }
            Err(e) => Err(e),
        }
    }

    /// One receive into the spare capacity of `buf`.
    async fn recv_into(&self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        loop {
            let spare = buf.capacity() - buf.len();
            // SAFETY (for the pointer): the spare capacity of `buf`, whose heap
            // storage the operation owns until completion.
            let ptr = unsafe { buf.as_mut_ptr().add(buf.len()) };
            let sqe = on!(self.target, |t| opcode::Recv::new(t, ptr, spare as u32)
                .build());
            // SAFETY: see above; moving the BytesMut does not move its storage.
            let (cqe, b) = unsafe { self.op(sqe, buf) }.await;
            buf = b;
            match cqe.result() {
                Ok(n) => {
                    // SAFETY: the kernel initialised `n` bytes after the old length.
                    unsafe { buf.set_len(buf.len() + n as usize) };
                    return (Ok(n as usize), buf);
                }
                // A socket someone set non-blocking: wait for data.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.poll(libc::POLLIN).await {
                        return (Err(e), buf);
                    }
                }
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// What one completion of a pooled receive means.
    fn pooled(cqe: Cqe) -> io::Result<Pooled> {
        let lease = cqe.buffer().map(|bid| {
            driver::with(|d| {
                let bufs = d
                    .bufs
                    .as_ref()
                    .expect("pooled receive without a buffer ring");
                bufs.lease(bid, cqe.res.max(0) as u32)
            })
        });
        match cqe.res {
            n if n > 0 => Ok(Pooled::Data(
                lease.expect("receive completion without its buffer"),
            )),
            0 => Ok(Pooled::Eof),
            e if -e == libc::ENOBUFS => {
                driver::with(|d| d.stats.uring_buffers_exhausted.inc());
                Ok(Pooled::Unavailable)
            }
            e => Err(io::Error::from_raw_os_error(-e)),
        }
    }
}

impl AsRawFd for UringStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl std::os::fd::AsFd for UringStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the descriptor stays open for as long as `self`.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) }
    }
}

impl Drop for UringStream {
    fn drop(&mut self) {
        if self.in_flight.get() > 0 {
            // Operations abandoned by their futures still wait on this socket
            // (a read of a silent peer): shutting it down completes them, so
            // the connection really closes.
            // SAFETY: our descriptor, still open.
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        }
        // An armed multishot receive is cancelled through the ring (queued
        // before the close below).
        drop(self.recv.get_mut().take());
        self.stash.get_mut().take();
        let fd = self.fd;
        let target = self.target;
        let queued = driver::try_with(|d| {
            if let Target::Fixed(slot) = target {
                files::remove(d, slot);
            }
            // Closing through the ring keeps the descriptor number taken until
            // every operation queued before it has been issued.
            d.push(opcode::Close::new(types::Fd(fd)).build().user_data(IGNORED));
        });
        if queued.is_none() {
            // SAFETY: our descriptor; no driver means nothing is queued on it.
            unsafe { libc::close(fd) };
        }
    }
}

impl Io for UringStream {
    async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.cloexec(),
            Some(Protocol::TCP),
        )?;
        socket.set_nodelay(true)?;
        let stream = UringStream::adopt(socket.into_raw_fd());
        let addr = Box::new(SockAddr::from(addr));
        let sqe = on!(stream.target, |t| opcode::Connect::new(
            t,
            addr.as_ptr(),
            addr.len()
        )
        .build());
        // SAFETY: the address lives in `addr`'s box, owned by the operation.
        let (cqe, _) = unsafe { stream.op(sqe, addr) }.await;
        cqe.result()?;
        Ok(stream)
    }

    async fn read(&self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        if self.recv.borrow().is_some() || self.stash.borrow().is_some() {
            // Receives on this socket go through the armed multishot: take the
            // next bytes from there so they stay in order.
            let stashed = self.stash.borrow_mut().take();
            let lease = match stashed {
                Some(l) => Pooled::Data(l),
                None => match self.read_pooled().await {
                    Ok(p) => p,
                    Err(e) => return (Err(e), buf),
                },
            };
            match lease {
                Pooled::Data(mut lease) => {
                    let n = lease.len().min(buf.capacity() - buf.len());
                    buf.extend_from_slice(&lease[..n]);
                    lease.advance(n);
                    if !lease.is_empty() {
                        *self.stash.borrow_mut() = Some(lease);
                    }
                    return (Ok(n), buf);
                }
                Pooled::Eof => return (Ok(0), buf),
                Pooled::Unavailable => {}
            }
        }
        self.recv_into(buf).await
    }

    async fn read_pooled(&self) -> io::Result<Pooled> {
        if let Some(lease) = self.stash.borrow_mut().take() {
            return Ok(Pooled::Data(lease));
        }
        let f = features();
        if !f.buf_ring {
            return Ok(Pooled::Unavailable);
        }
        if !f.recv_multishot {
            let sqe = on!(self.target, |t| opcode::Recv::new(
                t,
                std::ptr::null_mut(),
                0
            )
            .buf_group(GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT));
            // SAFETY: the operation lends no memory; the kernel picks a ring buffer.
            let (cqe, ()) = unsafe { self.op(sqe, ()) }.await;
            return Self::pooled(cqe);
        }
        let target = self.target;
        for _ in 0..2 {
            // The multishot stays in `self.recv` across the wait (borrowed only
            // while polled), so a dropped read loses nothing.
            let next = std::future::poll_fn(|cx| {
                let mut armed = self.recv.borrow_mut();
                armed
                    .get_or_insert_with(|| {
                        Multi::new(on!(target, |t| opcode::RecvMulti::new(t, GROUP).build()))
                    })
                    .poll_next(cx)
            })
            .await;
            match next {
                Some(cqe) => {
                    if !cqe.more() {
                        // Ended (end of stream, error, or no buffers): the next
                        // read arms a new one.
                        *self.recv.borrow_mut() = None;
                    }
                    return Self::pooled(cqe);
                }
                None => *self.recv.borrow_mut() = None,
            }
        }
        Ok(Pooled::Unavailable)
    }

    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        let zc_min = features().send_zc_min;
        let mut buf = buf;
        let mut done = 0usize;
        while done < buf.len() {
            let rest = buf.len() - done;
            // SAFETY (for the pointer): inside `buf`'s heap storage, owned by
            // the operation until its last completion.
            let ptr = unsafe { buf.as_ptr().add(done) };
            let sqe = if zc_min > 0 && rest >= zc_min {
                driver::with(|d| d.stats.uring_send_zc.inc());
                on!(self.target, |t| opcode::SendZc::new(t, ptr, rest as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build())
            } else {
                on!(self.target, |t| opcode::Send::new(t, ptr, rest as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build())
            };
            // SAFETY: see above. A zero-copy send completes only after the
            // kernel's notification that it no longer reads the buffer.
            let (cqe, b) = unsafe { self.op(sqe, buf) }.await;
            buf = b;
            match self.written(cqe).await {
                Ok(n) => done += n,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    fn fixed_buffer(&self) -> Option<FixedBuf> {
        driver::with(|d| d.fixed.as_ref().and_then(|p| p.take()))
    }

    async fn write_fixed(&self, buf: FixedBuf) -> (io::Result<()>, FixedBuf) {
        let mut buf = buf;
        let mut done = 0usize;
        while done < buf.len() {
            let rest = buf.len() - done;
            let (ptr, index) = (buf.ptr_at(done), buf.index());
            let sqe = on!(self.target, |t| opcode::WriteFixed::new(
                t,
                ptr as *mut u8,
                rest as u32,
                index
            )
            .build());
            // SAFETY: the pointer lies in the registered buffer owned by
            // `buf`, which the operation owns until it completes.
            let (cqe, b) = unsafe { self.op(sqe, buf) }.await;
            buf = b;
            match self.written(cqe).await {
                Ok(n) => done += n,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: our open descriptor.
        match unsafe { libc::shutdown(self.fd, libc::SHUT_WR) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    fn raw_fd(&self) -> RawFd {
        self.fd
    }

    async fn readable(&self) -> io::Result<()> {
        let sqe = on!(self.target, |t| opcode::PollAdd::new(
            t,
            libc::POLLIN as u32
        )
        .build());
        // SAFETY: the operation lends no memory.
        let (cqe, ()) = unsafe { self.op(sqe, ()) }.await;
        cqe.result().map(drop)
    }

    async fn splice_in(&self, pipe: Pipe, len: usize) -> (io::Result<usize>, Pipe) {
        if !features().splice {
            return (
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the kernel's io_uring lacks IORING_OP_SPLICE",
                )),
                pipe,
            );
        }
        if self.recv.borrow().is_some() || self.stash.borrow().is_some() {
            // Bytes of this socket may sit in the multishot's queue or the
            // stash: splicing past them would reorder the stream.
            return (
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "splice from a socket with a multishot receive armed",
                )),
                pipe,
            );
        }
        let mut pipe = pipe;
        let len = len.min(pipe.room());
        if len == 0 {
            return (Ok(0), pipe);
        }
        loop {
            // Wait on the ring first: IORING_OP_SPLICE runs in the kernel's
            // io-wq worker and would block there on an idle (blocking) socket.
            if let Err(e) = self.readable().await {
                return (Err(e), pipe);
            }
            let sqe = on!(self.target, |t| opcode::Splice::new(
                t,
                -1,
                types::Fd(pipe.write_fd()),
                -1,
                len as u32
            )
            .flags(libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE)
            .build());
            // SAFETY: no memory is lent; the pipe's descriptors stay open
            // because the operation owns the pipe until it completes.
            let (cqe, p) = unsafe { self.op(sqe, pipe) }.await;
            pipe = p;
            match cqe.result() {
                Ok(n) => {
                    pipe.filled(n as usize);
                    return (Ok(n as usize), pipe);
                }
                // Readiness raced with nothing to read: wait again.
                Err(e) if crate::runtime::io::retry_later(&e) => {}
                Err(e) => return (Err(e), pipe),
            }
        }
    }

    async fn splice_out(&self, pipe: Pipe) -> (io::Result<()>, Pipe) {
        let mut pipe = pipe;
        while !pipe.is_empty() {
            let sqe = on!(self.target, |t| opcode::Splice::new(
                types::Fd(pipe.read_fd()),
                -1,
                t,
                -1,
                pipe.held().min(u32::MAX as usize) as u32
            )
            .flags(libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE)
            .build());
            // SAFETY: as in splice_in.
            let (cqe, p) = unsafe { self.op(sqe, pipe) }.await;
            pipe = p;
            match self.written(cqe).await {
                Ok(n) => pipe.drained(n),
                Err(e) => return (Err(e), pipe),
            }
        }
        (Ok(()), pipe)
    }
}
