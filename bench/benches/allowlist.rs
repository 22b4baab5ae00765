//! Thumbprint allowlist lookups: certgate's immutable snapshot behind `ArcSwap`
//! (readers never lock) against `Mutex<HashSet>` and `RwLock<HashSet>`, with one
//! and two threads looking up concurrently, hits and misses mixed 50/50.
//!
//! One iteration = one lookup on each thread. The two-thread variants report
//! the wall time of a batch in which both threads do `iters` lookups each, so
//! their throughput line (two elements per iteration) is the aggregate.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use certgate::trust::{Allowlist, CertDigests, Thumbprint};
use certgate_bench::SplitMix64;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// What a worker reads: the engine keeps the allowlist inside its trust snapshot.
struct Snapshot {
    allowlist: Allowlist,
}

/// Probes per thread, cycled through (a power of two).
const PROBES: usize = 1 << 14;

struct Fixture {
    /// certgate: `ArcSwap<Snapshot>`, `load()` + `Allowlist::contains` (both digests).
    snapshot: ArcSwap<Snapshot>,
    /// The same snapshot publication around the baselines' set, to separate the
    /// cost of synchronisation from that of `Allowlist` checking two digests.
    snapshot_set: ArcSwap<HashSet<[u8; 32]>>,
    /// Baselines. The three `HashSet` variants guard one shared table (hence the
    /// `Arc`), so they differ only in how readers synchronise, not in where the
    /// table's memory landed (which, at 1M entries, moves results by 2-3x).
    mutex: Mutex<Arc<HashSet<[u8; 32]>>>,
    rwlock: RwLock<Arc<HashSet<[u8; 32]>>>,
    /// Two probe sequences (one per thread), alternately listed and unlisted.
    probes: [Vec<CertDigests>; 2],
}

impl Fixture {
    fn new(entries: usize) -> Fixture {
        let mut rng = SplitMix64(0x5eed ^ entries as u64);
        let keys: Vec<[u8; 32]> = (0..entries).map(|_| rng.bytes32()).collect();
        // Entries are SHA-256 thumbprints (`x5t#S256` / 64-hex spellings).
        let allowlist: Allowlist = keys.iter().map(|k| Thumbprint::Sha256(*k)).collect();
        let set: Arc<HashSet<[u8; 32]>> = Arc::new(keys.iter().copied().collect());
        let mut probe_seq = |salt: u64| -> Vec<CertDigests> {
            let mut pick = SplitMix64(salt);
            (0..PROBES)
                .map(|i| {
                    let sha256 = if i % 2 == 0 {
                        keys[(pick.next_u64() % entries as u64) as usize]
                    } else {
                        rng.bytes32()
                    };
                    CertDigests {
                        sha1: rng.bytes20(),
                        sha256,
                    }
                })
                .collect()
        };
        let probes = [probe_seq(1), probe_seq(2)];
        Fixture {
            snapshot: ArcSwap::from_pointee(Snapshot { allowlist }),
            snapshot_set: ArcSwap::new(Arc::clone(&set)),
            mutex: Mutex::new(Arc::clone(&set)),
            rwlock: RwLock::new(set),
            probes,
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Snapshot,
    SnapshotHashSet,
    Mutex,
    RwLock,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Snapshot,
        Kind::SnapshotHashSet,
        Kind::Mutex,
        Kind::RwLock,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Snapshot => "arcswap_allowlist",
            Kind::SnapshotHashSet => "arcswap_hashset",
            Kind::Mutex => "mutex_hashset",
            Kind::RwLock => "rwlock_hashset",
        }
    }
}

/// `iters` lookups from `probes`; returns the number of hits (kept observable).
fn run(f: &Fixture, kind: Kind, probes: &[CertDigests], iters: u64) -> u64 {
    let mut hits = 0u64;
    let mask = PROBES - 1;
    for i in 0..iters as usize {
        let d = black_box(&probes[i & mask]);
        let hit = match kind {
            Kind::Snapshot => f.snapshot.load().allowlist.contains(d),
            Kind::SnapshotHashSet => f.snapshot_set.load().contains(&d.sha256),
            Kind::Mutex => f.mutex.lock().unwrap().contains(&d.sha256),
            Kind::RwLock => f.rwlock.read().unwrap().contains(&d.sha256),
        };
        hits += u64::from(hit);
    }
    hits
}

fn allowlist(c: &mut Criterion) {
    for entries in [1_000usize, 100_000, 1_000_000] {
        let fixture = Arc::new(Fixture::new(entries));
        let label = match entries {
            1_000 => "1k",
            100_000 => "100k",
            _ => "1M",
        };

        let mut single = c.benchmark_group(format!("allowlist_1thread/{label}"));
        single
            .throughput(Throughput::Elements(1))
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1200))
            .sample_size(50);
        for kind in Kind::ALL {
            let f = &*fixture;
            single.bench_function(BenchmarkId::from_parameter(kind.name()), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    black_box(run(f, kind, &f.probes[0], iters));
                    start.elapsed()
                });
            });
        }
        single.finish();

        let mut double = c.benchmark_group(format!("allowlist_2threads/{label}"));
        double
            .throughput(Throughput::Elements(2))
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(50);
        for kind in Kind::ALL {
            let f = &*fixture;
            double.bench_function(BenchmarkId::from_parameter(kind.name()), |b| {
                b.iter_custom(|iters| {
                    // The bench thread is one of the two lookup threads.
                    std::thread::scope(|s| {
                        let start = Instant::now();
                        let other = s.spawn(|| run(f, kind, &f.probes[1], iters));
                        black_box(run(f, kind, &f.probes[0], iters));
                        black_box(other.join().unwrap());
                        start.elapsed()
                    })
                });
            });
        }
        double.finish();
    }
}

criterion_group!(benches, allowlist);
criterion_main!(benches);
