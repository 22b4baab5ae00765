//! Futures over the driver's slots: one-result operations and multishot streams.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use io_uring::squeue;

use super::driver::{self, Cqe};

/// An operation in flight that lends the kernel `data` until it completes.
pub struct Op<T: 'static> {
    idx: usize,
    data: Option<T>,
}

impl<T: 'static> Op<T> {
    /// Queue `sqe`, which lends the kernel memory owned by `data`.
    ///
    /// # Safety
    /// `sqe` may point only at heap memory owned by `data` (which does not move
    /// when `data` does) or at memory the kernel copies during submission.
    pub unsafe fn new(sqe: squeue::Entry, data: T) -> Op<T> {
        let idx = driver::with(|d| d.submit_op(sqe));
        Op {
            idx,
            data: Some(data),
        }
    }
}

impl<T: Unpin + 'static> Future for Op<T> {
    type Output = (Cqe, T);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let cqe = ready!(driver::with(|d| d.poll_op(this.idx, cx)));
        let data = this.data.take().expect("Op polled after completion");
        Poll::Ready((cqe, data))
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            let mut keep: Option<Box<dyn Any>> = Some(Box::new(data));
            let idx = self.idx;
            driver::try_with(|d| d.abandon_op(idx, keep.take()));
            // No driver (thread teardown): the kernel may still write into the
            // memory, so it is leaked rather than freed.
            if let Some(keep) = keep {
                std::mem::forget(keep);
            }
        }
    }
}

/// A multishot operation: a stream of completions until one without `MORE`.
pub struct Multi {
    idx: Option<usize>,
}

impl Multi {
    /// Queue the multishot `sqe` (which must not lend memory: multishot
    /// operations here use provided buffers or none).
    pub fn new(sqe: squeue::Entry) -> Multi {
        let idx = driver::with(|d| d.submit_multi(sqe));
        Multi { idx: Some(idx) }
    }

    /// The next completion; `None` once the operation has ended and every
    /// completion has been taken.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Cqe>> {
        let Some(idx) = self.idx else {
            return Poll::Ready(None);
        };
        let next = ready!(driver::with(|d| d.poll_multi(idx, cx)));
        if next.is_none() {
            self.idx = None;
        }
        Poll::Ready(next)
    }

    /// Await the next completion.
    pub async fn next(&mut self) -> Option<Cqe> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

impl Drop for Multi {
    fn drop(&mut self) {
        if let Some(idx) = self.idx {
            driver::try_with(|d| d.abandon_multi(idx));
        }
    }
}
