//! Distinguished names and DNS names in one canonical form, so configured and certificate names compare exactly.
//!
//! A [`DistinguishedName`] is a sequence of RDNs in the certificate's (ASN.1)
//! order; each RDN is a sorted set of attribute/value pairs. Attribute types are
//! dotted OIDs; values are trimmed, internal whitespace runs collapse to one
//! space, and letters are lower-cased (RFC 5280 §7.1 / RFC 4518, without
//! Unicode NFKC). Configured names are parsed from RFC 4514 strings
//! (`CN=a,O=b`, most specific RDN first, so the order is reversed) or from the
//! OpenSSL slash form (`/O=b/CN=a`, certificate order).

use std::fmt;

/// Short names accepted in configured names (case-insensitive) and their OIDs.
/// The first name listed for an OID is the one printed.
const ATTRIBUTE_TYPES: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("commonName", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("surname", "2.5.4.4"),
    ("serialNumber", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("countryName", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("localityName", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("S", "2.5.4.8"),
    ("stateOrProvinceName", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("streetAddress", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("organizationName", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("organizationalUnitName", "2.5.4.11"),
    ("title", "2.5.4.12"),
    ("businessCategory", "2.5.4.15"),
    ("postalCode", "2.5.4.17"),
    ("GN", "2.5.4.42"),
    ("givenName", "2.5.4.42"),
    ("initials", "2.5.4.43"),
    ("generationQualifier", "2.5.4.44"),
    ("dnQualifier", "2.5.4.46"),
    ("pseudonym", "2.5.4.65"),
    ("organizationIdentifier", "2.5.4.97"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("domainComponent", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("userId", "0.9.2342.19200300.100.1.1"),
    ("emailAddress", "1.2.840.113549.1.9.1"),
    ("E", "1.2.840.113549.1.9.1"),
];

/// Why a configured distinguished name does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing but whitespace.
    #[error("empty distinguished name")]
    Empty,
    /// An attribute without `=`.
    #[error("{ava:?} has no '=' (expected TYPE=value)")]
    MissingEquals {
        /// The attribute as written.
        ava: String,
    },
    /// An attribute type that is neither a known short name nor a dotted OID.
    #[error(
        "unknown attribute type {0:?} (use a short name such as CN, O, OU, C, or a dotted OID)"
    )]
    UnknownType(String),
    /// A `\` escape that is neither `\<special>` nor `\<two hex digits>`.
    #[error("bad escape in {0:?}")]
    BadEscape(String),
    /// A `#hex` value that is not a DER-encoded string.
    #[error("#-value {0:?} is not hex-encoded DER of a string type")]
    BadHexValue(String),
    /// Escaped bytes that are not UTF-8.
    #[error("escaped bytes in {0:?} are not UTF-8")]
    NotUtf8(String),
    /// An unterminated `"…"` value.
    #[error("unterminated quoted value in {0:?}")]
    Unterminated(String),
}

/// One attribute/value pair in canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Ava {
    oid: String,
    value: String,
}

/// A distinguished name in canonical form; `==` is RFC 5280 name matching
/// (as approximated in the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DistinguishedName {
    /// RDNs in certificate order; each sorted.
    rdns: Vec<Vec<Ava>>,
}

// === impl DistinguishedName ===

impl DistinguishedName {
    /// Parses a configured name: RFC 4514 (`CN=a,O=b`, escapes `\,` `\2C`,
    /// `"quoted"` values, `#hex` DER values, `+` for multi-valued RDNs) or, when
    /// it starts with `/`, the OpenSSL form `/O=b/CN=a`.
    pub fn parse(s: &str) -> Result<DistinguishedName, NameError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        let (body, separators, reverse): (&str, &[char], bool) = match s.strip_prefix('/') {
            Some(rest) => (rest, &['/'], false),
            None => (s, &[',', ';'], true),
        };
        let mut rdns = Vec::new();
        for rdn in split_unescaped(body, separators) {
            let mut avas = Vec::new();
            for ava in split_unescaped(rdn, &['+']) {
                avas.push(parse_ava(ava)?);
            }
            avas.sort();
            rdns.push(avas);
        }
        if reverse {
            rdns.reverse();
        }
        Ok(DistinguishedName { rdns })
    }

    /// Builds the canonical form of a certificate's name from its entries in
    /// order: `(set, oid, value)` where entries with the same `set` number form
    /// one multi-valued RDN (OpenSSL's `X509_NAME_ENTRY_set`) and `oid` is dotted.
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = (i32, &'a str, &'a str)>,
    ) -> DistinguishedName {
        let mut rdns: Vec<Vec<Ava>> = Vec::new();
        let mut last_set = None;
        for (set, oid, value) in entries {
            let ava = Ava {
                oid: oid.to_owned(),
                value: canonical_value(value),
            };
            match rdns.last_mut() {
                Some(rdn) if last_set == Some(set) => rdn.push(ava),
                _ => rdns.push(vec![ava]),
            }
            last_set = Some(set);
        }
        for rdn in &mut rdns {
            rdn.sort();
        }
        DistinguishedName { rdns }
    }

    /// Number of RDNs.
    pub fn len(&self) -> usize {
        self.rdns.len()
    }

    /// Whether the name has no RDN (an empty subject).
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }
}

/// The canonical name as RFC 4514 (most specific RDN first), short names where
/// known, values as canonicalised: `cn=alice,o=example`.
impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for (j, ava) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                let name = ATTRIBUTE_TYPES
                    .iter()
                    .find(|(_, oid)| *oid == ava.oid)
                    .map_or(ava.oid.as_str(), |(n, _)| n);
                write!(f, "{name}=")?;
                for (k, c) in ava.value.chars().enumerate() {
                    let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
                        || (k == 0 && c == '#');
                    if special {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
            }
        }
        Ok(())
    }
}

/// RFC 5280 §7.1-style value canonicalisation: trim, collapse whitespace runs
/// to one space, lower-case.
pub fn canonical_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// A DNS name as compared: ASCII lower-case, one trailing dot removed, surrounding whitespace trimmed.
pub fn canonical_dns_name(name: &str) -> String {
    let name = name.trim();
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Splits at separators not preceded by a `\` escape and not inside `"…"`.
fn split_unescaped<'a>(s: &'a str, separators: &[char]) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped, mut quoted) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && separators.contains(&c) {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

fn attribute_oid(name: &str) -> Result<String, NameError> {
    let name = name.trim();
    let dotted = name
        .strip_prefix("OID.")
        .or_else(|| name.strip_prefix("oid."))
        .unwrap_or(name);
    let is_oid = !dotted.is_empty()
        && dotted.contains('.')
        && dotted
            .split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
    if is_oid {
        return Ok(dotted.to_owned());
    }
    ATTRIBUTE_TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, oid)| (*oid).to_owned())
        .ok_or_else(|| NameError::UnknownType(name.to_owned()))
}

fn parse_ava(ava: &str) -> Result<Ava, NameError> {
    let (ty, raw) = ava
        .split_once('=')
        .ok_or_else(|| NameError::MissingEquals {
            ava: ava.trim().to_owned(),
        })?;
    let oid = attribute_oid(ty)?;
    let raw = raw.trim();
    let value = if let Some(hex) = raw.strip_prefix('#') {
        decode_der_string(hex).ok_or_else(|| NameError::BadHexValue(raw.to_owned()))?
    } else {
        unescape(raw)?
    };
    Ok(Ava {
        oid,
        value: canonical_value(&value),
    })
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

fn unescape(raw: &str) -> Result<String, NameError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut quoted = false;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                quoted = !quoted;
                i += 1;
            }
            b'\\' => {
                let next = bytes.get(i + 1).copied();
                let pair = next
                    .and_then(hex_digit)
                    .zip(bytes.get(i + 2).copied().and_then(hex_digit));
                if let Some((hi, lo)) = pair {
                    out.push(hi << 4 | lo);
                    i += 3;
                } else if let Some(c) = next.filter(|c| b",+\"\\<>;=# /".contains(c)) {
                    out.push(c);
                    i += 2;
                } else {
                    return Err(NameError::BadEscape(raw.to_owned()));
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    if quoted {
        return Err(NameError::Unterminated(raw.to_owned()));
    }
    String::from_utf8(out).map_err(|_| NameError::NotUtf8(raw.to_owned()))
}

/// Decodes `#hex` (RFC 4514 §2.4): DER of a UTF8String, PrintableString,
/// IA5String, T61String (read as Latin-1) or BMPString.
fn decode_der_string(hex: &str) -> Option<String> {
    let bytes = hex::decode(hex).ok()?;
    let (&tag, rest) = bytes.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, content) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        (len, &rest[n..])
    };
    if content.len() != len {
        return None;
    }
    match tag {
        0x0c | 0x13 | 0x16 => String::from_utf8(content.to_vec()).ok(),
        0x14 => Some(content.iter().map(|&b| char::from(b)).collect()),
        0x1e => {
            if len % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = content
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> DistinguishedName {
        DistinguishedName::parse(s).unwrap()
    }

    /// The certificate-side name for `C=US, O=Example Corp, CN=Alice` (ASN.1 order).
    fn cert_name() -> DistinguishedName {
        DistinguishedName::from_entries([
            (0, "2.5.4.6", "US"),
            (1, "2.5.4.10", "Example  Corp"),
            (2, "2.5.4.3", "Alice"),
        ])
    }

    #[test]
    fn rfc4514_is_reversed_into_certificate_order() {
        assert_eq!(dn("CN=Alice,O=Example Corp,C=US"), cert_name());
        assert_ne!(dn("C=US,O=Example Corp,CN=Alice"), cert_name());
    }

    #[test]
    fn slash_form_is_in_certificate_order() {
        assert_eq!(dn("/C=US/O=Example Corp/CN=Alice"), cert_name());
        assert_ne!(dn("/CN=Alice/O=Example Corp/C=US"), cert_name());
    }

    #[test]
    fn case_spaces_and_type_names_do_not_matter() {
        for s in [
            "cn=alice, o=example corp, c=us",
            "CN = ALICE ,  O =  Example   Corp , C = us",
            "commonName=Alice,organizationName=Example Corp,countryName=US",
            "2.5.4.3=Alice,OID.2.5.4.10=Example Corp,2.5.4.6=US",
        ] {
            assert_eq!(dn(s), cert_name(), "{s}");
        }
    }

    #[test]
    fn different_values_or_extra_rdns_differ() {
        assert_ne!(dn("CN=Alicia,O=Example Corp,C=US"), cert_name());
        assert_ne!(dn("CN=Alice,O=Example Corp"), cert_name());
        assert_ne!(dn("CN=Alice,OU=x,O=Example Corp,C=US"), cert_name());
        assert_ne!(dn("CN=Alice,O=ExampleCorp,C=US"), cert_name());
    }

    #[test]
    fn escapes_quotes_and_hex_values() {
        let cert = DistinguishedName::from_entries([(0, "2.5.4.3", "Smith, John+1")]);
        assert_eq!(dn(r"CN=Smith\, John\+1"), cert);
        assert_eq!(dn(r"CN=Smith\2C John\2B1"), cert);
        assert_eq!(dn(r#"CN="Smith, John+1""#), cert);
        // #hex: DER UTF8String "Smith, John+1".
        let der = format!("0c0d{}", hex::encode("Smith, John+1"));
        assert_eq!(dn(&format!("CN=#{der}")), cert);
        let utf8 = DistinguishedName::from_entries([(0, "2.5.4.3", "Jürgen")]);
        assert_eq!(dn(r"CN=J\C3\BCrgen"), utf8);
        assert_eq!(dn("CN=JÜRGEN"), utf8);
    }

    #[test]
    fn multi_valued_rdn_is_a_set() {
        let cert = DistinguishedName::from_entries([
            (0, "2.5.4.10", "Org"),
            (1, "2.5.4.3", "a"),
            (1, "2.5.4.11", "b"),
        ]);
        assert_eq!(dn("CN=a+OU=b,O=Org"), cert);
        assert_eq!(dn("OU=b+CN=a,O=Org"), cert);
        assert_eq!(dn("/O=Org/OU=b+CN=a"), cert);
        assert_ne!(dn("CN=a,OU=b,O=Org"), cert);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert_eq!(DistinguishedName::parse("  "), Err(NameError::Empty));
        assert!(matches!(
            DistinguishedName::parse("CN"),
            Err(NameError::MissingEquals { .. })
        ));
        assert_eq!(
            DistinguishedName::parse("XYZ=1"),
            Err(NameError::UnknownType("XYZ".into()))
        );
        assert!(matches!(
            DistinguishedName::parse(r"CN=a\q"),
            Err(NameError::BadEscape(_))
        ));
        assert!(matches!(
            DistinguishedName::parse("CN=#zz"),
            Err(NameError::BadHexValue(_))
        ));
        assert!(matches!(
            DistinguishedName::parse(r#"CN="abc"#),
            Err(NameError::Unterminated(_))
        ));
    }

    #[test]
    fn display_is_canonical_rfc4514() {
        assert_eq!(
            dn("/C=US/O=Example Corp/CN=A\\, B").to_string(),
            r"CN=a\, b,O=example corp,C=us"
        );
        assert_eq!(dn(&dn("CN=x+OU=y,O=z").to_string()), dn("CN=x+OU=y,O=z"));
    }

    #[test]
    fn dns_names_are_lower_case_without_trailing_dot() {
        assert_eq!(canonical_dns_name("API.Example.COM."), "api.example.com");
        assert_eq!(canonical_dns_name("a.b"), "a.b");
    }
}
