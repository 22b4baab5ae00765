//! A per-test PKI built with `certgate::tls::pki`, written as PEM files into a
//! temp dir that is removed when the `TestPki` is dropped.

use super::TempDir;
use boring::hash::MessageDigest;
use boring::pkey::{PKey, Private};
use boring::x509::X509;
use certgate::tls::pki::{self, CertSpec, Issued, KeyKind, Usage};
use std::path::{Path, PathBuf};

const DAY: i64 = 86_400;

/// One certificate with its key, plus where its PEM files are.
pub struct CertFiles {
    pub issued: Issued,
    /// The leaf alone.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The leaf followed by the chain a client would send (e.g. the intermediate).
    pub chain: PathBuf,
    /// Certificates sent after the leaf (e.g. the intermediate).
    pub extra: Vec<X509>,
}

impl CertFiles {
    pub fn x509(&self) -> &X509 {
        &self.issued.cert
    }
    pub fn key(&self) -> &PKey<Private> {
        &self.issued.key
    }
    pub fn der(&self) -> Vec<u8> {
        self.issued.cert.to_der().unwrap()
    }
    pub fn pem(&self) -> String {
        String::from_utf8(self.issued.cert_pem()).unwrap()
    }
    /// SHA-1 of the DER, upper-case hex without separators.
    pub fn sha1_upper(&self) -> String {
        hex::encode_upper(self.issued.cert.digest(MessageDigest::sha1()).unwrap())
    }
    /// SHA-256 of the DER, upper-case hex without separators.
    pub fn sha256_upper(&self) -> String {
        hex::encode_upper(self.issued.cert.digest(MessageDigest::sha256()).unwrap())
    }
    pub fn sha256_lower(&self) -> String {
        self.sha256_upper().to_ascii_lowercase()
    }
    pub fn sha1_raw(&self) -> Vec<u8> {
        self.issued
            .cert
            .digest(MessageDigest::sha1())
            .unwrap()
            .to_vec()
    }
    pub fn sha256_raw(&self) -> Vec<u8> {
        self.issued
            .cert
            .digest(MessageDigest::sha256())
            .unwrap()
            .to_vec()
    }
    /// Serial as upper-case hex (as BoringSSL prints it: no leading zeros).
    pub fn serial_upper(&self) -> String {
        self.issued
            .cert
            .serial_number()
            .to_bn()
            .unwrap()
            .to_hex_str()
            .unwrap()
            .to_string()
            .to_ascii_uppercase()
    }
    /// A client identity sending the leaf and its chain.
    pub fn identity(&self) -> super::Identity {
        super::Identity {
            cert: self.issued.cert.clone(),
            key: self.issued.key.clone(),
            chain: self.extra.clone(),
        }
    }
    /// A client identity sending the leaf only.
    pub fn identity_leaf_only(&self) -> super::Identity {
        super::Identity {
            cert: self.issued.cert.clone(),
            key: self.issued.key.clone(),
            chain: Vec::new(),
        }
    }
}

/// The test PKI.
///
/// - `root` → `inter` → client certs (`client_ok`, `client_b`, `expired`,
///   `not_yet_valid`, `server_only`);
/// - `root` → `server` (CN/SAN `localhost`);
/// - `self_signed` (not in any bundle), `self_signed_listed` (in both bundles);
/// - `other_root` → `untrusted` (a valid-looking client cert from a CA that is
///   not in the bundles).
///
/// Bundles: `ca_bundle` = root + intermediate + self_signed_listed;
/// `ca_bundle_root_only` = root + self_signed_listed.
pub struct TestPki {
    pub dir: TempDir,
    pub root: CertFiles,
    pub inter: CertFiles,
    pub server: CertFiles,
    pub client_ok: CertFiles,
    pub client_b: CertFiles,
    pub expired: CertFiles,
    pub not_yet_valid: CertFiles,
    pub self_signed: CertFiles,
    pub self_signed_listed: CertFiles,
    pub other_root: CertFiles,
    pub untrusted: CertFiles,
    pub server_only: CertFiles,
    /// Root + intermediate + self_signed_listed.
    pub ca_bundle: PathBuf,
    /// Root + self_signed_listed (the intermediate must come from the client).
    pub ca_bundle_root_only: PathBuf,
}

fn spec(cn: &str, usage: Usage, nb: i64, na: i64) -> CertSpec {
    let mut s = CertSpec::new(cn, usage);
    s.organization = Some("certgate tests".to_string());
    s.key = KeyKind::EcdsaP256;
    s.not_before_offset_secs = nb;
    s.not_after_offset_secs = na;
    s
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = TempDir::new("pki");

        let root = pki::self_signed(&spec("certgate test root", Usage::Ca, -DAY, 3650 * DAY))
            .expect("root CA");
        let inter = pki::issue(
            &spec("certgate test intermediate", Usage::Ca, -DAY, 3650 * DAY),
            &root,
        )
        .expect("intermediate CA");

        let mut server_spec = spec("localhost", Usage::Server, -DAY, 365 * DAY);
        server_spec.dns_names = vec!["localhost".to_string()];
        let server = pki::issue(&server_spec, &root).expect("server cert");

        let client = |cn: &str, usage: Usage, nb: i64, na: i64| {
            pki::issue(&spec(cn, usage, nb, na), &inter)
                .unwrap_or_else(|e| panic!("issue {cn}: {e:?}"))
        };
        let client_ok = client("client-ok", Usage::Client, -DAY, 365 * DAY);
        let client_b = client("client-b", Usage::Client, -DAY, 365 * DAY);
        let expired = client("client-expired", Usage::Client, -10 * DAY, -DAY);
        let not_yet_valid = client("client-not-yet-valid", Usage::Client, 2 * DAY, 30 * DAY);
        let server_only = client("client-server-only", Usage::ServerOnly, -DAY, 365 * DAY);

        let self_signed =
            pki::self_signed(&spec("client-self-signed", Usage::Client, -DAY, 365 * DAY))
                .expect("self-signed");
        let self_signed_listed = pki::self_signed(&spec(
            "client-self-signed-listed",
            Usage::Client,
            -DAY,
            365 * DAY,
        ))
        .expect("self-signed listed");

        let other_root =
            pki::self_signed(&spec("certgate other root", Usage::Ca, -DAY, 3650 * DAY))
                .expect("other root");
        let untrusted = pki::issue(
            &spec("client-untrusted", Usage::Client, -DAY, 365 * DAY),
            &other_root,
        )
        .expect("untrusted");

        let inter_x509 = inter.cert.clone();
        let d = dir.path().to_path_buf();
        let files =
            |name: &str, issued: Issued, extra: Vec<X509>| write_files(&d, name, issued, extra);

        let root = files("root", root, vec![]);
        let inter = files("inter", inter, vec![]);
        let server = files("server", server, vec![]);
        let client_ok = files("client-ok", client_ok, vec![inter_x509.clone()]);
        let client_b = files("client-b", client_b, vec![inter_x509.clone()]);
        let expired = files("client-expired", expired, vec![inter_x509.clone()]);
        let not_yet_valid = files("client-nyv", not_yet_valid, vec![inter_x509.clone()]);
        let server_only = files("client-server-only", server_only, vec![inter_x509.clone()]);
        let self_signed = files("client-self-signed", self_signed, vec![]);
        let self_signed_listed = files("client-self-signed-listed", self_signed_listed, vec![]);
        let other_root = files("other-root", other_root, vec![]);
        // sent without its (foreign) root: the engine cannot find an issuer
        let untrusted = files("client-untrusted", untrusted, vec![]);

        let ca_bundle = d.join("ca-bundle.pem");
        let mut pem = root.issued.cert_pem();
        pem.extend_from_slice(&inter.issued.cert_pem());
        pem.extend_from_slice(&self_signed_listed.issued.cert_pem());
        std::fs::write(&ca_bundle, pem).unwrap();

        let ca_bundle_root_only = d.join("ca-bundle-root-only.pem");
        let mut pem = root.issued.cert_pem();
        pem.extend_from_slice(&self_signed_listed.issued.cert_pem());
        std::fs::write(&ca_bundle_root_only, pem).unwrap();

        TestPki {
            dir,
            root,
            inter,
            server,
            client_ok,
            client_b,
            expired,
            not_yet_valid,
            self_signed,
            self_signed_listed,
            other_root,
            untrusted,
            server_only,
            ca_bundle,
            ca_bundle_root_only,
        }
    }

    /// A fresh valid client cert (issued by the intermediate) with the given CN.
    pub fn issue_client(&self, cn: &str) -> CertFiles {
        let issued = pki::issue(
            &spec(cn, Usage::Client, -DAY, 365 * DAY),
            &self.inter.issued,
        )
        .unwrap_or_else(|e| panic!("issue {cn}: {e:?}"));
        write_files(self.dir.path(), cn, issued, vec![self.inter.x509().clone()])
    }

    /// A server certificate for `name` (CN and DNS SAN), issued by the root.
    pub fn issue_server(&self, name: &str) -> CertFiles {
        let mut server_spec = spec(name, Usage::Server, -DAY, 365 * DAY);
        server_spec.dns_names = vec![name.to_string()];
        let issued = pki::issue(&server_spec, &self.root.issued)
            .unwrap_or_else(|e| panic!("issue {name}: {e:?}"));
        write_files(self.dir.path(), name, issued, Vec::new())
    }

    /// The engine variables for the server identity and the client CA bundle
    /// (`ca_bundle`). No mode is set.
    pub fn tls_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CERTGATE_TLS_CERT", path_str(&self.server.cert)),
            ("CERTGATE_TLS_KEY", path_str(&self.server.key)),
            ("CERTGATE_CLIENT_CA", path_str(&self.ca_bundle)),
        ]
    }

    pub fn root_x509(&self) -> X509 {
        self.root.issued.cert.clone()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn write_files(dir: &Path, name: &str, issued: Issued, extra: Vec<X509>) -> CertFiles {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let chain = dir.join(format!("{name}-chain.pem"));
    issued
        .write_pem(&cert, &key)
        .unwrap_or_else(|e| panic!("write {name}: {e:?}"));
    let mut pem = issued.cert_pem();
    for c in &extra {
        pem.extend_from_slice(&c.to_pem().unwrap());
    }
    std::fs::write(&chain, pem).unwrap();
    CertFiles {
        issued,
        cert,
        key,
        chain,
        extra,
    }
}
