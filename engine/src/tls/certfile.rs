//! Certificate uploads and files → parsed material: PKCS#12/PFX, PEM (chain, optional key), DER/CER.
//!
//! Everything the certificate store keeps goes through [`parse`] (or
//! [`parse_with_key`] for a certificate and a separate key file): the result
//! is checked (the key matches the leaf) and described ([`CertMeta`]) before
//! anything is stored, so a wrong PFX password, a corrupt file or a foreign
//! key is an error and never a half-added certificate.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use boring::error::ErrorStack;
use boring::hash::MessageDigest;
use boring::pkcs12::Pkcs12;
use boring::pkey::{PKey, Private};
use boring::x509::{X509Ref, X509};
use foreign_types::ForeignTypeRef as _;

use crate::tls::certinfo::{digests, unix_time};
use crate::trust::thumbprint::{upper_hex, CertDigests};

/// Why an upload or a file is not a usable certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertFileError {
    /// Nothing to parse.
    #[error("the file is empty")]
    Empty,
    /// A PKCS#12 file whose MAC does not verify with the given password.
    #[error("wrong password for the PKCS#12/PFX file (or the file is corrupt)")]
    WrongPassword,
    /// A PKCS#12 file was given without a password.
    #[error("a PKCS#12/PFX file needs its password (X-Certificate-Password header, --password, or <id>.password)")]
    PasswordMissing,
    /// A PKCS#12 file that holds no certificate.
    #[error("the PKCS#12/PFX file holds no certificate")]
    NoCertificate,
    /// PEM text without a `CERTIFICATE` block, or a block that does not decode.
    #[error("not a certificate: {0}")]
    Corrupt(String),
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate {subject}")]
    KeyMismatch {
        /// The leaf's subject.
        subject: String,
    },
    /// A BoringSSL step failed on valid-looking input.
    #[error("cannot {what}: {source}")]
    Crypto {
        /// The step.
        what: &'static str,
        /// BoringSSL's error queue.
        source: ErrorStack,
    },
}

fn crypto(what: &'static str) -> impl FnOnce(ErrorStack) -> CertFileError {
    move |source| CertFileError::Crypto { what, source }
}

/// What the store shows about a certificate (the admin API's JSON fields).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CertMeta {
    /// RFC 4514 subject.
    pub subject: String,
    /// RFC 4514 issuer.
    pub issuer: String,
    /// SHA-1 of the DER, upper-case hex (the thumbprint).
    pub sha1: String,
    /// SHA-256 of the DER, upper-case hex.
    pub sha256: String,
    /// Serial number, upper-case hex.
    pub serial: String,
    /// Not-before, RFC 3339 UTC.
    pub not_before: String,
    /// Not-after, RFC 3339 UTC.
    pub not_after: String,
    /// Whether a private key is held.
    pub has_private_key: bool,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// Issued by itself (issuer = subject and its own key verifies the signature).
    pub self_signed: bool,
    /// Both digests as bytes.
    #[serde(skip)]
    pub digests: CertDigests,
}

/// A parsed, checked certificate with its chain and (optionally) its private key.
#[derive(Clone)]
pub struct CertMaterial {
    /// The leaf (or the CA certificate itself).
    pub cert: X509,
    /// Further certificates that came with it (intermediates), in file order.
    pub chain: Vec<X509>,
    /// The private key, when one was given; always matches `cert`.
    pub key: Option<PKey<Private>>,
    /// Its description.
    pub meta: CertMeta,
}

impl std::fmt::Debug for CertMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertMaterial")
            .field("meta", &self.meta)
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl CertMaterial {
    /// Leaf then chain, as PEM (what the store writes to `<id>.pem`).
    pub fn chain_pem(&self) -> Result<Vec<u8>, CertFileError> {
        let mut out = self.cert.to_pem().map_err(crypto("encode PEM"))?;
        for c in &self.chain {
            out.extend_from_slice(&c.to_pem().map_err(crypto("encode PEM"))?);
        }
        Ok(out)
    }

    /// The private key as PKCS#8 PEM, when held.
    pub fn key_pem(&self) -> Result<Option<Vec<u8>>, CertFileError> {
        self.key
            .as_ref()
            .map(|k| {
                k.private_key_to_pem_pkcs8()
                    .map_err(crypto("encode the private key"))
            })
            .transpose()
    }

    /// SHA-256 over the chain and the key's public half: equal for equal
    /// material, so a rescan can tell whether anything changed.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Vec::with_capacity(64 * (2 + self.chain.len()));
        h.extend_from_slice(&self.meta.digests.sha256);
        for c in &self.chain {
            if let Ok(d) = c.digest(MessageDigest::sha256()) {
                h.extend_from_slice(&d);
            }
        }
        h.push(u8::from(self.key.is_some()));
        let mut out = [0u8; 32];
        if let Ok(d) = boring::hash::hash(MessageDigest::sha256(), &h) {
            out.copy_from_slice(&d);
        }
        out
    }
}

/// Parses an upload or a file: PKCS#12 (needs `password`), PEM (certificates,
/// optional private key) or DER. Checks that a key matches the leaf.
pub fn parse(bytes: &[u8], password: Option<&str>) -> Result<CertMaterial, CertFileError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(CertFileError::Empty);
    }
    if is_pem(bytes) {
        return parse_pem(bytes, None);
    }
    // DER: a certificate, else a PKCS#12 file.
    if let Ok(cert) = X509::from_der(bytes) {
        return finish(cert, Vec::new(), None);
    }
    match Pkcs12::from_der(bytes) {
        Ok(p12) if looks_like_pkcs12(bytes) => {
            let password = password.ok_or(CertFileError::PasswordMissing)?;
            let parsed = p12.parse2(password).map_err(|e| {
                if e.to_string().to_ascii_uppercase().contains("PASSWORD") {
                    CertFileError::WrongPassword
                } else {
                    CertFileError::Corrupt(format!("unreadable PKCS#12/PFX file: {e}"))
                }
            })?;
            let cert = parsed.cert.ok_or(CertFileError::NoCertificate)?;
            let chain = parsed
                .ca
                .map(|s| s.into_iter().collect())
                .unwrap_or_default();
            finish(cert, chain, parsed.pkey)
        }
        _ => Err(CertFileError::Corrupt(
            "neither PEM, nor a DER certificate, nor a PKCS#12/PFX file".into(),
        )),
    }
}

/// A PFX is `SEQUENCE { version INTEGER (3), ... }`; BoringSSL's `d2i_PKCS12`
/// defers most checks to parsing, so look at the version before asking for a password.
fn looks_like_pkcs12(der: &[u8]) -> bool {
    let body = match der {
        [0x30, 0x80, rest @ ..] => rest,
        [0x30, len, rest @ ..] if *len < 0x80 => rest,
        [0x30, len, rest @ ..] if (0x81..=0x84).contains(len) => {
            rest.get(usize::from(len - 0x80)..).unwrap_or(&[])
        }
        _ => return false,
    };
    body.starts_with(&[0x02, 0x01, 0x03])
}

/// Parses a certificate file and, when given, a separate private key file (PEM or DER).
pub fn parse_with_key(
    cert: &[u8],
    key: Option<&[u8]>,
    password: Option<&str>,
) -> Result<CertMaterial, CertFileError> {
    let Some(key_bytes) = key else {
        return parse(cert, password);
    };
    let key = parse_key(key_bytes)?;
    if is_pem(cert) {
        return parse_pem(cert, Some(key));
    }
    let m = parse(cert, password)?;
    if m.key.is_some() {
        return Err(CertFileError::Corrupt(
            "a private key was given twice (inside the certificate file and separately)".into(),
        ));
    }
    finish(m.cert, m.chain, Some(key))
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn parse_key(bytes: &[u8]) -> Result<PKey<Private>, CertFileError> {
    let parsed = if is_pem(bytes) {
        PKey::private_key_from_pem(bytes)
    } else {
        PKey::private_key_from_der(bytes)
    };
    parsed.map_err(|e| CertFileError::Corrupt(format!("unreadable private key: {e}")))
}

fn parse_pem(bytes: &[u8], key: Option<PKey<Private>>) -> Result<CertMaterial, CertFileError> {
    let text = String::from_utf8_lossy(bytes);
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(CertFileError::Corrupt(
            "the PEM text holds no CERTIFICATE block".into(),
        ));
    }
    let mut certs = X509::stack_from_pem(bytes)
        .map_err(|e| CertFileError::Corrupt(format!("unreadable PEM certificate: {e}")))?
        .into_iter();
    let cert = certs
        .next()
        .ok_or_else(|| CertFileError::Corrupt("the PEM text holds no certificate".into()))?;
    let chain: Vec<X509> = certs.collect();
    let has_key_block = text.contains("PRIVATE KEY-----");
    let key = match (key, has_key_block) {
        (Some(_), true) => {
            return Err(CertFileError::Corrupt(
                "a private key was given twice (inside the certificate file and separately)".into(),
            ))
        }
        (Some(k), false) => Some(k),
        (None, true) => Some(parse_key(bytes)?),
        (None, false) => None,
    };
    finish(cert, chain, key)
}

fn finish(
    cert: X509,
    chain: Vec<X509>,
    key: Option<PKey<Private>>,
) -> Result<CertMaterial, CertFileError> {
    let meta = describe(&cert, key.is_some())?;
    if let Some(k) = &key {
        let public = cert
            .public_key()
            .map_err(crypto("read the certificate's public key"))?;
        if !public.public_eq(k) {
            return Err(CertFileError::KeyMismatch {
                subject: meta.subject,
            });
        }
    }
    Ok(CertMaterial {
        cert,
        chain,
        key,
        meta,
    })
}

fn rfc3339(unix: i64) -> String {
    let t = if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

fn name(n: &boring::x509::X509NameRef) -> String {
    n.print_ex(boring_sys::XN_FLAG_RFC2253).unwrap_or_default()
}

/// Describes a certificate: names, thumbprints, serial, validity, CA flags.
pub fn describe(cert: &X509Ref, has_private_key: bool) -> Result<CertMeta, CertFileError> {
    let d = digests(cert).map_err(crypto("hash the certificate"))?;
    let serial = cert
        .serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|s| s.to_ascii_uppercase()))
        .map_err(crypto("read the serial number"))?;
    // SAFETY: `cert` is a valid X509 for the duration of the call;
    // X509_check_ca only reads it (and caches its parsed extensions).
    let check_ca = unsafe { boring_sys::X509_check_ca(cert.as_ptr()) };
    let subject = name(cert.subject_name());
    let issuer = name(cert.issuer_name());
    // Not X509_check_issued: it also wants keyCertSign, which a self-signed
    // client certificate need not have.
    let self_signed = subject == issuer
        && cert
            .public_key()
            .and_then(|k| cert.verify(&k))
            .unwrap_or(false);
    Ok(CertMeta {
        subject,
        issuer,
        sha1: upper_hex(&d.sha1),
        sha256: upper_hex(&d.sha256),
        serial,
        not_before: rfc3339(unix_time(cert.not_before()).unwrap_or(0)),
        not_after: rfc3339(unix_time(cert.not_after()).unwrap_or(0)),
        has_private_key,
        is_ca: check_ca == 1,
        self_signed,
        digests: d,
    })
}

/// The thumbprint lines `certgate thumbprint` prints.
pub fn thumbprint_report(meta: &CertMeta) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "subject:          {}\n\
         SHA-1 (hex):      {}\n\
         SHA-256 (hex):    {}\n\
         x5t:              {}\n\
         x5t#S256:         {}\n",
        meta.subject,
        meta.sha1,
        meta.sha256,
        b64(&meta.digests.sha1),
        b64(&meta.digests.sha256),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pki::{self, CertSpec, Issued, Usage};

    fn ca_and_leaf() -> (Issued, Issued) {
        let ca = pki::self_signed(&CertSpec::new("certfile test CA", Usage::Ca)).unwrap();
        let leaf = pki::issue(&CertSpec::new("certfile leaf", Usage::Client), &ca).unwrap();
        (ca, leaf)
    }

    fn pfx(leaf: &Issued, ca: &Issued, password: &str) -> Vec<u8> {
        let mut chain = boring::stack::Stack::new().unwrap();
        chain.push(ca.cert.clone()).unwrap();
        let mut b = Pkcs12::builder();
        b.ca(chain);
        b.build(password, "leaf", &leaf.key, &leaf.cert)
            .unwrap()
            .to_der()
            .unwrap()
    }

    #[test]
    fn pfx_with_the_right_password_gives_cert_chain_and_key() {
        let (ca, leaf) = ca_and_leaf();
        let m = parse(&pfx(&leaf, &ca, "s3cret"), Some("s3cret")).unwrap();
        assert_eq!(m.cert.to_der().unwrap(), leaf.cert.to_der().unwrap());
        assert_eq!(m.chain.len(), 1);
        assert!(m.meta.has_private_key);
        assert!(
            m.meta.subject.contains("CN=certfile leaf"),
            "{}",
            m.meta.subject
        );
        assert!(m.meta.issuer.contains("CN=certfile test CA"));
        assert!(!m.meta.is_ca);
        assert!(!m.meta.self_signed);
    }

    #[test]
    fn pfx_with_a_wrong_or_missing_password_is_refused() {
        let (ca, leaf) = ca_and_leaf();
        let der = pfx(&leaf, &ca, "s3cret");
        let e = parse(&der, Some("wrong")).unwrap_err();
        assert!(matches!(e, CertFileError::WrongPassword), "{e:?}");
        assert!(e.to_string().contains("wrong password"));
        let e = parse(&der, None).unwrap_err();
        assert!(matches!(e, CertFileError::PasswordMissing), "{e:?}");
    }

    #[test]
    fn pem_with_and_without_key() {
        let (ca, leaf) = ca_and_leaf();
        let public = parse(&leaf.cert_pem(), None).unwrap();
        assert!(!public.meta.has_private_key && public.key.is_none());
        let mut both = leaf.cert_pem();
        both.extend_from_slice(&ca.cert_pem());
        both.extend_from_slice(&leaf.key_pem());
        let m = parse(&both, None).unwrap();
        assert!(m.meta.has_private_key);
        assert_eq!(m.chain.len(), 1);
        let sep = parse_with_key(&leaf.cert_pem(), Some(&leaf.key_pem()), None).unwrap();
        assert!(sep.meta.has_private_key);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (ca, leaf) = ca_and_leaf();
        let mut pem = leaf.cert_pem();
        pem.extend_from_slice(&ca.key_pem());
        let e = parse(&pem, None).unwrap_err();
        assert!(matches!(e, CertFileError::KeyMismatch { .. }), "{e:?}");
        assert!(e.to_string().contains("CN=certfile leaf"), "{e}");
        let e = parse_with_key(&leaf.cert_pem(), Some(&ca.key_pem()), None).unwrap_err();
        assert!(matches!(e, CertFileError::KeyMismatch { .. }), "{e:?}");
    }

    #[test]
    fn corrupt_and_empty_inputs_are_refused() {
        let (_, leaf) = ca_and_leaf();
        assert!(matches!(parse(b"", None), Err(CertFileError::Empty)));
        assert!(matches!(
            parse(b"hello world", None),
            Err(CertFileError::Corrupt(_))
        ));
        let mut pem = leaf.cert_pem();
        let mid = pem.len() / 2;
        pem[mid] = b'!';
        assert!(matches!(parse(&pem, None), Err(CertFileError::Corrupt(_))));
        let der = leaf.cert.to_der().unwrap();
        assert!(matches!(
            parse(&der[..der.len() - 10], None),
            Err(CertFileError::Corrupt(_))
        ));
    }

    #[test]
    fn der_certificate_and_metadata_match_independent_digests() {
        let (ca, leaf) = ca_and_leaf();
        let der = leaf.cert.to_der().unwrap();
        let m = parse(&der, None).unwrap();
        let sha1 = boring::hash::hash(MessageDigest::sha1(), &der).unwrap();
        let sha256 = boring::hash::hash(MessageDigest::sha256(), &der).unwrap();
        assert_eq!(m.meta.sha1, hex::encode_upper(sha1));
        assert_eq!(m.meta.sha256, hex::encode_upper(sha256));
        assert!(m.meta.not_before.ends_with('Z') && m.meta.not_after > m.meta.not_before);
        let c = parse(&ca.cert_pem(), None).unwrap();
        assert!(c.meta.is_ca && c.meta.self_signed);
        let report = thumbprint_report(&m.meta);
        let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1);
        assert!(report.contains(&x5t), "{report}");
    }

    #[test]
    fn fingerprint_tells_material_apart() {
        let (ca, leaf) = ca_and_leaf();
        let a = parse(&leaf.cert_pem(), None).unwrap();
        let b = parse(&leaf.cert_pem(), None).unwrap();
        let c = parse(&ca.cert_pem(), None).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
