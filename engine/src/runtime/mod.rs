//! Per-core workers: the io backend choice (io_uring or epoll), the accept loop, shutdown.
//!
//! Each worker is a thread with its own single-threaded runtime and its own
//! SO_REUSEPORT listener; connections never leave the worker that accepted
//! them. What workers share is read-only: the [`Shared`] state and the
//! current snapshot (an `ArcSwap` load, no lock).

pub mod io;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::admin::metrics::WorkerStats;
use crate::config::{Config, IoChoice};
use crate::tls::context::Snapshot;

/// The io backend in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoBackend {
    /// tokio-uring on io_uring.
    Uring,
    /// tokio on epoll.
    Epoll,
}

impl IoBackend {
    /// The name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            IoBackend::Uring => "uring",
            IoBackend::Epoll => "epoll",
        }
    }
}

/// Why io_uring cannot be used when it was forced.
#[derive(Debug, thiserror::Error)]
#[error("CERTGATE_IO=uring but io_uring cannot be set up: {0}")]
pub struct UringUnavailable(std::io::Error);

/// The ring every worker builds: configured size, SQPOLL when asked.
pub fn uring_builder(config: &Config) -> tokio_uring::Builder {
    let mut builder = tokio_uring::builder();
    builder.entries(config.uring_entries);
    let mut ring = io_uring::IoUring::builder();
    if config.uring_sqpoll {
        ring.setup_sqpoll(1000);
    }
    builder.uring_builder(&ring);
    builder
}

/// Probe io_uring by creating (and dropping) exactly the ring a worker would.
fn probe_uring(config: &Config) -> std::io::Result<()> {
    tokio_uring::Runtime::new(&uring_builder(config)).map(drop)
}

/// Decide the backend: returns it and the reason to log.
pub fn choose_backend(config: &Config) -> Result<(IoBackend, String), UringUnavailable> {
    match config.io {
        IoChoice::Epoll => Ok((IoBackend::Epoll, "forced by CERTGATE_IO=epoll".into())),
        IoChoice::Uring => match probe_uring(config) {
            Ok(()) => Ok((IoBackend::Uring, "forced by CERTGATE_IO=uring".into())),
            Err(e) => Err(UringUnavailable(e)),
        },
        IoChoice::Auto => match probe_uring(config) {
            Ok(()) => Ok((IoBackend::Uring, "io_uring is available".into())),
            Err(e) => Ok((
                IoBackend::Epoll,
                format!("io_uring cannot be set up ({e}; a container seccomp profile commonly blocks it), falling back to epoll"),
            )),
        },
    }
}

/// Give the calling thread the lowest CPU priority (nice 19), for background
/// work that shares cores with the workers (parsing and indexing a large CRL):
/// the scheduler then lets a worker run whenever it has something to do.
pub fn background_priority() {
    // SAFETY: setpriority takes plain integers; on Linux, PRIO_PROCESS with
    // who = 0 applies to the calling thread only. A failure changes nothing.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if rc != 0 {
        tracing::debug!(
            "cannot lower this thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// State shared by all workers (read-only on the hot path).
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// The snapshot in force; replaced whole by reloads.
    pub snapshot: ArcSwap<Snapshot>,
    /// Where requests go.
    pub backend_addr: SocketAddr,
    /// The io backend in use.
    pub io: IoBackend,
    /// One stats block per worker.
    pub stats: Vec<Arc<WorkerStats>>,
}
