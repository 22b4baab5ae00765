//! The CRL updater: a background thread that loads CRLs from files and `http://` URLs,
//! verifies them, keeps them fresh, and publishes a new [`RevocationIndex`] after every
//! change. Workers never parse, fetch or wait; they read the index from their snapshot.
//!
//! ```text
//!  CERTGATE_CRL files/URLs ─┐
//!  note_cdp(issuer, urls) ──┤  certgate-crl thread: read/fetch ▶ verify (tls::crl)
//!  (verify slow path)       │    ▶ newest CRL per issuer ▶ IndexBuilder ▶ publish(Arc<index>)
//!  refresh_now / set_issuers┘    re-fetch at min(nextUpdate, last fetch + refresh); backoff on failure
//! ```
//!
//! See `docs/revocation.md` for the rules.

pub mod fetch;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use crate::tls::crl::{verify_crl, CrlError, IssuerCerts, VerifiedCrl};
use crate::trust::revocation::{IndexBuilder, IssuerKey, RevocationIndex, SerialHasher};

pub use fetch::{FetchError, FetchLimits};

/// What the engine does with a `Stale` or `Missing` revocation status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingPolicy {
    /// Fail closed: the certificate is refused (`revocation_unknown`).
    Deny,
    /// Fail open: the certificate is accepted; the verdict is still counted and logged.
    Allow,
}

impl MissingPolicy {
    /// Parses `deny` or `allow`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deny" => Some(Self::Deny),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }
}

/// Where a CRL comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CrlSource {
    /// A file, PEM or DER.
    File(PathBuf),
    /// An `http://` URL.
    Url(String),
}

impl CrlSource {
    /// Parses `CERTGATE_CRL`: comma-separated files and `http://` URLs (blanks ignored).
    pub fn parse_list(list: &str) -> Result<Vec<CrlSource>, String> {
        let mut out = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let source = match item.find("://") {
                Some(i) if item[..i].eq_ignore_ascii_case("http") => {
                    CrlSource::Url(item.to_owned())
                }
                Some(i) if item[..i].eq_ignore_ascii_case("https") => {
                    return Err(format!(
                        "{item}: https is not supported for CRLs (they are signed; use http://)"
                    ))
                }
                Some(_) => {
                    return Err(format!("{item}: only files and http:// URLs are supported"))
                }
                None => CrlSource::File(PathBuf::from(item)),
            };
            if !out.contains(&source) {
                out.push(source);
            }
        }
        Ok(out)
    }

    /// The path or URL, for logs and reports.
    pub fn name(&self) -> String {
        match self {
            CrlSource::File(p) => p.display().to_string(),
            CrlSource::Url(u) => u.clone(),
        }
    }
}

/// The revocation configuration (`CERTGATE_CRL*`).
#[derive(Clone, Debug)]
pub struct CrlSettings {
    /// `CERTGATE_CRL`.
    pub sources: Vec<CrlSource>,
    /// `CERTGATE_CRL_FOLLOW_CDP`.
    pub follow_cdp: bool,
    /// `CERTGATE_CRL_REFRESH_SECS`: longest time between two fetches of a source.
    pub refresh: Duration,
    /// `CERTGATE_CRL_GRACE_SECS`: how long past nextUpdate a CRL stays in force.
    pub grace: Duration,
    /// `CERTGATE_CRL_MISSING`: applied by the engine to `Stale` and `Missing`.
    pub missing: MissingPolicy,
    /// Bounds of each HTTP fetch.
    pub fetch: FetchLimits,
}

impl Default for CrlSettings {
    fn default() -> Self {
        CrlSettings {
            sources: Vec::new(),
            follow_cdp: false,
            refresh: Duration::from_secs(3600),
            grace: Duration::from_secs(86_400),
            missing: MissingPolicy::Deny,
            fetch: FetchLimits::default(),
        }
    }
}

impl CrlSettings {
    /// Whether revocation is checked at all (a source is configured or CDPs are followed).
    pub fn is_configured(&self) -> bool {
        !self.sources.is_empty() || self.follow_cdp
    }
}

/// Why the updater could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// A configured CRL file cannot be read.
    #[error("cannot read CRL file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A configured CRL file is malformed or does not verify.
    #[error(transparent)]
    Crl(#[from] CrlError),
    /// The updater thread could not be started.
    #[error("cannot start the CRL updater thread: {0}")]
    Thread(std::io::Error),
    /// The updater did not answer in time (a fetch may still be running).
    #[error("the CRL refresh did not finish within {0:?}")]
    Timeout(Duration),
    /// The updater has stopped.
    #[error("the CRL updater has stopped")]
    Stopped,
}

/// One source's state, for `GET /crls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlReport {
    /// File path or URL.
    pub source: String,
    /// True when the source came from a certificate's CRL distribution point.
    pub from_cdp: bool,
    /// The CRL's issuer, readable (`None` until a CRL was loaded).
    pub issuer: Option<String>,
    /// thisUpdate of the last good CRL.
    pub this_update: Option<SystemTime>,
    /// nextUpdate of the last good CRL.
    pub next_update: Option<SystemTime>,
    /// cRLNumber of the last good CRL, hex.
    pub crl_number: Option<String>,
    /// Revoked entries in the last good CRL.
    pub entries: Option<usize>,
    /// Whether this source's CRL is the one in force for its issuer (another source may
    /// hold a newer one).
    pub in_force: bool,
    /// When the source was last read or fetched.
    pub last_fetch: Option<SystemTime>,
    /// When a good CRL was last obtained from it.
    pub last_success: Option<SystemTime>,
    /// The last error, cleared by the next success.
    pub last_error: Option<String>,
    /// When it will be read or fetched next.
    pub next_refresh: SystemTime,
}

/// The engine's callback that puts a new index into its snapshot.
pub type PublishFn = Box<dyn Fn(Arc<RevocationIndex>) + Send + Sync>;

// === schedule ===

/// First retry delay after a failure; doubles with each further failure.
pub const RETRY_BASE: Duration = Duration::from_secs(10);
/// Shortest time between two successful fetches of a source, whatever nextUpdate says
/// (a server that keeps serving an expired CRL is not hammered).
pub const MIN_REFETCH: Duration = Duration::from_secs(60);
/// Most sources learnt from distribution points (certificates name them; bound the list).
pub const MAX_CDP_SOURCES: usize = 1024;

/// When to fetch a source again after a success at `fetched_at`: at the CRL's nextUpdate
/// or `refresh` later, whichever is sooner, but not sooner than [`MIN_REFETCH`] (or
/// `refresh` when that is shorter).
pub fn next_refresh(
    fetched_at: SystemTime,
    next_update: Option<SystemTime>,
    refresh: Duration,
) -> SystemTime {
    let by_interval = fetched_at + refresh;
    let floor = fetched_at + MIN_REFETCH.min(refresh);
    match next_update {
        Some(next) if next < by_interval => next.max(floor),
        _ => by_interval,
    }
}

/// Delay before retrying after `failures` consecutive failures (≥ 1): [`RETRY_BASE`]
/// doubling per failure, capped at `refresh`, times a jitter factor 0.8 + 0.4·`jitter`
/// (`jitter` uniform in [0, 1): ±20 %).
pub fn retry_delay(failures: u32, refresh: Duration, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let base = RETRY_BASE.saturating_mul(1u32 << doublings).min(refresh);
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

fn random_unit() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

// === impl CrlUpdater ===

enum Command {
    Refresh(Sender<()>),
    SetIssuers(IssuerCerts),
}

struct Shared {
    reports: Mutex<Vec<CrlReport>>,
    index: Mutex<Arc<RevocationIndex>>,
}

/// Handle on the CRL updater thread. Dropping it stops the thread.
pub struct CrlUpdater {
    control: Sender<Command>,
    cdp: Sender<(IssuerKey, Vec<String>)>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    follow_cdp: bool,
}

impl std::fmt::Debug for CrlUpdater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlUpdater")
            .field("running", &self.thread.is_some())
            .field("follow_cdp", &self.follow_cdp)
            .finish()
    }
}

impl CrlUpdater {
    /// Loads every configured CRL *file* now (an unreadable, malformed or unverifiable
    /// file is an error naming it), publishes the first index through `publish` before
    /// returning, then starts the `certgate-crl` thread, which fetches the URL sources at
    /// once (an unreachable URL is logged; its issuer stays `Missing`) and keeps everything
    /// fresh. Without any source (`settings.is_configured()` false) it publishes an index
    /// that answers `NotConfigured` and starts no thread.
    pub fn start(
        settings: CrlSettings,
        issuers: IssuerCerts,
        publish: PublishFn,
    ) -> Result<CrlUpdater, RevocationError> {
        let (control, control_rx) = crossbeam_channel::unbounded();
        let (cdp, cdp_rx) = crossbeam_channel::bounded(256);
        let stop = Arc::new(AtomicBool::new(false));
        let follow_cdp = settings.follow_cdp;
        if !settings.is_configured() {
            let index = Arc::new(RevocationIndex::not_configured());
            publish(Arc::clone(&index));
            return Ok(CrlUpdater {
                control,
                cdp,
                shared: Arc::new(Shared {
                    reports: Mutex::default(),
                    index: Mutex::new(index),
                }),
                stop,
                thread: None,
                follow_cdp,
            });
        }

        let mut state = Updater::new(settings, issuers, publish, Arc::clone(&stop));
        state.load_files_strictly()?;
        state.publish_if_changed(true);
        let shared = Arc::clone(&state.shared);
        let thread = std::thread::Builder::new()
            .name("certgate-crl".into())
            .spawn(move || {
                // Parsing a 1M-entry CRL takes most of a second of CPU: never
                // at the expense of a worker on the same core.
                crate::runtime::background_priority();
                state.run(&control_rx, &cdp_rx)
            })
            .map_err(RevocationError::Thread)?;
        Ok(CrlUpdater {
            control,
            cdp,
            shared,
            stop,
            thread: Some(thread),
            follow_cdp,
        })
    }

    /// Whether distribution points are followed (`CERTGATE_CRL_FOLLOW_CDP`): the engine
    /// need not extract them otherwise.
    pub fn follows_cdp(&self) -> bool {
        self.follow_cdp
    }

    /// Tells the updater that a verified certificate of `issuer` names these CRL
    /// distribution points. Never blocks: a full queue drops the note (the next
    /// certificate of that issuer brings it again). Ignored unless CDPs are followed.
    pub fn note_cdp(&self, issuer: IssuerKey, urls: Vec<String>) {
        if self.follow_cdp && !urls.is_empty() && self.thread.is_some() {
            let _dropped_when_full = self.cdp.try_send((issuer, urls));
        }
    }

    /// Replaces the CA certificates CRLs are verified against (after a change of the
    /// trust bundle). CRLs of issuers no longer present leave the index; every source is
    /// read again and verified against the new set.
    pub fn set_issuers(&self, issuers: IssuerCerts) {
        if self.thread.is_some() {
            let _stopped = self.control.send(Command::SetIssuers(issuers));
        }
    }

    /// Reads and fetches every source now and waits (at most `timeout`) until the pass is
    /// over and its index is published; returns the report after it.
    pub fn refresh_now(&self, timeout: Duration) -> Result<Vec<CrlReport>, RevocationError> {
        if self.thread.is_some() {
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.control
                .send(Command::Refresh(tx))
                .map_err(|_| RevocationError::Stopped)?;
            match rx.recv_timeout(timeout) {
                Ok(()) => {}
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    return Err(RevocationError::Timeout(timeout))
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(RevocationError::Stopped)
                }
            }
        }
        Ok(self.report())
    }

    /// Every source's state (for `GET /crls`).
    pub fn report(&self) -> Vec<CrlReport> {
        lock(&self.shared.reports).clone()
    }

    /// The index published last.
    pub fn index(&self) -> Arc<RevocationIndex> {
        Arc::clone(&lock(&self.shared.index))
    }

    /// Stops the thread (abandoning a fetch in progress within a fraction of a second)
    /// and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // Wake the thread if it is waiting on its channels.
            let (tx, _rx) = crossbeam_channel::bounded(1);
            let _stopped = self.control.send(Command::Refresh(tx));
            if thread.join().is_err() {
                tracing::error!("the CRL updater thread panicked");
            }
        }
    }
}

impl Drop for CrlUpdater {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === the updater thread ===

struct Source {
    spec: CrlSource,
    from_cdp: bool,
    crl: Option<Arc<VerifiedCrl>>,
    last_fetch: Option<SystemTime>,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
    failures: u32,
    due: SystemTime,
}

impl Source {
    fn new(spec: CrlSource, from_cdp: bool, due: SystemTime) -> Source {
        Source {
            spec,
            from_cdp,
            crl: None,
            last_fetch: None,
            last_success: None,
            last_error: None,
            failures: 0,
            due,
        }
    }
}

struct Updater {
    settings: CrlSettings,
    issuers: IssuerCerts,
    publish: PublishFn,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    hasher: SerialHasher,
    logged: Arc<Mutex<HashSet<IssuerKey>>>,
    sources: Vec<Source>,
    /// The CRL in force per issuer at the last publication (compared by pointer).
    published: HashMap<IssuerKey, Arc<VerifiedCrl>>,
}

impl Updater {
    fn new(
        settings: CrlSettings,
        issuers: IssuerCerts,
        publish: PublishFn,
        stop: Arc<AtomicBool>,
    ) -> Updater {
        let now = SystemTime::now();
        let sources = settings
            .sources
            .iter()
            .map(|s| Source::new(s.clone(), false, now))
            .collect();
        Updater {
            settings,
            issuers,
            publish,
            stop,
            shared: Arc::new(Shared {
                reports: Mutex::default(),
                index: Mutex::new(Arc::new(RevocationIndex::not_configured())),
            }),
            hasher: SerialHasher::new(),
            logged: Arc::default(),
            sources,
            published: HashMap::new(),
        }
    }

    /// Start-up: every file source must load and verify.
    fn load_files_strictly(&mut self) -> Result<(), RevocationError> {
        for i in 0..self.sources.len() {
            let CrlSource::File(path) = &self.sources[i].spec else {
                continue;
            };
            let path = path.clone();
            let bytes = std::fs::read(&path).map_err(|source| RevocationError::File {
                path: path.clone(),
                source,
            })?;
            let crl = verify_crl(
                &bytes,
                &path.display().to_string(),
                &self.issuers,
                &self.hasher,
            )?;
            tracing::info!(
                source = %path.display(),
                issuer = %crl.issuer_name,
                entries = crl.keys.len(),
                "CRL loaded"
            );
            let now = SystemTime::now();
            let s = &mut self.sources[i];
            s.last_fetch = Some(now);
            s.last_success = Some(now);
            s.due = next_refresh(now, crl.next_update, self.settings.refresh);
            s.crl = Some(Arc::new(crl));
        }
        Ok(())
    }

    fn run(mut self, control: &Receiver<Command>, cdp: &Receiver<(IssuerKey, Vec<String>)>) {
        let mut waiting: Vec<Sender<()>> = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            self.pass();
            for reply in waiting.drain(..) {
                let _gone = reply.send(());
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let now = SystemTime::now();
            let wait = self
                .sources
                .iter()
                .map(|s| s.due.duration_since(now).unwrap_or(Duration::ZERO))
                .min()
                .unwrap_or(self.settings.refresh)
                .min(self.settings.refresh);
            crossbeam_channel::select! {
                recv(control) -> cmd => match cmd {
                    Ok(Command::Refresh(reply)) => {
                        let now = SystemTime::now();
                        for s in &mut self.sources {
                            s.due = now;
                        }
                        waiting.push(reply);
                    }
                    Ok(Command::SetIssuers(issuers)) => self.set_issuers(issuers),
                    Err(_) => break,
                },
                recv(cdp) -> note => match note {
                    Ok((issuer, urls)) => self.note_cdp(issuer, urls),
                    Err(_) => break,
                },
                default(wait) => {}
            }
        }
        tracing::debug!("CRL updater stopped");
    }

    fn note_cdp(&mut self, issuer: IssuerKey, urls: Vec<String>) {
        let now = SystemTime::now();
        for url in urls {
            let spec = CrlSource::Url(url);
            if self.sources.iter().any(|s| s.spec == spec) {
                continue;
            }
            if self.sources.iter().filter(|s| s.from_cdp).count() >= MAX_CDP_SOURCES {
                tracing::warn!(url = %spec.name(), limit = MAX_CDP_SOURCES, "too many CRL distribution points; not following this one");
                continue;
            }
            tracing::info!(url = %spec.name(), issuer = ?self.issuers.name(&issuer), "following a CRL distribution point");
            self.sources.push(Source::new(spec, true, now));
        }
    }

    fn set_issuers(&mut self, issuers: IssuerCerts) {
        self.issuers = issuers;
        let now = SystemTime::now();
        for s in &mut self.sources {
            if s.crl
                .as_ref()
                .is_some_and(|c| !self.issuers.contains(&c.issuer))
            {
                s.crl = None;
            }
            s.due = now;
        }
    }

    /// Reads or fetches every due source, then publishes if what is in force changed.
    fn pass(&mut self) {
        let now = SystemTime::now();
        for i in 0..self.sources.len() {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if self.sources[i].due <= now {
                self.load(i);
            }
        }
        self.publish_if_changed(false);
    }

    fn load(&mut self, i: usize) {
        let spec = self.sources[i].spec.clone();
        let name = spec.name();
        let bytes = match &spec {
            CrlSource::File(path) => std::fs::read(path)
                .map_err(|e| format!("cannot read CRL file {}: {e}", path.display())),
            CrlSource::Url(url) => {
                fetch::fetch(url, &self.settings.fetch, &self.stop).map_err(|e| e.to_string())
            }
        };
        let result = bytes.and_then(|bytes| {
            verify_crl(&bytes, &name, &self.issuers, &self.hasher).map_err(|e| e.to_string())
        });
        if self.stop.load(Ordering::SeqCst) {
            return; // A fetch abandoned for shutdown is not a failure of the source.
        }
        let now = SystemTime::now();
        let refresh = self.settings.refresh;
        let s = &mut self.sources[i];
        s.last_fetch = Some(now);
        let result = result.and_then(|crl| match &s.crl {
            Some(prev) if prev.issuer == crl.issuer && crl.is_older_than(prev) => Err(format!(
                "{name}: CRL is older than the one in force (thisUpdate {}); kept the newer",
                humantime::format_rfc3339_seconds(prev.this_update)
            )),
            _ => Ok(crl),
        });
        match result {
            Ok(crl) => {
                s.due = next_refresh(now, crl.next_update, refresh);
                s.failures = 0;
                s.last_error = None;
                s.last_success = Some(now);
                let same = s.crl.as_ref().is_some_and(|prev| {
                    prev.issuer == crl.issuer
                        && prev.this_update == crl.this_update
                        && prev.crl_number == crl.crl_number
                        && prev.keys.len() == crl.keys.len()
                });
                if !same {
                    tracing::info!(source = %name, issuer = %crl.issuer_name, entries = crl.keys.len(), "CRL loaded");
                    lock(&self.logged).remove(&crl.issuer);
                    s.crl = Some(Arc::new(crl));
                }
            }
            Err(reason) => {
                s.failures = s.failures.saturating_add(1);
                s.due = now + retry_delay(s.failures, refresh, random_unit());
                tracing::warn!(
                    source = %name,
                    failures = s.failures,
                    retry_in_secs = s.due.duration_since(now).map_or(0, |d| d.as_secs()),
                    kept_previous = s.crl.is_some(),
                    "CRL rejected or unavailable: {reason}"
                );
                s.last_error = Some(reason);
            }
        }
    }

    /// The newest CRL per issuer over all sources.
    fn in_force(&self) -> HashMap<IssuerKey, Arc<VerifiedCrl>> {
        let mut best: HashMap<IssuerKey, Arc<VerifiedCrl>> = HashMap::new();
        for crl in self.sources.iter().filter_map(|s| s.crl.as_ref()) {
            match best.get(&crl.issuer) {
                Some(current) if !current.is_older_than(crl) => {}
                _ => {
                    best.insert(crl.issuer, Arc::clone(crl));
                }
            }
        }
        best
    }

    fn publish_if_changed(&mut self, force: bool) {
        let in_force = self.in_force();
        let changed = force
            || in_force.len() != self.published.len()
            || in_force.iter().any(|(k, crl)| {
                self.published
                    .get(k)
                    .is_none_or(|prev| !Arc::ptr_eq(prev, crl))
            });
        if changed {
            let mut builder = IndexBuilder::new(
                self.hasher.clone(),
                self.settings.grace,
                Arc::clone(&self.logged),
            );
            for (issuer, crl) in &in_force {
                debug_assert_eq!(*issuer, crl.issuer);
                crl.add_to(&mut builder);
            }
            let start = std::time::Instant::now();
            let index = Arc::new(builder.build());
            tracing::info!(
                issuers = in_force.len(),
                entries = index.len(),
                build_ms = start.elapsed().as_millis() as u64,
                "revocation index published"
            );
            *lock(&self.shared.index) = Arc::clone(&index);
            (self.publish)(index);
            self.published = in_force.clone();
        }
        let reports =
            self.sources
                .iter()
                .map(|s| CrlReport {
                    source: s.spec.name(),
                    from_cdp: s.from_cdp,
                    issuer: s.crl.as_ref().map(|c| c.issuer_name.clone()),
                    this_update: s.crl.as_ref().map(|c| c.this_update),
                    next_update: s.crl.as_ref().and_then(|c| c.next_update),
                    crl_number: s
                        .crl
                        .as_ref()
                        .and_then(|c| c.crl_number.as_ref().map(hex::encode)),
                    entries: s.crl.as_ref().map(|c| c.keys.len()),
                    in_force: s.crl.as_ref().is_some_and(|c| {
                        in_force.get(&c.issuer).is_some_and(|f| Arc::ptr_eq(f, c))
                    }),
                    last_fetch: s.last_fetch,
                    last_success: s.last_success,
                    last_error: s.last_error.clone(),
                    next_refresh: s.due,
                })
                .collect();
        *lock(&self.shared.reports) = reports;
    }
}

#[cfg(test)]
mod tests {
    use super::fetch::test_server::{Reply, TestServer};
    use super::*;
    use crate::tls::crl::{leaf_revocation_id, CrlBuilder};
    use crate::tls::pki::{issue, self_signed, CertSpec, Issued, Usage};
    use crate::trust::RevocationStatus;
    use std::time::Instant;

    const WAIT: Duration = Duration::from_secs(10);

    fn ca(name: &str) -> Issued {
        self_signed(&CertSpec::new(name, Usage::Ca)).unwrap()
    }

    fn leaf(ca: &Issued) -> Issued {
        issue(&CertSpec::new("alice", Usage::Client), ca).unwrap()
    }

    fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("certgate-crl-{tag}-{}-{nanos}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    type Published = Arc<Mutex<Vec<Arc<RevocationIndex>>>>;

    fn recorder() -> (Published, PublishFn) {
        let published: Published = Arc::default();
        let p = Arc::clone(&published);
        (published, Box::new(move |idx| p.lock().unwrap().push(idx)))
    }

    fn settings(sources: Vec<CrlSource>) -> CrlSettings {
        CrlSettings {
            sources,
            fetch: FetchLimits {
                timeout: Duration::from_millis(500),
                total: Duration::from_secs(5),
                ..FetchLimits::default()
            },
            ..CrlSettings::default()
        }
    }

    fn status(idx: &RevocationIndex, cert: &Issued) -> RevocationStatus {
        let (issuer, serial) = leaf_revocation_id(&cert.cert).unwrap();
        idx.status(&issuer, &serial, SystemTime::now())
    }

    #[test]
    fn shared_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RevocationIndex>();
        assert_send_sync::<CrlUpdater>();
        assert_send_sync::<IssuerCerts>();
        assert_send_sync::<PublishFn>();
    }

    #[test]
    fn schedule_is_next_update_or_interval_whichever_sooner() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert_eq!(next_refresh(t, None, hour), t + hour);
        assert_eq!(next_refresh(t, Some(t + 2 * hour), hour), t + hour);
        assert_eq!(
            next_refresh(t, Some(t + Duration::from_secs(600)), hour),
            t + Duration::from_secs(600)
        );
        // An expired nextUpdate does not cause a tight loop.
        assert_eq!(next_refresh(t, Some(t - hour), hour), t + MIN_REFETCH);
        let short = Duration::from_secs(5);
        assert_eq!(next_refresh(t, Some(t - hour), short), t + short);
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let hour = Duration::from_secs(3600);
        assert_eq!(retry_delay(1, hour, 0.5), Duration::from_secs(10));
        assert_eq!(retry_delay(2, hour, 0.5), Duration::from_secs(20));
        assert_eq!(retry_delay(4, hour, 0.5), Duration::from_secs(80));
        assert_eq!(retry_delay(9, hour, 0.5), Duration::from_secs(2560));
        assert_eq!(retry_delay(10, hour, 0.5), hour, "capped");
        assert_eq!(retry_delay(u32::MAX, hour, 0.5), hour);
        assert_eq!(retry_delay(1, hour, 0.0), Duration::from_secs(8));
        assert_eq!(retry_delay(1, hour, 1.0), Duration::from_secs(12));
        assert_eq!(
            retry_delay(3, Duration::from_secs(15), 0.5),
            Duration::from_secs(15)
        );
        let samples: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(samples.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(samples.iter().any(|u| *u != samples[0]), "jitter varies");
    }

    #[test]
    fn sources_parse() {
        let list =
            CrlSource::parse_list(" /etc/a.crl, http://127.0.0.1/b.crl ,,/etc/a.crl").unwrap();
        assert_eq!(
            list,
            [
                CrlSource::File("/etc/a.crl".into()),
                CrlSource::Url("http://127.0.0.1/b.crl".into())
            ]
        );
        let e = CrlSource::parse_list("https://x/a.crl").unwrap_err();
        assert!(e.contains("https://x/a.crl"), "{e}");
        assert!(CrlSource::parse_list("ldap://x/a").is_err());
        assert!(CrlSource::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn not_configured_publishes_not_configured() {
        let (published, publish) = recorder();
        let updater =
            CrlUpdater::start(CrlSettings::default(), IssuerCerts::default(), publish).unwrap();
        let root = ca("Root");
        assert_eq!(
            status(&published.lock().unwrap()[0], &leaf(&root)),
            RevocationStatus::NotConfigured
        );
        assert!(updater.refresh_now(WAIT).unwrap().is_empty());
        updater.stop();
    }

    #[test]
    fn file_sources_load_synchronously_and_bad_files_fail_start_up() {
        let root = ca("Root A");
        let other = ca("Root B");
        let (bad, good) = (leaf(&root), leaf(&root));
        let issuers = || IssuerCerts::new([&*root.cert]).unwrap();
        let pem = CrlBuilder::new(&root)
            .unwrap()
            .revoke_cert(&bad.cert)
            .unwrap()
            .to_pem()
            .unwrap();
        let file = temp_file("good", &pem);
        let (published, publish) = recorder();
        let updater = CrlUpdater::start(
            settings(vec![CrlSource::File(file.clone())]),
            issuers(),
            publish,
        )
        .unwrap();
        {
            let p = published.lock().unwrap();
            assert_eq!(p.len(), 1, "published before start returned");
            assert_eq!(status(&p[0], &bad), RevocationStatus::Revoked);
            assert_eq!(status(&p[0], &good), RevocationStatus::Good);
            assert_eq!(status(&p[0], &leaf(&other)), RevocationStatus::Missing);
        }
        let report = updater.report();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].entries, Some(1));
        assert_eq!(report[0].issuer.as_deref(), Some("CN=Root A"));
        assert!(report[0].in_force && report[0].last_error.is_none());
        updater.stop();

        let cases = [
            ("malformed", b"garbage".to_vec()),
            (
                "unknown-issuer",
                CrlBuilder::new(&other).unwrap().to_der().unwrap(),
            ),
            (
                "wrong-key",
                CrlBuilder::new(&root)
                    .unwrap()
                    .signing_key(&other.key)
                    .to_der()
                    .unwrap(),
            ),
        ];
        for (tag, bytes) in cases {
            let path = temp_file(tag, &bytes);
            let (_, publish) = recorder();
            let err = CrlUpdater::start(
                settings(vec![CrlSource::File(path.clone())]),
                issuers(),
                publish,
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(&path.display().to_string()), "{tag}: {err}");
            std::fs::remove_file(path).unwrap();
        }
        let missing = std::env::temp_dir().join("certgate-no-such-crl.pem");
        let (_, publish) = recorder();
        let err = CrlUpdater::start(
            settings(vec![CrlSource::File(missing.clone())]),
            issuers(),
            publish,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("certgate-no-such-crl.pem"), "{err}");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn url_source_refresh_keeps_good_and_newest() {
        let root = ca("Root A");
        let (a, b) = (leaf(&root), leaf(&root));
        let server = TestServer::start();
        let crl = |n: u64, revoked: &Issued| {
            CrlBuilder::new(&root)
                .unwrap()
                .crl_number(n)
                .revoke_cert(&revoked.cert)
                .unwrap()
                .to_der()
                .unwrap()
        };
        server.set("/a.crl", Reply::Body(200, crl(5, &a)));
        let (published, publish) = recorder();
        let updater = CrlUpdater::start(
            settings(vec![CrlSource::Url(server.url("/a.crl"))]),
            IssuerCerts::new([&*root.cert]).unwrap(),
            publish,
        )
        .unwrap();
        // Start-up published before any fetch: the issuer is Missing until the fetch.
        assert_eq!(
            status(&published.lock().unwrap()[0], &a),
            RevocationStatus::Missing
        );
        updater.refresh_now(WAIT).unwrap();
        assert_eq!(status(&updater.index(), &a), RevocationStatus::Revoked);
        assert_eq!(status(&updater.index(), &b), RevocationStatus::Good);
        let publications = published.lock().unwrap().len();

        // The same CRL again: nothing new is published.
        updater.refresh_now(WAIT).unwrap();
        assert_eq!(published.lock().unwrap().len(), publications);

        // Malformed: rejected, the previous one stays in force, the error is reported.
        server.set("/a.crl", Reply::Body(200, b"<html>oops</html>".to_vec()));
        let report = updater.refresh_now(WAIT).unwrap();
        let err = report[0].last_error.as_deref().unwrap();
        assert!(err.contains("malformed") && err.contains("/a.crl"), "{err}");
        assert_eq!(report[0].entries, Some(1));
        assert_eq!(status(&updater.index(), &a), RevocationStatus::Revoked);

        // 404: likewise.
        server.set("/a.crl", Reply::Body(404, Vec::new()));
        let report = updater.refresh_now(WAIT).unwrap();
        assert!(report[0].last_error.as_deref().unwrap().contains("404"));
        assert_eq!(status(&updater.index(), &a), RevocationStatus::Revoked);

        // Newer (higher cRLNumber) replaces.
        server.set("/a.crl", Reply::Body(200, crl(6, &b)));
        let report = updater.refresh_now(WAIT).unwrap();
        assert!(report[0].last_error.is_none());
        assert_eq!(report[0].crl_number.as_deref(), Some("06"));
        assert_eq!(status(&updater.index(), &a), RevocationStatus::Good);
        assert_eq!(status(&updater.index(), &b), RevocationStatus::Revoked);

        // Older never replaces newer.
        server.set("/a.crl", Reply::Body(200, crl(4, &a)));
        let report = updater.refresh_now(WAIT).unwrap();
        assert!(report[0].last_error.as_deref().unwrap().contains("older"));
        assert_eq!(status(&updater.index(), &a), RevocationStatus::Good);
        assert_eq!(status(&updater.index(), &b), RevocationStatus::Revoked);
        updater.stop();
    }

    #[test]
    fn older_crl_from_another_source_does_not_win() {
        let root = ca("Root A");
        let (a, b) = (leaf(&root), leaf(&root));
        let now = SystemTime::now();
        let older = CrlBuilder::new(&root)
            .unwrap()
            .this_update(now - Duration::from_secs(7200))
            .revoke_cert(&a.cert)
            .unwrap()
            .to_der()
            .unwrap();
        let newer = CrlBuilder::new(&root)
            .unwrap()
            .this_update(now - Duration::from_secs(60))
            .revoke_cert(&b.cert)
            .unwrap()
            .to_der()
            .unwrap();
        // Newer first in the list, older second: the newer stays in force.
        let (f1, f2) = (temp_file("newer", &newer), temp_file("older", &older));
        let (_, publish) = recorder();
        let updater = CrlUpdater::start(
            settings(vec![
                CrlSource::File(f1.clone()),
                CrlSource::File(f2.clone()),
            ]),
            IssuerCerts::new([&*root.cert]).unwrap(),
            publish,
        )
        .unwrap();
        assert_eq!(status(&updater.index(), &b), RevocationStatus::Revoked);
        assert_eq!(status(&updater.index(), &a), RevocationStatus::Good);
        let report = updater.report();
        assert!(report[0].in_force && !report[1].in_force);
        updater.stop();
        std::fs::remove_file(f1).unwrap();
        std::fs::remove_file(f2).unwrap();
    }

    #[test]
    fn unreachable_url_at_start_is_missing_not_fatal() {
        let root = ca("Root A");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (_, publish) = recorder();
        let updater = CrlUpdater::start(
            settings(vec![CrlSource::Url(format!(
                "http://127.0.0.1:{port}/a.crl"
            ))]),
            IssuerCerts::new([&*root.cert]).unwrap(),
            publish,
        )
        .unwrap();
        let report = updater.refresh_now(WAIT).unwrap();
        assert!(report[0].last_error.as_deref().unwrap().contains("connect"));
        assert!(report[0].next_refresh > SystemTime::now(), "backing off");
        assert_eq!(
            status(&updater.index(), &leaf(&root)),
            RevocationStatus::Missing
        );
        updater.stop();
    }

    #[test]
    fn distribution_points_followed_once_in_background() {
        let root = ca("Root A");
        let bad = leaf(&root);
        let server = TestServer::start();
        let der = CrlBuilder::new(&root)
            .unwrap()
            .revoke_cert(&bad.cert)
            .unwrap()
            .to_der()
            .unwrap();
        server.set("/root.crl", Reply::Body(200, der));
        let (_, publish) = recorder();
        let updater = CrlUpdater::start(
            CrlSettings {
                follow_cdp: true,
                ..settings(Vec::new())
            },
            IssuerCerts::new([&*root.cert]).unwrap(),
            publish,
        )
        .unwrap();
        assert!(updater.follows_cdp());
        assert_eq!(status(&updater.index(), &bad), RevocationStatus::Missing);
        let issuer = IssuerKey::from_subject(&root.cert).unwrap();
        for _ in 0..3 {
            updater.note_cdp(issuer, vec![server.url("/root.crl")]);
        }
        let deadline = Instant::now() + WAIT;
        while status(&updater.index(), &bad) != RevocationStatus::Revoked {
            assert!(Instant::now() < deadline, "CDP CRL never loaded");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the other two notes arrive, then check they were deduplicated.
        std::thread::sleep(Duration::from_millis(200));
        let report = updater.report();
        assert_eq!(report.len(), 1);
        assert!(report[0].from_cdp);
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
        updater.stop();
    }

    #[test]
    fn new_issuers_let_a_rejected_crl_in() {
        let (root_a, root_b) = (ca("Root A"), ca("Root B"));
        let bad = leaf(&root_b);
        let server = TestServer::start();
        let der = CrlBuilder::new(&root_b)
            .unwrap()
            .revoke_cert(&bad.cert)
            .unwrap()
            .to_der()
            .unwrap();
        server.set("/b.crl", Reply::Body(200, der));
        let (_, publish) = recorder();
        let updater = CrlUpdater::start(
            settings(vec![CrlSource::Url(server.url("/b.crl"))]),
            IssuerCerts::new([&*root_a.cert]).unwrap(),
            publish,
        )
        .unwrap();
        let report = updater.refresh_now(WAIT).unwrap();
        assert!(report[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("not in the trusted CA bundle"));
        assert_eq!(status(&updater.index(), &bad), RevocationStatus::Missing);
        updater.set_issuers(IssuerCerts::new([&*root_a.cert, &*root_b.cert]).unwrap());
        updater.refresh_now(WAIT).unwrap();
        assert_eq!(status(&updater.index(), &bad), RevocationStatus::Revoked);
        // Removing the CA takes its CRL out of force.
        updater.set_issuers(IssuerCerts::new([&*root_a.cert]).unwrap());
        updater.refresh_now(WAIT).unwrap();
        assert_eq!(status(&updater.index(), &bad), RevocationStatus::Missing);
        updater.stop();
    }

    #[test]
    fn stop_abandons_a_slow_fetch() {
        let root = ca("Root A");
        let server = TestServer::start();
        server.set("/slow.crl", Reply::Silent);
        let (_, publish) = recorder();
        let updater = CrlUpdater::start(
            CrlSettings {
                fetch: FetchLimits {
                    timeout: Duration::from_secs(30),
                    total: Duration::from_secs(60),
                    ..FetchLimits::default()
                },
                ..settings(vec![CrlSource::Url(server.url("/slow.crl"))])
            },
            IssuerCerts::new([&*root.cert]).unwrap(),
            publish,
        )
        .unwrap();
        // Wait until the fetch is in progress.
        let deadline = Instant::now() + WAIT;
        while server.hits.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "fetch never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        let start = Instant::now();
        updater.stop();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
