//! Building a [`Snapshot`]: the server's SSL context and the client-certificate trust, from files.
//!
//! A snapshot is immutable. Reloading builds a new one from the files and
//! publishes it; a build that fails leaves the old one in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use boring::pkey::PKey;
use boring::ssl::{
    AlpnError, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslSessionCacheMode,
    SslVerifyError, SslVerifyMode, SslVersion,
};
use boring::stack::Stack;
use boring::x509::store::X509StoreBuilder;
use boring::x509::{X509Name, X509};

use crate::config::{ClientCertMode, Config};
use crate::tls::tickets::TicketKeys;
use crate::tls::verify::{evaluate, Trust, Verdict};
use crate::trust::{Allowlist, AllowlistError};

/// TLS 1.2 suites: ECDHE with AEAD only, AES-128-GCM first. (TLS 1.3's suites are all AEAD.)
const TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// Key agreement groups, X25519 first.
const CURVES: &str = "X25519:P-256:P-384";

/// Why a snapshot could not be built. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{var}: cannot read {path}: {source}")]
    Read {
        /// The variable naming the file.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file's content is not what it should be.
    #[error("{var}: {path}: {problem}")]
    Content {
        /// The variable naming the file.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The private key is not the certificate's.
    #[error("{key_var}: the key in {key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// Variable naming the key.
        key_var: &'static str,
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
    },
    /// The thumbprint allowlist is invalid.
    #[error("CERTGATE_THUMBPRINTS: {0}")]
    Allowlist(#[from] AllowlistError),
    /// BoringSSL refused a setting (a bug or an unusual build).
    #[error("TLS setup ({what}): {source}")]
    Setup {
        /// What was being configured.
        what: &'static str,
        /// BoringSSL's error.
        source: boring::error::ErrorStack,
    },
}

fn setup(what: &'static str) -> impl FnOnce(boring::error::ErrorStack) -> TlsError {
    move |source| TlsError::Setup { what, source }
}

/// Everything a handshake needs, published to the workers as one unit.
pub struct Snapshot {
    /// Generation number (1 at start, +1 per successful reload).
    pub generation: u64,
    /// The server context (certificate, versions, ciphers, callbacks).
    pub ssl_ctx: SslContext,
    /// Client-certificate trust.
    pub trust: Arc<Trust>,
}

/// The files a snapshot is built from.
#[derive(Clone, Debug)]
pub struct SnapshotSources {
    /// Server chain PEM.
    pub cert: PathBuf,
    /// Server key PEM.
    pub key: PathBuf,
    /// Client CA bundle.
    pub client_ca: Option<PathBuf>,
    /// Allowlist.
    pub thumbprints: Option<PathBuf>,
}

fn read(var: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        var,
        path: path.to_owned(),
        source,
    })
}

fn content(var: &'static str, path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::Content {
        var,
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Index of the verdict stashed on a connection by the verify callback.
pub fn verdict_index() -> boring::ex_data::Index<Ssl, Verdict> {
    static INDEX: OnceLock<boring::ex_data::Index<Ssl, Verdict>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("BoringSSL ex_data index"))
}

fn load_certs(var: &'static str, path: &Path) -> Result<Vec<X509>, TlsError> {
    let pem = read(var, path)?;
    let certs = X509::stack_from_pem(&pem)
        .map_err(|e| content(var, path, format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(content(var, path, "contains no certificate"));
    }
    Ok(certs)
}

fn build_trust(config: &Config, src: &SnapshotSources, generation: u64) -> Result<Trust, TlsError> {
    use crate::config::CLIENT_CA;
    let mut bundle = std::collections::HashSet::new();
    let store = match &src.client_ca {
        None => None,
        Some(path) => {
            let mut b = X509StoreBuilder::new().map_err(setup("X509 store"))?;
            for cert in load_certs(CLIENT_CA, path)? {
                let digest = cert
                    .digest(boring::hash::MessageDigest::sha256())
                    .map_err(setup("bundle digest"))?;
                let mut d = [0u8; 32];
                d.copy_from_slice(&digest);
                bundle.insert(d);
                b.add_cert(&cert).map_err(|e| {
                    content(CLIENT_CA, path, format!("cannot add certificate: {e}"))
                })?;
            }
            let param = b.verify_param_mut();
            param.set_depth(config.max_chain_depth as i32);
            // SAFETY: `param` is the store's own live X509_VERIFY_PARAM;
            // X509_PURPOSE_SSL_CLIENT is a valid purpose id. The purpose makes
            // the verifier require clientAuth in a leaf's extended key usage.
            let ok = unsafe {
                boring_sys::X509_VERIFY_PARAM_set_purpose(
                    foreign_types::ForeignTypeRef::as_ptr(param),
                    boring_sys::X509_PURPOSE_SSL_CLIENT,
                )
            };
            if ok != 1 {
                return Err(setup("X509 purpose")(boring::error::ErrorStack::get()));
            }
            Some(b.build())
        }
    };
    let allowlist = match &src.thumbprints {
        None => None,
        Some(path) => Some(Allowlist::load(path).map_err(TlsError::Allowlist)?),
    };
    Ok(Trust {
        generation,
        mode: config.client_cert,
        store,
        bundle,
        allowlist,
    })
}

/// Build a snapshot from its files.
pub fn build_snapshot(
    config: &Config,
    src: &SnapshotSources,
    generation: u64,
    tickets: &Arc<TicketKeys>,
) -> Result<Snapshot, TlsError> {
    use crate::config::{CLIENT_CA, TLS_CERT, TLS_KEY};
    let trust = Arc::new(build_trust(config, src, generation)?);

    let mut b = SslContextBuilder::new(SslMethod::tls()).map_err(setup("context"))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(setup("min version"))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_3))
        .map_err(setup("max version"))?;
    b.set_strict_cipher_list(TLS12_CIPHERS)
        .map_err(setup("ciphers"))?;
    b.set_curves_list(CURVES).map_err(setup("curves"))?;
    b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::CIPHER_SERVER_PREFERENCE);
    b.set_session_cache_mode(SslSessionCacheMode::OFF);

    // Server certificate chain and key.
    let chain = load_certs(TLS_CERT, &src.cert)?;
    let key_pem = read(TLS_KEY, &src.key)?;
    let key = PKey::private_key_from_pem(&key_pem)
        .map_err(|e| content(TLS_KEY, &src.key, format!("not a PEM private key: {e}")))?;
    let mut chain = chain.into_iter();
    let leaf = chain.next().expect("load_certs returns at least one");
    b.set_certificate(&leaf).map_err(setup("certificate"))?;
    for extra in chain {
        b.add_extra_chain_cert(extra).map_err(setup("chain"))?;
    }
    let mismatch = || TlsError::KeyMismatch {
        key_var: TLS_KEY,
        cert: src.cert.clone(),
        key: src.key.clone(),
    };
    b.set_private_key(&key).map_err(|_| mismatch())?;
    b.check_private_key().map_err(|_| mismatch())?;

    // ALPN: HTTP/1.1 only for now; a client offering only h2 goes on without ALPN.
    b.set_alpn_select_callback(|_, client| {
        boring::ssl::select_next_proto(b"\x08http/1.1", client).ok_or(AlpnError::NOACK)
    });

    // Session tickets: our rotating keys; the session-id context ties a session
    // to this service and client-certificate mode.
    tickets.install(&mut b);
    let sid_ctx = boring::hash::hash(
        boring::hash::MessageDigest::sha256(),
        format!("certgate:{}", config.client_cert.as_str()).as_bytes(),
    )
    .map_err(setup("session id context"))?;
    b.set_session_id_context(&sid_ctx[..32])
        .map_err(setup("session id context"))?;

    // Client certificate: asked for in the first handshake, never later.
    if config.client_cert != ClientCertMode::Off {
        if let Some(path) = &src.client_ca {
            let mut names = Stack::new().map_err(setup("CA names"))?;
            for cert in load_certs(CLIENT_CA, path)? {
                let name = cert
                    .subject_name()
                    .to_der()
                    .and_then(|der| X509Name::from_der(&der))
                    .map_err(setup("CA names"))?;
                names.push(name).map_err(setup("CA names"))?;
            }
            b.set_client_ca_list(names);
        }
        let mode = match config.client_cert {
            ClientCertMode::Require => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            _ => SslVerifyMode::PEER,
        };
        let require = config.client_cert == ClientCertMode::Require;
        let cb_trust = Arc::clone(&trust);
        b.set_custom_verify_callback(mode, move |ssl| {
            let verdict = evaluate(&cb_trust, ssl);
            let rejected = match &verdict {
                Verdict::Failed(reason) if require => Some(reason.alert()),
                _ => None,
            };
            ssl.set_ex_data(verdict_index(), verdict);
            match rejected {
                Some(alert) => Err(SslVerifyError::Invalid(alert)),
                None => Ok(()),
            }
        });
    }

    Ok(Snapshot {
        generation,
        ssl_ctx: b.build(),
        trust,
    })
}
