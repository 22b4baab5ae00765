//! CRLs on BoringSSL: parse (PEM or DER), check the signature against the issuer's
//! certificate, turn the entries into revocation-index keys; read a certificate's CRL
//! distribution points; and [`CrlBuilder`], which makes signed CRLs for tests and benches.
//!
//! Parsing uses `x509-parser` (zero-copy over the DER); the signature is checked here with
//! BoringSSL over the raw tbsCertList bytes. Accepted signature algorithms: ECDSA with
//! SHA-256/384/512 and RSA PKCS#1 v1.5 with SHA-256/384/512; anything else is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use boring::error::ErrorStack;
use boring::hash::MessageDigest;
use boring::pkey::{Id, PKey, PKeyRef, Private, Public};
use boring::sign::{Signer, Verifier};
use boring::x509::X509Ref;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    Oid, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512,
    OID_X509_EXT_DELTA_CRL_INDICATOR,
};

use crate::tls::pki::Issued;
use crate::trust::revocation::{
    normalize_serial, IndexBuilder, IssuerCrl, IssuerKey, SerialHasher,
};

/// Why a CRL was refused. Every message names the CRL's source.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// Neither a DER CRL nor a PEM `X509 CRL` block, or trailing bytes after it.
    #[error("{source_name}: malformed CRL: {reason}")]
    Malformed {
        /// File path or URL.
        source_name: String,
        /// What the parser said.
        reason: String,
    },
    /// The CRL's issuer is not a certificate of the trust bundle.
    #[error("{source_name}: CRL issuer {issuer:?} is not in the trusted CA bundle")]
    UnknownIssuer {
        /// File path or URL.
        source_name: String,
        /// The CRL's issuer name.
        issuer: String,
    },
    /// The signature algorithm is not one certgate verifies.
    #[error("{source_name}: unsupported CRL signature algorithm {oid} (ECDSA or RSA PKCS#1 v1.5 with SHA-256/384/512 only)")]
    UnsupportedAlgorithm {
        /// File path or URL.
        source_name: String,
        /// The algorithm's OID.
        oid: String,
    },
    /// The signature does not verify with any certificate of the issuer's name.
    #[error("{source_name}: CRL signature of issuer {issuer:?} does not verify: {reason}")]
    BadSignature {
        /// File path or URL.
        source_name: String,
        /// The CRL's issuer name.
        issuer: String,
        /// Which check failed.
        reason: String,
    },
    /// A CRL kind certgate does not handle (delta CRL, indirect CRL, unknown critical extension).
    #[error("{source_name}: unsupported CRL: {reason}")]
    Unsupported {
        /// File path or URL.
        source_name: String,
        /// What is unsupported.
        reason: String,
    },
    /// A BoringSSL operation failed.
    #[error("cannot {what}: {source}")]
    Crypto {
        /// The step that failed.
        what: &'static str,
        /// BoringSSL's error queue.
        source: ErrorStack,
    },
}

fn crypto(what: &'static str) -> impl FnOnce(ErrorStack) -> CrlError {
    move |source| CrlError::Crypto { what, source }
}

// === impl IssuerKey (BoringSSL constructors) ===

impl IssuerKey {
    /// The key of the X.509 Name whose DER encoding is `der`.
    pub fn from_name_der(der: &[u8]) -> IssuerKey {
        IssuerKey(boring::sha::sha256(der))
    }

    /// The key of `cert`'s subject (for a CA: the issuer it stands for).
    pub fn from_subject(cert: &X509Ref) -> Result<IssuerKey, CrlError> {
        let der = cert
            .subject_name()
            .to_der()
            .map_err(crypto("encode a subject name"))?;
        Ok(IssuerKey::from_name_der(&der))
    }

    /// The key of `cert`'s issuer (for a leaf: whose CRL lists it).
    pub fn from_issuer(cert: &X509Ref) -> Result<IssuerKey, CrlError> {
        let der = cert
            .issuer_name()
            .to_der()
            .map_err(crypto("encode an issuer name"))?;
        Ok(IssuerKey::from_name_der(&der))
    }
}

/// The issuer key and normalised serial under which `leaf` is looked up in the index.
pub fn leaf_revocation_id(leaf: &X509Ref) -> Result<(IssuerKey, Vec<u8>), CrlError> {
    let issuer = IssuerKey::from_issuer(leaf)?;
    let serial = leaf
        .serial_number()
        .to_bn()
        .map_err(crypto("read a serial number"))?
        .to_vec();
    Ok((issuer, normalize_serial(&serial).to_vec()))
}

/// `leaf`'s revocation status in `index` at `now` (issuer key and serial derived as in
/// [`leaf_revocation_id`]).
pub fn leaf_status(
    index: &crate::trust::RevocationIndex,
    leaf: &X509Ref,
    now: SystemTime,
) -> Result<crate::trust::RevocationStatus, CrlError> {
    let (issuer, serial) = leaf_revocation_id(leaf)?;
    Ok(index.status(&issuer, &serial, now))
}

/// The magnitude of a DER INTEGER's content octets, for the index (see
/// [`normalize_serial`]). A negative serial (forbidden by RFC 5280, issued by some old
/// CAs) maps to its absolute value, as BoringSSL reads a certificate's serial.
pub fn serial_magnitude(content: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if content.first().is_some_and(|b| b & 0x80 != 0) {
        // Two's complement: |x| = !x + 1.
        let mut mag: Vec<u8> = content.iter().map(|b| !b).collect();
        for b in mag.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
        return std::borrow::Cow::Owned(normalize_serial(&mag).to_vec());
    }
    std::borrow::Cow::Borrowed(normalize_serial(content))
}

// === impl IssuerCerts ===

/// One CA certificate able to sign CRLs for its subject.
#[derive(Clone)]
struct CrlSigner {
    public_key: PKey<Public>,
    /// False when the certificate has a keyUsage extension without cRLSign.
    may_sign_crls: bool,
}

/// The CA certificates CRLs are checked against, by subject ([`IssuerKey`]).
#[derive(Clone, Default)]
pub struct IssuerCerts {
    by_subject: HashMap<IssuerKey, Vec<CrlSigner>>,
    names: HashMap<IssuerKey, String>,
}

impl std::fmt::Debug for IssuerCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerCerts")
            .field("issuers", &self.names.values().collect::<Vec<_>>())
            .finish()
    }
}

impl IssuerCerts {
    /// Indexes `certs` (the trusted roots and intermediates) by subject.
    pub fn new<'a>(certs: impl IntoIterator<Item = &'a X509Ref>) -> Result<Self, CrlError> {
        let mut out = IssuerCerts::default();
        for cert in certs {
            let key = IssuerKey::from_subject(cert)?;
            let public_key = cert
                .public_key()
                .map_err(crypto("read a CA certificate's public key"))?;
            let der = cert.to_der().map_err(crypto("encode a CA certificate"))?;
            let may_sign_crls = match x509_parser::parse_x509_certificate(&der) {
                Ok((_, parsed)) => match parsed.key_usage() {
                    Ok(Some(ku)) => ku.value.crl_sign(),
                    Ok(None) => true,
                    Err(_) => false,
                },
                Err(_) => false,
            };
            out.names
                .entry(key)
                .or_insert_with(|| readable_name(cert.subject_name()));
            out.by_subject.entry(key).or_default().push(CrlSigner {
                public_key,
                may_sign_crls,
            });
        }
        Ok(out)
    }

    /// Number of distinct issuer names.
    pub fn len(&self) -> usize {
        self.by_subject.len()
    }

    /// True when no CA certificate is known.
    pub fn is_empty(&self) -> bool {
        self.by_subject.is_empty()
    }

    /// Whether a CA with this subject is known.
    pub fn contains(&self, issuer: &IssuerKey) -> bool {
        self.by_subject.contains_key(issuer)
    }

    /// The readable subject of a known CA.
    pub fn name(&self, issuer: &IssuerKey) -> Option<&str> {
        self.names.get(issuer).map(String::as_str)
    }
}

fn readable_name(name: &boring::x509::X509NameRef) -> String {
    use x509_parser::prelude::FromDer as _;
    let Ok(der) = name.to_der() else {
        return String::from("(unencodable name)");
    };
    match x509_parser::x509::X509Name::from_der(&der) {
        Ok((_, parsed)) => parsed.to_string(),
        Err(_) => hex::encode(&der),
    }
}

// === parse and verify ===

/// A CRL whose signature verified, reduced to what the index needs.
#[derive(Clone, Debug)]
pub struct VerifiedCrl {
    /// Where it came from (file path or URL).
    pub source: String,
    /// Its issuer.
    pub issuer: IssuerKey,
    /// Its issuer, readable.
    pub issuer_name: String,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate, if given.
    pub next_update: Option<SystemTime>,
    /// The cRLNumber extension as big-endian magnitude bytes, if present.
    pub crl_number: Option<Vec<u8>>,
    /// One index key per revoked entry (see [`SerialHasher::key`]).
    pub keys: Arc<[u128]>,
}

impl VerifiedCrl {
    /// Puts this CRL's entries and description into an index being built.
    pub fn add_to(&self, builder: &mut IndexBuilder) {
        builder.add(
            self.issuer,
            IssuerCrl {
                issuer_name: self.issuer_name.clone(),
                source: self.source.clone(),
                this_update: self.this_update,
                next_update: self.next_update,
                entries: self.keys.len(),
            },
            Arc::clone(&self.keys),
        );
    }

    /// Whether `self` is older than `other` (same issuer): by cRLNumber when both carry
    /// one, else by thisUpdate. Equal CRLs are not older.
    pub fn is_older_than(&self, other: &VerifiedCrl) -> bool {
        if let (Some(a), Some(b)) = (&self.crl_number, &other.crl_number) {
            let a = normalize_serial(a);
            let b = normalize_serial(b);
            if a.len() != b.len() || a != b {
                return (a.len(), a) < (b.len(), b);
            }
        }
        self.this_update < other.this_update
    }
}

fn der_of<'a>(bytes: &'a [u8], source: &str) -> Result<std::borrow::Cow<'a, [u8]>, CrlError> {
    let malformed = |reason: String| CrlError::Malformed {
        source_name: source.to_owned(),
        reason,
    };
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(trimmed)
            .map_err(|e| malformed(format!("bad PEM: {e}")))?;
        if pem.label != "X509 CRL" {
            return Err(malformed(format!(
                "PEM block is {:?}, expected \"X509 CRL\"",
                pem.label
            )));
        }
        return Ok(std::borrow::Cow::Owned(pem.contents));
    }
    Ok(std::borrow::Cow::Borrowed(bytes))
}

fn signature_digest(oid: &Oid<'_>) -> Option<(Id, MessageDigest)> {
    Some(if *oid == OID_SIG_ECDSA_WITH_SHA256 {
        (Id::EC, MessageDigest::sha256())
    } else if *oid == OID_SIG_ECDSA_WITH_SHA384 {
        (Id::EC, MessageDigest::sha384())
    } else if *oid == OID_SIG_ECDSA_WITH_SHA512 {
        (Id::EC, MessageDigest::sha512())
    } else if *oid == OID_PKCS1_SHA256WITHRSA {
        (Id::RSA, MessageDigest::sha256())
    } else if *oid == OID_PKCS1_SHA384WITHRSA {
        (Id::RSA, MessageDigest::sha384())
    } else if *oid == OID_PKCS1_SHA512WITHRSA {
        (Id::RSA, MessageDigest::sha512())
    } else {
        return None;
    })
}

fn system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

/// Parses a CRL (PEM or DER, detected), checks its signature against its issuer's
/// certificate in `issuers`, and turns its entries into index keys with `hasher`.
/// `source` names the file or URL in errors.
pub fn verify_crl(
    bytes: &[u8],
    source: &str,
    issuers: &IssuerCerts,
    hasher: &SerialHasher,
) -> Result<VerifiedCrl, CrlError> {
    let der = der_of(bytes, source)?;
    let malformed = |reason: String| CrlError::Malformed {
        source_name: source.to_owned(),
        reason,
    };
    let unsupported = |reason: String| CrlError::Unsupported {
        source_name: source.to_owned(),
        reason,
    };
    let (rest, crl) =
        x509_parser::parse_x509_crl(&der).map_err(|e| malformed(format!("bad DER: {e}")))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{} trailing bytes after the CRL",
            rest.len()
        )));
    }
    let tbs = &crl.tbs_cert_list;
    let issuer_name = tbs.issuer.to_string();

    for ext in tbs.extensions() {
        if ext.oid == OID_X509_EXT_DELTA_CRL_INDICATOR {
            return Err(unsupported("delta CRLs are not supported".into()));
        }
        match ext.parsed_extension() {
            ParsedExtension::IssuingDistributionPoint(idp) if idp.indirect_crl => {
                return Err(unsupported("indirect CRLs are not supported".into()));
            }
            ParsedExtension::IssuingDistributionPoint(idp)
                if idp.only_contains_ca_certs || idp.only_contains_attribute_certs =>
            {
                return Err(unsupported(
                    "the CRL covers only CA or attribute certificates".into(),
                ));
            }
            p if ext.critical && p.unsupported() => {
                return Err(unsupported(format!(
                    "unknown critical extension {}",
                    ext.oid
                )));
            }
            _ => {}
        }
    }

    // Signature: outer and inner algorithm must agree (RFC 5280 5.1.1.2).
    let oid = &crl.signature_algorithm.algorithm;
    if tbs.signature.algorithm != *oid {
        return Err(malformed(format!(
            "signatureAlgorithm {oid} differs from tbsCertList.signature {}",
            tbs.signature.algorithm
        )));
    }
    let (key_type, digest) =
        signature_digest(oid).ok_or_else(|| CrlError::UnsupportedAlgorithm {
            source_name: source.to_owned(),
            oid: oid.to_id_string(),
        })?;
    let issuer = IssuerKey::from_name_der(tbs.issuer.as_raw());
    let signers = issuers
        .by_subject
        .get(&issuer)
        .ok_or_else(|| CrlError::UnknownIssuer {
            source_name: source.to_owned(),
            issuer: issuer_name.clone(),
        })?;
    let bad = |reason: String| CrlError::BadSignature {
        source_name: source.to_owned(),
        issuer: issuer_name.clone(),
        reason,
    };
    if crl.signature_value.unused_bits != 0 {
        return Err(bad("signature BIT STRING has unused bits".into()));
    }
    let mut reason = String::from("no CA certificate with this subject");
    let mut verified = false;
    for signer in signers {
        if !signer.may_sign_crls {
            reason = "the CA certificate's keyUsage lacks cRLSign".into();
            continue;
        }
        if signer.public_key.id() != key_type {
            reason = format!(
                "algorithm {oid} does not match the CA's {:?} key",
                signer.public_key.id()
            );
            continue;
        }
        match verify_signature(
            &signer.public_key,
            digest,
            &crl.signature_value.data,
            tbs.as_ref(),
        ) {
            Ok(true) => {
                verified = true;
                break;
            }
            Ok(false) | Err(_) => reason = "signature mismatch (signed by another key?)".into(),
        }
    }
    if !verified {
        return Err(bad(reason));
    }

    let mut keys = Vec::with_capacity(tbs.revoked_certificates.len());
    for entry in crl.iter_revoked_certificates() {
        if let Some(ext) = entry.extensions().iter().find(|e| e.critical) {
            return Err(unsupported(format!(
                "critical CRL entry extension {} (indirect CRL?)",
                ext.oid
            )));
        }
        keys.push(hasher.key(&issuer, &serial_magnitude(entry.raw_serial())));
    }
    let crl_number = crl.crl_number().map(|n| n.to_bytes_be());
    Ok(VerifiedCrl {
        source: source.to_owned(),
        issuer,
        issuer_name,
        this_update: system_time(tbs.this_update.timestamp()),
        next_update: tbs.next_update.map(|t| system_time(t.timestamp())),
        crl_number,
        keys: keys.into(),
    })
}

fn verify_signature(
    key: &PKeyRef<Public>,
    digest: MessageDigest,
    signature: &[u8],
    tbs: &[u8],
) -> Result<bool, ErrorStack> {
    let mut verifier = Verifier::new(digest, key)?;
    verifier.update(tbs)?;
    verifier.verify(signature)
}

// === CRL distribution points ===

/// The `http://` URIs of `cert`'s CRL distribution points extension (others, such as
/// `ldap://` or `https://`, are left out). Empty when there is none or it does not parse.
pub fn crl_distribution_points(cert: &X509Ref) -> Vec<String> {
    let Ok(der) = cert.to_der() else {
        return Vec::new();
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(&der) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for ext in parsed.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        for point in points.iter() {
            let Some(DistributionPointName::FullName(names)) = &point.distribution_point else {
                continue;
            };
            for name in names {
                if let GeneralName::URI(uri) = name {
                    let is_http = uri
                        .get(..7)
                        .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
                    if is_http && !urls.iter().any(|u| u == uri) {
                        urls.push((*uri).to_owned());
                    }
                }
            }
        }
    }
    urls
}

// === impl CrlBuilder ===

/// The hash of a CRL's signature made by [`CrlBuilder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlDigest {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// Makes a signed X.509 v2 CRL (for tests and benchmarks).
pub struct CrlBuilder {
    issuer_name_der: Vec<u8>,
    key: PKey<Private>,
    this_update: SystemTime,
    next_update: Option<SystemTime>,
    crl_number: Option<u64>,
    digest: CrlDigest,
    revoked: Vec<Vec<u8>>,
}

impl CrlBuilder {
    /// A CRL of `issuer` (its subject becomes the CRL issuer, its key signs) with no
    /// entries, thisUpdate a minute ago and nextUpdate in a day, no cRLNumber, SHA-256.
    pub fn new(issuer: &Issued) -> Result<CrlBuilder, CrlError> {
        let now = SystemTime::now();
        Ok(CrlBuilder {
            issuer_name_der: issuer
                .cert
                .subject_name()
                .to_der()
                .map_err(crypto("encode the CRL issuer name"))?,
            key: issuer.key.clone(),
            this_update: now - Duration::from_secs(60),
            next_update: Some(now + Duration::from_secs(86_400)),
            crl_number: None,
            digest: CrlDigest::Sha256,
            revoked: Vec::new(),
        })
    }

    /// Signs with `key` instead of the issuer's own (to make CRLs that must not verify).
    pub fn signing_key(mut self, key: &PKey<Private>) -> Self {
        self.key = key.clone();
        self
    }

    /// Sets thisUpdate (also the entries' revocationDate).
    pub fn this_update(mut self, t: SystemTime) -> Self {
        self.this_update = t;
        self
    }

    /// Sets nextUpdate (`None` leaves it out).
    pub fn next_update(mut self, t: Option<SystemTime>) -> Self {
        self.next_update = t;
        self
    }

    /// Adds a cRLNumber extension.
    pub fn crl_number(mut self, n: u64) -> Self {
        self.crl_number = Some(n);
        self
    }

    /// The signature's hash.
    pub fn digest(mut self, d: CrlDigest) -> Self {
        self.digest = d;
        self
    }

    /// Revokes the certificate with this serial (big-endian magnitude bytes).
    pub fn revoke(mut self, serial: &[u8]) -> Self {
        self.revoked.push(serial.to_vec());
        self
    }

    /// Revokes every serial of `serials`.
    pub fn revoke_all(mut self, serials: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.revoked.extend(serials);
        self
    }

    /// Revokes `cert`.
    pub fn revoke_cert(self, cert: &X509Ref) -> Result<Self, CrlError> {
        let serial = cert
            .serial_number()
            .to_bn()
            .map_err(crypto("read a serial number"))?
            .to_vec();
        Ok(self.revoke(&serial))
    }

    /// The signed CRL, DER.
    pub fn to_der(&self) -> Result<Vec<u8>, CrlError> {
        let alg = algorithm_identifier(self.key.id(), self.digest)?;
        let mut tbs = Vec::with_capacity(64 + self.revoked.len() * 40);
        der::integer(&mut tbs, &[1]); // v2
        tbs.extend_from_slice(&alg);
        tbs.extend_from_slice(&self.issuer_name_der);
        der::time(&mut tbs, self.this_update);
        if let Some(next) = self.next_update {
            der::time(&mut tbs, next);
        }
        if !self.revoked.is_empty() {
            let mut date = Vec::new();
            der::time(&mut date, self.this_update);
            let mut entries = Vec::with_capacity(self.revoked.len() * (date.len() + 26));
            let mut entry = Vec::with_capacity(64);
            for serial in &self.revoked {
                entry.clear();
                der::integer(&mut entry, serial);
                entry.extend_from_slice(&date);
                der::tlv(&mut entries, der::SEQUENCE, &entry);
            }
            der::tlv(&mut tbs, der::SEQUENCE, &entries);
        }
        if let Some(n) = self.crl_number {
            // [0] EXPLICIT Extensions { Extension { cRLNumber, OCTET STRING { INTEGER } } }
            let mut number = Vec::new();
            der::integer(&mut number, &n.to_be_bytes());
            let mut ext = Vec::new();
            ext.extend_from_slice(&[0x06, 0x03, 0x55, 0x1d, 0x14]);
            der::tlv(&mut ext, der::OCTET_STRING, &number);
            let mut one = Vec::new();
            der::tlv(&mut one, der::SEQUENCE, &ext);
            let mut list = Vec::new();
            der::tlv(&mut list, der::SEQUENCE, &one);
            der::tlv(&mut tbs, 0xa0, &list);
        }
        let mut tbs_seq = Vec::with_capacity(tbs.len() + 8);
        der::tlv(&mut tbs_seq, der::SEQUENCE, &tbs);
        drop(tbs);

        let md = match self.digest {
            CrlDigest::Sha256 => MessageDigest::sha256(),
            CrlDigest::Sha384 => MessageDigest::sha384(),
            CrlDigest::Sha512 => MessageDigest::sha512(),
        };
        let mut signer = Signer::new(md, &self.key).map_err(crypto("start signing a CRL"))?;
        signer
            .update(&tbs_seq)
            .map_err(crypto("hash a CRL for signing"))?;
        let signature = signer.sign_to_vec().map_err(crypto("sign a CRL"))?;
        let mut bits = Vec::with_capacity(signature.len() + 1);
        bits.push(0); // no unused bits
        bits.extend_from_slice(&signature);

        let mut body = tbs_seq;
        body.extend_from_slice(&alg);
        der::tlv(&mut body, der::BIT_STRING, &bits);
        let mut out = Vec::with_capacity(body.len() + 8);
        der::tlv(&mut out, der::SEQUENCE, &body);
        Ok(out)
    }

    /// The signed CRL, PEM (`BEGIN X509 CRL`).
    pub fn to_pem(&self) -> Result<Vec<u8>, CrlError> {
        use base64::Engine as _;
        let der = self.to_der()?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = Vec::with_capacity(b64.len() + b64.len() / 64 + 64);
        out.extend_from_slice(b"-----BEGIN X509 CRL-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END X509 CRL-----\n");
        Ok(out)
    }
}

fn algorithm_identifier(key: Id, digest: CrlDigest) -> Result<Vec<u8>, CrlError> {
    let last = match digest {
        CrlDigest::Sha256 => 0,
        CrlDigest::Sha384 => 1,
        CrlDigest::Sha512 => 2,
    };
    let mut alg = Vec::new();
    if key == Id::EC {
        // ecdsa-with-SHA256/384/512: 1.2.840.10045.4.3.{2,3,4}, no parameters.
        let oid = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 + last];
        let mut inner = Vec::new();
        der::tlv(&mut inner, der::OID, &oid);
        der::tlv(&mut alg, der::SEQUENCE, &inner);
    } else if key == Id::RSA {
        // sha{256,384,512}WithRSAEncryption: 1.2.840.113549.1.1.{11,12,13}, NULL parameters.
        let oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b + last];
        let mut inner = Vec::new();
        der::tlv(&mut inner, der::OID, &oid);
        inner.extend_from_slice(&[0x05, 0x00]);
        der::tlv(&mut alg, der::SEQUENCE, &inner);
    } else {
        return Err(CrlError::UnsupportedAlgorithm {
            source_name: "CrlBuilder".into(),
            oid: format!("{key:?} key"),
        });
    }
    Ok(alg)
}

/// The few DER encodings [`CrlBuilder`] needs.
mod der {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub const SEQUENCE: u8 = 0x30;
    pub const OCTET_STRING: u8 = 0x04;
    pub const BIT_STRING: u8 = 0x03;
    pub const OID: u8 = 0x06;
    const INTEGER: u8 = 0x02;
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;

    pub fn tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
        out.push(tag);
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
    }

    /// A non-negative INTEGER from big-endian magnitude bytes.
    pub fn integer(out: &mut Vec<u8>, magnitude: &[u8]) {
        let start = magnitude
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(magnitude.len());
        let m = &magnitude[start..];
        let mut content = Vec::with_capacity(m.len() + 1);
        if m.first().is_none_or(|b| b & 0x80 != 0) {
            content.push(0);
        }
        content.extend_from_slice(m);
        tlv(out, INTEGER, &content);
    }

    /// UTCTime for 1950..2049, GeneralizedTime otherwise (RFC 5280 5.1.2.4).
    pub fn time(out: &mut Vec<u8>, t: SystemTime) {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
        if (1950..2050).contains(&y) {
            let s = format!("{:02}{m:02}{d:02}{hh:02}{mm:02}{ss:02}Z", y % 100);
            tlv(out, UTC_TIME, s.as_bytes());
        } else {
            let s = format!("{y:04}{m:02}{d:02}{hh:02}{mm:02}{ss:02}Z");
            tlv(out, GENERALIZED_TIME, s.as_bytes());
        }
    }

    /// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (if m <= 2 { y + 1 } else { y }, m, d)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::Duration;

        #[test]
        fn dates_and_lengths() {
            assert_eq!(civil_from_days(0), (1970, 1, 1));
            assert_eq!(civil_from_days(19_723), (2024, 1, 1));
            assert_eq!(civil_from_days(11_016), (2000, 2, 29));
            let mut out = Vec::new();
            time(
                &mut out,
                UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661),
            );
            assert_eq!(&out[2..], b"000229010101Z");
            out.clear();
            time(&mut out, UNIX_EPOCH + Duration::from_secs(2_524_608_000)); // 2050-01-01
            assert_eq!(out[0], GENERALIZED_TIME);
            assert_eq!(&out[2..], b"20500101000000Z");
            out.clear();
            tlv(&mut out, SEQUENCE, &[0u8; 300]);
            assert_eq!(&out[..4], &[0x30, 0x82, 0x01, 0x2c]);
            out.clear();
            integer(&mut out, &[0x00, 0x80]);
            assert_eq!(out, [0x02, 0x02, 0x00, 0x80]);
            out.clear();
            integer(&mut out, &[]);
            assert_eq!(out, [0x02, 0x01, 0x00]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pki::{issue, self_signed, CertSpec, KeyKind, Usage};
    use crate::trust::revocation::RevocationIndex;

    fn ca(name: &str) -> Issued {
        self_signed(&CertSpec::new(name, Usage::Ca)).unwrap()
    }

    fn client(ca: &Issued, serial: Option<Vec<u8>>) -> Issued {
        let spec = CertSpec {
            serial,
            ..CertSpec::new("alice", Usage::Client)
        };
        issue(&spec, ca).unwrap()
    }

    fn index_of(crl: &VerifiedCrl, hasher: SerialHasher) -> RevocationIndex {
        let mut b = IndexBuilder::new(hasher, Duration::from_secs(3600), Arc::default());
        crl.add_to(&mut b);
        b.build()
    }

    fn revoked(index: &RevocationIndex, cert: &X509Ref) -> bool {
        let (issuer, serial) = leaf_revocation_id(cert).unwrap();
        let listed = index.is_revoked(&issuer, &serial);
        let status = leaf_status(index, cert, SystemTime::now()).unwrap();
        assert_eq!(listed, status == crate::trust::RevocationStatus::Revoked);
        listed
    }

    #[test]
    fn pem_and_der_parse_verify_and_index() {
        let root = ca("Root A");
        let bad = client(&root, None);
        let good = client(&root, None);
        let next = SystemTime::now() + Duration::from_secs(7200);
        let builder = CrlBuilder::new(&root)
            .unwrap()
            .next_update(Some(next))
            .crl_number(7)
            .revoke_cert(&bad.cert)
            .unwrap()
            .revoke(&[0x12, 0x34]);
        let issuers = IssuerCerts::new([&*root.cert]).unwrap();
        let hasher = SerialHasher::new();
        for (label, bytes) in [
            ("der", builder.to_der().unwrap()),
            ("pem", builder.to_pem().unwrap()),
        ] {
            let crl = verify_crl(&bytes, label, &issuers, &hasher).unwrap();
            assert_eq!(crl.issuer, IssuerKey::from_subject(&root.cert).unwrap());
            assert_eq!(crl.issuer_name, "CN=Root A");
            assert_eq!(crl.keys.len(), 2, "{label}");
            assert_eq!(crl.crl_number.as_deref(), Some(&[7u8][..]));
            let next_secs = next.duration_since(UNIX_EPOCH).unwrap().as_secs();
            assert_eq!(
                crl.next_update
                    .unwrap()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
                next_secs
            );
            let index = index_of(&crl, hasher.clone());
            assert!(revoked(&index, &bad.cert), "{label}");
            assert!(!revoked(&index, &good.cert), "{label}");
            assert!(index.is_revoked(&crl.issuer, &[0x12, 0x34]));
        }
    }

    #[test]
    fn rsa_and_longer_digests_verify() {
        let spec = CertSpec {
            key: KeyKind::Rsa2048,
            ..CertSpec::new("RSA Root", Usage::Ca)
        };
        let rsa_root = self_signed(&spec).unwrap();
        let ec_root = ca("EC Root");
        let issuers = IssuerCerts::new([&*rsa_root.cert, &*ec_root.cert]).unwrap();
        let hasher = SerialHasher::new();
        for root in [&rsa_root, &ec_root] {
            for digest in [CrlDigest::Sha256, CrlDigest::Sha384, CrlDigest::Sha512] {
                let der = CrlBuilder::new(root)
                    .unwrap()
                    .digest(digest)
                    .revoke(&[5])
                    .to_der()
                    .unwrap();
                let crl = verify_crl(&der, "x.crl", &issuers, &hasher)
                    .unwrap_or_else(|e| panic!("{digest:?}: {e}"));
                assert_eq!(crl.keys.len(), 1);
            }
        }
    }

    #[test]
    fn signed_by_another_key_is_refused() {
        let root = ca("Root A");
        let impostor = ca("Root A"); // same name, other key
        let issuers = IssuerCerts::new([&*root.cert]).unwrap();
        let der = CrlBuilder::new(&root)
            .unwrap()
            .signing_key(&impostor.key)
            .to_der()
            .unwrap();
        let err = verify_crl(&der, "/etc/crl/a.crl", &issuers, &SerialHasher::new()).unwrap_err();
        assert!(matches!(err, CrlError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains("/etc/crl/a.crl"), "{err}");
        // The impostor's own CRL names the same issuer, but its key is not the CA's.
        let der = CrlBuilder::new(&impostor).unwrap().to_der().unwrap();
        assert!(matches!(
            verify_crl(&der, "b", &issuers, &SerialHasher::new()),
            Err(CrlError::BadSignature { .. })
        ));
    }

    #[test]
    fn unknown_issuer_is_refused() {
        let root = ca("Root A");
        let other = ca("Root B");
        let issuers = IssuerCerts::new([&*root.cert]).unwrap();
        let der = CrlBuilder::new(&other).unwrap().to_der().unwrap();
        let err = verify_crl(
            &der,
            "http://127.0.0.1/b.crl",
            &issuers,
            &SerialHasher::new(),
        )
        .unwrap_err();
        assert!(matches!(err, CrlError::UnknownIssuer { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("Root B") && msg.contains("http://127.0.0.1/b.crl"),
            "{msg}"
        );
    }

    #[test]
    fn ca_without_crl_sign_cannot_sign_crls() {
        let root = ca("Root A");
        // A leaf-shaped certificate (keyUsage digitalSignature only) named like a CA.
        let leaf = issue(&CertSpec::new("Not A CA", Usage::Client), &root).unwrap();
        let issuers = IssuerCerts::new([&*leaf.cert]).unwrap();
        let der = CrlBuilder::new(&leaf).unwrap().to_der().unwrap();
        let err = verify_crl(&der, "c", &issuers, &SerialHasher::new()).unwrap_err();
        assert!(err.to_string().contains("cRLSign"), "{err}");
    }

    #[test]
    fn malformed_is_refused_naming_the_source() {
        let root = ca("Root A");
        let issuers = IssuerCerts::new([&*root.cert]).unwrap();
        let good = CrlBuilder::new(&root).unwrap().to_der().unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let cert_pem = root.cert_pem();
        let cases: [(&str, &[u8]); 5] = [
            ("empty", b""),
            ("garbage", b"not a crl at all"),
            ("truncated", &good[..good.len() / 2]),
            ("trailing", &trailing),
            ("certificate pem", &cert_pem),
        ];
        for (name, bytes) in cases {
            let err = verify_crl(bytes, name, &issuers, &SerialHasher::new()).unwrap_err();
            assert!(matches!(err, CrlError::Malformed { .. }), "{name}: {err}");
            assert!(err.to_string().starts_with(name), "{err}");
        }
        // A flipped signature byte parses but does not verify.
        assert!(verify_crl(&flipped, "f", &issuers, &SerialHasher::new()).is_err());
    }

    #[test]
    fn serials_with_high_bit_and_leading_zeros_match_certificates() {
        let root = ca("Root A");
        let serials: [&[u8]; 4] = [&[0x80], &[0xff, 0x01], &[0x00, 0x00, 0x42], &[0x01, 0x00]];
        let certs: Vec<Issued> = serials
            .iter()
            .map(|s| client(&root, Some(s.to_vec())))
            .collect();
        let mut b = CrlBuilder::new(&root).unwrap();
        for s in &serials {
            b = b.revoke(s);
        }
        let issuers = IssuerCerts::new([&*root.cert]).unwrap();
        let hasher = SerialHasher::new();
        let crl = verify_crl(&b.to_der().unwrap(), "s", &issuers, &hasher).unwrap();
        let index = index_of(&crl, hasher);
        for cert in &certs {
            assert!(revoked(&index, &cert.cert));
        }
        let other = client(&root, Some(vec![0x81]));
        assert!(!revoked(&index, &other.cert));
        // Negative INTEGER content (old CAs) maps to its magnitude.
        assert_eq!(&*serial_magnitude(&[0xff]), &[1]);
        assert_eq!(&*serial_magnitude(&[0xff, 0x00]), &[1, 0]);
        assert_eq!(&*serial_magnitude(&[0x80]), &[0x80]);
        assert_eq!(&*serial_magnitude(&[0x00, 0x80]), &[0x80]);
    }

    #[test]
    fn newer_by_number_then_this_update() {
        let root = ca("Root A");
        let issuers = IssuerCerts::new([&*root.cert]).unwrap();
        let h = SerialHasher::new();
        let now = SystemTime::now();
        let make = |n: Option<u64>, t: SystemTime| {
            let mut b = CrlBuilder::new(&root).unwrap().this_update(t);
            if let Some(n) = n {
                b = b.crl_number(n);
            }
            verify_crl(&b.to_der().unwrap(), "n", &issuers, &h).unwrap()
        };
        let hour = Duration::from_secs(3600);
        let n2 = make(Some(2), now - hour);
        let n10 = make(Some(10), now - 2 * hour);
        assert!(n2.is_older_than(&n10), "number wins over time");
        assert!(!n10.is_older_than(&n2));
        let t1 = make(None, now - hour);
        let t2 = make(None, now);
        assert!(t1.is_older_than(&t2));
        assert!(!t2.is_older_than(&t1));
        assert!(!t2.is_older_than(&t2.clone()), "equal is not older");
    }

    #[test]
    fn delta_crl_refused() {
        // Patch the cRLNumber OID (2.5.29.20) of a built CRL into deltaCRLIndicator
        // (2.5.29.27) and re-sign: same shape, different meaning.
        let root = ca("Root A");
        let issuers = IssuerCerts::new([&*root.cert]).unwrap();
        let der = CrlBuilder::new(&root)
            .unwrap()
            .crl_number(3)
            .to_der()
            .unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
        let mut tbs = crl.tbs_cert_list.as_ref().to_vec();
        let at = tbs
            .windows(5)
            .position(|w| w == [0x06, 0x03, 0x55, 0x1d, 0x14])
            .unwrap();
        tbs[at + 4] = 0x1b;
        let mut signer = Signer::new(MessageDigest::sha256(), &root.key).unwrap();
        signer.update(&tbs).unwrap();
        let sig = signer.sign_to_vec().unwrap();
        let mut body = tbs;
        body.extend_from_slice(&algorithm_identifier(Id::EC, CrlDigest::Sha256).unwrap());
        let mut bits = vec![0];
        bits.extend_from_slice(&sig);
        der::tlv(&mut body, der::BIT_STRING, &bits);
        let mut out = Vec::new();
        der::tlv(&mut out, der::SEQUENCE, &body);
        let err = verify_crl(&out, "d", &issuers, &SerialHasher::new()).unwrap_err();
        assert!(err.to_string().contains("delta"), "{err}");
    }

    #[test]
    fn distribution_points_http_only() {
        let root = ca("Root A");
        let spec = CertSpec {
            crl_distribution_points: vec![
                "http://127.0.0.1:8080/root-a.crl".into(),
                "ldap://ldap.example/cn=Root".into(),
                "https://example.com/a.crl".into(),
                "HTTP://crl.example/b.crl".into(),
            ],
            ..CertSpec::new("alice", Usage::Client)
        };
        let cert = issue(&spec, &root).unwrap();
        assert_eq!(
            crl_distribution_points(&cert.cert),
            [
                "http://127.0.0.1:8080/root-a.crl",
                "HTTP://crl.example/b.crl"
            ]
        );
        assert!(crl_distribution_points(&root.cert).is_empty());
    }

    #[test]
    fn million_entries_build_parse_and_index() {
        let root = ca("Big CA");
        let serials = (0u64..1_000_000).map(|i| (i * 7919 + 1).to_be_bytes()[3..].to_vec());
        let start = std::time::Instant::now();
        let der = CrlBuilder::new(&root)
            .unwrap()
            .revoke_all(serials)
            .to_der()
            .unwrap();
        let built = start.elapsed();
        let issuers = IssuerCerts::new([&*root.cert]).unwrap();
        let hasher = SerialHasher::new();
        let start = std::time::Instant::now();
        let crl = verify_crl(&der, "big.crl", &issuers, &hasher).unwrap();
        let parsed = start.elapsed();
        let start = std::time::Instant::now();
        let index = index_of(&crl, hasher);
        let indexed = start.elapsed();
        assert_eq!(index.len(), 1_000_000);
        assert!(index.is_revoked(&crl.issuer, &(7919u64 * 999_999 + 1).to_be_bytes()));
        assert!(!index.is_revoked(&crl.issuer, &2u64.to_be_bytes()));
        // Peak resident memory of the test process (meaningful when run alone).
        let peak = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|st| {
                st.lines()
                    .find(|l| l.starts_with("VmHWM"))
                    .map(str::to_owned)
            });
        eprintln!(
            "1M-entry CRL: {} MB DER, built+signed in {built:?}, parsed+verified in {parsed:?}, \
             indexed in {indexed:?}, index table {} MiB, process {peak:?}",
            der.len() / 1_000_000,
            index.memory_bytes() >> 20
        );
    }
}
