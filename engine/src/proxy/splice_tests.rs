//! `forward_body` over plain loopback sockets, on epoll and on the io_uring driver.
//!
//! A wrapper stream refuses some splices the way a kTLS socket does in front
//! of a control record (`EINVAL`, nothing taken), so the copy fallback is
//! exercised too; the real kTLS socket is tested only in tests/ktls.rs.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;

use super::splice::{forward_body, BodyError, Deadlines, Moved, PlainSource};
use crate::runtime::io::Io;
use crate::runtime::pipe::{Pipe, PipePool};
use crate::runtime::splice_tests::pattern;
use crate::runtime::test_support::{epoll_stream, on_epoll, on_uring, socket_pair};
use crate::runtime::uring::{net::UringStream, UringSettings};

const LIMITS: Deadlines = Deadlines {
    read: Duration::from_secs(10),
    write: Duration::from_secs(10),
};

/// A stream whose splices into a pipe are refused every `refuse_every`-th
/// time with `EINVAL` and nothing read, as kTLS refuses a control record.
struct Refusing<S> {
    inner: S,
    refuse_every: u32,
    calls: Cell<u32>,
    refusals: Cell<u32>,
}

impl<S: Io> Io for Refusing<S> {
    async fn connect(addr: SocketAddr) -> io::Result<Self> {
        Ok(Refusing {
            inner: S::connect(addr).await?,
            refuse_every: 0,
            calls: Cell::new(0),
            refusals: Cell::new(0),
        })
    }
    async fn read(&self, buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        self.inner.read(buf).await
    }
    async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        self.inner.write_all(buf).await
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.inner.shutdown_write()
    }
    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.raw_fd()
    }
    async fn readable(&self) -> io::Result<()> {
        self.inner.readable().await
    }
    async fn splice_in(&self, pipe: Pipe, len: usize) -> (io::Result<usize>, Pipe) {
        let call = self.calls.get() + 1;
        self.calls.set(call);
        if self.refuse_every > 0 && call % self.refuse_every == 0 {
            self.refusals.set(self.refusals.get() + 1);
            return (Err(io::Error::from_raw_os_error(libc::EINVAL)), pipe);
        }
        self.inner.splice_in(pipe, len).await
    }
    async fn splice_out(&self, pipe: Pipe) -> (io::Result<()>, Pipe) {
        self.inner.splice_out(pipe).await
    }
}

/// One transfer: the source peer sends `body[prefix..]` then `after`; we hold
/// `body[..prefix]` + `extra` as already read; `forward_body` must deliver
/// exactly `body` and leave `extra` in the buffer and `after` in the socket.
async fn transfer<S: Io>(
    wrap: &impl Fn(TcpStream) -> S,
    refuse_every: u32,
    body_len: usize,
    prefix: usize,
    extra: &[u8],
    pipes: &PipePool,
) -> Moved {
    let body = pattern(body_len);
    let after = b"NEXT REQUEST".to_vec();
    let ((src, mut src_peer), (dst, mut dst_peer)) = (socket_pair(), socket_pair());
    let mut wire = body[prefix..].to_vec();
    wire.extend_from_slice(&after);
    let sender = std::thread::spawn(move || {
        src_peer.write_all(&wire).unwrap();
        // Keep the connection open: the body must end by its length, not EOF.
        std::thread::sleep(Duration::from_millis(300));
    });
    dst_peer
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        dst_peer.read_to_end(&mut got).unwrap();
        got
    });
    let mut src = Refusing {
        inner: wrap(src),
        refuse_every,
        calls: Cell::new(0),
        refusals: Cell::new(0),
    };
    let dst = Refusing {
        inner: wrap(dst),
        refuse_every: 0,
        calls: Cell::new(0),
        refusals: Cell::new(0),
    };
    let mut buf = BytesMut::from(&body[..prefix]);
    buf.extend_from_slice(extra);
    let mut source = PlainSource(&src);
    let moved = forward_body(&mut source, &dst, pipes, &mut buf, body_len as u64, LIMITS)
        .await
        .expect("body forwarded");
    assert!(
        buf.starts_with(extra),
        "bytes past the body stay in the buffer"
    );
    assert_eq!(moved.spliced + moved.copied, body_len as u64);
    dst.shutdown_write().unwrap();
    let got = receiver.join().unwrap();
    assert_eq!(got.len(), body_len, "{body_len} bytes arrive");
    assert!(got == body, "{body_len}: exact bytes in order");
    // What follows the body was not taken from the source socket (unless a
    // refused splice's ordinary read picked it up, which then sits in `buf`).
    let mut rest = buf[extra.len()..].to_vec();
    while rest.len() < after.len() {
        let (res, b) = src.read(BytesMut::with_capacity(64)).await;
        assert!(res.expect("read what follows") > 0);
        rest.extend_from_slice(&b);
    }
    assert_eq!(rest, after, "the next message is intact");
    if refuse_every > 0 && body_len > prefix {
        assert!(src.refusals.get() > 0, "the refusal path ran");
    }
    src.refuse_every = 0;
    sender.join().unwrap();
    moved
}

async fn body_cases<S: Io>(wrap: impl Fn(TcpStream) -> S) {
    let pipes = PipePool::new(64 * 1024);
    for len in [0usize, 1, 64 * 1024, (1 << 20) + 3] {
        // Nothing buffered: all of it spliced.
        let m = transfer(&wrap, 0, len, 0, b"", &pipes).await;
        assert_eq!(
            m,
            Moved {
                spliced: len as u64,
                copied: 0
            },
            "{len}"
        );
        // Some bytes already read into user space: they go first.
        let prefix = len.min(1000);
        let m = transfer(&wrap, 0, len, prefix, b"", &pipes).await;
        assert_eq!(m.copied, prefix as u64, "{len}");
        assert_eq!(m.spliced, (len - prefix) as u64, "{len}");
    }
    // The buffer holds the whole body and the start of the next message.
    let m = transfer(&wrap, 0, 500, 500, b"GET / HTTP/1.1", &pipes).await;
    assert_eq!(
        m,
        Moved {
            spliced: 0,
            copied: 500
        }
    );
    // Refused splices (a control record's place) fall back to a read, in order.
    for every in [1, 2, 3] {
        let len = (1 << 20) + 3;
        let m = transfer(&wrap, every, len, 10, b"", &pipes).await;
        assert!(
            m.copied > 10,
            "every {every}: some bytes were read around refusals"
        );
        if every > 1 {
            assert!(m.spliced > 0, "every {every}: splicing resumed");
        }
    }
    assert_eq!(pipes.idle(), 1, "one pipe served every transfer");

    // The source closes early: an error naming the missing bytes, no hang.
    let ((src, mut src_peer), (dst, _dst_peer)) = (socket_pair(), socket_pair());
    src_peer.write_all(&pattern(1000)).unwrap();
    drop(src_peer);
    let (src, dst) = (wrap(src), wrap(dst));
    let mut buf = BytesMut::new();
    let e = forward_body(&mut PlainSource(&src), &dst, &pipes, &mut buf, 5000, LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, BodyError::Truncated { missing: 4000 }), "{e}");

    // A silent source: the read deadline ends it.
    let ((src, _src_peer), (dst, _dst_peer)) = (socket_pair(), socket_pair());
    let (src, dst) = (wrap(src), wrap(dst));
    let short = Deadlines {
        read: Duration::from_millis(200),
        write: LIMITS.write,
    };
    let e = forward_body(&mut PlainSource(&src), &dst, &pipes, &mut buf, 10, short)
        .await
        .unwrap_err();
    assert!(matches!(e, BodyError::SourceTimeout(_)), "{e}");

    // A sink whose peer reads nothing: the write deadline ends it, and the
    // pipe that still holds bytes is not given back.
    let ((src, src_peer), (dst, dst_peer)) = (socket_pair(), socket_pair());
    socket2::SockRef::from(&dst)
        .set_send_buffer_size(8 * 1024)
        .unwrap();
    socket2::SockRef::from(&dst_peer)
        .set_recv_buffer_size(8 * 1024)
        .unwrap();
    let sender = std::thread::spawn(move || {
        let mut p = src_peer;
        let _ = p.write_all(&pattern(4 << 20));
    });
    let (src, dst) = (wrap(src), wrap(dst));
    pipes.give_back(Pipe::new(64 * 1024).unwrap());
    let idle_before = pipes.idle();
    let short = Deadlines {
        read: LIMITS.read,
        write: Duration::from_millis(300),
    };
    let e = forward_body(
        &mut PlainSource(&src),
        &dst,
        &pipes,
        &mut buf,
        4 << 20,
        short,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, BodyError::SinkTimeout(_)), "{e}");
    assert_eq!(
        pipes.idle(),
        idle_before - 1,
        "the stuck pipe is not reused"
    );
    drop(src);
    drop(dst);
    drop(dst_peer);
    // Joined off the loop: on io_uring the sockets close when the loop next parks.
    tokio::task::spawn_blocking(move || sender.join().unwrap())
        .await
        .unwrap();
}

#[test]
fn forward_body_on_epoll() {
    on_epoll(body_cases(epoll_stream));
}

#[test]
fn forward_body_on_io_uring() {
    on_uring(&UringSettings::plain(64), body_cases(UringStream::from_std));
}
