//! A small X.509 certificate factory on BoringSSL: dev-mode PKI and test certificates.

use std::cmp::Ordering;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use boring::asn1::{Asn1Integer, Asn1Time};
use boring::bn::BigNum;
use boring::ec::{EcGroup, EcKey};
use boring::error::ErrorStack;
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::rsa::Rsa;
use boring::stack::Stack;
use boring::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use boring::x509::store::X509StoreBuilder;
use boring::x509::{
    X509Builder, X509Extension, X509Name, X509Ref, X509StoreContext, X509VerifyResult, X509,
};

use crate::trust::thumbprint::CertDigests;

/// The key algorithm of a generated certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// RSA, 2048-bit modulus.
    Rsa2048,
}

/// What a generated certificate is for; decides basicConstraints, keyUsage and EKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Certificate authority (root or intermediate): CA:TRUE, keyCertSign + cRLSign, no EKU.
    Ca,
    /// TLS server leaf: EKU serverAuth.
    Server,
    /// TLS client leaf: EKU clientAuth.
    Client,
    /// Leaf without any extendedKeyUsage extension.
    NoEku,
    /// Leaf whose EKU is serverAuth only; the same certificate shape as [`Usage::Server`],
    /// named for its use as a client certificate with the wrong purpose.
    ServerOnly,
}

/// Everything that varies between generated certificates.
#[derive(Clone, Debug)]
pub struct CertSpec {
    /// Subject CN (omitted from the subject when empty; the SAN is then critical).
    pub common_name: String,
    /// Subject O.
    pub organization: Option<String>,
    /// DNS subjectAltNames.
    pub dns_names: Vec<String>,
    /// IP address subjectAltNames.
    pub ip_addresses: Vec<IpAddr>,
    /// URI subjectAltNames (e.g. SPIFFE IDs).
    pub uris: Vec<String>,
    /// Extensions profile.
    pub usage: Usage,
    /// Key algorithm of the generated key pair.
    pub key: KeyKind,
    /// Validity relative to now, in seconds (negative = in the past). Defaults: -3600 .. +365 days.
    pub not_before_offset_secs: i64,
    /// See `not_before_offset_secs`.
    pub not_after_offset_secs: i64,
    /// Big-endian unsigned serial number; None = random 16-byte positive serial.
    pub serial: Option<Vec<u8>>,
    /// URIs of a CRL distribution points extension (omitted when empty).
    pub crl_distribution_points: Vec<String>,
}

const DAY_SECS: i64 = 24 * 60 * 60;

impl CertSpec {
    /// A spec with no SANs, no O, an ECDSA P-256 key, a random serial and validity
    /// from an hour ago to 365 days from now.
    pub fn new(common_name: &str, usage: Usage) -> Self {
        CertSpec {
            common_name: common_name.to_owned(),
            organization: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            usage,
            key: KeyKind::EcdsaP256,
            not_before_offset_secs: -3600,
            not_after_offset_secs: 365 * DAY_SECS,
            serial: None,
            crl_distribution_points: Vec::new(),
        }
    }
}

/// Why a certificate could not be generated, written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A BoringSSL operation failed (`what` names the step).
    #[error("cannot {what}: {source}")]
    Crypto {
        /// The step that failed, e.g. "sign the certificate".
        what: &'static str,
        /// BoringSSL's error queue.
        source: ErrorStack,
    },
    /// Creating, reading or writing a file or directory failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "write".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A PEM file does not hold what it should.
    #[error("cannot parse {what} in {}: {source}", path.display())]
    Parse {
        /// What was expected, e.g. "certificate".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// BoringSSL's error queue.
        source: ErrorStack,
    },
}

fn crypto(what: &'static str) -> impl FnOnce(ErrorStack) -> PkiError {
    move |source| PkiError::Crypto { what, source }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PkiError + 'a {
    move |source| PkiError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A certificate with its private key.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
}

impl Issued {
    /// The certificate as PEM (`BEGIN CERTIFICATE`).
    ///
    /// # Panics
    /// Only if BoringSSL cannot allocate the output.
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert
            .to_pem()
            .expect("PEM-encoding an in-memory certificate fails only when out of memory")
    }

    /// The private key as PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    ///
    /// # Panics
    /// Only if BoringSSL cannot allocate the output.
    pub fn key_pem(&self) -> Vec<u8> {
        self.key
            .private_key_to_pem_pkcs8()
            .expect("PEM-encoding an in-memory private key fails only when out of memory")
    }

    /// SHA-1 and SHA-256 of the certificate DER (its thumbprints).
    pub fn digests(&self) -> Result<CertDigests, PkiError> {
        let sha1 = self
            .cert
            .digest(MessageDigest::sha1())
            .map_err(crypto("hash the certificate"))?;
        let sha256 = self
            .cert
            .digest(MessageDigest::sha256())
            .map_err(crypto("hash the certificate"))?;
        let mut d = CertDigests {
            sha1: [0; 20],
            sha256: [0; 32],
        };
        d.sha1.copy_from_slice(&sha1);
        d.sha256.copy_from_slice(&sha256);
        Ok(d)
    }

    /// Writes cert and key PEM files, each atomically (temporary file + rename); the key
    /// file has mode 0600 from the moment it is created.
    pub fn write_pem(&self, cert_path: &Path, key_path: &Path) -> Result<(), PkiError> {
        write_atomic(cert_path, &self.cert_pem(), 0o644)?;
        write_atomic(key_path, &self.key_pem(), 0o600)
    }

    /// Parses a certificate PEM and a private key PEM (PKCS#8 or traditional).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Issued, PkiError> {
        Ok(Issued {
            cert: X509::from_pem(cert_pem).map_err(crypto("parse the certificate PEM"))?,
            key: PKey::private_key_from_pem(key_pem)
                .map_err(crypto("parse the private key PEM"))?,
        })
    }

    /// Reads a certificate and its key from PEM files; errors name the file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Issued, PkiError> {
        let cert_pem = fs::read(cert_path).map_err(io("read", cert_path))?;
        let key_pem = fs::read(key_path).map_err(io("read", key_path))?;
        let cert = X509::from_pem(&cert_pem).map_err(|source| PkiError::Parse {
            what: "certificate",
            path: cert_path.to_owned(),
            source,
        })?;
        let key = PKey::private_key_from_pem(&key_pem).map_err(|source| PkiError::Parse {
            what: "private key",
            path: key_path.to_owned(),
            source,
        })?;
        Ok(Issued { cert, key })
    }

    /// Whether `key` is the private key of `cert`.
    pub fn key_matches(&self) -> bool {
        self.cert
            .public_key()
            .is_ok_and(|public| public.public_eq(&self.key))
    }
}

/// Generates a key pair and a self-signed certificate for it.
pub fn self_signed(spec: &CertSpec) -> Result<Issued, PkiError> {
    build(spec, None)
}

/// Generates a key pair and a certificate for it signed by `issuer` (normally a
/// [`Usage::Ca`] certificate; not checked, so tests can build invalid chains).
pub fn issue(spec: &CertSpec, issuer: &Issued) -> Result<Issued, PkiError> {
    build(spec, Some(issuer))
}

fn generate_key(kind: KeyKind) -> Result<PKey<Private>, PkiError> {
    let what = "generate a key pair";
    match kind {
        KeyKind::EcdsaP256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(crypto(what))?;
            let ec = EcKey::generate(&group).map_err(crypto(what))?;
            PKey::from_ec_key(ec).map_err(crypto(what))
        }
        KeyKind::Rsa2048 => {
            let rsa = Rsa::generate(2048).map_err(crypto(what))?;
            PKey::from_rsa(rsa).map_err(crypto(what))
        }
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn serial_number(spec: &CertSpec) -> Result<Asn1Integer, PkiError> {
    let what = "set the serial number";
    let bytes = match &spec.serial {
        Some(bytes) => bytes.clone(),
        None => {
            let mut bytes = vec![0u8; 16];
            boring::rand::rand_bytes(&mut bytes).map_err(crypto(what))?;
            // Positive, and exactly 16 bytes long in DER.
            bytes[0] = (bytes[0] & 0x7f) | 0x40;
            bytes
        }
    };
    let bn = BigNum::from_slice(&bytes).map_err(crypto(what))?;
    Asn1Integer::from_bn(&bn).map_err(crypto(what))
}

fn subject_name(spec: &CertSpec) -> Result<X509Name, PkiError> {
    let what = "build the subject name";
    let mut name = X509Name::builder().map_err(crypto(what))?;
    if let Some(org) = &spec.organization {
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, org)
            .map_err(crypto(what))?;
    }
    if !spec.common_name.is_empty() {
        name.append_entry_by_nid(Nid::COMMONNAME, &spec.common_name)
            .map_err(crypto(what))?;
    }
    Ok(name.build())
}

fn build(spec: &CertSpec, issuer: Option<&Issued>) -> Result<Issued, PkiError> {
    let key = generate_key(spec.key)?;
    let name = subject_name(spec)?;
    let issuer_cert: Option<&X509Ref> = issuer.map(|i| &*i.cert);

    let mut b = X509Builder::new().map_err(crypto("create a certificate builder"))?;
    b.set_version(2).map_err(crypto("set the version"))?;
    let serial = serial_number(spec)?;
    b.set_serial_number(&serial)
        .map_err(crypto("set the serial number"))?;
    b.set_subject_name(&name)
        .map_err(crypto("set the subject name"))?;
    b.set_issuer_name(issuer_cert.map_or(&*name, |c| c.subject_name()))
        .map_err(crypto("set the issuer name"))?;
    b.set_pubkey(&key).map_err(crypto("set the public key"))?;
    let now = now_unix();
    let not_before = Asn1Time::from_unix(now.saturating_add(spec.not_before_offset_secs))
        .map_err(crypto("encode notBefore"))?;
    let not_after = Asn1Time::from_unix(now.saturating_add(spec.not_after_offset_secs))
        .map_err(crypto("encode notAfter"))?;
    b.set_not_before(&not_before)
        .map_err(crypto("set notBefore"))?;
    b.set_not_after(&not_after)
        .map_err(crypto("set notAfter"))?;

    let ext = "build an extension";
    let add = "add an extension";
    let is_ca = spec.usage == Usage::Ca;
    let mut basic = BasicConstraints::new();
    basic.critical();
    if is_ca {
        basic.ca();
    }
    let basic = basic.build().map_err(crypto(ext))?;
    b.append_extension(&basic).map_err(crypto(add))?;

    let mut key_usage = KeyUsage::new();
    key_usage.critical();
    if is_ca {
        key_usage.key_cert_sign().crl_sign();
    } else {
        key_usage.digital_signature();
        if spec.key == KeyKind::Rsa2048 {
            key_usage.key_encipherment();
        }
    }
    let key_usage = key_usage.build().map_err(crypto(ext))?;
    b.append_extension(&key_usage).map_err(crypto(add))?;

    let mut eku = ExtendedKeyUsage::new();
    let eku = match spec.usage {
        Usage::Ca | Usage::NoEku => None,
        Usage::Server | Usage::ServerOnly => Some(eku.server_auth()),
        Usage::Client => Some(eku.client_auth()),
    };
    if let Some(eku) = eku {
        let eku = eku.build().map_err(crypto(ext))?;
        b.append_extension(&eku).map_err(crypto(add))?;
    }

    // The subject key identifier must be in place before the authority key identifier
    // of a self-signed certificate, which copies it.
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(issuer_cert, None))
        .map_err(crypto(ext))?;
    b.append_extension(&ski).map_err(crypto(add))?;
    // RFC 5280 4.2.1.1: may be omitted from self-signed CA certificates; kept everywhere else.
    if !(is_ca && issuer.is_none()) {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(false)
            .build(&b.x509v3_context(issuer_cert, None))
            .map_err(crypto(ext))?;
        b.append_extension(&aki).map_err(crypto(add))?;
    }

    if !(spec.dns_names.is_empty() && spec.ip_addresses.is_empty() && spec.uris.is_empty()) {
        let mut san = SubjectAlternativeName::new();
        if spec.common_name.is_empty() && spec.organization.is_none() {
            san.critical(); // RFC 5280 4.2.1.6: empty subject.
        }
        for dns in &spec.dns_names {
            san.dns(dns);
        }
        for ip in &spec.ip_addresses {
            san.ip(&ip.to_string());
        }
        for uri in &spec.uris {
            san.uri(uri);
        }
        let san = san
            .build(&b.x509v3_context(issuer_cert, None))
            .map_err(crypto(ext))?;
        b.append_extension(&san).map_err(crypto(add))?;
    }

    if !spec.crl_distribution_points.is_empty() {
        let value = spec
            .crl_distribution_points
            .iter()
            .map(|uri| format!("URI:{uri}"))
            .collect::<Vec<_>>()
            .join(",");
        let cdp = X509Extension::new_nid(None, None, Nid::CRL_DISTRIBUTION_POINTS, &value)
            .map_err(crypto(ext))?;
        b.append_extension(&cdp).map_err(crypto(add))?;
    }

    let signer = issuer.map_or(&key, |i| &i.key);
    b.sign(signer, MessageDigest::sha256())
        .map_err(crypto("sign the certificate"))?;
    Ok(Issued {
        cert: b.build(),
        key,
    })
}

/// Verifies `leaf` against the single trust anchor `root`, with `intermediates` as the
/// untrusted chain, at the current time.
pub fn verify_chain(
    root: &X509Ref,
    intermediates: &[&X509Ref],
    leaf: &X509Ref,
) -> Result<X509VerifyResult, PkiError> {
    let what = "verify a certificate chain";
    let mut store = X509StoreBuilder::new().map_err(crypto(what))?;
    store.add_cert(root).map_err(crypto(what))?;
    let store = store.build();
    let mut chain = Stack::new().map_err(crypto(what))?;
    for cert in intermediates {
        chain.push((*cert).to_owned()).map_err(crypto(what))?;
    }
    let mut ctx = X509StoreContext::new().map_err(crypto(what))?;
    ctx.init(&store, leaf, &chain, |ctx| {
        // The verdict is in `verify_result`; `verify_cert` only says whether there was one.
        let _verified = ctx.verify_cert()?;
        Ok(ctx.verify_result())
    })
    .map_err(crypto(what))
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    crate::atomic_file::write_atomic(path, contents, mode).map_err(|e| PkiError::Io {
        action: e.action,
        path: e.path,
        source: e.source,
    })
}

/// Paths of the development PKI in a state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevPki {
    /// The development CA certificate: trust anchor for client certificates, and what
    /// clients must trust to accept the server certificate.
    pub ca_cert: PathBuf,
    /// The development CA's private key (to issue more certificates).
    pub ca_key: PathBuf,
    /// Server certificate for `localhost`, 127.0.0.1 and ::1.
    pub server_cert: PathBuf,
    /// Server private key (mode 0600).
    pub server_key: PathBuf,
    /// Client certificate "certgate dev client".
    pub client_cert: PathBuf,
    /// Client private key (mode 0600).
    pub client_key: PathBuf,
    /// Whether this call generated the files (false = existing files reused).
    pub generated: bool,
}

/// Common name of the development CA.
pub const DEV_CA_NAME: &str = "certgate development CA";
/// Common name of the development client certificate.
pub const DEV_CLIENT_NAME: &str = "certgate dev client";

/// Creates `<dir>/dev-pki/{ca.pem, ca-key.pem, server.pem, server-key.pem, client.pem,
/// client-key.pem}` (ECDSA P-256; CA valid 10 years, leaves 825 days; key files 0600;
/// directories created 0700, and `dev-pki` itself forced to 0700).
///
/// Existing files are reused (`generated: false`) when all six parse, each key matches its
/// certificate, both leaves verify against the CA now and every certificate stays valid for
/// at least another day; otherwise everything is regenerated (with a warning if some of the
/// files existed). Each file is replaced atomically, but two processes generating into the
/// same directory at once may leave a mixed set, which the next call regenerates.
pub fn ensure_dev_pki(state_dir: &Path) -> Result<DevPki, PkiError> {
    let dir = state_dir.join("dev-pki");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io("create directory", &dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(io("set permissions of", &dir))?;
    let mut pki = DevPki {
        ca_cert: dir.join("ca.pem"),
        ca_key: dir.join("ca-key.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
        generated: false,
    };
    let files = [
        &pki.ca_cert,
        &pki.ca_key,
        &pki.server_cert,
        &pki.server_key,
        &pki.client_cert,
        &pki.client_key,
    ];
    let existing = files.iter().filter(|p| p.exists()).count();
    if existing == files.len() {
        match check_dev_pki(&pki) {
            Ok(()) => return Ok(pki),
            Err(reason) => tracing::warn!(
                dir = %dir.display(),
                %reason,
                "regenerating the development PKI"
            ),
        }
    } else if existing > 0 {
        tracing::warn!(
            dir = %dir.display(),
            existing,
            "development PKI incomplete; regenerating it"
        );
    }

    let ca_spec = CertSpec {
        not_after_offset_secs: 3650 * DAY_SECS,
        ..CertSpec::new(DEV_CA_NAME, Usage::Ca)
    };
    let ca = self_signed(&ca_spec)?;
    let server_spec = CertSpec {
        dns_names: vec!["localhost".into()],
        ip_addresses: vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
        not_after_offset_secs: 825 * DAY_SECS,
        ..CertSpec::new("localhost", Usage::Server)
    };
    let server = issue(&server_spec, &ca)?;
    let client_spec = CertSpec {
        not_after_offset_secs: 825 * DAY_SECS,
        ..CertSpec::new(DEV_CLIENT_NAME, Usage::Client)
    };
    let client = issue(&client_spec, &ca)?;
    ca.write_pem(&pki.ca_cert, &pki.ca_key)?;
    server.write_pem(&pki.server_cert, &pki.server_key)?;
    client.write_pem(&pki.client_cert, &pki.client_key)?;
    pki.generated = true;
    Ok(pki)
}

/// Why the existing development PKI cannot be reused (`Ok` = it can).
fn check_dev_pki(pki: &DevPki) -> Result<(), String> {
    let ca = Issued::load(&pki.ca_cert, &pki.ca_key).map_err(|e| e.to_string())?;
    let server = Issued::load(&pki.server_cert, &pki.server_key).map_err(|e| e.to_string())?;
    let client = Issued::load(&pki.client_cert, &pki.client_key).map_err(|e| e.to_string())?;
    let tomorrow =
        Asn1Time::from_unix(now_unix().saturating_add(DAY_SECS)).map_err(|e| e.to_string())?;
    for (issued, path) in [
        (&ca, &pki.ca_cert),
        (&server, &pki.server_cert),
        (&client, &pki.client_cert),
    ] {
        if !issued.key_matches() {
            return Err(format!("{} does not match its key", path.display()));
        }
        match issued.cert.not_after().compare(&tomorrow) {
            Ok(Ordering::Greater) => {}
            _ => return Err(format!("{} expires within a day", path.display())),
        }
    }
    for (leaf, path) in [(&server, &pki.server_cert), (&client, &pki.client_cert)] {
        match verify_chain(&ca.cert, &[], &leaf.cert) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(format!(
                    "{} does not verify against {}: {}",
                    path.display(),
                    pki.ca_cert.display(),
                    e.error_string()
                ))
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use boring::pkey::Id;
    use boring::x509::X509VerifyError;

    // DER of the EKU OIDs and of the extension OIDs (tag, length, value).
    const SERVER_AUTH: &[u8] = &[6, 8, 0x2b, 6, 1, 5, 5, 7, 3, 1];
    const CLIENT_AUTH: &[u8] = &[6, 8, 0x2b, 6, 1, 5, 5, 7, 3, 2];
    const EXT_EKU: &[u8] = &[6, 3, 0x55, 0x1d, 0x25];

    fn der_contains(cert: &X509, needle: &[u8]) -> bool {
        let der = cert.to_der().unwrap();
        der.windows(needle.len()).any(|w| w == needle)
    }

    fn root() -> Issued {
        self_signed(&CertSpec::new("Test Root", Usage::Ca)).unwrap()
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("certgate-pki-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn chain_through_intermediate_verifies_only_with_it() {
        let root = root();
        let intermediate = issue(&CertSpec::new("Intermediate", Usage::Ca), &root).unwrap();
        let client = issue(&CertSpec::new("alice", Usage::Client), &intermediate).unwrap();
        assert_eq!(
            verify_chain(&root.cert, &[&intermediate.cert], &client.cert).unwrap(),
            Ok(())
        );
        assert_eq!(
            verify_chain(&root.cert, &[], &client.cert).unwrap(),
            Err(X509VerifyError::UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
        );
        // Issuer and key identifiers link up.
        assert_eq!(
            client
                .cert
                .issuer_name()
                .try_cmp(intermediate.cert.subject_name())
                .unwrap(),
            Ordering::Equal
        );
        assert_eq!(
            client.cert.authority_key_id().unwrap().as_slice(),
            intermediate.cert.subject_key_id().unwrap().as_slice()
        );
        assert!(root.cert.subject_key_id().is_some());
        assert!(root.cert.authority_key_id().is_none());
    }

    #[test]
    fn leaf_cannot_act_as_ca() {
        let root = root();
        let leaf = issue(&CertSpec::new("leaf", Usage::Client), &root).unwrap();
        let below = issue(&CertSpec::new("below", Usage::Client), &leaf).unwrap();
        // BoringSSL does not even consider a certificate without keyCertSign as an issuer.
        assert_eq!(
            verify_chain(&root.cert, &[&leaf.cert], &below.cert).unwrap(),
            Err(X509VerifyError::UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
        );
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let root = root();
        let expired = CertSpec {
            not_before_offset_secs: -2 * DAY_SECS,
            not_after_offset_secs: -DAY_SECS,
            ..CertSpec::new("old", Usage::Client)
        };
        let expired = issue(&expired, &root).unwrap();
        assert_eq!(
            verify_chain(&root.cert, &[], &expired.cert).unwrap(),
            Err(X509VerifyError::CERT_HAS_EXPIRED)
        );
        let future = CertSpec {
            not_before_offset_secs: DAY_SECS,
            ..CertSpec::new("new", Usage::Client)
        };
        let future = issue(&future, &root).unwrap();
        assert_eq!(
            verify_chain(&root.cert, &[], &future.cert).unwrap(),
            Err(X509VerifyError::CERT_NOT_YET_VALID)
        );
    }

    #[test]
    fn eku_matches_usage() {
        let root = root();
        let cert = |usage| issue(&CertSpec::new("x", usage), &root).unwrap().cert;
        let client = cert(Usage::Client);
        assert!(der_contains(&client, CLIENT_AUTH));
        assert!(!der_contains(&client, SERVER_AUTH));
        for usage in [Usage::Server, Usage::ServerOnly] {
            let c = cert(usage);
            assert!(der_contains(&c, SERVER_AUTH), "{usage:?}");
            assert!(!der_contains(&c, CLIENT_AUTH), "{usage:?}");
        }
        let no_eku = cert(Usage::NoEku);
        assert!(!der_contains(&no_eku, EXT_EKU));
        assert!(!der_contains(&root.cert, EXT_EKU));
        assert_eq!(verify_chain(&root.cert, &[], &no_eku).unwrap(), Ok(()));
    }

    #[test]
    fn sans_serial_and_names() {
        let root = root();
        let spec = CertSpec {
            organization: Some("Example Org".into()),
            dns_names: vec!["api.example.com".into()],
            ip_addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
            uris: vec!["spiffe://example.org/svc".into()],
            serial: Some(vec![0x01, 0x02, 0x03]),
            ..CertSpec::new("svc", Usage::Server)
        };
        let issued = issue(&spec, &root).unwrap();
        let sans = issued.cert.subject_alt_names().unwrap();
        let dns: Vec<_> = sans.iter().filter_map(|n| n.dnsname()).collect();
        let uris: Vec<_> = sans.iter().filter_map(|n| n.uri()).collect();
        let ips: Vec<_> = sans.iter().filter_map(|n| n.ipaddress()).collect();
        assert_eq!(dns, ["api.example.com"]);
        assert_eq!(uris, ["spiffe://example.org/svc"]);
        assert_eq!(ips, [&[10u8, 0, 0, 1][..]]);
        assert!(issued.cert.check_host("api.example.com").unwrap());
        let serial = issued.cert.serial_number().to_bn().unwrap().to_vec();
        assert_eq!(serial, [1, 2, 3]);
        let org = issued
            .cert
            .subject_name()
            .entries_by_nid(Nid::ORGANIZATIONNAME)
            .next()
            .unwrap();
        assert_eq!(org.data().as_slice(), b"Example Org");

        let random = root.cert.serial_number().to_bn().unwrap();
        assert_eq!(random.num_bytes(), 16);
        assert!(!random.is_negative());
        assert!(root.cert.subject_alt_names().is_none());
    }

    #[test]
    fn rsa_leaf_under_ecdsa_root() {
        let root = root();
        let spec = CertSpec {
            key: KeyKind::Rsa2048,
            ..CertSpec::new("rsa", Usage::Client)
        };
        let rsa = issue(&spec, &root).unwrap();
        assert_eq!(rsa.key.id(), Id::RSA);
        assert_eq!(rsa.key.bits(), 2048);
        assert_eq!(root.key.id(), Id::EC);
        assert!(rsa.key_matches());
        assert_eq!(verify_chain(&root.cert, &[], &rsa.cert).unwrap(), Ok(()));
    }

    #[test]
    fn self_signed_leaf_is_its_own_anchor() {
        let spec = CertSpec {
            dns_names: vec!["localhost".into()],
            ..CertSpec::new("self", Usage::Client)
        };
        let me = self_signed(&spec).unwrap();
        assert_eq!(
            me.cert.authority_key_id().unwrap().as_slice(),
            me.cert.subject_key_id().unwrap().as_slice()
        );
        assert!(me.cert.verify(&me.key).unwrap());
    }

    #[test]
    fn pem_round_trip_and_write_modes() {
        let root = root();
        let again = Issued::from_pem(&root.cert_pem(), &root.key_pem()).unwrap();
        assert_eq!(again.cert.to_der().unwrap(), root.cert.to_der().unwrap());
        assert!(again.key.public_eq(&root.key));
        assert!(root.key_pem().starts_with(b"-----BEGIN PRIVATE KEY-----"));
        assert_eq!(again.digests().unwrap(), root.digests().unwrap());

        let dir = temp_dir("write");
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        root.write_pem(&cert, &key).unwrap();
        assert_eq!(mode(&key), 0o600);
        let loaded = Issued::load(&cert, &key).unwrap();
        assert_eq!(loaded.cert.to_der().unwrap(), root.cert.to_der().unwrap());
        fs::write(&cert, "garbage").unwrap();
        let err = Issued::load(&cert, &key).unwrap_err();
        assert!(err.to_string().contains("c.pem"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dev_pki_generated_once_then_reused() {
        let state = temp_dir("dev").join("state");
        let first = ensure_dev_pki(&state).unwrap();
        assert!(first.generated);
        assert_eq!(mode(&state.join("dev-pki")), 0o700);
        for key in [&first.ca_key, &first.server_key, &first.client_key] {
            assert_eq!(mode(key), 0o600, "{}", key.display());
        }
        let read_all = |p: &DevPki| {
            [
                &p.ca_cert,
                &p.ca_key,
                &p.server_cert,
                &p.server_key,
                &p.client_cert,
                &p.client_key,
            ]
            .map(|f| fs::read(f).unwrap())
        };
        let bytes = read_all(&first);

        let ca = Issued::load(&first.ca_cert, &first.ca_key).unwrap();
        let server = Issued::load(&first.server_cert, &first.server_key).unwrap();
        let client = Issued::load(&first.client_cert, &first.client_key).unwrap();
        assert!(server.cert.check_host("localhost").unwrap());
        assert!(server.cert.check_ip_asc("127.0.0.1").unwrap());
        assert!(der_contains(&server.cert, SERVER_AUTH));
        assert!(der_contains(&client.cert, CLIENT_AUTH));
        assert_eq!(verify_chain(&ca.cert, &[], &client.cert).unwrap(), Ok(()));
        let cn = |c: &X509| {
            let e = c
                .subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .next()
                .unwrap();
            String::from_utf8(e.data().as_slice().to_vec()).unwrap()
        };
        assert_eq!(cn(&ca.cert), DEV_CA_NAME);
        assert_eq!(cn(&client.cert), DEV_CLIENT_NAME);

        let second = ensure_dev_pki(&state).unwrap();
        assert!(!second.generated);
        assert_eq!(read_all(&second), bytes);

        // A damaged file makes the next call regenerate everything.
        fs::write(&second.server_cert, "not a certificate").unwrap();
        let third = ensure_dev_pki(&state).unwrap();
        assert!(third.generated);
        assert_ne!(read_all(&third)[0], bytes[0], "new CA");
        assert!(!ensure_dev_pki(&state).unwrap().generated);
        fs::remove_dir_all(state.parent().unwrap()).unwrap();
    }
}
