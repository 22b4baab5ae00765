//! Registered buffers for writes: a per-worker pool the kernel has mapped once.
//!
//! A write from a registered buffer (`WRITE_FIXED`) skips the per-operation
//! import of user memory. BoringSSL writes its records straight into one
//! (`Ciphertext` takes a buffer before encrypting a response and gives it
//! back after the write), so using the pool adds no copy. An idle
//! connection holds none.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use io_uring::IoUring;

/// Size of each registered buffer: four TLS records.
pub const FIXED_SIZE: usize = 64 * 1024;

/// `count` buffers of [`FIXED_SIZE`] bytes in one mapping, registered with a ring.
pub struct FixedPool {
    base: *mut u8,
    count: u16,
    free: RefCell<Vec<u16>>,
}

impl FixedPool {
    /// Map `count` buffers.
    pub fn new(count: u16) -> io::Result<Rc<FixedPool>> {
        let base = super::map_anonymous(count as usize * FIXED_SIZE)?;
        Ok(Rc::new(FixedPool {
            base,
            count,
            free: RefCell::new((0..count).rev().collect()),
        }))
    }

    /// Register every buffer with `ring` (buffer index = position in the pool).
    pub fn register(&self, ring: &IoUring) -> io::Result<()> {
        let iovecs: Vec<libc::iovec> = (0..self.count)
            .map(|i| libc::iovec {
                iov_base: self.ptr(i).cast(),
                iov_len: FIXED_SIZE,
            })
            .collect();
        // SAFETY: the iovecs describe this pool's mapping, which lives as
        // long as `self`; the driver holding the ring keeps `self` alive (an
        // `Rc`) until the ring is closed.
        unsafe { ring.submitter().register_buffers(&iovecs) }
    }

    fn ptr(&self, idx: u16) -> *mut u8 {
        debug_assert!(idx < self.count);
        // SAFETY: idx < count: inside the mapping.
        unsafe { self.base.add(idx as usize * FIXED_SIZE) }
    }

    /// A free buffer, if any.
    pub fn take(self: &Rc<Self>) -> Option<FixedBuf> {
        let idx = self.free.borrow_mut().pop()?;
        Some(FixedBuf {
            pool: Rc::clone(self),
            idx,
            len: 0,
        })
    }

    /// Buffers in use now.
    pub fn in_use(&self) -> usize {
        self.count as usize - self.free.borrow().len()
    }
}

impl Drop for FixedPool {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; buffers hold an `Rc`, so none is
        // alive any more.
        unsafe { libc::munmap(self.base.cast(), self.count as usize * FIXED_SIZE) };
    }
}

/// One registered buffer, filled from the front; back to the pool on drop.
pub struct FixedBuf {
    pool: Rc<FixedPool>,
    idx: u16,
    len: usize,
}

impl FixedBuf {
    /// Its index in the ring's registered-buffer table.
    pub fn index(&self) -> u16 {
        self.idx
    }

    /// Bytes filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append as much of `data` as fits; returns how much did.
    pub fn append(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(FIXED_SIZE - self.len);
        // SAFETY: `len + n <= FIXED_SIZE`: inside this buffer, which only
        // this value writes while it exists (the kernel reads it only during
        // a write operation that owns this value).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.pool.ptr(self.idx).add(self.len), n)
        };
        self.len += n;
        n
    }

    /// Empty it (for reuse).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Pointer to byte `at` (for the kernel).
    pub fn ptr_at(&self, at: usize) -> *const u8 {
        debug_assert!(at <= self.len);
        // SAFETY: at <= len <= FIXED_SIZE.
        unsafe { self.pool.ptr(self.idx).add(at) }
    }
}

impl std::ops::Deref for FixedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by `append`.
        unsafe { std::slice::from_raw_parts(self.pool.ptr(self.idx), self.len) }
    }
}

impl Drop for FixedBuf {
    fn drop(&mut self) {
        self.pool.free.borrow_mut().push(self.idx);
    }
}
