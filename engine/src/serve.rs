//! Start-up and the main thread's loop: build the first snapshot, start workers, handle signals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::admin::metrics::WorkerStats;
use crate::config::{Backend, Config, ADMIN_LISTEN, LISTEN};
use crate::control::{Control, Planner};
use crate::runtime::{choose_backend, worker, Shared};
use crate::tls::context::build_snapshot;
use crate::tls::pki;
use crate::tls::tickets::TicketKeys;

/// Why certgate could not start. Each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A CRL file does not load, or the CRL updater cannot start.
    #[error("revocation: {0}")]
    Revocation(String),
    /// The certificate store or a watched directory does not load.
    #[error("certificate store: {0}")]
    Store(#[from] crate::store::StoreStartError),
    /// The configuration file's hosts are inconsistent.
    #[error(transparent)]
    File(#[from] crate::config_file::FileError),
    /// A TLS file problem.
    #[error(transparent)]
    Tls(#[from] crate::tls::context::TlsError),
    /// io_uring forced but unavailable.
    #[error(transparent)]
    Uring(#[from] crate::runtime::UringUnavailable),
    /// kTLS forced but the kernel lacks it.
    #[error(transparent)]
    Ktls(#[from] crate::tls::ktls::KtlsUnavailable),
    /// The development PKI could not be made.
    #[error("CERTGATE_STATE_DIR: cannot create the development PKI: {0}")]
    DevPki(#[from] pki::PkiError),
    /// A listener could not be bound.
    #[error("{var}: cannot listen on {addr}: {source}")]
    Bind {
        /// The variable.
        var: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A worker could not start serving.
    #[error("{0}")]
    Worker(String),
    /// A thread or runtime could not be started.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

fn start_err(what: &'static str) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Start { what, source }
}

/// The trusted CAs at start: the client CA bundle and the store's CAs.
fn trusted_cas(
    files: &crate::config::TlsFiles,
    store: &crate::store::StoreContents,
) -> Result<Vec<boring::x509::X509>, StartError> {
    let mut cas = Vec::new();
    if let Some(path) = &files.client_ca {
        let pem = std::fs::read(path)
            .map_err(|e| StartError::Revocation(format!("cannot read {}: {e}", path.display())))?;
        cas = boring::x509::X509::stack_from_pem(&pem)
            .map_err(|e| StartError::Revocation(format!("{}: {e}", path.display())))?;
    }
    for e in store.ca_certificates.values() {
        cas.push(e.material.cert.clone());
        cas.extend(e.material.chain.iter().cloned());
    }
    Ok(cas)
}

/// Run until SIGTERM/SIGINT and a drain.
pub fn run(mut config: Config) -> Result<(), StartError> {
    // The built-in echo backend (development default) is started first: hosts name its address.
    let file = config.file.clone();
    let echo = match crate::config_file::plan::uses_echo(file.as_deref(), &config) {
        true => Some(crate::admin::echo::start().map_err(start_err("echo backend"))?),
        false => None,
    };
    let mut dev = None;
    let files = match &config.tls {
        Some(files) => files.clone(),
        None => {
            let d = pki::ensure_dev_pki(&config.state_dir)?;
            let files = crate::config::TlsFiles {
                cert: d.server_cert.clone(),
                key: d.server_key.clone(),
                client_ca: Some(d.ca_cert.clone()),
                thumbprints: None,
            };
            dev = Some(d);
            files
        }
    };
    // The hosts: the configuration file's (re-read at every reload), or the
    // environment's single catch-all host.
    let ca_files = files.clone();
    let revocation = Arc::new(crate::control::RevocationLink::default());
    let cdp_slot: Arc<std::sync::OnceLock<crate::tls::verify::CdpNotify>> = Default::default();
    let planner: Planner = {
        let config = config.clone();
        let revocation = Arc::clone(&revocation);
        let cdp = cdp_slot.clone();
        Box::new(move |store: &crate::store::StoreContents| {
            let file = match &config.file {
                Some(f) => Some(Arc::new(crate::config_file::FileConfig::load(&f.path)?)),
                None => None,
            };
            let inputs = crate::config_file::plan::PlanInputs {
                config: &config,
                files: &files,
                echo,
                store: Some(store),
            };
            let mut sources = crate::config_file::plan::sources(file.as_deref(), &inputs)?;
            sources.revocation = revocation.index();
            sources.cdp = cdp.get().cloned();
            Ok(sources)
        })
    };
    // The certificate store (and its watched directories) first: hosts and
    // trust may name its entries. A store that does not load stops start-up.
    let store = crate::store::start(&config, Arc::new(crate::store::NoopHook))?;

    // Revocation: the updater reads the CRL files now (a bad one stops
    // start-up), then keeps every source fresh on its own thread; each new
    // index rebuilds the snapshot.
    let updater = {
        let cas = trusted_cas(&ca_files, &store.store.contents())?;
        let issuers = crate::tls::crl::IssuerCerts::new(cas.iter().map(|c| c.as_ref()))
            .map_err(|e| StartError::Revocation(e.to_string()))?;
        let link = Arc::clone(&revocation);
        crate::revocation::CrlUpdater::start(
            config.crl.clone(),
            issuers,
            Box::new(move |index| link.publish(index)),
        )
        .map_err(|e| StartError::Revocation(e.to_string()))?
    };
    let updater = Arc::new(updater);
    if updater.follows_cdp() {
        let u = Arc::clone(&updater);
        let _ = cdp_slot.set(crate::tls::verify::CdpNotify(Arc::new(
            move |issuer, urls| u.note_cdp(issuer, urls),
        )));
    }
    if !config.crl.is_configured() {
        warn!("revocation is not checked: neither CERTGATE_CRL nor CERTGATE_CRL_FOLLOW_CDP is set");
    }
    let sources = planner(&store.store.contents())?;
    let backend_addr = sources.hosts[0].backend;

    let tickets = TicketKeys::new();
    let ktls = crate::tls::ktls::Availability::resolve(config.ktls)?;
    config.ktls_available = ktls.kernel;
    let snapshot = build_snapshot(&config, &sources, 1, &tickets)?;
    let choice = choose_backend(&config)?;
    let (io, why) = (choice.backend, choice.reason);
    let mut uring_features = choice
        .uring
        .as_ref()
        .map(|d| d.features)
        .unwrap_or_default();
    // kTLS reads its records with recvmsg on the socket: an armed multishot
    // receive would take them first, so connections that may be offloaded
    // receive with one-shot operations, never armed between reads.
    let ktls_drops_multishot = crate::tls::ktls::wanted(&config) && uring_features.recv_multishot;
    if ktls_drops_multishot {
        uring_features.recv_multishot = false;
    }

    let listeners = crate::listener::bind_all(config.listen, config.workers, config.backlog)
        .map_err(|source| StartError::Bind {
            var: LISTEN,
            addr: config.listen,
            source,
        })?;
    let listen_addr = listeners[0].local_addr().map_err(start_err("listener"))?;
    config.listen = listen_addr;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(start_err("main runtime"))?;
    let _guard = runtime.enter();
    let admin = std::net::TcpListener::bind(config.admin_listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|source| StartError::Bind {
            var: ADMIN_LISTEN,
            addr: config.admin_listen,
            source,
        })?;
    let admin_addr = admin.local_addr().map_err(start_err("admin listener"))?;

    let stats = (0..config.workers)
        .map(|_| Arc::new(WorkerStats::default()))
        .collect();
    let shared = Arc::new(Shared {
        config: config.clone(),
        snapshot: ArcSwap::from_pointee(snapshot),
        backend_addr,
        io,
        uring: uring_features,
        stats,
    });
    let control = Control::start(Arc::clone(&shared), planner, tickets, store);
    control.attach_updater(Arc::clone(&updater), &revocation);

    if io == crate::runtime::IoBackend::Epoll && config.io == crate::config::IoChoice::Auto {
        warn!("io backend: epoll ({why})");
    } else {
        info!("io backend: {} ({why})", io.as_str());
    }
    if let Some(detected) = &choice.uring {
        for line in &detected.fallbacks {
            warn!("{line}");
        }
        if ktls_drops_multishot {
            info!("multishot receive off: kTLS reads records with recvmsg, which an armed multishot receive would take");
        }
        info!("{}", uring_features.summary(&config.uring));
    }
    info!("kTLS: {}", ktls.why);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for (id, listener) in listeners.into_iter().enumerate() {
        let t = worker::spawn(
            id,
            listener,
            Arc::clone(&shared),
            stop_rx.clone(),
            started_tx.clone(),
        )
        .map_err(start_err("worker thread"))?;
        threads.push(t);
    }
    drop(started_tx);
    for _ in 0..threads.len() {
        match started_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(StartError::Worker(why)),
            Err(_) => return Err(StartError::Worker("a worker exited during start-up".into())),
        }
    }

    if let Some(d) = &dev {
        let host_ip = if listen_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            listen_addr.ip().to_string()
        };
        warn!(
            "DEVELOPMENT MODE: no configuration given, so certgate serves a generated development PKI \
             from {} and proxies to its built-in echo backend. Do not use this in production: set \
             CERTGATE_TLS_CERT, CERTGATE_TLS_KEY, CERTGATE_CLIENT_CA and CERTGATE_BACKEND.",
            config.state_dir.display()
        );
        println!(
            "curl --cacert {} --cert {} --key {} --resolve localhost:{port}:{host_ip} https://localhost:{port}/",
            d.ca_cert.display(),
            d.client_cert.display(),
            d.client_key.display(),
            port = listen_addr.port(),
        );
    }
    info!(
        "certgate ready listen={listen_addr} admin={admin_addr} io={} workers={} client_cert={} backend={}",
        io.as_str(),
        config.workers,
        config.client_cert.as_str(),
        match &config.backend {
            Backend::Http { authority, .. } => authority.clone(),
            Backend::Echo => format!("echo@{backend_addr}"),
        }
    );

    runtime.block_on(async {
        tokio::spawn(crate::admin::server::run(admin, Arc::clone(&control)));
        let (mut hup, mut term, mut int) = match (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(h), Ok(t), Ok(i)) => (h, t, i),
            _ => {
                error!("cannot install signal handlers");
                return;
            }
        };
        let mut rotate = tokio::time::interval(config.ticket_rotate);
        rotate.tick().await;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    info!("SIGHUP: reloading");
                    let _ = control.reload();
                }
                _ = rotate.tick() => control.tickets.rotate(),
                _ = term.recv() => { info!("SIGTERM: draining"); break }
                _ = int.recv() => { info!("SIGINT: draining"); break }
            }
        }

        // Drain: workers stop accepting and finish what is in flight, while the
        // admin listener keeps answering (`/healthz` now says 503 draining).
        control.start_draining();
        let _ = stop_tx.send(true);
        let deadline = tokio::time::Instant::now() + config.drain_timeout + Duration::from_secs(2);
        while threads.iter().any(|t| !t.is_finished()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    for t in threads {
        if t.is_finished() {
            let _ = t.join();
        }
    }
    info!("stopped");
    Ok(())
}
