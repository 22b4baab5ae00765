//! An offloaded connection: plaintext over the socket, control records and re-keys by hand.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::keys::{self, Suite, Version};
use super::record::{self, alert, content, Control};
use super::{crypto_info::CryptoInfo, sys};
use crate::admin::metrics::WorkerStats;
use crate::runtime::io::Io;
use crate::tls::stream::{Traffic, RECORD, SMALL};

/// A connection whose records the kernel protects.
pub struct KernelTls {
    suite: Suite,
    /// TLS 1.3 traffic secrets in force (receive, send), for KeyUpdate.
    secrets: Option<(Vec<u8>, Vec<u8>)>,
    /// Plaintext on its way to `Io::write_all` (which takes an owned buffer).
    out: BytesMut,
    /// close_notify or end of stream seen.
    eof: bool,
    stats: Arc<WorkerStats>,
}

impl Drop for KernelTls {
    fn drop(&mut self) {
        if let Some((rx, tx)) = &mut self.secrets {
            rx.fill(0);
            tx.fill(0);
        }
    }
}

/// How long a control record (alert, KeyUpdate) may wait for send-buffer room.
const CONTROL_SEND_PATIENCE: Duration = Duration::from_secs(5);

impl KernelTls {
    pub(super) fn new(
        suite: Suite,
        secrets: Option<(Vec<u8>, Vec<u8>)>,
        stats: Arc<WorkerStats>,
    ) -> KernelTls {
        KernelTls {
            suite,
            secrets,
            out: BytesMut::new(),
            eof: false,
            stats,
        }
    }

    /// Read decrypted application data into the spare capacity of `dst`.
    /// `Ok(0)` at close_notify or end of stream. Control records are handled
    /// on the way; one the engine does not accept is an error (after an alert).
    pub async fn read<S: Io>(
        &mut self,
        sock: &S,
        dst: &mut BytesMut,
        traffic: &mut Traffic,
    ) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let fd = sock.raw_fd();
        if dst.capacity() - dst.len() < RECORD {
            // Wait before reserving: an idle connection holds no buffer.
            sock.readable().await?;
            dst.reserve(RECORD);
        }
        loop {
            // Try first: while a body streams in, data is usually there.
            let (n, record_type) = match sys::recv_record(fd, dst.spare_capacity_mut()) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    sock.readable().await?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                return Ok(0);
            }
            if record_type == content::APPLICATION_DATA {
                // SAFETY: recvmsg wrote the first `n` bytes of the spare capacity.
                unsafe { dst.set_len(dst.len() + n) };
                traffic.received += n as u64;
                return Ok(n);
            }
            // SAFETY: as above; the control record is copied out and the
            // spare capacity is left as it was (not part of `dst`).
            let data = unsafe {
                std::slice::from_raw_parts(dst.spare_capacity_mut().as_ptr().cast::<u8>(), n)
            }
            .to_vec();
            match record::classify(self.suite.version, record_type, &data) {
                Control::CloseNotify => {
                    self.eof = true;
                    return Ok(0);
                }
                Control::KeyUpdate { count, requested } => {
                    if let Err(e) = self.key_update(sock, count, requested).await {
                        self.stats.ktls_closed.inc();
                        let _ = self.send_alert(sock, alert::INTERNAL_ERROR).await;
                        return Err(e);
                    }
                    self.stats.ktls_key_updates.add(count as u64);
                }
                Control::PeerAlert(description) => {
                    self.stats.ktls_closed.inc();
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("peer sent TLS alert {description}"),
                    ));
                }
                Control::Refuse(description, why) => {
                    self.stats.ktls_closed.inc();
                    let _ = self.send_alert(sock, description).await;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why));
                }
            }
        }
    }

    /// Re-key the receive side `count` times; answer an update_requested with
    /// our own KeyUpdate, sent under the old key, then re-key the send side.
    async fn key_update<S: Io>(
        &mut self,
        sock: &S,
        count: usize,
        requested: bool,
    ) -> io::Result<()> {
        let hash = self.suite.hash;
        let Some((rx, tx)) = &mut self.secrets else {
            return Err(io::Error::other("KeyUpdate without TLS 1.3 secrets"));
        };
        for _ in 0..count {
            let next = keys::tls13_next_secret(hash, rx);
            rx.fill(0);
            *rx = next;
        }
        let keys = keys::tls13_keys(self.suite, rx, 0);
        let fd = sock.raw_fd();
        sys::set_crypto(
            fd,
            sys::Direction::Rx,
            &CryptoInfo::new(Version::Tls13, self.suite.aead, &keys),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("kTLS: re-keying TLS_RX: {e}")))?;
        if requested {
            let next = keys::tls13_next_secret(hash, tx);
            let keys = keys::tls13_keys(self.suite, &next, 0);
            tx.fill(0);
            *tx = next;
            send_control(sock, content::HANDSHAKE, &record::KEY_UPDATE_NOT_REQUESTED).await?;
            sys::set_crypto(
                fd,
                sys::Direction::Tx,
                &CryptoInfo::new(Version::Tls13, self.suite.aead, &keys),
            )
            .map_err(|e| io::Error::new(e.kind(), format!("kTLS: re-keying TLS_TX: {e}")))?;
        }
        Ok(())
    }

    async fn send_alert<S: Io>(&mut self, sock: &S, description: u8) -> io::Result<()> {
        send_control(sock, content::ALERT, &record::alert_body(description)).await
    }

    /// Write all of `data` as application data.
    pub async fn write_all<S: Io>(
        &mut self,
        sock: &S,
        data: &[u8],
        traffic: &mut Traffic,
    ) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        out.extend_from_slice(data);
        let (res, mut out) = sock.write_all(out).await;
        out.clear();
        // Do not keep a large buffer on a connection that may now sit idle.
        if out.capacity() > 2 * SMALL {
            out = BytesMut::new();
        }
        self.out = out;
        res?;
        traffic.sent += data.len() as u64;
        Ok(())
    }

    /// Send close_notify.
    pub async fn close_notify<S: Io>(&mut self, sock: &S) {
        let _ = self.send_alert(sock, alert::CLOSE_NOTIFY).await;
    }
}

/// One control record through `sendmsg`. The socket is nonblocking and the
/// trait has no writability wait, so a full send buffer is retried on a
/// short timer (control records are rare and tiny).
async fn send_control<S: Io>(sock: &S, record_type: u8, body: &[u8]) -> io::Result<()> {
    let deadline = tokio::time::Instant::now() + CONTROL_SEND_PATIENCE;
    loop {
        match sys::send_record(sock.raw_fd(), record_type, body) {
            Ok(n) if n == body.len() => return Ok(()),
            Ok(_) => return Err(io::Error::other("kTLS: control record sent in part")),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
