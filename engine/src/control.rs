//! The control plane's state: reloads (SIGHUP, `POST /reload`) and what `/metrics` reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::{info, warn};

use crate::admin::api::CrlAdmin;
use crate::admin::metrics::{render, Globals};
use crate::runtime::Shared;
use crate::store::{Kind, StoreContents, StoreHook};
use crate::tls::context::{build_snapshot, SnapshotSources, TlsError};
use crate::tls::tickets::TicketKeys;

/// Produces the snapshot sources: re-reads the configuration file (when there
/// is one) and resolves its hosts. Called at start and by every reload.
pub type Planner = Box<
    dyn Fn(&StoreContents) -> Result<SnapshotSources, crate::config_file::FileError> + Send + Sync,
>;

/// Why a reload did not take effect (the previous snapshot stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration file has problems.
    #[error(transparent)]
    File(#[from] crate::config_file::FileError),
    /// A certificate, key or trust file has problems.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Owned by the main thread; shared with the admin server.
pub struct Control {
    /// State the workers read.
    pub shared: Arc<Shared>,
    /// Where snapshots' sources come from.
    planner: Planner,
    /// Session ticket keys (rotated by the main loop).
    pub tickets: Arc<TicketKeys>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    draining: std::sync::atomic::AtomicBool,
    /// The certificate store (see [`Control::store`]).
    store: OnceLock<Arc<crate::store::Store>>,
    /// Keeps the directory sources watched.
    store_watches: Mutex<Vec<crate::store::dir::DirWatch>>,
    /// What `GET /crls` reports (see [`Control::set_crl_admin`]).
    crls: OnceLock<Arc<dyn CrlAdmin>>,
    /// The CRL updater (absent in tests that build a Control by hand).
    updater: OnceLock<Arc<crate::revocation::CrlUpdater>>,
    /// SHA-256 of each trusted CA the updater checks CRLs against.
    updater_cas: Mutex<std::collections::BTreeSet<[u8; 32]>>,
    /// Serialises snapshot rebuilds (SIGHUP, `POST /reload`, store changes
    /// from the admin API and the directory watchers), so generations never race.
    rebuild: Mutex<()>,
}

/// Where the CRL updater publishes: the index in force, and the engine to
/// rebuild once it runs (a new index means a new snapshot generation, so
/// cached verdicts are looked at again).
#[derive(Default)]
pub struct RevocationLink {
    index: arc_swap::ArcSwapOption<crate::trust::RevocationIndex>,
    control: OnceLock<std::sync::Weak<Control>>,
}

impl RevocationLink {
    /// The index in force.
    pub fn index(&self) -> Arc<crate::trust::RevocationIndex> {
        self.index
            .load_full()
            .unwrap_or_else(|| Arc::new(crate::trust::RevocationIndex::not_configured()))
    }

    /// Called by the CRL updater's thread with each new index.
    pub fn publish(&self, index: Arc<crate::trust::RevocationIndex>) {
        self.index.store(Some(index));
        if let Some(control) = self.control.get().and_then(|c| c.upgrade()) {
            if let Err(e) = control.reload() {
                warn!("new CRLs not in force: the snapshot did not build: {e}");
            }
        }
    }
}

/// `GET /crls` and `POST /crls/refresh` over the CRL updater.
struct UpdaterAdmin(Arc<crate::revocation::CrlUpdater>);

fn rfc3339(t: Option<std::time::SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

impl CrlAdmin for UpdaterAdmin {
    fn report(&self) -> Vec<crate::admin::api::CrlReport> {
        self.0
            .report()
            .into_iter()
            .map(|r| crate::admin::api::CrlReport {
                issuer: r.issuer.unwrap_or_default(),
                source: r.source,
                this_update: rfc3339(r.this_update),
                next_update: rfc3339(r.next_update),
                entries: r.entries.unwrap_or(0) as u64,
                last_fetch: rfc3339(r.last_fetch),
                last_error: r.last_error,
            })
            .collect()
    }

    fn refresh(&self) -> Result<(), String> {
        self.0
            .refresh_now(std::time::Duration::from_secs(10))
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Applies certificate-store changes: a change is accepted only if the
/// snapshot builds with it, and then it is in force.
struct SnapshotHook(std::sync::Weak<Control>);

impl StoreHook for SnapshotHook {
    fn apply(&self, contents: &StoreContents) -> Result<(), String> {
        let Some(control) = self.0.upgrade() else {
            return Err("the engine is shutting down".into());
        };
        control
            .rebuild_from(contents)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn users(&self, kind: Kind, id: &str) -> Vec<String> {
        let Some(control) = self.0.upgrade() else {
            return Vec::new();
        };
        match kind {
            Kind::Certificate => control
                .shared
                .snapshot
                .load()
                .store_users
                .get(id)
                .cloned()
                .unwrap_or_default(),
            Kind::Ca => Vec::new(),
        }
    }
}

impl Control {
    /// Wrap the started state, and make store changes rebuild the snapshot.
    pub fn start(
        shared: Arc<Shared>,
        planner: Planner,
        tickets: Arc<TicketKeys>,
        store: crate::store::StoreRuntime,
    ) -> Arc<Control> {
        let control = Arc::new(Control {
            shared,
            planner,
            tickets,
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
            store: OnceLock::new(),
            store_watches: Mutex::new(Vec::new()),
            crls: OnceLock::new(),
            updater: OnceLock::new(),
            updater_cas: Mutex::new(Default::default()),
            rebuild: Mutex::new(()),
        });
        store
            .store
            .set_hook(Arc::new(SnapshotHook(Arc::downgrade(&control))));
        control.attach_store(store);
        control
    }

    /// Connect the CRL updater: its new indexes rebuild the snapshot, the
    /// admin API reports it, and CA changes reach it.
    pub fn attach_updater(
        self: &Arc<Self>,
        updater: Arc<crate::revocation::CrlUpdater>,
        link: &RevocationLink,
    ) {
        let _ = link.control.set(Arc::downgrade(self));
        let cas = self
            .shared
            .snapshot
            .load()
            .trust
            .bundle
            .iter()
            .copied()
            .collect();
        *self.updater_cas.lock().unwrap_or_else(|p| p.into_inner()) = cas;
        self.set_crl_admin(Arc::new(UpdaterAdmin(Arc::clone(&updater))));
        let _ = self.updater.set(updater);
        // An index published between the first snapshot and now.
        let in_force = Arc::clone(&self.shared.snapshot.load().trust.revocation);
        if !Arc::ptr_eq(&in_force, &link.index()) {
            if let Err(e) = self.reload() {
                warn!("{e}");
            }
        }
    }

    /// Installs the started store (the admin API serves it from now on).
    pub fn attach_store(&self, rt: crate::store::StoreRuntime) {
        if self.store.set(rt.store).is_ok() {
            if let Ok(mut w) = self.store_watches.lock() {
                *w = rt.watches;
            }
        }
    }

    /// The certificate store, once attached.
    pub fn store(&self) -> Option<&Arc<crate::store::Store>> {
        self.store.get()
    }

    /// Installs what `GET /crls` and `POST /crls/refresh` use (default: no CRLs).
    pub fn set_crl_admin(&self, crls: Arc<dyn CrlAdmin>) {
        let _ = self.crls.set(crls);
    }

    /// What `GET /crls` reports.
    pub fn crl_admin(&self) -> &dyn CrlAdmin {
        match self.crls.get() {
            Some(c) => c.as_ref(),
            None => &crate::admin::api::NoCrls,
        }
    }

    /// Re-read every file and publish a new snapshot. On failure the current one stays.
    pub fn reload(&self) -> Result<u64, ReloadError> {
        let contents = match self.store() {
            Some(store) => store.contents(),
            None => Arc::new(StoreContents::default()),
        };
        self.rebuild_from(&contents)
    }

    /// Build a snapshot from the files and `contents` and publish it. On
    /// failure the current one stays.
    pub fn rebuild_from(&self, contents: &StoreContents) -> Result<u64, ReloadError> {
        let generation = self.rebuild_locked(contents)?;
        self.update_crl_issuers();
        Ok(generation)
    }

    /// Give the CRL updater the trusted CAs when they changed (CRLs are checked against them).
    fn update_crl_issuers(&self) {
        let Some(updater) = self.updater.get() else {
            return;
        };
        let trust = Arc::clone(&self.shared.snapshot.load().trust);
        let now: std::collections::BTreeSet<[u8; 32]> = trust.bundle.iter().copied().collect();
        {
            let mut known = self.updater_cas.lock().unwrap_or_else(|p| p.into_inner());
            if *known == now {
                return;
            }
            *known = now;
        }
        match crate::tls::crl::IssuerCerts::new(trust.cas.iter().map(|c| c.as_ref())) {
            Ok(issuers) => updater.set_issuers(issuers),
            Err(e) => warn!("CRL issuers not updated: {e}"),
        }
    }

    fn rebuild_locked(&self, contents: &StoreContents) -> Result<u64, ReloadError> {
        let _one_at_a_time = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.shared.snapshot.load().generation + 1;
        let built = (self.planner)(contents)
            .map_err(ReloadError::from)
            .and_then(|sources| {
                build_snapshot(&self.shared.config, &sources, generation, &self.tickets)
                    .map_err(ReloadError::from)
            });
        match built {
            Ok(snapshot) => {
                self.shared.snapshot.store(Arc::new(snapshot));
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                info!(generation, "reload: new configuration in force");
                Ok(generation)
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                warn!("reload failed, previous configuration kept: {e}");
                Err(e)
            }
        }
    }

    /// Mark the process as draining: `/healthz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True once SIGTERM/SIGINT started the drain.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The Prometheus text of every metric.
    pub fn render_metrics(&self) -> String {
        let g = Globals {
            io_backend: self.shared.io.as_str(),
            generation: self.shared.snapshot.load().generation,
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            workers: self.shared.stats.len(),
        };
        render(&self.shared.stats, &g)
    }
}
