//! Certificate thumbprints (SHA-1 / SHA-256 of the DER): parsing every common spelling, formatting.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The digest of a certificate's DER encoding, as configured by an operator.
///
/// The hash itself is computed elsewhere (BoringSSL); this type only parses and formats.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Thumbprint {
    /// SHA-1 thumbprint (20 bytes), e.g. the JWT `x5t` header.
    Sha1([u8; 20]),
    /// SHA-256 thumbprint (32 bytes), e.g. the JWT `x5t#S256` header.
    Sha256([u8; 32]),
}

/// Why a string is not a thumbprint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ThumbprintError {
    /// Nothing left after trimming whitespace and an optional prefix.
    #[error("empty thumbprint")]
    Empty,
    /// The string (without separators) has a length that no accepted spelling has.
    #[error(
        "{len} characters; expected 40 (SHA-1) or 64 (SHA-256) hex digits, \
         or 27/28 (SHA-1) or 43/44 (SHA-256) base64url characters"
    )]
    WrongLength {
        /// Number of characters after trimming and prefix removal.
        len: usize,
    },
    /// Hex separated by ':' or ' ' whose digit count is neither 40 nor 64.
    #[error("{digits} hex digits; expected 40 (SHA-1) or 64 (SHA-256)")]
    WrongDigitCount {
        /// Number of hex digits once separators are removed.
        digits: usize,
    },
    /// A character in a hex spelling is not a hex digit.
    #[error("{ch:?} at column {column} is not a hex digit")]
    NotHex {
        /// The offending character.
        ch: char,
        /// 1-based character column in the input.
        column: usize,
    },
    /// A character in a base64url spelling is outside the alphabet.
    #[error("{ch:?} at column {column} is not a base64url character")]
    NotBase64 {
        /// The offending character.
        ch: char,
        /// 1-based character column in the input.
        column: usize,
    },
    /// The base64 text mixes the URL-safe (`-_`) and standard (`+/`) alphabets.
    #[error("mixes the base64url ('-', '_') and standard base64 ('+', '/') alphabets")]
    MixedBase64Alphabets,
    /// '=' padding is missing where 28/44 characters require it, or misplaced.
    #[error("bad '=' padding: a padded SHA-1 is 27 characters + '=', a padded SHA-256 43 + '='")]
    BadPadding,
    /// The last base64 character carries non-zero unused bits (not a canonical encoding).
    #[error("not a canonical base64url encoding (non-zero trailing bits)")]
    NonCanonicalBase64,
    /// A `sha1:`/`x5t:` or `sha256:`/`x5t#S256:` prefix disagrees with the digest length.
    #[error("prefix {prefix:?} announces {expected} but the value is a {actual}")]
    PrefixMismatch {
        /// The prefix as written.
        prefix: String,
        /// Algorithm the prefix announces.
        expected: &'static str,
        /// Algorithm implied by the value's length.
        actual: &'static str,
    },
}

/// Recognised prefixes (matched case-insensitively) and the algorithm each announces
/// (`true` = SHA-256). The last two match `openssl x509 -fingerprint` output.
const PREFIXES: [(&str, bool); 8] = [
    ("sha1:", false),
    ("sha-1:", false),
    ("x5t:", false),
    ("sha256:", true),
    ("sha-256:", true),
    ("x5t#s256:", true),
    ("sha1 fingerprint=", false),
    ("sha256 fingerprint=", true),
];

impl Thumbprint {
    /// Parses any accepted spelling (surrounding whitespace is ignored):
    ///
    /// * hex, any case, 40 (SHA-1) or 64 (SHA-256) digits, optionally separated by ':' or ' '
    ///   anywhere (`AB:CD:…`, `ab cd …`, `abcd…`);
    /// * base64url as in the JWT `x5t` (27 characters, or 28 with one '=') and `x5t#S256`
    ///   (43, or 44 with one '='); the standard alphabet (`+`, `/`) is accepted too, but
    ///   not mixed with `-`, `_`. Encodings with non-zero trailing bits are rejected.
    ///
    /// An optional, case-insensitive prefix names the algorithm and must agree with the
    /// length: `sha1:`, `sha-1:`, `x5t:`, `sha256:`, `sha-256:`, `x5t#S256:`, and the
    /// `SHA1 Fingerprint=` / `SHA256 Fingerprint=` of `openssl x509 -fingerprint`.
    ///
    /// The spellings cannot be confused: base64 never contains ':' or ' ', and the hex
    /// lengths (40, 64) differ from the base64url lengths (27, 28, 43, 44).
    pub fn parse(s: &str) -> Result<Thumbprint, ThumbprintError> {
        let trimmed = s.trim_start();
        let mut offset = s.len() - trimmed.len();
        let mut body = trimmed.trim_end();
        let mut announced = None;
        for (prefix, is_sha256) in PREFIXES {
            if let Some(head) = body.get(..prefix.len()) {
                if head.eq_ignore_ascii_case(prefix) {
                    announced = Some((head, is_sha256));
                    let rest = &body[prefix.len()..];
                    let rest_trimmed = rest.trim_start();
                    offset += prefix.len() + (rest.len() - rest_trimmed.len());
                    body = rest_trimmed;
                    break;
                }
            }
        }
        if body.is_empty() {
            return Err(ThumbprintError::Empty);
        }
        // 1-based character column in `s` of the byte at `index` in `body`.
        let column = |index: usize| s[..offset + index].chars().count() + 1;

        let thumbprint = if body.contains([':', ' ']) {
            parse_hex(body, column)?
        } else {
            match body.len() {
                40 | 64 => parse_hex(body, column)?,
                27 | 28 | 43 | 44 => parse_base64(body, column)?,
                _ => {
                    return Err(ThumbprintError::WrongLength {
                        len: body.chars().count(),
                    })
                }
            }
        };
        if let Some((prefix, is_sha256)) = announced {
            let actual_sha256 = matches!(thumbprint, Thumbprint::Sha256(_));
            if actual_sha256 != is_sha256 {
                let name = |sha256: bool| if sha256 { "SHA-256" } else { "SHA-1" };
                return Err(ThumbprintError::PrefixMismatch {
                    prefix: prefix.to_owned(),
                    expected: name(is_sha256),
                    actual: name(actual_sha256),
                });
            }
        }
        Ok(thumbprint)
    }

    /// The digest bytes (20 or 32).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Thumbprint::Sha1(b) => b,
            Thumbprint::Sha256(b) => b,
        }
    }

    /// Upper-case hex without separators (40 or 64 characters).
    pub fn to_upper_hex(&self) -> String {
        upper_hex(self.as_bytes())
    }

    /// Unpadded base64url, as in the JWT `x5t` / `x5t#S256` headers (27 or 43 characters).
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.as_bytes())
    }
}

/// Formats as upper-case hex without separators.
impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_upper_hex())
    }
}

impl FromStr for Thumbprint {
    type Err = ThumbprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Thumbprint::parse(s)
    }
}

/// Both thumbprints of one certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CertDigests {
    /// SHA-1 of the certificate DER.
    pub sha1: [u8; 20],
    /// SHA-256 of the certificate DER.
    pub sha256: [u8; 32],
}

impl CertDigests {
    /// Whether `thumbprint` is one of this certificate's digests.
    pub fn matches(&self, thumbprint: &Thumbprint) -> bool {
        match thumbprint {
            Thumbprint::Sha1(b) => *b == self.sha1,
            Thumbprint::Sha256(b) => *b == self.sha256,
        }
    }

    /// The SHA-1 digest as a [`Thumbprint`].
    pub fn sha1_thumbprint(&self) -> Thumbprint {
        Thumbprint::Sha1(self.sha1)
    }

    /// The SHA-256 digest as a [`Thumbprint`].
    pub fn sha256_thumbprint(&self) -> Thumbprint {
        Thumbprint::Sha256(self.sha256)
    }
}

/// Upper-case hex of `bytes`, no separators.
pub fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Hex with optional ':' / ' ' separators anywhere; `column` maps a byte index to a column.
fn parse_hex(body: &str, column: impl Fn(usize) -> usize) -> Result<Thumbprint, ThumbprintError> {
    let mut bytes = [0u8; 32];
    let mut digits = 0usize;
    for (i, ch) in body.char_indices() {
        if ch == ':' || ch == ' ' {
            continue;
        }
        let value = u8::try_from(ch)
            .ok()
            .and_then(hex_value)
            .ok_or(ThumbprintError::NotHex {
                ch,
                column: column(i),
            })?;
        if let Some(slot) = bytes.get_mut(digits / 2) {
            *slot |= if digits & 1 == 0 { value << 4 } else { value };
        }
        digits += 1;
    }
    match digits {
        40 => {
            let mut sha1 = [0u8; 20];
            sha1.copy_from_slice(&bytes[..20]);
            Ok(Thumbprint::Sha1(sha1))
        }
        64 => Ok(Thumbprint::Sha256(bytes)),
        _ => Err(ThumbprintError::WrongDigitCount { digits }),
    }
}

/// Base64url (or standard base64) of a 20- or 32-byte digest; `body.len()` is 27, 28, 43 or 44.
fn parse_base64(
    body: &str,
    column: impl Fn(usize) -> usize,
) -> Result<Thumbprint, ThumbprintError> {
    let mut url_safe = false;
    let mut standard = false;
    for (i, ch) in body.char_indices() {
        match ch {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '=' => {}
            '-' | '_' => url_safe = true,
            '+' | '/' => standard = true,
            _ => {
                return Err(ThumbprintError::NotBase64 {
                    ch,
                    column: column(i),
                })
            }
        }
    }
    if url_safe && standard {
        return Err(ThumbprintError::MixedBase64Alphabets);
    }
    // All ASCII from here on, so byte indices are character boundaries.
    let data = match body.len() % 4 {
        0 => body.strip_suffix('=').ok_or(ThumbprintError::BadPadding)?,
        _ => body,
    };
    if data.contains('=') {
        return Err(ThumbprintError::BadPadding);
    }
    let decoded = if standard {
        let translated: String = data
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        URL_SAFE_NO_PAD.decode(translated)
    } else {
        URL_SAFE_NO_PAD.decode(data)
    }
    // The alphabet and length were checked above, so only trailing bits can be wrong.
    .map_err(|_| ThumbprintError::NonCanonicalBase64)?;
    if let Ok(sha1) = <[u8; 20]>::try_from(decoded.as_slice()) {
        Ok(Thumbprint::Sha1(sha1))
    } else if let Ok(sha256) = <[u8; 32]>::try_from(decoded.as_slice()) {
        Ok(Thumbprint::Sha256(sha256))
    } else {
        Err(ThumbprintError::WrongLength { len: body.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: [u8; 20] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff, 0xfe, 0xfb, 0xff, 0x0f,
    ];

    fn sha256() -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(37).wrapping_add(0xf9);
        }
        b
    }

    #[test]
    fn upper_hex_formats_all_nibbles() {
        assert_eq!(upper_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000FA5FF");
        assert_eq!(upper_hex(&[]), "");
        assert_eq!(
            Thumbprint::Sha1(SHA1).to_upper_hex(),
            "00112233445566778899AABBCCDDEEFFFEFBFF0F"
        );
    }

    #[test]
    fn parses_plain_hex_any_case() {
        let t = Thumbprint::Sha1(SHA1);
        assert_eq!(
            Thumbprint::parse("00112233445566778899AABBCCDDEEFFFEFBFF0F"),
            Ok(t)
        );
        assert_eq!(
            Thumbprint::parse("00112233445566778899aabbccddeefffefbff0f"),
            Ok(t)
        );
        let t256 = Thumbprint::Sha256(sha256());
        assert_eq!(Thumbprint::parse(&t256.to_upper_hex()), Ok(t256));
        assert_eq!(
            Thumbprint::parse(&t256.to_upper_hex().to_lowercase()),
            Ok(t256)
        );
    }

    #[test]
    fn parses_separated_hex() {
        let t = Thumbprint::Sha1(SHA1);
        let colons = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:FE:FB:FF:0F";
        assert_eq!(Thumbprint::parse(colons), Ok(t));
        assert_eq!(Thumbprint::parse(&colons.replace(':', " ")), Ok(t));
        assert_eq!(Thumbprint::parse(&colons.to_lowercase()), Ok(t));
        // 27 characters with separators is still hex (and too short), never base64.
        assert_eq!(
            Thumbprint::parse("00:11:22:33:44:55:66:77:88:9"),
            Err(ThumbprintError::WrongDigitCount { digits: 19 })
        );
        let t256 = Thumbprint::Sha256(sha256());
        let hex = t256.to_upper_hex();
        let spaced: Vec<&str> = (0..32).map(|i| &hex[2 * i..2 * i + 2]).collect();
        assert_eq!(Thumbprint::parse(&spaced.join(":")), Ok(t256));
        assert_eq!(
            Thumbprint::parse(&format!("  {}\t", spaced.join(" "))),
            Ok(t256)
        );
    }

    #[test]
    fn parses_base64url_padded_and_unpadded() {
        let t = Thumbprint::Sha1(SHA1);
        let b64 = t.to_base64url();
        assert_eq!(b64.len(), 27);
        assert_eq!(Thumbprint::parse(&b64), Ok(t));
        assert_eq!(Thumbprint::parse(&format!("{b64}=")), Ok(t));
        let t256 = Thumbprint::Sha256(sha256());
        let b64 = t256.to_base64url();
        assert_eq!(b64.len(), 43);
        assert_eq!(Thumbprint::parse(&b64), Ok(t256));
        assert_eq!(Thumbprint::parse(&format!("{b64}=")), Ok(t256));
    }

    #[test]
    fn base64url_uses_url_alphabet_and_standard_is_accepted() {
        // 0xfb 0xef 0xbe encodes as "----" (url) / "++++" (standard); 0xff 0xff 0xff as "____" / "////".
        let mut bytes = [0xffu8; 20];
        bytes[..3].copy_from_slice(&[0xfb, 0xef, 0xbe]);
        let t = Thumbprint::Sha1(bytes);
        let url = t.to_base64url();
        assert!(url.starts_with("----____"), "{url}");
        let standard = url.replace('-', "+").replace('_', "/");
        assert_eq!(Thumbprint::parse(&standard), Ok(t));
        assert_eq!(Thumbprint::parse(&format!("{standard}=")), Ok(t));
        let mixed = url.replacen('-', "+", 1);
        assert_eq!(
            Thumbprint::parse(&mixed),
            Err(ThumbprintError::MixedBase64Alphabets)
        );
    }

    #[test]
    fn non_ascii_input_is_rejected_not_panicking() {
        // 26 ASCII + 'é' (2 bytes) = 28 bytes: must not split inside the character.
        let s = format!("{}é", "A".repeat(26));
        assert_eq!(
            Thumbprint::parse(&s),
            Err(ThumbprintError::NotBase64 {
                ch: 'é',
                column: 27
            })
        );
        let s = format!("{}é", "A".repeat(38));
        assert_eq!(
            Thumbprint::parse(&s),
            Err(ThumbprintError::NotHex {
                ch: 'é',
                column: 39
            })
        );
    }

    #[test]
    fn known_x5t_value() {
        // SHA-1 of the empty string, da39a3ee5e6b4b0d3255bfef95601890afd80709.
        let t = Thumbprint::parse("da39a3ee5e6b4b0d3255bfef95601890afd80709").unwrap();
        assert_eq!(t.to_base64url(), "2jmj7l5rSw0yVb_vlWAYkK_YBwk");
        assert_eq!(Thumbprint::parse("2jmj7l5rSw0yVb_vlWAYkK_YBwk="), Ok(t));
    }

    #[test]
    fn prefixes_are_accepted_and_checked() {
        let t = Thumbprint::Sha1(SHA1);
        let t256 = Thumbprint::Sha256(sha256());
        assert_eq!(
            Thumbprint::parse(&format!("sha1:{}", t.to_upper_hex())),
            Ok(t)
        );
        assert_eq!(
            Thumbprint::parse(&format!("SHA-1: {}", t.to_upper_hex())),
            Ok(t)
        );
        assert_eq!(
            Thumbprint::parse(&format!("x5t:{}", t.to_base64url())),
            Ok(t)
        );
        assert_eq!(
            Thumbprint::parse(&format!("x5t#S256:{}", t256.to_base64url())),
            Ok(t256)
        );
        assert_eq!(
            Thumbprint::parse(&format!("sha256:{}", t256.to_upper_hex())),
            Ok(t256)
        );
        assert_eq!(
            Thumbprint::parse(
                "SHA1 Fingerprint=00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:FE:FB:FF:0F"
            ),
            Ok(t)
        );
        assert_eq!(
            Thumbprint::parse(&format!("sha256:{}", t.to_upper_hex())),
            Err(ThumbprintError::PrefixMismatch {
                prefix: "sha256:".into(),
                expected: "SHA-256",
                actual: "SHA-1",
            })
        );
        assert_eq!(Thumbprint::parse("sha1:"), Err(ThumbprintError::Empty));
    }

    #[test]
    fn rejects_bad_input_with_position() {
        assert_eq!(Thumbprint::parse("   "), Err(ThumbprintError::Empty));
        assert_eq!(
            Thumbprint::parse("zz"),
            Err(ThumbprintError::WrongLength { len: 2 })
        );
        let mut bad = "00112233445566778899AABBCCDDEEFFFEFBFF0F".to_string();
        bad.replace_range(4..5, "g");
        assert_eq!(
            Thumbprint::parse(&format!(" {bad}")),
            Err(ThumbprintError::NotHex { ch: 'g', column: 6 })
        );
        assert_eq!(
            Thumbprint::parse("00:1x"),
            Err(ThumbprintError::NotHex { ch: 'x', column: 5 })
        );
        // 41 hex digits.
        assert_eq!(
            Thumbprint::parse("00112233445566778899AABBCCDDEEFFFEFBFF0F0"),
            Err(ThumbprintError::WrongLength { len: 41 })
        );
        assert_eq!(
            Thumbprint::parse("2jmj7l5rSw0yVb.vlWAYkK_YBwk"),
            Err(ThumbprintError::NotBase64 {
                ch: '.',
                column: 15
            })
        );
        // 28 characters must end in exactly one '='.
        assert_eq!(
            Thumbprint::parse("2jmj7l5rSw0yVb_vlWAYkK_YBwkA"),
            Err(ThumbprintError::BadPadding)
        );
        assert_eq!(
            Thumbprint::parse("2jmj7l5rSw0yVb_vlWAYkK_YBw=="),
            Err(ThumbprintError::BadPadding)
        );
        // Last character with non-zero unused bits.
        assert_eq!(
            Thumbprint::parse("2jmj7l5rSw0yVb_vlWAYkK_YBwl"),
            Err(ThumbprintError::NonCanonicalBase64)
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        let e = Thumbprint::parse("00:1x").unwrap_err();
        assert_eq!(e.to_string(), "'x' at column 5 is not a hex digit");
        let e = Thumbprint::parse("zz").unwrap_err();
        assert!(
            e.to_string().starts_with("2 characters; expected 40"),
            "{e}"
        );
    }

    #[test]
    fn round_trips_and_digest_matching() {
        let d = CertDigests {
            sha1: SHA1,
            sha256: sha256(),
        };
        for t in [d.sha1_thumbprint(), d.sha256_thumbprint()] {
            assert_eq!(Thumbprint::parse(&t.to_upper_hex()), Ok(t));
            assert_eq!(Thumbprint::parse(&t.to_base64url()), Ok(t));
            assert_eq!(t.to_string().parse::<Thumbprint>(), Ok(t));
            assert!(d.matches(&t));
        }
        assert!(!d.matches(&Thumbprint::Sha1([0; 20])));
        assert!(!d.matches(&Thumbprint::Sha256([0; 32])));
    }
}
