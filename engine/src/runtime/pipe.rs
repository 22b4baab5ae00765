//! Kernel pipes for splice: bytes move socket → pipe → socket without a user-space copy.
//!
//! A [`Pipe`] is owned by one transfer at a time (the io operations take it by
//! value and give it back, as they do with buffers) and counts the bytes it
//! holds. Each worker keeps a few idle ones in a [`PipePool`]; a pipe that
//! comes back holding bytes (a transfer failed half-way) is closed, never
//! reused, so its bytes cannot leak into another transfer.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The pipe size asked for with `F_SETPIPE_SZ`: 256 KiB, four times the
/// default, so a 1 MiB body takes 8 splice calls instead of 32, while a
/// transfer in flight pins at most 256 KiB of socket pages (1 MiB pipes took
/// 2 calls but were not consistently faster on loopback; see
/// docs/kernel-offload.md#splice-of-bodies). Unprivileged processes may ask
/// up to `/proc/sys/fs/pipe-max-size` (1 MiB by default).
pub const PIPE_SIZE: usize = 256 * 1024;

/// Idle pipes a worker keeps for the next transfers (two descriptors each).
pub const POOL_KEEP: usize = 8;

/// A nonblocking pipe and the number of bytes in it.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet spliced out.
    held: usize,
    /// The pipe's capacity (what `F_SETPIPE_SZ` granted).
    size: usize,
}

impl Pipe {
    /// A new nonblocking pipe of (up to) `size` bytes. When the kernel refuses
    /// the size (over `pipe-max-size` or the user's pipe quota), the pipe
    /// keeps the size it has.
    pub fn new(size: usize) -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::other(format!(
                "pipe2 for splice: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: pipe2 succeeded: both descriptors are open and now ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let fd = write.as_raw_fd();
        let wanted = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on our open pipe descriptor with an integer argument.
        let granted = match unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, wanted) } {
            n if n > 0 => n,
            // Refused: keep the current size.
            // SAFETY: as above; F_GETPIPE_SZ takes no argument.
            _ => unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) },
        };
        if granted <= 0 {
            return Err(io::Error::other(format!(
                "F_GETPIPE_SZ on a splice pipe: {}",
                io::Error::last_os_error()
            )));
        }
        Ok(Pipe {
            read,
            write,
            held: 0,
            size: granted as usize,
        })
    }

    /// The end bytes are spliced out of.
    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The end bytes are spliced into.
    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Bytes in the pipe.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Nothing in the pipe.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// The pipe's capacity in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Room left: the most one splice into the pipe may ask for.
    pub fn room(&self) -> usize {
        self.size.saturating_sub(self.held)
    }

    /// `n` bytes were spliced in.
    pub fn filled(&mut self, n: usize) {
        self.held += n;
    }

    /// `n` bytes were spliced out.
    pub fn drained(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n);
    }
}

/// What one nonblocking `splice(2)` did.
pub fn splice_nonblocking(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain descriptors and null offsets (both ends are a pipe or a
    // socket, which have no offset); no memory is lent.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A worker's idle pipes (single-threaded: the worker's runtime only).
#[derive(Debug)]
pub struct PipePool {
    idle: RefCell<Vec<Pipe>>,
    size: usize,
}

impl Default for PipePool {
    fn default() -> Self {
        PipePool::new(PIPE_SIZE)
    }
}

impl PipePool {
    /// A pool of pipes of `size` bytes, created on demand.
    pub fn new(size: usize) -> PipePool {
        PipePool {
            idle: RefCell::new(Vec::new()),
            size,
        }
    }

    /// An empty pipe for one transfer: an idle one, else a new one.
    pub fn take(&self) -> io::Result<Pipe> {
        match self.idle.borrow_mut().pop() {
            Some(p) => Ok(p),
            None => Pipe::new(self.size),
        }
    }

    /// Give a pipe back after a transfer. One still holding bytes is closed:
    /// they belong to a transfer that failed and must not reach another.
    pub fn give_back(&self, pipe: Pipe) {
        let mut idle = self.idle.borrow_mut();
        if pipe.is_empty() && idle.len() < POOL_KEEP {
            idle.push(pipe);
        }
    }

    /// Idle pipes kept.
    pub fn idle(&self) -> usize {
        self.idle.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_gets_a_size_and_counts_its_bytes() {
        let mut p = Pipe::new(PIPE_SIZE).unwrap();
        // Unprivileged processes may get up to pipe-max-size (1 MiB by default).
        assert!(p.size() >= 64 * 1024, "size {}", p.size());
        assert_eq!(p.room(), p.size());
        p.filled(10);
        assert_eq!((p.held(), p.room()), (10, p.size() - 10));
        p.drained(4);
        assert_eq!(p.held(), 6);
        assert!(!p.is_empty());
    }

    #[test]
    fn the_pool_reuses_empty_pipes_and_closes_ones_holding_bytes() {
        let pool = PipePool::new(64 * 1024);
        let a = pool.take().unwrap();
        let a_fd = a.read_fd();
        pool.give_back(a);
        assert_eq!(pool.idle(), 1);
        let a = pool.take().unwrap();
        assert_eq!(a.read_fd(), a_fd, "the idle pipe is handed out again");
        let mut b = pool.take().unwrap();
        assert_ne!(b.read_fd(), a_fd, "two transfers never share a pipe");
        b.filled(1);
        pool.give_back(b);
        assert_eq!(pool.idle(), 0, "a pipe holding bytes is not kept");
        pool.give_back(a);
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn nonblocking_splice_between_pipes_moves_bytes() {
        use std::io::Write;
        let mut src = Pipe::new(64 * 1024).unwrap();
        let dst = Pipe::new(64 * 1024).unwrap();
        // A duplicate of the source pipe's write end, closed with the File.
        let mut w = std::fs::File::from(src.write.try_clone().unwrap());
        w.write_all(b"spliced").unwrap();
        src.filled(7);
        let n = splice_nonblocking(src.read_fd(), dst.write_fd(), 100).unwrap();
        assert_eq!(n, 7);
        // Empty now: a nonblocking splice says so instead of waiting.
        let e = splice_nonblocking(src.read_fd(), dst.write_fd(), 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
