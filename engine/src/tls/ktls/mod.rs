//! kTLS: after the handshake, the kernel takes over the connection's TLS record layer.
//!
//! The path of a connection with `CERTGATE_KTLS=auto|on` on a kernel that
//! offers the `tls` ULP:
//!
//! ```text
//! start-up   read /proc/sys/net/ipv4/tcp_available_ulp ── no "tls" ─▶ auto: user space (metric no_ulp)
//!                                                                     on:   start-up error
//! contexts   key-log callback installed ─▶ TLS 1.3 traffic secrets stashed in the SSL's ex_data
//! handshake  BoringSSL, as always (tickets flushed with its last flight)
//! verdict    connection.rs arms the offload (Kernel::Pending)
//! boundary   TlsConn::read needs input, nothing buffered either way:
//!              suite → keys (keys.rs) + sequence numbers → crypto_info.rs
//!              TCP_ULP "tls", TLS_TX, TLS_RX (sys.rs)  ── refused ─▶ user space (metric setsockopt)
//! after      plaintext read with recvmsg (record type in a cmsg) and written with write(2);
//!            KeyUpdate re-keys the kernel, close_notify ends the stream, the rest closes (record.rs)
//! ```
//!
//! The offload waits for a record boundary: when the client's first request
//! arrived in the same read as its Finished, BoringSSL decrypts it and the
//! offload happens at the next read that finds nothing buffered.

pub mod crypto_info;
pub mod keys;
pub mod record;
pub mod sys;

mod conn;
#[cfg(test)]
mod tests;

pub use conn::KernelTls;

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, OnceLock};

use boring::ssl::{Ssl, SslContextBuilder, SslRef, SslVersion};
use foreign_types::ForeignTypeRef;

use crate::admin::metrics::{KtlsFallback, WorkerStats};
use crate::config::{Config, KtlsChoice, KTLS};
use keys::{DirectionKeys, Suite, Version};

// === detection ===

/// `CERTGATE_KTLS=on` on a kernel without the `tls` ULP.
#[derive(Debug, thiserror::Error)]
#[error("{KTLS}=on but the kernel does not offer kernel TLS: {0}")]
pub struct KtlsUnavailable(String);

/// The start-up decision: whether connections are offloaded, and why (for the log line).
#[derive(Debug, Clone)]
pub struct Availability {
    /// The kernel offers the `tls` ULP.
    pub kernel: bool,
    /// One sentence for the start-up log.
    pub why: String,
}

/// Read the kernel's ULP list: `Ok(true)` when it names `tls`, `Err` with the
/// reason (naming the file) when it does not or cannot be read.
pub fn probe() -> Result<(), String> {
    match std::fs::read_to_string(sys::AVAILABLE_ULP) {
        Ok(list) if sys::lists_tls(&list) => Ok(()),
        Ok(list) => Err(format!(
            "{} lists {:?}, not \"tls\" (the kernel is built without CONFIG_TLS, or the tls module is not loaded: modprobe tls)",
            sys::AVAILABLE_ULP,
            list.trim()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", sys::AVAILABLE_ULP)),
    }
}

impl Availability {
    /// Probe the kernel as `choice` asks; `on` without kernel TLS is an error.
    pub fn resolve(choice: KtlsChoice) -> Result<Availability, KtlsUnavailable> {
        let found = match choice {
            KtlsChoice::Off => {
                return Ok(Availability {
                    kernel: false,
                    why: format!("off (forced by {KTLS}=off)"),
                })
            }
            KtlsChoice::Auto | KtlsChoice::On => probe(),
        };
        match (choice, found) {
            (_, Ok(())) => Ok(Availability {
                kernel: true,
                why: format!(
                    "active ({}: the kernel offers the tls ULP; {KTLS}={})",
                    sys::AVAILABLE_ULP,
                    if choice == KtlsChoice::On {
                        "on"
                    } else {
                        "auto"
                    }
                ),
            }),
            (KtlsChoice::On, Err(why)) => Err(KtlsUnavailable(why)),
            (_, Err(why)) => Ok(Availability {
                kernel: false,
                why: format!("not active ({why}); records stay in user space"),
            }),
        }
    }
}

/// Whether connections should be prepared for the offload (secrets logged).
pub fn wanted(config: &Config) -> bool {
    config.ktls != KtlsChoice::Off && config.ktls_available
}

// === TLS 1.3 traffic secrets ===

/// The TLS 1.3 application traffic secrets of one connection, from the key-log callback.
#[derive(Default)]
pub struct TrafficSecrets {
    client: OnceLock<Vec<u8>>,
    server: OnceLock<Vec<u8>>,
}

impl Drop for TrafficSecrets {
    fn drop(&mut self) {
        for s in [&mut self.client, &mut self.server] {
            if let Some(s) = s.get_mut() {
                s.fill(0);
            }
        }
    }
}

impl TrafficSecrets {
    /// Take in one key-log line (NSS key-log format); other labels are ignored.
    pub fn record(&self, line: &str) {
        let mut words = line.split(' ');
        let (Some(label), Some(_random), Some(secret)) = (words.next(), words.next(), words.next())
        else {
            return;
        };
        let slot = match label {
            "CLIENT_TRAFFIC_SECRET_0" => &self.client,
            "SERVER_TRAFFIC_SECRET_0" => &self.server,
            _ => return,
        };
        if let Ok(bytes) = hex::decode(secret) {
            let _ = slot.set(bytes);
        }
    }

    /// (client, server), once both were logged.
    pub fn get(&self) -> Option<(&[u8], &[u8])> {
        Some((self.client.get()?, self.server.get()?))
    }
}

/// The ex_data slot holding a connection's [`TrafficSecrets`].
pub fn secrets_index() -> boring::ex_data::Index<Ssl, TrafficSecrets> {
    static INDEX: OnceLock<boring::ex_data::Index<Ssl, TrafficSecrets>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("BoringSSL ex_data index"))
}

/// Install the key-log callback that fills [`TrafficSecrets`] (only connections
/// that carry the slot, see [`prepare`], keep anything).
pub fn install_keylog(b: &mut SslContextBuilder) {
    b.set_keylog_callback(|ssl, line| {
        if let Some(secrets) = ssl.ex_data(secrets_index()) {
            secrets.record(line);
        }
    });
}

/// Give a new connection its secrets slot when it may be offloaded.
pub fn prepare(ssl: &mut Ssl, config: &Config) {
    if wanted(config) {
        ssl.set_ex_data(secrets_index(), TrafficSecrets::default());
    }
}

// === the offload ===

/// An offload that waits for the connection's next record boundary.
pub struct Pending {
    stats: Arc<WorkerStats>,
}

/// What a connection's record layer is doing.
#[derive(Default)]
pub enum Kernel {
    /// BoringSSL protects the records.
    #[default]
    UserSpace,
    /// Armed: offload at the next record boundary.
    Pending(Pending),
    /// The kernel protects the records.
    Offloaded(KernelTls),
}

/// Arm the offload for an established connection, or count why not.
pub fn plan(config: &Config, stats: &Arc<WorkerStats>) -> Option<Pending> {
    match (config.ktls, config.ktls_available) {
        (KtlsChoice::Off, _) => None,
        (_, false) => {
            stats.ktls_fallback(KtlsFallback::NoUlp);
            None
        }
        (_, true) => Some(Pending {
            stats: Arc::clone(stats),
        }),
    }
}

/// Why an offload did not happen.
enum NotOffloaded {
    /// Stay in user space; nothing was changed on the socket that matters.
    Fallback(KtlsFallback),
    /// TLS_TX is installed but TLS_RX was refused: neither side can carry on.
    Broken(io::Error),
}

impl Kernel {
    /// Whether an offload is armed.
    pub fn pending(&self) -> bool {
        matches!(self, Kernel::Pending(_))
    }

    /// At a record boundary (BoringSSL holds no received bytes and nothing is
    /// left to write): hand the records to the kernel. `Ok(true)` once
    /// offloaded; `Ok(false)` when it stays in user space; `Err` when the
    /// socket is left unusable (the connection must close).
    pub fn offload_at_boundary(&mut self, ssl: &SslRef, fd: RawFd) -> io::Result<bool> {
        match self {
            Kernel::UserSpace => return Ok(false),
            Kernel::Offloaded(_) => return Ok(true),
            Kernel::Pending(_) => {}
        }
        let Kernel::Pending(p) = std::mem::take(self) else {
            return Ok(false);
        };
        match offload(ssl, fd, &p.stats) {
            Ok(k) => {
                p.stats.ktls_offloaded.inc();
                *self = Kernel::Offloaded(k);
                Ok(true)
            }
            Err(NotOffloaded::Fallback(why)) => {
                tracing::debug!(?why, "kTLS: staying in user space");
                p.stats.ktls_fallback(why);
                Ok(false)
            }
            Err(NotOffloaded::Broken(e)) => {
                p.stats.ktls_fallback(KtlsFallback::Setsockopt);
                p.stats.ktls_closed.inc();
                Err(io::Error::new(
                    e.kind(),
                    format!("kTLS: TLS_RX refused after TLS_TX: {e}"),
                ))
            }
        }
    }
}

/// The negotiated suite, if the kernel implements it.
pub fn suite_of(ssl: &SslRef) -> Option<Suite> {
    let version = match ssl.version2()? {
        SslVersion::TLS1_3 => Version::Tls13,
        SslVersion::TLS1_2 => Version::Tls12,
        _ => return None,
    };
    Suite::from_protocol_id(version, ssl.current_cipher()?.protocol_id())
}

/// Make BoringSSL write out the handshake messages it defers until the
/// server's next write (TLS 1.3 NewSessionTickets, a KeyUpdate answer): a
/// zero-byte `SSL_write`, as BoringSSL documents for servers that may not
/// write. They land in the connection's outgoing buffer, to be flushed before
/// the offload; the write sequence number counts them.
pub fn flush_deferred(ssl: &mut SslRef) {
    let byte = 0u8;
    // SAFETY: a valid SSL with a completed handshake, exclusively borrowed;
    // a zero-length write reads nothing from the (valid) buffer pointer. A
    // failure leaves BoringSSL's state as it was and is caught by the
    // boundary check (outgoing not empty) or the next operation.
    let _ = unsafe { boring_sys::SSL_write(ssl.as_ptr(), (&byte as *const u8).cast(), 0) };
}

/// Sequence numbers of the next record (read, write).
pub fn sequence_numbers(ssl: &SslRef) -> (u64, u64) {
    // SAFETY: the pointer is valid for the borrow of `ssl`; both calls only
    // read the connection's record state.
    unsafe {
        (
            boring_sys::SSL_get_read_sequence(ssl.as_ptr()),
            boring_sys::SSL_get_write_sequence(ssl.as_ptr()),
        )
    }
}

/// The server's record keys of an established connection: (receive, send),
/// plus the TLS 1.3 traffic secrets (receive, send) for KeyUpdate.
#[allow(clippy::type_complexity)]
pub fn server_keys(
    ssl: &SslRef,
    suite: Suite,
) -> Option<(DirectionKeys, DirectionKeys, Option<(Vec<u8>, Vec<u8>)>)> {
    let (read_seq, write_seq) = sequence_numbers(ssl);
    match suite.version {
        Version::Tls13 => {
            let (client, server) = ssl.ex_data(secrets_index())?.get()?;
            Some((
                keys::tls13_keys(suite, client, read_seq),
                keys::tls13_keys(suite, server, write_seq),
                Some((client.to_vec(), server.to_vec())),
            ))
        }
        Version::Tls12 => {
            let session = ssl.session()?;
            let mut master = vec![0u8; session.master_key_len()];
            let n = session.master_key(&mut master);
            master.truncate(n);
            let (mut cr, mut sr) = ([0u8; 32], [0u8; 32]);
            if n == 0 || ssl.client_random(&mut cr) != 32 || ssl.server_random(&mut sr) != 32 {
                return None;
            }
            let block = keys::tls12_key_block(suite, &master, &cr, &sr);
            master.fill(0);
            let (client, server) = keys::tls12_keys(suite.aead, &block, (read_seq, write_seq))?;
            Some((client, server, None))
        }
    }
}

fn offload(ssl: &SslRef, fd: RawFd, stats: &Arc<WorkerStats>) -> Result<KernelTls, NotOffloaded> {
    let suite = suite_of(ssl).ok_or(NotOffloaded::Fallback(KtlsFallback::Cipher))?;
    let (rx, tx, secrets) =
        server_keys(ssl, suite).ok_or(NotOffloaded::Fallback(KtlsFallback::Keys))?;
    let setsockopt = |_| NotOffloaded::Fallback(KtlsFallback::Setsockopt);
    sys::attach_ulp(fd).map_err(setsockopt)?;
    let info = crypto_info::CryptoInfo::new(suite.version, suite.aead, &tx);
    sys::set_crypto(fd, sys::Direction::Tx, &info).map_err(setsockopt)?;
    let info = crypto_info::CryptoInfo::new(suite.version, suite.aead, &rx);
    sys::set_crypto(fd, sys::Direction::Rx, &info).map_err(NotOffloaded::Broken)?;
    Ok(KernelTls::new(suite, secrets, Arc::clone(stats)))
}
