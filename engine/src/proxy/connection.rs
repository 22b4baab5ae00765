//! One client connection: handshake under a deadline, the client-certificate verdict, then HTTP.

use std::net::SocketAddr;
use std::rc::Rc;

use boring::ssl::Ssl;
use tracing::debug;

use super::forward::ConnHost;
use crate::admin::metrics::HandshakeFailure;
use crate::config::ClientCertMode;
use crate::runtime::io::Io;
use crate::runtime::worker::Worker;
use crate::tls::context::{connection_host, verdict_index};
use crate::tls::stream::TlsConn;
use crate::tls::verify::{evaluate, now_unix, Presented, Verdict};

/// Serve a freshly accepted connection until it closes.
pub async fn serve<S: Io>(sock: S, peer: SocketAddr, w: &Rc<Worker<S>>) {
    let config = &w.shared.config;
    let snapshot = w.shared.snapshot.load_full();
    let mut ssl = match Ssl::new(snapshot.initial_ctx()) {
        Ok(ssl) => ssl,
        Err(e) => {
            debug!("cannot create TLS state: {e}");
            return;
        }
    };
    crate::tls::ktls::prepare(&mut ssl, config);
    let Ok(mut conn) = TlsConn::new(ssl, sock) else {
        return;
    };

    let handshake = tokio::time::timeout(config.handshake_timeout, conn.handshake()).await;
    let failure = match handshake {
        Ok(Ok(())) => None,
        Err(_) => Some(HandshakeFailure::Timeout),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Some(HandshakeFailure::Closed)
        }
        Ok(Err(e)) => {
            debug!(%peer, "handshake failed: {e}");
            Some(HandshakeFailure::Error)
        }
    };
    if let Some(why) = failure {
        w.stats.handshake_failed(why);
        // A certificate rejected in require mode ends here: count its verdict.
        if let Some((_, v @ Verdict::Failed(_))) = conn.ssl().ex_data(verdict_index()) {
            w.stats.verdict(v.label());
        }
        account(&conn, w);
        return;
    }
    w.stats.handshake_ok(conn.ssl().version_str());
    if conn.ssl().session_reused() {
        w.stats.resumptions.inc();
    }

    // The host its SNI name selected (the default host without one), what the
    // client presented, and the host policy's verdict: from the verify
    // callback of this full handshake, or — for a resumed session, whose
    // certificate BoringSSL does not verify again — evaluated now against the
    // snapshot in force.
    let host = connection_host(conn.ssl(), &snapshot);
    let stashed = match conn.ssl().session_reused() {
        false => conn.ssl().ex_data(verdict_index()).cloned(),
        true => None,
    };
    let (presented, verdict, host) = match stashed {
        Some((presented, verdict)) => (presented, verdict, ConnHost::new(&snapshot, host)),
        None => {
            let now = w.shared.snapshot.load_full();
            let mut host = ConnHost::new(&snapshot, host);
            host.refresh(&now, conn.ssl());
            let h = &now.hosts[host.index];
            let presented = match h.mode {
                ClientCertMode::Off => Presented::Nothing,
                _ => evaluate(&now.trust, conn.ssl()),
            };
            let verdict = presented.decide(&h.policy, now_unix());
            (presented, verdict, host)
        }
    };
    drop(snapshot);
    let mode = host.mode;
    if mode != ClientCertMode::Off {
        w.stats.verdict(verdict.label());
    }
    if mode == ClientCertMode::Require && !matches!(verdict, Verdict::Verified(_)) {
        // Only a resumed session gets here: full handshakes were refused with an alert.
        debug!(%peer, verdict = verdict.label(), "resumed session no longer passes the policy");
        let _ = tokio::time::timeout(config.handshake_timeout, conn.close_notify()).await;
        account(&conn, w);
        return;
    }

    // Past the verdict: the kernel may take the records over at the first
    // record boundary (every request is still checked in serve_http).
    if let Some(pending) = crate::tls::ktls::plan(config, &w.stats) {
        conn.offload_when_idle(pending);
    }
    super::forward::serve_http(&mut conn, peer, presented, host, w).await;
    account(&conn, w);
}

fn account<S: Io>(conn: &TlsConn<S>, w: &Worker<S>) {
    w.stats.bytes_received.add(conn.traffic.received);
    w.stats.bytes_sent.add(conn.traffic.sent);
}
