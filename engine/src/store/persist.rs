//! The store on disk: `<state>/store/{certificates,ca-certificates}/<id>.pem` (+ `<id>.key`, mode 0600).
//!
//! Every write is atomic: a temporary file in the same directory (created
//! with its final mode, so a key is never readable by others even briefly),
//! written, fsynced, renamed over the target, then the directory fsynced.
//! A certificate with a key writes the key first, then the certificate.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::{Kind, Source, StoreEntry};
use crate::tls::certfile::{parse_with_key, CertFileError, CertMaterial};

/// A store file or directory that could not be read, written or understood.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// An I/O step failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored file does not parse (the store was damaged outside certgate).
    #[error("corrupt certificate store file {}: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: CertFileError,
    },
    /// A stored file whose name is not `<id>.pem` / `<id>.key` with a valid id.
    #[error("unexpected file in the certificate store: {} ({why})", path.display())]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// Why it does not belong.
        why: &'static str,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PersistError + 'a {
    move |source| PersistError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The persisted store under a state directory.
#[derive(Clone, Debug)]
pub struct Persist {
    root: PathBuf,
}

/// Marker in temporary file names; such files left by a crash are removed at load.
use crate::atomic_file::TMP_MARK;

impl Persist {
    /// The store under `<state_dir>/store`.
    pub fn new(state_dir: &Path) -> Persist {
        Persist {
            root: state_dir.join("store"),
        }
    }

    /// The directory of one namespace.
    pub fn dir(&self, kind: Kind) -> PathBuf {
        self.root.join(kind.as_str())
    }

    fn ensure_dir(&self, kind: Kind) -> Result<PathBuf, PersistError> {
        let dir = self.dir(kind);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io("create directory", &dir))?;
        Ok(dir)
    }

    /// Reads every stored entry of `kind`. A file that does not parse is an error naming it.
    pub fn load(&self, kind: Kind) -> Result<BTreeMap<String, Arc<StoreEntry>>, PersistError> {
        let dir = self.ensure_dir(kind)?;
        let mut out = BTreeMap::new();
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io("read directory", &dir))? {
            let entry = entry.map_err(io("read directory", &dir))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        for name in &names {
            let path = dir.join(name);
            if name.starts_with('.') && name.contains(TMP_MARK) {
                // A write interrupted before its rename: the old file is intact.
                if let Err(e) = fs::remove_file(&path) {
                    warn!(file = %path.display(), "cannot remove a leftover temporary file: {e}");
                }
                continue;
            }
            if let Some(id) = name.strip_suffix(".key") {
                if !names.iter().any(|n| n.strip_suffix(".pem") == Some(id)) {
                    return Err(PersistError::Unexpected {
                        path,
                        why: "a private key without its <id>.pem certificate",
                    });
                }
                continue;
            }
            let Some(id) = name.strip_suffix(".pem") else {
                return Err(PersistError::Unexpected {
                    path,
                    why: "expected <id>.pem or <id>.key",
                });
            };
            if super::check_id(id).is_err() {
                return Err(PersistError::Unexpected {
                    path,
                    why: "not a valid certificate id",
                });
            }
            let cert = fs::read(&path).map_err(io("read", &path))?;
            let key_path = dir.join(format!("{id}.key"));
            let key = match fs::read(&key_path) {
                Ok(k) => Some(k),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io("read", &key_path)(e)),
            };
            let material = parse_with_key(&cert, key.as_deref(), None).map_err(|source| {
                PersistError::Corrupt {
                    path: if matches!(source, CertFileError::KeyMismatch { .. }) {
                        key_path.clone()
                    } else {
                        path.clone()
                    },
                    source,
                }
            })?;
            out.insert(
                id.to_string(),
                Arc::new(StoreEntry {
                    id: id.to_string(),
                    kind,
                    material,
                    source: Source::Api,
                }),
            );
        }
        Ok(out)
    }

    /// Writes (or replaces) an entry; removes a stale key when the new one has none.
    pub fn write(&self, kind: Kind, id: &str, material: &CertMaterial) -> Result<(), PersistError> {
        let dir = self.ensure_dir(kind)?;
        let cert_path = dir.join(format!("{id}.pem"));
        let key_path = dir.join(format!("{id}.key"));
        let chain = material
            .chain_pem()
            .map_err(|source| PersistError::Corrupt {
                path: cert_path.clone(),
                source,
            })?;
        let key = material.key_pem().map_err(|source| PersistError::Corrupt {
            path: key_path.clone(),
            source,
        })?;
        match key {
            Some(key) => write_atomic(&dir, &key_path, &key, 0o600)?,
            None => remove_if_exists(&key_path)?,
        }
        write_atomic(&dir, &cert_path, &chain, 0o644)?;
        sync_dir(&dir)
    }

    /// Removes an entry's files (certificate first, so a crash leaves no orphan certificate).
    pub fn remove(&self, kind: Kind, id: &str) -> Result<(), PersistError> {
        let dir = self.ensure_dir(kind)?;
        remove_if_exists(&dir.join(format!("{id}.pem")))?;
        remove_if_exists(&dir.join(format!("{id}.key")))?;
        sync_dir(&dir)
    }
}

fn remove_if_exists(path: &Path) -> Result<(), PersistError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

/// Temporary file (created with `mode`), write, fsync, rename over `path` (in `dir`).
fn write_atomic(dir: &Path, path: &Path, contents: &[u8], mode: u32) -> Result<(), PersistError> {
    debug_assert_eq!(path.parent(), Some(dir));
    crate::atomic_file::write_atomic(path, contents, mode).map_err(|e| PersistError::Io {
        action: e.action,
        path: e.path,
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certfile::parse;
    use crate::tls::pki::{self, CertSpec, Usage};
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "certgate-persist-{tag}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn material(with_key: bool) -> CertMaterial {
        let leaf = pki::self_signed(&CertSpec::new("persist leaf", Usage::Client)).unwrap();
        let mut pem = leaf.cert_pem();
        if with_key {
            pem.extend_from_slice(&leaf.key_pem());
        }
        parse(&pem, None).unwrap()
    }

    #[test]
    fn write_then_load_gives_the_same_contents_and_leaves_no_temp_files() {
        let state = temp_dir("roundtrip");
        let p = Persist::new(&state);
        let a = material(true);
        let b = material(false);
        p.write(Kind::Certificate, "a", &a).unwrap();
        p.write(Kind::Certificate, "b.v2", &b).unwrap();
        let names: Vec<String> = fs::read_dir(p.dir(Kind::Certificate))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.contains(TMP_MARK)),
            "temporary files left: {names:?}"
        );
        assert_eq!(names.len(), 3, "{names:?}");

        let again = Persist::new(&state).load(Kind::Certificate).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again["a"].material.meta, a.meta);
        assert_eq!(again["b.v2"].material.meta, b.meta);
        assert!(again["a"].material.key.is_some());
        assert!(Persist::new(&state).load(Kind::Ca).unwrap().is_empty());
        let _ = fs::remove_dir_all(&state);
    }

    #[test]
    fn key_files_are_0600_and_replacing_without_key_removes_it() {
        let state = temp_dir("mode");
        let p = Persist::new(&state);
        p.write(Kind::Certificate, "k", &material(true)).unwrap();
        let key = p.dir(Kind::Certificate).join("k.key");
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key mode {mode:o}");
        let dir_mode = fs::metadata(p.dir(Kind::Certificate))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode & 0o077, 0, "store directory mode {dir_mode:o}");
        p.write(Kind::Certificate, "k", &material(false)).unwrap();
        assert!(!key.exists());
        p.remove(Kind::Certificate, "k").unwrap();
        assert!(p.load(Kind::Certificate).unwrap().is_empty());
        let _ = fs::remove_dir_all(&state);
    }

    #[test]
    fn a_corrupt_file_at_load_is_an_error_naming_it() {
        let state = temp_dir("corrupt");
        let p = Persist::new(&state);
        p.write(Kind::Ca, "good", &material(false)).unwrap();
        let bad = p.dir(Kind::Ca).join("bad.pem");
        fs::write(
            &bad,
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = p.load(Kind::Ca).unwrap_err().to_string();
        assert!(e.contains(&bad.display().to_string()), "{e}");
        // leftover temporary files are cleaned, not errors
        fs::remove_file(&bad).unwrap();
        let tmp = p.dir(Kind::Ca).join(format!(".good.pem{TMP_MARK}1-1"));
        fs::write(&tmp, b"partial").unwrap();
        assert_eq!(p.load(Kind::Ca).unwrap().len(), 1);
        assert!(!tmp.exists());
        let _ = fs::remove_dir_all(&state);
    }
}
