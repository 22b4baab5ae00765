//! From a configuration file (or none) and the environment to the hosts a snapshot is built from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::{CertSource, FileConfig, FileError};
use crate::config::{Backend, Config, TlsFiles};
use crate::tls::context::{HostPlan, Route, SnapshotSources};
use crate::trust::policy::CompiledPolicy;

/// What the hosts may refer to outside the file.
pub struct PlanInputs<'a> {
    /// The validated configuration (environment over the file's `[defaults]`).
    pub config: &'a Config,
    /// The global server certificate and trust files (environment, or the development PKI).
    pub files: &'a TlsFiles,
    /// The built-in echo backend's address, when it runs.
    pub echo: Option<SocketAddr>,
    /// A store certificate's SHA-256 by id (for `certificate-id` identities).
    pub certificate_sha256: &'a dyn Fn(&str) -> Option<[u8; 32]>,
    /// A store certificate's chain and key files by id (for a host's `certificate`).
    pub certificate_files: &'a dyn Fn(&str) -> Option<(PathBuf, PathBuf)>,
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
        Ok(SnapshotSources::single_host(
            files,
            config.client_cert,
            backend,
        ))
    };
    let Some(file) = file else {
        return single();
    };
    if file.hosts.is_empty() {
        return single();
    }
    let policies: BTreeMap<String, Arc<CompiledPolicy>> =
        file.compile_policies(inputs.certificate_sha256)?;
    let policy = |name: &Option<String>| match name {
        None => Some(Arc::new(CompiledPolicy::default())),
        Some(n) => policies.get(n).cloned(),
    };
    let mut problems = Vec::new();
    let mut hosts = Vec::with_capacity(file.hosts.len());
    for (i, h) in file.hosts.iter().enumerate() {
        let at = |k: &str| format!("{}:{}: hosts[{i}].{k}", file.path.display(), h.line);
        let (cert, key, cert_origin, key_origin) = match &h.cert {
            CertSource::Files { cert, key } => (cert.clone(), key.clone(), at("cert"), at("key")),
            CertSource::Global => (
                files.cert.clone(),
                files.key.clone(),
                crate::config::TLS_CERT.to_owned(),
                crate::config::TLS_KEY.to_owned(),
            ),
            CertSource::Store(id) => match (inputs.certificate_files)(id) {
                Some((cert, key)) => (cert, key, at("certificate"), at("certificate")),
                None => {
                    problems.push(file.problem(
                        h.line,
                        &format!("hosts[{i}].certificate"),
                        format!("no certificate with a private key has the id {id:?} in the store"),
                    ));
                    continue;
                }
            },
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
            key,
            cert_origin,
            key_origin,
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
        thumbprints: files.thumbprints.clone(),
    })
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
