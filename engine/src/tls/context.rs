//! Building a [`Snapshot`]: the server's SSL context and the client-certificate trust, from files.
//!
//! A snapshot is immutable. Reloading builds a new one from the files and
//! publishes it; a build that fails leaves the old one in force.

use std::net::SocketAddr;
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
use crate::config_file::{HostMatcher, RouteTable};
use crate::tls::tickets::TicketKeys;
use crate::tls::verify::{evaluate, now_unix, Presented, Trust, Verdict};
use crate::trust::policy::CompiledPolicy;
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
        /// What names the file: a variable, or a configuration file's line and key.
        var: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file's content is not what it should be.
    #[error("{var}: {path}: {problem}")]
    Content {
        /// What names the file: a variable, or a configuration file's line and key.
        var: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The private key is not the certificate's.
    #[error("{key_var}: the key in {key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// What names the key.
        key_var: String,
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
    },
    /// The host list is inconsistent.
    #[error("hosts: {0}")]
    Hosts(String),
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

/// One virtual host: the server certificate it presents, how it asks for
/// client certificates, and where its requests go.
pub struct HostCtx {
    /// Its first name (logs, metrics); `*` for the catch-all host of the single-host setup.
    pub name: String,
    /// Its context: certificate, and a session-ID context scoped to this host and its policy.
    pub ssl_ctx: SslContext,
    /// Client-certificate mode.
    pub mode: ClientCertMode,
    /// The backend its requests go to.
    pub backend: SocketAddr,
    /// The host's own policy.
    pub policy: Arc<CompiledPolicy>,
    /// Routes: path prefix → (route number, policy); number 0 is the host's own policy.
    pub routes: RouteTable<(usize, Arc<CompiledPolicy>)>,
}

impl HostCtx {
    /// The policy for a request target: the longest matching route's, else
    /// the host's, with a number identifying it within this host.
    pub fn policy_for(&self, target: &str) -> (usize, &Arc<CompiledPolicy>) {
        let (i, policy) = self.routes.route(target);
        (*i, policy)
    }
}

/// Everything a handshake needs, published to the workers as one unit.
pub struct Snapshot {
    /// Generation number (1 at start, +1 per successful reload).
    pub generation: u64,
    /// Client-certificate trust (shared by every host).
    pub trust: Arc<Trust>,
    /// The hosts; a connection starts on the default one and moves to the one its SNI names.
    pub hosts: Vec<HostCtx>,
    /// SNI name → host.
    pub names: Arc<HostMatcher>,
    /// Store certificate id → what uses it (hosts, policies).
    pub store_users: std::collections::BTreeMap<String, Vec<String>>,
    /// Every host's context, in host order. Only held: the SNI callbacks
    /// reach it through weak references, valid while this snapshot lives.
    #[allow(dead_code)]
    contexts: Arc<OnceLock<Vec<SslContext>>>,
}

impl Snapshot {
    /// The host serving connections with no or an unknown SNI name.
    pub fn default_host(&self) -> &HostCtx {
        &self.hosts[self.names.default_host()]
    }

    /// The context a new connection starts with (the default host's; the SNI
    /// callback moves it to its host's).
    pub fn initial_ctx(&self) -> &SslContext {
        &self.default_host().ssl_ctx
    }
}

/// Where a host's server certificate and key come from.
#[derive(Clone, Debug)]
pub enum ServerCert {
    /// PEM files.
    Files {
        /// Chain PEM, leaf first.
        cert: PathBuf,
        /// Key PEM.
        key: PathBuf,
        /// What names the certificate in errors (a variable, or `file:line: key`).
        cert_origin: String,
        /// What names the key in errors.
        key_origin: String,
    },
    /// A certificate in the store (with its private key).
    Stored {
        /// Its id.
        id: String,
        /// Leaf, then chain.
        chain: Vec<X509>,
        /// The matching key.
        key: PKey<boring::pkey::Private>,
    },
}

/// How one host is built.
#[derive(Clone, Debug)]
pub struct HostPlan {
    /// SNI names (`*.example.com` wildcards allowed); empty for a catch-all host.
    pub names: Vec<String>,
    /// Serves connections with no or an unknown SNI name.
    pub default: bool,
    /// The server certificate and key.
    pub cert: ServerCert,
    /// Client-certificate mode.
    pub mode: ClientCertMode,
    /// Where requests go.
    pub backend: SocketAddr,
    /// The host's client-certificate policy (routes without their own use it).
    pub policy: Arc<CompiledPolicy>,
    /// Path-prefix routes with their own policies.
    pub routes: Vec<Route>,
}

/// A path prefix and the policy for requests under it (whole segments:
/// `/admin` covers `/admin` and `/admin/…`, not `/administrator`; see
/// [`RouteTable`] for how request paths are normalised first).
#[derive(Clone, Debug)]
pub struct Route {
    /// The prefix.
    pub prefix: String,
    /// Its policy.
    pub policy: Arc<CompiledPolicy>,
}

/// The files a snapshot is built from.
#[derive(Clone, Debug)]
pub struct SnapshotSources {
    /// The hosts (at least one).
    pub hosts: Vec<HostPlan>,
    /// Client CA bundle.
    pub client_ca: Option<PathBuf>,
    /// Trusted CA certificates from the store, besides the bundle.
    pub extra_cas: Vec<X509>,
    /// Allowlist.
    pub thumbprints: Option<PathBuf>,
    /// Store certificate id → what uses it (hosts, policies): deleting it is refused.
    pub store_users: std::collections::BTreeMap<String, Vec<String>>,
    /// The revocation index in force (published by the CRL updater).
    pub revocation: Arc<crate::trust::RevocationIndex>,
    /// Where certificates' CRL distribution points go (`CERTGATE_CRL_FOLLOW_CDP=1`).
    pub cdp: Option<crate::tls::verify::CdpNotify>,
}

impl SnapshotSources {
    /// The single-host setup from the environment: one catch-all host.
    pub fn single_host(
        files: &crate::config::TlsFiles,
        mode: ClientCertMode,
        backend: SocketAddr,
    ) -> SnapshotSources {
        SnapshotSources {
            hosts: vec![HostPlan {
                names: Vec::new(),
                default: true,
                cert: ServerCert::Files {
                    cert: files.cert.clone(),
                    key: files.key.clone(),
                    cert_origin: crate::config::TLS_CERT.into(),
                    key_origin: crate::config::TLS_KEY.into(),
                },
                mode,
                backend,
                policy: Arc::new(CompiledPolicy::default()),
                routes: Vec::new(),
            }],
            client_ca: files.client_ca.clone(),
            extra_cas: Vec::new(),
            thumbprints: files.thumbprints.clone(),
            store_users: Default::default(),
            revocation: Arc::new(crate::trust::RevocationIndex::not_configured()),
            cdp: None,
        }
    }
}

/// Index of the host a connection's SNI selected (absent: the default host).
pub fn host_index() -> boring::ex_data::Index<Ssl, usize> {
    static INDEX: OnceLock<boring::ex_data::Index<Ssl, usize>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("BoringSSL ex_data index"))
}

/// The host a connection is on.
pub fn connection_host(ssl: &boring::ssl::SslRef, snapshot: &Snapshot) -> usize {
    ssl.ex_data(host_index())
        .copied()
        .unwrap_or(snapshot.names.default_host())
}

fn read(var: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        var: var.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn content(var: &str, path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::Content {
        var: var.to_owned(),
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// What the peer presented and the host policy's verdict, stashed on a
/// connection by the verify callback of a full handshake.
pub fn verdict_index() -> boring::ex_data::Index<Ssl, (Presented, Verdict)> {
    static INDEX: OnceLock<boring::ex_data::Index<Ssl, (Presented, Verdict)>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("BoringSSL ex_data index"))
}

fn load_certs(var: &str, path: &Path) -> Result<Vec<X509>, TlsError> {
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
    let file_cas = match &src.client_ca {
        None => Vec::new(),
        Some(path) => load_certs(CLIENT_CA, path)?,
    };
    let store = match file_cas.is_empty() && src.extra_cas.is_empty() {
        true => None,
        false => {
            let mut b = X509StoreBuilder::new().map_err(setup("X509 store"))?;
            for cert in file_cas.iter().chain(&src.extra_cas) {
                let digest = cert
                    .digest(boring::hash::MessageDigest::sha256())
                    .map_err(setup("bundle digest"))?;
                let mut d = [0u8; 32];
                d.copy_from_slice(&digest);
                if !bundle.insert(d) {
                    continue; // the same CA from the file and the store
                }
                b.add_cert(cert).map_err(setup("trust store"))?;
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
        store,
        bundle,
        allowlist,
        cas: file_cas
            .into_iter()
            .chain(src.extra_cas.iter().cloned())
            .collect(),
        revocation: Arc::clone(&src.revocation),
        crl_missing_allows: config.crl.missing == crate::revocation::MissingPolicy::Allow,
        cdp: src.cdp.clone(),
    })
}

fn verify_mode(mode: ClientCertMode) -> SslVerifyMode {
    match mode {
        ClientCertMode::Off => SslVerifyMode::NONE,
        ClientCertMode::Require => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        ClientCertMode::Optional | ClientCertMode::Request => SslVerifyMode::PEER,
    }
}

/// The CA names sent in the CertificateRequest.
fn ca_names(src: &SnapshotSources) -> Result<Option<Stack<X509Name>>, TlsError> {
    use crate::config::CLIENT_CA;
    let mut cas = match &src.client_ca {
        Some(path) => load_certs(CLIENT_CA, path)?,
        None => Vec::new(),
    };
    cas.extend(src.extra_cas.iter().cloned());
    if cas.is_empty() {
        return Ok(None);
    }
    let mut names = Stack::new().map_err(setup("CA names"))?;
    for cert in cas {
        let name = cert
            .subject_name()
            .to_der()
            .and_then(|der| X509Name::from_der(&der))
            .map_err(setup("CA names"))?;
        names.push(name).map_err(setup("CA names"))?;
    }
    Ok(Some(names))
}

/// What the shared verify callback needs: the trust, and each host's mode and policy.
struct VerifyPlan {
    trust: Arc<Trust>,
    /// Per host: its mode and its default policy (decides the handshake in `require` mode).
    hosts: Vec<(ClientCertMode, Arc<CompiledPolicy>)>,
    default: usize,
}

/// The context of one host. Every host's context carries the same SNI and
/// verify callbacks; the session-ID context is the host's own.
#[allow(clippy::too_many_arguments)] // `ktls`: one flag more than the lint's limit
fn build_host(
    plan: &HostPlan,
    index: usize,
    src: &SnapshotSources,
    verify: &Arc<VerifyPlan>,
    names: &Arc<HostMatcher>,
    contexts: &Arc<OnceLock<Vec<SslContext>>>,
    tickets: &Arc<TicketKeys>,
    ktls: bool,
) -> Result<SslContext, TlsError> {
    let mut b = SslContextBuilder::new(SslMethod::tls()).map_err(setup("context"))?;
    if ktls {
        // TLS 1.3 traffic secrets for the kernel handoff (tls/ktls).
        crate::tls::ktls::install_keylog(&mut b);
    }
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
    let (chain, key, mismatch) = match &plan.cert {
        ServerCert::Files {
            cert,
            key,
            cert_origin,
            key_origin,
        } => {
            let chain = load_certs(cert_origin, cert)?;
            let key_pem = read(key_origin, key)?;
            let pkey = PKey::private_key_from_pem(&key_pem)
                .map_err(|e| content(key_origin, key, format!("not a PEM private key: {e}")))?;
            let mismatch = TlsError::KeyMismatch {
                key_var: key_origin.clone(),
                cert: cert.clone(),
                key: key.clone(),
            };
            (chain, pkey, mismatch)
        }
        ServerCert::Stored { id, chain, key } => {
            let mismatch =
                TlsError::Hosts(format!("store certificate {id:?}: its key does not match"));
            (chain.clone(), key.clone(), mismatch)
        }
    };
    let mut chain = chain.into_iter();
    let Some(leaf) = chain.next() else {
        return Err(hosts_error("a host has an empty certificate chain".into()));
    };
    b.set_certificate(&leaf).map_err(setup("certificate"))?;
    for extra in chain {
        b.add_extra_chain_cert(extra).map_err(setup("chain"))?;
    }
    b.set_private_key(&key)
        .and_then(|()| b.check_private_key())
        .map_err(|_| mismatch)?;

    // ALPN: HTTP/1.1 only for now; a client offering only h2 goes on without ALPN.
    b.set_alpn_select_callback(|_, client| {
        boring::ssl::select_next_proto(b"\x08http/1.1", client).ok_or(AlpnError::NOACK)
    });

    // Session tickets: our rotating keys (BoringSSL uses the initial context's,
    // shared by all hosts). The session-ID context scopes a session to this
    // host and its client-certificate policy: a ticket issued under one SNI
    // name, or under another mode, does not resume here.
    tickets.install(&mut b);
    let mut scope = format!(
        "certgate\0host={}\0names={}\0mode={}\0policy=",
        index,
        plan.names.join(","),
        plan.mode.as_str()
    )
    .into_bytes();
    scope.extend_from_slice(&plan.policy.fingerprint());
    for route in &plan.routes {
        scope.extend_from_slice(route.prefix.as_bytes());
        scope.extend_from_slice(&route.policy.fingerprint());
    }
    let sid_ctx = boring::hash::hash(boring::hash::MessageDigest::sha256(), &scope)
        .map_err(setup("session id context"))?;
    b.set_session_id_context(&sid_ctx[..32])
        .map_err(setup("session id context"))?;

    // SNI: move the connection to its host's context before the session is
    // resumed or the certificate chosen.
    let cb_names = Arc::clone(names);
    let cb_verify = Arc::clone(verify);
    let cb_contexts = Arc::downgrade(contexts);
    b.set_servername_callback(move |ssl, _alert| {
        let host = cb_names.select(ssl.servername(boring::ssl::NameType::HOST_NAME));
        if host == cb_names.default_host() {
            return Ok(());
        }
        // The snapshot (which owns the contexts) outlives every handshake
        // started from it; if it is somehow gone, refuse rather than serve the
        // wrong host.
        let contexts = cb_contexts.upgrade();
        let Some(ctx) = contexts.as_ref().and_then(|c| c.get()).map(|c| &c[host]) else {
            return Err(boring::ssl::SniError::ALERT_FATAL);
        };
        if ssl.set_ssl_context(ctx).is_err() {
            return Err(boring::ssl::SniError::ALERT_FATAL);
        }
        ssl.set_verify(verify_mode(cb_verify.hosts[host].0));
        ssl.set_ex_data(host_index(), host);
        Ok(())
    });

    // Client certificate: asked for in the first handshake, never later.
    if let Some(names) = ca_names(src)? {
        b.set_client_ca_list(names);
    }
    let cb_verify = Arc::clone(verify);
    b.set_custom_verify_callback(verify_mode(plan.mode), move |ssl| {
        let host = ssl
            .ex_data(host_index())
            .copied()
            .unwrap_or(cb_verify.default);
        let (mode, policy) = &cb_verify.hosts[host];
        let presented = evaluate(&cb_verify.trust, ssl);
        let verdict = presented.decide(policy, now_unix());
        let rejected = match &verdict {
            Verdict::Failed(reason) if *mode == ClientCertMode::Require => Some(reason.alert()),
            _ => None,
        };
        ssl.set_ex_data(verdict_index(), (presented, verdict));
        match rejected {
            Some(alert) => Err(SslVerifyError::Invalid(alert)),
            None => Ok(()),
        }
    });
    Ok(b.build())
}

/// Why a host list is unusable.
fn hosts_error(problem: String) -> TlsError {
    TlsError::Hosts(problem)
}

/// Build a snapshot from its files.
pub fn build_snapshot(
    config: &Config,
    src: &SnapshotSources,
    generation: u64,
    tickets: &Arc<TicketKeys>,
) -> Result<Snapshot, TlsError> {
    let trust = Arc::new(build_trust(config, src, generation)?);
    if src.hosts.is_empty() {
        return Err(hosts_error("no host is configured".into()));
    }

    // Names and defaults were checked where the hosts were declared (the
    // configuration file names the line); the first claim of a name wins.
    let names = HostMatcher::new(src.hosts.iter().map(|h| (h.names.as_slice(), h.default)))
        .ok_or_else(|| hosts_error("no host is configured".into()))?;
    let names = Arc::new(names);

    let verify = Arc::new(VerifyPlan {
        trust: Arc::clone(&trust),
        hosts: src
            .hosts
            .iter()
            .map(|h| (h.mode, Arc::clone(&h.policy)))
            .collect(),
        default: names.default_host(),
    });
    let contexts = Arc::new(OnceLock::new());
    let mut hosts = Vec::with_capacity(src.hosts.len());
    let ktls = crate::tls::ktls::wanted(config);
    for (i, plan) in src.hosts.iter().enumerate() {
        let ssl_ctx = build_host(plan, i, src, &verify, &names, &contexts, tickets, ktls)?;
        hosts.push(HostCtx {
            name: plan.names.first().cloned().unwrap_or_else(|| "*".into()),
            ssl_ctx,
            mode: plan.mode,
            backend: plan.backend,
            policy: Arc::clone(&plan.policy),
            routes: RouteTable::new(
                (0, Arc::clone(&plan.policy)),
                plan.routes
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.prefix.as_str(), (i + 1, Arc::clone(&r.policy)))),
            ),
        });
    }
    let _ = contexts.set(hosts.iter().map(|h| h.ssl_ctx.clone()).collect());
    Ok(Snapshot {
        generation,
        trust,
        hosts,
        names,
        store_users: src.store_users.clone(),
        contexts,
    })
}
