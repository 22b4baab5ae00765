//! certgate's io_uring backend: one ring per worker, driven from the worker's
//! tokio current-thread loop, with the kernel's fast paths.
//!
//! Why not tokio-uring: it has no multishot accept or receive, no provided
//! buffer rings, no registered files for sockets, and it enters the kernel
//! at every loop turn even with nothing to submit. This module keeps its
//! model (the kernel owns a buffer while an operation is in flight; the
//! future that submitted it owns it otherwise) and adds those paths on the
//! `io-uring` crate that tokio-uring itself is built on. See
//! `docs/architecture.md` and `docs/kernel-offload.md`.
//!
//! The loop: tokio's current-thread runtime runs the worker's tasks and its
//! timers; tasks queue SQEs as they go; when the runtime is about to park,
//! [`driver::flush`] hands everything queued to the kernel in one
//! `io_uring_enter` (none with SQPOLL unless its thread sleeps); the ring's
//! descriptor is registered with tokio's epoll, so completions wake the
//! reaper task, which delivers them to the waiting tasks.

pub mod bufring;
pub mod driver;
pub mod files;
pub mod fixedbuf;
pub mod net;
pub mod op;

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{opcode, IoUring, Probe};

use crate::admin::metrics::WorkerStats;

/// What the operator asked for (`CERTGATE_URING_*`).
#[derive(Clone, Debug)]
pub struct UringSettings {
    /// Submission queue entries.
    pub entries: u32,
    /// A kernel thread polls the submission queue.
    pub sqpoll: bool,
    /// How long that thread polls an idle queue before sleeping.
    pub sqpoll_idle: Duration,
    /// The CPU that thread is pinned to.
    pub sqpoll_cpu: Option<u32>,
    /// One multishot accept per listener.
    pub accept_multishot: bool,
    /// Receives use the provided-buffer ring.
    pub buf_ring: bool,
    /// Buffers in the ring (a power of two).
    pub buf_ring_entries: u16,
    /// Bytes per ring buffer.
    pub buf_size: u32,
    /// One multishot receive per connection (needs the buffer ring).
    pub recv_multishot: bool,
    /// Sockets registered with the ring.
    pub fixed_files: bool,
    /// Writes of at least this many bytes use SEND_ZC (0: never).
    pub send_zc_min: usize,
    /// Registered 64 KiB write buffers per worker (0: none).
    pub fixed_buffers: u16,
    /// How completions that other CPUs produce reach the worker.
    pub taskrun: TaskRun,
}

/// How the kernel runs the completion work that another CPU starts for a
/// worker (the softirq of an arriving packet finds the receive waiting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskRun {
    /// It interrupts the running worker (an inter-processor interrupt) to
    /// run the work at once: the kernel's default.
    Interrupt,
    /// The work waits for the worker's next system call (COOP_TASKRUN, 5.19+).
    Coop,
    /// The work waits until the worker asks for completions, and runs in one
    /// batch then (DEFER_TASKRUN, 6.1+). The ring signals an eventfd, which
    /// the loop sleeps on, when work arrives.
    Defer,
}

impl TaskRun {
    /// The value of `CERTGATE_URING_TASKRUN`.
    pub fn parse(v: &str) -> Option<TaskRun> {
        match v {
            "interrupt" => Some(TaskRun::Interrupt),
            "coop" => Some(TaskRun::Coop),
            "defer" => Some(TaskRun::Defer),
            _ => None,
        }
    }

    /// The name `parse` takes.
    pub fn name(self) -> &'static str {
        match self {
            TaskRun::Interrupt => "interrupt",
            TaskRun::Coop => "coop",
            TaskRun::Defer => "defer",
        }
    }
}

/// The defaults, set from `bench/offload` (docs/kernel-offload.md): the
/// buffer ring pays (4 KiB less per idle connection) and stays on; zero-copy
/// send and SQPOLL cost CPU here and stay off; multishot accept, multishot
/// receive and registered files showed no difference above the noise and
/// stay off until a measurement shows they pay.
impl Default for UringSettings {
    fn default() -> Self {
        UringSettings {
            entries: 256,
            sqpoll: false,
            sqpoll_idle: Duration::from_millis(1000),
            sqpoll_cpu: None,
            accept_multishot: false,
            buf_ring: true,
            buf_ring_entries: 256,
            buf_size: 16384,
            recv_multishot: false,
            fixed_files: false,
            send_zc_min: 0,
            fixed_buffers: 0,
            taskrun: TaskRun::Coop,
        }
    }
}

impl UringSettings {
    /// Every fast path on but SQPOLL (zero-copy send from 64 KiB).
    pub fn all_on(entries: u32) -> Self {
        UringSettings {
            entries,
            accept_multishot: true,
            buf_ring: true,
            recv_multishot: true,
            fixed_files: true,
            send_zc_min: 65536,
            fixed_buffers: 64,
            ..UringSettings::default()
        }
    }

    /// Every fast path off: plain one-shot operations on plain descriptors.
    pub fn plain(entries: u32) -> Self {
        UringSettings {
            entries,
            sqpoll: false,
            accept_multishot: false,
            buf_ring: false,
            recv_multishot: false,
            fixed_files: false,
            send_zc_min: 0,
            fixed_buffers: 0,
            taskrun: TaskRun::Interrupt,
            ..UringSettings::default()
        }
    }
}

/// The fast paths in force: what was asked for and what the kernel has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Multishot accept.
    pub accept_multishot: bool,
    /// Provided-buffer ring for receives.
    pub buf_ring: bool,
    /// Multishot receive.
    pub recv_multishot: bool,
    /// Registered files, with this many slots per worker.
    pub fixed_files: Option<u32>,
    /// SEND_ZC threshold (0: off).
    pub send_zc_min: usize,
    /// Registered write buffers per worker (0: off).
    pub fixed_buffers: u16,
    /// SQPOLL.
    pub sqpoll: bool,
    /// IORING_OP_SPLICE (5.7+): kTLS bodies move socket to socket through a
    /// pipe; without it they are copied.
    pub splice: bool,
    /// How completion work from other CPUs reaches the worker.
    pub taskrun: Option<TaskRun>,
}

impl Features {
    /// The one start-up line listing what is active.
    pub fn summary(&self, s: &UringSettings) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "io_uring fast paths: multishot accept {}, buffer ring {}, multishot receive {}, fixed files {}, registered buffers {}, zero-copy send {}, task runs {}, sqpoll {}",
            on(self.accept_multishot),
            if self.buf_ring {
                format!("on ({} x {} B)", s.buf_ring_entries, s.buf_size)
            } else {
                "off".into()
            },
            on(self.recv_multishot),
            match self.fixed_files {
                Some(n) => format!("on ({n} slots)"),
                None => "off".into(),
            },
            match self.fixed_buffers {
                0 => "off".into(),
                n => format!("on ({n} x {} KiB)", fixedbuf::FIXED_SIZE / 1024),
            },
            match self.send_zc_min {
                0 => "off".into(),
                n => format!("on (writes >= {n} B)"),
            },
            self.taskrun.map_or("interrupt (SQPOLL thread)", TaskRun::name),
            if self.sqpoll {
                format!(
                    "on (idle {} ms{})",
                    s.sqpoll_idle.as_millis(),
                    s.sqpoll_cpu.map(|c| format!(", CPU {c}")).unwrap_or_default()
                )
            } else {
                "off".into()
            },
        )
    }
}

/// The running kernel's version, as (major, minor).
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_version(&release)
}

fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Build a worker's ring; with the task-run mode in force (`None` with
/// SQPOLL, whose kernel thread runs completions itself).
///
/// Tries the set-up asked for first and drops what an older kernel refuses:
/// DEFER_TASKRUN (6.1+), then COOP_TASKRUN (5.19+), then SINGLE_ISSUER and
/// SUBMIT_ALL (6.0+ / 5.18+).
pub fn build_ring(s: &UringSettings) -> io::Result<(IoUring, Option<TaskRun>)> {
    let mut b = IoUring::builder();
    b.setup_cqsize(s.entries.saturating_mul(4)).setup_clamp();
    if s.sqpoll {
        b.setup_sqpoll(s.sqpoll_idle.as_millis() as u32);
        if let Some(cpu) = s.sqpoll_cpu {
            b.setup_sqpoll_cpu(cpu);
        }
    }
    let mut tuned = b.clone();
    // The worker thread is the ring's only submitter, and a failed SQE must
    // not stop the ones after it in the same batch.
    tuned.setup_single_issuer().setup_submit_all();
    if !s.sqpoll {
        if s.taskrun == TaskRun::Defer {
            let mut defer = tuned.clone();
            // The kernel sets IORING_SQ_TASKRUN while work waits, so the
            // loop knows when to ask for it.
            defer.setup_defer_taskrun().setup_taskrun_flag();
            if let Ok(ring) = defer.build(s.entries) {
                return Ok((ring, Some(TaskRun::Defer)));
            }
        }
        if s.taskrun != TaskRun::Interrupt {
            // Without this flag, a completion that a packet arriving on
            // another CPU produces interrupts the running worker at once; with
            // it, the work waits for the worker's next system call, which the
            // loop makes before it sleeps (the submit, or epoll_wait).
            let mut coop = tuned.clone();
            coop.setup_coop_taskrun();
            if let Ok(ring) = coop.build(s.entries) {
                return Ok((ring, Some(TaskRun::Coop)));
            }
        }
    }
    let ring = tuned.build(s.entries).or_else(|_| b.build(s.entries))?;
    Ok((ring, (!s.sqpoll).then_some(TaskRun::Interrupt)))
}

/// What start-up found: the features in force, and one line per fast path
/// that was asked for but is missing.
pub struct Detected {
    /// In force.
    pub features: Features,
    /// "asked for X, but the kernel ...; using Y" lines.
    pub fallbacks: Vec<String>,
}

/// Descriptors each worker may register: a client and a backend socket per
/// connection, but no more than the process may open (the kernel caps the
/// table at `RLIMIT_NOFILE`).
fn file_slots(max_connections: usize) -> u32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let open_max = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => limit.rlim_cur,
        _ => 1024,
    };
    let wanted = max_connections.saturating_mul(2).saturating_add(64) as u64;
    wanted.min(open_max).min(1 << 20) as u32
}

/// Probe the kernel with a ring like a worker's: the required operations
/// must exist (else `Err`: the engine uses epoll), the fast paths asked for
/// are kept where the kernel has them.
pub fn detect(s: &UringSettings, max_connections: usize) -> io::Result<Detected> {
    let (ring, taskrun) = build_ring(s)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::Accept::CODE, "accept"),
        (opcode::Recv::CODE, "recv"),
        (opcode::Send::CODE, "send"),
        (opcode::Connect::CODE, "connect"),
        (opcode::Close::CODE, "close"),
        (opcode::PollAdd::CODE, "poll"),
        (opcode::AsyncCancel::CODE, "cancel"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::other(format!(
                "the kernel's io_uring lacks the {name} operation"
            )));
        }
    }
    let version = kernel_version().unwrap_or((0, 0));
    let at_least = |v: (u32, u32)| version >= v;
    let vs = format!("{}.{}", version.0, version.1);
    let mut f = Features::default();
    let mut fallbacks = Vec::new();
    if let Some(got) = taskrun.filter(|got| *got != s.taskrun) {
        fallbacks.push(format!(
            "CERTGATE_URING_TASKRUN={} but kernel {vs} refuses it (coop needs 5.19+, defer 6.1+): {}",
            s.taskrun.name(),
            got.name()
        ));
    }
    let mut missing = |var: &str, why: String, instead: &str| {
        fallbacks.push(format!("{var}=1 but {why}: {instead}"));
    };

    if s.accept_multishot {
        if at_least((5, 19)) {
            f.accept_multishot = true;
        } else {
            missing(
                "CERTGATE_URING_ACCEPT_MULTISHOT",
                format!("kernel {vs} has no multishot accept (5.19+)"),
                "one accept submission per connection",
            );
        }
    }
    if s.buf_ring {
        match bufring::BufRing::new(s.buf_ring_entries, s.buf_size).and_then(|r| r.register(&ring))
        {
            Ok(()) => f.buf_ring = true,
            Err(e) => missing(
                "CERTGATE_URING_BUF_RING",
                format!("the kernel refuses a provided-buffer ring ({e})"),
                "each read uses a buffer of its connection",
            ),
        }
    }
    if s.recv_multishot {
        if !f.buf_ring {
            missing(
                "CERTGATE_URING_RECV_MULTISHOT",
                "the buffer ring is off".into(),
                "one receive submission per read",
            );
        } else if !at_least((6, 0)) {
            missing(
                "CERTGATE_URING_RECV_MULTISHOT",
                format!("kernel {vs} has no multishot receive (6.0+)"),
                "one receive submission per read",
            );
        } else {
            f.recv_multishot = true;
        }
    }
    if s.fixed_files {
        let slots = file_slots(max_connections);
        let update = probe.is_supported(opcode::FilesUpdate::CODE);
        match ring.submitter().register_files_sparse(slots) {
            Ok(()) if update => f.fixed_files = Some(slots),
            Ok(()) => missing(
                "CERTGATE_URING_FIXED_FILES",
                "the kernel's io_uring lacks FILES_UPDATE".into(),
                "plain descriptors",
            ),
            Err(e) => missing(
                "CERTGATE_URING_FIXED_FILES",
                format!("a sparse file table of {slots} slots cannot be registered ({e})"),
                "plain descriptors",
            ),
        }
    }
    if s.send_zc_min > 0 {
        if probe.is_supported(opcode::SendZc::CODE) {
            f.send_zc_min = s.send_zc_min;
        } else {
            missing(
                "CERTGATE_URING_SEND_ZC_MIN",
                "the kernel's io_uring lacks SEND_ZC (6.0+)".into(),
                "copying sends",
            );
        }
    }
    if s.fixed_buffers > 0 {
        match fixedbuf::FixedPool::new(s.fixed_buffers).and_then(|p| p.register(&ring)) {
            Ok(()) => f.fixed_buffers = s.fixed_buffers,
            Err(e) => missing(
                "CERTGATE_URING_FIXED_BUFFERS",
                format!(
                    "{} registered buffers of 64 KiB cannot be registered ({e}; RLIMIT_MEMLOCK?)",
                    s.fixed_buffers
                ),
                "writes from ordinary buffers",
            ),
        }
    }
    f.sqpoll = s.sqpoll;
    f.splice = probe.is_supported(opcode::Splice::CODE);
    f.taskrun = taskrun;
    Ok(Detected {
        features: f,
        fallbacks,
    })
}

/// A worker's driver: its ring with the buffer ring and file table in place.
pub fn worker_driver(
    s: &UringSettings,
    f: Features,
    stats: Arc<WorkerStats>,
) -> io::Result<driver::Driver> {
    let (ring, _) = build_ring(s)?;
    let mut d = driver::Driver::new(ring, f.sqpoll, f, stats);
    if f.buf_ring {
        let bufs = bufring::BufRing::new(s.buf_ring_entries, s.buf_size)?;
        bufs.register(d.ring())?;
        d.bufs = Some(bufs);
    }
    if f.fixed_buffers > 0 {
        let pool = fixedbuf::FixedPool::new(f.fixed_buffers)?;
        pool.register(d.ring())?;
        d.fixed = Some(pool);
    }
    if let Some(slots) = f.fixed_files {
        d.ring().submitter().register_files_sparse(slots)?;
        d.files = Some(files::FileTable::new(slots));
    }
    Ok(d)
}

/// An anonymous private mapping of `len` bytes (pages cost memory only once touched).
fn map_anonymous(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping with no address hint; the result
    // is checked before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Run `fut` on a current-thread loop driving `driver`'s ring; returns when
/// `fut` does, after every task still running has been dropped.
pub fn run<F: Future>(driver: driver::Driver, fut: F) -> io::Result<F::Output> {
    // The descriptor the loop sleeps on: the ring's own, which is readable
    // while completions wait; with DEFER_TASKRUN an eventfd the ring signals
    // when deferred work arrives (the ring's descriptor does not become
    // readable for work not yet run).
    let eventfd = if driver.features.taskrun == Some(TaskRun::Defer) {
        let fd = new_eventfd()?;
        driver.ring().submitter().register_eventfd(fd.as_raw_fd())?;
        Some(fd)
    } else {
        None
    };
    let wait_fd = eventfd
        .as_ref()
        .map_or(driver.ring().as_raw_fd(), |fd| fd.as_raw_fd());
    let deferred = eventfd.is_some();
    driver::install(driver);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(driver::flush)
        .on_thread_unpark(driver::unparked)
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            driver::uninstall();
            return Err(e);
        }
    };
    let local = tokio::task::LocalSet::new();
    let out = local.block_on(&rt, async move {
        // SAFETY: the descriptor stays open until after this task set (and
        // with it the AsyncFd) is dropped: the ring's until
        // `driver::uninstall` below, the eventfd until the end of `run`.
        let ready = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                RingFd(wait_fd),
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(|e| e.into_parts().1)?;
        let reaper = tokio::task::spawn_local(async move {
            loop {
                let Ok(mut guard) = ready.readable().await else {
                    return;
                };
                // The eventfd is edge-triggered in tokio's epoll and every
                // signal is a new edge, so it is never read (its counter
                // only grows, and cannot overflow in practice).
                if deferred {
                    driver::run_deferred();
                } else {
                    driver::dispatch();
                }
                guard.clear_ready();
            }
        });
        let out = fut.await;
        reaper.abort();
        Ok::<_, io::Error>(out)
    });
    // Tasks still alive are dropped here, turning their operations into
    // orphans; then the ring goes.
    drop(local);
    drop(rt);
    driver::uninstall();
    drop(eventfd);
    out
}

/// A nonblocking, close-on-exec eventfd.
fn new_eventfd() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: eventfd takes no pointers; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests;
