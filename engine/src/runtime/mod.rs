//! Per-core workers: the io backend choice (io_uring or epoll), the accept loop, shutdown.
//!
//! Each worker is a thread with its own single-threaded runtime and its own
//! SO_REUSEPORT listener; connections never leave the worker that accepted
//! them. What workers share is read-only: the [`Shared`] state and the
//! current snapshot (an `ArcSwap` load, no lock).

pub mod io;
pub mod pipe;
#[cfg(test)]
pub(crate) mod splice_tests;
#[cfg(test)]
pub(crate) mod test_support;
pub mod uring;
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
    /// io_uring, through certgate's own driver (`runtime::uring`).
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

/// The backend chosen at start-up, why, and (for io_uring) the fast paths in force.
pub struct Choice {
    /// The backend.
    pub backend: IoBackend,
    /// Why, for the log.
    pub reason: String,
    /// With io_uring: what the kernel has of what was asked.
    pub uring: Option<uring::Detected>,
}

/// Decide the backend by probing io_uring with exactly the ring a worker would build.
pub fn choose_backend(config: &Config) -> Result<Choice, UringUnavailable> {
    let probe = || uring::detect(&config.uring, config.max_connections);
    let uring_choice = |d, reason: &str| Choice {
        backend: IoBackend::Uring,
        reason: reason.into(),
        uring: Some(d),
    };
    match config.io {
        IoChoice::Epoll => Ok(Choice {
            backend: IoBackend::Epoll,
            reason: "forced by CERTGATE_IO=epoll".into(),
            uring: None,
        }),
        IoChoice::Uring => match probe() {
            Ok(d) => Ok(uring_choice(d, "forced by CERTGATE_IO=uring")),
            Err(e) => Err(UringUnavailable(e)),
        },
        IoChoice::Auto => match probe() {
            Ok(d) => Ok(uring_choice(d, "io_uring is available")),
            Err(e) => Ok(Choice {
                backend: IoBackend::Epoll,
                reason: format!("io_uring cannot be set up ({e}; a container seccomp profile commonly blocks it), falling back to epoll"),
                uring: None,
            }),
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
    /// With io_uring: the fast paths in force.
    pub uring: uring::Features,
    /// One stats block per worker.
    pub stats: Vec<Arc<WorkerStats>>,
}
