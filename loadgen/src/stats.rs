//! Per-thread measurements (no locks, no allocation per request) and their merge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::parse::Kind;
use crate::tls::{ErrKey, Failure};

/// Lowest and highest latency the histogram tells apart, in nanoseconds (1 µs .. 1 h).
const HIST_LOW_NS: u64 = 1_000;
const HIST_HIGH_NS: u64 = 3_600_000_000_000;

/// A new latency histogram in nanoseconds with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_NS, HIST_HIGH_NS, 3).expect("valid histogram bounds")
}

/// One error kind's count and its first description.
#[derive(Clone, Debug)]
pub struct ErrEntry {
    /// Occurrences.
    pub count: u64,
    /// Report name, e.g. `tls:certificate_required`.
    pub name: String,
    /// The first occurrence's description.
    pub sample: String,
}

/// Idle-mode counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdleStats {
    /// Connections opened and answered.
    pub opened: u64,
    /// Connections that failed to open or to answer the first request.
    pub failed: u64,
    /// Connections the server closed during the hold.
    pub closed_during_hold: u64,
    /// Connections that answered the probe request at the end of the hold.
    pub probe_ok: u64,
    /// Connections whose probe failed.
    pub probe_failed: u64,
}

/// Measurements of one thread (merged at the end).
pub struct Stats {
    /// Latency of successful requests, ns.
    pub hist: Histogram<u64>,
    /// Requests that received a complete, accepted response.
    pub ok: u64,
    /// Failed requests by kind.
    pub errors: HashMap<ErrKey, ErrEntry>,
    /// Status code counts (index = code, 0..1000).
    pub status: Vec<u64>,
    /// HTTP bytes sent (request heads and bodies).
    pub bytes_sent: u64,
    /// HTTP bytes received (response heads, bodies, framing).
    pub bytes_received: u64,
    /// TCP payload bytes sent (TLS records including handshakes).
    pub wire_sent: u64,
    /// TCP payload bytes received.
    pub wire_received: u64,
    /// TLS handshakes completed.
    pub handshakes: u64,
    /// Handshakes that resumed a session.
    pub resumed: u64,
    /// Handshakes that offered a session.
    pub resume_attempts: u64,
    /// Requests by kind (mixed mode), successful or not.
    pub kinds: [u64; 4],
    /// Idle-mode counters.
    pub idle: IdleStats,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty measurements.
    pub fn new() -> Stats {
        Stats {
            hist: new_histogram(),
            ok: 0,
            errors: HashMap::new(),
            status: vec![0; 1000],
            bytes_sent: 0,
            bytes_received: 0,
            wire_sent: 0,
            wire_received: 0,
            handshakes: 0,
            resumed: 0,
            resume_attempts: 0,
            kinds: [0; 4],
            idle: IdleStats::default(),
        }
    }

    /// Records a successful request's latency.
    pub fn record_ok(&mut self, latency_ns: u64) {
        self.ok += 1;
        self.hist.saturating_record(latency_ns.max(HIST_LOW_NS));
    }

    /// Counts a status code.
    pub fn record_status(&mut self, status: u16) {
        if let Some(c) = self.status.get_mut(usize::from(status)) {
            *c += 1;
        }
    }

    /// Counts a failure (allocates only for the first of its kind).
    pub fn record_error(&mut self, f: &Failure) {
        self.errors
            .entry(f.key())
            .or_insert_with(|| ErrEntry {
                count: 0,
                name: f.name(),
                sample: f.message(),
            })
            .count += 1;
    }

    /// Counts a request of `kind`.
    pub fn record_kind(&mut self, kind: Kind) {
        self.kinds[kind.index()] += 1;
    }

    /// Total failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.hist
            .add(&other.hist)
            .expect("histograms with the same bounds");
        self.ok += other.ok;
        for (k, e) in &other.errors {
            let mine = self.errors.entry(*k).or_insert_with(|| ErrEntry {
                count: 0,
                name: e.name.clone(),
                sample: e.sample.clone(),
            });
            mine.count += e.count;
        }
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.wire_sent += other.wire_sent;
        self.wire_received += other.wire_received;
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.resume_attempts += other.resume_attempts;
        for (a, b) in self.kinds.iter_mut().zip(other.kinds) {
            *a += b;
        }
        self.idle.opened += other.idle.opened;
        self.idle.failed += other.idle.failed;
        self.idle.closed_during_hold += other.idle.closed_during_hold;
        self.idle.probe_ok += other.idle.probe_ok;
        self.idle.probe_failed += other.idle.probe_failed;
    }

    /// Errors by report name (distinct keys can share a name), sorted by name.
    pub fn errors_by_name(&self) -> Vec<(String, u64, String)> {
        let mut m: HashMap<&str, (u64, &str)> = HashMap::new();
        for e in self.errors.values() {
            let slot = m.entry(&e.name).or_insert((0, &e.sample));
            slot.0 += e.count;
        }
        let mut v: Vec<(String, u64, String)> = m
            .into_iter()
            .map(|(n, (c, s))| (n.to_owned(), c, s.to_owned()))
            .collect();
        v.sort();
        v
    }
}

/// Counters a worker thread publishes for the progress display.
#[derive(Debug, Default)]
pub struct Live {
    /// Finished requests (including warm-up and failures).
    pub requests: AtomicU64,
    /// Failed requests.
    pub errors: AtomicU64,
    /// Idle mode: connections that finished their opening attempt.
    pub opened: AtomicU64,
}

impl Live {
    /// Adds one finished request.
    pub fn add(&self, failed: bool) {
        // Only this worker thread writes; a relaxed load+store avoids a locked instruction.
        let r = self.requests.load(Ordering::Relaxed);
        self.requests.store(r + 1, Ordering::Relaxed);
        if failed {
            let e = self.errors.load(Ordering::Relaxed);
            self.errors.store(e + 1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_percentiles() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        for i in 1..=1000u64 {
            a.record_ok(i * 1_000); // 1 µs .. 1 ms
            a.record_status(200);
        }
        b.record_ok(5_000_000_000); // 5 s
        b.record_status(503);
        b.record_error(&Failure::Timeout);
        b.record_error(&Failure::Timeout);
        b.record_error(&Failure::Status(503));
        a.merge(&b);
        assert_eq!(a.ok, 1001);
        assert_eq!(a.hist.len(), 1001);
        let p50 = a.hist.value_at_quantile(0.5);
        assert!((499_000..=502_000).contains(&p50), "p50 {p50}");
        assert!(a.hist.max() >= 4_990_000_000);
        assert_eq!(a.status[200], 1000);
        assert_eq!(a.status[503], 1);
        assert_eq!(a.error_count(), 3);
        let names: Vec<_> = a
            .errors_by_name()
            .into_iter()
            .map(|(n, c, _)| (n, c))
            .collect();
        assert_eq!(
            names,
            vec![("http_status:503".into(), 1), ("timeout".into(), 2)]
        );
    }

    #[test]
    fn tiny_and_huge_latencies_are_clamped() {
        let mut s = Stats::new();
        s.record_ok(0);
        s.record_ok(u64::MAX);
        assert_eq!(s.hist.len(), 2);
        assert!(s.hist.min() > 0 && s.hist.min() <= HIST_LOW_NS);
        assert!(s.hist.max() >= HIST_HIGH_NS / 2);
    }
}
