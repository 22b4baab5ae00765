//! One worker thread: its runtime, its listener's accept loop, its connections, its drain.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info};

use super::io::{EpollStream, Io};
use super::uring::net::{UringListener, UringStream};
use super::{IoBackend, Shared};
use crate::admin::metrics::WorkerStats;
use crate::tls::verify::WorkerVerifier;

/// Idle keep-alive backend connections, per backend address (newest last).
/// Hosts are few, so a short list scanned linearly beats hashing.
pub struct BackendPools<S> {
    pools: Vec<(std::net::SocketAddr, Vec<(S, std::time::Instant)>)>,
}

impl<S> Default for BackendPools<S> {
    fn default() -> Self {
        BackendPools { pools: Vec::new() }
    }
}

impl<S> BackendPools<S> {
    /// The idle connections to `backend`.
    pub fn of(&mut self, backend: std::net::SocketAddr) -> &mut Vec<(S, std::time::Instant)> {
        let i = match self.pools.iter().position(|(a, _)| *a == backend) {
            Some(i) => i,
            None => {
                self.pools.push((backend, Vec::new()));
                self.pools.len() - 1
            }
        };
        &mut self.pools[i].1
    }

    /// Drop every idle connection.
    pub fn clear(&mut self) {
        self.pools.clear();
    }
}

/// A worker's state, owned by its thread (`Rc`, never shared).
pub struct Worker<S> {
    /// Worker index.
    pub id: usize,
    /// Shared read-only state.
    pub shared: Arc<Shared>,
    /// This worker's counters.
    pub stats: Arc<WorkerStats>,
    /// Open client connections.
    pub active: Cell<usize>,
    /// Flips to true when the process is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Idle keep-alive connections to the backend, newest last, with the time each was returned.
    pub pool: RefCell<BackendPools<S>>,
    /// Idle pipes for splicing bodies of kTLS connections (one per transfer in flight).
    pub pipes: super::pipe::PipePool,
}

impl<S> Worker<S> {
    /// True once shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Decrements the open-connection count when a connection task ends.
struct Open<S>(Rc<Worker<S>>);

impl<S> Drop for Open<S> {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
        self.0.stats.connections_active.dec();
    }
}

fn pin_to_cpu(n: usize) {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity/setaffinity get a
    // valid pointer and its exact size; pid 0 means this thread.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.is_empty() {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[n % cpus.len()], &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
    }
}

/// Each worker reports once whether it is serving, or why it cannot.
pub type Started = std::sync::mpsc::Sender<Result<(), String>>;

/// Start worker `id` on its own thread; it reports on `started` once serving.
pub fn spawn(
    id: usize,
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    started: Started,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("certgate-w{id}"))
        .spawn(move || {
            if shared.config.cpu_pin {
                pin_to_cpu(id);
            }
            let stats = Arc::clone(&shared.stats[id]);
            WorkerVerifier::install(
                shared.config.verify_cache_size,
                shared.config.verify_cache_ttl,
                Arc::clone(&stats),
            );
            match shared.io {
                IoBackend::Uring => run_uring(id, listener, shared, stats, shutdown, started),
                IoBackend::Epoll => run_epoll(id, listener, shared, stats, shutdown, started),
            }
        })
}

fn new_worker<S>(
    id: usize,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    shutdown: watch::Receiver<bool>,
) -> Rc<Worker<S>> {
    Rc::new(Worker {
        id,
        shared,
        stats,
        active: Cell::new(0),
        shutdown,
        pool: RefCell::new(BackendPools::default()),
        pipes: super::pipe::PipePool::default(),
    })
}

fn run_uring(
    id: usize,
    listener: TcpListener,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    shutdown: watch::Receiver<bool>,
    started: Started,
) {
    let driver =
        match super::uring::worker_driver(&shared.config.uring, shared.uring, Arc::clone(&stats)) {
            Ok(d) => d,
            Err(e) => {
                let _ = started.send(Err(format!("worker {id}: cannot set up io_uring: {e}")));
                return;
            }
        };
    let serve = async move {
        let w = new_worker::<UringStream>(id, shared, stats, shutdown);
        let mut listener = UringListener::new(listener);
        let _ = started.send(Ok(()));
        let mut stop = w.shutdown.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((sock, peer)) => admit(sock, peer, &w),
                    Err(e) => accept_error(&e).await,
                },
                _ = stop.changed() => break,
            }
        }
        // The armed accept keeps the listening socket open until the kernel
        // completes it; shutting the socket down completes it now, so new
        // connections are refused at once instead of waiting in the backlog.
        // SAFETY: the descriptor belongs to `listener`, which is alive here.
        unsafe {
            libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&listener), libc::SHUT_RDWR);
        }
        drop(listener);
        drain(&w).await;
    };
    if let Err(e) = super::uring::run(driver, serve) {
        tracing::error!(worker = id, "io_uring worker stopped: {e}");
    }
}

fn run_epoll(
    id: usize,
    listener: TcpListener,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    shutdown: watch::Receiver<bool>,
    started: Started,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = started.send(Err(format!("worker {id}: cannot start epoll runtime: {e}")));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let w = new_worker::<EpollStream>(id, shared, stats, shutdown);
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = started.send(Err(format!("worker {id}: cannot register listener: {e}")));
                return;
            }
        };
        let _ = started.send(Ok(()));
        let mut stop = w.shutdown.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((sock, peer)) => admit(EpollStream::new(sock), peer, &w),
                    Err(e) => accept_error(&e).await,
                },
                _ = stop.changed() => break,
            }
        }
        drop(listener);
        drain(&w).await;
    });
}

async fn accept_error(e: &std::io::Error) {
    // EMFILE/ENFILE and friends: back off briefly instead of spinning.
    debug!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Take a new connection, or refuse it past the cap.
fn admit<S: Io>(sock: S, peer: SocketAddr, w: &Rc<Worker<S>>) {
    if w.active.get() >= w.shared.config.max_connections {
        w.stats.connections_refused.inc();
        drop(sock);
        return;
    }
    w.stats.connections_accepted.inc();
    w.stats.connections_active.inc();
    w.active.set(w.active.get() + 1);
    let open = Open(Rc::clone(w));
    tokio::task::spawn_local(async move {
        crate::proxy::connection::serve(sock, peer, &open.0).await;
        drop(open);
    });
}

/// Wait for open connections to finish, up to the drain timeout.
async fn drain<S>(w: &Rc<Worker<S>>) {
    let deadline = tokio::time::Instant::now() + w.shared.config.drain_timeout;
    while w.active.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if w.active.get() > 0 {
        info!(
            worker = w.id,
            open = w.active.get(),
            "drain timeout: closing remaining connections"
        );
    }
    w.pool.borrow_mut().clear();
}
