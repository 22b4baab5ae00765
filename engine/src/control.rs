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
    /// Serialises snapshot rebuilds (SIGHUP, `POST /reload`, store changes
    /// from the admin API and the directory watchers), so generations never race.
    rebuild: Mutex<()>,
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
            rebuild: Mutex::new(()),
        });
        store
            .store
            .set_hook(Arc::new(SnapshotHook(Arc::downgrade(&control))));
        control.attach_store(store);
        control
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
