//! The control plane's state: reloads (SIGHUP, `POST /reload`) and what `/metrics` reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::{info, warn};

use crate::admin::api::CrlAdmin;
use crate::admin::metrics::{render, Globals};
use crate::runtime::Shared;
use crate::tls::context::{build_snapshot, SnapshotSources, TlsError};
use crate::tls::tickets::TicketKeys;

/// Owned by the main thread; shared with the admin server.
pub struct Control {
    /// State the workers read.
    pub shared: Arc<Shared>,
    /// The files snapshots are built from.
    pub sources: SnapshotSources,
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
}

impl Control {
    /// Wrap the started state.
    ///
    /// Also opens the certificate store with a hook that changes nothing
    /// (`main` has already checked that it loads); the engine replaces the
    /// hook with [`crate::store::Store::set_hook`] once it builds snapshots from it.
    pub fn new(shared: Arc<Shared>, sources: SnapshotSources, tickets: Arc<TicketKeys>) -> Self {
        let control = Control {
            shared,
            sources,
            tickets,
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
            store: OnceLock::new(),
            store_watches: Mutex::new(Vec::new()),
            crls: OnceLock::new(),
        };
        match crate::store::start(&control.shared.config, Arc::new(crate::store::NoopHook)) {
            Ok(rt) => control.attach_store(rt),
            Err(e) => warn!("certificate store unavailable: {e}"),
        }
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
    ///
    /// Called from the main thread only (signal handler and admin server share
    /// its single-threaded runtime), so generations never race.
    pub fn reload(&self) -> Result<u64, TlsError> {
        let generation = self.shared.snapshot.load().generation + 1;
        match build_snapshot(
            &self.shared.config,
            &self.sources,
            generation,
            &self.tickets,
        ) {
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
