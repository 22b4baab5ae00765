//! Session ticket keys held in memory and rotated: the current key seals, the previous one still opens.

use std::sync::Arc;

use arc_swap::ArcSwap;
use boring::hash::MessageDigest;
use boring::ssl::{SslContextBuilder, TicketKeyCallbackResult};
use boring::symm::Cipher;

/// New-session tickets sent after each TLS 1.3 handshake (BoringSSL's default is 2).
///
/// Each ticket costs a copy of the session (client certificate included), its
/// serialisation, an AES-CBC encryption and an HMAC: about 4% of a full
/// handshake's CPU for two. A client that resumes one connection at a time
/// needs one, and every resumed handshake brings it a fresh one. (A client that
/// offers no `psk_dhe_ke` mode gets none: BoringSSL checks that itself.)
pub const TLS13_TICKETS: usize = 1;

/// One ticket key: a name the client echoes back, an AES-128-CBC key and an HMAC-SHA256 key.
struct TicketKey {
    name: [u8; 16],
    aes: [u8; 16],
    hmac: [u8; 32],
}

impl TicketKey {
    fn random() -> TicketKey {
        let mut k = TicketKey {
            name: [0; 16],
            aes: [0; 16],
            hmac: [0; 32],
        };
        // rand_bytes only fails when the kernel's RNG is unavailable; no ticket
        // key can be made then, and certgate must not run with a guessable one.
        boring::rand::rand_bytes(&mut k.name).expect("kernel random number generator");
        boring::rand::rand_bytes(&mut k.aes).expect("kernel random number generator");
        boring::rand::rand_bytes(&mut k.hmac).expect("kernel random number generator");
        k
    }
}

struct KeyPair {
    current: TicketKey,
    previous: Option<TicketKey>,
}

/// The rotating ticket keys, shared by every SSL context generation so reloads keep resumption working.
pub struct TicketKeys {
    keys: ArcSwap<KeyPair>,
}

impl TicketKeys {
    /// Fresh random keys.
    pub fn new() -> Arc<TicketKeys> {
        Arc::new(TicketKeys {
            keys: ArcSwap::from_pointee(KeyPair {
                current: TicketKey::random(),
                previous: None,
            }),
        })
    }

    /// Make a new current key; the old current becomes the previous one, the older is forgotten.
    pub fn rotate(&self) {
        let old = self.keys.load_full();
        let previous = TicketKey {
            name: old.current.name,
            aes: old.current.aes,
            hmac: old.current.hmac,
        };
        self.keys.store(Arc::new(KeyPair {
            current: TicketKey::random(),
            previous: Some(previous),
        }));
    }

    /// Install the ticket callback on a context, and the number of TLS 1.3 tickets it sends.
    pub fn install(self: &Arc<Self>, builder: &mut SslContextBuilder) {
        // SAFETY: `builder` owns a live SSL_CTX; SSL_CTX_set_num_tickets only
        // stores the count (capped at 16) and always returns 1.
        let set = unsafe { boring_sys::SSL_CTX_set_num_tickets(builder.as_ptr(), TLS13_TICKETS) };
        debug_assert_eq!(set, 1);
        let keys = Arc::clone(self);
        let callback = move |_ssl: &boring::ssl::SslRef,
                             name: &mut [u8; 16],
                             iv: &mut [u8; boring_sys::EVP_MAX_IV_LENGTH as usize],
                             cipher: &mut boring::symm::CipherCtxRef,
                             hmac: &mut boring::hmac::HmacCtxRef,
                             encrypt: bool| {
            let pair = keys.keys.load();
            let aes = Cipher::aes_128_cbc();
            if encrypt {
                let key = &pair.current;
                *name = key.name;
                if boring::rand::rand_bytes(&mut iv[..16]).is_err()
                    || cipher.init_encrypt(&aes, &key.aes, iv).is_err()
                    || hmac.init(&key.hmac, &MessageDigest::sha256()).is_err()
                {
                    return TicketKeyCallbackResult::Error;
                }
                return TicketKeyCallbackResult::Success;
            }
            let (key, renew) = if *name == pair.current.name {
                (&pair.current, false)
            } else {
                match &pair.previous {
                    Some(prev) if *name == prev.name => (prev, true),
                    _ => return TicketKeyCallbackResult::Noop,
                }
            };
            if cipher.init_decrypt(&aes, &key.aes, iv).is_err()
                || hmac.init(&key.hmac, &MessageDigest::sha256()).is_err()
            {
                return TicketKeyCallbackResult::Error;
            }
            if renew {
                TicketKeyCallbackResult::DecryptSuccessRenew
            } else {
                TicketKeyCallbackResult::Success
            }
        };
        // SAFETY: the callback sets the key name, a random IV, and initialises the
        // cipher context (AES-128-CBC, whose IV is 16 bytes: the first 16 of the
        // EVP_MAX_IV_LENGTH buffer) and the HMAC context before returning
        // Success, which is what SSL_CTX_set_tlsext_ticket_key_cb requires.
        unsafe { builder.set_ticket_key_callback(callback) };
    }
}
