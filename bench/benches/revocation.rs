//! The revocation index: "is (issuer, serial) revoked?" at 1k, 100k and 1M revoked
//! entries, for a listed serial (hit) and an unlisted one (miss), both as the bare
//! lookup (`is_revoked`) and as the verdict path calls it (`status`, which also reads
//! the issuer's CRL freshness); and the time to parse, verify and index a 1M-entry CRL,
//! which the CRL updater thread spends off the workers.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use certgate::tls::crl::{verify_crl, CrlBuilder, IssuerCerts};
use certgate::tls::pki::{self_signed, CertSpec, Usage};
use certgate::trust::revocation::{IndexBuilder, IssuerCrl, SerialHasher};
use certgate::trust::{IssuerKey, RevocationIndex};
use certgate_bench::SplitMix64;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};

/// Probes cycled through (a power of two).
const PROBES: usize = 1 << 14;

/// A random positive 16-byte serial, as CAs issue them.
fn serial(rng: &mut SplitMix64) -> Vec<u8> {
    let mut s = rng.bytes32()[..16].to_vec();
    s[0] = (s[0] & 0x7f) | 0x40;
    s
}

struct Fixture {
    index: RevocationIndex,
    issuer: IssuerKey,
    hits: Vec<Vec<u8>>,
    misses: Vec<Vec<u8>>,
}

impl Fixture {
    fn new(entries: usize) -> Fixture {
        let mut rng = SplitMix64(0xc41 ^ entries as u64);
        let issuer = IssuerKey(rng.bytes32());
        let serials: Vec<Vec<u8>> = (0..entries).map(|_| serial(&mut rng)).collect();
        let hasher = SerialHasher::new();
        let keys: Arc<[u128]> = serials.iter().map(|s| hasher.key(&issuer, s)).collect();
        let mut builder = IndexBuilder::new(hasher, Duration::from_secs(86_400), Arc::default());
        builder.add(
            issuer,
            IssuerCrl {
                issuer_name: "CN=Bench CA".into(),
                source: "bench".into(),
                this_update: SystemTime::now(),
                next_update: Some(SystemTime::now() + Duration::from_secs(86_400)),
                entries,
            },
            keys,
        );
        let index = builder.build();
        let mut pick = SplitMix64(7);
        let hits = (0..PROBES)
            .map(|_| serials[(pick.next_u64() % entries as u64) as usize].clone())
            .collect();
        let misses = (0..PROBES).map(|_| serial(&mut rng)).collect();
        Fixture {
            index,
            issuer,
            hits,
            misses,
        }
    }
}

fn lookups(c: &mut Criterion) {
    for (entries, label) in [(1_000usize, "1k"), (100_000, "100k"), (1_000_000, "1M")] {
        let f = Fixture::new(entries);
        eprintln!(
            "revocation index {label}: {} entries, table ≈ {:.1} MiB",
            f.index.len(),
            f.index.memory_bytes() as f64 / (1 << 20) as f64
        );
        let now = SystemTime::now();
        let mut g = c.benchmark_group(format!("revocation_lookup/{label}"));
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(50);
        for (kind, probes, revoked) in [("hit", &f.hits, true), ("miss", &f.misses, false)] {
            g.bench_function(BenchmarkId::new("is_revoked", kind), |b| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) & (PROBES - 1);
                    let r = f
                        .index
                        .is_revoked(black_box(&f.issuer), black_box(&probes[i]));
                    debug_assert_eq!(r, revoked);
                    r
                });
            });
            g.bench_function(BenchmarkId::new("status", kind), |b| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) & (PROBES - 1);
                    f.index
                        .status(black_box(&f.issuer), black_box(&probes[i]), now)
                });
            });
            // Every probe answers as expected (checked once, outside the timing).
            assert!(probes
                .iter()
                .all(|s| f.index.is_revoked(&f.issuer, s) == revoked));
        }
        g.finish();
    }
}

fn parse_and_index(c: &mut Criterion) {
    let ca = self_signed(&CertSpec::new("Bench CA", Usage::Ca)).unwrap();
    let mut rng = SplitMix64(1);
    let der = CrlBuilder::new(&ca)
        .unwrap()
        .revoke_all((0..1_000_000).map(|_| serial(&mut rng)))
        .to_der()
        .unwrap();
    let issuers = IssuerCerts::new([&*ca.cert]).unwrap();
    eprintln!("1M-entry CRL: {:.1} MB DER", der.len() as f64 / 1e6);

    let mut g = c.benchmark_group("revocation_reload");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15));
    g.bench_function("parse_verify_index_1M", |b| {
        b.iter(|| {
            let hasher = SerialHasher::new();
            let crl = verify_crl(black_box(&der), "bench", &issuers, &hasher).unwrap();
            let mut builder = IndexBuilder::new(hasher, Duration::ZERO, Arc::default());
            crl.add_to(&mut builder);
            let index = builder.build();
            assert_eq!(index.len(), 1_000_000);
            index
        });
    });
    g.finish();
}

criterion_group!(benches, lookups, parse_and_index);
criterion_main!(benches);
