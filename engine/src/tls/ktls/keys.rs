//! Record-key derivation for kTLS, pure code: HKDF-Expand-Label (TLS 1.3) and the TLS 1.2 PRF.
//!
//! BoringSSL keeps its record keys to itself. What it does give out is the
//! TLS 1.3 application traffic secrets (through the key-log callback) and the
//! TLS 1.2 master secret and randoms; from those this module derives exactly
//! what the kernel needs: per direction a key, a 12-byte IV (or, for TLS 1.2
//! AES-GCM, the 4-byte implicit salt followed by the first explicit nonce),
//! and the next secret after a TLS 1.3 KeyUpdate.

use sha2::{Digest, Sha256, Sha384};

/// The hash of a cipher suite (TLS 1.3 key schedule, TLS 1.2 PRF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256 (block 64 bytes, output 32).
    Sha256,
    /// SHA-384 (block 128 bytes, output 48).
    Sha384,
}

impl Hash {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }

    fn block(self) -> usize {
        match self {
            Hash::Sha256 => 64,
            Hash::Sha384 => 128,
        }
    }

    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
            Hash::Sha384 => {
                let mut h = Sha384::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
        }
    }

    /// HMAC (RFC 2104) over the concatenation of `parts`.
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut k = vec![0u8; self.block()];
        if key.len() > self.block() {
            let d = self.digest(&[key]);
            k[..d.len()].copy_from_slice(&d);
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let mut inner_parts = Vec::with_capacity(parts.len() + 1);
        inner_parts.push(ipad.as_slice());
        inner_parts.extend_from_slice(parts);
        let inner = self.digest(&inner_parts);
        k.fill(0);
        self.digest(&[&opad, &inner])
    }
}

/// The record protection algorithms the kernel implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aead {
    /// AES-128-GCM.
    Aes128Gcm,
    /// AES-256-GCM.
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    Chacha20Poly1305,
}

impl Aead {
    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Aead::Aes128Gcm => 16,
            Aead::Aes256Gcm | Aead::Chacha20Poly1305 => 32,
        }
    }

    /// Length of the TLS 1.2 implicit IV taken from the key block (RFC 5288: 4; RFC 7905: 12).
    fn tls12_fixed_iv_len(self) -> usize {
        match self {
            Aead::Aes128Gcm | Aead::Aes256Gcm => 4,
            Aead::Chacha20Poly1305 => 12,
        }
    }
}

/// The protocol version a connection negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// TLS 1.2: keys from the master secret, explicit nonces for AES-GCM.
    Tls12,
    /// TLS 1.3: keys from the traffic secrets, KeyUpdate possible.
    Tls13,
}

/// A negotiated cipher suite the kernel can take over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    /// Protocol version.
    pub version: Version,
    /// Record protection.
    pub aead: Aead,
    /// Key-schedule or PRF hash.
    pub hash: Hash,
}

impl Suite {
    /// The suite of an IANA cipher-suite number, if the kernel implements its AEAD.
    pub fn from_protocol_id(version: Version, id: u16) -> Option<Suite> {
        use Aead::*;
        let (aead, hash) = match (version, id) {
            (Version::Tls13, 0x1301) => (Aes128Gcm, Hash::Sha256),
            (Version::Tls13, 0x1302) => (Aes256Gcm, Hash::Sha384),
            (Version::Tls13, 0x1303) => (Chacha20Poly1305, Hash::Sha256),
            // ECDHE-{ECDSA,RSA}-AES128-GCM-SHA256, plain RSA AES128-GCM-SHA256.
            (Version::Tls12, 0xc02b | 0xc02f | 0x009c) => (Aes128Gcm, Hash::Sha256),
            (Version::Tls12, 0xc02c | 0xc030 | 0x009d) => (Aes256Gcm, Hash::Sha384),
            (Version::Tls12, 0xcca9 | 0xcca8) => (Chacha20Poly1305, Hash::Sha256),
            _ => return None,
        };
        Some(Suite {
            version,
            aead,
            hash,
        })
    }
}

/// The record protection state of one direction, as the kernel wants it.
#[derive(Clone, PartialEq, Eq)]
pub struct DirectionKeys {
    /// The AEAD key (16 or 32 bytes).
    pub key: Vec<u8>,
    /// TLS 1.3 and ChaCha20: the 12-byte static IV. TLS 1.2 AES-GCM: the
    /// 4-byte salt, then the explicit nonce of the next record (set to the
    /// sequence number, as BoringSSL does).
    pub iv: [u8; 12],
    /// Sequence number of the next record.
    pub seq: u64,
}

impl std::fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectionKeys")
            .field("key", &"..")
            .field("seq", &self.seq)
            .finish()
    }
}

impl Drop for DirectionKeys {
    fn drop(&mut self) {
        self.key.fill(0);
        self.iv.fill(0);
    }
}

/// HKDF-Expand (RFC 5869 §2.3) with `info`, `len` bytes.
pub fn hkdf_expand(hash: Hash, prk: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.output_len());
    let mut t: Vec<u8> = Vec::new();
    let mut counter = 1u8;
    while out.len() < len {
        t = hash.hmac(prk, &[&t, info, &[counter]]);
        out.extend_from_slice(&t);
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// HKDF-Expand-Label (RFC 8446 §7.1): `label` without the "tls13 " prefix.
pub fn hkdf_expand_label(
    hash: Hash,
    secret: &[u8],
    label: &str,
    context: &[u8],
    len: usize,
) -> Vec<u8> {
    let full = [b"tls13 ".as_slice(), label.as_bytes()].concat();
    let mut info = Vec::with_capacity(4 + full.len() + context.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(&full);
    info.push(context.len() as u8);
    info.extend_from_slice(context);
    hkdf_expand(hash, secret, &info, len)
}

/// TLS 1.3 traffic keys (RFC 8446 §7.3) of one direction from its traffic secret.
pub fn tls13_keys(suite: Suite, secret: &[u8], seq: u64) -> DirectionKeys {
    let key = hkdf_expand_label(suite.hash, secret, "key", &[], suite.aead.key_len());
    let iv = hkdf_expand_label(suite.hash, secret, "iv", &[], 12);
    let mut out = DirectionKeys {
        key,
        iv: [0; 12],
        seq,
    };
    out.iv.copy_from_slice(&iv);
    out
}

/// The traffic secret after a KeyUpdate (RFC 8446 §7.2).
pub fn tls13_next_secret(hash: Hash, secret: &[u8]) -> Vec<u8> {
    hkdf_expand_label(hash, secret, "traffic upd", &[], hash.output_len())
}

/// The TLS 1.2 PRF (RFC 5246 §5): P_hash(secret, label + seed), `len` bytes.
pub fn tls12_prf(hash: Hash, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.output_len());
    let mut a = hash.hmac(secret, &[label, seed]);
    while out.len() < len {
        out.extend_from_slice(&hash.hmac(secret, &[&a, label, seed]));
        a = hash.hmac(secret, &[&a]);
    }
    out.truncate(len);
    out
}

/// Length of the TLS 1.2 key block of an AEAD suite (no MAC keys).
pub fn tls12_key_block_len(aead: Aead) -> usize {
    2 * (aead.key_len() + aead.tls12_fixed_iv_len())
}

/// The TLS 1.2 key block (RFC 5246 §6.3) from the master secret and the randoms.
pub fn tls12_key_block(
    suite: Suite,
    master: &[u8],
    client_random: &[u8],
    server_random: &[u8],
) -> Vec<u8> {
    let seed = [server_random, client_random].concat();
    tls12_prf(
        suite.hash,
        master,
        b"key expansion",
        &seed,
        tls12_key_block_len(suite.aead),
    )
}

/// Client and server write keys, split out of a TLS 1.2 key block; `seqs` are (client, server).
pub fn tls12_keys(
    aead: Aead,
    key_block: &[u8],
    seqs: (u64, u64),
) -> Option<(DirectionKeys, DirectionKeys)> {
    let (k, f) = (aead.key_len(), aead.tls12_fixed_iv_len());
    if key_block.len() < 2 * (k + f) {
        return None;
    }
    let (client_key, rest) = key_block.split_at(k);
    let (server_key, rest) = rest.split_at(k);
    let (client_iv, rest) = rest.split_at(f);
    let server_iv = &rest[..f];
    let side = |key: &[u8], fixed: &[u8], seq: u64| {
        let mut iv = [0u8; 12];
        iv[..f].copy_from_slice(fixed);
        if f == 4 {
            iv[4..].copy_from_slice(&seq.to_be_bytes());
        }
        DirectionKeys {
            key: key.to_vec(),
            iv,
            seq,
        }
    };
    Some((
        side(client_key, client_iv, seqs.0),
        side(server_key, server_iv, seqs.1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    const TLS13_AES128: Suite = Suite {
        version: Version::Tls13,
        aead: Aead::Aes128Gcm,
        hash: Hash::Sha256,
    };

    /// RFC 8448 §3 (simple 1-RTT handshake): "derive secret tls13 s ap traffic"
    /// and "tls13 c ap traffic" from the master secret and the transcript hash.
    #[test]
    fn rfc8448_application_traffic_secrets() {
        let master = h("18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919");
        let transcript = h("9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13");
        assert_eq!(
            hkdf_expand_label(Hash::Sha256, &master, "s ap traffic", &transcript, 32),
            h("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
        );
        assert_eq!(
            hkdf_expand_label(Hash::Sha256, &master, "c ap traffic", &transcript, 32),
            h("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")
        );
    }

    /// RFC 8448 §3: "derive write traffic keys for application data", both sides.
    #[test]
    fn rfc8448_application_write_keys() {
        let server = tls13_keys(
            TLS13_AES128,
            &h("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643"),
            7,
        );
        assert_eq!(server.key, h("9f02283b6c9c07efc26bb9f2ac92e356"));
        assert_eq!(server.iv.to_vec(), h("cf782b88dd83549aadf1e984"));
        assert_eq!(server.seq, 7);
        let client = tls13_keys(
            TLS13_AES128,
            &h("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5"),
            0,
        );
        assert_eq!(client.key, h("17422dda596ed5d9acd890e3c63f5051"));
        assert_eq!(client.iv.to_vec(), h("5b78923dee08579033e523d9"));
    }

    /// RFC 8448 §3: the handshake keys are derived the same way ("derive read
    /// traffic keys for handshake data" from the client handshake secret).
    #[test]
    fn rfc8448_handshake_keys() {
        let k = tls13_keys(
            TLS13_AES128,
            &h("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21"),
            0,
        );
        assert_eq!(k.key, h("dbfaa693d1762c5b666af5d950258d01"));
        assert_eq!(k.iv.to_vec(), h("5bd3c71b836e0b76bb73265f"));
    }

    /// HMAC-SHA-256 and HMAC-SHA-384 against RFC 4231 test case 2.
    #[test]
    fn hmac_rfc4231_case2() {
        let key = b"Jefe";
        let data = b"what do ya want for nothing?";
        assert_eq!(
            Hash::Sha256.hmac(key, &[data]),
            h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(
            Hash::Sha384.hmac(key, &[data]),
            h("af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649")
        );
    }

    /// HKDF against RFC 5869 test case 1 (the Expand step, from its PRK).
    #[test]
    fn hkdf_expand_rfc5869_case1() {
        let prk = h("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
        let info = h("f0f1f2f3f4f5f6f7f8f9");
        assert_eq!(
            hkdf_expand(Hash::Sha256, &prk, &info, 42),
            h("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
    }

    #[test]
    fn key_update_changes_secret_and_keeps_its_length() {
        let s = h("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
        let next = tls13_next_secret(Hash::Sha256, &s);
        assert_eq!(next.len(), 32);
        assert_ne!(next, s);
        assert_eq!(
            next,
            hkdf_expand_label(Hash::Sha256, &s, "traffic upd", &[], 32)
        );
    }

    #[test]
    fn tls12_key_block_split() {
        let block: Vec<u8> = (0u8..40).collect();
        let (c, s) = tls12_keys(Aead::Aes128Gcm, &block, (3, 9)).unwrap();
        assert_eq!(c.key, (0u8..16).collect::<Vec<_>>());
        assert_eq!(s.key, (16u8..32).collect::<Vec<_>>());
        assert_eq!(&c.iv[..4], &[32, 33, 34, 35]);
        assert_eq!(&s.iv[..4], &[36, 37, 38, 39]);
        assert_eq!(&c.iv[4..], &3u64.to_be_bytes());
        assert_eq!(&s.iv[4..], &9u64.to_be_bytes());
        let block: Vec<u8> = (0u8..88).collect();
        let (c, s) = tls12_keys(Aead::Chacha20Poly1305, &block, (0, 0)).unwrap();
        assert_eq!(c.key, (0u8..32).collect::<Vec<_>>());
        assert_eq!(s.key, (32u8..64).collect::<Vec<_>>());
        assert_eq!(c.iv.to_vec(), (64u8..76).collect::<Vec<_>>());
        assert_eq!(s.iv.to_vec(), (76u8..88).collect::<Vec<_>>());
        assert!(tls12_keys(Aead::Aes256Gcm, &block[..10], (0, 0)).is_none());
    }

    #[test]
    fn suites_the_kernel_takes() {
        let s = Suite::from_protocol_id(Version::Tls13, 0x1302).unwrap();
        assert_eq!((s.aead, s.hash), (Aead::Aes256Gcm, Hash::Sha384));
        let s = Suite::from_protocol_id(Version::Tls12, 0xcca9).unwrap();
        assert_eq!(s.aead, Aead::Chacha20Poly1305);
        // CBC suites stay in user space.
        assert!(Suite::from_protocol_id(Version::Tls12, 0xc013).is_none());
        assert!(Suite::from_protocol_id(Version::Tls13, 0xc02b).is_none());
    }
}
