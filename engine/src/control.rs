//! The control plane's state: reloads (SIGHUP, `POST /reload`) and what `/metrics` reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::{info, warn};

use crate::admin::metrics::{render, Globals};
use crate::runtime::Shared;
use crate::tls::context::{build_snapshot, SnapshotSources, TlsError};
use crate::tls::tickets::TicketKeys;

/// Produces the snapshot sources: re-reads the configuration file (when there
/// is one) and resolves its hosts. Called at start and by every reload.
pub type Planner =
    Box<dyn Fn() -> Result<SnapshotSources, crate::config_file::FileError> + Send + Sync>;

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
}

impl Control {
    /// Wrap the started state.
    pub fn new(shared: Arc<Shared>, planner: Planner, tickets: Arc<TicketKeys>) -> Self {
        Control {
            shared,
            planner,
            tickets,
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Re-read every file and publish a new snapshot. On failure the current one stays.
    ///
    /// Called from the main thread only (signal handler and admin server share
    /// its single-threaded runtime), so generations never race.
    pub fn reload(&self) -> Result<u64, ReloadError> {
        let generation = self.shared.snapshot.load().generation + 1;
        let built = (self.planner)()
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
