//! `certgate check-config [FILE]`: validate a configuration without starting, and print the effective one.
//!
//! Beyond [`FileConfig::load`] it checks what needs other files: the global
//! TLS files (built exactly as the engine builds its snapshot), each host's
//! certificate and key (parse, key matches), and certificate ids against the
//! store directory when it exists.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{CertSource, FileConfig, FileError};
use crate::config::{Backend, ClientCertMode, Config, ConfigError, CONFIG, VARS};
use crate::trust::policy::{parse_serial, serial_hex, PolicySpec};

/// The outcome of a check.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Errors, each naming file, line and key (or the variable).
    pub problems: Vec<String>,
    /// Things not checked or worth knowing.
    pub warnings: Vec<String>,
    /// The effective configuration (empty when the file itself did not load).
    pub effective: String,
}

/// Where the store keeps certificates: `<state dir>/store/certificates/<id>.pem`
/// (see `store::persist`).
fn store_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("store").join("certificates")
}

/// Whether the store directory holds a certificate with this id (`<id>.pem`).
fn store_has(dir: &Path, id: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_suffix(".pem") == Some(id)
        })
    })
}

/// Checks `path` with the `CERTGATE_*` variables in `env` applied over its defaults.
pub fn check(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> CheckReport {
    let mut report = CheckReport::default();
    let file = match FileConfig::load(path) {
        Ok(f) => f,
        Err(FileError::Invalid(problems)) => {
            report.problems = problems.iter().map(ToString::to_string).collect();
            return report;
        }
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    let mut env: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, v)| k.starts_with("CERTGATE_") && !v.is_empty())
        .collect();
    env.insert(CONFIG.to_owned(), path.display().to_string());

    let from_file = |var: &str| {
        (!env.contains_key(var))
            .then(|| file.defaults.get(var))
            .flatten()
    };
    let config = match Config::from_vars(env.clone()) {
        Ok(c) => Some(c),
        Err(e) => {
            let var = match &e {
                ConfigError::Invalid { var, .. } | ConfigError::Missing { var, .. } => Some(*var),
                _ => None,
            };
            let located = var.and_then(|v| from_file(v).map(|l| (v, l.line)));
            report.problems.push(match located {
                Some((v, line)) => format!(
                    "{}:{line}: defaults.{}: {e}",
                    path.display(),
                    v.trim_start_matches("CERTGATE_")
                        .to_ascii_lowercase()
                        .replace('_', "-")
                ),
                None => format!("environment: {e}"),
            });
            None
        }
    };

    let hosts_use_global =
        file.hosts.is_empty() || file.hosts.iter().any(|h| h.cert == CertSource::Global);
    if let Some(c) = &config {
        if c.tls.is_none() && hosts_use_global {
            report.warnings.push(
                "no CERTGATE_TLS_CERT: hosts without cert/certificate use the development PKI"
                    .into(),
            );
        }
    }

    // Store certificate ids.
    let state_dir = config.as_ref().map(|c| c.state_dir.clone());
    let dir = state_dir.as_deref().map(store_dir).filter(|d| d.is_dir());
    let mut unchecked = Vec::new();
    let resolve = |id: &str| -> Option<[u8; 32]> {
        match &dir {
            Some(d) => store_has(d, id).then_some([0; 32]),
            None => Some([0; 32]),
        }
    };
    if let Err(e) = file.compile_policies(&resolve) {
        report
            .problems
            .extend(e.problems().iter().map(ToString::to_string));
    }

    // Hosts.
    for (i, host) in file.hosts.iter().enumerate() {
        let at = |k: &str| format!("{}:{}: hosts[{i}].{k}", path.display(), host.line);
        match &host.cert {
            CertSource::Files { cert, key } => match crate::tls::pki::Issued::load(cert, key) {
                Err(e) => report.problems.push(format!("{}: {e}", at("cert"))),
                Ok(issued) if !issued.key_matches() => report.problems.push(format!(
                    "{}: {} is not the private key of {}",
                    at("key"),
                    key.display(),
                    cert.display()
                )),
                Ok(_) => {}
            },
            CertSource::Store(id) => match &dir {
                Some(d) if !store_has(d, id) => report.problems.push(format!(
                    "{}: unknown certificate id {id:?}",
                    at("certificate")
                )),
                Some(_) => {}
                None => unchecked.push(id.clone()),
            },
            CertSource::Global => {}
        }
        if let Some(c) = &config {
            let mode = host.client_cert.unwrap_or(c.client_cert);
            let has_ca = c.tls.as_ref().is_none_or(|t| t.client_ca.is_some());
            if mode != ClientCertMode::Off && !has_ca {
                report.problems.push(format!(
                    "{}: client-cert is {} but CERTGATE_CLIENT_CA is not set",
                    at("client-cert"),
                    mode.as_str()
                ));
            }
        }
    }
    for entry in file.policies.values() {
        unchecked.extend(
            entry
                .spec
                .identities
                .iter()
                .filter_map(|i| i.certificate_id.clone()),
        );
    }
    if dir.is_none() && !unchecked.is_empty() {
        unchecked.sort();
        unchecked.dedup();
        report.warnings.push(format!(
            "certificate ids not checked (no store directory {}): {}",
            state_dir
                .as_deref()
                .map(store_dir)
                .unwrap_or_default()
                .display(),
            unchecked.join(", ")
        ));
    }

    // Last, and only when nothing else was found (so a problem is reported
    // once): the whole snapshot, built as the engine builds it — hosts,
    // certificates, keys, trust, policies. Hosts whose certificate is in the
    // store were checked one by one above.
    let uses_store = file
        .hosts
        .iter()
        .any(|h| matches!(h.cert, CertSource::Store(_)));
    // (Without CERTGATE_TLS_CERT the global certificate is the generated
    // development PKI, which needs no check.)
    if let (Some(c), true, false) = (&config, report.problems.is_empty(), uses_store) {
        if let Some(tls) = &c.tls {
            full_build(&mut report, c, tls, &file);
        }
    }
    report.effective = effective(&file, &env, config.as_ref());
    report
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn full_build(
    report: &mut CheckReport,
    c: &Config,
    tls: &crate::config::TlsFiles,
    file: &FileConfig,
) {
    let inputs = super::plan::PlanInputs {
        config: c,
        files: tls,
        // Not started by a check: any address stands in for it.
        echo: Some(SocketAddr::from(([127, 0, 0, 1], 9))),
        store: None,
    };
    let tickets = crate::tls::tickets::TicketKeys::new();
    match super::plan::sources(Some(file), &inputs) {
        Err(e) => report
            .problems
            .extend(e.problems().iter().map(ToString::to_string)),
        Ok(sources) => {
            if let Err(e) = crate::tls::context::build_snapshot(c, &sources, 1, &tickets) {
                report.problems.push(e.to_string());
            }
        }
    }
}

/// The effective configuration as TOML, every default spelled out.
fn effective(file: &FileConfig, env: &BTreeMap<String, String>, config: Option<&Config>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# effective configuration of {}", file.path.display());
    let _ = writeln!(out, "[defaults]");
    for v in VARS {
        if v.name == CONFIG {
            continue;
        }
        let key = v
            .name
            .trim_start_matches("CERTGATE_")
            .to_ascii_lowercase()
            .replace('_', "-");
        let (value, source) = match (env.get(v.name), file.defaults.get(v.name)) {
            (Some(e), _) => (quoted(e), "environment".to_owned()),
            (None, Some(l)) => (quoted(&l.value), format!("file, line {}", l.line)),
            (None, None) => (quoted(v.default), "default".to_owned()),
        };
        let _ = writeln!(out, "{key} = {value}  # {source}");
    }
    for (name, entry) in &file.policies {
        let _ = writeln!(out, "\n[policies.{}]  # line {}", quoted(name), entry.line);
        write_policy(&mut out, &entry.spec);
    }
    for host in &file.hosts {
        let _ = writeln!(out, "\n[[hosts]]  # line {}", host.line);
        let names: Vec<String> = host.names.iter().map(|n| quoted(n)).collect();
        let _ = writeln!(out, "names = [{}]", names.join(", "));
        let _ = writeln!(out, "default = {}", host.default);
        match &host.cert {
            CertSource::Files { cert, key } => {
                let _ = writeln!(out, "cert = {}", quoted(&cert.display().to_string()));
                let _ = writeln!(out, "key = {}", quoted(&key.display().to_string()));
            }
            CertSource::Store(id) => {
                let _ = writeln!(out, "certificate = {}", quoted(id));
            }
            CertSource::Global => {
                let cert = config
                    .and_then(|c| c.tls.as_ref())
                    .map_or("(development PKI)".to_owned(), |t| {
                        t.cert.display().to_string()
                    });
                let _ = writeln!(out, "# cert: CERTGATE_TLS_CERT = {}", quoted(&cert));
            }
        }
        let mode = match (host.client_cert, config) {
            (Some(m), _) => quoted(m.as_str()),
            (None, Some(c)) => {
                format!("{}  # CERTGATE_CLIENT_CERT", quoted(c.client_cert.as_str()))
            }
            (None, None) => "# CERTGATE_CLIENT_CERT".to_owned(),
        };
        let _ = writeln!(out, "client-cert = {mode}");
        let backend = |b: &Backend| match b {
            Backend::Http { authority, .. } => quoted(&format!("http://{authority}")),
            Backend::Echo => quoted("(built-in echo)"),
        };
        let b = match (&host.backend, config) {
            (Some(b), _) => backend(b),
            (None, Some(c)) => format!("{}  # CERTGATE_BACKEND", backend(&c.backend)),
            (None, None) => "# CERTGATE_BACKEND".to_owned(),
        };
        let _ = writeln!(out, "backend = {b}");
        match &host.policy {
            Some(p) => {
                let _ = writeln!(out, "policy = {}", quoted(p));
            }
            None => {
                let _ = writeln!(out, "# policy: every default (no identities)");
            }
        }
        for r in &host.routes {
            let _ = writeln!(out, "[[hosts.routes]]  # line {}", r.line);
            let _ = writeln!(out, "prefix = {}", quoted(&r.prefix));
            let _ = writeln!(out, "policy = {}", quoted(&r.policy));
        }
    }
    out
}

fn write_policy(out: &mut String, spec: &PolicySpec) {
    let _ = writeln!(out, "validate-revocation = {}", spec.validate_revocation);
    let _ = writeln!(out, "validate-trust = {}", spec.validate_trust);
    let _ = writeln!(out, "validate-not-before = {}", spec.validate_not_before);
    let _ = writeln!(out, "validate-not-after = {}", spec.validate_not_after);
    let _ = writeln!(out, "ignore-error = {}", spec.ignore_error);
    if spec.identities.is_empty() {
        let _ = writeln!(
            out,
            "identities = []  # any certificate that passes the checks"
        );
        return;
    }
    let _ = writeln!(out, "identities = [");
    for identity in &spec.identities {
        let attrs: Vec<String> = identity
            .attributes()
            .into_iter()
            .map(|(k, v)| {
                let v = match k {
                    "serial-number" => parse_serial(v).map_or(v.to_owned(), |s| serial_hex(&s)),
                    _ => v.to_owned(),
                };
                format!("{k} = {}", quoted(&v))
            })
            .collect();
        let _ = writeln!(out, "  {{ {} }},", attrs.join(", "));
    }
    let _ = writeln!(out, "]");
}

/// Runs the command: `file` or `$CERTGATE_CONFIG`. Prints the effective
/// configuration and returns 0, or prints the problems and returns 2.
pub fn run(file: Option<String>) -> u8 {
    let path = match file.or_else(|| std::env::var(CONFIG).ok().filter(|v| !v.is_empty())) {
        Some(p) => PathBuf::from(p),
        None => {
            eprintln!("certgate check-config: no file given and CERTGATE_CONFIG is not set");
            return 2;
        }
    };
    let report = check(&path, std::env::vars());
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if report.problems.is_empty() {
        print!("{}", report.effective);
        eprintln!("{}: configuration OK", path.display());
        0
    } else {
        for p in &report.problems {
            eprintln!("error: {p}");
        }
        eprintln!("{}: {} error(s)", path.display(), report.problems.len());
        2
    }
}
