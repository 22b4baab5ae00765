//! The `CERTGATE_CONFIG` TOML file: defaults for `CERTGATE_*` variables, hosts, routes and policies.
//!
//! [`FileConfig::load`] reads and checks the file; every problem names the
//! file, the line and the key path (`certgate.toml:17: hosts[1].routes[0].policy:
//! unknown policy "admins"`). Checks that need other files (certificates, the
//! store) are in [`check`], which `certgate check-config` runs. The shape of
//! the file is documented in `docs/configuration-file.md`.

pub mod check;
pub mod hosts;
pub mod plan;
pub mod routes;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::config::{Backend, ClientCertMode};
use crate::trust::policy::{CompiledPolicy, PolicyError, PolicySpec};

pub use hosts::{authority_of_target, normalise_authority, HostMatcher};
pub use routes::{routing_segments, RouteTable};

// === errors ===

/// One problem in the file, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProblem {
    /// The file, as given.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The key path, e.g. `hosts[1].routes[0].policy` (empty for a syntax error).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("CERTGATE_CONFIG: cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file has one or more problems, each located (one per line when displayed).
    #[error("{}", display_problems(.0))]
    Invalid(Vec<FileProblem>),
}

fn display_problems(problems: &[FileProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl FileError {
    /// The located problems (empty for a read error).
    pub fn problems(&self) -> &[FileProblem] {
        match self {
            FileError::Read { .. } => &[],
            FileError::Invalid(p) => p,
        }
    }
}

// === the resolved model ===

/// A value with the line it was written on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// 1-based line in the file.
    pub line: usize,
}

/// A named policy as written in `[policies.NAME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyEntry {
    /// The policy.
    pub spec: PolicySpec,
    /// The line of its table header.
    pub line: usize,
    /// The line of each identity entry, by index.
    pub identity_lines: Vec<usize>,
}

/// Where a host's server certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// `cert` + `key` files (relative paths are relative to the configuration file).
    Files {
        /// Chain PEM, leaf first.
        cert: PathBuf,
        /// Private key PEM.
        key: PathBuf,
    },
    /// `certificate`: an id in the certificate store.
    Store(String),
    /// Neither given: `CERTGATE_TLS_CERT` / `CERTGATE_TLS_KEY`.
    Global,
}

/// A route: a path prefix and the policy for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// The prefix as written (it matches whole path segments).
    pub prefix: String,
    /// The policy name (exists in [`FileConfig::policies`]).
    pub policy: String,
    /// The line of its `[[hosts.routes]]` header.
    pub line: usize,
}

/// A `[[hosts]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// SNI names, canonical (lower-case, no trailing dot); `*.` wildcards kept.
    pub names: Vec<String>,
    /// `default = true`: serves connections without SNI or with an unknown one.
    pub default: bool,
    /// The server certificate.
    pub cert: CertSource,
    /// `client-cert`; `None`: `CERTGATE_CLIENT_CERT`.
    pub client_cert: Option<ClientCertMode>,
    /// `backend`; `None`: `CERTGATE_BACKEND`.
    pub backend: Option<Backend>,
    /// The host's policy; `None`: a policy with every default.
    pub policy: Option<String>,
    /// Routes in file order.
    pub routes: Vec<RouteSpec>,
    /// The line of its `[[hosts]]` header.
    pub line: usize,
}

impl HostSpec {
    /// The routing table: each route's policy by longest prefix, else the host's policy.
    /// `None` stands for the policy with every default.
    pub fn route_table(&self) -> RouteTable<Option<String>> {
        RouteTable::new(
            self.policy.clone(),
            self.routes
                .iter()
                .map(|r| (r.prefix.as_str(), Some(r.policy.clone()))),
        )
    }
}

/// The checked configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileConfig {
    /// The file, as given.
    pub path: PathBuf,
    /// `[defaults]` by variable name (`CERTGATE_LISTEN`), values as strings.
    pub defaults: BTreeMap<String, Located<String>>,
    /// `[policies.NAME]`.
    pub policies: BTreeMap<String, PolicyEntry>,
    /// `[[hosts]]` in file order.
    pub hosts: Vec<HostSpec>,
}

// === the raw file ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: BTreeMap<String, toml::Value>,
    #[serde(default)]
    policies: BTreeMap<String, PolicySpec>,
    #[serde(default)]
    hosts: Vec<RawHost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawHost {
    names: Vec<String>,
    #[serde(default)]
    default: bool,
    cert: Option<String>,
    key: Option<String>,
    certificate: Option<String>,
    client_cert: Option<String>,
    backend: Option<String>,
    policy: Option<String>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    policy: String,
}

// === locating keys ===

/// One step of a key path.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                let bare = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if bare {
                    s.push_str(k);
                } else {
                    s.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Maps key paths to lines and error offsets to key paths, from the spanned parse.
struct Locator<'t> {
    text: &'t str,
    root: Option<DeTable<'t>>,
}

impl<'t> Locator<'t> {
    fn new(text: &'t str) -> Self {
        let root = DeTable::parse(text).ok().map(|t| t.into_inner());
        Locator { text, root }
    }

    fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The line of the deepest existing element of `path` (its key, or its
    /// table header for an array element).
    fn line_of(&self, path: &[Seg]) -> usize {
        let Some(root) = &self.root else { return 1 };
        let mut offset = 0;
        let mut table = Some(root);
        let mut array: Option<&[toml::Spanned<DeValue<'t>>]> = None;
        for seg in path {
            let value = match (seg, table, array) {
                (Seg::Key(k), Some(t), _) => {
                    match t
                        .iter()
                        .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                    {
                        Some((key, v)) => {
                            offset = key.span().start;
                            v
                        }
                        None => break,
                    }
                }
                (Seg::Index(i), _, Some(a)) => match a.get(*i) {
                    Some(v) => {
                        offset = v.span().start;
                        v
                    }
                    None => break,
                },
                _ => break,
            };
            (table, array) = match value.get_ref() {
                DeValue::Table(t) => (Some(t), None),
                DeValue::Array(a) => (None, Some(&a[..])),
                _ => (None, None),
            };
        }
        self.line_at(offset)
    }

    /// The key path of the smallest element whose key or value span holds `offset`.
    fn path_at(&self, offset: usize) -> String {
        fn consider(
            span: std::ops::Range<usize>,
            path: &[Seg],
            offset: usize,
            best: &mut Option<(usize, String)>,
        ) {
            if span.contains(&offset) || span.start == offset {
                let len = span.len();
                if best.as_ref().is_none_or(|(l, _)| len <= *l) {
                    *best = Some((len, path_string(path)));
                }
            }
        }
        fn walk<'a>(
            value: &DeValue<'a>,
            path: &mut Vec<Seg>,
            offset: usize,
            best: &mut Option<(usize, String)>,
        ) {
            match value {
                DeValue::Table(t) => {
                    for (k, v) in t.iter() {
                        path.push(Seg::Key(k.get_ref().to_string()));
                        consider(k.span(), path, offset, best);
                        consider(v.span(), path, offset, best);
                        walk(v.get_ref(), path, offset, best);
                        path.pop();
                    }
                }
                DeValue::Array(a) => {
                    for (i, v) in a.iter().enumerate() {
                        path.push(Seg::Index(i));
                        consider(v.span(), path, offset, best);
                        walk(v.get_ref(), path, offset, best);
                        path.pop();
                    }
                }
                _ => {}
            }
        }
        let Some(root) = &self.root else {
            return String::new();
        };
        let mut best = None;
        walk(
            &DeValue::Table(root.clone()),
            &mut Vec::new(),
            offset,
            &mut best,
        );
        best.map(|(_, p)| p).unwrap_or_default()
    }
}

// === loading ===

struct Problems<'a, 't> {
    file: &'a Path,
    locator: &'a Locator<'t>,
    list: Vec<FileProblem>,
}

impl Problems<'_, '_> {
    fn add(&mut self, path: &[Seg], message: impl Into<String>) {
        self.list.push(FileProblem {
            file: self.file.to_owned(),
            line: self.locator.line_of(path),
            key: path_string(path),
            message: message.into(),
        });
    }
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// `listen` / `client-ca` / `CLIENT_CA` → `CERTGATE_LISTEN` / `CERTGATE_CLIENT_CA`.
pub fn var_name(key: &str) -> String {
    format!("CERTGATE_{}", key.replace('-', "_").to_ascii_uppercase())
}

fn default_value(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::Array(_) | toml::Value::Table(_) => None,
                other => default_value(other),
            })
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

/// A host name as configured: canonical, and whether it is valid.
fn canonical_host_name(name: &str) -> Result<String, String> {
    let n = crate::trust::names::canonical_dns_name(name);
    let body = n.strip_prefix("*.").unwrap_or(&n);
    if body.is_empty() {
        return Err(format!("{name:?} is not a host name"));
    }
    for label in body.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            let hint = if label.contains('*') {
                " (a wildcard is allowed only as the whole first label: \"*.example.com\")"
            } else {
                ""
            };
            return Err(format!("{name:?} is not a valid host name{hint}"));
        }
    }
    Ok(n)
}

impl FileConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<FileConfig, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
        FileConfig::parse(path, &text)
    }

    /// Checks `text` as the content of `path` (which only names it in messages
    /// and anchors relative certificate paths).
    pub fn parse(path: &Path, text: &str) -> Result<FileConfig, FileError> {
        let locator = Locator::new(text);
        let raw: RawFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                let key = if locator.root.is_some() {
                    locator.path_at(offset)
                } else {
                    String::new()
                };
                return Err(FileError::Invalid(vec![FileProblem {
                    file: path.to_owned(),
                    line: locator.line_at(offset),
                    key,
                    message: e.message().trim().to_owned(),
                }]));
            }
        };
        let mut problems = Problems {
            file: path,
            locator: &locator,
            list: Vec::new(),
        };
        let base = path.parent().unwrap_or(Path::new(""));

        // [defaults]
        let mut defaults = BTreeMap::new();
        for (k, v) in &raw.defaults {
            let at = [key("defaults"), key(k)];
            let var = var_name(k);
            let known = crate::config::VARS.iter().any(|v| v.name == var);
            if !known || var == crate::config::CONFIG {
                problems.add(
                    &at,
                    format!("unknown setting (no variable {var}; see certgate --help)"),
                );
                continue;
            }
            let Some(value) = default_value(v) else {
                problems.add(&at, "expected a string, number, boolean or a list of them");
                continue;
            };
            let line = locator.line_of(&at);
            if let Some(Located { line: first, .. }) =
                defaults.insert(var.clone(), Located { value, line })
            {
                problems.add(&at, format!("{var} is already set on line {first}"));
            }
        }

        // [policies.NAME]
        let mut policies = BTreeMap::new();
        for (name, spec) in &raw.policies {
            let at = [key("policies"), key(name)];
            let identity_lines: Vec<usize> = (0..spec.identities.len())
                .map(|i| {
                    locator.line_of(&[key("policies"), key(name), key("identities"), Seg::Index(i)])
                })
                .collect();
            // Certificate ids are resolved against the store later; here any id will do.
            if let Err(e) = CompiledPolicy::compile(spec, &|_| Some([0; 32])) {
                let mut p = at.to_vec();
                p.extend([key("identities"), Seg::Index(e.identity_index())]);
                if let PolicyError::BadAttribute { attribute, .. } = &e {
                    p.push(key(attribute));
                }
                let message = e.to_string();
                let message = message
                    .split_once(": ")
                    .map_or(message.as_str(), |(_, m)| m);
                problems.add(&p, message);
            }
            policies.insert(
                name.clone(),
                PolicyEntry {
                    spec: spec.clone(),
                    line: locator.line_of(&at),
                    identity_lines,
                },
            );
        }

        // [[hosts]]
        let mut hosts = Vec::new();
        let mut seen_names: HashMap<String, usize> = HashMap::new();
        let mut default_host: Option<usize> = None;
        for (h, raw_host) in raw.hosts.iter().enumerate() {
            let at = |rest: &[Seg]| {
                let mut p = vec![key("hosts"), Seg::Index(h)];
                p.extend_from_slice(rest);
                p
            };
            let line = locator.line_of(&at(&[]));
            if raw_host.names.is_empty() {
                problems.add(&at(&[key("names")]), "a host needs at least one name");
            }
            let mut names = Vec::new();
            for (i, n) in raw_host.names.iter().enumerate() {
                let name_at = at(&[key("names"), Seg::Index(i)]);
                match canonical_host_name(n) {
                    Err(m) => problems.add(&name_at, m),
                    Ok(c) => {
                        if let Some(first) = seen_names.get(&c) {
                            problems.add(
                                &name_at,
                                format!("duplicate host name {c:?} (already on line {first})"),
                            );
                        } else {
                            seen_names.insert(c.clone(), locator.line_of(&name_at));
                            names.push(c);
                        }
                    }
                }
            }
            if raw_host.default {
                if let Some(first) = default_host {
                    problems.add(
                        &at(&[key("default")]),
                        format!(
                            "two default hosts: hosts[{first}] (line {}) is already the default",
                            hosts.get(first).map_or(0, |f: &HostSpec| f.line)
                        ),
                    );
                } else {
                    default_host = Some(h);
                }
            }
            let resolve = |p: &str| {
                let p = Path::new(p);
                if p.is_relative() {
                    base.join(p)
                } else {
                    p.to_owned()
                }
            };
            let cert = match (&raw_host.cert, &raw_host.key, &raw_host.certificate) {
                (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                    problems.add(
                        &at(&[key("certificate")]),
                        "give either cert + key files or a store certificate, not both",
                    );
                    CertSource::Global
                }
                (Some(c), Some(k), None) => CertSource::Files {
                    cert: resolve(c),
                    key: resolve(k),
                },
                (Some(_), None, None) => {
                    problems.add(&at(&[key("cert")]), "cert is set but key is not");
                    CertSource::Global
                }
                (None, Some(_), None) => {
                    problems.add(&at(&[key("key")]), "key is set but cert is not");
                    CertSource::Global
                }
                (None, None, Some(id)) => CertSource::Store(id.clone()),
                (None, None, None) => CertSource::Global,
            };
            let client_cert = raw_host.client_cert.as_deref().and_then(|m| {
                let mode = ClientCertMode::parse(m);
                if mode.is_none() {
                    problems.add(
                        &at(&[key("client-cert")]),
                        format!("bad mode {m:?}: expected off, optional, request or require"),
                    );
                }
                mode
            });
            let backend = raw_host.backend.as_deref().and_then(|b| {
                crate::config::parse_backend(b)
                    .map_err(|e| {
                        let msg = e.to_string();
                        let msg = msg.split_once(": ").map_or(msg.as_str(), |(_, m)| m);
                        problems.add(&at(&[key("backend")]), format!("{b:?}: {msg}"));
                    })
                    .ok()
            });
            let known_policy = |name: &str, path: &[Seg], problems: &mut Problems<'_, '_>| {
                if !raw.policies.contains_key(name) {
                    problems.add(path, format!("unknown policy {name:?}"));
                }
            };
            if let Some(p) = &raw_host.policy {
                known_policy(p, &at(&[key("policy")]), &mut problems);
            }
            let mut routes = Vec::new();
            let mut prefixes: HashMap<String, usize> = HashMap::new();
            for (r, raw_route) in raw_host.routes.iter().enumerate() {
                let route_at = |k: &str| at(&[key("routes"), Seg::Index(r), key(k)]);
                let route_line = locator.line_of(&at(&[key("routes"), Seg::Index(r)]));
                if !raw_route.prefix.starts_with('/') {
                    problems.add(
                        &route_at("prefix"),
                        format!("{:?}: a prefix starts with '/'", raw_route.prefix),
                    );
                } else {
                    let canonical = routing_segments(&raw_route.prefix).join("/");
                    if let Some(first) = prefixes.insert(canonical, route_line) {
                        problems.add(
                            &route_at("prefix"),
                            format!(
                                "{:?} is the same prefix as the route on line {first}",
                                raw_route.prefix
                            ),
                        );
                    }
                }
                known_policy(&raw_route.policy, &route_at("policy"), &mut problems);
                routes.push(RouteSpec {
                    prefix: raw_route.prefix.clone(),
                    policy: raw_route.policy.clone(),
                    line: route_line,
                });
            }
            hosts.push(HostSpec {
                names,
                default: raw_host.default,
                cert,
                client_cert,
                backend,
                policy: raw_host.policy.clone(),
                routes,
                line,
            });
        }
        if default_host.is_none() {
            if let Some(first) = hosts.first_mut() {
                first.default = true;
            }
        }

        if !problems.list.is_empty() {
            problems.list.sort_by_key(|p| p.line);
            return Err(FileError::Invalid(problems.list));
        }
        Ok(FileConfig {
            path: path.to_owned(),
            defaults,
            policies,
            hosts,
        })
    }

    /// The `[defaults]` value for a variable (`CERTGATE_LISTEN`), if the file sets it.
    pub fn default_var(&self, name: &str) -> Option<String> {
        self.defaults.get(name).map(|l| l.value.clone())
    }

    /// The index of the default host (the one marked, else the first), if there are hosts.
    pub fn default_host(&self) -> Option<usize> {
        self.hosts.iter().position(|h| h.default)
    }

    /// The SNI → host matcher for [`FileConfig::hosts`] (`None` without hosts).
    pub fn host_matcher(&self) -> Option<HostMatcher> {
        HostMatcher::new(self.hosts.iter().map(|h| (&h.names[..], h.default)))
    }

    /// A problem at `line` / `key` of this file, for errors found later (e.g. by the store).
    pub fn problem(&self, line: usize, key: &str, message: impl Into<String>) -> FileProblem {
        FileProblem {
            file: self.path.clone(),
            line,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Compiles every policy; certificate ids go through `resolve_certificate_id`.
    /// Errors name the line and key of the identity at fault.
    pub fn compile_policies(
        &self,
        resolve_certificate_id: &dyn Fn(&str) -> Option<[u8; 32]>,
    ) -> Result<BTreeMap<String, Arc<CompiledPolicy>>, FileError> {
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, entry) in &self.policies {
            match CompiledPolicy::compile(&entry.spec, resolve_certificate_id) {
                Ok(p) => {
                    out.insert(name.clone(), Arc::new(p));
                }
                Err(e) => {
                    let i = e.identity_index();
                    let line = entry.identity_lines.get(i).copied().unwrap_or(entry.line);
                    let message = e.to_string();
                    let (k, m) = message.split_once(": ").unwrap_or(("", &message));
                    let at = path_string(&[key("policies"), key(name)]);
                    problems.push(self.problem(line, &format!("{at}.{k}"), m));
                }
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(FileError::Invalid(problems))
        }
    }
}

#[cfg(test)]
mod tests;
