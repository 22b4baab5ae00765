//! The registered file table: slots for client and backend sockets.
//!
//! An operation on a registered file skips the kernel's per-operation file
//! lookup and reference count. Slots are handed out here, in user space, and
//! installed and removed with `FILES_UPDATE` submissions queued ahead of the
//! operations that use them, so registering a socket costs no system call.

use std::os::fd::RawFd;

use io_uring::opcode;

use super::driver::Driver;

/// The free slots of the table registered with the ring.
pub struct FileTable {
    free: Vec<u32>,
}

impl FileTable {
    /// A table of `size` slots (already registered sparse with the ring).
    pub fn new(size: u32) -> FileTable {
        FileTable {
            free: (0..size).rev().collect(),
        }
    }
}

/// Install `fd` in a free slot; `None` when the table is full (the caller
/// then uses the plain descriptor).
pub fn install(d: &mut Driver, fd: RawFd) -> Option<u32> {
    let slot = d.files.as_mut()?.free.pop()?;
    update(d, slot, fd);
    Some(slot)
}

/// Empty `slot` and make it available again. Operations queued before this
/// one still see the socket; later ones reusing the slot see the new one.
pub fn remove(d: &mut Driver, slot: u32) {
    update(d, slot, -1);
    if let Some(files) = d.files.as_mut() {
        files.free.push(slot);
    }
}

fn update(d: &mut Driver, slot: u32, fd: RawFd) {
    // The kernel reads the descriptor array when it issues the update, which
    // may be after this function returns: the array lives in the slot until
    // the update completes.
    let fds: Box<[RawFd; 1]> = Box::new([fd]);
    let sqe = opcode::FilesUpdate::new(fds.as_ptr(), 1)
        .offset(slot as i32)
        .build();
    let idx = d.submit_op(sqe);
    d.abandon_op(idx, Some(fds));
}
