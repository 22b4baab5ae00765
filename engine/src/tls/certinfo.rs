//! What a verified client certificate tells the backend: its details, pre-rendered as header lines.
//!
//! Rendering happens once per verification (a verdict-cache miss); every
//! request on every connection of that client then copies the same bytes.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use boring::asn1::{Asn1Time, Asn1TimeRef};
use boring::hash::MessageDigest;
use boring::x509::X509Ref;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::trust::CertDigests;

/// nginx's `$ssl_client_escaped_cert` leaves only unreserved characters unescaped.
const URL_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The verified client certificate's details.
#[derive(Debug)]
pub struct ClientCertInfo {
    /// SHA-1 and SHA-256 of the DER.
    pub digests: CertDigests,
    /// RFC 4514 subject.
    pub subject: String,
    /// RFC 4514 issuer.
    pub issuer: String,
    /// Serial number, upper-case hex.
    pub serial: String,
    /// Not-before as Unix seconds.
    pub not_before: i64,
    /// Not-after as Unix seconds.
    pub not_after: i64,
    /// SAN DNS names.
    pub dns_names: Vec<String>,
    /// SAN URIs.
    pub uris: Vec<String>,
    /// The forwarded header lines, `Name: value\r\n` each.
    pub header_block: Bytes,
}

/// Seconds since the Unix epoch of an ASN.1 time.
pub fn unix_time(t: &Asn1TimeRef) -> Option<i64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let d = epoch.diff(t).ok()?;
    Some(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

fn rfc3339(unix: i64) -> String {
    let t = if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Make a value safe for an HTTP header: control characters become `\xNN`.
fn header_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\x{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// An XFCC value in double quotes, `"` and `\\` escaped (Envoy's format).
fn xfcc_quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An XFCC value, quoted when it holds a separator (`,` `;` `=` `"`), so a SAN
/// cannot smuggle extra elements or keys.
fn xfcc_value(v: &str) -> String {
    if v.contains([',', ';', '=', '"', '\\']) {
        xfcc_quoted(v)
    } else {
        v.to_string()
    }
}

fn name_rfc4514(name: &boring::x509::X509NameRef) -> String {
    let printed = name
        .print_ex(boring_sys::XN_FLAG_RFC2253)
        .unwrap_or_default();
    header_safe(&printed)
}

/// Both thumbprints of a certificate.
pub fn digests(cert: &X509Ref) -> Result<CertDigests, boring::error::ErrorStack> {
    Ok(CertDigests {
        sha1: sha1_of(cert)?,
        sha256: sha256_of(cert)?,
    })
}

/// SHA-1 of a certificate's DER: its thumbprint.
pub fn sha1_of(cert: &X509Ref) -> Result<[u8; 20], boring::error::ErrorStack> {
    let mut out = [0u8; 20];
    out.copy_from_slice(&cert.digest(MessageDigest::sha1())?);
    Ok(out)
}

/// SHA-256 of a certificate's DER.
///
/// `X509_digest` encodes the certificate once; `to_der` followed by a hash
/// would encode it twice (length, then bytes).
pub fn sha256_of(cert: &X509Ref) -> Result<[u8; 32], boring::error::ErrorStack> {
    let mut out = [0u8; 32];
    out.copy_from_slice(&cert.digest(MessageDigest::sha256())?);
    Ok(out)
}

impl ClientCertInfo {
    /// Extract everything the backend is told about `cert`.
    pub fn from_cert(
        cert: &X509Ref,
        digests: CertDigests,
    ) -> Result<Self, boring::error::ErrorStack> {
        let subject = name_rfc4514(cert.subject_name());
        let issuer = name_rfc4514(cert.issuer_name());
        let serial = cert
            .serial_number()
            .to_bn()?
            .to_hex_str()?
            .to_ascii_uppercase();
        let not_before = unix_time(cert.not_before()).unwrap_or(0);
        let not_after = unix_time(cert.not_after()).unwrap_or(0);
        let (mut dns_names, mut uris) = (Vec::new(), Vec::new());
        if let Some(sans) = cert.subject_alt_names() {
            for san in &sans {
                if let Some(d) = san.dnsname() {
                    dns_names.push(header_safe(d));
                } else if let Some(u) = san.uri() {
                    uris.push(header_safe(u));
                }
            }
        }
        let pem = cert.to_pem()?;
        let escaped_pem = percent_encoding::percent_encode(&pem, URL_ESCAPE).to_string();

        let sha1_hex = crate::trust::thumbprint::upper_hex(&digests.sha1);
        let sha256_hex = crate::trust::thumbprint::upper_hex(&digests.sha256);
        let mut xfcc = format!(
            "Hash={};Cert=\"{}\";Subject={}",
            sha256_hex.to_ascii_lowercase(),
            escaped_pem,
            xfcc_quoted(&subject),
        );
        for u in &uris {
            let _ = write!(xfcc, ";URI={}", xfcc_value(u));
        }
        for d in &dns_names {
            let _ = write!(xfcc, ";DNS={}", xfcc_value(d));
        }

        let mut block = String::with_capacity(escaped_pem.len() * 2 + 512);
        let mut line = |name: &str, value: &str| {
            let _ = write!(block, "{name}: {value}\r\n");
        };
        line("X-Client-Cert-Thumbprint", &sha1_hex);
        line("X-Client-Cert-Thumbprint-SHA256", &sha256_hex);
        line("X-Client-Cert-Subject", &subject);
        line("X-Client-Cert-Issuer", &issuer);
        line("X-Client-Cert-Serial", &serial);
        line("X-Client-Cert-Not-Before", &rfc3339(not_before));
        line("X-Client-Cert-Not-After", &rfc3339(not_after));
        line("X-Client-Cert", &escaped_pem);
        line("X-Forwarded-Client-Cert", &xfcc);

        Ok(ClientCertInfo {
            digests,
            subject,
            issuer,
            serial,
            not_before,
            not_after,
            dns_names,
            uris,
            header_block: Bytes::from(block),
        })
    }

    /// The not-after as a `SystemTime`.
    pub fn not_after_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.not_after.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_z() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn control_characters_cannot_break_headers() {
        assert_eq!(header_safe("CN=a\r\nX-Evil: 1"), "CN=a\\x0D\\x0AX-Evil: 1");
    }

    #[test]
    fn unix_time_of_asn1() {
        let t = Asn1Time::from_unix(1_700_000_000).unwrap();
        assert_eq!(unix_time(&t), Some(1_700_000_000));
    }

    #[test]
    fn xfcc_values_with_separators_are_quoted() {
        assert_eq!(xfcc_value("spiffe://a/b"), "spiffe://a/b");
        assert_eq!(xfcc_value("a;DNS=evil"), "\"a;DNS=evil\"");
        assert_eq!(xfcc_value("x\",y"), "\"x\\\",y\"");
        assert_eq!(xfcc_quoted("CN=a,O=b"), "\"CN=a,O=b\"");
    }
}
