//! Per-worker counters (written only by their worker, lock-free) and the Prometheus text rendering.
//!
//! Each worker owns one [`WorkerStats`]; it increments with relaxed atomics
//! that no other thread writes, so there is no contention on the hot path.
//! `/metrics` sums all workers at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::tls::verify::Reason;

/// A counter only its owning worker increments.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Add `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    /// Subtract one (for gauges).
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The TLS versions counted separately.
pub const TLS_VERSIONS: [&str; 2] = ["TLSv1.2", "TLSv1.3"];

/// Backend error kinds.
#[derive(Clone, Copy, Debug)]
pub enum BackendError {
    /// Connection refused or unreachable (502).
    Connect = 0,
    /// No response head in time (504).
    Timeout = 1,
    /// The backend broke the exchange (502).
    Io = 2,
    /// The backend answered something that is not valid HTTP (502).
    Protocol = 3,
}

const BACKEND_ERRORS: [&str; 4] = ["connect", "timeout", "io", "protocol"];

/// Why a handshake did not complete.
#[derive(Clone, Copy, Debug)]
pub enum HandshakeFailure {
    /// Not completed within the handshake timeout.
    Timeout = 0,
    /// TLS error or alert (including a rejected client certificate in require mode).
    Error = 1,
    /// The peer closed the connection.
    Closed = 2,
}

const HANDSHAKE_FAILURES: [&str; 3] = ["timeout", "error", "closed"];

/// Why a connection's records stayed in user space although kTLS was wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KtlsFallback {
    /// The kernel does not offer the `tls` ULP (`CERTGATE_KTLS=auto`).
    NoUlp = 0,
    /// The negotiated version or cipher suite is not one the kernel implements.
    Cipher = 1,
    /// The record keys could not be derived (a TLS 1.3 traffic secret was not logged).
    Keys = 2,
    /// The kernel refused `TCP_ULP` or `TLS_TX` (the connection continues in user space).
    Setsockopt = 3,
}

/// Labels of [`KtlsFallback`], by discriminant.
pub const KTLS_FALLBACKS: [&str; 4] = ["no_ulp", "cipher", "keys", "setsockopt"];

/// Which way a spliced body went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpliceDirection {
    /// A request body, client to backend.
    Request = 0,
    /// A response body, backend to client.
    Response = 1,
}

/// Labels of [`SpliceDirection`], by discriminant.
pub const SPLICE_DIRECTIONS: [&str; 2] = ["request", "response"];

/// Verdict labels: success, none, then every failure reason.
pub const VERDICTS: [&str; 2 + Reason::ALL.len()] = {
    let mut out = [""; 2 + Reason::ALL.len()];
    out[0] = "success";
    out[1] = "none";
    let mut i = 0;
    while i < Reason::ALL.len() {
        out[2 + i] = Reason::ALL[i].as_str();
        i += 1;
    }
    out
};

/// One worker's counters.
#[derive(Debug)]
pub struct WorkerStats {
    /// Connections accepted.
    pub connections_accepted: Counter,
    /// Connections refused at the per-worker cap.
    pub connections_refused: Counter,
    /// Connections open now (gauge).
    pub connections_active: Counter,
    /// Completed handshakes per version (index into [`TLS_VERSIONS`]).
    pub handshakes_ok: [Counter; 2],
    /// Failed handshakes per [`HandshakeFailure`].
    pub handshake_failures: [Counter; 3],
    /// Handshakes that resumed a session.
    pub resumptions: Counter,
    /// Client-certificate verdicts per [`VERDICTS`] label.
    pub verdicts: [Counter; VERDICTS.len()],
    /// Verdict cache hits.
    pub verify_cache_hits: Counter,
    /// Verdict cache misses (a chain was built).
    pub verify_cache_misses: Counter,
    /// Certificates whose issuer's CRL was missing or stale, accepted (`CERTGATE_CRL_MISSING=allow`).
    pub crl_unknown_allowed: Counter,
    /// Certificates whose issuer's CRL was missing or stale, refused (`CERTGATE_CRL_MISSING=deny`).
    pub crl_unknown_denied: Counter,
    /// Responses sent to clients by status code (index = status, 0..600).
    pub responses: Box<[Counter]>,
    /// Backend errors per [`BackendError`].
    pub backend_errors: [Counter; 4],
    /// Bytes read from client sockets (TLS records).
    pub bytes_received: Counter,
    /// Bytes written to client sockets (TLS records).
    pub bytes_sent: Counter,
    /// io_uring: system calls that submitted work (`io_uring_enter`).
    pub uring_submit_calls: Counter,
    /// io_uring: receives that found the provided-buffer ring empty.
    pub uring_buffers_exhausted: Counter,
    /// io_uring: zero-copy sends.
    pub uring_send_zc: Counter,
    /// Connections whose record layer was handed to the kernel (kTLS).
    pub ktls_offloaded: Counter,
    /// Connections kept in user space although kTLS was wanted, per [`KtlsFallback`].
    pub ktls_fallbacks: [Counter; 4],
    /// TLS 1.3 KeyUpdates applied to an offloaded connection (kernel re-keyed).
    pub ktls_key_updates: Counter,
    /// Offloaded connections closed on a record the engine does not accept
    /// (an alert other than close_notify, a handshake message other than
    /// KeyUpdate, a failed re-key, or a failed TLS_RX after TLS_TX).
    pub ktls_closed: Counter,
    /// Body bytes of offloaded connections moved socket to socket through a
    /// pipe (splice), per [`SpliceDirection`].
    pub ktls_spliced_bytes: [Counter; 2],
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            connections_accepted: Counter::default(),
            connections_refused: Counter::default(),
            connections_active: Counter::default(),
            handshakes_ok: Default::default(),
            handshake_failures: Default::default(),
            resumptions: Counter::default(),
            verdicts: Default::default(),
            verify_cache_hits: Counter::default(),
            verify_cache_misses: Counter::default(),
            crl_unknown_allowed: Counter::default(),
            crl_unknown_denied: Counter::default(),
            responses: (0..600).map(|_| Counter::default()).collect(),
            backend_errors: Default::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            uring_submit_calls: Counter::default(),
            uring_buffers_exhausted: Counter::default(),
            uring_send_zc: Counter::default(),
            ktls_offloaded: Counter::default(),
            ktls_fallbacks: Default::default(),
            ktls_key_updates: Counter::default(),
            ktls_closed: Counter::default(),
            ktls_spliced_bytes: Default::default(),
        }
    }
}

impl WorkerStats {
    /// Count a response sent to a client.
    #[inline]
    pub fn response(&self, status: u16) {
        if let Some(c) = self.responses.get(usize::from(status)) {
            c.inc();
        }
    }

    /// Count a completed handshake.
    pub fn handshake_ok(&self, version: &str) {
        if let Some(i) = TLS_VERSIONS.iter().position(|v| *v == version) {
            self.handshakes_ok[i].inc();
        }
    }

    /// Count a failed handshake.
    pub fn handshake_failed(&self, why: HandshakeFailure) {
        self.handshake_failures[why as usize].inc();
    }

    /// Count a backend error.
    pub fn backend_error(&self, kind: BackendError) {
        self.backend_errors[kind as usize].inc();
    }

    /// Count a connection kept in user space although kTLS was wanted.
    pub fn ktls_fallback(&self, why: KtlsFallback) {
        self.ktls_fallbacks[why as usize].inc();
    }

    /// Count body bytes spliced between the sockets (kTLS).
    pub fn spliced(&self, direction: SpliceDirection, bytes: u64) {
        self.ktls_spliced_bytes[direction as usize].add(bytes);
    }

    /// Count a client-certificate verdict by its label.
    pub fn verdict(&self, label: &str) {
        if let Some(i) = VERDICTS.iter().position(|v| *v == label) {
            self.verdicts[i].inc();
        }
    }
}

/// Process-wide values shown next to the worker sums.
pub struct Globals<'a> {
    /// "uring" or "epoll".
    pub io_backend: &'a str,
    /// Current snapshot generation.
    pub generation: u64,
    /// Reloads that succeeded.
    pub reloads_ok: u64,
    /// Reloads that failed (the previous snapshot kept serving).
    pub reloads_failed: u64,
    /// Worker threads.
    pub workers: usize,
}

fn sum(workers: &[std::sync::Arc<WorkerStats>], f: impl Fn(&WorkerStats) -> &Counter) -> u64 {
    workers.iter().map(|w| f(w).get()).sum()
}

/// A single-series family: name, type, help, and the counter it sums.
type SimpleFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerStats) -> &Counter,
);

/// Render every metric in the Prometheus text exposition format.
pub fn render(workers: &[std::sync::Arc<WorkerStats>], g: &Globals<'_>) -> String {
    let family = |name: &str, kind: &str, help: &str| {
        format!("# HELP {name} {help}\n# TYPE {name} {kind}\n")
    };
    let mut text = String::with_capacity(4096);
    let mut push = |head: String, lines: Vec<(String, u64)>| {
        text.push_str(&head);
        for (series, v) in lines {
            let _ = writeln!(text, "{series} {v}");
        }
    };

    let h = family(
        "certgate_io_backend",
        "gauge",
        "io backend in use (1 for the active one)",
    );
    push(
        h,
        vec![(
            format!("certgate_io_backend{{backend=\"{}\"}}", g.io_backend),
            1,
        )],
    );
    let h = family("certgate_workers", "gauge", "worker threads");
    push(h, vec![("certgate_workers".into(), g.workers as u64)]);
    let h = family(
        "certgate_snapshot_generation",
        "gauge",
        "generation of the trust snapshot in force",
    );
    push(
        h,
        vec![("certgate_snapshot_generation".into(), g.generation)],
    );
    let h = family(
        "certgate_reloads_total",
        "counter",
        "configuration reloads by result",
    );
    push(
        h,
        vec![
            ("certgate_reloads_total{result=\"ok\"}".into(), g.reloads_ok),
            (
                "certgate_reloads_total{result=\"failed\"}".into(),
                g.reloads_failed,
            ),
        ],
    );

    let simple: [SimpleFamily; 16] = [
        (
            "certgate_connections_accepted_total",
            "counter",
            "client connections accepted",
            |w| &w.connections_accepted,
        ),
        (
            "certgate_connections_refused_total",
            "counter",
            "client connections refused at CERTGATE_MAX_CONNECTIONS",
            |w| &w.connections_refused,
        ),
        (
            "certgate_connections_active",
            "gauge",
            "client connections open",
            |w| &w.connections_active,
        ),
        (
            "certgate_resumptions_total",
            "counter",
            "handshakes that resumed a session",
            |w| &w.resumptions,
        ),
        (
            "certgate_verify_cache_hits_total",
            "counter",
            "client-certificate verdicts served from the per-worker cache",
            |w| &w.verify_cache_hits,
        ),
        (
            "certgate_verify_cache_misses_total",
            "counter",
            "client-certificate verifications that built a chain",
            |w| &w.verify_cache_misses,
        ),
        (
            "certgate_crl_unknown_allowed_total",
            "counter",
            "verifications whose issuer's CRL was missing or stale and CERTGATE_CRL_MISSING=allow accepted",
            |w| &w.crl_unknown_allowed,
        ),
        (
            "certgate_crl_unknown_denied_total",
            "counter",
            "verifications whose issuer's CRL was missing or stale and CERTGATE_CRL_MISSING=deny refused",
            |w| &w.crl_unknown_denied,
        ),
        (
            "certgate_bytes_received_total",
            "counter",
            "bytes read from client connections (TLS records)",
            |w| &w.bytes_received,
        ),
        (
            "certgate_bytes_sent_total",
            "counter",
            "bytes written to client connections (TLS records)",
            |w| &w.bytes_sent,
        ),
        (
            "certgate_uring_submit_calls_total",
            "counter",
            "io_uring_enter system calls that submitted work (io_uring backend; with SQPOLL only the wake-ups)",
            |w| &w.uring_submit_calls,
        ),
        (
            "certgate_uring_buffers_exhausted_total",
            "counter",
            "receives that found the io_uring provided-buffer ring empty and used a buffer of their own",
            |w| &w.uring_buffers_exhausted,
        ),
        (
            "certgate_uring_send_zc_total",
            "counter",
            "io_uring zero-copy sends (CERTGATE_URING_SEND_ZC_MIN)",
            |w| &w.uring_send_zc,
        ),
        (
            "certgate_ktls_offloaded_total",
            "counter",
            "connections whose TLS record layer was handed to the kernel (kTLS)",
            |w| &w.ktls_offloaded,
        ),
        (
            "certgate_ktls_key_updates_total",
            "counter",
            "TLS 1.3 KeyUpdates applied to kernel-offloaded connections",
            |w| &w.ktls_key_updates,
        ),
        (
            "certgate_ktls_closed_total",
            "counter",
            "kernel-offloaded connections closed on a control record or re-key the engine does not accept",
            |w| &w.ktls_closed,
        ),
    ];
    for (name, kind, help, f) in simple {
        let h = family(name, kind, help);
        push(h, vec![(name.to_string(), sum(workers, f))]);
    }

    let h = family(
        "certgate_handshakes_total",
        "counter",
        "completed TLS handshakes by TLS version",
    );
    let lines = TLS_VERSIONS
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let series = format!("certgate_handshakes_total{{result=\"ok\",version=\"{v}\"}}");
            (series, sum(workers, |w| &w.handshakes_ok[i]))
        })
        .collect();
    push(h, lines);

    let h = family(
        "certgate_handshake_failures_total",
        "counter",
        "handshakes that did not complete, by reason",
    );
    let lines = HANDSHAKE_FAILURES
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let series = format!("certgate_handshake_failures_total{{reason=\"{r}\"}}");
            (series, sum(workers, |w| &w.handshake_failures[i]))
        })
        .collect();
    push(h, lines);

    let h = family(
        "certgate_ktls_fallbacks_total",
        "counter",
        "connections kept in user-space TLS although kTLS was wanted, by reason",
    );
    let lines = KTLS_FALLBACKS
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let series = format!("certgate_ktls_fallbacks_total{{reason=\"{r}\"}}");
            (series, sum(workers, |w| &w.ktls_fallbacks[i]))
        })
        .collect();
    push(h, lines);

    let h = family(
        "certgate_ktls_spliced_bytes_total",
        "counter",
        "body bytes of kernel-offloaded connections moved between the client and backend sockets by splice, without a user-space copy",
    );
    let lines = SPLICE_DIRECTIONS
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let series = format!("certgate_ktls_spliced_bytes_total{{direction=\"{d}\"}}");
            (series, sum(workers, |w| &w.ktls_spliced_bytes[i]))
        })
        .collect();
    push(h, lines);

    let h = family(
        "certgate_client_cert_verdicts_total",
        "counter",
        "client-certificate verdicts by result",
    );
    let lines = VERDICTS
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let series = format!("certgate_client_cert_verdicts_total{{verdict=\"{v}\"}}");
            (series, sum(workers, |w| &w.verdicts[i]))
        })
        .collect();
    push(h, lines);

    let h = family(
        "certgate_requests_total",
        "counter",
        "responses sent to clients by HTTP status",
    );
    let lines = (0..600)
        .filter_map(|status| {
            let n = sum(workers, |w| &w.responses[status]);
            (n > 0).then(|| (format!("certgate_requests_total{{status=\"{status}\"}}"), n))
        })
        .collect();
    push(h, lines);

    let h = family(
        "certgate_backend_errors_total",
        "counter",
        "failed exchanges with the backend by kind",
    );
    let lines = BACKEND_ERRORS
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let series = format!("certgate_backend_errors_total{{kind=\"{k}\"}}");
            (series, sum(workers, |w| &w.backend_errors[i]))
        })
        .collect();
    push(h, lines);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sums_workers_and_names_everything_certgate() {
        let a = Arc::new(WorkerStats::default());
        let b = Arc::new(WorkerStats::default());
        a.response(200);
        b.response(200);
        b.response(403);
        a.verify_cache_hits.add(3);
        b.handshake_ok("TLSv1.3");
        a.ktls_fallback(KtlsFallback::NoUlp);
        b.ktls_fallback(KtlsFallback::NoUlp);
        b.ktls_offloaded.inc();
        a.spliced(SpliceDirection::Response, 1000);
        b.spliced(SpliceDirection::Response, 24);
        let g = Globals {
            io_backend: "uring",
            generation: 4,
            reloads_ok: 1,
            reloads_failed: 2,
            workers: 2,
        };
        let text = render(&[a, b], &g);
        assert!(
            text.contains("certgate_requests_total{status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("certgate_requests_total{status=\"403\"} 1\n"));
        assert!(!text.contains("status=\"404\""));
        assert!(text.contains("certgate_verify_cache_hits_total 3\n"));
        assert!(text.contains("certgate_io_backend{backend=\"uring\"} 1\n"));
        assert!(text.contains("certgate_handshakes_total{result=\"ok\",version=\"TLSv1.3\"} 1\n"));
        assert!(text.contains("certgate_reloads_total{result=\"failed\"} 2\n"));
        assert!(text.contains("certgate_ktls_fallbacks_total{reason=\"no_ulp\"} 2\n"));
        assert!(text.contains("certgate_ktls_fallbacks_total{reason=\"cipher\"} 0\n"));
        assert!(text.contains("certgate_ktls_offloaded_total 1\n"));
        assert!(text.contains("certgate_ktls_spliced_bytes_total{direction=\"response\"} 1024\n"));
        assert!(text.contains("certgate_ktls_spliced_bytes_total{direction=\"request\"} 0\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("certgate_"), "{line}");
        }
    }
}
