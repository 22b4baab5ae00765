//! The validate-client-certificate policy: its configuration, its compiled (indexed) form, and O(1) evaluation.
//!
//! A [`PolicySpec`] is what an operator writes. [`CompiledPolicy::compile`]
//! parses and normalises every identity once and indexes each entry under one
//! of its attributes (the most selective one it has), so that
//! [`CompiledPolicy::evaluate`] costs a handful of hash lookups whatever the
//! number of identities. The rules are documented in `docs/policy.md`.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::tls::facts::CertFacts;
use crate::tls::verify::Reason;
use crate::trust::names::{canonical_dns_name, DistinguishedName};
use crate::trust::thumbprint::{upper_hex, Thumbprint};

// === the configuration ===

/// A validate-client-certificate policy as configured (keys in kebab-case).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PolicySpec {
    /// Check the certificate against its issuer's CRL (default true).
    pub validate_revocation: bool,
    /// Require the chain to build to a trusted root (default true).
    pub validate_trust: bool,
    /// Reject certificates before their (chain's) not-before (default true).
    pub validate_not_before: bool,
    /// Reject certificates after their (chain's) not-after (default true).
    pub validate_not_after: bool,
    /// Forward failures as `X-Client-Cert-Verify: FAILED:<reason>` instead of denying (default false).
    pub ignore_error: bool,
    /// When non-empty, the certificate must match at least one entry.
    pub identities: Vec<IdentitySpec>,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            validate_revocation: true,
            validate_trust: true,
            validate_not_before: true,
            validate_not_after: true,
            ignore_error: false,
            identities: Vec::new(),
        }
    }
}

/// One identity entry: it matches when every attribute it gives matches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IdentitySpec {
    /// The leaf's SHA-1 or SHA-256 thumbprint, any spelling ([`Thumbprint::parse`]).
    pub thumbprint: Option<String>,
    /// The leaf's serial number in hex (any case, optional `0x` and `:`; leading zeros ignored).
    pub serial_number: Option<String>,
    /// A common name of the leaf's subject, exact and case-sensitive.
    pub common_name: Option<String>,
    /// The leaf's subject (RFC 4514 or `/`-form), compared canonically.
    pub subject: Option<String>,
    /// A SAN DNS name of the leaf (ASCII case-insensitive, trailing dot ignored).
    pub dns_name: Option<String>,
    /// A SAN URI of the leaf, exact (e.g. a SPIFFE ID).
    pub uri: Option<String>,
    /// The leaf's issuer name, compared canonically.
    pub issuer_subject: Option<String>,
    /// The issuer certificate's SHA-1 or SHA-256 thumbprint, any spelling.
    pub issuer_thumbprint: Option<String>,
    /// The id of a certificate in the store: the leaf must be that certificate (SHA-256).
    pub certificate_id: Option<String>,
}

impl IdentitySpec {
    /// The attributes given, as `(key, value)` in documentation order.
    pub fn attributes(&self) -> Vec<(&'static str, &str)> {
        [
            ("thumbprint", &self.thumbprint),
            ("serial-number", &self.serial_number),
            ("common-name", &self.common_name),
            ("subject", &self.subject),
            ("dns-name", &self.dns_name),
            ("uri", &self.uri),
            ("issuer-subject", &self.issuer_subject),
            ("issuer-thumbprint", &self.issuer_thumbprint),
            ("certificate-id", &self.certificate_id),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// Why a policy does not compile. Each names the identity (0-based index) and attribute.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An identity entry without any attribute (it would match every certificate).
    #[error("identities[{index}]: an identity needs at least one attribute (thumbprint, serial-number, common-name, subject, dns-name, uri, issuer-subject, issuer-thumbprint, certificate-id)")]
    EmptyIdentity {
        /// Index in `identities`.
        index: usize,
    },
    /// An attribute value that does not parse.
    #[error("identities[{index}].{attribute}: {problem}")]
    BadAttribute {
        /// Index in `identities`.
        index: usize,
        /// The attribute key, e.g. `serial-number`.
        attribute: &'static str,
        /// Why it does not parse.
        problem: String,
    },
    /// A `certificate-id` that names no certificate in the store.
    #[error("identities[{index}].certificate-id: unknown certificate id {id:?}")]
    UnknownCertificateId {
        /// Index in `identities`.
        index: usize,
        /// The id as written.
        id: String,
    },
}

impl PolicyError {
    /// The index of the identity at fault.
    pub fn identity_index(&self) -> usize {
        match self {
            PolicyError::EmptyIdentity { index }
            | PolicyError::BadAttribute { index, .. }
            | PolicyError::UnknownCertificateId { index, .. } => *index,
        }
    }
}

// === the decision ===

/// What a policy decides about a presented certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every enabled check passed.
    Allow,
    /// A check failed: 403 (or a TLS alert in require mode).
    Deny(Reason),
    /// A check failed but `ignore-error` is set: forward with `X-Client-Cert-Verify: FAILED:<reason>`.
    AllowFailed(Reason),
}

// === the compiled form ===

/// One parsed, normalised attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Attr {
    Thumbprint(Thumbprint),
    /// certificate-id, resolved to the stored certificate's SHA-256.
    CertificateSha256([u8; 32]),
    Serial(Box<[u8]>),
    Uri(Box<str>),
    DnsName(Box<str>),
    Subject(Box<DistinguishedName>),
    CommonName(Box<str>),
    IssuerThumbprint(Thumbprint),
    IssuerSubject(Box<DistinguishedName>),
}

impl Attr {
    /// Lower is more selective: entries are indexed by their lowest-ranked attribute.
    fn rank(&self) -> u8 {
        match self {
            Attr::Thumbprint(_) => 0,
            Attr::CertificateSha256(_) => 1,
            Attr::Serial(_) => 2,
            Attr::Uri(_) => 3,
            Attr::DnsName(_) => 4,
            Attr::Subject(_) => 5,
            Attr::CommonName(_) => 6,
            Attr::IssuerThumbprint(_) => 7,
            Attr::IssuerSubject(_) => 8,
        }
    }

    fn matches(&self, f: &CertFacts) -> bool {
        match self {
            Attr::Thumbprint(t) => f.digests.matches(t),
            Attr::CertificateSha256(h) => f.digests.sha256 == *h,
            Attr::Serial(s) => *f.serial == **s,
            Attr::Uri(u) => f.uris.iter().any(|x| **x == **u),
            Attr::DnsName(d) => f.dns_names.iter().any(|x| **x == **d),
            Attr::Subject(n) => f.subject == **n,
            Attr::CommonName(c) => f.common_names.iter().any(|x| **x == **c),
            Attr::IssuerThumbprint(t) => f.issuer_digests.is_some_and(|d| d.matches(t)),
            Attr::IssuerSubject(n) => f.issuer_subject == **n,
        }
    }

    /// Unambiguous bytes for the policy fingerprint: a tag, a length, the value.
    fn encode(&self, out: &mut Vec<u8>) {
        let (tag, bytes): (u8, Vec<u8>) = match self {
            Attr::Thumbprint(t) => (b't', t.as_bytes().to_vec()),
            Attr::CertificateSha256(h) => (b'c', h.to_vec()),
            Attr::Serial(s) => (b's', s.to_vec()),
            Attr::Uri(u) => (b'u', u.as_bytes().to_vec()),
            Attr::DnsName(d) => (b'd', d.as_bytes().to_vec()),
            Attr::Subject(n) => (b'n', n.to_string().into_bytes()),
            Attr::CommonName(c) => (b'm', c.as_bytes().to_vec()),
            Attr::IssuerThumbprint(t) => (b'i', t.as_bytes().to_vec()),
            Attr::IssuerSubject(n) => (b'j', n.to_string().into_bytes()),
        };
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
}

/// The entries indexed under one key: either one of them is fully matched by
/// the key alone, or each still has attributes to check.
#[derive(Debug)]
enum Bucket {
    Any,
    Rest(Vec<Box<[Attr]>>),
}

impl Bucket {
    fn add(&mut self, rest: Vec<Attr>) {
        match self {
            Bucket::Any => {}
            Bucket::Rest(_) if rest.is_empty() => *self = Bucket::Any,
            Bucket::Rest(v) => v.push(rest.into_boxed_slice()),
        }
    }

    fn new(rest: Vec<Attr>) -> Bucket {
        if rest.is_empty() {
            Bucket::Any
        } else {
            Bucket::Rest(vec![rest.into_boxed_slice()])
        }
    }

    fn matches(&self, f: &CertFacts) -> bool {
        match self {
            Bucket::Any => true,
            Bucket::Rest(entries) => entries.iter().any(|e| e.iter().all(|a| a.matches(f))),
        }
    }
}

/// Hashes a digest key by its first eight bytes: the keys are SHA-1/SHA-256
/// values of configured certificates, already uniform.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(head);
    }

    fn write_usize(&mut self, _len: usize) {}
}

type DigestMap<const N: usize> = HashMap<[u8; N], Bucket, BuildHasherDefault<DigestHasher>>;

/// An unkeyed multiply-rotate hash (FxHash) for names, URIs and serials. The
/// keys come from the configuration, not from clients: a client chooses only
/// what is looked up, which cannot lengthen the probe sequences of fixed keys.
/// SipHash cost more than the rest of an evaluation together.
#[derive(Default)]
struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

type NameMap<K> = HashMap<K, Bucket, BuildHasherDefault<FxHasher>>;

/// Every entry, indexed under exactly one of its attributes.
#[derive(Debug, Default)]
struct IdentityIndex {
    sha1: DigestMap<20>,
    sha256: DigestMap<32>,
    serial: NameMap<Box<[u8]>>,
    uri: NameMap<Box<str>>,
    dns_name: NameMap<Box<str>>,
    subject: NameMap<DistinguishedName>,
    common_name: NameMap<Box<str>>,
    issuer_sha1: DigestMap<20>,
    issuer_sha256: DigestMap<32>,
    issuer_subject: NameMap<DistinguishedName>,
}

fn add_to<K: std::hash::Hash + Eq, S: std::hash::BuildHasher>(
    map: &mut HashMap<K, Bucket, S>,
    key: K,
    rest: Vec<Attr>,
) {
    match map.get_mut(&key) {
        Some(bucket) => bucket.add(rest),
        None => {
            map.insert(key, Bucket::new(rest));
        }
    }
}

fn hit<K, Q, S>(map: &HashMap<K, Bucket, S>, key: &Q, f: &CertFacts) -> bool
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
    S: std::hash::BuildHasher,
{
    !map.is_empty() && map.get(key).is_some_and(|b| b.matches(f))
}

impl IdentityIndex {
    fn insert(&mut self, key: Attr, rest: Vec<Attr>) {
        match key {
            Attr::Thumbprint(Thumbprint::Sha1(d)) => add_to(&mut self.sha1, d, rest),
            Attr::Thumbprint(Thumbprint::Sha256(d)) | Attr::CertificateSha256(d) => {
                add_to(&mut self.sha256, d, rest)
            }
            Attr::Serial(s) => add_to(&mut self.serial, s, rest),
            Attr::Uri(u) => add_to(&mut self.uri, u, rest),
            Attr::DnsName(d) => add_to(&mut self.dns_name, d, rest),
            Attr::Subject(n) => add_to(&mut self.subject, *n, rest),
            Attr::CommonName(c) => add_to(&mut self.common_name, c, rest),
            Attr::IssuerThumbprint(Thumbprint::Sha1(d)) => add_to(&mut self.issuer_sha1, d, rest),
            Attr::IssuerThumbprint(Thumbprint::Sha256(d)) => {
                add_to(&mut self.issuer_sha256, d, rest)
            }
            Attr::IssuerSubject(n) => add_to(&mut self.issuer_subject, *n, rest),
        }
    }

    /// Whether any entry matches: one lookup per index and per value the
    /// certificate has for it, then the remaining attributes of the candidates.
    fn matches(&self, f: &CertFacts) -> bool {
        hit(&self.sha256, &f.digests.sha256, f)
            || hit(&self.sha1, &f.digests.sha1, f)
            || hit(&self.serial, &f.serial[..], f)
            || (!self.uri.is_empty() && f.uris.iter().any(|u| hit(&self.uri, u.as_str(), f)))
            || (!self.dns_name.is_empty()
                && f.dns_names
                    .iter()
                    .any(|d| hit(&self.dns_name, d.as_str(), f)))
            || hit(&self.subject, &f.subject, f)
            || (!self.common_name.is_empty()
                && f.common_names
                    .iter()
                    .any(|c| hit(&self.common_name, c.as_str(), f)))
            || f.issuer_digests.is_some_and(|d| {
                hit(&self.issuer_sha256, &d.sha256, f) || hit(&self.issuer_sha1, &d.sha1, f)
            })
            || hit(&self.issuer_subject, &f.issuer_subject, f)
    }
}

/// A policy ready for the hot path: immutable, shareable between workers.
#[derive(Debug)]
pub struct CompiledPolicy {
    validate_revocation: bool,
    validate_trust: bool,
    validate_not_before: bool,
    validate_not_after: bool,
    ignore_error: bool,
    identity_count: usize,
    index: IdentityIndex,
    certificate_ids: Vec<String>,
    fingerprint: [u8; 32],
}

// === impl CompiledPolicy ===

impl CompiledPolicy {
    /// Parses and indexes `spec`. `resolve_certificate_id` maps a store id to
    /// the SHA-256 thumbprint of that certificate (`None`: unknown id, an error).
    pub fn compile(
        spec: &PolicySpec,
        resolve_certificate_id: &dyn Fn(&str) -> Option<[u8; 32]>,
    ) -> Result<CompiledPolicy, PolicyError> {
        let mut index = IdentityIndex::default();
        let mut certificate_ids = BTreeSet::new();
        let mut encoded_entries = Vec::with_capacity(spec.identities.len());
        for (i, identity) in spec.identities.iter().enumerate() {
            let mut attrs = compile_identity(i, identity, resolve_certificate_id)?;
            if let Some(id) = &identity.certificate_id {
                certificate_ids.insert(id.clone());
            }
            let mut encoded = Vec::new();
            for a in &attrs {
                a.encode(&mut encoded);
            }
            encoded_entries.push(encoded);
            let key_at = attrs
                .iter()
                .enumerate()
                .min_by_key(|(_, a)| a.rank())
                .map(|(k, _)| k)
                .ok_or(PolicyError::EmptyIdentity { index: i })?;
            let key = attrs.swap_remove(key_at);
            index.insert(key, attrs);
        }

        // The fingerprint covers the switches and the set of entries (order and
        // duplicates do not change what the policy accepts).
        encoded_entries.sort_unstable();
        encoded_entries.dedup();
        let mut h = Sha256::new();
        h.update(b"certgate-policy-v1\0");
        h.update([
            u8::from(spec.validate_revocation),
            u8::from(spec.validate_trust),
            u8::from(spec.validate_not_before),
            u8::from(spec.validate_not_after),
            u8::from(spec.ignore_error),
        ]);
        for e in &encoded_entries {
            h.update((e.len() as u64).to_be_bytes());
            h.update(e);
        }

        Ok(CompiledPolicy {
            validate_revocation: spec.validate_revocation,
            validate_trust: spec.validate_trust,
            validate_not_before: spec.validate_not_before,
            validate_not_after: spec.validate_not_after,
            ignore_error: spec.ignore_error,
            identity_count: spec.identities.len(),
            index,
            certificate_ids: certificate_ids.into_iter().collect(),
            fingerprint: h.finalize().into(),
        })
    }

    /// Decides about a certificate. Checks in order, each skipped when its
    /// `validate-*` switch is off: trust (`facts.trust_error`), not-before,
    /// not-after (the window is inclusive), revocation (`revocation`, computed by
    /// the caller), then identities (always). The first failure decides:
    /// [`Decision::Deny`], or [`Decision::AllowFailed`] under `ignore-error`.
    pub fn evaluate(
        &self,
        facts: &CertFacts,
        revocation: Option<Reason>,
        now_unix: i64,
    ) -> Decision {
        match self.first_failure(facts, revocation, now_unix) {
            None => Decision::Allow,
            Some(reason) if self.ignore_error => Decision::AllowFailed(reason),
            Some(reason) => Decision::Deny(reason),
        }
    }

    fn first_failure(
        &self,
        facts: &CertFacts,
        revocation: Option<Reason>,
        now_unix: i64,
    ) -> Option<Reason> {
        if self.validate_trust {
            if let Some(reason) = facts.trust_error {
                return Some(reason);
            }
        }
        if self.validate_not_before && now_unix < facts.not_before {
            return Some(Reason::NotYetValid);
        }
        if self.validate_not_after && now_unix > facts.not_after {
            return Some(Reason::Expired);
        }
        if self.validate_revocation {
            if let Some(reason) = revocation {
                return Some(reason);
            }
        }
        if self.identity_count > 0 && !self.index.matches(facts) {
            return Some(Reason::IdentityMismatch);
        }
        None
    }

    /// Whether the caller needs to compute revocation for this policy.
    pub fn validates_revocation(&self) -> bool {
        self.validate_revocation
    }

    /// Whether failures are forwarded rather than denied.
    pub fn ignores_errors(&self) -> bool {
        self.ignore_error
    }

    /// Number of identity entries configured.
    pub fn identity_count(&self) -> usize {
        self.identity_count
    }

    /// The store certificate ids this policy references (sorted, unique).
    pub fn referenced_certificate_ids(&self) -> &[String] {
        &self.certificate_ids
    }

    /// SHA-256 of the canonical policy: equal for policies that accept the same
    /// certificates in the same way (identity order and duplicates do not count;
    /// a certificate-id counts by the certificate it resolves to).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

impl Default for CompiledPolicy {
    /// The policy with every default: all checks on, no identity list.
    fn default() -> Self {
        CompiledPolicy::compile(&PolicySpec::default(), &|_| None)
            .expect("the default policy has no identities to fail on")
    }
}

fn compile_identity(
    index: usize,
    spec: &IdentitySpec,
    resolve_certificate_id: &dyn Fn(&str) -> Option<[u8; 32]>,
) -> Result<Vec<Attr>, PolicyError> {
    let bad = |attribute: &'static str, problem: String| PolicyError::BadAttribute {
        index,
        attribute,
        problem,
    };
    let non_empty = |attribute: &'static str, v: &str| {
        if v.trim().is_empty() {
            Err(bad(attribute, "empty value".into()))
        } else {
            Ok(())
        }
    };
    let mut attrs = Vec::new();
    if let Some(t) = &spec.thumbprint {
        let t = Thumbprint::parse(t).map_err(|e| bad("thumbprint", e.to_string()))?;
        attrs.push(Attr::Thumbprint(t));
    }
    if let Some(s) = &spec.serial_number {
        let s = parse_serial(s).map_err(|p| bad("serial-number", p))?;
        attrs.push(Attr::Serial(s.into_boxed_slice()));
    }
    if let Some(c) = &spec.common_name {
        non_empty("common-name", c)?;
        attrs.push(Attr::CommonName(c.as_str().into()));
    }
    if let Some(s) = &spec.subject {
        let n = DistinguishedName::parse(s).map_err(|e| bad("subject", e.to_string()))?;
        attrs.push(Attr::Subject(Box::new(n)));
    }
    if let Some(d) = &spec.dns_name {
        non_empty("dns-name", d)?;
        attrs.push(Attr::DnsName(canonical_dns_name(d).into()));
    }
    if let Some(u) = &spec.uri {
        non_empty("uri", u)?;
        attrs.push(Attr::Uri(u.as_str().into()));
    }
    if let Some(s) = &spec.issuer_subject {
        let n = DistinguishedName::parse(s).map_err(|e| bad("issuer-subject", e.to_string()))?;
        attrs.push(Attr::IssuerSubject(Box::new(n)));
    }
    if let Some(t) = &spec.issuer_thumbprint {
        let t = Thumbprint::parse(t).map_err(|e| bad("issuer-thumbprint", e.to_string()))?;
        attrs.push(Attr::IssuerThumbprint(t));
    }
    if let Some(id) = &spec.certificate_id {
        let sha256 =
            resolve_certificate_id(id).ok_or_else(|| PolicyError::UnknownCertificateId {
                index,
                id: id.clone(),
            })?;
        attrs.push(Attr::CertificateSha256(sha256));
    }
    if attrs.is_empty() {
        return Err(PolicyError::EmptyIdentity { index });
    }
    Ok(attrs)
}

/// A serial number in hex: any case, optional `0x`, optional `:` or ` `
/// separators; the result is the big-endian magnitude without leading zeros.
pub fn parse_serial(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: String = t.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    if digits.is_empty() {
        return Err("empty serial number".into());
    }
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "{c:?} is not a hex digit (serial numbers are written in hex)"
        ));
    }
    let digits = digits.trim_start_matches('0');
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_owned()
    };
    hex::decode(&padded).map_err(|e| e.to_string())
}

/// Upper-case hex of a normalised serial (`00` for zero), for display.
pub fn serial_hex(serial: &[u8]) -> String {
    if serial.is_empty() {
        "00".into()
    } else {
        upper_hex(serial)
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::*;
    use crate::trust::CertDigests;

    const NOW: i64 = 1_700_000_000;

    fn facts() -> CertFacts {
        let mut sha1 = [0u8; 20];
        let mut sha256 = [0u8; 32];
        for (i, b) in sha1.iter_mut().enumerate() {
            *b = 0xa0 + i as u8;
        }
        for (i, b) in sha256.iter_mut().enumerate() {
            *b = 0x10 + i as u8;
        }
        CertFacts {
            digests: CertDigests { sha1, sha256 },
            serial: vec![0x01, 0xab, 0xcd],
            subject: DistinguishedName::from_entries([
                (0, "2.5.4.10", "Example Corp"),
                (1, "2.5.4.3", "Alice"),
            ]),
            common_names: vec!["Alice".into()],
            dns_names: vec!["api.example.com".into(), "www.example.com".into()],
            uris: vec!["spiffe://example.org/ns/a/sa/alice".into()],
            issuer_subject: DistinguishedName::from_entries([(0, "2.5.4.3", "Partner CA")]),
            issuer_digests: Some(CertDigests {
                sha1: [0x77; 20],
                sha256: [0x88; 32],
            }),
            not_before: NOW - 100,
            not_after: NOW + 100,
            trust_error: None,
        }
    }

    fn no_ids(_: &str) -> Option<[u8; 32]> {
        None
    }

    fn policy(identities: Vec<IdentitySpec>) -> CompiledPolicy {
        let spec = PolicySpec {
            identities,
            ..PolicySpec::default()
        };
        CompiledPolicy::compile(&spec, &|id| {
            (id == "alice-2026").then_some(facts().digests.sha256)
        })
        .unwrap()
    }

    fn decide(identities: Vec<IdentitySpec>) -> Decision {
        policy(identities).evaluate(&facts(), None, NOW)
    }

    fn one(f: impl FnOnce(&mut IdentitySpec)) -> Vec<IdentitySpec> {
        let mut spec = IdentitySpec::default();
        f(&mut spec);
        vec![spec]
    }

    const MISMATCH: Decision = Decision::Deny(Reason::IdentityMismatch);

    #[test]
    fn empty_identity_list_allows_a_valid_certificate() {
        assert_eq!(decide(vec![]), Decision::Allow);
    }

    #[test]
    fn every_attribute_matches_positively_and_negatively() {
        type Setter = fn(&mut IdentitySpec, String);
        let f = facts();
        let cases: Vec<(&str, Setter, String, String)> = vec![
            (
                "thumbprint",
                |s, v| s.thumbprint = Some(v),
                upper_hex(&f.digests.sha1),
                "AA".repeat(20),
            ),
            (
                "serial-number",
                |s, v| s.serial_number = Some(v),
                "01abcd".into(),
                "01abce".into(),
            ),
            (
                "common-name",
                |s, v| s.common_name = Some(v),
                "Alice".into(),
                "alice".into(),
            ),
            (
                "subject",
                |s, v| s.subject = Some(v),
                "CN=alice, O=EXAMPLE corp".into(),
                "CN=alice".into(),
            ),
            (
                "dns-name",
                |s, v| s.dns_name = Some(v),
                "WWW.example.com.".into(),
                "example.com".into(),
            ),
            (
                "uri",
                |s, v| s.uri = Some(v),
                "spiffe://example.org/ns/a/sa/alice".into(),
                "spiffe://example.org/ns/a/sa/Alice".into(),
            ),
            (
                "issuer-subject",
                |s, v| s.issuer_subject = Some(v),
                "cn=partner ca".into(),
                "CN=Other CA".into(),
            ),
            (
                "issuer-thumbprint",
                |s, v| s.issuer_thumbprint = Some(v),
                "88".repeat(32),
                "77".repeat(32).replace("77", "78"),
            ),
            (
                "certificate-id",
                |s, v| s.certificate_id = Some(v),
                "alice-2026".into(),
                String::new(),
            ),
        ];
        for (name, set, good, bad) in cases {
            let mut spec = IdentitySpec::default();
            set(&mut spec, good.clone());
            assert_eq!(
                decide(vec![spec]),
                Decision::Allow,
                "{name} = {good:?} should match"
            );
            if bad.is_empty() {
                continue;
            }
            let mut spec = IdentitySpec::default();
            set(&mut spec, bad.clone());
            assert_eq!(
                decide(vec![spec]),
                MISMATCH,
                "{name} = {bad:?} should not match"
            );
        }
    }

    #[test]
    fn certificate_id_of_another_certificate_does_not_match() {
        let spec = PolicySpec {
            identities: one(|s| s.certificate_id = Some("bob".into())),
            ..PolicySpec::default()
        };
        let p = CompiledPolicy::compile(&spec, &|_| Some([0x55; 32])).unwrap();
        assert_eq!(p.evaluate(&facts(), None, NOW), MISMATCH);
        assert_eq!(p.referenced_certificate_ids(), ["bob".to_string()]);
    }

    #[test]
    fn every_thumbprint_spelling_matches() {
        let d = facts().digests;
        let sha1_hex = upper_hex(&d.sha1);
        let sha256_hex = upper_hex(&d.sha256);
        let colons = |h: &str| {
            h.as_bytes()
                .chunks(2)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join(":")
        };
        for spelling in [
            sha1_hex.clone(),
            sha1_hex.to_ascii_lowercase(),
            colons(&sha1_hex),
            colons(&sha1_hex.to_ascii_lowercase()),
            URL_SAFE_NO_PAD.encode(d.sha1),
            format!("x5t:{}", URL_SAFE_NO_PAD.encode(d.sha1)),
            sha256_hex.clone(),
            sha256_hex.to_ascii_lowercase(),
            colons(&sha256_hex),
            URL_SAFE_NO_PAD.encode(d.sha256),
            format!("x5t#S256:{}", URL_SAFE_NO_PAD.encode(d.sha256)),
            format!("SHA256 Fingerprint={}", colons(&sha256_hex)),
        ] {
            let ids = one(|s| s.thumbprint = Some(spelling.clone()));
            assert_eq!(decide(ids), Decision::Allow, "{spelling}");
            let ids = one(|s| s.issuer_thumbprint = Some(spelling.clone()));
            assert_eq!(
                decide(ids),
                MISMATCH,
                "leaf thumbprint {spelling} is not the issuer's"
            );
        }
    }

    #[test]
    fn serial_numbers_normalise() {
        let expected = vec![0x01, 0xab, 0xcd];
        for s in [
            "01abcd",
            "1ABCD",
            "0x01:AB:cd",
            "00 00 01 ab cd",
            "0001abcd",
        ] {
            assert_eq!(parse_serial(s).unwrap(), expected, "{s}");
        }
        assert_eq!(parse_serial("0").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_serial("00:00").unwrap(), Vec::<u8>::new());
        assert!(parse_serial("12g4").unwrap_err().contains("'g'"));
        assert!(parse_serial(" ").is_err());
        assert_eq!(serial_hex(&expected), "01ABCD");
        assert_eq!(serial_hex(&[]), "00");
    }

    #[test]
    fn multi_attribute_entries_need_every_attribute() {
        let both = |dns: &str, issuer: &str| {
            one(|s| {
                s.dns_name = Some(dns.into());
                s.issuer_subject = Some(issuer.into());
            })
        };
        assert_eq!(
            decide(both("api.example.com", "CN=Partner CA")),
            Decision::Allow
        );
        assert_eq!(decide(both("api.example.com", "CN=Evil CA")), MISMATCH);
        assert_eq!(decide(both("evil.example.com", "CN=Partner CA")), MISMATCH);
        // Serial + issuer thumbprint: the usual unique pair.
        let pair = |serial: &str, issuer: &str| {
            one(|s| {
                s.serial_number = Some(serial.into());
                s.issuer_thumbprint = Some(issuer.into());
            })
        };
        assert_eq!(decide(pair("1abcd", &"88".repeat(32))), Decision::Allow);
        assert_eq!(decide(pair("1abcd", &"89".repeat(32))), MISMATCH);
    }

    #[test]
    fn any_entry_may_match_and_shared_keys_keep_every_candidate() {
        let mut ids = Vec::new();
        // Three entries indexed under the same DNS name; only the last matches fully.
        for cn in ["Bob", "Carol", "Alice"] {
            ids.push(IdentitySpec {
                dns_name: Some("api.example.com".into()),
                common_name: Some(cn.into()),
                ..IdentitySpec::default()
            });
        }
        assert_eq!(decide(ids.clone()), Decision::Allow);
        ids.pop();
        assert_eq!(decide(ids.clone()), MISMATCH);
        // A broader entry under the same key makes the bucket match alone.
        ids.push(IdentitySpec {
            dns_name: Some("api.example.com".into()),
            ..IdentitySpec::default()
        });
        assert_eq!(decide(ids), Decision::Allow);
    }

    #[test]
    fn missing_issuer_certificate_never_matches_an_issuer_thumbprint() {
        let mut f = facts();
        f.issuer_digests = None;
        let p = policy(one(|s| s.issuer_thumbprint = Some("88".repeat(32))));
        assert_eq!(p.evaluate(&f, None, NOW), MISMATCH);
    }

    #[test]
    fn checks_run_in_order_and_switches_skip_them() {
        let mut f = facts();
        f.trust_error = Some(Reason::Untrusted);
        f.not_after = NOW - 1;
        let ids = one(|s| s.common_name = Some("Mallory".into()));
        let mut spec = PolicySpec {
            identities: ids,
            ..PolicySpec::default()
        };
        let eval = |spec: &PolicySpec, f: &CertFacts, rev| {
            CompiledPolicy::compile(spec, &no_ids)
                .unwrap()
                .evaluate(f, rev, NOW)
        };
        let rev = Some(Reason::Revoked);
        assert_eq!(eval(&spec, &f, rev), Decision::Deny(Reason::Untrusted));
        spec.validate_trust = false;
        assert_eq!(eval(&spec, &f, rev), Decision::Deny(Reason::Expired));
        spec.validate_not_after = false;
        assert_eq!(eval(&spec, &f, rev), Decision::Deny(Reason::Revoked));
        spec.validate_revocation = false;
        assert_eq!(eval(&spec, &f, rev), MISMATCH);
        spec.identities.clear();
        assert_eq!(eval(&spec, &f, rev), Decision::Allow);

        let mut g = facts();
        g.not_before = NOW + 1;
        let mut spec = PolicySpec::default();
        assert_eq!(eval(&spec, &g, None), Decision::Deny(Reason::NotYetValid));
        spec.validate_not_before = false;
        assert_eq!(eval(&spec, &g, None), Decision::Allow);
        assert_eq!(
            eval(
                &PolicySpec::default(),
                &facts(),
                Some(Reason::RevocationUnknown)
            ),
            Decision::Deny(Reason::RevocationUnknown)
        );
    }

    #[test]
    fn validity_window_is_inclusive() {
        let p = CompiledPolicy::default();
        let f = facts();
        assert_eq!(p.evaluate(&f, None, f.not_before), Decision::Allow);
        assert_eq!(p.evaluate(&f, None, f.not_after), Decision::Allow);
        assert_eq!(
            p.evaluate(&f, None, f.not_after + 1),
            Decision::Deny(Reason::Expired)
        );
        assert_eq!(
            p.evaluate(&f, None, f.not_before - 1),
            Decision::Deny(Reason::NotYetValid)
        );
    }

    #[test]
    fn ignore_error_forwards_the_first_failure() {
        let spec = PolicySpec {
            ignore_error: true,
            identities: one(|s| s.uri = Some("spiffe://other".into())),
            ..PolicySpec::default()
        };
        let p = CompiledPolicy::compile(&spec, &no_ids).unwrap();
        assert_eq!(
            p.evaluate(&facts(), None, NOW),
            Decision::AllowFailed(Reason::IdentityMismatch)
        );
        assert_eq!(
            p.evaluate(&facts(), Some(Reason::Revoked), NOW),
            Decision::AllowFailed(Reason::Revoked)
        );
        let ok = PolicySpec {
            ignore_error: true,
            ..PolicySpec::default()
        };
        let p = CompiledPolicy::compile(&ok, &no_ids).unwrap();
        assert_eq!(p.evaluate(&facts(), None, NOW), Decision::Allow);
    }

    #[test]
    fn compile_errors_name_the_entry_and_attribute() {
        let compile = |ids: Vec<IdentitySpec>| {
            let spec = PolicySpec {
                identities: ids,
                ..PolicySpec::default()
            };
            CompiledPolicy::compile(&spec, &no_ids).unwrap_err()
        };
        let ok = IdentitySpec {
            common_name: Some("a".into()),
            ..IdentitySpec::default()
        };
        let e = compile(vec![ok.clone(), IdentitySpec::default()]);
        assert_eq!(e, PolicyError::EmptyIdentity { index: 1 });
        let e = compile(vec![
            ok.clone(),
            ok.clone(),
            IdentitySpec {
                thumbprint: Some("xyz".into()),
                ..IdentitySpec::default()
            },
        ]);
        assert_eq!(e.identity_index(), 2);
        assert!(
            e.to_string().starts_with("identities[2].thumbprint: "),
            "{e}"
        );
        for (spec, attr) in [
            (
                IdentitySpec {
                    serial_number: Some("zz".into()),
                    ..Default::default()
                },
                "serial-number",
            ),
            (
                IdentitySpec {
                    subject: Some("FOO=bar".into()),
                    ..Default::default()
                },
                "subject",
            ),
            (
                IdentitySpec {
                    issuer_subject: Some("CN".into()),
                    ..Default::default()
                },
                "issuer-subject",
            ),
            (
                IdentitySpec {
                    issuer_thumbprint: Some("12".into()),
                    ..Default::default()
                },
                "issuer-thumbprint",
            ),
            (
                IdentitySpec {
                    dns_name: Some(" ".into()),
                    ..Default::default()
                },
                "dns-name",
            ),
            (
                IdentitySpec {
                    common_name: Some(String::new()),
                    ..Default::default()
                },
                "common-name",
            ),
            (
                IdentitySpec {
                    uri: Some(String::new()),
                    ..Default::default()
                },
                "uri",
            ),
        ] {
            let e = compile(vec![spec]).to_string();
            assert!(e.starts_with(&format!("identities[0].{attr}: ")), "{e}");
        }
        let e = compile(vec![IdentitySpec {
            certificate_id: Some("gone".into()),
            ..IdentitySpec::default()
        }]);
        assert_eq!(
            e.to_string(),
            "identities[0].certificate-id: unknown certificate id \"gone\""
        );
    }

    #[test]
    fn fingerprint_ignores_order_and_spelling_but_not_meaning() {
        let d = facts().digests;
        let a = IdentitySpec {
            thumbprint: Some(upper_hex(&d.sha1)),
            ..IdentitySpec::default()
        };
        let a_lower = IdentitySpec {
            thumbprint: Some(upper_hex(&d.sha1).to_ascii_lowercase()),
            ..IdentitySpec::default()
        };
        let b = IdentitySpec {
            dns_name: Some("API.example.com".into()),
            ..IdentitySpec::default()
        };
        let fp = |ids: Vec<IdentitySpec>, ignore_error| {
            let spec = PolicySpec {
                identities: ids,
                ignore_error,
                ..PolicySpec::default()
            };
            CompiledPolicy::compile(&spec, &no_ids)
                .unwrap()
                .fingerprint()
        };
        let base = fp(vec![a.clone(), b.clone()], false);
        assert_eq!(base, fp(vec![b.clone(), a_lower.clone()], false));
        assert_eq!(base, fp(vec![b.clone(), a.clone(), a_lower], false));
        assert_ne!(base, fp(vec![a.clone(), b.clone()], true));
        assert_ne!(base, fp(vec![a.clone()], false));
        assert_ne!(
            fp(vec![], false),
            CompiledPolicy::compile(
                &PolicySpec {
                    validate_revocation: false,
                    ..PolicySpec::default()
                },
                &no_ids,
            )
            .unwrap()
            .fingerprint()
        );
    }

    #[test]
    fn spec_deserialises_with_kebab_case_and_defaults() {
        let spec: PolicySpec = toml::from_str(
            "ignore-error = true\nvalidate-revocation = false\n\
             identities = [{ thumbprint = \"AB\" }, { dns-name = \"a\", issuer-subject = \"CN=x\" }]",
        )
        .unwrap();
        assert!(spec.ignore_error && !spec.validate_revocation && spec.validate_trust);
        assert_eq!(spec.identities.len(), 2);
        assert_eq!(
            spec.identities[1].attributes(),
            vec![("dns-name", "a"), ("issuer-subject", "CN=x")]
        );
        assert!(toml::from_str::<PolicySpec>("identities = [{ thumbprnt = \"AB\" }]").is_err());
        assert!(toml::from_str::<PolicySpec>("validate-everything = true").is_err());
    }
}
