//! `Io::splice_to` between plain loopback sockets, on the epoll backend and on the io_uring driver.
//!
//! The kTLS path itself needs a kernel with the `tls` ULP (see tests/ktls.rs);
//! these tests check the splice machinery every backend shares with it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::metrics::WorkerStats;
use crate::runtime::io::Io;
use crate::runtime::pipe::{Pipe, PipePool};
use crate::runtime::test_support::{epoll_stream, on_epoll, on_uring, socket_pair};
use crate::runtime::uring::{self, net::UringStream, UringSettings};

/// No single transfer in these tests may take longer (a hang fails the test).
const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A peer that sends `data` and then closes.
fn sender(mut peer: TcpStream, data: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = peer.write_all(&data);
    })
}

/// A peer that reads until end of stream, `pause` before each 4 KiB read.
fn receiver(mut peer: TcpStream, pause: Duration) -> std::thread::JoinHandle<Vec<u8>> {
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
            match peer.read(&mut chunk) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
}

/// Splice until `len` bytes moved or the source ends; the count moved.
async fn splice_all<S: Io>(from: &S, to: &S, mut pipe: Pipe, len: usize) -> (usize, Pipe) {
    let mut moved = 0;
    while moved < len {
        let step = tokio::time::timeout(PATIENCE, from.splice_to(to, pipe, len - moved)).await;
        let (res, p) = step.expect("a splice never hangs");
        pipe = p;
        match res.expect("splice") {
            0 => break,
            n => moved += n,
        }
        assert!(pipe.is_empty(), "splice_to leaves the pipe empty");
    }
    (moved, pipe)
}

/// Every case on one backend; `wrap` turns a std socket into its stream.
async fn cases<S: Io>(wrap: impl Fn(TcpStream) -> S) {
    let pool = PipePool::new(64 * 1024);
    let first = pool.take().unwrap();
    let first_fd = first.read_fd();
    pool.give_back(first);

    for len in [0usize, 1, 64 * 1024, (1 << 20) + 3] {
        let data = pattern(len);
        let ((src, src_peer), (dst, dst_peer)) = (socket_pair(), socket_pair());
        let send = sender(src_peer, data.clone());
        let recv = receiver(dst_peer, Duration::ZERO);
        let (src, dst) = (wrap(src), wrap(dst));
        let pipe = pool.take().unwrap();
        assert_eq!(pipe.read_fd(), first_fd, "the pool's pipe is reused");
        let (moved, pipe) = splice_all(&src, &dst, pipe, len).await;
        assert_eq!(moved, len, "{len} bytes spliced");
        pool.give_back(pipe);
        dst.shutdown_write().unwrap();
        send.join().unwrap();
        let got = recv.join().unwrap();
        assert_eq!(got.len(), len, "{len}: bytes received");
        assert!(got == data, "{len}: the received bytes are the sent ones");
    }

    // The source closes after 1000 of the 5000 bytes asked for: a short
    // count and then end of stream, not a wait.
    let ((src, src_peer), (dst, dst_peer)) = (socket_pair(), socket_pair());
    let send = sender(src_peer, pattern(1000));
    let recv = receiver(dst_peer, Duration::ZERO);
    let (src, dst) = (wrap(src), wrap(dst));
    let (moved, pipe) = splice_all(&src, &dst, pool.take().unwrap(), 5000).await;
    assert_eq!(moved, 1000, "a short count when the source closes early");
    pool.give_back(pipe);
    dst.shutdown_write().unwrap();
    send.join().unwrap();
    assert!(recv.join().unwrap() == pattern(1000));

    // A slow receiver behind small socket buffers: the pipe fills, splice_out
    // waits for room many times, and everything still arrives.
    let ((src, src_peer), (dst, dst_peer)) = (socket_pair(), socket_pair());
    let len = 1 << 20;
    socket2::SockRef::from(&dst)
        .set_send_buffer_size(8 * 1024)
        .unwrap();
    socket2::SockRef::from(&dst_peer)
        .set_recv_buffer_size(8 * 1024)
        .unwrap();
    let send = sender(src_peer, pattern(len));
    let recv = receiver(dst_peer, Duration::from_micros(200));
    let (src, dst) = (wrap(src), wrap(dst));
    let (moved, pipe) = splice_all(&src, &dst, pool.take().unwrap(), len).await;
    assert_eq!(moved, len);
    pool.give_back(pipe);
    dst.shutdown_write().unwrap();
    send.join().unwrap();
    let got = recv.join().unwrap();
    assert!(got == pattern(len), "slow receiver: {} bytes", got.len());

    // After all of that, the one pipe is still the pool's, empty.
    assert_eq!(pool.idle(), 1);
    let again = pool.take().unwrap();
    assert_eq!((again.read_fd(), again.held()), (first_fd, 0));
}

#[test]
fn splice_on_epoll() {
    on_epoll(cases(epoll_stream));
}

/// On a worker-like ring with `settings`.
fn on_ring(settings: UringSettings, nonblocking: bool) {
    let detected = uring::detect(&settings, 64).expect("io_uring available");
    assert!(detected.fallbacks.is_empty(), "{:?}", detected.fallbacks);
    assert!(detected.features.splice, "the kernel's io_uring has SPLICE");
    on_uring(
        &settings,
        cases(move |s: TcpStream| {
            // Accepted and connected sockets are blocking in the engine.
            s.set_nonblocking(nonblocking).unwrap();
            UringStream::from_std(s)
        }),
    );
}

#[test]
fn splice_on_io_uring_with_plain_descriptors() {
    on_ring(UringSettings::plain(64), false);
}

#[test]
fn splice_on_io_uring_with_registered_files() {
    on_ring(
        UringSettings {
            fixed_files: true,
            ..UringSettings::plain(64)
        },
        false,
    );
}

#[test]
fn splice_on_io_uring_with_nonblocking_sockets() {
    on_ring(UringSettings::plain(64), true);
}

#[test]
fn a_socket_with_a_multishot_receive_is_not_spliced() {
    let settings = UringSettings::all_on(64);
    let detected = uring::detect(&settings, 64).expect("io_uring available");
    assert!(detected.features.recv_multishot, "{:?}", detected.fallbacks);
    let stats = Arc::new(WorkerStats::default());
    let driver = uring::worker_driver(&settings, detected.features, stats).unwrap();
    let ((src, mut src_peer), (dst, _dst_peer)) = (socket_pair(), socket_pair());
    src_peer.write_all(b"abc").unwrap();
    uring::run(driver, async move {
        let (src, dst) = (UringStream::from_std(src), UringStream::from_std(dst));
        // A pooled read arms the multishot receive.
        let got = src.read_pooled().await.unwrap();
        assert!(matches!(got, crate::runtime::io::Pooled::Data(_)));
        let (res, pipe) = src.splice_to(&dst, Pipe::new(64 * 1024).unwrap(), 10).await;
        let e = res.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
        assert!(pipe.is_empty());
    })
    .unwrap();
}
