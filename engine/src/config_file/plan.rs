//! From a configuration file (or none) and the environment to the hosts a snapshot is built from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::{CertSource, FileConfig, FileError};
use crate::config::{Backend, Config, TlsFiles};
use crate::store::StoreContents;
use crate::tls::context::{HostPlan, Route, ServerCert, SnapshotSources};
use crate::trust::policy::CompiledPolicy;

/// What the hosts may refer to outside the file.
pub struct PlanInputs<'a> {
    /// The validated configuration (environment over the file's `[defaults]`).
    pub config: &'a Config,
    /// The global server certificate and trust files (environment, or the development PKI).
    pub files: &'a TlsFiles,
    /// The built-in echo backend's address, when it runs.
    pub echo: Option<SocketAddr>,
    /// The certificate store: host certificates by id, trusted CAs, and the
    /// certificates `certificate-id` identities name. `None` (check-config):
    /// every id is taken to exist.
    pub store: Option<&'a StoreContents>,
}

fn backend_addr(backend: &Backend, echo: Option<SocketAddr>) -> Option<SocketAddr> {
    match backend {
        Backend::Http { addr, .. } => Some(*addr),
        Backend::Echo => echo,
    }
}

/// The snapshot sources: the file's hosts, or the single catch-all host of
/// the environment when there is no file or it declares no host.
pub fn sources(
    file: Option<&FileConfig>,
    inputs: &PlanInputs<'_>,
) -> Result<SnapshotSources, FileError> {
    let config = inputs.config;
    let files = inputs.files;
    let default_backend = backend_addr(&config.backend, inputs.echo);
    let single = || {
        let backend = default_backend.ok_or_else(|| {
            FileError::Invalid(vec![super::FileProblem {
                file: PathBuf::from("environment"),
                line: 0,
                key: crate::config::BACKEND.into(),
                message: "the echo backend is not running".into(),
            }])
        })?;
        let mut sources = SnapshotSources::single_host(files, config.client_cert, backend);
        sources.extra_cas = store_cas(inputs.store);
        Ok(sources)
    };
    let Some(file) = file else {
        return single();
    };
    if file.hosts.is_empty() {
        return single();
    }
    let sha256 = |id: &str| -> Option<[u8; 32]> {
        match inputs.store {
            None => Some([0; 32]),
            Some(store) => store
                .certificates
                .get(id)
                .map(|e| e.material.meta.digests.sha256),
        }
    };
    let policies: BTreeMap<String, Arc<CompiledPolicy>> = file.compile_policies(&sha256)?;
    let mut store_users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, p) in &policies {
        for id in p.referenced_certificate_ids() {
            store_users
                .entry(id.clone())
                .or_default()
                .push(format!("policy {name:?} (certificate-id)"));
        }
    }
    let policy = |name: &Option<String>| match name {
        None => Some(Arc::new(CompiledPolicy::default())),
        Some(n) => policies.get(n).cloned(),
    };
    let mut problems = Vec::new();
    let mut hosts = Vec::with_capacity(file.hosts.len());
    for (i, h) in file.hosts.iter().enumerate() {
        let at = |k: &str| format!("{}:{}: hosts[{i}].{k}", file.path.display(), h.line);
        let cert = match &h.cert {
            CertSource::Files { cert, key } => ServerCert::Files {
                cert: cert.clone(),
                key: key.clone(),
                cert_origin: at("cert"),
                key_origin: at("key"),
            },
            CertSource::Global => ServerCert::Files {
                cert: files.cert.clone(),
                key: files.key.clone(),
                cert_origin: crate::config::TLS_CERT.to_owned(),
                key_origin: crate::config::TLS_KEY.to_owned(),
            },
            CertSource::Store(id) => {
                store_users.entry(id.clone()).or_default().push(format!(
                    "host {:?} (certificate)",
                    h.names.first().map_or("*", |n| n.as_str())
                ));
                // (check-config, which has no store, does not build hosts that use it.)
                let Some(store) = inputs.store else {
                    continue;
                };
                match store
                    .certificates
                    .get(id)
                    .and_then(|e| e.material.key.clone().map(|k| (e, k)))
                {
                    Some((e, key)) => ServerCert::Stored {
                        id: id.clone(),
                        chain: std::iter::once(e.material.cert.clone())
                            .chain(e.material.chain.iter().cloned())
                            .collect(),
                        key,
                    },
                    None => {
                        problems.push(file.problem(
                            h.line,
                            &format!("hosts[{i}].certificate"),
                            format!(
                                "no certificate with a private key has the id {id:?} in the store"
                            ),
                        ));
                        continue;
                    }
                }
            }
        };
        let backend = match &h.backend {
            Some(b) => backend_addr(b, inputs.echo),
            None => default_backend,
        };
        let Some(backend) = backend else {
            problems.push(file.problem(
                h.line,
                &format!("hosts[{i}].backend"),
                "the echo backend is not running",
            ));
            continue;
        };
        let Some(host_policy) = policy(&h.policy) else {
            problems.push(file.problem(h.line, &format!("hosts[{i}].policy"), "unknown policy"));
            continue;
        };
        let mut routes = Vec::with_capacity(h.routes.len());
        for (r, route) in h.routes.iter().enumerate() {
            match policy(&Some(route.policy.clone())) {
                Some(p) => routes.push(Route {
                    prefix: route.prefix.clone(),
                    policy: p,
                }),
                None => problems.push(file.problem(
                    route.line,
                    &format!("hosts[{i}].routes[{r}].policy"),
                    format!("unknown policy {:?}", route.policy),
                )),
            }
        }
        hosts.push(HostPlan {
            names: h.names.clone(),
            default: h.default,
            cert,
            mode: h.client_cert.unwrap_or(config.client_cert),
            backend,
            policy: host_policy,
            routes,
        });
    }
    if !problems.is_empty() {
        return Err(FileError::Invalid(problems));
    }
    Ok(SnapshotSources {
        hosts,
        client_ca: files.client_ca.clone(),
        extra_cas: store_cas(inputs.store),
        thumbprints: files.thumbprints.clone(),
        store_users,
        revocation: Arc::new(crate::trust::RevocationIndex::not_configured()),
        cdp: None,
    })
}

/// The store's trusted CAs (each entry's certificate and the ones that came with it).
fn store_cas(store: Option<&StoreContents>) -> Vec<boring::x509::X509> {
    let Some(store) = store else {
        return Vec::new();
    };
    store
        .ca_certificates
        .values()
        .flat_map(|e| {
            std::iter::once(e.material.cert.clone()).chain(e.material.chain.iter().cloned())
        })
        .collect()
}

/// Whether any host (or the default) uses the built-in echo backend.
pub fn uses_echo(file: Option<&FileConfig>, config: &Config) -> bool {
    matches!(config.backend, Backend::Echo)
        || file.is_some_and(|f| {
            f.hosts
                .iter()
                .any(|h| matches!(h.backend, Some(Backend::Echo)))
        })
}
