//! One client connection: handshake under a deadline, the client-certificate verdict, then HTTP.

use std::net::SocketAddr;
use std::rc::Rc;

use boring::ssl::Ssl;
use tracing::debug;

use crate::admin::metrics::HandshakeFailure;
use crate::config::ClientCertMode;
use crate::runtime::io::Io;
use crate::runtime::worker::Worker;
use crate::tls::context::{connection_host, verdict_index};
use crate::tls::stream::TlsConn;
use crate::tls::verify::{evaluate, Verdict};

/// Serve a freshly accepted connection until it closes.
pub async fn serve<S: Io>(sock: S, peer: SocketAddr, w: &Rc<Worker<S>>) {
    let config = &w.shared.config;
    let snapshot = w.shared.snapshot.load_full();
    let ssl = match Ssl::new(snapshot.initial_ctx()) {
        Ok(ssl) => ssl,
        Err(e) => {
            debug!("cannot create TLS state: {e}");
            return;
        }
    };
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
        if let Some(v @ Verdict::Failed(_)) = conn.ssl().ex_data(verdict_index()) {
            w.stats.verdict(v.label());
        }
        account(&conn, w);
        return;
    }
    w.stats.handshake_ok(conn.ssl().version_str());
    if conn.ssl().session_reused() {
        w.stats.resumptions.inc();
    }

    // The host its SNI name selected (the default host without one).
    let host = connection_host(conn.ssl(), &snapshot);
    let mode = snapshot.hosts[host].mode;

    // The verdict: from the verify callback of this full handshake, or — for a
    // resumed session, whose certificate BoringSSL does not verify again —
    // evaluated now against the snapshot in force.
    let (verdict, generation) = match mode {
        ClientCertMode::Off => (Verdict::NoCertificate, snapshot.generation),
        _ => match conn.ssl().ex_data(verdict_index()) {
            Some(v) if !conn.ssl().session_reused() => (v.clone(), snapshot.generation),
            _ => {
                let now = w.shared.snapshot.load();
                (evaluate(&now.trust, conn.ssl()), now.generation)
            }
        },
    };
    if mode != ClientCertMode::Off {
        w.stats.verdict(verdict.label());
    }
    if mode == ClientCertMode::Require && !matches!(verdict, Verdict::Verified(_)) {
        // Only a resumed session gets here: full handshakes were refused with an alert.
        debug!(%peer, verdict = verdict.label(), "resumed session no longer passes the policy");
        let _ = tokio::time::timeout(config.handshake_timeout, conn.shutdown()).await;
        account(&conn, w);
        return;
    }

    // A reload between the handshake and now may have renumbered the hosts:
    // the connection's host is found again by its SNI name when it does.
    let host = super::forward::ConnHost {
        generation: snapshot.generation,
        index: host,
    };
    drop(snapshot);
    super::forward::serve_http(&mut conn, peer, &verdict, generation, host, mode, w).await;
    account(&conn, w);
}

fn account<S: Io>(conn: &TlsConn<S>, w: &Worker<S>) {
    w.stats.bytes_received.add(conn.traffic.received);
    w.stats.bytes_sent.add(conn.traffic.sent);
}
