//! Replacing a file so that a reader (or a crash) sees the old content or the new, never part of it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Marks the temporary files this module creates (`.<name>.tmp-<pid>-<n>`), so
/// that a directory scan can skip or remove the ones a crash left behind.
pub const TMP_MARK: &str = ".tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A step of the write failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct WriteError {
    /// What was being done ("create", "fsync", "rename a temporary file to", …).
    pub action: &'static str,
    /// The file it was done to.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Writes `contents` to a temporary file in `path`'s directory, created with
/// `mode` (so a private key is never readable by others, even briefly),
/// fsyncs it and renames it over `path`. On failure the temporary file is
/// removed and `path` is untouched. The caller fsyncs the directory when the
/// rename itself must survive a crash.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), WriteError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}{TMP_MARK}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let fail = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| WriteError {
            action,
            path,
            source,
        }
    };
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(fail("create", &tmp))?;
        // The umask may have narrowed `mode` (never widened it): make it exact.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(fail("set permissions of", &tmp))?;
        file.write_all(contents).map_err(fail("write", &tmp))?;
        file.sync_all().map_err(fail("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(fail("rename a temporary file to", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_with_the_mode_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("certgate-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["key.pem"]);
        // A failure (the target is a directory) names the step and the file, and cleans up.
        let e = write_atomic(&dir, b"x", 0o644).unwrap_err();
        assert!(e.to_string().contains("rename"), "{e}");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
