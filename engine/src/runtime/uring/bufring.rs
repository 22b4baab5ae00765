//! The provided-buffer ring: receive buffers shared by all of a worker's connections.
//!
//! A receive armed with buffer selection holds no memory while it waits; the
//! kernel takes a buffer from this ring only when data arrives, and the
//! engine gives it back as soon as BoringSSL has consumed the bytes
//! ([`Lease`]'s drop). An idle connection therefore holds no receive buffer.
//! If the ring runs dry the kernel answers `ENOBUFS` and the connection reads
//! into a buffer of its own for that one read.

use std::cell::Cell;
use std::io;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The buffer group id of the ring (one ring per worker).
pub const GROUP: u16 = 0;

/// A ring of `entries` buffers of `size` bytes each.
pub struct BufRing {
    /// The ring of entries the kernel reads (page-aligned mapping).
    entries_map: *mut BufRingEntry,
    /// The buffers (one mapping; untouched pages cost no memory).
    bufs: *mut u8,
    entries: u16,
    size: u32,
    /// Our copy of the tail (the kernel reads the shared one).
    tail: Cell<u16>,
    /// Buffers lent out now.
    out: Cell<u32>,
}

impl BufRing {
    /// Map a ring of `entries` (a power of two, at most 32768) buffers of
    /// `size` bytes, every buffer available to the kernel.
    pub fn new(entries: u16, size: u32) -> io::Result<Rc<BufRing>> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring entries must be a power of two up to 32768",
            ));
        }
        let entries_map =
            super::map_anonymous(entries as usize * std::mem::size_of::<BufRingEntry>())?;
        let bufs = match super::map_anonymous(entries as usize * size as usize) {
            Ok(b) => b,
            Err(e) => {
                // SAFETY: the mapping above, of that length, not used elsewhere.
                unsafe {
                    libc::munmap(
                        entries_map.cast(),
                        entries as usize * std::mem::size_of::<BufRingEntry>(),
                    )
                };
                return Err(e);
            }
        };
        let ring = BufRing {
            entries_map: entries_map.cast(),
            bufs,
            entries,
            size,
            tail: Cell::new(0),
            out: Cell::new(entries as u32),
        };
        for bid in 0..entries {
            ring.recycle(bid);
        }
        Ok(Rc::new(ring))
    }

    /// Register the ring with `uring` as group [`GROUP`].
    pub fn register(&self, uring: &IoUring) -> io::Result<()> {
        // SAFETY: the entries mapping stays valid for as long as `self`, and
        // the driver holding the ring keeps `self` alive (an `Rc`) until the
        // ring is closed.
        unsafe {
            uring
                .submitter()
                .register_buf_ring(self.entries_map as u64, self.entries, GROUP)
        }
    }

    /// Size of each buffer.
    pub fn buffer_size(&self) -> u32 {
        self.size
    }

    /// Buffers lent out now (filled by the kernel and not yet given back).
    pub fn lent(&self) -> u32 {
        self.out.get()
    }

    fn buffer(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.entries);
        // SAFETY: bid < entries, so the offset lies inside the buffers mapping.
        unsafe { self.bufs.add(bid as usize * self.size as usize) }
    }

    /// Give buffer `bid` back to the kernel.
    pub fn recycle(&self, bid: u16) {
        let tail = self.tail.get();
        let mask = self.entries - 1;
        // SAFETY: (tail & mask) < entries, inside the entries mapping; the
        // kernel does not read entries past the published tail, so writing
        // this one before publishing is race-free.
        unsafe {
            let entry = &mut *self.entries_map.add((tail & mask) as usize);
            entry.set_addr(self.buffer(bid) as u64);
            entry.set_len(self.size);
            entry.set_bid(bid);
        }
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        // SAFETY: the tail field of the first entry, as the ring ABI places
        // it; the kernel reads it concurrently, hence the atomic release store.
        unsafe {
            let shared = BufRingEntry::tail(self.entries_map) as *const AtomicU16;
            (*shared).store(tail, Ordering::Release);
        }
        self.out.set(self.out.get() - 1);
    }

    /// Wrap the `len` bytes the kernel put in buffer `bid`.
    pub fn lease(self: &Rc<Self>, bid: u16, len: u32) -> Lease {
        self.out.set(self.out.get() + 1);
        Lease {
            ring: Rc::clone(self),
            bid,
            start: 0,
            end: len.min(self.size),
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the two mappings made in `new`, with their lengths; nothing
        // refers to them any more (leases hold an `Rc` to the ring).
        unsafe {
            libc::munmap(
                self.entries_map.cast(),
                self.entries as usize * std::mem::size_of::<BufRingEntry>(),
            );
            libc::munmap(self.bufs.cast(), self.entries as usize * self.size as usize);
        }
    }
}

/// Received bytes in a ring buffer; the buffer goes back to the ring on drop.
pub struct Lease {
    ring: Rc<BufRing>,
    bid: u16,
    start: u32,
    end: u32,
}

impl Lease {
    /// The kernel filled the whole buffer: more was probably waiting.
    pub fn filled(&self) -> bool {
        self.end == self.ring.size
    }

    /// Drop the first `n` bytes (consumed).
    pub fn advance(&mut self, n: usize) {
        self.start = (self.start + n as u32).min(self.end);
    }
}

impl Deref for Lease {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the kernel wrote `end` bytes into buffer `bid` (a completion
        // said so) and does not touch it again until it is recycled, which
        // only this lease's drop does.
        unsafe {
            std::slice::from_raw_parts(
                self.ring.buffer(self.bid).add(self.start as usize),
                (self.end - self.start) as usize,
            )
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.ring.recycle(self.bid);
    }
}
