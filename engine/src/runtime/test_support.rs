//! Test helpers shared by the io backends' tests: loopback socket pairs, and
//! the two ways to run async code (the epoll backend's runtime, a worker-like
//! io_uring driver).

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use crate::admin::metrics::WorkerStats;
use crate::runtime::io::EpollStream;
use crate::runtime::uring::{self, UringSettings};

/// A connected pair on 127.0.0.1: (ours, the peer's end), both blocking.
pub(crate) fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    (ours, peer)
}

/// `s` as an epoll-backend stream (call it inside [`on_epoll`]).
pub(crate) fn epoll_stream(s: TcpStream) -> EpollStream {
    s.set_nonblocking(true).unwrap();
    EpollStream::new(tokio::net::TcpStream::from_std(s).unwrap())
}

/// Run `fut` on a current-thread tokio runtime, as an epoll worker does.
pub(crate) fn on_epoll<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fut)
}

/// Run `fut` on a worker-like io_uring driver built with `settings` (with
/// whatever fast paths the kernel has; check `uring::detect` first to insist).
pub(crate) fn on_uring<F: Future>(settings: &UringSettings, fut: F) -> F::Output {
    let detected = uring::detect(settings, 64).expect("io_uring available");
    let stats = Arc::new(WorkerStats::default());
    let driver = uring::worker_driver(settings, detected.features, stats).unwrap();
    uring::run(driver, fut).unwrap()
}
