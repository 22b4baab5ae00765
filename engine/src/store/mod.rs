//! The certificate store: `certificates` and `ca-certificates`, id → parsed entry, changed live.
//!
//! Entries come from the admin API (persisted under `CERTGATE_STATE_DIR`, see
//! [`persist`]) or from watched directories (`CERTGATE_CERT_DIR`,
//! `CERTGATE_CA_DIR`, see [`dir`]; read-only through the API). A directory
//! entry shadows an API entry of the same id.
//!
//! Every change goes through one path, serialised by a mutex:
//!
//! ```text
//!  parse ─▶ refuse if in use (delete) ─▶ hook.apply(new contents) ─▶ persist ─▶ swap
//!                                         Err → 409, nothing changes   Err → hook.apply(old), 500
//! ```
//!
//! The [`StoreHook`] is how the engine builds and publishes a new trust
//! snapshot from [`StoreContents`], and names who uses an entry.

pub mod dir;
pub mod persist;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use tracing::{info, warn};

use crate::tls::certfile::{self, CertFileError, CertMaterial};
use persist::{Persist, PersistError};

// === Kinds, sources, entries ===

/// The two namespaces of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Certificates (server certificates, backend client certificates, client certificates for identities).
    Certificate,
    /// Trusted roots and intermediates for client-certificate verification.
    Ca,
}

impl Kind {
    /// The namespace as it appears in URLs and on disk.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Certificate => "certificates",
            Kind::Ca => "ca-certificates",
        }
    }

    /// The singular, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Certificate => "certificate",
            Kind::Ca => "CA certificate",
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Certificate => 0,
            Kind::Ca => 1,
        }
    }
}

/// Where an entry came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Uploaded through the admin API (persisted in the state directory).
    Api,
    /// Read from this file or directory of a watched directory source.
    Dir(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Api => f.write_str("api"),
            Source::Dir(p) => write!(f, "dir:{}", p.display()),
        }
    }
}

/// One stored certificate.
#[derive(Debug)]
pub struct StoreEntry {
    /// Its id (`[A-Za-z0-9._-]{1,128}`, no leading dot).
    pub id: String,
    /// Its namespace.
    pub kind: Kind,
    /// The certificate, its chain, its key if any, and its description.
    pub material: CertMaterial,
    /// Where it came from.
    pub source: Source,
}

/// Everything in the store at one moment: what the hook builds a snapshot from.
#[derive(Clone, Debug, Default)]
pub struct StoreContents {
    /// `certificates`, by id.
    pub certificates: BTreeMap<String, Arc<StoreEntry>>,
    /// `ca-certificates`, by id.
    pub ca_certificates: BTreeMap<String, Arc<StoreEntry>>,
}

impl StoreContents {
    /// One namespace.
    pub fn map(&self, kind: Kind) -> &BTreeMap<String, Arc<StoreEntry>> {
        match kind {
            Kind::Certificate => &self.certificates,
            Kind::Ca => &self.ca_certificates,
        }
    }

    /// One entry.
    pub fn get(&self, kind: Kind, id: &str) -> Option<&Arc<StoreEntry>> {
        self.map(kind).get(id)
    }
}

/// How store changes reach the engine. Implemented by the engine (the trust
/// snapshot builder); [`NoopHook`] and [`RecordingHook`] serve tests.
///
/// Contract:
/// * `apply` and `users` are called with the store's change lock held: they
///   must not call [`Store::put`], [`Store::delete`] or
///   [`Store::replace_dir_entries`] (deadlock). [`Store::contents`] still
///   returns the *previous* contents during `apply`; build from the argument.
/// * `apply` is called from the admin runtime's thread (API changes) **and**
///   from the directory watcher threads (`certgate-dir-*`): serialise it with
///   any other snapshot builder (SIGHUP reload) so generations do not race.
/// * After a failed persist, `apply` is called again with the previous
///   contents; it should not fail then (it built them before).
pub trait StoreHook: Send + Sync {
    /// Build and publish a snapshot from `contents`. `Err(message)` means the
    /// change would leave the configuration invalid: it is refused (409 with
    /// the message) and nothing changes.
    fn apply(&self, contents: &StoreContents) -> Result<(), String>;

    /// Who uses this entry (policies, hosts, backends), e.g. `"host api.example.com"`.
    /// A non-empty list makes a delete fail with 409 naming them.
    fn users(&self, kind: Kind, id: &str) -> Vec<String>;
}

/// Accepts every change; nothing uses anything.
#[derive(Debug, Default)]
pub struct NoopHook;

impl StoreHook for NoopHook {
    fn apply(&self, _: &StoreContents) -> Result<(), String> {
        Ok(())
    }
    fn users(&self, _: Kind, _: &str) -> Vec<String> {
        Vec::new()
    }
}

/// A hook for tests: records every applied contents, can refuse, and has configurable users.
#[derive(Debug, Default)]
pub struct RecordingHook {
    /// Ids of both namespaces of each `apply` call, in order.
    pub applied: Mutex<Vec<(Vec<String>, Vec<String>)>>,
    /// When set, `apply` refuses with this message.
    pub refuse: Mutex<Option<String>>,
    /// Users by (kind, id).
    pub users: Mutex<BTreeMap<(Kind, String), Vec<String>>>,
}

impl StoreHook for RecordingHook {
    fn apply(&self, contents: &StoreContents) -> Result<(), String> {
        if let Some(why) = self.refuse.lock().map_err(|e| e.to_string())?.clone() {
            return Err(why);
        }
        self.applied.lock().map_err(|e| e.to_string())?.push((
            contents.certificates.keys().cloned().collect(),
            contents.ca_certificates.keys().cloned().collect(),
        ));
        Ok(())
    }
    fn users(&self, kind: Kind, id: &str) -> Vec<String> {
        self.users
            .lock()
            .ok()
            .and_then(|u| u.get(&(kind, id.to_string())).cloned())
            .unwrap_or_default()
    }
}

// === Errors ===

/// Why a store operation failed; [`StoreError::status`] is the HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The id does not follow the rules.
    #[error("invalid id {0:?}: use 1 to 128 characters from A-Z a-z 0-9 . _ - and no leading dot")]
    InvalidId(String),
    /// The upload does not parse (wrong password, corrupt, key mismatch).
    #[error("{} {id:?}: {source}", kind.noun())]
    Parse {
        /// Namespace.
        kind: Kind,
        /// Id.
        id: String,
        /// What is wrong.
        source: CertFileError,
    },
    /// A `ca-certificates` upload that is not a CA certificate.
    #[error("CA certificate {id:?}: {subject} is neither a CA (basicConstraints CA:TRUE) nor self-signed")]
    NotCa {
        /// Id.
        id: String,
        /// Its subject.
        subject: String,
    },
    /// No such entry.
    #[error("{} {id:?} not found", kind.noun())]
    NotFound {
        /// Namespace.
        kind: Kind,
        /// Id.
        id: String,
    },
    /// Delete refused: still used.
    #[error("{} {id:?} is in use by {}", kind.noun(), users.join(", "))]
    InUse {
        /// Namespace.
        kind: Kind,
        /// Id.
        id: String,
        /// Its users.
        users: Vec<String>,
    },
    /// The entry comes from a watched directory.
    #[error("{} {id:?} comes from the directory source {} and is read-only through the API (change the file instead)", kind.noun(), path.display())]
    ReadOnly {
        /// Namespace.
        kind: Kind,
        /// Id.
        id: String,
        /// The file or directory it was read from.
        path: PathBuf,
    },
    /// The hook refused the change.
    #[error("change refused, nothing changed: {0}")]
    Refused(String),
    /// Persisting failed (the change was rolled back).
    #[error("cannot persist the change (rolled back): {0}")]
    Persist(#[from] PersistError),
}

impl StoreError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            StoreError::InvalidId(_) | StoreError::Parse { .. } | StoreError::NotCa { .. } => 400,
            StoreError::NotFound { .. } => 404,
            StoreError::InUse { .. } | StoreError::ReadOnly { .. } | StoreError::Refused(_) => 409,
            StoreError::Persist(_) => 500,
        }
    }
}

/// Checks an id: `[A-Za-z0-9._-]{1,128}`, no leading dot.
pub fn check_id(id: &str) -> Result<(), StoreError> {
    let ok = (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidId(id.to_string()))
    }
}

/// Parses an upload for `kind` and applies the namespace's rule (a CA entry
/// must be a CA certificate or self-signed).
pub fn parse_entry(
    kind: Kind,
    id: &str,
    bytes: &[u8],
    key: Option<&[u8]>,
    password: Option<&str>,
) -> Result<CertMaterial, StoreError> {
    let material =
        certfile::parse_with_key(bytes, key, password).map_err(|source| StoreError::Parse {
            kind,
            id: id.to_string(),
            source,
        })?;
    if kind == Kind::Ca && !material.meta.is_ca && !material.meta.self_signed {
        return Err(StoreError::NotCa {
            id: id.to_string(),
            subject: material.meta.subject.clone(),
        });
    }
    Ok(material)
}

// === The store ===

#[derive(Clone, Default)]
struct State {
    /// API entries per kind.
    api: [BTreeMap<String, Arc<StoreEntry>>; 2],
    /// Directory entries per kind.
    dir: [BTreeMap<String, Arc<StoreEntry>>; 2],
}

impl State {
    fn contents(&self) -> StoreContents {
        let merge = |k: Kind| {
            let mut m = self.api[k.index()].clone();
            for (id, e) in &self.dir[k.index()] {
                m.insert(id.clone(), Arc::clone(e));
            }
            m
        };
        StoreContents {
            certificates: merge(Kind::Certificate),
            ca_certificates: merge(Kind::Ca),
        }
    }
}

/// The live certificate store.
pub struct Store {
    persist: Option<Persist>,
    hook: RwLock<Arc<dyn StoreHook>>,
    /// Serialises changes; holds the sources of truth.
    state: Mutex<State>,
    /// What readers see.
    current: ArcSwap<StoreContents>,
}

/// What a successful PUT did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new entry (201).
    Created,
    /// An existing entry was replaced (200).
    Replaced,
}

impl Store {
    /// Loads the persisted store under `state_dir` (`None`: memory only).
    /// The hook is not called; the engine builds its first snapshot from [`Store::contents`].
    pub fn open(
        state_dir: Option<&Path>,
        hook: Arc<dyn StoreHook>,
    ) -> Result<Arc<Store>, PersistError> {
        let persist = state_dir.map(Persist::new);
        let mut state = State::default();
        if let Some(p) = &persist {
            for kind in [Kind::Certificate, Kind::Ca] {
                state.api[kind.index()] = p.load(kind)?;
            }
        }
        let contents = state.contents();
        Ok(Arc::new(Store {
            persist,
            hook: RwLock::new(hook),
            state: Mutex::new(state),
            current: ArcSwap::from_pointee(contents),
        }))
    }

    /// Replaces the hook (the engine installs its own once its snapshot machinery exists).
    pub fn set_hook(&self, hook: Arc<dyn StoreHook>) {
        if let Ok(mut h) = self.hook.write() {
            *h = hook;
        }
    }

    fn hook(&self) -> Arc<dyn StoreHook> {
        match self.hook.read() {
            Ok(h) => Arc::clone(&h),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current contents (lock-free read).
    pub fn contents(&self) -> Arc<StoreContents> {
        self.current.load_full()
    }

    /// Users of an entry, as the hook reports them.
    pub fn users(&self, kind: Kind, id: &str) -> Vec<String> {
        self.hook().users(kind, id)
    }

    /// hook.apply(new) → persist → swap; on a persist failure hook.apply(old).
    fn commit(
        &self,
        state: &mut State,
        next: State,
        persist: impl FnOnce(&Persist) -> Result<(), PersistError>,
    ) -> Result<(), StoreError> {
        let hook = self.hook();
        let contents = next.contents();
        hook.apply(&contents).map_err(StoreError::Refused)?;
        if let Some(p) = &self.persist {
            if let Err(e) = persist(p) {
                if let Err(again) = hook.apply(&self.current.load()) {
                    warn!("store: restoring the previous snapshot failed too: {again}");
                }
                return Err(e.into());
            }
        }
        *state = next;
        self.current.store(Arc::new(contents));
        Ok(())
    }

    /// Adds or replaces an API entry from an upload.
    pub fn put(
        &self,
        kind: Kind,
        id: &str,
        body: &[u8],
        password: Option<&str>,
    ) -> Result<PutOutcome, StoreError> {
        check_id(id)?;
        let material = parse_entry(kind, id, body, None, password)?;
        let mut state = self.lock();
        if let Some(e) = state.dir[kind.index()].get(id) {
            return Err(read_only(e));
        }
        let outcome = if state.api[kind.index()].contains_key(id) {
            PutOutcome::Replaced
        } else {
            PutOutcome::Created
        };
        let entry = Arc::new(StoreEntry {
            id: id.to_string(),
            kind,
            material,
            source: Source::Api,
        });
        let mut next = state.clone();
        next.api[kind.index()].insert(id.to_string(), Arc::clone(&entry));
        self.commit(&mut state, next, |p| p.write(kind, id, &entry.material))?;
        info!(
            kind = kind.as_str(),
            id,
            sha1 = %entry.material.meta.sha1,
            subject = %entry.material.meta.subject,
            "store: {}",
            if outcome == PutOutcome::Created { "added" } else { "replaced" }
        );
        Ok(outcome)
    }

    /// Deletes an API entry unless something uses it.
    pub fn delete(&self, kind: Kind, id: &str) -> Result<(), StoreError> {
        check_id(id)?;
        let mut state = self.lock();
        if let Some(e) = state.dir[kind.index()].get(id) {
            return Err(read_only(e));
        }
        if !state.api[kind.index()].contains_key(id) {
            return Err(StoreError::NotFound {
                kind,
                id: id.to_string(),
            });
        }
        let users = self.hook().users(kind, id);
        if !users.is_empty() {
            return Err(StoreError::InUse {
                kind,
                id: id.to_string(),
                users,
            });
        }
        let mut next = state.clone();
        next.api[kind.index()].remove(id);
        self.commit(&mut state, next, |p| p.remove(kind, id))?;
        info!(kind = kind.as_str(), id, "store: deleted");
        Ok(())
    }

    /// The directory entries of `kind` now in force.
    pub fn dir_entries(&self, kind: Kind) -> BTreeMap<String, Arc<StoreEntry>> {
        self.lock().dir[kind.index()].clone()
    }

    /// Replaces every directory entry of `kind` (a rescan of its directory).
    /// Returns false when nothing changed (same ids, same material).
    pub fn replace_dir_entries(
        &self,
        kind: Kind,
        entries: BTreeMap<String, Arc<StoreEntry>>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let old = &state.dir[kind.index()];
        let same = old.len() == entries.len()
            && old.iter().zip(&entries).all(|((a_id, a), (b_id, b))| {
                a_id == b_id
                    && a.source == b.source
                    && a.material.fingerprint() == b.material.fingerprint()
            });
        if same {
            return Ok(false);
        }
        let mut next = state.clone();
        next.dir[kind.index()] = entries;
        self.commit(&mut state, next, |_| Ok(()))?;
        Ok(true)
    }
}

/// Why the store could not start.
#[derive(Debug, thiserror::Error)]
pub enum StoreStartError {
    /// The persisted store does not load.
    #[error("CERTGATE_STATE_DIR: {0}")]
    Load(#[from] PersistError),
    /// A watched directory is missing or unreadable.
    #[error("{var}={}: {problem}", path.display())]
    Dir {
        /// The variable naming it.
        var: &'static str,
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// A started store: the store and the watchers of its directory sources
/// (dropping them stops the watching).
pub struct StoreRuntime {
    /// The store.
    pub store: Arc<Store>,
    /// Directory watchers.
    pub watches: Vec<dir::DirWatch>,
}

/// Opens the persisted store of `config` and starts its directory sources
/// (each scanned once before this returns).
pub fn start(
    config: &crate::config::Config,
    hook: Arc<dyn StoreHook>,
) -> Result<StoreRuntime, StoreStartError> {
    let store = Store::open(Some(&config.state_dir), hook)?;
    let mut watches = Vec::new();
    for (var, kind, path) in [
        (crate::config::CERT_DIR, Kind::Certificate, &config.cert_dir),
        (crate::config::CA_DIR, Kind::Ca, &config.ca_dir),
    ] {
        let Some(path) = path else { continue };
        let problem = |problem: String| StoreStartError::Dir {
            var,
            path: path.clone(),
            problem,
        };
        if !path.is_dir() {
            return Err(problem("not a directory".into()));
        }
        let w = dir::watch(Arc::clone(&store), kind, path.clone(), config.cert_dir_poll)
            .map_err(|e| problem(format!("cannot start its watcher: {e}")))?;
        watches.push(w);
    }
    Ok(StoreRuntime { store, watches })
}

fn read_only(e: &StoreEntry) -> StoreError {
    StoreError::ReadOnly {
        kind: e.kind,
        id: e.id.clone(),
        path: match &e.source {
            Source::Dir(p) => p.clone(),
            Source::Api => PathBuf::new(),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tls::pki::{self, CertSpec, Issued, Usage};
    use std::sync::atomic::{AtomicU64, Ordering};

    static N: AtomicU64 = AtomicU64::new(0);

    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "certgate-store-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub(crate) fn leaf(cn: &str) -> Issued {
        pki::self_signed(&CertSpec::new(cn, Usage::Client)).unwrap()
    }

    fn files_under(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(files_under(&p));
                } else {
                    out.push(p.display().to_string());
                }
            }
        }
        out
    }

    #[test]
    fn ids_follow_the_rules() {
        for ok in ["a", "api-cert_v2.1", &"x".repeat(128)] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "ü", &"x".repeat(129), ".."] {
            assert!(
                matches!(check_id(bad), Err(StoreError::InvalidId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn put_replace_delete_with_persistence_and_reload() {
        let state = temp_dir("cycle");
        let hook = Arc::new(RecordingHook::default());
        let store = Store::open(Some(&state), hook.clone()).unwrap();
        let a = leaf("store a");
        let mut pem = a.cert_pem();
        pem.extend_from_slice(&a.key_pem());
        assert_eq!(
            store.put(Kind::Certificate, "a", &pem, None).unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            store.put(Kind::Certificate, "a", &pem, None).unwrap(),
            PutOutcome::Replaced
        );
        assert_eq!(hook.applied.lock().unwrap().len(), 2);
        let reopened = Store::open(Some(&state), Arc::new(NoopHook)).unwrap();
        let e = Arc::clone(reopened.contents().get(Kind::Certificate, "a").unwrap());
        assert!(e.material.meta.has_private_key);
        assert_eq!(e.source, Source::Api);

        hook.users.lock().unwrap().insert(
            (Kind::Certificate, "a".into()),
            vec!["host api.example".into()],
        );
        let err = store.delete(Kind::Certificate, "a").unwrap_err();
        assert_eq!(err.status(), 409);
        assert!(err.to_string().contains("host api.example"), "{err}");
        hook.users.lock().unwrap().clear();
        store.delete(Kind::Certificate, "a").unwrap();
        assert!(store.contents().certificates.is_empty());
        assert!(matches!(
            store.delete(Kind::Certificate, "a"),
            Err(StoreError::NotFound { .. })
        ));
        assert!(files_under(&state.join("store")).is_empty());
        let _ = std::fs::remove_dir_all(&state);
    }

    #[test]
    fn a_refused_change_leaves_memory_and_disk_unchanged() {
        let state = temp_dir("refused");
        let hook = Arc::new(RecordingHook::default());
        let store = Store::open(Some(&state), hook.clone()).unwrap();
        *hook.refuse.lock().unwrap() = Some("host x needs a key".into());
        let err = store
            .put(Kind::Certificate, "a", &leaf("a").cert_pem(), None)
            .unwrap_err();
        assert_eq!(err.status(), 409);
        assert!(err.to_string().contains("host x needs a key"), "{err}");
        assert!(store.contents().certificates.is_empty());
        assert!(files_under(&state.join("store")).is_empty());
        let _ = std::fs::remove_dir_all(&state);
    }

    #[test]
    fn a_failed_persist_restores_the_previous_snapshot() {
        let state = temp_dir("persistfail");
        let hook = Arc::new(RecordingHook::default());
        let store = Store::open(Some(&state), hook.clone()).unwrap();
        // Make the namespace directory unwritable by replacing it with a file.
        let dir = state.join("store").join("certificates");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, b"not a directory").unwrap();
        let err = store
            .put(Kind::Certificate, "a", &leaf("a").cert_pem(), None)
            .unwrap_err();
        assert_eq!(err.status(), 500, "{err}");
        assert!(store.contents().certificates.is_empty());
        let applied = hook.applied.lock().unwrap();
        assert_eq!(applied.len(), 2, "new then old contents: {applied:?}");
        assert_eq!(applied[0].0, vec!["a".to_string()]);
        assert!(applied[1].0.is_empty());
        let _ = std::fs::remove_dir_all(&state);
    }

    #[test]
    fn ca_namespace_takes_only_ca_or_self_signed() {
        let store = Store::open(None, Arc::new(NoopHook)).unwrap();
        let ca = pki::self_signed(&CertSpec::new("root", Usage::Ca)).unwrap();
        let inter = pki::issue(&CertSpec::new("inter", Usage::Ca), &ca).unwrap();
        let issued_leaf = pki::issue(&CertSpec::new("leaf", Usage::Client), &ca).unwrap();
        store.put(Kind::Ca, "root", &ca.cert_pem(), None).unwrap();
        store
            .put(Kind::Ca, "inter", &inter.cert_pem(), None)
            .unwrap();
        store
            .put(Kind::Ca, "selfsigned", &leaf("ss").cert_pem(), None)
            .unwrap();
        let err = store
            .put(Kind::Ca, "leaf", &issued_leaf.cert_pem(), None)
            .unwrap_err();
        assert!(matches!(err, StoreError::NotCa { .. }), "{err:?}");
        assert_eq!(store.contents().ca_certificates.len(), 3);
    }
}
