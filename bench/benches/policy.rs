//! Client-certificate policy evaluation (`CompiledPolicy::evaluate`) at 1k, 100k
//! and 1M identities: thumbprint-only entries and mixed entries (thumbprint,
//! serial + issuer thumbprint, DNS name + issuer subject, URI, subject + common
//! name), for certificates that match an entry (hit) and that match none (miss).
//!
//! One iteration = one evaluation of a precomputed `CertFacts` (what a cached
//! verdict holds), cycling through 4096 different certificates so the lookups
//! are not all served from one cache line.

use std::hint::black_box;
use std::time::Duration;

use certgate::tls::facts::CertFacts;
use certgate::trust::names::DistinguishedName;
use certgate::trust::policy::{CompiledPolicy, Decision, IdentitySpec, PolicySpec};
use certgate::trust::{upper_hex, CertDigests};
use certgate_bench::SplitMix64;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const PROBES: usize = 4096;

/// Makes a certificate's facts match one entry.
type Apply = Box<dyn Fn(&mut CertFacts)>;
const NOW: i64 = 1_700_000_000;

fn base_facts(rng: &mut SplitMix64) -> CertFacts {
    CertFacts {
        digests: CertDigests {
            sha1: rng.bytes20(),
            sha256: rng.bytes32(),
        },
        serial: rng.bytes20()[..16].to_vec(),
        subject: DistinguishedName::from_entries([
            (0, "2.5.4.10", "Nobody"),
            (1, "2.5.4.3", "nobody"),
        ]),
        common_names: vec!["nobody".into()],
        dns_names: vec![format!("miss-{}.example.net", rng.next_u64())],
        uris: vec![format!("spiffe://miss/{}", rng.next_u64())],
        issuer_subject: DistinguishedName::from_entries([(0, "2.5.4.3", "Unknown CA")]),
        issuer_digests: Some(CertDigests {
            sha1: rng.bytes20(),
            sha256: rng.bytes32(),
        }),
        not_before: NOW - 3600,
        not_after: NOW + 3600,
        trust_error: None,
    }
}

/// Entry `i` of a mixed list, and facts that match it.
fn mixed_entry(i: usize, rng: &mut SplitMix64) -> (IdentitySpec, Apply) {
    let mut spec = IdentitySpec::default();
    let apply: Apply = match i % 5 {
        0 => {
            let sha1 = rng.bytes20();
            spec.thumbprint = Some(upper_hex(&sha1));
            Box::new(move |f| f.digests.sha1 = sha1)
        }
        1 => {
            let serial = rng.bytes20()[..16].to_vec();
            let issuer = rng.bytes32();
            spec.serial_number = Some(upper_hex(&serial));
            spec.issuer_thumbprint = Some(upper_hex(&issuer));
            Box::new(move |f| {
                f.serial = serial.clone();
                if let Some(d) = &mut f.issuer_digests {
                    d.sha256 = issuer;
                }
            })
        }
        2 => {
            let dns = format!("host-{i}.partner.example");
            spec.dns_name = Some(dns.clone());
            spec.issuer_subject = Some(format!("CN=Partner CA {}", i % 7));
            let issuer = DistinguishedName::parse(&format!("CN=Partner CA {}", i % 7)).unwrap();
            Box::new(move |f| {
                f.dns_names = vec![dns.clone()];
                f.issuer_subject = issuer.clone();
            })
        }
        3 => {
            let uri = format!("spiffe://example.org/ns/default/sa/svc-{i}");
            spec.uri = Some(uri.clone());
            Box::new(move |f| f.uris = vec![uri.clone()])
        }
        _ => {
            spec.subject = Some(format!("CN=client {i},O=Example"));
            spec.common_name = Some(format!("client {i}"));
            let subject = DistinguishedName::parse(&format!("CN=client {i},O=Example")).unwrap();
            let cn = format!("client {i}");
            Box::new(move |f| {
                f.subject = subject.clone();
                f.common_names = vec![cn.clone()];
            })
        }
    };
    (spec, apply)
}

struct Fixture {
    policy: CompiledPolicy,
    hits: Vec<CertFacts>,
    misses: Vec<CertFacts>,
}

fn fixture(entries: usize, mixed: bool) -> Fixture {
    let mut rng = SplitMix64(0x9011c7 ^ entries as u64 ^ u64::from(mixed));
    let mut identities = Vec::with_capacity(entries);
    let mut hits = Vec::with_capacity(PROBES);
    // Facts for a sample of entries (every entries/PROBES-th one) are kept as hits.
    let stride = (entries / PROBES).max(1);
    for i in 0..entries {
        let (spec, apply) = if mixed {
            mixed_entry(i, &mut rng)
        } else {
            let sha256 = rng.bytes32();
            let spec = IdentitySpec {
                thumbprint: Some(upper_hex(&sha256)),
                ..IdentitySpec::default()
            };
            let apply: Apply = Box::new(move |f| f.digests.sha256 = sha256);
            (spec, apply)
        };
        identities.push(spec);
        if i % stride == 0 && hits.len() < PROBES {
            let mut f = base_facts(&mut rng);
            apply(&mut f);
            hits.push(f);
        }
    }
    let spec = PolicySpec {
        identities,
        ..PolicySpec::default()
    };
    let policy = CompiledPolicy::compile(&spec, &|_| None).expect("benchmark policy compiles");
    drop(spec);
    let misses: Vec<CertFacts> = (0..PROBES).map(|_| base_facts(&mut rng)).collect();
    for f in hits.iter().take(16) {
        assert_eq!(policy.evaluate(f, None, NOW), Decision::Allow);
    }
    for f in misses.iter().take(16) {
        assert!(matches!(policy.evaluate(f, None, NOW), Decision::Deny(_)));
    }
    Fixture {
        policy,
        hits,
        misses,
    }
}

fn bench_policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_evaluate");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for mixed in [false, true] {
        let kind = if mixed { "mixed" } else { "thumbprint" };
        for entries in [1_000usize, 100_000, 1_000_000] {
            let fx = fixture(entries, mixed);
            for (outcome, probes) in [("hit", &fx.hits), ("miss", &fx.misses)] {
                let id = BenchmarkId::new(format!("{kind}/{outcome}"), entries);
                group.bench_function(id, |b| {
                    let mut i = 0usize;
                    b.iter(|| {
                        i = (i + 1) % probes.len();
                        black_box(fx.policy.evaluate(black_box(&probes[i]), None, NOW))
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_policy);
criterion_main!(benches);
