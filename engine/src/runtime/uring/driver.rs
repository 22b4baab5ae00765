//! The per-worker ring: operation slots, submission, completion dispatch.
//!
//! Every operation in flight owns one slot of a slab; the slot's index is the
//! SQE's `user_data`. A completion finds its slot, records the result and
//! wakes the task waiting on it. The memory an operation lends the kernel
//! (a buffer, a socket address) lives in the future that submitted it; if that
//! future is dropped before the kernel is done, the memory moves into the slot
//! ([`Slot::Orphan`]) and is freed at the operation's last completion.
//!
//! Submissions are not made one by one: SQEs accumulate in the submission
//! queue while tasks run and are handed to the kernel once per loop turn, when
//! the runtime is about to park ([`flush`]). With SQPOLL the kernel thread
//! picks them up without any system call unless it has gone idle. A turn that
//! runs long (many handshakes, each with its public-key work, queued at once)
//! does not hold its submissions to the end: a push [`SUBMIT_AFTER`] into the
//! turn, or as long after the last submission, submits what is queued, so a
//! handshake's reply does not wait for the signatures of every other
//! handshake in the turn.
//!
//! With DEFER_TASKRUN ([`super::TaskRun::Defer`]) the kernel keeps the
//! completion work that other CPUs start (a packet arrived for a waiting
//! receive) until the worker asks for it: every submission asks
//! (`IORING_ENTER_GETEVENTS`), and so does [`flush`] when the ring says work
//! waits. The loop then sleeps on an eventfd the ring signals, since the
//! ring's own descriptor does not become readable for work not yet run.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use io_uring::{cqueue, opcode, squeue, IoUring};
use slab::Slab;

use super::bufring::BufRing;
use crate::admin::metrics::WorkerStats;

/// `user_data` of SQEs whose completion nobody waits for (cancellations, closes).
pub const IGNORED: u64 = u64::MAX;

/// `IORING_ENTER_GETEVENTS`: also run deferred completion work.
const ENTER_GETEVENTS: u32 = 1;

/// The longest a queued SQE waits for the end of a busy loop turn.
pub const SUBMIT_AFTER: std::time::Duration = std::time::Duration::from_micros(250);

/// One completion: the result and the flags.
#[derive(Clone, Copy, Debug)]
pub struct Cqe {
    /// Result: non-negative on success, `-errno` on failure.
    pub res: i32,
    /// `IORING_CQE_F_*` flags.
    pub flags: u32,
}

impl Cqe {
    /// The result as `io::Result`.
    pub fn result(&self) -> io::Result<u32> {
        if self.res < 0 {
            Err(io::Error::from_raw_os_error(-self.res))
        } else {
            Ok(self.res as u32)
        }
    }

    /// More completions follow for the same operation.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The provided buffer this completion filled, if any.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// What a slot holds.
enum Slot {
    /// In flight; `first` is the first completion of an operation that posts
    /// more than one (a zero-copy send's result before its notification).
    Pending {
        first: Option<Cqe>,
        waker: Option<Waker>,
    },
    /// Finished: the result the owner will take.
    Done(Cqe),
    /// A multishot operation: completions queue until the owner takes them.
    Multi {
        queue: VecDeque<Cqe>,
        waker: Option<Waker>,
        ended: bool,
    },
    /// The owner is gone: keep what the kernel may still use until the last
    /// completion; give any provided buffer back.
    Orphan(#[allow(dead_code)] Option<Box<dyn Any>>),
}

/// The ring and its bookkeeping.
pub struct Driver {
    ring: IoUring,
    ops: Slab<Slot>,
    sqpoll: bool,
    /// The provided-buffer ring for receives, when enabled.
    pub bufs: Option<Rc<BufRing>>,
    /// The registered write buffers, when enabled.
    pub fixed: Option<Rc<super::fixedbuf::FixedPool>>,
    /// Slots of the registered file table, when enabled.
    pub files: Option<super::files::FileTable>,
    /// The fast paths in force.
    pub features: super::Features,
    /// Scratch list of the wakers one dispatch wakes.
    woken: Vec<std::task::Waker>,
    /// When the loop woke or last submitted: a push later than
    /// [`SUBMIT_AFTER`] past it submits at once.
    since: std::time::Instant,
    pub stats: std::sync::Arc<WorkerStats>,
}

thread_local! {
    static DRIVER: RefCell<Option<Driver>> = const { RefCell::new(None) };
}

/// Run `f` on this thread's driver. Panics outside a uring worker (a bug).
pub fn with<R>(f: impl FnOnce(&mut Driver) -> R) -> R {
    DRIVER.with(|d| {
        let mut d = d.borrow_mut();
        f(d.as_mut()
            .expect("io_uring operation outside a uring worker"))
    })
}

/// Like [`with`], but `None` when there is no driver (thread teardown) or it
/// is busy; for drop paths that may run anywhere.
pub fn try_with<R>(f: impl FnOnce(&mut Driver) -> R) -> Option<R> {
    DRIVER
        .try_with(|d| {
            let mut d = d.try_borrow_mut().ok()?;
            d.as_mut().map(f)
        })
        .ok()
        .flatten()
}

/// Install `driver` as this thread's driver.
pub fn install(driver: Driver) {
    DRIVER.with(|d| *d.borrow_mut() = Some(driver));
}

/// Remove this thread's driver. Operations still in flight keep the memory
/// they were lent (it is leaked, not freed under the kernel).
pub fn uninstall() {
    let driver = DRIVER.with(|d| d.borrow_mut().take());
    if let Some(mut driver) = driver {
        let _ = driver.submit();
        for (_, slot) in std::mem::take(&mut driver.ops) {
            std::mem::forget(slot);
        }
        drop(driver);
    }
}

/// Hand queued submissions to the kernel (called when the loop is about to park).
pub fn flush() {
    let _ = try_with(|d| d.flush());
}

/// The loop woke up: a new turn starts (tokio's unpark hook).
pub fn unparked() {
    let _ = try_with(|d| d.since = std::time::Instant::now());
}

/// Process every completion waiting in the ring.
pub fn dispatch() {
    let _ = try_with(|d| d.dispatch());
}

/// Run the completion work the kernel deferred (DEFER_TASKRUN, with what is
/// queued), then process every completion waiting in the ring.
pub fn run_deferred() {
    let _ = try_with(|d| {
        d.flush();
        d.dispatch()
    });
}

impl Driver {
    /// A driver for `ring`.
    pub fn new(
        ring: IoUring,
        sqpoll: bool,
        features: super::Features,
        stats: std::sync::Arc<WorkerStats>,
    ) -> Driver {
        Driver {
            ring,
            ops: Slab::with_capacity(256),
            sqpoll,
            features,
            woken: Vec::with_capacity(64),
            since: std::time::Instant::now(),
            bufs: None,
            fixed: None,
            files: None,
            stats,
        }
    }

    /// The ring (for registrations at start-up).
    pub fn ring(&self) -> &IoUring {
        &self.ring
    }

    /// Queue `sqe`; its completion goes to a new slot, whose index is returned.
    pub fn submit_op(&mut self, sqe: squeue::Entry) -> usize {
        let idx = self.ops.insert(Slot::Pending {
            first: None,
            waker: None,
        });
        self.push(sqe.user_data(idx as u64));
        idx
    }

    /// Queue a multishot `sqe`; its completions queue in a new slot.
    pub fn submit_multi(&mut self, sqe: squeue::Entry) -> usize {
        let idx = self.ops.insert(Slot::Multi {
            queue: VecDeque::new(),
            waker: None,
            ended: false,
        });
        self.push(sqe.user_data(idx as u64));
        idx
    }

    /// Queue an SQE nobody waits for (its `user_data` must be [`IGNORED`]).
    pub fn push(&mut self, sqe: squeue::Entry) {
        // SAFETY: every SQE built in this module points only at memory that
        // its owner keeps alive until the operation's last completion (or
        // that the kernel copies at submission).
        while unsafe { self.ring.submission().push(&sqe) }.is_err() {
            // The queue is full: hand it over now and make room.
            if self.submit().is_err() {
                self.dispatch();
            }
        }
        if self.since.elapsed() >= SUBMIT_AFTER {
            // A long turn: do not keep this (and what queued before it)
            // until the turn ends.
            self.flush();
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        self.since = std::time::Instant::now();
        loop {
            let enters = !self.sqpoll || self.ring.submission().need_wakeup();
            let submitted = if self.defer() {
                self.enter_getevents()
            } else {
                self.ring.submit()
            };
            match submitted {
                Ok(_) => {
                    if enters {
                        self.stats.uring_submit_calls.inc();
                    }
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => self.dispatch(),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// SQEs queued and not yet submitted.
    pub fn queued(&mut self) -> usize {
        self.ring.submission().len()
    }

    /// Submit queued SQEs and, with DEFER_TASKRUN, run deferred work.
    fn enter_getevents(&mut self) -> io::Result<usize> {
        let queued = self.ring.submission().len() as u32;
        // SAFETY: no argument is passed; the SQEs being submitted point only
        // at memory their owners keep alive (see `push`).
        unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None)
        }
    }

    /// DEFER_TASKRUN: completion work waits until a GETEVENTS enter.
    fn defer(&self) -> bool {
        self.features.taskrun == Some(super::TaskRun::Defer)
    }

    /// Submit whatever is queued; nothing (no system call) when the queue is
    /// empty and, with DEFER_TASKRUN, no completion work waits.
    pub fn flush(&mut self) {
        let deferred = self.defer() && self.ring.submission().taskrun();
        if deferred || !self.ring.submission().is_empty() {
            if let Err(e) = self.submit() {
                tracing::warn!("io_uring submit failed: {e}");
            }
        }
    }

    /// Deliver every completion in the ring to its slot.
    pub fn dispatch(&mut self) {
        // Reused across calls: no allocation per batch of completions.
        let mut woken = std::mem::take(&mut self.woken);
        {
            let mut cq = self.ring.completion();
            cq.sync();
            for entry in &mut cq {
                let ud = entry.user_data();
                let cqe = Cqe {
                    res: entry.result(),
                    flags: entry.flags(),
                };
                if ud == IGNORED {
                    continue;
                }
                let idx = ud as usize;
                let Some(slot) = self.ops.get_mut(idx) else {
                    continue;
                };
                let last = !cqe.more();
                match slot {
                    Slot::Pending { first, waker } => {
                        let result = *first.get_or_insert(cqe);
                        if last {
                            if let Some(w) = waker.take() {
                                woken.push(w);
                            }
                            *slot = Slot::Done(result);
                        }
                    }
                    Slot::Multi {
                        queue,
                        waker,
                        ended,
                    } => {
                        queue.push_back(cqe);
                        *ended |= last;
                        if let Some(w) = waker.take() {
                            woken.push(w);
                        }
                    }
                    Slot::Orphan(_) => {
                        if let (Some(bid), Some(bufs)) = (cqe.buffer(), &self.bufs) {
                            drop(bufs.lease(bid, 0));
                        }
                        if last {
                            // Frees what the orphan kept (plain memory only).
                            drop(self.ops.remove(idx));
                        }
                    }
                    Slot::Done(_) => {}
                }
            }
        }
        for w in woken.drain(..) {
            w.wake();
        }
        self.woken = woken;
    }

    /// Poll a single-result operation.
    pub fn poll_op(&mut self, idx: usize, cx: &mut Context<'_>) -> Poll<Cqe> {
        match &mut self.ops[idx] {
            Slot::Done(cqe) => {
                let cqe = *cqe;
                self.ops.remove(idx);
                Poll::Ready(cqe)
            }
            Slot::Pending { waker, .. } => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            _ => unreachable!("poll_op on a multishot or orphaned slot"),
        }
    }

    /// The owner of a single-result operation went away before it finished:
    /// keep `keep` alive until the kernel is done with it.
    pub fn abandon_op(&mut self, idx: usize, keep: Option<Box<dyn Any>>) {
        match &self.ops[idx] {
            Slot::Done(_) => {
                self.ops.remove(idx);
            }
            _ => self.ops[idx] = Slot::Orphan(keep),
        }
    }

    /// Take the next completion of a multishot operation, or register to be
    /// woken. `Ready(None)` once it has ended and every completion was taken.
    pub fn poll_multi(&mut self, idx: usize, cx: &mut Context<'_>) -> Poll<Option<Cqe>> {
        let Slot::Multi {
            queue,
            waker,
            ended,
        } = &mut self.ops[idx]
        else {
            unreachable!("poll_multi on a single-shot slot");
        };
        if let Some(cqe) = queue.pop_front() {
            return Poll::Ready(Some(cqe));
        }
        if *ended {
            self.ops.remove(idx);
            return Poll::Ready(None);
        }
        match waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether a multishot operation has a completion waiting.
    pub fn multi_ready(&self, idx: usize) -> bool {
        matches!(&self.ops[idx], Slot::Multi { queue, ended, .. } if !queue.is_empty() || *ended)
    }

    /// The owner of a multishot operation went away: give back the buffers of
    /// completions it never took, and cancel the operation if it still runs.
    pub fn abandon_multi(&mut self, idx: usize) {
        let Slot::Multi { queue, ended, .. } = &mut self.ops[idx] else {
            return;
        };
        let ended = *ended;
        if let Some(bufs) = &self.bufs {
            for cqe in queue.drain(..) {
                if let Some(bid) = cqe.buffer() {
                    drop(bufs.lease(bid, 0));
                }
            }
        }
        if ended {
            self.ops.remove(idx);
        } else {
            self.ops[idx] = Slot::Orphan(None);
            self.push(
                opcode::AsyncCancel::new(idx as u64)
                    .build()
                    .user_data(IGNORED),
            );
        }
    }
}
