//! The server's public-key work in one mutual-TLS 1.3 handshake, through BoringSSL.
//!
//! Per full handshake the server does one X25519 key generation and agreement
//! (its key share), signs its CertificateVerify once, and verifies the client's
//! CertificateVerify once. A client seen for the first time (a verdict-cache
//! miss) also costs the verification of its certificate's signature by the
//! issuer (one more per chain level). Bulk data then goes through AES-128-GCM.

use boring::aead::{AeadCtx, Algorithm};
use boring::derive::Deriver;
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{Id, PKey, Private};
use boring::rsa::{Padding, Rsa};
use boring::sign::{RsaPssSaltlen, Signer, Verifier};

/// One measured operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Server key share: X25519 key generation + agreement with the client's share.
    X25519,
    /// ECDSA P-256 / SHA-256 signature of a CertificateVerify input.
    EcdsaSign,
    /// ECDSA P-256 / SHA-256 verification of the client's CertificateVerify.
    EcdsaVerify,
    /// RSA-PSS 2048 / SHA-256 signature.
    RsaSign,
    /// RSA-PSS 2048 / SHA-256 verification.
    RsaVerify,
    /// AES-128-GCM seal of one 16 KiB TLS record.
    Aes128GcmSeal16k,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 6] = [
        Op::X25519,
        Op::EcdsaSign,
        Op::EcdsaVerify,
        Op::RsaSign,
        Op::RsaVerify,
        Op::Aes128GcmSeal16k,
    ];

    /// Short machine-readable name.
    pub const fn name(self) -> &'static str {
        match self {
            Op::X25519 => "x25519",
            Op::EcdsaSign => "ecdsa_p256_sign",
            Op::EcdsaVerify => "ecdsa_p256_verify",
            Op::RsaSign => "rsa2048_pss_sign",
            Op::RsaVerify => "rsa2048_pss_verify",
            Op::Aes128GcmSeal16k => "aes128gcm_seal_16k",
        }
    }
}

/// Size of one full TLS record's plaintext.
pub const RECORD: usize = 16 * 1024;

/// Keys, a signed message and a record buffer, made once.
pub struct Crypto {
    /// The client's X25519 key share (only its public half is used).
    client_share: PKey<Private>,
    ec_key: PKey<Private>,
    ec_sig: Vec<u8>,
    rsa_key: PKey<Private>,
    rsa_sig: Vec<u8>,
    /// The TLS 1.3 CertificateVerify input: 64 spaces, context string, 0, transcript hash.
    message: Vec<u8>,
    aead: AeadCtx,
    record: Vec<u8>,
    nonce: u64,
}

impl Crypto {
    /// Generates the keys and one signature of each kind.
    ///
    /// # Panics
    /// If BoringSSL fails to generate a key or sign (never in practice).
    pub fn new() -> Crypto {
        let client_share = PKey::generate(Id::X25519).expect("x25519 key");
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
        let ec_key = PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("pkey");
        let rsa_key = PKey::from_rsa(Rsa::generate(2048).expect("RSA key")).expect("pkey");
        let mut message = vec![b' '; 64];
        message.extend_from_slice(b"TLS 1.3, client CertificateVerify\0");
        message.extend_from_slice(&[0x5a; 32]);
        let aead = AeadCtx::new_default_tag(&Algorithm::aes_128_gcm(), &[0x42; 16]).expect("aead");
        let mut c = Crypto {
            client_share,
            ec_key,
            ec_sig: Vec::new(),
            rsa_key,
            rsa_sig: Vec::new(),
            message,
            aead,
            record: vec![0x17; RECORD],
            nonce: 0,
        };
        c.ec_sig = c.ecdsa_sign();
        c.rsa_sig = c.rsa_sign();
        assert!(c.ecdsa_verify() && c.rsa_verify(), "signatures verify");
        c
    }

    /// Generates the server's ephemeral X25519 key, reads its public share and
    /// derives the shared secret with the client's share.
    ///
    /// # Panics
    /// If BoringSSL fails (never in practice).
    pub fn x25519(&self) -> [u8; 32] {
        let server = PKey::generate(Id::X25519).expect("x25519 key");
        let mut share = [0u8; 32];
        server.raw_public_key(&mut share).expect("public share");
        let mut deriver = Deriver::new(&server).expect("deriver");
        deriver.set_peer(&self.client_share).expect("peer");
        let mut secret = [0u8; 32];
        deriver.derive(&mut secret).expect("derive");
        secret[0] ^= share[0];
        secret
    }

    /// ECDSA P-256 with SHA-256 over the CertificateVerify input.
    ///
    /// # Panics
    /// If BoringSSL fails (never in practice).
    pub fn ecdsa_sign(&self) -> Vec<u8> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.ec_key).expect("signer");
        signer.sign_oneshot_to_vec(&self.message).expect("sign")
    }

    /// Verifies an ECDSA P-256 / SHA-256 signature (the peer's CertificateVerify).
    ///
    /// # Panics
    /// If BoringSSL fails (never in practice).
    pub fn ecdsa_verify(&self) -> bool {
        let mut verifier = Verifier::new(MessageDigest::sha256(), &self.ec_key).expect("verifier");
        verifier
            .verify_oneshot(&self.ec_sig, &self.message)
            .expect("verify")
    }

    /// RSA-PSS (SHA-256, salt = digest length) with a 2048-bit key.
    ///
    /// # Panics
    /// If BoringSSL fails (never in practice).
    pub fn rsa_sign(&self) -> Vec<u8> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.rsa_key).expect("signer");
        signer.set_rsa_padding(Padding::PKCS1_PSS).expect("PSS");
        signer
            .set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
            .expect("salt");
        signer.sign_oneshot_to_vec(&self.message).expect("sign")
    }

    /// Verifies an RSA-PSS 2048 / SHA-256 signature.
    ///
    /// # Panics
    /// If BoringSSL fails (never in practice).
    pub fn rsa_verify(&self) -> bool {
        let mut verifier = Verifier::new(MessageDigest::sha256(), &self.rsa_key).expect("verifier");
        verifier.set_rsa_padding(Padding::PKCS1_PSS).expect("PSS");
        verifier
            .set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
            .expect("salt");
        verifier
            .verify_oneshot(&self.rsa_sig, &self.message)
            .expect("verify")
    }

    /// Seals one 16 KiB record in place with AES-128-GCM (fresh nonce each call).
    ///
    /// # Panics
    /// If BoringSSL fails (never in practice).
    pub fn seal_record(&mut self) -> [u8; 16] {
        self.nonce += 1;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.nonce.to_be_bytes());
        let mut tag = [0u8; 16];
        self.aead
            .seal_in_place_mut(&nonce, &mut self.record, &mut tag, b"\x17\x03\x03\x40\x11")
            .expect("seal");
        tag
    }

    /// Runs `op` once; the returned byte keeps the work observable.
    pub fn run(&mut self, op: Op) -> u8 {
        match op {
            Op::X25519 => self.x25519()[0],
            Op::EcdsaSign => self.ecdsa_sign()[0],
            Op::EcdsaVerify => u8::from(self.ecdsa_verify()),
            Op::RsaSign => self.rsa_sign()[0],
            Op::RsaVerify => u8::from(self.rsa_verify()),
            Op::Aes128GcmSeal16k => self.seal_record()[0],
        }
    }
}

impl Default for Crypto {
    fn default() -> Self {
        Crypto::new()
    }
}

/// Handshakes per CPU-second that the public-key work alone allows, from the
/// seconds each operation takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Floors {
    /// ECDSA P-256 server key, ECDSA P-256 client key, returning client (cache hit).
    pub ecdsa: f64,
    /// Same, client seen for the first time: one more ECDSA verification.
    pub ecdsa_first_time: f64,
    /// RSA-2048 server key, RSA-2048 client key, returning client.
    pub rsa: f64,
    /// Same, first-time client: one more RSA verification.
    pub rsa_first_time: f64,
}

impl Floors {
    /// `secs(op)` is the time one `op` takes, in seconds.
    pub fn from_costs(secs: impl Fn(Op) -> f64) -> Floors {
        let x = secs(Op::X25519);
        let (es, ev) = (secs(Op::EcdsaSign), secs(Op::EcdsaVerify));
        let (rs, rv) = (secs(Op::RsaSign), secs(Op::RsaVerify));
        Floors {
            ecdsa: 1.0 / (x + es + ev),
            ecdsa_first_time: 1.0 / (x + es + 2.0 * ev),
            rsa: 1.0 / (x + rs + rv),
            rsa_first_time: 1.0 / (x + rs + 2.0 * rv),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_runs_and_verifies() {
        let mut c = Crypto::new();
        for op in Op::ALL {
            c.run(op);
        }
        assert_eq!(c.run(Op::EcdsaVerify), 1);
        assert_eq!(c.run(Op::RsaVerify), 1);
        assert_ne!(c.x25519(), [0; 32]);
    }

    #[test]
    fn floors_add_costs() {
        let f = Floors::from_costs(|op| match op {
            Op::X25519 => 0.25,
            Op::EcdsaSign | Op::EcdsaVerify => 0.25,
            _ => 0.5,
        });
        assert_eq!(f.ecdsa, 1.0 / 0.75);
        assert_eq!(f.ecdsa_first_time, 1.0);
        assert_eq!(f.rsa, 1.0 / 1.25);
        assert_eq!(f.rsa_first_time, 1.0 / 1.75);
    }
}
