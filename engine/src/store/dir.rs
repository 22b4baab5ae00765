//! The directory source: certificates in a watched directory (Kubernetes Secret mounts, config management).
//!
//! Layout of a directory (`CERTGATE_CERT_DIR` or `CERTGATE_CA_DIR`):
//!
//! * `<id>.pem`, `<id>.crt`, `<id>.cer`, `<id>.der`, with an optional `<id>.key`;
//! * `<id>.pfx` or `<id>.p12`, with its password in `<id>.password` (if any);
//! * `<id>/tls.crt` + optional `<id>/tls.key` (a Kubernetes TLS Secret mounted as a sub-directory).
//!
//! Names starting with a dot are ignored (Kubernetes' `..data` and
//! `..<timestamp>` entries; symlinks through them are followed). A file that
//! does not parse is logged, naming the file and the problem, and skipped;
//! the others stay in force. The directory is watched with inotify
//! (debounced ~200 ms) and rescanned every poll interval in any case, so a
//! `..data` symlink swap, a rename or an in-place write all apply.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inotify::{Inotify, WatchMask};
use tracing::{debug, info, warn};

use super::{check_id, parse_entry, Kind, Source, Store, StoreEntry};

/// Events closer together than this are handled by one rescan.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The result of scanning a directory.
#[derive(Debug, Default)]
pub struct Scan {
    /// The entries that parsed.
    pub entries: BTreeMap<String, Arc<StoreEntry>>,
    /// One line per skipped file, naming it and the problem.
    pub problems: Vec<String>,
}

const CERT_EXTS: [&str; 4] = ["pem", "crt", "cer", "der"];
const PFX_EXTS: [&str; 2] = ["pfx", "p12"];

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
    }
}

/// Reads every certificate in `dir` for namespace `kind`.
pub fn scan(dir: &Path, kind: Kind) -> Scan {
    let mut scan = Scan::default();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            scan.problems
                .push(format!("{}: cannot read directory: {e}", dir.display()));
            return scan;
        }
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    for name in &names {
        let path = dir.join(name);
        let (id, cert_path, key_path, password_path) = if path.is_dir() {
            let crt = path.join("tls.crt");
            if !crt.exists() {
                debug!(dir = %path.display(), "no tls.crt: not a certificate directory");
                continue;
            }
            (name.as_str(), crt, path.join("tls.key"), None)
        } else {
            let Some((stem, ext)) = name.rsplit_once('.') else {
                continue;
            };
            let ext = ext.to_ascii_lowercase();
            if CERT_EXTS.contains(&ext.as_str()) {
                (stem, path.clone(), dir.join(format!("{stem}.key")), None)
            } else if PFX_EXTS.contains(&ext.as_str()) {
                let pw = dir.join(format!("{stem}.password"));
                (stem, path.clone(), PathBuf::new(), Some(pw))
            } else {
                continue; // .key, .password and anything else
            }
        };
        if check_id(id).is_err() {
            scan.problems.push(format!(
                "{}: {id:?} is not a valid certificate id (1 to 128 of A-Z a-z 0-9 . _ -)",
                path.display()
            ));
            continue;
        }
        if let Some(first) = scan.entries.get(id) {
            scan.problems.push(format!(
                "{}: id {id:?} already comes from {}",
                path.display(),
                first.source
            ));
            continue;
        }
        let loaded = (|| {
            let cert = read_optional(&cert_path)?
                .ok_or_else(|| format!("{}: vanished while reading", cert_path.display()))?;
            let key = if key_path.as_os_str().is_empty() {
                None
            } else {
                read_optional(&key_path)?
            };
            let password = match &password_path {
                Some(p) => read_optional(p)?.map(|b| {
                    String::from_utf8_lossy(&b)
                        .trim_end_matches(['\n', '\r'])
                        .to_string()
                }),
                None => None,
            };
            parse_entry(kind, id, &cert, key.as_deref(), password.as_deref())
                .map_err(|e| format!("{}: {e}", cert_path.display()))
        })();
        match loaded {
            Ok(material) => {
                scan.entries.insert(
                    id.to_string(),
                    Arc::new(StoreEntry {
                        id: id.to_string(),
                        kind,
                        material,
                        source: Source::Dir(path.clone()),
                    }),
                );
            }
            Err(problem) => scan.problems.push(problem),
        }
    }
    scan
}

/// Rescans `dir` and hands the result to the store; logs problems not logged before.
fn sync(store: &Store, kind: Kind, dir: &Path, logged: &mut BTreeSet<String>) {
    let scan = scan(dir, kind);
    let now: BTreeSet<String> = scan.problems.into_iter().collect();
    for p in now.difference(logged) {
        warn!(kind = kind.as_str(), "directory source: skipped {p}");
    }
    *logged = now;
    let count = scan.entries.len();
    match store.replace_dir_entries(kind, scan.entries) {
        Ok(true) => info!(
            kind = kind.as_str(),
            dir = %dir.display(),
            entries = count,
            "directory source: changes applied"
        ),
        Ok(false) => {}
        Err(e) => warn!(
            kind = kind.as_str(),
            dir = %dir.display(),
            "directory source: change not applied, previous entries kept: {e}"
        ),
    }
}

/// A running directory watcher; stopped (and joined) on drop.
pub struct DirWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn add_watches(inotify: &mut Inotify, dir: &Path) {
    let mask = WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::ATTRIB
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF;
    if let Err(e) = inotify.watches().add(dir, mask) {
        debug!(dir = %dir.display(), "inotify watch failed: {e}");
    }
    // Sub-directories (`<id>/` Secret mounts swap their own `..data`).
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if !e.file_name().to_string_lossy().starts_with('.') && p.is_dir() {
                let _ = inotify.watches().add(&p, mask);
            }
        }
    }
}

/// Scans `dir` once now (so start-up sees its certificates), then watches it
/// on a thread: inotify events (debounced) and a rescan every `poll`.
pub fn watch(
    store: Arc<Store>,
    kind: Kind,
    dir: PathBuf,
    poll: Duration,
) -> std::io::Result<DirWatch> {
    let mut logged = BTreeSet::new();
    sync(&store, kind, &dir, &mut logged);
    let mut inotify = match Inotify::init() {
        Ok(mut i) => {
            add_watches(&mut i, &dir);
            Some(i)
        }
        Err(e) => {
            warn!(dir = %dir.display(), "inotify unavailable ({e}); polling every {poll:?}");
            None
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(format!("certgate-dir-{}", kind.as_str()))
        .spawn(move || {
            let mut buf = [0u8; 4096];
            let mut dirty: Option<Instant> = None;
            let mut next_poll = Instant::now() + poll;
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if let Some(i) = inotify.as_mut() {
                    let mut any = false;
                    while let Ok(mut events) = i.read_events(&mut buf) {
                        if events.next().is_none() {
                            break;
                        }
                        any = true;
                    }
                    if any && dirty.is_none() {
                        dirty = Some(Instant::now());
                    }
                }
                let now = Instant::now();
                let due =
                    dirty.is_some_and(|t| now.duration_since(t) >= DEBOUNCE) || now >= next_poll;
                if due {
                    dirty = None;
                    next_poll = now + poll;
                    if let Some(i) = inotify.as_mut() {
                        add_watches(i, &dir);
                    }
                    sync(&store, kind, &dir, &mut logged);
                }
            }
        })?;
    Ok(DirWatch {
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{leaf, temp_dir};
    use crate::store::{NoopHook, Store};
    use std::os::unix::fs::symlink;

    fn ids(store: &Store, kind: Kind) -> Vec<String> {
        store.contents().map(kind).keys().cloned().collect()
    }

    fn wait_for(store: &Store, kind: Kind, want: &[&str]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if ids(store, kind) == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn scan_reads_every_layout_and_skips_broken_files() {
        let d = temp_dir("dirscan");
        let a = leaf("dir a");
        std::fs::write(d.join("a.pem"), a.cert_pem()).unwrap();
        std::fs::write(d.join("a.key"), a.key_pem()).unwrap();
        std::fs::write(d.join("b.der"), leaf("dir b").cert.to_der().unwrap()).unwrap();
        let c = leaf("dir c");
        let p12 = boring::pkcs12::Pkcs12::builder()
            .build("pw", "c", &c.key, &c.cert)
            .unwrap();
        std::fs::write(d.join("c.pfx"), p12.to_der().unwrap()).unwrap();
        std::fs::write(d.join("c.password"), b"pw\n").unwrap();
        std::fs::create_dir(d.join("k8s")).unwrap();
        let k = leaf("dir k8s");
        std::fs::write(d.join("k8s/tls.crt"), k.cert_pem()).unwrap();
        std::fs::write(d.join("k8s/tls.key"), k.key_pem()).unwrap();
        std::fs::write(d.join("broken.crt"), b"garbage").unwrap();
        std::fs::write(d.join("notes.txt"), b"ignored").unwrap();

        let s = scan(&d, Kind::Certificate);
        let got: Vec<&str> = s.entries.keys().map(String::as_str).collect();
        assert_eq!(got, ["a", "b", "c", "k8s"]);
        assert!(s.entries["a"].material.meta.has_private_key);
        assert!(s.entries["c"].material.meta.has_private_key);
        assert!(s.entries["k8s"].material.meta.has_private_key);
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert!(s.problems[0].contains("broken.crt"), "{:?}", s.problems);
        assert_eq!(
            s.entries["b"].source.to_string(),
            format!("dir:{}", d.join("b.der").display())
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn watcher_picks_up_new_files_removals_and_the_k8s_symlink_swap() {
        let d = temp_dir("dirwatch");
        // Kubernetes layout: ..v1/tls.crt, ..data -> ..v1, tls.crt -> ..data/tls.crt
        let v1 = d.join("..v1");
        std::fs::create_dir(&v1).unwrap();
        let first = leaf("k8s first");
        std::fs::write(v1.join("tls.crt"), first.cert_pem()).unwrap();
        symlink("..v1", d.join("..data")).unwrap();
        symlink("..data/tls.crt", d.join("tls.crt")).unwrap();

        let store = Store::open(None, Arc::new(NoopHook)).unwrap();
        let watch = watch(
            Arc::clone(&store),
            Kind::Certificate,
            d.clone(),
            Duration::from_secs(3600),
        )
        .unwrap();
        assert_eq!(ids(&store, Kind::Certificate), ["tls"]);
        let sha = |s: &Store| s.contents().certificates["tls"].material.meta.sha1.clone();
        let before = sha(&store);

        // The swap: new data dir, new symlink renamed over ..data, old dir removed.
        let v2 = d.join("..v2");
        std::fs::create_dir(&v2).unwrap();
        let second = leaf("k8s second");
        std::fs::write(v2.join("tls.crt"), second.cert_pem()).unwrap();
        symlink("..v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        std::fs::remove_dir_all(&v1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while sha(&store) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_ne!(sha(&store), before, "the ..data swap was not picked up");

        // A new file, a broken one next to it, then a removal.
        std::fs::write(d.join("extra.pem"), leaf("extra").cert_pem()).unwrap();
        std::fs::write(d.join("bad.pem"), b"-----BEGIN CERTIFICATE-----\nxx\n").unwrap();
        assert!(
            wait_for(&store, Kind::Certificate, &["extra", "tls"]),
            "{:?}",
            ids(&store, Kind::Certificate)
        );
        std::fs::remove_file(d.join("extra.pem")).unwrap();
        assert!(
            wait_for(&store, Kind::Certificate, &["tls"]),
            "{:?}",
            ids(&store, Kind::Certificate)
        );

        // Directory entries are read-only through the API.
        let err = store.delete(Kind::Certificate, "tls").unwrap_err();
        assert_eq!(err.status(), 409);
        assert!(err.to_string().contains(&d.display().to_string()), "{err}");
        drop(watch);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn polling_alone_picks_up_changes() {
        let d = temp_dir("dirpoll");
        let store = Store::open(None, Arc::new(NoopHook)).unwrap();
        let mut logged = BTreeSet::new();
        sync(&store, Kind::Ca, &d, &mut logged);
        assert!(ids(&store, Kind::Ca).is_empty());
        std::fs::write(d.join("root.pem"), leaf("root").cert_pem()).unwrap();
        sync(&store, Kind::Ca, &d, &mut logged);
        assert_eq!(ids(&store, Kind::Ca), ["root"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
