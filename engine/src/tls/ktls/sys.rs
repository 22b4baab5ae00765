//! The socket calls of kTLS: attach the ULP, install crypto state, and move records with their type.

use std::io;
use std::os::fd::RawFd;

use super::crypto_info::{
    CryptoInfo, SOL_TLS, TCP_ULP, TLS_GET_RECORD_TYPE, TLS_RX, TLS_SET_RECORD_TYPE, TLS_TX,
};

/// Where the kernel lists the upper-layer protocols it can attach.
pub const AVAILABLE_ULP: &str = "/proc/sys/net/ipv4/tcp_available_ulp";

/// Whether `tls` is among the names in `contents` (the file's text).
pub fn lists_tls(contents: &str) -> bool {
    contents.split_whitespace().any(|w| w == "tls")
}

fn setsockopt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is a live slice and its exact length is passed; the
    // kernel copies it and keeps no pointer. An invalid fd is an error return.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `setsockopt(SOL_TCP, TCP_ULP, "tls")`.
pub fn attach_ulp(fd: RawFd) -> io::Result<()> {
    setsockopt(fd, libc::SOL_TCP, TCP_ULP, b"tls")
}

/// Which direction's crypto state to install.
#[derive(Clone, Copy, Debug)]
pub enum Direction {
    /// Records we send.
    Tx,
    /// Records we receive.
    Rx,
}

/// `setsockopt(SOL_TLS, TLS_TX | TLS_RX, info)`.
pub fn set_crypto(fd: RawFd, dir: Direction, info: &CryptoInfo) -> io::Result<()> {
    let name = match dir {
        Direction::Tx => TLS_TX,
        Direction::Rx => TLS_RX,
    };
    setsockopt(fd, SOL_TLS, name, info.as_bytes())
}

/// Room for one `cmsghdr` with a one-byte payload, aligned for it.
#[repr(C, align(8))]
struct CmsgBuf([u8; 32]);

const _: () = assert!(std::mem::align_of::<CmsgBuf>() >= std::mem::align_of::<libc::cmsghdr>());

/// `recvmsg(MSG_DONTWAIT)` into `buf`: the bytes read and the record type
/// (23, application data, when the kernel attached no type).
///
/// A decrypted record of another type than application data is returned
/// alone, with its type; `Ok((0, _))` is end of stream; `WouldBlock` when no
/// whole record is there yet.
pub fn recv_record(fd: RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<(usize, u8)> {
    let mut cmsg = CmsgBuf([0; 32]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zero is a valid msghdr (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.0.len() as _;
    // SAFETY: `msg` points at `iov` (which describes `buf`) and at `cmsg`,
    // all alive for the call; the kernel writes at most the lengths given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut record_type = 23u8;
    // SAFETY: `msg` was filled in by recvmsg: CMSG_FIRSTHDR/CMSG_NXTHDR walk
    // only within msg_control..msg_controllen, and CMSG_DATA of a header
    // whose length covers one byte points at that byte.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_TLS
                && (*c).cmsg_type == TLS_GET_RECORD_TYPE
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(1) as usize
            {
                record_type = *libc::CMSG_DATA(c);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, record_type))
}

/// `sendmsg(MSG_DONTWAIT)` of one record of `record_type` (alert 21, handshake 22).
pub fn send_record(fd: RawFd, record_type: u8, data: &[u8]) -> io::Result<usize> {
    let mut cmsg = CmsgBuf([0; 32]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as _;
    // SAFETY: msg_control points at `cmsg`, which is larger than
    // CMSG_SPACE(1) and aligned for cmsghdr, so the first header and its one
    // data byte are inside it. The kernel only reads `data` through `iov`.
    let n = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = SOL_TLS;
        (*c).cmsg_type = TLS_SET_RECORD_TYPE;
        (*c).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(c) = record_type;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ulp_list() {
        assert!(lists_tls("mptcp tls\n"));
        assert!(lists_tls("tls"));
        assert!(!lists_tls("mptcp\n"));
        assert!(!lists_tls("tlsx espintcp"));
        assert!(!lists_tls(""));
    }

    /// Without kTLS on the socket, recvmsg returns plain bytes and no record
    /// type (so they count as application data), and a socket without the
    /// ULP refuses TLS_TX: both paths run on every kernel.
    #[test]
    fn plain_socket_paths() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        use std::os::fd::AsRawFd;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
        let e = recv_record(b.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"hello").unwrap();
        let mut got = None;
        for _ in 0..100 {
            match recv_record(b.as_raw_fd(), &mut buf) {
                Ok(r) => {
                    got = Some(r);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, Some((5, 23)));
        let keys = super::super::keys::DirectionKeys {
            key: vec![0; 16],
            iv: [0; 12],
            seq: 0,
        };
        let info = CryptoInfo::new(
            super::super::keys::Version::Tls13,
            super::super::keys::Aead::Aes128Gcm,
            &keys,
        );
        assert!(set_crypto(b.as_raw_fd(), Direction::Tx, &info).is_err());
    }
}
