//! What the client-certificate policy needs to know about a chain, extracted once per verdict-cache miss.
//!
//! [`CertFacts`] is plain data: the policy ([`crate::trust::policy`]) evaluates
//! it without touching BoringSSL, so a cached verdict costs only hash lookups.

use std::ffi::c_int;

use boring::nid::Nid;
use boring::x509::{X509NameRef, X509Ref};
use foreign_types::ForeignTypeRef as _;

use crate::tls::certinfo::{digests, unix_time};
use crate::tls::verify::Reason;
use crate::trust::names::{canonical_dns_name, DistinguishedName};
use crate::trust::CertDigests;

/// Why [`CertFacts::from_chain`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// BoringSSL could not hash or decode part of the certificate (`what` names the part).
    #[error("cannot read the certificate's {what}: {source}")]
    Certificate {
        /// The part, e.g. "serial number".
        what: &'static str,
        /// BoringSSL's error queue.
        source: boring::error::ErrorStack,
    },
    /// A validity date that cannot be converted to Unix seconds.
    #[error("the certificate's {0} date is out of range")]
    Date(&'static str),
}

fn cert_err(what: &'static str) -> impl FnOnce(boring::error::ErrorStack) -> FactsError {
    move |source| FactsError::Certificate { what, source }
}

/// Everything a policy checks about a presented chain, precomputed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// SHA-1 and SHA-256 of the leaf's DER.
    pub digests: CertDigests,
    /// The leaf's serial number: big-endian magnitude without leading zero bytes
    /// (zero is empty; the sign of a negative serial is dropped).
    pub serial: Vec<u8>,
    /// The leaf's subject, canonical.
    pub subject: DistinguishedName,
    /// The subject's common names as written (UTF-8), in order.
    pub common_names: Vec<String>,
    /// SAN DNS names, canonical ([`canonical_dns_name`]).
    pub dns_names: Vec<String>,
    /// SAN URIs as written.
    pub uris: Vec<String>,
    /// The leaf's issuer name, canonical.
    pub issuer_subject: DistinguishedName,
    /// SHA-1 and SHA-256 of the issuer certificate, when it is known.
    pub issuer_digests: Option<CertDigests>,
    /// The latest not-before in the chain, Unix seconds.
    pub not_before: i64,
    /// The earliest not-after in the chain, Unix seconds.
    pub not_after: i64,
    /// The chain-build result with time checks disabled (`None`: trusted).
    pub trust_error: Option<Reason>,
}

// === impl CertFacts ===

impl CertFacts {
    /// Extracts the facts of `leaf`, whose digests the caller has computed
    /// (once per verification: they also key the verdict cache and go into
    /// the forwarded headers). `issuer` is its issuer's certificate when
    /// known; `chain` is the verified chain including the leaf (or just the
    /// leaf), used for the effective validity window; `trust_error` is the
    /// chain-build result computed by the caller.
    pub fn from_chain(
        leaf: &X509Ref,
        digests: CertDigests,
        issuer: Option<&X509Ref>,
        chain: &[&X509Ref],
        trust_error: Option<Reason>,
    ) -> Result<CertFacts, FactsError> {
        let serial = leaf
            .serial_number()
            .to_bn()
            .map_err(cert_err("serial number"))?
            .to_vec();
        let subject = canonical_name(leaf.subject_name());
        let common_names = leaf
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .filter_map(|e| e.data().as_utf8().ok().map(|s| s.to_string()))
            .collect();
        let (mut dns_names, mut uris) = (Vec::new(), Vec::new());
        if let Some(sans) = leaf.subject_alt_names() {
            for san in &sans {
                if let Some(d) = san.dnsname() {
                    dns_names.push(canonical_dns_name(d));
                } else if let Some(u) = san.uri() {
                    uris.push(u.to_owned());
                }
            }
        }
        let issuer_subject = canonical_name(leaf.issuer_name());
        let issuer_digests = match issuer {
            Some(cert) => Some(digests_of(cert)?),
            None => None,
        };
        let mut not_before = unix_time(leaf.not_before()).ok_or(FactsError::Date("not-before"))?;
        let mut not_after = unix_time(leaf.not_after()).ok_or(FactsError::Date("not-after"))?;
        for cert in chain {
            let nb = unix_time(cert.not_before()).ok_or(FactsError::Date("not-before"))?;
            let na = unix_time(cert.not_after()).ok_or(FactsError::Date("not-after"))?;
            not_before = not_before.max(nb);
            not_after = not_after.min(na);
        }
        Ok(CertFacts {
            digests,
            serial,
            subject,
            common_names,
            dns_names,
            uris,
            issuer_subject,
            issuer_digests,
            not_before,
            not_after,
            trust_error,
        })
    }
}

fn digests_of(cert: &X509Ref) -> Result<CertDigests, FactsError> {
    digests(cert).map_err(cert_err("issuer digest"))
}

/// The dotted OID of a name entry's attribute type.
fn dotted_oid(obj: &boring::asn1::Asn1ObjectRef) -> String {
    let mut buf = [0u8; 128];
    // SAFETY: `obj` is a live ASN1_OBJECT borrowed from the name; `buf` is
    // writable for `buf.len()` bytes and OBJ_obj2txt NUL-terminates within it;
    // `1` asks for the numeric form. It returns the full length, which may
    // exceed the buffer (then the text was truncated) or be negative on error.
    let len = unsafe {
        boring_sys::OBJ_obj2txt(buf.as_mut_ptr().cast(), buf.len() as c_int, obj.as_ptr(), 1)
    };
    match usize::try_from(len) {
        Ok(n) if n < buf.len() => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::from("?"),
    }
}

/// A certificate name in the policy's canonical form.
fn canonical_name(name: &X509NameRef) -> DistinguishedName {
    let entries: Vec<(i32, String, String)> = name
        .entries()
        .map(|e| {
            // SAFETY: `e` is a live X509_NAME_ENTRY borrowed from `name`;
            // X509_NAME_ENTRY_set only reads its RDN index.
            let set = unsafe { boring_sys::X509_NAME_ENTRY_set(e.as_ptr()) };
            let value = match e.data().as_utf8() {
                Ok(s) => s.to_string(),
                // Undecodable: a value no configured name can equal.
                Err(_) => format!("#{}", hex::encode(e.data().as_slice())),
            };
            (set, dotted_oid(e.object()), value)
        })
        .collect();
    DistinguishedName::from_entries(entries.iter().map(|(s, o, v)| (*s, o.as_str(), v.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pki::{issue, self_signed, CertSpec, Usage};

    #[test]
    fn facts_of_an_issued_chain() {
        let root = self_signed(&CertSpec::new("Test Root", Usage::Ca)).unwrap();
        let mut spec = CertSpec::new("Alice", Usage::Client);
        spec.organization = Some("Example  Corp".into());
        spec.dns_names = vec!["API.Example.com".into()];
        spec.uris = vec!["spiffe://example.org/alice".into()];
        spec.serial = Some(vec![0x00, 0x00, 0x12, 0x34]);
        spec.not_after_offset_secs = 3600;
        let leaf = issue(&spec, &root).unwrap();

        let facts = CertFacts::from_chain(
            &leaf.cert,
            leaf.digests().unwrap(),
            Some(&root.cert),
            &[&leaf.cert, &root.cert],
            None,
        )
        .unwrap();
        assert_eq!(facts.digests, leaf.digests().unwrap());
        assert_eq!(facts.issuer_digests, Some(root.digests().unwrap()));
        assert_eq!(facts.serial, vec![0x12, 0x34]);
        assert_eq!(facts.common_names, vec!["Alice".to_string()]);
        assert_eq!(facts.dns_names, vec!["api.example.com".to_string()]);
        assert_eq!(facts.uris, vec!["spiffe://example.org/alice".to_string()]);
        assert_eq!(
            facts.subject,
            DistinguishedName::parse("CN=alice,O=example corp").unwrap()
        );
        assert_eq!(
            facts.issuer_subject,
            DistinguishedName::parse("CN=Test Root").unwrap()
        );
        // The leaf expires first: it bounds the window.
        assert_eq!(facts.not_after, unix_time(leaf.cert.not_after()).unwrap());
        assert!(facts.not_after < unix_time(root.cert.not_after()).unwrap());
        assert_eq!(facts.trust_error, None);
    }

    #[test]
    fn validity_window_is_the_intersection_over_the_chain() {
        let mut root_spec = CertSpec::new("Short Root", Usage::Ca);
        root_spec.not_after_offset_secs = 600;
        root_spec.not_before_offset_secs = -60;
        let root = self_signed(&root_spec).unwrap();
        let leaf = issue(&CertSpec::new("Bob", Usage::Client), &root).unwrap();
        let facts = CertFacts::from_chain(
            &leaf.cert,
            leaf.digests().unwrap(),
            None,
            &[&leaf.cert, &root.cert],
            Some(Reason::Untrusted),
        )
        .unwrap();
        assert_eq!(facts.not_after, unix_time(root.cert.not_after()).unwrap());
        assert_eq!(facts.not_before, unix_time(root.cert.not_before()).unwrap());
        assert_eq!(facts.issuer_digests, None);
        assert_eq!(facts.trust_error, Some(Reason::Untrusted));
    }
}
