//! Thumbprint allowlist: the file format, loading, and O(1) membership tests.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::thumbprint::{CertDigests, Thumbprint, ThumbprintError};

/// Thumbprints a certificate must be in (when configured). O(1) lookups.
///
/// The sets use std's `RandomState` (keyed SipHash). The keys are digests, so a plain
/// "take 8 bytes" hasher would look tempting, but anyone can mint self-signed certificates
/// and grind their digests into chosen hash buckets cheaply (only log2(capacity) + 7 bits
/// matter); a keyed hasher makes that impossible and costs a few tens of nanoseconds per
/// handshake.
#[derive(Default, Clone, Debug)]
pub struct Allowlist {
    sha1: HashSet<[u8; 20]>,
    sha256: HashSet<[u8; 32]>,
}

/// Why an allowlist could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    /// The allowlist file could not be read.
    #[error("cannot read allowlist file {}: {source}", path.display())]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line is neither blank, a comment, nor a thumbprint.
    #[error("{source_name} line {line}: {text:?} is not a thumbprint: {reason}")]
    BadEntry {
        /// The file name (or other description) of the allowlist.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// The entry as written, trimmed and without its comment.
        text: String,
        /// Why the entry is not a thumbprint.
        reason: ThumbprintError,
    },
}

impl Allowlist {
    /// Parses the allowlist file format: one thumbprint per line, in any spelling
    /// [`Thumbprint::parse`] accepts; blank lines are ignored, surrounding whitespace is
    /// trimmed, and `#` starts a comment when it begins the line or follows whitespace
    /// (so the `#` inside an `x5t#S256:` prefix is not a comment). A leading UTF-8 BOM
    /// and CRLF line ends are accepted; duplicate entries are harmless.
    ///
    /// `source` names the text in errors (usually the file name).
    pub fn parse(text: &str, source: &str) -> Result<Allowlist, AllowlistError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut list = Allowlist::default();
        for (index, raw) in text.lines().enumerate() {
            let entry = strip_comment(raw).trim();
            if entry.is_empty() {
                continue;
            }
            let thumbprint =
                Thumbprint::parse(entry).map_err(|reason| AllowlistError::BadEntry {
                    source_name: source.to_owned(),
                    line: index + 1,
                    text: entry.to_owned(),
                    reason,
                })?;
            list.insert(thumbprint);
        }
        Ok(list)
    }

    /// Reads and parses the allowlist file at `path`; errors name the path.
    pub fn load(path: &Path) -> Result<Allowlist, AllowlistError> {
        let text = std::fs::read_to_string(path).map_err(|source| AllowlistError::Read {
            path: path.to_owned(),
            source,
        })?;
        Allowlist::parse(&text, &path.display().to_string())
    }

    /// Whether either digest of the certificate is listed.
    pub fn contains(&self, d: &CertDigests) -> bool {
        self.sha1.contains(&d.sha1) || self.sha256.contains(&d.sha256)
    }

    /// Whether this exact thumbprint is listed.
    pub fn contains_thumbprint(&self, t: &Thumbprint) -> bool {
        match t {
            Thumbprint::Sha1(b) => self.sha1.contains(b),
            Thumbprint::Sha256(b) => self.sha256.contains(b),
        }
    }

    /// Number of distinct thumbprints (SHA-1 and SHA-256 together).
    pub fn len(&self) -> usize {
        self.sha1.len() + self.sha256.len()
    }

    /// Whether no thumbprint is listed.
    pub fn is_empty(&self) -> bool {
        self.sha1.is_empty() && self.sha256.is_empty()
    }

    /// Adds a thumbprint (no effect if already present).
    pub fn insert(&mut self, t: Thumbprint) {
        match t {
            Thumbprint::Sha1(b) => {
                self.sha1.insert(b);
            }
            Thumbprint::Sha256(b) => {
                self.sha256.insert(b);
            }
        }
    }
}

impl FromIterator<Thumbprint> for Allowlist {
    fn from_iter<I: IntoIterator<Item = Thumbprint>>(iter: I) -> Self {
        let mut list = Allowlist::default();
        for t in iter {
            list.insert(t);
        }
        list
    }
}

/// `line` up to the first `#` that starts the line or follows whitespace.
fn strip_comment(line: &str) -> &str {
    let mut previous_is_space = true;
    for (i, ch) in line.char_indices() {
        if ch == '#' && previous_is_space {
            return &line[..i];
        }
        previous_is_space = ch.is_whitespace();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(seed: u8) -> CertDigests {
        CertDigests {
            sha1: [seed; 20],
            sha256: [seed.wrapping_add(100); 32],
        }
    }

    #[test]
    fn parses_entries_comments_and_blank_lines() {
        let a = digests(0xab);
        let b = digests(0x01);
        let text = format!(
            "\u{feff}# operators\n\n   {}   # alice (SHA-1)\r\n\t{}\n#{}\nx5t#S256:{}  # bob\n",
            a.sha1_thumbprint().to_upper_hex(),
            a.sha1_thumbprint().to_base64url(),
            digests(0x02).sha1_thumbprint().to_upper_hex(),
            b.sha256_thumbprint().to_base64url(),
        );
        let list = Allowlist::parse(&text, "test.txt").unwrap();
        assert_eq!(list.len(), 2, "duplicate spelling of alice counted once");
        assert!(list.contains(&a));
        assert!(list.contains(&b));
        assert!(!list.contains(&digests(0x02)), "commented-out entry");
        assert!(list.contains_thumbprint(&b.sha256_thumbprint()));
        assert!(!list.contains_thumbprint(&b.sha1_thumbprint()));
    }

    #[test]
    fn contains_matches_either_digest() {
        let d = digests(7);
        let only_sha1: Allowlist = [d.sha1_thumbprint()].into_iter().collect();
        let only_sha256: Allowlist = [d.sha256_thumbprint()].into_iter().collect();
        assert!(only_sha1.contains(&d));
        assert!(only_sha256.contains(&d));
        let other = CertDigests {
            sha1: [8; 20],
            sha256: d.sha256,
        };
        assert!(only_sha256.contains(&other));
        assert!(!only_sha1.contains(&other));
    }

    #[test]
    fn empty_and_insert() {
        let mut list = Allowlist::parse("# nothing\n\n   \n", "x").unwrap();
        assert!(list.is_empty());
        assert_eq!(list.len(), 0);
        list.insert(Thumbprint::Sha1([1; 20]));
        list.insert(Thumbprint::Sha1([1; 20]));
        list.insert(Thumbprint::Sha256([1; 32]));
        assert_eq!(list.len(), 2);
        assert!(!list.is_empty());
    }

    #[test]
    fn bad_entry_names_file_line_and_text() {
        let text = format!("{}\n\n  zz # typo\n", "AB".repeat(20));
        let err = Allowlist::parse(&text, "/etc/x.txt").unwrap_err();
        match &err {
            AllowlistError::BadEntry {
                source_name,
                line,
                text,
                reason,
            } => {
                assert_eq!(source_name, "/etc/x.txt");
                assert_eq!(*line, 3);
                assert_eq!(text, "zz");
                assert_eq!(*reason, ThumbprintError::WrongLength { len: 2 });
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("/etc/x.txt line 3: \"zz\" is not a thumbprint: 2 characters"),
            "{err}"
        );
    }

    #[test]
    fn hash_inside_a_token_is_not_a_comment() {
        assert_eq!(strip_comment("x5t#S256:abc # c"), "x5t#S256:abc ");
        assert_eq!(strip_comment("#all"), "");
        assert_eq!(strip_comment("abc\t#c"), "abc\t");
        assert_eq!(strip_comment("abc"), "abc");
    }

    #[test]
    fn load_reads_file_and_names_missing_path() {
        let dir = std::env::temp_dir().join(format!(
            "certgate-allowlist-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("allow.txt");
        let d = digests(9);
        std::fs::write(&path, format!("{}\n", d.sha256_thumbprint())).unwrap();
        let list = Allowlist::load(&path).unwrap();
        assert!(list.contains(&d));

        std::fs::write(&path, "nope\n").unwrap();
        let err = Allowlist::load(&path).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{} line 1:", path.display())),
            "{err}"
        );

        let missing = dir.join("missing.txt");
        let err = Allowlist::load(&missing).unwrap_err();
        assert!(matches!(err, AllowlistError::Read { .. }));
        assert!(err.to_string().contains("missing.txt"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
