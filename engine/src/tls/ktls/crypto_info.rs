//! The kernel's `struct tls12_crypto_info_*` (UAPI `linux/tls.h`), built from derived keys.
//!
//! Written out here rather than taken from `libc` so the layout is visible
//! next to its size checks; the names follow the UAPI header.

use super::keys::{Aead, DirectionKeys, Version};

/// `SOL_TLS`: the socket level of the TLS options.
pub const SOL_TLS: libc::c_int = 282;
/// `TCP_ULP`: attach an upper-layer protocol to a TCP socket.
pub const TCP_ULP: libc::c_int = 31;
/// `TLS_TX`: transmit-side crypto state.
pub const TLS_TX: libc::c_int = 1;
/// `TLS_RX`: receive-side crypto state.
pub const TLS_RX: libc::c_int = 2;
/// cmsg type on `SOL_TLS` for the record type of a sent record.
pub const TLS_SET_RECORD_TYPE: libc::c_int = 1;
/// cmsg type on `SOL_TLS` carrying the record type of a received record.
pub const TLS_GET_RECORD_TYPE: libc::c_int = 2;

const TLS_1_2_VERSION: u16 = 0x0303;
const TLS_1_3_VERSION: u16 = 0x0304;
const TLS_CIPHER_AES_GCM_128: u16 = 51;
const TLS_CIPHER_AES_GCM_256: u16 = 52;
const TLS_CIPHER_CHACHA20_POLY1305: u16 = 54;

/// `struct tls_crypto_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsCryptoInfo {
    /// `TLS_1_2_VERSION` or `TLS_1_3_VERSION`.
    pub version: u16,
    /// `TLS_CIPHER_*`.
    pub cipher_type: u16,
}

/// `struct tls12_crypto_info_aes_gcm_128` (also used for TLS 1.3).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct AesGcm128 {
    /// Version and cipher.
    pub info: TlsCryptoInfo,
    /// Explicit nonce part (TLS 1.2) / IV bytes 4..12 (TLS 1.3).
    pub iv: [u8; 8],
    /// Key.
    pub key: [u8; 16],
    /// Implicit IV part: IV bytes 0..4.
    pub salt: [u8; 4],
    /// Sequence number of the next record, big-endian.
    pub rec_seq: [u8; 8],
}

/// `struct tls12_crypto_info_aes_gcm_256`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct AesGcm256 {
    /// Version and cipher.
    pub info: TlsCryptoInfo,
    /// Explicit nonce part / IV bytes 4..12.
    pub iv: [u8; 8],
    /// Key.
    pub key: [u8; 32],
    /// IV bytes 0..4.
    pub salt: [u8; 4],
    /// Sequence number of the next record, big-endian.
    pub rec_seq: [u8; 8],
}

/// `struct tls12_crypto_info_chacha20_poly1305`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Chacha20Poly1305 {
    /// Version and cipher.
    pub info: TlsCryptoInfo,
    /// The whole 12-byte IV.
    pub iv: [u8; 12],
    /// Key.
    pub key: [u8; 32],
    /// Empty in the UAPI (`salt[0]`).
    pub salt: [u8; 0],
    /// Sequence number of the next record, big-endian.
    pub rec_seq: [u8; 8],
}

// The kernel checks `optlen` against exactly these sizes.
const _: () = assert!(std::mem::size_of::<AesGcm128>() == 40);
const _: () = assert!(std::mem::size_of::<AesGcm256>() == 56);
const _: () = assert!(std::mem::size_of::<Chacha20Poly1305>() == 56);

/// One direction's crypto state, ready for `setsockopt(SOL_TLS, TLS_TX | TLS_RX)`.
pub enum CryptoInfo {
    /// AES-128-GCM.
    Aes128(AesGcm128),
    /// AES-256-GCM.
    Aes256(AesGcm256),
    /// ChaCha20-Poly1305.
    Chacha(Chacha20Poly1305),
}

impl CryptoInfo {
    /// The kernel's view of `keys` (whose key length must match `aead`).
    pub fn new(version: Version, aead: Aead, keys: &DirectionKeys) -> CryptoInfo {
        let version = match version {
            Version::Tls12 => TLS_1_2_VERSION,
            Version::Tls13 => TLS_1_3_VERSION,
        };
        let rec_seq = keys.seq.to_be_bytes();
        let mut salt = [0u8; 4];
        salt.copy_from_slice(&keys.iv[..4]);
        let mut iv8 = [0u8; 8];
        iv8.copy_from_slice(&keys.iv[4..]);
        match aead {
            Aead::Aes128Gcm => {
                let mut c = AesGcm128 {
                    info: TlsCryptoInfo {
                        version,
                        cipher_type: TLS_CIPHER_AES_GCM_128,
                    },
                    iv: iv8,
                    salt,
                    rec_seq,
                    ..Default::default()
                };
                c.key.copy_from_slice(&keys.key);
                CryptoInfo::Aes128(c)
            }
            Aead::Aes256Gcm => {
                let mut c = AesGcm256 {
                    info: TlsCryptoInfo {
                        version,
                        cipher_type: TLS_CIPHER_AES_GCM_256,
                    },
                    iv: iv8,
                    salt,
                    rec_seq,
                    ..Default::default()
                };
                c.key.copy_from_slice(&keys.key);
                CryptoInfo::Aes256(c)
            }
            Aead::Chacha20Poly1305 => {
                let mut c = Chacha20Poly1305 {
                    info: TlsCryptoInfo {
                        version,
                        cipher_type: TLS_CIPHER_CHACHA20_POLY1305,
                    },
                    iv: keys.iv,
                    rec_seq,
                    ..Default::default()
                };
                c.key.copy_from_slice(&keys.key);
                CryptoInfo::Chacha(c)
            }
        }
    }

    /// The bytes handed to `setsockopt`.
    pub fn as_bytes(&self) -> &[u8] {
        fn bytes<T>(v: &T) -> &[u8] {
            // SAFETY: T is one of the #[repr(C)] structs above, made only of
            // u16 and u8 arrays with no padding (the size assertions pin the
            // layout), so all of its bytes are initialised.
            unsafe {
                std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
            }
        }
        match self {
            CryptoInfo::Aes128(c) => bytes(c),
            CryptoInfo::Aes256(c) => bytes(c),
            CryptoInfo::Chacha(c) => bytes(c),
        }
    }
}

impl Drop for CryptoInfo {
    fn drop(&mut self) {
        match self {
            CryptoInfo::Aes128(c) => c.key.fill(0),
            CryptoInfo::Aes256(c) => c.key.fill(0),
            CryptoInfo::Chacha(c) => c.key.fill(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn sizes_match_the_uapi() {
        assert_eq!(size_of::<TlsCryptoInfo>(), 4);
        assert_eq!(size_of::<AesGcm128>(), 40);
        assert_eq!(size_of::<AesGcm256>(), 56);
        assert_eq!(size_of::<Chacha20Poly1305>(), 56);
        // Field offsets as in linux/tls.h: info, iv, key, salt, rec_seq.
        assert_eq!(
            [
                offset_of!(AesGcm128, iv),
                offset_of!(AesGcm128, key),
                offset_of!(AesGcm128, salt),
                offset_of!(AesGcm128, rec_seq)
            ],
            [4, 12, 28, 32]
        );
        assert_eq!(
            [
                offset_of!(AesGcm256, iv),
                offset_of!(AesGcm256, key),
                offset_of!(AesGcm256, salt),
                offset_of!(AesGcm256, rec_seq)
            ],
            [4, 12, 44, 48]
        );
        assert_eq!(
            [
                offset_of!(Chacha20Poly1305, iv),
                offset_of!(Chacha20Poly1305, key),
                offset_of!(Chacha20Poly1305, rec_seq)
            ],
            [4, 16, 48]
        );
    }

    #[test]
    fn layout_of_the_bytes_sent_to_the_kernel() {
        let keys = DirectionKeys {
            key: (1u8..=16).collect(),
            iv: [
                0xa0, 0xa1, 0xa2, 0xa3, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
            ],
            seq: 0x0102030405060708,
        };
        let info = CryptoInfo::new(Version::Tls13, Aead::Aes128Gcm, &keys);
        let b = info.as_bytes();
        assert_eq!(b.len(), 40);
        assert_eq!(
            &b[..4],
            &[0x04, 0x03, 51, 0],
            "version 0x0304, cipher 51, little-endian"
        );
        assert_eq!(&b[4..12], &keys.iv[4..]);
        assert_eq!(&b[12..28], keys.key.as_slice());
        assert_eq!(&b[28..32], &keys.iv[..4]);
        assert_eq!(&b[32..40], &[1, 2, 3, 4, 5, 6, 7, 8]);

        let keys = DirectionKeys {
            key: vec![7; 32],
            iv: [9; 12],
            seq: 5,
        };
        let info = CryptoInfo::new(Version::Tls12, Aead::Chacha20Poly1305, &keys);
        let b = info.as_bytes();
        assert_eq!(b.len(), 56);
        assert_eq!(&b[..4], &[0x03, 0x03, 54, 0]);
        assert_eq!(&b[4..16], &[9; 12]);
        assert_eq!(&b[16..48], &[7; 32]);
        assert_eq!(&b[48..], &5u64.to_be_bytes());
        let info = CryptoInfo::new(Version::Tls12, Aead::Aes256Gcm, &keys);
        assert_eq!(info.as_bytes().len(), 56);
        assert_eq!(&info.as_bytes()[..4], &[0x03, 0x03, 52, 0]);
    }
}
